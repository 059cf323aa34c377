import type { RootCallResult, RootMetrics } from "../../src/root/metrics.ts";

export interface Observation {
  operation: string;
  result: RootCallResult;
  seconds: number;
}

/** RootMetrics that keeps every observation in order. */
export class RecordingMetrics implements RootMetrics {
  readonly observations: Observation[] = [];

  observe(operation: string, result: RootCallResult, seconds: number): void {
    this.observations.push({ operation, result, seconds });
  }

  count(operation: string, result: RootCallResult): number {
    return this.observations.filter((o) => o.operation === operation && o.result === result).length;
  }
}
