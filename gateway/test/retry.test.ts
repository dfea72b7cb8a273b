/**
 * `POST /v1/generations/{id}/retry` through the gateway in front of the real credits, usage
 * and generations services (in-process, real PostgreSQL and NATS; fault injection fails the
 * jobs whose prompt carries the marker): a retry of a failed job is a free retry up to the
 * plan's free_retries, then charged; a regeneration of a completed job is charged; a replay
 * with the same Idempotency-Key answers the same generation; another user's generation is
 * 404, a pending one 409 `generation_not_retryable`; and the usage log entries
 * (`GET /v1/usage/history`) carry each retry's classification, reason and parent, a free
 * retry with 0 credits.
 */
import { eventually } from "@tally/platform/src/testing";
import { bearer, startTestGateway, type TestGateway } from "./helpers";
import { RealServices, writePlansFile } from "./real-services";

const FAULT_MARKER = "[fault:provider_error]";
const PLANS_YAML = [
  "default_plan: free",
  "guest_plan: guest",
  "plans:",
  "  guest: { trial_credits: 3, limits: { generations_per_day: 10, requests_per_minute: 100000 } }",
  "  free: { trial_credits: 10, free_retries: 1, limits: { generations_per_period: 100, concurrent_generations: 20, requests_per_minute: 100000 } }",
].join("\n");
const UNLIMITED = { RATE_LIMIT_ANONYMOUS_PER_MINUTE: "100000", RATE_LIMIT_AUTH_PER_MINUTE: "100000" };

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const plansFile = writePlansFile(PLANS_YAML);
const services = new RealServices(plansFile);
let gateway: TestGateway;

beforeAll(async () => {
  const [creditsService, usage] = await Promise.all([services.startCredits(), services.startUsage()]);
  // A slow claim loop: a job just created stays pending long enough to be refused a retry.
  const generations = await services.startGenerations(creditsService.address, usage.address, { FAULT_INJECTION_ENABLED: "true", WORKER_POLL_INTERVAL_MS: "2000" });
  gateway = await startTestGateway({
    CREDITS_GRPC_ADDRESS: creditsService.address, GENERATIONS_GRPC_ADDRESS: generations.address, USAGE_GRPC_ADDRESS: usage.address, PLANS_FILE: plansFile, ...UNLIMITED,
  });
}, 90_000);

afterAll(async () => {
  await gateway?.close();
  await services.stop();
}, 60_000);

async function call(method: "GET" | "POST", url: string, headers: Record<string, string>, payload?: object) {
  const answer = await gateway.app.inject({ method, url, headers, ...(payload ? { payload } : {}) });
  return { status: answer.statusCode, body: answer.json() as Json };
}

async function register(name: string): Promise<Record<string, string>> {
  const answer = await call("POST", "/v1/auth/register", {}, { email: `${name}-${services.suffix}@example.com`, password: "correct horse battery" });
  expect(answer.status).toBe(201);
  return bearer(answer.body.access_token);
}

const waitUntilEnded = (headers: Record<string, string>, id: string): Promise<Json> =>
  eventually(async () => {
    const { body } = await call("GET", `/v1/generations/${id}`, headers);
    return ["completed", "failed", "cancelled"].includes(body.status) ? body : undefined;
  }, 30_000, 100);

describe("POST /v1/generations/{id}/retry against the real services", () => {
  it("classifies retries, answers a replay with the same generation, and the usage log says why each was billed", async () => {
    const user = await register("retrier");
    const failing = await call("POST", "/v1/generations", user, { input_type: "text", prompt: `a storm ${FAULT_MARKER}`, style: "ink" });
    expect(failing.status).toBe(201);
    expect(failing.body).toMatchObject({ billing_classification: "original", billing_reason: null, parent_generation_id: null });
    const original = await waitUntilEnded(user, failing.body.id);
    expect(original.status).toBe("failed");

    // A retry of a failed job: free (nothing held), with the same input and its parent.
    const key = { ...user, "idempotency-key": `retry-${services.suffix}` };
    const free = await call("POST", `/v1/generations/${original.id}/retry`, key);
    expect(free.status).toBe(201);
    expect(free.body).toMatchObject({
      status: "pending", input_type: "text", prompt: original.prompt, style: "ink",
      parent_generation_id: original.id, billing_classification: "free_retry", billing_reason: "free retry 1 of 1",
      credit_cost: 0, credit_type: null,
    });
    expect((await call("GET", "/v1/credits/balance", user)).body).toMatchObject({ held: 0, total_available: 10 });
    const replay = await call("POST", `/v1/generations/${original.id}/retry`, key);
    expect(replay).toEqual({ status: 201, body: free.body });
    expect((await call("GET", `/v1/generations/${free.body.id}`, user)).body).toMatchObject({ billing_classification: "free_retry", parent_generation_id: original.id });

    // A retry of the retry belongs to the same job: its one free retry is used up.
    const freeEnded = await waitUntilEnded(user, free.body.id);
    const paid = await call("POST", `/v1/generations/${freeEnded.id}/retry`, user);
    expect(paid.status).toBe(201);
    expect(paid.body).toMatchObject({
      parent_generation_id: free.body.id, billing_classification: "paid_regeneration",
      billing_reason: "retry of a failed generation; the 1 free retry of this job is used up", credit_cost: 1, credit_type: "trial",
    });

    // A new run of a completed job is charged.
    const created = await call("POST", "/v1/generations", user, { input_type: "text", prompt: "a lighthouse" });
    const completed = await waitUntilEnded(user, created.body.id);
    expect(completed.status).toBe("completed");
    const regeneration = await call("POST", `/v1/generations/${completed.id}/retry`, user);
    expect(regeneration.status).toBe(201);
    expect(regeneration.body).toMatchObject({ parent_generation_id: completed.id, billing_classification: "paid_regeneration", billing_reason: "regeneration of a completed generation" });
    expect((await waitUntilEnded(user, regeneration.body.id)).status).toBe("completed");
    await waitUntilEnded(user, paid.body.id);

    // Two originals and three retries ended: five usage log entries, each billed as its generation says.
    const entries = await eventually(async () => {
      const { body } = await call("GET", "/v1/usage/history?months=1&limit=100", user);
      return body.entries.length === 5 ? (body.entries as Json[]) : undefined;
    }, 20_000, 100);
    const entryOf = (id: string) => entries.find((entry) => entry.generation_id === id);
    expect(entryOf(original.id)).toMatchObject({ outcome: "failed", billing_classification: "original", billing_reason: null, parent_generation_id: null });
    expect(entryOf(free.body.id)).toMatchObject({
      outcome: "failed", credits: 0, billing_classification: "free_retry", billing_reason: "free retry 1 of 1", parent_generation_id: original.id,
    });
    expect(entryOf(paid.body.id)).toMatchObject({
      outcome: "failed", billing_classification: "paid_regeneration", billing_reason: "retry of a failed generation; the 1 free retry of this job is used up", parent_generation_id: free.body.id,
    });
    expect(entryOf(regeneration.body.id)).toMatchObject({
      outcome: "completed", billable: true, credits: 1, billing_classification: "paid_regeneration", billing_reason: "regeneration of a completed generation", parent_generation_id: completed.id,
    });
    // Charged: the two completed jobs (the original and its regeneration), 1 credit each; the failed ones gave theirs back.
    expect((await call("GET", "/v1/credits/balance", user)).body).toMatchObject({ held: 0, total_available: 8 });
  }, 120_000);

  it("answers 409 generation_not_retryable while a job is pending, and 404 for another user's generation or a malformed id", async () => {
    const owner = await register("owner");
    const stranger = await register("stranger");
    const created = await call("POST", "/v1/generations", owner, { input_type: "text", prompt: "a slow harbour" });
    expect(created.status).toBe(201);
    const early = await call("POST", `/v1/generations/${created.body.id}/retry`, owner);
    expect(early).toMatchObject({ status: 409, body: { code: "generation_not_retryable", generation_status: "pending", generation_id: created.body.id } });
    const done = await waitUntilEnded(owner, created.body.id);
    const stolen = await call("POST", `/v1/generations/${done.id}/retry`, stranger);
    expect(stolen).toMatchObject({ status: 404, body: { code: "not_found" } });
    expect((await call("POST", "/v1/generations/not-a-uuid/retry", owner)).status).toBe(404);
    expect((await call("POST", `/v1/generations/${done.id}/retry`, { "x-guest-id": crypto.randomUUID() })).status).toBe(404);
  }, 60_000);
});
