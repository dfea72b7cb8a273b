/**
 * Rate limits over real sockets (the client IP is the socket's): per client IP for anonymous
 * traffic and guests, per IP for sign-up and sign-in, per account at its plan's
 * requests_per_minute (a plans file with small limits), the 429 problem and its headers, and
 * two gateways sharing one count through the Redis server at 127.0.0.1:6379; in front of the
 * real credits, usage and generations services (test/real-services.ts).
 */
import type { AddressInfo } from "node:net";
import { randomUUID } from "node:crypto";
import { callUnary } from "@tally/platform";
import { uniqueSuffix } from "@tally/platform/src/testing";
import { AccessTokens } from "../src/auth/tokens";
import { startTestGateway, TEST_JWT_SECRET, type TestGateway } from "./helpers";
import { RealServices, writePlansFile } from "./real-services";

const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const GUEST_ID = randomUUID();
const plansFile = writePlansFile(
  [
    "default_plan: free",
    "guest_plan: guest",
    "plans:",
    "  guest: { trial_credits: 3, limits: { generations_per_day: 3, requests_per_minute: 4 } }",
    "  free: { trial_credits: 10, limits: { generations_per_period: 100, requests_per_minute: 3 } }",
    "  pro: { trial_credits: 10, limits: { generations_per_period: 5000 } }",
  ].join("\n"),
);
const services = new RealServices(plansFile);
const gateways: TestGateway[] = [];
const addresses = { CREDITS_GRPC_ADDRESS: "", GENERATIONS_GRPC_ADDRESS: "", USAGE_GRPC_ADDRESS: "" };
/** A real account: the user whose plan limits its requests, and the credentials that sign in. */
const credentials = { email: `a-${services.suffix}@example.com`, password: "correct horse battery" };
let userToken: string;

beforeAll(async () => {
  const [credits, usage] = await Promise.all([services.startCredits(), services.startUsage()]);
  const generations = await services.startGenerations(credits.address, usage.address);
  Object.assign(addresses, { CREDITS_GRPC_ADDRESS: credits.address, GENERATIONS_GRPC_ADDRESS: generations.address, USAGE_GRPC_ADDRESS: usage.address });
  const client = services.creditsClient(credits.address);
  const request = { requestId: randomUUID(), ...credentials, plan: "", role: 0, adoptGuestId: "" };
  const { account } = await callUnary(client.createAccount.bind(client), request, { timeoutMs: 10_000 });
  const tokens = new AccessTokens({ secret: TEST_JWT_SECRET, issuer: "tally", ttlSeconds: 60 });
  userToken = (await tokens.issue({ accountId: account!.id, role: "user", email: credentials.email })).accessToken;
}, 90_000);

afterAll(async () => {
  await Promise.all(gateways.map((gateway) => gateway.close()));
  await services.stop();
}, 60_000);

/** A gateway listening on 127.0.0.1 in front of the real services; returns its base URL. */
async function listening(env: Record<string, string>): Promise<string> {
  const gateway = await startTestGateway({ ...addresses, PLANS_FILE: plansFile, ...env });
  gateways.push(gateway);
  await gateway.app.listen({ port: 0, host: "127.0.0.1" });
  return `http://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}`;
}

async function call(base: string, method: string, route: string, headers: Record<string, string> = {}, body?: unknown) {
  const response = await fetch(`${base}${route}`, {
    method,
    headers: { ...headers, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text.startsWith("{") ? JSON.parse(text) : text };
}

/** Asserts a 429 rate_limited problem with Retry-After and the RateLimit-* headers. */
function expectRateLimited(response: Awaited<ReturnType<typeof call>>, limit: number) {
  expect([response.status, response.body.code, response.headers.get("content-type")]).toEqual([429, "rate_limited", expect.stringMatching(/^application\/problem\+json/)]);
  const retryAfter = Number(response.headers.get("retry-after"));
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(60);
  expect(response.headers.get("ratelimit-limit")).toBe(String(limit));
  expect(response.headers.get("ratelimit-remaining")).toBe("0");
  expect(Number(response.headers.get("ratelimit-reset"))).toBe(retryAfter);
  expect(response.body).toMatchObject({ status: 429, limit, retry_after_seconds: retryAfter });
}

describe("rate limits on one gateway", () => {
  it("limits anonymous traffic per client IP, never the probes", async () => {
    const base = await listening({ RATE_LIMIT_ANONYMOUS_PER_MINUTE: "3" });
    const first = await call(base, "GET", "/v1/nope");
    expect([first.status, first.headers.get("ratelimit-limit"), first.headers.get("ratelimit-remaining")]).toEqual([404, "3", "2"]);
    await call(base, "GET", "/openapi.json");
    await call(base, "GET", "/v1/generations"); // 401, still counted: it carried no valid token
    expectRateLimited(await call(base, "GET", "/v1/nope"), 3);
    expect((await call(base, "GET", "/healthz")).status).toBe(200);
    expect((await call(base, "GET", "/metrics")).status).toBe(200);
    // A valid bearer token is not anonymous traffic.
    expect((await call(base, "GET", "/v1/credits/balance", { authorization: `Bearer ${userToken}` })).status).toBe(200);
  });

  it("limits sign-up and sign-in together per client IP", async () => {
    const base = await listening({ RATE_LIMIT_AUTH_PER_MINUTE: "2" });
    const newcomer = { email: `b-${services.suffix}@example.com`, password: "correct horse battery" };
    expect((await call(base, "POST", "/v1/auth/login", {}, credentials)).status).toBe(200);
    expect((await call(base, "POST", "/v1/auth/register", {}, newcomer)).status).toBe(201);
    expectRateLimited(await call(base, "POST", "/v1/auth/login", {}, credentials), 2);
  });

  it("limits a user at the plan's requests_per_minute, and a guest at its own and per IP", async () => {
    const base = await listening({ RATE_LIMIT_ANONYMOUS_PER_MINUTE: "6" });
    const user = { authorization: `Bearer ${userToken}` };
    for (let i = 0; i < 3; i++) expect((await call(base, "GET", "/v1/credits/balance", user)).status).toBe(200);
    expectRateLimited(await call(base, "GET", "/v1/generations", user), 3);

    const guest = { "x-guest-id": GUEST_ID };
    for (let i = 0; i < 4; i++) expect((await call(base, "GET", "/v1/generations", guest)).status).toBe(200);
    expectRateLimited(await call(base, "GET", "/v1/generations", guest), 4);
    // Another guest id from the same address: its own count is fresh, the address's is not.
    const other = { "x-guest-id": randomUUID() };
    expect((await call(base, "GET", "/v1/generations", other)).status).toBe(200);
    expectRateLimited(await call(base, "GET", "/v1/generations", other), 6);
  });
});

describe("rate limits shared through Redis", () => {
  it("counts the requests of two gateways sharing REDIS_URL as one", async () => {
    const env = { REDIS_URL, RATE_LIMIT_REDIS_PREFIX: `gw-test-${uniqueSuffix()}:`, RATE_LIMIT_AUTH_PER_MINUTE: "4" };
    const [a, b] = [await listening(env), await listening(env)];
    expect((await call(a, "POST", "/v1/auth/login", {}, credentials)).headers.get("ratelimit-remaining")).toBe("3");
    expect((await call(b, "POST", "/v1/auth/login", {}, credentials)).headers.get("ratelimit-remaining")).toBe("2");
    expect((await call(a, "POST", "/v1/auth/login", {}, credentials)).status).toBe(200);
    expect((await call(b, "POST", "/v1/auth/login", {}, credentials)).status).toBe(200);
    expectRateLimited(await call(a, "POST", "/v1/auth/login", {}, credentials), 4);
    expectRateLimited(await call(b, "POST", "/v1/auth/login", {}, credentials), 4);
    // Without REDIS_URL a replica counts on its own.
    const alone = await listening({ RATE_LIMIT_AUTH_PER_MINUTE: "4" });
    expect((await call(alone, "POST", "/v1/auth/login", {}, credentials)).status).toBe(200);
  });
});
