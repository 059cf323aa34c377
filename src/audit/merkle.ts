import { createHash } from "node:crypto";

import { constantTimeEqual } from "../crypto/compare.ts";
import { invalidArgument } from "../errors/index.ts";
import { leafHashOfBytes, NODE_PREFIX } from "./record.ts";

// The Merkle tree of RFC 9162 section 2.1 with SHA-256: MTH({}) = SHA-256(""), a leaf is
// SHA-256(0x00 || d), and an interior node is SHA-256(0x01 || left || right), where the left
// subtree contains the largest power of two of leaves smaller than the tree size. Every function
// here takes leaf hashes, never leaf data. Tree sizes and indexes are safe integers and are
// shifted by arithmetic, not with 32-bit bitwise operators.

/** Size in bytes of every hash in the tree. */
export const HASH_BYTES = 32;

/** Root of the empty tree: SHA-256 of the empty string. */
export const EMPTY_TREE_ROOT: Buffer = createHash("sha256").digest();

const SHA256_HEX = /^[0-9a-f]{64}$/;
// Allocated once: nodeHash runs about n times per proof.
const NODE_PREFIX_BYTES = Uint8Array.of(NODE_PREFIX);

/**
 * Leaf hashes by index: an array, or a function (for example one reading the audit table).
 * A function must return the 32-byte leaf hash of the leaf at `index` and throw when it has none.
 */
export type LeafSource = readonly Uint8Array[] | ((index: number) => Uint8Array);

/** Returns the RFC 9162 interior node hash SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return createHash("sha256").update(NODE_PREFIX_BYTES).update(left).update(right).digest();
}

/** Returns the RFC 9162 leaf hash SHA-256(0x00 || data) of raw leaf data. */
export function leafHash(data: Uint8Array): Buffer {
  return leafHashOfBytes(data);
}

/** True when `value` is 64 lowercase hex digits, the only hash spelling Arbor writes or accepts. */
export function isSha256Hex(value: unknown): value is string {
  return typeof value === "string" && SHA256_HEX.test(value);
}

/**
 * The compact range of the prefix [0, size) of the tree: one root per perfect subtree, largest
 * first, as the binary digits of `size` dictate. Appending costs O(log n) hashes, and the
 * frontier alone gives the root. Stored as JSON, it is what lets retention delete the leaves of a
 * prefix and still compute roots and proofs of the remaining log.
 */
export class MerkleFrontier {
  #size = 0;
  /** Subtree roots, largest first: one per set bit b of the size, covering 2^b leaves. */
  #nodes: Buffer[] = [];

  get size(): number {
    return this.#size;
  }

  /** Appends the leaf hash of leaf `size` (the record with seq `size + 1`). */
  append(leafHash: Uint8Array): void {
    this.appendSubtree(1, leafHash);
  }

  /**
   * Appends the root of a perfect subtree of `subtreeSize` leaves (a power of two). The subtree
   * must be aligned: `size` must be a multiple of `subtreeSize`, as it is in a tree built leaf by
   * leaf. Throws INVALID_ARGUMENT otherwise.
   */
  appendSubtree(subtreeSize: number, root: Uint8Array): void {
    requireHashBytes(root, "root");
    if (!isPowerOfTwo(subtreeSize) || this.#size % subtreeSize !== 0) {
      throw invalidArgument(
        "subtreeSize",
        subtreeSize,
        `expected a power of two that divides the frontier size ${this.#size}`,
      );
    }
    if (this.#size > Number.MAX_SAFE_INTEGER - subtreeSize) {
      throw invalidArgument("size", this.#size, "the tree is full (2^53 - 1 leaves)");
    }
    let node: Buffer = Buffer.from(root);
    // Each 1 bit of the old size at or above the subtree's height is a node of equal height
    // waiting for a right sibling, so merge until a 0 bit.
    let carry = this.#size / subtreeSize;
    while (carry % 2 === 1) {
      node = nodeHash(this.#nodes.pop()!, node);
      carry = Math.floor(carry / 2);
    }
    this.#nodes.push(node);
    this.#size += subtreeSize;
  }

  /** Returns MTH of the leaves [0, size): the subtree roots folded from the right. */
  root(): Buffer {
    const last = this.#nodes.length - 1;
    if (last < 0) return Buffer.from(EMPTY_TREE_ROOT);
    let root = this.#nodes[last]!;
    for (let i = last - 1; i >= 0; i--) root = nodeHash(this.#nodes[i]!, root);
    return Buffer.from(root);
  }

  clone(): MerkleFrontier {
    const copy = new MerkleFrontier();
    copy.#size = this.#size;
    copy.#nodes = this.#nodes.map((node) => Buffer.from(node));
    return copy;
  }

  /** Returns the subtree roots, left to right, each with the leaf range [start, start + size) it covers. */
  subtrees(): Array<{ start: number; size: number; hash: Buffer }> {
    const sizes = powersOfTwoIn(this.#size);
    let start = 0;
    return this.#nodes.map((hash, i) => {
      const size = sizes[i]!;
      const subtree = { start, size, hash: Buffer.from(hash) };
      start += size;
      return subtree;
    });
  }

  toJSON(): FrontierJson {
    return { size: this.#size, nodes: this.#nodes.map((node) => node.toString("hex")) };
  }

  /**
   * Restores a frontier from {@link toJSON} output. Throws INVALID_ARGUMENT unless `size` is a
   * safe integer and `nodes` contains exactly one lowercase hex hash per set bit of `size`.
   */
  static fromJSON(json: unknown): MerkleFrontier {
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw invalidArgument("frontier", json, "expected an object {size, nodes}");
    }
    const { size, nodes, ...rest } = json as Record<string, unknown>;
    const unknownKeys = Object.keys(rest);
    if (unknownKeys.length > 0) {
      throw invalidArgument(
        "frontier",
        unknownKeys[0],
        "unknown field; expected only size and nodes",
      );
    }
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
      throw invalidArgument("frontier.size", size, "expected an integer from 0 to 2^53 - 1");
    }
    const expected = powersOfTwoIn(size).length;
    if (!Array.isArray(nodes) || nodes.length !== expected) {
      throw invalidArgument(
        "frontier.nodes",
        nodes,
        `expected an array of ${expected} hashes, one per set bit of size ${size}`,
      );
    }
    const frontier = new MerkleFrontier();
    frontier.#size = size;
    frontier.#nodes = nodes.map((node: unknown, i) => {
      if (!isSha256Hex(node)) {
        throw invalidArgument(`frontier.nodes[${i}]`, node, "expected 64 lowercase hex digits");
      }
      return Buffer.from(node, "hex");
    });
    return frontier;
  }
}

/** A serialized {@link MerkleFrontier}: the leaf count and the subtree roots in hex, largest first. */
export interface FrontierJson {
  size: number;
  nodes: string[];
}

/** Returns MTH over leaf hashes in index order; the empty list gives EMPTY_TREE_ROOT. */
export function merkleRoot(leaves: readonly Uint8Array[]): Buffer {
  const frontier = new MerkleFrontier();
  for (const leaf of leaves) frontier.append(leaf);
  return frontier.root();
}

/** Options of proof generation. */
export interface ProofOptions {
  /**
   * The frontier of a pruned prefix [0, pruned.size): its leaves are never read, and the subtree
   * roots covering them come from the frontier instead.
   */
  pruned?: MerkleFrontier;
}

/**
 * Returns the leaf ranges [start, end) whose subtree roots form the inclusion proof of
 * `leafIndex` in a tree of `treeSize` leaves (RFC 9162 section 2.1.3.1, PATH), in proof order:
 * the sibling nearest the leaf first. Callers holding leaves in a database can compute each
 * range's root with a MerkleFrontier over that range.
 */
export function inclusionProofRanges(leafIndex: number, treeSize: number): Array<[number, number]> {
  requireTreeSize(treeSize, "treeSize");
  if (!Number.isSafeInteger(leafIndex) || leafIndex < 0 || leafIndex >= treeSize) {
    throw invalidArgument("leafIndex", leafIndex, `expected an integer from 0 to ${treeSize - 1}`);
  }
  // PATH(m, D[lo:hi]) descends into the half holding m and lists the other half's root after
  // the deeper proof, so walking down and reversing gives the RFC's order without recursion.
  const ranges: Array<[number, number]> = [];
  let lo = 0;
  let hi = treeSize;
  while (hi - lo > 1) {
    const k = largestPowerOfTwoBelow(hi - lo);
    if (leafIndex < lo + k) {
      ranges.push([lo + k, hi]);
      hi = lo + k;
    } else {
      ranges.push([lo, lo + k]);
      lo += k;
    }
  }
  return ranges.reverse();
}

/**
 * Returns the leaf ranges whose roots form the consistency proof from tree size `m` to `n`
 * (RFC 9162 section 2.1.4.1, PROOF and SUBPROOF), in proof order. Empty when m equals n.
 */
export function consistencyProofRanges(m: number, n: number): Array<[number, number]> {
  requireTreeSize(n, "n");
  if (!Number.isSafeInteger(m) || m < 1 || m > n) {
    throw invalidArgument("m", m, `expected an integer from 1 to the new tree size ${n}`);
  }
  const ranges: Array<[number, number]> = [];
  let lo = 0;
  let hi = n;
  // `complete` is SUBPROOF's flag b. It stays true while [lo, hi) is the left edge of the old
  // tree, whose root the verifier already has.
  let complete = true;
  for (;;) {
    if (m === hi) {
      if (!complete) ranges.push([lo, hi]);
      break;
    }
    const k = largestPowerOfTwoBelow(hi - lo);
    if (m <= lo + k) {
      ranges.push([lo + k, hi]);
      hi = lo + k;
    } else {
      ranges.push([lo, lo + k]);
      lo += k;
      complete = false;
    }
  }
  return ranges.reverse();
}

/**
 * Returns the inclusion proof of `leafIndex` in the tree of the first `treeSize` leaves. Reads
 * each leaf below `treeSize` at most once (O(n) hashes), without recursion.
 */
export function inclusionProof(
  leafIndex: number,
  treeSize: number,
  getLeaf: LeafSource,
  options: ProofOptions = {},
): Buffer[] {
  return inclusionProofs([leafIndex], treeSize, getLeaf, options)[0]!;
}

/**
 * Returns the inclusion proofs of several leaves in one pass over the leaves, so a proof file of
 * k records costs n hashes instead of k times n.
 */
export function inclusionProofs(
  leafIndexes: readonly number[],
  treeSize: number,
  getLeaf: LeafSource,
  options: ProofOptions = {},
): Buffer[][] {
  const rangeLists = leafIndexes.map((index) => inclusionProofRanges(index, treeSize));
  const roots = rootsOfRanges(rangeLists.flat(), getLeaf, options.pruned);
  // Copies, so proofs that share a sibling never share a buffer.
  return rangeLists.map((ranges) =>
    ranges.map(([start, end]) => Buffer.from(roots.get(rangeKey(start, end))!)),
  );
}

/** Returns the consistency proof from the tree of `m` leaves to the tree of `n` leaves. */
export function consistencyProof(
  m: number,
  n: number,
  getLeaf: LeafSource,
  options: ProofOptions = {},
): Buffer[] {
  const ranges = consistencyProofRanges(m, n);
  const roots = rootsOfRanges(ranges, getLeaf, options.pruned);
  return ranges.map(([start, end]) => roots.get(rangeKey(start, end))!);
}

/**
 * Computes the roots of proof ranges in one left-to-right pass over the leaves. Each range splits
 * into perfect subtrees, one per binary digit of its length, from its aligned start. The pass
 * records those subtrees as a frontier completes them, and each range root is then folded from
 * its subtrees like a frontier root. Leaves below `pruned.size` are never read, because the pass
 * starts from the pruned frontier's subtrees instead.
 */
function rootsOfRanges(
  ranges: ReadonlyArray<readonly [number, number]>,
  getLeaf: LeafSource,
  pruned: MerkleFrontier | undefined,
): Map<string, Buffer> {
  const needed = new SubtreeTable();
  let first = Number.POSITIVE_INFINITY;
  let end = 0;
  let largest = 1;
  for (const [start, stop] of ranges) {
    for (const [chunkStart, chunkSize] of perfectSubtrees(start, stop)) {
      needed.need(chunkStart, chunkSize);
      largest = Math.max(largest, chunkSize);
    }
    first = Math.min(first, start);
    end = Math.max(end, stop);
  }

  const stack: Array<{ start: number; size: number; hash: Uint8Array }> = [];
  // A pass that starts at a multiple of the largest needed subtree builds every needed subtree
  // at its true position, so the leaves before the first range need not be read.
  let next = Math.floor(first / largest) * largest;
  if (pruned !== undefined && next < pruned.size) {
    for (const subtree of pruned.subtrees()) {
      stack.push(subtree);
      needed.offer(subtree.start, subtree.size, subtree.hash);
    }
    next = pruned.size;
  }
  const read = typeof getLeaf === "function" ? getLeaf : (index: number) => leafAt(getLeaf, index);
  for (; next < end; next++) {
    const leaf = read(next);
    requireHashBytes(leaf, `leaf ${next}`);
    let node = { start: next, size: 1, hash: leaf };
    needed.offer(node.start, node.size, node.hash);
    // Same merge rule as MerkleFrontier.append, keeping each completed subtree's position.
    while (stack.length > 0 && stack.at(-1)!.size === node.size) {
      const left = stack.pop()!;
      node = { start: left.start, size: left.size * 2, hash: nodeHash(left.hash, node.hash) };
      needed.offer(node.start, node.size, node.hash);
    }
    stack.push(node);
  }

  const roots = new Map<string, Buffer>();
  for (const [start, stop] of ranges) {
    const chunks = perfectSubtrees(start, stop).map(([chunkStart, chunkSize]) => {
      const hash = needed.get(chunkStart, chunkSize);
      if (hash === null) {
        throw invalidArgument(
          "range",
          `[${start}, ${stop})`,
          `needs leaves below ${pruned?.size ?? 0} that retention pruned and the stored frontier does not cover`,
        );
      }
      return hash;
    });
    let root: Buffer = Buffer.from(chunks.at(-1)!);
    for (let i = chunks.length - 2; i >= 0; i--) root = nodeHash(chunks[i]!, root);
    roots.set(rangeKey(start, stop), root);
  }
  return roots;
}

/** Perfect subtrees a pass must capture, by start and size; numeric keys keep the pass cheap. */
class SubtreeTable {
  readonly #byStart = new Map<number, Map<number, Buffer | null>>();

  need(start: number, size: number): void {
    let sizes = this.#byStart.get(start);
    if (sizes === undefined) this.#byStart.set(start, (sizes = new Map<number, Buffer | null>()));
    sizes.set(size, null);
  }

  /** Stores a copy of the subtree's root if it is needed. */
  offer(start: number, size: number, hash: Uint8Array): void {
    const sizes = this.#byStart.get(start);
    if (sizes?.has(size) === true) sizes.set(size, Buffer.from(hash));
  }

  get(start: number, size: number): Buffer | null {
    return this.#byStart.get(start)?.get(size) ?? null;
  }
}

/**
 * Splits [start, end) into perfect subtrees, largest first, as [start, size] pairs. Throws
 * INVALID_ARGUMENT unless start is a multiple of the smallest power of two not below the length,
 * which is true of every subtree of an RFC 9162 tree.
 */
function perfectSubtrees(start: number, end: number): Array<[number, number]> {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end <= start) {
    throw invalidArgument("range", `[${start}, ${end})`, "expected 0 <= start < end");
  }
  if (start % smallestPowerOfTwoAtLeast(end - start) !== 0) {
    throw invalidArgument("range", `[${start}, ${end})`, "is not a subtree of the tree");
  }
  let chunkStart = start;
  return powersOfTwoIn(end - start).map((size) => {
    const chunk: [number, number] = [chunkStart, size];
    chunkStart += size;
    return chunk;
  });
}

function rangeKey(start: number, end: number): string {
  return `${start}:${end}`;
}

/**
 * Returns MTH of the leaves [start, end), a subtree of the tree: `start` must be a multiple of the
 * smallest power of two not below the range's length. Leaves below `pruned.size` come from the
 * pruned frontier. Throws INVALID_ARGUMENT for another range, or one the pruned frontier cannot
 * cover.
 */
export function rangeRoot(
  start: number,
  end: number,
  getLeaf: LeafSource,
  pruned?: MerkleFrontier,
): Buffer {
  return rootsOfRanges([[start, end]], getLeaf, pruned).get(rangeKey(start, end))!;
}

/**
 * Checks an RFC 9162 section 2.1.3.2 inclusion proof: that `leafHash` is leaf `leafIndex` of the
 * tree of `treeSize` leaves with root `root`. Returns false for any malformed input (a negative
 * or fractional index, a hash that is not 32 bytes) and never throws.
 */
export function verifyInclusion(
  leafHash: Uint8Array,
  leafIndex: number,
  treeSize: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!isSafeCount(leafIndex) || !isSafeCount(treeSize) || leafIndex >= treeSize) return false;
  if (!isHashBytes(leafHash) || !isHashBytes(root) || !proof.every(isHashBytes)) return false;

  let fn = leafIndex;
  let sn = treeSize - 1;
  let r: Buffer = Buffer.from(leafHash);
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      // A right edge of an incomplete level has no sibling there; skip up to where it has one.
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn /= 2;
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && constantTimeEqual(r, root);
}

/**
 * Checks an RFC 9162 section 2.1.4.2 consistency proof that the tree of `m` leaves with root
 * `oldRoot` is a prefix of the tree of `n` leaves with root `newRoot`. For m = n the proof must be
 * empty and the roots equal; for m = 0 the proof must be empty and `oldRoot` the empty-tree root.
 * Returns false for malformed input and never throws.
 */
export function verifyConsistency(
  m: number,
  n: number,
  proof: readonly Uint8Array[],
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
): boolean {
  if (!isSafeCount(m) || !isSafeCount(n) || m > n) return false;
  if (!isHashBytes(oldRoot) || !isHashBytes(newRoot) || !proof.every(isHashBytes)) return false;
  if (m === 0) return proof.length === 0 && constantTimeEqual(oldRoot, EMPTY_TREE_ROOT);
  if (m === n) return proof.length === 0 && constantTimeEqual(oldRoot, newRoot);
  if (proof.length === 0) return false;

  // When m is a power of two the old root is itself a node of the new tree, so the proof omits it.
  const path: readonly Uint8Array[] = isPowerOfTwo(m) ? [oldRoot, ...proof] : proof;
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) {
    fn = (fn - 1) / 2;
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = Buffer.from(path[0]!);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn /= 2;
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // Both comparisons always run, so the time taken does not reveal which root differed.
  const oldMatches = constantTimeEqual(fr, oldRoot);
  const newMatches = constantTimeEqual(sr, newRoot);
  return sn === 0 && oldMatches && newMatches;
}

function leafAt(leaves: readonly Uint8Array[], index: number): Uint8Array {
  const leaf = leaves[index];
  if (leaf === undefined)
    throw invalidArgument("leafIndex", index, `no leaf hash at index ${index}`);
  return leaf;
}

/** Returns the powers of two that sum to `size`, largest first. */
function powersOfTwoIn(size: number): number[] {
  const powers: number[] = [];
  let rest = size;
  let power = 1;
  while (power * 2 <= rest) power *= 2;
  for (; rest > 0; power /= 2) {
    if (power <= rest) {
      powers.push(power);
      rest -= power;
    }
  }
  return powers;
}

/** Returns the largest power of two smaller than `n` (n >= 2), the RFC's k. */
function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function smallestPowerOfTwoAtLeast(n: number): number {
  let k = 1;
  while (k < n) k *= 2;
  return k;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && smallestPowerOfTwoAtLeast(n) === n;
}

function requireTreeSize(treeSize: number, name: string): void {
  if (!Number.isSafeInteger(treeSize) || treeSize < 1) {
    throw invalidArgument(name, treeSize, "expected an integer from 1 to 2^53 - 1");
  }
}

function requireHashBytes(value: Uint8Array, name: string): void {
  if (!isHashBytes(value)) {
    throw invalidArgument(
      name,
      describeBytes(value),
      `expected ${HASH_BYTES} bytes (a SHA-256 hash)`,
    );
  }
}

function describeBytes(value: unknown): string {
  return value instanceof Uint8Array ? `${value.length} bytes` : typeof value;
}

function isHashBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.length === HASH_BYTES;
}

function isSafeCount(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}
