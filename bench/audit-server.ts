// A benchmark-only Arbor server: the composition of `arbor dev`, with the audit writer either the
// real one or a no-op. bench/tokens-audit.ts starts it in a child process; it is not a
// production entry point, and `arbor` itself has no way to turn audit off.
//
//   node --import tsx bench/audit-server.ts --data-dir DIR --port 18202 --audit on|off
//
// When ready it prints one JSON line `{address, rootToken}` on standard output. SIGTERM stops it.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { pino } from "pino";

import type { AuditWriter } from "../src/audit/types.ts";
import { ArborClient } from "../src/cli/client.ts";
import { applyDocument, readHierarchyFile } from "../src/cli/commands/apply.ts";
import { submitUnsealShare } from "../src/cli/commands/sys.ts";
import { loadConfig } from "../src/config/index.ts";
import { startArbor } from "../src/server/compose.ts";
import { createLogger } from "../src/server/logger.ts";
import type { Storage } from "../src/storage/index.ts";

const { values } = parseArgs({
  options: {
    "data-dir": { type: "string" },
    port: { type: "string", default: "18202" },
    audit: { type: "string", default: "on" },
  },
});
const dataDir = values["data-dir"];
if (dataDir === undefined) throw new Error("--data-dir is required");
if (values.audit !== "on" && values.audit !== "off") {
  throw new Error(`--audit must be on or off, not ${JSON.stringify(values.audit)}`);
}

/**
 * Accepts every event and stores none: the "audit off" side of the comparison. It also skips
 * the issuance records, because the real writer stores those in the event's transaction.
 */
const noopAuditWriter: AuditWriter = { write: () => Promise.resolve() };

mkdirSync(dataDir, { recursive: true, mode: 0o700 });
const config = await loadConfig({
  env: {},
  flags: {
    listen: `127.0.0.1:${values.port}`,
    storagePath: join(dataDir, "arbor.db"),
    logLevel: "warn",
  },
});
const logger = createLogger({
  level: config.logLevel,
  destination: pino.destination({ dest: 2, sync: true }),
});
const running = await startArbor(config, { logger });

// Initialise, unseal and load the example hierarchy, as `arbor dev` does on its first start.
const anonymous = new ArborClient({ addr: running.address, token: undefined });
const init = await anonymous.post<{ shares: string[]; rootToken: string }>("/v1/sys/init", {
  shares: config.root.shares,
  threshold: config.root.threshold,
});
for (const share of init.shares) {
  if (!(await submitUnsealShare(anonymous, share)).sealed) break;
}
const client = new ArborClient({ addr: running.address, token: init.rootToken });
const hierarchyFile = join(import.meta.dirname, "../examples/hierarchy.yaml");
await applyDocument(client, await readHierarchyFile(hierarchyFile), false);

// Request events go through `deps.audit`, which the audit recorder reads on every write, so
// replacing it here takes effect for every later request. Key changes and other state changes
// keep the real writer, because the key tree and the outbox captured it at composition.
// bench/tokens-audit.ts counts the stored events after each run to check the swap took effect.
if (values.audit === "off") running.deps.audit = noopAuditWriter;

// Counts write transactions. The group committer looks up `storage.write` on the shared storage
// object for every batch, so the wrapper sees its batches.
const storage = running.deps.storage;
const writeTransaction = storage.write.bind(storage);
let transactions = 0;
(storage as { write: Storage["write"] }).write = (work) => {
  transactions += 1;
  return writeTransaction(work);
};

process.stdout.write(
  `${JSON.stringify({ address: running.address, rootToken: init.rootToken })}\n`,
);

// On request over the IPC channel (when started with one), reports this process's CPU time, the
// event loop's busy time and the write transactions so far, so the benchmark can tell CPU work
// from waiting.
process.on("message", (message) => {
  if (message !== "usage") return;
  const { active } = performance.eventLoopUtilization();
  process.send?.({ cpu: process.cpuUsage(), loopActiveMs: active, transactions });
});

process.once("SIGTERM", () => {
  void running.close().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
});
