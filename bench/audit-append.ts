// Chained audit appends on SQLite against the raw limits of the same disk, in one run.
//
//   node --import tsx bench/audit-append.ts [--duration 5] [--concurrency 1,16,128,512]
//
// Runs without npm (tsx is a dependency and `--import tsx` registers its loader); `npx tsx
// bench/audit-append.ts` does the same. Every database is a new file in a temporary directory,
// removed at the end. SQLite runs as Arbor configures it: WAL and `synchronous=FULL`, so every
// commit waits for an fsync. PostgreSQL is not measured because Arbor has no PostgreSQL storage
// yet.
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import Sqlite from "better-sqlite3";

import { GroupCommitter } from "../src/audit/group-commit.ts";
import { buildRecord, GENESIS_HASH } from "../src/audit/record.ts";
import { chainRecord, createSqlAuditWriter } from "../src/audit/sql-writer.ts";
import type { AuditEvent } from "../src/audit/types.ts";
import { openStorage, type Storage } from "../src/storage/index.ts";
import { formatNumber, measureLoop, percentile } from "./stats.ts";

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "5" },
    concurrency: { type: "string", default: "1,16,128,512" },
  },
});
const durationMs = Number(values.duration) * 1000;
const concurrencies = values.concurrency.split(",").map(Number);
/** Rows per transaction of the raw batched baseline. */
const RAW_BATCH = 100;

interface Measured {
  name: string;
  eventsPerSecond: number;
  /** Milliseconds from submitting a write until it is durable. */
  p50: number;
  p99: number;
  eventsPerTransaction: number;
  /**
   * Microseconds of this process's CPU time (user and system) per event. Unlike the rate, it
   * leaves out time spent waiting for fsync and time other processes held the cores.
   */
  cpuMicrosPerEvent: number;
}

/** Returns this process's CPU time (user and system) so far, in microseconds. */
function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/**
 * Runs `operation` back to back for a 500 ms warm-up and then for the configured duration, and
 * measures the CPU time of the timed part.
 */
function measureSync(operation: () => void) {
  measureLoop(operation, { durationMs: 500, warmupMs: 0 });
  const cpuBefore = cpuMicros();
  const result = measureLoop(operation, { durationMs, warmupMs: 0 });
  return { ...result, cpuMicros: cpuMicros() - cpuBefore };
}

/**
 * Returns an event of the size the envelope and token routes write (about 670 bytes of canonical
 * JSON). It is not an issuance, so the writer adds no `issuances` row and the figures are audit
 * appends alone.
 */
function sampleEvent(n: number): AuditEvent {
  return {
    type: "crypto.encrypt",
    outcome: "success",
    at: Date.now(),
    principal: { type: "service", id: "svc_aaaaaaaaaaaaaaaaaaaaaaaaaa" },
    sourceAddress: "127.0.0.1",
    requestId: `req-${n}`,
    keyId: "key_aaaaaaaaaaaaaaaaaaaaaaaaaa",
    keyVersion: 1,
    chain: [
      "root@1",
      "key_bbbbbbbbbbbbbbbbbbbbbbbbbb@1",
      "key_cccccccccccccccccccccccccc@1",
      "key_aaaaaaaaaaaaaaaaaaaaaaaaaa@1",
    ],
    credentialId: "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa",
    errorCode: null,
    details: {
      action: "token.issue",
      expiresAt: Date.now() + 900_000,
      clientId: "svc_aaaaaaaaaaaaaaaaaaaaaaaaaa",
      audience: "https://billing.example",
      scope: null,
    },
  };
}

/** Migrates a new Arbor database and opens a raw better-sqlite3 connection with Arbor's pragmas. */
async function openRaw(file: string): Promise<Sqlite.Database> {
  const storage = await openStorage({ kind: "sqlite", path: file });
  await storage.close();
  const raw = new Sqlite(file);
  raw.pragma("journal_mode = WAL");
  raw.pragma("synchronous = FULL");
  return raw;
}

/**
 * Returns a prepared insert into `audit_events` and the column values of one chained row, so the
 * raw baselines write the same table, indexes and bytes as the writer, without chaining them.
 */
function rawInsert(raw: Sqlite.Database) {
  const insert = raw.prepare(
    `insert into audit_events (seq, type, outcome, at, principal_type, principal_id,
       source_address, request_id, key_id, key_version, credential_id, chain, error_code, details,
       prev_hash, hash, record)
     values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const event = sampleEvent(0);
  const { canonical, hash } = chainRecord(event, { seq: 0, hash: GENESIS_HASH });
  let seq = 0;
  return () => {
    seq += 1;
    insert.run(
      seq,
      event.type,
      event.outcome,
      event.at,
      event.principal.type,
      event.principal.id,
      event.sourceAddress,
      `req-${seq}`,
      event.keyId,
      event.keyVersion,
      event.credentialId,
      JSON.stringify(event.chain),
      event.errorCode,
      JSON.stringify(event.details),
      GENESIS_HASH,
      hash,
      canonical,
    );
  };
}

/** (a) One row per transaction: one fsync per row, the disk's limit for unbatched writes. */
async function rawSingleRow(dir: string): Promise<Measured> {
  const raw = await openRaw(join(dir, "raw-single.db"));
  try {
    const insertOne = rawInsert(raw);
    const result = measureSync(insertOne);
    return {
      name: "(a) raw better-sqlite3, 1 row per transaction",
      eventsPerSecond: result.opsPerSecond,
      p50: result.p50,
      p99: result.p99,
      eventsPerTransaction: 1,
      cpuMicrosPerEvent: result.cpuMicros / result.count,
    };
  } finally {
    raw.close();
  }
}

/**
 * (b) RAW_BATCH rows per transaction. A row is durable when its transaction commits, so the
 * latency of a write is the time of its whole transaction.
 */
async function rawBatched(dir: string): Promise<Measured> {
  const raw = await openRaw(join(dir, "raw-batched.db"));
  try {
    const insertOne = rawInsert(raw);
    const insertBatch = raw.transaction(() => {
      for (let i = 0; i < RAW_BATCH; i++) insertOne();
    });
    const result = measureSync(() => insertBatch.immediate());
    return {
      name: `(b) raw better-sqlite3, ${RAW_BATCH} rows per transaction`,
      eventsPerSecond: result.opsPerSecond * RAW_BATCH,
      p50: result.p50,
      p99: result.p99,
      eventsPerTransaction: RAW_BATCH,
      cpuMicrosPerEvent: result.cpuMicros / (result.count * RAW_BATCH),
    };
  } finally {
    raw.close();
  }
}

/** Wraps `storage.write` to count the transactions the group committer opens. */
function countingTransactions(storage: Storage): { storage: Storage; count: () => number } {
  let transactions = 0;
  return {
    storage: {
      ...storage,
      write: (work) => {
        transactions += 1;
        return storage.write(work);
      },
    },
    count: () => transactions,
  };
}

/**
 * (c) Arbor's chained writer over the group committer: `concurrency` loops, each submitting one
 * event and waiting until it is durable before submitting the next, as that many concurrent
 * requests would.
 */
async function chained(dir: string, concurrency: number): Promise<Measured> {
  const storage = await openStorage({
    kind: "sqlite",
    path: join(dir, `chained-${concurrency}.db`),
  });
  try {
    const counted = countingTransactions(storage);
    const writer = createSqlAuditWriter(new GroupCommitter(counted.storage));
    let n = 0;

    const run = async (untilMs: number, samples: number[] | null) => {
      const loop = async () => {
        while (performance.now() < untilMs) {
          const before = performance.now();
          await writer.write(sampleEvent(n++));
          samples?.push(performance.now() - before);
        }
      };
      await Promise.all(Array.from({ length: concurrency }, loop));
    };

    // Warm-up, discarded: JIT, prepared statements, the first pages of the table.
    await run(performance.now() + 500, null);

    const samples: number[] = [];
    const transactionsBefore = counted.count();
    const cpuBefore = cpuMicros();
    const start = performance.now();
    await run(start + durationMs, samples);
    const elapsedSeconds = (performance.now() - start) / 1000;
    const cpuUsed = cpuMicros() - cpuBefore;
    const transactions = counted.count() - transactionsBefore;

    samples.sort((a, b) => a - b);
    return {
      name: `(c) Arbor chained writer, group commit, ${concurrency} in flight`,
      eventsPerSecond: samples.length / elapsedSeconds,
      p50: percentile(samples, 50),
      p99: percentile(samples, 99),
      eventsPerTransaction: samples.length / Math.max(1, transactions),
      cpuMicrosPerEvent: cpuUsed / samples.length,
    };
  } finally {
    await storage.close();
  }
}

/**
 * (d) The chain's CPU cost per event without I/O: the record, its RFC 8785 canonical JSON and its
 * SHA-256 leaf hash, as the writer computes them for each event.
 */
function chainCpu(): Measured {
  let tail = { seq: 0, hash: GENESIS_HASH };
  let n = 0;
  const result = measureSync(() => {
    const chainedRecord = chainRecord(sampleEvent(n++), tail);
    tail = { seq: chainedRecord.record.seq, hash: chainedRecord.hash };
  });
  return {
    name: "(d) chain CPU only: record, canonical JSON, leaf hash",
    eventsPerSecond: result.opsPerSecond,
    p50: result.p50,
    p99: result.p99,
    eventsPerTransaction: Number.NaN,
    cpuMicrosPerEvent: result.cpuMicros / result.count,
  };
}

function printTable(rows: readonly Measured[], single: Measured, batched: Measured): void {
  console.log(
    "| case | events/s | ratio to (a) | ratio to (b) | p50 ms | p99 ms | events per transaction | CPU µs per event |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const row of rows) {
    const perTransaction = Number.isNaN(row.eventsPerTransaction)
      ? "-"
      : formatNumber(row.eventsPerTransaction, 1);
    console.log(
      `| ${row.name} | ${formatNumber(row.eventsPerSecond)} | ` +
        `${(row.eventsPerSecond / single.eventsPerSecond).toFixed(2)} | ` +
        `${(row.eventsPerSecond / batched.eventsPerSecond).toFixed(3)} | ` +
        `${formatNumber(row.p50, 3)} | ${formatNumber(row.p99, 3)} | ${perTransaction} | ` +
        `${formatNumber(row.cpuMicrosPerEvent, 1)} |`,
    );
  }
}

const dir = mkdtempSync(join(tmpdir(), "arbor-bench-audit-"));
try {
  // Checks that the sample event is valid before anything is timed.
  buildRecord(sampleEvent(0), 1, GENESIS_HASH);
  const loadBefore = loadavg()[0]!;

  const single = await rawSingleRow(dir);
  const batched = await rawBatched(dir);
  const rows: Measured[] = [single, batched];
  for (const concurrency of concurrencies) rows.push(await chained(dir, concurrency));
  rows.push(chainCpu());

  printTable(rows, single, batched);
  console.log(
    `\n${durationMs / 1000} s per case after a 0.5 s warm-up, SQLite WAL with ` +
      `synchronous=FULL in ${tmpdir()}, Node.js ${process.version}. ` +
      `One-minute load average ${loadBefore.toFixed(2)} before and ${loadavg()[0]!.toFixed(2)} after. ` +
      `PostgreSQL: not measured, Arbor has no PostgreSQL storage yet.`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
