import { ArborError, quote } from "../errors/index.ts";
import type { KeyScope, KeyTree } from "../hierarchy/index.ts";
import type { KeyRow } from "../storage/repositories/keys.ts";
import { isServiceKeyScope } from "../tokens/index.ts";

/**
 * A key scope that carries the request's authorization decision. Routes build it from the
 * request (`keyScopeOf`), so every key a route or the envelope service resolves is decided on.
 */
export interface DecidedKeyScope extends KeyScope {
  /** Decides the request on the resolved key; false makes the key "not found". */
  decideKey(key: KeyRow): Promise<boolean>;
}

export function isDecidedKeyScope(scope: KeyScope | undefined): scope is DecidedKeyScope {
  return typeof (scope as Partial<DecidedKeyScope> | undefined)?.decideKey === "function";
}

/**
 * Wraps the key tree so that `resolveKey` requires an authorization decision on the key it finds.
 * A look-up without a {@link DecidedKeyScope} fails with INTERNAL, so a route that forgets to
 * decide cannot reach a key. The key is looked up across every environment and tenant (break-glass
 * grants reach outside the principal's scope) and then decided; a denied key fails with the same
 * code, message and parameter as a key that does not exist, so a caller learns nothing about keys
 * it may not use. A service's scope keeps its service, so `restrictToOwnService` below still applies.
 */
export function requireKeyDecisions(keyTree: KeyTree): KeyTree {
  return {
    ...keyTree,
    async resolveKey(reference, impliedPurpose, scope) {
      if (!isDecidedKeyScope(scope)) {
        throw new ArborError(
          "INTERNAL",
          "a key look-up reached the key tree without an authorization decision",
        );
      }
      const everywhere: KeyScope & { service?: string } = { environment: null, tenant: null };
      if (isServiceKeyScope(scope)) everywhere.service = scope.service;

      const key = await keyTree.resolveKey(reference, impliedPurpose, everywhere);
      if (!(await scope.decideKey(key))) throw keyNotFound(reference);
      return key;
    },
  };
}

/** The key tree's own "not found", repeated exactly so a denial cannot be told apart from it. */
function keyNotFound(reference: string): ArborError {
  return new ArborError("KEY_NOT_FOUND", `key ${quote(reference)} not found`, {
    parameter: "key",
    value: reference,
  });
}
