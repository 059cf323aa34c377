export {
  createTokenService,
  DEFAULT_TOKEN_TTL_MS,
  requestPrincipal,
  SIGN_RETIRE_MARGIN_MS,
  signRetireAfterMs,
  type ActiveToken,
  type TokenService,
  type TokenServiceDeps,
  type TokenServiceOptions,
} from "./service.ts";
export {
  CLIENT_AUTHENTICATION_FAILED_MESSAGE,
  UNKNOWN_CLIENT_SECRET_HASH,
  type ClientAuthenticationFailure,
  type ClientCredentials,
} from "./client-auth.ts";
export { CLIENT_AUTH_METHODS, type PublishedJwk } from "./issuers.ts";
export { checkJwsHeader, formatKid, MAX_TOKEN_CHARS, parseKid } from "./jws.ts";
export { callerOf, parseForm, type FormField, type OAuthCaller } from "./oauth-request.ts";
export { MAX_SECRET_OVERLAP_MS, MIN_TOKEN_TTL_MS } from "./principal-input.ts";
export { CLIENT_SECRET_ID_PATTERN, SERVICE_PRINCIPAL_ID_PATTERN } from "./principals.ts";
export type { RejectionContext } from "./rejections.ts";
export { ObservedMaterialCache, SigningKeyCache } from "./signing-keys.ts";
export {
  isServiceKeyScope,
  restrictToOwnService,
  serviceKeyScope,
  type ServiceKeyScope,
} from "./service-scope.ts";
export {
  audiences,
  createTokenVerifier,
  MAX_LEEWAY_SECONDS,
  type SignatureVerifier,
  type TokenVerifier,
  type VerificationResult,
  type VerifyOptions,
} from "./verify.ts";
export type * from "./types.ts";
