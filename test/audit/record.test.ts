import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";

import canonicalize from "canonicalize";
import fc from "fast-check";

import {
  GENESIS_HASH,
  buildRecord,
  canonicalRecordBytes,
  canonicalRecordJson,
  checkHashChain,
  leafHashOfBytes,
  parseRecord,
  recordHash,
  type AuditRecord,
} from "../../src/audit/record.ts";
import type { AuditEvent } from "../../src/audit/types.ts";
import { expectArborError, readJson } from "../crypto/vectors.ts";

interface JcsVectors {
  rfc8785: {
    section_3_2_2: { input: string; output: string; outputUtf8Hex: string };
    section_3_2_3: { input: string; valuesInOrder: string[] };
    appendix_b: Array<{ ieee754: string; expected: string | null; comment: string }>;
  };
  cyberphone_testdata: Array<{ name: string; input: string; output: string; outputHex?: string }>;
}

const vectors = readJson("rfc8785/jcs-vectors.json") as JcsVectors;

function event(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type: "token.issued",
    outcome: "success",
    at: 1_767_225_600_000,
    principal: { type: "service", id: "svc_01" },
    sourceAddress: "127.0.0.1",
    requestId: "req-1",
    keyId: "key_c",
    keyVersion: 7,
    chain: ["root@1", "key_a@3", "key_c@7"],
    credentialId: "tok_1",
    errorCode: null,
    details: { scope: "read", expiresAt: 1_767_226_500_000, renewed: false, note: null },
    ...overrides,
  };
}

function sha256Hex(...parts: Uint8Array[]): string {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return hash.digest("hex");
}

function ieee754(bits: string): number {
  return Buffer.from(bits, "hex").readDoubleBE(0);
}

describe("RFC 8785 vectors through canonicalize", () => {
  test("section 3.2.2 example canonicalizes", () => {
    const { input, output, outputUtf8Hex } = vectors.rfc8785.section_3_2_2;
    const canonical = canonicalize(JSON.parse(input));
    assert.equal(canonical, output);
    assert.equal(Buffer.from(canonical, "utf8").toString("hex"), outputUtf8Hex.replaceAll(" ", ""));
  });

  test("section 3.2.3 sorts by UTF-16 code units", () => {
    const { input, valuesInOrder } = vectors.rfc8785.section_3_2_3;
    const canonical = canonicalize(JSON.parse(input))!;
    // JSON.parse reorders integer-like keys, so the order is read from the text itself.
    const positions = valuesInOrder.map((value) => canonical.indexOf(`"${value}"`));
    for (const [i, position] of positions.entries()) {
      assert.ok(position > 0, `value ${valuesInOrder[i]} missing`);
      if (i > 0) assert.ok(position > positions[i - 1]!, `value ${valuesInOrder[i]} out of order`);
    }
  });

  test("appendix B number serialization", () => {
    assert.equal(vectors.rfc8785.appendix_b.length, 26);
    for (const { ieee754: bits, expected, comment } of vectors.rfc8785.appendix_b) {
      const value = ieee754(bits);
      if (expected === null) {
        assert.throws(() => canonicalize(value), `${bits} (${comment}) must be rejected`);
      } else {
        assert.equal(canonicalize(value), expected, `${bits} ${comment}`);
      }
    }
  });

  test("reference implementation test data", () => {
    for (const { name, input, output, outputHex } of vectors.cyberphone_testdata) {
      const canonical = canonicalize(JSON.parse(input));
      assert.equal(canonical, output, name);
      if (outputHex !== undefined) {
        const expected = outputHex.replaceAll(" ", "").toLowerCase();
        assert.equal(Buffer.from(canonical, "utf8").toString("hex"), expected, name);
      }
    }
  });
});

describe("canonical record", () => {
  test("bytes match a hand-written canonical form", () => {
    const record = buildRecord(event(), 5, "ab".repeat(32));
    const expected =
      '{"at":1767225600000,"chain":["root@1","key_a@3","key_c@7"],"credentialId":"tok_1",' +
      '"details":{"expiresAt":1767226500000,"note":null,"renewed":false,"scope":"read"},' +
      '"errorCode":null,"keyId":"key_c","keyVersion":7,"outcome":"success",' +
      `"prevHash":"${"ab".repeat(32)}","principal":{"id":"svc_01","type":"service"},` +
      '"requestId":"req-1","seq":5,"sourceAddress":"127.0.0.1","type":"token.issued","v":1}';
    assert.equal(canonicalRecordJson(record), expected);
    assert.deepEqual(Buffer.from(canonicalRecordBytes(record)), Buffer.from(expected, "utf8"));
  });

  test("hash is SHA-256 of 0x00 and the bytes", () => {
    const record = buildRecord(event(), 1, GENESIS_HASH);
    const bytes = canonicalRecordBytes(record);
    assert.equal(recordHash(record), sha256Hex(Uint8Array.of(0), bytes));
    assert.equal(leafHashOfBytes(bytes).toString("hex"), recordHash(record));
  });

  test("leaf hash of empty input", () => {
    // The RFC 6962 reference vectors' first leaf is empty; its hash is their one-leaf root.
    assert.equal(
      leafHashOfBytes(new Uint8Array(0)).toString("hex"),
      "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    );
  });

  test("genesis hash is 32 zero bytes", () => {
    assert.equal(GENESIS_HASH, "0".repeat(64));
  });

  test("non-ASCII text is hashed as UTF-8", () => {
    const record = buildRecord(event({ details: { path: "prod/café/€" } }), 1, GENESIS_HASH);
    const json = canonicalRecordJson(record);
    assert.ok(json.includes('"path":"prod/café/€"'));
    assert.equal(canonicalRecordBytes(record).length, Buffer.byteLength(json, "utf8"));
  });

  test("record hash covers only the canonical record", () => {
    const plain = buildRecord(event(), 2, GENESIS_HASH);
    const withExtras = { ...event(), extra: "x", toJSON: () => ({}) } as unknown as AuditEvent;
    const record = buildRecord(withExtras, 2, GENESIS_HASH);
    assert.equal(canonicalRecordJson(record), canonicalRecordJson(plain));
    assert.equal(recordHash(record), recordHash(plain));
    assert.equal(Object.hasOwn(record, "extra"), false);

    const reordered = Object.fromEntries(
      Object.entries(event()).reverse(),
    ) as unknown as AuditEvent;
    assert.equal(recordHash(buildRecord(reordered, 2, GENESIS_HASH)), recordHash(plain));
  });

  test("buildRecord copies its input", () => {
    const input = event();
    const record = buildRecord(input, 3, GENESIS_HASH);
    input.chain.push("key_x@1");
    input.details.scope = "write";
    assert.deepEqual(record.chain, ["root@1", "key_a@3", "key_c@7"]);
    assert.equal(record.details.scope, "read");
  });

  test("buildRecord rejects broken fields", () => {
    const cases: Array<[string, () => unknown, string]> = [
      ["seq 0", () => buildRecord(event(), 0, GENESIS_HASH), "record.seq"],
      ["seq 1.5", () => buildRecord(event(), 1.5, GENESIS_HASH), "record.seq"],
      ["seq NaN", () => buildRecord(event(), Number.NaN, GENESIS_HASH), "record.seq"],
      ["seq 2^53", () => buildRecord(event(), 2 ** 53, GENESIS_HASH), "record.seq"],
      ["short prevHash", () => buildRecord(event(), 1, "00"), "record.prevHash"],
      ["uppercase prevHash", () => buildRecord(event(), 1, "AB".repeat(32)), "record.prevHash"],
      ["at 1.5", () => buildRecord(event({ at: 1.5 }), 1, GENESIS_HASH), "record.at"],
      ["at Infinity", () => buildRecord(event({ at: Infinity }), 1, GENESIS_HASH), "record.at"],
      ["at -1", () => buildRecord(event({ at: -1 }), 1, GENESIS_HASH), "record.at"],
      [
        "keyVersion 0",
        () => buildRecord(event({ keyVersion: 0 }), 1, GENESIS_HASH),
        "record.keyVersion",
      ],
      [
        "unknown type",
        () => buildRecord(event({ type: "key deleted" as AuditEvent["type"] }), 1, GENESIS_HASH),
        "record.type",
      ],
      [
        "unknown outcome",
        () => buildRecord(event({ outcome: "ok" as AuditEvent["outcome"] }), 1, GENESIS_HASH),
        "record.outcome",
      ],
      [
        "principal with an extra field",
        () =>
          buildRecord(
            event({
              principal: { type: "service", id: "s", role: "x" } as AuditEvent["principal"],
            }),
            1,
            GENESIS_HASH,
          ),
        "record.principal",
      ],
      [
        "lone surrogate",
        () => buildRecord(event({ requestId: "a\ud800b" }), 1, GENESIS_HASH),
        "record.requestId",
      ],
      [
        "lone surrogate in a detail key",
        () => buildRecord(event({ details: { "\udc00": 1 } }), 1, GENESIS_HASH),
        "record.details key",
      ],
      [
        "NaN detail",
        () => buildRecord(event({ details: { n: Number.NaN } }), 1, GENESIS_HASH),
        "record.details.n",
      ],
      [
        "Infinity detail",
        () => buildRecord(event({ details: { n: -Infinity } }), 1, GENESIS_HASH),
        "record.details.n",
      ],
      [
        "nested detail",
        () =>
          buildRecord(
            event({ details: { n: { deep: 1 } } as unknown as AuditEvent["details"] }),
            1,
            GENESIS_HASH,
          ),
        "record.details.n",
      ],
      [
        "chain element not a string",
        () => buildRecord(event({ chain: ["root@1", 2] as unknown as string[] }), 1, GENESIS_HASH),
        "record.chain[1]",
      ],
    ];
    for (const [name, run, parameter] of cases) {
      const error = expectArborError(run, "INVALID_ARGUMENT", name);
      assert.equal(error.detail.parameter, parameter, name);
    }
  });

  test("event and principal types are checked by form", () => {
    for (const type of ["key.created", "sys.root_rotated", "some.future_type", "a.b.c"]) {
      const record = buildRecord(event({ type: type as AuditEvent["type"] }), 1, GENESIS_HASH);
      assert.equal(parseRecord(canonicalRecordJson(record)).type, type);
    }
    for (const type of ["", "key", "Key.Created", "key created", "key..created", ".key"]) {
      expectArborError(
        () => buildRecord(event({ type: type as AuditEvent["type"] }), 1, GENESIS_HASH),
        "INVALID_ARGUMENT",
        `type ${JSON.stringify(type)}`,
      );
    }
    const principal = { type: "Root" as AuditEvent["principal"]["type"], id: "x" };
    expectArborError(
      () => buildRecord(event({ principal }), 1, GENESIS_HASH),
      "INVALID_ARGUMENT",
      "principal type Root",
    );
  });
});

describe("parseRecord", () => {
  const good = buildRecord(event(), 9, "cd".repeat(32));
  const goodJson = canonicalRecordJson(good);

  function mutated(change: (value: Record<string, unknown>) => void): string {
    const value = JSON.parse(goodJson) as Record<string, unknown>;
    change(value);
    return JSON.stringify(value);
  }

  test("round trip keeps every field", () => {
    const parsed = parseRecord(goodJson);
    assert.deepEqual(parsed, good);
    assert.equal(canonicalRecordJson(parsed), goodJson);
    assert.equal(recordHash(parsed), recordHash(good));
  });

  test("rejects malformed records", () => {
    const cases: Array<[string, string, string]> = [
      ["invalid JSON", goodJson.slice(0, -1), "record"],
      ["an array", "[]", "record"],
      ["null", "null", "record"],
      ["a string", '"x"', "record"],
      ["missing v", mutated((r) => delete r.v), "record"],
      ["v 2", mutated((r) => (r.v = 2)), "record.v"],
      ["missing details", mutated((r) => delete r.details), "record"],
      ["unknown field", mutated((r) => (r.extra = 1)), "record"],
      ["__proto__ field", goodJson.replace('{"at"', '{"__proto__":{},"at"'), "record"],
      ["seq as string", mutated((r) => (r.seq = "9")), "record.seq"],
      ["seq above 2^53", goodJson.replace('"seq":9', '"seq":9007199254740993'), "record.seq"],
      [
        "at overflowing to Infinity",
        goodJson.replace('"at":1767225600000', '"at":1e400'),
        "record.at",
      ],
      ["at fractional", mutated((r) => (r.at = 1.25)), "record.at"],
      ["keyVersion as string", mutated((r) => (r.keyVersion = "7")), "record.keyVersion"],
      ["chain not an array", mutated((r) => (r.chain = "root@1")), "record.chain"],
      ["details an array", mutated((r) => (r.details = [])), "record.details"],
      ["details with an object", mutated((r) => (r.details = { a: {} })), "record.details.a"],
      [
        "principal type malformed",
        mutated((r) => (r.principal = { type: "Root", id: "x" })),
        "record.principal.type",
      ],
      [
        "principal missing id",
        mutated((r) => (r.principal = { type: "service" })),
        "record.principal",
      ],
      ["sourceAddress a number", mutated((r) => (r.sourceAddress = 1)), "record.sourceAddress"],
      ["errorCode false", mutated((r) => (r.errorCode = false)), "record.errorCode"],
      ["lone surrogate escape", goodJson.replace('"req-1"', '"req-\\ud800"'), "record.requestId"],
    ];
    for (const [name, json, parameter] of cases) {
      const error = expectArborError(() => parseRecord(json), "INVALID_ARGUMENT", name);
      assert.equal(error.detail.parameter, parameter, name);
    }
  });

  test("a __proto__ detail stays data", () => {
    const json = goodJson.replace('"details":{', '"details":{"__proto__":"x",');
    const record = parseRecord(json);
    assert.equal(Object.getPrototypeOf(record.details), Object.prototype);
    assert.equal(Object.hasOwn(record.details, "__proto__"), true);
    assert.equal(record.details.__proto__, "x");
    assert.equal(canonicalRecordJson(record), json);
  });

  test("non-canonical text parses to the canonical form", () => {
    const spaced = JSON.stringify(JSON.parse(goodJson), null, 2);
    assert.notEqual(spaced, goodJson);
    assert.equal(canonicalRecordJson(parseRecord(spaced)), goodJson);
  });
});

const detailValue = fc.oneof(
  fc.string({ unit: "grapheme" }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
);

const eventArbitrary: fc.Arbitrary<AuditEvent> = fc.record({
  type: fc.constantFrom<AuditEvent["type"]>(
    "sys.initialized",
    "key.created",
    "token.issued",
    "data_key.issued",
    "audit.checkpoint",
  ),
  outcome: fc.constantFrom("success" as const, "failure" as const, "denied" as const),
  at: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  principal: fc.record({
    type: fc.constantFrom(
      "operator" as const,
      "service" as const,
      "workload" as const,
      "anonymous" as const,
      "system" as const,
    ),
    id: fc.string({ unit: "grapheme" }),
  }),
  sourceAddress: fc.option(fc.string(), { nil: null }),
  requestId: fc.option(fc.string(), { nil: null }),
  keyId: fc.option(fc.string(), { nil: null }),
  keyVersion: fc.option(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), { nil: null }),
  chain: fc.array(fc.string({ unit: "grapheme" }), { maxLength: 5 }),
  credentialId: fc.option(fc.string(), { nil: null }),
  errorCode: fc.option(fc.string(), { nil: null }),
  details: fc.dictionary(fc.string({ unit: "grapheme" }), detailValue, { maxKeys: 6 }),
});

const hashArbitrary = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .map((bytes) => Buffer.from(bytes).toString("hex"));

describe("record properties", () => {
  test("parse of canonical text round-trips", () => {
    fc.assert(
      fc.property(
        eventArbitrary,
        fc.integer({ min: 1, max: 2 ** 40 }),
        hashArbitrary,
        (e, seq, prev) => {
          const record = buildRecord(e, seq, prev);
          const json = canonicalRecordJson(record);
          const parsed = parseRecord(json);
          assert.equal(canonicalRecordJson(parsed), json);
          assert.equal(recordHash(parsed), recordHash(record));
        },
      ),
      { numRuns: 300 },
    );
  });

  test("hash changes with any field", () => {
    fc.assert(
      fc.property(eventArbitrary, eventArbitrary, (a, b) => {
        const left = buildRecord(a, 1, GENESIS_HASH);
        const right = buildRecord(b, 1, GENESIS_HASH);
        const sameText = canonicalRecordJson(left) === canonicalRecordJson(right);
        assert.equal(recordHash(left) === recordHash(right), sameText);
      }),
      { numRuns: 300 },
    );
  });

  test("detail key order does not matter", () => {
    fc.assert(
      fc.property(eventArbitrary, (e) => {
        const reversed = Object.fromEntries(Object.entries(e.details).reverse());
        const a = buildRecord(e, 4, GENESIS_HASH);
        const b = buildRecord({ ...e, details: reversed }, 4, GENESIS_HASH);
        assert.equal(recordHash(a), recordHash(b));
      }),
      { numRuns: 200 },
    );
  });
});

describe("checkHashChain", () => {
  function chainOf(count: number, after = { seq: 0, hash: GENESIS_HASH }): AuditRecord[] {
    const records: AuditRecord[] = [];
    let prev = after.hash;
    for (let seq = after.seq + 1; seq <= after.seq + count; seq++) {
      const record = buildRecord(event({ requestId: `req-${seq}` }), seq, prev);
      records.push(record);
      prev = recordHash(record);
    }
    return records;
  }

  test("accepts an intact chain", () => {
    const records = chainOf(10);
    const result = checkHashChain(records, { seq: 0, hash: GENESIS_HASH });
    assert.deepEqual(result, { ok: true, lastSeq: 10, lastHash: recordHash(records[9]!) });
  });

  test("accepts a pruned chain from its anchor", () => {
    const anchor = { seq: 40, hash: "ef".repeat(32) };
    assert.equal(checkHashChain(chainOf(5, anchor), anchor).ok, true);
    assert.equal(checkHashChain(chainOf(5, anchor), { seq: 40, hash: GENESIS_HASH }).ok, false);
  });

  test("finds the first damaged record", () => {
    const records = chainOf(10);
    const modified = records.map((r) => (r.seq === 4 ? { ...r, requestId: "forged" } : r));
    assert.deepEqual(checkHashChain(modified, { seq: 0, hash: GENESIS_HASH }), {
      ok: false,
      reason: "prevHash of seq 5 is not the hash of the record before it",
      seq: 5,
    });

    const gap = records.filter((r) => r.seq !== 6);
    const gapResult = checkHashChain(gap, { seq: 0, hash: GENESIS_HASH });
    assert.equal(gapResult.ok, false);
    assert.equal(!gapResult.ok && gapResult.seq, 7);

    const swapped = [records[0]!, records[2]!, records[1]!];
    assert.equal(checkHashChain(swapped, { seq: 0, hash: GENESIS_HASH }).ok, false);
  });

  test("reports an invalid record instead of throwing", () => {
    const records = chainOf(2);
    const broken = [records[0]!, { ...records[1]!, at: 0.5 }];
    const result = checkHashChain(broken, { seq: 0, hash: GENESIS_HASH });
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.seq, 2);
  });
});
