import assert from "node:assert/strict";
import { createCipheriv, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterEach, describe, test } from "node:test";

import { pkcs11js, type Template } from "../../../src/root/pkcs11/calls.ts";
import { aesGcmMechanism, rootKeyTemplate } from "../../../src/root/pkcs11/templates.ts";
import { assertArborError } from "../helpers.ts";
import {
  booleanAttributes,
  findObjects,
  openRawSession,
  setupPkcs11Root,
  unsealWithPin,
  withTokenSession,
  type Pkcs11Setup,
} from "./helpers.ts";
import { softhsmSkip } from "./softhsm.ts";

const encoder = new TextEncoder();
const FLAGS = [
  "CKA_TOKEN",
  "CKA_PRIVATE",
  "CKA_SENSITIVE",
  "CKA_ALWAYS_SENSITIVE",
  "CKA_EXTRACTABLE",
  "CKA_NEVER_EXTRACTABLE",
  "CKA_ENCRYPT",
  "CKA_DECRYPT",
  "CKA_SIGN",
  "CKA_VERIFY",
  "CKA_DERIVE",
  "CKA_WRAP",
  "CKA_UNWRAP",
];

void describe("PKCS#11 root keys on the token", { skip: softhsmSkip }, () => {
  let setup: Pkcs11Setup | null = null;

  afterEach(async () => {
    await setup?.close();
    setup = null;
  });

  void test("root key attributes read back", async () => {
    setup = await setupPkcs11Root();
    const [version] = await setup.root.listVersions();
    assert.ok(version);
    assert.match(version.keyLabel, /^arbor-root-v1-[0-9a-f]{16}$/);
    assert.equal(version.adopted, false);
    const p = pkcs11js();

    const { flags, keyId, valueLength } = withTokenSession(
      setup.token.label,
      setup.token.pin,
      (calls, session) => {
        const found = findObjects(calls, session, [
          { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
          { type: p.CKA_LABEL, value: version.keyLabel },
        ]);
        assert.equal(found.length, 1);
        const [id, length] = calls.C_GetAttributeValue(session, found[0]!, [
          { type: p.CKA_ID },
          { type: p.CKA_VALUE_LEN },
        ]);
        return {
          flags: booleanAttributes(calls, session, found[0]!, FLAGS),
          keyId: id!.value,
          valueLength: length!.value.readUInt32LE(0),
        };
      },
    );

    assert.deepEqual(flags, {
      CKA_TOKEN: true,
      CKA_PRIVATE: true,
      CKA_SENSITIVE: true,
      CKA_ALWAYS_SENSITIVE: true,
      CKA_EXTRACTABLE: false,
      CKA_NEVER_EXTRACTABLE: true,
      CKA_ENCRYPT: true,
      CKA_DECRYPT: true,
      CKA_SIGN: false,
      CKA_VERIFY: false,
      CKA_DERIVE: false,
      CKA_WRAP: false,
      CKA_UNWRAP: false,
    });
    assert.equal(valueLength, 32);
    assert.equal(keyId.length, 16);
    const stored = await setup.storage.db
      .selectFrom("pkcs11_root_versions")
      .select("key_id")
      .executeTakeFirstOrThrow();
    assert.deepEqual(Buffer.from(stored.key_id), keyId, "the stored CKA_ID names the key");
  });

  void test("checkpoint private key is sign-only", async () => {
    setup = await setupPkcs11Root();
    const record = await setup.storage.db
      .selectFrom("pkcs11_root")
      .selectAll()
      .executeTakeFirstOrThrow();
    const p = pkcs11js();

    const flags = withTokenSession(setup.token.label, setup.token.pin, (calls, session) => {
      const found = findObjects(calls, session, [
        { type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY },
        { type: p.CKA_LABEL, value: record.checkpoint_key_label },
      ]);
      assert.equal(found.length, 1);
      return booleanAttributes(calls, session, found[0]!, [
        "CKA_SENSITIVE",
        "CKA_EXTRACTABLE",
        "CKA_NEVER_EXTRACTABLE",
        "CKA_SIGN",
        "CKA_DECRYPT",
        "CKA_DERIVE",
        "CKA_UNWRAP",
      ]);
    });

    assert.deepEqual(flags, {
      CKA_SENSITIVE: true,
      CKA_EXTRACTABLE: false,
      CKA_NEVER_EXTRACTABLE: true,
      CKA_SIGN: true,
      CKA_DECRYPT: false,
      CKA_DERIVE: false,
      CKA_UNWRAP: false,
    });
    assert.match(record.checkpoint_key_label, /^arbor-checkpoint-[0-9a-f]{16}$/);
  });

  void test("PIN is stored nowhere", async () => {
    setup = await setupPkcs11Root();
    await setup.root.rotate();
    const pin = Buffer.from(setup.token.pin);

    // WAL mode keeps recent pages in the -wal file, so both files are searched.
    for (const file of [setup.file, `${setup.file}-wal`]) {
      assert.ok(!readFileSync(file).includes(pin), `the PIN is not in ${file}`);
    }
    assert.ok(!setup.logger.text().includes(setup.token.pin), "the PIN is not in the logs");
  });

  void test("AES-GCM mechanism matches node:crypto", async () => {
    setup = await setupPkcs11Root({ initialize: false });
    const p = pkcs11js();
    const key = randomBytes(32);
    const iv = randomBytes(12);
    const aad = randomBytes(40);
    const plaintext = randomBytes(32);

    const raw = openRawSession(setup.token);
    let fromToken: Buffer;
    try {
      const { library: calls, session } = raw;
      // A session key with a known value, only for this comparison; root keys never are.
      const handle = calls.C_CreateObject(session, [
        { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
        { type: p.CKA_KEY_TYPE, value: p.CKK_AES },
        { type: p.CKA_VALUE, value: key },
        { type: p.CKA_TOKEN, value: false },
        { type: p.CKA_ENCRYPT, value: true },
      ]);
      calls.C_EncryptInit(session, aesGcmMechanism(iv, aad), handle);
      fromToken = Buffer.from(calls.C_Encrypt(session, plaintext, Buffer.alloc(48)));
    } finally {
      raw.close();
    }

    const cipher = createCipheriv("aes-256-gcm", key, iv, { authTagLength: 16 });
    cipher.setAAD(aad);
    const expected = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    assert.deepEqual(fromToken, expected);
  });
});

void describe("PKCS#11 root adopting a key", { skip: softhsmSkip }, () => {
  let setup: Pkcs11Setup | null = null;

  afterEach(async () => {
    await setup?.close();
    setup = null;
  });

  /** Generates a key that differs from a root key's template by `changes`. */
  function templateWith(label: string, changes: Record<string, boolean>): Template {
    const constants = pkcs11js() as unknown as Record<string, number>;
    return rootKeyTemplate(label, randomBytes(8)).map((attribute) => {
      const name = Object.keys(changes).find((key) => constants[key] === attribute.type);
      return name === undefined ? attribute : { type: attribute.type, value: changes[name] };
    });
  }

  function createKey(label: string, changes: Record<string, boolean> = {}): void {
    const p = pkcs11js();
    withTokenSession(setup!.token.label, setup!.token.pin, (calls, session) =>
      calls.C_GenerateKey(session, { mechanism: p.CKM_AES_KEY_GEN }, templateWith(label, changes)),
    );
  }

  void test("fit key is adopted as version 1", async () => {
    setup = await setupPkcs11Root({ initialize: false });
    createKey("operator-root");

    const result = await setup.root.initialize({
      pin: setup.pinBytes(),
      adoptKeyLabel: "operator-root",
    });
    await unsealWithPin(setup.root, setup.pinBytes());
    const blob = await setup.root.wrap(encoder.encode("k"), encoder.encode("a"));

    assert.equal(result.keyLabel, "operator-root");
    assert.equal(result.adopted, true);
    assert.deepEqual(result.shares, []);
    assert.equal(result.threshold, 1);
    assert.equal(blob.rootVersion, 1);
    assert.deepEqual(await setup.root.unwrap(blob, encoder.encode("a")), encoder.encode("k"));
    const [version] = await setup.root.listVersions();
    assert.equal(version?.adopted, true);
  });

  void test("configured key label is adopted", async () => {
    setup = await setupPkcs11Root({ initialize: false, deps: { keyLabel: "configured-root" } });
    createKey("configured-root");

    const result = await setup.root.initialize({ pin: setup.pinBytes() });

    assert.equal(result.keyLabel, "configured-root");
    assert.equal(result.adopted, true);
  });

  const unfit: [string, Record<string, boolean>, RegExp][] = [
    ["extractable", { CKA_EXTRACTABLE: true }, /CKA_EXTRACTABLE is true/],
    ["not sensitive", { CKA_SENSITIVE: false }, /CKA_SENSITIVE is false/],
    ["derive allowed", { CKA_DERIVE: true }, /CKA_DERIVE is true/],
    ["sign allowed", { CKA_SIGN: true }, /CKA_SIGN is true/],
  ];
  for (const [name, changes, message] of unfit) {
    void test(`${name} key is refused`, async () => {
      setup = await setupPkcs11Root({ initialize: false });
      createKey("unfit-root", changes);

      await assertArborError(
        setup.root.initialize({ pin: setup.pinBytes(), adoptKeyLabel: "unfit-root" }),
        "INVALID_ARGUMENT",
        message,
      );
      assert.equal(setup.root.status().state, "uninitialized", "nothing was stored");
    });
  }

  void test("session object key is refused", async () => {
    setup = await setupPkcs11Root({ initialize: false });
    // A session object lives as long as the session that created it, so that session stays open.
    // It is public, because logging out (which the provider's login does first when the process
    // is already logged in) destroys private session objects.
    const raw = openRawSession(setup.token);
    try {
      raw.library.C_GenerateKey(
        raw.session,
        { mechanism: pkcs11js().CKM_AES_KEY_GEN },
        templateWith("session-root", { CKA_TOKEN: false, CKA_PRIVATE: false }),
      );

      await assertArborError(
        setup.root.initialize({ pin: setup.pinBytes(), adoptKeyLabel: "session-root" }),
        "INVALID_ARGUMENT",
        /it is a session object/,
      );
    } finally {
      raw.close();
    }
  });

  void test("missing or ambiguous label is refused", async () => {
    setup = await setupPkcs11Root({ initialize: false });
    createKey("twin");
    createKey("twin");

    await assertArborError(
      setup.root.initialize({ pin: setup.pinBytes(), adoptKeyLabel: "absent" }),
      "INVALID_ARGUMENT",
      /no secret key labelled absent exists/,
    );
    await assertArborError(
      setup.root.initialize({ pin: setup.pinBytes(), adoptKeyLabel: "twin" }),
      "INVALID_ARGUMENT",
      /several secret keys are labelled twin/,
    );
    assert.equal(setup.root.status().state, "uninitialized");
  });
});
