import { readFileSync } from "node:fs";

import { Command, CommanderError } from "commander";

import { registerApplyCommand } from "./commands/apply.ts";
import { registerAuditCommands } from "./commands/audit.ts";
import { registerCryptCommands } from "./commands/crypt.ts";
import { registerDevCommand } from "./commands/dev.ts";
import { registerKeyCommands } from "./commands/keys.ts";
import { registerOperatorCommands } from "./commands/operator.ts";
import { registerPolicyCommands } from "./commands/policy.ts";
import { registerRootCommands } from "./commands/root.ts";
import { registerServerCommand } from "./commands/server.ts";
import { registerServiceCommands } from "./commands/service.ts";
import { registerSysCommands } from "./commands/sys.ts";
import { CliError, EXIT_ERROR, EXIT_OK, EXIT_USAGE, toCliError } from "./errors.ts";
import { Output } from "./output.ts";

function cliVersion(): string {
  const packageFile = new URL("../../package.json", import.meta.url);
  return (JSON.parse(readFileSync(packageFile, "utf8")) as { version: string }).version;
}

/** Builds the `arbor` command with every subcommand registered. */
export function buildProgram(): Command {
  const program = new Command("arbor");
  program
    .description("Operate an Arbor key hierarchy server and encrypt data with its keys.")
    // `--version` is left free for `arbor key disable --version N`. main() still handles it when
    // it is the only argument.
    .version(cliVersion(), "-V", "print the CLI version")
    .option("--addr <url>", "server address (default: $ARBOR_ADDR, else http://127.0.0.1:8200)")
    .option(
      "--token <token>",
      "operator token (default: $ARBOR_TOKEN; prefer the variable, as flags show up in ps)",
    )
    .option("--json", "print results as one line of JSON on standard output")
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .exitOverride()
    // Usage errors are printed by main(), in the same format as every other error.
    .configureOutput({ outputError: () => {} });

  registerDevCommand(program);
  registerServerCommand(program);
  registerSysCommands(program);
  registerRootCommands(program);
  registerKeyCommands(program);
  registerCryptCommands(program);
  registerOperatorCommands(program);
  registerPolicyCommands(program);
  registerServiceCommands(program);
  registerApplyCommand(program);
  registerAuditCommands(program);
  return program;
}

/**
 * Runs the CLI on `argv` (arguments after the script name) and returns the exit code: 0 on
 * success, 1 on a failure, 2 on a usage error, 130 when cancelled at a prompt.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const out = new Output(argv.includes("--json"));
  if (argv.length === 1 && argv[0] === "--version") {
    out.result({ version: cliVersion() }, () => cliVersion());
    return EXIT_OK;
  }

  try {
    await buildProgram().parseAsync(argv, { from: "user" });
    return EXIT_OK;
  } catch (error) {
    return report(error, out);
  }
}

function report(error: unknown, out: Output): number {
  if (error instanceof CommanderError) {
    if (error.code === "commander.helpDisplayed" || error.code === "commander.version")
      return EXIT_OK;
    // Commander already printed the help of a command that needs a subcommand.
    if (error.code === "commander.help") return EXIT_USAGE;
    const message = error.message.replace(/^error: /, "");
    out.error(
      new CliError("USAGE", message, { hint: "see `arbor --help` or `arbor COMMAND --help`" }),
    );
    return EXIT_USAGE;
  }

  const known = toCliError(error);
  if (known !== undefined) {
    out.error(known);
    return known.exitCode;
  }

  const message = error instanceof Error ? error.message : String(error);
  out.error(
    new CliError("UNEXPECTED", `unexpected failure: ${message}`, {
      hint: "this is probably a bug in Arbor; the stack trace follows",
    }),
  );
  if (error instanceof Error && error.stack !== undefined) out.warn(error.stack);
  return EXIT_ERROR;
}
