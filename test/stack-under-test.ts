/**
 * The whole stack started exactly as `npm start` starts it (scripts/stack.ts, as a child
 * process) on databases, a JetStream stream, ports and a state folder of its own, for tests
 * that drive Tally through the front door; and a small HTTP client for them.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { dropDatabase, getFreePort, REPOSITORY_ROOT, waitForHttpOk, withDatabase } from "@tally/platform";
import { testServerUrl, uniqueSuffix } from "@tally/platform/src/testing";

/** How long the stack may take to answer /readyz, in milliseconds. */
export const STACK_READY_TIMEOUT_MS = 120_000;
/** How long the stack may take to stop on SIGINT before it is killed, in milliseconds. */
export const STACK_STOP_TIMEOUT_MS = 30_000;

export interface StackUnderTest {
  /** The gateway's base URL, e.g. http://127.0.0.1:41234. */
  base: string;
  suffix: string;
  /** The URL of one service's database (`credits`, `generations` or `usage`). */
  databaseUrl(service: "credits" | "generations" | "usage"): string;
  /** Everything the stack printed so far. */
  output(): string;
  /** The stack's process (a test may signal it). */
  process: ChildProcess;
  /** Kills the stack if it still runs, drops its databases and removes its state folder. */
  destroy(): Promise<void>;
}

/**
 * Starts the stack with `plans` (YAML) as its PLANS_FILE and `env` over test defaults (its own
 * databases, stream, subjects and ports; per-address rate limits lifted, since every request
 * of a test comes from one address). Resolves once the gateway answers /readyz, within
 * `readyTimeoutMs` (milliseconds).
 */
export async function startStack(plans: string, env: Record<string, string> = {}, readyTimeoutMs = STACK_READY_TIMEOUT_MS): Promise<StackUnderTest> {
  const suffix = uniqueSuffix();
  const databasePrefix = `tally_e2e_${suffix}`;
  const stateDir = mkdtempSync(path.join(os.tmpdir(), "tally-e2e-"));
  const plansFile = path.join(stateDir, "plans.yaml");
  writeFileSync(plansFile, plans);
  const port = await getFreePort();
  const child = spawn(process.execPath, ["--import", "tsx", path.join(REPOSITORY_ROOT, "scripts/stack.ts")], {
    cwd: REPOSITORY_ROOT,
    env: {
      ...process.env,
      PORT: String(port),
      CREDITS_GRPC_PORT: String(await getFreePort()),
      GENERATIONS_GRPC_PORT: String(await getFreePort()),
      USAGE_GRPC_PORT: String(await getFreePort()),
      // Free ports rather than the defaults (9101..9103), which another stack on this machine may hold.
      CREDITS_METRICS_PORT: String(await getFreePort()),
      GENERATIONS_METRICS_PORT: String(await getFreePort()),
      USAGE_METRICS_PORT: String(await getFreePort()),
      TALLY_DATABASE_PREFIX: databasePrefix,
      TALLY_STATE_DIR: stateDir,
      NATS_STREAM: `E2E_${suffix}`,
      NATS_USAGE_STREAM: `E2E_USAGE_${suffix}`,
      NATS_SUBJECT_PREFIX: `e2e_${suffix}`,
      NATS_CONSUMER: `usage_e2e_${suffix}`,
      PLANS_FILE: plansFile,
      RATE_LIMIT_ANONYMOUS_PER_MINUTE: "100000",
      RATE_LIMIT_AUTH_PER_MINUTE: "100000",
      LOG_LEVEL: "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const databaseUrl = (service: string) => withDatabase(testServerUrl(), `${databasePrefix}_${service}`);
  const destroy = async () => {
    // Ctrl-C's way first: the runner stops the gateway and the services (each its own process
    // group) before it exits; SIGKILL to the runner alone would leave them running.
    if (child.exitCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGINT");
      const stopped = await Promise.race([exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), STACK_STOP_TIMEOUT_MS).unref())]);
      if (!stopped) child.kill("SIGKILL");
    }
    for (const name of ["credits", "generations", "usage"]) await dropDatabase(databaseUrl(name)).catch(() => undefined);
    rmSync(stateDir, { recursive: true, force: true });
  };
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitForHttpOk(`${base}/readyz`, readyTimeoutMs);
  } catch (error) {
    await destroy();
    throw new Error(`stack did not become ready: ${(error as Error).message}\n${output.slice(-4000)}`);
  }
  return { base, suffix, databaseUrl, output: () => output, process: child, destroy };
}

export interface CallOptions {
  token?: string;
  guestId?: string;
  body?: unknown;
}

/** One HTTP call to the gateway: status, parsed JSON body (problem+json included), content type and headers. */
export async function callGateway<T = any>(base: string, method: string, route: string, options: CallOptions = {}) {
  const response = await fetch(`${base}${route}`, {
    method,
    headers: {
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      ...(options.guestId ? { "x-guest-id": options.guestId } : {}),
      ...(options.body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
  });
  const text = await response.text();
  const json = text && response.headers.get("content-type")?.includes("json") ? JSON.parse(text) : undefined;
  return { status: response.status, body: json as T, contentType: response.headers.get("content-type") ?? "", headers: response.headers };
}
