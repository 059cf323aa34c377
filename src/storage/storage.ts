import type { Kysely, Transaction } from "kysely";

import { migrateToLatest, type Dialect } from "./migrations/index.ts";
import { createIssuanceRepository, type IssuanceRepository } from "./repositories/issuances.ts";
import {
  createKeyVersionRepository,
  type KeyVersionRepository,
} from "./repositories/key-versions.ts";
import { createKeyRepository, type KeyRepository } from "./repositories/keys.ts";
import {
  createOperatorTokenRepository,
  type OperatorTokenRepository,
} from "./repositories/operator-tokens.ts";
import { createOutboxRepository, type OutboxRepository } from "./repositories/outbox.ts";
import { createPkcs11RootStore } from "./repositories/pkcs11-root.ts";
import { createSealedRootStore } from "./repositories/sealed-root.ts";
import {
  createServicePrincipalRepository,
  type ServicePrincipalRepository,
} from "./repositories/service-principals.ts";
import type { Pkcs11RootStore } from "../root/pkcs11/types.ts";
import type { SealedRootStore } from "../root/types.ts";
import type { Database } from "./schema.ts";
import { openSqlite } from "./sqlite.ts";

/** An open database, its dialect and its repositories; the composition root passes this around. */
export interface Storage {
  readonly db: Kysely<Database>;
  readonly dialect: Dialect;
  readonly keys: KeyRepository;
  readonly versions: KeyVersionRepository;
  readonly outbox: OutboxRepository;
  readonly issuances: IssuanceRepository;
  readonly sealedRoot: SealedRootStore;
  readonly pkcs11Root: Pkcs11RootStore;
  readonly operatorTokens: OperatorTokenRepository;
  /** Service principals, their client secrets and revoked access token ids. */
  readonly servicePrincipals: ServicePrincipalRepository;
  /** Runs `work` in a write transaction (`BEGIN IMMEDIATE` on SQLite); rolls back if it throws. */
  write<T>(work: (trx: Transaction<Database>) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export type StorageConfig = { kind: "sqlite"; path: string };

/** Opens storage and runs pending migrations before returning. */
export async function openStorage(config: StorageConfig): Promise<Storage> {
  const { db } = openSqlite(config.path);
  try {
    await migrateToLatest(db as Kysely<unknown>, "sqlite");
  } catch (error) {
    await db.destroy();
    throw error;
  }
  return createStorage(db, "sqlite");
}

/** Wraps an already migrated Kysely instance; used by each dialect's opener. */
export function createStorage(db: Kysely<Database>, dialect: Dialect): Storage {
  return {
    db,
    dialect,
    keys: createKeyRepository(db),
    versions: createKeyVersionRepository(db),
    outbox: createOutboxRepository(db),
    issuances: createIssuanceRepository(db),
    sealedRoot: createSealedRootStore(db),
    pkcs11Root: createPkcs11RootStore(db),
    operatorTokens: createOperatorTokenRepository(db),
    servicePrincipals: createServicePrincipalRepository(db),
    write: (work) => db.transaction().execute(work),
    close: () => db.destroy(),
  };
}
