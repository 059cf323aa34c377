import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";

import { loadConfig, type ArborConfig } from "../../../src/config/index.ts";
import { isArborError } from "../../../src/errors/index.ts";

const dir = mkdtempSync(join(tmpdir(), "arbor-exporter-config-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let count = 0;

/** Loads a configuration whose `audit.exporters` is the YAML list `exporters`. */
function load(exporters: string): Promise<ArborConfig> {
  count += 1;
  const path = join(dir, `arbor-${count}.yaml`);
  writeFileSync(path, `audit:\n  exporters:\n${exporters}`);
  return loadConfig({ file: path, env: {} });
}

async function assertInvalid(exporters: string, parameter: string, ...fragments: string[]) {
  await assert.rejects(load(exporters), (error: unknown) => {
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

void describe("audit.exporters configuration", () => {
  void test("exporters get their defaults", async () => {
    const config = await load(`
    - { type: file, name: local, path: /var/log/arbor/audit.jsonl }
    - { type: syslog, name: rsyslog, host: 127.0.0.1 }
    - { type: syslog, name: udp, transport: udp, host: ::1 }
    - { type: syslog, name: tls, transport: tls, host: logs.example.com, ca_file: /etc/ca.pem }
    - { type: http, name: siem, url: "https://siem.example.com/ingest" }
`);
    assert.deepEqual(config.audit.exporters, [
      {
        type: "file",
        name: "local",
        path: "/var/log/arbor/audit.jsonl",
        maxBytes: 104_857_600,
        maxFiles: 10,
      },
      {
        type: "syslog",
        name: "rsyslog",
        transport: "tcp",
        host: "127.0.0.1",
        port: 514,
        facility: "authpriv",
        maxMessageBytes: 2048,
        timeoutMs: 10_000,
        caFile: null,
        sdId: "arbor@32473",
      },
      {
        type: "syslog",
        name: "udp",
        transport: "udp",
        host: "::1",
        port: 514,
        facility: "authpriv",
        maxMessageBytes: 2048,
        timeoutMs: 10_000,
        caFile: null,
        sdId: "arbor@32473",
      },
      {
        type: "syslog",
        name: "tls",
        transport: "tls",
        host: "logs.example.com",
        port: 6514,
        facility: "authpriv",
        maxMessageBytes: 2048,
        timeoutMs: 10_000,
        caFile: "/etc/ca.pem",
        sdId: "arbor@32473",
      },
      {
        type: "http",
        name: "siem",
        url: "https://siem.example.com/ingest",
        headers: {},
        bearerTokenFile: null,
        timeoutMs: 10_000,
      },
    ]);
  });

  void test("exporter options are read", async () => {
    const config = await load(`
    - type: file
      name: local
      path: ./audit.jsonl
      max_bytes: 4096
      max_files: 3
    - type: syslog
      name: udp
      transport: udp
      host: 127.0.0.1
      port: 5514
      facility: local4
      max_message_bytes: 8192
      sd_id: audit@99999.1
    - type: http
      name: siem
      url: http://127.0.0.1:8088/services/collector
      headers: { X-Tenant: acme }
      bearer_token_file: /run/secrets/siem-token
      timeout: 30s
`);
    assert.deepEqual(config.audit.exporters[0], {
      type: "file",
      name: "local",
      path: "./audit.jsonl",
      maxBytes: 4096,
      maxFiles: 3,
    });
    assert.deepEqual(config.audit.exporters[1], {
      type: "syslog",
      name: "udp",
      transport: "udp",
      host: "127.0.0.1",
      port: 5514,
      facility: "local4",
      maxMessageBytes: 8192,
      timeoutMs: 10_000,
      caFile: null,
      sdId: "audit@99999.1",
    });
    assert.deepEqual(config.audit.exporters[2], {
      type: "http",
      name: "siem",
      url: "http://127.0.0.1:8088/services/collector",
      headers: { "X-Tenant": "acme" },
      bearerTokenFile: "/run/secrets/siem-token",
      timeoutMs: 30_000,
    });
  });

  const cases: [string, string, string, string[]][] = [
    [
      "missing type",
      "    - { name: a, path: x }\n",
      "audit.exporters[0].type",
      ["missing", "file, syslog or http"],
    ],
    [
      "unknown type",
      "    - { type: kafka, name: a }\n",
      "audit.exporters[0].type",
      ['"kafka"', '"http"'],
    ],
    [
      "missing name",
      "    - { type: file, path: x }\n",
      "audit.exporters[0].name",
      ["missing", "cursor"],
    ],
    [
      "bad name",
      "    - { type: file, name: 'my exporter', path: x }\n",
      "audit.exporters[0].name",
      ['"my exporter"'],
    ],
    [
      "duplicate name",
      "    - { type: file, name: a, path: x }\n    - { type: file, name: a, path: y }\n",
      "audit.exporters[1].name",
      ["audit.exporters[0]", '"a"'],
    ],
    [
      "duplicate file path",
      "    - { type: file, name: a, path: ./x }\n    - { type: file, name: b, path: x }\n",
      "audit.exporters[1].path",
      ["audit.exporters[0]"],
    ],
    [
      "misspelt key",
      "    - { type: file, name: a, paht: x }\n",
      "audit.exporters[0].paht",
      ["path, max_bytes"],
    ],
    ["missing path", "    - { type: file, name: a }\n", "audit.exporters[0].path", ["missing"]],
    [
      "zero max files",
      "    - { type: file, name: a, path: x, max_files: 0 }\n",
      "audit.exporters[0].max_files",
      ["from 1 to 1000"],
    ],
    ["missing host", "    - { type: syslog, name: a }\n", "audit.exporters[0].host", ["missing"]],
    [
      "bad host",
      "    - { type: syslog, name: a, host: 'http://x' }\n",
      "audit.exporters[0].host",
      ['"http://x"'],
    ],
    [
      "port out of range",
      "    - { type: syslog, name: a, host: h, port: 70000 }\n",
      "audit.exporters[0].port",
      ["70000", "from 1 to 65535"],
    ],
    [
      "unknown facility",
      "    - { type: syslog, name: a, host: h, facility: security }\n",
      "audit.exporters[0].facility",
      ['"security"', '"authpriv"'],
    ],
    [
      "unknown transport",
      "    - { type: syslog, name: a, host: h, transport: relp }\n",
      "audit.exporters[0].transport",
      ['"relp"'],
    ],
    [
      "datagram size over tcp",
      "    - { type: syslog, name: a, host: h, max_message_bytes: 4096 }\n",
      "audit.exporters[0].max_message_bytes",
      ["udp only"],
    ],
    [
      "datagram too small",
      "    - { type: syslog, name: a, transport: udp, host: h, max_message_bytes: 100 }\n",
      "audit.exporters[0].max_message_bytes",
      ["from 480 to 65507"],
    ],
    [
      "ca file over udp",
      "    - { type: syslog, name: a, transport: udp, host: h, ca_file: x }\n",
      "audit.exporters[0].ca_file",
      ["tls only"],
    ],
    [
      "timeout over udp",
      "    - { type: syslog, name: a, transport: udp, host: h, timeout: 5s }\n",
      "audit.exporters[0].timeout",
      ["tcp and tls"],
    ],
    [
      "bad sd id",
      "    - { type: syslog, name: a, host: h, sd_id: arbor }\n",
      "audit.exporters[0].sd_id",
      ['"arbor"', "enterprise number"],
    ],
    ["missing url", "    - { type: http, name: a }\n", "audit.exporters[0].url", ["missing"]],
    [
      "ftp url",
      "    - { type: http, name: a, url: 'ftp://x.example/in' }\n",
      "audit.exporters[0].url",
      ["http or https"],
    ],
    [
      "relative url",
      "    - { type: http, name: a, url: /ingest }\n",
      "audit.exporters[0].url",
      ["absolute"],
    ],
    [
      "url with password",
      "    - { type: http, name: a, url: 'https://u:p@x.example/' }\n",
      "audit.exporters[0].url",
      ["bearer_token_file"],
    ],
    [
      "bad timeout",
      "    - { type: http, name: a, url: 'https://x.example/', timeout: 5x }\n",
      "audit.exporters[0].timeout",
      ['"5x"'],
    ],
    [
      "zero timeout",
      "    - { type: http, name: a, url: 'https://x.example/', timeout: 0 }\n",
      "audit.exporters[0].timeout",
      ["longer than zero"],
    ],
    [
      "reserved header",
      "    - { type: http, name: a, url: 'https://x.example/', headers: { Content-Type: text/plain } }\n",
      "audit.exporters[0].headers.Content-Type",
      ["set by the exporter"],
    ],
    [
      "authorization twice",
      "    - { type: http, name: a, url: 'https://x.example/', bearer_token_file: t, headers: { authorization: x } }\n",
      "audit.exporters[0].headers.authorization",
      ["bearer_token_file"],
    ],
    [
      "second entry named",
      "    - { type: file, name: a, path: x }\n    - { type: http, name: b }\n",
      "audit.exporters[1].url",
      ["missing"],
    ],
  ];
  for (const [name, yaml, parameter, fragments] of cases) {
    void test(`exporter config rejects ${name}`, () =>
      assertInvalid(yaml, parameter, ...fragments));
  }

  void test("exporter config never quotes a header value", async () => {
    const secret = "Bearer super-secret-value";
    await assert.rejects(
      load(
        `    - { type: http, name: a, url: 'https://x.example/', headers: { X-Key: "${secret}\\n" } }\n`,
      ),
      (error: unknown) => {
        assert.ok(isArborError(error, "INVALID_ARGUMENT"));
        assert.equal(error.detail.parameter, "audit.exporters[0].headers.X-Key");
        assert.ok(!error.message.includes("super-secret"), error.message);
        assert.equal(error.detail.value, undefined);
        return true;
      },
    );
  });

  void test("commented example in arbor.yaml is valid", async () => {
    const example = readFileSync(join(import.meta.dirname, "../../../examples/arbor.yaml"), "utf8");
    const start = example.indexOf("# audit:\n");
    const block = example.slice(start, example.indexOf("\n\n", start));
    const path = join(dir, "example-exporters.yaml");
    writeFileSync(path, block.replace(/^# ?/gm, ""));

    const config = await loadConfig({ file: path, env: {} });
    assert.deepEqual(
      config.audit.exporters.map((e) => [e.type, e.name]),
      [
        ["file", "local"],
        ["syslog", "rsyslog"],
        ["http", "siem"],
      ],
    );
  });

  void test("exporter config names the source", async () => {
    await assertInvalid(
      "    - { type: file, name: a, path: x, max_bytes: -1 }\n",
      "audit.exporters[0].max_bytes",
      "set by file",
      "-1",
    );
  });
});
