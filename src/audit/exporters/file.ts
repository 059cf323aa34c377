import { open, rename, stat, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";

import { DeliveryError, type ExportRecord, type Sink } from "./types.ts";

export interface FileSinkOptions {
  name: string;
  /** The current file; rotated files are `<path>.1` (newest) to `<path>.<maxFiles>` (oldest). */
  path: string;
  /** Size in bytes after which the file is rotated. A single record larger than this still gets its own file. */
  maxBytes: number;
  /** Rotated files kept next to the current one; the oldest is deleted beyond this. At least 1. */
  maxFiles: number;
}

interface OpenFile {
  handle: FileHandle;
  size: number;
  dev: number;
  ino: number;
}

/**
 * Writes each record's stored JSON as one line (JSON Lines), byte for byte, and fsyncs after every
 * batch. New files are created with mode 0600, because records name principals, source addresses
 * and keys. The directory is never created: when it is missing (an unmounted volume, say), the
 * delivery fails and the runner retries until it is back.
 */
export class FileSink implements Sink {
  readonly name: string;
  readonly #path: string;
  readonly #maxBytes: number;
  readonly #maxFiles: number;
  #file: OpenFile | null = null;
  #closed = false;

  constructor(options: FileSinkOptions) {
    this.name = options.name;
    this.#path = options.path;
    this.#maxBytes = options.maxBytes;
    this.#maxFiles = options.maxFiles;
  }

  async deliver(batch: ExportRecord[]): Promise<void> {
    if (this.#closed)
      throw new DeliveryError("unavailable", `file exporter ${this.name} is closed`);
    if (batch.length === 0) return;

    // Every line is checked before the first is written, so a bad record writes nothing.
    const allLines = batch.map(toLine);
    let file = await this.#openCurrent();
    let lines: string[] = [];
    let pendingBytes = 0;
    for (const line of allLines) {
      const bytes = Buffer.byteLength(line, "utf8");
      if (file.size + pendingBytes > 0 && file.size + pendingBytes + bytes > this.#maxBytes) {
        await this.#append(file, lines, pendingBytes);
        lines = [];
        pendingBytes = 0;
        file = await this.#rotate();
      }
      lines.push(line);
      pendingBytes += bytes;
    }
    await this.#append(file, lines, pendingBytes);

    // A file renamed or deleted while we wrote (the directory removed, or a log rotator at work)
    // would take this batch with it, so the batch counts as delivered only if the path still
    // names the file it went to.
    if (!(await this.#stillAtPath(file))) {
      await this.#closeFile();
      throw new DeliveryError(
        "unavailable",
        `${this.#path} was moved or deleted during the write; the batch is written again to a new file`,
      );
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#closeFile();
  }

  /** Returns the open file, reopening it when the path no longer names it. */
  async #openCurrent(): Promise<OpenFile> {
    if (this.#file !== null && (await this.#stillAtPath(this.#file))) return this.#file;
    await this.#closeFile();

    let handle: FileHandle;
    try {
      // Read and append: reading is needed only to check the last byte (see #endTornLine).
      handle = await open(this.#path, "a+", 0o600);
    } catch (error) {
      throw new DeliveryError("unavailable", `failed to open ${this.#path}: ${errorCode(error)}`, {
        cause: error,
      });
    }
    try {
      const info = await handle.stat();
      const file: OpenFile = { handle, size: info.size, dev: info.dev, ino: info.ino };
      await this.#endTornLine(file);
      await syncDirectory(this.#path);
      this.#file = file;
      return file;
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw new DeliveryError(
        "unavailable",
        `failed to prepare ${this.#path}: ${errorCode(error)}`,
        { cause: error },
      );
    }
  }

  /**
   * Ends a last line that a crash cut short, so the next record starts on its own line. The torn
   * line stays as it is, and its record is written again because its cursor never moved.
   */
  async #endTornLine(file: OpenFile): Promise<void> {
    if (file.size === 0) return;
    const last = Buffer.alloc(1);
    await file.handle.read(last, 0, 1, file.size - 1);
    if (last[0] === 0x0a) return;
    await file.handle.write("\n");
    file.size += 1;
  }

  async #append(file: OpenFile, lines: string[], bytes: number): Promise<void> {
    if (lines.length === 0) return;
    try {
      await file.handle.write(lines.join(""));
      await file.handle.sync();
      file.size += bytes;
    } catch (error) {
      await this.#closeFile();
      throw new DeliveryError("unavailable", `failed to write ${this.#path}: ${errorCode(error)}`, {
        cause: error,
      });
    }
  }

  /**
   * Shifts `<path>.n` to `<path>.n+1` from the oldest down, overwriting the oldest kept file,
   * then renames the current file to `<path>.1` and opens a new one.
   */
  async #rotate(): Promise<OpenFile> {
    await this.#closeFile();
    try {
      for (let n = this.#maxFiles - 1; n >= 1; n--) {
        await renameIfPresent(`${this.#path}.${n}`, `${this.#path}.${n + 1}`);
      }
      await rename(this.#path, `${this.#path}.1`);
      await syncDirectory(this.#path);
    } catch (error) {
      throw new DeliveryError(
        "unavailable",
        `failed to rotate ${this.#path}: ${errorCode(error)}`,
        { cause: error },
      );
    }
    return this.#openCurrent();
  }

  async #stillAtPath(file: OpenFile): Promise<boolean> {
    try {
      const info = await stat(this.#path);
      return info.dev === file.dev && info.ino === file.ino;
    } catch {
      return false;
    }
  }

  async #closeFile(): Promise<void> {
    const file = this.#file;
    this.#file = null;
    if (file !== null) await file.handle.close().catch(() => undefined);
  }
}

/** Returns the record's stored JSON as one line; stored canonical JSON never contains a line break. */
function toLine(record: ExportRecord): string {
  if (record.json.includes("\n") || record.json.includes("\r")) {
    throw new DeliveryError(
      "rejected",
      `audit record ${record.seq} contains a line break, so it cannot be written as one JSON line`,
    );
  }
  return `${record.json}\n`;
}

async function renameIfPresent(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (error) {
    if (errorCode(error) !== "ENOENT") throw error;
  }
}

/** Fsyncs the directory of `path`, so a created or renamed file survives a crash. */
async function syncDirectory(path: string): Promise<void> {
  const directory = await open(dirname(path), "r");
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

function errorCode(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return typeof code === "string" ? code : String(error);
}
