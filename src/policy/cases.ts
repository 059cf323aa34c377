import { ArborError } from "../errors/index.ts";
import { parseKeyPath } from "../hierarchy/index.ts";
import type { Principal } from "../server/deps.ts";
import { isActionName, type PrincipalType } from "./actions.ts";
import { buildDecisionRequest, principalFacts } from "./authorizer.ts";
import { PolicyEngine, type StoredPolicyDocument } from "./engine.ts";
import { keyResource, keyVersionResource, principalResource, scopeResource } from "./entities.ts";
import { GrantIndex, type PolicyGrant } from "./grants.ts";
import type { ResourceFacts } from "./entities.ts";

/**
 * One request case of a policy test file: a principal, an action, a resource and the expected
 * decision. See docs/policy.md for the format.
 */
export interface PolicyCase {
  name: string;
  principal: {
    type: "operator" | "service" | "workload";
    id?: string;
    environment?: string | null;
    tenant?: string | null;
    service?: string;
    readOnly?: boolean;
    /** Role grants; they replace the default role, as stored role grants do. */
    roles?: string[];
    /** A break-glass grant; `expired: true` makes it one that has run out, which covers nothing. */
    breakGlass?: { environment: string; tenant?: string; expired?: boolean };
  };
  action: string;
  resource: {
    key?: string;
    version?: number;
    principal?: {
      kind: "operator" | "service";
      environment?: string | null;
      tenant?: string | null;
      service?: string;
    };
    environment?: string;
    tenant?: string;
    policy?: boolean;
    system?: boolean;
    auditLog?: boolean;
  };
  expect: "allow" | "deny";
}

export interface CaseResult {
  name: string;
  expected: "allow" | "deny";
  actual: "allow" | "deny";
  passed: boolean;
  /** The reason, as `arbor policy explain` prints it. */
  summary: string;
}

// The test clock: any fixed instant works, because grants are built relative to it.
const NOW = Date.UTC(2030, 0, 1);
const HOUR_MS = 3_600_000;

/**
 * Runs request cases against the built-in policies plus `documents`, with no server: the same
 * engine, schema and entity building as the server, so CI pipelines can check policies before
 * `arbor policy apply`. Throws INVALID_POLICY for an invalid document and INVALID_ARGUMENT for a
 * malformed case.
 */
export function runPolicyCases(
  documents: readonly StoredPolicyDocument[],
  cases: readonly PolicyCase[],
): CaseResult[] {
  const engine = new PolicyEngine({ cacheTtlMs: 0 });
  engine.load(documents);

  return cases.map((testCase, index) => {
    const label = testCase.name || `case ${index + 1}`;
    const { principal, grants } = casePrincipal(testCase, label);
    if (!isActionName(testCase.action)) {
      throw caseError(label, `action ${JSON.stringify(testCase.action)} is not in the schema`);
    }
    const facts = principalFacts(principal, grants, NOW);
    if (facts === null) throw caseError(label, "the principal cannot be decided");
    const request = buildDecisionRequest(
      facts,
      testCase.action,
      resourceOf(testCase, label),
      grants,
      NOW,
    );
    const explanation = engine.explain(request);
    const actual = explanation.allowed ? "allow" : "deny";
    return {
      name: label,
      expected: testCase.expect,
      actual,
      passed: actual === testCase.expect,
      summary: explanation.summary,
    };
  });
}

function casePrincipal(
  testCase: PolicyCase,
  label: string,
): { principal: Principal; grants: GrantIndex } {
  const spec = testCase.principal;
  const type = ({ operator: "Operator", service: "Service", workload: "Workload" } as const)[
    spec.type
  ];
  if (type === undefined) throw caseError(label, "principal.type is operator, service or workload");
  const id = spec.id ?? (spec.type === "operator" ? "opt_case" : "svc_case");
  const environment = spec.environment ?? null;
  const tenant = spec.tenant ?? null;

  const grants: PolicyGrant[] = (spec.roles ?? []).map((role, n) =>
    grant(id, `grt_role${n}`, { role }),
  );
  if (spec.breakGlass !== undefined) {
    const expiresAt = spec.breakGlass.expired === true ? NOW - 1 : NOW + HOUR_MS;
    grants.push(
      grant(id, "grt_breakglass", {
        environment: spec.breakGlass.environment,
        tenant: spec.breakGlass.tenant ?? "*",
        expiresAt,
      }),
    );
  }

  let principal: Principal;
  if (type === "Operator") {
    principal = {
      type: "operator",
      id,
      environment,
      tenant,
      readOnly: spec.readOnly === true,
      root: false,
    };
  } else {
    if (environment === null || spec.service === undefined) {
      throw caseError(label, "a service or workload needs environment and service");
    }
    principal = {
      type: "service",
      id,
      environment,
      tenant: tenant ?? "-",
      service: spec.service,
      readOnly: false,
      root: false,
      tokenId: (type satisfies PrincipalType) === "Workload" ? "tok_case" : null,
    };
  }
  return { principal, grants: new GrantIndex(grants) };
}

function grant(
  principalId: string,
  id: string,
  fields: { role?: string; environment?: string; tenant?: string; expiresAt?: number },
): PolicyGrant {
  return {
    id,
    principalId,
    kind: fields.role === undefined ? "break_glass" : "role",
    role: fields.role ?? null,
    environment: fields.environment ?? null,
    tenant: fields.tenant ?? null,
    reason: "policy test case",
    createdAt: NOW - HOUR_MS,
    createdBy: "policy-test",
    expiresAt: fields.expiresAt ?? null,
    revokedAt: null,
  };
}

function resourceOf(testCase: PolicyCase, label: string): ResourceFacts {
  const spec = testCase.resource;
  if (spec.key !== undefined) {
    const path = parseKeyPath(spec.key);
    const key = {
      id: null,
      path: spec.key,
      environment: path.environment,
      tenant: path.tenant,
      service: path.kind === "service" ? path.service : "-",
      kind: path.kind,
      purpose: path.kind === "service" ? path.purpose : "wrap",
    };
    return spec.version === undefined ? keyResource(key) : keyVersionResource(key, spec.version);
  }
  if (spec.principal !== undefined) {
    return principalResource({
      id: "case-target",
      kind: spec.principal.kind,
      environment: spec.principal.environment ?? null,
      tenant: spec.principal.tenant ?? null,
      service: spec.principal.service ?? null,
    });
  }
  if (spec.tenant !== undefined) {
    const [environment, tenant] = spec.tenant.split("/");
    if (environment === undefined || tenant === undefined) {
      throw caseError(label, "resource.tenant is written environment/tenant");
    }
    return scopeResource("Tenant", { environment, tenant });
  }
  if (spec.environment !== undefined) {
    return scopeResource("Environment", { environment: spec.environment, tenant: null });
  }
  const everywhere = { environment: null, tenant: null };
  if (spec.policy === true) return scopeResource("Policy", everywhere);
  if (spec.system === true) return scopeResource("System", everywhere);
  if (spec.auditLog === true) return scopeResource("AuditLog", everywhere);
  throw caseError(
    label,
    "resource names a key, principal, tenant, environment, or one of policy, system, auditLog",
  );
}

function caseError(label: string, reason: string): ArborError {
  return new ArborError(
    "INVALID_ARGUMENT",
    `policy test case ${JSON.stringify(label)}: ${reason}`,
    {
      parameter: "cases",
      value: label,
    },
  );
}
