import { createHash, createPublicKey, verify, type JsonWebKey, type KeyObject } from "node:crypto";

import canonicalize from "canonicalize";

import { invalidArgument } from "../errors/index.ts";
import { isSha256Hex } from "./merkle.ts";

/** The signed part of a checkpoint (a signed tree head over the audit log). */
export interface CheckpointBody {
  v: 1;
  kind: "arbor-audit-checkpoint";
  /** Number of records the tree covers: seqs 1 to treeSize. */
  treeSize: number;
  /** Lowercase hex RFC 9162 root of the tree of those records' leaf hashes. */
  rootHash: string;
  /** Integer milliseconds since the Unix epoch when the checkpoint was signed. */
  at: number;
  /** Tree size of the checkpoint before this one, 0 for the first. */
  prevTreeSize: number;
}

/**
 * A checkpoint with its Ed25519 signature over the RFC 8785 canonical bytes of `body`. `keyId`
 * names the signing key by its RFC 7638 thumbprint. It sits outside the signed body, and a
 * verifier compares it with the thumbprint of the key it was given.
 */
export interface SignedCheckpoint {
  body: CheckpointBody;
  /** base64url (RFC 4648 section 5, no padding) of the 64-byte Ed25519 signature. */
  signature: string;
  keyId?: string;
}

/** Signs a message with the audit signing key: the root provider's `signCheckpoint`. */
export type CheckpointSigner = (message: Uint8Array) => Promise<Uint8Array>;

/** The outcome of a checkpoint check, with the reason when it failed. */
export type CheckpointCheck =
  { ok: true; checkpoint: SignedCheckpoint; keyId: string } | { ok: false; reason: string };

const CHECKPOINT_KIND = "arbor-audit-checkpoint";
const ED25519_SIGNATURE_BYTES = 64;
const BODY_FIELDS = ["v", "kind", "treeSize", "rootHash", "at", "prevTreeSize"] as const;
const CHECKPOINT_FIELDS = ["body", "signature", "keyId"] as const;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Signs `body` with `sign` and returns the checkpoint. `v` and `kind` may be left out; every other
 * field is checked first and INVALID_ARGUMENT names the one that is wrong. Throws INVALID_ARGUMENT
 * too when `sign` does not return 64 bytes. Pass `keyId` (see {@link checkpointKeyId}) so proofs
 * name the key that signed them.
 */
export async function createCheckpoint(
  body: Omit<CheckpointBody, "v" | "kind"> & Partial<Pick<CheckpointBody, "v" | "kind">>,
  sign: CheckpointSigner,
  options: { keyId?: string } = {},
): Promise<SignedCheckpoint> {
  const checked = parseBody({ v: 1, kind: CHECKPOINT_KIND, ...body });
  if (typeof checked === "string") throw invalidArgument("body", body, checked);

  const signature = await sign(checkpointMessage(checked));
  if (!(signature instanceof Uint8Array) || signature.length !== ED25519_SIGNATURE_BYTES) {
    throw invalidArgument(
      "signature",
      signature instanceof Uint8Array ? `${signature.length} bytes` : typeof signature,
      `the checkpoint signer must return a ${ED25519_SIGNATURE_BYTES}-byte Ed25519 signature`,
    );
  }
  const signed: SignedCheckpoint = {
    body: checked,
    signature: Buffer.from(signature).toString("base64url"),
  };
  if (options.keyId !== undefined) signed.keyId = options.keyId;
  return signed;
}

/** Returns the bytes a checkpoint signature covers: the RFC 8785 canonical JSON of the body, UTF-8. */
export function checkpointMessage(body: CheckpointBody): Uint8Array {
  const { v, kind, treeSize, rootHash, at, prevTreeSize } = body;
  return new TextEncoder().encode(canonicalText({ v, kind, treeSize, rootHash, at, prevTreeSize }));
}

/**
 * True when `checkpoint` is a well-formed checkpoint whose signature verifies under `publicJwk`
 * (an Ed25519 public JWK) and whose `keyId`, if present, is that key's thumbprint. Never throws.
 */
export function verifyCheckpoint(checkpoint: unknown, publicJwk: JsonWebKey): boolean {
  return checkCheckpoint(checkpoint, publicJwk).ok;
}

/**
 * Checks a checkpoint like {@link verifyCheckpoint} and returns the reason it fails: malformed fields, a
 * key that is not an Ed25519 public JWK, another key's id, or a wrong signature. Never throws.
 */
export function checkCheckpoint(checkpoint: unknown, publicJwk: JsonWebKey): CheckpointCheck {
  if (!isObject(checkpoint)) return { ok: false, reason: "the checkpoint is not a JSON object" };
  const fieldError = checkFields(checkpoint, CHECKPOINT_FIELDS, ["keyId"], "checkpoint");
  if (fieldError !== null) return { ok: false, reason: fieldError };

  const body = parseBody(checkpoint.body);
  if (typeof body === "string") return { ok: false, reason: `checkpoint body: ${body}` };
  const signature = decodeBase64url(checkpoint.signature);
  if (signature === null || signature.length !== ED25519_SIGNATURE_BYTES) {
    return {
      ok: false,
      reason: `the checkpoint signature is not ${ED25519_SIGNATURE_BYTES} bytes of unpadded base64url`,
    };
  }

  const key = importEd25519PublicKey(publicJwk);
  if (key === null)
    return { ok: false, reason: "the verification key is not an Ed25519 public JWK" };
  const keyId = thumbprintOf(publicJwk);
  if (checkpoint.keyId !== undefined && checkpoint.keyId !== keyId) {
    return {
      ok: false,
      reason: `the checkpoint names signing key ${JSON.stringify(checkpoint.keyId)}, but the verification key is ${keyId}`,
    };
  }
  if (!verify(null, checkpointMessage(body), key, signature)) {
    return {
      ok: false,
      reason: "the checkpoint signature does not verify under the audit public key",
    };
  }

  const verified: SignedCheckpoint = { body, signature: checkpoint.signature as string };
  if (checkpoint.keyId !== undefined) verified.keyId = keyId;
  return { ok: true, checkpoint: verified, keyId };
}

/**
 * Returns the key id of an Ed25519 public JWK: its RFC 7638 thumbprint, base64url SHA-256 of
 * `{"crv":"Ed25519","kty":"OKP","x":...}`. Throws INVALID_ARGUMENT for any other key.
 */
export function checkpointKeyId(publicJwk: JsonWebKey): string {
  if (importEd25519PublicKey(publicJwk) === null) {
    throw invalidArgument("publicJwk", publicJwk.kty ?? null, "expected an Ed25519 public JWK");
  }
  return thumbprintOf(publicJwk);
}

/** Returns the thumbprint of a JWK already checked to be an Ed25519 public key. */
function thumbprintOf(jwk: JsonWebKey): string {
  // RFC 7638 section 3.2: only the required members, sorted, without whitespace; for OKP keys
  // (RFC 8037 section 2) those are crv, kty and x.
  const input = canonicalText({ crv: jwk.crv, kty: jwk.kty, x: jwk.x });
  return createHash("sha256").update(input, "utf8").digest("base64url");
}

function importEd25519PublicKey(jwk: JsonWebKey): KeyObject | null {
  if (!isObject(jwk) || jwk.kty !== "OKP" || jwk.crv !== "Ed25519") return null;
  if (typeof jwk.x !== "string" || jwk.d !== undefined) return null;
  const x = decodeBase64url(jwk.x);
  if (x === null || x.length !== 32) return null;
  try {
    return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: jwk.x }, format: "jwk" });
  } catch {
    return null;
  }
}

/** Returns the body with exactly its fields, or a message naming the first field that is wrong. */
function parseBody(value: unknown): CheckpointBody | string {
  if (!isObject(value)) return "not a JSON object";
  const fieldError = checkFields(value, BODY_FIELDS, [], "body");
  if (fieldError !== null) return fieldError;

  const { v, kind, treeSize, rootHash, at, prevTreeSize } = value;
  if (v !== 1) return `v is ${JSON.stringify(v)}, expected 1`;
  if (kind !== CHECKPOINT_KIND)
    return `kind is ${JSON.stringify(kind)}, expected ${CHECKPOINT_KIND}`;
  if (!isCount(treeSize)) return "treeSize is not an integer from 0 to 2^53 - 1";
  if (!isSha256Hex(rootHash)) return "rootHash is not 64 lowercase hex digits";
  if (!isCount(at)) return "at is not an integer number of milliseconds from 0 to 2^53 - 1";
  if (!isCount(prevTreeSize) || prevTreeSize > treeSize) {
    return "prevTreeSize is not an integer from 0 to treeSize";
  }
  return { v, kind, treeSize, rootHash, at, prevTreeSize };
}

/** Returns null when `value` has every required field and no unknown one, else a message. */
function checkFields(
  value: Record<string, unknown>,
  fields: readonly string[],
  optional: readonly string[],
  name: string,
): string | null {
  for (const field of fields) {
    if (!optional.includes(field) && !Object.hasOwn(value, field)) {
      return `the ${name} lacks the field "${field}"`;
    }
  }
  for (const field of Object.keys(value)) {
    if (!fields.includes(field)) return `the ${name} has an unknown field "${field}"`;
  }
  return null;
}

/**
 * Decodes unpadded base64url strictly: Node's decoder skips invalid characters and ignores
 * unused trailing bits, so the input must also re-encode to itself. Returns null otherwise.
 */
export function decodeBase64url(value: unknown): Buffer | null {
  if (typeof value !== "string" || !BASE64URL.test(value)) return null;
  const bytes = Buffer.from(value, "base64url");
  return bytes.toString("base64url") === value ? bytes : null;
}

/** Returns the RFC 8785 text of a plain object, which canonicalize never leaves undefined. */
function canonicalText(value: Record<string, unknown>): string {
  const text = canonicalize(value);
  if (text === undefined) throw invalidArgument("value", null, "cannot be canonicalized");
  return text;
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
