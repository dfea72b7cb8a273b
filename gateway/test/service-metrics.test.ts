/**
 * Every service's `/metrics` endpoint (METRICS_PORT), scraped as Prometheus would, after one
 * generation is created through the gateway over the real credits, usage and generations
 * services (no worker, so the job stays pending and its hold and reservation stay active):
 * each counts its RPCs by method and code and reads its gauges from its database at scrape time.
 */
import { bearer, startTestGateway, type TestGateway } from "./helpers";
import { RealServices, writePlansFile, type Serving } from "./real-services";

const PLANS_YAML = [
  "default_plan: free",
  "guest_plan: guest",
  "plans:",
  "  guest: { trial_credits: 5, limits: { generations_per_day: 10 } }",
  "  free: { trial_credits: 5, limits: { generations_per_period: 10 } }",
].join("\n");
const METRICS = { METRICS_PORT: "0", METRICS_HOST: "127.0.0.1" };

const services = new RealServices(writePlansFile(PLANS_YAML));
let gateway: TestGateway;
const started: Record<"credits" | "usage" | "generations", Serving> = {} as never;

beforeAll(async () => {
  [started.credits, started.usage] = await Promise.all([services.startCredits(METRICS), services.startUsage(METRICS)]);
  started.generations = await services.startGenerations(started.credits.address, started.usage.address, { ...METRICS, WORKER_ENABLED: "false" });
  gateway = await startTestGateway({
    CREDITS_GRPC_ADDRESS: started.credits.address, GENERATIONS_GRPC_ADDRESS: started.generations.address, USAGE_GRPC_ADDRESS: started.usage.address,
  });
  const registered = await gateway.app.inject({ method: "POST", url: "/v1/auth/register", payload: { email: `m-${services.suffix}@example.com`, password: "correct horse battery" } });
  const created = await gateway.app.inject({ method: "POST", url: "/v1/generations", headers: bearer(registered.json().access_token), payload: { input_type: "text", prompt: "p" } });
  expect(created.statusCode).toBe(201);
  // An unknown generation: a NOT_FOUND answer to count.
  await gateway.app.inject({ method: "GET", url: "/v1/generations/00000000-0000-4000-8000-000000000000", headers: bearer(registered.json().access_token) });
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await services.stop();
}, 60_000);

async function scrape(service: keyof typeof started): Promise<string> {
  const answer = await fetch(`http://127.0.0.1:${started[service].metricsPort}/metrics`);
  expect(answer.status).toBe(200);
  expect(answer.headers.get("content-type")).toContain("text/plain");
  return answer.text();
}

/** The value of the sample `name{…labels…}` (labels in any order; others may be present). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const present = Object.entries(labels).every(([key, value]) => (match[2] ?? "").includes(`${key}="${value}"`));
    if (present) return Number(match[3]);
  }
  return undefined;
}

describe("service metrics", () => {
  it("serves /metrics only when METRICS_PORT is set, and nothing else on that port", async () => {
    for (const service of ["credits", "usage", "generations"] as const) expect(started[service].metricsPort).toEqual(expect.any(Number));
    expect((await fetch(`http://127.0.0.1:${started.credits.metricsPort}/other`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${started.credits.metricsPort}/metrics`, { method: "POST" })).status).toBe(405);
  });

  it("counts and times each service's RPCs by method and status code", async () => {
    const credits = await scrape("credits");
    expect(sample(credits, "grpc_server_handled_total", { method: "createHold", code: "OK" })).toBe(1);
    expect(sample(credits, "grpc_server_handled_total", { method: "createAccount", code: "OK" })).toBe(1);
    expect(sample(credits, "grpc_server_handling_seconds_count", { method: "createHold" })).toBe(1);
    // One GetAccount per authenticated request (the gateway's live-account check): the create
    // hands that read to generations, which does not ask credits again.
    expect(sample(credits, "grpc_server_handled_total", { method: "getAccount", code: "OK" })).toBe(2);
    const generations = await scrape("generations");
    expect(sample(generations, "grpc_server_handled_total", { method: "createGeneration", code: "OK" })).toBe(1);
    expect(sample(generations, "grpc_server_handled_total", { method: "getGeneration", code: "NOT_FOUND" })).toBe(1);
    expect(sample(await scrape("usage"), "grpc_server_handled_total", { method: "checkAndReserve", code: "OK" })).toBe(1);
  });

  it("reads each service's gauges from its database at scrape time", async () => {
    const credits = await scrape("credits");
    expect(sample(credits, "credits_active_holds")).toBe(1);
    expect(sample(credits, "db_pool_connections", { state: "idle" })).toEqual(expect.any(Number));
    expect(sample(credits, "db_pool_waiting")).toBe(0);
    expect(sample(credits, "credits_reconciliation_differences")).toBe(0);
    const generations = await scrape("generations");
    expect(sample(generations, "generations_jobs", { status: "pending" })).toBe(1);
    expect(sample(generations, "outbox_backlog")).toEqual(expect.any(Number));
    expect(sample(generations, "outbox_oldest_age_seconds")).toEqual(expect.any(Number));
    const usage = await scrape("usage");
    expect(sample(usage, "usage_active_reservations")).toBe(1);
    expect(sample(usage, "usage_dead_letters")).toBe(0);
    expect(sample(usage, "usage_consumer_messages", { state: "pending" })).toEqual(expect.any(Number));
    expect(sample(usage, "usage_consumer_messages", { state: "redelivered" })).toBe(0);
    expect(sample(usage, "usage_reconciliation_differences")).toBe(0);
    expect(sample(usage, "process_cpu_user_seconds_total")).toEqual(expect.any(Number));
  });
});
