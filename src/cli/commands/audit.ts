import { readFile, writeFile } from "node:fs/promises";
import type { JsonWebKey } from "node:crypto";

import type { Command } from "commander";

import { verifyCheckpoint, type SignedCheckpoint } from "../../audit/checkpoint.ts";
import { checkCompleteness, type CompletenessReport } from "../../audit/completeness.ts";
import {
  createAuditLogStore,
  type AuditLogReader,
  type StoredAnchor,
  type StoredCheckpoint,
  type StoredRecord,
} from "../../audit/log-store.ts";
import { parseRecord } from "../../audit/record.ts";
import { serializeProofFile, verifyProofFile, type ProofFile } from "../../audit/proof.ts";
import type { Trace } from "../../audit/trace.ts";
import { verifyAuditLog, type VerifyReport } from "../../audit/verify.ts";
import { openSqliteReadOnly } from "../../storage/sqlite.ts";
import type { ArborClient } from "../client.ts";
import { contextOf } from "../context.ts";
import { CliError, usageError } from "../errors.ts";
import { fileError } from "../files.ts";
import { formatFields, formatTable } from "../output.ts";

const PAGE = 1_000;

interface VerifyOptions {
  publicKey?: string;
  db?: string;
  checkpoint?: string[];
  completeness?: boolean;
}

/** Registers `arbor audit tail|verify|trace|verify-proof|checkpoint|prune`. */
export function registerAuditCommands(program: Command): void {
  const audit = program
    .command("audit")
    .description("read, verify and prove the hash-chained audit log");

  audit
    .command("tail")
    .description("print the newest audit records, and follow new ones with --follow")
    .option("-n, --lines <count>", "how many of the newest records to print first", parseCount, 20)
    .option("-f, --follow", "keep printing records as they are written (Ctrl-C stops)")
    .action(async (options: { lines: number; follow?: boolean }, command: Command) => {
      const { out, client } = contextOf(command);
      const api = client();
      const reader = httpReader(api);
      const last = await lastSeq(reader);
      let after = Math.max(0, last - options.lines);
      for (;;) {
        const records = await reader.records(after, PAGE);
        for (const row of records) {
          if (out.json) out.stdout.write(`${row.record ?? "null"}\n`);
          else out.text(describeRecord(row));
          after = row.seq;
        }
        if (records.length === PAGE) continue;
        if (options.follow !== true) return;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    });

  audit
    .command("verify")
    .description(
      "check every record's hash, the chain, and every signed checkpoint; exit 0 when intact",
    )
    .option(
      "--public-key <file>",
      "the checkpoint public key (JWK file); without it the server's key is fetched and trusted",
    )
    .option("--db <file>", "verify this SQLite database file directly, without a server")
    .option(
      "--checkpoint <file>",
      "an exported checkpoint (JSON) the log must contain; repeatable",
      collect,
      [],
    )
    .option("--completeness", "also count issuances against their audit records")
    .action(async (options: VerifyOptions, command: Command) => {
      const { out, client } = contextOf(command);
      const external = (
        await Promise.all((options.checkpoint ?? []).map(readCheckpointFile))
      ).flat();
      let report: VerifyReport;
      let completeness: CompletenessReport | null = null;
      if (options.db !== undefined) {
        if (options.publicKey === undefined) {
          throw usageError(
            "--db needs --public-key: without a server, the checkpoint key must come from you",
            "export it once with `arbor audit public-key > audit-key.jwk` and keep it apart from the database",
          );
        }
        const publicKey = await readJwk(options.publicKey);
        const db = openDatabaseCopy(options.db);
        try {
          await requireAuditTables(db, options.db);
          await requireKeyMatches(createAuditLogStore(db), publicKey);
          report = await verifyAuditLog(createAuditLogStore(db), publicKey, {
            externalCheckpoints: external,
          });
          if (options.completeness === true) {
            completeness = await checkCompleteness(db);
          }
        } finally {
          await db.destroy();
        }
      } else {
        const api = client();
        const publicKey =
          options.publicKey === undefined
            ? await api.get<JsonWebKey>("/v1/audit/public-key")
            : await readJwk(options.publicKey);
        if (options.publicKey === undefined) {
          out.warn(
            "note: the checkpoint key was fetched from the server; pass --public-key to check against a key you hold",
          );
        }
        await requireKeyMatches(httpReader(api), publicKey);
        report = await verifyAuditLog(httpReader(api), publicKey, {
          externalCheckpoints: external,
        });
        if (options.completeness === true) {
          completeness = await api.get<CompletenessReport>("/v1/audit/completeness");
        }
      }
      out.result({ ...report, completeness }, () => describeVerify(report, completeness));
      if (!report.ok) {
        throw new CliError(
          "AUDIT_DAMAGED",
          `the audit log is damaged at record ${report.damage!.seq}: ${report.damage!.kind}`,
        );
      }
      if (completeness !== null && !completeness.complete) {
        throw new CliError(
          "AUDIT_DAMAGED",
          "the audit log is incomplete: issuances and their records do not match",
        );
      }
    });

  audit
    .command("trace")
    .description("follow a token id, data key id or key version (key_…@N) to the root")
    .argument("<id>", "a token id (jti), data key id, or key version such as key_…@3 or root@1")
    .option("--proof <file>", "also write an offline proof of the trace to this file")
    .action(async (id: string, options: { proof?: string }, command: Command) => {
      const { out, client } = contextOf(command);
      const api = client();
      const trace = await api.get<Trace>(`/v1/audit/trace/${encodeURIComponent(id)}`);
      if (options.proof !== undefined) {
        const proof = await api.get<ProofFile>(`/v1/audit/proofs/${encodeURIComponent(id)}`);
        try {
          // Written as RFC 8785 canonical JSON, as docs/audit.md describes proof files.
          await writeFile(options.proof, `${serializeProofFile(proof)}\n`, { mode: 0o600 });
        } catch (error) {
          throw fileError(`writing the proof to ${options.proof}`, error);
        }
      }
      out.result(trace, () => describeTrace(trace, options.proof));
    });

  audit
    .command("verify-proof")
    .description("check a proof file offline against the checkpoint public key")
    .argument("<file>", "a proof written by `arbor audit trace --proof`")
    .requiredOption("--public-key <file>", "the checkpoint public key (JWK file)")
    .action(async (file: string, options: { publicKey: string }, command: Command) => {
      const { out } = contextOf(command);
      const publicKey = await readJwk(options.publicKey);
      let text: string;
      try {
        text = await readFile(file, "utf8");
      } catch (error) {
        throw fileError(`reading the proof ${file}`, error);
      }
      const result = verifyProofFile(text, publicKey);
      out.result(result, () =>
        result.ok
          ? `Proof valid: ${describeProofSubject(text)}`
          : `Proof INVALID: ${result.reason}`,
      );
      if (!result.ok)
        throw new CliError("PROOF_INVALID", `the proof does not verify: ${result.reason}`);
    });

  audit
    .command("public-key")
    .description("print the checkpoint public key (JWK) for offline verification")
    .action(async (_options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const jwk = await client().get<JsonWebKey>("/v1/audit/public-key");
      // The key is printed as JSON in both modes, so `> audit-key.jwk` gives a usable file.
      out.stdout.write(`${JSON.stringify(jwk)}\n`);
    });

  audit
    .command("checkpoint")
    .description("sign a checkpoint over every record now")
    .action(async (_options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const result = await client().post<{ signed: boolean; treeSize: number | null }>(
        "/v1/audit/checkpoints",
      );
      out.result(result, () =>
        result.signed
          ? `Signed a checkpoint over ${result.treeSize} records.`
          : `Nothing new to sign: the latest checkpoint covers ${result.treeSize ?? 0} records.`,
      );
    });

  audit
    .command("prune")
    .description("delete records up to a checkpoint; the rest stays verifiable")
    .requiredOption("--through <seq>", "the tree size of a signed checkpoint", parseCount)
    .action(async (options: { through: number }, command: Command) => {
      const { out, client } = contextOf(command);
      const result = await client().post<{ prunedThrough: number; removed: number }>(
        "/v1/audit/prune",
        { through: options.through },
      );
      out.result(
        result,
        () => `Pruned ${result.removed} records; the log now starts after ${result.prunedThrough}.`,
      );
    });
}

/**
 * Reads the log over the API; verification trusts only the signed checkpoints it returns. Each
 * `checkpoints()` call fetches them anew, because verification asks again for a checkpoint that a
 * live server signed after the first call; the anchor is the first call's.
 */
function httpReader(api: ArborClient): AuditLogReader {
  let first: { checkpoints: StoredCheckpoint[]; anchor: StoredAnchor | null } | null = null;
  const fetchCheckpoints = async () => {
    const fetched = await api.get<{
      checkpoints: StoredCheckpoint[];
      anchor: StoredAnchor | null;
    }>("/v1/audit/checkpoints");
    first ??= fetched;
    return fetched;
  };
  return {
    async records(afterSeq, limit) {
      const page = await api.get<{ records: StoredRecord[] }>("/v1/audit/records", {
        after: String(afterSeq),
        limit: String(Math.min(limit, 5_000)),
      });
      return page.records;
    },
    checkpoints: async () => (await fetchCheckpoints()).checkpoints,
    anchor: async () => (first ?? (await fetchCheckpoints())).anchor,
  };
}

async function lastSeq(reader: AuditLogReader): Promise<number> {
  // Checkpoints bound the search: start from the newest one and read forward to the end.
  const checkpoints = await reader.checkpoints();
  let after = checkpoints.at(-1)?.treeSize ?? (await reader.anchor())?.prunedThrough ?? 0;
  for (;;) {
    const page = await reader.records(after, PAGE);
    if (page.length === 0) return after;
    after = page.at(-1)!.seq;
    if (page.length < PAGE) return after;
  }
}

function describeRecord(row: StoredRecord): string {
  if (row.record === null) return `${row.seq}  (damaged: no record)`;
  const record = parseRecord(row.record);
  const key = record.keyId === null ? "" : ` key=${record.keyId}@${record.keyVersion ?? "-"}`;
  const credential = record.credentialId === null ? "" : ` credential=${record.credentialId}`;
  const error = record.errorCode === null ? "" : ` error=${record.errorCode}`;
  return `${record.seq}  ${new Date(record.at).toISOString()}  ${record.type} ${record.outcome}  ${record.principal.type}:${record.principal.id}${key}${credential}${error}`;
}

function describeVerify(report: VerifyReport, completeness: CompletenessReport | null): string {
  const lines: string[] = [];
  if (report.ok) {
    lines.push(
      `Audit log intact: ${report.records} records (${report.firstSeq ?? "-"}-${report.lastSeq ?? "-"}), ${report.checkpointsVerified} checkpoints verified.`,
    );
    if (report.prunedThrough !== null) {
      lines.push(
        `Records 1-${report.prunedThrough} were pruned by retention; a signed checkpoint vouches for them.`,
      );
    }
    if (report.unsignedRecords > 0) {
      lines.push(
        `The newest ${report.unsignedRecords} records are chained but not yet covered by a signed checkpoint; \`arbor audit checkpoint\` signs them.`,
      );
    }
  } else {
    const damage = report.damage!;
    lines.push(`Audit log DAMAGED at record ${damage.seq}: ${damage.kind}`, damage.message);
  }
  if (completeness !== null) {
    lines.push(
      "",
      formatFields([
        ["issuances", completeness.issuances],
        ["issuance records", completeness.issuanceRecords],
        ["missing records", completeness.missingRecords.join(", ") || "none"],
        ["unmatched records", completeness.unmatchedRecords.join(", ") || "none"],
        ["complete", completeness.complete ? "yes" : "NO"],
      ]),
    );
  }
  return lines.join("\n");
}

function describeTrace(trace: Trace, proofFile: string | undefined): string {
  const rows: (string | number | null)[][] = [["STEP", "SEQ", "RECORD", "PATH", "BY"]];
  for (const step of trace.steps) {
    rows.push([step.ref, step.seq, step.type ?? step.note, step.path, step.principal]);
  }
  const lines = [formatTable(rows)];
  if (trace.uses.length > 0) {
    lines.push(
      "",
      `Later records naming ${trace.subject}: ${trace.uses.map((u) => `${u.seq} ${u.type}`).join(", ")}`,
    );
  }
  if (proofFile !== undefined) lines.push("", `Proof written to ${proofFile}.`);
  return lines.join("\n");
}

function describeProofSubject(text: string): string {
  const proof = JSON.parse(text) as ProofFile;
  return `${proof.subject}, ${proof.entries.length} records included in the checkpoint over ${proof.checkpoint.body.treeSize} records`;
}

async function readJwk(file: string): Promise<JsonWebKey> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw fileError(`reading the public key ${file}`, error);
  }
  try {
    const jwk = JSON.parse(text) as JsonWebKey;
    if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string") throw new Error();
    // A public key is 32 bytes; a JWK with `d` is a private key that must not travel with proofs.
    if (!/^[A-Za-z0-9_-]{43}$/.test(jwk.x) || "d" in jwk) throw new Error();
    return { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
  } catch {
    throw usageError(
      `${file} is not an Ed25519 public key in JWK form`,
      "write it with `arbor audit public-key > audit-key.jwk`",
    );
  }
}

/**
 * Reads checkpoints kept outside the database: a signed checkpoint (`{body, signature}`), a row
 * of `GET /v1/audit/checkpoints` (`{signed}`), or an exporter's JSON lines, whose
 * `audit.checkpoint` records carry the signed tree heads. Returns every checkpoint found.
 */
async function readCheckpointFile(file: string): Promise<SignedCheckpoint[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw fileError(`reading the checkpoint ${file}`, error);
  }
  const found: SignedCheckpoint[] = [];
  const lines =
    text.trim().startsWith("{") && !text.trim().includes("\n{") ? [text] : text.split("\n");
  for (const line of lines) {
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw notACheckpoint(file);
    }
    const checkpoint = toCheckpoint(value);
    if (checkpoint === null) {
      // An exporter's file contains every record, and only its checkpoint records are used here.
      if (lines.length > 1) continue;
      throw notACheckpoint(file);
    }
    found.push(checkpoint);
  }
  if (found.length === 0) throw notACheckpoint(file);
  return found;
}

function toCheckpoint(value: unknown): SignedCheckpoint | null {
  if (typeof value !== "object" || value === null) return null;
  const object = value as Record<string, unknown>;
  if (typeof object.signed === "string") {
    try {
      return toCheckpoint(JSON.parse(object.signed));
    } catch {
      return null;
    }
  }
  if (
    typeof object.body === "object" &&
    object.body !== null &&
    typeof object.signature === "string"
  ) {
    const body = object.body as Record<string, unknown>;
    if (typeof body.treeSize !== "number" || typeof body.rootHash !== "string") return null;
    return value as SignedCheckpoint;
  }
  if (
    object.type === "audit.checkpoint" &&
    typeof object.details === "object" &&
    object.details !== null
  ) {
    const details = object.details as Record<string, unknown>;
    const { treeSize, prevTreeSize, rootHash, signature, signedAt } = details;
    if (
      typeof treeSize !== "number" ||
      typeof prevTreeSize !== "number" ||
      typeof rootHash !== "string" ||
      typeof signature !== "string" ||
      typeof signedAt !== "number"
    ) {
      return null;
    }
    return {
      body: {
        v: 1,
        kind: "arbor-audit-checkpoint",
        treeSize,
        rootHash,
        at: signedAt,
        prevTreeSize,
      },
      signature,
    };
  }
  return null;
}

function notACheckpoint(file: string): CliError {
  return usageError(
    `no checkpoint found in ${file}`,
    'pass a signed checkpoint ({"body", "signature"}), a row of GET /v1/audit/checkpoints, or an exporter\'s JSON lines file',
  );
}

function parseCount(text: string): number {
  if (!/^[0-9]{1,12}$/.test(text))
    throw usageError(`invalid count ${JSON.stringify(text)}: use a whole number`);
  return Number(text);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Opens a database file read-only for `verify --db`, turning SQLite's errors into file errors. */
function openDatabaseCopy(file: string): ReturnType<typeof openSqliteReadOnly> {
  try {
    return openSqliteReadOnly(file);
  } catch (error) {
    throw new CliError(
      "FILE_ERROR",
      `cannot open ${file} as an Arbor database: ${messageOf(error)}`,
      {
        hint: COPY_HINT,
        cause: error,
      },
    );
  }
}

async function requireAuditTables(
  db: ReturnType<typeof openSqliteReadOnly>,
  file: string,
): Promise<void> {
  try {
    await db.selectFrom("audit_anchor").select("id").limit(1).execute();
    await db.selectFrom("audit_events").select("seq").limit(1).execute();
  } catch (error) {
    throw new CliError(
      "FILE_ERROR",
      `cannot read an Arbor audit log from ${file}: ${messageOf(error)}`,
      {
        hint: COPY_HINT,
        cause: error,
      },
    );
  }
}

// A copy of a live database made with `cp` misses the newest pages, which sit in the -wal file.
const COPY_HINT =
  'copy a live database with `sqlite3 arbor.db ".backup copy.db"` (or copy arbor.db together with arbor.db-wal), and give the copy\'s directory write permission: SQLite keeps a lock file next to it even when reading';

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Tells a wrong key from a damaged log: when the log has checkpoints and not one of them verifies
 * with the key, the key is the likely fault, not every checkpoint at once.
 */
async function requireKeyMatches(reader: AuditLogReader, publicKey: JsonWebKey): Promise<void> {
  const rows = await reader.checkpoints();
  if (rows.length === 0) return;
  const verifies = rows.some((row) => {
    try {
      return verifyCheckpoint(JSON.parse(row.signed), publicKey);
    } catch {
      return false;
    }
  });
  if (!verifies) {
    throw new CliError(
      "KEY_MISMATCH",
      `none of the log's ${rows.length} checkpoints verifies with this public key`,
      { hint: "pass the key that `arbor audit public-key` printed for this deployment" },
    );
  }
}
