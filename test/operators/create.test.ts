import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  createOperatorTokenService,
  DEFAULT_MAX_TTL_MS,
  type CreateOperatorTokenInput,
} from "../../src/operators/index.ts";
import { dialects } from "../helpers/dialects.ts";
import {
  DAY_MS,
  HOUR_MS,
  expectArborError,
  mint,
  openOperators,
  type OperatorHarness,
} from "./helpers.ts";

for (const dialect of dialects) {
  void describe(`operator token creation on ${dialect.name}`, { skip: dialect.skip }, () => {
    let harness: OperatorHarness;

    before(async () => {
      harness = await openOperators(dialect);
    });
    after(() => harness.close());

    void test("root token info", async () => {
      const { service } = harness;
      const [info] = await service.list(harness.root);

      assert.deepEqual(info, {
        id: harness.root.id,
        name: "root",
        environment: null,
        tenant: null,
        readOnly: false,
        root: true,
        createdAt: harness.clock.now(),
        expiresAt: null,
        revokedAt: null,
        createdBy: null,
      });
    });

    void test("second live root token is rejected", async () => {
      await assert.rejects(
        harness.service.createRootToken(),
        (error: unknown) =>
          expectArborError("ALREADY_INITIALIZED")(error) &&
          (error as Error).message.includes(harness.root.id),
      );
    });

    void test("default ttl is 24 hours", async () => {
      const { info } = await harness.service.create(harness.root, { name: "default ttl" });

      assert.equal(info.expiresAt, harness.clock.now() + DAY_MS);
      assert.equal(info.createdBy, harness.root.id);
      assert.equal(info.root, false);
    });

    void test("invalid names are rejected", async () => {
      const names: unknown[] = ["", "x".repeat(65), "a\nb", "tab\there", "   ", "bell\u0007", 7];
      for (const name of names) {
        await assert.rejects(
          harness.service.create(harness.root, { name: name as string, ttlMs: HOUR_MS }),
          expectArborError("INVALID_ARGUMENT", "name"),
          `name ${JSON.stringify(name)}`,
        );
      }

      const longest = "é".repeat(64);
      const { info } = await harness.service.create(harness.root, {
        name: longest,
        ttlMs: HOUR_MS,
      });
      assert.equal(info.name, longest);
    });

    void test("invalid ttls are rejected", async () => {
      for (const ttlMs of [0, -1, 1.5, Number.NaN, DEFAULT_MAX_TTL_MS + 1]) {
        await assert.rejects(
          harness.service.create(harness.root, { name: "ttl", ttlMs }),
          expectArborError("INVALID_ARGUMENT", "ttl"),
          `ttl ${ttlMs}`,
        );
      }
      await assert.rejects(
        harness.service.create(harness.root, { name: "ttl", ttlMs: DEFAULT_MAX_TTL_MS + 1 }),
        /must be at most 7776000000 ms \(90d\)/,
      );

      const { info } = await harness.service.create(harness.root, {
        name: "max",
        ttlMs: DEFAULT_MAX_TTL_MS,
      });
      assert.equal(info.expiresAt, harness.clock.now() + DEFAULT_MAX_TTL_MS);
    });

    void test("invalid scope segments are rejected", async () => {
      const cases: [CreateOperatorTokenInput, string, string][] = [
        [{ name: "s", environment: "Prod" }, "environment", "Prod"],
        [{ name: "s", environment: "-prod" }, "environment", "-prod"],
        [{ name: "s", environment: "" }, "environment", ""],
        [{ name: "s", environment: "a".repeat(64) }, "environment", "a".repeat(64)],
        [{ name: "s", environment: "prod", tenant: "Acme" }, "tenant", "Acme"],
        [{ name: "s", environment: "prod", tenant: "a/b" }, "tenant", "a/b"],
      ];
      for (const [input, parameter, value] of cases) {
        await assert.rejects(
          harness.service.create(harness.root, input),
          (error: unknown) => {
            expectArborError("INVALID_ARGUMENT", parameter)(error);
            assert.ok((error as Error).message.includes(JSON.stringify(value)));
            return true;
          },
          JSON.stringify(input),
        );
      }
    });

    void test("tenant needs an environment", async () => {
      for (const environment of [null, undefined]) {
        await assert.rejects(
          harness.service.create(harness.root, { name: "t", environment, tenant: "acme" }),
          expectArborError("INVALID_ARGUMENT", "tenant"),
        );
      }
    });

    void test("stage creator cannot mint prod", async () => {
      const { service, root } = harness;
      const stage = await mint(service, root, {
        name: "stage",
        ttlMs: DAY_MS,
        environment: "stage",
      });

      await assert.rejects(
        service.create(stage.principal, { name: "escalate", environment: "prod" }),
        (error: unknown) => {
          expectArborError("FORBIDDEN", "environment")(error);
          assert.match(
            (error as Error).message,
            /scoped to environment "stage".*environment "prod"/,
          );
          return true;
        },
      );
      await assert.rejects(
        service.create(stage.principal, { name: "everywhere", environment: null }),
        (error: unknown) => {
          expectArborError("FORBIDDEN", "environment")(error);
          assert.match((error as Error).message, /every environment/);
          return true;
        },
      );
    });

    void test("scoped creator mints inside its scope", async () => {
      const { service, root } = harness;
      const stage = await mint(service, root, {
        name: "stage",
        ttlMs: DAY_MS,
        environment: "stage",
      });

      const inherited = await service.create(stage.principal, { name: "inherit" });
      assert.equal(inherited.info.environment, "stage");
      assert.equal(inherited.info.tenant, null);

      const tenant = await service.create(stage.principal, { name: "tenant", tenant: "acme" });
      assert.equal(tenant.info.environment, "stage");
      assert.equal(tenant.info.tenant, "acme");
      assert.equal(tenant.info.createdBy, stage.principal.id);
    });

    void test("tenant creator cannot widen", async () => {
      const { service, root } = harness;
      const acme = await mint(service, root, {
        name: "acme",
        ttlMs: DAY_MS,
        environment: "prod",
        tenant: "acme",
      });

      const widen: CreateOperatorTokenInput[] = [
        { name: "env-wide", environment: "prod", tenant: null },
        { name: "other tenant", environment: "prod", tenant: "globex" },
      ];
      for (const input of widen) {
        await assert.rejects(
          service.create(acme.principal, input),
          expectArborError("FORBIDDEN", "tenant"),
        );
      }
      await assert.rejects(
        service.create(acme.principal, { name: "other env", environment: "stage" }),
        expectArborError("FORBIDDEN", "environment"),
      );

      const inherited = await service.create(acme.principal, { name: "same", environment: "prod" });
      assert.equal(inherited.info.tenant, "acme");
    });

    void test("read-only creator cannot create", async () => {
      const { service, root } = harness;
      const reader = await mint(service, root, { name: "reader", ttlMs: DAY_MS, readOnly: true });

      await assert.rejects(
        service.create(reader.principal, { name: "child", readOnly: true }),
        (error: unknown) => {
          expectArborError("FORBIDDEN")(error);
          assert.match((error as Error).message, /read-only and cannot create tokens/);
          return true;
        },
      );
      // The stored flag decides even when the caller's principal claims otherwise.
      await assert.rejects(
        service.create({ ...reader.principal, readOnly: false }, { name: "child" }),
        expectArborError("FORBIDDEN"),
      );
    });

    void test("writable creator may mint read-only", async () => {
      const { info } = await harness.service.create(harness.root, { name: "ro", readOnly: true });

      assert.equal(info.readOnly, true);
    });

    void test("expiry capped by creator", async () => {
      const { service, root, clock } = harness;
      const parent = await mint(service, root, { name: "parent", ttlMs: HOUR_MS });
      const parentExpiry = clock.now() + HOUR_MS;

      clock.advance(10 * 60_000);
      const child = await mint(service, parent.principal, { name: "child", ttlMs: DAY_MS });
      const [childInfo] = (await service.list(root)).filter((t) => t.id === child.principal.id);
      assert.equal(childInfo!.expiresAt, parentExpiry);

      const shorter = await service.create(parent.principal, { name: "shorter", ttlMs: 60_000 });
      assert.equal(shorter.info.expiresAt, clock.now() + 60_000);

      clock.advance(50 * 60_000);
      await assert.rejects(service.authenticate(child.secret), expectArborError("UNAUTHENTICATED"));
      await assert.rejects(
        service.authenticate(parent.secret),
        expectArborError("UNAUTHENTICATED"),
      );
    });

    void test("expired or revoked creator cannot create", async () => {
      const { service, root, clock } = harness;
      const expiring = await mint(service, root, { name: "expiring", ttlMs: HOUR_MS });
      const revoked = await mint(service, root, { name: "revoked", ttlMs: HOUR_MS });
      await service.revoke(root, revoked.principal.id);

      await assert.rejects(
        service.create(revoked.principal, { name: "late" }),
        expectArborError("UNAUTHENTICATED"),
      );
      clock.advance(HOUR_MS);
      await assert.rejects(
        service.create(expiring.principal, { name: "late" }),
        expectArborError("UNAUTHENTICATED"),
      );
    });

    void test("service options are validated", () => {
      const { storage, clock } = harness;

      assert.throws(
        () => createOperatorTokenService({ storage, clock, maxTtlMs: 0 }),
        expectArborError("INVALID_ARGUMENT", "maxTtlMs"),
      );
      assert.throws(
        () => createOperatorTokenService({ storage, clock, maxTtlMs: HOUR_MS }),
        expectArborError("INVALID_ARGUMENT", "defaultTtlMs"),
      );
    });

    void test("custom maximum ttl applies", async () => {
      const { storage, clock, root } = harness;
      const service = createOperatorTokenService({
        storage,
        clock,
        maxTtlMs: 2 * HOUR_MS,
        defaultTtlMs: HOUR_MS,
      });

      const { info } = await service.create(root, { name: "custom default" });
      assert.equal(info.expiresAt, clock.now() + HOUR_MS);
      await assert.rejects(
        service.create(root, { name: "too long", ttlMs: 2 * HOUR_MS + 1 }),
        /must be at most 7200000 ms \(2h\)/,
      );
    });
  });
}
