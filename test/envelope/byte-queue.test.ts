import assert from "node:assert/strict";
import { describe, it } from "node:test";

import fc from "fast-check";

import { ByteQueue } from "../../src/envelope/byte-queue.ts";

type Operation =
  | { kind: "push"; bytes: Uint8Array }
  | { kind: "take"; fraction: number }
  | { kind: "peek"; fraction: number }
  | { kind: "compact" };

const operation: fc.Arbitrary<Operation> = fc.oneof(
  fc
    .oneof(
      fc.uint8Array({ maxLength: 40 }),
      fc.integer({ min: 4090, max: 9000 }).map((length) => new Uint8Array(length).map((_, i) => i)),
    )
    .map((bytes) => ({ kind: "push" as const, bytes })),
  fc
    .double({ min: 0, max: 1, noNaN: true })
    .map((fraction) => ({ kind: "take" as const, fraction })),
  fc
    .double({ min: 0, max: 1, noNaN: true })
    .map((fraction) => ({ kind: "peek" as const, fraction })),
  fc.constant({ kind: "compact" as const }),
);

describe("ByteQueue", () => {
  it("behaves like a plain byte array", () => {
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 200 }), (operations) => {
        const queue = new ByteQueue();
        let model: number[] = [];
        const handedOut: Array<{ view: Uint8Array; expected: number[] }> = [];

        for (const step of operations) {
          if (step.kind === "push") {
            // Overwrite the pushed array afterwards: chunks under 4 KiB are copied, so the queue
            // must keep the old bytes, while larger chunks are queued by reference.
            const pushed = step.bytes.slice();
            queue.push(pushed);
            pushed.fill(0xee);
            model.push(...(pushed.length >= 4096 ? pushed : step.bytes));
          } else if (step.kind === "compact") {
            queue.compact();
          } else {
            const length = Math.floor(step.fraction * model.length);
            const bytes = step.kind === "take" ? queue.take(length) : queue.peek(length);
            assert.deepEqual([...bytes], model.slice(0, length));
            if (step.kind === "take") {
              model = model.slice(length);
              handedOut.push({ view: bytes, expected: [...bytes] });
            }
          }
          assert.equal(queue.length, model.length);
        }

        // Later pushes must never overwrite bytes already handed out.
        for (const { view, expected } of handedOut) assert.deepEqual([...view], expected);
      }),
    );
  });

  it("rejects reading more than it contains", () => {
    const queue = new ByteQueue();
    queue.push(new Uint8Array(3));

    assert.throws(() => queue.take(4), /cannot read 4 bytes: the queue contains 3/);
  });

  it("returns a view for bytes inside one large chunk", () => {
    const queue = new ByteQueue();
    const chunk = new Uint8Array(8192);
    queue.push(chunk);

    const view = queue.take(100);

    assert.equal(view.buffer, chunk.buffer);
  });

  it("copies a small remainder of a large chunk on compact", () => {
    const queue = new ByteQueue();
    const chunk = new Uint8Array(100_000);
    queue.push(chunk);
    queue.take(99_000);

    queue.compact();

    assert.notEqual(queue.peek(1000).buffer, chunk.buffer);
    assert.equal(queue.peek(1000).buffer.byteLength, 1000);
  });
});
