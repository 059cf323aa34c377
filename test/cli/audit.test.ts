import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { sql } from "kysely";

import { parseRecord } from "../../src/audit/record.ts";
import { openStorage } from "../../src/storage/index.ts";
import { readJson, runCli, startForeground, type ForegroundProcess } from "./helpers.ts";

interface DevReady {
  address: string;
}

interface ProofJson {
  checkpoint: { signature: string };
  entries: Array<{ record: string; inclusion: string[] }>;
}

/** Returns the error code of the line that `--json` prints on standard error. */
function errorCode(stderr: string): string | undefined {
  const line = stderr.trim().split("\n").at(-1) ?? "";
  try {
    return (JSON.parse(line) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

/** Replaces the character at `index` with another one of the same class, so the JSON stays valid. */
function changeOneByte(text: string, index: number): string {
  const current = text[index]!;
  const replacement = /[0-9]/.test(current)
    ? current === "0"
      ? "1"
      : "0"
    : current === "a"
      ? "b"
      : "a";
  return `${text.slice(0, index)}${replacement}${text.slice(index + 1)}`;
}

// One `arbor dev` server; the tests run in order and the last one stops it to damage its database.
describe("arbor audit against arbor dev", () => {
  let work: string;
  let dataDir: string;
  let dev: ForegroundProcess<DevReady>;
  let env: Record<string, string>;
  let keyFile: string;

  const cli = (args: string[]) => runCli(args, { env });

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "arbor-cli-audit-"));
    dataDir = join(work, "dev");
    keyFile = join(work, "audit-key.jwk");
    dev = await startForeground<DevReady>(
      ["dev", "--port", "0", "--data-dir", dataDir, "--json"],
      (line) => "address" in line,
    );
    const credentials = readJson<{ rootToken: string }>(join(dataDir, "dev-credentials.json"));
    env = { ARBOR_ADDR: dev.ready.address, ARBOR_TOKEN: credentials.rootToken };
  });

  after(async () => {
    await dev?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  async function issueDataKey(): Promise<string> {
    const key = encodeURIComponent("prod/acme/billing:encrypt");
    const response = await fetch(`${env.ARBOR_ADDR}/v1/keys/${key}/data-key`, {
      method: "POST",
      headers: { authorization: `Bearer ${env.ARBOR_TOKEN}`, "content-type": "application/json" },
      body: "{}",
    });
    const body = (await response.json()) as { dataKeyId: string };
    assert.equal(response.status, 200, JSON.stringify(body));
    return body.dataKeyId;
  }

  test("verify of a live server exits 0", async () => {
    const result = await cli(["audit", "verify", "--json"]);
    assert.equal(result.code, 0, result.stderr);
    const report = result.json<{ ok: boolean; records: number; damage: unknown }>();
    assert.equal(report.ok, true, result.text);
    assert.equal(report.damage, null);
    assert.ok(report.records > 0, result.text);
  });

  test("public-key prints an Ed25519 JWK", async () => {
    const result = await cli(["audit", "public-key"]);
    assert.equal(result.code, 0, result.stderr);
    writeFileSync(keyFile, result.stdout);
    const jwk = readJson<Record<string, unknown>>(keyFile);
    assert.deepEqual(Object.keys(jwk).sort(), ["crv", "kty", "x"]);
    assert.equal(jwk.kty, "OKP");
    assert.equal(jwk.crv, "Ed25519");
  });

  test("tail -n 5 --json prints five records", async () => {
    const result = await cli(["audit", "tail", "-n", "5", "--json"]);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.text.split("\n").filter((line) => line !== "");
    assert.equal(lines.length, 5, result.text);
    const seqs = lines.map((line) => parseRecord(line).seq);
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1]! + 1, result.text);
  });

  test("trace proof verifies offline and fails when changed", async () => {
    const dataKeyId = await issueDataKey();
    const checkpoint = await cli(["audit", "checkpoint", "--json"]);
    assert.equal(checkpoint.code, 0, checkpoint.stderr);
    assert.equal(checkpoint.json<{ signed: boolean }>().signed, true, checkpoint.text);

    const proofFile = join(work, "p.json");
    const traced = await cli(["audit", "trace", dataKeyId, "--proof", proofFile]);
    assert.equal(traced.code, 0, traced.stderr);
    assert.match(traced.text, /data_key\.issued/);

    const verified = await cli(["audit", "verify-proof", proofFile, "--public-key", keyFile]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.text, new RegExp(`Proof valid: ${dataKeyId}`));

    const original = readFileSync(proofFile, "utf8");
    const proof = JSON.parse(original) as ProofJson;
    const issuing = proof.entries.find((entry) => entry.record.includes(dataKeyId))!;
    const targets = {
      "a digit of the data key's record": original.indexOf(String(parseRecord(issuing.record).at)),
      "an inclusion hash": original.indexOf(proof.entries[0]!.inclusion[0]!),
      "the checkpoint signature": original.indexOf(proof.checkpoint.signature) + 10,
    };
    for (const [what, index] of Object.entries(targets)) {
      assert.ok(index > 0, `${what} not found in the proof file`);
      const changed = changeOneByte(original, index);
      assert.equal(changed.length, original.length);
      writeFileSync(proofFile, changed);

      const rejected = await cli([
        "audit",
        "verify-proof",
        proofFile,
        "--public-key",
        keyFile,
        "--json",
      ]);
      assert.notEqual(rejected.code, 0, `changing ${what} still verified: ${rejected.text}`);
      assert.equal(errorCode(rejected.stderr), "PROOF_INVALID", `${what}: ${rejected.stderr}`);
    }
    writeFileSync(proofFile, original);
  });

  test("verify --db names a deleted record", async () => {
    // Stopping signs a last checkpoint over the tail, then the database is checked offline.
    assert.equal(await dev.stop(), 0, dev.stderr());
    const database = join(dataDir, "arbor.db");

    const intact = await cli(["audit", "verify", "--db", database, "--public-key", keyFile]);
    assert.equal(intact.code, 0, intact.stderr);
    assert.match(intact.text, /^Audit log intact/);

    const storage = await openStorage({ kind: "sqlite", path: database });
    try {
      const deleted = await sql`delete from audit_events where seq = 5`.execute(storage.db);
      assert.equal(Number(deleted.numAffectedRows), 1);
    } finally {
      await storage.close();
    }

    const damaged = await cli([
      "audit",
      "verify",
      "--db",
      database,
      "--public-key",
      keyFile,
      "--json",
    ]);
    assert.notEqual(damaged.code, 0, damaged.text);
    assert.equal(errorCode(damaged.stderr), "AUDIT_DAMAGED", damaged.stderr);
    const report = damaged.json<{ ok: boolean; damage: { kind: string; seq: number } }>();
    assert.deepEqual([report.ok, report.damage.kind, report.damage.seq], [false, "deleted", 5]);

    const text = await cli(["audit", "verify", "--db", database, "--public-key", keyFile]);
    assert.notEqual(text.code, 0);
    assert.match(text.text, /DAMAGED at record 5: deleted/);
  });
});
