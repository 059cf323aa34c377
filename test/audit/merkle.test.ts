import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";

import fc from "fast-check";

import {
  EMPTY_TREE_ROOT,
  MerkleFrontier,
  consistencyProof,
  consistencyProofRanges,
  inclusionProof,
  inclusionProofRanges,
  inclusionProofs,
  leafHash,
  merkleRoot,
  nodeHash,
  rangeRoot,
  verifyConsistency,
  verifyInclusion,
} from "../../src/audit/merkle.ts";
import { expectArborError, readJson } from "../crypto/vectors.ts";

// An independent reference written straight from the recursive definitions of RFC 9162
// section 2.1: MTH (2.1.1), PATH (2.1.3.1) and PROOF/SUBPROOF (2.1.4.1), over leaf data.

function sha256(...parts: Uint8Array[]): Buffer {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return hash.digest();
}

/** Returns the largest power of two smaller than n, for n > 1. */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function naiveMth(data: readonly Uint8Array[]): Buffer {
  const n = data.length;
  if (n === 0) return sha256();
  if (n === 1) return sha256(Uint8Array.of(0), data[0]!);
  const k = splitPoint(n);
  return sha256(Uint8Array.of(1), naiveMth(data.slice(0, k)), naiveMth(data.slice(k)));
}

function naivePath(m: number, data: readonly Uint8Array[]): Buffer[] {
  const n = data.length;
  if (n === 1) return [];
  const k = splitPoint(n);
  if (m < k) return [...naivePath(m, data.slice(0, k)), naiveMth(data.slice(k))];
  return [...naivePath(m - k, data.slice(k)), naiveMth(data.slice(0, k))];
}

function naiveSubproof(m: number, data: readonly Uint8Array[], complete: boolean): Buffer[] {
  const n = data.length;
  if (m === n) return complete ? [] : [naiveMth(data)];
  const k = splitPoint(n);
  if (m <= k) return [...naiveSubproof(m, data.slice(0, k), complete), naiveMth(data.slice(k))];
  return [...naiveSubproof(m - k, data.slice(k), false), naiveMth(data.slice(0, k))];
}

function naiveProof(m: number, data: readonly Uint8Array[]): Buffer[] {
  return naiveSubproof(m, data, true);
}

/** Distinct leaf data: leaf i is the 4-byte big-endian encoding of i. */
function leafData(count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(i);
    return bytes;
  });
}

const MAX_EXHAUSTIVE = 64;
const data = leafData(MAX_EXHAUSTIVE);
const hashes = data.map((d) => leafHash(d));
const roots = Array.from({ length: MAX_EXHAUSTIVE + 1 }, (_, n) => naiveMth(data.slice(0, n)));

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

function flipped(bytes: Uint8Array, index: number, mask = 0x01): Buffer {
  const copy = Buffer.from(bytes);
  copy[index] = copy[index]! ^ mask;
  return copy;
}

describe("Merkle tree against the RFC 9162 definitions", () => {
  test("hash prefixes", () => {
    const d = Buffer.from("leaf");
    assert.deepEqual(leafHash(d), sha256(Uint8Array.of(0), d));
    const l = sha256(Buffer.from("l"));
    const r = sha256(Buffer.from("r"));
    assert.deepEqual(nodeHash(l, r), sha256(Uint8Array.of(1), l, r));
  });

  test("empty tree root is SHA-256 of nothing", () => {
    assert.equal(
      hex(EMPTY_TREE_ROOT),
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
    assert.deepEqual(merkleRoot([]), EMPTY_TREE_ROOT);
    assert.deepEqual(new MerkleFrontier().root(), EMPTY_TREE_ROOT);
  });

  test("roots of every size 1 to 64", () => {
    const frontier = new MerkleFrontier();
    for (let n = 1; n <= MAX_EXHAUSTIVE; n++) {
      frontier.append(hashes[n - 1]!);
      assert.equal(frontier.size, n);
      assert.deepEqual(frontier.root(), roots[n], `frontier root at size ${n}`);
      assert.deepEqual(merkleRoot(hashes.slice(0, n)), roots[n], `merkleRoot at size ${n}`);
    }
  });

  test("proofs match the RFC 9162 definitions", () => {
    for (let n = 1; n <= MAX_EXHAUSTIVE; n++) {
      const leaves = hashes.slice(0, n);
      for (let m = 0; m < n; m++) {
        const proof = inclusionProof(m, n, leaves);
        assert.deepEqual(proof, naivePath(m, data.slice(0, n)), `PATH(${m}, D[${n}])`);
        assert.equal(
          verifyInclusion(hashes[m]!, m, n, proof, roots[n]!),
          true,
          `verify ${m} in ${n}`,
        );
      }
      for (let m = 1; m <= n; m++) {
        const proof = consistencyProof(m, n, leaves);
        assert.deepEqual(proof, naiveProof(m, data.slice(0, n)), `PROOF(${m}, D[${n}])`);
        assert.equal(
          verifyConsistency(m, n, proof, roots[m]!, roots[n]!),
          true,
          `verify ${m} to ${n}`,
        );
      }
    }
  });

  test("leaf source as a function", () => {
    const reads: number[] = [];
    const getLeaf = (index: number): Uint8Array => {
      reads.push(index);
      return hashes[index]!;
    };
    assert.deepEqual(inclusionProof(5, 13, getLeaf), inclusionProof(5, 13, hashes));
    // One pass over the tree: each leaf is read once, so the cost is O(n).
    assert.deepEqual(reads, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

    reads.length = 0;
    assert.deepEqual(rangeRoot(8, 13, getLeaf), merkleRoot(hashes.slice(8, 13)));
    assert.deepEqual(reads, [8, 9, 10, 11, 12]);

    reads.length = 0;
    const proofs = inclusionProofs([0, 5, 12], 13, getLeaf);
    assert.deepEqual(
      proofs,
      [0, 5, 12].map((m) => inclusionProof(m, 13, hashes)),
    );
    assert.deepEqual(reads, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  });
});

interface CtVectors {
  leaves: string[];
  roots: string[];
  emptyTreeRoot: string;
  inclusion: Array<{ leafIndex: number; treeSize: number; proof: string[] }>;
  consistency: Array<{ m: number; n: number; proof: string[] }>;
}

describe("Certificate Transparency reference vectors", () => {
  const ct = readJson("rfc6962/ct-merkle-vectors.json") as CtVectors;
  const ctLeaves = ct.leaves.map((d) => leafHash(Buffer.from(d, "hex")));
  const ctRoot = (size: number): Buffer => Buffer.from(ct.roots[size - 1]!, "hex");

  test("roots of every prefix", () => {
    assert.deepEqual(hex(EMPTY_TREE_ROOT), ct.emptyTreeRoot);
    const frontier = new MerkleFrontier();
    for (const [i, leaf] of ctLeaves.entries()) {
      frontier.append(leaf);
      assert.equal(hex(frontier.root()), ct.roots[i], `root of ${i + 1} leaves`);
    }
  });

  test("inclusion proofs", () => {
    for (const { leafIndex, treeSize, proof } of ct.inclusion) {
      const generated = inclusionProof(leafIndex, treeSize, ctLeaves).map(hex);
      assert.deepEqual(generated, proof, `leaf ${leafIndex} of ${treeSize}`);
      const decoded = proof.map((h) => Buffer.from(h, "hex"));
      assert.equal(
        verifyInclusion(ctLeaves[leafIndex]!, leafIndex, treeSize, decoded, ctRoot(treeSize)),
        true,
      );
    }
  });

  test("consistency proofs", () => {
    for (const { m, n, proof } of ct.consistency) {
      assert.deepEqual(consistencyProof(m, n, ctLeaves).map(hex), proof, `${m} to ${n}`);
      const decoded = proof.map((h) => Buffer.from(h, "hex"));
      assert.equal(verifyConsistency(m, n, decoded, ctRoot(m), ctRoot(n)), true, `${m} to ${n}`);
    }
  });

  test("corrupted inclusion probes fail", () => {
    const someHash = sha256(Buffer.from("some other hash"));
    for (const { leafIndex, treeSize, proof } of ct.inclusion) {
      const decoded = proof.map((h) => Buffer.from(h, "hex"));
      const leaf = ctLeaves[leafIndex]!;
      const root = ctRoot(treeSize);
      const probes: Array<[string, () => boolean]> = [
        ["index - 1", () => verifyInclusion(leaf, leafIndex - 1, treeSize, decoded, root)],
        ["index + 1", () => verifyInclusion(leaf, leafIndex + 1, treeSize, decoded, root)],
        ["index ^ 2", () => verifyInclusion(leaf, leafIndex ^ 2, treeSize, decoded, root)],
        ["size * 2", () => verifyInclusion(leaf, leafIndex, treeSize * 2, decoded, root)],
        [
          "size / 2",
          () => verifyInclusion(leaf, leafIndex, Math.floor(treeSize / 2), decoded, root),
        ],
        ["wrong leaf", () => verifyInclusion(someHash, leafIndex, treeSize, decoded, root)],
        ["empty root", () => verifyInclusion(leaf, leafIndex, treeSize, decoded, EMPTY_TREE_ROOT)],
        [
          "trailing root",
          () => verifyInclusion(leaf, leafIndex, treeSize, [...decoded, root], root),
        ],
        [
          "preceding root",
          () => verifyInclusion(leaf, leafIndex, treeSize, [root, ...decoded], root),
        ],
        [
          "short element",
          () => verifyInclusion(leaf, leafIndex, treeSize, [Buffer.alloc(0), ...decoded], root),
        ],
        [
          "removed element",
          () => verifyInclusion(leaf, leafIndex, treeSize, decoded.slice(0, -1), root),
        ],
      ];
      for (const [name, probe] of probes) {
        assert.equal(probe(), false, `${name} for leaf ${leafIndex} of ${treeSize}`);
      }
    }
  });

  test("corrupted consistency probes fail", () => {
    for (const { m, n, proof } of ct.consistency) {
      if (proof.length === 0) continue;
      const decoded = proof.map((h) => Buffer.from(h, "hex"));
      const [oldRoot, newRoot] = [ctRoot(m), ctRoot(n)];
      const probes: Array<[string, () => boolean]> = [
        ["m - 1", () => verifyConsistency(m - 1, n, decoded, oldRoot, newRoot)],
        ["m + 1", () => verifyConsistency(m + 1, n, decoded, oldRoot, newRoot)],
        ["n * 2", () => verifyConsistency(m, n * 2, decoded, oldRoot, newRoot)],
        ["swapped roots", () => verifyConsistency(m, n, decoded, newRoot, oldRoot)],
        ["empty proof", () => verifyConsistency(m, n, [], oldRoot, newRoot)],
        [
          "trailing old root",
          () => verifyConsistency(m, n, [...decoded, oldRoot], oldRoot, newRoot),
        ],
        [
          "preceding new root",
          () => verifyConsistency(m, n, [newRoot, ...decoded], oldRoot, newRoot),
        ],
        ["truncated", () => verifyConsistency(m, n, decoded.slice(0, -1), oldRoot, newRoot)],
      ];
      for (const [name, probe] of probes) {
        assert.equal(probe(), false, `${name} for ${m} to ${n}`);
      }
    }
  });
});

describe("verification edge cases", () => {
  const root1 = hashes[0]!;

  test("inclusion with sizes that cannot hold the index", () => {
    for (const [index, size] of [
      [0, 0],
      [1, 0],
      [1, 1],
      [2, 1],
      [-1, 4],
      [0.5, 4],
      [0, Number.NaN],
      [0, 2 ** 53],
    ] as const) {
      assert.equal(verifyInclusion(root1, index, size, [], root1), false, `${index} of ${size}`);
    }
  });

  test("single leaf tree", () => {
    assert.equal(verifyInclusion(root1, 0, 1, [], root1), true);
    assert.equal(verifyInclusion(root1, 0, 1, [root1], root1), false);
    assert.equal(verifyInclusion(root1.subarray(0, 31), 0, 1, [], root1.subarray(0, 31)), false);
  });

  test("consistency at and from the edges", () => {
    assert.equal(verifyConsistency(0, 0, [], EMPTY_TREE_ROOT, EMPTY_TREE_ROOT), true);
    assert.equal(verifyConsistency(0, 5, [], EMPTY_TREE_ROOT, roots[5]!), true);
    assert.equal(verifyConsistency(0, 5, [], roots[1]!, roots[5]!), false);
    assert.equal(verifyConsistency(0, 5, [roots[5]!], EMPTY_TREE_ROOT, roots[5]!), false);
    assert.equal(verifyConsistency(5, 5, [], roots[5]!, roots[5]!), true);
    assert.equal(verifyConsistency(5, 5, [], roots[5]!, roots[6]!), false);
    assert.equal(verifyConsistency(5, 5, [roots[5]!], roots[5]!, roots[5]!), false);
    assert.equal(verifyConsistency(6, 5, [], roots[6]!, roots[5]!), false);
  });

  test("huge sizes run without recursion", () => {
    const size = Number.MAX_SAFE_INTEGER;
    const ranges = inclusionProofRanges(size - 2, size);
    assert.equal(ranges.length, 53);
    assert.equal(consistencyProofRanges(2 ** 52 + 3, size).length > 0, true);
    const fake = Array.from({ length: 53 }, () => root1);
    assert.equal(verifyInclusion(root1, size - 2, size, fake, root1), false);
    assert.equal(verifyConsistency(2 ** 52 + 3, size, fake, root1, root1), false);
  });

  test("proof generation rejects impossible requests", () => {
    expectArborError(() => inclusionProof(3, 3, hashes), "INVALID_ARGUMENT", "index = size");
    expectArborError(() => inclusionProof(0, 0, hashes), "INVALID_ARGUMENT", "size 0");
    expectArborError(() => inclusionProof(-1, 3, hashes), "INVALID_ARGUMENT", "index -1");
    expectArborError(() => consistencyProof(0, 3, hashes), "INVALID_ARGUMENT", "m 0");
    expectArborError(() => consistencyProof(4, 3, hashes), "INVALID_ARGUMENT", "m > n");
    expectArborError(() => inclusionProof(1, 100, hashes), "INVALID_ARGUMENT", "missing leaf");
    expectArborError(() => rangeRoot(1, 3, hashes), "INVALID_ARGUMENT", "unaligned range");
  });
});

describe("MerkleFrontier", () => {
  test("toJSON and fromJSON round trip", () => {
    const frontier = new MerkleFrontier();
    for (const leaf of hashes.slice(0, 13)) frontier.append(leaf);
    const json = JSON.parse(JSON.stringify(frontier)) as unknown;
    assert.deepEqual(json, {
      size: 13,
      nodes: [
        hex(merkleRoot(hashes.slice(0, 8))),
        hex(merkleRoot(hashes.slice(8, 12))),
        hex(hashes[12]!),
      ],
    });
    const restored = MerkleFrontier.fromJSON(json);
    assert.deepEqual(restored.root(), frontier.root());
    restored.append(hashes[13]!);
    assert.deepEqual(restored.root(), roots[14]);
  });

  test("clone is independent", () => {
    const frontier = new MerkleFrontier();
    frontier.append(hashes[0]!);
    const copy = frontier.clone();
    copy.append(hashes[1]!);
    assert.equal(frontier.size, 1);
    assert.deepEqual(frontier.root(), roots[1]);
    assert.deepEqual(copy.root(), roots[2]);
  });

  test("fromJSON rejects malformed input", () => {
    const good = { size: 3, nodes: [hex(roots[2]!), hex(hashes[2]!)] };
    const cases: Array<[string, unknown]> = [
      ["null", null],
      ["an array", []],
      ["negative size", { ...good, size: -1 }],
      ["fractional size", { ...good, size: 2.5 }],
      ["size as string", { ...good, size: "3" }],
      ["too few nodes", { ...good, nodes: [hex(roots[2]!)] }],
      ["too many nodes", { ...good, nodes: [...good.nodes, hex(roots[1]!)] }],
      ["uppercase node", { ...good, nodes: [hex(roots[2]!).toUpperCase(), hex(hashes[2]!)] }],
      ["short node", { ...good, nodes: ["00", hex(hashes[2]!)] }],
      ["unknown field", { ...good, root: "x" }],
    ];
    assert.deepEqual(MerkleFrontier.fromJSON(good).root(), roots[3]);
    for (const [name, value] of cases) {
      expectArborError(() => MerkleFrontier.fromJSON(value), "INVALID_ARGUMENT", name);
    }
  });

  test("append rejects a hash that is not 32 bytes", () => {
    const frontier = new MerkleFrontier();
    expectArborError(() => frontier.append(new Uint8Array(31)), "INVALID_ARGUMENT", "31 bytes");
    assert.equal(frontier.size, 0);
  });

  test("appendSubtree rejects an unaligned subtree", () => {
    const frontier = new MerkleFrontier();
    frontier.append(hashes[0]!);
    expectArborError(() => frontier.appendSubtree(2, roots[2]!), "INVALID_ARGUMENT", "unaligned");
    expectArborError(() => frontier.appendSubtree(3, roots[3]!), "INVALID_ARGUMENT", "not a power");
  });
});

// fast-check properties over trees larger than the exhaustive range.
const BIG = 300;
const bigData = leafData(BIG);
const bigHashes = bigData.map((d) => leafHash(d));
const bigRoots = (() => {
  const frontier = new MerkleFrontier();
  const result = [frontier.root()];
  for (const leaf of bigHashes) {
    frontier.append(leaf);
    result.push(frontier.root());
  }
  return result;
})();

const sizeAndIndex = fc
  .integer({ min: 1, max: BIG })
  .chain((size) => fc.tuple(fc.constant(size), fc.integer({ min: 0, max: size - 1 })));

const sizePair = fc
  .integer({ min: 1, max: BIG })
  .chain((n) => fc.tuple(fc.integer({ min: 1, max: n }), fc.constant(n)));

describe("Merkle properties", () => {
  test("inclusion verifies and any flipped byte fails", () => {
    fc.assert(
      fc.property(sizeAndIndex, fc.nat(), fc.integer({ min: 0, max: 7 }), ([n, m], pick, bit) => {
        const proof = inclusionProof(m, n, bigHashes);
        const root = bigRoots[n]!;
        assert.equal(verifyInclusion(bigHashes[m]!, m, n, proof, root), true);

        const mask = 1 << bit;
        const leafByte = pick % 32;
        assert.equal(
          verifyInclusion(flipped(bigHashes[m]!, leafByte, mask), m, n, proof, root),
          false,
        );
        assert.equal(
          verifyInclusion(bigHashes[m]!, m, n, proof, flipped(root, leafByte, mask)),
          false,
        );
        if (proof.length > 0) {
          const element = pick % proof.length;
          const bad = proof.map((p, i) => (i === element ? flipped(p, leafByte, mask) : p));
          assert.equal(verifyInclusion(bigHashes[m]!, m, n, bad, root), false);
        }
      }),
      { numRuns: 500 },
    );
  });

  test("inclusion fails for any other index or size", () => {
    fc.assert(
      fc.property(
        sizeAndIndex,
        fc.integer({ min: 0, max: BIG }),
        fc.integer({ min: 1, max: BIG }),
        ([n, m], otherIndex, otherSize) => {
          const proof = inclusionProof(m, n, bigHashes);
          if (otherIndex !== m) {
            assert.equal(verifyInclusion(bigHashes[m]!, otherIndex, n, proof, bigRoots[n]!), false);
          }
          // The tree size is bound by the root that goes with it, which a checkpoint signs.
          if (otherSize !== n) {
            assert.equal(
              verifyInclusion(bigHashes[m]!, m, otherSize, proof, bigRoots[otherSize]!),
              false,
            );
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  test("every byte of every proof element matters", () => {
    for (const [m, n] of [
      [0, 1],
      [6, 7],
      [12, 13],
      [63, 64],
      [100, 257],
    ] as const) {
      const proof = inclusionProof(m, n, bigHashes);
      for (const [i, element] of proof.entries()) {
        for (let byte = 0; byte < 32; byte++) {
          const bad = proof.map((p, j) => (j === i ? flipped(element, byte, 0x80) : p));
          assert.equal(verifyInclusion(bigHashes[m]!, m, n, bad, bigRoots[n]!), false);
        }
      }
    }
  });

  test("consistency verifies and any flipped byte fails", () => {
    fc.assert(
      fc.property(sizePair, fc.nat(), fc.integer({ min: 0, max: 7 }), ([m, n], pick, bit) => {
        const proof = consistencyProof(m, n, bigHashes);
        const [oldRoot, newRoot] = [bigRoots[m]!, bigRoots[n]!];
        assert.equal(verifyConsistency(m, n, proof, oldRoot, newRoot), true);

        const mask = 1 << bit;
        const byte = pick % 32;
        assert.equal(verifyConsistency(m, n, proof, flipped(oldRoot, byte, mask), newRoot), false);
        assert.equal(verifyConsistency(m, n, proof, oldRoot, flipped(newRoot, byte, mask)), false);
        if (proof.length > 0) {
          const element = pick % proof.length;
          const bad = proof.map((p, i) => (i === element ? flipped(p, byte, mask) : p));
          assert.equal(verifyConsistency(m, n, bad, oldRoot, newRoot), false);
        }
      }),
      { numRuns: 500 },
    );
  });

  test("consistency fails for other sizes", () => {
    fc.assert(
      fc.property(
        sizePair,
        fc.integer({ min: 1, max: BIG }),
        fc.integer({ min: 1, max: BIG }),
        ([m, n], otherM, otherN) => {
          const proof = consistencyProof(m, n, bigHashes);
          if (otherM !== m && otherM <= n) {
            assert.equal(
              verifyConsistency(otherM, n, proof, bigRoots[otherM]!, bigRoots[n]!),
              false,
            );
          }
          if (otherN !== n && otherN >= m) {
            assert.equal(
              verifyConsistency(m, otherN, proof, bigRoots[m]!, bigRoots[otherN]!),
              false,
            );
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  test("frontier root equals merkleRoot for every prefix", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 150 }),
        (leaves) => {
          const frontier = new MerkleFrontier();
          for (let n = 1; n <= leaves.length; n++) {
            frontier.append(leaves[n - 1]!);
            assert.deepEqual(frontier.root(), merkleRoot(leaves.slice(0, n)));
          }
        },
      ),
      { numRuns: 50 },
    );
  });

  test("frontier JSON round trip resumes the tree", () => {
    fc.assert(
      fc.property(sizePair, ([p, n]) => {
        const prefix = new MerkleFrontier();
        for (const leaf of bigHashes.slice(0, p)) prefix.append(leaf);
        const restored = MerkleFrontier.fromJSON(JSON.parse(JSON.stringify(prefix.toJSON())));
        assert.deepEqual(restored.toJSON(), prefix.toJSON());
        for (const leaf of bigHashes.slice(p, n)) restored.append(leaf);
        assert.deepEqual(restored.root(), bigRoots[n]);
      }),
      { numRuns: 300 },
    );
  });
});

describe("proofs after pruning", () => {
  /** Returns a leaf source that fails on any leaf below `pruned`, like a table after retention. */
  function prunedSource(pruned: number): (index: number) => Uint8Array {
    return (index) => {
      if (index < pruned) throw new Error(`leaf ${index} was pruned`);
      return bigHashes[index]!;
    };
  }

  function frontierOf(size: number): MerkleFrontier {
    const frontier = new MerkleFrontier();
    for (const leaf of bigHashes.slice(0, size)) frontier.append(leaf);
    return frontier;
  }

  test("inclusion of unpruned leaves", () => {
    fc.assert(
      fc.property(sizeAndIndex, fc.nat(), ([n, m], seed) => {
        const p = seed % (m + 1);
        const proof = inclusionProof(m, n, prunedSource(p), { pruned: frontierOf(p) });
        assert.deepEqual(proof, inclusionProof(m, n, bigHashes));
      }),
      { numRuns: 500 },
    );
  });

  test("consistency from an unpruned size", () => {
    fc.assert(
      fc.property(sizePair, fc.nat(), ([m, n], seed) => {
        const p = seed % (m + 1);
        const proof = consistencyProof(m, n, prunedSource(p), { pruned: frontierOf(p) });
        assert.deepEqual(proof, consistencyProof(m, n, bigHashes));
      }),
      { numRuns: 500 },
    );
  });

  test("a proof that needs a pruned leaf is refused", () => {
    // Leaf 0 of 4 needs leaf 1 itself, which the frontier of 3 leaves ([0, 2) and [2, 3)) lacks.
    const error = expectArborError(
      () => inclusionProof(0, 4, prunedSource(3), { pruned: frontierOf(3) }),
      "INVALID_ARGUMENT",
      "pruned sibling",
    );
    assert.match(error.message, /pruned/);
  });
});

describe("proof generation cost", () => {
  test("100,000 leaves", () => {
    const count = 100_000;
    const leaves = Array.from({ length: count }, (_, i) => sha256(Buffer.from(String(i))));
    const started = performance.now();
    const root = merkleRoot(leaves);
    const proof = inclusionProof(count - 7, count, leaves);
    const consistency = consistencyProof(count - 1000, count, leaves);
    const elapsed = performance.now() - started;
    assert.equal(verifyInclusion(leaves[count - 7]!, count - 7, count, proof, root), true);
    assert.equal(
      verifyConsistency(
        count - 1000,
        count,
        consistency,
        merkleRoot(leaves.slice(0, count - 1000)),
        root,
      ),
      true,
    );
    // Generous bound: three linear passes of SHA-256 take well under a second on any CI machine.
    assert.ok(elapsed < 10_000, `took ${elapsed.toFixed(0)} ms`);
  });
});
