import type { IncomingMessage } from "node:http";

import type { FastifyInstance } from "fastify";

import { newOpaqueId } from "../../crypto/index.ts";

/** Request ids a caller may choose: 1 to 64 characters that are safe in logs and headers. */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

export const REQUEST_ID_HEADER = "x-request-id";

/**
 * Returns the caller's `x-request-id` when it matches {@link REQUEST_ID_PATTERN}, otherwise a new
 * random id (`req_` and 26 base32 characters). Used as Fastify's `genReqId`.
 */
export function requestIdOf(raw: IncomingMessage): string {
  const sent = raw.headers[REQUEST_ID_HEADER];
  if (typeof sent === "string" && REQUEST_ID_PATTERN.test(sent)) return sent;
  return newOpaqueId("req");
}

/** Echoes the request id on every response, errors and 404s included. */
export function registerRequestIdHeader(app: FastifyInstance): void {
  app.addHook("onSend", async (request, reply, payload) => {
    reply.header(REQUEST_ID_HEADER, request.id);
    return payload;
  });
}
