import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { Transform, type Readable, type TransformCallback, type Writable } from "node:stream";

import cliProgress from "cli-progress";

import { CliError } from "./errors.ts";

/** A source of input data: a named file or standard input. */
export interface InputSource {
  /** The file name, or `standard input`. */
  name: string;
  /** Size in bytes of a regular file; null for standard input, pipes and devices. */
  size: number | null;
  open(): Readable;
}

/** Checks that `file` can be read and returns a source for it; standard input when undefined or `-`. */
export async function inputSource(file: string | undefined): Promise<InputSource> {
  if (file === undefined || file === "-") {
    return { name: "standard input", size: null, open: () => process.stdin };
  }

  let stats;
  try {
    stats = await stat(file);
  } catch (error) {
    throw fileError(`cannot read ${file}`, error);
  }
  if (stats.isDirectory()) {
    throw new CliError("FILE_ERROR", `cannot read ${file}: it is a directory`, {
      hint: "name a file, or pipe the data to standard input",
    });
  }
  return {
    name: file,
    size: stats.isFile() ? stats.size : null,
    open: () => createReadStream(file),
  };
}

/** A destination for output data. A file appears under its name only once `commit` succeeds. */
export interface OutputTarget {
  /** The file name, or `standard output`. */
  name: string;
  toStdout: boolean;
  stream: Writable;
  /** Moves the finished file into place; call it only after the stream has closed. */
  commit(): Promise<void>;
  /** Deletes whatever was written to a file; a no-op for standard output. */
  abort(): Promise<void>;
}

/**
 * Opens the output: standard output when `file` is undefined or `-`. Otherwise it creates a new
 * temporary file with `mode` (before the umask) in the destination's directory, and `commit`
 * renames it over the destination. The rename stays in one directory, so it is atomic on POSIX
 * file systems, and the destination contains either its old content or the complete new one.
 */
export async function outputTarget(file: string | undefined, mode: number): Promise<OutputTarget> {
  if (file === undefined || file === "-") {
    return {
      name: "standard output",
      toStdout: true,
      stream: process.stdout,
      commit: async () => {},
      abort: async () => {},
    };
  }

  const destination = resolve(file);
  const existing = await stat(destination).catch(() => null);
  if (existing?.isDirectory() === true) {
    throw new CliError("FILE_ERROR", `cannot write ${file}: it is a directory`, {
      hint: "name the output file, not its directory",
    });
  }

  const temporary = join(
    dirname(destination),
    `.${basename(destination)}.${randomBytes(6).toString("hex")}.partial`,
  );
  let handle: FileHandle;
  try {
    handle = await open(temporary, "wx", mode);
  } catch (error) {
    throw fileError(`cannot create a file in ${dirname(destination)}`, error);
  }
  // `flush` makes the stream fsync before it closes the handle, so the data is on disk before
  // the rename makes it visible under the destination's name.
  const stream = handle.createWriteStream({ flush: true });
  let settled = false;

  return {
    name: file,
    toStdout: false,
    stream,
    async commit() {
      settled = true;
      try {
        await rename(temporary, destination);
      } catch (error) {
        await unlink(temporary).catch(() => {});
        throw fileError(`cannot write ${file}`, error);
      }
    },
    async abort() {
      if (settled) return;
      settled = true;
      stream.destroy();
      await unlink(temporary).catch(() => {});
    },
  };
}

/**
 * Runs `work`. If SIGINT or SIGTERM arrives meanwhile, it runs `cleanup` (such as deleting a
 * partial output file) and exits with 128 plus the signal number, as shells report it.
 */
export async function withSignalCleanup<T>(
  cleanup: () => Promise<void>,
  work: () => Promise<T>,
): Promise<T> {
  const onSignal = (signal: NodeJS.Signals): void => {
    const code = signal === "SIGINT" ? 130 : 143;
    void cleanup().finally(() => process.exit(code));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    return await work();
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** A pass-through stream that counts the bytes flowing through it. */
export class ByteCounter extends Transform {
  bytes = 0;
  readonly #onProgress: ((bytes: number) => void) | undefined;

  constructor(onProgress?: (bytes: number) => void) {
    super();
    this.#onProgress = onProgress;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.#onProgress?.(this.bytes);
    callback(null, chunk);
  }
}

/** A progress display for a count (bytes unless a formatter is given); `stop` is safe to call twice. */
export interface Progress {
  update(bytes: number): void;
  stop(): void;
}

const NO_PROGRESS: Progress = { update: () => {}, stop: () => {} };

/**
 * Shows a progress bar on standard error for an input of known size, but only when standard
 * error is a terminal and the output is not JSON; otherwise it shows nothing.
 */
export function startProgress(
  label: string,
  total: number | null,
  json: boolean,
  format: (count: number) => string = formatBytes,
): Progress {
  if (json || total === null || process.stderr.isTTY !== true) return NO_PROGRESS;

  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} {bar} {percentage}% | {done} of {size} | ETA {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { done: format(0), size: format(total) });
  let stopped = false;
  return {
    update: (count) => bar.update(count, { done: format(count) }),
    stop: () => {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}

/** Formats a byte count with binary units, such as `3.0 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Turns a Node.js file-system error into a FILE_ERROR naming the operation and the errno code. */
export function fileError(what: string, error: unknown): CliError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const reason =
    code === "ENOENT"
      ? "no such file or directory"
      : code === "EACCES" || code === "EPERM"
        ? "permission denied"
        : (code ?? (error instanceof Error ? error.message : String(error)));
  return new CliError("FILE_ERROR", `${what} (${reason})`, {
    hint: "check the path and its permissions",
    cause: error,
  });
}
