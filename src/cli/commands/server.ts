import { Option, type Command } from "commander";
import type { Logger } from "pino";

import { LOG_LEVELS, loadConfig, type ConfigFlags } from "../../config/index.ts";
import type { SealStatus } from "../api-types.ts";
import { ArborClient } from "../client.ts";
import { startServer, waitForShutdownSignal } from "../foreground.ts";

interface ServerOptions {
  config?: string;
  listen?: string;
  externalAddress?: string;
  storagePath?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  logLevel?: string;
  allowInsecureListen?: boolean;
}

/** Registers `arbor server`. */
export function registerServerCommand(program: Command): void {
  program
    .command("server")
    .description(
      "run an Arbor server in the foreground until SIGINT or SIGTERM; settings come from flags, then ARBOR_* variables, then the file",
    )
    .option(
      "--config <file>",
      "the YAML configuration file, such as arbor.yaml (none is read when omitted)",
    )
    .option("--listen <host:port>", "address to listen on (default 127.0.0.1:8200)")
    .option("--external-address <url>", "base URL clients use to reach this server")
    .option("--storage-path <file>", "SQLite database file (default ./arbor.db)")
    .option("--tls-cert-file <file>", "PEM certificate chain for HTTPS")
    .option("--tls-key-file <file>", "PEM private key for HTTPS")
    .addOption(new Option("--log-level <level>", "log level (default info)").choices(LOG_LEVELS))
    .option(
      "--allow-insecure-listen",
      "allow listening beyond loopback without TLS, behind a TLS proxy",
    )
    .action(async (options: ServerOptions) => {
      const config = await loadConfig({
        ...(options.config === undefined ? {} : { file: options.config }),
        env: process.env,
        flags: configFlags(options),
      });
      // Loaded here so that client commands do not load the logging library.
      const { createLogger } = await import("../../server/logger.ts");
      const logger = createLogger({ level: config.logLevel });
      // The composition root logs the address it listens on and when it has stopped.
      const running = await startServer(config, logger);
      await logNextStep(running.address, logger);

      const signal = await waitForShutdownSignal();
      logger.info({ signal }, "stopping Arbor");
      await running.close();
    });
}

function configFlags(options: ServerOptions): Partial<ConfigFlags> {
  const flags: Partial<ConfigFlags> = {};
  if (options.listen !== undefined) flags.listen = options.listen;
  if (options.externalAddress !== undefined) flags.externalAddress = options.externalAddress;
  if (options.storagePath !== undefined) flags.storagePath = options.storagePath;
  if (options.tlsCertFile !== undefined) flags.tlsCertFile = options.tlsCertFile;
  if (options.tlsKeyFile !== undefined) flags.tlsKeyFile = options.tlsKeyFile;
  if (options.logLevel !== undefined) flags.logLevel = options.logLevel;
  if (options.allowInsecureListen === true) flags.allowInsecureListen = true;
  return flags;
}

/** Logs what an operator has to do before the server can serve keys. */
async function logNextStep(address: string, logger: Logger): Promise<void> {
  try {
    const status = await new ArborClient({ addr: address, token: undefined }).get<SealStatus>(
      "/v1/sys/seal-status",
    );
    if (!status.initialized) logger.warn("Arbor is not initialised: run `arbor init`");
    else if (status.sealed)
      logger.warn("Arbor is sealed: run `arbor unseal` (once per share, or once with the HSM PIN)");
  } catch (error) {
    logger.warn({ err: error }, "cannot read the seal status of the new server");
  }
}
