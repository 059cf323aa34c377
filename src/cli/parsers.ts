import { InvalidArgumentError } from "commander";

import { parseDuration } from "../config/index.ts";
import { isArborError } from "../errors/index.ts";

/**
 * Argument parsers for commander. Each throws InvalidArgumentError, which commander reports as a
 * usage error (exit code 2) naming the option.
 */

export function parsePositiveInteger(value: string): number {
  if (!/^[1-9][0-9]{0,9}$/.test(value) || Number(value) > 0xffff_ffff) {
    throw new InvalidArgumentError("expected a whole number from 1 to 4294967295.");
  }
  return Number(value);
}

export function parsePort(value: string): number {
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) > 65_535) {
    throw new InvalidArgumentError("expected a port number from 0 to 65535 (0 picks a free port).");
  }
  return Number(value);
}

/** Checks a duration such as `90d` locally and returns it unchanged, as the API takes the text. */
export function parseDurationText(value: string): string {
  try {
    parseDuration(value, "duration");
  } catch (error) {
    if (!isArborError(error, "INVALID_ARGUMENT")) throw error;
    throw new InvalidArgumentError(
      'expected a whole number with a unit d, h, m or s (such as "90d", "12h", "10m"), or whole seconds.',
    );
  }
  return value;
}

/** Collects repeated `--context key=value` flags into one map; a repeated key is rejected. */
export function collectContext(
  value: string,
  previous: Record<string, string> | undefined,
): Record<string, string> {
  const equals = value.indexOf("=");
  if (equals <= 0) {
    throw new InvalidArgumentError(
      `expected key=value, such as tenant=acme; got ${JSON.stringify(value)}.`,
    );
  }
  const key = value.slice(0, equals);
  const context = { ...previous };
  if (Object.hasOwn(context, key)) {
    throw new InvalidArgumentError(`the context key ${JSON.stringify(key)} is given twice.`);
  }
  context[key] = value.slice(equals + 1);
  return context;
}
