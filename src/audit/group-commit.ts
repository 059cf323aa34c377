import type { Transaction } from "kysely";

import type { Database } from "../storage/schema.ts";
import type { Storage } from "../storage/storage.ts";

type Work = (trx: Transaction<Database>) => Promise<void>;

interface Pending {
  work: Work;
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

  submit(work: Work): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ work, resolve, reject });
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
          for (const item of batch) await item.work(trx);
        });
        for (const item of batch) item.resolve();
      } catch (error) {
        for (const item of batch) item.reject(error);
      }
    }
    this.#running = false;
  }
}
