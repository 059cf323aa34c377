import type { Command } from "commander";

import { loadConfig } from "../../config/index.ts";
import { zeroize } from "../../crypto/index.ts";
import { createOperatorTokenService } from "../../operators/index.ts";
import { createPkcs11Root, readConfiguredPin } from "../../root/pkcs11/index.ts";
import { createLogger } from "../../server/logger.ts";
import { openStorage } from "../../storage/index.ts";
import { systemClock } from "../../clock.ts";
import type { ArborClient } from "../client.ts";
import { contextOf } from "../context.ts";
import { usageError } from "../errors.ts";
import { startProgress, type Progress } from "../files.ts";
import { formatFields } from "../output.ts";
import { isInteractive, readHiddenLine } from "../prompt.ts";

export interface Pkcs11InitOptions {
  config?: string;
  storagePath?: string;
  module?: string;
  tokenLabel?: string;
  keyLabel?: string;
  pinFile?: string;
}

/**
 * `arbor init --root pkcs11`: runs on the machine with the database and reaches the HSM,
 * without a server, because the PIN must not travel over the API. It creates (or adopts) the root
 * key in the token and the root token in storage; a server started afterwards with the same
 * configuration finds both.
 */
export async function initPkcs11Locally(options: Pkcs11InitOptions): Promise<{
  rootToken: string;
  tokenLabel: string;
  keyLabel: string;
  adopted: boolean;
  storagePath: string;
}> {
  const config = await loadConfig({
    ...(options.config === undefined ? {} : { file: options.config }),
    env: process.env,
    flags: {
      rootProvider: "pkcs11",
      ...(options.storagePath === undefined ? {} : { storagePath: options.storagePath }),
      ...(options.module === undefined ? {} : { pkcs11Module: options.module }),
      ...(options.tokenLabel === undefined ? {} : { pkcs11TokenLabel: options.tokenLabel }),
      ...(options.keyLabel === undefined ? {} : { pkcs11KeyLabel: options.keyLabel }),
      ...(options.pinFile === undefined ? {} : { pkcs11PinFile: options.pinFile }),
    },
  });
  if (config.root.provider !== "pkcs11")
    throw new Error("configuration did not select the pkcs11 root");

  const pin =
    (await readConfiguredPin({ env: process.env, pinFile: config.root.pinFile })) ??
    (await promptPin());
  const storage = await openStorage(config.storage);
  const logger = createLogger({ level: "warn", destination: process.stderr });
  const root = await createPkcs11Root({
    store: storage.pkcs11Root,
    clock: systemClock,
    logger,
    modulePath: config.root.modulePath,
    tokenLabel: config.root.tokenLabel,
    keyLabel: config.root.keyLabel,
    pin: { env: process.env, pinFile: config.root.pinFile },
  });
  try {
    const result = await root.initialize({
      pin,
      ...(options.keyLabel === undefined ? {} : { adoptKeyLabel: options.keyLabel }),
    });
    const operators = createOperatorTokenService({ storage, clock: systemClock });
    const { token } = await operators.createRootToken();
    return {
      rootToken: token,
      tokenLabel: result.tokenLabel,
      keyLabel: result.keyLabel,
      adopted: result.adopted,
      storagePath: config.storage.path,
    };
  } finally {
    zeroize(pin);
    root.seal();
    root.close();
    await storage.close();
  }
}

async function promptPin(): Promise<Uint8Array> {
  if (!isInteractive()) {
    throw usageError(
      "no HSM PIN given",
      "set ARBOR_PKCS11_PIN, pass --pin-file, or run on a terminal to be asked for it",
    );
  }
  return new TextEncoder().encode(await readHiddenLine("HSM user PIN (input is hidden): "));
}

/** Reads the PIN for `arbor unseal` against an HSM root: variable, file, or a hidden prompt. */
export async function readUnsealPin(pinFile: string | undefined): Promise<string> {
  const configured = await readConfiguredPin({ env: process.env, pinFile: pinFile ?? null });
  if (configured !== null) {
    const text = new TextDecoder().decode(configured);
    zeroize(configured);
    return text;
  }
  return new TextDecoder().decode(await promptPin());
}

interface RotateAnswer {
  rootVersion: number;
  rotated: boolean;
  rewrapped: number;
  skipped: number;
  disabledVersions: number[];
}

/** Registers `arbor root rotate`. */
export function registerRootCommands(program: Command): void {
  const root = program.command("root").description("manage the root of trust");
  root
    .command("rotate")
    .description(
      "create a new root key version, re-wrap every environment master under it and disable the old one; finishes an interrupted rotation instead when one is pending",
    )
    .action(async (_options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const json = (command.optsWithGlobals<{ json?: boolean }>().json ?? false) === true;
      const api: ArborClient = client();
      out.text("Rotating the root and re-wrapping every environment master...");
      const answer = await withRotationProgress(api, json, () =>
        api.post<RotateAnswer>("/v1/sys/root/rotate"),
      );
      out.result(answer, () =>
        [
          answer.rotated
            ? `Root rotated to version ${answer.rootVersion}.`
            : `Finished the interrupted rotation to version ${answer.rootVersion}.`,
          formatFields([
            ["re-wrapped masters", answer.rewrapped],
            ["already moved", answer.skipped],
            ["disabled root versions", answer.disabledVersions.join(", ") || "none"],
          ]),
        ].join("\n"),
      );
    });
}

/** Polls the server's rotation progress into a progress bar while `work` runs. */
async function withRotationProgress<T>(
  api: ArborClient,
  json: boolean,
  work: () => Promise<T>,
): Promise<T> {
  let bar: Progress | null = null;
  const poll = setInterval(() => {
    void api
      .get<{ running: boolean; done: number; total: number }>("/v1/sys/root/rotation")
      .then((step) => {
        if (step.total === 0) return;
        bar ??= startProgress("re-wrapping masters", step.total, json, (count) => `${count}`);
        bar.update(step.done);
      })
      .catch(() => undefined);
  }, 250);
  try {
    return await work();
  } finally {
    clearInterval(poll);
    (bar as Progress | null)?.stop();
  }
}
