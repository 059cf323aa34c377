import type { Authorizer } from "./deps.ts";

/**
 * Allows every authenticated request. Servers use the Cedar authorizer (`src/policy`); this one
 * is for tests of other parts and for the benchmark that measures what authorization costs.
 * With it, scope (environment and tenant) is only what the routes and the key tree enforce.
 */
export const allowAllAuthorizer: Authorizer = {
  authorize: () => Promise.resolve({ allowed: true }),
};
