/**
 * Top-ups, voids and the ledger through the gateway, against the real credits, usage and
 * generations services: an admin tops a user up (Idempotency-Key required; a payment's
 * reference grants once whatever the key), the balance shows the tokens, jobs burn trial
 * credits first and then tokens (`credit_type` says which), the ledger lists every movement
 * page by page and sums to the balance, an unused grant voids and a used one refuses.
 */
import { eventually } from "@tally/platform/src/testing";
import { bearer, startTestGateway, type TestGateway } from "./helpers";
import { RealServices, writePlansFile } from "./real-services";

const TRIAL_CREDITS = 2;
const PLANS_YAML = [
  "default_plan: free",
  "guest_plan: guest",
  "plans:",
  "  guest: { trial_credits: 1, limits: { requests_per_minute: 100000 } }",
  `  free: { trial_credits: ${TRIAL_CREDITS}, limits: { requests_per_minute: 100000 } }`,
].join("\n");
const PASSWORD = "correct horse battery";

const plansFile = writePlansFile(PLANS_YAML);
const services = new RealServices(plansFile);
const ADMIN_EMAIL = `admin-${services.suffix}@example.com`;
let gateway: TestGateway;
let admin: Record<string, string>;

beforeAll(async () => {
  const [creditsService, usage] = await Promise.all([services.startCredits({ TALLY_ADMIN_EMAILS: ADMIN_EMAIL }), services.startUsage()]);
  const generations = await services.startGenerations(creditsService.address, usage.address);
  gateway = await startTestGateway({
    CREDITS_GRPC_ADDRESS: creditsService.address, GENERATIONS_GRPC_ADDRESS: generations.address, USAGE_GRPC_ADDRESS: usage.address, PLANS_FILE: plansFile,
    RATE_LIMIT_ANONYMOUS_PER_MINUTE: "100000", RATE_LIMIT_AUTH_PER_MINUTE: "100000",
  });
  admin = bearer((await register(ADMIN_EMAIL)).token);
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await services.stop();
}, 60_000);

async function register(email: string) {
  const answer = await gateway.app.inject({ method: "POST", url: "/v1/auth/register", payload: { email, password: PASSWORD } });
  expect(answer.statusCode).toBe(201);
  return { token: answer.json().access_token as string, id: answer.json().user.id as string };
}

const inject = async (method: "GET" | "POST", url: string, headers: Record<string, string>, payload?: object) => {
  const answer = await gateway.app.inject({ method, url, headers, ...(payload ? { payload } : {}) });
  return { status: answer.statusCode, body: answer.json() };
};

it("tops a user up once per payment, burns trial credits before tokens, and lists a ledger that sums to the balance", async () => {
  const user = await register(`buyer-${services.suffix}@example.com`);
  const grants = `/v1/admin/accounts/${user.id}/grants`;
  const topUp = { kind: "purchased", amount: 3, reference: `pay-${services.suffix}` };

  // The key is required; the same key answers the first answer; another key for the same payment grants nothing new.
  expect(await inject("POST", grants, admin, topUp)).toMatchObject({ status: 400, body: { code: "validation" } });
  const first = await inject("POST", grants, { ...admin, "idempotency-key": "webhook-1" }, topUp);
  expect(first).toMatchObject({ status: 201, body: { grant: { kind: "purchased", amount: 3, remaining_amount: 3, reference: topUp.reference, priority: 2 }, balance: { token_balance: 3 } } });
  const replay = await inject("POST", grants, { ...admin, "idempotency-key": "webhook-1" }, topUp);
  expect(replay).toEqual(first);
  const otherKey = await inject("POST", grants, { ...admin, "idempotency-key": "webhook-2" }, topUp);
  expect(otherKey).toMatchObject({ status: 200, body: { grant: { id: first.body.grant.id } } });
  expect(await inject("POST", grants, { ...admin, "idempotency-key": "webhook-1" }, { ...topUp, amount: 4 })).toMatchObject({ status: 409, body: { code: "idempotency_key_reused" } });
  expect(await inject("POST", grants, { ...admin, "idempotency-key": "webhook-3" }, { ...topUp, amount: 4 })).toMatchObject({ status: 409, body: { code: "conflict" } });
  expect(await inject("POST", grants, { ...bearer(user.token), "idempotency-key": "self-service" }, topUp)).toMatchObject({ status: 403, body: { code: "forbidden" } });
  const balance = await inject("GET", "/v1/credits/balance", bearer(user.token));
  expect(balance.body).toEqual({ trial_credits: TRIAL_CREDITS, token_balance: 3, held: 0, total_available: TRIAL_CREDITS + 3 });

  // Jobs burn the trial credits first, then the tokens.
  const creditTypes: string[] = [];
  for (let i = 0; i < TRIAL_CREDITS + 2; i++) {
    const created = await inject("POST", "/v1/generations", bearer(user.token), { input_type: "text", prompt: `a lantern ${i}` });
    expect(created.status).toBe(201);
    creditTypes.push(created.body.credit_type);
    await eventually(async () => ((await inject("GET", `/v1/generations/${created.body.id}`, bearer(user.token))).body.status === "completed" ? true : undefined), 30_000, 100);
  }
  expect(creditTypes).toEqual([...Array(TRIAL_CREDITS).fill("trial"), "token", "token"]);

  // The ledger, two entries a page, lists every movement newest first and sums to the balance.
  const entries: any[] = [];
  let token: string | null = null;
  do {
    const page: any = await inject("GET", `/v1/credits/ledger?page_size=2${token ? `&page_token=${encodeURIComponent(token)}` : ""}`, bearer(user.token));
    expect(page.status).toBe(200);
    entries.push(...page.body.entries);
    token = page.body.next_page_token;
  } while (token);
  const after = (await inject("GET", "/v1/credits/balance", bearer(user.token))).body;
  expect(after).toEqual({ trial_credits: 0, token_balance: 1, held: 0, total_available: 1 });
  expect(entries.reduce((sum, e) => sum + e.amount, 0)).toBe(after.total_available);
  expect(entries[0]).toMatchObject({ balance_after: after.total_available, held_after: 0 });
  expect(entries.map((e) => e.kind).sort()).toEqual([...Array(TRIAL_CREDITS + 2).fill("hold"), ...Array(TRIAL_CREDITS + 2).fill("capture"), "grant", "grant"].sort());
  expect(entries.find((e) => e.kind === "grant" && e.grant_kind === "purchased")).toMatchObject({ grant_id: first.body.grant.id, amount: 3, reason: topUp.reference });
  expect(entries.filter((e) => e.kind === "hold").every((e) => typeof e.generation_id === "string")).toBe(true);
  const adminView = await inject("GET", `/v1/admin/accounts/${user.id}/ledger?page_size=100`, admin);
  expect(adminView.body.entries).toEqual(entries);
  expect((await inject("GET", `/v1/admin/accounts/${user.id}/ledger`, bearer(user.token))).status).toBe(403);

  // A used grant cannot be voided; an unused one voids whole, with a `void` entry.
  const voidUrl = (grantId: string) => `/v1/admin/accounts/${user.id}/grants/${grantId}/void`;
  expect(await inject("POST", voidUrl(first.body.grant.id), admin, {})).toMatchObject({ status: 409, body: { code: "conflict", remaining_amount: 1 } });
  const promo = await inject("POST", grants, { ...admin, "idempotency-key": "promo-1" }, { kind: "promotional", amount: 5, priority: 50, expires_at: "2099-01-01T00:00:00Z" });
  expect(promo.status).toBe(201);
  const voided = await inject("POST", voidUrl(promo.body.grant.id), admin, { reason: "sent by mistake" });
  expect(voided).toMatchObject({ status: 200, body: { grant: { remaining_amount: 0 }, balance: { token_balance: 1 } } });
  expect(typeof voided.body.grant.voided_at).toBe("string");
  const newest = (await inject("GET", "/v1/credits/ledger?page_size=1", bearer(user.token))).body.entries[0];
  expect(newest).toMatchObject({ kind: "void", amount: -5, grant_id: promo.body.grant.id, reason: "sent by mistake", balance_after: 1 });
  expect((await inject("POST", voidUrl("not-a-grant"), admin, {})).status).toBe(404);
}, 120_000);
