import type { Command } from "commander";

import type { CreatedOperatorToken, OperatorToken } from "../api-types.ts";
import { contextOf } from "../context.ts";
import { formatFields, formatTable } from "../output.ts";
import { parseDurationText } from "../parsers.ts";

interface CreateOptions {
  name: string;
  ttl?: string;
  environment?: string;
  tenant?: string;
  readOnly?: boolean;
}

/** Registers `arbor operator token create|list|revoke`. */
export function registerOperatorCommands(program: Command): void {
  const token = program
    .command("operator")
    .description("manage operators")
    .command("token")
    .description("create, list and revoke operator tokens");

  token
    .command("create")
    .description("create an operator token; the secret is printed once")
    .requiredOption("--name <name>", "who or what uses the token, 1 to 64 characters")
    .option(
      "--ttl <duration>",
      "lifetime, such as 24h (server default when omitted)",
      parseDurationText,
    )
    .option("--environment <env>", "limit the token to one environment")
    .option("--tenant <tenant>", "limit the token to one tenant of that environment")
    .option("--read-only", "allow only reading (GET routes)")
    .action(async (options: CreateOptions, command: Command) => {
      const { out, client } = contextOf(command);
      const created = await client().post<CreatedOperatorToken>("/v1/operator/tokens", {
        name: options.name,
        ...(options.ttl === undefined ? {} : { ttl: options.ttl }),
        ...(options.environment === undefined ? {} : { environment: options.environment }),
        ...(options.tenant === undefined ? {} : { tenant: options.tenant }),
        ...(options.readOnly === true ? { readOnly: true } : {}),
      });
      out.result(created, () => describeCreated(created));
    });

  token
    .command("list")
    .description(
      "list the operator tokens in the caller's scope, including expired and revoked ones",
    )
    .action(async (_options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const response = await client().get<{ tokens: OperatorToken[] }>("/v1/operator/tokens");
      out.result(response, () => describeTokens(response.tokens));
    });

  token
    .command("revoke")
    .description("revoke an operator token at once")
    .argument("<id>", "the token id (opt_...), as `arbor operator token list` shows it")
    .action(async (id: string, _options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const response = await client().delete<{ id: string; revokedAt: string | null }>(
        `/v1/operator/tokens/${encodeURIComponent(id)}`,
      );
      out.result(
        response,
        () => `Revoked ${response.id} at ${response.revokedAt ?? "an unknown time"}.`,
      );
    });
}

function scopeOf(token: Partial<OperatorToken>): string {
  if (token.root === true) return "root";
  const environment = token.environment ?? "*";
  const tenant = token.tenant ?? "*";
  return `${environment}/${tenant}${token.readOnly === true ? " read-only" : ""}`;
}

function describeCreated(created: CreatedOperatorToken): string {
  const fields = formatFields([
    ["id", created.id],
    ["name", created.name ?? null],
    ["scope", scopeOf(created)],
    ["expires", created.expiresAt ?? "never"],
  ]);
  return [
    fields,
    "",
    `token  ${created.token}`,
    "",
    "The token is shown only once. Hand it over through a secret store, not chat or e-mail.",
  ].join("\n");
}

function describeTokens(tokens: readonly OperatorToken[]): string {
  if (tokens.length === 0) return "No operator tokens.";
  return formatTable([
    ["ID", "NAME", "SCOPE", "CREATED", "EXPIRES", "REVOKED"],
    ...tokens.map((token) => [
      token.id,
      token.name,
      scopeOf(token),
      token.createdAt,
      token.expiresAt ?? "never",
      token.revokedAt,
    ]),
  ]);
}
