/** Percentile of an ascending array of numbers, by nearest rank. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/**
 * Runs `operation` back to back for `durationMs` after `warmupMs`, timing each call. Returns
 * operations per second and latency percentiles in milliseconds.
 */
export function measureLoop(
  operation: () => void,
  options: { durationMs: number; warmupMs?: number },
): { opsPerSecond: number; p50: number; p99: number; count: number } {
  const warmupEnd = performance.now() + (options.warmupMs ?? 500);
  while (performance.now() < warmupEnd) operation();

  const samples: number[] = [];
  const start = performance.now();
  const end = start + options.durationMs;
  let now = start;
  while (now < end) {
    const before = now;
    operation();
    now = performance.now();
    samples.push(now - before);
  }
  samples.sort((a, b) => a - b);
  return {
    opsPerSecond: samples.length / ((now - start) / 1000),
    p50: percentile(samples, 50),
    p99: percentile(samples, 99),
    count: samples.length,
  };
}

export function formatNumber(value: number, digits = 0): string {
  return value.toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}
