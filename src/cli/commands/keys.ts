import { Option, type Command } from "commander";

import type { Key, KeyVersion, TreeNode } from "../api-types.ts";
import { keyRoute } from "../client.ts";
import { contextOf } from "../context.ts";
import { CliError, usageError } from "../errors.ts";
import { formatFields, formatTable } from "../output.ts";
import { parseDurationText, parsePositiveInteger } from "../parsers.ts";
import { confirm, isInteractive } from "../prompt.ts";

const KEY_ARGUMENT = "a key path (such as prod/acme/billing:encrypt) or a key id (key_...)";

/** Registers `arbor key ...`. */
export function registerKeyCommands(program: Command): void {
  const key = program
    .command("key")
    .description("create, inspect and manage keys and key versions");

  key
    .command("create")
    .description(
      "create a master key (env or env/tenant) or a service key (env[/tenant]/service:purpose)",
    )
    .argument("<path>", "the new key's path")
    .addOption(
      new Option("--algorithm <name>", "signing algorithm of a sign key").choices([
        "EdDSA",
        "ES256",
      ]),
    )
    .addOption(
      new Option(
        "--mode <mode>",
        "how versions are protected: wrapped by the parent, or derived from it",
      ).choices(["wrapped", "derived"]),
    )
    .option("--rotation <duration>", "rotation period, such as 90d", parseDurationText)
    .action(
      async (
        path: string,
        options: { algorithm?: string; mode?: string; rotation?: string },
        command: Command,
      ) => {
        const { out, client } = contextOf(command);
        const created = await client().post<Key>("/v1/keys", {
          path,
          ...(options.algorithm === undefined ? {} : { algorithm: options.algorithm }),
          ...(options.mode === undefined ? {} : { mode: options.mode }),
          ...(options.rotation === undefined ? {} : { rotationPeriod: options.rotation }),
        });
        out.result(
          created,
          () => `Created ${created.path} (${created.id}).\n\n${describeKey(created)}`,
        );
      },
    );

  key
    .command("list")
    .description("list keys in the token's scope")
    .option(
      "--prefix <path>",
      "only keys at or below this path, matched on whole segments (prod matches prod/acme, not production)",
    )
    .action(async (options: { prefix?: string }, command: Command) => {
      const { out, client } = contextOf(command);
      const response = await client().get<{ keys: Key[] }>("/v1/keys", {
        prefix: prefixQuery(options.prefix),
      });
      out.result(response, () => describeKeyList(response.keys));
    });

  key
    .command("show")
    .description("show a key and its versions")
    .argument("<key>", KEY_ARGUMENT)
    .action(async (ref: string, _options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const shown = await client().get<Key>(keyRoute(ref));
      out.result(shown, () => describeKey(shown));
    });

  key
    .command("tree")
    .description("draw the key tree from the environments down to the service keys")
    .option(
      "--prefix <path>",
      "only the part of the tree at or below this path, matched on whole segments",
    )
    .action(async (options: { prefix?: string }, command: Command) => {
      const { out, client } = contextOf(command);
      const response = await client().get<{ tree: TreeNode[] }>("/v1/keys/tree", {
        prefix: prefixQuery(options.prefix),
      });
      out.result(response, () =>
        response.tree.length === 0 ? "No keys." : renderTree(response.tree),
      );
    });

  key
    .command("rotate")
    .description(
      "create a new key version; it becomes primary after --publish-delay (default: 5m for sign keys, 0 otherwise)",
    )
    .argument("<key>", KEY_ARGUMENT)
    .option(
      "--publish-delay <duration>",
      "keep the new version pending this long (such as 10m) so verifiers can fetch its public key first",
      parseDurationText,
    )
    .action(async (ref: string, options: { publishDelay?: string }, command: Command) => {
      const { out, client } = contextOf(command);
      const version = await client().post<KeyVersion>(
        keyRoute(ref, "/rotate"),
        options.publishDelay === undefined ? {} : { publishDelay: options.publishDelay },
      );
      out.result(version, () => `Rotated ${ref}: version ${version.version} is ${version.state}.`);
    });

  for (const [action, description] of [
    ["disable", "disable a key version: it can no longer encrypt, sign or decrypt until enabled"],
    ["enable", "enable a disabled key version again"],
  ] as const) {
    key
      .command(action)
      .description(description)
      .argument("<key>", KEY_ARGUMENT)
      .requiredOption("--version <n>", "the key version", parsePositiveInteger)
      .action(async (ref: string, options: { version: number }, command: Command) => {
        const { out, client } = contextOf(command);
        const version = await client().post<KeyVersion>(versionRoute(ref, options.version, action));
        out.result(version, () => `Version ${version.version} of ${ref} is ${version.state}.`);
      });
  }

  key
    .command("revoke")
    .description(
      "revoke a key version for good: what it protects can no longer be decrypted with it",
    )
    .argument("<key>", KEY_ARGUMENT)
    .requiredOption("--version <n>", "the key version", parsePositiveInteger)
    .option("--yes", "revoke without asking for confirmation")
    .action(async (ref: string, options: { version: number; yes?: boolean }, command: Command) => {
      const { out, client } = contextOf(command);
      const api = client();
      if (options.yes !== true) await confirmRevocation(ref, options.version);

      const version = await api.post<KeyVersion>(versionRoute(ref, options.version, "revoke"));
      out.result(version, () => `Version ${version.version} of ${ref} is ${version.state}.`);
    });

  key
    .command("min-version")
    .description("set the minimum decryption version: older versions can no longer decrypt")
    .argument("<key>", KEY_ARGUMENT)
    .argument("<version>", "the lowest version that may still decrypt", parsePositiveInteger)
    .action(async (ref: string, version: number, _options: unknown, command: Command) => {
      const { out, client } = contextOf(command);
      const response = await client().put<{ minDecryptionVersion: number }>(
        keyRoute(ref, "/min-decryption-version"),
        { version },
      );
      out.result(
        response,
        () => `Minimum decryption version of ${ref} is ${response.minDecryptionVersion}.`,
      );
    });
}

/** Drops trailing slashes, since the server matches prefixes on whole path segments. */
function prefixQuery(prefix: string | undefined): string | undefined {
  return prefix?.replace(/\/+$/, "");
}

function versionRoute(ref: string, version: number, action: string): string {
  return keyRoute(ref, `/versions/${version}/${action}`);
}

async function confirmRevocation(ref: string, version: number): Promise<void> {
  if (!isInteractive()) {
    throw usageError(
      `revoking version ${version} of ${ref} needs confirmation`,
      "pass --yes to revoke without a prompt",
    );
  }
  const confirmed = await confirm(
    `Revoke version ${version} of ${ref}? Data keys and ciphertexts under it can no longer be decrypted, and this cannot be undone.`,
  );
  if (!confirmed) throw new CliError("CANCELLED", `version ${version} of ${ref} was not revoked`);
}

function describeKeyList(keys: readonly Key[]): string {
  if (keys.length === 0) return "No keys.";
  const rows = keys.map((key) => [
    key.path,
    key.kind,
    key.purpose,
    key.algorithm ?? null,
    key.mode ?? null,
    key.primaryVersion ?? null,
    key.rotationPeriod ?? null,
    key.id,
  ]);
  return formatTable([
    ["PATH", "KIND", "PURPOSE", "ALGORITHM", "MODE", "PRIMARY", "ROTATION", "ID"],
    ...rows,
  ]);
}

/** Formats a key's fields and a table of its versions. */
export function describeKey(key: Key): string {
  const fields = formatFields([
    ["path", key.path],
    ["id", key.id],
    ["kind", key.kind],
    ["purpose", key.purpose],
    ["algorithm", key.algorithm ?? null],
    ["mode", key.mode ?? null],
    ["parent", key.parentId ?? null],
    ["rotation", key.rotationPeriod ?? null],
    ["primary version", key.primaryVersion ?? null],
    ["min decryption version", key.minDecryptionVersion ?? null],
    ["created", key.createdAt ?? null],
  ]);
  const versions = formatTable([
    ["VERSION", "STATE", "CREATED", "ACTIVATES", "RETIRES", "PARENT"],
    ...key.versions.map((version) => [
      version.version,
      version.state,
      version.createdAt,
      version.activateAt ?? null,
      version.retireAt ?? null,
      `${version.parentKeyId} v${version.parentVersion}`,
    ]),
  ]);
  return `${fields}\n\nversions\n${indent(versions)}`;
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((line) => `  ${line}`)
    .join("\n");
}

/** Draws the tree with box-drawing connectors, one key per line, children below their parent. */
export function renderTree(roots: readonly TreeNode[]): string {
  const lines: string[] = [];
  const visit = (node: TreeNode, prefix: string, connector: string, childPrefix: string): void => {
    lines.push(`${prefix}${connector}${treeLabel(node)}`);
    node.children.forEach((child, index) => {
      const last = index === node.children.length - 1;
      visit(child, prefix + childPrefix, last ? "└── " : "├── ", last ? "    " : "│   ");
    });
  };
  for (const root of roots) visit(root, "", "", "");
  return lines.join("\n");
}

function treeLabel(node: TreeNode): string {
  const version =
    node.primaryVersion === null || node.primaryVersion === undefined
      ? "no primary"
      : `v${node.primaryVersion}`;
  const kind = node.kind === "master" ? "master" : node.purpose;
  return `${node.path}  (${kind}, ${version})`;
}
