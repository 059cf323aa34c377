import rateLimit from "@fastify/rate-limit";
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyServerOptions,
} from "fastify";

import { ArborError } from "../errors/index.ts";
import { ANONYMOUS, type ServerDeps } from "./deps.ts";
import { errorBody, registerErrorHandling, toClientError } from "./errors.ts";
import { registerOpenApi, registerOpenApiRoute } from "./openapi.ts";
import { runAsActor } from "../audit/context.ts";
import { createAuditRecorder, newAuditState } from "./plugins/audit.ts";
import { registerAuthentication } from "./plugins/authenticate.ts";
import { registerAuthorization } from "./plugins/authorize.ts";
import { registerBodyFieldCheck } from "./plugins/body-fields.ts";
import { REQUEST_ID_HEADER, registerRequestIdHeader, requestIdOf } from "./plugins/request-id.ts";
import { registerSealedGuard } from "./plugins/sealed-guard.ts";
import { RequestLogController } from "./request-log.ts";
import { enforceRouteDeclarations } from "./route-check.ts";
import { routeMeta } from "./route-config.ts";
import { registerApplyRoute } from "./routes/apply.ts";
import { registerAuditRoutes } from "./routes/audit.ts";
import type { RouteContext } from "./routes/context.ts";
import { registerEnvelopeRoutes } from "./routes/envelope.ts";
import { registerIssuerRoutes } from "./routes/issuers.ts";
import { registerKeyRoutes } from "./routes/keys.ts";
import { registerOAuthRoutes } from "./routes/oauth.ts";
import { registerOperatorTokenRoutes } from "./routes/operator-tokens.ts";
import { registerPolicyRoutes } from "./routes/policies.ts";
import { registerServiceRoutes } from "./routes/services.ts";
import { registerSysRoutes } from "./routes/sys.ts";
import { registerRootRoutes } from "./routes/root.ts";
import { registerUnsealRoutes } from "./routes/unseal.ts";
import { addSharedSchemas } from "./schemas.ts";

/**
 * Key paths are up to 63 * 3 segment characters plus separators and a purpose, and `/` and `:`
 * grow to three characters each when URL-encoded; Fastify's default of 100 would cut them off.
 */
const MAX_PARAM_LENGTH = 512;

/** Certificate and private key (PEM) for serving HTTPS. */
export interface TlsOptions {
  key: Buffer;
  cert: Buffer;
}

/**
 * Builds the Fastify app with every hook and route, serving HTTPS when `tls` is given. Hooks run
 * in this order for each request: request state, sealed guard, authentication, authorization (all
 * before the body is read), then the unknown-field check and schema validation, then the handler,
 * which writes its audit event before it responds. The caller listens (or injects) and closes it.
 */
export async function buildApp(
  deps: ServerDeps,
  tls: TlsOptions | null = null,
): Promise<FastifyInstance> {
  const options: FastifyServerOptions & { https?: TlsOptions } = {
    loggerInstance: deps.logger,
    logController: new RequestLogController(),
    genReqId: requestIdOf,
    requestIdHeader: false,
    bodyLimit: deps.limits.maxBodyBytes,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    return503OnClosing: true,
    ajv: {
      customOptions: {
        // Unknown fields must be rejected, not stripped, and "5" is not the number 5.
        removeAdditional: false,
        coerceTypes: false,
        useDefaults: false,
        allowUnionTypes: true,
      },
    },
    frameworkErrors: (error, request, reply: FastifyReply) => {
      const clientError = toClientError(error, request);
      void reply
        .header(REQUEST_ID_HEADER, request.id)
        .code(clientError.status)
        .send(errorBody(clientError, request.id));
    },
  };
  if (tls !== null) options.https = tls;
  const app = Fastify(options);

  const audit = createAuditRecorder(deps);
  const context: RouteContext = { deps, audit };

  acceptEmptyJsonBodies(app);
  // Placeholders only: the first hook below gives every request its own values.
  app.decorateRequest("principal", null as never);
  app.decorateRequest("auditState", null as never);
  app.decorateRequest("failure", null);
  app.addHook("onRequest", (request, _reply, done) => {
    request.principal = ANONYMOUS;
    request.auditState = newAuditState();
    request.failure = null;
    // Every later hook and the handler run inside this context, so an event written inside a
    // component's transaction (a key change) names the request's principal.
    runAsActor(
      {
        principal: () => request.principal,
        sourceAddress: () => request.ip ?? null,
        requestId: () => request.id,
        writtenInTransaction: request.auditState.writtenInTransaction,
      },
      done,
    );
  });

  registerRequestIdHeader(app);
  registerSealedGuard(app, deps.root);
  registerAuthentication(app, deps.operators, audit, deps.tokens);
  registerAuthorization(app, deps.authorizer, audit);
  registerBodyFieldCheck(app);
  registerErrorHandling(app, audit);

  app.addHook("onSend", async (_request, reply, payload) => {
    // Responses carry keys, tokens and shares, so no cache may keep them.
    reply.header("cache-control", "no-store");
    return payload;
  });
  app.addHook("onResponse", async (request, reply) => {
    const meta = routeMeta(request.routeOptions.config);
    if (meta !== undefined && reply.statusCode < 400) {
      deps.metrics.operations.inc({ operation: meta.action });
    }
  });

  enforceRouteDeclarations(app);
  addSharedSchemas(app);
  await registerOpenApi(app, deps.externalAddress);
  await app.register(rateLimit, {
    global: false,
    errorResponseBuilder: (_request, context) =>
      new ArborError(
        "RATE_LIMITED",
        `too many requests from this address: at most ${context.max} per minute; retry in ${context.after}`,
      ),
  });

  registerSysRoutes(app, context);
  registerUnsealRoutes(app, context);
  registerRootRoutes(app, context, deps.storage);
  registerKeyRoutes(app, context);
  registerEnvelopeRoutes(app, context);
  registerOperatorTokenRoutes(app, context);
  registerAuditRoutes(app, context);
  registerApplyRoute(app, context);
  if (deps.policies !== undefined) registerPolicyRoutes(app, context, deps.policies);
  if (deps.tokens !== undefined) {
    const tokenContext = { ...context, tokens: deps.tokens };
    registerServiceRoutes(app, tokenContext);
    registerIssuerRoutes(app, tokenContext);
    registerOAuthRoutes(app, tokenContext);
  }
  registerOpenApiRoute(app);

  await app.ready();
  return app;
}

/**
 * Makes JSON the only accepted body type (Fastify also parses text/plain by default). An empty
 * JSON body counts as no body, so routes without fields see `{}`. Every other body goes to
 * Fastify's own JSON parser, which rejects `__proto__` and `constructor.prototype` keys.
 */
function acceptEmptyJsonBodies(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    // parseAs "string" makes the body a string; the type also allows a Buffer.
    const text = typeof body === "string" ? body : body.toString("utf8");
    if (text === "") {
      done(null, undefined);
      return;
    }
    void parseJson(request, text, done);
  });
}
