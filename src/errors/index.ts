export { errorRegistry, errorCodes, statusOf, type ErrorCode } from "./registry.ts";
export {
  ArborError,
  DECRYPTION_FAILED_MESSAGE,
  decryptionFailed,
  invalidArgument,
  isArborError,
  quote,
  type ErrorDetail,
} from "./arbor-error.ts";
