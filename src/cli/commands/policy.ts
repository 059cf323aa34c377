import { readFile } from "node:fs/promises";
import { basename, dirname, extname, resolve } from "node:path";

import type { Command } from "commander";
import { parseDocument } from "yaml";

import {
  runPolicyCases,
  SCHEMA_TEXT,
  type CaseResult,
  type PolicyCase,
  type StoredPolicyDocument,
} from "../../policy/index.ts";
import { contextOf } from "../context.ts";
import { CliError, usageError } from "../errors.ts";
import { formatFields, formatTable } from "../output.ts";
import { parseDurationText, parsePositiveInteger } from "../parsers.ts";

/** Largest policy or test case file the CLI reads, in bytes. */
const MAX_FILE_BYTES = 1024 * 1024;

interface PolicyVersion {
  name: string;
  version: number;
  sha256: string;
  deleted: boolean;
  createdAt: string;
  createdBy: string;
}

interface Grant {
  id: string;
  principal: string;
  kind: "role" | "break_glass";
  role: string | null;
  environment: string | null;
  tenant: string | null;
  reason: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
}

interface Explanation {
  decision: "allow" | "deny";
  summary: string;
  policies: Array<{
    id: string;
    source: string;
    name: string;
    version: number | null;
    reason: string | null;
  }>;
  errors: string[];
}

/** Registers `arbor policy apply|list|show|delete|test|explain|grant|grants|revoke-grant|schema`. */
export function registerPolicyCommands(program: Command): void {
  const policy = program
    .command("policy")
    .description("manage Cedar policies and grants, test policies locally, explain decisions");

  policy
    .command("apply")
    .description("validate a Cedar policy file and store it as the next version of a named policy")
    .argument("<file>", "the policy file (Cedar syntax)")
    .option("--name <name>", "the policy's name (default: the file name without its extension)")
    .option(
      "--dry-run",
      "only validate against the schema and the policies in effect; store nothing",
    )
    .action(
      async (file: string, options: { name?: string; dryRun?: boolean }, command: Command) => {
        const { out, client } = contextOf(command);
        const name = options.name ?? basename(file, extname(file));
        const text = await readText(file);
        const response = await client().put<PolicyVersion & { changed: boolean; dryRun: boolean }>(
          `/v1/policies/${encodeURIComponent(name)}`,
          { policy: text, ...(options.dryRun === true ? { dryRun: true } : {}) },
        );
        out.result(response, () => {
          if (response.dryRun) return `Valid: ${name} would be version ${response.version}.`;
          if (!response.changed) return `Unchanged: ${name} is version ${response.version}.`;
          return `Applied ${name} version ${response.version}; in effect now.`;
        });
      },
    );

  policy
    .command("list")
    .description("list the stored policies in effect")
    .action(async (_options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const response = await client().get<{ policies: PolicyVersion[] }>("/v1/policies");
      out.result(response, () =>
        response.policies.length === 0
          ? "No stored policies; only the built-in guards and roles apply."
          : formatTable([
              ["NAME", "VERSION", "CREATED", "BY", "SHA-256"],
              ...response.policies.map((p) => [
                p.name,
                p.version,
                p.createdAt,
                p.createdBy,
                p.sha256.slice(0, 16),
              ]),
            ]),
      );
    });

  policy
    .command("show")
    .description("print a stored policy's current text and its versions")
    .argument("<name>", "the policy's name")
    .action(async (name: string, _options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const response = await client().get<
        PolicyVersion & { text: string; history: PolicyVersion[] }
      >(`/v1/policies/${encodeURIComponent(name)}`);
      out.result(response, () =>
        [
          response.deleted
            ? `# ${name} is deleted (version ${response.version})`
            : response.text.trimEnd(),
          "",
          formatTable([
            ["VERSION", "CREATED", "BY", "DELETED"],
            ...response.history.map((v) => [
              v.version,
              v.createdAt,
              v.createdBy,
              v.deleted ? "yes" : "no",
            ]),
          ]),
        ].join("\n"),
      );
    });

  policy
    .command("delete")
    .description("delete a stored policy; its versions stay in the history")
    .argument("<name>", "the policy's name")
    .action(async (name: string, _options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const response = await client().delete<PolicyVersion>(
        `/v1/policies/${encodeURIComponent(name)}`,
      );
      out.result(response, () => `Deleted ${name} (version ${response.version}); in effect now.`);
    });

  policy
    .command("test")
    .description(
      "run request cases against the built-in policies and policy files, without a server; exits 1 if a case fails",
    )
    .argument("<file>", "the test file (YAML or JSON): `policies` (Cedar files) and `cases`")
    .option(
      "--policy <file>",
      "a Cedar policy file to test, besides those the test file lists",
      collect,
      [],
    )
    .action(async (file: string, options: { policy: string[] }, command: Command) => {
      const { out } = contextOf(command);
      const { policies, cases } = await readCases(file);
      const documents = await Promise.all(
        [...policies.map((path) => resolve(dirname(file), path)), ...options.policy].map(
          readPolicyFile,
        ),
      );
      const results = runPolicyCases(documents, cases);
      const failed = results.filter((result) => !result.passed);
      out.result({ passed: results.length - failed.length, failed: failed.length, results }, () =>
        describeResults(results),
      );
      if (failed.length > 0) {
        throw new CliError(
          "TEST_FAILED",
          `${failed.length} of ${results.length} policy test cases failed: ${failed.map((result) => result.name).join(", ")}`,
          { hint: "run `arbor policy explain` on the server, or read each case's reason above" },
        );
      }
    });

  policy
    .command("explain")
    .description(
      "decide a request against the server's policies without acting, and say which policies decided it",
    )
    .requiredOption(
      "--principal <id>",
      "an operator token id (opt_...) or service principal id (svc_...)",
    )
    .requiredOption(
      "--action <action>",
      "the action, such as key.rotate (see `arbor policy schema`)",
    )
    .option("--key <key>", "the key (path or id) the request acts on")
    .option("--version <n>", "a version of --key, for the version actions", parsePositiveInteger)
    .option("--target <id>", "the operator token or service principal the request acts on")
    .option(
      "--workload",
      "explain a service principal as a workload holding one of its access tokens",
    )
    .action(
      async (
        options: {
          principal: string;
          action: string;
          key?: string;
          version?: number;
          target?: string;
          workload?: boolean;
        },
        command: Command,
      ) => {
        const { out, client } = contextOf(command);
        const response = await client().get<Explanation>("/v1/explain", {
          principal: options.principal,
          action: options.action,
          key: options.key,
          version: options.version === undefined ? undefined : String(options.version),
          target: options.target,
          workload: options.workload === true ? "true" : undefined,
        });
        out.result(response, () => describeExplanation(response));
      },
    );

  policy
    .command("grant")
    .description(
      "grant a principal a role, or break-glass access to one environment until an expiry",
    )
    .requiredOption(
      "--principal <id>",
      "an operator token id (opt_...) or service principal id (svc_...)",
    )
    .option("--role <role>", "a built-in role (such as auditor) or a role your policies name")
    .option(
      "--break-glass <scope>",
      "ENV or ENV/TENANT to reach outside the principal's scope; every use is audited",
    )
    .option(
      "--ttl <duration>",
      "how long the grant lasts, such as 1h; required for --break-glass, at most 24h",
      parseDurationText,
    )
    .requiredOption("--reason <text>", "why the grant exists; recorded in the audit log")
    .action(
      async (
        options: {
          principal: string;
          role?: string;
          breakGlass?: string;
          ttl?: string;
          reason: string;
        },
        command: Command,
      ) => {
        const { out, client } = contextOf(command);
        if ((options.role === undefined) === (options.breakGlass === undefined)) {
          throw usageError("give exactly one of --role and --break-glass");
        }
        const breakGlass =
          options.breakGlass === undefined ? undefined : parseBreakGlassScope(options.breakGlass);
        const grant = await client().post<Grant>("/v1/grants", {
          principal: options.principal,
          reason: options.reason,
          ...(options.role === undefined ? {} : { role: options.role }),
          ...(breakGlass === undefined ? {} : { breakGlass }),
          ...(options.ttl === undefined ? {} : { ttl: options.ttl }),
        });
        out.result(grant, () => describeGrant(grant));
      },
    );

  policy
    .command("grants")
    .description("list every grant, including expired and revoked ones")
    .action(async (_options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const response = await client().get<{ grants: Grant[] }>("/v1/grants");
      out.result(response, () =>
        response.grants.length === 0
          ? "No grants."
          : formatTable([
              ["ID", "PRINCIPAL", "GRANT", "EXPIRES", "REVOKED", "REASON"],
              ...response.grants.map((g) => [
                g.id,
                g.principal,
                grantLabel(g),
                g.expiresAt,
                g.revokedAt,
                g.reason,
              ]),
            ]),
      );
    });

  policy
    .command("revoke-grant")
    .description("revoke a grant at once")
    .argument("<id>", "the grant id (grt_...)")
    .action(async (id: string, _options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const grant = await client().delete<Grant>(`/v1/grants/${encodeURIComponent(id)}`);
      out.result(grant, () => `Revoked ${grant.id} at ${grant.revokedAt ?? "an unknown time"}.`);
    });

  policy
    .command("schema")
    .description("print the Cedar schema every policy and request is validated against")
    .action((_options: unknown, command: Command) => {
      const { out } = contextOf(command);
      out.result({ schema: SCHEMA_TEXT }, () => SCHEMA_TEXT);
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parseBreakGlassScope(text: string): { environment: string; tenant?: string } {
  const [environment, tenant, extra] = text.split("/");
  if (environment === undefined || environment === "" || extra !== undefined) {
    throw usageError(`invalid --break-glass ${JSON.stringify(text)}: write ENV or ENV/TENANT`);
  }
  return tenant === undefined ? { environment } : { environment, tenant };
}

async function readText(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new CliError("FILE_ERROR", `cannot read ${file} (${reason})`, {
      hint: "check the path and its permissions",
      cause: error,
    });
  }
  if (Buffer.byteLength(text, "utf8") > MAX_FILE_BYTES) {
    throw new CliError("FILE_ERROR", `${file} is larger than ${MAX_FILE_BYTES} bytes`);
  }
  return text;
}

async function readPolicyFile(file: string): Promise<StoredPolicyDocument> {
  // Names follow the server's rule, so ids in the results match what `explain` shows after apply.
  const name = basename(file, extname(file))
    .toLowerCase()
    .replace(/[^a-z0-9_.-]/g, "-");
  return { name, version: 1, text: await readText(file) };
}

async function readCases(file: string): Promise<{ policies: string[]; cases: PolicyCase[] }> {
  const document = parseDocument(await readText(file), { uniqueKeys: true });
  const [first] = document.errors;
  if (first !== undefined) {
    const position = first.linePos?.[0];
    const where = position === undefined ? "" : ` at line ${position.line}, column ${position.col}`;
    throw new CliError(
      "FILE_ERROR",
      `invalid YAML in ${file}${where}: ${first.message.split("\n")[0]}`,
    );
  }
  const parsed = document.toJS() as { policies?: unknown; cases?: unknown } | null;
  const policies = parsed?.policies ?? [];
  const cases = parsed?.cases;
  if (!Array.isArray(policies) || !policies.every((entry) => typeof entry === "string")) {
    throw new CliError("FILE_ERROR", `${file}: policies must be a list of Cedar file paths`);
  }
  if (!Array.isArray(cases) || cases.length === 0) {
    throw new CliError("FILE_ERROR", `${file}: cases must be a non-empty list`, {
      hint: "see docs/policy.md for the test file format",
    });
  }
  for (const [index, entry] of cases.entries()) {
    const candidate = entry as Partial<PolicyCase> | null;
    if (
      candidate === null ||
      typeof candidate.action !== "string" ||
      typeof candidate.principal !== "object" ||
      typeof candidate.resource !== "object" ||
      (candidate.expect !== "allow" && candidate.expect !== "deny")
    ) {
      throw new CliError(
        "FILE_ERROR",
        `${file}: case ${index + 1} needs principal, action, resource and expect (allow or deny)`,
        { hint: "see docs/policy.md for the test file format" },
      );
    }
  }
  return { policies, cases: cases as PolicyCase[] };
}

function describeResults(results: readonly CaseResult[]): string {
  const failed = results.filter((result) => !result.passed).length;
  return [
    formatTable([
      ["RESULT", "CASE", "EXPECTED", "ACTUAL", "WHY"],
      ...results.map((r) => [r.passed ? "pass" : "FAIL", r.name, r.expected, r.actual, r.summary]),
    ]),
    "",
    `${results.length - failed} passed, ${failed} failed.`,
  ].join("\n");
}

function describeExplanation(explanation: Explanation): string {
  const lines = [`${explanation.decision}: ${explanation.summary}`];
  for (const policy of explanation.policies) {
    const origin =
      policy.source === "builtin" ? "built-in" : `${policy.name} version ${policy.version}`;
    lines.push(`  ${policy.id} (${origin})${policy.reason === null ? "" : `: ${policy.reason}`}`);
  }
  for (const error of explanation.errors) lines.push(`  error: ${error}`);
  return lines.join("\n");
}

function grantLabel(grant: Grant): string {
  return grant.kind === "role"
    ? `role ${grant.role ?? ""}`
    : `break-glass ${grant.environment ?? ""}/${grant.tenant ?? ""}`;
}

function describeGrant(grant: Grant): string {
  return formatFields([
    ["id", grant.id],
    ["principal", grant.principal],
    ["grant", grantLabel(grant)],
    ["expires", grant.expiresAt ?? "never"],
    ["reason", grant.reason],
  ]);
}
