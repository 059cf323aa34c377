export * from "./types.ts";
export { createSealedRoot, type SealedRootDeps } from "./sealed-root.ts";
export {
  instrumentRootProvider,
  ROOT_CALLS_TOTAL,
  ROOT_CALL_DURATION_SECONDS,
  ROOT_METRIC_LABELS,
  type InstrumentOptions,
  type RootCallResult,
  type RootMetrics,
} from "./metrics.ts";
export { type UnsealRateLimitOptions } from "./unseal-rate-limit.ts";
export { decodeUnsealShare, encodeUnsealShare, UNSEAL_SHARE_BYTES } from "./unseal-shares.ts";
