import { mkdir, open, readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { Option, type Command } from "commander";

import { LOG_LEVELS, loadConfig, type ArborConfig } from "../../config/index.ts";
import type { InitResponse, Key, SealStatus } from "../api-types.ts";
import { ArborClient } from "../client.ts";
import { contextOf } from "../context.ts";
import { CliError } from "../errors.ts";
import { fileError } from "../files.ts";
import { startServer, waitForShutdownSignal, type RunningServer } from "../foreground.ts";
import type { Output } from "../output.ts";
import { parsePort } from "../parsers.ts";
import { applyDocument, createdPaths, readHierarchyFile } from "./apply.ts";
import { submitUnsealShare } from "./sys.ts";

const DEFAULT_DATA_DIR = ".arbor-dev";
const DEFAULT_PORT = 8200;
const CREDENTIALS_FILE = "dev-credentials.json";
const EXAMPLE_HIERARCHY = fileURLToPath(
  new URL("../../../examples/hierarchy.yaml", import.meta.url),
);

const DEV_WARNING =
  "development only: the unseal shares and the root token are stored unencrypted next to the data";

/** Credentials `arbor dev` stores next to the database so that a restart can unseal by itself. */
interface DevCredentials {
  warning: string;
  shares: string[];
  threshold: number;
  rootToken: string;
  rootTokenId: string | null;
  createdAt: string;
}

interface DevOptions {
  dataDir: string;
  port: number;
  logLevel: string;
}

/** Summary of one start, printed in the banner. */
interface DevStart {
  address: string;
  dataDir: string;
  credentialsFile: string;
  initialized: boolean;
  created: string[];
  keys: number;
}

/** Registers `arbor dev`. */
export function registerDevCommand(program: Command): void {
  program
    .command("dev")
    .description(
      "run a development server: initialised, unsealed and loaded with examples/hierarchy.yaml; never for real keys",
    )
    .option(
      "--data-dir <dir>",
      "directory of the SQLite database and the credentials file",
      DEFAULT_DATA_DIR,
    )
    .option("--port <n>", "port on 127.0.0.1; 0 picks a free one", parsePort, DEFAULT_PORT)
    .addOption(
      new Option("--log-level <level>", "server log level; logs go to standard error")
        .choices(LOG_LEVELS)
        .default("warn"),
    )
    .action(async (options: DevOptions, command: Command) => {
      const { out } = contextOf(command);
      const dataDir = resolve(options.dataDir);
      await mkdir(dataDir, { recursive: true, mode: 0o700 }).catch((error: unknown) => {
        throw fileError(`cannot create ${dataDir}`, error);
      });

      const config = await loadConfig({
        // The environment is ignored on purpose: a development server must not pick up the
        // TLS files or storage path of a real deployment from ARBOR_* variables.
        env: {},
        flags: {
          listen: `127.0.0.1:${options.port}`,
          storagePath: join(dataDir, "arbor.db"),
          logLevel: options.logLevel,
        },
      });
      const { createLogger } = await import("../../server/logger.ts");
      const { pino } = await import("pino");
      const logger = createLogger({
        level: config.logLevel,
        destination: pino.destination({ dest: 2, sync: true }),
      });

      const running = await startServer(config, logger);
      let start: DevStart;
      try {
        start = await prepare(running, dataDir, config);
      } catch (error) {
        await running.close();
        throw error;
      }
      printBanner(out, start);

      await waitForShutdownSignal();
      out.warn("Stopping Arbor...");
      await running.close();
    });
}

/** Initialises or unseals the server and loads the example hierarchy into an empty tree. */
async function prepare(
  running: RunningServer,
  dataDir: string,
  config: ArborConfig,
): Promise<DevStart> {
  const credentialsFile = join(dataDir, CREDENTIALS_FILE);
  const anonymous = new ArborClient({ addr: running.address, token: undefined });
  const status = await anonymous.get<SealStatus>("/v1/sys/seal-status");

  let credentials: DevCredentials;
  if (!status.initialized) {
    credentials = await initialize(anonymous, credentialsFile, config);
  } else {
    credentials = await readCredentials(credentialsFile, dataDir);
  }

  // Submitting stops at the threshold; a root that is already unsealed takes no share.
  for (const share of credentials.shares) {
    const response = await submitUnsealShare(anonymous, share);
    if (!response.sealed) break;
  }

  const client = new ArborClient({ addr: running.address, token: credentials.rootToken });
  const { keys } = await client.get<{ keys: Key[] }>("/v1/keys");
  let created: string[] = [];
  if (keys.length === 0) {
    const document = await readHierarchyFile(EXAMPLE_HIERARCHY);
    created = createdPaths(await applyDocument(client, document, false), false);
  }

  return {
    address: running.address,
    dataDir,
    credentialsFile,
    initialized: !status.initialized,
    created,
    keys: keys.length + created.length,
  };
}

async function initialize(
  client: ArborClient,
  credentialsFile: string,
  config: ArborConfig,
): Promise<DevCredentials> {
  const existing = await stat(credentialsFile).catch(() => null);
  if (existing !== null) {
    throw new CliError(
      "FILE_ERROR",
      `${credentialsFile} exists, but the database next to it is not initialised, so the file belongs to other data`,
      { hint: "delete the credentials file to start over, or pass another --data-dir" },
    );
  }

  const response = await client.post<InitResponse>("/v1/sys/init", {
    shares: config.root.shares,
    threshold: config.root.threshold,
  });
  const credentials: DevCredentials = {
    warning: DEV_WARNING,
    shares: response.shares,
    threshold: response.threshold,
    rootToken: response.rootToken,
    rootTokenId: response.rootTokenId ?? null,
    createdAt: new Date().toISOString(),
  };
  await writeCredentials(credentialsFile, credentials);
  return credentials;
}

/**
 * Writes the credentials to a new file created with mode 0600, so it is never readable by other
 * users, not even between its creation and a later chmod. Fails if the file exists.
 */
async function writeCredentials(file: string, credentials: DevCredentials): Promise<void> {
  try {
    const handle = await open(file, "wx", 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(credentials, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    const failure = fileError(`cannot write the development credentials to ${file}`, error);
    throw new CliError(failure.code, failure.message, {
      hint: "the server was initialised but its shares are lost: delete the data directory and start again",
      cause: error,
    });
  }
}

async function readCredentials(file: string, dataDir: string): Promise<DevCredentials> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const failure = fileError(`cannot read ${file}`, error);
    throw new CliError(
      failure.code,
      `the data in ${dataDir} is initialised, but ${failure.message}`,
      {
        hint: "unseal it by hand with `arbor unseal`, or delete the data directory to start over",
        cause: error,
      },
    );
  }

  let parsed: Partial<DevCredentials> | null;
  try {
    parsed = JSON.parse(text) as Partial<DevCredentials> | null;
  } catch {
    parsed = null;
  }
  if (
    parsed === null ||
    typeof parsed !== "object" ||
    !Array.isArray(parsed.shares) ||
    !parsed.shares.every((share) => typeof share === "string") ||
    typeof parsed.rootToken !== "string"
  ) {
    throw new CliError("FILE_ERROR", `${file} does not contain shares and a root token`, {
      hint: "restore the file, or delete the data directory to start over",
    });
  }
  return parsed as DevCredentials;
}

/** Quotes text for a POSIX shell, so a path with spaces or quotes survives copy and paste. */
function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

function printBanner(out: Output, start: DevStart): void {
  out.result(
    {
      address: start.address,
      dataDir: start.dataDir,
      credentialsFile: start.credentialsFile,
      initialized: start.initialized,
      created: start.created,
      keys: start.keys,
      warning: DEV_WARNING,
    },
    () => describeStart(start),
  );
}

function describeStart(start: DevStart): string {
  const tokenExpression = `require(${JSON.stringify(start.credentialsFile)}).rootToken`;
  const rule = "=".repeat(78);
  const what = start.initialized
    ? "Initialised a new root, unsealed it"
    : `Reused the data in ${start.dataDir}, unsealed it with the stored shares`;
  const loaded =
    start.created.length > 0
      ? `, and applied examples/hierarchy.yaml (${start.created.length} keys created).`
      : ` (${start.keys} keys).`;
  return [
    rule,
    "  ARBOR DEVELOPMENT SERVER: NEVER USE IT FOR REAL KEYS OR DATA",
    "  The unseal shares and the root token are stored UNENCRYPTED in",
    `  ${start.credentialsFile}`,
    "  next to the data: anyone who can read that directory can decrypt everything.",
    rule,
    "",
    `Arbor is listening on ${start.address}.`,
    `${what}${loaded}`,
    "",
    "Point the CLI at it from another shell:",
    "",
    `  export ARBOR_ADDR=${start.address}`,
    `  export ARBOR_TOKEN="$(node -p ${shellQuote(tokenExpression)})"`,
    "",
    "Then try:",
    "",
    "  npx arbor key tree",
    "  echo hello | npx arbor encrypt --key prod/acme/billing:encrypt | npx arbor decrypt",
    "",
    "Press Ctrl-C to stop.",
  ].join("\n");
}
