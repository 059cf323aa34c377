import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, describe, test } from "node:test";

import { DeliveryError, ExportRunner, FileSink } from "../../../src/audit/exporters/index.ts";
import {
  FAST,
  MemoryCursorStore,
  MemorySource,
  RecordingLogger,
  RecordingMetrics,
  deduplicate,
  makeRecord,
  range,
  waitFor,
} from "./helpers.ts";

const root = mkdtempSync(join(tmpdir(), "arbor-file-export-"));
after(() => rmSync(root, { recursive: true, force: true }));

let dirCount = 0;
function freshDir(): string {
  dirCount += 1;
  const dir = join(root, `case-${dirCount}`);
  mkdirSync(dir);
  return dir;
}

const started: ExportRunner[] = [];
afterEach(() => Promise.all(started.splice(0).map((runner) => runner.stop())));

function sink(path: string, maxBytes = 1024 * 1024, maxFiles = 5): FileSink {
  return new FileSink({ name: "file", path, maxBytes, maxFiles });
}

/** Returns the lines of the rotated files, oldest first, then of the current file. */
function allLines(path: string, maxFiles: number): string[] {
  const files = [
    ...range(1, maxFiles)
      .reverse()
      .map((n) => `${path}.${n}`),
    path,
  ];
  return files
    .filter((file) => existsSync(file))
    .flatMap((file) =>
      readFileSync(file, "utf8")
        .split("\n")
        .filter((line) => line !== ""),
    );
}

function seqOf(line: string): number {
  return (JSON.parse(line) as { seq: number }).seq;
}

void describe("FileSink", () => {
  void test("exported file lines are the stored JSON", async () => {
    const path = join(freshDir(), "audit.jsonl");
    const records = [
      makeRecord(1),
      makeRecord(2, { details: { note: 'Grüße, 東京 \u2028 "quoted" \\ \u0007' } }),
      makeRecord(3, { outcome: "denied" }),
    ];
    const file = sink(path);
    await file.deliver(records.slice(0, 2));
    await file.deliver(records.slice(2));
    await file.close();

    const expected = records.map((r) => `${r.json}\n`).join("");
    assert.equal(readFileSync(path, "utf8"), expected);
    assert.deepEqual(readFileSync(path), Buffer.from(expected, "utf8"));
  });

  void test("new file has mode 0600", async () => {
    const path = join(freshDir(), "audit.jsonl");
    const file = sink(path);
    await file.deliver([makeRecord(1)]);
    await file.close();

    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  void test("rotation keeps every line across files", async () => {
    const path = join(freshDir(), "audit.jsonl");
    const recordBytes = makeRecord(100).json.length + 1;
    const maxBytes = recordBytes * 7;
    const file = sink(path, maxBytes, 100);
    for (let start = 1; start <= 200; start += 13) {
      await file.deliver(range(start, Math.min(start + 12, 200)).map((seq) => makeRecord(seq)));
    }
    await file.close();

    assert.deepEqual(allLines(path, 100).map(seqOf), range(1, 200));
    for (const n of range(1, 100)) {
      const rotated = `${path}.${n}`;
      if (!existsSync(rotated)) continue;
      assert.ok(statSync(rotated).size <= maxBytes, `${rotated} exceeds max_bytes`);
    }
    assert.ok(existsSync(`${path}.20`), "rotated at least 20 times");
  });

  void test("rotation keeps at most max_files rotated files", async () => {
    const path = join(freshDir(), "audit.jsonl");
    const recordBytes = makeRecord(100).json.length + 1;
    const file = sink(path, recordBytes * 10, 2);
    for (let start = 1; start <= 100; start += 10) {
      await file.deliver(range(start, start + 9).map((seq) => makeRecord(seq)));
    }
    await file.close();

    assert.ok(existsSync(`${path}.2`));
    assert.ok(!existsSync(`${path}.3`));
    assert.deepEqual(allLines(path, 5).map(seqOf), range(71, 100));
  });

  void test("torn last line is ended before the next record", async () => {
    const path = join(freshDir(), "audit.jsonl");
    const torn = makeRecord(1).json.slice(0, 20);
    writeFileSync(path, `${makeRecord(0).json}\n${torn}`);
    const file = sink(path);
    await file.deliver([makeRecord(1)]);
    await file.close();

    const lines = readFileSync(path, "utf8").split("\n");
    assert.equal(lines[1], torn);
    assert.equal(lines[2], makeRecord(1).json);
  });

  void test("record with a line break is rejected whole", async () => {
    const path = join(freshDir(), "audit.jsonl");
    const broken = { ...makeRecord(2), json: '{"a":\n1}' };
    const file = sink(path);
    await assert.rejects(
      file.deliver([makeRecord(1), broken]),
      (error: unknown) => error instanceof DeliveryError && error.reason === "rejected",
    );
    await file.close();
    assert.ok(!existsSync(path) || readFileSync(path, "utf8") === "", "nothing was written");
  });

  void test("missing directory fails the delivery", async () => {
    const path = join(root, "no-such-dir", "audit.jsonl");
    const file = sink(path);
    await assert.rejects(
      file.deliver([makeRecord(1)]),
      (error: unknown) =>
        error instanceof DeliveryError &&
        error.reason === "unavailable" &&
        error.message.includes("ENOENT"),
    );
    await file.close();
    assert.ok(!existsSync(join(root, "no-such-dir")), "the directory is not created");
  });

  void test("file exporter recovers after the directory reappears", async () => {
    const dir = freshDir();
    const path = join(dir, "audit.jsonl");
    const source = new MemorySource();
    const cursors = new MemoryCursorStore();
    const metrics = new RecordingMetrics();
    const runner = new ExportRunner({
      ...FAST,
      source,
      cursors,
      metrics,
      sinks: [sink(path)],
      logger: new RecordingLogger(),
    });
    started.push(runner);
    source.append(10);
    runner.start();
    runner.wake();
    await waitFor(() => cursors.peek("file") === 10, "first ten records");

    rmSync(dir, { recursive: true });
    source.append(10);
    runner.wake();
    await waitFor(() => metrics.failureCount("file", "unavailable") >= 2, "failures while gone");
    assert.equal(
      cursors.peek("file"),
      10,
      "nothing counts as delivered while the directory is gone",
    );

    mkdirSync(dir);
    await waitFor(() => cursors.peek("file") === 20, "records after the directory returned");
    await runner.stop();
    assert.deepEqual(
      readFileSync(path, "utf8").split("\n").filter(Boolean).map(seqOf),
      range(11, 20),
    );
  });

  void test("file moved away is reopened at its path", async () => {
    const path = join(freshDir(), "audit.jsonl");
    const file = sink(path);
    await file.deliver(range(1, 3).map((seq) => makeRecord(seq)));
    renameSync(path, `${path}.moved`);
    await file.deliver(range(4, 6).map((seq) => makeRecord(seq)));
    await file.close();

    const moved = readFileSync(`${path}.moved`, "utf8").split("\n").filter(Boolean).map(seqOf);
    const current = readFileSync(path, "utf8").split("\n").filter(Boolean).map(seqOf);
    assert.deepEqual(moved, [1, 2, 3]);
    assert.deepEqual(current, [4, 5, 6]);
    assert.deepEqual(deduplicate([...moved, ...current]), range(1, 6));
  });
});
