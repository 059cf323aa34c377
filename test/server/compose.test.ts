import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";

import { loadConfig, type ArborConfig } from "../../src/config/index.ts";
import { startArbor, type RunningArbor } from "../../src/server/compose.ts";
import { createLogger } from "../../src/server/logger.ts";

const tlsDir = join(import.meta.dirname, "../data/tls");
const quiet = () => createLogger({ level: "silent" });

async function configFor(dir: string, flags: Record<string, string> = {}): Promise<ArborConfig> {
  return loadConfig({
    env: {},
    flags: { storagePath: join(dir, "arbor.db"), listen: "127.0.0.1:0", ...flags },
  });
}

async function call(
  arbor: RunningArbor,
  method: string,
  path: string,
  body?: unknown,
  token?: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${arbor.address}${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: body === undefined ? null : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function unseal(arbor: RunningArbor, shares: string[]): Promise<void> {
  const begun = await call(arbor, "POST", "/v1/sys/unseal", {});
  for (const share of shares.slice(0, 3)) {
    const step = await call(arbor, "POST", "/v1/sys/unseal", { nonce: begun.body.nonce, share });
    assert.equal(step.status, 200, JSON.stringify(step.body));
  }
}

describe("composition root", () => {
  const dirs: string[] = [];
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test("restart with unseal still decrypts old ciphertexts", async () => {
    const dir = mkdtempSync(join(tmpdir(), "arbor-compose-"));
    dirs.push(dir);

    const first = await startArbor(await configFor(dir), { logger: quiet() });
    let shares: string[];
    let token: string;
    let ciphertext: string;
    let wrappedDataKey: string;
    let dataKey: string;
    try {
      assert.equal((await call(first, "GET", "/v1/sys/health")).status, 501);
      const init = await call(first, "POST", "/v1/sys/init", { shares: 5, threshold: 3 });
      assert.equal(init.status, 200, JSON.stringify(init.body));
      shares = init.body.shares as string[];
      token = init.body.rootToken as string;
      await unseal(first, shares);
      for (const path of ["prod", "prod/acme", "prod/acme/billing:encrypt"]) {
        assert.equal((await call(first, "POST", "/v1/keys", { path }, token)).status, 201);
      }
      const key = encodeURIComponent("prod/acme/billing:encrypt");
      const sealed = await call(
        first,
        "POST",
        `/v1/keys/${key}/encrypt`,
        {
          plaintext: Buffer.from("kept across restarts").toString("base64"),
          context: { order: "7" },
        },
        token,
      );
      ciphertext = sealed.body.ciphertext as string;
      const issued = await call(first, "POST", `/v1/keys/${key}/data-key`, {}, token);
      wrappedDataKey = issued.body.wrappedDataKey as string;
      dataKey = issued.body.plaintext as string;
    } finally {
      await first.close();
    }

    const second = await startArbor(await configFor(dir), { logger: quiet() });
    try {
      assert.equal((await call(second, "GET", "/v1/sys/health")).status, 503);
      const refused = await call(second, "POST", "/v1/decrypt", { ciphertext }, token);
      assert.equal(refused.status, 503);
      assert.equal((refused.body.error as { code: string }).code, "SEALED");

      await unseal(second, shares.slice(2));
      assert.equal((await call(second, "GET", "/v1/sys/health")).status, 200);
      const opened = await call(
        second,
        "POST",
        "/v1/decrypt",
        { ciphertext, context: { order: "7" } },
        token,
      );
      assert.equal(opened.status, 200, JSON.stringify(opened.body));
      assert.equal(
        Buffer.from(opened.body.plaintext as string, "base64").toString(),
        "kept across restarts",
      );
      const reopened = await call(
        second,
        "POST",
        "/v1/data-key/decrypt",
        { wrappedDataKey },
        token,
      );
      assert.equal(reopened.body.plaintext, dataKey);
    } finally {
      await second.close();
    }
  });

  test("TLS listener serves HTTPS", async () => {
    const dir = mkdtempSync(join(tmpdir(), "arbor-compose-"));
    dirs.push(dir);
    const config = await configFor(dir, {
      tlsCertFile: join(tlsDir, "localhost.crt"),
      tlsKeyFile: join(tlsDir, "localhost.key"),
    });
    const arbor = await startArbor(config, { logger: quiet() });
    try {
      assert.match(arbor.address, /^https:\/\/127\.0\.0\.1:\d+$/);
      const { status, body } = await new Promise<{ status: number; body: string }>(
        (resolve, reject) => {
          const req = httpsRequest(
            `${arbor.address}/v1/sys/health`,
            { ca: readFileSync(join(tlsDir, "localhost.crt")) },
            (res) => {
              let text = "";
              res.on("data", (chunk: Buffer) => (text += chunk.toString()));
              res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
            },
          );
          req.on("error", reject);
          req.end();
        },
      );
      assert.equal(status, 501);
      assert.equal((JSON.parse(body) as { initialized: boolean }).initialized, false);
      await assert.rejects(fetch(`${arbor.address.replace("https", "http")}/v1/sys/health`));
    } finally {
      await arbor.close();
    }
  });

  test("non-loopback listen without TLS is refused", async () => {
    await assert.rejects(
      loadConfig({ env: {}, flags: { listen: "0.0.0.0:8200" } }),
      (error: unknown) => (error as { code?: string }).code === "INVALID_ARGUMENT",
    );
  });
});
