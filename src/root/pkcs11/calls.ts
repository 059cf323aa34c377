import { createRequire } from "node:module";

import type { AttributeResult, KeyPair, Mechanism, Template } from "pkcs11js";
import type * as Pkcs11js from "pkcs11js";

/** A PKCS#11 handle (slot, session or object) as pkcs11js passes it: the native ulong's bytes. */
export type Pkcs11Handle = Buffer;

export type { AttributeResult, KeyPair, Mechanism, Template };

/** The fields of CK_TOKEN_INFO that Arbor reads. */
export interface Pkcs11TokenInfo {
  /** Padded with spaces to 32 bytes, as the module returns it. */
  label: string;
  serialNumber: string;
  flags: number;
}

/**
 * The PKCS#11 functions Arbor calls, with the synchronous signatures of pkcs11js 2.1.7. Every
 * module call of the PKCS#11 root goes through one object of this type, so tests can wrap it to
 * inject faults. A failed call throws an error whose message starts with the CKR_ name (see
 * `ckrName`).
 */
export interface Pkcs11Calls {
  C_Initialize(options: { flags: number }): void;
  C_Finalize(): void;
  C_GetSlotList(tokenPresent: boolean): Pkcs11Handle[];
  C_GetTokenInfo(slot: Pkcs11Handle): Pkcs11TokenInfo;
  C_OpenSession(slot: Pkcs11Handle, flags: number): Pkcs11Handle;
  C_CloseSession(session: Pkcs11Handle): void;
  /** pkcs11js 2.1.7 takes the PIN only as a string. */
  C_Login(session: Pkcs11Handle, userType: number, pin: string): void;
  C_Logout(session: Pkcs11Handle): void;
  C_FindObjectsInit(session: Pkcs11Handle, template: Template): void;
  C_FindObjects(session: Pkcs11Handle, maxObjectCount: number): Pkcs11Handle[];
  C_FindObjectsFinal(session: Pkcs11Handle): void;
  C_GetAttributeValue(
    session: Pkcs11Handle,
    object: Pkcs11Handle,
    template: Template,
  ): AttributeResult[];
  C_SetAttributeValue(session: Pkcs11Handle, object: Pkcs11Handle, template: Template): void;
  C_GenerateKey(session: Pkcs11Handle, mechanism: Mechanism, template: Template): Pkcs11Handle;
  C_GenerateKeyPair(
    session: Pkcs11Handle,
    mechanism: Mechanism,
    publicTemplate: Template,
    privateTemplate: Template,
  ): KeyPair;
  C_DestroyObject(session: Pkcs11Handle, object: Pkcs11Handle): void;
  C_EncryptInit(session: Pkcs11Handle, mechanism: Mechanism, key: Pkcs11Handle): void;
  /** Returns the part of `output` that contains the result. */
  C_Encrypt(session: Pkcs11Handle, input: Buffer, output: Buffer): Buffer;
  C_DecryptInit(session: Pkcs11Handle, mechanism: Mechanism, key: Pkcs11Handle): void;
  C_Decrypt(session: Pkcs11Handle, input: Buffer, output: Buffer): Buffer;
  C_SignInit(session: Pkcs11Handle, mechanism: Mechanism, key: Pkcs11Handle): void;
  C_Sign(session: Pkcs11Handle, input: Buffer, output: Buffer): Buffer;
}

type Pkcs11jsModule = typeof Pkcs11js;

// pkcs11js is a CommonJS package with a native addon; require keeps its constants typed.
const requireCjs = createRequire(import.meta.url);
let pkcs11jsModule: Pkcs11jsModule | undefined;

/** Returns the pkcs11js exports: constants (`CKA_*`, `CKM_*`, ...) and the PKCS11 class. */
export function pkcs11js(): Pkcs11jsModule {
  pkcs11jsModule ??= requireCjs("pkcs11js") as Pkcs11jsModule;
  return pkcs11jsModule;
}

// One loaded library per path and process: a second load of the same shared object returns the
// same module state, and C_Initialize may then only run once.
const loaded = new Map<string, Pkcs11Calls>();

/**
 * Loads a PKCS#11 module (a shared library such as `/usr/lib/softhsm/libsofthsm2.so`) and returns
 * its calls. The library is not initialized here. The same path always returns the same object,
 * because the library keeps one state per process.
 */
export function loadPkcs11Calls(modulePath: string): Pkcs11Calls {
  const existing = loaded.get(modulePath);
  if (existing !== undefined) return existing;

  const library = new (pkcs11js().PKCS11)();
  library.load(modulePath);
  const calls = adapt(library);
  loaded.set(modulePath, calls);
  return calls;
}

/** Forwards each call to the synchronous overload of pkcs11js, never the callback or async form. */
function adapt(library: Pkcs11js.PKCS11): Pkcs11Calls {
  return {
    C_Initialize: (options) => library.C_Initialize(options),
    C_Finalize: () => library.C_Finalize(),
    C_GetSlotList: (tokenPresent) => library.C_GetSlotList(tokenPresent),
    C_GetTokenInfo: (slot) => library.C_GetTokenInfo(slot),
    C_OpenSession: (slot, flags) => library.C_OpenSession(slot, flags),
    C_CloseSession: (session) => library.C_CloseSession(session),
    C_Login: (session, userType, pin) => library.C_Login(session, userType, pin),
    C_Logout: (session) => library.C_Logout(session),
    C_FindObjectsInit: (session, template) => library.C_FindObjectsInit(session, template),
    C_FindObjects: (session, max) => library.C_FindObjects(session, max),
    C_FindObjectsFinal: (session) => library.C_FindObjectsFinal(session),
    C_GetAttributeValue: (session, object, template) =>
      library.C_GetAttributeValue(session, object, template),
    C_SetAttributeValue: (session, object, template) =>
      library.C_SetAttributeValue(session, object, template),
    C_GenerateKey: (session, mechanism, template) =>
      library.C_GenerateKey(session, mechanism, template),
    C_GenerateKeyPair: (session, mechanism, publicTemplate, privateTemplate) =>
      library.C_GenerateKeyPair(session, mechanism, publicTemplate, privateTemplate),
    C_DestroyObject: (session, object) => library.C_DestroyObject(session, object),
    C_EncryptInit: (session, mechanism, key) => library.C_EncryptInit(session, mechanism, key),
    C_Encrypt: (session, input, output) => library.C_Encrypt(session, input, output),
    C_DecryptInit: (session, mechanism, key) => library.C_DecryptInit(session, mechanism, key),
    C_Decrypt: (session, input, output) => library.C_Decrypt(session, input, output),
    C_SignInit: (session, mechanism, key) => library.C_SignInit(session, mechanism, key),
    C_Sign: (session, input, output) => library.C_Sign(session, input, output),
  };
}

const CKR_PATTERN = /\b(CKR_[A-Z0-9_]+)/;

// Return values that PKCS#11 3.0 added and pkcs11js 2.1.7 does not name.
const EXTRA_CKR_NAMES = new Map<number, string>([
  [0x35, "CKR_AEAD_DECRYPT_FAILED"],
  [0x1b5, "CKR_OPERATION_CANCEL_FAILED"],
]);
let ckrNames: Map<number, string> | undefined;

/**
 * Returns the CKR_ name of a PKCS#11 failure, or null for other errors (a TypeError from a wrong argument,
 * for example). pkcs11js reports most failures as `Pkcs11Error` with the name as message and the
 * number as `code`, but some (CKR_ATTRIBUTE_READ_ONLY from C_SetAttributeValue) as a plain Error
 * whose message is `CKR_NAME:number`, so the message is read first.
 */
export function ckrName(error: unknown): string | null {
  if (!(error instanceof Error)) return null;

  const match = CKR_PATTERN.exec(error.message);
  if (match !== null) return match[1]!;

  const code = (error as { code?: unknown }).code;
  if (typeof code !== "number" || code <= 0) return null;
  return nameOfReturnValue(code);
}

function nameOfReturnValue(code: number): string {
  if (ckrNames === undefined) {
    ckrNames = new Map(EXTRA_CKR_NAMES);
    for (const [name, value] of Object.entries(pkcs11js())) {
      if (name.startsWith("CKR_") && typeof value === "number") ckrNames.set(value, name);
    }
  }
  return ckrNames.get(code) ?? `CKR_0x${code.toString(16)}`;
}
