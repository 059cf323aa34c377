import assert from "node:assert/strict";
import type { JsonWebKey } from "node:crypto";
import { describe, test } from "node:test";

import { ArborError } from "../../src/errors/index.ts";
import {
  ROOT_CALLS_TOTAL,
  ROOT_CALL_DURATION_SECONDS,
  instrumentRootProvider,
} from "../../src/root/metrics.ts";
import { createSealedRoot } from "../../src/root/sealed-root.ts";
import type {
  Ceremony,
  RootProvider,
  RootStatus,
  RootVersion,
  UnsealProgress,
  WrappedBlob,
} from "../../src/root/types.ts";
import { FakeClock } from "../helpers/clock.ts";
import { assertArborError } from "./helpers.ts";
import { MemorySealedRootStore } from "./memory-store.ts";
import { RecordingMetrics } from "./recording-metrics.ts";

/** Provider whose methods succeed or fail on demand; `fail` names the methods that fail. */
class ScriptedProvider implements RootProvider {
  readonly fail = new Set<string>();
  readonly calls: string[] = [];
  readonly label = "scripted";

  status(): RootStatus {
    this.#record("status");
    return { state: "sealed", provider: "sealed", rootVersion: 1, ceremony: null };
  }
  beginUnseal(): Ceremony {
    this.#record("beginUnseal");
    return { nonce: "n", threshold: 3, progress: 0 };
  }
  submit(nonce: string, _secret: Uint8Array): Promise<UnsealProgress> {
    return this.#async("submit", { nonce, threshold: 3, progress: 1, unsealed: false });
  }
  cancelUnseal(): void {
    this.#record("cancelUnseal");
  }
  seal(): void {
    this.#record("seal");
  }
  wrap(plaintext: Uint8Array, _aad: Uint8Array): Promise<WrappedBlob> {
    return this.#async("wrap", { rootVersion: 1, ciphertext: plaintext });
  }
  unwrap(blob: WrappedBlob, _aad: Uint8Array): Promise<Uint8Array> {
    return this.#async("unwrap", blob.ciphertext);
  }
  rotate(): Promise<RootVersion> {
    return this.#async("rotate", { version: 2, createdAt: 0 });
  }
  signCheckpoint(digest: Uint8Array): Promise<Uint8Array> {
    return this.#async("signCheckpoint", digest);
  }
  checkpointPublicKey(): Promise<JsonWebKey> {
    return this.#async("checkpointPublicKey", { kty: "OKP" });
  }

  #record(name: string): void {
    this.calls.push(name);
    if (this.fail.has(name)) throw new ArborError("SEALED", `${name} failed`);
  }

  async #async<T>(name: string, value: T): Promise<T> {
    await Promise.resolve();
    this.#record(name);
    return value;
  }
}

/** Monotonic fake that moves 0.25 s each time it is read, so each call lasts exactly 0.25 s. */
function steppingSeconds(): () => number {
  let now = 100;
  return () => {
    now += 0.25;
    return now;
  };
}

void describe("instrumentRootProvider", () => {
  void test("metric names match the fixed names", () => {
    assert.equal(ROOT_CALLS_TOTAL, "arbor_root_calls_total");
    assert.equal(ROOT_CALL_DURATION_SECONDS, "arbor_root_call_duration_seconds");
  });

  void test("counts ok results with latency for every method", async () => {
    const provider = new ScriptedProvider();
    const metrics = new RecordingMetrics();
    const root = instrumentRootProvider(provider, metrics, { monotonicSeconds: steppingSeconds() });

    root.status();
    root.beginUnseal();
    await root.submit("n", new Uint8Array(33));
    root.cancelUnseal();
    root.seal();
    const blob = await root.wrap(new Uint8Array([1]), new Uint8Array());
    await root.unwrap(blob, new Uint8Array());
    await root.rotate();
    await root.signCheckpoint(new Uint8Array([2]));
    await root.checkpointPublicKey();

    const operations = [
      "status",
      "beginUnseal",
      "submit",
      "cancelUnseal",
      "seal",
      "wrap",
      "unwrap",
      "rotate",
      "signCheckpoint",
      "checkpointPublicKey",
    ];
    assert.deepEqual(
      metrics.observations,
      operations.map((operation) => ({ operation, result: "ok", seconds: 0.25 })),
    );
    assert.deepEqual(provider.calls, operations, "each call reached the provider once");
  });

  void test("counts sync throws and async rejections as errors and passes them on", async () => {
    const provider = new ScriptedProvider();
    const metrics = new RecordingMetrics();
    const root = instrumentRootProvider(provider, metrics, { monotonicSeconds: steppingSeconds() });
    provider.fail.add("beginUnseal");
    provider.fail.add("wrap");

    await assertArborError(() => root.beginUnseal(), "SEALED", /beginUnseal failed/);
    await assertArborError(root.wrap(new Uint8Array(), new Uint8Array()), "SEALED", /wrap failed/);
    root.status();

    assert.deepEqual(metrics.observations, [
      { operation: "beginUnseal", result: "error", seconds: 0.25 },
      { operation: "wrap", result: "error", seconds: 0.25 },
      { operation: "status", result: "ok", seconds: 0.25 },
    ]);
  });

  void test("passes return values and non-method properties through", async () => {
    const provider = new ScriptedProvider();
    const root = instrumentRootProvider(provider, new RecordingMetrics());

    const blob = await root.wrap(new Uint8Array([9]), new Uint8Array());

    assert.deepEqual(blob, { rootVersion: 1, ciphertext: new Uint8Array([9]) });
    assert.equal(root.label, "scripted");
    const first: unknown = Reflect.get(root, "wrap");
    const second: unknown = Reflect.get(root, "wrap");
    assert.equal(first, second, "the wrapper is stable across reads");
  });

  void test("measures an async call until it settles", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const provider = new ScriptedProvider();
    provider.rotate = async () => {
      await gate;
      return { version: 2, createdAt: 0 };
    };
    let now = 0;
    const metrics = new RecordingMetrics();
    const root = instrumentRootProvider(provider, metrics, { monotonicSeconds: () => now });

    const rotating = root.rotate();
    now = 1.5;
    assert.equal(metrics.observations.length, 0, "nothing is observed before the promise settles");
    release();
    await rotating;

    assert.deepEqual(metrics.observations, [{ operation: "rotate", result: "ok", seconds: 1.5 }]);
  });

  void test("instruments the sealed provider including initialize", async () => {
    const metrics = new RecordingMetrics();
    const root = await createSealedRoot({
      store: new MemorySealedRootStore(),
      clock: new FakeClock(),
      metrics,
    });

    await assertArborError(root.wrap(new Uint8Array(32), new Uint8Array()), "NOT_INITIALIZED");
    const { shares } = await root.initialize();
    const { nonce } = root.beginUnseal();
    for (const share of shares.slice(0, 3)) {
      await root.submit(nonce, Buffer.from(share, "base64"));
    }
    await assertArborError(root.submit(nonce, new Uint8Array(33)), "ALREADY_UNSEALED");
    const blob = await root.wrap(new Uint8Array(32), new Uint8Array());
    await root.unwrap(blob, new Uint8Array());

    assert.equal(metrics.count("wrap", "error"), 1);
    assert.equal(metrics.count("wrap", "ok"), 1);
    assert.equal(metrics.count("initialize", "ok"), 1);
    assert.equal(metrics.count("beginUnseal", "ok"), 1);
    assert.equal(metrics.count("submit", "ok"), 3);
    assert.equal(metrics.count("submit", "error"), 1);
    assert.equal(metrics.count("unwrap", "ok"), 1);
    for (const observation of metrics.observations) {
      assert.ok(observation.seconds >= 0, "latency is never negative");
    }
  });
});
