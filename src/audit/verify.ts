import type { JsonWebKey } from "node:crypto";

import canonicalize from "canonicalize";

import { verifyCheckpoint, type SignedCheckpoint } from "./checkpoint.ts";
import type { AuditLogReader, StoredCheckpoint, StoredRecord } from "./log-store.ts";
import { MerkleFrontier } from "./merkle.ts";
import { canonicalRecordBytes, GENESIS_HASH, leafHashOfBytes, parseRecord } from "./record.ts";

/** The kinds of damage verification names; a stable contract of `arbor audit verify --json`. */
export type DamageKind =
  "modified" | "deleted" | "reordered" | "truncated" | "checkpoint_missing" | "checkpoint_forged";

export interface Damage {
  kind: DamageKind;
  /** The first sequence number at which the damage shows. */
  seq: number;
  message: string;
}

export interface VerifyReport {
  ok: boolean;
  /** Records checked, and the first and last sequence numbers seen. */
  records: number;
  firstSeq: number | null;
  lastSeq: number | null;
  /** Checkpoints whose signature and root hash were checked against the records. */
  checkpointsVerified: number;
  /** The newest checkpoint covering the log, if any. */
  latestCheckpoint: number | null;
  /** Records 1 to this number were pruned by retention; null when none were. */
  prunedThrough: number | null;
  /** Records after the newest checkpoint: chained, but not yet covered by a signature. */
  unsignedRecords: number;
  damage: Damage | null;
}

export interface VerifyOptions {
  /** Checkpoints kept outside the database (exported), which catch truncation with deletion. */
  externalCheckpoints?: SignedCheckpoint[];
  /** Records read per page. */
  pageSize?: number;
}

const PAGE = 5_000;

/**
 * Verifies the audit log end to end: every record's hash over its canonical bytes, the hash
 * chain, gapless sequence numbers, and every checkpoint (signature under `publicKey`, root hash
 * recomputed from the records, the checkpoints' own chain of tree sizes). Stops at the first
 * damage and names its sequence number and kind.
 */
export async function verifyAuditLog(
  reader: AuditLogReader,
  publicKey: JsonWebKey,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const pageSize = options.pageSize ?? PAGE;
  const report: VerifyReport = {
    ok: true,
    records: 0,
    firstSeq: null,
    lastSeq: null,
    checkpointsVerified: 0,
    latestCheckpoint: null,
    prunedThrough: null,
    unsignedRecords: 0,
    damage: null,
  };
  const fail = (kind: DamageKind, seq: number, message: string): VerifyReport => {
    report.ok = false;
    report.damage = { kind, seq, message };
    return report;
  };

  const anchor = await reader.anchor();
  const stored = await reader.checkpoints();

  // Checkpoints by tree size: stored ones first; an external one of the same size must agree.
  const checkpoints = new Map<number, { signed: SignedCheckpoint; source: string }>();
  for (const row of stored) {
    const signed = checkStoredCheckpoint(row, publicKey);
    if (signed === null) {
      return fail(
        "checkpoint_forged",
        row.treeSize,
        `checkpoint at tree size ${row.treeSize} does not carry a valid signature`,
      );
    }
    checkpoints.set(row.treeSize, { signed, source: "stored" });
  }
  // The stored checkpoints chain by prevTreeSize; a missing link is a deleted checkpoint.
  let previousSize = 0;
  for (const row of stored) {
    if (row.prevTreeSize !== previousSize && !(anchor !== null && previousSize === 0)) {
      return fail(
        "checkpoint_missing",
        row.prevTreeSize,
        `checkpoint at tree size ${row.treeSize} follows one at ${row.prevTreeSize}, which is missing`,
      );
    }
    previousSize = row.treeSize;
  }
  /**
   * Reads the stored checkpoints again for those signed since the first read, when a record
   * announces one that was not known: a live server signs checkpoints while the log is read.
   * Adds those below `beforeSeq` once their signature and link to the one before are checked, and
   * returns the damage if one fails.
   */
  const learnCheckpoints = async (beforeSeq: number): Promise<Damage | null> => {
    for (const row of await reader.checkpoints()) {
      if (checkpoints.has(row.treeSize) || row.treeSize <= previousSize) continue;
      if (row.treeSize >= beforeSeq) break;
      const signed = checkStoredCheckpoint(row, publicKey);
      if (signed === null) {
        return {
          kind: "checkpoint_forged",
          seq: row.treeSize,
          message: `checkpoint at tree size ${row.treeSize} does not carry a valid signature`,
        };
      }
      if (row.prevTreeSize !== previousSize) {
        return {
          kind: "checkpoint_missing",
          seq: row.prevTreeSize,
          message: `checkpoint at tree size ${row.treeSize} follows one at ${row.prevTreeSize}, which is missing`,
        };
      }
      checkpoints.set(row.treeSize, { signed, source: "stored" });
      previousSize = row.treeSize;
      // NOTE: the root of a checkpoint learned this way is recomputed only when it covers exactly
      // the records read so far. Otherwise its tree size has passed, and the next verification,
      // which reads the checkpoint at the start, checks its root.
      if (row.treeSize === frontier.size) {
        if (Buffer.from(frontier.root()).toString("hex") !== row.rootHash) {
          return {
            kind: "modified",
            seq: row.treeSize,
            message: `records 1-${row.treeSize} do not match the stored checkpoint signed over them`,
          };
        }
        report.checkpointsVerified++;
        report.latestCheckpoint = row.treeSize;
      }
    }
    return null;
  };

  for (const external of options.externalCheckpoints ?? []) {
    if (!verifyCheckpoint(external, publicKey)) {
      return fail(
        "checkpoint_forged",
        external.body.treeSize,
        `the external checkpoint at tree size ${external.body.treeSize} does not carry a valid signature`,
      );
    }
    const known = checkpoints.get(external.body.treeSize);
    if (known !== undefined && known.signed.body.rootHash !== external.body.rootHash) {
      return fail(
        "modified",
        external.body.treeSize,
        `the stored checkpoint at tree size ${external.body.treeSize} differs from the external one`,
      );
    }
    if (known === undefined)
      checkpoints.set(external.body.treeSize, { signed: external, source: "external" });
  }

  let frontier = new MerkleFrontier();
  let prevHash = GENESIS_HASH;
  let expected = 1;
  if (anchor !== null) {
    try {
      frontier = MerkleFrontier.fromJSON(JSON.parse(anchor.frontier));
    } catch {
      return fail("modified", anchor.prunedThrough, "the retention anchor cannot be read");
    }
    prevHash = anchor.lastHash;
    expected = anchor.prunedThrough + 1;
    if (frontier.size !== anchor.prunedThrough) {
      return fail("modified", anchor.prunedThrough, "the retention anchor is inconsistent");
    }
    const cover = checkpoints.get(anchor.prunedThrough);
    if (cover === undefined) {
      return fail(
        "checkpoint_missing",
        anchor.prunedThrough,
        `no checkpoint covers the records pruned through ${anchor.prunedThrough}`,
      );
    }
    if (Buffer.from(frontier.root()).toString("hex") !== cover.signed.body.rootHash) {
      return fail(
        "modified",
        anchor.prunedThrough,
        "the retention anchor does not match its checkpoint",
      );
    }
    report.checkpointsVerified++;
  }

  // Records written after verification starts are left to the next run, so a busy live log
  // cannot keep verification reading forever.
  const stopAt = reader.latestSeq === undefined ? Infinity : await reader.latestSeq();
  let prunedRecorded = false;
  for (;;) {
    const page = await reader.records(expected - 1, pageSize);
    if (page.length === 0) break;
    // A short page is the end of the log at the time of reading. Stopping there keeps a live
    // log's new records from holding verification in a loop.
    const lastPage = page.length < pageSize;
    let pastStop = false;
    for (const row of page) {
      if (row.seq > stopAt) {
        pastStop = true;
        break;
      }
      let damage = checkRecord(row, expected, prevHash, checkpoints);
      if (damage?.kind === "checkpoint_missing" && damage.seq === row.seq) {
        damage =
          (await learnCheckpoints(row.seq)) ?? checkRecord(row, expected, prevHash, checkpoints);
      }
      if (damage !== null) return fail(damage.kind, damage.seq, damage.message);

      const hash = row.hash!;
      frontier.append(Buffer.from(hash, "hex"));
      prevHash = hash;
      report.records++;
      if (row.type === "audit.pruned" && anchor !== null) {
        const through = parseRecord(row.record!).details.prunedThrough;
        if (through === anchor.prunedThrough) prunedRecorded = true;
      }
      report.firstSeq ??= row.seq;
      report.lastSeq = row.seq;
      expected = row.seq + 1;

      const cover = checkpoints.get(frontier.size);
      if (cover !== undefined) {
        if (Buffer.from(frontier.root()).toString("hex") !== cover.signed.body.rootHash) {
          return fail(
            "modified",
            frontier.size,
            `records 1-${frontier.size} do not match the ${cover.source} checkpoint signed over them`,
          );
        }
        report.checkpointsVerified++;
        report.latestCheckpoint = frontier.size;
      }
    }
    if (lastPage || pastStop || expected - 1 >= stopAt) break;
  }

  const lastSeq = expected - 1;
  if (anchor !== null) {
    report.prunedThrough = anchor.prunedThrough;
    // Retention writes `audit.pruned` in the transaction that deletes the records; an anchor
    // without it was made by hand, around Arbor.
    if (!prunedRecorded) {
      return fail(
        "deleted",
        1,
        `records 1-${anchor.prunedThrough} were removed without the audit.pruned record that retention writes`,
      );
    }
  }
  report.unsignedRecords = lastSeq - (report.latestCheckpoint ?? anchor?.prunedThrough ?? 0);
  for (const [size, cover] of checkpoints) {
    if (size > lastSeq) {
      return fail(
        "truncated",
        lastSeq + 1,
        `the log ends at ${lastSeq}, but the ${cover.source} checkpoint at tree size ${size} covers more`,
      );
    }
  }
  return report;
}

function checkRecord(
  row: StoredRecord,
  expected: number,
  prevHash: string,
  checkpoints: Map<number, { signed: SignedCheckpoint }>,
): Damage | null {
  if (row.record === null || row.hash === null) {
    return { kind: "modified", seq: row.seq, message: `record ${row.seq} lost its chained form` };
  }
  let record;
  try {
    record = parseRecord(row.record);
  } catch {
    return { kind: "modified", seq: row.seq, message: `record ${row.seq} is not a valid record` };
  }
  if (record.seq !== row.seq) {
    return {
      kind: "reordered",
      seq: row.seq,
      message: `the record stored at ${row.seq} was written as ${record.seq}`,
    };
  }
  if (row.seq > expected) {
    return {
      kind: "deleted",
      seq: expected,
      message: `records ${expected}-${row.seq - 1} are missing`,
    };
  }
  const bytes = Buffer.from(row.record, "utf8");
  const canonical = Buffer.from(canonicalRecordBytes(record));
  const hash = Buffer.from(leafHashOfBytes(bytes)).toString("hex");
  if (!canonical.equals(bytes) || hash !== row.hash) {
    return { kind: "modified", seq: row.seq, message: `record ${row.seq} does not match its hash` };
  }
  if (record.prevHash !== prevHash || row.prevHash !== prevHash) {
    return {
      kind: "modified",
      seq: row.seq,
      message: `record ${row.seq} does not follow from record ${row.seq - 1}`,
    };
  }
  if (!columnsMatch(row, record)) {
    return {
      kind: "modified",
      seq: row.seq,
      message: `the indexed columns of record ${row.seq} differ from the record`,
    };
  }
  // A checkpoint's own record carries its tree size; an `audit.checkpoint` record without one is
  // a request that found nothing new to sign, and announces nothing.
  if (record.type === "audit.checkpoint" && Object.hasOwn(record.details, "treeSize")) {
    const size = record.details.treeSize;
    if (typeof size !== "number" || !checkpoints.has(size)) {
      return {
        kind: "checkpoint_missing",
        seq: row.seq,
        message: `record ${row.seq} announces a checkpoint at tree size ${String(size)}, which is missing`,
      };
    }
    if (checkpoints.get(size)!.signed.body.rootHash !== record.details.rootHash) {
      return {
        kind: "checkpoint_forged",
        seq: row.seq,
        message: `the checkpoint at tree size ${size} differs from the one record ${row.seq} announced`,
      };
    }
  }
  return null;
}

function columnsMatch(row: StoredRecord, record: ReturnType<typeof parseRecord>): boolean {
  return (
    row.type === record.type &&
    row.outcome === record.outcome &&
    row.at === record.at &&
    row.principalType === record.principal.type &&
    row.principalId === record.principal.id &&
    row.keyId === record.keyId &&
    row.keyVersion === record.keyVersion &&
    row.credentialId === record.credentialId &&
    row.sourceAddress === record.sourceAddress &&
    row.requestId === record.requestId &&
    row.errorCode === record.errorCode &&
    sameJson(row.chain, record.chain) &&
    sameJson(row.details, record.details)
  );
}

/** True when the JSON text encodes the same value; key order does not matter (RFC 8785). */
function sameJson(text: string, value: unknown): boolean {
  try {
    return canonicalize(JSON.parse(text)) === canonicalize(value);
  } catch {
    return false;
  }
}

/** Returns the signed checkpoint of a stored row when it matches the row and its signature verifies. */
function checkStoredCheckpoint(
  row: StoredCheckpoint,
  publicKey: JsonWebKey,
): SignedCheckpoint | null {
  const signed = parseSigned(row.signed);
  if (
    signed === null ||
    signed.body.treeSize !== row.treeSize ||
    signed.body.rootHash !== row.rootHash ||
    signed.body.prevTreeSize !== row.prevTreeSize ||
    !verifyCheckpoint(signed, publicKey)
  ) {
    return null;
  }
  return signed;
}

function parseSigned(json: string): SignedCheckpoint | null {
  try {
    return JSON.parse(json) as SignedCheckpoint;
  } catch {
    return null;
  }
}
