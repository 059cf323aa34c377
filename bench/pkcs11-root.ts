// Envelope encryption over the key tree with the PKCS#11 root (SoftHSM2) and with the sealed root,
// in one run, and the root calls each makes once its caches are warm.
//
//   npx tsx bench/pkcs11-root.ts [--operations 10000] [--rounds 5] [--module PATH]
//
// Everything runs in this one process, without HTTP: the key tree, the envelope service, SQLite
// and the PKCS#11 module. The bench creates its own SoftHSM2 token directory (through
// SOFTHSM2_CONF) and removes it at exit. One operation is an envelope encryption or decryption of
// 1 KiB, alternating, one at a time. The providers take turns by round, so drift in the machine's
// speed affects both alike.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { systemClock } from "../src/clock.ts";
import { createEnvelopeService } from "../src/envelope/service.ts";
import { createKeyTree, MaterialCache, type KeyScope } from "../src/hierarchy/index.ts";
import type { RootCallResult, RootMetrics } from "../src/root/metrics.ts";
import { createPkcs11Root } from "../src/root/pkcs11/index.ts";
import { createSealedRoot } from "../src/root/sealed-root.ts";
import type { RootProvider } from "../src/root/types.ts";
import { decodeUnsealShare } from "../src/root/unseal-shares.ts";
import { openStorage, type Storage } from "../src/storage/index.ts";
import { formatNumber, percentile } from "./stats.ts";

const { values } = parseArgs({
  options: {
    operations: { type: "string", default: "10000" },
    rounds: { type: "string", default: "5" },
    module: { type: "string", default: "/usr/lib/softhsm/libsofthsm2.so" },
  },
});
const operations = Number(values.operations);
const rounds = Number(values.rounds);
const ALL: KeyScope = { environment: null, tenant: null };
const SERVICES = [
  "prod/acme/billing:encrypt",
  "prod/globex/billing:encrypt",
  "prod/ledger:encrypt",
  "stage/ledger:encrypt",
];
const WARM_UP_OPERATIONS = 200;

/** Counts root calls by operation and result. */
class CountingMetrics implements RootMetrics {
  readonly counts = new Map<string, number>();

  observe(operation: string, result: RootCallResult): void {
    const name = `${operation}:${result}`;
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }

  total(): number {
    let sum = 0;
    for (const count of this.counts.values()) sum += count;
    return sum;
  }

  reset(): void {
    this.counts.clear();
  }
}

interface Subject {
  name: string;
  root: RootProvider;
  metrics: CountingMetrics;
  envelope: ReturnType<typeof createEnvelopeService>;
  ciphertexts: string[];
  close(): Promise<void>;
}

const workDir = mkdtempSync(join(tmpdir(), "arbor-bench-pkcs11-"));
process.on("exit", () => rmSync(workDir, { recursive: true, force: true }));

/** A SoftHSM2 token in this run's own token directory; returns its label and PIN. */
function createToken(): { label: string; pin: string } {
  const tokenDir = join(workDir, "tokens");
  mkdirSync(tokenDir);
  const confPath = join(workDir, "softhsm2.conf");
  writeFileSync(confPath, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\n`);
  process.env.SOFTHSM2_CONF = confPath;

  const token = { label: "arbor-bench", pin: randomBytes(8).toString("hex") };
  const result = spawnSync(
    "softhsm2-util",
    [
      "--init-token",
      "--free",
      "--label",
      token.label,
      "--so-pin",
      "bench-so-pin",
      "--pin",
      token.pin,
    ],
    { encoding: "utf8" },
  );
  if (result.status !== 0) {
    throw new Error(`softhsm2-util --init-token failed: ${result.error?.message ?? result.stderr}`);
  }
  return token;
}

async function openSubject(
  name: string,
  open: (storage: Storage, metrics: CountingMetrics) => Promise<RootProvider>,
): Promise<Subject> {
  const storage = await openStorage({ kind: "sqlite", path: join(workDir, `${name}.db`) });
  const metrics = new CountingMetrics();
  const root = await open(storage, metrics);
  const cache = new MaterialCache({ clock: systemClock, maxEntries: 10_000, ttlMs: 60 * 60_000 });
  const logger = { error: () => undefined, warn: () => undefined };
  const tree = createKeyTree({ storage, root, clock: systemClock, cache, logger });
  for (const path of ["prod", "stage", "prod/acme", "prod/globex", ...SERVICES]) {
    await tree.createKey(path);
  }
  const envelope = createEnvelopeService({ keyTree: tree });
  const subject: Subject = {
    name,
    root,
    metrics,
    envelope,
    ciphertexts: [],
    async close() {
      root.seal();
      await storage.close();
    },
  };
  // Warm-up, discarded: JIT, the material cache, the chain cache and SQLite's page cache.
  await runOperations(subject, WARM_UP_OPERATIONS);
  return subject;
}

const payload = randomBytes(1024);

/** Runs `count` operations one after another; returns each one's latency in milliseconds. */
async function runOperations(subject: Subject, count: number): Promise<number[]> {
  const latencies: number[] = [];
  for (let index = 0; index < count; index++) {
    const started = performance.now();
    const service = SERVICES[index % SERVICES.length]!;
    if (index % 2 === 0 || subject.ciphertexts.length === 0) {
      const sealed = await subject.envelope.encrypt(service, payload, { bench: "1" }, ALL);
      if (subject.ciphertexts.length < 64) subject.ciphertexts.push(sealed.ciphertext);
    } else {
      const ciphertext = subject.ciphertexts[index % subject.ciphertexts.length]!;
      const opened = await subject.envelope.decrypt(ciphertext, { bench: "1" }, ALL);
      opened.plaintext.fill(0);
    }
    latencies.push(performance.now() - started);
  }
  return latencies;
}

/** Root wrap and unwrap calls per second, for the table that shows what the cache saves. */
async function rootCallRate(root: RootProvider): Promise<{ wrap: number; unwrap: number }> {
  const plaintext = randomBytes(32);
  const aad = randomBytes(48);
  const count = 5000;
  const blob = await root.wrap(plaintext, aad);

  let started = performance.now();
  for (let index = 0; index < count; index++) await root.wrap(plaintext, aad);
  const wrap = count / ((performance.now() - started) / 1000);
  started = performance.now();
  for (let index = 0; index < count; index++) (await root.unwrap(blob, aad)).fill(0);
  const unwrap = count / ((performance.now() - started) / 1000);
  return { wrap, unwrap };
}

function median(values: number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    50,
  );
}

const token = createToken();
const sealed = await openSubject("sealed", async (storage, metrics) => {
  const root = await createSealedRoot({ store: storage.sealedRoot, clock: systemClock, metrics });
  const { shares } = await root.initialize({ shares: 3, threshold: 2 });
  const { nonce } = root.beginUnseal();
  for (const share of shares.slice(0, 2)) await root.submit(nonce, decodeUnsealShare(share));
  return root;
});
const pkcs11 = await openSubject("pkcs11", async (storage, metrics) => {
  const root = await createPkcs11Root({
    store: storage.pkcs11Root,
    clock: systemClock,
    metrics,
    logger: { error: () => undefined, warn: () => undefined, info: () => undefined },
    modulePath: values.module,
    tokenLabel: token.label,
  });
  const pin = new TextEncoder().encode(token.pin);
  await root.initialize({ pin });
  const { nonce } = root.beginUnseal();
  await root.submit(nonce, pin);
  return root;
});

const subjects = [sealed, pkcs11];
const throughput = new Map<string, number[]>(subjects.map((s) => [s.name, []]));
const latencies = new Map<string, number[]>(subjects.map((s) => [s.name, []]));
const rootCalls = new Map<string, number>(subjects.map((s) => [s.name, 0]));

for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? subjects : [...subjects].reverse();
  for (const subject of order) {
    subject.metrics.reset();
    const started = performance.now();
    const measured = await runOperations(subject, operations);
    const seconds = (performance.now() - started) / 1000;
    throughput.get(subject.name)!.push(operations / seconds);
    latencies.get(subject.name)!.push(...measured);
    rootCalls.set(subject.name, rootCalls.get(subject.name)! + subject.metrics.total());
  }
}

const rates = new Map<string, { wrap: number; unwrap: number }>();
for (const subject of subjects) rates.set(subject.name, await rootCallRate(subject.root));

const sealedRate = median(throughput.get("sealed")!);
const pkcs11Rate = median(throughput.get("pkcs11")!);
const ratio = pkcs11Rate / sealedRate;

console.log(
  `\nEnvelope operations (1 KiB, encrypt and decrypt alternating, one at a time), ` +
    `${formatNumber(operations)} per round after ${WARM_UP_OPERATIONS} warm-up operations, ` +
    `median of ${rounds} rounds. Node ${process.version}, ${availableParallelism()} cores ` +
    `(${cpus()[0]?.model ?? "unknown CPU"}), one process, no HTTP.\n`,
);
console.log("| root | operations/s (median) | p50 ms | p99 ms | root calls after warm-up |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const subject of subjects) {
  const sorted = [...latencies.get(subject.name)!].sort((a, b) => a - b);
  console.log(
    `| ${subject.name} | ${formatNumber(median(throughput.get(subject.name)!))} | ` +
      `${formatNumber(percentile(sorted, 50), 3)} | ${formatNumber(percentile(sorted, 99), 3)} | ` +
      `${formatNumber(rootCalls.get(subject.name)!)} |`,
  );
}
console.log(`\nPKCS#11 / sealed throughput: ${formatNumber(ratio, 3)} (goal at least 0.95).\n`);

console.log("Direct root calls, one at a time, 5,000 each (what the material cache avoids):\n");
console.log("| root | wrap/s | unwrap/s |");
console.log("| --- | ---: | ---: |");
for (const subject of subjects) {
  const rate = rates.get(subject.name)!;
  console.log(`| ${subject.name} | ${formatNumber(rate.wrap)} | ${formatNumber(rate.unwrap)} |`);
}

for (const subject of subjects) await subject.close();
const failed = [...rootCalls.values()].some((count) => count > 0) || ratio < 0.95;
process.exitCode = failed ? 1 : 0;
