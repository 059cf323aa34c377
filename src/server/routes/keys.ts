import type { FastifyInstance, FastifyRequest } from "fastify";

import { ArborError, quote } from "../../errors/index.ts";
import {
  isInScope,
  parseKeyPath,
  type KeyPath,
  type KeyScope,
  type TreeNode,
} from "../../hierarchy/index.ts";
import type { KeyFilter } from "../../storage/index.ts";
import { durationMs } from "../durations.ts";
import {
  durationSchema,
  emptyBodySchema,
  keyParamsSchema,
  keyVersionParamsSchema,
  withErrors,
} from "../schemas.ts";
import { keyView, versionView } from "../views.ts";
import { keyScopeOf, scopeOf, type RouteContext } from "./context.ts";

interface CreateKeyBody {
  path: string;
  algorithm?: "EdDSA" | "ES256";
  mode?: "wrapped" | "derived";
  rotationPeriod?: string | number;
}

interface ListQuery {
  prefix?: string;
  environment?: string;
  tenant?: string;
}

const keyRef = { $ref: "ArborKey#" } as const;
const versionRef = { $ref: "ArborKeyVersion#" } as const;
const segment = { type: "string", pattern: "^[a-z0-9][a-z0-9-]{0,62}$" } as const;

const listQuerySchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    prefix: { type: "string", minLength: 1, maxLength: 256 },
    environment: segment,
    // `-` selects the environment-level keys, which have no tenant.
    tenant: { type: "string", pattern: "^(-|[a-z0-9][a-z0-9-]{0,62})$" },
  },
} as const;

/** Key management: create, list, show, rotate and change the state of versions. */
export function registerKeyRoutes(app: FastifyInstance, { deps, audit }: RouteContext): void {
  const { keyTree } = deps;

  /**
   * Resolves `{key}` inside the caller's scope, decided on the key (or on `version` of it), and
   * remembers it for the audit event.
   */
  async function resolve(request: FastifyRequest, reference: string, version?: number) {
    const key = await keyTree.resolveKey(reference, undefined, keyScopeOf(request, version));
    audit.note(request, { keyId: key.id });
    return key;
  }

  app.post<{ Body: CreateKeyBody }>(
    "/v1/keys",
    {
      schema: {
        summary: "Creates a master or service key with its first version",
        body: {
          type: "object",
          required: ["path"],
          additionalProperties: false,
          properties: {
            path: { type: "string", minLength: 1, maxLength: 256 },
            algorithm: { type: "string", enum: ["EdDSA", "ES256"] },
            mode: { type: "string", enum: ["wrapped", "derived"] },
            rotationPeriod: durationSchema,
          },
        },
        response: withErrors({ 201: keyRef }),
      },
      config: { action: "key.create", resource: "key", auditEvent: "key.created" },
    },
    async (request, reply) => {
      const { path, algorithm, mode, rotationPeriod } = request.body;
      await requireCreatable(request, path, deps);
      const rotationPeriodMs =
        rotationPeriod === undefined ? null : durationMs(rotationPeriod, "rotationPeriod");

      const key = await keyTree.createKey(path, { algorithm, mode, rotationPeriodMs });
      await audit.success(request, {
        keyId: key.id,
        keyVersion: 1,
        chain: await keyTree.chainOf(key.id, 1),
        details: { path: key.path },
      });
      reply.code(201);
      return keyView(key);
    },
  );

  app.get<{ Querystring: ListQuery }>(
    "/v1/keys",
    {
      schema: {
        summary: "Lists the keys in the caller's scope, optionally filtered",
        querystring: listQuerySchema,
        response: withErrors({
          200: {
            type: "object",
            required: ["keys"],
            properties: { keys: { type: "array", items: keyRef } },
          },
        }),
      },
      config: { action: "key.list", resource: "key", auditEvent: null },
    },
    async (request) => {
      const scope = scopeOf(request.principal);
      const filter = scopedFilter(request.query, scope);
      if (filter === null) return { keys: [] };

      const keys = (await keyTree.listKeys(filter)).filter((key) => isInScope(key, scope));
      const visible = [];
      for (const key of keys) {
        if ((await request.decide({ type: "key", key })).allowed) visible.push(key);
      }
      return { keys: visible.map(keyView) };
    },
  );

  app.get<{ Querystring: { prefix?: string } }>(
    "/v1/keys/tree",
    {
      schema: {
        summary: "The keys in the caller's scope, nested under their parents",
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: { prefix: listQuerySchema.properties.prefix },
        },
        response: withErrors({
          200: {
            type: "object",
            required: ["tree"],
            properties: { tree: { type: "array", items: { $ref: "ArborTreeNode#" } } },
          },
        }),
      },
      config: { action: "key.tree", resource: "key", auditEvent: null },
    },
    async (request) => {
      const filter = scopedFilter(request.query, scopeOf(request.principal));
      if (filter === null) return { tree: [] };
      return { tree: await visibleNodes(request, await keyTree.tree(filter)) };
    },
  );

  app.get<{ Params: { key: string } }>(
    "/v1/keys/:key",
    {
      schema: {
        summary: "Shows one key and its versions",
        params: keyParamsSchema,
        response: withErrors({ 200: keyRef }),
      },
      config: { action: "key.read", resource: "key", auditEvent: null },
    },
    async (request) => {
      const key = await resolve(request, request.params.key);
      return keyView(await keyTree.getKey(key.id));
    },
  );

  app.post<{ Params: { key: string }; Body: { publishDelay?: string | number } }>(
    "/v1/keys/:key/rotate",
    {
      schema: {
        summary: "Creates the next version; it becomes primary now or after publishDelay",
        params: keyParamsSchema,
        body: {
          type: "object",
          additionalProperties: false,
          properties: { publishDelay: durationSchema },
        },
        response: withErrors({ 200: versionRef }),
      },
      config: { action: "key.rotate", resource: "key", auditEvent: "key.rotated" },
    },
    async (request) => {
      const key = await resolve(request, request.params.key);
      const { publishDelay } = request.body;
      const publishDelayMs =
        publishDelay === undefined
          ? defaultPublishDelayMs(key.purpose)
          : durationMs(publishDelay, "publishDelay");

      let version;
      try {
        version = await keyTree.rotate(key.id, { publishDelayMs });
      } catch (error) {
        deps.metrics.rotationAttempts.inc({ result: "failure" });
        throw error;
      }
      deps.metrics.rotationAttempts.inc({ result: "success" });
      await audit.success(request, {
        keyVersion: version.version,
        chain: await keyTree.chainOf(key.id, version.version),
        details: { path: key.path, state: version.state },
      });
      return versionView(version);
    },
  );

  const transitions = [
    { verb: "disable", action: "key.version.disable", event: "key.version_disabled" },
    { verb: "enable", action: "key.version.enable", event: "key.version_enabled" },
    { verb: "revoke", action: "key.version.revoke", event: "key.version_revoked" },
  ] as const;

  for (const { verb, action, event } of transitions) {
    app.post<{ Params: { key: string; version: string } }>(
      `/v1/keys/:key/versions/:version/${verb}`,
      {
        schema: {
          summary: versionSummary(verb),
          params: keyVersionParamsSchema,
          body: emptyBodySchema,
          response: withErrors({ 200: versionRef }),
        },
        config: { action, resource: "key_version", auditEvent: event },
      },
      async (request) => {
        const versionNumber = Number(request.params.version);
        const key = await resolve(request, request.params.key, versionNumber);
        audit.note(request, { keyVersion: versionNumber, details: { path: key.path } });

        const change = {
          disable: keyTree.disableVersion,
          enable: keyTree.enableVersion,
          revoke: keyTree.revokeVersion,
        }[verb];
        const version = await change(key.id, versionNumber);
        await audit.success(request, { details: { state: version.state } });
        return versionView(version);
      },
    );
  }

  app.put<{ Params: { key: string }; Body: { version: number } }>(
    "/v1/keys/:key/min-decryption-version",
    {
      schema: {
        summary: "Sets the lowest version of an encrypt key that may still decrypt",
        params: keyParamsSchema,
        body: {
          type: "object",
          required: ["version"],
          additionalProperties: false,
          properties: { version: { type: "integer", minimum: 1 } },
        },
        response: withErrors({
          200: {
            type: "object",
            required: ["minDecryptionVersion"],
            additionalProperties: false,
            properties: { minDecryptionVersion: { type: "integer" } },
          },
        }),
      },
      config: {
        action: "key.min_decryption_version.set",
        resource: "key",
        auditEvent: "key.min_decryption_version_set",
      },
    },
    async (request) => {
      const key = await resolve(request, request.params.key);
      audit.note(request, { keyVersion: request.body.version, details: { path: key.path } });

      const minDecryptionVersion = await keyTree.setMinDecryptionVersion(
        key.id,
        request.body.version,
      );
      await audit.success(request);
      return { minDecryptionVersion };
    },
  );
}

function versionSummary(verb: "disable" | "enable" | "revoke"): string {
  switch (verb) {
    case "disable":
      return "Disables an active or pending version (reversible)";
    case "enable":
      return "Re-enables a disabled version as active";
    case "revoke":
      return "Revokes a version (irreversible); nothing it wrapped can be used afterwards";
  }
}

/**
 * Rejects a new key the caller may not create with 403 FORBIDDEN: the authorizer decides on the
 * key the path names, and a path outside the caller's scope needs a break-glass grant. Both depend
 * only on the path text and the caller, so the response reveals nothing about keys in other scopes
 * (unlike a response that depended on whether the parent exists).
 */
async function requireCreatable(
  request: FastifyRequest,
  pathText: string,
  deps: RouteContext["deps"],
): Promise<void> {
  const path = parseKeyPath(pathText);
  const scope = scopeOf(request.principal);
  const decision = await request.decide({ type: "key", key: newKeyFacts(path, pathText) });
  const inScope = isInScope(path, scope);
  if (!decision.allowed) {
    if (!inScope) throw outsideScope(pathText, scope);
    throw new ArborError(
      "FORBIDDEN",
      `this token is not allowed to create key ${quote(pathText)}`,
      { parameter: "path", value: pathText },
    );
  }
  if (inScope || decision.breakGlass !== undefined) return;

  // An authorizer that allowed a key outside the scope without break-glass (the allow-all one)
  // does not count scope denials, so this one is counted here.
  const level =
    scope.environment !== null && path.environment !== scope.environment ? "environment" : "tenant";
  deps.metrics.scopeDenials.inc({ scope: level });
  throw outsideScope(pathText, scope);
}

function outsideScope(pathText: string, scope: KeyScope): ArborError {
  const reach =
    scope.tenant === null ? `${scope.environment}` : `${scope.environment}/${scope.tenant}`;
  return new ArborError(
    "FORBIDDEN",
    `key path ${quote(pathText)} is outside this token's scope ${quote(reach)}; use a token whose scope contains it`,
    { parameter: "path", value: pathText },
  );
}

/** Builds the facts of a key that does not exist yet, for the decision on creating it. */
function newKeyFacts(path: KeyPath, pathText: string) {
  return {
    id: null,
    path: pathText,
    environment: path.environment,
    tenant: path.tenant,
    service: path.kind === "service" ? path.service : "-",
    kind: path.kind,
    purpose: path.kind === "service" ? path.purpose : "wrap",
  };
}

/**
 * Keeps the nodes the caller may list, decided one by one. A hidden node's visible children take
 * its place, so a key the caller may see is never lost under one it may not.
 */
async function visibleNodes(request: FastifyRequest, nodes: TreeNode[]): Promise<TreeNode[]> {
  const visible: TreeNode[] = [];
  for (const node of nodes) {
    const children = await visibleNodes(request, node.children);
    const path = parseKeyPath(node.path);
    const key = { ...newKeyFacts(path, node.path), id: node.id };
    if ((await request.decide({ type: "key", key })).allowed) visible.push({ ...node, children });
    else visible.push(...children);
  }
  return visible;
}

/**
 * Combines the query's filters with the caller's scope. Returns null when they cannot overlap
 * (such as `environment=stage` for a token scoped to `prod`), which lists nothing.
 */
function scopedFilter(query: ListQuery, scope: KeyScope): KeyFilter | null {
  const filter: KeyFilter = {};
  if (query.prefix !== undefined) filter.pathPrefix = query.prefix;

  const environment = narrow(scope.environment, query.environment);
  const tenant = narrow(scope.tenant, query.tenant);
  if (environment === false || tenant === false) return null;
  if (environment !== null) filter.environment = environment;
  if (tenant !== null) filter.tenant = tenant;
  return filter;
}

/** Returns the stricter of a scope value and a requested value, or false when they conflict. */
function narrow(scoped: string | null, requested: string | undefined): string | null | false {
  if (requested === undefined) return scoped;
  if (scoped === null || scoped === requested) return requested;
  return false;
}

/**
 * A new sign version stays pending this long by default, so verifiers that cache the JWKS for a
 * few minutes learn its public key before the first token signed with it. Other keys switch at once.
 */
export const SIGN_PUBLISH_DELAY_MS = 5 * 60_000;

function defaultPublishDelayMs(purpose: string): number {
  return purpose === "sign" ? SIGN_PUBLISH_DELAY_MS : 0;
}
