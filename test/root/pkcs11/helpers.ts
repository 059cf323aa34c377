import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import {
  createKeyTree,
  MaterialCache,
  type KeyTree,
  type TreeLogger,
} from "../../../src/hierarchy/index.ts";
import type { RootMetrics } from "../../../src/root/metrics.ts";
import type { PKCS11 } from "pkcs11js";

import { ckrName, pkcs11js, type Template } from "../../../src/root/pkcs11/calls.ts";
import { initializeLibrary } from "../../../src/root/pkcs11/module.ts";
import {
  createPkcs11Root,
  loadPkcs11Calls,
  type Pkcs11Calls,
  type Pkcs11Logger,
  type Pkcs11RootDeps,
  type Pkcs11RootProvider,
} from "../../../src/root/pkcs11/index.ts";
import { openStorage, type Storage } from "../../../src/storage/index.ts";
import { FakeClock } from "../../helpers/clock.ts";
import { openSoftHsm, type SoftHsm, type TestToken } from "./softhsm.ts";

/** A logger that keeps every entry, so tests can assert on logs (and on what they never contain). */
export class RecordingLogger implements Pkcs11Logger, TreeLogger {
  readonly entries: { level: string; details: Record<string, unknown>; message: string }[] = [];

  error(details: Record<string, unknown>, message: string): void {
    this.entries.push({ level: "error", details, message });
  }

  warn(details: Record<string, unknown>, message: string): void {
    this.entries.push({ level: "warn", details, message });
  }

  info(details: Record<string, unknown>, message: string): void {
    this.entries.push({ level: "info", details, message });
  }

  /** Every entry as one JSON string, to search for secrets that must not appear. */
  text(): string {
    return JSON.stringify(this.entries);
  }
}

/**
 * Pkcs11Calls that forward to the real module unless a fault rule names a CKR_ code for the call.
 * Such a call throws that code the way pkcs11js reports a failure, without reaching the module.
 */
export class FaultyCalls {
  readonly calls: Pkcs11Calls;
  /** Calls that failed because of a rule. */
  failedCalls = 0;
  /** Calls that reached the module. */
  realCalls = 0;
  #rule: ((method: string) => string | null) | null = null;

  constructor(real: Pkcs11Calls) {
    const wrapped: Record<string, unknown> = {};
    for (const [name, method] of Object.entries(real) as [string, (...a: unknown[]) => unknown][]) {
      wrapped[name] = (...args: unknown[]) => {
        const code = this.#rule?.(name) ?? null;
        if (code !== null) {
          this.failedCalls += 1;
          throw Object.assign(new Error(code), { code: 0 });
        }
        this.realCalls += 1;
        return method(...args);
      };
    }
    this.calls = wrapped as unknown as Pkcs11Calls;
  }

  /** Makes every call fail with `code` until `failWith(null)`. */
  failWith(code: string | null): void {
    this.#rule = code === null ? null : () => code;
  }

  /** Calls for which `rule` returns a code fail with it. */
  failWhen(rule: ((method: string) => string | null) | null): void {
    this.#rule = rule;
  }

  /** Makes the next `count` calls of `method` fail with `code`; other calls are unaffected. */
  failNext(method: string, code: string, count = 1): void {
    let left = count;
    this.#rule = (name) => {
      if (name !== method || left === 0) return null;
      left -= 1;
      return code;
    };
  }
}

export interface Pkcs11Setup {
  root: Pkcs11RootProvider;
  storage: Storage;
  clock: FakeClock;
  logger: RecordingLogger;
  hsm: SoftHsm;
  token: TestToken;
  /** Path of the SQLite file, for a second process or provider. */
  file: string;
  pinBytes(): Uint8Array;
  /** Opens another provider on the same store and token, as a restarted process would. */
  reopen(overrides?: Partial<Pkcs11RootDeps>): Promise<Pkcs11RootProvider>;
  close(): Promise<void>;
}

export interface SetupOptions {
  calls?: Pkcs11Calls;
  metrics?: RootMetrics;
  initialize?: boolean;
  unseal?: boolean;
  deps?: Partial<Pkcs11RootDeps>;
}

const encoder = new TextEncoder();

/** Creates a token, a SQLite store and a provider on them, initialized and unsealed by default. */
export async function setupPkcs11Root(options: SetupOptions = {}): Promise<Pkcs11Setup> {
  const hsm = openSoftHsm();
  const token = hsm.createToken();
  const dir = mkdtempSync(join(tmpdir(), "arbor-pkcs11-test-"));
  const file = join(dir, "arbor.db");
  const storage = await openStorage({ kind: "sqlite", path: file });
  const clock = new FakeClock();
  const logger = new RecordingLogger();

  const open = (overrides: Partial<Pkcs11RootDeps> = {}) =>
    createPkcs11Root({
      store: storage.pkcs11Root,
      clock,
      logger,
      modulePath: hsm.modulePath,
      tokenLabel: token.label,
      ...(options.calls === undefined ? {} : { calls: options.calls }),
      ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
      ...options.deps,
      ...overrides,
    });
  const root = await open();
  const pinBytes = () => encoder.encode(token.pin);
  const opened: Pkcs11RootProvider[] = [root];

  if (options.initialize !== false) {
    await root.initialize({ pin: pinBytes() });
    if (options.unseal !== false) await unsealWithPin(root, pinBytes());
  }

  return {
    root,
    storage,
    clock,
    logger,
    hsm,
    token,
    file,
    pinBytes,
    async reopen(overrides) {
      const another = await open(overrides);
      opened.push(another);
      return another;
    },
    async close() {
      for (const provider of opened) provider.close();
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function unsealWithPin(root: Pkcs11RootProvider, pin: Uint8Array): Promise<void> {
  const { nonce } = root.beginUnseal();
  const progress = await root.submit(nonce, pin);
  if (!progress.unsealed) throw new Error("the PIN submission did not unseal the root");
}

/** Returns the real module's calls, for tests that read token objects directly. */
export function realCalls(): Pkcs11Calls {
  return loadPkcs11Calls(openSoftHsm().modulePath);
}

export interface Pkcs11TreeHarness extends Pkcs11Setup {
  tree: KeyTree;
  cache: MaterialCache;
}

/** Builds a key tree on an unsealed PKCS#11 root, as test/helpers/tree.ts does on the sealed one. */
export async function openPkcs11Tree(options: SetupOptions = {}): Promise<Pkcs11TreeHarness> {
  const setup = await setupPkcs11Root(options);
  const cache = new MaterialCache({ clock: setup.clock, maxEntries: 10_000, ttlMs: 60_000 });
  const tree = createKeyTree({
    storage: setup.storage,
    root: setup.root,
    clock: setup.clock,
    cache,
    logger: setup.logger,
  });
  return { ...setup, tree, cache };
}

/**
 * Runs `work` on a session of its own on the token labelled `tokenLabel`, logged in as the user.
 * The login is shared with every provider of this process on that token, so it is never logged
 * out here. Closing the session leaves their login in place.
 */
export function withTokenSession<T>(
  tokenLabel: string,
  pin: string,
  work: (calls: Pkcs11Calls, session: Buffer) => T,
): T {
  const calls = realCalls();
  const slot = slotOf(calls, tokenLabel);

  const p = pkcs11js();
  const session = calls.C_OpenSession(slot, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
  try {
    try {
      calls.C_Login(session, p.CKU_USER, pin);
    } catch (error) {
      if (ckrName(error) !== "CKR_USER_ALREADY_LOGGED_IN") throw error;
    }
    return work(calls, session);
  } finally {
    calls.C_CloseSession(session);
  }
}

/** Handles of the objects matching `template`. */
export function findObjects(calls: Pkcs11Calls, session: Buffer, template: Template): Buffer[] {
  calls.C_FindObjectsInit(session, template);
  const found = calls.C_FindObjects(session, 10);
  calls.C_FindObjectsFinal(session);
  return found;
}

/** Boolean attributes of an object, by pkcs11js constant name (`CKA_SENSITIVE`, ...). */
export function booleanAttributes(
  calls: Pkcs11Calls,
  session: Buffer,
  handle: Buffer,
  names: string[],
): Record<string, boolean> {
  const constants = pkcs11js() as unknown as Record<string, number>;
  const results = calls.C_GetAttributeValue(
    session,
    handle,
    names.map((name) => ({ type: constants[name]! })),
  );
  return Object.fromEntries(
    names.map((name, index) => [name, results[index]!.value.some((byte) => byte !== 0)]),
  );
}

/**
 * Opens a session of a separate pkcs11js instance on the same module, for calls outside the narrow
 * Pkcs11Calls set (C_CreateObject). Both instances share the module's state in this process.
 */
export function openRawSession(token: TestToken): {
  library: PKCS11;
  session: Buffer;
  close: () => void;
} {
  const p = pkcs11js();
  const library = new p.PKCS11();
  library.load(openSoftHsm().modulePath);
  const slot = slotOf(library, token.label);
  const session = library.C_OpenSession(slot, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
  try {
    library.C_Login(session, p.CKU_USER, token.pin);
  } catch (error) {
    if (ckrName(error) !== "CKR_USER_ALREADY_LOGGED_IN") throw error;
  }
  return { library, session, close: () => library.C_CloseSession(session) };
}

/**
 * Returns the slot of the token labelled `tokenLabel`. SoftHSM lists a token that softhsm2-util
 * created after C_Initialize only after a new C_Initialize, so a missing token re-initializes the
 * module once. Providers of this process re-connect by themselves afterwards.
 */
function slotOf(
  calls: Pick<Pkcs11Calls, "C_Initialize" | "C_Finalize" | "C_GetSlotList" | "C_GetTokenInfo">,
  tokenLabel: string,
): Buffer {
  const find = () =>
    calls
      .C_GetSlotList(true)
      .find((candidate) => calls.C_GetTokenInfo(candidate).label.trimEnd() === tokenLabel);
  initializeLibrary(calls);
  let slot = find();
  if (slot === undefined) {
    calls.C_Finalize();
    initializeLibrary(calls);
    slot = find();
  }
  if (slot === undefined) throw new Error(`no token labelled ${tokenLabel}`);
  return slot;
}
