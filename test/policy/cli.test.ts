import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { loadConfig } from "../../src/config/index.ts";
import { startArbor, type RunningArbor } from "../../src/server/compose.ts";
import { createLogger } from "../../src/server/logger.ts";
import { runCli } from "../cli/helpers.ts";

const CASES = `policies:
  - team.cedar
cases:
  - name: stage admin cannot read prod keys
    principal: { type: operator, environment: stage }
    action: key.read
    resource: { key: prod/acme/billing:encrypt }
    expect: deny
  - name: rotators rotate prod keys
    principal: { type: operator, environment: prod, roles: [rotator] }
    action: key.rotate
    resource: { key: prod/acme/billing:encrypt }
    expect: allow
  - name: rotators do not decrypt
    principal: { type: operator, environment: prod, roles: [rotator] }
    action: crypto.decrypt
    resource: { key: prod/acme/billing:encrypt }
    expect: deny
  - name: break-glass reaches one tenant
    principal: { type: operator, environment: stage, breakGlass: { environment: prod, tenant: acme } }
    action: key.read
    resource: { key: prod/acme/billing:encrypt }
    expect: allow
  - name: expired break-glass reaches nothing
    principal: { type: operator, environment: stage, breakGlass: { environment: prod, expired: true } }
    action: key.read
    resource: { key: prod/acme/billing:encrypt }
    expect: deny
`;

const TEAM = `@id("rotators") @reason("the rotation job rotates keys of its environment")
permit (principal in Arbor::Role::"rotator", action == Arbor::Action::"key.rotate", resource);
`;

describe("arbor policy", () => {
  let dir: string;
  let arbor: RunningArbor;
  let rootToken: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "arbor-policy-cli-"));
    writeFileSync(join(dir, "cases.yaml"), CASES);
    writeFileSync(join(dir, "team.cedar"), TEAM);
    const config = await loadConfig({
      env: {},
      flags: { storagePath: join(dir, "arbor.db"), listen: "127.0.0.1:0" },
    });
    arbor = await startArbor(config, { logger: createLogger({ level: "silent" }) });
    const init = await fetch(`${arbor.address}/v1/sys/init`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ shares: 3, threshold: 2 }),
    });
    assert.equal(init.status, 200);
    const { shares, rootToken: token } = (await init.json()) as {
      shares: string[];
      rootToken: string;
    };
    rootToken = token;
    const begun = (await (
      await fetch(`${arbor.address}/v1/sys/unseal`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      })
    ).json()) as { nonce: string };
    for (const share of shares.slice(0, 2)) {
      const submitted = await fetch(`${arbor.address}/v1/sys/unseal`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ nonce: begun.nonce, share }),
      });
      assert.equal(submitted.status, 200, await submitted.text());
    }
  });

  after(async () => {
    await arbor.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function cli(args: string[]) {
    return runCli(args, { env: { ARBOR_ADDR: arbor.address, ARBOR_TOKEN: rootToken } });
  }

  test("policy test passes and fails cases", async () => {
    const passed = await runCli(["policy", "test", join(dir, "cases.yaml"), "--json"]);
    assert.equal(passed.code, 0, passed.stderr);
    assert.deepEqual(
      { passed: passed.json().passed, failed: passed.json().failed },
      { passed: 5, failed: 0 },
    );

    writeFileSync(
      join(dir, "wrong.yaml"),
      CASES.replace(
        "expect: deny\n  - name: rotators rotate",
        "expect: allow\n  - name: rotators rotate",
      ),
    );
    const failed = await runCli(["policy", "test", join(dir, "wrong.yaml")]);
    assert.equal(failed.code, 1);
    assert.match(
      failed.stderr,
      /^error TEST_FAILED: 1 of 5 policy test cases failed: stage admin cannot read prod keys/m,
    );
    assert.match(failed.text, /^FAIL +stage admin cannot read prod keys +allow +deny /m);
    assert.match(failed.text, /guard\.environment/);
  });

  test("policy apply, explain and delete", async () => {
    const applied = await cli(["policy", "apply", join(dir, "team.cedar"), "--json"]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.equal(applied.json().name, "team");
    assert.equal(applied.json().version, 1);

    const listed = await cli(["policy", "list"]);
    assert.match(listed.text, /^team +1 /m);

    const token = await cli([
      "operator",
      "token",
      "create",
      "--name",
      "rotation-job",
      "--environment",
      "prod",
      "--read-only",
      "--json",
    ]);
    assert.equal(token.code, 0, token.stderr);
    const tokenId = token.json<{ id: string }>().id;
    const granted = await cli([
      "policy",
      "grant",
      "--principal",
      tokenId,
      "--role",
      "rotator",
      "--reason",
      "rotation job",
      "--json",
    ]);
    assert.equal(granted.code, 0, granted.stderr);

    const explained = await cli([
      "policy",
      "explain",
      "--principal",
      tokenId,
      "--action",
      "key.rotate",
    ]);
    assert.equal(explained.code, 0, explained.stderr);
    assert.match(explained.text, /^deny: denied by guard\.read-only/m);

    const deleted = await cli(["policy", "delete", "team", "--json"]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.json().deleted, true);
    const shown = await cli(["policy", "show", "team"]);
    assert.match(shown.text, /team is deleted \(version 2\)/);
  });

  test("invalid policy file is reported", async () => {
    writeFileSync(
      join(dir, "bad.cedar"),
      `permit (principal, action, resource) when { resource.owner == "x" };`,
    );
    const response = await cli(["policy", "apply", join(dir, "bad.cedar")]);
    assert.equal(response.code, 1);
    assert.match(response.stderr, /^error INVALID_POLICY: policy "bad" is invalid: .*owner/m);
  });
});
