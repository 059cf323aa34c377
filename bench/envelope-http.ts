// Server-side envelope encryption over HTTP against raw AES-256-GCM, in one run.
//
//   npx tsx bench/envelope-http.ts [--duration 10] [--connections 32]
//
// The server (`arbor dev`, SQLite, authentication and the durable audit writer on) runs in a
// child process and autocannon in this one, so the load generator shares the machine's cores
// with the server; the figures are what one box does with both, not the server alone.
import { createCipheriv, randomBytes } from "node:crypto";
import { parseArgs } from "node:util";

import autocannon from "autocannon";

import { BENCH_KEY, startDevServer } from "./dev-server.ts";
import { formatNumber, measureLoop } from "./stats.ts";

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "32" },
    port: { type: "string", default: "18200" },
  },
});
const durationSeconds = Number(values.duration);
const connections = Number(values.connections);

const payload = randomBytes(1024);

function rawAesGcm() {
  const key = randomBytes(32);
  const aad = Buffer.alloc(64);
  return measureLoop(
    () => {
      const cipher = createCipheriv("aes-256-gcm", key, randomBytes(12), { authTagLength: 16 });
      cipher.setAAD(aad);
      cipher.update(payload);
      cipher.final();
      cipher.getAuthTag();
    },
    { durationMs: durationSeconds * 1000 },
  );
}

async function load(url: string, token: string, body: string) {
  // Warm-up pass, discarded: JIT, caches of unwrapped keys, SQLite page cache.
  await autocannon({
    url,
    method: "POST",
    connections,
    duration: 2,
    body,
    headers: headers(token),
  });
  const result = await autocannon({
    url,
    method: "POST",
    connections,
    duration: durationSeconds,
    body,
    headers: headers(token),
  });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${url}: ${result.non2xx} non-2xx responses and ${result.errors} errors`);
  }
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result.requests.total,
  };
}

function headers(token: string) {
  return { authorization: `Bearer ${token}`, "content-type": "application/json" };
}

const server = await startDevServer(Number(values.port));
try {
  const keyUrl = `${server.address}/v1/keys/${encodeURIComponent(BENCH_KEY)}`;
  const sample = await fetch(`${keyUrl}/encrypt`, {
    method: "POST",
    headers: headers(server.rootToken),
    body: JSON.stringify({ plaintext: payload.toString("base64"), context: { bench: "1" } }),
  });
  const { ciphertext } = (await sample.json()) as { ciphertext: string };

  const raw = rawAesGcm();
  const encrypt = await load(
    `${keyUrl}/encrypt`,
    server.rootToken,
    JSON.stringify({ plaintext: payload.toString("base64"), context: { bench: "1" } }),
  );
  const decrypt = await load(
    `${server.address}/v1/decrypt`,
    server.rootToken,
    JSON.stringify({ ciphertext, context: { bench: "1" } }),
  );

  const rows = [
    ["raw AES-256-GCM, 1 KiB, one thread (node:crypto)", raw.opsPerSecond, raw.p50, raw.p99],
    ["Arbor encrypt 1 KiB over HTTP", encrypt.rps, encrypt.p50, encrypt.p99],
    ["Arbor decrypt 1 KiB over HTTP", decrypt.rps, decrypt.p50, decrypt.p99],
  ] as const;
  console.log(`| operation | ops/s | ratio to raw | p50 ms | p99 ms |`);
  console.log(`|---|---:|---:|---:|---:|`);
  for (const [name, rate, p50, p99] of rows) {
    console.log(
      `| ${name} | ${formatNumber(rate)} | ${(rate / raw.opsPerSecond).toFixed(3)} | ${formatNumber(p50, 3)} | ${formatNumber(p99, 3)} |`,
    );
  }
  console.log(
    `\n${connections} connections, keep-alive, ${durationSeconds} s per run after a 2 s warm-up; ${encrypt.total} encrypt and ${decrypt.total} decrypt requests, all 2xx.`,
  );
} finally {
  await server.stop();
}
