import { closeSync, openSync } from "node:fs";

import Sqlite from "better-sqlite3";
import {
  type DatabaseConnection,
  Kysely,
  SqliteDialect,
  SqliteDriver,
  CompiledQuery,
  type SqliteDatabase,
} from "kysely";

import type { Database } from "./schema.ts";

/**
 * SQLite driver whose transactions start with `BEGIN IMMEDIATE`, so a write transaction takes the
 * database write lock before its first read. With a plain `BEGIN`, two processes could both read
 * the same next version number and one would fail late with SQLITE_BUSY.
 */
class ImmediateTransactionDriver extends SqliteDriver {
  readonly #turns = new FifoMutex();

  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("begin immediate"));
  }

  // Kysely's own mutex wakes every waiter on each release, so n concurrent queries cost O(n^2)
  // wake-ups. Waiting in a FIFO queue first leaves that mutex uncontended.
  override async acquireConnection(): Promise<DatabaseConnection> {
    await this.#turns.lock();
    return super.acquireConnection();
  }

  override async releaseConnection(): Promise<void> {
    await super.releaseConnection();
    this.#turns.unlock();
  }
}

/** A mutex that hands the lock to waiters one at a time, in arrival order. */
class FifoMutex {
  #locked = false;
  readonly #waiters: Array<() => void> = [];

  lock(): Promise<void> {
    if (!this.#locked) {
      this.#locked = true;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  unlock(): void {
    const next = this.#waiters.shift();
    if (next === undefined) this.#locked = false;
    else next();
  }
}

class ImmediateTransactionDialect extends SqliteDialect {
  readonly #database: SqliteDatabase;

  constructor(database: SqliteDatabase) {
    super({ database });
    this.#database = database;
  }

  override createDriver(): SqliteDriver {
    return new ImmediateTransactionDriver({ database: this.#database });
  }
}

/**
 * Opens (or creates) a SQLite database with the settings Arbor relies on: WAL, fsync on every
 * commit (`synchronous=FULL`, so the writes of a completed request survive a power cut), foreign keys
 * enforced, and a busy timeout for a second process on the same file.
 */
export function openSqlite(filename: string): { db: Kysely<Database>; raw: Sqlite.Database } {
  createPrivately(filename);
  const raw = new Sqlite(filename);
  raw.pragma("journal_mode = WAL");
  raw.pragma("synchronous = FULL");
  raw.pragma("foreign_keys = ON");
  raw.pragma("busy_timeout = 5000");
  const db = new Kysely<Database>({
    dialect: new ImmediateTransactionDialect(cachingStatements(raw)),
  });
  return { db, raw };
}

/**
 * Creates the database file readable by its owner only, before SQLite would create it with the
 * umask's default (usually 0644). SQLite gives the -wal and -shm files the main file's mode.
 */
function createPrivately(filename: string): void {
  if (filename === ":memory:" || filename === "") return;
  try {
    closeSync(openSync(filename, "wx", 0o600));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
}

/** Distinct SQL texts whose prepared statements are kept; Arbor's queries are a few hundred. */
const STATEMENT_CACHE_SIZE = 500;

/**
 * Kysely's SQLite driver prepares every query anew, and preparing costs more than running the
 * small queries Arbor makes. This keeps prepared statements by SQL text. better-sqlite3 statements
 * are reusable once a run has finished, and the driver runs one at a time on its one connection.
 */
function cachingStatements(raw: Sqlite.Database): SqliteDatabase {
  const statements = new Map<string, Sqlite.Statement>();
  return {
    prepare(sql: string) {
      let statement = statements.get(sql);
      if (statement === undefined) {
        statement = raw.prepare(sql);
        if (statements.size >= STATEMENT_CACHE_SIZE) statements.clear();
        statements.set(sql, statement);
      }
      return statement;
    },
    close() {
      statements.clear();
      raw.close();
    },
  };
}

/**
 * Opens an existing database read-only, without migrating it: for `arbor audit verify --db`,
 * which must be able to check a copy of the log without a server and without changing it.
 */
export function openSqliteReadOnly(filename: string): Kysely<Database> {
  const raw = new Sqlite(filename, { readonly: true, fileMustExist: true });
  raw.pragma("busy_timeout = 5000");
  return new Kysely<Database>({ dialect: new SqliteDialect({ database: cachingStatements(raw) }) });
}
