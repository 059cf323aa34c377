import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { openStorage, type Storage } from "../../src/storage/index.ts";

/**
 * The storage dialects every storage and hierarchy test runs against. A dialect that cannot run
 * here sets `skip` to the reason, which node:test prints; with CI=true an unavailable dialect is a
 * failure instead, so CI never passes by skipping.
 */
export interface DialectUnderTest {
  name: string;
  skip: string | false;
  /** Opens a fresh, migrated, empty store; `close` removes everything it created. */
  open(): Promise<{ storage: Storage; file?: string; close: () => Promise<void> }>;
  /** Opens the same store again, as a restarted process would. */
  reopen?(file: string): Promise<Storage>;
}

const sqlite: DialectUnderTest = {
  name: "sqlite",
  skip: false,
  async open() {
    const dir = mkdtempSync(join(tmpdir(), "arbor-test-"));
    const file = join(dir, "arbor.db");
    const storage = await openStorage({ kind: "sqlite", path: file });
    return {
      storage,
      file,
      async close() {
        await storage.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
  reopen: (file) => openStorage({ kind: "sqlite", path: file }),
};

export const dialects: DialectUnderTest[] = [sqlite];
