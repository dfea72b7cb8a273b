/**
 * Summarises a V8 `.cpuprofile` (as `node --cpu-prof` writes it): the functions with the most
 * self time, and the most total (inclusive) time, each with its share of the sampled time.
 *
 *   node --import tsx bench/lib/cpu-profile.ts <file.cpuprofile> [top=25] [--total] [--skip-s=N]
 *
 * `--skip-s=N` leaves out the first N seconds of samples (start-up: loading modules).
 * Self time of a function = samples whose top frame is it; total time = samples with it
 * anywhere on the stack (counted once per sample). "(idle)" is time Node waited for I/O.
 */
import { readFileSync } from "node:fs";
import path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** One function's figures, in milliseconds. */
export interface FunctionTime {
  name: string;
  selfMs: number;
  totalMs: number;
}

/** A function's name with a short location: `name (package/file:line)`. */
function label(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  if (!url) return functionName || "(anonymous)";
  const file = url.replace(/^file:\/\//, "");
  const modules = file.lastIndexOf("node_modules/");
  const short = modules >= 0 ? file.slice(modules + "node_modules/".length) : path.relative(process.cwd(), file);
  return `${functionName || "(anonymous)"} (${short}:${lineNumber + 1})`;
}

/** Self and total time per function (by name and location) of `profile`, and the sampled time in all, in milliseconds. */
export function summarise(profile: CpuProfile, skipMs = 0): { functions: FunctionTime[]; sampledMs: number } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let sampledMs = 0;
  let elapsedMs = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    elapsedMs += ms;
    if (elapsedMs < skipMs) return;
    sampledMs += ms;
    const top = byId.get(id)!;
    self.set(label(top), (self.get(label(top)) ?? 0) + ms);
    const seen = new Set<string>();
    for (let node: ProfileNode | undefined = top; node; node = byId.get(parent.get(node.id) ?? -1)) {
      const name = label(node);
      if (seen.has(name)) continue;
      seen.add(name);
      total.set(name, (total.get(name) ?? 0) + ms);
    }
  });
  const functions = [...total].map(([name, totalMs]) => ({ name, totalMs, selfMs: self.get(name) ?? 0 }));
  return { functions, sampledMs };
}

function main(): void {
  const [file, topArg] = process.argv.slice(2).filter((arg) => !arg.startsWith("--"));
  if (!file) {
    console.error("usage: node --import tsx bench/lib/cpu-profile.ts <file.cpuprofile> [top] [--total] [--skip-s=N]");
    process.exit(2);
  }
  const top = Number(topArg ?? 25);
  const byTotal = process.argv.includes("--total");
  const skipMs = 1000 * Number(/^--skip-s=([\d.]+)$/.exec(process.argv.find((arg) => arg.startsWith("--skip-s=")) ?? "")?.[1] ?? 0);
  const { functions, sampledMs } = summarise(JSON.parse(readFileSync(file, "utf8")) as CpuProfile, skipMs);
  const idleMs = functions.find((f) => f.name === "(idle)")?.selfMs ?? 0;
  console.log(`${file}: ${(sampledMs / 1000).toFixed(1)} s sampled, ${((sampledMs - idleMs) / 1000).toFixed(1)} s busy`);
  const sorted = functions.sort((a, b) => (byTotal ? b.totalMs - a.totalMs : b.selfMs - a.selfMs)).slice(0, top);
  const share = (ms: number) => `${((100 * ms) / Math.max(1, sampledMs - idleMs)).toFixed(1)}%`.padStart(6);
  console.log(`${byTotal ? "total" : " self"}  (of busy)  function`);
  for (const f of sorted) console.log(`${(byTotal ? f.totalMs : f.selfMs).toFixed(0).padStart(6)} ms ${share(byTotal ? f.totalMs : f.selfMs)}  ${f.name}`);
}

if (require.main === module) main();
