import type { Command } from "commander";

import { ArborClient, resolveClientSettings } from "./client.ts";
import { Output } from "./output.ts";

/** Options every command accepts, before or after its name. */
export interface GlobalOptions {
  addr?: string;
  token?: string;
  json?: boolean;
}

/** The output of a command action and, for commands that call the server, a client factory. */
export interface CommandContext {
  out: Output;
  /** Builds the client from the flags and the environment; throws a usage error for a bad address. */
  client: () => ArborClient;
}

/** Reads the global options of the command being run. */
export function globalsOf(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

export function contextOf(command: Command, env: NodeJS.ProcessEnv = process.env): CommandContext {
  const globals = globalsOf(command);
  return {
    out: new Output(globals.json === true),
    client: () => new ArborClient(resolveClientSettings(globals, env)),
  };
}
