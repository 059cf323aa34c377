import { ArborError, isArborError, quote } from "../errors/index.ts";
import { describeRotation, readHierarchyDocument, type DesiredKey } from "./hierarchy-file.ts";
import { isInScope, type KeyScope, type KeyTree } from "./key-tree.ts";
import { parseKeyPath } from "./paths.ts";
import type { KeyInfo } from "./types.ts";

export interface PlannedCreate {
  action: "create";
  path: string;
  algorithm: string;
  mode: string;
  rotation: string;
}

export interface Drift {
  path: string;
  /** Difference found, such as `mode: file says derived, key is wrapped`, or `not in the file`. */
  reason: string;
}

export interface ApplyResult {
  dryRun: boolean;
  plan: PlannedCreate[];
  drift: Drift[];
  /** Paths created by this call; empty on a dry run. */
  created: string[];
  unchanged: number;
}

/**
 * Applies a hierarchy document: creates the keys it lists that do not exist yet, and reports
 * drift (keys that differ from the file, or exist under its environments without being in it).
 * It never changes or revokes an existing key, so applying the same file twice changes nothing.
 */
export async function applyHierarchy(
  tree: KeyTree,
  document: unknown,
  options: { dryRun: boolean; scope?: KeyScope },
): Promise<ApplyResult> {
  const desired = readHierarchyDocument(document);
  if (options.scope !== undefined) requireInScope(desired, options.scope);
  const environments = new Set(desired.filter((d) => !d.path.includes("/")).map((d) => d.path));

  const existing = new Map<string, KeyInfo>();
  for (const env of environments) {
    for (const key of await tree.listKeys({ environment: env })) existing.set(key.path, key);
  }

  const plan: PlannedCreate[] = [];
  const drift: Drift[] = [];
  for (const want of desired) {
    const have = existing.get(want.path);
    if (have === undefined) {
      plan.push({
        action: "create",
        path: want.path,
        algorithm: want.algorithm ?? "AES-256-GCM",
        mode: want.mode,
        rotation: describeRotation(want.rotationPeriodMs),
      });
      continue;
    }
    drift.push(...differences(want, have));
  }
  const wanted = new Set(desired.map((d) => d.path));
  for (const path of existing.keys()) {
    if (!wanted.has(path))
      drift.push({
        path,
        reason: "exists but is not in the file; Arbor never revokes keys on apply",
      });
  }

  const created: string[] = [];
  if (!options.dryRun) {
    for (const step of plan) {
      const want = desired.find((d) => d.path === step.path)!;
      try {
        await tree.createKey(want.path, {
          ...(want.algorithm === null ? {} : { algorithm: want.algorithm }),
          mode: want.mode,
          rotationPeriodMs: want.rotationPeriodMs,
        });
        created.push(want.path);
      } catch (error) {
        // Another apply may have created it meanwhile, which is the state the file requests.
        if (!isArborError(error, "PATH_IN_USE")) throw error;
      }
    }
  }
  return { dryRun: options.dryRun, plan, drift, created, unchanged: desired.length - plan.length };
}

/**
 * Refuses the whole document if it names any key outside the caller's scope, before anything is
 * read: a scoped token must neither create keys elsewhere nor learn from drift what exists there.
 */
function requireInScope(desired: DesiredKey[], scope: KeyScope): void {
  for (const want of desired) {
    const path = parseKeyPath(want.path);
    if (isInScope(path, scope)) continue;
    throw new ArborError(
      "FORBIDDEN",
      `the hierarchy file names ${quote(want.path)}, outside this token's scope; apply it with a token that reaches it`,
      { parameter: "document", value: want.path },
    );
  }
}

function differences(want: DesiredKey, have: KeyInfo): Drift[] {
  const out: Drift[] = [];
  const wantAlgorithm = want.algorithm ?? "AES-256-GCM";
  if (have.algorithm !== wantAlgorithm) {
    out.push({
      path: want.path,
      reason: `algorithm: file says ${wantAlgorithm}, key is ${have.algorithm}`,
    });
  }
  if (have.mode !== want.mode)
    out.push({ path: want.path, reason: `mode: file says ${want.mode}, key is ${have.mode}` });
  if (have.rotationPeriodMs !== want.rotationPeriodMs) {
    out.push({
      path: want.path,
      reason: `rotation: file says ${describeRotation(want.rotationPeriodMs)}, key is ${describeRotation(have.rotationPeriodMs)}`,
    });
  }
  return out;
}
