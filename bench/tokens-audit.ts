// Access token issuance over HTTP with the durable audit writer against the same server with a
// no-op audit writer, in one run.
//
//   node --import tsx bench/tokens-audit.ts [--duration 10] [--connections 32] [--rounds 2]
//     [--cpu-prof DIR]
//
// Runs without npm (tsx is a dependency and `--import tsx` registers its loader); `npx tsx
// bench/tokens-audit.ts` does the same. Each measurement starts a fresh server in a child process
// (bench/audit-server.ts, the composition of `arbor dev`) on a new database in a temporary
// directory, removed afterwards. Rounds alternate the order (on then off, then off then on) so
// that a slow drift of the machine does not favour one side. autocannon runs in this process and
// shares the machine's cores with the server. `--cpu-prof DIR` writes V8 CPU profiles of every
// server process to DIR/audit-on and DIR/audit-off.
//
// Besides rate and latency, each row gives the server's CPU time per token and the time its event
// loop was busy per token. Busy time is CPU work plus synchronous waits, such as the fsync inside
// a commit with better-sqlite3. The last columns give the tokens per write transaction (the group
// commit batch size) and the stored `token.issued` events. After each run the script counts those
// events and fails unless audit on stored one per token and audit off none.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

import autocannon from "autocannon";
import Sqlite from "better-sqlite3";

import { formatNumber } from "./stats.ts";

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "32" },
    rounds: { type: "string", default: "2" },
    port: { type: "string", default: "18202" },
    "cpu-prof": { type: "string" },
  },
});
const durationSeconds = Number(values.duration);
const connections = Number(values.connections);
const rounds = Number(values.rounds);
const profileDir = values["cpu-prof"] === undefined ? undefined : resolve(values["cpu-prof"]);

/** The service of the example hierarchy whose sign key signs the benchmark's tokens. */
const SERVICE = { environment: "prod", tenant: "acme", service: "billing" };
const AUDIENCE = "https://billing.example";
/** The goal: issuance with audit on keeps at least this share of the rate with audit off. */
const GOAL_RATIO = 0.8;

type AuditMode = "on" | "off";

interface Run {
  mode: AuditMode;
  round: number;
  rps: number;
  p50: number;
  p99: number;
  /** Tokens issued (2xx responses) in the warm-up and the measured pass together. */
  issued: number;
  /** `token.issued` events in the database after the server stopped. */
  events: number;
  /** Server CPU time (user and system) per token of the measured pass, in milliseconds. */
  cpuMsPerToken: number;
  /** Time the server's event loop was busy per token of the measured pass, in milliseconds. */
  loopMsPerToken: number;
  /** Tokens per write transaction (group commit batch) of the measured pass; null without any. */
  tokensPerTransaction: number | null;
  loadAverage: number;
}

/** The server's CPU time and event loop busy time in milliseconds, and its write transactions. */
interface ServerUsage {
  cpuMs: number;
  loopActiveMs: number;
  transactions: number;
}

interface BenchServer {
  address: string;
  rootToken: string;
  usage(): Promise<ServerUsage>;
  /** Stops the server and returns the number of stored `token.issued` events. */
  stop(): Promise<number>;
}

async function startServer(mode: AuditMode): Promise<BenchServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "arbor-bench-tokens-audit-"));
  // One directory per mode, because Node names each profile by process and thread only.
  const profiling =
    profileDir === undefined
      ? []
      : ["--cpu-prof", "--cpu-prof-dir", join(profileDir, `audit-${mode}`)];
  const child = spawn(
    process.execPath,
    [
      ...profiling,
      "--import",
      "tsx",
      join(import.meta.dirname, "audit-server.ts"),
      "--data-dir",
      dataDir,
      "--port",
      values.port,
      "--audit",
      mode,
    ],
    { cwd: join(import.meta.dirname, ".."), stdio: ["ignore", "pipe", "inherit", "ipc"] },
  );
  const exited = new Promise<number | null>((resolveExit) => child.once("exit", resolveExit));

  const lines = createInterface({ input: child.stdout! });
  const ready = await Promise.race([
    new Promise<string>((resolveLine) => lines.once("line", resolveLine)),
    exited.then((code) => {
      throw new Error(`the benchmark server exited with code ${code} before it was ready`);
    }),
  ]);
  const { address, rootToken } = JSON.parse(ready) as { address: string; rootToken: string };

  return {
    address,
    rootToken,
    usage() {
      return new Promise<ServerUsage>((resolveUsage) => {
        child.once("message", (message) => {
          const { cpu, ...rest } = message as Omit<ServerUsage, "cpuMs"> & {
            cpu: { user: number; system: number };
          };
          resolveUsage({ cpuMs: (cpu.user + cpu.system) / 1000, ...rest });
        });
        child.send("usage");
      });
    },
    async stop() {
      child.kill("SIGTERM");
      const code = await exited;
      try {
        if (code !== 0) throw new Error(`the benchmark server exited with code ${code}`);
        return countIssuedEvents(join(dataDir, "arbor.db"));
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

function countIssuedEvents(file: string): number {
  const db = new Sqlite(file, { readonly: true, fileMustExist: true });
  try {
    const row = db
      .prepare("select count(*) as n from audit_events where type = 'token.issued'")
      .get() as { n: number };
    return row.n;
  } finally {
    db.close();
  }
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

async function measure(mode: AuditMode, round: number): Promise<Run> {
  const server = await startServer(mode);
  let stopped = false;
  try {
    const principal = await createPrincipal(server.address, server.rootToken);
    const options = {
      url: `${server.address}/v1/oauth/token`,
      method: "POST" as const,
      connections,
      body: "grant_type=client_credentials",
      headers: {
        authorization: `Basic ${Buffer.from(`${principal.id}:${principal.clientSecret}`).toString("base64")}`,
        "content-type": "application/x-www-form-urlencoded",
      },
    };
    // Warm-up pass, discarded: JIT, caches of unwrapped keys, SQLite page cache.
    const warmup = await autocannon({ ...options, duration: 2 });
    const loadAverage = loadavg()[0]!;
    const usageBefore = await server.usage();
    const result = await autocannon({ ...options, duration: durationSeconds });
    const usageAfter = await server.usage();
    const transactions = usageAfter.transactions - usageBefore.transactions;
    for (const pass of [warmup, result]) {
      if (pass.non2xx > 0 || pass.errors > 0) {
        throw new Error(
          `audit ${mode}: ${pass.non2xx} non-2xx responses and ${pass.errors} errors`,
        );
      }
    }

    stopped = true;
    const events = await server.stop();
    const issued = warmup["2xx"] + result["2xx"];
    checkEvents(mode, issued, events);
    return {
      mode,
      round,
      rps: result.requests.average,
      p50: result.latency.p50,
      p99: result.latency.p99,
      issued,
      events,
      cpuMsPerToken: (usageAfter.cpuMs - usageBefore.cpuMs) / result["2xx"],
      loopMsPerToken: (usageAfter.loopActiveMs - usageBefore.loopActiveMs) / result["2xx"],
      tokensPerTransaction: transactions === 0 ? null : result["2xx"] / transactions,
      loadAverage,
    };
  } finally {
    if (!stopped) await server.stop();
  }
}

/**
 * Checks that the run measured what it claims. With audit on, every issued token has its event,
 * and a few more can exist for requests that autocannon abandoned at the end. With audit off, no
 * token has one.
 */
function checkEvents(mode: AuditMode, issued: number, events: number): void {
  if (mode === "on" && (events < issued || events > issued + 2 * connections)) {
    throw new Error(`audit on: ${issued} tokens issued but ${events} token.issued events stored`);
  }
  if (mode === "off" && events !== 0) {
    throw new Error(
      `audit off: ${events} token.issued events were stored; the no-op writer was not used`,
    );
  }
}

function median(numbers: readonly number[]): number {
  const sorted = [...numbers].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const runs: Run[] = [];
for (let round = 1; round <= rounds; round++) {
  const order: AuditMode[] = round % 2 === 1 ? ["on", "off"] : ["off", "on"];
  for (const mode of order) runs.push(await measure(mode, round));
}

console.log(
  "| round | audit | tokens/s | p50 ms | p99 ms | server CPU ms/token | loop busy ms/token | " +
    "tokens/transaction | token.issued events | load average |",
);
console.log("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const run of runs) {
  const perTransaction =
    run.tokensPerTransaction === null ? "-" : formatNumber(run.tokensPerTransaction, 1);
  console.log(
    `| ${run.round} | ${run.mode} | ${formatNumber(run.rps)} | ${formatNumber(run.p50, 1)} | ` +
      `${formatNumber(run.p99, 1)} | ${formatNumber(run.cpuMsPerToken, 3)} | ` +
      `${formatNumber(run.loopMsPerToken, 3)} | ` +
      `${perTransaction} | ${formatNumber(run.events)} | ${run.loadAverage.toFixed(2)} |`,
  );
}

const ratios: number[] = [];
for (let round = 1; round <= rounds; round++) {
  const on = runs.find((run) => run.round === round && run.mode === "on")!;
  const off = runs.find((run) => run.round === round && run.mode === "off")!;
  ratios.push(on.rps / off.rps);
}
const medianRatio = median(ratios);
console.log(
  `\nRatio on/off per round: ${ratios.map((ratio) => ratio.toFixed(3)).join(", ")}; ` +
    `median ${medianRatio.toFixed(3)} (goal at least ${GOAL_RATIO.toFixed(2)}: ${medianRatio >= GOAL_RATIO ? "met" : "not met"}).`,
);
console.log(
  `${connections} connections, keep-alive, client_secret_basic, ${durationSeconds} s per run after a 2 s warm-up, ` +
    `all 2xx, Node.js ${process.version}. With audit on, every token has a durable token.issued event ` +
    `and issuance record (group commit, SQLite WAL, synchronous=FULL) before it is returned; with audit off ` +
    `the server's request events go to a no-op writer. The load average is the one-minute figure at the start ` +
    `of each measured pass; the load generator runs in this process on the same cores.`,
);
