import type { Transaction } from "kysely";

import type { Database, Executor } from "../storage/schema.ts";
import type { OutboxObserver } from "../storage/repositories/outbox.ts";
import { actorFields, currentActor } from "./context.ts";
import type { SqlAuditWriter } from "./sql-writer.ts";
import type { AuditEvent, AuditEventType } from "./types.ts";

type Payload = Record<string, unknown>;
type Mapped = Pick<AuditEvent, "keyId" | "keyVersion" | "chain" | "credentialId" | "details">;

/**
 * The audit record of each state change announced on the outbox, other than key changes (the key
 * tree writes those itself, with their chain step). Topics not listed here are not audited by this
 * path: their owners write their own records.
 */
const STATE_EVENTS: Record<string, { type: AuditEventType; map: (payload: Payload) => Mapped }> = {
  "operator_token.created": {
    type: "operator_token.created",
    map: (p) =>
      credential(str(p.id), {
        name: str(p.name),
        environment: str(p.environment),
        tenant: str(p.tenant),
        readOnly: bool(p.readOnly),
        root: bool(p.root),
        expiresAt: str(p.expiresAt) ?? num(p.expiresAt),
      }),
  },
  "operator_token.revoked": {
    type: "operator_token.revoked",
    map: (p) =>
      credential(str(p.id), {
        environment: str(p.environment),
        tenant: str(p.tenant),
        root: bool(p.root),
      }),
  },
  "service.created": {
    type: "service.created",
    map: (p) =>
      credential(str(p.id), {
        environment: str(p.environment),
        tenant: str(p.tenant),
        service: str(p.service),
      }),
  },
  "service.secret_rotated": {
    type: "service.secret_rotated",
    map: (p) =>
      credential(str(p.id), {
        secretId: str(p.secretId),
        previousExpireAt: num(p.previousExpireAt),
      }),
  },
  "service.secret_revoked": {
    type: "service.secret_revoked",
    map: (p) => credential(str(p.id), { secretId: str(p.secretId) }),
  },
  "token.revoked": {
    type: "token.revoked",
    map: (p) => credential(str(p.jti), { clientId: str(p.clientId), expiresAt: num(p.expiresAt) }),
  },
  "root.rewrapped": {
    type: "key.version_rewrapped",
    map: (p) => {
      const keyId = str(p.keyId);
      const version = num(p.version);
      const toRoot = num(p.toRootVersion);
      return {
        keyId,
        keyVersion: version,
        chain:
          keyId === null || version === null || toRoot === null
            ? []
            : [`root@${toRoot}`, `${keyId}@${version}`],
        credentialId: null,
        details: {
          path: str(p.path),
          fromRootVersion: num(p.fromRootVersion),
          toRootVersion: toRoot,
        },
      };
    },
  },
};

/**
 * Returns the outbox observer that writes the audit record of each listed state change in the
 * change's own transaction, and tells the current request its route event is written.
 */
export function auditStateChanges(
  writer: Pick<SqlAuditWriter, "writeInTransaction">,
): OutboxObserver {
  return async (ex: Executor, topic, payload, now) => {
    const entry = STATE_EVENTS[topic];
    if (entry === undefined) return;
    if (!ex.isTransaction) {
      throw new Error(`state change ${topic} was written outside a transaction`);
    }
    await writer.writeInTransaction(ex as Transaction<Database>, {
      type: entry.type,
      outcome: "success",
      at: now,
      ...actorFields(),
      errorCode: null,
      ...entry.map(payload),
    });
    currentActor()?.writtenInTransaction.add(entry.type);
  };
}

function credential(id: string | null, details: AuditEvent["details"]): Mapped {
  return { keyId: null, keyVersion: null, chain: [], credentialId: id, details };
}

function str(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

function num(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

function bool(value: unknown): boolean | null {
  return typeof value === "boolean" ? value : null;
}
