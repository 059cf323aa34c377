import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { errorRegistry } from "../src/errors/index.ts";

const repo = join(import.meta.dirname, "..");

function testFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return testFiles(path);
    return name.endsWith(".test.ts") ? [path] : [];
  });
}

test("every invariant has a test of its name", () => {
  const doc = readFileSync(join(repo, "docs/architecture.md"), "utf8");
  const section = doc.slice(
    doc.indexOf("## Invariants"),
    doc.indexOf("\n## ", doc.indexOf("## Invariants") + 1),
  );
  const items = [...section.matchAll(/^- \*\*(.+?)\*\*:([\s\S]*?)(?=^- \*\*|(?![\s\S]))/gm)];
  for (const [, name, text] of items)
    assert.match(text!, /\bMUST\b/, `invariant "${name}" states no MUST`);
  const invariants = items.map((m) => m[1]!);
  assert.ok(invariants.length >= 20, `found only ${invariants.length} invariants`);

  const names = new Set<string>();
  for (const file of testFiles(join(repo, "test"))) {
    for (const match of readFileSync(file, "utf8").matchAll(/\btest\(\s*"([^"]+)"/g))
      names.add(match[1]!);
  }
  const missing = invariants.filter((name) => !names.has(name));
  assert.deepEqual(missing, [], "invariants without a test of the same name");
});

test("error registry matches docs/errors.md", () => {
  const doc = readFileSync(join(repo, "docs/errors.md"), "utf8");
  const rows = [...doc.matchAll(/^\|\s*`([A-Z_]+)`\s*\|\s*(\d{3})\s*\|\s*`([a-z_]+)`\s*\|/gm)].map(
    (m) => ({
      code: m[1]!,
      status: Number(m[2]),
      oauth: m[3]!,
    }),
  );
  const documented = rows.map((r) => r.code).sort();
  const registered = Object.keys(errorRegistry).sort();
  assert.deepEqual(documented, registered);
  for (const row of rows) {
    const entry = errorRegistry[row.code as keyof typeof errorRegistry];
    assert.equal(row.status, entry.status, `${row.code} status`);
    assert.equal(row.oauth, entry.oauth, `${row.code} OAuth error`);
  }
});
