import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

import {
  ArborError,
  invalidArgument,
  isArborError,
  quote,
  type ErrorCode,
} from "../errors/index.ts";
import { SECRET_FIELD_NAMES } from "./logger.ts";
import type { AuditRecorder } from "./plugins/audit.ts";

/** The JSON body of every failed request on an ordinary route. */
export interface ErrorBody {
  error: {
    code: ErrorCode;
    message: string;
    requestId: string;
    parameter?: string;
    value?: string | number | boolean | null;
  };
}

/** The failure of a request, as the log line and the audit event record it. */
export interface RequestFailure {
  code: ErrorCode;
  /** The original error, logged in full for server faults (5xx) only. */
  error: unknown;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the error handler; read by the request log line. */
    failure: RequestFailure | null;
  }
}

const INTERNAL_MESSAGE =
  "internal error: the server could not complete the request; report the request id to the operators";

/** Fields whose values a validation message never quotes, because they may hold a secret. */
const UNQUOTED_FIELDS: ReadonlySet<string> = new Set<string>([
  ...SECRET_FIELD_NAMES,
  "nonce",
  "iv",
  "ciphertext",
]);

const CALLER_NONCE_FIELDS: ReadonlySet<string> = new Set(["nonce", "iv"]);

/**
 * Converts any error into the ArborError sent to the client. ArborErrors pass through, except that
 * an INTERNAL message is replaced by a generic one. Framework errors get stable codes. Anything
 * else, raw database errors included, becomes a generic INTERNAL or STORAGE_UNAVAILABLE.
 */
export function toClientError(error: unknown, request: FastifyRequest): ArborError {
  if (isArborError(error)) {
    return error.code === "INTERNAL" ? new ArborError("INTERNAL", INTERNAL_MESSAGE) : error;
  }

  const fastifyError = error as Partial<FastifyError>;
  if (Array.isArray(fastifyError.validation)) {
    return validationError(fastifyError as FastifyError, request);
  }
  switch (fastifyError.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new ArborError(
        "PAYLOAD_TOO_LARGE",
        "the request body is larger than this server accepts; encrypt large data locally with a data key",
        { parameter: "body" },
      );
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new ArborError("INVALID_ARGUMENT", "the request body is not valid JSON", {
        parameter: "body",
      });
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new ArborError(
        "INVALID_ARGUMENT",
        "unsupported content type: send the body as JSON with Content-Type: application/json",
        { parameter: "content-type" },
      );
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new ArborError(
        "INVALID_ARGUMENT",
        "the request body does not match its Content-Length header",
        { parameter: "content-length" },
      );
    case "FST_ERR_BAD_URL":
      return new ArborError("INVALID_ARGUMENT", "the URL is not validly percent-encoded", {
        parameter: "url",
      });
    case "FST_ERR_MAX_PARAM_LENGTH":
      return new ArborError("INVALID_ARGUMENT", "a path parameter of the URL is too long", {
        parameter: "url",
      });
    default:
      break;
  }
  if (isStorageOutage(error)) {
    return new ArborError(
      "STORAGE_UNAVAILABLE",
      "the database is unavailable or busy; retry the request later",
    );
  }
  return new ArborError("INTERNAL", INTERNAL_MESSAGE);
}

/** Builds the error body; `parameter` and `value` appear only when the error names an input. */
export function errorBody(error: ArborError, requestId: string): ErrorBody {
  const body: ErrorBody = { error: { code: error.code, message: error.message, requestId } };
  if (error.detail.parameter !== undefined) body.error.parameter = error.detail.parameter;
  if (error.detail.value !== undefined) body.error.value = error.detail.value;
  return body;
}

/**
 * Installs the one error handler, the not-found handler and the handler of errors Fastify raises
 * before routing. Failed requests on audited routes get their failure event here, before the
 * response is sent. If that write fails, the response becomes AUDIT_UNAVAILABLE.
 */
export function registerErrorHandling(app: FastifyInstance, audit: AuditRecorder): void {
  async function reject(
    original: unknown,
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<ErrorBody> {
    let clientError = toClientError(original, request);
    let logged: unknown = original;
    try {
      await audit.failure(request, clientError.code);
    } catch (auditError) {
      clientError = isArborError(auditError)
        ? auditError
        : new ArborError("AUDIT_UNAVAILABLE", "the audit log is unavailable; retry later");
      logged = auditError;
    }

    request.failure = { code: clientError.code, error: logged };
    reply.code(clientError.status);
    // RFC 6750 section 3: a 401 on a bearer-protected route names the scheme. The OAuth routes
    // set their own challenge before they get here.
    if (clientError.status === 401 && !reply.hasHeader("www-authenticate")) {
      reply.header("www-authenticate", 'Bearer realm="arbor"');
    }
    return errorBody(clientError, request.id);
  }

  app.setErrorHandler(async (error, request, reply) => {
    try {
      return await reject(error, request, reply);
    } catch (unexpected) {
      // Never let the framework's fallback handler serialise an unknown error's message.
      request.failure = { code: "INTERNAL", error: unexpected };
      reply.code(500);
      return errorBody(new ArborError("INTERNAL", INTERNAL_MESSAGE), request.id);
    }
  });

  app.setNotFoundHandler(async (request, reply) => {
    const path = request.url.split("?")[0] ?? "";
    const notFound = new ArborError(
      "NOT_FOUND",
      `no route ${request.method} ${quote(path)}; see /v1/openapi.json for the routes`,
      { parameter: "url", value: path },
    );
    return reject(notFound, request, reply);
  });
}

function validationError(error: FastifyError, request: FastifyRequest): ArborError {
  const part = error.validationContext ?? "body";
  const issues = error.validation ?? [];

  const unknownFields = issues.filter((issue) => issue.keyword === "additionalProperties");
  const unknown =
    unknownFields.find((issue) => CALLER_NONCE_FIELDS.has(additionalPropertyOf(issue))) ??
    unknownFields[0];
  if (unknown !== undefined) {
    return unsupportedField(request, part, unknown.instancePath, additionalPropertyOf(unknown));
  }

  const issue = issues[0];
  if (issue === undefined) {
    return new ArborError("INVALID_ARGUMENT", `invalid ${part}`, { parameter: part });
  }
  if (issue.keyword === "required") {
    const missing = String((issue.params as { missingProperty?: unknown }).missingProperty);
    const parameter = joinField(fieldOf(issue.instancePath), missing);
    return new ArborError("INVALID_ARGUMENT", `missing required field ${quote(parameter)}`, {
      parameter,
    });
  }

  const parameter = fieldOf(issue.instancePath) || (part === "body" ? "body" : part);
  const reason = reasonOf(issue);
  if (!UNQUOTED_FIELDS.has(topField(parameter))) {
    const sent = valueAt(requestPart(request, part), issue.instancePath);
    if (sent !== undefined) return invalidArgument(parameter, sent, reason);
  }
  return new ArborError("INVALID_ARGUMENT", `invalid ${parameter}: ${reason}`, { parameter });
}

function unsupportedField(
  request: FastifyRequest,
  part: string,
  instancePath: string,
  name: string,
): ArborError {
  const parameter = joinField(fieldOf(instancePath), name);
  const accepted = part === "body" && instancePath === "" ? bodyFieldsOf(request) : [];
  return unsupportedFieldError(
    parameter,
    accepted,
    part === "querystring" ? "query parameter" : "field",
  );
}

/**
 * UNSUPPORTED_FIELD for a field the route does not declare. A `nonce` or `iv` gets its own
 * message, because a caller who sends one must learn that it would not have been used. The
 * value is never quoted: a misplaced field may hold a secret.
 */
export function unsupportedFieldError(
  parameter: string,
  accepted: readonly string[],
  where = "field",
): ArborError {
  const name = parameter.split(".").at(-1) ?? parameter;
  if (CALLER_NONCE_FIELDS.has(name)) {
    return new ArborError(
      "UNSUPPORTED_FIELD",
      `unsupported ${where} ${quote(parameter)}: Arbor generates every nonce and IV itself and never accepts one from a caller; remove the field`,
      { parameter },
    );
  }
  const hint =
    accepted.length === 0
      ? "remove it"
      : `this route accepts ${accepted.map((field) => quote(field)).join(", ")}`;
  return new ArborError("UNSUPPORTED_FIELD", `unsupported ${where} ${quote(parameter)}: ${hint}`, {
    parameter,
  });
}

function additionalPropertyOf(issue: { params: Record<string, unknown> }): string {
  return String(issue.params.additionalProperty);
}

function reasonOf(issue: { keyword: string; message?: string; params: Record<string, unknown> }) {
  const message = issue.message ?? "is invalid";
  if (issue.keyword === "enum" && Array.isArray(issue.params.allowedValues)) {
    return `must be one of ${issue.params.allowedValues.map((v) => quote(v)).join(", ")}`;
  }
  return message;
}

/** Converts an ajv JSON pointer (`/context/a~1b`) to a dotted field name (`context.a/b`). */
function fieldOf(instancePath: string): string {
  if (instancePath === "") return "";
  return instancePath
    .slice(1)
    .split("/")
    .map((segment) => segment.replace(/~1/g, "/").replace(/~0/g, "~"))
    .join(".");
}

function joinField(parent: string, child: string): string {
  return parent === "" ? child : `${parent}.${child}`;
}

function topField(parameter: string): string {
  return parameter.split(".")[0] ?? parameter;
}

function requestPart(request: FastifyRequest, part: string): unknown {
  switch (part) {
    case "body":
      return request.body;
    case "params":
      return request.params;
    case "querystring":
      return request.query;
    default:
      return undefined;
  }
}

function valueAt(root: unknown, instancePath: string): unknown {
  if (instancePath === "") return undefined;
  let current: unknown = root;
  for (const segment of fieldOf(instancePath).split(".")) {
    if (typeof current !== "object" || current === null) return undefined;
    current = (current as Record<string, unknown>)[segment];
  }
  return current;
}

function bodyFieldsOf(request: FastifyRequest): string[] {
  const schema = request.routeOptions.schema?.body as
    { properties?: Record<string, unknown> } | undefined;
  return Object.keys(schema?.properties ?? {});
}

/**
 * Recognises driver errors that mean the database is down or busy, as opposed to a bug:
 * SQLite busy, locked, I/O, full or cannot-open results, a closed better-sqlite3 handle, and
 * PostgreSQL connection failures (SQLSTATE classes 08 and 57P) or refused connections.
 */
function isStorageOutage(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;

  const code = "code" in error ? String(error.code) : "";
  if (/^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN)/.test(code)) return true;
  if (/^(08|57P)/.test(code) || code === "ECONNREFUSED" || code === "ECONNRESET") return true;
  const message = error instanceof Error ? error.message : "";
  return error instanceof TypeError && message.includes("database connection is not open");
}
