import { invalidArgument } from "../errors/index.ts";

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 } as const;
type Unit = keyof typeof UNIT_MS;

// At most 15 digits so the product with a unit stays a safe integer before the range check.
const DURATION_PATTERN = /^(\d{1,15})([dhms]?)$/;

/**
 * Parses a duration written as a whole number with one unit (`"90d"`, `"12h"`, `"15m"`, `"30s"`)
 * or as a bare whole number of seconds (`"300"`), and returns milliseconds. Zero is accepted, so
 * callers that need a positive duration check that themselves. Throws INVALID_ARGUMENT naming
 * `parameter`.
 */
export function parseDuration(text: string, parameter: string): number {
  const match = typeof text === "string" ? DURATION_PATTERN.exec(text) : null;
  if (match === null) {
    throw invalidArgument(
      parameter,
      text,
      'expected a whole number with a unit d, h, m or s (such as "90d", "12h", "15m", "30s"), ' +
        "or a whole number of seconds",
    );
  }

  const amount = Number(match[1]);
  const unit = (match[2] || "s") as Unit;
  const ms = amount * UNIT_MS[unit];
  if (!Number.isSafeInteger(ms)) {
    throw invalidArgument(parameter, text, "is too long to represent in milliseconds");
  }
  return ms;
}

/** Writes milliseconds in the largest unit that divides them exactly, such as `"90d"`. */
export function formatDuration(ms: number): string {
  for (const unit of ["d", "h", "m", "s"] as const) {
    if (ms !== 0 && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
