/**
 * The gateway in front of the three real services (spawned as ops would, on their own test
 * databases, a unique JetStream stream, real PostgreSQL and NATS): register → trial credits →
 * generations complete (one fails and gives its credit back) → outputs download as PNG →
 * /v1/me stats; isolation between users; bad input; Idempotency-Key replay and reuse;
 * 402 insufficient_credits; a stopped service answers 503; cancel then 409. Plans (a test
 * plans file): a guest up to its daily limit (429 guest_limit_exceeded with Retry-After) who
 * signs up and keeps its history; /v1/usage/limits; an admin's plan change applying at once
 * (403 plan_limit_exceeded with the limit's members, then 201 after the upgrade).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { jetstreamManager } from "@nats-io/jetstream";
import { connectNats, createLogger, getFreePort, spawnService, waitForGrpcServing, type ServiceProcess } from "@tally/platform";
import { createTestDatabase, eventually, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";
import { startTestGateway, type TestGateway } from "./helpers";

const TRIAL_CREDITS = 4;
const PRICING = { text: 1, photo: 2, address: 2 };
const FAULT_MARKER = "[fault:provider_error]";
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const START_TIMEOUT_MS = 45_000;
const GUEST_GENERATIONS_PER_DAY = 3;
/** The built-in plans, plus a `tiny` plan to reach a period limit quickly; a guest's concurrency never bites first. */
const PLANS_YAML = [
  "default_plan: free",
  "guest_plan: guest",
  "plans:",
  `  guest: { trial_credits: 5, limits: { generations_per_day: ${GUEST_GENERATIONS_PER_DAY}, concurrent_generations: 5, requests_per_minute: 120 } }`,
  "  free: { trial_credits: 10, limits: { generations_per_period: 100, concurrent_generations: 20, requests_per_minute: 600 } }",
  "  tiny: { trial_credits: 10, limits: { generations_per_period: 1, requests_per_minute: 600 } }",
  "  pro: { trial_credits: 10, limits: { generations_per_period: 5000, concurrent_generations: 50, requests_per_minute: 3000 } }",
].join("\n");

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const suffix = uniqueSuffix();
const plansFile = path.join(mkdtempSync(path.join(os.tmpdir(), "gw-int-plans-")), "plans.yaml");
const ADMIN_EMAIL = `admin-${suffix}@example.com`;
const nats = { NATS_URL: testNatsUrl(), NATS_STREAM: `GW_TEST_${suffix}`, NATS_SUBJECT_PREFIX: `gw_test_${suffix}` };
const databases: { drop(): Promise<void> }[] = [];
const processes: ServiceProcess[] = [];
let generationsEnv: Record<string, string>;
let generationsAddress: string;
let gateway: TestGateway;
let base: string;

beforeAll(async () => {
  writeFileSync(plansFile, PLANS_YAML);
  const [creditsDb, generationsDb, usageDb] = await Promise.all([
    createTestDatabase("gw_credits"),
    createTestDatabase("gw_generations"),
    createTestDatabase("gw_usage"),
  ]);
  databases.push(creditsDb, generationsDb, usageDb);
  const [creditsPort, generationsPort, usagePort] = [await getFreePort(), await getFreePort(), await getFreePort()];
  const creditsAddress = `127.0.0.1:${creditsPort}`;
  generationsAddress = `127.0.0.1:${generationsPort}`;
  const usageAddress = `127.0.0.1:${usagePort}`;

  processes.push(
    spawnService("credits", "services/credits/main.ts", {
      DATABASE_URL: creditsDb.url,
      GRPC_PORT: String(creditsPort),
      TRIAL_CREDITS: String(TRIAL_CREDITS),
      PLANS_FILE: plansFile,
      TALLY_ADMIN_EMAILS: ADMIN_EMAIL,
    }),
    spawnService("usage", "services/usage/main.ts", {
      ...nats,
      DATABASE_URL: usageDb.url,
      GRPC_PORT: String(usagePort),
      NATS_CONSUMER: `usage_gw_test_${suffix}`,
      PLANS_FILE: plansFile,
    }),
  );
  generationsEnv = {
    ...nats,
    DATABASE_URL: generationsDb.url,
    GRPC_PORT: String(generationsPort),
    CREDITS_GRPC_ADDRESS: creditsAddress,
    USAGE_GRPC_ADDRESS: usageAddress,
    FAULT_INJECTION_ENABLED: "true",
    PRICING_CREDITS: JSON.stringify(PRICING),
    PROVIDER_IMAGE_SIZE_PX: "64",
    WORKER_POLL_INTERVAL_MS: "50",
  };
  processes.push(spawnService("generations", "services/generations/main.ts", generationsEnv));
  await Promise.all([creditsAddress, usageAddress, generationsAddress].map((address) => waitForGrpcServing(address, START_TIMEOUT_MS)));

  gateway = await startTestGateway({
    CREDITS_GRPC_ADDRESS: creditsAddress,
    GENERATIONS_GRPC_ADDRESS: generationsAddress,
    USAGE_GRPC_ADDRESS: usageAddress,
    DOWNSTREAM_TIMEOUT_MS: "5000",
    PLANS_FILE: plansFile,
  });
  await gateway.app.listen({ port: 0, host: "127.0.0.1" });
  base = `http://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}`;
}, 90_000);

afterAll(async () => {
  await gateway?.close();
  await Promise.all(processes.map((service) => service.stop()));
  await Promise.all(databases.map((database) => database.drop().catch(() => undefined)));
  const nc = await connectNats(nats.NATS_URL, "gateway-test-cleanup", createLogger("gateway-test", "silent"));
  await (await jetstreamManager(nc)).streams.delete(nats.NATS_STREAM).catch(() => undefined);
  await nc.close();
}, 60_000);

async function call(method: string, route: string, options: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  const response = await fetch(`${base}${route}`, {
    method,
    headers: {
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      ...(options.body !== undefined ? { "content-type": "application/json" } : {}),
      ...options.headers,
    },
    body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
  });
  const text = await response.text();
  const contentType = response.headers.get("content-type") ?? "";
  return { status: response.status, contentType, body: (text && contentType.includes("json") ? JSON.parse(text) : text) as Json };
}

async function register(email: string): Promise<{ token: string; id: string }> {
  const response = await call("POST", "/v1/auth/register", { body: { email, password: "correct horse battery" } });
  expect(response.status).toBe(201);
  expect(response.body).toMatchObject({ token_type: "Bearer", expires_in: 3600, user: { email, role: "user", last_login: null } });
  return { token: response.body.access_token, id: response.body.user.id };
}

const ended = (generation: Json) => ["completed", "failed", "cancelled"].includes(generation.status);

async function waitUntilEnded(token: string, id: string): Promise<Json> {
  return eventually(async () => {
    const response = await call("GET", `/v1/generations/${id}`, { token });
    return ended(response.body) ? response.body : undefined;
  }, 30_000, 100);
}

// Shared by the describe blocks below, which run in order: the first registers alice and
// completes a generation, the later tests reuse them.
let alice: { token: string; id: string };
let completedId: string;

describe("gateway against the real services", () => {

  it("registers, shows trial credits, runs generations to the end and serves their PNG output and stats", async () => {
    alice = await register(`alice-${suffix}@example.com`);
    const balance = await call("GET", "/v1/credits/balance", { token: alice.token });
    expect(balance.body).toEqual({ trial_credits: TRIAL_CREDITS, token_balance: 0, held: 0, total_available: TRIAL_CREDITS });

    const created = await call("POST", "/v1/generations", { token: alice.token, body: { input_type: "text", prompt: "a lighthouse at dusk", style: "ink" } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ status: "pending", input_type: "text", prompt: "a lighthouse at dusk", style: "ink", photo_url: null, address: null, credit_cost: 1, credit_type: "trial", user_id: alice.id, output_url: null });
    const failing = await call("POST", "/v1/generations", { token: alice.token, body: { input_type: "address", address: `1 Main St ${FAULT_MARKER}` } });
    expect(failing.status).toBe(201);

    const completed = await waitUntilEnded(alice.token, created.body.id);
    expect(completed).toMatchObject({ status: "completed", progress: 100, error_message: null });
    expect(completed.output_url).toBe(`${base}/v1/generations/${completed.id}/output`);
    expect(Date.parse(completed.completed_at)).toBeGreaterThanOrEqual(Date.parse(completed.created_at));
    completedId = completed.id;
    const failed = await waitUntilEnded(alice.token, failing.body.id);
    expect(failed).toMatchObject({ status: "failed", output_url: null, error_message: expect.any(String) });

    const download = await fetch(completed.output_url, { headers: { authorization: `Bearer ${alice.token}` } });
    expect(download.status).toBe(200);
    expect(download.headers.get("content-type")).toBe("image/png");
    expect(Buffer.from(await download.arrayBuffer()).subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
    expect((await fetch(completed.output_url)).status).toBe(401);
    // Each download request counts once: a retry with the same Idempotency-Key is the same request.
    for (let i = 0; i < 2; i++) {
      const retried = await fetch(completed.output_url, { headers: { authorization: `Bearer ${alice.token}`, "idempotency-key": `download-${suffix}` } });
      expect(retried.status).toBe(200);
      await retried.arrayBuffer();
    }

    // The failed job's 2 credits came back; the completed one's 1 was charged.
    const after = await call("GET", "/v1/credits/balance", { token: alice.token });
    expect(after.body).toEqual({ trial_credits: TRIAL_CREDITS - 1, token_balance: 0, held: 0, total_available: TRIAL_CREDITS - 1 });

    const me = await eventually(async () => {
      const response = await call("GET", "/v1/me", { token: alice.token });
      const { stats } = response.body;
      return stats.total_generations === 1 && stats.total_failed === 1 && stats.total_downloaded === 2 ? response.body : undefined;
    }, 20_000, 100);
    expect(me).toMatchObject({ id: alice.id, email: `alice-${suffix}@example.com`, role: "user", plan: expect.any(String), last_login: null });
    expect(me.stats).toMatchObject({
      total_generations: 1, total_failed: 1, total_cost_micros: completed.cost_micros, total_credits_spent: 1, total_downloaded: 2, total_created: 2, total_cancelled: 0, running: 0, success_rate: 0.5,
    });

    // This month's analytics count the same two generations (written with their usage log entries).
    const analytics = await call("GET", "/v1/usage/analytics", { token: alice.token });
    expect(analytics.status).toBe(200);
    expect(analytics.body.months).toHaveLength(12);
    expect(analytics.body.months[0]).toMatchObject({
      month: new Date().toISOString().slice(0, 7), generations: 1, failed: 1, credits: 1, cost_micros: completed.cost_micros,
      by_input_type: { text: { completed: 1, failed: 0 }, address: { completed: 0, failed: 1 } },
      by_billing_classification: { original: { completed: 1, failed: 1 } },
      plans: [me.plan], plan_changed: false,
    });
    expect(analytics.body.months[0].output_bytes).toBeGreaterThan(0);

    // The usage history: both entries, newest first, a page at a time; and the same as CSV.
    const history = await call("GET", "/v1/usage/history?months=1&limit=1", { token: alice.token });
    expect(history.status).toBe(200);
    expect(history.body.entries).toHaveLength(1);
    expect(history.body.next_cursor).toEqual(expect.any(String));
    const rest = await call("GET", `/v1/usage/history?months=1&limit=1&cursor=${encodeURIComponent(history.body.next_cursor)}`, { token: alice.token });
    expect(rest.body).toMatchObject({ entries: [expect.any(Object)], next_cursor: null });
    const entries = [...history.body.entries, ...rest.body.entries];
    expect(entries.map((e: Json) => e.generation_id).sort()).toEqual([completed.id, failing.body.id].sort());
    expect(entries.find((e: Json) => e.outcome === "completed")).toMatchObject({ generation_id: completed.id, billable: true, credits: 1, billing_classification: "original", plan: me.plan });
    const csv = await fetch(`${base}/v1/usage/history?months=1`, { headers: { authorization: `Bearer ${alice.token}`, accept: "text/csv" } });
    expect(csv.status).toBe(200);
    expect(csv.headers.get("content-type")).toContain("text/csv");
    const lines = (await csv.text()).trim().split("\n");
    expect(lines[0]).toMatch(/^id,generation_id,outcome,billable,/);
    expect(lines).toHaveLength(3);
    expect(lines.slice(1).map((line) => line.split(",")[1]).sort()).toEqual([completed.id, failing.body.id].sort());
    expect((await call("GET", "/v1/usage/history?cursor=not-a-cursor", { token: alice.token })).status).toBe(400);

    // The summary: plan, this period's totals (the same two entries), limits, lifetime and the newest entries.
    const summary = await call("GET", "/v1/usage/summary", { token: alice.token });
    expect(summary.status).toBe(200);
    expect(summary.body).toMatchObject({
      plan: me.plan,
      period: { start: me.period.start, end: me.period.end, generations: 1, failed: 1, credits: 1, cost_micros: completed.cost_micros },
      lifetime: me.stats,
    });
    expect(summary.body.limits.map((l: Json) => l.name)).toEqual(me.limits.map((l: Json) => l.name));
    expect(summary.body.recent.map((e: Json) => e.id)).toEqual(entries.map((e: Json) => e.id));

    const list = await call("GET", "/v1/generations?limit=1", { token: alice.token });
    expect(list.body).toMatchObject({ total: 2, limit: 1, offset: 0 });
    expect(list.body.items.map((g: Json) => g.id)).toEqual([failing.body.id]); // newest first
    const second = await call("GET", "/v1/generations?limit=1&offset=1", { token: alice.token });
    expect(second.body.items.map((g: Json) => g.id)).toEqual([created.body.id]);
  }, 60_000);

  it("never shows one user's generation or output to another", async () => {
    const bob = await register(`bob-${suffix}@example.com`);
    for (const [method, route] of [
      ["GET", `/v1/generations/${completedId}`],
      ["GET", `/v1/generations/${completedId}/output`],
      ["POST", `/v1/generations/${completedId}/cancel`],
    ] as const) {
      const response = await call(method, route, { token: bob.token });
      expect([route, response.status, response.body.code]).toEqual([route, 404, "not_found"]);
    }
    expect((await call("GET", "/v1/generations", { token: bob.token })).body).toEqual({ items: [], total: 0, limit: 20, offset: 0 });
  });

});

describe("gateway against the real services: bad input and anonymous idempotency", () => {
  it("answers bad input with 400 validation (404 for ids that are not UUIDs), never a 500", async () => {
    const bad: [string, string, unknown, number][] = [
      ["POST", "/v1/generations", { input_type: "photo", prompt: "x" }, 400],
      ["POST", "/v1/generations", { input_type: "address", prompt: "x" }, 400],
      ["POST", "/v1/generations", { input_type: "text", prompt: "x".repeat(2_001) }, 400],
      ["GET", "/v1/generations?limit=0", undefined, 400],
      ["GET", "/v1/generations?offset=-1", undefined, 400],
      ["GET", "/v1/generations/not-a-uuid", undefined, 404],
      ["GET", "/v1/generations/00000000-0000-4000-8000-000000000000", undefined, 404],
    ];
    for (const [method, route, body, status] of bad) {
      const response = await call(method, route, { token: alice.token, body });
      expect({ route, status: response.status, problem: response.contentType.startsWith("application/problem+json") }).toEqual({ route, status, problem: true });
      expect(response.body.code).toBe(status === 400 ? "validation" : "not_found");
    }
    const taken = await call("POST", "/v1/auth/register", { body: { email: `alice-${suffix}@example.com`, password: "another password" } });
    expect([taken.status, taken.body.code]).toEqual([409, "conflict"]);
    const wrong = await call("POST", "/v1/auth/login", { body: { email: `alice-${suffix}@example.com`, password: "wrong password" } });
    const unknown = await call("POST", "/v1/auth/login", { body: { email: `nobody-${suffix}@example.com`, password: "wrong password" } });
    expect([wrong.status, wrong.body.code]).toEqual([401, "unauthenticated"]);
    expect({ ...unknown.body, instance: undefined }).toEqual({ ...wrong.body, instance: undefined });
  });

  it("scopes an anonymous Idempotency-Key by email: two people with the same key both register and log in", async () => {
    const key = { "idempotency-key": `shared-${suffix}` };
    const [erinEmail, frankEmail] = [`erin-${suffix}@example.com`, `frank-${suffix}@example.com`];
    const password = "correct horse battery";
    const erin = await call("POST", "/v1/auth/register", { headers: key, body: { email: erinEmail, password } });
    const frank = await call("POST", "/v1/auth/register", { headers: key, body: { email: frankEmail, password } });
    expect([erin.status, erin.body.user?.email]).toEqual([201, erinEmail]);
    expect([frank.status, frank.body.user?.email]).toEqual([201, frankEmail]);
    expect(frank.body.user.id).not.toBe(erin.body.user.id);
    // A replay of Erin's registration with the key is still hers.
    const replay = await call("POST", "/v1/auth/register", { headers: key, body: { email: erinEmail, password } });
    expect([replay.status, replay.body.user?.id]).toEqual([201, erin.body.user.id]);

    const erinLogin = await call("POST", "/v1/auth/login", { headers: key, body: { email: erinEmail, password } });
    const frankLogin = await call("POST", "/v1/auth/login", { headers: key, body: { email: frankEmail, password } });
    expect([erinLogin.status, frankLogin.status]).toEqual([200, 200]);
    const me = await call("GET", "/v1/me", { token: frankLogin.body.access_token });
    expect(me.body).toMatchObject({ id: frank.body.user.id, email: frankEmail });
  });

  it("registers and logs in with a 220-character password (the credits service allows 8..256)", async () => {
    const email = `long-${suffix}@example.com`;
    const password = "p".repeat(220);
    const registered = await call("POST", "/v1/auth/register", { body: { email, password } });
    expect([registered.status, registered.body.user?.email]).toEqual([201, email]);
    const login = await call("POST", "/v1/auth/login", { body: { email, password } });
    expect(login.status).toBe(200);
  });

});

describe("gateway against the real services: guests, limits and plans", () => {
  const text = (prompt: string) => ({ input_type: "text", prompt });

  it("lets a guest generate up to its daily limit (then 429 with Retry-After), and keeps its history when it signs up", async () => {
    const guestId = crypto.randomUUID();
    const headers = { "x-guest-id": guestId };
    const bad = await call("GET", "/v1/generations", { headers: { "x-guest-id": "not-a-uuid" } });
    expect([bad.status, bad.body.code]).toEqual([400, "validation"]);
    expect(bad.body.detail).toContain("headers.x-guest-id");

    const ids: string[] = [];
    for (let i = 0; i < GUEST_GENERATIONS_PER_DAY; i++) {
      const created = await call("POST", "/v1/generations", { headers, body: text(`guest ${i}`) });
      expect([created.status, created.body.user_id]).toEqual([201, guestId]);
      ids.push(created.body.id);
    }
    const refused = await call("POST", "/v1/generations", { headers, body: text("one too many") });
    expect([refused.status, refused.contentType]).toEqual([429, expect.stringMatching(/^application\/problem\+json/)]);
    expect(refused.body).toMatchObject({ code: "guest_limit_exceeded", limit_name: "generations_per_day", plan: "guest", limit: GUEST_GENERATIONS_PER_DAY, period_start: expect.any(String), resets_at: expect.any(String) });
    expect(refused.body.used + refused.body.reserved).toBe(GUEST_GENERATIONS_PER_DAY);
    const retryAfter = Number((await fetch(`${base}/v1/generations`, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify(text("again")) })).headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(86_400);
    // Another guest sees none of it.
    const other = await call("GET", `/v1/generations/${ids[0]}`, { headers: { "x-guest-id": crypto.randomUUID() } });
    expect(other.status).toBe(404);
    for (const id of ids) await eventually(async () => (ended((await call("GET", `/v1/generations/${id}`, { headers })).body) ? true : undefined), 30_000, 100);
    const limits = await call("GET", "/v1/usage/limits", { headers });
    expect(limits.body.limits.find((limit: Json) => limit.name === "generations_per_day")).toMatchObject({ limit: GUEST_GENERATIONS_PER_DAY, within_limit: expect.any(Boolean), remaining: 0 });

    const signUp = await call("POST", "/v1/auth/register", { headers, body: { email: `guest-${suffix}@example.com`, password: "correct horse battery" } });
    expect(signUp.status).toBe(201);
    const token = signUp.body.access_token;
    const history = await call("GET", "/v1/generations", { token });
    expect(history.body.items.map((g: Json) => g.id).sort()).toEqual([...ids].sort());
    expect((await call("GET", "/v1/generations", { headers })).status).toBe(401);
    const period = await eventually(async () => {
      const response = await call("GET", "/v1/usage/limits", { token });
      const generations = response.body.limits.find((limit: Json) => limit.name === "generations_per_period");
      return generations?.used === GUEST_GENERATIONS_PER_DAY ? response.body : undefined;
    }, 20_000, 200);
    expect(period).toMatchObject({ plan: "free", period: { start: expect.any(String), end: expect.any(String) } });
  }, 90_000);

  it("applies an admin's plan change at once: 403 plan_limit_exceeded on a tiny plan, 201 after an upgrade", async () => {
    const admin = await call("POST", "/v1/auth/register", { body: { email: ADMIN_EMAIL, password: "correct horse battery" } });
    expect([admin.status, admin.body.user?.role]).toEqual([201, "admin"]); // TALLY_ADMIN_EMAILS
    const adminToken = admin.body.access_token;
    const dave = await register(`dave-${suffix}@example.com`);
    const setPlan = (token: string, plan: string) => call("PUT", `/v1/admin/accounts/${dave.id}/plan`, { token, body: { plan } });
    const notAdmin = await setPlan(dave.token, "pro");
    expect([notAdmin.status, notAdmin.body.code]).toEqual([403, "forbidden"]);
    const unknown = await setPlan(adminToken, "platinum");
    expect([unknown.status, unknown.body.code]).toEqual([400, "validation"]);
    const tiny = await setPlan(adminToken, "tiny");
    expect([tiny.status, tiny.body.plan]).toEqual([200, "tiny"]);

    expect((await call("POST", "/v1/generations", { token: dave.token, body: text("the one") })).status).toBe(201);
    const refused = await call("POST", "/v1/generations", { token: dave.token, body: text("one too many") });
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ code: "plan_limit_exceeded", status: 403, limit_name: "generations_per_period", plan: "tiny", limit: 1, period_start: expect.any(String), resets_at: expect.any(String) });
    expect(refused.body.used + refused.body.reserved).toBe(1);
    const limits = await call("GET", "/v1/usage/limits", { token: dave.token });
    expect(limits.body).toMatchObject({ plan: "tiny", period: { start: expect.any(String), end: expect.any(String) } });
    expect(limits.body.limits.map((limit: Json) => limit.name)).toEqual(["generations_per_period", "requests_per_minute"]);
    const me = await call("GET", "/v1/me", { token: dave.token });
    expect(me.body).toMatchObject({ plan: "tiny", limits: [{ name: "generations_per_period", limit: 1 }, { name: "requests_per_minute" }] });

    expect((await setPlan(adminToken, "pro")).body.plan).toBe("pro");
    const upgraded = await call("POST", "/v1/generations", { token: dave.token, body: text("after the upgrade") });
    expect(upgraded.status).toBe(201);
    await waitUntilEnded(dave.token, upgraded.body.id);

    // Support sees what dave sees of his usage, with his account; dave cannot look at anyone's.
    const support = await eventually(async () => {
      const answer = await call("GET", `/v1/admin/users/${dave.id}/usage`, { token: adminToken });
      return answer.body.summary?.lifetime?.total_generations === 2 ? answer : undefined;
    }, 20_000, 100);
    const own = await call("GET", "/v1/usage/summary", { token: dave.token });
    expect(support.body).toEqual({ account: expect.objectContaining({ id: dave.id, plan: "pro" }), summary: { ...own.body, limits: expect.any(Array) } });
    expect((await call("GET", `/v1/admin/users/${dave.id}/usage`, { token: dave.token })).status).toBe(403);
    expect((await call("GET", "/v1/admin/users/not-a-uuid/usage", { token: adminToken })).status).toBe(404);
    // A guest's account has no email: null, never "".
    const guestId = crypto.randomUUID();
    expect((await call("GET", "/v1/generations", { headers: { "x-guest-id": guestId } })).status).toBe(200);
    const guestUsage = await call("GET", `/v1/admin/users/${guestId}/usage`, { token: adminToken });
    expect([guestUsage.status, guestUsage.body.account]).toEqual([200, expect.objectContaining({ id: guestId, email: null, plan: "guest" })]);

    // The business view: today's figures count dave's generations under their plans (others' too).
    const today = new Date().toISOString().slice(0, 10);
    const platform = await call("GET", `/v1/admin/usage/analytics?start_date=${today}&end_date=${today}&plan=pro`, { token: adminToken });
    expect(platform.status).toBe(200);
    expect(platform.body).toMatchObject({ start_date: today, end_date: today, plan: "pro", by_plan: { pro: { completed: expect.any(Number) } } });
    expect(platform.body.generations).toBeGreaterThanOrEqual(1);
    expect(Object.keys(platform.body.by_plan)).toEqual(["pro"]);
    expect((await call("GET", "/v1/admin/usage/analytics?start_date=2026-13-01", { token: adminToken })).status).toBe(400);
    // Days the services cannot take and a plan with a NUL: 400 validation, never 500.
    for (const query of ["start_date=0000-01-01&end_date=0000-01-05", "end_date=9999-12-31", "plan=%00", "plan=free%00"]) {
      const refused = await call("GET", `/v1/admin/usage/analytics?${query}`, { token: adminToken });
      expect([query, refused.status, refused.body.code]).toEqual([query, 400, "validation"]);
    }
    // The default start stops at 0001-01-01; the last day a query may name is 9999-12-30.
    for (const query of ["end_date=0001-01-01", "start_date=9999-12-30&end_date=9999-12-30"]) {
      expect([query, (await call("GET", `/v1/admin/usage/analytics?${query}`, { token: adminToken })).status]).toEqual([query, 200]);
    }
    expect((await call("GET", "/v1/admin/usage/analytics", { token: dave.token })).status).toBe(403);

    // The books of both services balance after all of the above (credits INV-2, usage INV-6).
    const books = await call("GET", "/v1/admin/reconciliation", { token: adminToken });
    expect(books.status).toBe(200);
    expect(books.body).toEqual({ differences: 0, credits: { differences: 0, items: [] }, usage: { differences: 0, items: [] }, checked_at: expect.any(String) });
    expect((await call("GET", "/v1/admin/reconciliation", { token: dave.token })).status).toBe(403);
    expect((await call("GET", "/v1/admin/reconciliation")).status).toBe(401);
  }, 60_000);
});

describe("gateway against the real services: idempotency, limits and outages", () => {
  it("replays an Idempotency-Key (same generation, one hold), refuses its reuse with another body, and answers 402 when credits run out", async () => {
    const key = { "idempotency-key": `create-${suffix}` };
    const before = (await call("GET", "/v1/credits/balance", { token: alice.token })).body;
    const first = await call("POST", "/v1/generations", { token: alice.token, headers: key, body: { input_type: "text", prompt: "once" } });
    const replay = await call("POST", "/v1/generations", { token: alice.token, headers: key, body: { input_type: "text", prompt: "once" } });
    expect(first.status).toBe(201);
    expect(replay.status).toBe(201);
    expect(replay.body.id).toBe(first.body.id);
    const after = (await call("GET", "/v1/credits/balance", { token: alice.token })).body;
    expect(after.total_available).toBe(before.total_available - PRICING.text);
    expect((await call("GET", "/v1/generations", { token: alice.token })).body.total).toBe(3);

    const reused = await call("POST", "/v1/generations", { token: alice.token, headers: key, body: { input_type: "text", prompt: "twice" } });
    expect([reused.status, reused.body.code]).toEqual([409, "idempotency_key_reused"]);
    expect(reused.body).not.toHaveProperty("request_id"); // the derived id is internal

    // 2 credits left: a photo takes them, the next text job finds none.
    const photo = await call("POST", "/v1/generations", { token: alice.token, body: { input_type: "photo", photo_url: "https://example.com/me.jpg" } });
    expect([photo.status, photo.body.credit_cost]).toEqual([201, PRICING.photo]);
    const refused = await call("POST", "/v1/generations", { token: alice.token, body: { input_type: "text", prompt: "one too many" } });
    expect(refused.status).toBe(402);
    expect(refused.contentType).toMatch(/^application\/problem\+json/);
    expect(refused.body).toMatchObject({ code: "insufficient_credits", status: 402, requested: PRICING.text, available: 0 });
    await waitUntilEnded(alice.token, first.body.id);
    await waitUntilEnded(alice.token, photo.body.id);
  }, 60_000);

  it("answers 503 while a service is stopped, then cancels a pending job once (409 after)", async () => {
    const generations = processes.find((service) => service.name === "generations")!;
    await generations.stop();
    const down = await call("GET", "/v1/generations", { token: alice.token });
    expect([down.status, down.body.code]).toEqual([503, "unavailable"]);
    expect(down.body.detail).not.toMatch(/127\.0\.0\.1/);
    const ready = await call("GET", "/readyz");
    expect([ready.status, ready.body.services]).toEqual([503, { credits: "SERVING", generations: "UNREACHABLE", usage: "SERVING" }]);
    expect((await call("GET", "/healthz")).status).toBe(200);

    // Back without its worker, so a new job stays pending until it is cancelled.
    const restarted = spawnService("generations", "services/generations/main.ts", { ...generationsEnv, WORKER_ENABLED: "false" });
    processes.splice(processes.indexOf(generations), 1, restarted);
    await waitForGrpcServing(generationsAddress, START_TIMEOUT_MS);
    await eventually(async () => ((await call("GET", "/readyz")).status === 200 ? true : undefined), 20_000, 200);

    const carol = await register(`carol-${suffix}@example.com`);
    const pending = await call("POST", "/v1/generations", { token: carol.token, body: { input_type: "text", prompt: "never mind" } });
    expect(pending.body.status).toBe("pending");
    expect((await call("GET", "/v1/credits/balance", { token: carol.token })).body).toMatchObject({ held: 1, total_available: TRIAL_CREDITS - 1 });

    const cancelled = await call("POST", `/v1/generations/${pending.body.id}/cancel`, { token: carol.token });
    expect([cancelled.status, cancelled.body.status]).toEqual([200, "cancelled"]);
    expect((await call("GET", "/v1/credits/balance", { token: carol.token })).body).toMatchObject({ held: 0, total_available: TRIAL_CREDITS });
    const again = await call("POST", `/v1/generations/${pending.body.id}/cancel`, { token: carol.token });
    expect([again.status, again.body.code]).toEqual([409, "already_finished"]);
    const finished = await call("POST", `/v1/generations/${completedId}/cancel`, { token: alice.token, headers: { "content-type": "application/json" } });
    expect([finished.status, finished.body.code]).toEqual([409, "already_finished"]);
  }, 60_000);
});
