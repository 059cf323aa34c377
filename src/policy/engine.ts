import { ArborError } from "../errors/index.ts";
import { ACTION_NAMES, actionsCoveredBy, isActionName, type ActionName } from "./actions.ts";
import { BUILTIN_POLICIES } from "./builtin.ts";
import { cedar, describeCedarErrors, type EntityJson, type PolicyJson } from "./cedar.ts";
import { DecisionCache } from "./decision-cache.ts";
import {
  principalEntity,
  resourceEntity,
  type BreakGlassFacts,
  type PrincipalFacts,
  type ResourceFacts,
} from "./entities.ts";
import { NAMESPACE, SCHEMA_TEXT } from "./schema.ts";

/** One stored policy document: Cedar text under a name, at one version. */
export interface StoredPolicyDocument {
  name: string;
  version: number;
  text: string;
}

/** The origin of a policy in the active set, for `arbor policy explain`. */
export interface PolicyOrigin {
  /** The Cedar policy id: the built-in id, or `<document>/<@id>` or `<document>#<n>`. */
  id: string;
  source: "builtin" | "stored";
  /** The built-in id or the stored document's name. */
  name: string;
  /** The stored document's version; null for built-ins. */
  version: number | null;
  effect: "permit" | "forbid";
  /** The built-in reason, or the policy's `@reason` annotation. */
  reason: string | null;
  text: string;
}

/** A request to decide. `breakGlass` is the grant that covers the resource, if any. */
export interface DecisionRequest {
  principal: PrincipalFacts;
  action: string;
  resource: ResourceFacts;
  breakGlass: BreakGlassFacts | null;
  /** Milliseconds since the Unix epoch. */
  now: number;
}

export interface EngineDecision {
  allowed: boolean;
  /** Ids of the policies that determined the decision; empty for a default deny. */
  policies: readonly string[];
  /** Evaluation errors. Any error makes the decision a denial, so a policy never fails open. */
  errors: readonly string[];
}

export interface Explanation extends EngineDecision {
  /** The determining policies with their source and reason. */
  determining: PolicyOrigin[];
  /** A sentence that explains the decision, for people. */
  summary: string;
  entities: EntityJson[];
}

export interface EngineOptions {
  /** How long a decision is reused, in milliseconds; 0 turns the decision cache off. */
  cacheTtlMs?: number;
  cacheMaxEntries?: number;
}

/** A stored document after parsing: its policies with their ids and parsed form. */
export interface ParsedPolicy {
  origin: PolicyOrigin;
  json: PolicyJson;
}

const SCHEMA_NAME = "arbor";
let schemaPreparsed = false;
// Preparsed policy sets live in the Cedar module's global state, so each engine keeps its own ids.
let engineCount = 0;

/**
 * Decides requests with Cedar: the built-in guards and roles plus the stored policies, validated
 * against the schema. Policies are parsed once per change (`load`), and decisions use Cedar's
 * stateful, pre-parsed evaluation. The set is split by action: each action is decided against
 * only the policies whose action scope can match it, which gives the same decision (a policy whose
 * scope does not match is never satisfied and never raises an error) with less work per request.
 */
export class PolicyEngine {
  readonly #prefix: string;
  readonly #cache: DecisionCache<EngineDecision>;
  #policies = new Map<string, PolicyOrigin>();
  #setOf = new Map<ActionName, PolicySet>();
  #generation = 0;

  constructor(options: EngineOptions = {}) {
    engineCount += 1;
    this.#prefix = `arbor-${engineCount}`;
    this.#cache = new DecisionCache({
      ttlMs: options.cacheTtlMs ?? 2_000,
      maxEntries: options.cacheMaxEntries ?? 10_000,
    });
    if (!schemaPreparsed) {
      requireSuccess(cedar().preparseSchema(SCHEMA_NAME, SCHEMA_TEXT), "the built-in schema");
      schemaPreparsed = true;
    }
    this.load([]);
  }

  /** Counts loads; each one clears the decision cache. */
  get generation(): number {
    return this.#generation;
  }

  /** Number of policies in effect, built-ins included. */
  get size(): number {
    return this.#policies.size;
  }

  /** Returns every policy in effect, built-ins first. */
  policies(): PolicyOrigin[] {
    return [...this.#policies.values()];
  }

  /**
   * Replaces the stored policies. The documents are validated first (see {@link validateDocuments});
   * if one is invalid, nothing changes and INVALID_POLICY names it.
   *
   * NOTE: parsing and validation run synchronously in WebAssembly, so a load blocks the event loop:
   * about 1.6 s with 2,000 stored policies on the development machine (bench/policy.ts).
   */
  load(documents: readonly StoredPolicyDocument[]): void {
    const parsed = [...builtinPolicies(), ...validateDocuments(documents)];

    // Actions whose policies are the same share one set. Sets are parsed on first use, so a
    // change does not block the event loop for every action at once. Slots are reused across
    // loads, which bounds the memory the Cedar module keeps.
    const setOf = new Map<ActionName, PolicySet>();
    const bySignature = new Map<string, PolicySet>();
    for (const [action, members] of partitionByAction(parsed)) {
      const signature = members.map((policy) => policy.origin.id).join("\n");
      let set = bySignature.get(signature);
      if (set === undefined) {
        set = { id: `${this.#prefix}-${bySignature.size}`, members, parsed: false };
        bySignature.set(signature, set);
      }
      setOf.set(action, set);
    }
    this.#setOf = setOf;
    this.#policies = new Map(parsed.map((policy) => [policy.origin.id, policy.origin]));
    this.#generation += 1;
    this.#cache.clear();
  }

  /** Decides a request, with the decision cache in front of Cedar. */
  decide(request: DecisionRequest): EngineDecision {
    const entities = requestEntities(request);
    const key = `${request.action}\n${JSON.stringify(entities)}`;
    const cached = this.#cache.get(key, request.now);
    if (cached !== undefined) return cached;

    const decision = this.#evaluate(request, entities);
    const validUntil =
      request.breakGlass === null ? Number.POSITIVE_INFINITY : request.breakGlass.expiresAt;
    this.#cache.set(key, decision, request.now, validUntil);
    return decision;
  }

  /** Decides a request without the cache and returns the policies that decided it, and why. */
  explain(request: DecisionRequest): Explanation {
    const entities = requestEntities(request);
    const decision = this.#evaluate(request, entities);
    const determining = decision.policies.flatMap((id) => this.#policies.get(id) ?? []);
    return { ...decision, determining, summary: summarize(decision, determining), entities };
  }

  /** Returns the id of the action's pre-parsed set, parsing it now if this load has not yet. */
  #preparsed(action: ActionName): string {
    const set = this.#setOf.get(action)!;
    if (!set.parsed) {
      const staticPolicies = Object.fromEntries(
        set.members.map((policy) => [policy.origin.id, policy.origin.text]),
      );
      requireSuccess(cedar().preparsePolicySet(set.id, { staticPolicies }), "the policy set");
      set.parsed = true;
    }
    return set.id;
  }

  #evaluate(request: DecisionRequest, entities: EntityJson[]): EngineDecision {
    if (!isActionName(request.action)) {
      return deny([], [`action "${request.action}" is not in the schema`]);
    }
    const setId = this.#preparsed(request.action);
    const answer = cedar().statefulIsAuthorized({
      principal: entities[0]!.uid,
      action: { type: `${NAMESPACE}::Action`, id: request.action },
      resource: entities[1]!.uid,
      context: { now: request.now },
      preparsedSchemaName: SCHEMA_NAME,
      validateRequest: true,
      preparsedPolicySetId: setId,
      entities,
    });
    if (answer.type === "failure")
      return deny(
        [],
        answer.errors.map((error) => error.message),
      );

    const { decision, diagnostics } = answer.response;
    const errors = diagnostics.errors.map((error) => `${error.policyId}: ${error.error.message}`);
    // A policy whose evaluation fails is skipped by Cedar, so a failing `forbid` would let the
    // request through. Any error therefore denies.
    if (errors.length > 0) return deny(diagnostics.reason, errors);
    return Object.freeze({
      allowed: decision === "allow",
      policies: Object.freeze([...diagnostics.reason]),
      errors: Object.freeze([]),
    });
  }
}

/** The policies of one or more actions, pre-parsed into the Cedar module under `id` on first use. */
interface PolicySet {
  id: string;
  members: ParsedPolicy[];
  parsed: boolean;
}

function deny(policies: readonly string[], errors: readonly string[]): EngineDecision {
  return Object.freeze({
    allowed: false,
    policies: Object.freeze([...policies]),
    errors: Object.freeze([...errors]),
  });
}

function requestEntities(request: DecisionRequest): EntityJson[] {
  return [principalEntity(request.principal, request.breakGlass), resourceEntity(request.resource)];
}

function summarize(decision: EngineDecision, determining: readonly PolicyOrigin[]): string {
  if (decision.errors.length > 0) {
    return `denied because evaluation failed: ${decision.errors.join("; ")}`;
  }
  if (determining.length === 0) {
    return decision.allowed ? "allowed" : "denied by default: no permit policy applies";
  }
  const reasons = determining.map(
    (policy) => `${policy.id} (${policy.reason ?? "no reason given"})`,
  );
  return `${decision.allowed ? "allowed by" : "denied by"} ${reasons.join(", ")}`;
}

function builtinPolicies(): ParsedPolicy[] {
  return BUILTIN_POLICIES.map((policy) => ({
    origin: {
      id: policy.id,
      source: "builtin",
      name: policy.id,
      version: null,
      effect: policy.text.startsWith("forbid") ? "forbid" : "permit",
      reason: policy.reason,
      text: policy.text,
    },
    json: toJson(policy.text, policy.id),
  }));
}

/** Policy ids of stored documents: a document name, then `/` and its `@id`, or `#` and its position. */
const DOCUMENT_NAME_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const POLICY_ID_ANNOTATION = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Parses and validates stored documents against the schema, with the built-ins beside them, and
 * returns their policies. Throws INVALID_ARGUMENT naming the document and Cedar's message for a
 * parse error, a template (slots are not supported), a duplicate id or a validation error.
 */
export function validateDocuments(documents: readonly StoredPolicyDocument[]): ParsedPolicy[] {
  const parsed: ParsedPolicy[] = [];
  const seen = new Set<string>(BUILTIN_POLICIES.map((policy) => policy.id));
  for (const document of documents) {
    requireShallowNesting(document);
    for (const policy of parseDocument(document)) {
      if (seen.has(policy.origin.id)) {
        throw invalidPolicy(document.name, `policy id ${policy.origin.id} appears twice`);
      }
      seen.add(policy.origin.id);
      parsed.push(policy);
    }
  }
  if (parsed.length === 0) return parsed;

  const answer = cedar().validate({
    schema: SCHEMA_TEXT,
    policies: {
      staticPolicies: Object.fromEntries(
        parsed.map((policy) => [policy.origin.id, policy.origin.text]),
      ),
    },
    validationSettings: { mode: "strict" },
  });
  if (answer.type === "failure") {
    throw invalidPolicy(documents[0]!.name, describeCedarErrors(answer.errors));
  }
  const [first] = answer.validationErrors;
  if (first !== undefined) {
    const owner = parsed.find((policy) => policy.origin.id === first.policyId);
    throw invalidPolicy(
      owner?.origin.name ?? first.policyId,
      answer.validationErrors.map((error) => error.error.message).join("; "),
    );
  }
  return parsed;
}

function parseDocument(document: StoredPolicyDocument): ParsedPolicy[] {
  if (!DOCUMENT_NAME_PATTERN.test(document.name)) {
    throw new ArborError(
      "INVALID_ARGUMENT",
      `invalid policy name ${JSON.stringify(document.name)}: use 1 to 64 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit`,
      { parameter: "name", value: document.name },
    );
  }
  const parts = cedar().policySetTextToParts(document.text);
  if (parts.type === "failure") {
    throw invalidPolicy(document.name, describeCedarErrors(parts.errors));
  }
  if (parts.policy_templates.length > 0) {
    throw invalidPolicy(
      document.name,
      "templates (policies with ?principal or ?resource) are not supported",
    );
  }
  if (parts.policies.length === 0) {
    throw invalidPolicy(document.name, "the document contains no policy");
  }

  return parts.policies.map((text, index) => {
    const json = toJson(text, document.name);
    const annotated = json.annotations?.id;
    if (annotated !== undefined && !POLICY_ID_ANNOTATION.test(annotated)) {
      throw invalidPolicy(
        document.name,
        `@id ${JSON.stringify(annotated)} must be 1 to 64 letters, digits, ".", "_" or "-"`,
      );
    }
    return {
      origin: {
        id:
          annotated === undefined
            ? `${document.name}#${index + 1}`
            : `${document.name}/${annotated}`,
        source: "stored",
        name: document.name,
        version: document.version,
        effect: json.effect,
        reason: json.annotations?.reason ?? null,
        text,
      },
      json,
    } satisfies ParsedPolicy;
  });
}

function toJson(text: string, name: string): PolicyJson {
  const answer = cedar().policyToJson(text);
  if (answer.type === "failure") throw invalidPolicy(name, describeCedarErrors(answer.errors));
  return answer.json;
}

/** Groups policies by the actions their action scope can match. */
function partitionByAction(policies: readonly ParsedPolicy[]): Map<ActionName, ParsedPolicy[]> {
  const sets = new Map<ActionName, ParsedPolicy[]>(ACTION_NAMES.map((name) => [name, []]));
  for (const policy of policies) {
    for (const action of actionsMatched(policy.json)) sets.get(action)!.push(policy);
  }
  return sets;
}

function actionsMatched(json: PolicyJson): ActionName[] {
  const constraint = json.action;
  if (constraint.op === "All") return ACTION_NAMES;
  const entities =
    "entities" in constraint
      ? constraint.entities
      : "entity" in constraint
        ? [constraint.entity]
        : [];
  return [...new Set(entities.flatMap((entity) => actionsCoveredBy(uidId(entity))))];
}

function uidId(uid: { __entity: { id: string } } | { id: string }): string {
  return "__entity" in uid ? uid.__entity.id : uid.id;
}

function requireSuccess(
  answer: { type: "success" } | { type: "failure"; errors: { message: string }[] },
  what: string,
): void {
  if (answer.type === "failure") {
    throw new ArborError(
      "INTERNAL",
      `Cedar failed to parse ${what}: ${describeCedarErrors(answer.errors as never)}`,
    );
  }
}

function invalidPolicy(name: string, reason: string): ArborError {
  return new ArborError("INVALID_POLICY", `policy ${JSON.stringify(name)} is invalid: ${reason}`, {
    parameter: "policy",
    value: name,
  });
}

/** Deepest nesting of brackets and `if` expressions a policy may use. */
const MAX_POLICY_NESTING = 32;

/**
 * Rejects deeply nested documents before Cedar parses them: cedar-wasm's recursive parser and
 * evaluator run out of stack or WebAssembly memory on nesting in the hundreds, and a trap there
 * leaves the module unusable for every later request. Real policies nest a few levels.
 */
function requireShallowNesting(document: StoredPolicyDocument): void {
  // Brackets and `if` keywords inside string literals do not nest; skip the literals.
  const text = document.text.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  let depth = 0;
  let deepest = 0;
  for (const token of text.matchAll(/[([{]|[)\]}]/g)) {
    depth = "([{".includes(token[0]) ? depth + 1 : Math.max(0, depth - 1);
    deepest = Math.max(deepest, depth);
  }
  // `if` expressions nest without brackets, so each policy statement's count of them bounds it.
  const ifs = Math.max(
    0,
    ...text.split(";").map((statement) => statement.match(/\bif\b/g)?.length ?? 0),
  );
  if (deepest > MAX_POLICY_NESTING || ifs > MAX_POLICY_NESTING) {
    throw invalidPolicy(
      document.name,
      `it nests ${Math.max(deepest, ifs)} levels of brackets or if-expressions; at most ${MAX_POLICY_NESTING} are allowed`,
    );
  }
}
