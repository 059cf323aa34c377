import assert from "node:assert/strict";
import {
  generateKeyPairSync,
  sign as nodeSign,
  verify as nodeVerify,
  type JsonWebKey,
  type KeyObject,
} from "node:crypto";
import { before, describe, test } from "node:test";

import { calculateJwkThumbprint } from "jose";

import {
  checkCheckpoint,
  checkpointKeyId,
  checkpointMessage,
  createCheckpoint,
  decodeBase64url,
  verifyCheckpoint,
  type CheckpointBody,
  type SignedCheckpoint,
} from "../../src/audit/checkpoint.ts";
import { isArborError } from "../../src/errors/index.ts";
import { expectArborError, readJson } from "../crypto/vectors.ts";

interface AuditKey {
  privateKey: KeyObject;
  publicJwk: JsonWebKey;
  sign: (message: Uint8Array) => Promise<Uint8Array>;
}

function auditKey(): AuditKey {
  const pair = generateKeyPairSync("ed25519");
  return {
    privateKey: pair.privateKey,
    publicJwk: pair.publicKey.export({ format: "jwk" }),
    sign: (message) => Promise.resolve(new Uint8Array(nodeSign(null, message, pair.privateKey))),
  };
}

const key = auditKey();
const otherKey = auditKey();

const body: CheckpointBody = {
  v: 1,
  kind: "arbor-audit-checkpoint",
  treeSize: 1234,
  rootHash: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
  at: 1_767_225_600_000,
  prevTreeSize: 1000,
};

/** Rejects with the error `run` throws, or fails when it resolves. */
async function rejection(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run();
  } catch (error) {
    return error;
  }
  assert.fail("expected a rejection");
}

describe("checkpoint signing", () => {
  test("message is the canonical body", () => {
    const expected =
      '{"at":1767225600000,"kind":"arbor-audit-checkpoint","prevTreeSize":1000,' +
      `"rootHash":"${body.rootHash}","treeSize":1234,"v":1}`;
    assert.equal(new TextDecoder().decode(checkpointMessage(body)), expected);
    const { prevTreeSize, at, ...rest } = body;
    const reordered = { prevTreeSize, at, ...rest };
    assert.notDeepEqual(Object.keys(reordered), Object.keys(body));
    assert.equal(new TextDecoder().decode(checkpointMessage(reordered)), expected);
  });

  test("signature verifies with node:crypto directly", async () => {
    const signed = await createCheckpoint(body, key.sign);
    const signature = Buffer.from(signed.signature, "base64url");
    assert.equal(signature.length, 64);
    assert.match(signed.signature, /^[A-Za-z0-9_-]{86}$/);
    assert.equal(nodeVerify(null, checkpointMessage(body), key.privateKey, signature), true);
    assert.equal(verifyCheckpoint(signed, key.publicJwk), true);
  });

  test("v and kind are filled in", async () => {
    const { treeSize, rootHash, at, prevTreeSize } = body;
    const signed = await createCheckpoint({ treeSize, rootHash, at, prevTreeSize }, key.sign);
    assert.deepEqual(signed.body, body);
  });

  test("keyId names the signing key", async () => {
    const keyId = checkpointKeyId(key.publicJwk);
    const signed = await createCheckpoint(body, key.sign, { keyId });
    assert.equal(signed.keyId, keyId);
    assert.deepEqual(checkCheckpoint(signed, key.publicJwk), {
      ok: true,
      checkpoint: signed,
      keyId,
    });
    assert.equal(
      verifyCheckpoint({ ...signed, keyId: checkpointKeyId(otherKey.publicJwk) }, key.publicJwk),
      false,
    );
  });

  test("invalid bodies are rejected before signing", async () => {
    let signed = 0;
    const counting = (message: Uint8Array): Promise<Uint8Array> => {
      signed++;
      return key.sign(message);
    };
    const cases: Array<[string, Partial<CheckpointBody> & Record<string, unknown>]> = [
      ["negative treeSize", { treeSize: -1 }],
      ["fractional treeSize", { treeSize: 1.5 }],
      ["uppercase rootHash", { rootHash: body.rootHash.toUpperCase() }],
      ["short rootHash", { rootHash: "00" }],
      ["NaN at", { at: Number.NaN }],
      ["prevTreeSize above treeSize", { prevTreeSize: 2000 }],
      ["version 2", { v: 2 as 1 }],
      ["other kind", { kind: "other" as CheckpointBody["kind"] }],
      ["extra field", { note: "x" }],
    ];
    for (const [name, change] of cases) {
      const error = await rejection(() => createCheckpoint({ ...body, ...change }, counting));
      assert.ok(isArborError(error, "INVALID_ARGUMENT"), name);
    }
    assert.equal(signed, 0);
  });

  test("a signer returning the wrong size is refused", async () => {
    for (const length of [0, 63, 65]) {
      const error = await rejection(() =>
        createCheckpoint(body, () => Promise.resolve(new Uint8Array(length))),
      );
      assert.ok(isArborError(error, "INVALID_ARGUMENT"), `${length} bytes`);
    }
  });
});

describe("checkpoint verification", () => {
  let signed: SignedCheckpoint;

  before(async () => {
    signed = await createCheckpoint(body, key.sign, { keyId: checkpointKeyId(key.publicJwk) });
  });

  test("any changed body field fails", () => {
    const changes: Array<Partial<CheckpointBody>> = [
      { treeSize: 1235 },
      { treeSize: 1233 },
      { rootHash: "6dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328" },
      { at: body.at + 1 },
      { prevTreeSize: 999 },
    ];
    for (const change of changes) {
      const tampered = { ...signed, body: { ...signed.body, ...change } };
      assert.equal(verifyCheckpoint(tampered, key.publicJwk), false, JSON.stringify(change));
    }
  });

  test("every flipped signature bit fails", () => {
    const signature = Buffer.from(signed.signature, "base64url");
    for (let byte = 0; byte < signature.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const copy = Buffer.from(signature);
        copy[byte] = copy[byte]! ^ (1 << bit);
        const tampered = { ...signed, signature: copy.toString("base64url") };
        assert.equal(verifyCheckpoint(tampered, key.publicJwk), false, `byte ${byte} bit ${bit}`);
      }
    }
  });

  test("non-canonical base64url fails", () => {
    const last = signed.signature.at(-1)!;
    // The last of 86 characters carries 4 bits; changing the 2 unused low bits must not pass.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const index = alphabet.indexOf(last);
    const sibling = alphabet[index ^ 1]!;
    const variants = [
      signed.signature.slice(0, -1) + sibling,
      `${signed.signature}==`,
      signed.signature.replaceAll("-", "+").replaceAll("_", "/"),
      ` ${signed.signature}`,
    ].filter((variant) => variant !== signed.signature);
    for (const variant of variants) {
      assert.equal(
        verifyCheckpoint({ ...signed, signature: variant }, key.publicJwk),
        false,
        variant,
      );
    }
    assert.equal(decodeBase64url(signed.signature.slice(0, -1) + sibling), null);
  });

  test("another key fails", () => {
    assert.equal(verifyCheckpoint({ ...signed, keyId: undefined }, otherKey.publicJwk), false);
    const check = checkCheckpoint(signed, otherKey.publicJwk);
    assert.equal(check.ok, false);
    assert.match(!check.ok ? check.reason : "", /names signing key/);
  });

  test("unusable verification keys fail without throwing", () => {
    const p256 = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({
      format: "jwk",
    });
    const withPrivate = generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" });
    const keys: JsonWebKey[] = [
      p256,
      withPrivate,
      { kty: "OKP", crv: "Ed448", x: key.publicJwk.x },
      { kty: "OKP", crv: "Ed25519", x: "AAAA" },
      { kty: "OKP", crv: "Ed25519" },
      { kty: "OKP", crv: "Ed25519", x: `${key.publicJwk.x!}=` },
    ];
    for (const jwk of keys) {
      assert.equal(
        verifyCheckpoint({ ...signed, keyId: undefined }, jwk),
        false,
        JSON.stringify(jwk),
      );
    }
    assert.equal(verifyCheckpoint(signed, null as unknown as JsonWebKey), false);
  });

  test("malformed checkpoints fail without throwing", () => {
    const cases: unknown[] = [
      null,
      "checkpoint",
      [],
      {},
      { body: signed.body },
      { signature: signed.signature },
      { ...signed, extra: 1 },
      { ...signed, body: { ...signed.body, extra: 1 } },
      { ...signed, body: { ...signed.body, treeSize: "1234" } },
      { ...signed, body: { ...signed.body, v: 2 } },
      { ...signed, body: null },
      { ...signed, signature: 12 },
      { ...signed, signature: "" },
      { ...signed, keyId: 5 },
    ];
    for (const value of cases) {
      assert.equal(verifyCheckpoint(value, key.publicJwk), false, JSON.stringify(value));
    }
  });

  test("JSON round trip verifies", () => {
    const restored = JSON.parse(JSON.stringify(signed)) as unknown;
    assert.equal(verifyCheckpoint(restored, key.publicJwk), true);
  });
});

describe("checkpoint key id", () => {
  interface CookbookExample {
    input: { key: JsonWebKey };
  }

  test("RFC 8037 appendix A.3 thumbprint", () => {
    const example = readJson("jose-cookbook/rfc8037-ed25519-jws.json") as CookbookExample;
    const { kty, crv, x } = example.input.key;
    assert.equal(checkpointKeyId({ kty, crv, x }), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
  });

  test("matches jose for fresh keys", async () => {
    for (let i = 0; i < 10; i++) {
      const jwk = auditKey().publicJwk;
      assert.equal(
        checkpointKeyId(jwk),
        await calculateJwkThumbprint(jwk as Parameters<typeof calculateJwkThumbprint>[0]),
      );
    }
  });

  test("rejects keys that are not Ed25519 public keys", () => {
    const p256 = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({
      format: "jwk",
    });
    expectArborError(() => checkpointKeyId(p256), "INVALID_ARGUMENT", "P-256");
  });
});
