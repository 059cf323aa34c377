import { formatDuration, parseDuration } from "../config/duration.ts";
import { ArborError, quote } from "../errors/index.ts";
import { SEGMENT_PATTERN } from "./paths.ts";

/**
 * The hierarchy file (`apiVersion: arbor/v1`), already parsed from YAML or JSON. Environments,
 * tenants and services are maps keyed by name:
 *
 * ```yaml
 * apiVersion: arbor/v1
 * environments:
 *   prod:
 *     rotation: 365d
 *     services:
 *       ledger: { encrypt: { mode: derived, rotation: 90d } }
 *     tenants:
 *       acme:
 *         services:
 *           billing: { encrypt: {}, sign: { algorithm: ES256 } }
 * trustedIssuers: []
 * policies: []
 * ```
 */
export interface DesiredKey {
  path: string;
  /** Null for masters and encrypt keys. */
  algorithm: "EdDSA" | "ES256" | null;
  mode: "wrapped" | "derived";
  rotationPeriodMs: number | null;
}

/** Validates a hierarchy document and lists the keys it describes, parents before children. */
export function readHierarchyDocument(document: unknown): DesiredKey[] {
  const root = object(document, "document");
  allowOnly(root, ["apiVersion", "environments", "trustedIssuers", "policies"], "document");
  if (root.apiVersion !== "arbor/v1") {
    throw invalid("apiVersion", root.apiVersion, 'must be "arbor/v1"');
  }
  for (const reserved of ["trustedIssuers", "policies"] as const) {
    const value = root[reserved];
    if (value !== undefined && (!Array.isArray(value) || value.length > 0)) {
      throw invalid(
        reserved,
        value,
        "is reserved for a later version of Arbor and must be empty or absent",
      );
    }
  }

  const desired: DesiredKey[] = [];
  const environments = object(root.environments ?? {}, "environments");
  for (const [envName, envValue] of Object.entries(environments)) {
    const where = `environments.${envName}`;
    name(envName, where);
    const env = object(envValue ?? {}, where);
    allowOnly(env, ["rotation", "services", "tenants"], where);
    desired.push(master(envName, env.rotation, where));
    desired.push(...services(envName, env.services, `${where}.services`));

    const tenants = object(env.tenants ?? {}, `${where}.tenants`);
    for (const [tenantName, tenantValue] of Object.entries(tenants)) {
      const tenantWhere = `${where}.tenants.${tenantName}`;
      name(tenantName, tenantWhere);
      const tenant = object(tenantValue ?? {}, tenantWhere);
      allowOnly(tenant, ["rotation", "services"], tenantWhere);
      const scope = `${envName}/${tenantName}`;
      desired.push(master(scope, tenant.rotation, tenantWhere));
      desired.push(...services(scope, tenant.services, `${tenantWhere}.services`));
    }
  }
  return desired;
}

function master(path: string, rotation: unknown, where: string): DesiredKey {
  return {
    path,
    algorithm: null,
    mode: "wrapped",
    rotationPeriodMs: rotationOf(rotation, `${where}.rotation`),
  };
}

function services(scope: string, value: unknown, where: string): DesiredKey[] {
  const out: DesiredKey[] = [];
  for (const [serviceName, serviceValue] of Object.entries(object(value ?? {}, where))) {
    const serviceWhere = `${where}.${serviceName}`;
    name(serviceName, serviceWhere);
    const service = object(serviceValue ?? {}, serviceWhere);
    allowOnly(service, ["encrypt", "sign"], serviceWhere);
    if (Object.keys(service).length === 0) {
      throw invalid(serviceWhere, service, "a service needs an encrypt key, a sign key or both");
    }

    if (service.encrypt !== undefined) {
      const keyWhere = `${serviceWhere}.encrypt`;
      const spec = object(service.encrypt ?? {}, keyWhere);
      allowOnly(spec, ["mode", "rotation"], keyWhere);
      const mode = spec.mode ?? "wrapped";
      if (mode !== "wrapped" && mode !== "derived")
        throw invalid(`${keyWhere}.mode`, mode, 'must be "wrapped" or "derived"');
      out.push({
        path: `${scope}/${serviceName}:encrypt`,
        algorithm: null,
        mode,
        rotationPeriodMs: rotationOf(spec.rotation, `${keyWhere}.rotation`),
      });
    }
    if (service.sign !== undefined) {
      const keyWhere = `${serviceWhere}.sign`;
      const spec = object(service.sign ?? {}, keyWhere);
      allowOnly(spec, ["algorithm", "rotation"], keyWhere);
      const algorithm = spec.algorithm ?? "EdDSA";
      if (algorithm !== "EdDSA" && algorithm !== "ES256") {
        throw invalid(`${keyWhere}.algorithm`, algorithm, 'must be "EdDSA" or "ES256"');
      }
      out.push({
        path: `${scope}/${serviceName}:sign`,
        algorithm,
        mode: "wrapped",
        rotationPeriodMs: rotationOf(spec.rotation, `${keyWhere}.rotation`),
      });
    }
  }
  return out;
}

function rotationOf(value: unknown, where: string): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string" && typeof value !== "number")
    throw invalid(where, value, 'must be a duration such as "90d"');
  const ms = parseDuration(String(value), where);
  if (ms < 60_000) throw invalid(where, value, "must be at least one minute");
  return ms;
}

export function describeRotation(ms: number | null): string {
  return ms === null ? "manual" : formatDuration(ms);
}

function object(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(where, value, "must be a mapping");
  }
  return value as Record<string, unknown>;
}

function allowOnly(value: Record<string, unknown>, allowed: string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      throw new ArborError(
        "UNSUPPORTED_FIELD",
        `unknown field ${quote(key)} in ${where}; allowed: ${allowed.join(", ")}`,
        { parameter: `${where}.${key}` },
      );
    }
  }
}

function name(value: string, where: string): void {
  if (!SEGMENT_PATTERN.test(value))
    throw invalid(where, value, "names match [a-z0-9][a-z0-9-]{0,62}");
}

function invalid(parameter: string, value: unknown, reason: string): ArborError {
  return new ArborError("INVALID_ARGUMENT", `invalid ${parameter} ${quote(value)}: ${reason}`, {
    parameter,
    value: typeof value === "string" || typeof value === "number" ? value : null,
  });
}
