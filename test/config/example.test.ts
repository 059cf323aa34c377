import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";

import { loadConfig } from "../../src/config/index.ts";

test("example configuration loads with its stated defaults", async () => {
  const config = await loadConfig({
    file: join(import.meta.dirname, "../../examples/arbor.yaml"),
    env: {},
  });
  const defaults = await loadConfig({ env: {} });
  assert.deepEqual({ ...config, storage: defaults.storage }, defaults);
  assert.deepEqual(config.storage, { kind: "sqlite", path: "./arbor.db" });
});
