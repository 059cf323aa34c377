import type { JsonWebKey } from "node:crypto";

import canonicalize from "canonicalize";

import { invalidArgument } from "../errors/index.ts";
import { checkCheckpoint, type SignedCheckpoint } from "./checkpoint.ts";
import {
  inclusionProofs,
  isSha256Hex,
  verifyInclusion,
  type LeafSource,
  type MerkleFrontier,
} from "./merkle.ts";
import {
  canonicalRecordBytes,
  canonicalRecordJson,
  leafHashOfBytes,
  parseRecord,
  type AuditRecord,
} from "./record.ts";

// A proof file shows that some records are in the audit log that a signed checkpoint covers. It
// carries those records and, for each, the sibling hashes of its inclusion proof, so it reveals
// nothing about any other record beyond hashes.

/** One record of a proof file and its inclusion proof. */
export interface ProofEntry {
  /** The record's RFC 8785 canonical JSON text, exactly the bytes its leaf hash covers. */
  record: string;
  /** The record's leaf index, always seq - 1. */
  leafIndex: number;
  /** Lowercase hex sibling hashes, nearest the leaf first (RFC 9162 section 2.1.3.1). */
  inclusion: string[];
}

export interface ProofFile {
  v: 1;
  kind: "arbor-audit-proof";
  checkpoint: SignedCheckpoint;
  /** Sorted by seq, without duplicates. */
  entries: ProofEntry[];
  /** The credential id (token id, data key id) or key version (`key_…@N`, `root@N`) proven. */
  subject: string;
}

/** True when `record` establishes the key version `ref` (`keyId@version`). */
export type EstablishesPredicate = (record: AuditRecord, ref: string) => boolean;

/** True when `record` hands out the credential it names in `credentialId`. */
export type IssuancePredicate = (record: AuditRecord) => boolean;

/** The result of a check: success with its facts, or the first failure and the entry it concerns. */
export type ProofCheck<Facts> =
  ({ ok: true } & Facts) | { ok: false; reason: string; entry?: number };

export type ProofVerification = ProofCheck<{
  subject: string;
  /** Thumbprint of the key that signed the checkpoint. */
  keyId: string;
  checkpoint: SignedCheckpoint;
  /** The proven records, in entry order. */
  records: AuditRecord[];
}>;

export type ChainCoverage = ProofCheck<{
  /** The chain covered, root first. */
  chain: string[];
  /** Index of the entry that issued the credential or established the key version. */
  subjectEntry: number;
}>;

/** Event types whose successful record hands out the credential in `credentialId`. */
export const ISSUING_EVENT_TYPES: ReadonlySet<string> = new Set([
  "token.issued",
  "data_key.issued",
  "operator_token.created",
  "sys.initialized",
  "service.created",
  "service.secret_rotated",
]);

const ROOT_ESTABLISHING_TYPES: ReadonlySet<string> = new Set([
  "sys.initialized",
  "sys.root_rotated",
]);
const KEY_ESTABLISHING_TYPES: ReadonlySet<string> = new Set(["key.created", "key.rotated"]);
const KEY_REF = /^(.+)@([1-9][0-9]{0,15})$/;
const PROOF_KIND = "arbor-audit-proof";
const PROOF_FIELDS = ["v", "kind", "checkpoint", "entries", "subject"];
const ENTRY_FIELDS = ["record", "leafIndex", "inclusion"];
// A key tree is root, environment master, tenant master, service key; the bound stops a damaged
// or hostile proof from making the parent walk loop.
const MAX_CHAIN_LENGTH = 16;

/**
 * The default establishing rule: a successful `sys.initialized` or `sys.root_rotated` record with
 * `details.rootVersion` N establishes `root@N`, and a successful `key.created` or `key.rotated`
 * record with that key id and version establishes `key_…@N`.
 */
export const establishesKeyVersion: EstablishesPredicate = (record, ref) => {
  const parsed = parseKeyRef(ref);
  if (parsed === null || record.outcome !== "success") return false;
  if (parsed.keyId === "root") {
    return (
      ROOT_ESTABLISHING_TYPES.has(record.type) && record.details.rootVersion === parsed.version
    );
  }
  return (
    KEY_ESTABLISHING_TYPES.has(record.type) &&
    record.keyId === parsed.keyId &&
    record.keyVersion === parsed.version
  );
};

/** The default issuance rule: a successful record of one of ISSUING_EVENT_TYPES. */
export const issuesCredential: IssuancePredicate = (record) =>
  record.outcome === "success" && ISSUING_EVENT_TYPES.has(record.type);

/** Splits `keyId@version`; null unless the version is a positive integer. */
export function parseKeyRef(ref: string): { keyId: string; version: number } | null {
  const match = KEY_REF.exec(ref);
  if (match === null) return null;
  const version = Number(match[2]);
  return Number.isSafeInteger(version) ? { keyId: match[1]!, version } : null;
}

/**
 * Builds the proof file of `records` against `checkpoint`. Records may be given parsed or as their
 * stored JSON text (which must be canonical). Each record's leaf hash is compared with the leaf
 * source, and each inclusion proof is checked against the checkpoint's root before the file is
 * returned, so a damaged log never yields a proof that looks valid. Throws INVALID_ARGUMENT naming
 * the record otherwise, or when a record lies beyond the checkpoint or appears twice.
 */
export function createProofFile(input: {
  checkpoint: SignedCheckpoint;
  records: ReadonlyArray<AuditRecord | string>;
  subject: string;
  getLeaf: LeafSource;
  /** Frontier of the prefix pruned by retention; see ProofOptions in merkle.ts. */
  pruned?: MerkleFrontier;
}): ProofFile {
  const { checkpoint, subject, getLeaf, pruned } = input;
  const treeSize = checkpoint.body.treeSize;
  const root = Buffer.from(checkpoint.body.rootHash, "hex");
  const records = input.records.map(toRecord).sort((a, b) => a.seq - b.seq);

  for (const [i, record] of records.entries()) {
    if (i > 0 && records[i - 1]!.seq === record.seq) {
      throw invalidArgument("records", record.seq, "lists the same seq twice");
    }
    if (record.seq > treeSize) {
      throw invalidArgument(
        "records",
        record.seq,
        `lies beyond the checkpoint's tree size ${treeSize}`,
      );
    }
  }

  const leafIndexes = records.map((record) => record.seq - 1);
  const proofs = inclusionProofs(leafIndexes, treeSize, getLeaf, pruned ? { pruned } : {});
  const entries = records.map((record, i): ProofEntry => {
    const leafIndex = leafIndexes[i]!;
    const inclusion = proofs[i]!;
    const leaf = leafHashOfBytes(canonicalRecordBytes(record));
    if (!verifyInclusion(leaf, leafIndex, treeSize, inclusion, root)) {
      throw invalidArgument(
        "records",
        record.seq,
        "its leaf hash or the stored leaf hashes do not match the checkpoint's root; verify the log",
      );
    }
    return {
      record: canonicalRecordJson(record),
      leafIndex,
      inclusion: inclusion.map((hash) => hash.toString("hex")),
    };
  });
  return { v: 1, kind: PROOF_KIND, checkpoint, entries, subject };
}

/** Serializes a proof file as RFC 8785 canonical JSON: compact, and the same bytes every time. */
export function serializeProofFile(proof: ProofFile): string {
  const text = canonicalize(proof);
  if (text === undefined) throw invalidArgument("proof", null, "cannot be serialized");
  return text;
}

/**
 * Verifies a proof file offline with the audit public key (an Ed25519 JWK). Checks, in order: the
 * file's shape, the checkpoint's signature, that every record parses, is canonical and has
 * leafIndex = seq - 1 below the tree size, that entries are sorted by seq without duplicates,
 * every inclusion proof against the checkpoint's root, and {@link checkChainCoverage}. Returns
 * the first failure with its entry index, and never throws.
 */
export function verifyProofFile(
  json: string,
  publicJwk: JsonWebKey,
  options: { establishes?: EstablishesPredicate; issues?: IssuancePredicate } = {},
): ProofVerification {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return { ok: false, reason: "the proof file is not valid JSON" };
  }
  if (!isObject(value)) return { ok: false, reason: "the proof file is not a JSON object" };
  const fieldError = checkExactFields(value, PROOF_FIELDS, "proof file");
  if (fieldError !== null) return { ok: false, reason: fieldError };
  if (value.v !== 1)
    return { ok: false, reason: `unsupported proof file version ${JSON.stringify(value.v)}` };
  if (value.kind !== PROOF_KIND) return { ok: false, reason: `the kind is not ${PROOF_KIND}` };
  const subject = value.subject;
  if (typeof subject !== "string" || subject.length === 0) {
    return { ok: false, reason: "the subject is not a non-empty string" };
  }
  if (!Array.isArray(value.entries) || value.entries.length === 0) {
    return { ok: false, reason: "the proof file has no entries" };
  }

  const checkpoint = checkCheckpoint(value.checkpoint, publicJwk);
  if (!checkpoint.ok) return { ok: false, reason: checkpoint.reason };
  const { treeSize, rootHash } = checkpoint.checkpoint.body;
  const root = Buffer.from(rootHash, "hex");

  const records: AuditRecord[] = [];
  for (const [i, entry] of (value.entries as unknown[]).entries()) {
    const checked = checkEntry(entry, treeSize, root);
    if (typeof checked === "string") return { ok: false, reason: checked, entry: i };
    const previous = records[i - 1];
    if (previous !== undefined && previous.seq >= checked.seq) {
      return {
        ok: false,
        reason: `entries are not sorted by seq without duplicates: seq ${checked.seq} follows seq ${previous.seq}`,
        entry: i,
      };
    }
    records.push(checked);
  }

  const coverage = checkChainCoverage(
    records,
    subject,
    options.establishes ?? establishesKeyVersion,
    options.issues ?? issuesCredential,
  );
  if (!coverage.ok) return coverage;
  return { ok: true, subject, keyId: checkpoint.keyId, checkpoint: checkpoint.checkpoint, records };
}

/**
 * Checks that the records prove the subject's whole chain. For a credential id, exactly one record
 * must issue it (`issues`), and each `keyId@version` of that record's chain, root first, must be
 * established (`establishes`) by a record before the issuance. The issuance's own key version, when
 * it names one, must be the chain's last element. For a key version (`keyId@N`) that no record
 * issues as a credential, the chain is followed from the subject's establishing record through each
 * record's parent (the first element of its chain) up to `root@N`. Never throws.
 */
export function checkChainCoverage(
  records: readonly AuditRecord[],
  subject: string,
  establishes: EstablishesPredicate,
  issues: IssuancePredicate = issuesCredential,
): ChainCoverage {
  const issuing = indexesWhere(records, (r) => r.credentialId === subject && safeCall(issues, r));
  if (issuing.length > 1) {
    return { ok: false, reason: `more than one entry issues ${subject}`, entry: issuing[1]! };
  }
  if (issuing.length === 1) return coverCredential(records, issuing[0]!, establishes);
  if (parseKeyRef(subject) !== null) return coverKeyVersion(records, subject, establishes);
  return { ok: false, reason: `no entry issues the subject ${subject}` };
}

function coverCredential(
  records: readonly AuditRecord[],
  issuingIndex: number,
  establishes: EstablishesPredicate,
): ChainCoverage {
  const issuance = records[issuingIndex]!;
  const chain = issuance.chain;
  const last = chain.at(-1);
  if (
    last !== undefined &&
    issuance.keyId !== null &&
    issuance.keyVersion !== null &&
    last !== `${issuance.keyId}@${issuance.keyVersion}`
  ) {
    return {
      ok: false,
      reason: `the issuance acted with ${issuance.keyId}@${issuance.keyVersion}, but its chain ends with ${last}`,
      entry: issuingIndex,
    };
  }
  for (const ref of chain) {
    const found = findEstablishing(records, ref, establishes, issuance.seq);
    if (found === null) {
      return {
        ok: false,
        reason: `no entry before the issuance establishes ${ref} from the subject's chain`,
        entry: issuingIndex,
      };
    }
  }
  return { ok: true, chain: [...chain], subjectEntry: issuingIndex };
}

function coverKeyVersion(
  records: readonly AuditRecord[],
  subject: string,
  establishes: EstablishesPredicate,
): ChainCoverage {
  const subjectEntry = findEstablishing(records, subject, establishes, Number.POSITIVE_INFINITY);
  if (subjectEntry === null)
    return { ok: false, reason: `no entry establishes the subject ${subject}` };

  const chain = [subject];
  let entry = subjectEntry;
  while (parseKeyRef(chain[0]!)?.keyId !== "root") {
    const record = records[entry]!;
    const parent = record.chain[0];
    if (parent === undefined || parent === chain[0] || record.chain.at(-1) !== chain[0]) {
      return {
        ok: false,
        reason: `the entry establishing ${chain[0]} does not name its parent version first and itself last in its chain`,
        entry,
      };
    }
    if (chain.length >= MAX_CHAIN_LENGTH) {
      return {
        ok: false,
        reason: `the chain of ${subject} is longer than ${MAX_CHAIN_LENGTH}`,
        entry,
      };
    }
    const next = findEstablishing(records, parent, establishes, record.seq);
    if (next === null) {
      return {
        ok: false,
        reason: `no entry before seq ${record.seq} establishes ${parent}`,
        entry,
      };
    }
    chain.unshift(parent);
    entry = next;
  }
  return { ok: true, chain, subjectEntry };
}

/** Returns the index of the first record before seq `before` that establishes `ref`, or null. */
function findEstablishing(
  records: readonly AuditRecord[],
  ref: string,
  establishes: EstablishesPredicate,
  before: number,
): number | null {
  const index = records.findIndex((r) => r.seq < before && safeCall(establishes, r, ref));
  return index === -1 ? null : index;
}

/** Returns the record of a proof entry, or a message saying what is wrong with it. */
function checkEntry(entry: unknown, treeSize: number, root: Buffer): AuditRecord | string {
  if (!isObject(entry)) return "the entry is not a JSON object";
  const fieldError = checkExactFields(entry, ENTRY_FIELDS, "entry");
  if (fieldError !== null) return fieldError;
  if (typeof entry.record !== "string") return "the entry's record is not a string";

  let record: AuditRecord;
  try {
    record = parseRecord(entry.record);
  } catch (error) {
    return `the entry's record is invalid: ${(error as Error).message}`;
  }
  // Hashing the text as given while showing its parsed form would let two differing texts (with
  // a duplicate member, say) pass as one record, so the text must be the canonical form.
  if (canonicalRecordJson(record) !== entry.record)
    return "the entry's record is not in canonical form";

  const { leafIndex, inclusion } = entry;
  if (leafIndex !== record.seq - 1) {
    return `leafIndex ${JSON.stringify(leafIndex)} is not seq - 1 for seq ${record.seq}`;
  }
  if (record.seq > treeSize) {
    return `seq ${record.seq} lies beyond the checkpoint's tree size ${treeSize}`;
  }
  if (!Array.isArray(inclusion) || !inclusion.every(isSha256Hex)) {
    return "the inclusion proof is not an array of 64-digit lowercase hex hashes";
  }
  const proof = inclusion.map((hash) => Buffer.from(hash, "hex"));
  const leaf = leafHashOfBytes(new TextEncoder().encode(entry.record));
  if (!verifyInclusion(leaf, record.seq - 1, treeSize, proof, root)) {
    return `record ${record.seq} is not included in the checkpoint's tree`;
  }
  return record;
}

function toRecord(record: AuditRecord | string, index: number): AuditRecord {
  if (typeof record !== "string") return record;
  const parsed = parseRecord(record);
  if (canonicalRecordJson(parsed) !== record) {
    throw invalidArgument(`records[${index}]`, record, "is not the record's canonical JSON");
  }
  return parsed;
}

function checkExactFields(
  value: Record<string, unknown>,
  fields: readonly string[],
  name: string,
): string | null {
  for (const field of fields) {
    if (!Object.hasOwn(value, field)) return `the ${name} lacks the field "${field}"`;
  }
  for (const field of Object.keys(value)) {
    if (!fields.includes(field)) return `the ${name} has an unknown field "${field}"`;
  }
  return null;
}

function indexesWhere<T>(items: readonly T[], predicate: (item: T) => boolean): number[] {
  const indexes: number[] = [];
  items.forEach((item, i) => {
    if (predicate(item)) indexes.push(i);
  });
  return indexes;
}

/** Calls a caller's predicate so that a throwing predicate counts as false, keeping "never throws". */
function safeCall<Args extends unknown[]>(
  predicate: (...args: Args) => boolean,
  ...args: Args
): boolean {
  try {
    return predicate(...args) === true;
  } catch {
    return false;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
