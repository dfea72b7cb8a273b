/**
 * End to end, through the front door: starts the stack exactly as `npm start` does
 * (scripts/stack.ts, as a child process, on its own databases, stream and ports) and drives
 * the main job over HTTP: register → trial credits → generations until the credits run out
 * (402) → jobs complete (one fails and gives its credits back) → outputs download → balance,
 * generation list and /v1/me stats agree to the unit → login sets last_login → another user
 * gets 404 → bad input gets 400s → Ctrl-C stops everything cleanly.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { dropDatabase, getFreePort, REPOSITORY_ROOT, waitForHttpOk, withDatabase } from "@tally/platform";
import { eventually, testServerUrl, uniqueSuffix } from "@tally/platform/src/testing";

const TRIAL_CREDITS = 10;
const FAULT_MARKER = "[fault:provider_error]";
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

interface Problem {
  status: number;
  code: string;
}

describe("Tally end to end (npm start, driven over HTTP)", () => {
  const suffix = uniqueSuffix();
  const databasePrefix = `tally_e2e_${suffix}`;
  const stateDir = mkdtempSync(path.join(os.tmpdir(), "tally-e2e-"));
  let stack: ChildProcess;
  let stackOutput = "";
  let base: string;

  beforeAll(async () => {
    const port = await getFreePort();
    base = `http://127.0.0.1:${port}`;
    stack = spawn(process.execPath, ["--import", "tsx", path.join(REPOSITORY_ROOT, "scripts/stack.ts")], {
      cwd: REPOSITORY_ROOT,
      env: {
        ...process.env,
        PORT: String(port),
        CREDITS_GRPC_PORT: String(await getFreePort()),
        GENERATIONS_GRPC_PORT: String(await getFreePort()),
        USAGE_GRPC_PORT: String(await getFreePort()),
        TALLY_DATABASE_PREFIX: databasePrefix,
        TALLY_STATE_DIR: stateDir,
        NATS_STREAM: `E2E_${suffix}`,
        NATS_SUBJECT_PREFIX: `e2e_${suffix}`,
        NATS_CONSUMER: `usage_e2e_${suffix}`,
        FAULT_INJECTION_ENABLED: "true",
        TRIAL_CREDITS: String(TRIAL_CREDITS),
        PRICING_CREDITS: JSON.stringify({ text: 1, photo: 2, address: 2 }),
        LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    stack.stdout!.on("data", (chunk: Buffer) => (stackOutput += chunk.toString()));
    stack.stderr!.on("data", (chunk: Buffer) => (stackOutput += chunk.toString()));
    try {
      await waitForHttpOk(`${base}/readyz`, 120_000);
    } catch (error) {
      throw new Error(`stack did not become ready: ${(error as Error).message}\n${stackOutput.slice(-4000)}`);
    }
  }, 150_000);

  afterAll(async () => {
    if (stack && stack.exitCode === null) {
      stack.kill("SIGKILL");
    }
    for (const name of ["credits", "generations", "usage"]) {
      await dropDatabase(withDatabase(testServerUrl(), `${databasePrefix}_${name}`)).catch(() => undefined);
    }
    rmSync(stateDir, { recursive: true, force: true });
  }, 60_000);

  async function call<T = any>(method: string, route: string, options: { token?: string; body?: unknown } = {}) {
    const response = await fetch(`${base}${route}`, {
      method,
      headers: {
        ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
        ...(options.body !== undefined ? { "content-type": "application/json" } : {}),
      },
      body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
    });
    const text = await response.text();
    const json = text && response.headers.get("content-type")?.includes("json") ? JSON.parse(text) : undefined;
    return { status: response.status, body: json as T, contentType: response.headers.get("content-type") ?? "" };
  }

  const register = async (email: string) => {
    const response = await call("POST", "/v1/auth/register", { body: { email, password: "correct horse battery" } });
    expect(response.status).toBe(201);
    return response.body as { user: { id: string }; access_token: string };
  };

  it("runs the main job end to end", async () => {
    const report: string[] = [];
    const alice = await register(`alice-${suffix}@example.com`);
    const token = alice.access_token;

    // The new account holds its plan's trial credits.
    const initial = await call("GET", "/v1/credits/balance", { token });
    expect(initial.body).toEqual({ trial_credits: TRIAL_CREDITS, token_balance: 0, held: 0, total_available: TRIAL_CREDITS });
    report.push(`registered; balance ${JSON.stringify(initial.body)}`);

    // A failing job gives its credits back: it is held, then released when the job fails.
    const failing = await call("POST", "/v1/generations", { token, body: { input_type: "text", prompt: `a failing job ${FAULT_MARKER}` } });
    expect(failing.status).toBe(201);
    const failedJob = await eventually(async () => {
      const response = await call("GET", `/v1/generations/${failing.body.id}`, { token });
      return response.body.status === "failed" ? response.body : undefined;
    }, 60_000, 250);
    expect(failedJob.error_message).toBeTruthy();
    const afterFailure = await call("GET", "/v1/credits/balance", { token });
    expect(afterFailure.body).toEqual({ trial_credits: TRIAL_CREDITS, token_balance: 0, held: 0, total_available: TRIAL_CREDITS });
    report.push(`a failing job ended failed ("${failedJob.error_message}") and its credit came back: ${JSON.stringify(afterFailure.body)}`);

    // Generations until the credits run out.
    const created: string[] = [];
    for (let i = 0; i < TRIAL_CREDITS; i++) {
      const response = await call("POST", "/v1/generations", { token, body: { input_type: "text", prompt: `a lighthouse at dusk, variation ${i}` } });
      expect(response.status).toBe(201);
      expect(response.body.status).toBe("pending");
      expect(response.body.credit_cost).toBe(1);
      expect(response.body.credit_type).toBe("trial");
      created.push(response.body.id);
    }
    const refused = await call<Problem>("POST", "/v1/generations", { token, body: { input_type: "text", prompt: "one too many" } });
    expect(refused.status).toBe(402);
    expect(refused.body.code).toBe("insufficient_credits");
    expect(refused.contentType).toContain("application/problem+json");
    report.push(`created ${created.length} generations, the next one answered ${refused.status} ${refused.body.code}`);

    const all = await eventually(async () => {
      const list = await call("GET", "/v1/generations?limit=100", { token });
      const items = list.body.items as any[];
      return items.every((g) => g.status === "completed" || g.status === "failed") && list.body.total === TRIAL_CREDITS + 1 ? list.body : undefined;
    }, 90_000, 250);
    const items = all.items as any[];
    // Newest first.
    const times = items.map((g) => Date.parse(g.created_at));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
    const completed = items.filter((g) => g.status === "completed");
    expect(completed).toHaveLength(TRIAL_CREDITS);

    // Every output downloads as a real PNG.
    for (const generation of completed) {
      expect(generation.output_url).toMatch(/^https?:\/\//);
      const download = await fetch(generation.output_url, { headers: { authorization: `Bearer ${token}` } });
      expect(download.status).toBe(200);
      expect(download.headers.get("content-type")).toBe("image/png");
      const bytes = Buffer.from(await download.arrayBuffer());
      expect(bytes.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
    }
    report.push(`${completed.length} completed (outputs downloaded as PNG), ${items.length - completed.length} failed`);

    // Balance, list and stats agree to the unit.
    const creditsSpent = completed.reduce((sum, g) => sum + g.credit_cost, 0);
    const costMicros = completed.reduce((sum, g) => sum + g.cost_micros, 0);
    const finalBalance = await call("GET", "/v1/credits/balance", { token });
    expect(finalBalance.body).toEqual({ trial_credits: 0, token_balance: 0, held: 0, total_available: 0 });
    expect(creditsSpent).toBe(TRIAL_CREDITS);
    const me = await eventually(async () => {
      const response = await call("GET", "/v1/me", { token });
      return response.body?.stats?.total_generations === completed.length && response.body.stats.total_failed === 1 ? response.body : undefined;
    }, 30_000, 250);
    expect(me.stats).toEqual({
      total_generations: completed.length,
      total_failed: 1,
      total_cost_micros: costMicros,
      total_credits_spent: creditsSpent,
    });
    expect(me.id).toBe(alice.user.id);
    expect(me.last_login).toBeNull();
    report.push(`balance ${JSON.stringify(finalBalance.body)}; /v1/me stats ${JSON.stringify(me.stats)}; list sums: credits ${creditsSpent}, cost_micros ${costMicros}`);

    // Login updates last_login; a wrong password and an unknown email get the same 401.
    const login = await call("POST", "/v1/auth/login", { body: { email: `alice-${suffix}@example.com`, password: "correct horse battery" } });
    expect(login.status).toBe(200);
    const afterLogin = await call("GET", "/v1/me", { token: login.body.access_token });
    expect(Date.parse(afterLogin.body.last_login)).toBeGreaterThan(Date.parse(me.created_at) - 1);
    const wrongPassword = await call<Problem>("POST", "/v1/auth/login", { body: { email: `alice-${suffix}@example.com`, password: "wrong password!" } });
    const unknownEmail = await call<Problem>("POST", "/v1/auth/login", { body: { email: `nobody-${suffix}@example.com`, password: "wrong password!" } });
    expect([wrongPassword.status, wrongPassword.body.code]).toEqual([401, "unauthenticated"]);
    expect(unknownEmail.body).toEqual(wrongPassword.body);
    report.push(`login set last_login ${afterLogin.body.last_login}`);

    // Another user never sees the first user's job.
    const bob = await register(`bob-${suffix}@example.com`);
    const someone = completed[0].id;
    expect((await call("GET", `/v1/generations/${someone}`, { token: bob.access_token })).status).toBe(404);
    expect((await call("GET", `/v1/generations/${someone}/output`, { token: bob.access_token })).status).toBe(404);
    expect((await call("POST", `/v1/generations/${someone}/cancel`, { token: bob.access_token })).status).toBe(404);
    expect((await call("GET", "/v1/generations", { token: bob.access_token })).body.total).toBe(0);

    // Bad input gets 400s with a stable code, never a 500.
    const bad: [string, string, unknown][] = [
      ["POST", "/v1/generations", { input_type: "photo" }],
      ["POST", "/v1/generations", { input_type: "address", prompt: "x" }],
      ["POST", "/v1/generations", { input_type: "text" }],
      ["POST", "/v1/generations", { input_type: "video", prompt: "x" }],
      ["GET", "/v1/generations?limit=0", undefined],
      ["GET", "/v1/generations?limit=101", undefined],
      ["GET", "/v1/generations?offset=-1", undefined],
    ];
    for (const [method, route, body] of bad) {
      const response = await call<Problem>(method, route, { token: bob.access_token, body });
      expect({ route, body, status: response.status, code: response.body?.code }).toEqual({ route, body, status: 400, code: "validation" });
    }
    const badRegister = await call<Problem>("POST", "/v1/auth/register", { body: { email: "not-an-email", password: "short" } });
    expect([badRegister.status, badRegister.body.code]).toEqual([400, "validation"]);
    expect((await call<Problem>("GET", "/v1/me")).status).toBe(401);
    report.push("another user got 404 for the job, its output and its cancel; bad input got 400 validation");

    // eslint-disable-next-line no-console
    console.log(`end-to-end:\n  ${report.join("\n  ")}`);
  }, 240_000);

  it("stops everything cleanly on Ctrl-C (SIGINT)", async () => {
    const exited = new Promise<number | null>((resolve) => stack.once("exit", (code) => resolve(code)));
    stack.kill("SIGINT");
    const code = await exited;
    expect({ code, tail: code === 0 ? "" : stackOutput.slice(-2000) }).toEqual({ code: 0, tail: "" });
    expect(stackOutput).toContain("[tally] stopped");
  }, 60_000);
});
