import { type Kysely, sql } from "kysely";

import type { Database } from "../storage/schema.ts";
import { ISSUANCE_KINDS } from "./sql-writer.ts";

export interface CompletenessReport {
  /** Credentials recorded by the issuing code (the `issuances` table). */
  issuances: number;
  /** Successful issuance records in the audit log. */
  issuanceRecords: number;
  /** Credential ids issued without an audit record (at most 20 listed). */
  missingRecords: string[];
  /** Issuance records whose credential the issuing code never recorded (at most 20 listed). */
  unmatchedRecords: string[];
  /**
   * With retention, issuances at or before this time (just before the oldest remaining record)
   * are not counted, because their records were pruned. Null without retention.
   */
  prunedBefore: number | null;
  complete: boolean;
}

/**
 * Audit completeness: every credential the issuing code recorded has its issuance record in the
 * log, and every issuance record names a recorded credential. Both rows are written in one
 * transaction, so any difference means rows were removed or added outside Arbor.
 */
export async function checkCompleteness(db: Kysely<Database>): Promise<CompletenessReport> {
  const types = Object.keys(ISSUANCE_KINDS);
  // After retention, credentials issued before the oldest remaining record had their records
  // pruned, so they are left out on both sides. Without an anchor, nothing is left out.
  let since: number | null = null;
  const anchor = await db.selectFrom("audit_anchor").select("pruned_through").executeTakeFirst();
  if (anchor !== undefined) {
    const oldest = await db
      .selectFrom("audit_events")
      .select("at")
      .orderBy("seq")
      .limit(1)
      .executeTakeFirst();
    if (oldest !== undefined) since = Number(oldest.at) - 1;
  }

  let issuances = db.selectFrom("issuances");
  if (since !== null) issuances = issuances.where("issued_at", ">", since);
  const issued = await issuances.select(sql<number>`count(*)`.as("n")).executeTakeFirstOrThrow();

  let events = db
    .selectFrom("audit_events")
    .where("type", "in", types)
    .where("outcome", "=", "success");
  if (since !== null) events = events.where("at", ">", since);
  const recorded = await events.select(sql<number>`count(*)`.as("n")).executeTakeFirstOrThrow();

  let missingQuery = db
    .selectFrom("issuances as i")
    .select("i.id")
    .where((eb) =>
      eb.not(
        eb.exists(
          eb
            .selectFrom("audit_events as e")
            .select("e.seq")
            .whereRef("e.credential_id", "=", "i.id")
            .where("e.type", "in", types)
            .where("e.outcome", "=", "success"),
        ),
      ),
    );
  if (since !== null) missingQuery = missingQuery.where("i.issued_at", ">", since);
  const missing = await missingQuery.orderBy("i.id").limit(20).execute();

  const unmatched = await db
    .selectFrom("audit_events as e")
    .select("e.credential_id")
    .where("e.type", "in", types)
    .where("e.outcome", "=", "success")
    .where((eb) =>
      eb.not(
        eb.exists(
          eb.selectFrom("issuances as i").select("i.id").whereRef("i.id", "=", "e.credential_id"),
        ),
      ),
    )
    .orderBy("e.seq")
    .limit(20)
    .execute();

  const report = {
    issuances: Number(issued.n),
    issuanceRecords: Number(recorded.n),
    missingRecords: missing.map((row) => row.id),
    unmatchedRecords: unmatched.map((row) => row.credential_id ?? ""),
    prunedBefore: since,
  };
  return {
    ...report,
    complete:
      report.missingRecords.length === 0 &&
      report.unmatchedRecords.length === 0 &&
      report.issuances === report.issuanceRecords,
  };
}
