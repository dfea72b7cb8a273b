/**
 * The whole stack for a front-door benchmark: credits, usage, generations and the gateway,
 * each a child process started as ops start it (`node --import tsx --import otel-register
 * main.ts`, configured by environment variables only), on throw-away databases and a
 * throw-away JetStream stream, from the checkout at `root` (this one, or a baseline checkout
 * to compare against in the same run). Logs at BENCH_LOG_LEVEL (default `info`, what a
 * deployment runs), written to /dev/null.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { connectNats, createLogger, getFreePort, waitForGrpcServing, waitForHttpOk } from "@tally/platform";
import { createTestDatabase, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";

/** The processes of a stack, by name. */
export const STACK_SERVICES = ["credits", "usage", "generations", "gateway"] as const;
export type StackService = (typeof STACK_SERVICES)[number];

export interface BenchStack {
  label: string;
  /** The gateway's base URL. */
  base: string;
  /** The credits and generations services' `/metrics` URLs (their RPCs counted by method). */
  metricsUrls: { credits: string; generations: string };
  /** Each service's process id (for /proc figures). */
  pids: Record<StackService, number>;
  /** Stops the gateway, then the services (SIGTERM: a `--cpu-prof` process writes its profile on the way out), drops the databases and the stream. */
  stop(): Promise<void>;
}

export interface BenchStackOptions {
  label: string;
  /** The checkout to run (its own node_modules). */
  root: string;
  /** The plans file's YAML. */
  plans: string;
  /** Environment over the defaults, per service. */
  env?: Partial<Record<StackService, Record<string, string>>>;
  /** Extra node arguments per service (e.g. `--cpu-prof`, `--cpu-prof-dir=…`: not allowed in NODE_OPTIONS). */
  nodeArgs?: Partial<Record<StackService, string[]>>;
}

/** Starts `entry` of `root` as its own process group, output dropped but the tail of stderr kept for a failure. */
function startProcess(name: string, root: string, entry: string, env: Record<string, string>, nodeArgs: string[] = []): { child: ChildProcess; stop(): Promise<void> } {
  const otel = pathToFileURL(path.join(root, "packages/platform/src/otel-register.ts")).href;
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", "--import", otel, path.join(root, entry)], {
    cwd: root,
    env: { ...process.env, LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "info", OTEL_SERVICE_NAME: `tally-${name}`, ...env },
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  let stderrTail = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderrTail = (stderrTail + chunk.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("exit", (code, signal) => {
    if (code && signal === null) process.stderr.write(`[${name}] exited ${code}: ${stderrTail}\n`);
  });
  return {
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Starts the stack; resolves once the gateway answers /readyz. */
export async function startBenchStack(options: BenchStackOptions): Promise<BenchStack> {
  const { label, root } = options;
  const plansFile = path.join(mkdtempSync(path.join(os.tmpdir(), "bench-stack-")), "plans.yaml");
  writeFileSync(plansFile, options.plans);
  const databases = await Promise.all(["credits", "usage", "generations"].map((name) => createTestDatabase(`bench_${label}_${name}`)));
  const ports = { credits: await getFreePort(), usage: await getFreePort(), generations: await getFreePort(), http: await getFreePort(), creditsMetrics: await getFreePort(), generationsMetrics: await getFreePort() };
  const address = (port: number) => `127.0.0.1:${port}`;
  const suffix = uniqueSuffix();
  const nats = { NATS_URL: testNatsUrl(), NATS_STREAM: `BENCH_${suffix.toUpperCase()}`, NATS_USAGE_STREAM: `BENCH_USAGE_${suffix.toUpperCase()}`, NATS_SUBJECT_PREFIX: `bench${suffix}`, NATS_CONSUMER: `usage_bench_${suffix}` };
  const common = { PLANS_FILE: plansFile, ...nats };
  const start = (name: StackService, entry: string, env: Record<string, string>) =>
    startProcess(`${name}-${label}`, root, entry, { ...common, ...env, ...options.env?.[name] }, options.nodeArgs?.[name]);
  const processes: Partial<Record<StackService, ReturnType<typeof startProcess>>> = {};
  const stop = async () => {
    for (const name of [...STACK_SERVICES].reverse()) await processes[name]?.stop();
    await Promise.all(databases.map((database) => database.drop().catch(() => undefined)));
    const nc = await connectNats(nats.NATS_URL, "bench-stack-cleanup", createLogger("bench", "silent"));
    const manager = await jetstreamManager(nc);
    for (const stream of [nats.NATS_STREAM, nats.NATS_USAGE_STREAM]) await manager.streams.delete(stream).catch(() => undefined);
    await nc.close();
  };
  try {
    processes.credits = start("credits", "services/credits/main.ts", { DATABASE_URL: databases[0]!.url, GRPC_PORT: String(ports.credits), PASSWORD_HASH_MEMORY_KIB: "64", PASSWORD_HASH_TIME_COST: "1",
      METRICS_PORT: String(ports.creditsMetrics), METRICS_HOST: "127.0.0.1" });
    processes.usage = start("usage", "services/usage/main.ts", { DATABASE_URL: databases[1]!.url, GRPC_PORT: String(ports.usage) });
    await Promise.all([waitForGrpcServing(address(ports.credits), 60_000), waitForGrpcServing(address(ports.usage), 60_000)]);
    processes.generations = start("generations", "services/generations/main.ts", {
      DATABASE_URL: databases[2]!.url, GRPC_PORT: String(ports.generations), CREDITS_GRPC_ADDRESS: address(ports.credits), USAGE_GRPC_ADDRESS: address(ports.usage),
      METRICS_PORT: String(ports.generationsMetrics), METRICS_HOST: "127.0.0.1",
    });
    await waitForGrpcServing(address(ports.generations), 60_000);
    processes.gateway = start("gateway", "gateway/main.ts", {
      PORT: String(ports.http), HOST: "127.0.0.1", JWT_SECRET: `bench-${suffix}-secret-secret-secret-secret`,
      CREDITS_GRPC_ADDRESS: address(ports.credits), GENERATIONS_GRPC_ADDRESS: address(ports.generations), USAGE_GRPC_ADDRESS: address(ports.usage),
      RATE_LIMIT_ANONYMOUS_PER_MINUTE: "1000000", RATE_LIMIT_AUTH_PER_MINUTE: "1000000",
    });
    const base = `http://${address(ports.http)}`;
    await waitForHttpOk(`${base}/readyz`, 60_000);
    const pids = Object.fromEntries(STACK_SERVICES.map((name) => [name, processes[name]!.child.pid!])) as Record<StackService, number>;
    const metricsUrls = { credits: `http://${address(ports.creditsMetrics)}/metrics`, generations: `http://${address(ports.generationsMetrics)}/metrics` };
    return { label, base, metricsUrls, pids, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
