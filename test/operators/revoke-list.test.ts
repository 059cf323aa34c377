import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { generateOpaqueSecret } from "../../src/crypto/index.ts";
import { dialects } from "../helpers/dialects.ts";
import { DAY_MS, expectArborError, mint, openOperators, type OperatorHarness } from "./helpers.ts";

for (const dialect of dialects) {
  void describe(`operator token list and revoke on ${dialect.name}`, { skip: dialect.skip }, () => {
    let harness: OperatorHarness;
    const ids: Record<string, string> = {};

    before(async () => {
      harness = await openOperators(dialect);
      const { service, root } = harness;
      const scopes = {
        everywhere: {},
        prod: { environment: "prod" },
        prodAcme: { environment: "prod", tenant: "acme" },
        prodGlobex: { environment: "prod", tenant: "globex" },
        stage: { environment: "stage" },
        stageAcme: { environment: "stage", tenant: "acme" },
      };
      for (const [name, scope] of Object.entries(scopes)) {
        const { info } = await service.create(root, { name, ttlMs: DAY_MS, ...scope });
        ids[name] = info.id;
      }
    });
    after(() => harness.close());

    async function namesVisibleTo(scope: { environment?: string; tenant?: string }) {
      const { service, root } = harness;
      const viewer = await mint(service, root, {
        name: "viewer",
        ttlMs: DAY_MS,
        readOnly: true,
        ...scope,
      });
      const names = (await service.list(viewer.principal)).map((t) => t.name);
      await service.revoke(root, viewer.principal.id);
      // Tokens made at the same instant are ordered by their random id, so compare sorted names.
      return names.filter((name) => name !== "viewer").sort();
    }

    void test("root viewer sees every token", async () => {
      const names = (await harness.service.list(harness.root)).map((t) => t.name).sort();

      assert.deepEqual(names, [
        "everywhere",
        "prod",
        "prodAcme",
        "prodGlobex",
        "root",
        "stage",
        "stageAcme",
      ]);
    });

    void test("environment viewer sees its environment", async () => {
      assert.deepEqual(await namesVisibleTo({ environment: "prod" }), [
        "prod",
        "prodAcme",
        "prodGlobex",
      ]);
    });

    void test("tenant viewer sees its tenant", async () => {
      assert.deepEqual(await namesVisibleTo({ environment: "prod", tenant: "acme" }), ["prodAcme"]);
    });

    void test("list includes revoked tokens", async () => {
      const { service, root } = harness;
      const { principal } = await mint(service, root, {
        name: "gone",
        ttlMs: DAY_MS,
        environment: "qa",
      });
      await service.revoke(root, principal.id);

      const [listed] = (await service.list(root)).filter((t) => t.id === principal.id);
      assert.equal(listed!.revokedAt, harness.clock.now());
    });

    void test("scoped actor cannot revoke outside", async () => {
      const { service, root } = harness;
      const acme = await mint(service, root, {
        name: "acme admin",
        ttlMs: DAY_MS,
        environment: "prod",
        tenant: "acme",
      });

      for (const outside of [
        ids.prod!,
        ids.prodGlobex!,
        ids.stageAcme!,
        ids.everywhere!,
        root.id,
      ]) {
        await assert.rejects(service.revoke(acme.principal, outside), (error: unknown) => {
          expectArborError("NOT_FOUND", "id")(error);
          assert.equal((error as Error).message, `operator token ${outside} not found`);
          return true;
        });
      }
      const outsideIds = new Set([
        ids.prod,
        ids.prodGlobex,
        ids.stageAcme,
        ids.everywhere,
        root.id,
      ]);
      for (const token of await service.list(root)) {
        if (outsideIds.has(token.id))
          assert.equal(token.revokedAt, null, `${token.name} was revoked`);
      }

      const revoked = await service.revoke(acme.principal, ids.prodAcme!);
      assert.equal(revoked.revokedAt, harness.clock.now());
      // A token inside the scope, including the actor itself, can be revoked.
      await service.revoke(acme.principal, acme.principal.id);
      await assert.rejects(service.authenticate(acme.secret), expectArborError("UNAUTHENTICATED"));
    });

    void test("unknown and malformed ids", async () => {
      const { service, root } = harness;

      await assert.rejects(
        service.revoke(root, "opt_" + "a".repeat(26)),
        expectArborError("NOT_FOUND", "id"),
      );

      const secret = generateOpaqueSecret("operator");
      for (const id of ["", "opt_short", "key_" + "a".repeat(26), secret]) {
        await assert.rejects(service.revoke(root, id), (error: unknown) => {
          expectArborError("INVALID_ARGUMENT", "id")(error);
          assert.equal((error as { detail: { value?: unknown } }).detail.value, undefined);
          assert.ok(!(error as Error).message.includes(secret), "message echoes a pasted secret");
          return true;
        });
      }
    });

    void test("read-only actor cannot revoke", async () => {
      const { service, root } = harness;
      const reader = await mint(service, root, { name: "reader", ttlMs: DAY_MS, readOnly: true });

      await assert.rejects(
        service.revoke(reader.principal, ids.stage!),
        expectArborError("FORBIDDEN"),
      );
      await assert.rejects(
        service.revoke(reader.principal, reader.principal.id),
        expectArborError("FORBIDDEN"),
      );
    });

    void test("revoking twice returns it unchanged", async () => {
      const { service, root, clock } = harness;
      const first = await service.revoke(root, ids.stage!);
      const outboxBefore = await harness.storage.outbox.readAfter(0, 1000);

      clock.advance(1000);
      const second = await service.revoke(root, ids.stage!);

      assert.deepEqual(second, first);
      assert.equal((await harness.storage.outbox.readAfter(0, 1000)).length, outboxBefore.length);
    });

    void test("revocation never precedes creation", async () => {
      const { service, root, clock } = harness;
      const { principal } = await mint(service, root, { name: "clock", ttlMs: DAY_MS });
      const createdAt = clock.now();

      clock.advance(-5000);
      const info = await service.revoke(root, principal.id);

      assert.equal(info.revokedAt, createdAt);
      clock.advance(5000);
    });

    void test("root token revocable by itself", async () => {
      const { service, root, rootSecret } = harness;

      const info = await service.revoke(root, root.id);

      assert.equal(info.root, true);
      assert.equal(info.revokedAt, harness.clock.now());
      await assert.rejects(service.authenticate(rootSecret), expectArborError("UNAUTHENTICATED"));
      // With no live root token left, a new one can be created (the root-token ceremony).
      const again = await service.createRootToken();
      assert.notEqual(again.info.id, root.id);
      assert.equal((await service.authenticate(again.token)).root, true);
    });
  });
}
