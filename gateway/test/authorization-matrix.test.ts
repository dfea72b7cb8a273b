/**
 * The authorization matrix: every route of the OpenAPI document, called by each kind of caller
 * (anonymous, a guest, user A, user B, an admin) with a valid request, against the real
 * credits, usage and generations services, answers the status written here for that caller.
 * Resources in paths belong to user A (its completed generation, its account), so the matrix
 * shows that only their owner (or, for admin routes, an admin) reaches them and everyone else
 * gets 401, 403 or 404 (INV-7: another user's object is `not_found`). A route added to the
 * gateway without a row here, or a row for a route that is gone, fails the test; so does any
 * error answer that is not problem+json with a `code`.
 */
import { randomUUID } from "node:crypto";
import { eventually } from "@tally/platform/src/testing";
import { bearer, startTestGateway, type TestGateway } from "./helpers";
import { RealServices, writePlansFile } from "./real-services";

const PLANS_YAML = [
  "default_plan: free",
  "guest_plan: guest",
  "plans:",
  "  guest: { trial_credits: 50, limits: { generations_per_day: 100, requests_per_minute: 100000 } }",
  "  free: { trial_credits: 50, limits: { generations_per_period: 100, requests_per_minute: 100000 } }",
  "  pro: { trial_credits: 50, limits: { generations_per_period: 1000, requests_per_minute: 100000 } }",
].join("\n");
const PASSWORD = "correct horse battery";
const UNLIMITED = { RATE_LIMIT_ANONYMOUS_PER_MINUTE: "100000", RATE_LIMIT_AUTH_PER_MINUTE: "100000" };

const CALLERS = ["anonymous", "guest", "userA", "userB", "admin"] as const;
type Caller = (typeof CALLERS)[number];
type Statuses = Record<Caller, number>;

/** What a row needs to build its request: user A's ids and a fresh suffix. */
interface Fixture {
  userA: { id: string; email: string };
  /** An account only the admin-delete row deletes. */
  victimId: string;
  generationA: string;
  /** An unused purchased grant of user A (the void row voids it). */
  grantA: string;
  unique(): string;
}

interface Row {
  /** "METHOD /path/{param}" as in the OpenAPI document. */
  route: string;
  /** The concrete URL (path parameters name user A's objects). */
  url(f: Fixture): string;
  /** A valid body, when the route takes one. */
  body?(f: Fixture): object;
  /** Headers the route needs besides the caller's (e.g. a required Idempotency-Key). */
  headers?(f: Fixture): Record<string, string>;
  /** Runs before the row's calls (e.g. waits until the callers' jobs have ended). */
  before?(): Promise<void>;
  expected: Statuses;
}

const all = (status: number): Statuses => ({ anonymous: status, guest: status, userA: status, userB: status, admin: status });
/** Bearer-only routes: 401 for anonymous and guests. */
const usersOnly = (forUsers: Omit<Statuses, "anonymous" | "guest">): Statuses => ({ anonymous: 401, guest: 401, ...forUsers });
/** A's generation: only A reaches it; a guest, B and an admin get 404 (not another's object), anonymous 401. */
const ownerOnly = (forOwner: number): Statuses => ({ anonymous: 401, guest: 404, userA: forOwner, userB: 404, admin: 404 });

const MATRIX: Row[] = [
  { route: "GET /healthz", url: () => "/healthz", expected: all(200) },
  { route: "GET /readyz", url: () => "/readyz", expected: all(200) },
  // Sign-in takes only the body: whoever calls, A's credentials sign A in.
  { route: "POST /v1/auth/login", url: () => "/v1/auth/login", body: (f) => ({ email: f.userA.email, password: PASSWORD }), expected: all(200) },
  { route: "GET /v1/me", url: () => "/v1/me", expected: usersOnly({ userA: 200, userB: 200, admin: 200 }) },
  { route: "GET /v1/credits/balance", url: () => "/v1/credits/balance", expected: usersOnly({ userA: 200, userB: 200, admin: 200 }) },
  { route: "GET /v1/usage/limits", url: () => "/v1/usage/limits", expected: { ...all(200), anonymous: 401 } },
  { route: "GET /v1/usage/analytics", url: () => "/v1/usage/analytics", expected: { ...all(200), anonymous: 401 } },
  { route: "GET /v1/usage/history", url: () => "/v1/usage/history", expected: { ...all(200), anonymous: 401 } },
  { route: "GET /v1/usage/summary", url: () => "/v1/usage/summary", expected: { ...all(200), anonymous: 401 } },
  { route: "GET /v1/generations", url: () => "/v1/generations", expected: { ...all(200), anonymous: 401 } },
  { route: "GET /v1/generations/{id}", url: (f) => `/v1/generations/${f.generationA}`, expected: ownerOnly(200) },
  { route: "GET /v1/generations/{id}/output", url: (f) => `/v1/generations/${f.generationA}/output`, expected: ownerOnly(200) },
  // A's generation has completed: its owner gets one event and the stream's end.
  { route: "GET /v1/generations/{id}/events", url: (f) => `/v1/generations/${f.generationA}/events`, expected: ownerOnly(200) },
  // A's generation has completed: its owner reaches it and learns it can no longer be cancelled.
  { route: "POST /v1/generations/{id}/cancel", url: (f) => `/v1/generations/${f.generationA}/cancel`, expected: ownerOnly(409) },
  // A's generation has completed: its owner regenerates it (a paid_regeneration), nobody else finds it.
  { route: "POST /v1/generations/{id}/retry", url: (f) => `/v1/generations/${f.generationA}/retry`, expected: ownerOnly(201) },
  { route: "POST /v1/generations", url: () => "/v1/generations", body: () => ({ input_type: "text", prompt: "a lighthouse" }), expected: { ...all(201), anonymous: 401 } },
  {
    route: "PUT /v1/admin/accounts/{user_id}/plan",
    url: (f) => `/v1/admin/accounts/${f.userA.id}/plan`,
    body: () => ({ plan: "pro" }),
    expected: usersOnly({ userA: 403, userB: 403, admin: 200 }),
  },
  {
    route: "PUT /v1/admin/accounts/{user_id}/billing-anchor",
    url: (f) => `/v1/admin/accounts/${f.userA.id}/billing-anchor`,
    body: () => ({ anchor: "2026-01-31T00:00:00.000Z" }),
    expected: usersOnly({ userA: 403, userB: 403, admin: 200 }),
  },
  {
    route: "GET /v1/admin/users/{user_id}/usage",
    url: (f) => `/v1/admin/users/${f.userA.id}/usage`,
    expected: usersOnly({ userA: 403, userB: 403, admin: 200 }),
  },
  { route: "GET /v1/admin/usage/analytics", url: () => "/v1/admin/usage/analytics", expected: usersOnly({ userA: 403, userB: 403, admin: 200 }) },
  { route: "GET /v1/credits/ledger", url: () => "/v1/credits/ledger", expected: usersOnly({ userA: 200, userB: 200, admin: 200 }) },
  { route: "GET /v1/admin/accounts/{user_id}/ledger", url: (f) => `/v1/admin/accounts/${f.userA.id}/ledger`, expected: usersOnly({ userA: 403, userB: 403, admin: 200 }) },
  {
    route: "POST /v1/admin/accounts/{user_id}/grants",
    url: (f) => `/v1/admin/accounts/${f.userA.id}/grants`,
    headers: (f) => ({ "idempotency-key": f.unique() }),
    body: () => ({ kind: "promotional", amount: 3 }),
    expected: usersOnly({ userA: 403, userB: 403, admin: 201 }),
  },
  {
    route: "POST /v1/admin/accounts/{user_id}/grants/{grant_id}/void",
    url: (f) => `/v1/admin/accounts/${f.userA.id}/grants/${f.grantA}/void`,
    body: () => ({ reason: "refunded" }),
    expected: usersOnly({ userA: 403, userB: 403, admin: 200 }),
  },
  { route: "GET /v1/admin/reconciliation", url: () => "/v1/admin/reconciliation", expected: usersOnly({ userA: 403, userB: 403, admin: 200 }) },
  // Deleting accounts comes late: an admin deletes a fourth account; then each caller deletes
  // itself (once its jobs have ended: an account with credits still held cannot be deleted).
  {
    route: "DELETE /v1/admin/accounts/{user_id}",
    url: (f) => `/v1/admin/accounts/${f.victimId}`,
    expected: usersOnly({ userA: 403, userB: 403, admin: 204 }),
  },
  { route: "DELETE /v1/me", url: () => "/v1/me", before: () => jobsEnded(), expected: usersOnly({ userA: 204, userB: 204, admin: 204 }) },
  // Last: a guest's sign-up adopts the guest (its id stops working), so no row may follow it.
  { route: "POST /v1/auth/register", url: () => "/v1/auth/register", body: (f) => ({ email: `new-${f.unique()}@example.com`, password: PASSWORD }), expected: all(201) },
];

const plansFile = writePlansFile(PLANS_YAML);
const services = new RealServices(plansFile);
const ADMIN_EMAIL = `admin-${services.suffix}@example.com`;
let gateway: TestGateway;
const headers: Record<Caller, Record<string, string>> = { anonymous: {}, guest: { "x-guest-id": randomUUID() }, userA: {}, userB: {}, admin: {} };
let fixture: Fixture;

beforeAll(async () => {
  const [creditsService, usage] = await Promise.all([services.startCredits({ TALLY_ADMIN_EMAILS: ADMIN_EMAIL }), services.startUsage()]);
  const generations = await services.startGenerations(creditsService.address, usage.address);
  gateway = await startTestGateway({
    CREDITS_GRPC_ADDRESS: creditsService.address, GENERATIONS_GRPC_ADDRESS: generations.address, USAGE_GRPC_ADDRESS: usage.address, PLANS_FILE: plansFile, ...UNLIMITED,
  });
  const register = async (email: string) => {
    const answer = await gateway.app.inject({ method: "POST", url: "/v1/auth/register", payload: { email, password: PASSWORD } });
    expect([email, answer.statusCode]).toEqual([email, 201]);
    return { token: answer.json().access_token as string, id: answer.json().user.id as string, email };
  };
  const [userA, userB, admin] = [await register(`a-${services.suffix}@example.com`), await register(`b-${services.suffix}@example.com`), await register(ADMIN_EMAIL)];
  const victim = await register(`victim-${services.suffix}@example.com`);
  Object.assign(headers, { userA: bearer(userA.token), userB: bearer(userB.token), admin: bearer(admin.token) });
  const created = await gateway.app.inject({ method: "POST", url: "/v1/generations", headers: headers.userA, payload: { input_type: "text", prompt: "a harbour" } });
  expect(created.statusCode).toBe(201);
  const generationA = created.json().id as string;
  await eventually(async () => {
    const status = (await gateway.app.inject({ method: "GET", url: `/v1/generations/${generationA}`, headers: headers.userA })).json().status;
    return status === "completed" ? status : undefined;
  }, 30_000, 100);
  const granted = await gateway.app.inject({
    method: "POST", url: `/v1/admin/accounts/${userA.id}/grants`, headers: { ...headers.admin, "idempotency-key": `grant-${services.suffix}` }, payload: { kind: "purchased", amount: 5, priority: 9 },
  });
  expect(granted.statusCode).toBe(201);
  let counter = 0;
  fixture = { userA: { id: userA.id, email: userA.email }, victimId: victim.id, generationA, grantA: granted.json().grant.id, unique: () => `${services.suffix}-${(counter += 1)}` };
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await services.stop();
}, 60_000);

/** Resolves once no generation of user A, user B or the admin is pending or processing. */
async function jobsEnded(): Promise<void> {
  for (const caller of ["userA", "userB", "admin"] as const) {
    await eventually(async () => {
      const items = (await gateway.app.inject({ method: "GET", url: "/v1/generations?limit=100", headers: headers[caller] })).json().items as { status: string }[];
      return items.every((g) => ["completed", "failed", "cancelled"].includes(g.status)) ? true : undefined;
    }, 30_000, 100);
  }
}

describe("the authorization matrix", () => {
  it("has one row for every route of the OpenAPI document, and none for a route that is gone", () => {
    const document = (gateway.app as unknown as { swagger(): { paths: Record<string, Record<string, unknown>> } }).swagger();
    const documented = Object.entries(document.paths).flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`));
    expect(MATRIX.map((row) => row.route).sort()).toEqual([...documented].sort());
  });

  it("answers each caller on each route with the status the matrix gives, and every error as problem+json", async () => {
    const actual: Record<string, Statuses> = {};
    const expected: Record<string, Statuses> = {};
    const badErrors: string[] = [];
    for (const row of MATRIX) {
      await row.before?.();
      expected[row.route] = row.expected;
      actual[row.route] = {} as Statuses;
      for (const caller of CALLERS) {
        const [method, url] = [row.route.split(" ")[0] as "GET" | "POST" | "PUT" | "DELETE", row.url(fixture)];
        const answer = await gateway.app.inject({ method, url, headers: { ...headers[caller], ...row.headers?.(fixture) }, ...(row.body ? { payload: row.body(fixture) } : {}) });
        actual[row.route]![caller] = answer.statusCode;
        if (answer.statusCode >= 400) {
          const problem = answer.headers["content-type"]?.toString().startsWith("application/problem+json") ? answer.json() : null;
          if (typeof problem?.code !== "string") badErrors.push(`${row.route} as ${caller}: ${answer.statusCode} ${answer.headers["content-type"]}`);
        }
      }
    }
    expect(actual).toEqual(expected);
    expect(badErrors).toEqual([]);
  });
});
