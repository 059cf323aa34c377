import { performance } from "node:perf_hooks";

import type { RootProvider } from "./types.ts";

/** Counter of root provider calls, labelled by `operation` and `result`. */
export const ROOT_CALLS_TOTAL = "arbor_root_calls_total";
/** Histogram of root provider call latency in seconds, labelled by `operation` and `result`. */
export const ROOT_CALL_DURATION_SECONDS = "arbor_root_call_duration_seconds";
export const ROOT_METRIC_LABELS = ["operation", "result"] as const;

export type RootCallResult = "ok" | "error";

/**
 * Receiver of one observation per root provider call. A prom-client adapter increments
 * `arbor_root_calls_total` and observes `arbor_root_call_duration_seconds` with the same labels.
 * `observe` runs inside the provider call's path, so it must not throw.
 */
export interface RootMetrics {
  /** `operation` is the method name (`wrap`, `submit`, ...); `seconds` is the call's latency. */
  observe(operation: string, result: RootCallResult, seconds: number): void;
}

export interface InstrumentOptions {
  /** Monotonic time in seconds; defaults to `performance.now() / 1000`. Tests pass a fake. */
  monotonicSeconds?: () => number;
}

type Method = (...args: unknown[]) => unknown;

/**
 * Wraps every method of a root provider, including methods beyond `RootProvider` such as the
 * sealed provider's `initialize`, so each call reports its operation, result and latency. A method
 * that returns a promise is measured until the promise settles, and a rejected promise or a thrown
 * error counts as `error`. The error or value passes through unchanged.
 */
export function instrumentRootProvider<P extends RootProvider>(
  provider: P,
  metrics: RootMetrics,
  options: InstrumentOptions = {},
): P {
  const now = options.monotonicSeconds ?? (() => performance.now() / 1000);
  const wrappers = new Map<string, Method>();

  const instrument = (operation: string, method: Method): Method => {
    return (...args: unknown[]): unknown => {
      const startedAt = now();
      const finish = (result: RootCallResult): void => {
        metrics.observe(operation, result, Math.max(0, now() - startedAt));
      };

      let returned: unknown;
      try {
        // The provider itself is `this`, never the proxy, so private class fields keep working.
        returned = Reflect.apply(method, provider, args);
      } catch (error) {
        finish("error");
        throw error;
      }

      if (!isPromiseLike(returned)) {
        finish("ok");
        return returned;
      }
      return Promise.resolve(returned).then(
        (value) => {
          finish("ok");
          return value;
        },
        (error: unknown) => {
          finish("error");
          throw error;
        },
      );
    };
  };

  return new Proxy(provider, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (
        typeof property !== "string" ||
        typeof value !== "function" ||
        property === "constructor"
      ) {
        return value;
      }

      let wrapper = wrappers.get(property);
      if (wrapper === undefined) {
        wrapper = instrument(property, value as Method);
        wrappers.set(property, wrapper);
      }
      return wrapper;
    },
  });
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { then?: unknown }).then === "function"
  );
}
