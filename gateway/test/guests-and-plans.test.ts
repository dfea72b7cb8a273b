/**
 * Guests, plans and limits at the gateway, with `inject` against the real credits, usage and
 * generations services (test/real-services.ts; real PostgreSQL and NATS) and a test plans file
 * with tiny limits: X-Guest-ID validation and guest principals, the admin-only plan and
 * billing-anchor routes, GET /v1/usage/limits and /v1/me limits, sign-up adopting a guest, and the problems
 * plan_limit_exceeded / guest_limit_exceeded / unavailable (members and Retry-After).
 */
import { randomUUID } from "node:crypto";
import { credits } from "@tally/contracts";
import { billingPeriodAt, callUnary } from "@tally/platform";
import { eventually } from "@tally/platform/src/testing";
import { bearer, startTestGateway, type TestGateway } from "./helpers";
import { RealServices, writePlansFile } from "./real-services";

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any
type Headers = Record<string, string>;

const GUEST_GENERATIONS_PER_DAY = 2;
/** A guest's concurrency bites only on the worker-less generations service (its jobs stay pending). */
const PLANS_YAML = [
  "default_plan: free",
  "guest_plan: guest",
  "plans:",
  `  guest: { trial_credits: 5, limits: { generations_per_day: ${GUEST_GENERATIONS_PER_DAY}, concurrent_generations: 1, requests_per_minute: 10000 } }`,
  "  free: { trial_credits: 10, limits: { generations_per_period: 100, requests_per_minute: 600 } }",
  "  tiny: { trial_credits: 10, limits: { generations_per_period: 1, requests_per_minute: 600 } }",
  "  pro: { trial_credits: 10, limits: { generations_per_period: 5000, requests_per_minute: 3000 } }",
].join("\n");
const PASSWORD = "correct horse battery";
const GUEST_ID = randomUUID();

const plansFile = writePlansFile(PLANS_YAML);
const services = new RealServices(plansFile);
const [ADMIN_EMAIL, DEMOTED_EMAIL] = [`admin-${services.suffix}@example.com`, `demoted-${services.suffix}@example.com`];
/** Over the real services; `idle`: generations without a worker; `busy`: credits hashing one password at a time, no queue; `down`: nothing listens. */
const gateways: Record<"main" | "idle" | "busy" | "down", TestGateway> = {} as never;
let creditsClient: credits.CreditsServiceClient;
let stopBusyCredits: () => Promise<void>;
let user: { token: string; id: string };
let adminToken: string;

/** Generous per-IP limits: every request here comes from 127.0.0.1, and rate limits have their own tests. */
const UNLIMITED = { RATE_LIMIT_ANONYMOUS_PER_MINUTE: "100000", RATE_LIMIT_AUTH_PER_MINUTE: "100000" };

async function startServicesAndGateways(): Promise<void> {
  const [mainCredits, busyCredits, usage] = await Promise.all([
    services.startCredits({ TALLY_ADMIN_EMAILS: `${ADMIN_EMAIL},${DEMOTED_EMAIL}` }),
    services.startCredits({ PASSWORD_HASH_CONCURRENCY: "1", PASSWORD_HASH_QUEUE_MAX: "0" }),
    services.startUsage(),
  ]);
  stopBusyCredits = busyCredits.stop;
  const [generations, idleGenerations] = await Promise.all([
    services.startGenerations(mainCredits.address, usage.address),
    services.startGenerations(mainCredits.address, usage.address, { WORKER_ENABLED: "false" }),
  ]);
  creditsClient = services.creditsClient(mainCredits.address);
  const over = (creditsAddress: string, generationsAddress: string) =>
    startTestGateway({ CREDITS_GRPC_ADDRESS: creditsAddress, GENERATIONS_GRPC_ADDRESS: generationsAddress, USAGE_GRPC_ADDRESS: usage.address, DOWNSTREAM_TIMEOUT_MS: "5000", PLANS_FILE: plansFile, ...UNLIMITED });
  [gateways.main, gateways.idle, gateways.busy, gateways.down] = await Promise.all([
    over(mainCredits.address, generations.address),
    over(mainCredits.address, idleGenerations.address),
    over(busyCredits.address, generations.address),
    startTestGateway(),
  ]);
}

beforeAll(async () => {
  await startServicesAndGateways();
  user = await register(gateways.main, `user-${services.suffix}@example.com`);
  adminToken = (await register(gateways.main, ADMIN_EMAIL)).token;
}, 90_000);

afterAll(async () => {
  await Promise.all(Object.values(gateways).map((gateway) => gateway?.close()));
  await services.stop();
}, 60_000);

const guest = (id: string = GUEST_ID) => ({ "x-guest-id": id });
const text = (prompt: string) => ({ input_type: "text", prompt });
const send = (method: "GET" | "POST" | "PUT", url: string, headers: Headers = {}, payload?: object, gateway = gateways.main) =>
  gateway.app.inject({ method, url, headers, ...(payload ? { payload } : {}) });

async function register(gateway: TestGateway, email: string, headers: Headers = {}): Promise<{ token: string; id: string; role: string }> {
  const response = await send("POST", "/v1/auth/register", headers, { email, password: PASSWORD }, gateway);
  expect([email, response.statusCode]).toEqual([email, 201]);
  return { token: response.json().access_token, id: response.json().user.id, role: response.json().user.role };
}

const getAccount = async (accountId: string) => (await callUnary(creditsClient.getAccount.bind(creditsClient), { accountId }, { timeoutMs: 5_000 })).account!;

/** Waits until the generation `id` (seen with `headers`) has ended. */
const waitUntilEnded = (id: string, headers: Headers, gateway = gateways.main) =>
  eventually(async () => {
    const status = (await send("GET", `/v1/generations/${id}`, headers, undefined, gateway)).json().status;
    return ["completed", "failed", "cancelled"].includes(status) ? status : undefined;
  }, 30_000, 100);

describe("guests by X-Guest-ID", () => {
  it("refuses an X-Guest-ID that is not a UUID with 400 validation naming the header, before any call", async () => {
    // On `down` every downstream call would answer 503: a 400 there shows none was made.
    for (const gateway of [gateways.main, gateways.down]) {
      for (const value of ["nope", "3f2e1d0c-9b8a-4f6e-8d4c", `${GUEST_ID}x`]) {
        const response = await send("GET", "/v1/generations", guest(value), undefined, gateway);
        expect(response.statusCode).toBe(400);
        expect(response.json()).toMatchObject({ code: "validation", detail: expect.stringContaining("headers.x-guest-id"), errors: [{ field: "headers.x-guest-id" }] });
      }
    }
  });

  it("acts for the guest after EnsureGuestAccount: creates, lists and reads limits as the guest", async () => {
    const created = await send("POST", "/v1/generations", guest(GUEST_ID.toUpperCase()), text("p"));
    expect(created.statusCode).toBe(201);
    expect(created.json().user_id).toBe(GUEST_ID);
    expect(await getAccount(GUEST_ID)).toMatchObject({ id: GUEST_ID, kind: credits.AccountKind.ACCOUNT_KIND_GUEST, plan: "guest", adoptedBy: "" });
    const list = await send("GET", "/v1/generations", guest());
    expect(list.statusCode).toBe(200);
    expect(list.json().items.map((g: Json) => [g.id, g.user_id])).toEqual([[created.json().id, GUEST_ID]]);

    const limits = await send("GET", "/v1/usage/limits", guest());
    expect(limits.statusCode).toBe(200);
    expect(limits.json().plan).toBe("guest");
    // The guest's limits (a guest subject), not a user's generations_per_period.
    expect(limits.json().limits.map((limit: Json) => limit.name)).toEqual(["generations_per_day", "concurrent_generations", "requests_per_minute"]);
    await waitUntilEnded(created.json().id, guest());
  });

  it("keeps user-only routes for users: a guest gets 401 on /v1/me, balance and the admin route", async () => {
    for (const [method, url] of [["GET", "/v1/me"], ["GET", "/v1/credits/balance"], ["PUT", `/v1/admin/accounts/${user.id}/plan`]] as const) {
      const response = await send(method, url, guest(), method === "PUT" ? { plan: "pro" } : undefined);
      expect([url, response.statusCode, response.json().code]).toEqual([url, 401, "unauthenticated"]);
    }
    expect((await getAccount(user.id)).plan).toBe("free");
  });

  it("answers 401 for a guest id credits refuses (adopted, or a user's id), and 401 with neither token nor guest id", async () => {
    const asUser = await send("GET", "/v1/generations", guest(user.id));
    expect([asUser.statusCode, asUser.json().code]).toEqual([401, "unauthenticated"]);
    expect(asUser.headers["www-authenticate"]).toMatch(/^Bearer/);
    const adoptedId = randomUUID();
    expect((await send("GET", "/v1/generations", guest(adoptedId))).statusCode).toBe(200);
    await register(gateways.main, `adopter-${services.suffix}@example.com`, guest(adoptedId));
    const adopted = await send("GET", "/v1/generations", guest(adoptedId));
    expect([adopted.statusCode, adopted.json().code]).toEqual([401, "unauthenticated"]);
    expect(adopted.headers["www-authenticate"]).toMatch(/^Bearer/);
    const nobody = await send("GET", "/v1/usage/limits");
    expect([nobody.statusCode, nobody.json().code]).toEqual([401, "unauthenticated"]);
  });

  it("lets a bearer token win over X-Guest-ID", async () => {
    const response = await send("GET", "/v1/usage/limits", { ...bearer(user.token), ...guest("not-a-uuid") });
    expect(response.statusCode).toBe(200);
    // The user's subject: plan free and a user's generations_per_period.
    expect(response.json()).toMatchObject({ plan: "free", limits: [{ name: "generations_per_period" }, { name: "requests_per_minute" }] });
  });
});

describe("plans and limits", () => {
  it("lists the plan, the period and every limit, with requests_per_minute from the gateway's limiter", async () => {
    const created = await send("POST", "/v1/generations", bearer(user.token), text("counted"));
    expect(created.statusCode).toBe(201);
    await waitUntilEnded(created.json().id, bearer(user.token));
    const counted = await eventually(async () => {
      const response = await send("GET", "/v1/usage/limits", bearer(user.token));
      return response.json().limits[0].used === 1 ? response : undefined;
    }, 20_000, 100);
    expect(counted.statusCode).toBe(200);
    const body = counted.json();
    const start = (await getAccount(user.id)).currentPeriodStart!.toISOString();
    expect(body).toEqual({
      plan: "free",
      period: { start, end: expect.any(String) },
      limits: [
        { name: "generations_per_period", window: "period", limit: 100, used: 1, reserved: 0, remaining: 99, within_limit: true, resets_at: body.period.end },
        { name: "requests_per_minute", window: "minute", limit: 600, used: expect.any(Number), reserved: 0, remaining: expect.any(Number), within_limit: true, resets_at: expect.any(String) },
      ],
    });
    const periodDays = (Date.parse(body.period.end) - Date.parse(start)) / 86_400_000;
    expect(periodDays).toBeGreaterThanOrEqual(28);
    expect(periodDays).toBeLessThanOrEqual(31);
    expect(body.limits[1].used).toBeGreaterThanOrEqual(1);
    expect(body.limits[1].remaining).toBe(600 - body.limits[1].used);
    expect(counted.headers["ratelimit-limit"]).toBe("600");
  }, 60_000);

  it("shows the plan, the period and the limits in /v1/me", async () => {
    const me = await send("GET", "/v1/me", bearer(user.token));
    expect(me.statusCode).toBe(200);
    const start = (await getAccount(user.id)).currentPeriodStart!.toISOString();
    expect(me.json()).toMatchObject({ id: user.id, plan: "free", period: { start }, limits: [{ name: "generations_per_period" }, { name: "requests_per_minute" }] });
  });

  it("lets only admins change a plan: 401 anonymous, 403 user, 400 unknown plan, 404 not a UUID, 200 admin", async () => {
    const put = (headers: Headers, plan: string, id = user.id) => send("PUT", `/v1/admin/accounts/${id}/plan`, headers, { plan });
    expect((await put({}, "pro")).statusCode).toBe(401);
    const asUser = await put(bearer(user.token), "pro");
    expect([asUser.statusCode, asUser.json().code]).toEqual([403, "forbidden"]);
    const unknown = await put(bearer(adminToken), "platinum");
    expect([unknown.statusCode, unknown.json().code]).toEqual([400, "validation"]);
    expect(unknown.json().detail).toContain("body.plan");
    expect((await put(bearer(adminToken), "pro", "not-a-uuid")).statusCode).toBe(404);
    expect((await getAccount(user.id)).plan).toBe("free"); // none of those changed it

    const key = { ...bearer(adminToken), "idempotency-key": `upgrade-${services.suffix}` };
    const first = await put(key, "pro");
    expect([first.statusCode, first.json().plan]).toEqual([200, "pro"]);
    expect((await getAccount(user.id)).plan).toBe("pro");
    // The gateway limits the user at the new plan at once (pro: 3000 per minute).
    const limits = await send("GET", "/v1/usage/limits", bearer(user.token));
    expect(limits.json().plan).toBe("pro");
    expect(limits.headers["ratelimit-limit"]).toBe("3000");

    // A retry with the key is the same request to credits: it replays, it does not apply again.
    const back = await put(bearer(adminToken), "free");
    expect([back.statusCode, back.json().plan]).toEqual([200, "free"]);
    const retry = await put(key, "pro");
    expect([retry.statusCode, retry.json().plan]).toEqual([200, "pro"]);
    expect((await getAccount(user.id)).plan).toBe("free");
  });

  it("lets only admins re-anchor a billing period; /v1/usage/limits and new generations follow the new anchor at once", async () => {
    const anchored = await register(gateways.main, `anchored-${services.suffix}@example.com`);
    const put = (headers: Headers, body: object, id = anchored.id) => send("PUT", `/v1/admin/accounts/${id}/billing-anchor`, headers, body);
    const limitsOfAnchored = async () => (await send("GET", "/v1/usage/limits", bearer(anchored.token))).json();
    const generate = async (prompt: string) => {
      const created = await send("POST", "/v1/generations", bearer(anchored.token), text(prompt));
      expect(created.statusCode).toBe(201);
      await waitUntilEnded(created.json().id, bearer(anchored.token));
    };
    const created = (await getAccount(anchored.id)).currentPeriodStart!;
    await generate("before re-anchoring");
    await eventually(async () => ((await limitsOfAnchored()).limits[0].used === 1 ? true : undefined), 20_000, 100);

    const past = "2026-01-31T00:00:00Z";
    expect((await put({}, { anchor: past })).statusCode).toBe(401);
    const asUser = await put(bearer(anchored.token), { anchor: past });
    expect([asUser.statusCode, asUser.json().code]).toEqual([403, "forbidden"]);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    for (const body of [{}, { anchor: "yesterday" }, { anchor: "2026-02-30T00:00:00Z" }, { anchor: 1767225600 }, { anchor: future }, { anchor: "1969-12-31T23:00:00Z" }]) {
      const refused = await put(bearer(adminToken), body);
      expect([JSON.stringify(body), refused.statusCode, refused.json().code]).toEqual([JSON.stringify(body), 400, "validation"]);
      expect(refused.headers["content-type"]).toMatch(/^application\/problem\+json/);
    }
    const guestId = randomUUID();
    expect((await send("GET", "/v1/usage/limits", guest(guestId))).statusCode).toBe(200); // credits creates the guest's account
    const ofGuest = await put(bearer(adminToken), { anchor: past }, guestId);
    expect([ofGuest.statusCode, ofGuest.json().code]).toEqual([400, "validation"]);
    expect((await put(bearer(adminToken), { anchor: past }, "not-a-uuid")).statusCode).toBe(404);
    expect((await put(bearer(adminToken), { anchor: past }, randomUUID())).statusCode).toBe(404);
    expect((await getAccount(anchored.id)).currentPeriodStart).toEqual(created); // none of those moved it

    // Re-anchored now: the generation completed before lies outside the new period, so nothing is used in it.
    const anchor = new Date();
    const key = { ...bearer(adminToken), "idempotency-key": `anchor-${services.suffix}` };
    const first = await put(key, { anchor: anchor.toISOString().replace("Z", "+00:00") });
    expect([first.statusCode, first.json().current_period_start]).toEqual([200, anchor.toISOString()]);
    expect((await getAccount(anchored.id)).currentPeriodStart).toEqual(anchor);
    const limits = await limitsOfAnchored();
    expect(limits.period).toEqual({ start: anchor.toISOString(), end: billingPeriodAt(anchor, anchor).end.toISOString() });
    expect(limits.limits[0]).toMatchObject({ name: "generations_per_period", used: 0, reserved: 0, resets_at: limits.period.end });
    // A retry with the key replays; the same key with another anchor is a conflict.
    expect((await put(key, { anchor: anchor.toISOString() })).json()).toEqual(first.json());
    const reused = await put(key, { anchor: past });
    expect([reused.statusCode, reused.json().code]).toEqual([409, "idempotency_key_reused"]);

    // generations reads the new anchor from credits: the next generation counts in the new period.
    await generate("after re-anchoring");
    const after = await eventually(async () => {
      const current = await limitsOfAnchored();
      return current.limits[0].used === 1 ? current : undefined;
    }, 20_000, 100);
    expect(after.period).toEqual(limits.period);
  }, 60_000);

  it("refuses a demoted admin whose token still says admin", async () => {
    const demoted = await register(gateways.main, DEMOTED_EMAIL);
    expect(demoted.role).toBe("admin"); // TALLY_ADMIN_EMAILS
    const login = await send("POST", "/v1/auth/login", {}, { email: DEMOTED_EMAIL, password: PASSWORD });
    expect(login.statusCode).toBe(200);
    const oldToken = login.json().access_token;
    const request = { requestId: randomUUID(), email: DEMOTED_EMAIL, role: credits.Role.ROLE_USER };
    await callUnary(creditsClient.setRole.bind(creditsClient), request, { timeoutMs: 5_000 });
    const response = await send("PUT", `/v1/admin/accounts/${user.id}/plan`, bearer(oldToken), { plan: "pro" });
    expect([response.statusCode, response.json().code]).toEqual([403, "forbidden"]);
    expect((await getAccount(user.id)).plan).toBe("free");
  });
});

describe("sign-up with X-Guest-ID", () => {
  it("refuses a bad guest id, and adopts a guest's generations and usage when credits adopted it", async () => {
    const bad = await send("POST", "/v1/auth/register", guest("zzz"), { email: `bad-${services.suffix}@example.com`, password: PASSWORD });
    expect([bad.statusCode, bad.json().code]).toEqual([400, "validation"]);
    expect((await send("POST", "/v1/auth/login", {}, { email: `bad-${services.suffix}@example.com`, password: PASSWORD })).statusCode).toBe(401);

    const adopted = randomUUID();
    const job = await send("POST", "/v1/generations", guest(adopted), text("before sign-up"));
    expect(job.statusCode).toBe(201);
    await waitUntilEnded(job.json().id, guest(adopted));
    const newcomer = await register(gateways.main, `new-${services.suffix}@example.com`, guest(adopted));
    expect((await getAccount(adopted)).adoptedBy).toBe(newcomer.id); // CreateAccount adopted it
    const history = await send("GET", "/v1/generations", bearer(newcomer.token)); // AdoptGuestGenerations
    expect(history.json().items.map((g: Json) => [g.id, g.user_id])).toEqual([[job.json().id, newcomer.id]]);
    await eventually(async () => { // usage's AdoptGuest: the guest's generation counts in the user's period
      const limits = (await send("GET", "/v1/usage/limits", bearer(newcomer.token))).json();
      return limits.plan === "free" && limits.limits[0].used === 1 ? true : undefined;
    }, 20_000, 100);
    // The adopted guest id stops working.
    expect((await send("GET", "/v1/generations", guest(adopted))).statusCode).toBe(401);

    // A guest id credits did not adopt for this user (none such) moves nothing.
    const other = await register(gateways.main, `other-${services.suffix}@example.com`, guest(randomUUID()));
    expect((await send("GET", "/v1/generations", bearer(other.token))).json()).toMatchObject({ items: [], total: 0 });
    expect((await send("GET", "/v1/generations", bearer(newcomer.token))).json().total).toBe(1);
  }, 60_000);
});

describe("limit and outage problems", () => {
  it("answers plan_limit_exceeded 403 with the limit's details as members", async () => {
    const tiny = await register(gateways.main, `tiny-${services.suffix}@example.com`);
    await callUnary(creditsClient.setPlan.bind(creditsClient), { requestId: randomUUID(), accountId: tiny.id, plan: "tiny" }, { timeoutMs: 5_000 });
    expect((await send("POST", "/v1/generations", bearer(tiny.token), text("the one"))).statusCode).toBe(201);
    const response = await send("POST", "/v1/generations", bearer(tiny.token), text("one too many"));
    expect(response.statusCode).toBe(403);
    expect(response.headers["content-type"]).toMatch(/^application\/problem\+json/);
    const periodStart = (await getAccount(tiny.id)).currentPeriodStart!.toISOString();
    const body = response.json();
    expect(body).toMatchObject({
      code: "plan_limit_exceeded", status: 403, limit_name: "generations_per_period", plan: "tiny", used: expect.any(Number), reserved: expect.any(Number), limit: 1,
      period_start: periodStart, resets_at: expect.any(String),
    });
    expect(body.used + body.reserved).toBe(1);
    expect(Date.parse(body.resets_at)).toBeGreaterThan(Date.parse(periodStart));
    expect(response.headers["retry-after"]).toBeUndefined();
  });

  it("answers guest_limit_exceeded 429 with Retry-After until resets_at (5 without one)", async () => {
    const daily = guest(randomUUID());
    for (let i = 0; i < GUEST_GENERATIONS_PER_DAY; i++) {
      const created = await send("POST", "/v1/generations", daily, text(`guest ${i}`));
      expect(created.statusCode).toBe(201);
      await waitUntilEnded(created.json().id, daily);
      await eventually(async () => { // usage has seen it end, so concurrency never bites first
        const limits = (await send("GET", "/v1/usage/limits", daily)).json().limits;
        return limits.find((limit: Json) => limit.name === "concurrent_generations").used === 0 ? true : undefined;
      }, 20_000, 100);
    }
    const refused = await send("POST", "/v1/generations", daily, text("one too many"));
    const answeredAt = Date.now();
    expect([refused.statusCode, refused.json().code, refused.json().limit_name, refused.json().plan]).toEqual([429, "guest_limit_exceeded", "generations_per_day", "guest"]);
    const untilReset = (Date.parse(refused.json().resets_at) - answeredAt) / 1000;
    expect(untilReset).toBeGreaterThan(0);
    expect(Number(refused.headers["retry-after"])).toBeGreaterThanOrEqual(Math.floor(untilReset) - 1);
    expect(Number(refused.headers["retry-after"])).toBeLessThanOrEqual(Math.ceil(untilReset) + 1);

    // Without a worker the first job stays pending, so a second one meets concurrent_generations.
    const busy = guest(randomUUID());
    expect((await send("POST", "/v1/generations", busy, text("pending"), gateways.idle)).statusCode).toBe(201);
    const concurrent = await send("POST", "/v1/generations", busy, text("one more"), gateways.idle);
    expect([concurrent.statusCode, concurrent.json().code, concurrent.json().limit_name]).toEqual([429, "guest_limit_exceeded", "concurrent_generations"]);
    expect([concurrent.headers["retry-after"], concurrent.json().resets_at]).toEqual(["5", null]);
  }, 60_000);

  it("answers unavailable 503 with Retry-After from retry_after_seconds, else 1", async () => {
    const emails = Array.from({ length: 8 }, (_, i) => `crowd-${i}-${services.suffix}@example.com`);
    const answers = await Promise.all(emails.map((email) => send("POST", "/v1/auth/register", {}, { email, password: PASSWORD }, gateways.busy)));
    const refused = emails.filter((_, i) => answers[i]!.statusCode !== 201);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused.length).toBeLessThan(emails.length);
    for (const answer of answers.filter((a) => a.statusCode !== 201)) {
      expect([answer.statusCode, answer.json().code, answer.headers["retry-after"]]).toEqual([503, "unavailable", "1"]);
    }
    for (const email of refused) {
      const login = await send("POST", "/v1/auth/login", {}, { email, password: PASSWORD }, gateways.busy);
      expect([email, login.statusCode]).toEqual([email, 401]); // no account was made for it
    }

    await stopBusyCredits();
    const down = await send("POST", "/v1/auth/register", {}, { email: `late-${services.suffix}@example.com`, password: PASSWORD }, gateways.busy);
    expect([down.statusCode, down.json().code, down.headers["retry-after"]]).toEqual([503, "unavailable", "1"]);
  }, 60_000);
});
