import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";

import {
  isLoopbackHost,
  loadConfig,
  type ArborConfig,
  type ConfigFlags,
} from "../../src/config/index.ts";
import { isArborError } from "../../src/errors/index.ts";

const dir = mkdtempSync(join(tmpdir(), "arbor-config-"));
let fileCount = 0;

/** Writes `yaml` to a new file and returns its path. */
function configFile(yaml: string): string {
  fileCount += 1;
  const path = join(dir, `arbor-${fileCount}.yaml`);
  writeFileSync(path, yaml);
  return path;
}

interface Sources {
  yaml?: string;
  env?: NodeJS.ProcessEnv;
  flags?: Partial<ConfigFlags>;
}

function load({ yaml, env = {}, flags = {} }: Sources): Promise<ArborConfig> {
  return loadConfig({ file: yaml === undefined ? undefined : configFile(yaml), env, flags });
}

/**
 * Asserts INVALID_ARGUMENT naming `parameter`, and a message that contains every fragment
 * (the value and the source, usually).
 */
async function assertInvalid(sources: Sources, parameter: string, ...fragments: string[]) {
  await assert.rejects(load(sources), (error: unknown) => {
    assert.ok(
      isArborError(error, "INVALID_ARGUMENT"),
      `expected INVALID_ARGUMENT, got ${String(error)}`,
    );
    assert.equal(error.detail.parameter, parameter, error.message);
    for (const fragment of fragments) {
      assert.ok(
        error.message.includes(fragment),
        `message ${JSON.stringify(error.message)} lacks ${fragment}`,
      );
    }
    return true;
  });
}

after(() => rmSync(dir, { recursive: true, force: true }));

void describe("loadConfig defaults", () => {
  void test("no sources gives defaults", async () => {
    assert.deepEqual(await load({}), {
      externalAddress: "http://127.0.0.1:8200",
      listen: { host: "127.0.0.1", port: 8200 },
      tls: null,
      allowInsecureListen: false,
      storage: { kind: "sqlite", path: "./arbor.db" },
      root: { provider: "sealed", shares: 5, threshold: 3 },
      audit: { exporters: [], checkpointRecords: 1000, checkpointIntervalMs: 60_000 },
      limits: {
        maxPayloadBytes: 1_048_576,
        maxBodyBytes: 2_097_152,
        unsealAttemptsPerMinute: 10,
        cacheMaxEntries: 10_000,
        cacheTtlMs: 300_000,
      },
      logLevel: "info",
    });
  });

  void test("empty file gives defaults", async () => {
    assert.deepEqual(await load({ yaml: "" }), await load({}));
    assert.deepEqual(await load({ yaml: "# only a comment\n" }), await load({}));
  });

  void test("full file is read", async () => {
    const config = await load({
      yaml: `
external_address: https://arbor.example.com/
listen: { host: 0.0.0.0, port: 8443 }
tls: { cert_file: /etc/arbor/cert.pem, key_file: /etc/arbor/key.pem }
allow_insecure_listen: false
storage: { kind: sqlite, path: /var/lib/arbor/arbor.db }
root: { provider: sealed, shares: 7, threshold: 4 }
audit:
  exporters:
    - { type: file, name: local, path: /var/log/arbor/audit.jsonl }
  checkpoint_records: 500
  checkpoint_interval: 30s
limits:
  max_payload_bytes: 2048
  max_body_bytes: 4096
  unseal_attempts_per_minute: 3
  cache_max_entries: 50
  cache_ttl: 90
log_level: debug
`,
    });

    assert.deepEqual(config, {
      externalAddress: "https://arbor.example.com",
      listen: { host: "0.0.0.0", port: 8443 },
      tls: { certFile: "/etc/arbor/cert.pem", keyFile: "/etc/arbor/key.pem" },
      allowInsecureListen: false,
      storage: { kind: "sqlite", path: "/var/lib/arbor/arbor.db" },
      root: { provider: "sealed", shares: 7, threshold: 4 },
      audit: {
        exporters: [
          {
            type: "file",
            name: "local",
            path: "/var/log/arbor/audit.jsonl",
            maxBytes: 104_857_600,
            maxFiles: 10,
          },
        ],
        checkpointRecords: 500,
        checkpointIntervalMs: 30_000,
      },
      limits: {
        maxPayloadBytes: 2048,
        maxBodyBytes: 4096,
        unsealAttemptsPerMinute: 3,
        cacheMaxEntries: 50,
        cacheTtlMs: 90_000,
      },
      logLevel: "debug",
    });
  });

  void test("null keys count as unset", async () => {
    const config = await load({ yaml: "tls:\nlisten:\n  port:\nlog_level: null\n" });

    assert.deepEqual(config, await load({}));
  });
});

void describe("loadConfig precedence", () => {
  const yaml = `
external_address: https://file.example.com
listen: { host: 127.0.0.2, port: 7000 }
tls: { cert_file: file-cert.pem, key_file: file-key.pem }
storage: { path: file.db }
log_level: warn
`;

  // Each row: which sources set the value, and which value wins.
  const rows: {
    name: string;
    sources: Sources;
    pick: (c: ArborConfig) => unknown;
    expected: unknown;
  }[] = [
    {
      name: "file over default",
      sources: { yaml },
      pick: (c) => c.storage.path,
      expected: "file.db",
    },
    {
      name: "environment over file",
      sources: { yaml, env: { ARBOR_STORAGE_PATH: "env.db" } },
      pick: (c) => c.storage.path,
      expected: "env.db",
    },
    {
      name: "flag over environment",
      sources: { yaml, env: { ARBOR_STORAGE_PATH: "env.db" }, flags: { storagePath: "flag.db" } },
      pick: (c) => c.storage.path,
      expected: "flag.db",
    },
    {
      name: "flag over file",
      sources: { yaml, flags: { storagePath: "flag.db" } },
      pick: (c) => c.storage.path,
      expected: "flag.db",
    },
    {
      name: "environment over default",
      sources: { env: { ARBOR_LOG_LEVEL: "error" } },
      pick: (c) => c.logLevel,
      expected: "error",
    },
    {
      name: "log level from flag",
      sources: { yaml, env: { ARBOR_LOG_LEVEL: "error" }, flags: { logLevel: "trace" } },
      pick: (c) => c.logLevel,
      expected: "trace",
    },
    {
      name: "listen from file",
      sources: { yaml },
      pick: (c) => c.listen,
      expected: { host: "127.0.0.2", port: 7000 },
    },
    {
      name: "listen from environment",
      sources: { yaml, env: { ARBOR_LISTEN: "127.0.0.3:7001" } },
      pick: (c) => c.listen,
      expected: { host: "127.0.0.3", port: 7001 },
    },
    {
      name: "listen from flag",
      sources: { yaml, env: { ARBOR_LISTEN: "127.0.0.3:7001" }, flags: { listen: "[::1]:7002" } },
      pick: (c) => c.listen,
      expected: { host: "::1", port: 7002 },
    },
    {
      name: "tls files merge per key",
      sources: {
        yaml,
        env: { ARBOR_TLS_CERT_FILE: "env-cert.pem" },
        flags: { tlsKeyFile: "flag-key.pem" },
      },
      pick: (c) => c.tls,
      expected: { certFile: "env-cert.pem", keyFile: "flag-key.pem" },
    },
    {
      name: "external address from environment",
      sources: { yaml, env: { ARBOR_EXTERNAL_ADDRESS: "https://env.example.com" } },
      pick: (c) => c.externalAddress,
      expected: "https://env.example.com",
    },
    {
      name: "external address from flag",
      sources: {
        yaml,
        env: { ARBOR_EXTERNAL_ADDRESS: "https://env.example.com" },
        flags: { externalAddress: "https://flag.example.com/arbor/" },
      },
      pick: (c) => c.externalAddress,
      expected: "https://flag.example.com/arbor",
    },
    {
      name: "empty variable counts as unset",
      sources: { yaml, env: { ARBOR_STORAGE_PATH: "", ARBOR_LISTEN: "" } },
      pick: (c) => [c.storage.path, c.listen.port],
      expected: ["file.db", 7000],
    },
    {
      name: "overridden invalid variable is ignored",
      sources: { env: { ARBOR_LISTEN: "nonsense" }, flags: { listen: "127.0.0.1:9000" } },
      pick: (c) => c.listen.port,
      expected: 9000,
    },
    {
      name: "other ARBOR variables are ignored",
      sources: { env: { ARBOR_ADDR: "http://elsewhere", ARBOR_TOKEN: "x", ARBOR_NOPE: "1" } },
      pick: (c) => c.externalAddress,
      expected: "http://127.0.0.1:8200",
    },
  ];
  for (const row of rows) {
    void test(row.name, async () => {
      assert.deepEqual(row.pick(await load(row.sources)), row.expected);
    });
  }

  const insecureFlags: [NodeJS.ProcessEnv, Partial<ConfigFlags>, boolean][] = [
    [{ ARBOR_ALLOW_INSECURE_LISTEN: "true" }, {}, true],
    [{ ARBOR_ALLOW_INSECURE_LISTEN: "1" }, {}, true],
    [{ ARBOR_ALLOW_INSECURE_LISTEN: "0" }, {}, false],
    [{ ARBOR_ALLOW_INSECURE_LISTEN: "true" }, { allowInsecureListen: false }, false],
    [{ ARBOR_ALLOW_INSECURE_LISTEN: "false" }, { allowInsecureListen: "true" }, true],
  ];
  for (const [env, flags, expected] of insecureFlags) {
    void test(`allow_insecure_listen ${JSON.stringify({ ...env, ...flags })}`, async () => {
      const config = await load({ yaml: "allow_insecure_listen: false\n", env, flags });

      assert.equal(config.allowInsecureListen, expected);
    });
  }
});

void describe("loadConfig validation", () => {
  void test("missing file", async () => {
    const path = join(dir, "missing.yaml");
    await assert.rejects(loadConfig({ file: path, env: {} }), (error: unknown) => {
      assert.ok(isArborError(error, "INVALID_ARGUMENT"));
      assert.equal(error.detail.parameter, "file");
      assert.match(error.message, /failed to read configuration file .*missing\.yaml \(ENOENT\)/);
      return true;
    });
  });

  void test("invalid YAML", async () => {
    await assertInvalid({ yaml: "listen: [1\n" }, "file", "invalid configuration file", "line");
    await assertInvalid({ yaml: "log_level: info\nlog_level: warn\n" }, "file", "unique");
    await assertInvalid(
      { yaml: "log_level: info\n---\nlog_level: warn\n" },
      "file",
      "multiple documents",
    );
    await assertInvalid({ yaml: "- listen\n" }, "file", "top level must be a mapping");
  });

  void test("unknown keys are named", async () => {
    await assertInvalid(
      { yaml: "listn: {}\n" },
      "listn",
      "unknown configuration key listn",
      ".yaml",
    );
    await assertInvalid(
      { yaml: "limits: { max_payload: 10 }\n" },
      "limits.max_payload",
      "unknown configuration key limits.max_payload",
      "max_payload_bytes",
    );
    await assertInvalid(
      { yaml: "tls: { cert: a }\n" },
      "tls.cert",
      "expected one of cert_file, key_file",
    );
  });

  void test("section must be a mapping", async () => {
    await assertInvalid(
      { yaml: "listen: 8200\n" },
      "listen",
      "must be a mapping with the keys host, port",
    );
  });

  // Each row: sources, the parameter the error names, and fragments its message must contain.
  const invalid: [string, Sources, string, string[]][] = [
    [
      "port out of range in file",
      { yaml: "listen: { port: 70000 }\n" },
      "listen.port",
      ["70000", "from 0 to 65535", ".yaml"],
    ],
    [
      "port as text in file",
      { yaml: 'listen: { port: "8200" }\n' },
      "listen.port",
      ['"8200"', "whole number"],
    ],
    [
      "port out of range in env",
      { env: { ARBOR_LISTEN: "127.0.0.1:99999" } },
      "listen.port",
      ["99999", "environment variable ARBOR_LISTEN"],
    ],
    [
      "listen without port in env",
      { env: { ARBOR_LISTEN: "localhost" } },
      "listen",
      ['"localhost"', "host:port", "ARBOR_LISTEN"],
    ],
    [
      "listen with bad port in flag",
      { flags: { listen: "127.0.0.1:http" } },
      "listen",
      ["flag --listen"],
    ],
    ["bracketless IPv6 in env", { env: { ARBOR_LISTEN: "::1:8200" } }, "listen", ["ARBOR_LISTEN"]],
    [
      "bad host",
      { yaml: "listen: { host: 'bad host!' }\n" },
      "listen.host",
      ['"bad host!"', "IP address"],
    ],
    [
      "bracketed host in file",
      { yaml: "listen: { host: '[::1]' }\n" },
      "listen.host",
      ["IPv6 without brackets"],
    ],
    [
      "external address not a URL",
      { env: { ARBOR_EXTERNAL_ADDRESS: "arbor" } },
      "external_address",
      ['"arbor"', "ARBOR_EXTERNAL_ADDRESS"],
    ],
    [
      "external address scheme",
      { flags: { externalAddress: "ftp://x.example" } },
      "external_address",
      ["http or https", "flag --external-address"],
    ],
    [
      "external address query",
      { yaml: "external_address: https://x.example/?a=1\n" },
      "external_address",
      ["query"],
    ],
    [
      "external address credentials",
      { yaml: "external_address: https://u:p@x.example\n" },
      "external_address",
      ["user name or password"],
    ],
    [
      "storage kind",
      { yaml: "storage: { kind: postgres }\n" },
      "storage.kind",
      ['"postgres"', '"sqlite"'],
    ],
    [
      "empty storage path flag",
      { flags: { storagePath: "" } },
      "storage.path",
      ["non-empty", "flag --storage-path"],
    ],
    [
      "root provider",
      { yaml: "root: { provider: hsm }\n" },
      "root.provider",
      ['"hsm"', '"sealed"'],
    ],
    [
      "too few shares",
      { yaml: "root: { shares: 1, threshold: 1 }\n" },
      "root.shares",
      ["from 2 to 255"],
    ],
    ["too many shares", { yaml: "root: { shares: 256 }\n" }, "root.shares", ["256"]],
    [
      "threshold above shares",
      { yaml: "root: { shares: 3, threshold: 4 }\n" },
      "root.threshold",
      ["must not exceed root.shares, which is 3"],
    ],
    [
      "threshold above default shares",
      { yaml: "root: { threshold: 6 }\n" },
      "root.threshold",
      ["which is 5 from the default"],
    ],
    [
      "exporters not a list",
      { yaml: "audit: { exporters: file }\n" },
      "audit.exporters",
      ["list of mappings"],
    ],
    [
      "exporter not a mapping",
      { yaml: "audit: { exporters: [file] }\n" },
      "audit.exporters",
      ["list of mappings"],
    ],
    [
      "zero payload limit",
      { yaml: "limits: { max_payload_bytes: 0 }\n" },
      "limits.max_payload_bytes",
      ["at least 1"],
    ],
    [
      "body below payload",
      { yaml: "limits: { max_payload_bytes: 3000, max_body_bytes: 3999 }\n" },
      "limits.max_body_bytes",
      ["at least 4000"],
    ],
    [
      "body below default payload",
      { yaml: "limits: { max_body_bytes: 1048576 }\n" },
      "limits.max_body_bytes",
      ["at least 1398104"],
    ],
    [
      "fractional cache size",
      { yaml: "limits: { cache_max_entries: 1.5 }\n" },
      "limits.cache_max_entries",
      ["1.5"],
    ],
    [
      "zero unseal attempts",
      { yaml: "limits: { unseal_attempts_per_minute: 0 }\n" },
      "limits.unseal_attempts_per_minute",
      ["at least 1"],
    ],
    [
      "malformed cache ttl",
      { yaml: "limits: { cache_ttl: 5x }\n" },
      "limits.cache_ttl",
      ['"5x"', "unit d, h, m or s"],
    ],
    [
      "zero cache ttl",
      { yaml: "limits: { cache_ttl: 0s }\n" },
      "limits.cache_ttl",
      ["longer than zero"],
    ],
    [
      "log level in env",
      { env: { ARBOR_LOG_LEVEL: "verbose" } },
      "log_level",
      ['"verbose"', '"info"', "ARBOR_LOG_LEVEL"],
    ],
    [
      "insecure flag text in env",
      { env: { ARBOR_ALLOW_INSECURE_LISTEN: "yes" } },
      "allow_insecure_listen",
      ['"yes"', "true, false, 1 or 0"],
    ],
    [
      "insecure flag text in file",
      { yaml: "allow_insecure_listen: 'yes'\n" },
      "allow_insecure_listen",
      ["true or false"],
    ],
    [
      "cert without key",
      { yaml: "tls: { cert_file: c.pem }\n" },
      "tls.key_file",
      ["missing tls.key_file", "tls.cert_file is set (by file"],
    ],
    [
      "key without cert",
      { env: { ARBOR_TLS_KEY_FILE: "k.pem" } },
      "tls.cert_file",
      ["missing tls.cert_file", "ARBOR_TLS_KEY_FILE"],
    ],
  ];
  for (const [name, sources, parameter, fragments] of invalid) {
    void test(name, async () => {
      await assertInvalid(sources, parameter, ...fragments);
    });
  }
});

void describe("loadConfig insecure listen", () => {
  void test("non-loopback without TLS is rejected", async () => {
    await assertInvalid(
      { env: { ARBOR_LISTEN: "0.0.0.0:8200" } },
      "listen.host",
      "listening on 0.0.0.0:8200 without TLS",
      "environment variable ARBOR_LISTEN",
      "allow_insecure_listen",
    );
    await assertInvalid({ yaml: "listen: { host: '::' }\n" }, "listen.host", "[::]:8200");
    await assertInvalid(
      { flags: { listen: "arbor.internal:8200" } },
      "listen.host",
      "arbor.internal",
    );
    await assertInvalid({ yaml: "listen: { host: 10.1.2.3 }\n" }, "listen.host", "10.1.2.3");
  });

  void test("explicit allow permits it", async () => {
    const config = await load({ yaml: "listen: { host: 0.0.0.0 }\nallow_insecure_listen: true\n" });

    assert.equal(config.listen.host, "0.0.0.0");
    assert.equal(config.externalAddress, "http://127.0.0.1:8200");
  });

  void test("TLS permits it", async () => {
    const config = await load({
      flags: { listen: "0.0.0.0:8443", tlsCertFile: "c.pem", tlsKeyFile: "k.pem" },
    });

    assert.equal(config.externalAddress, "https://127.0.0.1:8443");
  });

  void test("loopback needs neither", async () => {
    for (const listen of [
      "127.0.0.1:1",
      "127.9.9.9:1",
      "[::1]:1",
      "localhost:1",
      "[::ffff:127.0.0.1]:1",
    ]) {
      const config = await load({ flags: { listen } });
      assert.equal(config.listen.port, 1, listen);
    }
  });

  void test("derived external address brackets IPv6", async () => {
    const config = await load({ flags: { listen: "[::1]:8300" } });

    assert.equal(config.externalAddress, "http://[::1]:8300");
  });

  const loopback: [string, boolean][] = [
    ["127.0.0.1", true],
    ["127.255.0.1", true],
    ["::1", true],
    ["0:0:0:0:0:0:0:1", true],
    ["::ffff:127.0.0.1", true],
    ["LOCALHOST", true],
    ["0.0.0.0", false],
    ["::", false],
    ["128.0.0.1", false],
    ["localhost.example.com", false],
  ];
  for (const [host, expected] of loopback) {
    void test(`isLoopbackHost ${host}`, () => {
      assert.equal(isLoopbackHost(host), expected);
    });
  }
});
