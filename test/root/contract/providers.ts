import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type { RootMetrics } from "../../../src/root/metrics.ts";
import { createPkcs11Root } from "../../../src/root/pkcs11/index.ts";
import { createSealedRoot } from "../../../src/root/sealed-root.ts";
import type { RootProvider, UnsealProgress } from "../../../src/root/types.ts";
import { decodeUnsealShare } from "../../../src/root/unseal-shares.ts";
import { openStorage, type Storage } from "../../../src/storage/index.ts";
import { FakeClock } from "../../helpers/clock.ts";
import { RecordingLogger } from "../pkcs11/helpers.ts";
import { openSoftHsm, softhsmSkip } from "../pkcs11/softhsm.ts";
import { tamperShare } from "../helpers.ts";

/** A provider with optional `disableVersion`, as both providers are used by the re-wrap. */
export type ContractRoot = RootProvider & { disableVersion?: (version: number) => Promise<void> };

/**
 * One provider on its own fresh SQLite store. `initialize` creates the root, after which
 * `secrets` unseals it and `wrongSecrets` is a submission that must fail with UNSEAL_FAILED.
 */
export interface ProviderFixture {
  root: ContractRoot;
  storage: Storage;
  clock: FakeClock;
  logger: RecordingLogger;
  initialize(): Promise<void>;
  secrets(): Uint8Array[];
  wrongSecrets(): Uint8Array[];
  /** A new provider on the same store (and token), as after a restart of the process. */
  restart(): Promise<ContractRoot>;
  close(): Promise<void>;
}

export interface ProviderUnderTest {
  name: "sealed" | "pkcs11";
  skip: string | false;
  open(options?: { metrics?: RootMetrics }): Promise<ProviderFixture>;
}

async function openStore(): Promise<{ storage: Storage; remove: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "arbor-contract-"));
  const storage = await openStorage({ kind: "sqlite", path: join(dir, "arbor.db") });
  return {
    storage,
    async remove() {
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const sealed: ProviderUnderTest = {
  name: "sealed",
  skip: false,
  async open(options = {}) {
    const { storage, remove } = await openStore();
    const clock = new FakeClock();
    const logger = new RecordingLogger();
    const create = (metrics?: RootMetrics) =>
      createSealedRoot({ store: storage.sealedRoot, clock, ...(metrics ? { metrics } : {}) });
    const root = await create(options.metrics);
    let shares: string[] = [];

    return {
      root,
      storage,
      clock,
      logger,
      async initialize() {
        shares = (await root.initialize({ shares: 3, threshold: 2 })).shares;
      },
      secrets: () => shares.slice(0, 2).map(decodeUnsealShare),
      wrongSecrets: () => [
        decodeUnsealShare(shares[0]!),
        tamperShare(decodeUnsealShare(shares[1]!)),
      ],
      restart: () => create(),
      close: remove,
    };
  },
};

const encoder = new TextEncoder();

const pkcs11: ProviderUnderTest = {
  name: "pkcs11",
  skip: softhsmSkip,
  async open(options = {}) {
    const hsm = openSoftHsm();
    const token = hsm.createToken();
    const { storage, remove } = await openStore();
    const clock = new FakeClock();
    const logger = new RecordingLogger();
    const opened: { close(): void }[] = [];
    const create = async (metrics?: RootMetrics) => {
      const provider = await createPkcs11Root({
        store: storage.pkcs11Root,
        clock,
        logger,
        modulePath: hsm.modulePath,
        tokenLabel: token.label,
        ...(metrics ? { metrics } : {}),
      });
      opened.push(provider);
      return provider;
    };
    const root = await create(options.metrics);

    return {
      root,
      storage,
      clock,
      logger,
      async initialize() {
        await root.initialize({ pin: encoder.encode(token.pin) });
      },
      secrets: () => [encoder.encode(token.pin)],
      wrongSecrets: () => [encoder.encode(`${token.pin}-wrong`)],
      restart: () => create(),
      async close() {
        for (const provider of opened) provider.close();
        await remove();
      },
    };
  },
};

export const providers: ProviderUnderTest[] = [sealed, pkcs11];

/** Runs one whole ceremony with `secrets` and returns the last progress. */
export async function submitAll(
  root: RootProvider,
  secrets: Uint8Array[],
): Promise<UnsealProgress> {
  const { nonce } = root.beginUnseal();
  let progress: UnsealProgress | undefined;
  for (const secret of secrets) progress = await root.submit(nonce, secret);
  if (progress === undefined) throw new Error("no secret to submit");
  return progress;
}
