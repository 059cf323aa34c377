import type { Clock } from "../clock.ts";
import type { RootProvider } from "../root/types.ts";
import type { Storage } from "../storage/storage.ts";
import { checkpointKeyId, createCheckpoint, type SignedCheckpoint } from "./checkpoint.ts";
import type { AuditLogStore } from "./log-store.ts";
import { MerkleFrontier } from "./merkle.ts";
import { actorFields, currentActor, runWithoutActor } from "./context.ts";
import { insertEvent } from "./sql-writer.ts";

export interface CheckpointerOptions {
  /** Sign a checkpoint once this many records arrived since the last one. Default 1,000. */
  everyRecords?: number;
  /** Sign a checkpoint at least this often while records arrive, in milliseconds. Default 60 s. */
  everyMs?: number;
}

export interface CheckpointerDeps {
  storage: Storage;
  store: AuditLogStore;
  root: RootProvider;
  clock: Clock;
  logger: { error(details: object, message: string): void };
}

/**
 * Signs tree heads (checkpoints) over the audit log with the root's audit signing key, every N
 * records or T milliseconds, whichever comes first. Each checkpoint is stored and also appended
 * to the log as an `audit.checkpoint` record, so exporters ship it out with the records: deleting
 * the tail of the log together with its checkpoints is still caught by whoever holds an exported
 * checkpoint.
 *
 * The Merkle frontier (the roots of the perfect subtrees covering the log) is kept in memory and
 * caught up from the table before each checkpoint, so records written by any writer are covered.
 *
 * A checkpoint's record names the acting party: the request that asked for it, or the system
 * principal for the scheduled ones. Runs never overlap, because each one reads the previous
 * checkpoint's tree size before it inserts its own.
 */
export function createCheckpointer(deps: CheckpointerDeps, options: CheckpointerOptions = {}) {
  const everyRecords = options.everyRecords ?? 1_000;
  const everyMs = options.everyMs ?? 60_000;
  let frontier: MerkleFrontier | null = null;
  let sinceLast = 0;
  // The last queued run; every run starts after the one before it has finished.
  let queue: Promise<unknown> = Promise.resolve();
  let queued = 0;
  let timer: NodeJS.Timeout | null = null;

  async function catchUp(): Promise<MerkleFrontier> {
    if (frontier === null) {
      const anchor = await deps.store.anchor();
      frontier =
        anchor === null
          ? new MerkleFrontier()
          : MerkleFrontier.fromJSON(JSON.parse(anchor.frontier));
    }
    for (;;) {
      const page = await deps.store.hashes(frontier.size, frontier.size + 10_000);
      if (page.length === 0) return frontier;
      for (const { seq, hash } of page) {
        if (seq !== frontier.size + 1) {
          // A gap: the log is damaged or was pruned under us. Start over from the anchor next time.
          const expected = frontier.size + 1;
          frontier = null;
          throw new Error(`audit record ${expected} is missing; found ${seq} instead`);
        }
        frontier.append(Buffer.from(hash, "hex"));
      }
    }
  }

  async function checkpointOnce(): Promise<SignedCheckpoint | null> {
    if (deps.root.status().state !== "unsealed") return null;
    const current = await catchUp();
    const last = await deps.store.latestCheckpoint();
    const prevTreeSize = last?.treeSize ?? 0;
    if (current.size === prevTreeSize) return null;
    // The only newer record being the previous checkpoint's own record means nothing happened.
    if (current.size === prevTreeSize + 1 && (await isCheckpointRecord(current.size))) return null;

    const body = {
      v: 1 as const,
      kind: "arbor-audit-checkpoint" as const,
      treeSize: current.size,
      rootHash: Buffer.from(current.root()).toString("hex"),
      at: deps.clock.now(),
      prevTreeSize,
    };
    // Signed outside any transaction: an HSM call never holds the database's write lock.
    const keyId = checkpointKeyId(await deps.root.checkpointPublicKey());
    const signed = await createCheckpoint(body, (message) => deps.root.signCheckpoint(message), {
      keyId,
    });
    const signedJson = JSON.stringify(signed);
    await deps.storage.write(async (trx) => {
      await trx
        .insertInto("audit_checkpoints")
        .values({
          tree_size: body.treeSize,
          prev_tree_size: body.prevTreeSize,
          root_hash: body.rootHash,
          at: body.at,
          signed: signedJson,
        })
        .execute();
      await insertEvent(trx, {
        type: "audit.checkpoint",
        outcome: "success",
        at: body.at,
        ...actorFields(),
        keyId: null,
        keyVersion: null,
        chain: [],
        credentialId: null,
        errorCode: null,
        details: {
          treeSize: body.treeSize,
          prevTreeSize: body.prevTreeSize,
          rootHash: body.rootHash,
          signature: signed.signature,
          signedAt: body.at,
        },
      });
    });
    currentActor()?.writtenInTransaction.add("audit.checkpoint");
    sinceLast = 0;
    return signed;
  }

  async function isCheckpointRecord(seq: number): Promise<boolean> {
    const [row] = await deps.store.records(seq - 1, 1);
    return row?.type === "audit.checkpoint";
  }

  /**
   * Signs a checkpoint now unless one covers every record. A call made while another run is in
   * progress waits for it and then checks again, so the checkpoint it returns is its own.
   */
  function checkpoint(): Promise<SignedCheckpoint | null> {
    queued += 1;
    const run = queue.then(checkpointOnce);
    queue = run
      .catch(() => undefined)
      .finally(() => {
        queued -= 1;
      });
    return run;
  }

  function runInBackground(): void {
    void runWithoutActor(() =>
      checkpoint().catch((error: unknown) => {
        deps.logger.error({ err: error }, "signing an audit checkpoint failed; retrying later");
      }),
    );
  }

  return {
    checkpoint,
    /** Counts committed records; reaching `everyRecords` starts a checkpoint in the background. */
    noteCommitted(records = 1): void {
      sinceLast += records;
      if (sinceLast >= everyRecords && queued === 0) runInBackground();
    },
    start(): void {
      timer ??= setInterval(runInBackground, everyMs);
      timer.unref();
    },
    async stop(): Promise<void> {
      if (timer !== null) clearInterval(timer);
      timer = null;
      await queue;
    },
    /** Drops the in-memory frontier, after retention pruned records. */
    reset(): void {
      frontier = null;
    },
  };
}

export type Checkpointer = ReturnType<typeof createCheckpointer>;
