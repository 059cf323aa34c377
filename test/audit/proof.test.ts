import assert from "node:assert/strict";
import { generateKeyPairSync, sign as nodeSign, type JsonWebKey } from "node:crypto";
import { before, describe, test } from "node:test";

import {
  checkpointKeyId,
  createCheckpoint,
  type SignedCheckpoint,
} from "../../src/audit/checkpoint.ts";
import { MerkleFrontier, merkleRoot } from "../../src/audit/merkle.ts";
import {
  checkChainCoverage,
  createProofFile,
  establishesKeyVersion,
  issuesCredential,
  serializeProofFile,
  verifyProofFile,
  type ProofFile,
  type ProofVerification,
} from "../../src/audit/proof.ts";
import {
  GENESIS_HASH,
  buildRecord,
  canonicalRecordJson,
  recordHash,
  type AuditRecord,
} from "../../src/audit/record.ts";
import type { AuditEvent } from "../../src/audit/types.ts";
import { expectArborError } from "../crypto/vectors.ts";

const pair = generateKeyPairSync("ed25519");
const publicJwk: JsonWebKey = pair.publicKey.export({ format: "jwk" });
const otherJwk: JsonWebKey = generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" });
const sign = (message: Uint8Array): Promise<Uint8Array> =>
  Promise.resolve(new Uint8Array(nodeSign(null, message, pair.privateKey)));

function event(type: AuditEvent["type"], fields: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type,
    outcome: "success",
    at: 1_767_225_600_000,
    principal: { type: "operator", id: "opt_admin" },
    sourceAddress: "127.0.0.1",
    requestId: null,
    keyId: null,
    keyVersion: null,
    chain: [],
    credentialId: null,
    errorCode: null,
    details: {},
    ...fields,
  };
}

function keyEvent(
  type: "key.created" | "key.rotated",
  keyId: string,
  version: number,
  parent: string,
): AuditEvent {
  return event(type, {
    keyId,
    keyVersion: version,
    chain: [parent, `${keyId}@${version}`],
    details: { path: keyId === "key_ten" ? "prod/café" : keyId },
  });
}

// Low bit (next digit or letter), 0x20 (letter case; turns quotes and digits into other
// characters) and the high bit (invalid UTF-8). All eight bits pass too but take about three
// times as long.
const FLIP_MASKS = [0x01, 0x20, 0x80];

const TOKEN_CHAIN = ["root@1", "key_env@1", "key_ten@1", "key_svc@2"];

/** Returns the events of a small log. The proof of tok_subject needs seqs 1, 2, 3, 6 and 7. */
function sampleEvents(): AuditEvent[] {
  return [
    event("sys.initialized", { credentialId: "opt_root", details: { rootVersion: 1, shares: 5 } }),
    keyEvent("key.created", "key_env", 1, "root@1"),
    keyEvent("key.created", "key_ten", 1, "key_env@1"),
    keyEvent("key.created", "key_svc", 1, "key_ten@1"),
    event("crypto.encrypt", { credentialId: "dk_other", requestId: "req-unrelated-secret" }),
    keyEvent("key.rotated", "key_svc", 2, "key_ten@1"),
    event("token.issued", {
      principal: { type: "service", id: "svc_billing" },
      keyId: "key_svc",
      keyVersion: 2,
      chain: TOKEN_CHAIN,
      credentialId: "tok_subject",
      details: { expiresAt: 1_767_226_500_000, scope: "invoices:read" },
    }),
    event("token.introspected", { credentialId: "tok_subject", requestId: "req-introspect" }),
    event("auth.failed", { outcome: "failure", errorCode: "UNAUTHENTICATED", requestId: "req-x" }),
    event("token.issued", {
      keyId: "key_svc",
      keyVersion: 2,
      chain: TOKEN_CHAIN,
      credentialId: "tok_unrelated",
    }),
    event("crypto.decrypt", { keyId: "key_svc", keyVersion: 1 }),
    event("sys.sealed"),
  ];
}

interface Log {
  records: AuditRecord[];
  leaves: Buffer[];
}

function chainLog(events: readonly AuditEvent[]): Log {
  const records: AuditRecord[] = [];
  let prev = GENESIS_HASH;
  for (const [i, e] of events.entries()) {
    const record = buildRecord(e, i + 1, prev);
    records.push(record);
    prev = recordHash(record);
  }
  return { records, leaves: records.map((r) => Buffer.from(recordHash(r), "hex")) };
}

async function checkpointOf(log: Log, treeSize = log.records.length): Promise<SignedCheckpoint> {
  const rootHash = merkleRoot(log.leaves.slice(0, treeSize)).toString("hex");
  return createCheckpoint({ treeSize, rootHash, at: 1_767_230_000_000, prevTreeSize: 0 }, sign, {
    keyId: checkpointKeyId(publicJwk),
  });
}

function proofOf(
  log: Log,
  checkpoint: SignedCheckpoint,
  seqs: number[],
  subject = "tok_subject",
): ProofFile {
  return createProofFile({
    checkpoint,
    records: seqs.map((seq) => log.records[seq - 1]!),
    subject,
    getLeaf: log.leaves,
  });
}

function failure(result: ProofVerification): { reason: string; entry?: number } {
  if (result.ok) assert.fail("expected verification to fail");
  return result;
}

/** Re-serializes after `change`, which edits the parsed proof file in place. */
function edited(json: string, change: (proof: ProofFile) => void): string {
  const proof = JSON.parse(json) as ProofFile;
  change(proof);
  return JSON.stringify(proof);
}

describe("proof files", () => {
  const log = chainLog(sampleEvents());
  let checkpoint: SignedCheckpoint;
  let json: string;

  before(async () => {
    checkpoint = await checkpointOf(log);
    json = serializeProofFile(proofOf(log, checkpoint, [7, 1, 3, 6, 2]));
  });

  test("a built proof verifies", () => {
    const result = verifyProofFile(json, publicJwk);
    assert.equal(result.ok, true, JSON.stringify(result));
    if (!result.ok) return;
    assert.equal(result.subject, "tok_subject");
    assert.equal(result.keyId, checkpointKeyId(publicJwk));
    assert.deepEqual(result.checkpoint, checkpoint);
    assert.deepEqual(
      result.records.map((r) => r.seq),
      [1, 2, 3, 6, 7],
    );
    assert.deepEqual(
      result.records,
      [1, 2, 3, 6, 7].map((seq) => log.records[seq - 1]),
    );
  });

  test("a proof reveals no other record", () => {
    const proof = JSON.parse(json) as ProofFile;
    assert.deepEqual(
      proof.entries.map((e) => e.leafIndex),
      [0, 1, 2, 5, 6],
    );
    for (const hidden of [
      "req-unrelated-secret",
      "dk_other",
      "tok_unrelated",
      "req-introspect",
      "UNAUTHENTICATED",
    ]) {
      assert.equal(json.includes(hidden), false, `${hidden} leaked`);
    }
    // Sibling hashes are the only trace of other records, and their leaf hashes may be among them.
    assert.equal(proof.entries.length, 5);
  });

  test("serialization is canonical and stable", () => {
    assert.equal(serializeProofFile(JSON.parse(json) as ProofFile), json);
    assert.equal(
      /\s/.test(json.replaceAll(/"(?:[^"\\]|\\.)*"/g, "")),
      false,
      "whitespace outside strings",
    );
  });

  test("wrong key fails", () => {
    assert.match(failure(verifyProofFile(json, otherJwk)).reason, /signing key|signature/);
  });

  test("specific reasons", () => {
    const cases: Array<[string, string, RegExp, number | undefined]> = [
      ["not JSON", json.slice(1), /not valid JSON/, undefined],
      ["an array", "[]", /not a JSON object/, undefined],
      [
        "unknown field",
        edited(json, (p) => Object.assign(p, { extra: 1 })),
        /unknown field "extra"/,
        undefined,
      ],
      ["version 2", edited(json, (p) => Object.assign(p, { v: 2 })), /version 2/, undefined],
      ["other kind", edited(json, (p) => Object.assign(p, { kind: "x" })), /kind/, undefined],
      ["empty subject", edited(json, (p) => (p.subject = "")), /subject/, undefined],
      ["no entries", edited(json, (p) => (p.entries = [])), /no entries/, undefined],
      ["unsorted", edited(json, (p) => p.entries.reverse()), /not sorted/, 1],
      ["duplicate", edited(json, (p) => p.entries.splice(1, 0, p.entries[0]!)), /not sorted/, 1],
      [
        "leafIndex off by one",
        edited(json, (p) => (p.entries[2]!.leafIndex += 1)),
        /leafIndex 3 is not seq - 1/,
        2,
      ],
      [
        "record not canonical",
        edited(
          json,
          (p) => (p.entries[1]!.record = JSON.stringify(JSON.parse(p.entries[1]!.record), null, 1)),
        ),
        /canonical form/,
        1,
      ],
      [
        "record invalid",
        edited(json, (p) => (p.entries[0]!.record = "{}")),
        /record is invalid/,
        0,
      ],
      [
        "inclusion element changed",
        edited(json, (p) => (p.entries[3]!.inclusion[0] = "00".repeat(32))),
        /record 6 is not included/,
        3,
      ],
      [
        "inclusion element uppercase",
        edited(
          json,
          (p) => (p.entries[3]!.inclusion[0] = p.entries[3]!.inclusion[0]!.toUpperCase()),
        ),
        /lowercase hex/,
        3,
      ],
      [
        "inclusion element dropped",
        edited(json, (p) => p.entries[3]!.inclusion.pop()),
        /not included/,
        3,
      ],
      [
        "record swapped for another",
        edited(json, (p) => (p.entries[3]!.record = canonicalRecordJson(log.records[4]!))),
        /leafIndex 5 is not seq - 1 for seq 5/,
        3,
      ],
      [
        "chain entry missing",
        edited(json, (p) => p.entries.splice(2, 1)),
        /establishes key_ten@1/,
        3,
      ],
      [
        "other subject",
        edited(json, (p) => (p.subject = "tok_unrelated")),
        /no entry issues the subject tok_unrelated/,
        undefined,
      ],
    ];
    for (const [name, text, reason, entry] of cases) {
      const result = failure(verifyProofFile(text, publicJwk));
      assert.match(result.reason, reason, name);
      assert.equal(result.entry, entry, `${name}: entry`);
    }
  });

  test("record beyond the checkpoint fails", async () => {
    const small = await checkpointOf(log, 5);
    const forged = edited(json, (p) => (p.checkpoint = small));
    const result = failure(verifyProofFile(forged, publicJwk));
    assert.match(result.reason, /beyond the checkpoint's tree size 5|not included/);
  });

  test("a throwing predicate counts as false", () => {
    const result = verifyProofFile(json, publicJwk, {
      establishes: () => {
        throw new Error("boom");
      },
    });
    assert.match(failure(result).reason, /establishes root@1/);
  });

  test("hostile input never throws", () => {
    const inputs = [
      "",
      "null",
      "0",
      '"text"',
      "{}",
      '{"v":1,"kind":"arbor-audit-proof","checkpoint":null,"entries":[{}],"subject":"x"}',
      edited(json, (p) => Object.assign(p.entries[0]!, { leafIndex: "0" })),
      edited(json, (p) => Object.assign(p.entries[0]!, { inclusion: "ab" })),
      edited(json, (p) => Object.assign(p.entries[0]!, { record: 5 })),
      edited(json, (p) => Object.assign(p, { entries: [null] })),
      edited(json, (p) => Object.assign(p, { checkpoint: { ...p.checkpoint, signature: "!!" } })),
      "[".repeat(100_000),
    ];
    for (const input of inputs) {
      assert.equal(verifyProofFile(input, publicJwk).ok, false, input.slice(0, 60));
    }
  });

  test("every flipped byte fails", () => {
    const bytes = Buffer.from(json, "utf8");
    let stillJson = 0;
    let checked = 0;
    for (let i = 0; i < bytes.length; i++) {
      for (const mask of FLIP_MASKS) {
        const copy = Buffer.from(bytes);
        copy[i] = copy[i]! ^ mask;
        const text = copy.toString("utf8");
        if (isJson(text)) stillJson++;
        checked++;
        const result = verifyProofFile(text, publicJwk);
        if (result.ok)
          assert.fail(
            `byte ${i} ^ ${mask} still verifies: ${JSON.stringify(text.slice(i - 20, i + 20))}`,
          );
      }
    }
    assert.equal(checked, bytes.length * FLIP_MASKS.length);
    // Most flips keep valid JSON, so the checks past parsing are what rejected them.
    assert.ok(stillJson > checked / 4, `only ${stillJson} of ${checked} flips stayed valid JSON`);
  });
});

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

describe("proof generation", () => {
  const log = chainLog(sampleEvents());
  let checkpoint: SignedCheckpoint;

  before(async () => {
    checkpoint = await checkpointOf(log);
  });

  test("refuses records beyond the checkpoint", async () => {
    const small = await checkpointOf(log, 6);
    expectArborError(() => proofOf(log, small, [1, 7]), "INVALID_ARGUMENT", "seq 7 of 6");
  });

  test("refuses duplicates", () => {
    expectArborError(() => proofOf(log, checkpoint, [1, 2, 2]), "INVALID_ARGUMENT", "seq 2 twice");
  });

  test("refuses a record that does not match its leaf", () => {
    const forged = { ...log.records[2]!, requestId: "forged" };
    expectArborError(
      () => createProofFile({ checkpoint, records: [forged], subject: "x", getLeaf: log.leaves }),
      "INVALID_ARGUMENT",
      "modified record",
    );
  });

  test("refuses leaves that do not match the checkpoint", () => {
    const leaves = log.leaves.map((leaf, i) => (i === 10 ? Buffer.alloc(32) : leaf));
    expectArborError(
      () =>
        createProofFile({ checkpoint, records: [log.records[0]!], subject: "x", getLeaf: leaves }),
      "INVALID_ARGUMENT",
      "damaged leaf",
    );
  });

  test("accepts stored record text", () => {
    const texts = [1, 2, 3, 6, 7].map((seq) => canonicalRecordJson(log.records[seq - 1]!));
    const proof = createProofFile({
      checkpoint,
      records: texts,
      subject: "tok_subject",
      getLeaf: log.leaves,
    });
    assert.equal(verifyProofFile(serializeProofFile(proof), publicJwk).ok, true);
    const spaced = JSON.stringify(JSON.parse(texts[0]!), null, 2);
    expectArborError(
      () => createProofFile({ checkpoint, records: [spaced], subject: "x", getLeaf: log.leaves }),
      "INVALID_ARGUMENT",
      "non-canonical text",
    );
  });

  test("proof after retention pruned a prefix", async () => {
    const filler = Array.from({ length: 5 }, (_, i) =>
      event("crypto.encrypt", { requestId: `old-${i}` }),
    );
    const pruneLog = chainLog([...filler, ...sampleEvents()]);
    const signed = await checkpointOf(pruneLog);
    const frontier = new MerkleFrontier();
    for (const leaf of pruneLog.leaves.slice(0, 5)) frontier.append(leaf);
    const getLeaf = (index: number): Uint8Array => {
      if (index < 5) throw new Error(`leaf ${index} was pruned`);
      return pruneLog.leaves[index]!;
    };
    const proof = createProofFile({
      checkpoint: signed,
      records: [6, 7, 8, 11, 12].map((seq) => pruneLog.records[seq - 1]!),
      subject: "tok_subject",
      getLeaf,
      pruned: MerkleFrontier.fromJSON(frontier.toJSON()),
    });
    const result = verifyProofFile(serializeProofFile(proof), publicJwk);
    assert.equal(result.ok, true, JSON.stringify(result));
  });
});

describe("checkChainCoverage", () => {
  const log = chainLog(sampleEvents());
  const pick = (...seqs: number[]): AuditRecord[] => seqs.map((seq) => log.records[seq - 1]!);

  test("credential chain covered", () => {
    assert.deepEqual(
      checkChainCoverage(pick(1, 2, 3, 6, 7), "tok_subject", establishesKeyVersion),
      {
        ok: true,
        chain: TOKEN_CHAIN,
        subjectEntry: 4,
      },
    );
  });

  test("a proof covers the subject's whole chain", () => {
    const needed = [1, 2, 3, 6];
    for (const [i, seq] of needed.entries()) {
      const records = pick(...needed.filter((s) => s !== seq), 7);
      const result = checkChainCoverage(records, "tok_subject", establishesKeyVersion);
      assert.equal(result.ok, false);
      assert.match(
        !result.ok ? result.reason : "",
        new RegExp(`establishes ${TOKEN_CHAIN[i]!.replace("@", "@")}`),
      );
    }
  });

  test("an older key version does not cover a newer one", () => {
    // key_svc@1 (seq 4) is in the log, but the token was signed with key_svc@2 (seq 6).
    const result = checkChainCoverage(pick(1, 2, 3, 4, 7), "tok_subject", establishesKeyVersion);
    assert.match(!result.ok ? result.reason : "", /key_svc@2/);
  });

  test("establishing record after the issuance does not count", () => {
    const late = chainLog([
      sampleEvents()[0]!,
      keyEvent("key.created", "key_env", 1, "root@1"),
      event("token.issued", {
        keyId: "key_env",
        keyVersion: 2,
        chain: ["root@1", "key_env@2"],
        credentialId: "tok_early",
      }),
      keyEvent("key.rotated", "key_env", 2, "root@1"),
    ]);
    const result = checkChainCoverage(late.records, "tok_early", establishesKeyVersion);
    assert.match(!result.ok ? result.reason : "", /before the issuance establishes key_env@2/);
  });

  test("issuance must act with its chain's last version", () => {
    const records = pick(1, 2, 3, 6, 7).map((r) => (r.seq === 7 ? { ...r, keyVersion: 1 } : r));
    const result = checkChainCoverage(records, "tok_subject", establishesKeyVersion);
    assert.match(
      !result.ok ? result.reason : "",
      /acted with key_svc@1, but its chain ends with key_svc@2/,
    );
  });

  test("two issuances are ambiguous", () => {
    const records = [...pick(1, 2, 3, 6, 7), { ...log.records[6]!, seq: 20 }];
    const result = checkChainCoverage(records, "tok_subject", establishesKeyVersion);
    assert.match(!result.ok ? result.reason : "", /more than one entry issues/);
  });

  test("failed issuance does not count", () => {
    const records = pick(1, 2, 3, 6, 7).map((r) =>
      r.seq === 7 ? { ...r, outcome: "failure" as const } : r,
    );
    assert.equal(checkChainCoverage(records, "tok_subject", establishesKeyVersion).ok, false);
    assert.equal(issuesCredential(records[4]!), false);
  });

  test("caller predicate decides what establishes", () => {
    const noRoot = (record: AuditRecord, ref: string): boolean =>
      !ref.startsWith("root@") && establishesKeyVersion(record, ref);
    const result = checkChainCoverage(pick(1, 2, 3, 6, 7), "tok_subject", noRoot);
    assert.match(!result.ok ? result.reason : "", /establishes root@1/);
  });

  test("key version subject walks its parents", () => {
    assert.deepEqual(checkChainCoverage(pick(1, 2, 3, 6), "key_svc@2", establishesKeyVersion), {
      ok: true,
      chain: TOKEN_CHAIN,
      subjectEntry: 3,
    });
    const missing = checkChainCoverage(pick(1, 3, 6), "key_svc@2", establishesKeyVersion);
    assert.match(!missing.ok ? missing.reason : "", /establishes key_env@1/);
    const unknown = checkChainCoverage(pick(1, 2, 3, 6), "key_svc@3", establishesKeyVersion);
    assert.match(!unknown.ok ? unknown.reason : "", /no entry establishes the subject key_svc@3/);
  });

  test("key version subject proof file verifies", async () => {
    const checkpoint = await checkpointOf(log);
    const proof = proofOf(log, checkpoint, [1, 2, 3, 6], "key_svc@2");
    assert.equal(verifyProofFile(serializeProofFile(proof), publicJwk).ok, true);
  });

  test("root establishment needs the matching root version", () => {
    const rotated = log.records[0]!;
    assert.equal(establishesKeyVersion(rotated, "root@1"), true);
    assert.equal(establishesKeyVersion(rotated, "root@2"), false);
    assert.equal(establishesKeyVersion({ ...rotated, type: "sys.unsealed" }, "root@1"), false);
    assert.equal(establishesKeyVersion(log.records[1]!, "key_env@1"), true);
    assert.equal(establishesKeyVersion(log.records[1]!, "key_env@01"), false);
    assert.equal(establishesKeyVersion(log.records[1]!, "key_env"), false);
  });
});
