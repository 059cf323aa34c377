import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Module path of SoftHSM2 as Debian installs it; ARBOR_TEST_PKCS11_MODULE overrides it. */
export const SOFTHSM_MODULE =
  process.env.ARBOR_TEST_PKCS11_MODULE ?? "/usr/lib/softhsm/libsofthsm2.so";

function unavailableReason(): string | null {
  if (!existsSync(SOFTHSM_MODULE)) {
    return `SoftHSM2 module not found at ${SOFTHSM_MODULE} (install softhsm2 or set ARBOR_TEST_PKCS11_MODULE)`;
  }
  const probe = spawnSync("softhsm2-util", ["--version"], { encoding: "utf8" });
  if (probe.error !== undefined || probe.status !== 0) {
    return "softhsm2-util is not on PATH (install softhsm2)";
  }
  return null;
}

const reason = unavailableReason();

/**
 * Skip reason for PKCS#11 tests, printed by node:test, or false when SoftHSM2 is installed. With
 * CI=true a missing SoftHSM2 is not a skip: the tests run and fail in `openSoftHsm`, so CI never
 * passes by skipping.
 */
export const softhsmSkip: string | false =
  reason === null || process.env.CI === "true" ? false : reason;

export interface TestToken {
  label: string;
  pin: string;
  soPin: string;
}

export interface SoftHsm {
  /** Directory holding the configuration file and the token directory. */
  dir: string;
  tokenDir: string;
  confPath: string;
  modulePath: string;
  /** Initializes a fresh token in a free slot with a unique label and random PINs. */
  createToken(label?: string): TestToken;
}

let shared: SoftHsm | null = null;

/**
 * Creates this test process's own SoftHSM2 token directory and points SOFTHSM2_CONF at it. The
 * module reads SOFTHSM2_CONF at C_Initialize, so all tests of one file share the directory, and
 * each test creates its own token. The directory is removed when
 * the process exits.
 */
export function openSoftHsm(): SoftHsm {
  if (reason !== null) throw new Error(`PKCS#11 tests cannot run: ${reason}`);
  if (shared !== null) return shared;

  const dir = mkdtempSync(join(tmpdir(), "arbor-softhsm-"));
  const tokenDir = join(dir, "tokens");
  mkdirSync(tokenDir);
  const confPath = join(dir, "softhsm2.conf");
  writeFileSync(
    confPath,
    [
      `directories.tokendir = ${tokenDir}`,
      "objectstore.backend = file",
      "log.level = ERROR",
      "slots.removable = false",
      "",
    ].join("\n"),
  );
  process.env.SOFTHSM2_CONF = confPath;
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

  shared = {
    dir,
    tokenDir,
    confPath,
    modulePath: SOFTHSM_MODULE,
    createToken(label = `arbor-test-${randomBytes(6).toString("hex")}`) {
      const token = {
        label,
        pin: `user-${randomBytes(8).toString("hex")}`,
        soPin: `so-${randomBytes(8).toString("hex")}`,
      };
      const result = spawnSync(
        "softhsm2-util",
        ["--init-token", "--free", "--label", label, "--so-pin", token.soPin, "--pin", token.pin],
        { encoding: "utf8", env: { ...process.env, SOFTHSM2_CONF: confPath } },
      );
      if (result.status !== 0) {
        throw new Error(`softhsm2-util --init-token failed: ${result.stderr || result.stdout}`);
      }
      return token;
    },
  };
  return shared;
}
