import { ArborError, quote } from "../errors/index.ts";
import type { ClientCredentials } from "./client-auth.ts";

/** A form parameter an OAuth endpoint reads. */
export interface FormField {
  name: string;
  /** RFC 8707 lets `resource` (and RFC 8693 `audience`) appear more than once. */
  repeatable: boolean;
}

/** The parsed form: single parameters as strings, repeatable ones as arrays. */
export type FormParameters = Record<string, string | string[]>;

/** The authentication of an OAuth endpoint's caller, as far as the request shows it. */
export type OAuthCaller =
  | { kind: "client"; credentials: ClientCredentials }
  | { kind: "bearer"; token: string }
  | { kind: "none" };

const BASIC_PATTERN = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i;
const BEARER_PATTERN = /^Bearer +([\x21-\x7e]+) *$/i;

/**
 * Parses an `application/x-www-form-urlencoded` body. RFC 6749 section 3.2 forbids repeating a
 * parameter (except the repeatable ones), and section 3.1 states that a parameter without a value
 * counts as omitted and unknown parameters are ignored, so only `fields` are returned.
 */
export function parseForm(text: string, fields: readonly FormField[]): FormParameters {
  const search = new URLSearchParams(text);
  const parameters: FormParameters = {};
  for (const field of fields) {
    const values = search.getAll(field.name).filter((value) => value !== "");
    if (values.length === 0) continue;
    if (field.repeatable) {
      parameters[field.name] = values;
      continue;
    }
    if (values.length > 1) {
      throw new ArborError(
        "INVALID_ARGUMENT",
        `parameter ${quote(field.name)} appears more than once; send it once`,
        { parameter: field.name },
      );
    }
    parameters[field.name] = values[0]!;
  }
  return parameters;
}

/**
 * Determines how the caller authenticated: HTTP Basic (`client_secret_basic`), a bearer token,
 * or `client_id` and `client_secret` in the body (`client_secret_post`). Using more than one
 * method is INVALID_ARGUMENT (RFC 6749 section 2.3); a malformed Basic header is UNAUTHENTICATED.
 */
export function callerOf(
  authorization: string | undefined,
  body: { client_id?: unknown; client_secret?: unknown },
): OAuthCaller {
  const bodyId = typeof body.client_id === "string" ? body.client_id : undefined;
  const bodySecret = typeof body.client_secret === "string" ? body.client_secret : undefined;

  if (authorization !== undefined) {
    if (bodySecret !== undefined) {
      throw new ArborError(
        "INVALID_ARGUMENT",
        "the request authenticates twice (Authorization header and client_secret); use one method",
        { parameter: "client_secret" },
      );
    }
    const bearer = BEARER_PATTERN.exec(authorization);
    if (bearer !== null) return { kind: "bearer", token: bearer[1]! };

    const credentials = basicCredentials(authorization);
    if (bodyId !== undefined && bodyId !== credentials.clientId) {
      throw new ArborError(
        "INVALID_ARGUMENT",
        "client_id in the body differs from the client in the Authorization header",
        { parameter: "client_id" },
      );
    }
    return { kind: "client", credentials };
  }

  if (bodySecret !== undefined) {
    if (bodyId === undefined) {
      throw new ArborError("INVALID_ARGUMENT", 'missing required field "client_id"', {
        parameter: "client_id",
      });
    }
    return {
      kind: "client",
      credentials: { clientId: bodyId, clientSecret: bodySecret, method: "client_secret_post" },
    };
  }
  return { kind: "none" };
}

/**
 * Reads `Authorization: Basic`. RFC 6749 section 2.3.1 form-encodes the client id and secret
 * before they are joined with `:` and base64-encoded, so both are form-decoded here.
 */
function basicCredentials(authorization: string): ClientCredentials {
  const match = BASIC_PATTERN.exec(authorization);
  const decoded = match === null ? null : Buffer.from(match[1]!, "base64").toString("utf8");
  const colon = decoded === null ? -1 : decoded.indexOf(":");
  if (decoded === null || colon <= 0) {
    throw new ArborError(
      "UNAUTHENTICATED",
      "malformed Authorization header: send Basic base64(client_id:client_secret) or a Bearer token",
    );
  }
  try {
    return {
      clientId: formDecode(decoded.slice(0, colon)),
      clientSecret: formDecode(decoded.slice(colon + 1)),
      method: "client_secret_basic",
    };
  } catch {
    throw new ArborError(
      "UNAUTHENTICATED",
      "malformed Authorization header: the client id or secret is not validly form-encoded",
    );
  }
}

function formDecode(value: string): string {
  return decodeURIComponent(value.replace(/\+/g, " "));
}
