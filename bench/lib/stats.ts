/**
 * Small figures shared by the benchmarks: percentiles of latency samples, medians of rounds,
 * a process's CPU time and resident memory from /proc (Linux).
 */
import { readFileSync } from "node:fs";

/** The `p`-th percentile (0..100, nearest rank) of `samples`; NaN for none. */
export function percentile(samples: ArrayLike<number>, p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = Float64Array.from(samples).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** The median of `values` (the upper one of an even count); NaN for none. */
export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

/** CPU time (user + system) the process `pid` has used so far, in milliseconds (/proc/<pid>/stat, 100 ticks per second). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After "pid (comm) ": state is field 0, utime field 11, stime field 12, in clock ticks.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

/** Resident memory of the process `pid` (VmRSS of /proc/<pid>/status), in bytes; NaN once it has exited. */
export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) * 1024;
  } catch {
    return Number.NaN;
  }
}

/** The machine's 1-minute load average, as /proc/loadavg gives it. */
export function loadAverage(): string {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ")[0]!;
  } catch {
    return "?";
  }
}

/** `value` with `digits` decimals, or "n/a" when it is not a finite number. */
export const fixed = (value: number, digits = 0): string => (Number.isFinite(value) ? value.toFixed(digits) : "n/a");
