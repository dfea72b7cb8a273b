/**
 * End to end, through the front door: starts the stack exactly as `npm start` does
 * (scripts/stack.ts, as a child process, on its own databases, stream and ports) and drives
 * the main job over HTTP: register → trial credits → generations until the credits run out
 * (402) → jobs complete (one fails and gives its credits back) → outputs download → balance,
 * generation list and /v1/me stats agree to the unit → login sets last_login → another user
 * gets 404 → bad input gets 400s; then plans and limits: a guest makes generations up to its
 * daily limit (429), signs up with its guest id and keeps its history, runs into its period
 * limit as a free user (403 with the limit's detail), an admin upgrades it and the next
 * request succeeds → a user's summary, history (JSON pages and CSV) and analytics, and the
 * admin's platform analytics, agree with the jobs it made → an admin tops a user up, jobs burn
 * trial credits before tokens and the ledger sums to the balance → Ctrl-C stops everything cleanly.
 */
import { createLogger, newId, openDatabase, type Orm } from "@tally/platform";
import { eventually, uniqueSuffix } from "@tally/platform/src/testing";
import { Client } from "pg";
import { buildUsageServices } from "../services/usage/src/app";
import { usageMigrations } from "../services/usage/src/adapter/migrations";
import { callGateway, startStack, type CallOptions, type StackUnderTest } from "./stack-under-test";

const TRIAL_CREDITS = 10;
const FAULT_MARKER = "[fault:provider_error]";
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Small limits, so that the run reaches each of them: a guest may make 3 a day, a free user 12 a period. */
const GUEST_DAILY_LIMIT = 3;
const FREE_PERIOD_LIMIT = 12;
const PLANS = `
default_plan: free
guest_plan: guest
plans:
  guest: { trial_credits: 3, limits: { generations_per_day: ${GUEST_DAILY_LIMIT}, concurrent_generations: 3, requests_per_minute: 1000 } }
  free: { trial_credits: 10, credit_price_micros: 10000, limits: { generations_per_period: ${FREE_PERIOD_LIMIT}, concurrent_generations: 20, requests_per_minute: 1000 } }
  pro: { trial_credits: 10, credit_price_micros: 8000, limits: { generations_per_period: 5000, concurrent_generations: 50, requests_per_minute: 3000 } }
`;

interface Problem {
  status: number;
  code: string;
}

describe("Tally end to end (npm start, driven over HTTP)", () => {
  let stack: StackUnderTest;
  let suffix: string;
  let adminEmail: string;

  beforeAll(async () => {
    adminEmail = `admin-${uniqueSuffix()}@example.com`;
    stack = await startStack(PLANS, {
      FAULT_INJECTION_ENABLED: "true",
      TRIAL_CREDITS: String(TRIAL_CREDITS),
      PRICING_CREDITS: JSON.stringify({ text: 1, photo: 2, address: 2 }),
      TALLY_ADMIN_EMAILS: adminEmail,
    });
    suffix = stack.suffix;
  }, 150_000);

  afterAll(async () => {
    await usageOrm?.close(true);
    await stack?.destroy();
  }, 60_000);

  let usageOrm: Orm | undefined;
  /** The usage service's reconciliation of lifetime stats with the usage and download logs, over the stack's usage database. */
  const reconcileStats = async (userId?: string) => {
    usageOrm ??= await openDatabase({ url: stack.databaseUrl("usage"), entities: [], migrations: usageMigrations, logger: createLogger("e2e", "silent"), migrate: false });
    return buildUsageServices(usageOrm).stats.reconcile(userId);
  };
  /** Rows of the usage log of one subject, straight from the usage database. */
  const usageLogOf = async (userId: string) => {
    const db = new Client({ connectionString: stack.databaseUrl("usage") });
    await db.connect();
    try {
      return (await db.query("SELECT * FROM usage_log WHERE user_id = $1 ORDER BY occurred_at", [userId])).rows;
    } finally {
      await db.end();
    }
  };

  const call = <T = any>(method: string, route: string, options: CallOptions = {}) => callGateway<T>(stack.base, method, route, options);

  const register = async (email: string, guestId?: string) => {
    const response = await call("POST", "/v1/auth/register", { guestId, body: { email, password: "correct horse battery" } });
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

    // Every output downloads as a real PNG; each request counts as a download, a retry of one (same Idempotency-Key) once.
    const outputBytes = new Map<string, number>();
    for (const generation of completed) {
      expect(generation.output_url).toMatch(/^https?:\/\//);
      const download = await fetch(generation.output_url, { headers: { authorization: `Bearer ${token}` } });
      expect(download.status).toBe(200);
      expect(download.headers.get("content-type")).toBe("image/png");
      const bytes = Buffer.from(await download.arrayBuffer());
      expect(bytes.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
      outputBytes.set(generation.id, bytes.length);
    }
    for (let i = 0; i < 2; i++) {
      const again = await fetch(completed[0].output_url, { headers: { authorization: `Bearer ${token}`, "idempotency-key": `again-${suffix}` } });
      expect(again.status).toBe(200);
      await again.arrayBuffer();
    }
    const downloads = completed.length + 1;
    report.push(`${completed.length} completed (outputs downloaded as PNG, then one twice with one Idempotency-Key), ${items.length - completed.length} failed`);

    // Balance, list and stats agree to the unit.
    const creditsSpent = completed.reduce((sum, g) => sum + g.credit_cost, 0);
    const costMicros = completed.reduce((sum, g) => sum + g.cost_micros, 0);
    const finalBalance = await call("GET", "/v1/credits/balance", { token });
    expect(finalBalance.body).toEqual({ trial_credits: 0, token_balance: 0, held: 0, total_available: 0 });
    expect(creditsSpent).toBe(TRIAL_CREDITS);
    const me = await eventually(async () => {
      const response = await call("GET", "/v1/me", { token });
      const stats = response.body?.stats;
      return stats?.total_generations === completed.length && stats.total_failed === 1 && stats.total_downloaded === downloads ? response.body : undefined;
    }, 30_000, 250);
    expect(me.stats).toMatchObject({
      total_generations: completed.length,
      total_failed: 1,
      total_cost_micros: costMicros,
      total_credits_spent: creditsSpent,
      total_downloaded: downloads,
    });

    // Each usage log entry carries the plan snapshot, the billing period, the classification, the output size and the subject kind.
    const entries = await usageLogOf(alice.user.id);
    expect(entries).toHaveLength(completed.length + 1);
    for (const entry of entries) {
      expect(entry).toMatchObject({
        plan: "free",
        plan_limits: { generations_per_period: FREE_PERIOD_LIMIT, concurrent_generations: 20, requests_per_minute: 1000 },
        billing_classification: "original",
        parent_generation_id: null,
        subject_kind: "user",
      });
      expect(entry.period_start.getTime()).toBeLessThanOrEqual(entry.occurred_at.getTime());
      expect(entry.period_end.getTime()).toBeGreaterThan(entry.occurred_at.getTime());
      expect(Number(entry.output_bytes)).toBe(entry.outcome === "completed" ? outputBytes.get(entry.generation_id) : 0);
    }
    expect(entries.filter((e) => e.outcome === "completed").every((e) => Number(e.output_bytes) > 0)).toBe(true);
    expect(await reconcileStats()).toEqual([]);
    report.push(`usage log entries: plan free with its limits, period ${entries[0].period_start.toISOString()}..${entries[0].period_end.toISOString()}, original, output bytes = the downloads' sizes; reconciliation found no difference`);
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

  /** Waits until every generation of the caller has ended and returns the list. */
  const allEnded = (who: { token?: string; guestId?: string }, total: number) =>
    eventually(async () => {
      const list = await call("GET", "/v1/generations?limit=100", who);
      const items = list.body.items as any[];
      return list.body.total === total && items.every((g) => g.status === "completed" || g.status === "failed") ? list.body : undefined;
    }, 90_000, 250);

  const limitNamed = (limits: any, name: string) => (limits.limits as any[]).find((l) => l.name === name);

  it("enforces plans for guests and users, and an upgrade applies at once", async () => {
    const report: string[] = [];
    const text = (prompt: string) => ({ input_type: "text", prompt });

    // A guest makes generations up to its daily limit; the next one is 429 with Retry-After.
    const guestId = newId();
    for (let i = 0; i < GUEST_DAILY_LIMIT; i++) {
      expect((await call("POST", "/v1/generations", { guestId, body: text(`a guest's kite ${i}`) })).status).toBe(201);
    }
    const guestRefused = await call("POST", "/v1/generations", { guestId, body: text("one more kite") });
    expect(guestRefused.status).toBe(429);
    expect(guestRefused.body).toMatchObject({ code: "guest_limit_exceeded", limit_name: "generations_per_day", plan: "guest", limit: GUEST_DAILY_LIMIT });
    expect(Number(guestRefused.headers.get("retry-after"))).toBeGreaterThan(0);
    await allEnded({ guestId }, GUEST_DAILY_LIMIT);
    // A job shows as ended before the usage service has counted its completion event.
    const guestDaily = await eventually(async () => {
      const day = limitNamed((await call("GET", "/v1/usage/limits", { guestId })).body, "generations_per_day");
      return day.used === GUEST_DAILY_LIMIT ? day : undefined;
    }, 30_000, 250);
    expect(guestDaily).toMatchObject({ limit: GUEST_DAILY_LIMIT, used: GUEST_DAILY_LIMIT, reserved: 0, remaining: 0, within_limit: false });
    const guestEntries = await usageLogOf(guestId);
    expect(guestEntries.filter((e) => e.outcome === "completed")).toHaveLength(GUEST_DAILY_LIMIT);
    for (const entry of guestEntries) expect(entry).toMatchObject({ subject_kind: "guest", plan: "guest", billing_classification: "original" });
    report.push(`a guest made ${GUEST_DAILY_LIMIT} generations, the next one answered 429 ${guestRefused.body.code} (Retry-After ${guestRefused.headers.get("retry-after")} s)`);

    // Signing up with the guest id adopts the guest: its generations and this period's usage move.
    const carol = await register(`carol-${suffix}@example.com`, guestId);
    const adopted = await call("GET", "/v1/generations", { token: carol.access_token });
    expect(adopted.body.total).toBe(GUEST_DAILY_LIMIT);
    expect((await call("GET", "/v1/generations", { guestId })).status).toBe(401);
    const carolLimits = await call("GET", "/v1/usage/limits", { token: carol.access_token });
    expect(carolLimits.body.plan).toBe("free");
    expect(limitNamed(carolLimits.body, "generations_per_period")).toMatchObject({ limit: FREE_PERIOD_LIMIT, used: GUEST_DAILY_LIMIT });
    report.push(`signing up with the guest id kept its ${adopted.body.total} generations and its usage (${GUEST_DAILY_LIMIT} of ${FREE_PERIOD_LIMIT} this period)`);

    // As a free user it reaches its period limit: 403 with which limit, the plan, used and the limit.
    const allowed = FREE_PERIOD_LIMIT - GUEST_DAILY_LIMIT;
    for (let i = 0; i < allowed; i++) {
      expect((await call("POST", "/v1/generations", { token: carol.access_token, body: text(`a free lighthouse ${i}`) })).status).toBe(201);
    }
    const userRefused = await call("POST", "/v1/generations", { token: carol.access_token, body: text("over the limit") });
    expect(userRefused.status).toBe(403);
    expect(userRefused.body).toMatchObject({ code: "plan_limit_exceeded", limit_name: "generations_per_period", plan: "free", limit: FREE_PERIOD_LIMIT });
    expect(userRefused.body.used + userRefused.body.reserved).toBe(FREE_PERIOD_LIMIT);
    expect(typeof userRefused.body.period_start).toBe("string");
    expect(typeof userRefused.body.resets_at).toBe("string");
    report.push(`after ${allowed} more the next one answered 403 ${userRefused.body.code} (${userRefused.body.limit_name}: ${userRefused.body.used} used + ${userRefused.body.reserved} reserved of ${userRefused.body.limit})`);

    // An admin moves the user to pro: the next request succeeds at once.
    const admin = await register(adminEmail);
    const upgrade = await call("PUT", `/v1/admin/accounts/${carol.user.id}/plan`, { token: admin.access_token, body: { plan: "pro" } });
    expect(upgrade.status).toBe(200);
    const forbidden = await call("PUT", `/v1/admin/accounts/${carol.user.id}/plan`, { token: carol.access_token, body: { plan: "pro" } });
    expect([forbidden.status, forbidden.body.code]).toEqual([403, "forbidden"]);
    expect((await call("POST", "/v1/generations", { token: carol.access_token, body: text("after the upgrade") })).status).toBe(201);

    // Once the jobs end, the period's usage equals what happened, to the unit.
    const ended = await allEnded({ token: carol.access_token }, FREE_PERIOD_LIMIT + 1);
    const completed = (ended.items as any[]).filter((g) => g.status === "completed").length;
    const finalLimits = await eventually(async () => {
      const response = await call("GET", "/v1/usage/limits", { token: carol.access_token });
      const period = limitNamed(response.body, "generations_per_period");
      return period.used === completed && period.reserved === 0 ? response.body : undefined;
    }, 30_000, 250);
    expect(finalLimits.plan).toBe("pro");
    report.push(`an admin upgraded the user to pro and the next one answered 201; usage this period ${limitNamed(finalLimits, "generations_per_period").used} = ${completed} completed`);

    // eslint-disable-next-line no-console
    console.log(`plans and limits:\n  ${report.join("\n  ")}`);
  }, 240_000);

  it("shows a user's usage through summary, history (JSON and CSV) and analytics, and the platform's through admin analytics", async () => {
    const report: string[] = [];
    const admin = await call("POST", "/v1/auth/login", { body: { email: adminEmail, password: "correct horse battery" } });
    const adminToken: string = admin.status === 200 ? admin.body.access_token : (await register(adminEmail)).access_token;
    const platform = async () => {
      const response = await call("GET", "/v1/admin/usage/analytics", { token: adminToken });
      expect(response.status).toBe(200);
      return response.body;
    };
    const before = await platform();

    // Dave makes four text generations and one that fails, and downloads every output.
    const dave = await register(`dave-${suffix}@example.com`);
    const token = dave.access_token;
    for (let i = 0; i < 4; i++) expect((await call("POST", "/v1/generations", { token, body: { input_type: "text", prompt: `a harbour at night ${i}` } })).status).toBe(201);
    expect((await call("POST", "/v1/generations", { token, body: { input_type: "text", prompt: `a harbour that fails ${FAULT_MARKER}` } })).status).toBe(201);
    const ended = (await allEnded({ token }, 5)).items as any[];
    const completed = ended.filter((g) => g.status === "completed");
    expect(completed).toHaveLength(4);
    const sum = (key: string) => completed.reduce((total, g) => total + g[key], 0);
    let outputBytes = 0;
    for (const generation of completed) {
      const download = await fetch(generation.output_url, { headers: { authorization: `Bearer ${token}` } });
      outputBytes += (await download.arrayBuffer()).byteLength;
    }

    // The summary: this period's totals, the lifetime stats and the newest entries, as the jobs were.
    const summary = await eventually(async () => {
      const response = await call("GET", "/v1/usage/summary", { token });
      const lifetime = response.body?.lifetime;
      return lifetime?.total_generations === 4 && lifetime.total_failed === 1 && lifetime.total_downloaded === 4 ? response.body : undefined;
    }, 30_000, 250);
    expect(summary.plan).toBe("free");
    expect(summary.period).toMatchObject({ generations: 4, failed: 1, credits: 4, cost_micros: sum("cost_micros"), processing_time_ms: sum("processing_time_ms"), output_bytes: outputBytes });
    expect(summary.lifetime).toMatchObject({
      total_generations: 4, total_failed: 1, total_cost_micros: sum("cost_micros"), total_credits_spent: 4, total_downloaded: 4, total_created: 5, total_cancelled: 0, running: 0,
      total_output_bytes: outputBytes, average_output_bytes: Math.floor(outputBytes / 4), total_processing_time_ms: sum("processing_time_ms"),
      average_processing_time_ms: Math.floor(sum("processing_time_ms") / 4), success_rate: 0.8, by_input_type: { text: { completed: 4, failed: 1 } },
    });
    expect(Date.parse(summary.lifetime.first_activity_at)).toBeLessThanOrEqual(Date.parse(summary.lifetime.last_activity_at));
    expect(new Set(summary.recent.map((e: any) => e.generation_id))).toEqual(new Set(ended.map((g) => g.id)));
    expect(limitNamed(summary, "generations_per_period")).toMatchObject({ used: 4, reserved: 0 });
    report.push(`summary: period ${JSON.stringify(summary.period)}`);

    // The history, page by page (two entries a page), newest first, and the same as CSV.
    const pages: any[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
      const page: any = await call("GET", `/v1/usage/history?months=1&limit=2${query}`, { token });
      expect(page.status).toBe(200);
      pages.push(...page.body.entries);
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(pages.map((e) => e.generation_id).sort()).toEqual(ended.map((g) => g.id).sort());
    const times = pages.map((e) => Date.parse(e.occurred_at));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
    expect(pages.filter((e) => e.outcome === "completed").reduce((total, e) => total + e.credits, 0)).toBe(4);
    const csv = await fetch(`${stack.base}/v1/usage/history?months=1`, { headers: { authorization: `Bearer ${token}`, accept: "text/csv" } });
    expect(csv.headers.get("content-type")).toContain("text/csv");
    const [header, ...rows] = (await csv.text()).trim().split("\n");
    const column = header.split(",").indexOf("generation_id");
    expect(rows.map((row) => row.split(",")[column])).toEqual(pages.map((e) => e.generation_id));
    report.push(`history: ${pages.length} entries over ${Math.ceil(pages.length / 2)} pages; CSV: ${rows.length} rows`);

    // The analytics: 12 months, this one holding the jobs.
    const analytics = await call("GET", "/v1/usage/analytics", { token });
    expect(analytics.body.months).toHaveLength(12);
    expect(analytics.body.months[0]).toMatchObject({
      month: new Date().toISOString().slice(0, 7),
      generations: 4, failed: 1, credits: 4, cost_micros: sum("cost_micros"), processing_time_ms: sum("processing_time_ms"),
      by_input_type: { text: { completed: 4, failed: 1 } }, plans: ["free"], plan_changed: false,
    });
    report.push(`analytics: ${JSON.stringify(analytics.body.months[0])}`);

    // A job cancelled while it runs counts as created and cancelled, never as a generation.
    const slow = await call("POST", "/v1/generations", { token, body: { input_type: "text", prompt: "a harbour that takes long [fault:slow_ms=60000]" } });
    expect((await call("POST", `/v1/generations/${slow.body.id}/cancel`, { token })).status).toBe(200);
    const afterCancel = await eventually(async () => {
      const stats = (await call("GET", "/v1/me", { token })).body?.stats;
      return stats?.total_cancelled === 1 && stats.running === 0 ? stats : undefined;
    }, 30_000, 250);
    expect(afterCancel).toMatchObject({ total_created: 6, total_generations: 4, total_failed: 1, total_cancelled: 1 });
    report.push(`a cancelled job: ${JSON.stringify({ created: afterCancel.total_created, cancelled: afterCancel.total_cancelled })}`);

    // The platform's figures grew by exactly Dave's jobs; a user may not read them.
    const after = await platform();
    expect({
      generations: after.generations - before.generations, failed: after.failed - before.failed, credits: after.credits - before.credits,
      cost_micros: after.cost_micros - before.cost_micros, unique_users: after.unique_users - before.unique_users,
    }).toEqual({ generations: 4, failed: 1, credits: 4, cost_micros: sum("cost_micros"), unique_users: 1 });
    // Money: Dave's 4 credits at the free plan's 10,000 micros a credit, against what the provider's work cost (failed job included).
    const grew = (key: string) => after.money_by_plan.free[key] - (before.money_by_plan.free?.[key] ?? 0);
    expect({ credits: grew("credits"), revenue_micros: grew("revenue_micros") }).toEqual({ credits: 4, revenue_micros: 40_000 });
    expect(grew("margin_micros")).toBe(40_000 - grew("cost_micros"));
    expect(grew("cost_micros")).toBeGreaterThanOrEqual(sum("cost_micros"));
    expect((await call<Problem>("GET", "/v1/admin/usage/analytics", { token })).status).toBe(403);
    // And the books agree: every derived usage table with the log, the credits ledger with the balances.
    const reconciliation = await call("GET", "/v1/admin/reconciliation", { token: adminToken });
    expect(reconciliation.body).toMatchObject({ differences: 0, credits: { differences: 0 }, usage: { differences: 0 } });
    report.push(`admin analytics grew by 4 generations, 1 failure, 4 credits and 1 user (now ${after.generations} generations, ${after.unique_users} users)`);

    // eslint-disable-next-line no-console
    console.log(`usage routes:\n  ${report.join("\n  ")}`);
  }, 240_000);

  it("tops a user up: the balance shows the tokens, jobs burn trial credits before tokens, and the ledger sums to the balance", async () => {
    const admin = await call("POST", "/v1/auth/login", { body: { email: adminEmail, password: "correct horse battery" } });
    const adminToken: string = admin.status === 200 ? admin.body.access_token : (await register(adminEmail)).access_token;
    const erin = await register(`erin-${suffix}@example.com`);
    const token = erin.access_token;
    const topUp = await fetch(`${stack.base}/v1/admin/accounts/${erin.user.id}/grants`, {
      method: "POST",
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json", "idempotency-key": `pay-${suffix}` },
      body: JSON.stringify({ kind: "purchased", amount: 3, reference: `payment-${suffix}` }),
    });
    expect(topUp.status).toBe(201);
    expect((await call("GET", "/v1/credits/balance", { token })).body).toEqual({ trial_credits: TRIAL_CREDITS, token_balance: 3, held: 0, total_available: TRIAL_CREDITS + 3 });

    const creditTypes: string[] = [];
    for (let i = 0; i < TRIAL_CREDITS + 1; i++) {
      const created = await call("POST", "/v1/generations", { token, body: { input_type: "text", prompt: `a paid lantern ${i}` } });
      expect(created.status).toBe(201);
      creditTypes.push(created.body.credit_type);
    }
    expect(creditTypes).toEqual([...Array(TRIAL_CREDITS).fill("trial"), "token"]);
    await allEnded({ token }, TRIAL_CREDITS + 1);
    const balance = await eventually(async () => {
      const body = (await call("GET", "/v1/credits/balance", { token })).body;
      return body.held === 0 ? body : undefined;
    }, 30_000, 250);
    expect(balance).toEqual({ trial_credits: 0, token_balance: 2, held: 0, total_available: 2 });

    const entries: any[] = [];
    let pageToken: string | null = null;
    do {
      const query: string = pageToken ? `&page_token=${encodeURIComponent(pageToken)}` : "";
      const page: any = await call("GET", `/v1/credits/ledger?page_size=7${query}`, { token });
      entries.push(...page.body.entries);
      pageToken = page.body.next_page_token;
    } while (pageToken);
    expect(entries.reduce((sum, e) => sum + e.amount, 0)).toBe(balance.total_available);
    expect(entries.filter((e) => e.kind === "grant").map((e) => e.grant_kind).sort()).toEqual(["purchased", "trial"]);
    expect(entries.filter((e) => e.kind === "capture")).toHaveLength(TRIAL_CREDITS + 1);
    // eslint-disable-next-line no-console
    console.log(`top-up: ${TRIAL_CREDITS + 1} jobs paid ${creditTypes.filter((t) => t === "trial").length} with trial credits, then ${creditTypes.filter((t) => t === "token").length} with tokens; the ledger's ${entries.length} entries sum to ${balance.total_available}`);

    // A cancel mid-run captures what the provider had spent (at the free plan's 10,000 micros a
    // credit, rounded up: 1 of the photo job's 2 credits, its spend rising to 18,000 over a
    // minute) and releases the rest.
    const running = await call("POST", "/v1/generations", {
      token,
      body: { input_type: "photo", photo_url: "https://example.com/a.png", prompt: "a slow metered job [fault:slow_ms=60000] [fault:cost_micros=18000]" },
    });
    expect(running.status).toBe(201);
    await eventually(async () => ((await call("GET", `/v1/generations/${running.body.id}`, { token })).body.progress >= 10 ? true : undefined), 30_000, 100);
    const cancelled = await call("POST", `/v1/generations/${running.body.id}/cancel`, { token });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.settlement).toEqual({ outcome: "cancelled_while_processing", rule: "capture_spent", credits_captured: 1, credits_released: 1 });
    const afterCancel = await eventually(async () => {
      const body = (await call("GET", "/v1/credits/balance", { token })).body;
      return body.held === 0 ? body : undefined;
    }, 30_000, 250);
    expect(afterCancel).toEqual({ trial_credits: 0, token_balance: 1, held: 0, total_available: 1 });
    // Newest first: the rest released (+1 available), then the capture of the spent credit (held → captured).
    const newest = (await call("GET", "/v1/credits/ledger?page_size=3", { token })).body.entries;
    expect(newest.slice(0, 2)).toMatchObject([
      { kind: "release", amount: 1, generation_id: running.body.id },
      { kind: "capture", amount: 0, generation_id: running.body.id },
    ]);
    // eslint-disable-next-line no-console
    console.log(`cancel mid-run: ${JSON.stringify(cancelled.body.settlement)}; balance ${afterCancel.total_available}`);
  }, 240_000);

  it("stops everything cleanly on Ctrl-C (SIGINT)", async () => {
    const exited = new Promise<number | null>((resolve) => stack.process.once("exit", (code) => resolve(code)));
    stack.process.kill("SIGINT");
    const code = await exited;
    expect({ code, tail: code === 0 ? "" : stack.output().slice(-2000) }).toEqual({ code: 0, tail: "" });
    expect(stack.output()).toContain("[tally] stopped");
  }, 60_000);
});
