import { createInterface } from "node:readline/promises";

import { CliError, EXIT_INTERRUPTED, usageError } from "./errors.ts";

/** True when both standard input and standard error are terminals, so a prompt can be answered. */
export function isInteractive(): boolean {
  return process.stdin.isTTY === true && process.stderr.isTTY === true;
}

function cancelled(): CliError {
  return new CliError("CANCELLED", "cancelled at the prompt", { exitCode: EXIT_INTERRUPTED });
}

/**
 * Reads one line from the terminal without echoing it, for secrets such as unseal shares. The
 * terminal is in raw mode meanwhile, so Ctrl-C arrives as a byte, and this function cancels the
 * command when it sees one. Backspace removes the last character.
 */
export async function readHiddenLine(prompt: string): Promise<string> {
  const input = process.stdin;
  const output = process.stderr;
  output.write(prompt);
  input.setRawMode(true);
  input.setEncoding("utf8");
  input.resume();

  return new Promise<string>((resolve, reject) => {
    let value = "";
    const finish = (): void => {
      input.off("data", onData);
      input.setRawMode(false);
      input.pause();
      output.write("\n");
    };
    const onData = (chunk: string): void => {
      for (const character of chunk) {
        if (character === "\r" || character === "\n") {
          finish();
          resolve(value);
          return;
        }
        // Ctrl-C, or Ctrl-D on an empty line.
        if (character === "\u0003" || (character === "\u0004" && value === "")) {
          finish();
          reject(cancelled());
          return;
        }
        if (character === "\u007f" || character === "\b") {
          value = value.slice(0, -1);
          continue;
        }
        if (character >= " ") value += character;
      }
    };
    input.on("data", onData);
  });
}

/** Asks a yes/no question on the terminal; only `y` or `yes` confirms. */
export async function confirm(question: string): Promise<boolean> {
  const readline = createInterface({ input: process.stdin, output: process.stderr });
  // On a terminal, readline turns Ctrl-C into this event instead of a signal to the process.
  const interrupt = new AbortController();
  readline.once("SIGINT", () => interrupt.abort());
  try {
    const answer = await readline.question(`${question} [y/N] `, { signal: interrupt.signal });
    return /^(y|yes)$/i.test(answer.trim());
  } catch (error) {
    if (interrupt.signal.aborted) throw cancelled();
    throw error;
  } finally {
    readline.close();
  }
}

/**
 * Reads standard input to its end as UTF-8 text. Input longer than `maxBytes` is rejected, since
 * the callers expect a short secret, not a file.
 */
export async function readStdinText(maxBytes: number, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of process.stdin) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    length += buffer.length;
    if (length > maxBytes) {
      throw usageError(`standard input is longer than ${maxBytes} bytes; expected ${what}`);
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}
