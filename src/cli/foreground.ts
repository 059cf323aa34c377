import type { Logger } from "pino";

import type { ArborConfig } from "../config/index.ts";
import { CliError, EXIT_INTERRUPTED } from "./errors.ts";

/** A started server, as the composition root returns it. */
export interface RunningServer {
  /** Base URL with the port actually bound, such as `http://127.0.0.1:8200`. */
  address: string;
  close(): Promise<void>;
}

/**
 * Starts Arbor through the composition root. The server modules are imported here, not at the
 * top of the CLI, so client commands do not pay for loading them.
 */
export async function startServer(config: ArborConfig, logger: Logger): Promise<RunningServer> {
  const { startArbor } = await import("../server/compose.ts");
  try {
    return await startArbor(config, { logger });
  } catch (error) {
    throw listenError(error, config) ?? error;
  }
}

function listenError(error: unknown, config: ArborConfig): CliError | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const where = `${config.listen.host}:${config.listen.port}`;
  if (code === "EADDRINUSE") {
    return new CliError("CONNECTION_FAILED", `cannot listen on ${where} (address already in use)`, {
      hint: "stop the process that uses the port, or choose another port",
      cause: error,
    });
  }
  if (code === "EACCES" || code === "EADDRNOTAVAIL") {
    return new CliError("CONNECTION_FAILED", `cannot listen on ${where} (${code})`, {
      hint: "choose a port above 1023 and an address of this machine",
      cause: error,
    });
  }
  return undefined;
}

/**
 * Resolves with the first SIGINT or SIGTERM. A second signal while the caller shuts down exits
 * the process at once with code 130, for a user who does not want to wait.
 */
export function waitForShutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.once("SIGINT", () => process.exit(EXIT_INTERRUPTED));
      process.once("SIGTERM", () => process.exit(EXIT_INTERRUPTED));
      resolve(signal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}
