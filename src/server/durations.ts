import { parseDuration } from "../config/index.ts";

/**
 * Reads a duration from a JSON body: a string such as `"90d"`, `"15m"` or `"300"`, or a whole
 * number of seconds. Returns milliseconds; throws INVALID_ARGUMENT naming `parameter`.
 */
export function durationMs(value: string | number, parameter: string): number {
  return parseDuration(typeof value === "number" ? String(value) : value, parameter);
}
