import assert from "node:assert/strict";
import { createCipheriv, createHash, createHmac, hkdfSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import * as envelopeIndex from "../../src/envelope/index.ts";
import { decryptEnvelope, toTextForm } from "../../src/envelope/index.ts";
import { encryptEnvelopeWithMessageIdForTestVector } from "../../src/envelope/encrypt.ts";
import { deriveMessageKeys } from "../../src/envelope/keys.ts";

interface Vector {
  name: string;
  dataKey: string;
  messageId: string;
  keyId: string;
  keyVersion: number;
  context: Record<string, string>;
  wrappedDataKey: string;
  frameSize: number;
  plaintextUtf8: string;
  messageKey: string;
  commitmentKey: string;
  commitment: string;
  headerLength: number;
  headerSha256: string;
  envelope: string;
  textForm: string;
}

const vectorsUrl = new URL("../data/envelope-v1-vectors.json", import.meta.url);
const docUrl = new URL("../../docs/envelope-format.md", import.meta.url);
const { vectors } = JSON.parse(readFileSync(vectorsUrl, "utf8")) as { vectors: Vector[] };

const hex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, "hex"));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");

// An independent encoder written from docs/envelope-format.md with node:crypto only, so the
// document, the vectors and the implementation are checked against each other.
const referenceEncoder = {
  lengthPrefixed(...fields: Uint8Array[]): Buffer {
    return Buffer.concat(fields.flatMap((field) => [uint(4, field.length), Buffer.from(field)]));
  },

  header(vector: Vector): {
    prefix: Buffer;
    commitment: Buffer;
    messageKey: Buffer;
    commitmentKey: Buffer;
  } {
    const keys = ["message-key", "commitment-key"].map((name) =>
      Buffer.from(
        hkdfSync(
          "sha256",
          hex(vector.dataKey),
          hex(vector.messageId),
          this.lengthPrefixed(utf8(`arbor/envelope/v1/${name}`)),
          32,
        ),
      ),
    );
    const sortedKeys = Object.keys(vector.context).sort((a, b) => Buffer.compare(utf8(a), utf8(b)));
    const prefix = Buffer.concat([
      utf8("ARBE"),
      uint(1, 1),
      uint(1, vector.keyId.length),
      utf8(vector.keyId),
      uint(4, vector.keyVersion),
      hex(vector.messageId),
      uint(2, sortedKeys.length),
      ...sortedKeys.flatMap((key) => {
        const value = utf8(vector.context[key]!);
        return [uint(2, utf8(key).length), utf8(key), uint(2, value.length), value];
      }),
      uint(2, hex(vector.wrappedDataKey).length),
      hex(vector.wrappedDataKey),
      uint(4, vector.frameSize),
    ]);
    const commitment = createHmac("sha256", keys[1]!)
      .update(this.lengthPrefixed(utf8("arbor/envelope/v1/commitment"), prefix))
      .digest();
    return { prefix, commitment, messageKey: keys[0]!, commitmentKey: keys[1]! };
  },

  envelope(vector: Vector): Buffer {
    const { prefix, commitment, messageKey } = this.header(vector);
    const header = Buffer.concat([prefix, commitment]);
    const digest = createHash("sha256").update(header).digest();
    const plaintext = utf8(vector.plaintextUtf8);

    const frames: Buffer[] = [];
    const fullFrames = Math.floor(plaintext.length / vector.frameSize);
    for (let index = 0; index <= fullFrames; index += 1) {
      const final = index === fullFrames;
      const chunk = plaintext.subarray(
        index * vector.frameSize,
        final ? undefined : (index + 1) * vector.frameSize,
      );
      const nonce = Buffer.concat([Buffer.alloc(4), uint(8, index)]);
      const aad = this.lengthPrefixed(
        utf8("arbor/envelope/v1/frame"),
        digest,
        uint(8, index),
        uint(1, final ? 1 : 0),
      );
      const cipher = createCipheriv("aes-256-gcm", messageKey, nonce, { authTagLength: 16 });
      cipher.setAAD(aad);
      const ciphertext = Buffer.concat([cipher.update(chunk), cipher.final()]);
      frames.push(
        uint(4, index),
        uint(1, final ? 1 : 0),
        uint(4, ciphertext.length),
        ciphertext,
        cipher.getAuthTag(),
      );
    }
    return Buffer.concat([header, ...frames]);
  },
};

function utf8(text: string): Buffer {
  return Buffer.from(text, "utf8");
}

/** Big-endian unsigned integer of 1, 2, 4 or 8 bytes. */
function uint(bytes: 1 | 2 | 4 | 8, value: number): Buffer {
  const out = Buffer.alloc(bytes);
  if (bytes === 8) out.writeBigUInt64BE(BigInt(value));
  else out.writeUIntBE(value, 0, bytes);
  return out;
}

describe("envelope format v1 test vectors", () => {
  it("covers two or more frames", () => {
    assert.ok(vectors.length >= 3);
    assert.ok(Buffer.byteLength(vectors[0]!.plaintextUtf8) > 2 * vectors[0]!.frameSize);
  });

  for (const vector of vectors) {
    describe(vector.name, () => {
      it("decrypts the stored envelope", async () => {
        const result = await decryptEnvelope(hex(vector.envelope), () => hex(vector.dataKey));

        assert.equal(new TextDecoder().decode(result.plaintext), vector.plaintextUtf8);
        assert.deepEqual({ ...result.header.context }, vector.context);
        assert.equal(result.header.keyId, vector.keyId);
        assert.equal(result.header.keyVersion, vector.keyVersion);
        assert.equal(toHex(result.header.messageId), vector.messageId);
        assert.equal(toHex(result.header.wrappedDataKey), vector.wrappedDataKey);
        assert.equal(toHex(result.header.commitment), vector.commitment);
        assert.equal(result.header.frameSize, vector.frameSize);
      });

      it("reproduces the envelope byte for byte", () => {
        const envelope = encryptEnvelopeWithMessageIdForTestVector(
          {
            dataKey: hex(vector.dataKey),
            keyId: vector.keyId,
            keyVersion: vector.keyVersion,
            wrappedDataKey: hex(vector.wrappedDataKey),
            context: vector.context,
            frameSize: vector.frameSize,
          },
          utf8(vector.plaintextUtf8),
          hex(vector.messageId),
        );

        assert.equal(toHex(envelope), vector.envelope);
        assert.equal(toTextForm(envelope), vector.textForm);
      });

      it("matches the documented derivation", () => {
        const reference = referenceEncoder.header(vector);
        const derived = deriveMessageKeys(hex(vector.dataKey), hex(vector.messageId));
        const envelope = hex(vector.envelope);

        assert.equal(toHex(reference.messageKey), vector.messageKey);
        assert.equal(toHex(reference.commitmentKey), vector.commitmentKey);
        assert.equal(toHex(derived.messageKey), vector.messageKey);
        assert.equal(toHex(derived.commitmentKey), vector.commitmentKey);
        assert.equal(toHex(reference.commitment), vector.commitment);
        assert.equal(reference.prefix.length + 32, vector.headerLength);
        assert.equal(
          toHex(createHash("sha256").update(envelope.subarray(0, vector.headerLength)).digest()),
          vector.headerSha256,
        );
        assert.equal(referenceEncoder.envelope(vector).toString("hex"), vector.envelope);
      });
    });
  }

  it("appears in the format document", () => {
    const doc = readFileSync(docUrl, "utf8");
    const blocks = [...doc.matchAll(/```text\n([\s\S]*?)```/g)].map((match) =>
      match[1]!.replace(/\s+/g, ""),
    );

    assert.match(doc, /test\/data\/envelope-v1-vectors\.json/);
    assert.ok(
      blocks.includes(vectors[0]!.envelope),
      "the first vector's envelope hex is not in the document",
    );
  });

  it("keeps the fixed message id out of the public API", () => {
    const exported = Object.keys(envelopeIndex);

    assert.ok(exported.includes("encryptEnvelope"));
    for (const name of exported) assert.doesNotMatch(name, /messageid|testvector/i);
  });
});
