import { LogController, type FastifyReply, type FastifyRequest } from "fastify";

import { redactSecretText } from "../audit/redact.ts";

/**
 * Owns the request log lines: one line per request when the response is sent. Successes are
 * logged at debug, 4xx at info, and 5xx at error with the full error. A 5xx that a handler chose
 * (health returning 503 while sealed) and SEALED answers are not faults, so they are logged at
 * info. The line names
 * the route pattern, never the query string, headers or body.
 */
export class RequestLogController extends LogController {
  override incomingRequest(): void {
    // One line per request, written on completion.
  }

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    const status = reply.statusCode;
    const fields = {
      method: request.method,
      route: request.routeOptions.url ?? pathOf(request.url),
      statusCode: status,
      responseTimeMs: Math.round(reply.elapsedTime * 1000) / 1000,
      errorCode: request.failure?.code ?? null,
    };
    // SEALED is the server's expected state until an operator unseals it, not a fault.
    if (status >= 500 && request.failure !== null && request.failure.code !== "SEALED") {
      reply.log.error({ ...fields, err: request.failure.error }, "request failed");
    } else if (error !== null && error !== undefined) {
      // The response was sent but the connection failed while sending it.
      reply.log.info({ ...fields, err: { message: error.message } }, "response interrupted");
    } else if (status >= 400) {
      reply.log.info(fields, "request rejected");
    } else {
      // Successes are in the audit log already; at info they would cost a line per request.
      reply.log.debug(fields, "request completed");
    }
  }

  override defaultErrorLog(): void {
    // The error handler in errors.ts replaces Fastify's default one, which would log here.
  }

  override routeNotFound(): void {
    // Unknown routes are logged by requestCompleted with errorCode NOT_FOUND.
  }
}

/** The path of an unrouted request; a secret pasted into a mistyped URL is redacted. */
function pathOf(url: string): string {
  return redactSecretText(url.split("?")[0] ?? "");
}
