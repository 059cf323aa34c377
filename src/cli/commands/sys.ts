import type { Command } from "commander";

import type { InitResponse, SealStatus, UnsealResponse } from "../api-types.ts";
import type { ArborClient } from "../client.ts";
import { CliError, usageError } from "../errors.ts";
import { contextOf } from "../context.ts";
import { formatFields } from "../output.ts";
import { parsePositiveInteger } from "../parsers.ts";
import { isInteractive, readHiddenLine, readStdinText } from "../prompt.ts";
import { initPkcs11Locally, readUnsealPin, type Pkcs11InitOptions } from "./root.ts";

/** Maximum standard input `arbor unseal` reads, in bytes; a share is under 100 bytes of base64. */
const MAX_SHARE_INPUT_BYTES = 64 * 1024;

/** Registers `init`, `unseal`, `seal` and `status`. */
export function registerSysCommands(program: Command): void {
  program
    .command("init")
    .description("initialise a new server: create the root, its unseal shares and the root token")
    .option(
      "--shares <n>",
      "number of unseal shares to create (server default 5)",
      parsePositiveInteger,
    )
    .option("--threshold <n>", "shares needed to unseal (server default 3)", parsePositiveInteger)
    .option(
      "--root <provider>",
      "root of trust: sealed (default, through the server) or pkcs11 (an HSM, initialised locally next to the database)",
      "sealed",
    )
    .option("--config <file>", "with --root pkcs11: the server's arbor.yaml")
    .option("--storage-path <path>", "with --root pkcs11: the SQLite database of the server")
    .option(
      "--module <path>",
      "with --root pkcs11: the PKCS#11 module, such as /usr/lib/softhsm/libsofthsm2.so",
    )
    .option("--token-label <label>", "with --root pkcs11: the label of the HSM token")
    .option(
      "--key-label <label>",
      "with --root pkcs11: adopt this existing AES key as the root instead of generating one",
    )
    .option(
      "--pin-file <file>",
      "with --root pkcs11: file holding the user PIN (or set ARBOR_PKCS11_PIN)",
    )
    .action(async (options: InitOptions, command: Command) => {
      const { out, client } = contextOf(command);
      if (options.root === "pkcs11") {
        const result = await initPkcs11Locally(options);
        out.result(result, () => describePkcs11Init(result));
        return;
      }
      if (options.root !== "sealed") {
        throw usageError(
          `unknown root provider "${options.root}"`,
          "use --root sealed or --root pkcs11",
        );
      }
      const api = client();
      const response = await api.post<InitResponse>("/v1/sys/init", {
        ...(options.shares === undefined ? {} : { shares: options.shares }),
        ...(options.threshold === undefined ? {} : { threshold: options.threshold }),
      });
      out.result(response, () => describeInit(response, api.address));
    });

  program
    .command("unseal")
    .description(
      "submit one unseal share; run once per share holder until the threshold is reached",
    )
    .argument(
      "[share]",
      "the share as `arbor init` printed it; when omitted it is read from the terminal without echo, or from standard input",
    )
    .option(
      "--pin-file <file>",
      "for an HSM root: file holding the user PIN (or set ARBOR_PKCS11_PIN)",
    )
    .action(
      async (
        shareArgument: string | undefined,
        options: { pinFile?: string },
        command: Command,
      ) => {
        const { out, client } = contextOf(command);
        const api = client();
        const status = await api.get<SealStatus>("/v1/sys/seal-status");
        if (status.provider === "pkcs11") {
          const response = await submitUnsealPin(api, status, await readUnsealPin(options.pinFile));
          out.result(response, () => describeUnseal(response));
          return;
        }
        const share = (shareArgument ?? (await readShare())).trim();
        if (share === "")
          throw usageError(
            "no unseal share given",
            "pass the share as an argument or on standard input",
          );

        const response = await submitUnsealShare(api, share);
        out.result(response, () => describeUnseal(response));
      },
    );

  program
    .command("seal")
    .description("seal the server: zero the root and every cached key until it is unsealed again")
    .action(async (_options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const response = await client().post<{ sealed: boolean }>("/v1/sys/seal");
      out.result(
        response,
        () =>
          "Arbor is sealed. Unseal it with `arbor unseal` (once per share, or once with the HSM PIN).",
      );
    });

  program
    .command("status")
    .description("show whether the server is initialised and sealed, and the unseal progress")
    .action(async (_options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const api = client();
      const status = await api.get<SealStatus>("/v1/sys/seal-status");
      out.result({ address: api.address, ...status }, () => describeStatus(status, api.address));
    });
}

async function readShare(): Promise<string> {
  if (isInteractive()) return readHiddenLine("Unseal share (input is hidden): ");
  return readStdinText(MAX_SHARE_INPUT_BYTES, "one unseal share");
}

/**
 * Submits one share to the unseal ceremony in progress, starting one first when none is. The
 * ceremony nonce comes from the seal status, so a share never lands in a ceremony the caller
 * did not see. Returns `sealed: false` without submitting when the server is already unsealed.
 */
export async function submitUnsealShare(
  client: ArborClient,
  share: string,
): Promise<UnsealResponse> {
  const status = await client.get<SealStatus>("/v1/sys/seal-status");
  if (!status.initialized) {
    throw new CliError("NOT_INITIALIZED", `Arbor at ${client.address} is not initialised`, {
      hint: "run `arbor init` first",
    });
  }
  if (!status.sealed) {
    return { sealed: false, threshold: status.threshold ?? 0, progress: 0, nonce: null };
  }

  const nonce = status.nonce ?? (await client.post<UnsealResponse>("/v1/sys/unseal", {})).nonce;
  return client.post<UnsealResponse>("/v1/sys/unseal", { nonce, share });
}

/** Logs in to the HSM with the PIN through the unseal ceremony. */
async function submitUnsealPin(
  client: ArborClient,
  status: SealStatus,
  pin: string,
): Promise<UnsealResponse> {
  if (!status.initialized) {
    throw new CliError("NOT_INITIALIZED", `Arbor at ${client.address} is not initialised`, {
      hint: "run `arbor init --root pkcs11` next to the database first",
    });
  }
  if (!status.sealed) return { sealed: false, threshold: 1, progress: 0, nonce: null };
  const nonce = status.nonce ?? (await client.post<UnsealResponse>("/v1/sys/unseal", {})).nonce;
  return client.post<UnsealResponse>("/v1/sys/unseal", { nonce, pin });
}

interface InitOptions extends Pkcs11InitOptions {
  shares?: number;
  threshold?: number;
  root: string;
}

function describePkcs11Init(result: Awaited<ReturnType<typeof initPkcs11Locally>>): string {
  return [
    `The root key lives in HSM token "${result.tokenLabel}" as "${result.keyLabel}"${result.adopted ? " (adopted)" : ""}.`,
    `Database: ${result.storagePath}`,
    "",
    `Root token: ${result.rootToken}`,
    "",
    "WARNING: the root token is shown only once. Keep it for emergencies and create scoped tokens",
    "with `arbor operator token create` for daily work.",
    "",
    "Next: start `arbor server` with the same configuration; it unseals with the PIN from",
    "ARBOR_PKCS11_PIN or root.pin_file, or run `arbor unseal` to give it the PIN.",
  ].join("\n");
}

function describeInit(response: InitResponse, address: string): string {
  const lines = [
    `Arbor at ${address} is initialised.`,
    "",
    `Unseal shares (any ${response.threshold} of ${response.shares.length} unseal Arbor):`,
    ...response.shares.map((share, index) => `  ${index + 1}: ${share}`),
    "",
    `Root token: ${response.rootToken}`,
    "",
    "WARNING: these secrets are shown only once and Arbor does not keep them. Give each share to",
    "a different person, store the shares apart, and keep the root token for emergencies: create",
    "scoped tokens with `arbor operator token create` for daily work.",
    "",
    `Next: run \`arbor unseal\` ${response.threshold} times, one share each.`,
  ];
  return lines.join("\n");
}

function describeUnseal(response: UnsealResponse): string {
  if (!response.sealed) return "Arbor is unsealed.";
  const remaining = response.threshold - response.progress;
  return (
    `Share accepted: ${response.progress} of ${response.threshold} submitted. ` +
    `Run \`arbor unseal\` with ${remaining === 1 ? "one more share" : `${remaining} more shares`}.`
  );
}

function describeStatus(status: SealStatus, address: string): string {
  const fields: Array<[string, string | number | null]> = [
    ["address", address],
    ["initialized", status.initialized ? "yes" : "no"],
    ["sealed", status.sealed ? "yes" : "no"],
    ["provider", status.provider],
  ];
  const hsm = status.provider === "pkcs11";
  if (status.nonce !== null && status.threshold !== null && !hsm) {
    fields.push(["unseal progress", `${status.progress} of ${status.threshold} shares`]);
  }
  const lines = [formatFields(fields)];
  if (!status.initialized) lines.push("", "Next: run `arbor init`.");
  else if (status.state === "unavailable") {
    lines.push(
      "",
      "The HSM does not answer: check the token and the module; Arbor reconnects by itself.",
    );
  } else if (status.sealed && hsm)
    lines.push("", "Next: run `arbor unseal` to give it the HSM PIN.");
  else if (status.sealed) lines.push("", "Next: run `arbor unseal`, once per share.");
  return lines.join("\n");
}
