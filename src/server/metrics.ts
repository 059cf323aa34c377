import { Counter, Gauge, Histogram, type Registry } from "prom-client";

import type { ExportMetrics } from "../audit/exporters/types.ts";

import {
  ROOT_CALL_DURATION_SECONDS,
  ROOT_CALLS_TOTAL,
  ROOT_METRIC_LABELS,
  type RootMetrics,
} from "../root/index.ts";

/** Kinds of credential that `arbor_issuances_total` and the issuance histogram count. */
export type IssuanceKind = "token" | "data_key" | "lease" | "certificate";

/** The Prometheus metrics of one Arbor process, registered on `registry`. */
export interface ServerMetrics {
  registry: Registry;
  issuanceDuration: Histogram<"kind">;
  rotationAttempts: Counter<"result">;
  tokenValidationFailures: Counter<"reason">;
  issuances: Counter<"kind">;
  /** Audit events made durable, by event type and outcome. */
  auditEvents: Counter<"type" | "outcome">;
  revocationPropagation: Histogram;
  keyLifetimeViolations: Gauge;
  scopeDenials: Counter<"scope">;
  rootCalls: Counter<"operation" | "result">;
  rootCallDuration: Histogram<"operation" | "result">;
  /** Successful requests, labelled by the route's action (such as `key.rotate`). */
  operations: Counter<"operation">;
  /** Adapter for `createSealedRoot({ metrics })`, feeding the two root metrics above. */
  rootMetrics: RootMetrics;
  /** Adapter for the audit exporters' runner. */
  exportMetrics: ExportMetrics;
}

// Issuance is on the request path: most responses take milliseconds, and a root call or a cold cache
// tens of milliseconds. Buckets in seconds.
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
// Propagation crosses nodes and subscribers, so it is measured in seconds to minutes.
const PROPAGATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** Creates every metric whose name the design fixes and registers them on `registry`. */
export function createMetrics(registry: Registry): ServerMetrics {
  const registers = [registry];

  const rootCalls = new Counter({
    name: ROOT_CALLS_TOTAL,
    help: "Calls to the root-of-trust provider, by operation and result.",
    labelNames: ROOT_METRIC_LABELS,
    registers,
  });
  const rootCallDuration = new Histogram({
    name: ROOT_CALL_DURATION_SECONDS,
    help: "Latency of calls to the root-of-trust provider in seconds, by operation and result.",
    labelNames: ROOT_METRIC_LABELS,
    buckets: LATENCY_BUCKETS,
    registers,
  });

  return {
    registry,
    issuanceDuration: new Histogram({
      name: "arbor_issuance_duration_seconds",
      help: "Time from request to durable audit event for each issued credential, in seconds.",
      labelNames: ["kind"],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    rotationAttempts: new Counter({
      name: "arbor_rotation_attempts_total",
      help: "Key rotation attempts, by result.",
      labelNames: ["result"],
      registers,
    }),
    tokenValidationFailures: new Counter({
      name: "arbor_token_validation_failures_total",
      help: "Access tokens that failed validation, by reason.",
      labelNames: ["reason"],
      registers,
    }),
    issuances: new Counter({
      name: "arbor_issuances_total",
      help: "Credentials handed out, by kind; compare with arbor_audit_events_total.",
      labelNames: ["kind"],
      registers,
    }),
    auditEvents: new Counter({
      name: "arbor_audit_events_total",
      help: "Audit events written durably, by type and outcome.",
      labelNames: ["type", "outcome"],
      registers,
    }),
    revocationPropagation: new Histogram({
      name: "arbor_revocation_propagation_seconds",
      help: "Time from a revocation to its acknowledgement by a node or subscriber, in seconds.",
      buckets: PROPAGATION_BUCKETS,
      registers,
    }),
    keyLifetimeViolations: new Gauge({
      name: "arbor_key_lifetime_violations",
      help: "Keys whose primary version is older than their rotation period.",
      registers,
    }),
    scopeDenials: new Counter({
      name: "arbor_scope_denials_total",
      help: "Requests denied because they reach outside the caller's environment or tenant.",
      labelNames: ["scope"],
      registers,
    }),
    rootCalls,
    rootCallDuration,
    operations: new Counter({
      name: "arbor_operations_total",
      help: "Successful API operations, by action.",
      labelNames: ["operation"],
      registers,
    }),
    rootMetrics: {
      observe(operation, result, seconds) {
        rootCalls.inc({ operation, result });
        rootCallDuration.observe({ operation, result }, seconds);
      },
    },
    exportMetrics: createExportMetrics(registers),
  };
}

/** Exporter metrics: how far each target is behind, and what it could not take. */
function createExportMetrics(registers: Registry[]): ExportMetrics {
  const lag = new Gauge({
    name: "arbor_audit_export_lag_records",
    help: "Audit records an exporter's target has not acknowledged yet.",
    labelNames: ["exporter"],
    registers,
  });
  const delivered = new Counter({
    name: "arbor_audit_exported_records_total",
    help: "Audit records delivered to an exporter's target.",
    labelNames: ["exporter"],
    registers,
  });
  const failures = new Counter({
    name: "arbor_audit_export_failures_total",
    help: "Failed export attempts, by exporter and reason (unavailable, rejected, read, cursor).",
    labelNames: ["exporter", "reason"],
    registers,
  });
  const truncated = new Counter({
    name: "arbor_audit_export_truncated_total",
    help: "Records sent without their JSON because they did not fit (syslog over UDP).",
    labelNames: ["exporter"],
    registers,
  });
  const skipped = new Counter({
    name: "arbor_audit_export_skipped_total",
    help: "Sequence numbers missing from the log between an exporter's cursor and the next record.",
    labelNames: ["exporter"],
    registers,
  });
  return {
    setLag: (exporter, records) => lag.set({ exporter }, records),
    addDelivered: (exporter, records) => delivered.inc({ exporter }, records),
    addFailure: (exporter, reason) => failures.inc({ exporter, reason }),
    addTruncated: (exporter, records) => truncated.inc({ exporter }, records),
    addSkipped: (exporter, records) => skipped.inc({ exporter }, records),
  };
}
