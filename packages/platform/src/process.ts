import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";

/** Asks the OS for a free TCP port on 127.0.0.1. */
export function getFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const HealthClient = grpc.makeClientConstructor(healthService as grpc.ServiceDefinition, "Health");

/** Resolves once the gRPC health service at `address` answers SERVING; rejects after `timeoutMs`. */
export async function waitForGrpcServing(address: string, timeoutMs: number): Promise<void> {
  const client = new HealthClient(address, grpc.credentials.createInsecure());
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const status = await new Promise<string | undefined>((resolve) =>
        (client as unknown as { check: (req: object, opts: object, cb: (e: unknown, r?: { status: string }) => void) => void }).check(
          { service: "" },
          { deadline: Date.now() + 1_000 },
          (error, response) => resolve(error ? undefined : response?.status),
        ),
      );
      if (status === "SERVING") return;
      if (Date.now() > deadline) throw new Error(`${address} not SERVING within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    client.close();
  }
}

/** Resolves once `url` answers HTTP 200; rejects after `timeoutMs`. */
export async function waitForHttpOk(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} not OK within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export interface ServiceProcess {
  name: string;
  child: ChildProcess;
  /** Sends SIGTERM and waits for the exit (SIGKILL after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<number | null>;
  /** Sends SIGKILL (a crash) and waits for the exit. */
  kill(): Promise<void>;
}

/** Repository root (for locating service entry points). */
export const REPOSITORY_ROOT = path.resolve(__dirname, "../../..");

export interface SpawnOptions {
  /** Copy the child's output to ours, each line prefixed with `[name] ` (for `npm start`). */
  inheritOutput?: boolean;
  prefix?: boolean;
  /** Node arguments before the entry (e.g. `--cpu-prof`, `--cpu-prof-dir=…`: not allowed in NODE_OPTIONS). */
  nodeArgs?: string[];
}

/** The preload that starts the OpenTelemetry SDK when trace export is configured (see otel-register.ts). */
export const OTEL_REGISTER_MODULE = pathToFileURL(path.join(REPOSITORY_ROOT, "packages/platform/src/otel-register.ts")).href;

/**
 * Starts a service's `main.ts` (relative to the repository root) as a child process with
 * `node --import tsx --import <otel-register>`, the way ops start it: configured only by
 * environment variables. Its traces, when OTEL_EXPORTER_OTLP_ENDPOINT is set, carry
 * `service.name` `tally-<name>` unless `env` sets OTEL_SERVICE_NAME. Its output is
 * dropped (tests; set `TALLY_TEST_VERBOSE=1` to see it) unless `inheritOutput` is set; the
 * tail of its stderr is printed if it exits with an error.
 */
export function spawnService(name: string, entry: string, env: Record<string, string>, options: SpawnOptions = {}): ServiceProcess {
  const show = options.inheritOutput || Boolean(process.env.TALLY_TEST_VERBOSE);
  // `node --import tsx` (not the tsx CLI): one process per service, so signals reach it
  // directly (the CLI's relay may SIGKILL a child that is still shutting down).
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), "--import", "tsx", "--import", OTEL_REGISTER_MODULE, path.join(REPOSITORY_ROOT, entry)], {
    cwd: REPOSITORY_ROOT,
    // One service.name per process, even when the caller's environment names one.
    env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? "warn", OTEL_SERVICE_NAME: `tally-${name}`, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group: a terminal's Ctrl-C reaches only the parent, which then stops
    // the children in order (a second signal would force them to exit).
    detached: true,
  });
  const label = options.prefix === false ? "" : `[${name}] `;
  const forward = (stream: NodeJS.WriteStream) => {
    let pending = "";
    return (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) stream.write(`${label}${line}\n`);
    };
  };
  if (show) {
    child.stdout?.on("data", forward(process.stdout));
    child.stderr?.on("data", forward(process.stderr));
  } else {
    child.stdout?.resume();
  }
  let stderrTail = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString()).slice(-4_000);
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  child.once("exit", (code, signal) => {
    if (code && code !== 0 && signal === null && stderrTail && !show) process.stderr.write(`[${name}] exited ${code}: ${stderrTail}\n`);
  });
  return {
    name,
    child,
    async stop(timeoutMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGKILL");
      await exited;
    },
  };
}
