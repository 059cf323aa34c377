import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const repo = join(import.meta.dirname, "..");

/** A key of the example hierarchy that every benchmark uses. */
export const BENCH_KEY = "prod/acme/billing:encrypt";

export interface DevServer {
  address: string;
  rootToken: string;
  dataDir: string;
  stop(): Promise<void>;
}

/**
 * Starts `arbor dev` in a child process on a free port, exactly as the README instructs,
 * and waits until it has initialised, unsealed and applied the example hierarchy.
 */
export async function startDevServer(port: number): Promise<DevServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "arbor-bench-"));
  const child = spawn(
    process.execPath,
    [join(repo, "bin/arbor.js"), "dev", "--data-dir", dataDir, "--port", String(port)],
    {
      cwd: repo,
      env: { ...process.env, ARBOR_LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const address = `http://127.0.0.1:${port}`;
  const rootToken = await waitForReady(child, address, join(dataDir, "dev-credentials.json"));
  return {
    address,
    rootToken,
    dataDir,
    async stop() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Waits until the example hierarchy's billing key answers; returns the root token. */
async function waitForReady(
  child: ChildProcess,
  address: string,
  credentialsFile: string,
): Promise<string> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`arbor dev exited with code ${child.exitCode}`);
    try {
      const { rootToken } = JSON.parse(readFileSync(credentialsFile, "utf8")) as {
        rootToken: string;
      };
      const response = await fetch(`${address}/v1/keys/${encodeURIComponent(BENCH_KEY)}`, {
        headers: { authorization: `Bearer ${rootToken}` },
      });
      if (response.status === 200) return rootToken;
    } catch {
      // Not listening, or the credentials file is not written yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error("arbor dev did not become ready within 60 s");
}
