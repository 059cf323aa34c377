import type { Command } from "commander";

import type { InitResponse, SealStatus, UnsealResponse } from "../api-types.ts";
import type { ArborClient } from "../client.ts";
import { CliError, usageError } from "../errors.ts";
import { contextOf } from "../context.ts";
import { formatFields } from "../output.ts";
import { parsePositiveInteger } from "../parsers.ts";
import { isInteractive, readHiddenLine, readStdinText } from "../prompt.ts";

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
    .action(async (options: { shares?: number; threshold?: number }, command: Command) => {
      const { out, client } = contextOf(command);
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
    .action(async (shareArgument: string | undefined, _options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const share = (shareArgument ?? (await readShare())).trim();
      if (share === "")
        throw usageError(
          "no unseal share given",
          "pass the share as an argument or on standard input",
        );

      const api = client();
      const response = await submitUnsealShare(api, share);
      out.result(response, () => describeUnseal(response));
    });

  program
    .command("seal")
    .description("seal the server: zero the root and every cached key until it is unsealed again")
    .action(async (_options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const response = await client().post<{ sealed: boolean }>("/v1/sys/seal");
      out.result(response, () => "Arbor is sealed. Unseal it with `arbor unseal`, once per share.");
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
  if (status.nonce !== null && status.threshold !== null) {
    fields.push(["unseal progress", `${status.progress} of ${status.threshold} shares`]);
  }
  const lines = [formatFields(fields)];
  if (!status.initialized) lines.push("", "Next: run `arbor init`.");
  else if (status.sealed) lines.push("", "Next: run `arbor unseal`, once per share.");
  return lines.join("\n");
}
