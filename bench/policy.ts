// Cedar authorization: decisions per second with 10, 200 and 2,000 stored policies, and token
// issuance and envelope throughput over HTTP with Cedar against the allow-all authorizer, in one run.
//
//   npx tsx bench/policy.ts [--duration 10] [--connections 32]
//
// The decision figures run in this process. For the HTTP figures two servers run side by side in
// child processes, built by the composition root on SQLite with the durable audit writer. One has
// the Cedar authorizer and the other the allow-all authorizer, which only this benchmark wires in.
// autocannon runs in this process, so the load generator shares the machine's cores with them.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

import autocannon from "autocannon";
import { parse } from "yaml";

import { loadConfig } from "../src/config/index.ts";
import { cedar } from "../src/policy/cedar.ts";
import {
  keyResource,
  principalEntity,
  resourceEntity,
  type PrincipalFacts,
} from "../src/policy/entities.ts";
import {
  ACTION_NAMES,
  BUILTIN_POLICIES,
  PolicyEngine,
  SCHEMA_TEXT,
  type DecisionRequest,
} from "../src/policy/index.ts";
import { allowAllAuthorizer } from "../src/server/authorizer.ts";
import { startArbor } from "../src/server/compose.ts";
import { createLogger } from "../src/server/logger.ts";
import { formatNumber, measureLoop } from "./stats.ts";

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "32" },
    port: { type: "string", default: "18210" },
    serve: { type: "string" },
    dir: { type: "string" },
  },
});
const durationSeconds = Number(values.duration);
const connections = Number(values.connections);
const repo = join(import.meta.dirname, "..");

const KEY = "prod/acme/billing:encrypt";
const AUDIENCE = "https://billing.example";

// ---------------------------------------------------------------- decisions in one process

const TENANTS = Array.from({ length: 50 }, (_, n) => `t${n}`);

/**
 * Stored policies of the kind a deployment accumulates: per-principal permits on one action and
 * one tenant, forbids on one service, and role permits on action groups.
 */
function storedPolicies(count: number): string[] {
  const actions = ACTION_NAMES.filter(
    (name) => name.startsWith("key.") || name.startsWith("crypto."),
  );
  return Array.from({ length: count }, (_, n) => {
    const action = actions[n % actions.length]!;
    const tenant = TENANTS[n % TENANTS.length]!;
    switch (n % 3) {
      case 0:
        return `permit (principal == Arbor::Operator::"opt_${n}", action == Arbor::Action::"${action}", resource) when { resource.tenant == "${tenant}" };`;
      case 1:
        return `forbid (principal, action == Arbor::Action::"${action}", resource is Arbor::Key) when { resource.service == "svc${n}" };`;
      default:
        return `permit (principal in Arbor::Role::"team-${n}", action in Arbor::Action::"read", resource) when { resource.env == "prod" };`;
    }
  });
}

/** 64 requests: tenant administrators of prod reading, rotating and using keys of their tenant. */
function requests(): DecisionRequest[] {
  const actions = ["key.read", "key.rotate", "crypto.encrypt", "crypto.decrypt"];
  return Array.from({ length: 64 }, (_, n) => {
    const tenant = TENANTS[n % TENANTS.length]!;
    const principal: PrincipalFacts = {
      type: "Operator",
      id: `opt_${n}`,
      environment: "prod",
      tenant,
      service: null,
      readOnly: false,
      root: false,
      roles: ["tenant-admin"],
    };
    const resource = keyResource({
      id: `key_${n}`,
      path: `prod/${tenant}/billing:encrypt`,
      environment: "prod",
      tenant,
      service: "billing",
      kind: "service",
      purpose: "encrypt",
    });
    return {
      principal,
      action: actions[n % actions.length]!,
      resource,
      breakGlass: null,
      now: Date.now(),
    };
  });
}

function measureDecisions(count: number) {
  const texts = storedPolicies(count);
  const documents = [{ name: "bench", version: 1, text: texts.join("\n") }];
  const batch = requests();
  const durationMs = Math.max(1000, (durationSeconds * 1000) / 4);

  const uncached = new PolicyEngine({ cacheTtlMs: 0 });
  const loadStart = performance.now();
  uncached.load(documents);
  const loadMs = performance.now() - loadStart;
  let i = 0;
  const engine = measureLoop(() => uncached.decide(batch[i++ % batch.length]!), { durationMs });

  const cachedEngine = new PolicyEngine({ cacheTtlMs: 60_000 });
  cachedEngine.load(documents);
  const cached = measureLoop(() => cachedEngine.decide(batch[i++ % batch.length]!), { durationMs });

  // One pre-parsed set of every policy, as a single stateful call without the split by action.
  const whole = Object.fromEntries([
    ...BUILTIN_POLICIES.map((policy) => [policy.id, policy.text]),
    ...texts.map((text, n) => [`bench#${n + 1}`, text]),
  ]);
  cedar().preparseSchema("bench-schema", SCHEMA_TEXT);
  cedar().preparsePolicySet(`bench-whole-${count}`, { staticPolicies: whole });
  const call = (request: DecisionRequest) => {
    const entities = [principalEntity(request.principal, null), resourceEntity(request.resource)];
    return {
      principal: entities[0]!.uid,
      action: { type: "Arbor::Action", id: request.action },
      resource: entities[1]!.uid,
      context: { now: request.now },
      entities,
    };
  };
  const unsplit = measureLoop(
    () =>
      cedar().statefulIsAuthorized({
        ...call(batch[i++ % batch.length]!),
        preparsedSchemaName: "bench-schema",
        validateRequest: true,
        preparsedPolicySetId: `bench-whole-${count}`,
      }),
    { durationMs },
  );
  // Parsing the policies and the schema on every call, for comparison.
  const parsed = measureLoop(
    () =>
      cedar().isAuthorized({
        ...call(batch[i++ % batch.length]!),
        schema: SCHEMA_TEXT,
        validateRequest: true,
        policies: { staticPolicies: whole },
      }),
    { durationMs: Math.min(durationMs, 2000), warmupMs: 100 },
  );
  return { count, loadMs, engine, cached, unsplit, parsed };
}

// ---------------------------------------------------------------- HTTP, Cedar against allow-all

interface Served {
  address: string;
  rootToken: string;
  tenantToken: string;
  clientId: string;
  clientSecret: string;
  ciphertext: string;
}

/** Child process: starts a server with the named authorizer, prepares it and prints `Served`. */
async function serve(kind: string, port: number, dir: string): Promise<void> {
  const config = await loadConfig({
    env: {},
    flags: { storagePath: join(dir, "arbor.db"), listen: `127.0.0.1:${port}`, logLevel: "warn" },
  });
  const arbor = await startArbor(config, {
    logger: createLogger({ level: "warn" }),
    ...(kind === "allow-all" ? { authorizer: allowAllAuthorizer } : {}),
  });
  const call = async <T>(
    method: string,
    path: string,
    body: unknown,
    token?: string,
  ): Promise<T> => {
    const response = await fetch(`${arbor.address}${path}`, {
      method,
      headers: {
        "content-type": "application/json",
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      },
      body: JSON.stringify(body),
    });
    if (!response.ok)
      throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  };

  const { shares, rootToken } = await call<{ shares: string[]; rootToken: string }>(
    "POST",
    "/v1/sys/init",
    {
      shares: 3,
      threshold: 2,
    },
  );
  const { nonce } = await call<{ nonce: string }>("POST", "/v1/sys/unseal", {});
  for (const share of shares.slice(0, 2)) await call("POST", "/v1/sys/unseal", { nonce, share });
  const document = parse(readFileSync(join(repo, "examples/hierarchy.yaml"), "utf8")) as unknown;
  await call("POST", "/v1/apply", { document }, rootToken);

  const tenant = await call<{ token: string }>(
    "POST",
    "/v1/operator/tokens",
    { name: "bench-acme", environment: "prod", tenant: "acme", ttl: "24h" },
    rootToken,
  );
  const principal = await call<{ id: string; clientSecret: string }>(
    "POST",
    "/v1/services",
    {
      name: "bench",
      environment: "prod",
      tenant: "acme",
      service: "billing",
      audiences: [AUDIENCE],
    },
    rootToken,
  );
  const { ciphertext } = await call<{ ciphertext: string }>(
    "POST",
    `/v1/keys/${encodeURIComponent(KEY)}/encrypt`,
    { plaintext: Buffer.alloc(1024, 7).toString("base64"), context: { bench: "1" } },
    tenant.token,
  );
  const served: Served = {
    address: arbor.address,
    rootToken,
    tenantToken: tenant.token,
    clientId: principal.id,
    clientSecret: principal.clientSecret,
    ciphertext,
  };
  console.log(JSON.stringify(served));
  process.once("SIGTERM", () => void arbor.close().then(() => process.exit(0)));
}

interface Child {
  served: Served;
  stop(): Promise<void>;
}

async function startChild(kind: "cedar" | "allow-all", port: number): Promise<Child> {
  const dir = mkdtempSync(join(tmpdir(), `arbor-bench-${kind}-`));
  const child: ChildProcess = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(import.meta.dirname, "policy.ts"),
      "--serve",
      kind,
      "--port",
      String(port),
      "--dir",
      dir,
    ],
    { cwd: repo, stdio: ["ignore", "pipe", "inherit"] },
  );
  const lines = createInterface({ input: child.stdout! });
  const served = await new Promise<Served>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`the ${kind} server exited with code ${code}`)));
    lines.once("line", (line) => resolve(JSON.parse(line) as Served));
  });
  return {
    served,
    async stop() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface Measured {
  rps: number;
  p50: number;
  p99: number;
  total: number;
}

async function load(options: autocannon.Options): Promise<Measured> {
  const all = { connections, ...options };
  await autocannon({ ...all, duration: 2 });
  const result = await autocannon({ ...all, duration: durationSeconds });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(
      `${options.url}: ${result.non2xx} non-2xx responses and ${result.errors} errors`,
    );
  }
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result.requests.total,
  };
}

function mean(first: Measured, second: Measured): Measured {
  return {
    rps: (first.rps + second.rps) / 2,
    p50: (first.p50 + second.p50) / 2,
    p99: (first.p99 + second.p99) / 2,
    total: first.total + second.total,
  };
}

function httpLoads(served: Served) {
  const json = (token: string) => ({
    authorization: `Bearer ${token}`,
    "content-type": "application/json",
  });
  const basic = Buffer.from(`${served.clientId}:${served.clientSecret}`).toString("base64");
  return {
    "token issuance (client credentials)": () =>
      load({
        url: `${served.address}/v1/oauth/token`,
        method: "POST",
        body: "grant_type=client_credentials",
        headers: {
          authorization: `Basic ${basic}`,
          "content-type": "application/x-www-form-urlencoded",
        },
      }),
    "encrypt 1 KiB, tenant-scoped token": () =>
      load({
        url: `${served.address}/v1/keys/${encodeURIComponent(KEY)}/encrypt`,
        method: "POST",
        body: JSON.stringify({
          plaintext: Buffer.alloc(1024, 7).toString("base64"),
          context: { bench: "1" },
        }),
        headers: json(served.tenantToken),
      }),
    "decrypt 1 KiB, tenant-scoped token": () =>
      load({
        url: `${served.address}/v1/decrypt`,
        method: "POST",
        body: JSON.stringify({ ciphertext: served.ciphertext, context: { bench: "1" } }),
        headers: json(served.tenantToken),
      }),
  };
}

async function main(): Promise<void> {
  console.log("## Decisions in one process\n");
  console.log(
    "| stored policies | load ms | engine, no cache /s | p50 µs | p99 µs | engine, cache hits /s | one set, no split /s | parsed per call /s |",
  );
  console.log("|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const count of [10, 200, 2000]) {
    const m = measureDecisions(count);
    console.log(
      `| ${formatNumber(count)} | ${formatNumber(m.loadMs)} | ${formatNumber(m.engine.opsPerSecond)} | ${formatNumber(m.engine.p50 * 1000)} | ${formatNumber(m.engine.p99 * 1000)} | ${formatNumber(m.cached.opsPerSecond)} | ${formatNumber(m.unsplit.opsPerSecond)} | ${formatNumber(m.parsed.opsPerSecond)} |`,
    );
  }

  const port = Number(values.port);
  const cedarServer = await startChild("cedar", port);
  const allowServer = await startChild("allow-all", port + 1);
  try {
    const cedarLoads = httpLoads(cedarServer.served);
    const allowLoads = httpLoads(allowServer.served);
    console.log(`\n## Over HTTP, ${connections} connections\n`);
    console.log(
      "| operation | Cedar req/s | allow-all req/s | ratio | Cedar p50 / p99 ms | allow-all p50 / p99 ms |",
    );
    console.log("|---|---:|---:|---:|---:|---:|");
    for (const name of Object.keys(cedarLoads) as Array<keyof typeof cedarLoads>) {
      // Runs in the order Cedar, allow-all, allow-all, Cedar, so that drift of the machine
      // during the runs affects both sides alike; each side reports the mean of its two runs.
      const cedarFirst = await cedarLoads[name]();
      const allowFirst = await allowLoads[name]();
      const allowSecond = await allowLoads[name]();
      const cedarSecond = await cedarLoads[name]();
      const withCedar = mean(cedarFirst, cedarSecond);
      const withAllowAll = mean(allowFirst, allowSecond);
      console.log(
        `| ${name} | ${formatNumber(withCedar.rps)} | ${formatNumber(withAllowAll.rps)} | ${(withCedar.rps / withAllowAll.rps).toFixed(3)} | ${withCedar.p50} / ${withCedar.p99} | ${withAllowAll.p50} / ${withAllowAll.p99} |`,
      );
    }
    console.log(
      `\nkeep-alive, two runs of ${durationSeconds} s per side after a 2 s warm-up each, every response 2xx. ` +
        "Both servers run at once on the same machine as the load generator; only the one under load is busy.",
    );
  } finally {
    await cedarServer.stop();
    await allowServer.stop();
  }
}

// Declarations above; the child server or the benchmark runs last.
if (values.serve !== undefined) {
  await serve(values.serve, Number(values.port), values.dir!);
} else {
  await main();
}
