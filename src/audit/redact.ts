import type { AuditEvent } from "./types.ts";

const SECRET_PREFIX = "arbor_";

/**
 * Arbor's opaque secrets (`arbor_<type>_<random>_<crc32>`), whole or cut short. A caller can
 * paste one where an id belongs, such as an operator token in place of the token id to revoke,
 * and routes record the id they were given.
 */
const OPAQUE_SECRET = /arbor_([a-z]{2})_[0-9A-Za-z]+(?:_[0-9A-Za-z]*)?/g;

/**
 * Returns the event with every opaque secret in its strings replaced by `arbor_<type>_[redacted]`,
 * or the event itself when none contains one. The audit log is permanent, hash-chained and exported,
 * so a secret written into it could never be removed; no id Arbor issues has this form. Fields of
 * the wrong type pass through unchanged for the record checks to reject.
 */
export function redactSecrets(event: AuditEvent): AuditEvent {
  if (!mentionsSecret(event)) return event;

  const principal: unknown = event.principal;
  return {
    ...event,
    principal: isObject(principal)
      ? ({ ...principal, id: redact(principal.id) } as AuditEvent["principal"])
      : event.principal,
    sourceAddress: redact(event.sourceAddress),
    requestId: redact(event.requestId),
    keyId: redact(event.keyId),
    chain: Array.isArray(event.chain) ? event.chain.map(redact) : event.chain,
    credentialId: redact(event.credentialId),
    errorCode: redact(event.errorCode),
    details: isObject(event.details) ? redactDetails(event.details) : event.details,
  };
}

/** Returns whether any string of the event contains the prefix; ordinary events then skip the regular expression. */
function mentionsSecret(event: AuditEvent): boolean {
  const principal: unknown = event.principal;
  const strings: unknown[] = [
    isObject(principal) ? principal.id : null,
    event.sourceAddress,
    event.requestId,
    event.keyId,
    event.credentialId,
    event.errorCode,
    ...(Array.isArray(event.chain) ? event.chain : []),
  ];
  if (isObject(event.details)) {
    for (const [name, value] of Object.entries(event.details)) strings.push(name, value);
  }
  return strings.some((value) => typeof value === "string" && value.includes(SECRET_PREFIX));
}

function redactDetails(details: Record<string, unknown>): AuditEvent["details"] {
  const redacted: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(details)) {
    // defineProperty keeps a "__proto__" key as data, as the record code does.
    Object.defineProperty(redacted, redact(name), {
      value: redact(value),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return redacted as AuditEvent["details"];
}

function redact<T>(value: T): T {
  if (typeof value !== "string" || !value.includes(SECRET_PREFIX)) return value;
  return value.replace(OPAQUE_SECRET, (_match, type: string) => `arbor_${type}_[redacted]`) as T;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Returns the text with every opaque secret replaced, for log lines outside the audit log. */
export function redactSecretText(text: string): string {
  return text.includes(SECRET_PREFIX) ? redact(text) : text;
}
