import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

/** A JSON object whose fields the assertions check one by one. */
export type JsonRecord = Record<string, unknown>;

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BIN = fileURLToPath(new URL("../../bin/arbor.js", import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  /** Standard output as UTF-8 text. */
  text: string;
  /** Standard output parsed as JSON, of the type the caller names; throws if it is not JSON. */
  json<T = JsonRecord>(): T;
}

/** Returns this process's environment without any ARBOR_* variable, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("ARBOR_")) env[name] = value;
  }
  return { ...env, ...extra };
}

/** Runs `node bin/arbor.js ...args` to completion, feeding `input` to its standard input. */
export async function runCli(
  args: readonly string[],
  options: { env?: Record<string, string>; input?: Buffer | string; cwd?: string } = {},
): Promise<CliResult> {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? REPO_ROOT,
    env: cleanEnv(options.env),
    stdio: ["pipe", "pipe", "pipe"],
  });
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
  child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
  child.stdin.on("error", () => {});
  child.stdin.end(options.input ?? "");

  const [code] = (await once(child, "close")) as [number | null];
  const out = Buffer.concat(stdout);
  const text = out.toString("utf8");
  return {
    code,
    stdout: out,
    stderr: Buffer.concat(stderr).toString("utf8"),
    text,
    json: <T>() => JSON.parse(text) as T,
  };
}

/** A long-running `arbor dev` or `arbor server` child process. */
export interface ForegroundProcess<Ready> {
  child: ChildProcessWithoutNullStreams;
  /** The first line the process printed that `isReady` accepted, parsed as JSON. */
  ready: Ready;
  stderr(): string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts the CLI with `args` and waits until one line of standard output (or of standard error,
 * when `stream` is `stderr`) parses as JSON and satisfies `isReady`. Rejects with the process's
 * standard error if it exits first.
 */
export async function startForeground<Ready>(
  args: readonly string[],
  isReady: (line: JsonRecord) => boolean,
  stream: "stdout" | "stderr" = "stdout",
): Promise<ForegroundProcess<Ready>> {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: REPO_ROOT,
    env: cleanEnv(),
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderrText = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderrText += chunk.toString("utf8");
  });

  const ready = await new Promise<Ready>((resolve, reject) => {
    let buffered = "";
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString("utf8");
      let newline: number;
      while ((newline = buffered.indexOf("\n")) !== -1) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        let parsed: unknown;
        try {
          parsed = JSON.parse(line);
        } catch {
          continue;
        }
        if (typeof parsed === "object" && parsed !== null && isReady(parsed as JsonRecord)) {
          child.off("exit", onExit);
          resolve(parsed as Ready);
          return;
        }
      }
    };
    const onExit = (code: number | null): void => {
      reject(
        new Error(
          `arbor ${args.join(" ")} exited with ${code} before it was ready:\n${stderrText}`,
        ),
      );
    };
    child[stream].on("data", onData);
    child.once("exit", onExit);
  });
  // Keep draining the pipes so the child never blocks on a full one.
  child.stdout.resume();

  return {
    child,
    ready,
    stderr: () => stderrText,
    async stop() {
      // A child ended by a signal has a signalCode and a null exitCode; it will not exit again.
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = once(child, "exit") as Promise<[number | null]>;
      child.kill("SIGTERM");
      const [code] = await exited;
      return code;
    },
  };
}

/** Returns a TCP port on 127.0.0.1 that nothing listens on (it was free a moment ago). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  server.close();
  await once(server, "close");
  return address.port;
}

export function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, "utf8")) as T;
}
