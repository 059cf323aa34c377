import { ArborError, invalidArgument, quote } from "../errors/index.ts";
import type { KeyTree } from "../hierarchy/index.ts";
import type { AuthorizationTarget, Principal } from "../server/deps.ts";
import type { Storage } from "../storage/index.ts";
import { isActionName } from "./actions.ts";
import type { createCedarAuthorizer } from "./authorizer.ts";
import type { Explanation, PolicyEngine } from "./engine.ts";
import type { DecidedKeyScope } from "./key-lookup.ts";

/** A request to explain: who, what, and on which resource (none: the principal's own scope). */
export interface ExplainInput {
  /** An operator token id (`opt_...`) or a service principal id (`svc_...`). */
  principal: string;
  /** For a service principal: explain it as a workload holding one of its access tokens. */
  workload?: boolean;
  action: string;
  /** A key path or id. */
  key?: string;
  /** A version of `key`, for the version actions. */
  version?: number;
  /** An operator token or service principal id, for the actions on principals. */
  target?: string;
}

export interface ExplainDeps {
  storage: Pick<Storage, "operatorTokens" | "servicePrincipals">;
  keyTree: Pick<KeyTree, "resolveKey">;
  authorizer: Pick<ReturnType<typeof createCedarAuthorizer>, "requestOf">;
  engine: PolicyEngine;
}

/**
 * Decides a described request against the policies in effect, without acting on it, and returns
 * the policies that decided it. The principal and the resource are read from storage as they are
 * now, so the result is what a request of that principal would get.
 */
export async function explainRequest(deps: ExplainDeps, input: ExplainInput): Promise<Explanation> {
  if (!isActionName(input.action)) {
    throw invalidArgument(
      "action",
      input.action,
      "not an action of the schema; see docs/policy.md",
    );
  }
  const principal = await loadPrincipal(deps, input.principal, input.workload === true);
  const target = await loadTarget(deps, input);
  const request = deps.authorizer.requestOf({
    principal,
    action: input.action,
    resource: "",
    ...(target === undefined ? {} : { target }),
  });
  if (request === null) {
    throw invalidArgument("action", input.action, "the action does not apply to this resource");
  }
  return deps.engine.explain(request);
}

async function loadPrincipal(deps: ExplainDeps, id: string, workload: boolean): Promise<Principal> {
  if (id.startsWith("opt_")) {
    const row = await deps.storage.operatorTokens.findById(id);
    if (row === undefined) throw principalNotFound(id);
    return {
      type: "operator",
      id: row.id,
      environment: row.environment,
      tenant: row.tenant,
      readOnly: row.read_only === 1,
      root: row.is_root === 1,
    };
  }
  if (id.startsWith("svc_")) {
    const row = await deps.storage.servicePrincipals.findById(id);
    if (row === undefined) throw principalNotFound(id);
    return {
      type: "service",
      id: row.id,
      environment: row.environment,
      tenant: row.tenant,
      service: row.service,
      readOnly: false,
      root: false,
      // Any token id makes it a workload; explanations never see a real one.
      tokenId: workload ? "explain" : null,
    };
  }
  throw invalidArgument(
    "principal",
    id,
    "name an operator token (opt_...) or a service principal (svc_...)",
  );
}

async function loadTarget(
  deps: ExplainDeps,
  input: ExplainInput,
): Promise<AuthorizationTarget | undefined> {
  if (input.key !== undefined) {
    // Explaining reads any key: the caller may read every policy, so it learns nothing new.
    const everywhere: DecidedKeyScope = {
      environment: null,
      tenant: null,
      decideKey: () => Promise.resolve(true),
    };
    const key = await deps.keyTree.resolveKey(input.key, undefined, everywhere);
    return input.version === undefined
      ? { type: "key", key }
      : { type: "key", key, version: input.version };
  }
  if (input.target !== undefined) {
    const id = input.target;
    if (id.startsWith("opt_")) {
      const row = await deps.storage.operatorTokens.findById(id);
      if (row === undefined) throw principalNotFound(id);
      return {
        type: "principal",
        id,
        kind: "operator",
        environment: row.environment,
        tenant: row.tenant,
        service: null,
      };
    }
    const row = await deps.storage.servicePrincipals.findById(id);
    if (row === undefined) throw principalNotFound(id);
    return {
      type: "principal",
      id,
      kind: "service",
      environment: row.environment,
      tenant: row.tenant,
      service: row.service,
    };
  }
  return undefined;
}

function principalNotFound(id: string): ArborError {
  return new ArborError("NOT_FOUND", `principal ${quote(id)} not found`, {
    parameter: "principal",
    value: id,
  });
}
