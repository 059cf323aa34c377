import type { SqlAuditWriter } from "../audit/sql-writer.ts";
import type { Clock } from "../clock.ts";
import type { KeyTree } from "../hierarchy/index.ts";
import type { Authorizer } from "../server/deps.ts";
import type { ServerMetrics } from "../server/metrics.ts";
import type { Storage } from "../storage/index.ts";
import { createCedarAuthorizer } from "./authorizer.ts";
import { PolicyEngine, type Explanation } from "./engine.ts";
import { explainRequest, type ExplainInput } from "./explain.ts";
import { requireKeyDecisions } from "./key-lookup.ts";
import { createPolicyStore, type PolicyStore } from "./store.ts";

export { ACTION_NAMES, ACTIONS, isActionName, type ActionName } from "./actions.ts";
export { BUILTIN_POLICIES, BUILTIN_ROLES, GUARD_POLICIES, ROLE_POLICIES } from "./builtin.ts";
export { runPolicyCases, type CaseResult, type PolicyCase } from "./cases.ts";
export { createCedarAuthorizer } from "./authorizer.ts";
export {
  PolicyEngine,
  validateDocuments,
  type DecisionRequest,
  type EngineDecision,
  type Explanation,
  type PolicyOrigin,
  type StoredPolicyDocument,
} from "./engine.ts";
export type { ExplainInput } from "./explain.ts";
export { GrantIndex, type PolicyGrant } from "./grants.ts";
export { isDecidedKeyScope, requireKeyDecisions, type DecidedKeyScope } from "./key-lookup.ts";
export { SCHEMA_TEXT } from "./schema.ts";
export {
  createPolicyStore,
  MAX_BREAK_GLASS_TTL_MS,
  POLICY_CHANGED_TOPIC,
  type ApplyOutcome,
  type GrantInput,
  type PolicyStore,
  type PolicyVersionInfo,
} from "./store.ts";

/** What the policy routes use: the store of policies and grants, and explanations. */
export interface PolicyAdministration {
  store: PolicyStore;
  explain(input: ExplainInput): Promise<Explanation>;
}

export interface PolicyComponentDeps {
  storage: Storage;
  clock: Clock;
  /** The audit writer, for `policy.changed` events in their change's transaction. */
  audit: Pick<SqlAuditWriter, "writeInTransaction">;
  metrics: Pick<ServerMetrics, "scopeDenials">;
  logger: { error(details: Record<string, unknown>, message: string): void };
  /** The key tree the routes and the envelope service use (already restricted to own services). */
  keyTree: KeyTree;
  /** Decision cache lifetime in milliseconds; 0 turns it off. Default 2 s. */
  decisionCacheTtlMs?: number;
}

export interface PolicyComponents extends PolicyAdministration {
  engine: PolicyEngine;
  authorizer: Authorizer;
  /** `keyTree` wrapped so that every look-up needs an authorization decision. */
  keyTree: KeyTree;
}

/**
 * Builds the Cedar authorizer with the key tree that enforces its second decision, the policy
 * store, and explanations, and loads the stored policies. The authorizer and the wrapped key
 * tree belong together: the authorizer lets break-glass principals past their scope only because
 * every key look-up is decided on the key itself.
 */
export async function createPolicyComponents(deps: PolicyComponentDeps): Promise<PolicyComponents> {
  const engine = new PolicyEngine({ cacheTtlMs: deps.decisionCacheTtlMs ?? 2_000 });
  const store = createPolicyStore({
    storage: deps.storage,
    engine,
    clock: deps.clock,
    audit: deps.audit,
    logger: deps.logger,
  });
  await store.reload();

  const authorizer = createCedarAuthorizer({
    engine,
    grants: store.grants,
    clock: deps.clock,
    scopeDenials: deps.metrics.scopeDenials,
    logger: deps.logger,
  });
  const keyTree = requireKeyDecisions(deps.keyTree);
  return {
    engine,
    store,
    authorizer,
    keyTree,
    explain: (input) =>
      explainRequest({ storage: deps.storage, keyTree, authorizer, engine }, input),
  };
}
