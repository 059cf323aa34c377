import { createRequire } from "node:module";

import type * as CedarWasm from "@cedar-policy/cedar-wasm";

/**
 * The Cedar engine (`@cedar-policy/cedar-wasm`, Node.js build). It is loaded through `require`
 * because the package's ESM entry fails to load on Node.js 20; the types are the same.
 */
export type Cedar = typeof CedarWasm;

export type {
  AuthorizationAnswer,
  DetailedError,
  EntityJson,
  PolicyJson,
  ValidationAnswer,
} from "@cedar-policy/cedar-wasm";

let loaded: Cedar | undefined;

/** Returns the Cedar module, loading its WebAssembly on the first call. */
export function cedar(): Cedar {
  loaded ??= createRequire(import.meta.url)("@cedar-policy/cedar-wasm/nodejs") as Cedar;
  return loaded;
}

/** Joins Cedar's error messages into one line for logs and API answers. */
export function describeCedarErrors(errors: readonly CedarWasm.DetailedError[]): string {
  return errors.map((error) => error.message).join("; ");
}
