import type { Authorizer } from "./deps.ts";

/**
 * Allows every authenticated request. It replaces the policy engine for now, so the authorization
 * hook and every route's metadata are exercised from the start.
 *
 * NOTE: scope (environment and tenant) is still enforced by the routes through the key tree;
 * only the per-action policy is missing until the policy engine replaces this.
 */
export const allowAllAuthorizer: Authorizer = {
  authorize: () => Promise.resolve({ allowed: true }),
};
