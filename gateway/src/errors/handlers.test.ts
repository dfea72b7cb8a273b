import Fastify from "fastify";
import { createLogger, DomainError } from "@tally/platform/src/stateless";
import { decodableQuery, installProblemHandlers } from "./handlers";

const ALICE = "3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b";
const BOB = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

describe("problem error handler: a service's not_found for the caller's own account", () => {
  const app = Fastify();
  installProblemHandlers(app, "https://tally.dev/problems/", createLogger("test", "silent"));
  // A route acting for Alice whose downstream call answers not_found for the account it names.
  app.get<{ Querystring: { account: string; kind?: string } }>("/act", async (request) => {
    request.principal = request.query.kind === "guest" ? { kind: "guest", accountId: ALICE, plan: "guest" } : { kind: "user", accountId: ALICE, role: "user", email: "a@example.com" };
    throw new DomainError("not_found", "account not found", { account_id: request.query.account });
  });
  afterAll(() => app.close());

  it("answers 401 unauthenticated with the invalid_token challenge when the account is the caller's (deleted while the request ran)", async () => {
    const reply = await app.inject({ method: "GET", url: `/act?account=${ALICE}` });
    expect(reply.statusCode).toBe(401);
    expect(reply.headers["www-authenticate"]).toBe('Bearer realm="tally", error="invalid_token"');
    expect(reply.json()).toMatchObject({ code: "unauthenticated", detail: "the account of this access token no longer exists" });
  });

  it("keeps 404 not_found for another account, and for a guest", async () => {
    for (const url of [`/act?account=${BOB}`, `/act?account=${ALICE}&kind=guest`]) {
      const reply = await app.inject({ method: "GET", url });
      expect([url, reply.statusCode, reply.json().code, reply.headers["www-authenticate"]]).toEqual([url, 404, "not_found", undefined]);
    }
  });
});

describe("query strings that do not decode", () => {
  const app = Fastify();
  installProblemHandlers(app, "https://tally.dev/problems/", createLogger("test", "silent"));
  app.get("/echo", async (request) => request.query);
  afterAll(() => app.close());

  it("are 400 bad_url, as such a path is; decodable ones reach the route", async () => {
    for (const query of ["plan=%ZZ", "plan=%C0%80", "%FF%FE=x", "a=1&b=%"]) {
      const reply = await app.inject({ method: "GET", url: `/echo?${query}` });
      expect([query, reply.statusCode, reply.json().code]).toEqual([query, 400, "bad_url"]);
    }
    const fine = await app.inject({ method: "GET", url: "/echo?plan=free%20plan&x=%E2%9C%93+y&empty=" });
    expect([fine.statusCode, fine.json()]).toEqual([200, { plan: "free plan", x: "✓ y", empty: "" }]);
  });

  it("decodableQuery: names and values each decode", () => {
    expect(["/a", "/a?", "/a?x=1", "/a?x=%41", "/a?%41=b", "/a?x=a+b"].map(decodableQuery)).toEqual([true, true, true, true, true, true]);
    expect(["/a?x=%4", "/a?x=%G1", "/a?%ZZ", "/a?x=%ED%A0%80"].map(decodableQuery)).toEqual([false, false, false, false]);
  });
});
