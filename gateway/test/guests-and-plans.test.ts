/**
 * Guests, plans and limits at the gateway, with `inject` against fake services
 * (test/fake-services.ts): X-Guest-ID validation and guest principals, the admin-only plan
 * route, GET /v1/usage/limits and /v1/me limits, sign-up adopting a guest, and the mapping of
 * plan_limit_exceeded / guest_limit_exceeded / unavailable (members and Retry-After).
 */
import { DomainError } from "@tally/platform";
import { credits } from "@tally/contracts";
import { AccessTokens } from "../src/auth/tokens";
import { startFakeServices, type FakeServices } from "./fake-services";
import { bearer, startTestGateway, TEST_JWT_SECRET, type TestGateway } from "./helpers";

const USER_ID = "7b0c7c52-4f0e-4a53-9d43-6d2f1c0b7a11";
const ADMIN_ID = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
const GUEST_ID = "3f2e1d0c-9b8a-4f6e-8d4c-2b1a0f9e8d7c";
let fakes: FakeServices;
let gateway: TestGateway;
let userToken: string;
let adminToken: string;

beforeAll(async () => {
  fakes = await startFakeServices();
  gateway = await startTestGateway({ CREDITS_GRPC_ADDRESS: fakes.address, GENERATIONS_GRPC_ADDRESS: fakes.address, USAGE_GRPC_ADDRESS: fakes.address });
  const tokens = new AccessTokens({ secret: TEST_JWT_SECRET, issuer: "tally", ttlSeconds: 60 });
  fakes.addAccount({ id: USER_ID, email: "u@example.com" });
  fakes.addAccount({ id: ADMIN_ID, email: "admin@example.com", role: credits.Role.ROLE_ADMIN });
  userToken = (await tokens.issue({ accountId: USER_ID, role: "user", email: "u@example.com" })).accessToken;
  adminToken = (await tokens.issue({ accountId: ADMIN_ID, role: "admin", email: "admin@example.com" })).accessToken;
});

afterAll(async () => {
  await gateway.close();
  await fakes.close();
});

const guest = (id: string = GUEST_ID) => ({ "x-guest-id": id });
const callsOf = (method: string) => fakes.calls.filter((call) => call.method === method).map((call) => call.request as Record<string, unknown>);

describe("guests by X-Guest-ID", () => {
  it("refuses an X-Guest-ID that is not a UUID with 400 validation naming the header, before any call", async () => {
    const before = fakes.calls.length;
    for (const value of ["nope", "3f2e1d0c-9b8a-4f6e-8d4c", `${GUEST_ID}x`]) {
      const response = await gateway.app.inject({ method: "GET", url: "/v1/generations", headers: guest(value) });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({ code: "validation", detail: expect.stringContaining("headers.x-guest-id"), errors: [{ field: "headers.x-guest-id" }] });
    }
    expect(fakes.calls.length).toBe(before);
  });

  it("acts for the guest after EnsureGuestAccount: creates, lists and reads limits as the guest", async () => {
    const created = await gateway.app.inject({ method: "POST", url: "/v1/generations", headers: guest(GUEST_ID.toUpperCase()), payload: { input_type: "text", prompt: "p" } });
    expect(created.statusCode).toBe(201);
    expect(created.json().user_id).toBe(GUEST_ID);
    expect(callsOf("ensureGuestAccount").at(-1)).toEqual({ guestId: GUEST_ID });
    expect(callsOf("createGeneration").at(-1)).toMatchObject({ userId: GUEST_ID });
    expect((await gateway.app.inject({ method: "GET", url: "/v1/generations", headers: guest() })).statusCode).toBe(200);

    const limits = await gateway.app.inject({ method: "GET", url: "/v1/usage/limits", headers: guest() });
    expect(limits.statusCode).toBe(200);
    expect(callsOf("listLimits").at(-1)).toEqual({ subject: { id: GUEST_ID, kind: 2, plan: "guest", periodAnchor: expect.any(Date) } });
    expect(limits.json().plan).toBe("guest");
  });

  it("keeps user-only routes for users: a guest gets 401 on /v1/me, balance and the admin route", async () => {
    for (const [method, url] of [["GET", "/v1/me"], ["GET", "/v1/credits/balance"], ["PUT", `/v1/admin/accounts/${USER_ID}/plan`]] as const) {
      const response = await gateway.app.inject({ method, url, headers: guest(), ...(method === "PUT" ? { payload: { plan: "pro" } } : {}) });
      expect([url, response.statusCode, response.json().code]).toEqual([url, 401, "unauthenticated"]);
    }
  });

  it("answers 401 for a guest id credits refuses (adopted, or a user's id), and 401 with neither token nor guest id", async () => {
    const asUser = await gateway.app.inject({ method: "GET", url: "/v1/generations", headers: guest(USER_ID) });
    expect([asUser.statusCode, asUser.json().code]).toEqual([401, "unauthenticated"]);
    expect(asUser.headers["www-authenticate"]).toMatch(/^Bearer/);
    const nobody = await gateway.app.inject({ method: "GET", url: "/v1/usage/limits" });
    expect([nobody.statusCode, nobody.json().code]).toEqual([401, "unauthenticated"]);
  });

  it("lets a bearer token win over X-Guest-ID", async () => {
    const response = await gateway.app.inject({ method: "GET", url: "/v1/usage/limits", headers: { ...bearer(userToken), ...guest("not-a-uuid") } });
    expect(response.statusCode).toBe(200);
    expect(callsOf("listLimits").at(-1)).toMatchObject({ subject: { id: USER_ID, kind: 1, plan: "free" } });
  });
});

describe("plans and limits", () => {
  it("lists the plan, the period and every limit, with requests_per_minute from the gateway's limiter", async () => {
    const response = await gateway.app.inject({ method: "GET", url: "/v1/usage/limits", headers: bearer(userToken) });
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(body).toEqual({
      plan: "free",
      period: { start: "2026-11-01T00:00:00.000Z", end: "2026-12-01T00:00:00.000Z" },
      limits: [
        { name: "generations_per_period", window: "period", limit: 100, used: 7, reserved: 1, remaining: 92, within_limit: true, resets_at: "2026-12-01T00:00:00.000Z" },
        { name: "requests_per_minute", window: "minute", limit: 600, used: expect.any(Number), reserved: 0, remaining: expect.any(Number), within_limit: true, resets_at: expect.any(String) },
      ],
    });
    expect(body.limits[1].used).toBeGreaterThanOrEqual(1);
    expect(body.limits[1].remaining).toBe(600 - body.limits[1].used);
    expect(response.headers["ratelimit-limit"]).toBe("600");
  });

  it("shows the plan, the period and the limits in /v1/me", async () => {
    const me = await gateway.app.inject({ method: "GET", url: "/v1/me", headers: bearer(userToken) });
    expect(me.statusCode).toBe(200);
    expect(me.json()).toMatchObject({ id: USER_ID, plan: "free", period: { start: "2026-11-01T00:00:00.000Z" }, limits: [{ name: "generations_per_period" }, { name: "requests_per_minute" }] });
  });

  it("lets only admins change a plan: 401 anonymous, 403 user, 400 unknown plan, 404 not a UUID, 200 admin", async () => {
    const put = (headers: Record<string, string>, plan: string, id = USER_ID) =>
      gateway.app.inject({ method: "PUT", url: `/v1/admin/accounts/${id}/plan`, headers, payload: { plan } });
    expect((await put({}, "pro")).statusCode).toBe(401);
    const user = await put(bearer(userToken), "pro");
    expect([user.statusCode, user.json().code]).toEqual([403, "forbidden"]);
    const unknown = await put(bearer(adminToken), "platinum");
    expect([unknown.statusCode, unknown.json().code]).toEqual([400, "validation"]);
    expect(unknown.json().detail).toContain("body.plan");
    expect((await put(bearer(adminToken), "pro", "not-a-uuid")).statusCode).toBe(404);
    expect(callsOf("setPlan")).toHaveLength(0);

    const key = { ...bearer(adminToken), "idempotency-key": "upgrade-1" };
    const first = await put(key, "pro");
    const retry = await put(key, "pro");
    expect([first.statusCode, first.json().plan]).toEqual([200, "pro"]);
    const [a, b] = callsOf("setPlan");
    expect(a).toMatchObject({ accountId: USER_ID, plan: "pro" });
    expect(b!.requestId).toBe(a!.requestId);
    expect(retry.statusCode).toBe(200);
    // The gateway limits the user at the new plan at once (pro: 3000 per minute).
    const limits = await gateway.app.inject({ method: "GET", url: "/v1/usage/limits", headers: bearer(userToken) });
    expect(limits.json().plan).toBe("pro");
    expect(limits.headers["ratelimit-limit"]).toBe("3000");
  });

  it("refuses a demoted admin whose token still says admin", async () => {
    fakes.addAccount({ id: ADMIN_ID, email: "admin@example.com", role: credits.Role.ROLE_USER });
    const response = await gateway.app.inject({ method: "PUT", url: `/v1/admin/accounts/${USER_ID}/plan`, headers: bearer(adminToken), payload: { plan: "free" } });
    expect([response.statusCode, response.json().code]).toEqual([403, "forbidden"]);
    fakes.addAccount({ id: ADMIN_ID, email: "admin@example.com", role: credits.Role.ROLE_ADMIN });
  });
});

describe("sign-up with X-Guest-ID", () => {
  it("refuses a bad guest id, and adopts a guest's generations and usage when credits adopted it", async () => {
    const body = { email: "new@example.com", password: "correct horse battery" };
    const bad = await gateway.app.inject({ method: "POST", url: "/v1/auth/register", headers: guest("zzz"), payload: body });
    expect([bad.statusCode, bad.json().code]).toEqual([400, "validation"]);

    const adopted = "8e7d6c5b-4a39-4281-9f0e-1d2c3b4a5f6e";
    fakes.addAccount({ id: adopted, plan: "guest", kind: credits.AccountKind.ACCOUNT_KIND_GUEST });
    const registered = await gateway.app.inject({ method: "POST", url: "/v1/auth/register", headers: guest(adopted), payload: body });
    expect(registered.statusCode).toBe(201);
    const userId = registered.json().user.id;
    expect(callsOf("createAccount").at(-1)).toMatchObject({ adoptGuestId: adopted });
    expect(callsOf("adoptGuestGenerations").at(-1)).toEqual({ guestId: adopted, userId });
    expect(callsOf("adoptGuest").at(-1)).toEqual({ guestId: adopted, user: { id: userId, kind: 1, plan: "free", periodAnchor: expect.any(Date) } });
    // The adopted guest id stops working.
    expect((await gateway.app.inject({ method: "GET", url: "/v1/generations", headers: guest(adopted) })).statusCode).toBe(401);

    // A guest id credits did not adopt for this user (none such) moves nothing.
    const moves = callsOf("adoptGuestGenerations").length;
    const other = await gateway.app.inject({ method: "POST", url: "/v1/auth/register", headers: guest("0a0b0c0d-0e0f-4a1b-8c2d-3e4f5a6b7c8d"), payload: body });
    expect(other.statusCode).toBe(201);
    expect(callsOf("adoptGuestGenerations")).toHaveLength(moves);
  });
});

describe("limit and outage problems", () => {
  const create = (headers: Record<string, string>) =>
    gateway.app.inject({ method: "POST", url: "/v1/generations", headers, payload: { input_type: "text", prompt: "p" } });
  const limitDetails = (resetsAt: string) => ({
    limit_name: "generations_per_period", plan: "free", used: "7", reserved: "0", limit: "7", period_start: "2026-11-01T00:00:00.000Z", resets_at: resetsAt,
  });
  afterEach(() => fakes.failWith("createGeneration", undefined));

  it("answers plan_limit_exceeded 403 with the limit's details as members", async () => {
    fakes.failWith("createGeneration", new DomainError("plan_limit_exceeded", "generations_per_period reached", limitDetails("2026-12-01T00:00:00.000Z")));
    const response = await create(bearer(userToken));
    expect(response.statusCode).toBe(403);
    expect(response.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(response.json()).toMatchObject({
      code: "plan_limit_exceeded", status: 403, limit_name: "generations_per_period", plan: "free", used: 7, reserved: 0, limit: 7,
      period_start: "2026-11-01T00:00:00.000Z", resets_at: "2026-12-01T00:00:00.000Z",
    });
    expect(response.headers["retry-after"]).toBeUndefined();
  });

  it("answers guest_limit_exceeded 429 with Retry-After until resets_at (5 without one)", async () => {
    const resetsAt = new Date(Date.now() + 90_000).toISOString();
    fakes.failWith("createGeneration", new DomainError("guest_limit_exceeded", "generations_per_day reached", { ...limitDetails(resetsAt), limit_name: "generations_per_day", plan: "guest" }));
    const daily = await create(guest());
    expect([daily.statusCode, daily.json().code, daily.json().resets_at]).toEqual([429, "guest_limit_exceeded", resetsAt]);
    expect(Number(daily.headers["retry-after"])).toBeGreaterThanOrEqual(89);
    expect(Number(daily.headers["retry-after"])).toBeLessThanOrEqual(90);

    fakes.failWith("createGeneration", new DomainError("guest_limit_exceeded", "concurrent", { ...limitDetails(""), limit_name: "concurrent_generations" }));
    const concurrent = await create(guest());
    expect([concurrent.statusCode, concurrent.headers["retry-after"], concurrent.json().resets_at]).toEqual([429, "5", null]);
  });

  it("answers unavailable 503 with Retry-After from retry_after_seconds, else 1", async () => {
    fakes.failWith("createGeneration", new DomainError("unavailable", "hashing pool full", { retry_after_seconds: 7 }));
    const busy = await create(bearer(userToken));
    expect([busy.statusCode, busy.json().code, busy.headers["retry-after"]]).toEqual([503, "unavailable", "7"]);
    fakes.failWith("createGeneration", new DomainError("unavailable", "down"));
    const down = await create(bearer(userToken));
    expect([down.statusCode, down.headers["retry-after"]]).toEqual([503, "1"]);
  });
});
