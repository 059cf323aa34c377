import {
  createKeyTree,
  MaterialCache,
  type KeyTree,
  type TreeLogger,
} from "../../src/hierarchy/index.ts";
import {
  createSealedRoot,
  decodeUnsealShare,
  type SealedRootProvider,
} from "../../src/root/index.ts";
import type { Storage } from "../../src/storage/index.ts";
import { FakeClock } from "./clock.ts";
import type { DialectUnderTest } from "./dialects.ts";

/** A logger that keeps what it was given, so tests can assert on error logs. */
export class RecordingLogger implements TreeLogger {
  readonly entries: { level: string; details: Record<string, unknown>; message: string }[] = [];

  error(details: Record<string, unknown>, message: string): void {
    this.entries.push({ level: "error", details, message });
  }

  warn(details: Record<string, unknown>, message: string): void {
    this.entries.push({ level: "warn", details, message });
  }
}

export interface TreeHarness {
  storage: Storage;
  root: SealedRootProvider;
  tree: KeyTree;
  clock: FakeClock;
  cache: MaterialCache;
  logger: RecordingLogger;
  shares: string[];
  file: string | undefined;
  close: () => Promise<void>;
}

/** Unseals a sealed provider with the first `count` shares. */
export async function unsealWith(
  root: SealedRootProvider,
  shares: string[],
  count = 3,
): Promise<void> {
  const { nonce } = root.beginUnseal();
  for (const share of shares.slice(0, count)) {
    await root.submit(nonce, decodeUnsealShare(share));
  }
}

/** Builds an initialised, unsealed key tree on a fresh store of the given dialect. */
export async function openTree(
  dialect: DialectUnderTest,
  clock = new FakeClock(),
): Promise<TreeHarness> {
  const opened = await dialect.open();
  const root = await createSealedRoot({ store: opened.storage.sealedRoot, clock });
  const { shares } = await root.initialize({ shares: 5, threshold: 3 });
  await unsealWith(root, shares);
  return assemble(opened.storage, root, clock, shares, opened.file, opened.close);
}

/** Opens the same store in a new "process": new root provider, new cache, sealed until unsealed. */
export async function reopenTree(
  dialect: DialectUnderTest,
  file: string,
  shares: string[],
  clock: FakeClock,
) {
  const storage = await dialect.reopen!(file);
  const root = await createSealedRoot({ store: storage.sealedRoot, clock });
  return assemble(storage, root, clock, shares, file, () => storage.close());
}

function assemble(
  storage: Storage,
  root: SealedRootProvider,
  clock: FakeClock,
  shares: string[],
  file: string | undefined,
  close: () => Promise<void>,
): TreeHarness {
  const cache = new MaterialCache({ clock, maxEntries: 1000, ttlMs: 60_000 });
  const logger = new RecordingLogger();
  const tree = createKeyTree({ storage, root, clock, cache, logger });
  return { storage, root, tree, clock, cache, logger, shares, file, close };
}
