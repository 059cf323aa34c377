/**
 * Runs `rewrapUnderNewRoot` in a process of its own, for root-rotation.test.ts, which kills it
 * with SIGKILL part way. Reads ARBOR_TEST_DB (SQLite file), ARBOR_TEST_TOKEN_LABEL, the PIN from
 * ARBOR_PKCS11_PIN and SOFTHSM2_CONF from the environment. With ARBOR_TEST_PAUSE_AFTER=n it stops
 * after n versions, prints `{"paused":true}` and waits to be killed. Writes one JSON object per
 * line to stdout.
 */
import { systemClock } from "../../../src/clock.ts";
import { rewrapUnderNewRoot } from "../../../src/hierarchy/index.ts";
import { createPkcs11Root } from "../../../src/root/pkcs11/index.ts";
import { openStorage } from "../../../src/storage/index.ts";
import { SOFTHSM_MODULE } from "./softhsm.ts";

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

const logger = {
  error: (details: Record<string, unknown>, message: string) =>
    process.stderr.write(`${message} ${JSON.stringify(details)}\n`),
  warn: (details: Record<string, unknown>, message: string) =>
    process.stderr.write(`${message} ${JSON.stringify(details)}\n`),
  info: () => undefined,
};

const pauseAfter = Number(process.env.ARBOR_TEST_PAUSE_AFTER ?? "0");
const storage = await openStorage({ kind: "sqlite", path: process.env.ARBOR_TEST_DB! });
const root = await createPkcs11Root({
  store: storage.pkcs11Root,
  clock: systemClock,
  logger,
  modulePath: SOFTHSM_MODULE,
  tokenLabel: process.env.ARBOR_TEST_TOKEN_LABEL!,
  pin: { env: process.env },
});
if (!(await root.unsealWithConfiguredPin())) throw new Error("ARBOR_PKCS11_PIN is not set");

const result = await rewrapUnderNewRoot({
  storage,
  root,
  clock: systemClock,
  logger,
  async onProgress(progress) {
    print({ done: progress.done, total: progress.total });
    if (progress.done === pauseAfter) {
      print({ paused: true });
      // Keeps the process alive until the test kills it.
      setInterval(() => undefined, 60_000);
      await new Promise<never>(() => undefined);
    }
  },
});
print({ result });
root.close();
await storage.close();
