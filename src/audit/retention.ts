import { ArborError } from "../errors/index.ts";
import type { Clock } from "../clock.ts";
import type { Storage } from "../storage/storage.ts";
import { actorFields, currentActor } from "./context.ts";
import type { AuditLogStore } from "./log-store.ts";
import { MerkleFrontier } from "./merkle.ts";
import { insertEvent } from "./sql-writer.ts";

export interface PruneResult {
  prunedThrough: number;
  removed: number;
  rootHash: string;
}

/**
 * Retention: deletes the oldest records up to the tree size of a signed checkpoint, and keeps an
 * anchor (the last pruned hash and the Merkle frontier of the pruned prefix) whose root must equal
 * that checkpoint's root. The remaining log then verifies from the anchor, and the checkpoint's
 * signature vouches for what was removed. Records an exporter has not delivered are never pruned.
 */
export function createRetention(deps: {
  storage: Storage;
  store: AuditLogStore;
  clock: Clock;
  /** Names of configured exporters, whose cursors bound what may be pruned. */
  exporters: () => string[];
}) {
  async function prune(through: number): Promise<PruneResult | null> {
    const checkpoint = (await deps.store.checkpoints()).find((cp) => cp.treeSize === through);
    if (checkpoint === undefined) return null;

    for (const name of deps.exporters()) {
      const delivered = await deps.store.cursor(name);
      if (delivered < through) {
        throw new ArborError(
          "AUDIT_EXPORT_PENDING",
          `exporter ${name} has delivered records only up to ${delivered}; pruning through ${through} would lose records it has not shipped`,
          { parameter: "through", value: String(through) },
        );
      }
    }

    const anchor = await deps.store.anchor();
    const from = anchor?.prunedThrough ?? 0;
    if (through <= from) return { prunedThrough: from, removed: 0, rootHash: checkpoint.rootHash };

    const frontier =
      anchor === null ? new MerkleFrontier() : MerkleFrontier.fromJSON(JSON.parse(anchor.frontier));
    const hashes = await deps.store.hashes(from, through);
    for (const { seq, hash } of hashes) {
      if (seq !== frontier.size + 1) throw damaged(`record ${frontier.size + 1} is missing`);
      frontier.append(Buffer.from(hash, "hex"));
    }
    const rootHash = Buffer.from(frontier.root()).toString("hex");
    if (frontier.size !== through || rootHash !== checkpoint.rootHash) {
      throw damaged(`records 1-${through} do not match the checkpoint signed over them`);
    }
    const lastHash = hashes.at(-1)!.hash;
    const now = deps.clock.now();

    const removed = await deps.storage.write(async (trx) => {
      const result = await trx.deleteFrom("audit_events").where("seq", "<=", through).execute();
      await trx
        .insertInto("audit_anchor")
        .values({
          id: 1,
          pruned_through: through,
          last_hash: lastHash,
          frontier: JSON.stringify(frontier.toJSON()),
          at: now,
        })
        .onConflict((oc) =>
          oc.column("id").doUpdateSet({
            pruned_through: through,
            last_hash: lastHash,
            frontier: JSON.stringify(frontier.toJSON()),
            at: now,
          }),
        )
        .execute();
      await insertEvent(trx, {
        type: "audit.pruned",
        outcome: "success",
        at: now,
        ...actorFields(),
        keyId: null,
        keyVersion: null,
        chain: [],
        credentialId: null,
        errorCode: null,
        details: { prunedThrough: through, rootHash, previousPrunedThrough: from },
      });
      return result.reduce((sum, r) => sum + Number(r.numDeletedRows), 0);
    });
    currentActor()?.writtenInTransaction.add("audit.pruned");
    return { prunedThrough: through, removed, rootHash };
  }

  return { prune };
}

function damaged(detail: string): ArborError {
  return new ArborError(
    "INTERNAL",
    `the audit log does not verify (${detail}); run \`arbor audit verify\` before pruning`,
  );
}
