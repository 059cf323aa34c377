import type { Insertable, Kysely, Selectable } from "kysely";

import type {
  ClientSecretsTable,
  Database,
  Executor,
  RevokedTokensTable,
  ServicePrincipalsTable,
} from "../schema.ts";

export type ServicePrincipalRow = Selectable<ServicePrincipalsTable>;
export type ClientSecretRow = Selectable<ClientSecretsTable>;
export type RevokedTokenRow = Selectable<RevokedTokensTable>;

/** Filter for `list`: a set field keeps only rows with exactly that value. */
export interface ServicePrincipalFilter {
  environment?: string;
  tenant?: string;
}

/** Service principals, their client secrets, and revoked access token ids. */
export function createServicePrincipalRepository(db: Kysely<Database>) {
  return {
    async insert(row: Insertable<ServicePrincipalsTable>, ex: Executor = db): Promise<void> {
      await ex.insertInto("service_principals").values(row).execute();
    },

    async findById(id: string, ex: Executor = db): Promise<ServicePrincipalRow | undefined> {
      return ex
        .selectFrom("service_principals")
        .selectAll()
        .where("id", "=", id)
        .executeTakeFirst();
    },

    /** Lists principals in creation order. */
    async list(
      filter: ServicePrincipalFilter = {},
      ex: Executor = db,
    ): Promise<ServicePrincipalRow[]> {
      let query = ex.selectFrom("service_principals").selectAll();
      if (filter.environment !== undefined) {
        query = query.where("environment", "=", filter.environment);
      }
      if (filter.tenant !== undefined) query = query.where("tenant", "=", filter.tenant);
      return query.orderBy("created_at").orderBy("id").execute();
    },

    async insertSecret(row: Insertable<ClientSecretsTable>, ex: Executor = db): Promise<void> {
      await ex.insertInto("client_secrets").values(row).execute();
    },

    async findSecret(id: string, ex: Executor = db): Promise<ClientSecretRow | undefined> {
      return ex.selectFrom("client_secrets").selectAll().where("id", "=", id).executeTakeFirst();
    },

    async findSecretByHash(
      secretHash: Uint8Array,
      ex: Executor = db,
    ): Promise<ClientSecretRow | undefined> {
      return ex
        .selectFrom("client_secrets")
        .selectAll()
        .where("secret_hash", "=", secretHash)
        .executeTakeFirst();
    },

    /** Lists a principal's secrets in creation order, including expired and revoked ones. */
    async listSecrets(principalId: string, ex: Executor = db): Promise<ClientSecretRow[]> {
      return ex
        .selectFrom("client_secrets")
        .selectAll()
        .where("principal_id", "=", principalId)
        .orderBy("created_at")
        .orderBy("id")
        .execute();
    },

    /**
     * Lowers `expires_at` to `expiresAt` on every secret of the principal that is neither
     * revoked nor expired at `now` and would otherwise live longer. Returns how many changed.
     */
    async shortenLiveSecrets(
      principalId: string,
      expiresAt: number,
      now: number,
      ex: Executor = db,
    ): Promise<number> {
      const result = await ex
        .updateTable("client_secrets")
        .set({ expires_at: expiresAt })
        .where("principal_id", "=", principalId)
        .where("revoked_at", "is", null)
        .where((eb) =>
          eb.or([
            eb("expires_at", "is", null),
            eb.and([eb("expires_at", ">", now), eb("expires_at", ">", expiresAt)]),
          ]),
        )
        .executeTakeFirst();
      return Number(result.numUpdatedRows);
    },

    /** Sets `revoked_at` unless the secret is already revoked; returns whether the row changed. */
    async revokeSecret(id: string, now: number, ex: Executor = db): Promise<boolean> {
      const result = await ex
        .updateTable("client_secrets")
        .set({ revoked_at: now })
        .where("id", "=", id)
        .where("revoked_at", "is", null)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },

    /** Records a revoked token id; returns false when it was already recorded. */
    async insertRevokedToken(
      row: Insertable<RevokedTokensTable>,
      ex: Executor = db,
    ): Promise<boolean> {
      const result = await ex
        .insertInto("revoked_tokens")
        .values(row)
        .onConflict((oc) => oc.column("jti").doNothing())
        .executeTakeFirst();
      return Number(result.numInsertedOrUpdatedRows ?? 0n) === 1;
    },

    async isTokenRevoked(jti: string, ex: Executor = db): Promise<boolean> {
      const row = await ex
        .selectFrom("revoked_tokens")
        .select("jti")
        .where("jti", "=", jti)
        .executeTakeFirst();
      return row !== undefined;
    },

    /** Deletes revoked token ids whose token expired before `before`; returns how many. */
    async pruneRevokedTokens(before: number, ex: Executor = db): Promise<number> {
      const result = await ex
        .deleteFrom("revoked_tokens")
        .where("expires_at", "<", before)
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}

export type ServicePrincipalRepository = ReturnType<typeof createServicePrincipalRepository>;
