import { readFile } from "node:fs/promises";

import type { Command } from "commander";
import { parseDocument } from "yaml";

import type { ApplyResponse } from "../api-types.ts";
import type { ArborClient } from "../client.ts";
import { contextOf } from "../context.ts";
import { CliError } from "../errors.ts";
import { readStdinText } from "../prompt.ts";

/** Largest hierarchy file read from standard input, in bytes. */
const MAX_STDIN_HIERARCHY_BYTES = 16 * 1024 * 1024;

/** Registers `arbor apply`. */
export function registerApplyCommand(program: Command): void {
  program
    .command("apply")
    .description("create the keys a hierarchy file lists that do not exist yet, and report drift")
    .argument("<file>", "the hierarchy file (YAML, apiVersion arbor/v1); - reads standard input")
    .option("--dry-run", "only show the plan and the drift; create nothing")
    .action(async (file: string, options: { dryRun?: boolean }, command: Command) => {
      const { out, client } = contextOf(command);
      const api = client();
      const document = await readHierarchyFile(file);
      const response = await applyDocument(api, document, options.dryRun === true);
      out.result(response, () => describeApply(response, options.dryRun === true));
    });
}

/** Reads and parses a hierarchy file; YAML errors name the file, line and column. */
export async function readHierarchyFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text =
      file === "-"
        ? await readStdinText(MAX_STDIN_HIERARCHY_BYTES, "a hierarchy file")
        : await readFile(file, "utf8");
  } catch (error) {
    if (error instanceof CliError) throw error;
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new CliError("FILE_ERROR", `cannot read ${file} (${reason})`, {
      hint: "check the path and its permissions",
      cause: error,
    });
  }

  const document = parseDocument(text, { uniqueKeys: true });
  const [first] = document.errors;
  if (first !== undefined) {
    const position = first.linePos?.[0];
    const where = position === undefined ? "" : ` at line ${position.line}, column ${position.col}`;
    const reason = first.message.split("\n")[0] ?? first.code;
    throw new CliError("FILE_ERROR", `invalid YAML in ${file}${where}: ${reason}`, {
      hint: "fix the YAML syntax and run the command again",
    });
  }
  return document.toJS() as unknown;
}

export function applyDocument(
  client: ArborClient,
  document: unknown,
  dryRun: boolean,
): Promise<ApplyResponse> {
  return client.post<ApplyResponse>("/v1/apply", { document, dryRun });
}

/** Paths created by an apply: the server's list when it sends one, otherwise the plan if applied. */
export function createdPaths(response: ApplyResponse, dryRun: boolean): string[] {
  if (response.created !== undefined) return response.created;
  if (dryRun || response.applied === false) return [];
  return response.plan.filter((step) => step.action === "create").map((step) => step.path);
}

function describeApply(response: ApplyResponse, dryRun: boolean): string {
  const lines: string[] = [];
  if (response.plan.length === 0) {
    lines.push("Plan: nothing to create; every key in the file exists.");
  } else {
    lines.push(
      `Plan: ${response.plan.length} ${response.plan.length === 1 ? "key" : "keys"} to create`,
    );
    for (const step of response.plan)
      lines.push(`  + ${step.action} ${step.path}${planDetails(step)}`);
  }

  if (response.drift.length > 0) {
    lines.push(
      "",
      `Drift: ${response.drift.length} ${response.drift.length === 1 ? "difference" : "differences"} (never changed by apply)`,
    );
    for (const drift of response.drift)
      lines.push(`  ~ ${drift.path ?? "?"}: ${drift.reason ?? JSON.stringify(drift)}`);
  }

  lines.push("");
  if (dryRun) {
    lines.push("Dry run: nothing was created. Run again without --dry-run to apply the plan.");
  } else {
    const created = createdPaths(response, dryRun);
    lines.push(
      created.length === 0
        ? "No changes."
        : `Created ${created.length} ${created.length === 1 ? "key" : "keys"}.`,
    );
  }
  return lines.join("\n");
}

function planDetails(step: Record<string, unknown>): string {
  const details = ["algorithm", "mode", "rotation"]
    .map((field) => step[field])
    .filter((value): value is string => typeof value === "string" && value !== "");
  return details.length === 0 ? "" : `  (${details.join(", ")})`;
}
