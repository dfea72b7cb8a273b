/**
 * Malformed HTTP over real sockets. Node's HTTP parser and Fastify's router refuse these
 * before any route runs, and `inject` bypasses both, so here the gateway listens on 127.0.0.1
 * (its services need not run: every request below is refused before any call). Every answer,
 * whatever the input, is below 500, `application/problem+json` with a string `code`, and does
 * not echo the (possibly huge) input back (INV-7).
 */
import type { AddressInfo } from "node:net";
import { fuzzHeaders, fuzzPaths, seededRandom, sendRaw, type RawAnswer } from "./raw-http";
import { startTestGateway, type TestGateway } from "./helpers";

/** The fuzz seed: change it to explore, keep it fixed to replay. */
const SEED = 0x7a11_2026;
/** Longest problem body any of these answers may have, in characters. */
const BODY_LENGTH_MAX = 2_048;
/** Aligned windows of this length are searched for in the body: any echoed run of 2 × this is caught. */
const ECHO_WINDOW = 500;

let gateway: TestGateway;
let port: number;

beforeAll(async () => {
  gateway = await startTestGateway({ BODY_LIMIT_BYTES: "1024" });
  await gateway.app.listen({ port: 0, host: "127.0.0.1" });
  port = (gateway.app.server.address() as AddressInfo).port;
});

afterAll(async () => {
  await gateway.close();
});

/** True when `body` holds an ECHO_WINDOW-long run of `input` at an aligned offset. */
function echoes(body: string, input: string): boolean {
  for (let start = 0; start + ECHO_WINDOW <= input.length; start += ECHO_WINDOW) {
    if (body.includes(input.slice(start, start + ECHO_WINDOW))) return true;
  }
  return false;
}

/** Asserts what every answer must be, and returns its problem document. */
function expectBoundedProblem(answer: RawAnswer, request: string): Record<string, unknown> {
  const summary = { request: JSON.stringify(request.slice(0, 120)), status: answer.status, contentType: answer.headers["content-type"] };
  expect(summary).toEqual({ ...summary, status: expect.any(Number), contentType: expect.stringMatching(/^application\/problem\+json/) });
  expect({ ...summary, serverError: answer.status >= 500 }).toEqual({ ...summary, serverError: false });
  const problem = JSON.parse(answer.body) as Record<string, unknown>;
  expect(problem).toMatchObject({ code: expect.any(String), status: answer.status, title: expect.any(String), detail: expect.any(String) });
  expect(answer.body.length).toBeLessThanOrEqual(BODY_LENGTH_MAX);
  expect({ ...summary, echoes: echoes(answer.body, request) }).toEqual({ ...summary, echoes: false });
  return problem;
}

const get = (path: string, headers = "") => `GET ${path} HTTP/1.1\r\nHost: gateway.test\r\n${headers}Connection: close\r\n\r\n`;

/** Sends `request` and asserts the bounded problem, with `status` and `code` when given. */
async function expectAnswer(request: string, status?: number, code?: string): Promise<RawAnswer> {
  const answer = await sendRaw(port, request);
  const problem = expectBoundedProblem(answer, request);
  if (status !== undefined) expect({ status: answer.status, code: problem.code }).toEqual({ status, code });
  return answer;
}

describe("requests the parser or the router refuse", () => {
  it("answers a path that is not valid percent-encoding 400 bad_url, without quoting it", async () => {
    const answer = await expectAnswer(get("/v1/generations/%ZZ"), 400, "bad_url");
    expect(answer.body).not.toContain("%ZZ");
  });

  it("answers a 5,000-character id 414 uri_too_long without echoing the path", async () => {
    const answer = await expectAnswer(get(`/v1/generations/${"a".repeat(5_000)}`), 414, "uri_too_long");
    expect(answer.body).not.toContain("aaaaaaaaaa");
  });

  it("answers a control character in a header 400 bad_request, closing the connection", async () => {
    const answer = await expectAnswer(
      "POST /v1/auth/login HTTP/1.1\r\nHost: gateway.test\r\nIdempotency-Key: a\u0001b\r\nContent-Length: 0\r\n\r\n",
      400,
      "bad_request",
    );
    expect(answer.headers.connection).toBe("close");
    expect(Number(answer.headers["content-length"])).toBe(Buffer.byteLength(answer.body));
  });

  it("answers a 20 KB header 431 header_fields_too_large", async () => {
    const answer = await expectAnswer(get("/v1/me", `X-Big: ${"b".repeat(20_000)}\r\n`), 431, "header_fields_too_large");
    expect(answer.headers.connection).toBe("close");
  });

  it("answers a garbage request line, a missing Host, a bad Content-Length and raw unicode 400 bad_request", async () => {
    await expectAnswer("GARBAGE\r\n\r\n", 400, "bad_request");
    await expectAnswer("GET /v1/me HTTP/1.1\r\nConnection: close\r\n\r\n", 400, "bad_request");
    await expectAnswer(get("/v1/me", "Content-Length: abc\r\n"), 400, "bad_request");
    await expectAnswer(get(`/v1/${Buffer.from("☃", "utf8").toString("latin1")}`), 400, "bad_request");
  });

  it("answers an unsupported Expect 417 and CONNECT 405 in the same shape", async () => {
    await expectAnswer(get("/v1/me", "Expect: teapot\r\n"), 417, "expectation_failed");
    await expectAnswer("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405, "method_not_allowed");
  });
});

describe("the mapper's own answers, over the wire", () => {
  const post = (path: string, contentType: string, body: string) =>
    `POST ${path} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: ${contentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;

  it("answers unknown routes 404, a missing token 401, malformed JSON 400, a large body 413 and text 415", async () => {
    const unknown = await expectAnswer(get(`/v1/${"nope/".repeat(600)}`), 404, "not_found");
    expect(JSON.parse(unknown.body)).not.toHaveProperty("instance");
    const unauthenticated = await expectAnswer(get("/v1/me"), 401, "unauthenticated");
    expect(unauthenticated.headers["www-authenticate"]).toMatch(/^Bearer/);
    await expectAnswer(post("/v1/auth/login", "application/json", '{"email": '), 400, "validation");
    await expectAnswer(post("/v1/auth/login", "application/json", JSON.stringify({ email: "a@example.com", password: "x".repeat(2_000) })), 413, "payload_too_large");
    await expectAnswer(post("/v1/auth/login", "text/plain", "hi"), 415, "unsupported_media_type");
  });
});

describe("fuzzed requests (fixed seed)", () => {
  it("answers every fuzzed path with a bounded problem", async () => {
    const random = seededRandom(SEED);
    for (const path of fuzzPaths(random, 80)) await expectAnswer(get(path));
  });

  it("answers every fuzzed header block with a bounded problem", async () => {
    const random = seededRandom(SEED + 1);
    for (const headers of fuzzHeaders(random, 60)) {
      await expectAnswer(get("/v1/me", headers));
      await expectAnswer(`POST /v1/auth/login HTTP/1.1\r\nHost: gateway.test\r\n${headers}Content-Length: 0\r\nConnection: close\r\n\r\n`);
    }
  });
});
