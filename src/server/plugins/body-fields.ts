import type { FastifyInstance } from "fastify";

import type { ArborError } from "../../errors/index.ts";
import { unsupportedFieldError } from "../errors.ts";

interface ObjectSchema {
  additionalProperties?: unknown;
  properties?: Record<string, unknown>;
}

/**
 * Runs before schema validation. Query parameters a route does not declare are rejected (a route
 * without a query schema takes none). On routes with a body schema, an absent body becomes `{}`, so
 * `POST` routes without fields work without a body. Top-level fields the schema does not declare
 * are rejected here with UNSUPPORTED_FIELD, a `nonce` or `iv` first. Doing this before ajv means
 * an unknown field is reported even when the body has other errors, because ajv reports only its
 * first error.
 */
export function registerBodyFieldCheck(app: FastifyInstance): void {
  app.addHook("preValidation", (request, _reply, done) => {
    // An unknown route returns NOT_FOUND whatever its query contains.
    if (request.is404) {
      done();
      return;
    }
    const querySchema = request.routeOptions.schema?.querystring as ObjectSchema | undefined;
    const queryError = unknownFieldError(
      request.query,
      querySchema ?? NO_PARAMETERS,
      "query parameter",
    );
    if (queryError !== undefined) {
      done(queryError);
      return;
    }

    const schema = request.routeOptions.schema?.body as ObjectSchema | undefined;
    if (schema === undefined) {
      done();
      return;
    }
    if (request.body === undefined) request.body = {};
    done(unknownFieldError(request.body, schema));
  });
}

/** A route without a query schema accepts no query parameters at all. */
const NO_PARAMETERS: ObjectSchema = { additionalProperties: false, properties: {} };

/** UNSUPPORTED_FIELD for the first undeclared top-level field, a `nonce` or `iv` first; else undefined. */
function unknownFieldError(
  body: unknown,
  schema: ObjectSchema,
  where = "field",
): ArborError | undefined {
  const isObject = typeof body === "object" && body !== null && !Array.isArray(body);
  if (!isObject || schema.additionalProperties !== false) return undefined;

  const declared = Object.keys(schema.properties ?? {});
  const unknown = Object.keys(body).filter((field) => !declared.includes(field));
  if (unknown.length === 0) return undefined;

  const first = unknown.find((field) => field === "nonce" || field === "iv") ?? unknown[0]!;
  return unsupportedFieldError(first, declared, where);
}
