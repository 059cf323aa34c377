import { SIGNATURE_BYTES, type SigningAlgorithm } from "../crypto/index.ts";
import type { AccessTokenHeader, RejectionReason } from "./types.ts";

/**
 * Maximum token length accepted, in characters. An Arbor access token is well under 1 KiB; the
 * limit is checked before anything else is done with the input, so a header of megabytes costs one
 * length comparison.
 */
export const MAX_TOKEN_CHARS = 8192;

/** The media type of RFC 9068 access tokens, as `typ` carries it. */
export const ACCESS_TOKEN_TYP = "at+jwt";

const SIGNING_ALGORITHMS: ReadonlySet<string> = new Set<SigningAlgorithm>(["EdDSA", "ES256"]);
// RFC 7515 section 4.1.9: `typ` is compared as a media type, case-insensitively, with or without
// the `application/` prefix.
const ACCEPTED_TYP: ReadonlySet<string> = new Set(["at+jwt", "application/at+jwt"]);
/**
 * Header parameters that ask the verifier for work or semantics Arbor does not provide:
 * critical extensions, compression (JWE only), content encryption (JWE) and unencoded payloads.
 */
const REJECTED_HEADER_PARAMETERS = ["crit", "zip", "enc", "b64"] as const;

const BASE64URL_PATTERN = /^[A-Za-z0-9_-]+$/;
const KID_PATTERN = /^(key_[a-z2-7]{26})\.([1-9][0-9]{0,9})$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A compact JWS whose header passed every check; the payload is not decoded yet. */
export interface CheckedJws {
  header: AccessTokenHeader;
  keyId: string;
  keyVersion: number;
  /** ASCII bytes of `<header>.<payload>`, the JWS signing input. */
  signingInput: Uint8Array;
  signature: Uint8Array;
  payloadSegment: string;
}

export type HeaderCheckResult =
  { ok: true; jws: CheckedJws } | { ok: false; reason: RejectionReason; kid: string | null };

/**
 * Checks everything that can be checked without a key: the length, the compact serialization,
 * the base64url segments and the protected header (`alg` EdDSA or ES256, `typ` at+jwt, a
 * well-formed `kid`, and none of `crit`, `zip`, `enc`, `b64`). It does no key look-up,
 * decompression, key derivation or signature work. `jwk`, `jku`, `x5u` and `x5c` are never read.
 */
export function checkJwsHeader(token: unknown): HeaderCheckResult {
  if (typeof token !== "string") return reject("malformed");
  if (token.length > MAX_TOKEN_CHARS) return reject("too_large");

  const segments = token.split(".");
  // A JWE has five segments; it is never decrypted, so it is malformed here.
  if (segments.length !== 3) return reject("malformed");
  const [headerSegment, payloadSegment, signatureSegment] = segments as [string, string, string];
  if (!isCanonicalBase64url(headerSegment) || !isCanonicalBase64url(payloadSegment)) {
    return reject("malformed");
  }

  const header = decodeJsonObject(headerSegment);
  if (header === null) return reject("malformed");

  const alg = header.alg;
  if (typeof alg !== "string" || !SIGNING_ALGORITHMS.has(alg)) return reject("unsupported_alg");
  const typ = header.typ;
  if (typeof typ !== "string" || !ACCEPTED_TYP.has(typ.toLowerCase())) {
    return reject("unsupported_typ");
  }
  if (REJECTED_HEADER_PARAMETERS.some((name) => Object.hasOwn(header, name))) {
    return reject("unsupported_header");
  }

  const kid = typeof header.kid === "string" ? header.kid : null;
  const parsedKid = kid === null ? null : parseKid(kid);
  if (parsedKid === null) return reject("malformed");
  // Checked after the header, so an `alg: none` token with its empty signature is reported as
  // an unsupported algorithm rather than as malformed.
  if (!isCanonicalBase64url(signatureSegment)) return { ok: false, reason: "malformed", kid };

  const signature = Buffer.from(signatureSegment, "base64url");
  return {
    ok: true,
    jws: {
      header: { alg: alg as SigningAlgorithm, typ: ACCESS_TOKEN_TYP, kid: kid! },
      keyId: parsedKid.keyId,
      keyVersion: parsedKid.version,
      signingInput: Buffer.from(`${headerSegment}.${payloadSegment}`, "ascii"),
      signature: new Uint8Array(signature.buffer, signature.byteOffset, signature.length),
      payloadSegment,
    },
  };
}

/** Formats the opaque `kid` of a key version: `<key id>.<version>`. */
export function formatKid(keyId: string, version: number): string {
  return `${keyId}.${version}`;
}

/** Parses a `kid` made by {@link formatKid}; null for anything else. */
export function parseKid(kid: string): { keyId: string; version: number } | null {
  const match = KID_PATTERN.exec(kid);
  if (match === null) return null;

  const version = Number(match[2]);
  if (!Number.isSafeInteger(version)) return null;
  return { keyId: match[1]!, version };
}

/** Decodes the payload segment of a checked JWS to a JSON object; null when it is not one. */
export function decodePayload(jws: CheckedJws): Record<string, unknown> | null {
  return decodeJsonObject(jws.payloadSegment);
}

/** Encodes a JSON value as one base64url segment of a compact JWS. */
export function encodeSegment(value: unknown): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64url");
}

/** Appends a signature to a signing input, giving the compact serialization. */
export function assembleJws(signingInput: string, signature: Uint8Array): string {
  if (signature.length !== SIGNATURE_BYTES) {
    throw new Error(`a JWS signature must be ${SIGNATURE_BYTES} bytes, got ${signature.length}`);
  }
  return `${signingInput}.${Buffer.from(signature).toString("base64url")}`;
}

function reject(reason: RejectionReason): HeaderCheckResult {
  return { ok: false, reason, kid: null };
}

/**
 * True for base64url without padding whose decoding re-encodes to the same text, so each token
 * has exactly one spelling: a length of 1 modulo 4 or non-zero trailing bits are rejected.
 */
function isCanonicalBase64url(segment: string): boolean {
  if (!BASE64URL_PATTERN.test(segment) || segment.length % 4 === 1) return false;
  return Buffer.from(segment, "base64url").toString("base64url") === segment;
}

function decodeJsonObject(segment: string): Record<string, unknown> | null {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(Buffer.from(segment, "base64url")));
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  return value as Record<string, unknown>;
}
