import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { formatDuration, parseDuration } from "../../src/config/index.ts";
import { isArborError } from "../../src/errors/index.ts";

void describe("parseDuration", () => {
  const valid: [string, number][] = [
    ["90d", 90 * 86_400_000],
    ["12h", 12 * 3_600_000],
    ["15m", 15 * 60_000],
    ["30s", 30_000],
    ["300", 300_000],
    ["0", 0],
    ["0s", 0],
    ["007m", 7 * 60_000],
    ["104249991d", 104_249_991 * 86_400_000],
  ];
  for (const [text, ms] of valid) {
    void test(`parses ${text}`, () => {
      assert.equal(parseDuration(text, "ttl"), ms);
    });
  }

  const malformed = [
    "",
    " 5m",
    "5m ",
    "5 m",
    "1.5h",
    "-1s",
    "+1s",
    "1w",
    "5ms",
    "1h30m",
    "m",
    "1e3",
    "0x10",
    "1234567890123456",
  ];
  for (const text of malformed) {
    void test(`rejects ${JSON.stringify(text)}`, () => {
      assert.throws(
        () => parseDuration(text, "limits.cache_ttl"),
        (error: unknown) => {
          assert.ok(isArborError(error, "INVALID_ARGUMENT"), String(error));
          assert.equal(error.detail.parameter, "limits.cache_ttl");
          assert.equal(error.detail.value, text);
          assert.match(
            error.message,
            /^invalid limits\.cache_ttl ".*": expected a whole number with a unit d, h, m or s/,
          );
          return true;
        },
      );
    });
  }

  void test("rejects durations beyond safe integers", () => {
    assert.throws(
      () => parseDuration("104249992d", "ttl"),
      (error: unknown) =>
        isArborError(error, "INVALID_ARGUMENT") &&
        /too long to represent in milliseconds/.test(error.message),
    );
  });

  void test("rejects non-string input", () => {
    assert.throws(
      () => parseDuration(5 as unknown as string, "ttl"),
      (error: unknown) => isArborError(error, "INVALID_ARGUMENT") && error.detail.value === 5,
    );
  });
});

void describe("formatDuration", () => {
  const cases: [number, string][] = [
    [90 * 86_400_000, "90d"],
    [36 * 3_600_000, "36h"],
    [90 * 60_000, "90m"],
    [61_000, "61s"],
    [1500, "1500ms"],
    [0, "0ms"],
  ];
  for (const [ms, text] of cases) {
    void test(`formats ${ms} as ${text}`, () => {
      assert.equal(formatDuration(ms), text);
    });
  }

  void test("round trips through parseDuration", () => {
    for (const text of ["90d", "12h", "15m", "30s"]) {
      assert.equal(formatDuration(parseDuration(text, "ttl")), text);
    }
  });
});
