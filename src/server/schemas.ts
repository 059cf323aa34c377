import type { FastifyInstance } from "fastify";

/**
 * JSON schemas shared by several routes. Request schemas reject unknown properties; response
 * schemas also decide what is serialised, so a field missing here never reaches a client.
 */

const timestamp = { type: "string", format: "date-time" } as const;
const nullableTimestamp = { type: ["string", "null"], format: "date-time" } as const;

export const errorSchema = {
  $id: "ArborError",
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message", "requestId"],
      properties: {
        code: { type: "string" },
        message: { type: "string" },
        requestId: { type: "string" },
        parameter: { type: "string" },
        value: { type: ["string", "number", "boolean", "null"] },
      },
    },
  },
} as const;

export const versionSchema = {
  $id: "ArborKeyVersion",
  type: "object",
  required: ["version", "state", "parentKeyId", "parentVersion", "createdAt"],
  properties: {
    version: { type: "integer" },
    state: {
      type: "string",
      enum: ["pending", "primary", "active", "disabled", "revoked", "destroyed"],
    },
    parentKeyId: { type: "string" },
    parentVersion: { type: "integer" },
    createdAt: timestamp,
    activateAt: nullableTimestamp,
    retireAt: nullableTimestamp,
    publicJwk: { type: ["object", "null"], additionalProperties: true },
  },
} as const;

export const keySchema = {
  $id: "ArborKey",
  type: "object",
  required: ["id", "path", "kind", "environment", "tenant", "purpose", "versions"],
  properties: {
    id: { type: "string" },
    path: { type: "string" },
    kind: { type: "string", enum: ["master", "service"] },
    environment: { type: "string" },
    tenant: { type: "string" },
    service: { type: "string" },
    purpose: { type: "string", enum: ["wrap", "encrypt", "sign"] },
    algorithm: { type: "string" },
    mode: { type: "string", enum: ["wrapped", "derived"] },
    parentId: { type: ["string", "null"] },
    minDecryptionVersion: { type: "integer" },
    rotationPeriod: { type: ["string", "null"] },
    primaryVersion: { type: ["integer", "null"] },
    createdAt: timestamp,
    versions: { type: "array", items: { $ref: "ArborKeyVersion#" } },
  },
} as const;

export const treeNodeSchema = {
  $id: "ArborTreeNode",
  type: "object",
  required: ["id", "path", "kind", "purpose", "children"],
  properties: {
    id: { type: "string" },
    path: { type: "string" },
    kind: { type: "string" },
    purpose: { type: "string" },
    primaryVersion: { type: ["integer", "null"] },
    children: { type: "array", items: { $ref: "ArborTreeNode#" } },
  },
} as const;

export const operatorTokenSchema = {
  $id: "ArborOperatorToken",
  type: "object",
  required: ["id", "name", "readOnly", "root", "createdAt"],
  properties: {
    id: { type: "string" },
    name: { type: "string" },
    environment: { type: ["string", "null"] },
    tenant: { type: ["string", "null"] },
    readOnly: { type: "boolean" },
    root: { type: "boolean" },
    createdAt: timestamp,
    expiresAt: nullableTimestamp,
    revokedAt: nullableTimestamp,
  },
} as const;

/** Registers the shared schemas so routes can refer to them by `$ref`. */
export function addSharedSchemas(app: FastifyInstance): void {
  for (const schema of [
    errorSchema,
    versionSchema,
    keySchema,
    treeNodeSchema,
    operatorTokenSchema,
  ]) {
    app.addSchema(schema);
  }
}

export const errorRef = { $ref: "ArborError#" } as const;

/** Adds the error body for every 4xx and 5xx status to a route's response schemas. */
export function withErrors<T extends Record<string, unknown>>(responses: T) {
  return { ...responses, "4xx": errorRef, "5xx": errorRef };
}

/** A duration: `"90d"`, `"12h"`, `"15m"`, `"30s"`, or whole seconds as a number or digits. */
export const durationSchema = {
  type: ["string", "integer"],
  maxLength: 16,
  minimum: 0,
} as const;

/** An encryption context: a flat map of strings, bound to the ciphertext, never secret. */
export const contextSchema = {
  type: "object",
  additionalProperties: { type: "string" },
} as const;

/** Path parameter `{key}`: a key id or a URL-encoded key path. */
export const keyParamsSchema = {
  type: "object",
  required: ["key"],
  additionalProperties: false,
  properties: { key: { type: "string", minLength: 1, maxLength: 256 } },
} as const;

/** Path parameters `{key}` and `{version}`. */
export const keyVersionParamsSchema = {
  type: "object",
  required: ["key", "version"],
  additionalProperties: false,
  properties: {
    key: { type: "string", minLength: 1, maxLength: 256 },
    version: { type: "string", pattern: "^[1-9][0-9]{0,9}$" },
  },
} as const;

/** A body schema for routes that take no fields; an absent body is accepted as `{}`. */
export const emptyBodySchema = {
  type: "object",
  additionalProperties: false,
  properties: {},
} as const;
