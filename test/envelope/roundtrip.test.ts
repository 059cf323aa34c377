import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  DEFAULT_FRAME_SIZE,
  decryptEnvelope,
  encryptEnvelope,
  fromTextForm,
  parseEnvelopeHeader,
  toTextForm,
} from "../../src/envelope/index.ts";
import {
  layoutOf,
  newMessageParams,
  randomBytes,
  randomContext,
  TestServiceKey,
} from "./helpers.ts";

const serviceKey = new TestServiceKey();

describe("envelope round trip", () => {
  const frameSize = 64;
  const sizes = [0, 1, frameSize - 1, frameSize, frameSize + 1, 2 * frameSize, 5 * frameSize + 17];

  for (const size of sizes) {
    it(`round-trips ${size} bytes with frame size ${frameSize}`, async () => {
      const context = randomContext();
      const params = newMessageParams(serviceKey, { context, frameSize });
      const plaintext = randomBytes(size);

      const envelope = encryptEnvelope(params, plaintext);
      const result = await decryptEnvelope(envelope, serviceKey.unwrap);

      assert.deepEqual(result.plaintext, plaintext);
      assert.deepEqual({ ...result.header.context }, context);
      assert.equal(result.header.keyId, serviceKey.keyId);
      assert.equal(result.header.keyVersion, serviceKey.keyVersion);
      assert.equal(result.header.frameSize, frameSize);
      assert.deepEqual(result.header.wrappedDataKey, params.wrappedDataKey);
    });

    it(`uses the canonical frame layout for ${size} bytes`, () => {
      const params = newMessageParams(serviceKey, { frameSize });
      const layout = layoutOf(encryptEnvelope(params, randomBytes(size)));

      // Full frames, then one final frame with the remainder, which may be empty.
      const expectedFrames = Math.floor(size / frameSize) + 1;
      assert.equal(layout.frames.length, expectedFrames);
      const finalFrame = layout.frames.at(-1)!;
      assert.equal(finalFrame.end - finalFrame.start, 9 + (size % frameSize) + 16);
    });
  }

  it("round-trips with the default frame size", async () => {
    const params = newMessageParams(serviceKey);
    const plaintext = randomBytes(3 * DEFAULT_FRAME_SIZE + 5);

    const envelope = encryptEnvelope(params, plaintext);
    const result = await decryptEnvelope(envelope, serviceKey.unwrap);

    assert.equal(result.header.frameSize, DEFAULT_FRAME_SIZE);
    assert.equal(layoutOf(envelope).frames.length, 4);
    assert.deepEqual(result.plaintext, plaintext);
  });

  it("round-trips many random contexts", async () => {
    for (let round = 0; round < 50; round += 1) {
      const context = randomContext();
      const params = newMessageParams(serviceKey, { context, frameSize: 32 });
      const plaintext = randomBytes(round * 7);

      const result = await decryptEnvelope(encryptEnvelope(params, plaintext), serviceKey.unwrap);

      assert.deepEqual({ ...result.header.context }, context, `round ${round}`);
      assert.deepEqual(result.plaintext, plaintext, `round ${round}`);
    }
  });

  it("keeps __proto__ as an ordinary context key", async () => {
    const context = JSON.parse('{"__proto__":"x","constructor":"y"}') as Record<string, string>;
    const params = newMessageParams(serviceKey, { context });

    const { header } = await decryptEnvelope(
      encryptEnvelope(params, randomBytes(3)),
      serviceKey.unwrap,
    );

    assert.deepEqual(Object.keys(header.context).sort(), ["__proto__", "constructor"]);
    assert.equal(Object.getPrototypeOf(header.context), Object.prototype);
    assert.equal(header.context["__proto__"], "x");
  });

  it("serialises the context independently of insertion order", () => {
    const contextBytes = (context: Record<string, string>): Uint8Array => {
      const envelope = encryptEnvelope(newMessageParams(serviceKey, { context }), randomBytes(1));
      const fields = layoutOf(envelope).headerFields;
      const start = fields.find((field) => field.name === "context entry count")!.start;
      const end = fields.find((field) => field.name === "wrapped data key length")!.start;
      return envelope.slice(start, end);
    };

    const first = contextBytes({ b: "2", a: "1", é: "3" });
    const second = contextBytes({ é: "3", a: "1", b: "2" });

    assert.deepEqual(first, second);
    // "é" is 0xc3 0xa9 in UTF-8, so it sorts after the ASCII keys.
    assert.equal(
      Buffer.from(first).toString("hex"),
      "0003" + "000161" + "000131" + "000162" + "000132" + "0002c3a9" + "000133",
    );
  });

  it("uses a fresh message id per encryption", () => {
    const params = newMessageParams(serviceKey);
    const plaintext = randomBytes(10);

    const first = encryptEnvelope(params, plaintext);
    const second = encryptEnvelope(params, plaintext);

    assert.notDeepEqual(
      parseEnvelopeHeader(first).header.messageId,
      parseEnvelopeHeader(second).header.messageId,
    );
    assert.notDeepEqual(first.subarray(-16), second.subarray(-16));
  });

  it("leaves the caller's data key intact", () => {
    const params = newMessageParams(serviceKey);
    const before = params.dataKey.slice();

    encryptEnvelope(params, randomBytes(100));

    assert.deepEqual(params.dataKey, before);
  });

  it("zeroes the data key returned by the resolver", async () => {
    const params = newMessageParams(serviceKey);
    const envelope = encryptEnvelope(params, randomBytes(100));
    let returned: Uint8Array | undefined;

    await decryptEnvelope(envelope, (header) => {
      returned = serviceKey.unwrap(header);
      return returned;
    });

    assert.deepEqual(returned, new Uint8Array(32));
  });

  it("passes the resolver an unauthenticated header copy", async () => {
    const params = newMessageParams(serviceKey, { context: { tenant: "acme" } });
    const envelope = encryptEnvelope(params, randomBytes(10));

    const result = await decryptEnvelope(envelope, (header) => {
      header.wrappedDataKey.fill(0);
      return params.dataKey.slice();
    });

    assert.deepEqual(result.header.wrappedDataKey, params.wrappedDataKey);
  });

  it("propagates resolver errors unchanged", async () => {
    const envelope = encryptEnvelope(newMessageParams(serviceKey), randomBytes(10));
    const outage = new Error("root of trust unavailable");

    await assert.rejects(
      decryptEnvelope(envelope, () => {
        throw outage;
      }),
      (error) => error === outage,
    );
  });

  it("round-trips through the text form", async () => {
    const params = newMessageParams(serviceKey);
    const plaintext = randomBytes(1000);

    const text = toTextForm(encryptEnvelope(params, plaintext));
    const result = await decryptEnvelope(fromTextForm(text), serviceKey.unwrap);

    assert.match(text, /^arbor:v1:[A-Za-z0-9_-]+$/);
    assert.deepEqual(result.plaintext, plaintext);
  });
});
