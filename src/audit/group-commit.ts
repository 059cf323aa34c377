import type { Transaction } from "kysely";

import type { Database } from "../storage/schema.ts";
import type { Storage } from "../storage/storage.ts";

type Work = (trx: Transaction<Database>) => Promise<void>;

interface Pending {
  work: Work;
  finish: Work | undefined;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export interface GroupCommitOptions {
  /** Most units of work per transaction. */
  maxBatch?: number;
}

/**
 * Runs many small writes in one transaction. With `synchronous=FULL` every commit is an fsync, so
 * one transaction per request caps throughput at the disk's fsync rate; batching lets one fsync
 * cover every request that arrived meanwhile. Each submitter's promise resolves only after the
 * transaction holding its work has committed, and rejects if that transaction fails.
 */
export class GroupCommitter {
  readonly #storage: Storage;
  readonly #maxBatch: number;
  #queue: Pending[] = [];
  #running = false;

  constructor(storage: Storage, options: GroupCommitOptions = {}) {
    this.#storage = storage;
    this.#maxBatch = options.maxBatch ?? 512;
  }

  /**
   * Queues `work` for the next transaction and resolves once that transaction has committed.
   * `finish`, when given, runs after every work item of the transaction and before the commit,
   * once per transaction however many submitters passed the same function: work can stage rows
   * and `finish` insert them all with one statement.
   */
  submit(work: Work, finish?: Work): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ work, finish, resolve, reject });
      if (!this.#running) {
        this.#running = true;
        // Let the requests already in this turn of the event loop join the batch.
        setImmediate(() => void this.#drain());
      }
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      try {
        await this.#storage.write(async (trx) => {
          const finishes = new Set<Work>();
          for (const item of batch) {
            await item.work(trx);
            if (item.finish !== undefined) finishes.add(item.finish);
          }
          for (const finish of finishes) await finish(trx);
        });
        for (const item of batch) item.resolve();
      } catch (error) {
        for (const item of batch) item.reject(error);
      }
    }
    this.#running = false;
  }
}
