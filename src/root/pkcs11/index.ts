export { createPkcs11Root, type Pkcs11RootDeps } from "./pkcs11-root.ts";
export { loadPkcs11Calls, ckrName, type Pkcs11Calls, type Pkcs11Handle } from "./calls.ts";
export { Pkcs11Token, Pkcs11TokenError, type Pkcs11Logger, type TokenState } from "./module.ts";
export { PIN_ENV_VARIABLE, readConfiguredPin, type Pkcs11PinSource } from "./pin.ts";
export type * from "./types.ts";
