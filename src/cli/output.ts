import type { CliError } from "./errors.ts";

export interface OutputStreams {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/**
 * The streams a command writes to. Results go to standard output, as one line of JSON with
 * `--json` or as text for people otherwise. Warnings and errors go to standard error in both
 * modes, so they never mix with output that a script parses.
 */
export class Output {
  readonly json: boolean;
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;

  constructor(json: boolean, streams: OutputStreams = process) {
    this.json = json;
    this.stdout = streams.stdout;
    this.stderr = streams.stderr;
  }

  /** Prints a command's result: `value` as JSON, or the text `human` builds. */
  result(value: unknown, human: () => string): void {
    if (this.json) {
      this.stdout.write(`${JSON.stringify(value)}\n`);
      return;
    }
    writeLines(this.stdout, human());
  }

  /** Prints text for people on standard output; nothing in JSON mode. */
  text(text: string): void {
    if (!this.json) writeLines(this.stdout, text);
  }

  /** Prints a warning or a note on standard error, in both modes. */
  warn(text: string): void {
    writeLines(this.stderr, text);
  }

  /** Prints a failure on standard error: `error CODE: message` and a hint, or a JSON object. */
  error(error: CliError): void {
    if (this.json) {
      const body = {
        error: {
          code: error.code,
          message: error.message,
          ...(error.hint === undefined ? {} : { hint: error.hint }),
          ...(error.requestId === undefined ? {} : { requestId: error.requestId }),
        },
      };
      this.stderr.write(`${JSON.stringify(body)}\n`);
      return;
    }
    const lines = [`error ${error.code}: ${error.message}`];
    if (error.hint !== undefined) lines.push(`hint: ${error.hint}`);
    writeLines(this.stderr, lines.join("\n"));
  }
}

function writeLines(stream: NodeJS.WritableStream, text: string): void {
  if (text === "") return;
  stream.write(text.endsWith("\n") ? text : `${text}\n`);
}

/**
 * Lays out rows in columns separated by two spaces; the first row is the header. Cells that are
 * null or empty print as `-`.
 */
export function formatTable(rows: ReadonlyArray<ReadonlyArray<string | number | null>>): string {
  const cells = rows.map((row) =>
    row.map((cell) => (cell === null || cell === "" ? "-" : String(cell))),
  );
  const widths: number[] = [];
  for (const row of cells) {
    row.forEach((cell, index) => {
      widths[index] = Math.max(widths[index] ?? 0, cell.length);
    });
  }
  return cells
    .map((row) =>
      row
        .map((cell, index) => (index === row.length - 1 ? cell : cell.padEnd(widths[index] ?? 0)))
        .join("  "),
    )
    .join("\n");
}

/** Lays out label and value pairs with the values aligned. */
export function formatFields(
  fields: ReadonlyArray<readonly [string, string | number | null]>,
): string {
  return formatTable(fields.map(([label, value]) => [label, value]));
}
