/**
 * Fast tests of the HTTP surface with Fastify's `inject`, no services running: auth, request
 * validation, error mapping of framework errors and of a service that is down, ops routes
 * and the OpenAPI document.
 */
import { SignJWT } from "jose";
import { AccessTokens } from "../src/auth/tokens";
import { bearer, startTestGateway, TEST_JWT_SECRET, type TestGateway } from "./helpers";

const USER_ID = "7b0c7c52-4f0e-4a53-9d43-6d2f1c0b7a11";
let gateway: TestGateway;
let token: string;

beforeAll(async () => {
  gateway = await startTestGateway({ DOWNSTREAM_TIMEOUT_MS: "2000", READINESS_TIMEOUT_MS: "500", BODY_LIMIT_BYTES: "1024" });
  const tokens = new AccessTokens({ secret: TEST_JWT_SECRET, issuer: "tally", ttlSeconds: 60 });
  token = (await tokens.issue({ accountId: USER_ID, role: "user", email: "a@example.com" })).accessToken;
});

afterAll(async () => {
  await gateway.close();
});

function expectProblem(response: { statusCode: number; headers: Record<string, unknown>; json(): unknown }, status: number, code: string) {
  expect(response.statusCode).toBe(status);
  expect(String(response.headers["content-type"])).toMatch(/^application\/problem\+json/);
  const body = response.json() as Record<string, unknown>;
  expect(body).toMatchObject({ status, code, type: expect.stringContaining(code), title: expect.any(String), detail: expect.any(String) });
  return body;
}

describe("authentication", () => {
  it("answers 401 with a Bearer challenge without a token", async () => {
    const response = await gateway.app.inject({ method: "GET", url: "/v1/me" });
    const problem = expectProblem(response, 401, "unauthenticated");
    expect(response.headers["www-authenticate"]).toMatch(/^Bearer/);
    expect(problem).not.toHaveProperty("trace_id"); // tracing is off here
  });

  it("answers 401 for a malformed header, a garbage token, a wrong signature, a wrong issuer and an expired token", async () => {
    const key = new TextEncoder().encode(TEST_JWT_SECRET);
    const otherKey = new TextEncoder().encode("another-secret-another-secret-another-secret");
    const now = Math.floor(Date.now() / 1000);
    const sign = (k: Uint8Array, issuer: string, exp: number) =>
      new SignJWT({ role: "user", email: "a@example.com" }).setProtectedHeader({ alg: "HS256" }).setSubject(USER_ID).setIssuer(issuer).setExpirationTime(exp).sign(k);
    const unsigned = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from(JSON.stringify({ sub: USER_ID, role: "user", email: "x", iss: "tally", exp: now + 60 })).toString("base64url")}.`;
    const headers = [
      { authorization: `Basic ${Buffer.from("a:b").toString("base64")}` },
      bearer("not-a-jwt"),
      bearer(await sign(otherKey, "tally", now + 60)),
      bearer(await sign(key, "someone-else", now + 60)),
      bearer(await sign(key, "tally", now - 10)),
      bearer(unsigned),
    ];
    for (const header of headers) {
      const response = await gateway.app.inject({ method: "GET", url: "/v1/credits/balance", headers: header });
      expectProblem(response, 401, "unauthenticated");
      expect(response.headers["www-authenticate"]).toMatch(/^Bearer/);
    }
    const expired = await gateway.app.inject({ method: "GET", url: "/v1/me", headers: bearer(await sign(key, "tally", now - 10)) });
    expect(expired.json().detail).toMatch(/expired/);
  });

  it("checks the token before the body, so an anonymous bad body is 401", async () => {
    const response = await gateway.app.inject({ method: "POST", url: "/v1/generations", payload: { input_type: "photo" } });
    expectProblem(response, 401, "unauthenticated");
  });
});

const post = (url: string, payload: unknown, headers: Record<string, string> = bearer(token)) =>
  gateway.app.inject({ method: "POST", url, payload: payload as object, headers });

describe("request validation", () => {

  it("names the missing field for photo without photo_url and address without address", async () => {
    const photo = expectProblem(await post("/v1/generations", { input_type: "photo", prompt: "x" }), 400, "validation");
    expect(photo.detail).toContain("body.photo_url");
    const address = expectProblem(await post("/v1/generations", { input_type: "address" }), 400, "validation");
    expect(address.detail).toContain("body.address");
    const text = expectProblem(await post("/v1/generations", { input_type: "text" }), 400, "validation");
    expect(text.detail).toContain("body.prompt");
    const kind = expectProblem(await post("/v1/generations", { input_type: "video" }), 400, "validation");
    expect(kind.detail).toContain("body.input_type");
    const url = expectProblem(await post("/v1/generations", { input_type: "photo", photo_url: "javascript:alert(1)" }), 400, "validation");
    expect(url.detail).toContain("body.photo_url");
  });

  it("rejects a bad register body and a bad Idempotency-Key", async () => {
    const email = expectProblem(await post("/v1/auth/register", { email: "nope", password: "long enough" }, {}), 400, "validation");
    expect(email.detail).toContain("body.email");
    const password = expectProblem(await post("/v1/auth/register", { email: "a@example.com", password: "short" }, {}), 400, "validation");
    expect(password.detail).toContain("body.password");
    const key = expectProblem(
      await post("/v1/auth/register", { email: "a@example.com", password: "long enough" }, { "idempotency-key": "k".repeat(201) }),
      400,
      "validation",
    );
    expect(key.detail).toContain("headers.idempotency-key");
  });

  it("rejects NUL and other C0 control characters in every string field, naming it (tab, CR, LF allowed in free text)", async () => {
    const credentials = { email: "a@example.com", password: "long enough" };
    const cases: [string, Record<string, unknown>, string, Record<string, string>?][] = [
      ["/v1/auth/login", { ...credentials, email: "a\u0000@example.com" }, "body.email", {}],
      ["/v1/auth/login", { ...credentials, password: "long\u0000enough" }, "body.password", {}],
      ["/v1/auth/register", { ...credentials, email: "a\u0000b@example.com" }, "body.email", {}],
      ["/v1/auth/register", { ...credentials, password: "long\u001benough" }, "body.password", {}],
      ["/v1/auth/register", { ...credentials, password: "long\tenough" }, "body.password", {}],
      ["/v1/generations", { input_type: "text", prompt: "a lighthouse\u0000" }, "body.prompt"],
      ["/v1/generations", { input_type: "text", prompt: "a lighthouse", style: "ink\u0007" }, "body.style"],
      ["/v1/generations", { input_type: "address", address: "1 Main St\u0000" }, "body.address"],
      ["/v1/generations", { input_type: "photo", photo_url: "https://example.com/a\u0000.jpg" }, "body.photo_url"],
    ];
    for (const [url, payload, field, headers] of cases) {
      const problem = expectProblem(await post(url, payload, headers), 400, "validation");
      expect({ url, field, detail: problem.detail }).toEqual({ url, field, detail: expect.stringContaining(`${field}: must not contain control characters`) });
    }
    // Tabs and line breaks in free text pass validation (and reach the service, down here: 503).
    const text = await post("/v1/generations", { input_type: "text", prompt: "line one\r\nline\ttwo", style: "ink\n" });
    expectProblem(text, 503, "unavailable");
  });

  it("accepts passwords up to 256 characters and refuses longer ones before any call", async () => {
    // Register and login alike: 256 passes validation (the credits service is down here: 503).
    for (const url of ["/v1/auth/register", "/v1/auth/login"]) {
      expectProblem(await post(url, { email: "a@example.com", password: "p".repeat(256) }, {}), 503, "unavailable");
      const tooLong = expectProblem(await post(url, { email: "a@example.com", password: "p".repeat(257) }, {}), 400, "validation");
      expect(tooLong.detail).toContain("body.password");
    }
  });

});

describe("request validation: query, path ids and what the framework refuses", () => {
  it("rejects limit and offset out of range, naming them", async () => {
    for (const [query, field] of [
      ["limit=0", "query.limit"],
      ["limit=101", "query.limit"],
      ["limit=abc", "query.limit"],
      ["offset=-1", "query.offset"],
      ["limit=2.5", "query.limit"],
    ]) {
      const body = expectProblem(await gateway.app.inject({ method: "GET", url: `/v1/generations?${query}`, headers: bearer(token) }), 400, "validation");
      expect(body.detail).toContain(field);
    }
  });

  it("answers 404 (not 400 or 500) for ids that are not UUIDs", async () => {
    for (const url of ["/v1/generations/123", "/v1/generations/not-a-uuid/output", "/v1/generations/%27%3B--/cancel"]) {
      const method = url.endsWith("cancel") ? "POST" : "GET";
      expectProblem(await gateway.app.inject({ method, url, headers: bearer(token) }), 404, "not_found");
    }
  });

  it("answers 400 for malformed JSON, 413 for a body over the limit, 415 for another media type", async () => {
    const malformed = await gateway.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      headers: { "content-type": "application/json" },
      payload: '{"email": ',
    });
    expectProblem(malformed, 400, "validation");
    const large = await post("/v1/auth/login", { email: "a@example.com", password: "x".repeat(2_000) }, {});
    expectProblem(large, 413, "payload_too_large");
    const text = await gateway.app.inject({ method: "POST", url: "/v1/auth/login", headers: { "content-type": "text/plain" }, payload: "hi" });
    expectProblem(text, 415, "unsupported_media_type");
  });

  it("answers problem+json 404 for unknown routes and wrong methods", async () => {
    const unknown = expectProblem(await gateway.app.inject({ method: "GET", url: "/v1/nope" }), 404, "not_found");
    expect(unknown.detail).toContain("/v1/nope");
    expectProblem(await gateway.app.inject({ method: "PUT", url: "/v1/me" }), 404, "not_found");
  });
});

describe("downstream services down", () => {
  it("answers 503 unavailable, not 500 and not a hang", async () => {
    const started = Date.now();
    const response = await gateway.app.inject({ method: "GET", url: "/v1/credits/balance", headers: bearer(token) });
    expectProblem(response, 503, "unavailable");
    expect(Date.now() - started).toBeLessThan(gateway.config.DOWNSTREAM_TIMEOUT_MS + 1_000);
    const register = await gateway.app.inject({ method: "POST", url: "/v1/auth/register", payload: { email: "a@example.com", password: "long enough" } });
    expectProblem(register, 503, "unavailable");
  });

  it("reports not ready with the services that are down, while alive", async () => {
    expect((await gateway.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
    const ready = expectProblem(await gateway.app.inject({ method: "GET", url: "/readyz" }), 503, "unavailable");
    expect(ready.services).toEqual({ credits: "UNREACHABLE", generations: "UNREACHABLE", usage: "UNREACHABLE" });
  });
});

describe("documentation and metrics", () => {
  it("serves an OpenAPI 3 document with every public route", async () => {
    const response = await gateway.app.inject({ method: "GET", url: "/openapi.json" });
    expect(response.statusCode).toBe(200);
    const document = response.json();
    expect(document.openapi).toMatch(/^3\./);
    const paths = Object.keys(document.paths);
    for (const path of [
      "/v1/auth/register",
      "/v1/auth/login",
      "/v1/me",
      "/v1/credits/balance",
      "/v1/generations",
      "/v1/generations/{id}",
      "/v1/generations/{id}/cancel",
      "/v1/generations/{id}/output",
    ]) {
      expect(paths).toContain(path);
    }
    expect(paths.some((path) => path.startsWith("/docs"))).toBe(false);
    const create = document.paths["/v1/generations"].post;
    expect(create.requestBody.content["application/json"].schema.properties.input_type.enum).toEqual(["text", "photo", "address"]);
    expect(document.paths["/v1/generations"].get.parameters.map((p: { name: string }) => p.name).sort()).toEqual(["limit", "offset"]);
    expect(document.components.schemas.Generation.properties).toHaveProperty("output_url");
    expect(create.responses["4XX"].content).toHaveProperty("application/problem+json");
    expect(document.components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
  });

  it("serves swagger-ui at /docs", async () => {
    const response = await gateway.app.inject({ method: "GET", url: "/docs" });
    expect([200, 302]).toContain(response.statusCode);
    const page = response.statusCode === 302 ? await gateway.app.inject({ method: "GET", url: response.headers.location as string }) : response;
    expect(page.body).toContain("swagger");
  });

  it("counts requests by route pattern and status in /metrics", async () => {
    await gateway.app.inject({ method: "GET", url: "/healthz" });
    const response = await gateway.app.inject({ method: "GET", url: "/metrics" });
    expect(response.statusCode).toBe(200);
    expect(response.headers["content-type"]).toMatch(/^text\/plain/);
    expect(response.body).toMatch(/http_requests_total\{method="GET",route="\/healthz",status_code="200"\} [1-9]/);
    expect(response.body).toContain("http_request_duration_seconds_bucket");
  });
});
