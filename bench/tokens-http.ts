// Access token issuance over HTTP against raw Ed25519 signing and jose SignJWT, in one run.
//
//   npx tsx bench/tokens-http.ts [--duration 10] [--connections 32]
//
// The server (`arbor dev`, SQLite, client authentication and the durable audit writer on) runs
// in a child process and autocannon in this one. The load generator therefore shares the
// machine's cores with the server, and the figures are what one box does with both.
import { generateKeyPairSync, sign } from "node:crypto";
import { parseArgs } from "node:util";

import autocannon from "autocannon";
import { SignJWT } from "jose";

import { startDevServer } from "./dev-server.ts";
import { formatNumber, measureLoop, percentile } from "./stats.ts";

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "32" },
    port: { type: "string", default: "18201" },
  },
});
const durationSeconds = Number(values.duration);
const connections = Number(values.connections);

/** The service of the example hierarchy whose sign key signs the benchmark's tokens. */
const SERVICE = { environment: "prod", tenant: "acme", service: "billing" };
const AUDIENCE = "https://billing.example";

interface Measured {
  rps: number;
  p50: number;
  p99: number;
  total: number;
}

// Claims of the size Arbor issues (about 300 bytes of JSON), for the raw signing baselines.
const claims = {
  iss: "https://arbor.example.com/v1/issuers/prod/acme",
  sub: "svc_aaaaaaaaaaaaaaaaaaaaaaaaaa",
  client_id: "svc_aaaaaaaaaaaaaaaaaaaaaaaaaa",
  aud: AUDIENCE,
  exp: 1_900_000_900,
  iat: 1_900_000_000,
  nbf: 1_900_000_000,
  jti: "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa",
  scope: "invoices:read",
  env: "prod",
  tenant: "acme",
};
const header = { alg: "EdDSA", typ: "at+jwt", kid: "key_aaaaaaaaaaaaaaaaaaaaaaaaaa.1" };
const signingInput = Buffer.from(
  `${Buffer.from(JSON.stringify(header)).toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`,
);
const { privateKey } = generateKeyPairSync("ed25519");

function rawEd25519() {
  return measureLoop(() => sign(null, signingInput, privateKey), {
    durationMs: durationSeconds * 1000,
  });
}

/** Runs `inFlight` loops of jose SignJWT for the duration and times every signature. */
async function joseSignJwt(inFlight: number) {
  const once = () => new SignJWT(claims).setProtectedHeader(header).sign(privateKey);
  const warmupEnd = performance.now() + 500;
  while (performance.now() < warmupEnd) await once();

  const samples: number[] = [];
  const start = performance.now();
  const end = start + durationSeconds * 1000;
  const loop = async () => {
    while (performance.now() < end) {
      const before = performance.now();
      await once();
      samples.push(performance.now() - before);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, loop));
  const elapsed = (performance.now() - start) / 1000;
  samples.sort((a, b) => a - b);
  return {
    opsPerSecond: samples.length / elapsed,
    p50: percentile(samples, 50),
    p99: percentile(samples, 99),
  };
}

async function createPrincipal(address: string, rootToken: string) {
  const response = await fetch(`${address}/v1/services`, {
    method: "POST",
    headers: { authorization: `Bearer ${rootToken}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "bench", ...SERVICE, audiences: [AUDIENCE] }),
  });
  if (response.status !== 201) {
    throw new Error(`creating the service principal failed: ${await response.text()}`);
  }
  return (await response.json()) as { id: string; clientSecret: string };
}

async function issueTokens(url: string, authorization: string, overallRate?: number) {
  const options = {
    url,
    method: "POST" as const,
    connections,
    body: "grant_type=client_credentials",
    headers: { authorization, "content-type": "application/x-www-form-urlencoded" },
    ...(overallRate === undefined ? {} : { overallRate }),
  };
  // Warm-up pass, discarded: JIT, caches of unwrapped keys, SQLite page cache.
  await autocannon({ ...options, duration: 2 });
  const result = await autocannon({ ...options, duration: durationSeconds });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${url}: ${result.non2xx} non-2xx responses and ${result.errors} errors`);
  }
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result.requests.total,
  } satisfies Measured;
}

const server = await startDevServer(Number(values.port));
try {
  const principal = await createPrincipal(server.address, server.rootToken);
  const authorization = `Basic ${Buffer.from(`${principal.id}:${principal.clientSecret}`).toString("base64")}`;
  const tokenUrl = `${server.address}/v1/oauth/token`;

  const raw = rawEd25519();
  const joseOne = await joseSignJwt(1);
  const joseSixteen = await joseSignJwt(16);
  const full = await issueTokens(tokenUrl, authorization);
  const half = await issueTokens(tokenUrl, authorization, Math.max(1, Math.floor(full.rps / 2)));

  const rows = [
    ["raw Ed25519 sign of a JWT signing input (node:crypto)", raw.opsPerSecond, raw.p50, raw.p99],
    ["jose SignJWT EdDSA, 1 in flight", joseOne.opsPerSecond, joseOne.p50, joseOne.p99],
    [
      "jose SignJWT EdDSA, 16 in flight",
      joseSixteen.opsPerSecond,
      joseSixteen.p50,
      joseSixteen.p99,
    ],
    ["Arbor token issuance over HTTP, full load", full.rps, full.p50, full.p99],
    ["Arbor token issuance over HTTP, half load", half.rps, half.p50, half.p99],
  ] as const;
  console.log(`| operation | ops/s | ratio to raw | p50 ms | p99 ms |`);
  console.log(`|---|---:|---:|---:|---:|`);
  for (const [name, rate, p50, p99] of rows) {
    console.log(
      `| ${name} | ${formatNumber(rate)} | ${(rate / raw.opsPerSecond).toFixed(3)} | ${formatNumber(p50, 3)} | ${formatNumber(p99, 3)} |`,
    );
  }
  console.log(
    `\n${connections} connections, keep-alive, client_secret_basic, ${durationSeconds} s per run after a 2 s warm-up; ` +
      `${full.total} requests at full load and ${half.total} at half load (autocannon overallRate ${Math.floor(full.rps / 2)}/s), all 2xx. ` +
      `Every token is signed by the primary version of prod/acme/billing:sign and has a durable audit event before it is returned. ` +
      `The load generator runs in this process and shares the machine's cores with the server.`,
  );
} finally {
  await server.stop();
}
