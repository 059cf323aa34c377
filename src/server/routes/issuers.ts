import type { FastifyInstance } from "fastify";

import { ArborError, quote } from "../../errors/index.ts";
import { withErrors } from "../schemas.ts";
import type { TokenRouteContext } from "./oauth.ts";

const JWKS_SUFFIX = "/jwks";
const OPENID_CONFIGURATION_SUFFIX = "/.well-known/openid-configuration";
/** RFC 8414 section 3: the well-known segment goes between the host and the issuer's path. */
export const AUTHORIZATION_SERVER_METADATA_PREFIX = "/.well-known/oauth-authorization-server";

const wildcardParams = {
  type: "object",
  required: ["*"],
  additionalProperties: false,
  properties: { "*": { type: "string", maxLength: 512 } },
} as const;

const documentResponse = withErrors({ 200: { type: "object", additionalProperties: true } });

// Public keys and endpoint URLs are not secret, so verifiers can keep working while the root is
// sealed, before the unseal ceremony completes.
const publicConfig = {
  resource: "issuer",
  auditEvent: null,
  public: true,
  whileSealed: true,
} as const;

/**
 * Registers the issuers' public documents, one issuer per master key at `/v1/issuers/<master
 * path>`: `<issuer>/jwks`, `<issuer>/.well-known/openid-configuration`, and RFC 8414 metadata at
 * `/.well-known/oauth-authorization-server/v1/issuers/<master path>`. Master paths contain `/`, so
 * each route takes the rest of the URL and splits off the document's suffix itself. An unknown
 * issuer is 404 NOT_FOUND.
 */
export function registerIssuerRoutes(app: FastifyInstance, { tokens }: TokenRouteContext): void {
  app.get<{ Params: { "*": string } }>(
    "/v1/issuers/*",
    {
      schema: {
        summary:
          "An issuer's JWKS (<issuer>/jwks) or its metadata (<issuer>/.well-known/openid-configuration)",
        params: wildcardParams,
        response: documentResponse,
      },
      config: { action: "issuer.document.read", ...publicConfig },
    },
    async (request) => {
      const rest = request.params["*"];
      if (rest.endsWith(JWKS_SUFFIX)) {
        return tokens.issuers.jwks(rest.slice(0, -JWKS_SUFFIX.length));
      }
      if (rest.endsWith(OPENID_CONFIGURATION_SUFFIX)) {
        return tokens.issuers.metadata(rest.slice(0, -OPENID_CONFIGURATION_SUFFIX.length));
      }
      throw new ArborError(
        "NOT_FOUND",
        `no issuer document ${quote(rest)}: use <master path>/jwks or <master path>${OPENID_CONFIGURATION_SUFFIX}`,
        { parameter: "url", value: rest },
      );
    },
  );

  app.get<{ Params: { "*": string } }>(
    `${AUTHORIZATION_SERVER_METADATA_PREFIX}/v1/issuers/*`,
    {
      schema: {
        summary: "An issuer's authorization server metadata (RFC 8414)",
        params: wildcardParams,
        response: documentResponse,
      },
      config: { action: "issuer.metadata.read", ...publicConfig },
    },
    async (request) => tokens.issuers.metadata(request.params["*"]),
  );
}
