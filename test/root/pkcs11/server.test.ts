import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";

import { loadConfig } from "../../../src/config/index.ts";
import { startArbor, type RunningArbor } from "../../../src/server/compose.ts";
import { createLogger } from "../../../src/server/logger.ts";
import { openSoftHsm, softhsmSkip } from "./softhsm.ts";

const repo = join(import.meta.dirname, "../../..");

async function call(
  arbor: RunningArbor,
  method: string,
  path: string,
  token?: string,
  body?: unknown,
) {
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

describe("server with an HSM root", { skip: softhsmSkip }, () => {
  test("init, unseal, encrypt and root rotation through the product", async () => {
    const hsm = openSoftHsm();
    const token = hsm.createToken();
    const dir = mkdtempSync(join(tmpdir(), "arbor-hsm-server-"));
    const pinFile = join(dir, "pin");
    writeFileSync(pinFile, `${token.pin}\n`, { mode: 0o600 });
    const storagePath = join(dir, "arbor.db");

    try {
      // `arbor init --root pkcs11` runs next to the database, without a server.
      const init = spawnSync(
        process.execPath,
        [
          join(repo, "bin/arbor.js"),
          "init",
          "--json",
          "--root",
          "pkcs11",
          "--module",
          hsm.modulePath,
          "--token-label",
          token.label,
          "--pin-file",
          pinFile,
          "--storage-path",
          storagePath,
        ],
        { encoding: "utf8", env: { ...process.env, SOFTHSM2_CONF: hsm.confPath } },
      );
      assert.equal(init.status, 0, init.stderr);
      assert.ok(
        !init.stdout.includes(token.pin) && !init.stderr.includes(token.pin),
        "the PIN is never printed",
      );
      const { rootToken } = JSON.parse(init.stdout) as { rootToken: string };
      assert.match(rootToken, /^arbor_op_/);

      const config = await loadConfig({
        env: {},
        flags: {
          storagePath,
          listen: "127.0.0.1:0",
          rootProvider: "pkcs11",
          pkcs11Module: hsm.modulePath,
          pkcs11TokenLabel: token.label,
          pkcs11PinFile: pinFile,
        },
      });
      const arbor = await startArbor(config, { logger: createLogger({ level: "silent" }) });
      try {
        // The configured PIN file unseals the server at start.
        assert.equal((await call(arbor, "GET", "/v1/sys/health")).status, 200);
        for (const path of ["prod", "prod/acme", "prod/acme/billing:encrypt"]) {
          assert.equal((await call(arbor, "POST", "/v1/keys", rootToken, { path })).status, 201);
        }
        const key = encodeURIComponent("prod/acme/billing:encrypt");
        const plaintext = Buffer.from("kept in an HSM hierarchy").toString("base64");
        const sealed = await call(arbor, "POST", `/v1/keys/${key}/encrypt`, rootToken, {
          plaintext,
        });
        assert.equal(sealed.status, 200, JSON.stringify(sealed.body));

        const rotated = await call(arbor, "POST", "/v1/sys/root/rotate", rootToken, {});
        assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
        assert.deepEqual(rotated.body, {
          rootVersion: 2,
          rotated: true,
          rewrapped: 1,
          skipped: 0,
          disabledVersions: [1],
        });
        const prod = await call(arbor, "GET", `/v1/keys/prod`, rootToken);
        assert.equal((prod.body.versions as Array<{ parentVersion: number }>)[0]!.parentVersion, 2);

        // Seal drops every cached key; unsealing with the PIN must open the re-wrapped master.
        assert.equal((await call(arbor, "POST", "/v1/sys/seal", rootToken, {})).status, 200);
        const begun = await call(arbor, "POST", "/v1/sys/unseal", undefined, {});
        const wrongShape = await call(arbor, "POST", "/v1/sys/unseal", undefined, {
          nonce: begun.body.nonce,
          share: "AAAA",
        });
        assert.equal(wrongShape.status, 400);
        const unsealed = await call(arbor, "POST", "/v1/sys/unseal", undefined, {
          nonce: begun.body.nonce,
          pin: token.pin,
        });
        assert.equal(unsealed.body.sealed, false, JSON.stringify(unsealed.body));
        const opened = await call(arbor, "POST", "/v1/decrypt", rootToken, {
          ciphertext: sealed.body.ciphertext,
        });
        assert.equal(opened.status, 200, JSON.stringify(opened.body));
        assert.equal(opened.body.plaintext, plaintext);
      } finally {
        await arbor.close();
      }

      // A database made with the HSM root is refused under the sealed root.
      const sealedConfig = await loadConfig({
        env: {},
        flags: { storagePath, listen: "127.0.0.1:0" },
      });
      await assert.rejects(
        startArbor(sealedConfig, { logger: createLogger({ level: "silent" }) }),
        /initialised with the pkcs11 root/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
