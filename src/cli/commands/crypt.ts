import type { Readable, Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";

import type { Command } from "commander";

import { zeroize } from "../../crypto/index.ts";
import { wrappedDataKeyFromText, wrappedDataKeyToText } from "../../envelope/data-key.ts";
import {
  createDecryptStream,
  createEncryptStream,
  type EncryptionContext,
} from "../../envelope/index.ts";
import type { DataKeyResponse, DecryptedDataKeyResponse } from "../api-types.ts";
import { keyRoute, type ArborClient } from "../client.ts";
import { contextOf } from "../context.ts";
import { CliError, toCliError, usageError } from "../errors.ts";
import {
  ByteCounter,
  fileError,
  inputSource,
  outputTarget,
  startProgress,
  withSignalCleanup,
  type InputSource,
  type OutputTarget,
} from "../files.ts";
import type { Output } from "../output.ts";
import { collectContext } from "../parsers.ts";

/** Size of a plaintext data key in bytes (AES-256). */
const DATA_KEY_BYTES = 32;

/** Ciphertext files are not secret; plaintext files are created readable by their owner only. */
const CIPHERTEXT_FILE_MODE = 0o666;
const PLAINTEXT_FILE_MODE = 0o600;

interface EncryptOptions {
  key: string;
  context?: Record<string, string>;
  output?: string;
}

interface DecryptOptions {
  context?: Record<string, string>;
  output?: string;
}

/** Registers `arbor encrypt` and `arbor decrypt`. */
export function registerCryptCommands(program: Command): void {
  program
    .command("encrypt")
    .description(
      "encrypt a file or standard input locally with a fresh data key from Arbor (envelope format v1)",
    )
    .argument("[file]", "the plaintext file; standard input when omitted or -")
    .requiredOption(
      "--key <path>",
      "the encrypt key, as a path (such as prod/acme/billing:encrypt) or an id",
    )
    .option(
      "--context <key=value>",
      "an encryption context entry, bound to the ciphertext and needed to decrypt; repeat for more entries",
      collectContext,
    )
    .option("--output <file>", "write the ciphertext here instead of standard output")
    .action(async (file: string | undefined, options: EncryptOptions, command: Command) => {
      const { out, client } = contextOf(command);
      await encrypt(client(), out, file, options);
    });

  program
    .command("decrypt")
    .description("decrypt a file or standard input that `arbor encrypt` produced")
    .argument("[file]", "the ciphertext file; standard input when omitted or -")
    .option(
      "--context <key=value>",
      "an expected encryption context entry; when given, the entries must equal those used to encrypt",
      collectContext,
    )
    .option(
      "--output <file>",
      "write the plaintext here (it appears only after the whole input verified) instead of standard output",
    )
    .action(async (file: string | undefined, options: DecryptOptions, command: Command) => {
      const { out, client } = contextOf(command);
      await decrypt(client(), out, file, options);
    });
}

async function encrypt(
  client: ArborClient,
  out: Output,
  file: string | undefined,
  options: EncryptOptions,
): Promise<void> {
  const context = options.context ?? {};
  if ((options.output === undefined || options.output === "-") && process.stdout.isTTY === true) {
    throw usageError(
      "refusing to write binary ciphertext to a terminal",
      "pass --output FILE, or redirect standard output to a file or a pipe",
    );
  }
  const input = await inputSource(file);
  // The output is opened first, so an unusable destination fails before a data key is issued.
  const output = await outputTarget(options.output, CIPHERTEXT_FILE_MODE);

  let response: DataKeyResponse;
  let encryptor: Transform;
  try {
    response = await client.post<DataKeyResponse>(keyRoute(options.key, "/data-key"), { context });
    encryptor = startEncryption(response, context);
  } catch (error) {
    await output.abort();
    throw error;
  }
  const result = await transformData(input, encryptor, output, out, "encrypting");

  if (output.toStdout) return;
  out.result(
    {
      output: output.name,
      keyId: response.keyId,
      keyVersion: response.keyVersion,
      context,
      plaintextBytes: result.bytesIn,
      ciphertextBytes: result.bytesOut,
    },
    () =>
      `Encrypted ${input.name} (${result.bytesIn} bytes) to ${output.name} with ${options.key} ` +
      `(${response.keyId} version ${response.keyVersion}).`,
  );
}

/** Creates the encrypting stream and zeroes the plaintext data key, which the stream has copied. */
function startEncryption(response: DataKeyResponse, context: EncryptionContext): Transform {
  const dataKey = decodeDataKey(response.plaintext);
  try {
    return createEncryptStream({
      dataKey,
      keyId: response.keyId,
      keyVersion: response.keyVersion,
      wrappedDataKey: wrappedDataKeyFromText(response.wrappedDataKey),
      context,
    });
  } finally {
    zeroize(dataKey);
  }
}

async function decrypt(
  client: ArborClient,
  out: Output,
  file: string | undefined,
  options: DecryptOptions,
): Promise<void> {
  const input = await inputSource(file);
  const output = await outputTarget(options.output, PLAINTEXT_FILE_MODE);
  // The header is not authenticated when this runs. When the caller gave a context, the server
  // unwraps with that one, so any difference from the context bound at encryption fails there.
  const decryptor = createDecryptStream(async (header) => {
    const response = await client.post<DecryptedDataKeyResponse>("/v1/data-key/decrypt", {
      wrappedDataKey: wrappedDataKeyToText(header.wrappedDataKey),
      context: options.context ?? header.context,
    });
    return decodeDataKey(response.plaintext);
  });

  const result = await transformData(input, decryptor, output, out, "decrypting");

  const header = decryptor.header;
  if (output.toStdout || header === undefined) return;
  out.result(
    {
      output: output.name,
      keyId: header.keyId,
      keyVersion: header.keyVersion,
      context: header.context,
      plaintextBytes: result.bytesOut,
    },
    () =>
      `Decrypted ${input.name} to ${output.name} (${result.bytesOut} bytes, ` +
      `${header.keyId} version ${header.keyVersion}${describeContext(header.context)}).`,
  );
}

function describeContext(context: EncryptionContext): string {
  const entries = Object.entries(context);
  if (entries.length === 0) return "";
  return `, context ${entries.map(([key, value]) => `${key}=${value}`).join(" ")}`;
}

/**
 * Decodes a base64 data key into a fresh buffer and zeroes the decoded copy, which may sit in
 * Node's shared buffer pool. The base64 string itself cannot be wiped, since strings are immutable.
 */
function decodeDataKey(base64: string): Uint8Array {
  const decoded = Buffer.from(base64, "base64");
  try {
    if (decoded.length !== DATA_KEY_BYTES) {
      throw new CliError(
        "INVALID_RESPONSE",
        `the server returned a data key of ${decoded.length} bytes instead of ${DATA_KEY_BYTES}`,
        { hint: "check that ARBOR_ADDR or --addr points at an Arbor server" },
      );
    }
    return new Uint8Array(decoded);
  } finally {
    zeroize(decoded);
  }
}

interface TransformResult {
  bytesIn: number;
  bytesOut: number;
}

/**
 * Streams `input` through `transform` into the output in constant memory. A file output is
 * written to a temporary file and renamed into place only after the whole stream succeeded, so
 * a failure (such as a truncated or modified ciphertext) never leaves a partial file behind.
 */
async function transformData(
  input: InputSource,
  transform: Transform,
  output: OutputTarget,
  out: Output,
  progressLabel: string,
): Promise<TransformResult> {
  const progress = startProgress(progressLabel, input.size, out.json);
  const counterIn = new ByteCounter((bytes) => progress.update(bytes));
  const counterOut = new ByteCounter();

  try {
    await withSignalCleanup(
      () => output.abort(),
      async () => {
        const stages: [Readable, ...Array<Transform | Writable>] = [
          input.open(),
          counterIn,
          transform,
          counterOut,
          output.stream,
        ];
        await pipeline(stages, { end: !output.toStdout });
      },
    );
    progress.stop();
    await output.commit();
  } catch (error) {
    progress.stop();
    await output.abort();
    if (output.toStdout && counterOut.bytes > 0) {
      out.warn(
        `warning: ${counterOut.bytes} bytes were written to standard output before the failure; discard them`,
      );
    }
    throw streamFailure(error, input);
  }
  return { bytesIn: counterIn.bytes, bytesOut: counterOut.bytes };
}

function streamFailure(error: unknown, input: InputSource): unknown {
  const known = toCliError(error);
  if (known !== undefined) return known;

  const errno = error as NodeJS.ErrnoException;
  if (errno.code === "EPIPE") {
    return new CliError(
      "FILE_ERROR",
      "standard output was closed before all data was written (EPIPE)",
    );
  }
  if (typeof errno.code === "string" && typeof errno.path === "string") {
    return fileError(
      errno.path === input.name ? `cannot read ${input.name}` : `cannot use ${errno.path}`,
      error,
    );
  }
  return error;
}
