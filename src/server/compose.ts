import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";

import type { Logger } from "pino";
import { Registry } from "prom-client";

import { GroupCommitter } from "../audit/group-commit.ts";
import { createSqlAuditWriter } from "../audit/sql-writer.ts";
import { systemClock, type Clock } from "../clock.ts";
import type { ArborConfig } from "../config/index.ts";
import { createEnvelopeService } from "../envelope/service.ts";
import { applyHierarchy, createKeyTree, MaterialCache } from "../hierarchy/index.ts";
import { createOperatorTokenService } from "../operators/index.ts";
import { createSealedRoot } from "../root/index.ts";
import { openStorage } from "../storage/index.ts";
import { buildApp } from "./app.ts";
import { allowAllAuthorizer } from "./authorizer.ts";
import type { ServerDeps } from "./deps.ts";
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
    const root = await createSealedRoot({
      store: storage.sealedRoot,
      clock,
      metrics: metrics.rootMetrics,
    });
    const cache = new MaterialCache({
      clock,
      maxEntries: config.limits.cacheMaxEntries,
      ttlMs: config.limits.cacheTtlMs,
    });
    const keyTree = createKeyTree({ storage, root, clock, cache, logger });
    const audit = createSqlAuditWriter(new GroupCommitter(storage));

    const deps: ServerDeps = {
      keyTree,
      root,
      envelope: createEnvelopeService({ keyTree }),
      operators: createOperatorTokenService({ storage, clock }),
      audit,
      authorizer: allowAllAuthorizer,
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
      applyHierarchy: async (document, dryRun) => {
        const result = await applyHierarchy(keyTree, document, { dryRun });
        return { ...result, applied: !dryRun };
      },
    };

    const app = await buildApp(deps, tlsOptions(config));
    await app.listen({ host: config.listen.host, port: config.listen.port });
    const port = addressPort(app.server.address());
    const scheme = config.tls === null ? "http" : "https";
    const host = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
    const address = `${scheme}://${host}:${port}`;

    const maintenance = setInterval(
      () => void runMaintenance(deps, logger),
      MAINTENANCE_INTERVAL_MS,
    );
    maintenance.unref();
    logger.info({ address, storage: config.storage.kind }, "arbor listening");

    return {
      address,
      deps,
      async close() {
        clearInterval(maintenance);
        await app.close();
        root.seal();
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

/** Promotes due pending versions and retires signing versions past `retire_at`, when unsealed. */
async function runMaintenance(deps: ServerDeps, logger: Logger): Promise<void> {
  if (deps.root.status().state !== "unsealed") return;
  try {
    const promoted = await deps.keyTree.promoteDuePending();
    const retired = await deps.keyTree.retireDueSigningVersions();
    if (promoted + retired > 0) logger.info({ promoted, retired }, "key versions advanced");
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
