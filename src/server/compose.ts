import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";

import type { Logger } from "pino";
import { Registry } from "prom-client";

import { GroupCommitter } from "../audit/group-commit.ts";
import { createAuditKey } from "../audit/audit-key.ts";
import { createCheckpointer } from "../audit/checkpointer.ts";
import { SYSTEM_PRINCIPAL } from "../audit/context.ts";
import type { AuditEvent, AuditEventType } from "../audit/types.ts";
import { checkCompleteness } from "../audit/completeness.ts";
import { auditKeyChanges } from "../audit/key-events.ts";
import { auditStateChanges } from "../audit/state-events.ts";
import { createExporters } from "../audit/exporters/index.ts";
import { createAuditLogStore, cursorStoreOf, exportSourceOf } from "../audit/log-store.ts";
import { createRetention } from "../audit/retention.ts";
import { createSqlAuditWriter } from "../audit/sql-writer.ts";
import { systemClock, type Clock } from "../clock.ts";
import { ArborError, isArborError } from "../errors/index.ts";
import type { ArborConfig } from "../config/index.ts";
import { createEnvelopeService } from "../envelope/service.ts";
import { applyHierarchy, createKeyTree } from "../hierarchy/index.ts";
import { createOperatorTokenService } from "../operators/index.ts";
import { createSealedRoot, type RootMetrics } from "../root/index.ts";
import { createPolicyComponents } from "../policy/index.ts";
import { createPkcs11Root } from "../root/pkcs11/index.ts";
import { openStorage, type Storage } from "../storage/index.ts";
import {
  createTokenService,
  ObservedMaterialCache,
  restrictToOwnService,
  signRetireAfterMs,
} from "../tokens/index.ts";
import { buildApp } from "./app.ts";
import type { Authorizer, ServerDeps } from "./deps.ts";
import { createLogger } from "./logger.ts";
import { createMetrics } from "./metrics.ts";

/** How often pending versions are promoted and retired signing versions disabled. */
const MAINTENANCE_INTERVAL_MS = 10_000;

export interface RunningArbor {
  /** Base URL the server listens on, such as `http://127.0.0.1:8200`. */
  address: string;
  deps: ServerDeps;
  close(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  clock?: Clock;
  /**
   * Replaces the Cedar authorizer. Only the policy benchmark passes one (the allow-all
   * authorizer), to measure what authorization costs; no configuration setting reaches it.
   */
  authorizer?: Authorizer;
}

/**
 * The composition root: opens storage, builds the root provider, the key tree and every service,
 * wires them into the HTTP app and starts listening. The server starts sealed (or uninitialised)
 * and serves `sys/*` routes until it is unsealed.
 */
export async function startArbor(
  config: ArborConfig,
  options: StartOptions = {},
): Promise<RunningArbor> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger({ level: config.logLevel });
  const storage = await openStorage(config.storage);

  try {
    const metrics = createMetrics(new Registry());
    const root = await openRoot(config, storage, clock, logger, metrics.rootMetrics);
    // Observed, so the token service's cache of imported signing keys is cleared with it.
    const cache = new ObservedMaterialCache({
      clock,
      maxEntries: config.limits.cacheMaxEntries,
      ttlMs: config.limits.cacheTtlMs,
    });
    const auditStore = createAuditLogStore(storage.db);
    const checkpointer = createCheckpointer(
      { storage, store: auditStore, root, clock, logger },
      {
        everyRecords: config.audit.checkpointRecords,
        everyMs: config.audit.checkpointIntervalMs,
      },
    );
    const exporters = await createExporters(config, {
      source: exportSourceOf(auditStore, storage.db),
      cursors: cursorStoreOf(auditStore, clock),
      logger,
      metrics: metrics.exportMetrics,
    });
    const audit = createSqlAuditWriter(new GroupCommitter(storage), {
      onTamper: (message) => logger.error({ alert: "audit_tampered" }, message),
      onCommitted: () => {
        checkpointer.noteCommitted();
        exporters.wake();
      },
    });
    const auditKey = createAuditKey({ storage, root, clock });
    // Every other state change announced on the outbox gets its record in its own transaction.
    storage.outbox.observe(auditStateChanges(audit));
    const retention = createRetention({
      storage,
      store: auditStore,
      clock,
      exporters: () => [...exporters.exporters],
    });
    // Sign versions stay published for the maximum token lifetime plus a margin.
    const keyTree = createKeyTree({
      storage,
      root,
      clock,
      cache,
      logger,
      signRetireAfterMs: signRetireAfterMs(),
      // Each key change and its audit event commit together or not at all.
      onChange: auditKeyChanges(audit),
    });

    // Service principals (access tokens) reach only their own service's keys, both in the
    // routes' look-ups and in the envelope service's.
    const scopedKeyTree = restrictToOwnService(keyTree);
    // Cedar decides every request, and every key look-up of a route is decided on the key.
    const policies = await createPolicyComponents({
      storage,
      clock,
      audit,
      metrics,
      logger,
      keyTree: scopedKeyTree,
    });
    // A replaced authorizer (the benchmark's allow-all one) keeps the key tree's own scope checks.
    const lookupTree = options.authorizer === undefined ? policies.keyTree : scopedKeyTree;
    const deps: ServerDeps = {
      keyTree: lookupTree,
      root,
      envelope: createEnvelopeService({ keyTree: lookupTree }),
      operators: createOperatorTokenService({ storage, clock }),
      audit,
      auditKey,
      auditLog: {
        store: auditStore,
        checkpointer,
        completeness: () => checkCompleteness(storage.db),
        prune: (through) => retention.prune(through),
      },
      authorizer: options.authorizer ?? policies.authorizer,
      policies,
      metrics,
      clock,
      logger,
      storage,
      limits: {
        maxPayloadBytes: config.limits.maxPayloadBytes,
        maxBodyBytes: config.limits.maxBodyBytes,
        unsealAttemptsPerMinute: config.limits.unsealAttemptsPerMinute,
      },
      externalAddress: config.externalAddress,
      applyHierarchy: async (document, dryRun, principal) => {
        const scope = { environment: principal.environment, tenant: principal.tenant };
        const result = await applyHierarchy(keyTree, document, { dryRun, scope });
        return { ...result, applied: !dryRun };
      },
      tokens: createTokenService({
        storage,
        keyTree,
        clock,
        audit,
        metrics,
        externalAddress: config.externalAddress,
        materialCache: cache,
      }),
    };

    const app = await buildApp(deps, tlsOptions(config));
    await app.listen({ host: config.listen.host, port: config.listen.port });
    const port = addressPort(app.server.address());
    const scheme = config.tls === null ? "http" : "https";
    const host = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
    const address = `${scheme}://${host}:${port}`;

    // An HSM root unseals itself when the PIN is configured (ARBOR_PKCS11_PIN or root.pin_file).
    // If the token is unreachable at start, the attempt is repeated with the maintenance run
    // until it responds. Any other failure (a wrong PIN) is not retried, so a real HSM that locks
    // its PIN after a few failures is never pushed there by Arbor.
    let autoUnseal = root.unsealWithConfiguredPin !== undefined;
    const tryAutoUnseal = async (): Promise<void> => {
      if (!autoUnseal || root.unsealWithConfiguredPin === undefined) return;
      if (root.status().state === "unsealed") {
        autoUnseal = false;
        return;
      }
      try {
        if (await root.unsealWithConfiguredPin()) {
          logger.info("root unsealed with the configured PIN");
          await audit.write(systemEvent("sys.unsealed", clock.now(), { method: "configured_pin" }));
        }
        autoUnseal = false;
      } catch (error) {
        const retry = isArborError(error, "ROOT_UNAVAILABLE");
        autoUnseal = retry;
        logger.error(
          { err: error },
          retry
            ? "unsealing with the configured PIN failed because the HSM does not answer; retrying every 10 s"
            : "unsealing with the configured PIN failed; the server stays sealed until `arbor unseal`",
        );
      }
    };
    await tryAutoUnseal();

    const maintenance = setInterval(
      () => void tryAutoUnseal().then(() => runMaintenance(deps, logger)),
      MAINTENANCE_INTERVAL_MS,
    );
    maintenance.unref();
    checkpointer.start();
    exporters.start();
    logger.info({ address, storage: config.storage.kind }, "arbor listening");

    return {
      address,
      deps,
      async close() {
        clearInterval(maintenance);
        await app.close();
        if (root.status().state === "unsealed") {
          await audit
            .write(systemEvent("sys.sealed", clock.now(), { reason: "shutdown" }))
            .catch((error: unknown) => {
              logger.warn({ err: error }, "the shutdown could not be recorded in the audit log");
            });
        }
        // A last checkpoint while the root can still sign, so a clean stop leaves the tail signed.
        await checkpointer.checkpoint().catch((error: unknown) => {
          logger.warn({ err: error }, "the final audit checkpoint could not be signed");
        });
        await checkpointer.stop();
        // After the last records (the seal, the final checkpoint) so they are shipped too.
        exporters.wake();
        await exporters.stop();
        auditKey.forget();
        root.seal();
        await root.close?.();
        keyTree.clearCache();
        await storage.close();
        logger.info({ address }, "arbor stopped");
      },
    };
  } catch (error) {
    await storage.close();
    throw error;
  }
}

/**
 * Promotes due pending versions, retires signing versions past `retire_at` and prunes revoked
 * token ids whose tokens have expired, when unsealed.
 */
async function runMaintenance(deps: ServerDeps, logger: Logger): Promise<void> {
  try {
    // Another node (or process) may have changed policies or grants.
    await deps.policies?.store.refreshIfChanged();
  } catch (error) {
    logger.error({ err: error }, "reloading changed policies failed; retrying on the next run");
  }
  if (deps.root.status().state !== "unsealed") return;
  try {
    const promoted = await deps.keyTree.promoteDuePending();
    const retired = await deps.keyTree.retireDueSigningVersions();
    if (promoted + retired > 0) logger.info({ promoted, retired }, "key versions advanced");
    const pruned = (await deps.tokens?.pruneRevokedTokens()) ?? 0;
    if (pruned > 0) logger.info({ pruned }, "expired revoked token ids pruned");
  } catch (error) {
    logger.error({ err: error }, "key version maintenance failed; retrying on the next run");
  }
}

function tlsOptions(config: ArborConfig): { key: Buffer; cert: Buffer } | null {
  if (config.tls === null) return null;
  return { key: readFileSync(config.tls.keyFile), cert: readFileSync(config.tls.certFile) };
}

function addressPort(address: AddressInfo | string | null): number {
  if (address === null || typeof address === "string")
    throw new Error("server is not listening on a TCP port");
  return address.port;
}

type ComposedRoot = ServerDeps["root"] & {
  unsealWithConfiguredPin?: () => Promise<boolean>;
  close?: () => void | Promise<void>;
};

/**
 * Builds the configured root provider. A database initialised under one provider is refused
 * under the other, because every environment master is wrapped by the root it was made under.
 */
async function openRoot(
  config: ArborConfig,
  storage: Storage,
  clock: Clock,
  logger: Logger,
  metrics: RootMetrics,
): Promise<ComposedRoot> {
  const sealedState = await storage.sealedRoot.load();
  const hsmState = await storage.pkcs11Root.load();
  const other = config.root.provider === "pkcs11" ? sealedState : hsmState;
  if (other !== null) {
    throw new ArborError(
      "INVALID_ARGUMENT",
      `the database at ${config.storage.path} was initialised with the ${config.root.provider === "pkcs11" ? "sealed" : "pkcs11"} root; configure root.provider accordingly`,
      { parameter: "root.provider", value: config.root.provider },
    );
  }

  if (config.root.provider === "sealed") {
    return createSealedRoot({ store: storage.sealedRoot, clock, metrics });
  }
  const hsm = await createPkcs11Root({
    store: storage.pkcs11Root,
    clock,
    logger,
    metrics,
    modulePath: config.root.modulePath,
    tokenLabel: config.root.tokenLabel,
    keyLabel: config.root.keyLabel,
    pin: { env: process.env, pinFile: config.root.pinFile },
  });
  return {
    ...bindAll(hsm),
    // Through the API, an HSM root is initialised with the server's configured PIN; shares and
    // threshold do not apply to it.
    initialize: () => hsm.initialize({}),
  };
}

/** Copies a provider's methods bound to it, so one can be replaced without subclassing. */
function bindAll<T extends object>(target: T): T {
  const bound: Record<string, unknown> = {};
  let proto: object | null = target;
  while (proto !== null && proto !== Object.prototype) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      const value = (target as Record<string, unknown>)[name];
      if (name !== "constructor" && typeof value === "function" && !(name in bound)) {
        bound[name] = (value as (...args: unknown[]) => unknown).bind(target);
      }
    }
    proto = Object.getPrototypeOf(proto) as object | null;
  }
  return bound as T;
}

/** Builds an event of Arbor itself, outside any request. */
function systemEvent(
  type: AuditEventType,
  at: number,
  details: Record<string, string | number | boolean | null>,
): AuditEvent {
  return {
    type,
    outcome: "success",
    at,
    principal: { ...SYSTEM_PRINCIPAL },
    sourceAddress: null,
    requestId: null,
    keyId: null,
    keyVersion: null,
    chain: [],
    credentialId: null,
    errorCode: null,
    details,
  };
}
