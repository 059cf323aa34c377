import type { Kysely, Selectable } from "kysely";

import type { Database, Executor, OutboxTable } from "../schema.ts";

export type OutboxRow = Selectable<OutboxTable>;

/** Called for each append inside its transaction; a rejection rolls the change back. */
export type OutboxObserver = (
  ex: Executor,
  topic: string,
  payload: Record<string, unknown>,
  now: number,
) => Promise<void>;

/**
 * The outbox: every revocation, rotation and state change appends here in the same transaction as
 * the change, so a node that reads from its cursor never misses one.
 */
export function createOutboxRepository(db: Kysely<Database>) {
  let observer: OutboxObserver | null = null;
  return {
    async append(
      topic: string,
      payload: Record<string, unknown>,
      now: number,
      ex: Executor = db,
    ): Promise<void> {
      await ex
        .insertInto("outbox")
        .values({ topic, payload: JSON.stringify(payload), created_at: now })
        .execute();
      await observer?.(ex, topic, payload, now);
    },

    /**
     * Sets the one observer of appends, called in the appending transaction: the audit log
     * records each state change there, so the change and its record commit together.
     */
    observe(next: OutboxObserver | null): void {
      observer = next;
    },

    async readAfter(cursor: number, limit: number, ex: Executor = db): Promise<OutboxRow[]> {
      const rows = await ex
        .selectFrom("outbox")
        .selectAll()
        .where("id", ">", cursor)
        .orderBy("id")
        .limit(limit)
        .execute();
      return rows.map((row) => ({ ...row, id: Number(row.id) }));
    },
  };
}

export type OutboxRepository = ReturnType<typeof createOutboxRepository>;
