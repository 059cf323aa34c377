// Local file encryption by the CLI against raw AES-256-GCM streaming and the AWS Encryption SDK
// (raw AES keyring, so no KMS call), on the same file in one run.
//
//   npx tsx bench/cli-file.ts [--size-mib 1024]
//
// The CLI asks the `arbor dev` server (a child process) for one data key, then encrypts the file
// locally; the server's share of the time is one HTTP round trip.
import { spawn } from "node:child_process";
import { createCipheriv, createHash, randomBytes, randomFillSync } from "node:crypto";
import { createReadStream, createWriteStream, rmSync, statSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";

import {
  buildClient,
  CommitmentPolicy,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from "@aws-crypto/client-node";

import { BENCH_KEY, startDevServer } from "./dev-server.ts";
import { formatNumber } from "./stats.ts";

const { values } = parseArgs({
  options: {
    "size-mib": { type: "string", default: "1024" },
    port: { type: "string", default: "18201" },
  },
});
const sizeBytes = Number(values["size-mib"]) * 1024 * 1024;
const repo = join(import.meta.dirname, "..");

async function writeRandomFile(path: string): Promise<void> {
  const chunk = Buffer.alloc(1024 * 1024);
  let written = 0;
  const source = Readable.from(
    (function* () {
      while (written < sizeBytes) {
        randomFillSync(chunk);
        written += chunk.length;
        yield Buffer.from(chunk);
      }
    })(),
  );
  await pipeline(source, createWriteStream(path));
}

async function timed(work: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await work();
  return (performance.now() - start) / 1000;
}

function sha256(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    createReadStream(path)
      .on("data", (d) => hash.update(d))
      .on("end", () => resolve(hash.digest("hex")))
      .on("error", reject);
  });
}

function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repo, "bin/arbor.js"), ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "ignore", "inherit"],
    });
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`arbor ${args[0]} exited with ${code}`)),
    );
  });
}

const dir = await mkdtemp(join(tmpdir(), "arbor-file-bench-"));
const input = join(dir, "input.bin");
const server = await startDevServer(Number(values.port));
try {
  await writeRandomFile(input);
  const inputHash = await sha256(input);
  const env = { ARBOR_ADDR: server.address, ARBOR_TOKEN: server.rootToken };

  const rawSeconds = await timed(() =>
    pipeline(
      createReadStream(input),
      createCipheriv("aes-256-gcm", randomBytes(32), randomBytes(12)),
      createWriteStream(join(dir, "raw.bin")),
    ),
  );

  const { encryptStream } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
  const keyring = new RawAesKeyringNode({
    keyName: "bench",
    keyNamespace: "bench",
    unencryptedMasterKey: new Uint8Array(randomBytes(32)),
    wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
  });
  const awsSeconds = await timed(() =>
    pipeline(
      createReadStream(input),
      encryptStream(keyring),
      createWriteStream(join(dir, "aws.bin")),
    ),
  );

  const encrypted = join(dir, "arbor.enc");
  const decrypted = join(dir, "arbor.out");
  const encryptSeconds = await timed(() =>
    runCli(["encrypt", "--key", BENCH_KEY, "--output", encrypted, input], env),
  );
  const decryptSeconds = await timed(() =>
    runCli(["decrypt", "--output", decrypted, encrypted], env),
  );
  if ((await sha256(decrypted)) !== inputHash) throw new Error("round trip changed the file");

  const mib = sizeBytes / (1024 * 1024);
  const rows = [
    ["raw AES-256-GCM stream (node:crypto)", rawSeconds],
    ["AWS Encryption SDK 5 encryptStream, raw AES keyring", awsSeconds],
    ["arbor encrypt (CLI process, one data key from the server)", encryptSeconds],
    ["arbor decrypt (CLI process)", decryptSeconds],
  ] as const;
  console.log(`| ${formatNumber(mib)} MiB file | seconds | MiB/s | ratio to raw |`);
  console.log(`|---|---:|---:|---:|`);
  for (const [name, seconds] of rows) {
    console.log(
      `| ${name} | ${seconds.toFixed(2)} | ${formatNumber(mib / seconds)} | ${(rawSeconds / seconds).toFixed(3)} |`,
    );
  }
  console.log(
    `\nCiphertext overhead: ${formatNumber(statSync(encrypted).size - sizeBytes)} bytes; the CLI times include starting Node and tsx.`,
  );
} finally {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
