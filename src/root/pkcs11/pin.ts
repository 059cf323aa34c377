import { readFile } from "node:fs/promises";

import { constantTimeEqual, randomBytes, zeroize } from "../../crypto/index.ts";
import { ArborError } from "../../errors/index.ts";
import type { Ceremony } from "../types.ts";

/** Environment variable that may hold the token's user PIN. */
export const PIN_ENV_VARIABLE = "ARBOR_PKCS11_PIN";

/**
 * PIN sources besides an unseal submission: the `ARBOR_PKCS11_PIN` variable of `env` or a file.
 * Configuration files and command-line flags never carry the PIN itself.
 */
export interface Pkcs11PinSource {
  env?: NodeJS.ProcessEnv;
  /** Path of a file whose content (one trailing line break removed) is the PIN. */
  pinFile?: string | null;
}

/** Longest PIN accepted, in bytes; PKCS#11 modules allow far less (SoftHSM 2.6.1: 255). */
const MAX_PIN_BYTES = 1024;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads the PIN from the configured source and returns a buffer the caller zeroes, or null when
 * neither source is set. Setting both is rejected, so an operator never wonders which one won.
 * NOTE: the environment variable is a JavaScript string, so it stays in memory unzeroed for the
 * life of the process.
 */
export async function readConfiguredPin(source: Pkcs11PinSource): Promise<Uint8Array | null> {
  const fromEnv = source.env?.[PIN_ENV_VARIABLE];
  const hasEnv = fromEnv !== undefined && fromEnv !== "";
  const pinFile = source.pinFile ?? null;

  if (hasEnv && pinFile !== null) {
    throw new ArborError(
      "INVALID_ARGUMENT",
      `both ${PIN_ENV_VARIABLE} and the PIN file ${pinFile} are set: set only one of them`,
      { parameter: "pin_file", value: pinFile },
    );
  }
  if (hasEnv) return checkedPin(new TextEncoder().encode(fromEnv), PIN_ENV_VARIABLE);
  if (pinFile === null) return null;

  let content: Buffer;
  try {
    content = await readFile(pinFile);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? "read error";
    throw new ArborError(
      "INVALID_ARGUMENT",
      `failed to read the PIN file ${pinFile} (${reason}): check the path and its permissions`,
      { parameter: "pin_file", value: pinFile },
      { cause: error },
    );
  }
  try {
    let end = content.length;
    if (end > 0 && content[end - 1] === 0x0a) end -= 1;
    if (end > 0 && content[end - 1] === 0x0d) end -= 1;
    return checkedPin(Uint8Array.from(content.subarray(0, end)), `the PIN file ${pinFile}`);
  } finally {
    zeroize(content);
  }
}

/**
 * Returns `pin` if it can be a PKCS#11 PIN: 1 to 1024 bytes of UTF-8. Otherwise zeroes it and
 * throws INVALID_ARGUMENT naming `origin`, never the PIN.
 */
export function checkedPin(pin: Uint8Array, origin: string): Uint8Array {
  let reason: string | null = null;
  if (pin.length === 0) reason = "it is empty";
  else if (pin.length > MAX_PIN_BYTES) reason = `it is longer than ${MAX_PIN_BYTES} bytes`;
  else if (!isUtf8(pin)) reason = "it is not UTF-8 text";

  if (reason === null) return pin;
  zeroize(pin);
  throw new ArborError("INVALID_ARGUMENT", `invalid PIN from ${origin}: ${reason}`, {
    parameter: "pin",
  });
}

function isUtf8(bytes: Uint8Array): boolean {
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

const NONCE_BYTES = 16;
const textEncoder = new TextEncoder();

/**
 * One PIN unseal ceremony. It is only a random nonce, which a submission must quote, so it
 * reaches the ceremony it was started for. The PIN itself is never stored here.
 */
export class PinCeremony {
  /** Base64url of 16 random bytes. */
  readonly nonce = Buffer.from(randomBytes(NONCE_BYTES)).toString("base64url");
  /** Clock time in milliseconds at which the ceremony started. */
  readonly startedAt: number;

  constructor(now: number) {
    this.startedAt = now;
  }

  matches(nonce: string): boolean {
    return constantTimeEqual(textEncoder.encode(nonce), textEncoder.encode(this.nonce));
  }

  describe(): Ceremony {
    return { nonce: this.nonce, threshold: 1, progress: 0 };
  }
}
