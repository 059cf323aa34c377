import { performance } from "node:perf_hooks";

import type { FastifyInstance, FastifyRequest } from "fastify";

import { zeroize } from "../../crypto/index.ts";
import { decodeBase64Strict, encodeBase64 } from "../encoding.ts";
import { contextSchema, keyParamsSchema, withErrors } from "../schemas.ts";
import { keyScopeOf, type RouteContext } from "./context.ts";

type Context = Record<string, string>;

const keyIdentity = {
  keyId: { type: "string" },
  keyVersion: { type: "integer" },
} as const;

function responseOf(properties: Record<string, unknown>) {
  return withErrors({
    200: {
      type: "object",
      required: Object.keys(properties),
      additionalProperties: false,
      properties,
    },
  });
}

const contextOnlyBody = {
  type: "object",
  additionalProperties: false,
  properties: { context: contextSchema },
} as const;

const wrappedDataKeyBody = {
  type: "object",
  required: ["wrappedDataKey"],
  additionalProperties: false,
  properties: {
    wrappedDataKey: { type: "string", minLength: 1, maxLength: 16_384 },
    context: contextSchema,
  },
} as const;

const ciphertextBody = {
  type: "object",
  required: ["ciphertext"],
  additionalProperties: false,
  properties: { ciphertext: { type: "string", minLength: 1 }, context: contextSchema },
} as const;

/** Data keys, and encryption of small payloads on the server (envelope format v1). */
export function registerEnvelopeRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { deps, audit } = ctx;

  /** Resolves `{key}` as an encrypt key inside the caller's scope, decided on it; returns its id. */
  async function resolveEncryptKey(request: FastifyRequest, reference: string): Promise<string> {
    const key = await deps.keyTree.resolveKey(reference, "encrypt", keyScopeOf(request));
    audit.note(request, { keyId: key.id });
    return key.id;
  }

  /** Counts an issued data key once its event is durable; `startedAt` is from performance.now. */
  function recordIssuance(startedAt: number): void {
    deps.metrics.issuances.inc({ kind: "data_key" });
    deps.metrics.issuanceDuration.observe(
      { kind: "data_key" },
      (performance.now() - startedAt) / 1000,
    );
  }

  for (const withPlaintext of [true, false]) {
    const properties = {
      ...keyIdentity,
      dataKeyId: { type: "string" },
      ...(withPlaintext ? { plaintext: { type: "string" } } : {}),
      wrappedDataKey: { type: "string" },
    };
    app.post<{ Params: { key: string }; Body: { context?: Context } }>(
      withPlaintext ? "/v1/keys/:key/data-key" : "/v1/keys/:key/data-key/wrapped",
      {
        schema: {
          summary: withPlaintext
            ? "Generates a data key and returns it in plaintext (base64) and wrapped"
            : "Generates a data key and returns it only wrapped",
          params: keyParamsSchema,
          body: contextOnlyBody,
          response: responseOf(properties),
        },
        config: {
          action: withPlaintext ? "data_key.generate" : "data_key.generate_wrapped",
          resource: "data_key",
          auditEvent: "data_key.issued",
        },
      },
      async (request) => {
        const startedAt = performance.now();
        const keyId = await resolveEncryptKey(request, request.params.key);
        const issued = await deps.envelope.generateDataKey(
          keyId,
          request.body.context ?? {},
          keyScopeOf(request),
        );
        try {
          await audit.success(request, {
            keyId: issued.keyId,
            keyVersion: issued.keyVersion,
            chain: issued.chain,
            credentialId: issued.dataKeyId,
            details: { plaintextReturned: withPlaintext },
          });
          recordIssuance(startedAt);
          return {
            keyId: issued.keyId,
            keyVersion: issued.keyVersion,
            dataKeyId: issued.dataKeyId,
            ...(withPlaintext ? { plaintext: encodeBase64(issued.plaintext) } : {}),
            wrappedDataKey: issued.wrappedDataKey,
          };
        } finally {
          zeroize(issued.plaintext);
        }
      },
    );
  }

  app.post<{ Body: { wrappedDataKey: string; context?: Context } }>(
    "/v1/data-key/decrypt",
    {
      schema: {
        summary: "Unwraps a data key made by this deployment",
        body: wrappedDataKeyBody,
        response: responseOf({ ...keyIdentity, plaintext: { type: "string" } }),
      },
      config: {
        action: "data_key.decrypt",
        resource: "data_key",
        auditEvent: "data_key.decrypted",
      },
    },
    async (request) => {
      const { wrappedDataKey, context } = request.body;
      const opened = await deps.envelope.decryptDataKey(
        wrappedDataKey,
        context ?? {},
        keyScopeOf(request),
      );
      try {
        await audit.success(request, {
          keyId: opened.keyId,
          keyVersion: opened.keyVersion,
          chain: opened.chain,
          credentialId: opened.dataKeyId,
        });
        return {
          keyId: opened.keyId,
          keyVersion: opened.keyVersion,
          plaintext: encodeBase64(opened.plaintext),
        };
      } finally {
        zeroize(opened.plaintext);
      }
    },
  );

  app.post<{ Body: { wrappedDataKey: string; context?: Context } }>(
    "/v1/data-key/rewrap",
    {
      schema: {
        summary: "Re-wraps a data key under the primary version of its key",
        body: wrappedDataKeyBody,
        response: responseOf({ ...keyIdentity, wrappedDataKey: { type: "string" } }),
      },
      config: { action: "data_key.rewrap", resource: "data_key", auditEvent: "crypto.rewrap" },
    },
    async (request) => {
      const { wrappedDataKey, context } = request.body;
      const rewrapped = await deps.envelope.rewrapDataKey(
        wrappedDataKey,
        context ?? {},
        keyScopeOf(request),
      );
      await audit.success(request, {
        keyId: rewrapped.keyId,
        keyVersion: rewrapped.keyVersion,
        chain: rewrapped.chain,
        credentialId: rewrapped.dataKeyId,
        details: { kind: "data_key" },
      });
      return {
        keyId: rewrapped.keyId,
        keyVersion: rewrapped.keyVersion,
        wrappedDataKey: rewrapped.wrappedDataKey,
      };
    },
  );

  app.post<{ Params: { key: string }; Body: { plaintext: string; context?: Context } }>(
    "/v1/keys/:key/encrypt",
    {
      schema: {
        summary: "Encrypts a small payload (base64) into envelope format v1",
        params: keyParamsSchema,
        body: {
          type: "object",
          required: ["plaintext"],
          additionalProperties: false,
          properties: { plaintext: { type: "string" }, context: contextSchema },
        },
        response: responseOf({ ciphertext: { type: "string" }, ...keyIdentity }),
      },
      config: { action: "crypto.encrypt", resource: "ciphertext", auditEvent: "crypto.encrypt" },
    },
    async (request) => {
      const keyId = await resolveEncryptKey(request, request.params.key);
      const plaintext = decodeBase64Strict(
        request.body.plaintext,
        "plaintext",
        deps.limits.maxPayloadBytes,
      );
      try {
        const sealed = await deps.envelope.encrypt(
          keyId,
          plaintext,
          request.body.context ?? {},
          keyScopeOf(request),
        );
        await audit.success(request, {
          keyId: sealed.keyId,
          keyVersion: sealed.keyVersion,
          chain: sealed.chain,
          details: { bytes: plaintext.length },
        });
        return {
          ciphertext: sealed.ciphertext,
          keyId: sealed.keyId,
          keyVersion: sealed.keyVersion,
        };
      } finally {
        zeroize(plaintext);
      }
    },
  );

  app.post<{ Body: { ciphertext: string; context?: Context } }>(
    "/v1/decrypt",
    {
      schema: {
        summary: "Decrypts an envelope; a context, if sent, must equal the one bound at encryption",
        body: ciphertextBody,
        response: responseOf({
          plaintext: { type: "string" },
          context: contextSchema,
          ...keyIdentity,
        }),
      },
      config: { action: "crypto.decrypt", resource: "ciphertext", auditEvent: "crypto.decrypt" },
    },
    async (request) => {
      const opened = await deps.envelope.decrypt(
        request.body.ciphertext,
        request.body.context,
        keyScopeOf(request),
      );
      try {
        await audit.success(request, {
          keyId: opened.keyId,
          keyVersion: opened.keyVersion,
          chain: opened.chain,
          details: { bytes: opened.plaintext.length },
        });
        return {
          plaintext: encodeBase64(opened.plaintext),
          context: opened.context,
          keyId: opened.keyId,
          keyVersion: opened.keyVersion,
        };
      } finally {
        zeroize(opened.plaintext);
      }
    },
  );

  app.post<{ Body: { ciphertext: string; context?: Context } }>(
    "/v1/rewrap",
    {
      schema: {
        summary: "Re-encrypts an envelope under the primary version of its key",
        body: ciphertextBody,
        response: responseOf({ ciphertext: { type: "string" }, ...keyIdentity }),
      },
      config: { action: "crypto.rewrap", resource: "ciphertext", auditEvent: "crypto.rewrap" },
    },
    async (request) => {
      const rewrapped = await deps.envelope.rewrap(
        request.body.ciphertext,
        request.body.context,
        keyScopeOf(request),
      );
      await audit.success(request, {
        keyId: rewrapped.keyId,
        keyVersion: rewrapped.keyVersion,
        chain: rewrapped.chain,
        details: { kind: "ciphertext" },
      });
      return {
        ciphertext: rewrapped.ciphertext,
        keyId: rewrapped.keyId,
        keyVersion: rewrapped.keyVersion,
      };
    },
  );
}
