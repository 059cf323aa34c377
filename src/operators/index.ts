export {
  createOperatorTokenService,
  DEFAULT_MAX_TTL_MS,
  DEFAULT_TTL_MS,
  OPERATOR_TOKEN_ID_PATTERN,
  OPERATOR_TOKEN_REJECTED_MESSAGE,
  ROOT_TOKEN_NAME,
  type OperatorTokenServiceDeps,
} from "./service.ts";
export {
  hashSecret,
  sha256SecretHashing,
  UNKNOWN_TOKEN_HASH,
  verifyHash,
  type SecretHashing,
} from "./secret-hash.ts";
export type {
  CreateOperatorTokenInput,
  OperatorAuthenticationFailure,
  OperatorPrincipal,
  OperatorScope,
  OperatorTokenInfo,
  OperatorTokenService,
} from "./types.ts";
