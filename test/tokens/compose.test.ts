import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { loadConfig } from "../../src/config/index.ts";
import { startArbor, type RunningArbor } from "../../src/server/compose.ts";
import { createLogger } from "../../src/server/logger.ts";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("token service in the composition root", () => {
  let dir: string;
  let arbor: RunningArbor;
  let shares: string[];
  let rootToken: string;

  async function call<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    token = rootToken,
  ): Promise<{ status: number; body: T }> {
    const response = await fetch(`${arbor.address}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? null : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as T };
  }

  async function unseal(): Promise<void> {
    const begun = await call<{ nonce: string }>("POST", "/v1/sys/unseal", {});
    for (const share of shares.slice(0, 3)) {
      const step = await call("POST", "/v1/sys/unseal", { nonce: begun.body.nonce, share });
      assert.equal(step.status, 200, JSON.stringify(step.body));
    }
  }

  async function token(
    clientId: string,
    secret: string,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const response = await fetch(`${arbor.address}/v1/oauth/token`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString("base64")}`,
      },
      body: "grant_type=client_credentials",
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "arbor-tokens-compose-"));
    const port = await freePort();
    const config = await loadConfig({
      env: {},
      flags: {
        storagePath: join(dir, "arbor.db"),
        listen: `127.0.0.1:${port}`,
        externalAddress: `http://127.0.0.1:${port}`,
      },
    });
    arbor = await startArbor(config, { logger: createLogger({ level: "silent" }) });
    const init = await call<{ shares: string[]; rootToken: string }>("POST", "/v1/sys/init", {});
    shares = init.body.shares;
    rootToken = init.body.rootToken;
    await unseal();
  });

  after(async () => {
    await arbor.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("composition root issues and accepts tokens", async () => {
    for (const path of [
      "prod",
      "prod/acme",
      "prod/acme/billing:sign",
      "prod/acme/billing:encrypt",
      "prod/acme/search:encrypt",
    ]) {
      assert.equal((await call("POST", "/v1/keys", { path })).status, 201, path);
    }
    const service = await call<{ id: string; clientSecret: string; issuer: string }>(
      "POST",
      "/v1/services",
      {
        name: "billing",
        environment: "prod",
        tenant: "acme",
        service: "billing",
        audiences: [`${arbor.address}/v1`],
      },
    );
    assert.equal(service.status, 201, JSON.stringify(service.body));
    assert.equal(service.body.issuer, `${arbor.address}/v1/issuers/prod/acme`);

    const issued = await token(service.body.id, service.body.clientSecret);
    assert.equal(issued.status, 200, JSON.stringify(issued.body));
    const accessToken = String(issued.body.access_token);

    const own = await call(
      "POST",
      `/v1/keys/${encodeURIComponent("prod/acme/billing:encrypt")}/data-key`,
      {},
      accessToken,
    );
    assert.equal(own.status, 200, JSON.stringify(own.body));
    const sibling = await call(
      "POST",
      `/v1/keys/${encodeURIComponent("prod/acme/search:encrypt")}/data-key`,
      {},
      accessToken,
    );
    assert.equal(sibling.status, 404);

    // Sealing drops every cached key, the imported signing keys included; after unsealing the
    // key is opened again and tokens are issued as before.
    assert.equal((await call("POST", "/v1/sys/seal", {})).status, 200);
    assert.equal((await token(service.body.id, service.body.clientSecret)).status, 503);
    const jwks = await fetch(`${service.body.issuer}/jwks`);
    assert.equal(jwks.status, 200, "the JWKS is served while sealed");
    await unseal();
    assert.equal((await token(service.body.id, service.body.clientSecret)).status, 200);
  });
});
