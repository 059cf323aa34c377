import assert from "node:assert/strict";

import { constantTimeEqual } from "../../src/crypto/index.ts";
import {
  createOperatorTokenService,
  hashSecret,
  type OperatorPrincipal,
  type OperatorTokenService,
  type SecretHashing,
} from "../../src/operators/index.ts";
import type { Storage } from "../../src/storage/index.ts";
import { FakeClock } from "../helpers/clock.ts";
import type { DialectUnderTest } from "../helpers/dialects.ts";

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;

/** Real SHA-256 and constant-time comparison that record each call. */
export class CountingHashing implements SecretHashing {
  digests = 0;
  readonly comparisons: { presented: Uint8Array; stored: Uint8Array }[] = [];

  digest(secret: string): Uint8Array {
    this.digests += 1;
    return hashSecret(secret);
  }

  equal(a: Uint8Array, b: Uint8Array): boolean {
    this.comparisons.push({ presented: a, stored: b });
    return constantTimeEqual(a, b);
  }

  reset(): void {
    this.digests = 0;
    this.comparisons.length = 0;
  }
}

export interface OperatorHarness {
  storage: Storage;
  clock: FakeClock;
  hashing: CountingHashing;
  service: OperatorTokenService;
  /** The root token's secret and its authenticated principal. */
  rootSecret: string;
  root: OperatorPrincipal;
  close(): Promise<void>;
}

/** Opens a fresh store, creates the root token and authenticates it. */
export async function openOperators(dialect: DialectUnderTest): Promise<OperatorHarness> {
  const { storage, close } = await dialect.open();
  const clock = new FakeClock();
  const hashing = new CountingHashing();
  const service = createOperatorTokenService({ storage, clock, secretHashing: hashing });
  const { token: rootSecret } = await service.createRootToken();
  const root = await service.authenticate(rootSecret);
  hashing.reset();
  return { storage, clock, hashing, service, rootSecret, root, close };
}

/** Creates a token as `creator` and returns it authenticated. */
export async function mint(
  service: OperatorTokenService,
  creator: OperatorPrincipal,
  input: Parameters<OperatorTokenService["create"]>[1],
): Promise<{ secret: string; principal: OperatorPrincipal }> {
  const { token } = await service.create(creator, input);
  return { secret: token, principal: await service.authenticate(token) };
}

/** Returns an `assert.rejects` validator that checks the ArborError code and, if given, its parameter. */
export function expectArborError(code: string, parameter?: string) {
  return (error: unknown): boolean => {
    const actual = error as { code?: string; message?: string; detail?: { parameter?: string } };
    assert.equal(actual.code, code, `expected ${code}, got ${String(error)}`);
    if (parameter !== undefined) assert.equal(actual.detail?.parameter, parameter);
    return true;
  };
}
