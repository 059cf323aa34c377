import assert from "node:assert/strict";
import type { JsonWebKey } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";

import { checkCompleteness } from "../../src/audit/completeness.ts";
import { createAuditLogStore } from "../../src/audit/log-store.ts";
import { verifyAuditLog } from "../../src/audit/verify.ts";
import { openStorage } from "../../src/storage/index.ts";
import { readJson, startForeground, type ForegroundProcess } from "../cli/helpers.ts";

interface DevReady {
  address: string;
}

/** Requests kept in flight at all times while the server runs. */
const CONCURRENCY = 48;
/** Rounds tried until one kill lands while requests are in flight. */
const MAX_ROUNDS = 3;
const KEY = "crash/app:encrypt";

interface Round {
  database: string;
  dataDir: string;
  publicKey: JsonWebKey;
  /** Data key ids of the requests that got a complete 2xx response. */
  responded: string[];
  /** Requests sent but without a response when the server died. */
  cutOff: number;
}

async function startDev(dataDir: string): Promise<ForegroundProcess<DevReady>> {
  return startForeground<DevReady>(
    ["dev", "--port", "0", "--data-dir", dataDir, "--json"],
    (line) => "address" in line,
  );
}

function client(address: string, token: string) {
  return async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${address}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
}

/**
 * Starts `arbor dev`, creates an encrypt key, keeps CONCURRENCY data key requests in flight and
 * kills the server with SIGKILL once `killAfter` of them got a response.
 */
async function crashRound(work: string, round: number, killAfter: number): Promise<Round> {
  const dataDir = join(work, `round-${round}`);
  const dev = await startDev(dataDir);
  try {
    const { rootToken } = readJson<{ rootToken: string }>(join(dataDir, "dev-credentials.json"));
    const call = client(dev.ready.address, rootToken);

    const publicKey = await call("GET", "/v1/audit/public-key");
    assert.equal(publicKey.status, 200, JSON.stringify(publicKey.body));
    for (const path of ["crash", KEY]) {
      const created = await call("POST", "/v1/keys", { path });
      assert.equal(created.status, 201, JSON.stringify(created.body));
    }

    const responded: string[] = [];
    let cutOff = 0;
    let killed = false;
    const exited = once(dev.child, "exit");
    const url = `/v1/keys/${encodeURIComponent(KEY)}/data-key`;

    const worker = async (): Promise<void> => {
      while (!killed) {
        let result;
        try {
          result = await call("POST", url, { context: { round: String(round) } });
        } catch {
          // The connection died with the server, so this request got no response.
          cutOff += 1;
          return;
        }
        assert.equal(result.status, 200, JSON.stringify(result.body));
        responded.push(result.body.dataKeyId as string);
        if (!killed && responded.length >= killAfter) {
          killed = true;
          process.kill(dev.child.pid!, "SIGKILL");
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
    assert.equal(signal, "SIGKILL", `the server exited by itself with ${code}: ${dev.stderr()}`);

    return {
      database: join(dataDir, "arbor.db"),
      dataDir,
      publicKey: publicKey.body,
      responded,
      cutOff,
    };
  } finally {
    // `stop` would wait for a second exit event of a process that already exited.
    if (dev.child.exitCode === null && dev.child.signalCode === null) await dev.stop();
  }
}

/** Opens the database as a restarted server would and checks the log and the data key ids. */
async function checkLog(round: Round): Promise<void> {
  const storage = await openStorage({ kind: "sqlite", path: round.database });
  try {
    const report = await verifyAuditLog(createAuditLogStore(storage.db), round.publicKey);
    assert.equal(report.ok, true, JSON.stringify(report.damage));
    assert.ok(report.records > round.responded.length, JSON.stringify(report));

    const recorded = new Set<string>();
    const responded = [...round.responded];
    while (responded.length > 0) {
      const page = responded.splice(0, 500);
      const rows = await storage.db
        .selectFrom("audit_events")
        .select("credential_id")
        .where("type", "=", "data_key.issued")
        .where("outcome", "=", "success")
        .where("credential_id", "in", page)
        .execute();
      for (const row of rows) recorded.add(row.credential_id!);
    }
    const missing = round.responded.filter((id) => !recorded.has(id));
    assert.deepEqual(
      missing,
      [],
      "data keys returned to a client without a data_key.issued record",
    );

    const completeness = await checkCompleteness(storage.db);
    assert.equal(completeness.complete, true, JSON.stringify(completeness));
  } finally {
    await storage.close();
  }
}

describe("audit log after SIGKILL", () => {
  const work = mkdtempSync(join(tmpdir(), "arbor-crash-"));
  after(() => rmSync(work, { recursive: true, force: true }));

  test("killed writer leaves a verifiable log", async (t) => {
    let round: Round | undefined;
    for (let attempt = 1; attempt <= MAX_ROUNDS; attempt++) {
      // A different moment each round, in case one lands between batches.
      round = await crashRound(work, attempt, 150 + Math.floor(Math.random() * 250));
      if (round.cutOff > 0 && round.responded.length > 0) break;
    }
    assert.ok(round !== undefined);
    assert.ok(round.responded.length > 0, "no request got a response before the kill");
    assert.ok(round.cutOff > 0, `no request was in flight in ${MAX_ROUNDS} rounds`);
    t.diagnostic(`${round.responded.length} responses, ${round.cutOff} requests cut off`);

    await checkLog(round);

    // The restarted server continues the chain from the last durable record.
    const restarted = await startDev(round.dataDir);
    try {
      const { rootToken } = readJson<{ rootToken: string }>(
        join(round.dataDir, "dev-credentials.json"),
      );
      const call = client(restarted.ready.address, rootToken);
      const issued = await call("POST", `/v1/keys/${encodeURIComponent(KEY)}/data-key`, {});
      assert.equal(issued.status, 200, JSON.stringify(issued.body));
      round.responded.push(issued.body.dataKeyId as string);
    } finally {
      assert.equal(await restarted.stop(), 0, restarted.stderr());
    }
    await checkLog(round);
  });
});
