// Loaders for the published test vectors under test/data/vectors. That folder's README.md lists
// the source and license of each file.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { isArborError, type ArborError, type ErrorCode } from "../../src/errors/index.ts";

const VECTORS_DIR = new URL("../data/vectors/", import.meta.url);

/** Wycheproof's verdict: `acceptable` marks input that is legal but weak or unusual. */
export type WycheproofResult = "valid" | "invalid" | "acceptable";

export interface WycheproofCase {
  tcId: number;
  comment: string;
  flags: string[];
  result: WycheproofResult;
}

export interface WycheproofFile<Group extends { tests: WycheproofCase[] }> {
  algorithm: string;
  numberOfTests: number;
  testGroups: Group[];
}

/** Reads `wycheproof/<name>.json` and checks that its case count matches its header. */
export function loadWycheproof<Group extends { tests: WycheproofCase[] }>(
  name: string,
): WycheproofFile<Group> {
  const file = readJson(`wycheproof/${name}.json`) as WycheproofFile<Group>;
  const counted = file.testGroups.reduce((sum, group) => sum + group.tests.length, 0);
  assert.equal(counted, file.numberOfTests, `${name}: numberOfTests does not match the file`);
  return file;
}

/** Lists every case of a Wycheproof file with its group, in file order. */
export function casesOf<Group extends { tests: WycheproofCase[] }>(
  file: WycheproofFile<Group>,
): Array<{ group: Group; test: Group["tests"][number] }> {
  return file.testGroups.flatMap((group) => group.tests.map((test) => ({ group, test })));
}

export function readJson(relativePath: string): unknown {
  return JSON.parse(readFileSync(new URL(relativePath, VECTORS_DIR), "utf8"));
}

export function hex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text.replaceAll(" ", ""), "hex"));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

export function base64url(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "base64url"));
}

/** Names a case in assertion messages, so a failure points at one vector. */
export function describeCase(test: WycheproofCase): string {
  const flags = test.flags.length > 0 ? ` [${test.flags.join(", ")}]` : "";
  const comment = test.comment === "" ? "" : ` "${test.comment}"`;
  return `tcId ${test.tcId}${flags}${comment}`;
}

/** Asserts that `run` throws an ArborError with `code` and returns that error for more checks. */
export function expectArborError(run: () => unknown, code: ErrorCode, context: string): ArborError {
  let threw = false;
  let caught: unknown;
  try {
    run();
  } catch (error) {
    threw = true;
    caught = error;
  }
  assert.ok(threw, `${context}: expected ${code}, but nothing was thrown`);
  assert.ok(
    isArborError(caught, code),
    `${context}: expected ${code}, got ${describeThrown(caught)}`,
  );
  return caught;
}

function describeThrown(thrown: unknown): string {
  if (!(thrown instanceof Error)) return `a thrown ${typeof thrown}`;
  const code = (thrown as { code?: unknown }).code;
  return `${typeof code === "string" ? code : thrown.name}: ${thrown.message}`;
}

/** Returns a copy of `bytes` with one bit flipped, to tamper with a key, blob or signature. */
export function withFlippedBit(bytes: Uint8Array, index: number, mask = 0x01): Uint8Array {
  const copy = bytes.slice();
  copy[index] = copy[index]! ^ mask;
  return copy;
}
