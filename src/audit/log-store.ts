import type { Kysely } from "kysely";

import type { Database } from "../storage/schema.ts";
import type { CursorStore, ExportSource } from "./exporters/types.ts";

/** One stored record as verification reads it: the indexed columns and the chained record. */
export interface StoredRecord {
  seq: number;
  prevHash: string | null;
  hash: string | null;
  /** Canonical JSON; null only if the row was damaged. */
  record: string | null;
  type: string;
  outcome: string;
  at: number;
  principalType: string;
  principalId: string;
  keyId: string | null;
  keyVersion: number | null;
  credentialId: string | null;
  sourceAddress: string | null;
  requestId: string | null;
  errorCode: string | null;
  /** The `chain` and `details` columns as stored (JSON text). */
  chain: string;
  details: string;
}

export interface StoredCheckpoint {
  treeSize: number;
  prevTreeSize: number;
  rootHash: string;
  at: number;
  /** `{body, signature}` JSON as signed and exported. */
  signed: string;
}

export interface StoredAnchor {
  prunedThrough: number;
  lastHash: string;
  /** JSON of the Merkle frontier over records 1..prunedThrough. */
  frontier: string;
  at: number;
}

/** Reads of the audit log that verification needs; the SQL store and the HTTP client provide them. */
export interface AuditLogReader {
  records(afterSeq: number, limit: number): Promise<StoredRecord[]>;
  checkpoints(): Promise<StoredCheckpoint[]>;
  anchor(): Promise<StoredAnchor | null>;
  /** Returns the newest sequence number (0 for an empty log); verification stops there. */
  latestSeq?(): Promise<number>;
}

/** Reads of the audit tables, shared by the checkpointer, verification, trace and exporters. */
export function createAuditLogStore(db: Kysely<Database>) {
  return {
    async records(afterSeq: number, limit: number): Promise<StoredRecord[]> {
      const rows = await db
        .selectFrom("audit_events")
        .select([
          "seq",
          "prev_hash",
          "hash",
          "record",
          "type",
          "outcome",
          "at",
          "principal_type",
          "principal_id",
          "key_id",
          "key_version",
          "credential_id",
          "source_address",
          "request_id",
          "error_code",
          "chain",
          "details",
        ])
        .where("seq", ">", afterSeq)
        .orderBy("seq")
        .limit(limit)
        .execute();
      return rows.map((row) => ({
        seq: Number(row.seq),
        prevHash: row.prev_hash,
        hash: row.hash,
        record: row.record,
        type: row.type,
        outcome: row.outcome,
        at: Number(row.at),
        principalType: row.principal_type,
        principalId: row.principal_id,
        keyId: row.key_id,
        keyVersion: row.key_version,
        credentialId: row.credential_id,
        sourceAddress: row.source_address,
        requestId: row.request_id,
        errorCode: row.error_code,
        chain: row.chain,
        details: row.details,
      }));
    },

    async recordsBySeq(seqs: number[]): Promise<StoredRecord[]> {
      if (seqs.length === 0) return [];
      const found: StoredRecord[] = [];
      for (const seq of seqs) {
        const [row] = await this.records(seq - 1, 1);
        if (row !== undefined && row.seq === seq) found.push(row);
      }
      return found;
    },

    /** Leaf hashes of records after `afterSeq` up to `throughSeq`, in order. */
    async hashes(afterSeq: number, throughSeq: number): Promise<{ seq: number; hash: string }[]> {
      const rows = await db
        .selectFrom("audit_events")
        .select(["seq", "hash"])
        .where("seq", ">", afterSeq)
        .where("seq", "<=", throughSeq)
        .orderBy("seq")
        .execute();
      return rows.map((row) => ({ seq: Number(row.seq), hash: row.hash ?? "" }));
    },

    async checkpoints(): Promise<StoredCheckpoint[]> {
      const rows = await db
        .selectFrom("audit_checkpoints")
        .selectAll()
        .orderBy("tree_size")
        .execute();
      return rows.map((row) => ({
        treeSize: Number(row.tree_size),
        prevTreeSize: Number(row.prev_tree_size),
        rootHash: row.root_hash,
        at: Number(row.at),
        signed: row.signed,
      }));
    },

    async latestCheckpoint(): Promise<StoredCheckpoint | null> {
      const row = await db
        .selectFrom("audit_checkpoints")
        .selectAll()
        .orderBy("tree_size", "desc")
        .limit(1)
        .executeTakeFirst();
      if (row === undefined) return null;
      return {
        treeSize: Number(row.tree_size),
        prevTreeSize: Number(row.prev_tree_size),
        rootHash: row.root_hash,
        at: Number(row.at),
        signed: row.signed,
      };
    },

    async latestSeq(): Promise<number> {
      const row = await db
        .selectFrom("audit_events")
        .select((eb) => eb.fn.max("seq").as("seq"))
        .executeTakeFirst();
      return row?.seq === null || row?.seq === undefined ? 0 : Number(row.seq);
    },

    async anchor(): Promise<StoredAnchor | null> {
      const row = await db.selectFrom("audit_anchor").selectAll().executeTakeFirst();
      if (row === undefined) return null;
      return {
        prunedThrough: Number(row.pruned_through),
        lastHash: row.last_hash,
        frontier: row.frontier,
        at: Number(row.at),
      };
    },

    /** Records naming a credential id (the issuance and any later use of it). */
    async byCredential(credentialId: string): Promise<StoredRecord[]> {
      const seqs = await db
        .selectFrom("audit_events")
        .select("seq")
        .where("credential_id", "=", credentialId)
        .orderBy("seq")
        .execute();
      return this.recordsBySeq(seqs.map((row) => Number(row.seq)));
    },

    /** Records about one key version, optionally of given types. */
    async byKeyVersion(keyId: string, version: number, types: string[]): Promise<StoredRecord[]> {
      let query = db
        .selectFrom("audit_events")
        .select("seq")
        .where("key_id", "=", keyId)
        .where("key_version", "=", version);
      if (types.length > 0) query = query.where("type", "in", types);
      const seqs = await query.orderBy("seq").execute();
      return this.recordsBySeq(seqs.map((row) => Number(row.seq)));
    },

    /** Records of given types, newest first, at most `limit`. */
    async byType(types: string[], limit: number): Promise<StoredRecord[]> {
      const seqs = await db
        .selectFrom("audit_events")
        .select("seq")
        .where("type", "in", types)
        .orderBy("seq", "desc")
        .limit(limit)
        .execute();
      return this.recordsBySeq(seqs.map((row) => Number(row.seq)));
    },

    async cursor(exporter: string): Promise<number> {
      const row = await db
        .selectFrom("audit_export_cursors")
        .select("seq")
        .where("exporter", "=", exporter)
        .executeTakeFirst();
      return row === undefined ? 0 : Number(row.seq);
    },

    /** Moves the exporter's cursor forward; never back. */
    async setCursor(exporter: string, seq: number, now: number): Promise<void> {
      await db
        .insertInto("audit_export_cursors")
        .values({ exporter, seq, updated_at: now })
        .onConflict((oc) =>
          oc
            .column("exporter")
            .doUpdateSet({ seq, updated_at: now })
            .where("audit_export_cursors.seq", "<", seq),
        )
        .execute();
    },
  };
}

export type AuditLogStore = ReturnType<typeof createAuditLogStore>;

/**
 * The exporters' view of the log: records in sequence order as stored. A damaged row (no record
 * or hash) is left out, so the exporter sees a gap and counts it instead of shipping a guess.
 */
export function exportSourceOf(store: AuditLogStore, db: Kysely<Database>): ExportSource {
  return {
    async read(afterSeq, limit) {
      const rows = await store.records(afterSeq, limit);
      return rows.flatMap((row) =>
        row.record === null || row.hash === null
          ? []
          : [{ seq: row.seq, hash: row.hash, json: row.record, type: row.type, at: row.at }],
      );
    },
    async latestSeq() {
      const row = await db
        .selectFrom("audit_events")
        .select((eb) => eb.fn.max("seq").as("seq"))
        .executeTakeFirst();
      return row?.seq === null || row?.seq === undefined ? 0 : Number(row.seq);
    },
  };
}

/** Exporter cursors in `audit_export_cursors`; a cursor only ever moves forward. */
export function cursorStoreOf(store: AuditLogStore, clock: { now(): number }): CursorStore {
  return {
    get: (exporter) => store.cursor(exporter),
    set: (exporter, seq) => store.setCursor(exporter, seq, clock.now()),
  };
}
