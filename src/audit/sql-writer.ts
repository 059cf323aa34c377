import type { Insertable, Transaction } from "kysely";

import { ArborError } from "../errors/index.ts";
import type {
  AuditEventsTable,
  Database,
  Executor,
  IssuanceKind,
  IssuancesTable,
} from "../storage/schema.ts";
import type { GroupCommitter } from "./group-commit.ts";
import { buildCanonicalRecord, GENESIS_HASH, leafHashOfBytes, type AuditRecord } from "./record.ts";
import { redactSecrets } from "./redact.ts";
import type { AuditEvent, AuditWriter } from "./types.ts";

export interface SqlAuditWriter extends AuditWriter {
  /** Writes the event inside an open write transaction, for state changes that carry their event. */
  writeInTransaction(trx: Transaction<Database>, event: AuditEvent): Promise<void>;
}

export interface SqlAuditWriterOptions {
  /** Called after each group commit that wrote events: wakes exporters and the checkpointer. */
  onCommitted?: () => void;
  /** Called once when the newest records were removed or changed under the writer. */
  onTamper?: (message: string) => void;
}

/**
 * The durable audit writer over the `audit_events` table. `write` is group-committed: it resolves
 * once the event's transaction has committed (fsynced), and rejects with AUDIT_UNAVAILABLE when the
 * store cannot take it, so the caller hands out nothing.
 */
export function createSqlAuditWriter(
  committer: GroupCommitter,
  options: SqlAuditWriterOptions = {},
): SqlAuditWriter {
  // The newest record this writer committed. Records are only ever appended, so a table whose
  // newest record is older, or differs at the same sequence number, was changed outside Arbor:
  // the writer then refuses every write (fails closed) instead of filling the gap.
  let head: ChainTail | null = null;
  let tampered: string | null = null;

  function checkHead(found: ChainTail): void {
    if (tampered === null && head !== null) {
      if (found.seq < head.seq || (found.seq === head.seq && found.hash !== head.hash)) {
        tampered =
          `the newest audit records were removed or changed outside Arbor: this server wrote record ` +
          `${head.seq}, and the log now ends at ${found.seq}${found.seq === head.seq ? " with another hash" : ""}. ` +
          "No audit record is written until the server restarts; run `arbor audit verify`";
        options.onTamper?.(tampered);
      }
    }
    if (tampered !== null) throw new Error(tampered);
  }

  return {
    async write(event) {
      // Checked before queueing, so a malformed issuance event fails alone instead of failing the batch it would join.
      requireIssuanceFields(event);
      let batch: Transaction<Database> | undefined;
      try {
        // Rows are staged per event and inserted together when the batch is complete.
        await committer.submit((trx) => {
          batch = trx;
          return stageEvent(trx, event, checkHead);
        }, insertStagedEvents);
      } catch (error) {
        throw auditUnavailable(error);
      }
      const committed = batch === undefined ? undefined : tails.get(batch);
      if (committed !== undefined && (head === null || committed.seq > head.seq)) head = committed;
      options.onCommitted?.();
    },
    async writeInTransaction(trx, event) {
      // The caller's transaction rolls back with the event, and the request gets 503
      // AUDIT_UNAVAILABLE like one whose group-committed event failed, not 500.
      try {
        await insertEvent(trx, event);
      } catch (error) {
        throw auditUnavailable(error);
      }
    },
  };
}

export interface ChainTail {
  seq: number;
  hash: string;
}

/**
 * The last record of the chain as seen inside each open transaction. The first event of a
 * transaction reads it from the table; later events in the same transaction (a group commit
 * batch) continue from memory. Keyed by the transaction object, so it dies with the transaction
 * and a rolled-back batch leaves nothing behind.
 */
const tails = new WeakMap<Transaction<Database>, ChainTail>();

/**
 * Appends the event to the chain: the next gapless sequence number, the previous record's hash,
 * and the record's own hash. Must run inside a write transaction: on SQLite `BEGIN IMMEDIATE`
 * holds the write lock from the first statement, so reading the tail and appending cannot
 * interleave with another writer and sequence order is commit order.
 *
 * For an issuance it also records the credential, so the record and its audit event are durable
 * together or not at all.
 */
export async function insertEvent(trx: Transaction<Database>, input: AuditEvent): Promise<void> {
  await stageEvent(trx, input);
  await insertStagedEvents(trx);
}

/** Rows of chained events that are computed but not yet inserted, per transaction. */
interface StagedRows {
  events: Insertable<AuditEventsTable>[];
  issuances: Insertable<IssuancesTable>[];
}

const staged = new WeakMap<Transaction<Database>, StagedRows>();

/**
 * Rows per insert statement. Each distinct row count is another SQL text in the SQLite statement
 * cache, so the count is capped. A batch of n events takes ceil(n / 16) statements per table.
 */
const ROWS_PER_INSERT = 16;

/**
 * Chains the event as {@link insertEvent} does, but only stages its rows. They are inserted by
 * {@link insertStagedEvents}, which must run in the same transaction before it commits. The chain
 * tail advances at once, so the next event staged in the transaction follows this one.
 */
async function stageEvent(
  trx: Transaction<Database>,
  input: AuditEvent,
  checkTail?: (tail: ChainTail) => void,
): Promise<void> {
  if (!trx.isTransaction) {
    throw new Error("audit events are chained inside a write transaction; none is open");
  }
  // A secret a caller pasted where an id belongs never reaches the permanent log.
  const event = redactSecrets(input);
  const kind = requireIssuanceFields(event);
  let tail = tails.get(trx);
  if (tail === undefined) {
    tail = await readTail(trx);
    checkTail?.(tail);
  }
  const { record, canonical, hash } = chainRecord(event, tail);

  let rows = staged.get(trx);
  if (rows === undefined) {
    rows = { events: [], issuances: [] };
    staged.set(trx, rows);
  }
  rows.events.push(toRow(event, record.seq, tail.hash, hash, canonical));
  tails.set(trx, { seq: record.seq, hash });

  if (
    kind === null ||
    event.credentialId === null ||
    event.keyId === null ||
    event.keyVersion === null
  )
    return;
  const expiresAt = event.details.expiresAt;
  rows.issuances.push({
    id: event.credentialId,
    kind,
    key_id: event.keyId,
    key_version: event.keyVersion,
    principal: `${event.principal.type}:${event.principal.id}`,
    issued_at: event.at,
    expires_at: typeof expiresAt === "number" ? expiresAt : null,
    revoked_at: null,
  });
}

/** Inserts the rows staged in the transaction, up to ROWS_PER_INSERT per statement. */
async function insertStagedEvents(trx: Transaction<Database>): Promise<void> {
  const rows = staged.get(trx);
  if (rows === undefined) return;
  staged.delete(trx);
  for (let start = 0; start < rows.events.length; start += ROWS_PER_INSERT) {
    const chunk = rows.events.slice(start, start + ROWS_PER_INSERT);
    await trx.insertInto("audit_events").values(chunk).execute();
  }
  for (let start = 0; start < rows.issuances.length; start += ROWS_PER_INSERT) {
    const chunk = rows.issuances.slice(start, start + ROWS_PER_INSERT);
    await trx.insertInto("issuances").values(chunk).execute();
  }
}

/** A record chained after a tail: the record, its canonical JSON text and its leaf hash. */
export interface ChainedRecord {
  record: AuditRecord;
  canonical: string;
  hash: string;
}

/**
 * Builds the record that follows `tail` with its canonical JSON text and leaf hash. The text is
 * computed once and hashed as UTF-8, which gives the same hash as {@link recordHash}.
 */
export function chainRecord(event: AuditEvent, tail: ChainTail): ChainedRecord {
  const { record, canonical } = buildCanonicalRecord(event, tail.seq + 1, tail.hash);
  const hash = leafHashOfBytes(Buffer.from(canonical, "utf8")).toString("hex");
  return { record, canonical, hash };
}

/** Reads the newest record, or the retention anchor when every record was pruned, or the genesis. */
export async function readTail(ex: Executor): Promise<ChainTail> {
  const last = await ex
    .selectFrom("audit_events")
    .select(["seq", "hash"])
    .orderBy("seq", "desc")
    .limit(1)
    .executeTakeFirst();
  if (last !== undefined) {
    if (last.hash === null) throw new Error(`audit record ${last.seq} has no hash`);
    return { seq: Number(last.seq), hash: last.hash };
  }
  const anchor = await ex
    .selectFrom("audit_anchor")
    .select(["pruned_through", "last_hash"])
    .executeTakeFirst();
  if (anchor !== undefined) return { seq: Number(anchor.pruned_through), hash: anchor.last_hash };
  return { seq: 0, hash: GENESIS_HASH };
}

/** Returns the issuance kind of a successful issuance event, or null; throws if fields are missing. */
function requireIssuanceFields(event: AuditEvent): IssuanceKind | null {
  const kind = ISSUANCE_KINDS[event.type];
  if (kind === undefined || event.outcome !== "success") return null;
  if (event.credentialId === null || event.keyId === null || event.keyVersion === null) {
    throw auditUnavailable(
      new Error(`issuance event ${event.type} lacks its credential id or key version`),
    );
  }
  return kind;
}

/** Event types that hand out a credential, and the issuance kind each records. */
export const ISSUANCE_KINDS: Partial<Record<AuditEvent["type"], IssuanceKind>> = {
  "data_key.issued": "data_key",
  // details.expiresAt carries the token's expiry, so revocation and cascades can skip dead tokens.
  "token.issued": "token",
};

function toRow(
  event: AuditEvent,
  seq: number,
  prevHash: string,
  hash: string,
  canonical: string,
): Insertable<AuditEventsTable> {
  return {
    seq,
    type: event.type,
    outcome: event.outcome,
    at: event.at,
    principal_type: event.principal.type,
    principal_id: event.principal.id,
    source_address: event.sourceAddress,
    request_id: event.requestId,
    key_id: event.keyId,
    key_version: event.keyVersion,
    credential_id: event.credentialId,
    chain: JSON.stringify(event.chain),
    error_code: event.errorCode,
    details: JSON.stringify(event.details),
    prev_hash: prevHash,
    hash,
    record: canonical,
  };
}

export function auditUnavailable(cause: unknown): ArborError {
  return new ArborError(
    "AUDIT_UNAVAILABLE",
    "the audit log cannot take events; nothing was handed out. Check the database and retry",
    {},
    { cause },
  );
}
