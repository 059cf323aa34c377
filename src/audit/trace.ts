import { OPAQUE_ID_PATTERN } from "../crypto/index.ts";
import { ArborError } from "../errors/index.ts";
import type { SignedCheckpoint } from "./checkpoint.ts";
import type { AuditLogStore, StoredRecord } from "./log-store.ts";
import { MerkleFrontier } from "./merkle.ts";
import {
  createProofFile,
  establishesKeyVersion,
  ISSUING_EVENT_TYPES,
  type ProofFile,
} from "./proof.ts";
import { parseRecord, type AuditRecord } from "./record.ts";

/** One step of a trace, root first: the record that established a version or issued a credential. */
export interface TraceStep {
  /** `root@N`, `key_…@N`, or the credential id. */
  ref: string;
  kind: "root" | "key" | "credential";
  /** Sequence number of the establishing record; null if the log contains none (see `note`). */
  seq: number | null;
  type: string | null;
  at: number | null;
  principal: string | null;
  path: string | null;
  note: string | null;
}

export interface Trace {
  subject: string;
  steps: TraceStep[];
  /** Every other record naming the credential (introspection, revocation, decryptions). */
  uses: { seq: number; type: string; outcome: string; at: number }[];
}

// The rules for issuing and establishing records are the ones proofs are checked by, so a trace
// and its proof agree.
const ROOT_TYPES = ["sys.initialized", "sys.root_rotated"];
const KEY_TYPES = ["key.created", "key.rotated"];
const KEY_REF = /^(root|key_[a-z2-7]{26})@([1-9][0-9]{0,9})$/;

export const establishes = establishesKeyVersion;

/**
 * Follows a credential id (token id, data key id) or a key version (`key_…@N`, `root@N`) to the
 * root: the record that issued the credential, then the record that established each version in
 * its chain. Each step names the sequence number that proves it.
 */
export async function traceSubject(store: AuditLogStore, subject: string): Promise<Trace> {
  if (!OPAQUE_ID_PATTERN.test(subject) && !KEY_REF.test(subject)) {
    // The value is not echoed: a caller may paste a token or a secret here by mistake.
    throw new ArborError(
      "INVALID_ARGUMENT",
      `invalid id: expected a credential id (such as dk_… or a token's jti claim) or a key version such as key_…@3 or root@1${subject.split(".").length === 3 ? "; for an access token, pass its jti claim, not the token" : ""}`,
      { parameter: "id" },
    );
  }
  let chain: string[];
  const steps: TraceStep[] = [];
  let uses: Trace["uses"] = [];

  if (KEY_REF.test(subject)) {
    chain = await chainOfVersion(store, subject);
  } else {
    const records = await store.byCredential(subject);
    const issuing = records.find(
      (row) => ISSUING_EVENT_TYPES.has(row.type) && row.outcome === "success",
    );
    if (issuing === undefined) {
      throw new ArborError(
        "NOT_FOUND",
        `the audit log holds no issuance of ${subject}; pass a token id, a data key id or a key version such as key_…@3`,
        { parameter: "id", value: subject },
      );
    }
    const record = parseRecord(issuing.record ?? "");
    chain = record.chain;
    uses = records
      .filter((row) => row.seq !== issuing.seq)
      .map((row) => ({ seq: row.seq, type: row.type, outcome: row.outcome, at: row.at }));
    steps.push(stepOf(subject, "credential", issuing, record));
  }

  const anchor = await store.anchor();
  const versionSteps: TraceStep[] = [];
  for (const ref of chain) {
    versionSteps.push(await establishingStep(store, ref, anchor?.prunedThrough ?? null));
  }
  if (KEY_REF.test(subject) && versionSteps.at(-1)?.seq === null && anchor === null) {
    throw new ArborError(
      "NOT_FOUND",
      `no audit record creates ${subject}: the key version was not found`,
      {
        parameter: "id",
        value: subject,
      },
    );
  }
  return { subject, steps: [...versionSteps, ...steps], uses };
}

/** The chain of a key version, from the parents its establishing records name. */
async function chainOfVersion(store: AuditLogStore, ref: string): Promise<string[]> {
  const chain = [ref];
  let current = ref;
  // A tree is at most root, master and service deep; the bound stops a damaged log from looping.
  for (let depth = 0; depth < 8 && !current.startsWith("root@"); depth++) {
    const row = await findEstablishing(store, current);
    if (row === null) break;
    const parent = parseRecord(row.record ?? "").chain[0];
    if (parent === undefined || parent === current) break;
    chain.unshift(parent);
    current = parent;
  }
  return chain;
}

async function findEstablishing(store: AuditLogStore, ref: string): Promise<StoredRecord | null> {
  const match = KEY_REF.exec(ref);
  if (match === null) return null;
  const [, keyId, version] = match;
  const candidates =
    keyId === "root"
      ? await store.byType(ROOT_TYPES, 1_000)
      : await store.byKeyVersion(keyId!, Number(version), KEY_TYPES);
  for (const row of candidates) {
    if (row.record !== null && establishes(parseRecord(row.record), ref)) return row;
  }
  return null;
}

async function establishingStep(
  store: AuditLogStore,
  ref: string,
  prunedThrough: number | null,
): Promise<TraceStep> {
  const kind = ref.startsWith("root@") ? "root" : "key";
  const row = await findEstablishing(store, ref);
  if (row === null && prunedThrough !== null) {
    return {
      ref,
      kind,
      seq: null,
      type: null,
      at: null,
      principal: null,
      path: null,
      note: `no record: retention pruned records 1-${prunedThrough}, which likely held it`,
    };
  }
  if (row === null) {
    return {
      ref,
      kind,
      seq: null,
      type: null,
      at: null,
      principal: null,
      path: null,
      note:
        kind === "root"
          ? "no record: this root version was created before the audit log recorded it, or outside the server"
          : "no record: this version was created before the audit log recorded key changes, or the record was pruned",
    };
  }
  return stepOf(ref, kind, row, parseRecord(row.record ?? ""));
}

function stepOf(
  ref: string,
  kind: TraceStep["kind"],
  row: StoredRecord,
  record: AuditRecord,
): TraceStep {
  const path = record.details.path;
  return {
    ref,
    kind,
    seq: row.seq,
    type: row.type,
    at: row.at,
    principal: `${record.principal.type}:${record.principal.id}`,
    path: typeof path === "string" ? path : null,
    note: null,
  };
}

/**
 * Builds the proof of a trace against the newest checkpoint that covers all of its records. Only
 * the trace's own records and sibling hashes are included, so the proof reveals no other record.
 */
export async function buildProof(store: AuditLogStore, trace: Trace): Promise<ProofFile> {
  const seqs = trace.steps.flatMap((step) => (step.seq === null ? [] : [step.seq]));
  const missing = trace.steps.find((step) => step.seq === null);
  if (missing !== undefined) {
    throw new ArborError(
      "AUDIT_PROOF_UNAVAILABLE",
      `no proof can be built for ${trace.subject}: ${missing.ref} has ${missing.note ?? "no record"}`,
      { parameter: "id", value: trace.subject },
    );
  }
  const highest = Math.max(...seqs);
  const latest = await store.latestCheckpoint();
  if (latest === null || latest.treeSize < highest) {
    throw new ArborError(
      "AUDIT_PROOF_UNAVAILABLE",
      `no signed checkpoint covers record ${highest} yet; wait for the next checkpoint or run \`arbor audit checkpoint\``,
      { parameter: "id", value: trace.subject },
    );
  }
  const anchor = await store.anchor();
  const prunedThrough = anchor?.prunedThrough ?? 0;
  if (Math.min(...seqs) <= prunedThrough) {
    throw new ArborError(
      "AUDIT_PROOF_UNAVAILABLE",
      `records up to ${prunedThrough} were pruned by retention, so ${trace.subject} can no longer be proven`,
      { parameter: "id", value: trace.subject },
    );
  }

  // The pruned prefix is represented by its frontier; leaves are read from the first kept record.
  const pruned = anchor === null ? undefined : MerkleFrontier.fromJSON(JSON.parse(anchor.frontier));
  const leaves = (await store.hashes(prunedThrough, latest.treeSize)).map((row) =>
    Buffer.from(row.hash, "hex"),
  );
  const getLeaf = (index: number): Uint8Array => {
    const leaf = leaves[index - prunedThrough];
    if (leaf === undefined) throw new Error(`audit record ${index + 1} is missing`);
    return leaf;
  };
  const rows = await store.recordsBySeq([...new Set(seqs)].sort((a, b) => a - b));
  return createProofFile({
    checkpoint: JSON.parse(latest.signed) as SignedCheckpoint,
    records: rows.map((row) => row.record ?? ""),
    subject: trace.subject,
    getLeaf,
    ...(pruned === undefined ? {} : { pruned }),
  });
}
