import { ArborError } from "../../src/errors/index.ts";
import type {
  SealedRootRecord,
  SealedRootStore,
  SealedRootVersionRecord,
} from "../../src/root/types.ts";

/**
 * In-memory SealedRootStore for tests. It copies every byte array on the way in and out, as a
 * database would, so a test can inspect what was stored without sharing buffers with the provider.
 */
export class MemorySealedRootStore implements SealedRootStore {
  #record: SealedRootRecord | null = null;
  #versions: SealedRootVersionRecord[] = [];
  /** Number of `load` calls, so tests can see when the provider re-reads the store. */
  loads = 0;

  #pause: { started: () => void; resumed: Promise<void> } | null = null;

  async load(): Promise<{ record: SealedRootRecord; versions: SealedRootVersionRecord[] } | null> {
    this.loads += 1;
    const pause = this.#pause;
    if (pause !== null) {
      this.#pause = null;
      pause.started();
      await pause.resumed;
    }
    if (this.#record === null) return null;
    return { record: copyRecord(this.#record), versions: this.#versions.map(copyVersion) };
  }

  /**
   * Makes the next `load` wait until `resume` is called, so a test can act while the provider
   * is inside an await. `started` resolves when that load begins.
   */
  pauseNextLoad(): { started: Promise<void>; resume: () => void } {
    let started!: () => void;
    let resume!: () => void;
    const startedPromise = new Promise<void>((resolve) => (started = resolve));
    const resumed = new Promise<void>((resolve) => (resume = resolve));
    this.#pause = { started, resumed };
    return { started: startedPromise, resume };
  }

  create(record: SealedRootRecord, first: SealedRootVersionRecord): Promise<void> {
    if (this.#record !== null) {
      return Promise.reject(
        new ArborError("ALREADY_INITIALIZED", "a sealed root record already exists"),
      );
    }
    this.#record = copyRecord(record);
    this.#versions = [copyVersion(first)];
    return Promise.resolve();
  }

  addVersion(version: SealedRootVersionRecord): Promise<void> {
    if (this.#versions.some((existing) => existing.version === version.version)) {
      return Promise.reject(
        new ArborError("CONCURRENT_UPDATE", `root version ${version.version} already exists`),
      );
    }
    this.#versions.push(copyVersion(version));
    return Promise.resolve();
  }

  /** Copies of what is stored, for assertions. */
  snapshot(): { record: SealedRootRecord | null; versions: SealedRootVersionRecord[] } {
    return {
      record: this.#record === null ? null : copyRecord(this.#record),
      versions: this.#versions.map(copyVersion),
    };
  }

  /** Replaces the stored state, to simulate corruption. */
  overwrite(record: SealedRootRecord, versions: SealedRootVersionRecord[]): void {
    this.#record = copyRecord(record);
    this.#versions = versions.map(copyVersion);
  }
}

function copyRecord(record: SealedRootRecord): SealedRootRecord {
  return { ...record, checkValue: Uint8Array.from(record.checkValue) };
}

function copyVersion(version: SealedRootVersionRecord): SealedRootVersionRecord {
  return { ...version, sealedKey: Uint8Array.from(version.sealedKey) };
}
