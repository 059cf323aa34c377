import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  existsSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import type {
  ApplyResponse,
  CreatedOperatorToken,
  InitResponse,
  Key,
  OperatorToken,
  SealStatus,
  TreeNode,
} from "../../src/cli/api-types.ts";
import {
  closedPort,
  readJson,
  runCli,
  startForeground,
  type ForegroundProcess,
} from "./helpers.ts";

/** The JSON line `arbor dev --json` prints once it is ready. */
interface DevReady {
  address: string;
  initialized: boolean;
  created: string[];
  keys: number;
}

/** The parts of dev-credentials.json the tests read. */
interface DevCredentials {
  shares: string[];
  threshold: number;
  rootToken: string;
}

// One `arbor dev` server is shared by the tests below, which run in order: later tests rely on
// keys and tokens that earlier ones created, and the last ones restart the server.
describe("arbor CLI against arbor dev", () => {
  let work: string;
  let dataDir: string;
  let dev: ForegroundProcess<DevReady>;
  let env: Record<string, string>;

  const credentialsFile = (): string => join(dataDir, "dev-credentials.json");
  const cli = (
    args: string[],
    options: { env?: Record<string, string>; input?: Buffer | string } = {},
  ) =>
    runCli(args, {
      env: { ...env, ...options.env },
      ...(options.input === undefined ? {} : { input: options.input }),
    });

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "arbor-cli-"));
    dataDir = join(work, "dev");
    dev = await startForeground<DevReady>(
      ["dev", "--port", "0", "--data-dir", dataDir, "--json"],
      (line) => "address" in line,
    );
    const credentials = readJson<DevCredentials>(credentialsFile());
    env = { ARBOR_ADDR: dev.ready.address, ARBOR_TOKEN: credentials.rootToken };
  });

  after(async () => {
    await dev?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  test("dev first start initialises, unseals and applies the example", async () => {
    assert.equal(dev.ready.initialized, true);
    assert.ok(dev.ready.created.includes("prod/acme/billing:encrypt"));
    assert.match(dev.ready.address, /^http:\/\/127\.0\.0\.1:[1-9][0-9]*$/);

    assert.equal(statSync(credentialsFile()).mode & 0o777, 0o600);
    const credentials = readJson<DevCredentials>(credentialsFile());
    assert.equal(credentials.shares.length, 5);
    assert.equal(credentials.threshold, 3);
    assert.match(credentials.rootToken, /^arbor_op_/);

    const status = await cli(["status", "--json"]);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(status.json<SealStatus>().sealed, false);
  });

  test("key commands print JSON", async () => {
    const created = await cli([
      "key",
      "create",
      "dev/reports:encrypt",
      "--rotation",
      "30d",
      "--json",
    ]);
    assert.equal(created.code, 0, created.stderr);
    const key = created.json<Key>();
    assert.equal(key.path, "dev/reports:encrypt");
    assert.equal(key.rotationPeriod, "30d");
    assert.equal(key.primaryVersion, 1);

    const listed = await cli(["key", "list", "--prefix", "dev/", "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok(listed.json<{ keys: Key[] }>().keys.some((k) => k.id === key.id));

    const shown = await cli(["key", "show", key.id, "--json"]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(shown.json().path, "dev/reports:encrypt");

    const rotated = await cli(["key", "rotate", "dev/reports:encrypt", "--json"]);
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.equal(rotated.json().version, 2);
    assert.equal(rotated.json().state, "primary");

    const disabled = await cli([
      "key",
      "disable",
      "dev/reports:encrypt",
      "--version",
      "1",
      "--json",
    ]);
    assert.equal(disabled.code, 0, disabled.stderr);
    assert.equal(disabled.json().state, "disabled");

    const enabled = await cli(["key", "enable", "dev/reports:encrypt", "--version", "1", "--json"]);
    assert.equal(enabled.code, 0, enabled.stderr);
    assert.equal(enabled.json().state, "active");

    const minimum = await cli(["key", "min-version", "dev/reports:encrypt", "2", "--json"]);
    assert.equal(minimum.code, 0, minimum.stderr);
    assert.equal(minimum.json().minDecryptionVersion, 2);

    const revoked = await cli([
      "key",
      "revoke",
      "dev/reports:encrypt",
      "--version",
      "1",
      "--yes",
      "--json",
    ]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(revoked.json().state, "revoked");
  });

  test("key tree draws the hierarchy", async () => {
    const tree = await cli(["key", "tree", "--prefix", "prod"]);
    assert.equal(tree.code, 0, tree.stderr);
    assert.match(tree.text, /^prod {2}\(master, v1\)$/m);
    assert.match(tree.text, /^├── prod\/acme {2}\(master, v1\)$/m);
    assert.match(tree.text, /^│ {3}├── prod\/acme\/billing:encrypt {2}\(encrypt, v1\)$/m);

    const json = await cli(["key", "tree", "--prefix", "prod", "--json"]);
    assert.equal(json.json<{ tree: TreeNode[] }>().tree[0]!.path, "prod");
  });

  test("key revoke without --yes needs a terminal", async () => {
    const result = await cli(["key", "revoke", "dev/reports:encrypt", "--version", "2"]);
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /^error USAGE: revoking version 2 of dev\/reports:encrypt needs confirmation$/m,
    );
    assert.match(result.stderr, /^hint: pass --yes/m);

    const key = await cli(["key", "show", "dev/reports:encrypt", "--json"]);
    assert.equal(key.json<Key>().versions[1]!.state, "primary");
  });

  test("unknown key names the key and a next step", async () => {
    const result = await cli(["key", "show", "prod/nope:encrypt"]);
    assert.equal(result.code, 1);
    assert.equal(result.text, "");
    assert.match(result.stderr, /^error KEY_NOT_FOUND: .*"prod\/nope:encrypt"/m);
    assert.match(result.stderr, /^hint: check the path with `arbor key list`/m);

    const json = await cli(["key", "show", "prod/nope:encrypt", "--json"]);
    assert.equal(json.code, 1);
    assert.equal(JSON.parse(json.stderr).error.code, "KEY_NOT_FOUND");
  });

  test("usage errors exit with 2", async () => {
    const badDuration = await cli(["key", "create", "dev/x:encrypt", "--rotation", "9x"]);
    assert.equal(badDuration.code, 2);
    assert.match(
      badDuration.stderr,
      /^error USAGE: option '--rotation <duration>' argument '9x' is invalid/m,
    );

    const unknownOption = await cli(["key", "list", "--colour"]);
    assert.equal(unknownOption.code, 2);
    assert.match(unknownOption.stderr, /^error USAGE: unknown option '--colour'$/m);

    const badContext = await cli([
      "encrypt",
      "--key",
      "dev/ledger:encrypt",
      "--context",
      "novalue",
    ]);
    assert.equal(badContext.code, 2);
    assert.match(badContext.stderr, /expected key=value/);
  });

  test("encrypt and decrypt a file of 3 MiB", async () => {
    const plain = join(work, "data.bin");
    const sealed = join(work, "data.arbor");
    const opened = join(work, "data.out");
    const data = randomBytes(3 * 1024 * 1024 + 123);
    writeFileSync(plain, data);

    const encrypted = await cli([
      "encrypt",
      "--key",
      "prod/acme/billing:encrypt",
      "--context",
      "tenant=acme",
      "--context",
      "table=invoices",
      "--output",
      sealed,
      plain,
      "--json",
    ]);
    assert.equal(encrypted.code, 0, encrypted.stderr);
    assert.equal(encrypted.json().plaintextBytes, data.length);
    assert.ok(statSync(sealed).size > data.length);

    const decrypted = await cli([
      "decrypt",
      "--context",
      "table=invoices",
      "--context",
      "tenant=acme",
      "--output",
      opened,
      sealed,
      "--json",
    ]);
    assert.equal(decrypted.code, 0, decrypted.stderr);
    assert.deepEqual(decrypted.json().context, { table: "invoices", tenant: "acme" });
    assert.ok(readFileSync(opened).equals(data));
    assert.equal(statSync(opened).mode & 0o777, 0o600);

    // Without --context, the context bound in the ciphertext is used.
    const reported = await cli(["decrypt", sealed]);
    assert.equal(reported.code, 0, reported.stderr);
    assert.ok(reported.stdout.equals(data));
  });

  test("encrypt and decrypt through stdin and stdout", async () => {
    const data = Buffer.from("a short secret\n");
    const encrypted = await cli(["encrypt", "--key", "prod/ledger:encrypt"], { input: data });
    assert.equal(encrypted.code, 0, encrypted.stderr);
    assert.equal(encrypted.stdout.includes(data), false);

    const decrypted = await cli(["decrypt"], { input: encrypted.stdout });
    assert.equal(decrypted.code, 0, decrypted.stderr);
    assert.ok(decrypted.stdout.equals(data));
  });

  test("truncated ciphertext fails and leaves no output file", async () => {
    const plain = join(work, "trunc.bin");
    const sealed = join(work, "trunc.arbor");
    const cut = join(work, "trunc-cut.arbor");
    const opened = join(work, "trunc.out");
    const data = randomBytes(512 * 1024);
    writeFileSync(plain, data);
    const encrypted = await cli([
      "encrypt",
      "--key",
      "prod/ledger:encrypt",
      "--output",
      sealed,
      plain,
    ]);
    assert.equal(encrypted.code, 0, encrypted.stderr);

    // Cut after more than one frame (64 KiB), so some frames verify before the end is missing.
    writeFileSync(cut, readFileSync(sealed).subarray(0, 300 * 1024));
    const result = await cli(["decrypt", "--output", opened, cut]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^error DECRYPTION_FAILED: /m);
    assert.equal(existsSync(opened), false);
    assert.deepEqual(
      readdirSync(work).filter((name) => name.endsWith(".partial")),
      [],
    );

    // An existing destination keeps its old content.
    writeFileSync(opened, "old content");
    const again = await cli(["decrypt", "--output", opened, cut]);
    assert.equal(again.code, 1);
    assert.equal(readFileSync(opened, "utf8"), "old content");

    const toStdout = await cli(["decrypt", cut]);
    assert.equal(toStdout.code, 1);
    assert.match(
      toStdout.stderr,
      /bytes were written to standard output before the failure; discard them/,
    );
  });

  test("wrong context fails to decrypt", async () => {
    const sealed = join(work, "context.arbor");
    const opened = join(work, "context.out");
    const encrypted = await cli(
      ["encrypt", "--key", "prod/ledger:encrypt", "--context", "app=billing", "--output", sealed],
      { input: "payload" },
    );
    assert.equal(encrypted.code, 0, encrypted.stderr);

    const result = await cli(["decrypt", "--context", "app=other", "--output", opened, sealed]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /^error DECRYPTION_FAILED: decryption failed: the ciphertext, its context or its key does not match$/m,
    );
    assert.match(result.stderr, /^hint: .*--context/m);
    assert.equal(existsSync(opened), false);
  });

  test("operator tokens: create, list, scope and revoke", async () => {
    const created = await cli([
      "operator",
      "token",
      "create",
      "--name",
      "stage-ci",
      "--environment",
      "stage",
      "--ttl",
      "1h",
      "--json",
    ]);
    assert.equal(created.code, 0, created.stderr);
    const { id, token } = created.json<CreatedOperatorToken>();
    assert.match(token, /^arbor_op_/);

    const listed = await cli(["operator", "token", "list", "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
    const entry = listed.json<{ tokens: OperatorToken[] }>().tokens.find((t) => t.id === id);
    assert.ok(entry !== undefined, `token ${id} is not listed`);
    assert.equal(entry.environment, "stage");
    assert.equal(entry.revokedAt, null);

    const scoped = { ARBOR_TOKEN: token };
    const inside = await cli(["key", "show", "stage/ledger:encrypt", "--json"], { env: scoped });
    assert.equal(inside.code, 0, inside.stderr);
    const outside = await cli(["key", "show", "prod/ledger:encrypt"], { env: scoped });
    assert.equal(outside.code, 1);
    assert.match(outside.stderr, /^error KEY_NOT_FOUND: /m);

    const revoked = await cli(["operator", "token", "revoke", id, "--json"]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(revoked.json().id, id);
    assert.notEqual(revoked.json().revokedAt, null);

    const afterRevoke = await cli(["key", "list"], { env: scoped });
    assert.equal(afterRevoke.code, 1);
    assert.match(afterRevoke.stderr, /^error UNAUTHENTICATED: /m);
    assert.match(afterRevoke.stderr, /^hint: the operator token is invalid, expired or revoked/m);
  });

  test("apply: dry run, apply, then no changes", async () => {
    const file = join(work, "qa.yaml");
    writeFileSync(
      file,
      [
        "apiVersion: arbor/v1",
        "environments:",
        "  qa:",
        "    services:",
        "      ledger:",
        "        encrypt: { rotation: 90d }",
        "      gateway:",
        "        sign: { algorithm: ES256 }",
        "",
      ].join("\n"),
    );

    const dryRun = await cli(["apply", file, "--dry-run", "--json"]);
    assert.equal(dryRun.code, 0, dryRun.stderr);
    assert.deepEqual(
      dryRun
        .json<ApplyResponse>()
        .plan.map((step) => step.path)
        .sort(),
      ["qa", "qa/gateway:sign", "qa/ledger:encrypt"],
    );
    assert.equal(dryRun.json().applied, false);
    const none = await cli(["key", "list", "--prefix", "qa", "--json"]);
    assert.deepEqual(none.json<{ keys: Key[] }>().keys, []);

    const applied = await cli(["apply", file]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.text, /^Plan: 3 keys to create$/m);
    assert.match(applied.text, /^Created 3 keys\.$/m);
    const some = await cli(["key", "list", "--prefix", "qa", "--json"]);
    assert.equal(some.json<{ keys: Key[] }>().keys.length, 3);

    const again = await cli(["apply", file, "--json"]);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(again.json().plan, []);
    assert.deepEqual(again.json().drift, []);

    const broken = join(work, "broken.yaml");
    writeFileSync(broken, "environments: [unclosed\n");
    const invalid = await cli(["apply", broken]);
    assert.equal(invalid.code, 1);
    assert.match(
      invalid.stderr,
      /^error FILE_ERROR: invalid YAML in .*broken\.yaml at line \d+, column \d+/m,
    );
  });

  test("sealed server prints unseal hint", async () => {
    const sealed = await cli(["seal"]);
    assert.equal(sealed.code, 0, sealed.stderr);

    const refused = await cli(["key", "list"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^error SEALED: /m);
    assert.match(refused.stderr, /^hint: run `arbor unseal`/m);

    const [share1, share2, share3] = readJson<DevCredentials>(credentialsFile()).shares;
    const first = await cli(["unseal", share1!, "--json"]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.json().progress, 1);
    const status = await cli(["status", "--json"]);
    assert.equal(status.json().sealed, true);
    assert.equal(status.json().progress, 1);

    // A share on standard input, as a script would pass it.
    const second = await cli(["unseal"], { input: `${share2}\n` });
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.text, /^Share accepted: 2 of 3 submitted/m);
    const third = await cli(["unseal", share3!]);
    assert.equal(third.code, 0, third.stderr);
    assert.equal(third.text, "Arbor is unsealed.\n");

    const listed = await cli(["key", "list", "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
  });

  test("unreachable server names the address", async () => {
    const port = await closedPort();
    const result = await cli(["status"], { env: { ARBOR_ADDR: `http://127.0.0.1:${port}` } });
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      new RegExp(
        `^error CONNECTION_FAILED: cannot reach Arbor at http://127\\.0\\.0\\.1:${port} \\(connection refused\\)$`,
        "m",
      ),
    );
    assert.match(result.stderr, /^hint: is `arbor dev` or `arbor server` running\?/m);
  });

  test("dev second start reuses the data", async () => {
    const credentialsBefore = readFileSync(credentialsFile(), "utf8");
    assert.equal(await dev.stop(), 0);

    dev = await startForeground<DevReady>(
      ["dev", "--port", "0", "--data-dir", dataDir, "--json"],
      (line) => "address" in line,
    );
    assert.equal(dev.ready.initialized, false);
    assert.deepEqual(dev.ready.created, []);
    assert.equal(readFileSync(credentialsFile(), "utf8"), credentialsBefore);
    assert.equal(statSync(credentialsFile()).mode & 0o777, 0o600);

    env.ARBOR_ADDR = dev.ready.address;
    const key = await cli(["key", "show", "dev/reports:encrypt", "--json"]);
    assert.equal(key.code, 0, key.stderr);
    assert.equal(key.json().primaryVersion, 2);
  });
});

describe("arbor server", () => {
  test("starts uninitialised; init and unseal over the CLI", async () => {
    const work = mkdtempSync(join(tmpdir(), "arbor-server-"));
    const server = await startForeground<{ address: string }>(
      [
        "server",
        "--listen",
        "127.0.0.1:0",
        "--storage-path",
        join(work, "arbor.db"),
        "--log-level",
        "info",
      ],
      (line) => line.msg === "arbor listening",
    );
    try {
      const env = { ARBOR_ADDR: server.ready.address };
      const status = await runCli(["status"], { env });
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.text, /^initialized +no$/m);
      assert.match(status.text, /^Next: run `arbor init`\.$/m);

      const init = await runCli(["init", "--shares", "3", "--threshold", "2", "--json"], { env });
      assert.equal(init.code, 0, init.stderr);
      const { shares, rootToken } = init.json<InitResponse>();
      assert.equal(shares.length, 3);

      const again = await runCli(["init"], { env });
      assert.equal(again.code, 1);
      assert.match(again.stderr, /^error ALREADY_INITIALIZED: /m);

      const sealed = await runCli(["key", "list"], { env: { ...env, ARBOR_TOKEN: rootToken } });
      assert.equal(sealed.code, 1);
      assert.match(sealed.stderr, /^error SEALED: /m);

      for (const share of shares.slice(0, 2)) {
        const unsealed = await runCli(["unseal", share], { env });
        assert.equal(unsealed.code, 0, unsealed.stderr);
      }
      const keys = await runCli(["key", "list", "--json"], {
        env: { ...env, ARBOR_TOKEN: rootToken },
      });
      assert.equal(keys.code, 0, keys.stderr);
      assert.deepEqual(keys.json().keys, []);
    } finally {
      assert.equal(await server.stop(), 0);
      rmSync(work, { recursive: true, force: true });
    }
  });
});
