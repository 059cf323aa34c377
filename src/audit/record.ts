import { createHash } from "node:crypto";

import canonicalize from "canonicalize";

import { invalidArgument } from "../errors/index.ts";
import type { AuditEvent, AuditOutcome } from "./types.ts";

/**
 * An audit event as the hash chain stores it: the event, its gapless sequence number (from 1) and
 * the leaf hash of the record before it. Its canonical form adds `v` (the record format version).
 */
export interface AuditRecord extends AuditEvent {
  seq: number;
  /** Lowercase hex leaf hash of record `seq - 1`; GENESIS_HASH for seq 1, or the pruning anchor. */
  prevHash: string;
}

/** Version of the canonical record form; a new version is a new hash domain. */
export const AUDIT_RECORD_VERSION = 1;

/** The `prevHash` of the first record: 32 zero bytes in hex. */
export const GENESIS_HASH = "0".repeat(64);

/** RFC 9162 section 2.1.1 prefixes that keep leaf hashes and interior node hashes apart. */
export const LEAF_PREFIX = 0x00;
export const NODE_PREFIX = 0x01;
const LEAF_PREFIX_BYTES = Uint8Array.of(LEAF_PREFIX);

const SHA256_HEX = /^[0-9a-f]{64}$/;
// With the `u` flag a surrogate pair is one code point, so this matches only lone surrogates,
// which UTF-8 cannot encode and RFC 8785 rejects.
const LONE_SURROGATE = /\p{Surrogate}/u;

// Event and principal types are checked by form, not against the current unions in types.ts,
// because an offline verifier must still read records of types that a newer or older Arbor writes.
const EVENT_TYPE_FORM = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
const PRINCIPAL_TYPE_FORM = /^[a-z][a-z0-9_]*$/;

const OUTCOMES = ["success", "failure", "denied"] as const satisfies readonly AuditOutcome[];

// Fails to compile when an outcome is added to types.ts but not to the list above.
const everyOutcomeListed: Exclude<AuditOutcome, (typeof OUTCOMES)[number]> extends never
  ? true
  : never = true;
void everyOutcomeListed;

/** The members of a canonical record, in the order the design lists them (JCS sorts them). */
const RECORD_FIELDS = [
  "v",
  "seq",
  "prevHash",
  "type",
  "outcome",
  "at",
  "principal",
  "sourceAddress",
  "requestId",
  "keyId",
  "keyVersion",
  "chain",
  "credentialId",
  "errorCode",
  "details",
] as const;

type DetailValue = AuditEvent["details"][string];

/**
 * Builds the record of `event` at position `seq` after `prevHash`. Throws INVALID_ARGUMENT when a
 * field breaks the record contract (for example a non-integer `at`, a NaN detail or a lone
 * surrogate), so a record that cannot be canonicalized is never chained.
 */
export function buildRecord(event: AuditEvent, seq: number, prevHash: string): AuditRecord {
  return buildCanonicalRecord(event, seq, prevHash).record;
}

/**
 * Builds the record as {@link buildRecord} does and returns it with its canonical JSON text (the
 * text {@link canonicalRecordJson} returns), so a writer canonicalizes each record only once.
 */
export function buildCanonicalRecord(
  event: AuditEvent,
  seq: number,
  prevHash: string,
): { record: AuditRecord; canonical: string } {
  const record = copyRecord({ ...event, seq, prevHash }, "record");
  // Canonicalizing here also rejects values that pass the field checks but not RFC 8785.
  return { record, canonical: canonicalJson(record) };
}

/** Returns the RFC 8785 canonical JSON text of the record, with `v` added. */
export function canonicalRecordJson(record: AuditRecord): string {
  return canonicalJson(copyRecord(record, "record"));
}

/** Returns the UTF-8 bytes of the record's RFC 8785 canonical JSON, which its leaf hash covers. */
export function canonicalRecordBytes(record: AuditRecord): Uint8Array {
  return new TextEncoder().encode(canonicalRecordJson(record));
}

/** Returns the RFC 9162 leaf hash SHA-256(0x00 || bytes). */
export function leafHashOfBytes(bytes: Uint8Array): Buffer {
  return createHash("sha256").update(LEAF_PREFIX_BYTES).update(bytes).digest();
}

/** Returns the record's leaf hash in lowercase hex: the next record's `prevHash` and its Merkle leaf. */
export function recordHash(record: AuditRecord): string {
  return leafHashOfBytes(canonicalRecordBytes(record)).toString("hex");
}

/**
 * Parses a record from its JSON text, as stored or as carried in a proof. Strict, because the text
 * may come from a tampered database: every field must be present with its exact type, unknown
 * fields are rejected, `v` must be 1 and integers must be safe integers. Throws INVALID_ARGUMENT
 * naming the field. The text need not be canonical; compare with {@link canonicalRecordJson} when
 * it must be.
 */
export function parseRecord(json: string): AuditRecord {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw invalidArgument("record", json, `not valid JSON (${(error as Error).message})`);
  }
  if (!isPlainObject(value)) throw invalidArgument("record", json, "expected a JSON object");

  requireExactKeys(value, RECORD_FIELDS, "record");
  if (value.v !== AUDIT_RECORD_VERSION) {
    throw invalidArgument(
      "record.v",
      value.v,
      `expected record format version ${AUDIT_RECORD_VERSION}`,
    );
  }
  const record = copyRecord(value as unknown as AuditRecord, "record");
  canonicalJson(record);
  return record;
}

/** The outcome of a hash-chain check: where it broke, or the hash of the last record. */
export type ChainCheck =
  { ok: true; lastSeq: number; lastHash: string } | { ok: false; reason: string; seq: number };

/**
 * Checks that `records` continue a hash chain: seqs follow `after.seq` without a gap, and each
 * `prevHash` is the leaf hash of the record before it (`after.hash` for the first). Start a full
 * log with `{ seq: 0, hash: GENESIS_HASH }`, or a pruned one with its anchor. A record that
 * cannot be hashed is reported as the break instead of throwing.
 */
export function checkHashChain(
  records: Iterable<AuditRecord>,
  after: { seq: number; hash: string },
): ChainCheck {
  let expectedSeq = after.seq + 1;
  let expectedPrev = after.hash;
  for (const record of records) {
    if (record.seq !== expectedSeq) {
      return {
        ok: false,
        reason: `expected seq ${expectedSeq}, found ${record.seq}`,
        seq: record.seq,
      };
    }
    if (record.prevHash !== expectedPrev) {
      return {
        ok: false,
        reason: `prevHash of seq ${record.seq} is not the hash of the record before it`,
        seq: record.seq,
      };
    }
    try {
      expectedPrev = recordHash(record);
    } catch (error) {
      return { ok: false, reason: (error as Error).message, seq: record.seq };
    }
    expectedSeq += 1;
  }
  return { ok: true, lastSeq: expectedSeq - 1, lastHash: expectedPrev };
}

function canonicalJson(record: AuditRecord): string {
  const text = canonicalize({ v: AUDIT_RECORD_VERSION, ...record });
  // canonicalize returns undefined only for undefined, functions and symbols, which copyRecord rejects.
  if (text === undefined) throw invalidArgument("record", null, "cannot be canonicalized");
  return text;
}

/**
 * Validates every field and returns a fresh record holding only the contract's fields, so extra
 * properties of the input (or a `toJSON` method) can never reach the canonical bytes.
 */
function copyRecord(input: AuditRecord, name: string): AuditRecord {
  const principal: unknown = input.principal;
  if (!isPlainObject(principal)) {
    throw invalidArgument(`${name}.principal`, principal, "expected an object {type, id}");
  }
  requireExactKeys(principal, ["type", "id"], `${name}.principal`);

  return {
    seq: requireInteger(input.seq, `${name}.seq`, 1),
    prevHash: requireHash(input.prevHash, `${name}.prevHash`),
    type: requireForm(
      input.type,
      EVENT_TYPE_FORM,
      `${name}.type`,
      "an event type such as key.created",
    ),
    outcome: requireMember(input.outcome, OUTCOMES, `${name}.outcome`),
    at: requireInteger(input.at, `${name}.at`, 0),
    principal: {
      type: requireForm(
        principal.type,
        PRINCIPAL_TYPE_FORM,
        `${name}.principal.type`,
        "a principal type such as operator",
      ),
      id: requireString(principal.id, `${name}.principal.id`),
    },
    sourceAddress: requireNullableString(input.sourceAddress, `${name}.sourceAddress`),
    requestId: requireNullableString(input.requestId, `${name}.requestId`),
    keyId: requireNullableString(input.keyId, `${name}.keyId`),
    keyVersion:
      input.keyVersion === null ? null : requireInteger(input.keyVersion, `${name}.keyVersion`, 1),
    chain: requireChain(input.chain, `${name}.chain`),
    credentialId: requireNullableString(input.credentialId, `${name}.credentialId`),
    errorCode: requireNullableString(input.errorCode, `${name}.errorCode`),
    details: requireDetails(input.details, `${name}.details`),
  };
}

function requireExactKeys(
  value: Record<string, unknown>,
  keys: readonly string[],
  name: string,
): void {
  for (const key of keys) {
    if (!Object.hasOwn(value, key)) throw invalidArgument(name, key, `missing field "${key}"`);
  }
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) throw invalidArgument(name, key, `unknown field "${key}"`);
  }
}

function requireInteger(value: unknown, name: string, minimum: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < minimum) {
    throw invalidArgument(name, value, `expected an integer from ${minimum} to 2^53 - 1`);
  }
  return value;
}

function requireHash(value: unknown, name: string): string {
  if (typeof value !== "string" || !SHA256_HEX.test(value)) {
    throw invalidArgument(name, value, "expected 64 lowercase hex digits (a SHA-256 hash)");
  }
  return value;
}

function requireString(value: unknown, name: string): string {
  if (typeof value !== "string") throw invalidArgument(name, value, "expected a string");
  if (LONE_SURROGATE.test(value)) {
    throw invalidArgument(
      name,
      value,
      "contains a lone UTF-16 surrogate, which UTF-8 cannot encode",
    );
  }
  return value;
}

function requireNullableString(value: unknown, name: string): string | null {
  return value === null ? null : requireString(value, name);
}

function requireMember<T extends string>(value: unknown, allowed: readonly T[], name: string): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw invalidArgument(name, value, `expected one of ${allowed.join(", ")}`);
  }
  return value as T;
}

function requireForm<T extends string>(
  value: unknown,
  form: RegExp,
  name: string,
  expected: string,
): T {
  if (typeof value !== "string" || !form.test(value)) {
    throw invalidArgument(name, value, `expected ${expected} (lowercase words joined by dots)`);
  }
  return value as T;
}

function requireChain(value: unknown, name: string): string[] {
  if (!Array.isArray(value)) throw invalidArgument(name, value, "expected an array of strings");
  return value.map((element, index) => requireString(element, `${name}[${index}]`));
}

function requireDetails(value: unknown, name: string): Record<string, DetailValue> {
  if (!isPlainObject(value)) throw invalidArgument(name, value, "expected an object");
  const details: Record<string, DetailValue> = {};
  for (const key of Object.keys(value)) {
    requireString(key, `${name} key`);
    // defineProperty keeps a "__proto__" key (which JSON.parse creates as an own property) as
    // data; plain assignment would change the prototype instead.
    Object.defineProperty(details, key, {
      value: requireDetailValue(value[key], `${name}.${key}`),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return details;
}

function requireDetailValue(value: unknown, name: string): DetailValue {
  if (value === null || typeof value === "boolean") return value;
  if (typeof value === "string") return requireString(value, name);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw invalidArgument(name, value, "expected a finite number");
    return value;
  }
  throw invalidArgument(name, value, "expected a string, a finite number, a boolean or null");
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}
