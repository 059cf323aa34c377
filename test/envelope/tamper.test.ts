import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { aesGcmDecryptDetached } from "../../src/crypto/index.ts";
import { decryptEnvelopeWithOptions } from "../../src/envelope/decrypt.ts";
import { encodeContext } from "../../src/envelope/context.ts";
import type { FrameDecryptFunction } from "../../src/envelope/frames.ts";
import { writeFrame } from "../../src/envelope/frames.ts";
import { encodeHeaderPrefix } from "../../src/envelope/header.ts";
import { deriveMessageKeys, headerDigest } from "../../src/envelope/keys.ts";
import { decryptEnvelope, encryptEnvelope, parseEnvelopeHeader } from "../../src/envelope/index.ts";
import {
  assertDecryptionFailed,
  concat,
  flipByte,
  layoutOf,
  newMessageParams,
  randomBytes,
  TestServiceKey,
} from "./helpers.ts";

const serviceKey = new TestServiceKey();
const frameSize = 32;
const params = newMessageParams(serviceKey, {
  frameSize,
  context: { tenant: "acme", service: "billing", note: "café" },
});
// Three full frames and a 4-byte final frame.
const plaintext = randomBytes(3 * frameSize + 4);
const envelope = encryptEnvelope(params, plaintext);
const layout = layoutOf(envelope);
const header = envelope.subarray(0, layout.headerLength);
const frames = layout.frames.map((frame) => envelope.subarray(frame.start, frame.end));

/** Resolves keys the way a server does: by unwrapping with the ids from the header. */
const unwrapping = serviceKey.unwrap;
/** Ignores the header entirely, so only the envelope's own checks can catch a changed header. */
const ignoringHeader = (): Uint8Array => params.dataKey.slice();
const resolvers = { unwrapping, ignoringHeader };

function countingFrameDecrypt(): { decrypt: FrameDecryptFunction; calls: () => number } {
  let calls = 0;
  return {
    decrypt: (...args) => {
      calls += 1;
      return aesGcmDecryptDetached(...args);
    },
    calls: () => calls,
  };
}

async function assertRejectedByBoth(candidate: Uint8Array, label: string): Promise<void> {
  for (const [name, resolver] of Object.entries(resolvers)) {
    await assertDecryptionFailed(() => decryptEnvelope(candidate, resolver), `${label} (${name})`);
  }
}

describe("envelope tamper detection", () => {
  it("accepts the untampered envelope", async () => {
    assert.equal(frames.length, 4);
    for (const resolver of Object.values(resolvers)) {
      const result = await decryptEnvelope(envelope, resolver);
      assert.deepEqual(result.plaintext, plaintext);
    }
  });

  it("rejects every truncation", async () => {
    for (let length = 0; length < envelope.length; length += 1) {
      await assertRejectedByBoth(envelope.subarray(0, length), `truncated to ${length} bytes`);
    }
  });

  it("rejects each dropped frame", async () => {
    for (let dropped = 0; dropped < frames.length; dropped += 1) {
      const remaining = frames.filter((_, index) => index !== dropped);
      await assertRejectedByBoth(concat(header, ...remaining), `frame ${dropped} dropped`);
    }
  });

  it("rejects reordered frames", async () => {
    for (let first = 0; first < frames.length; first += 1) {
      for (let second = first + 1; second < frames.length; second += 1) {
        const reordered = [...frames];
        reordered[first] = frames[second]!;
        reordered[second] = frames[first]!;
        await assertRejectedByBoth(
          concat(header, ...reordered),
          `frames ${first} and ${second} swapped`,
        );
      }
    }
  });

  it("rejects each duplicated frame", async () => {
    for (let duplicated = 0; duplicated < frames.length; duplicated += 1) {
      const withCopy = frames.flatMap((frame, index) =>
        index === duplicated ? [frame, frame] : [frame],
      );
      await assertRejectedByBoth(concat(header, ...withCopy), `frame ${duplicated} duplicated`);
    }
  });

  it("rejects a flipped bit in every byte", async () => {
    const fieldAt = (position: number): string =>
      [...layout.headerFields, ...layout.frames].find(
        (range) => range.start <= position && position < range.end,
      )!.name;

    for (let position = 0; position < envelope.length; position += 1) {
      await assertRejectedByBoth(
        flipByte(envelope, position),
        `byte ${position} (${fieldAt(position)}) flipped`,
      );
    }
  });

  it("rejects tags cut to 4, 12 and 15 bytes", async () => {
    for (const tagLength of [4, 12, 15]) {
      for (let cut = 0; cut < frames.length; cut += 1) {
        const shortened = frames.map((frame, index) =>
          index === cut ? frame.subarray(0, frame.length - (16 - tagLength)) : frame,
        );
        await assertRejectedByBoth(
          concat(header, ...shortened),
          `frame ${cut} tag cut to ${tagLength} bytes`,
        );
      }
    }
  });

  it("rejects bytes after the final frame", async () => {
    // Frame 4 is correctly encrypted under this message's key, as only a holder of the data key
    // could make it. It must still be rejected because it follows the final frame.
    const { messageKey, commitmentKey } = deriveMessageKeys(
      params.dataKey,
      parseEnvelopeHeader(envelope).header.messageId,
    );
    const authenticExtra = new Uint8Array(9 + frameSize + 16);
    writeFrame(
      authenticExtra,
      0,
      messageKey,
      headerDigest(header),
      4,
      false,
      randomBytes(frameSize),
    );
    const authenticExtraFinal = new Uint8Array(9 + 1 + 16);
    writeFrame(authenticExtraFinal, 0, messageKey, headerDigest(header), 4, true, randomBytes(1));
    messageKey.fill(0);
    commitmentKey.fill(0);

    const extras: Record<string, Uint8Array> = {
      "one zero byte": new Uint8Array(1),
      "nine zero bytes": new Uint8Array(9),
      "a copy of the final frame": frames.at(-1)!,
      "a copy of frame 0": frames[0]!,
      "an authentic non-final frame 4": authenticExtra,
      "an authentic final frame 4": authenticExtraFinal,
      "a second envelope": envelope,
    };
    for (const [name, extra] of Object.entries(extras)) {
      await assertRejectedByBoth(concat(envelope, extra), `followed by ${name}`);
    }
  });

  it("rejects a changed context", async () => {
    const parsed = parseEnvelopeHeader(envelope).header;
    const withContext = (context: Record<string, string>): Uint8Array =>
      concat(
        encodeHeaderPrefix({ ...parsed, encodedContext: encodeContext(context) }),
        parsed.commitment,
        ...frames,
      );
    const original = { ...parsed.context };

    // Rebuilding with the original context must reproduce the envelope, or the cases below
    // would fail for the wrong reason.
    assert.deepEqual(withContext(original), envelope);

    const changes: Record<string, Record<string, string>> = {
      "value changed": { ...original, tenant: "acme2" },
      "value emptied": { ...original, note: "" },
      "key added": { ...original, extra: "1" },
      "key removed": { tenant: original.tenant!, service: original.service! },
      "key renamed": { tenant: original.tenant!, service: original.service!, Note: original.note! },
      "all keys removed": {},
    };
    for (const [name, context] of Object.entries(changes)) {
      await assertRejectedByBoth(withContext(context), `context ${name}`);
    }
  });

  it("rejects a header from another message", async () => {
    const otherEnvelope = encryptEnvelope(params, plaintext);
    const otherHeader = otherEnvelope.subarray(0, layoutOf(otherEnvelope).headerLength);

    await assertRejectedByBoth(
      concat(otherHeader, ...frames),
      "header of another message, same data key",
    );
  });

  it("checks the commitment before any frame", async () => {
    const control = countingFrameDecrypt();
    await decryptEnvelopeWithOptions(envelope, unwrapping, { decryptFrame: control.decrypt });
    assert.equal(
      control.calls(),
      frames.length,
      "the counter must see every frame of a valid envelope",
    );

    const wrongKeys: Record<string, () => unknown> = {
      "another random data key": () => randomBytes(32),
      "a 31-byte key": () => params.dataKey.slice(0, 31),
      "an empty key": () => new Uint8Array(0),
      "a string": () => "not a key",
    };
    for (const [name, resolve] of Object.entries(wrongKeys)) {
      const counter = countingFrameDecrypt();
      await assertDecryptionFailed(
        () =>
          decryptEnvelopeWithOptions(envelope, resolve as () => Uint8Array, {
            decryptFrame: counter.decrypt,
          }),
        name,
      );
      assert.equal(
        counter.calls(),
        0,
        `${name}: a frame was decrypted before the commitment check`,
      );
    }
  });

  it("stops at the first bad frame", async () => {
    const tampered = flipByte(envelope, layout.frames[2]!.start + 12);
    const counter = countingFrameDecrypt();

    await assertDecryptionFailed(
      () => decryptEnvelopeWithOptions(tampered, unwrapping, { decryptFrame: counter.decrypt }),
      "frame 2 ciphertext flipped",
    );
    assert.equal(counter.calls(), 3);
  });

  it("rejects a wrapped data key from another message", async () => {
    // The swapped-in wrapped key unwraps without error under the same service key version, to a
    // different data key, so only the key commitment can reject it.
    const other = newMessageParams(serviceKey, { frameSize });
    const parsed = parseEnvelopeHeader(envelope).header;
    const swapped = concat(
      encodeHeaderPrefix({
        ...parsed,
        encodedContext: encodeContext(parsed.context),
        wrappedDataKey: other.wrappedDataKey,
      }),
      parsed.commitment,
      ...frames,
    );
    const counter = countingFrameDecrypt();

    await assertDecryptionFailed(
      () => decryptEnvelopeWithOptions(swapped, unwrapping, { decryptFrame: counter.decrypt }),
      "wrapped data key swapped",
    );
    assert.equal(counter.calls(), 0);
  });
});
