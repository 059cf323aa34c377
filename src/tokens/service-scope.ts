import { ArborError, quote } from "../errors/index.ts";
import type { KeyScope, KeyTree } from "../hierarchy/index.ts";
import type { ServicePrincipal } from "./types.ts";

/** The scope of a service principal: its environment and tenant, narrowed to its own service. */
export interface ServiceKeyScope extends KeyScope {
  environment: string;
  tenant: string;
  service: string;
}

export function serviceKeyScope(principal: ServicePrincipal): ServiceKeyScope {
  return {
    environment: principal.environment,
    tenant: principal.tenant,
    service: principal.service,
  };
}

export function isServiceKeyScope(scope: KeyScope | undefined): scope is ServiceKeyScope {
  return scope !== undefined && typeof (scope as Partial<ServiceKeyScope>).service === "string";
}

/**
 * Wraps the key tree so that a look-up with a {@link ServiceKeyScope} also requires the key to
 * belong to that service. A key of another service fails exactly like a key that does not exist
 * (same code, message and parameter as the tree's own "not found"), so a service learns nothing
 * about its neighbours. Look-ups with an operator's scope are unchanged.
 *
 * The routes and the envelope service pass the caller's scope object to `resolveKey` unchanged,
 * which is what carries `service` down to this check, so both must be given the wrapped tree.
 */
export function restrictToOwnService(keyTree: KeyTree): KeyTree {
  return {
    ...keyTree,
    async resolveKey(reference, impliedPurpose, scope) {
      const key = await keyTree.resolveKey(reference, impliedPurpose, scope);
      if (isServiceKeyScope(scope) && key.service !== scope.service) {
        throw new ArborError("KEY_NOT_FOUND", `key ${quote(reference)} not found`, {
          parameter: "key",
          value: reference,
        });
      }
      return key;
    },
  };
}
