import type { Command } from "commander";

import { contextOf } from "../context.ts";
import { usageError } from "../errors.ts";
import { formatFields, formatTable } from "../output.ts";
import { parseDurationText } from "../parsers.ts";

/** A client secret as the API lists it; its value is never listed. */
interface ClientSecret {
  id: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
}

/** A service principal as `GET /v1/services/{id}` returns it. */
interface ServicePrincipal {
  id: string;
  name: string;
  environment: string;
  tenant: string;
  service: string;
  signKeyPath: string;
  issuer: string;
  scopes: string[];
  audiences: string[];
  maxTokenTtl: string;
  createdAt: string;
  secrets: ClientSecret[];
}

interface CreatedServicePrincipal extends ServicePrincipal {
  clientSecret: string;
  clientSecretId: string;
}

interface RotatedSecret extends ClientSecret {
  clientSecret: string;
  previousSecretsExpireAt: string;
}

interface CreateOptions {
  name: string;
  audience: string[];
  scope?: string[];
  maxTokenTtl?: string;
}

const SECRET_NOTICE =
  "The client secret is shown only once. Hand it over through a secret store, not chat or e-mail.";

/** Registers `arbor service create|list|show` and `arbor service secret rotate|revoke`. */
export function registerServiceCommands(program: Command): void {
  const service = program
    .command("service")
    .description("manage service principals: OAuth clients that obtain access tokens");

  service
    .command("create")
    .description(
      "create a service principal for a service's sign key; its client secret is printed once",
    )
    .argument(
      "<service>",
      "the service: env/service or env/tenant/service (its sign key must exist)",
    )
    .requiredOption("--name <name>", "who or what uses the principal, 1 to 64 characters")
    .requiredOption(
      "--audience <aud>",
      "an audience its tokens may name, such as https://api.example.com (repeatable)",
      collect,
    )
    .option("--scope <scope>", "a scope value it may request (repeatable)", collect)
    .option(
      "--max-token-ttl <duration>",
      "longest token lifetime, such as 5m (server default when omitted)",
      parseDurationText,
    )
    .action(async (path: string, options: CreateOptions, command: Command) => {
      const { out, client } = contextOf(command);
      const created = await client().post<CreatedServicePrincipal>("/v1/services", {
        name: options.name,
        ...serviceFields(path),
        audiences: options.audience,
        ...(options.scope === undefined ? {} : { scopes: options.scope }),
        ...(options.maxTokenTtl === undefined ? {} : { maxTokenTtl: options.maxTokenTtl }),
      });
      out.result(created, () =>
        [
          describePrincipal(created),
          "",
          `client_id      ${created.id}`,
          `client_secret  ${created.clientSecret}`,
          "",
          SECRET_NOTICE,
        ].join("\n"),
      );
    });

  service
    .command("list")
    .description("list the service principals in the token's scope")
    .action(async (_options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const response = await client().get<{ services: ServicePrincipal[] }>("/v1/services");
      out.result(response, () => describeList(response.services));
    });

  service
    .command("show")
    .description("show a service principal and its client secrets (never their values)")
    .argument("<id>", "the principal's id (svc_...)")
    .action(async (id: string, _options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const shown = await client().get<ServicePrincipal>(principalRoute(id));
      out.result(shown, () => describePrincipal(shown));
    });

  const secret = service.command("secret").description("rotate and revoke client secrets");

  secret
    .command("rotate")
    .description("create a new client secret, printed once; the old ones work for --overlap")
    .argument("<id>", "the principal's id (svc_...)")
    .option(
      "--overlap <duration>",
      "how long the old secrets keep working, such as 1h (default 0: they stop at once)",
      parseDurationText,
    )
    .action(async (id: string, options: { overlap?: string }, command: Command) => {
      const { out, client } = contextOf(command);
      const rotated = await client().post<RotatedSecret>(
        principalRoute(id, "/secrets"),
        options.overlap === undefined ? {} : { overlap: options.overlap },
      );
      out.result(rotated, () =>
        [
          `New secret ${rotated.id} for ${id}; earlier secrets stop working at ${rotated.previousSecretsExpireAt}.`,
          "",
          `client_secret  ${rotated.clientSecret}`,
          "",
          SECRET_NOTICE,
        ].join("\n"),
      );
    });

  secret
    .command("revoke")
    .description("revoke one client secret at once")
    .argument("<id>", "the principal's id (svc_...)")
    .argument("<secret-id>", "the secret's id (sec_...), as `arbor service show` lists it")
    .action(async (id: string, secretId: string, _options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const revoked = await client().delete<ClientSecret>(
        principalRoute(id, `/secrets/${encodeURIComponent(secretId)}`),
      );
      out.result(
        revoked,
        () => `Revoked secret ${revoked.id} of ${id} at ${revoked.revokedAt ?? "an unknown time"}.`,
      );
    });
}

/** Collects a repeatable option into a list. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Splits `env/service` or `env/tenant/service` into the API's fields. */
function serviceFields(path: string): { environment: string; tenant?: string; service: string } {
  const segments = path.split("/");
  if (path.includes(":") || segments.length < 2 || segments.length > 3) {
    throw usageError(
      `invalid service ${JSON.stringify(path)}: expected env/service or env/tenant/service`,
      "name the service without :sign, such as prod/acme/billing",
    );
  }
  const [environment, middle, last] = segments as [string, string, string | undefined];
  return last === undefined
    ? { environment, service: middle }
    : { environment, tenant: middle, service: last };
}

function principalRoute(id: string, suffix = ""): string {
  return `/v1/services/${encodeURIComponent(id)}${suffix}`;
}

function describePrincipal(principal: ServicePrincipal): string {
  const fields = formatFields([
    ["id", principal.id],
    ["name", principal.name],
    ["sign key", principal.signKeyPath],
    ["issuer", principal.issuer],
    ["audiences", principal.audiences.join(" ")],
    ["scopes", principal.scopes.length === 0 ? null : principal.scopes.join(" ")],
    ["max token ttl", principal.maxTokenTtl],
    ["created", principal.createdAt],
  ]);
  const secrets = formatTable([
    ["SECRET", "CREATED", "EXPIRES", "REVOKED"],
    ...principal.secrets.map((secret) => [
      secret.id,
      secret.createdAt,
      secret.expiresAt ?? "never",
      secret.revokedAt,
    ]),
  ]);
  const indented = secrets
    .split("\n")
    .map((line) => `  ${line}`)
    .join("\n");
  return `${fields}\n\nsecrets\n${indented}`;
}

function describeList(principals: readonly ServicePrincipal[]): string {
  if (principals.length === 0) return "No service principals.";
  return formatTable([
    ["ID", "NAME", "SIGN KEY", "MAX TTL", "SECRETS", "CREATED"],
    ...principals.map((principal) => [
      principal.id,
      principal.name,
      principal.signKeyPath,
      principal.maxTokenTtl,
      principal.secrets.filter((secret) => secret.revokedAt === null).length,
      principal.createdAt,
    ]),
  ]);
}
