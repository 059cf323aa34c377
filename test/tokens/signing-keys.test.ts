import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { test } from "node:test";

import { ObservedMaterialCache, SigningKeyCache } from "../../src/tokens/index.ts";
import { FakeClock } from "../helpers/clock.ts";

function fixture() {
  const clock = new FakeClock();
  const material = new ObservedMaterialCache({ clock, ttlMs: 60_000 });
  const keys = new SigningKeyCache({ clock, ttlMs: material.ttlMs }).followClears(material);
  keys.put("key_a", 1, generateKeyPairSync("ed25519").privateKey);
  return { clock, material, keys };
}

test("signing keys leave with the material cache", () => {
  const { material, keys } = fixture();
  assert.ok(keys.get("key_a", 1) !== undefined);
  // The tree clears the material cache on seal and when a version is disabled or revoked.
  material.clear();
  assert.equal(keys.get("key_a", 1), undefined);
  assert.equal(keys.size, 0);
});

test("signing keys expire with the material TTL", () => {
  const { clock, keys } = fixture();
  // lru-cache drops an entry once it is older than the TTL.
  clock.advance(60_000);
  assert.ok(keys.get("key_a", 1) !== undefined);
  clock.advance(1);
  assert.equal(keys.get("key_a", 1), undefined);
});

test("signing keys are cached per version", () => {
  const { keys } = fixture();
  assert.equal(keys.get("key_a", 2), undefined);
  assert.equal(keys.get("key_b", 1), undefined);
});
