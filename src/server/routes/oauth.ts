import { performance } from "node:perf_hooks";

import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

import {
  ArborError,
  errorRegistry,
  isArborError,
  quote,
  type ErrorCode,
} from "../../errors/index.ts";
import { isInScope, type KeyScope } from "../../hierarchy/index.ts";
import {
  audiences,
  callerOf,
  parseForm,
  requestPrincipal,
  type ClientAuthenticationFailure,
  type ClientCredentials,
  type FormField,
  type RejectionContext,
  type TokenRejection,
  type TokenService,
} from "../../tokens/index.ts";
import type { OperatorAuthenticationFailure } from "../../operators/types.ts";
import type { KeyFacts } from "../../policy/entities.ts";
import { NO_TENANT, type ServicePrincipalRow } from "../../storage/index.ts";
import { toClientError } from "../errors.ts";
import { routeMeta } from "../route-config.ts";
import type { RouteContext } from "./context.ts";

/** The route context plus the token service, which the OAuth routes cannot work without. */
export interface TokenRouteContext extends RouteContext {
  tokens: TokenService;
}

/** Largest form body the OAuth endpoints read; a token is at most 8 KiB, so this is ample. */
const MAX_FORM_BYTES = 65_536;

const TOKEN_FIELDS: readonly FormField[] = [
  { name: "grant_type", repeatable: false },
  { name: "scope", repeatable: false },
  { name: "resource", repeatable: true },
  { name: "audience", repeatable: true },
  { name: "client_id", repeatable: false },
  { name: "client_secret", repeatable: false },
];
const TOKEN_CHECK_FIELDS: readonly FormField[] = [
  { name: "token", repeatable: false },
  { name: "token_type_hint", repeatable: false },
  { name: "client_id", repeatable: false },
  { name: "client_secret", repeatable: false },
];
const FORM_FIELDS: ReadonlyMap<string, readonly FormField[]> = new Map([
  ["/v1/oauth/token", TOKEN_FIELDS],
  ["/v1/oauth/introspect", TOKEN_CHECK_FIELDS],
  ["/v1/oauth/revoke", TOKEN_CHECK_FIELDS],
]);

interface TokenBody {
  grant_type: string;
  scope?: string;
  resource?: string[];
  audience?: string[];
  client_id?: string;
  client_secret?: string;
}

interface TokenCheckBody {
  token: string;
  token_type_hint?: string;
  client_id?: string;
  client_secret?: string;
}

const oauthErrorSchema = {
  type: "object",
  required: ["error"],
  properties: { error: { type: "string" }, error_description: { type: "string" } },
} as const;

function formSchema(fields: readonly FormField[], required: string[]) {
  const text = { type: "string" } as const;
  return {
    type: "object",
    required,
    additionalProperties: false,
    properties: Object.fromEntries(
      fields.map((field) => [field.name, field.repeatable ? { type: "array", items: text } : text]),
    ),
  };
}

function responses(success: Record<string, unknown>) {
  return { 200: success, "4xx": oauthErrorSchema, "5xx": oauthErrorSchema };
}

/**
 * The OAuth 2.0 endpoints: token (RFC 6749, client credentials with RFC 8707 resources),
 * introspection (RFC 7662) and revocation (RFC 7009). They read form-encoded bodies, return
 * errors in RFC 6749's shape, and authenticate callers themselves, so they are public to the
 * operator-token hook.
 */
export function registerOAuthRoutes(app: FastifyInstance, ctx: TokenRouteContext): void {
  // An encapsulated scope, so the form parser and the error handler apply to these routes only.
  void app.register((scope, _options, done) => {
    acceptFormBodies(scope, Math.min(ctx.deps.limits.maxBodyBytes, MAX_FORM_BYTES));
    scope.setErrorHandler((error, request, reply) =>
      replyWithOAuthError(ctx, error, request, reply),
    );
    registerTokenRoute(scope, ctx);
    registerIntrospectionRoute(scope, ctx);
    registerRevocationRoute(scope, ctx);
    done();
  });
}

function registerTokenRoute(app: FastifyInstance, ctx: TokenRouteContext): void {
  const { deps, audit, tokens } = ctx;

  app.post<{ Body: TokenBody }>(
    "/v1/oauth/token",
    {
      schema: {
        summary: "Issues an access token to a service principal (client credentials grant)",
        consumes: ["application/x-www-form-urlencoded"],
        body: formSchema(TOKEN_FIELDS, ["grant_type"]),
        response: responses({
          type: "object",
          required: ["access_token", "token_type", "expires_in"],
          additionalProperties: false,
          properties: {
            access_token: { type: "string" },
            token_type: { type: "string" },
            expires_in: { type: "integer" },
            scope: { type: "string" },
          },
        }),
      },
      config: {
        action: "token.issue",
        resource: "access_token",
        auditEvent: "token.issued",
        public: true,
      },
    },
    async (request, reply) => {
      const startedAt = performance.now();
      const caller = callerOf(request.headers.authorization, request.body);
      if (caller.kind !== "client") throw clientAuthenticationRequired();
      const principal = await authenticateClient(ctx, request, caller.credentials, false);

      const { grant_type: grantType } = request.body;
      if (grantType !== "client_credentials") {
        throw new ArborError(
          "UNSUPPORTED_GRANT_TYPE",
          `unsupported grant_type ${quote(grantType)}: this server supports client_credentials`,
          { parameter: "grant_type", value: grantType },
        );
      }

      // The route is public to the operator-token hook, so it decides here, once the client is known.
      const decision = await request.decide({ type: "key", key: signKeyOf(principal) });
      if (!decision.allowed) {
        throw new ArborError(
          "UNAUTHORIZED_CLIENT",
          `client ${principal.id} may not obtain access tokens: a policy denies token.issue on its sign key`,
        );
      }

      const issued = await tokens.issue(principal, {
        ...(request.body.scope === undefined ? {} : { scope: request.body.scope }),
        resources: request.body.resource ?? [],
        audiences: request.body.audience ?? [],
      });
      await audit.success(request, {
        keyId: issued.keyId,
        keyVersion: issued.keyVersion,
        chain: issued.chain,
        credentialId: issued.claims.jti,
        details: {
          expiresAt: issued.claims.exp * 1000,
          clientId: principal.id,
          audience: audiences(issued.claims).join(" "),
          scope: issued.claims.scope ?? null,
        },
      });
      deps.metrics.issuances.inc({ kind: "token" });
      deps.metrics.issuanceDuration.observe(
        { kind: "token" },
        (performance.now() - startedAt) / 1000,
      );

      // RFC 6749 section 5.1: token responses must not be cached (no-store is set for all).
      reply.header("pragma", "no-cache");
      return {
        access_token: issued.accessToken,
        token_type: "Bearer",
        expires_in: issued.expiresIn,
        ...(issued.claims.scope === undefined ? {} : { scope: issued.claims.scope }),
      };
    },
  );
}

function registerIntrospectionRoute(app: FastifyInstance, ctx: TokenRouteContext): void {
  const { tokens } = ctx;

  app.post<{ Body: TokenCheckBody }>(
    "/v1/oauth/introspect",
    {
      schema: {
        summary:
          "Returns whether an access token is active and its claims; callers authenticate as a service principal or with an operator token",
        consumes: ["application/x-www-form-urlencoded"],
        body: formSchema(TOKEN_CHECK_FIELDS, ["token"]),
        response: responses({ type: "object", additionalProperties: true }),
      },
      config: {
        action: "token.introspect",
        resource: "access_token",
        auditEvent: "token.introspected",
        public: true,
      },
    },
    async (request) => {
      const viewer = await authenticateTokenCaller(ctx, request);
      const result = await tokens.verify(request.body.token);
      // A token outside the caller's scope, or one a policy keeps from it, is inactive to it,
      // exactly like an invalid one.
      if (
        !result.active ||
        !isInScope(result.principal, viewer) ||
        !(await request.decide({ type: "key", key: result.key })).allowed
      ) {
        request.auditState.settled = true;
        const rejection = result.active ? outOfScope(result.claims.jti) : result.rejection;
        await tokens.recordRejection(rejectionContext(request), rejection);
        return { active: false };
      }

      const { claims } = result;
      await ctx.audit.success(request, {
        keyId: result.key.id,
        keyVersion: result.version.version,
        credentialId: claims.jti,
        details: { clientId: claims.client_id },
      });
      return {
        active: true,
        ...(claims.scope === undefined ? {} : { scope: claims.scope }),
        client_id: claims.client_id,
        token_type: "Bearer",
        exp: claims.exp,
        iat: claims.iat,
        nbf: claims.nbf,
        sub: claims.sub,
        aud: claims.aud,
        iss: claims.iss,
        jti: claims.jti,
        env: claims.env,
        tenant: claims.tenant,
      };
    },
  );
}

function registerRevocationRoute(app: FastifyInstance, ctx: TokenRouteContext): void {
  const { audit, tokens } = ctx;

  app.post<{ Body: TokenCheckBody }>(
    "/v1/oauth/revoke",
    {
      schema: {
        summary:
          "Revokes an access token until it expires; invalid tokens are accepted and ignored (RFC 7009)",
        consumes: ["application/x-www-form-urlencoded"],
        body: formSchema(TOKEN_CHECK_FIELDS, ["token"]),
        response: responses({ type: "object", additionalProperties: false, properties: {} }),
      },
      config: {
        action: "token.revoke",
        resource: "access_token",
        auditEvent: "token.revoked",
        public: true,
      },
    },
    async (request) => {
      const viewer = await authenticateTokenCaller(ctx, request);
      if (request.principal.readOnly) {
        await audit.rejection(request, "authz.denied", "FORBIDDEN", { reason: "read-only token" });
        throw new ArborError(
          "FORBIDDEN",
          "this operator token is read-only and cannot revoke access tokens",
        );
      }

      const result = await tokens.verify(request.body.token);
      // RFC 7009 section 2.2: an invalid token is not an error; there is nothing to revoke. A
      // token outside the caller's scope gets the same response, so it reveals nothing.
      if (!result.active || !isInScope(result.principal, viewer)) {
        request.auditState.settled = true;
        const rejection = result.active ? outOfScope(result.claims.jti) : result.rejection;
        await tokens.recordRejection(rejectionContext(request), rejection);
        return {};
      }

      if (request.principal.type === "service" && request.principal.id !== result.principal.id) {
        throw new ArborError(
          "UNAUTHORIZED_CLIENT",
          `client ${request.principal.id} may revoke only its own tokens; this token belongs to another client`,
        );
      }
      // A policy denial gets the answer of a token outside the caller's scope.
      if (!(await request.decide({ type: "key", key: result.key })).allowed) {
        request.auditState.settled = true;
        await tokens.recordRejection(rejectionContext(request), outOfScope(result.claims.jti));
        return {};
      }
      const revoked = await tokens.revoke(result);
      await audit.success(request, {
        keyId: result.key.id,
        keyVersion: result.version.version,
        credentialId: result.claims.jti,
        details: { clientId: result.principal.id, alreadyRevoked: !revoked },
      });
      return {};
    },
  );
}

/**
 * Authenticates the caller of introspection or revocation: a service principal by its client
 * credentials, or an operator by its token. Returns the scope of the tokens it may inspect: a
 * service's environment and tenant, or the operator's own scope.
 */
async function authenticateTokenCaller(
  ctx: TokenRouteContext,
  request: FastifyRequest<{ Body: TokenCheckBody }>,
): Promise<KeyScope> {
  const caller = callerOf(request.headers.authorization, request.body);
  if (caller.kind === "client") {
    const principal = await authenticateClient(ctx, request, caller.credentials, true);
    return { environment: principal.environment, tenant: principal.tenant };
  }
  if (caller.kind === "none") {
    await ctx.audit.rejection(request, "auth.failed", "UNAUTHENTICATED", {
      reason: "missing credentials",
    });
    throw clientAuthenticationRequired();
  }

  try {
    const operator = await ctx.deps.operators.authenticate(caller.token);
    request.principal = operator;
    return { environment: operator.environment, tenant: operator.tenant };
  } catch (error) {
    if (!isArborError(error, "UNAUTHENTICATED") && !isArborError(error, "INVALID_SECRET")) {
      throw error;
    }
    const cause = error.cause as Partial<OperatorAuthenticationFailure> | undefined;
    await ctx.audit.rejection(
      request,
      "auth.failed",
      "UNAUTHENTICATED",
      { reason: cause?.reason ?? "invalid token", tokenId: cause?.tokenId ?? null },
      { kind: "operator-token", value: caller.token },
    );
    throw new ArborError(
      "UNAUTHENTICATED",
      "invalid bearer token: only operator tokens or client credentials may call this endpoint",
    );
  }
}

/**
 * Authenticates a client and makes it the request's principal. A failure is recorded with the
 * reason and the client id (never the secret): as `auth.failed` when `asRejection` is set,
 * otherwise in the route's own failure event.
 */
async function authenticateClient(
  ctx: TokenRouteContext,
  request: FastifyRequest,
  credentials: ClientCredentials,
  asRejection: boolean,
) {
  try {
    const { principal } = await ctx.tokens.authenticateClient(credentials);
    request.principal = requestPrincipal(principal, null);
    return principal;
  } catch (error) {
    if (!isArborError(error, "UNAUTHENTICATED")) throw error;
    const cause = error.cause as Partial<ClientAuthenticationFailure> | undefined;
    const details = {
      reason: cause?.reason ?? "invalid client",
      clientId: cause?.clientId ?? null,
      method: credentials.method,
    };
    const presented = { kind: "client-secret", value: credentials.clientSecret };
    if (asRejection) {
      await ctx.audit.rejection(request, "auth.failed", "UNAUTHENTICATED", details, presented);
    } else {
      // The token endpoint records the failure in its own event; it carries the same fingerprint.
      const credentialHmac =
        (await ctx.deps.auditKey?.fingerprint(presented.kind, presented.value)) ?? null;
      ctx.audit.note(request, { details: { ...details, credentialHmac } });
    }
    throw error;
  }
}

/** The sign key of a service principal, which signs its tokens, as the authorizer sees it. */
function signKeyOf(principal: ServicePrincipalRow): KeyFacts {
  const scope =
    principal.tenant === NO_TENANT
      ? principal.environment
      : `${principal.environment}/${principal.tenant}`;
  return {
    id: principal.sign_key_id,
    path: `${scope}/${principal.service}:sign`,
    environment: principal.environment,
    tenant: principal.tenant,
    service: principal.service,
    kind: "service",
    purpose: "sign",
  };
}

function clientAuthenticationRequired(): ArborError {
  return new ArborError(
    "UNAUTHENTICATED",
    "client authentication required: send HTTP Basic credentials or client_id and client_secret",
  );
}

function outOfScope(jti: string): TokenRejection {
  return { reason: "out_of_scope", kid: null, jti };
}

function rejectionContext(request: FastifyRequest): RejectionContext {
  return {
    principal: { type: request.principal.type, id: request.principal.id },
    sourceAddress: request.ip ?? null,
    requestId: request.id,
    action: routeMeta(request.routeOptions.config)?.action ?? null,
  };
}

/**
 * Makes form encoding the only body type of these routes. The parser keeps only the route's
 * parameters and rejects a repeated one, as RFC 6749 section 3.2 requires.
 */
function acceptFormBodies(app: FastifyInstance, bodyLimit: number): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    "application/x-www-form-urlencoded",
    { parseAs: "string", bodyLimit },
    (request, body, done) => {
      const text = typeof body === "string" ? body : body.toString("utf8");
      try {
        done(null, parseForm(text, FORM_FIELDS.get(request.routeOptions.url ?? "") ?? []));
      } catch (error) {
        done(error as Error, undefined);
      }
    },
  );
}

/**
 * Sends RFC 6749's `{ error, error_description }` for a failed OAuth request, with the error from
 * the registry's OAuth column. Like the main error handler, it first writes the route's failure
 * event, and if that fails the response is AUDIT_UNAVAILABLE. A 401 carries `WWW-Authenticate` for
 * the scheme the caller used (RFC 6749 section 5.2, RFC 6750 section 3).
 */
async function replyWithOAuthError(
  ctx: TokenRouteContext,
  original: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<{ error: string; error_description: string }> {
  let clientError = oauthClientError(original, request);
  let logged = original;
  try {
    await ctx.audit.failure(request, clientError.code);
  } catch (auditError) {
    clientError = isArborError(auditError)
      ? auditError
      : new ArborError("AUDIT_UNAVAILABLE", "the audit log is unavailable; retry later");
    logged = auditError;
  }

  request.failure = { code: clientError.code, error: logged };
  if (clientError.status === 401) {
    const bearer = /^Bearer /i.test(request.headers.authorization ?? "");
    reply.header(
      "www-authenticate",
      bearer ? 'Bearer error="invalid_token"' : 'Basic realm="arbor", charset="UTF-8"',
    );
  }
  reply.code(oauthStatus(clientError.code));
  return { error: errorRegistry[clientError.code].oauth, error_description: clientError.message };
}

function oauthClientError(error: unknown, request: FastifyRequest): ArborError {
  if ((error as Partial<FastifyError>).code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
    return new ArborError(
      "INVALID_ARGUMENT",
      "unsupported content type: send the parameters as application/x-www-form-urlencoded",
      { parameter: "content-type" },
    );
  }
  return toClientError(error, request);
}

/**
 * RFC 6749 section 5.2 answers errors with 400, and 401 for failed client authentication. Server
 * faults, overload and oversized bodies keep their own status, and so does FORBIDDEN.
 */
function oauthStatus(code: ErrorCode): number {
  const status = errorRegistry[code].status;
  if (status >= 500 || [401, 403, 413, 429].includes(status)) return status;
  return 400;
}
