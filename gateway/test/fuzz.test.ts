/**
 * Fuzzing every route from its own OpenAPI schemas: fast-check builds requests (method and
 * path of a documented route; path ids that are the caller's, another's, random or garbage;
 * query and header parameters and JSON bodies drawn from the route's schemas, with any part
 * swapped, now and then, for an arbitrary JSON value or a broken body; callers anonymous, a
 * guest, a bad X-Guest-ID, two users, an admin, a forged token) and sends them to the gateway
 * over the real credits, usage and generations services. Whatever it sends, the answer is
 * below 500 and every error is problem+json with a `code` (INV-7). FUZZ_REQUESTS sets how many
 * (default 10,000); FUZZ_SEED replays a run.
 */
import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { bearer, startTestGateway, type TestGateway } from "./helpers";
import { RealServices, writePlansFile } from "./real-services";

const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 10_000);
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 0x7a11_f022;
const PASSWORD = "correct horse battery";
const PLANS_YAML = [
  "default_plan: free",
  "guest_plan: guest",
  "plans:",
  "  guest: { trial_credits: 50, limits: { generations_per_day: 100000, requests_per_minute: 1000000 } }",
  "  free: { trial_credits: 50, limits: { generations_per_period: 100000, requests_per_minute: 1000000 } }",
  "  pro: { trial_credits: 50, limits: { generations_per_period: 100000, requests_per_minute: 1000000 } }",
].join("\n");

// A JSON schema as @fastify/swagger writes it (the parts this test reads).
interface Schema {
  type?: string;
  enum?: unknown[];
  anyOf?: Schema[];
  oneOf?: Schema[];
  format?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  items?: Schema;
  properties?: Record<string, Schema>;
  required?: string[];
}
interface Parameter {
  in: "path" | "query" | "header";
  name: string;
  schema: Schema;
}
interface Operation {
  parameters?: Parameter[];
  requestBody?: { content: Record<string, { schema: Schema }> };
}
interface Route {
  method: "GET" | "POST" | "PUT" | "DELETE" | "PATCH";
  path: string;
  operation: Operation;
}

/** Anything JSON, now and then, instead of what `valid` makes. */
const sometimesAnything = <T>(valid: fc.Arbitrary<T>): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) });

/** Values `schema` accepts (mostly: lengths and ranges are kept small, formats honoured). */
function fromSchema(schema: Schema): fc.Arbitrary<unknown> {
  if (schema.enum) return fc.constantFrom(...schema.enum);
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives) return fc.oneof(...alternatives.map(fromSchema));
  switch (schema.type) {
    case "string":
      if (schema.format === "date-time") return fc.date({ min: new Date("1969-01-01"), max: new Date("2101-01-01"), noInvalidDate: true }).map((d) => d.toISOString());
      if (schema.format === "uuid") return fc.uuid();
      if (schema.format === "email") return fc.emailAddress();
      return fc.string({ minLength: schema.minLength ?? 0, maxLength: Math.max(schema.minLength ?? 0, Math.min(schema.maxLength ?? 40, 40)), unit: "binary" });
    case "integer":
      return fc.integer({ min: Math.max(schema.minimum ?? -1_000_000, -2_147_483_648), max: Math.min(schema.maximum ?? 1_000_000, 2_147_483_647) });
    case "number":
      return fc.double({ min: schema.minimum ?? -1e9, max: schema.maximum ?? 1e9, noNaN: true });
    case "boolean":
      return fc.boolean();
    case "null":
      return fc.constant(null);
    case "array":
      return fc.array(fromSchema(schema.items ?? {}), { maxLength: 4 });
    case "object": {
      const properties = Object.fromEntries(Object.entries(schema.properties ?? {}).map(([name, property]) => [name, sometimesAnything(fromSchema(property))]));
      return fc.record(properties, { requiredKeys: schema.required ?? [] });
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** Everything a fuzzed request is made of, before the caller's identities are filled in. */
interface FuzzedRequest {
  route: Route;
  pathValues: Record<string, "own" | "other" | "random" | string>;
  query: Record<string, unknown>;
  headers: Record<string, unknown>;
  caller: "anonymous" | "guest" | "badGuest" | "userA" | "userB" | "admin" | "forged";
  body: { kind: "json"; value: unknown } | { kind: "raw"; text: string } | { kind: "none" };
}

function requestArbitrary(routes: Route[]): fc.Arbitrary<FuzzedRequest> {
  return fc.constantFrom(...routes).chain((route) => {
    const parameters = route.operation.parameters ?? [];
    const inPath = parameters.filter((p) => p.in === "path");
    const query = parameters.filter((p) => p.in === "query");
    const headers = parameters.filter((p) => p.in === "header");
    const bodySchema = route.operation.requestBody?.content["application/json"]?.schema;
    const pathValue = fc.oneof(fc.constantFrom("own", "other", "random"), fc.string({ maxLength: 40, unit: "binary" }));
    const body: fc.Arbitrary<FuzzedRequest["body"]> = fc.oneof(
      { weight: 6, arbitrary: (bodySchema ? fromSchema(bodySchema) : fc.jsonValue({ maxDepth: 2 })).map((value) => ({ kind: "json" as const, value })) },
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((value) => ({ kind: "json" as const, value })) },
      { weight: 1, arbitrary: fc.string({ maxLength: 60, unit: "binary" }).map((text) => ({ kind: "raw" as const, text })) },
      { weight: 1, arbitrary: fc.constant({ kind: "none" as const }) },
    );
    return fc.record({
      route: fc.constant(route),
      pathValues: fc.record(Object.fromEntries(inPath.map((p) => [p.name, pathValue]))),
      query: fc.record(Object.fromEntries(query.map((p) => [p.name, sometimesAnything(fromSchema(p.schema))])), { requiredKeys: [] }),
      headers: fc.record(Object.fromEntries(headers.map((p) => [p.name, sometimesAnything(fromSchema(p.schema))])), { requiredKeys: [] }),
      caller: fc.constantFrom("anonymous", "guest", "badGuest", "userA", "userB", "admin", "forged"),
      body,
    }) as fc.Arbitrary<FuzzedRequest>;
  });
}

/** A header value as a string a client could send (an object becomes its JSON; control characters are dropped). */
const headerText = (value: unknown) => (typeof value === "string" ? value : JSON.stringify(value) ?? "").replace(/[\u0000-\u001f\u007f-\uffff]/g, "");

const plansFile = writePlansFile(PLANS_YAML);
const services = new RealServices(plansFile);
const ADMIN_EMAIL = `admin-${services.suffix}@example.com`;
let gateway: TestGateway;
let routes: Route[];
const identities = {
  guestId: randomUUID(),
  tokens: { userA: "", userB: "", admin: "" },
  ids: { userA: "", userB: "" },
  generations: { userA: "", userB: "" },
};

beforeAll(async () => {
  const [creditsService, usage] = await Promise.all([services.startCredits({ TALLY_ADMIN_EMAILS: ADMIN_EMAIL }), services.startUsage()]);
  // No worker: jobs stay pending, so the fuzz load stays on the request path.
  const generations = await services.startGenerations(creditsService.address, usage.address, { WORKER_ENABLED: "false" });
  gateway = await startTestGateway({
    CREDITS_GRPC_ADDRESS: creditsService.address, GENERATIONS_GRPC_ADDRESS: generations.address, USAGE_GRPC_ADDRESS: usage.address, PLANS_FILE: plansFile,
    RATE_LIMIT_ANONYMOUS_PER_MINUTE: "1000000", RATE_LIMIT_AUTH_PER_MINUTE: "1000000",
    // A request that opens an owner's event stream of a job that never ends (no worker) is closed after this.
    SSE_STREAM_MAX_MS: "300",
  });
  for (const [who, email] of [["userA", `a-${services.suffix}@example.com`], ["userB", `b-${services.suffix}@example.com`], ["admin", ADMIN_EMAIL]] as const) {
    const answer = await gateway.app.inject({ method: "POST", url: "/v1/auth/register", payload: { email, password: PASSWORD } });
    expect(answer.statusCode).toBe(201);
    identities.tokens[who] = answer.json().access_token;
    if (who !== "admin") {
      identities.ids[who] = answer.json().user.id;
      const created = await gateway.app.inject({ method: "POST", url: "/v1/generations", headers: bearer(identities.tokens[who]), payload: { input_type: "text", prompt: "p" } });
      identities.generations[who] = created.json().id;
    }
  }
  const document = (gateway.app as unknown as { swagger(): { paths: Record<string, Record<string, Operation>> } }).swagger();
  routes = Object.entries(document.paths).flatMap(([path, operations]) =>
    Object.entries(operations).map(([method, operation]) => ({ method: method.toUpperCase() as Route["method"], path, operation })),
  );
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await services.stop();
}, 60_000);

/** The URL of `request`: path parameters as the caller's own object, another's, a random UUID or the fuzzed text. */
function urlOf(request: FuzzedRequest): string {
  const path = request.route.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const value = request.pathValues[name];
    const own = request.caller === "userB" ? "userB" : "userA";
    const other = own === "userA" ? "userB" : "userA";
    const byName = (who: "userA" | "userB") => (name === "id" ? identities.generations[who] : identities.ids[who]);
    if (value === "own") return byName(own);
    if (value === "other") return byName(other);
    if (value === "random") return randomUUID();
    return encodeURIComponent(value ?? "");
  });
  const query = Object.entries(request.query)
    .map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(typeof value === "string" ? value : JSON.stringify(value) ?? "")}`)
    .join("&");
  return query ? `${path}?${query}` : path;
}

function headersOf(request: FuzzedRequest): Record<string, string> {
  const headers: Record<string, string> = Object.fromEntries(Object.entries(request.headers).map(([name, value]) => [name, headerText(value)]));
  switch (request.caller) {
    case "guest":
      return { ...headers, "x-guest-id": identities.guestId };
    case "badGuest":
      return { ...headers, "x-guest-id": "not-a-uuid" };
    case "forged":
      return { ...headers, ...bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl") };
    case "anonymous":
      return headers;
    default:
      return { ...headers, ...bearer(identities.tokens[request.caller]) };
  }
}

describe("fuzzing every route from its OpenAPI schemas", () => {
  it(`answers ${REQUESTS} generated requests below 500, every error as problem+json with a code`, async () => {
    const counts: Record<string, number> = {};
    const failures: string[] = [];
    await fc.assert(
      fc.asyncProperty(requestArbitrary(routes), async (request) => {
        const url = urlOf(request);
        const body = request.body;
        const payload = body.kind === "json" ? JSON.stringify(body.value) : body.kind === "raw" ? body.text : undefined;
        const contentType = body.kind === "none" ? {} : { "content-type": "application/json" };
        const answer = await gateway.app.inject({ method: request.route.method, url, headers: { ...headersOf(request), ...contentType }, ...(payload === undefined ? {} : { payload }) });
        counts[answer.statusCode] = (counts[answer.statusCode] ?? 0) + 1;
        const problem = answer.statusCode >= 400 && answer.headers["content-type"]?.toString().startsWith("application/problem+json") ? answer.json() : null;
        const wrong = answer.statusCode >= 500 || (answer.statusCode >= 400 && typeof problem?.code !== "string");
        if (wrong && failures.length < 20) failures.push(`${request.route.method} ${url} as ${request.caller} (body ${payload?.slice(0, 80)}): ${answer.statusCode} ${answer.body.slice(0, 200)}`);
        return !wrong;
      }),
      { numRuns: REQUESTS, seed: SEED, endOnFailure: true },
    ).catch((error: unknown) => {
      throw new Error(`${failures.join("\n")}\n${String(error).slice(0, 500)}`);
    });
    console.log(`fuzz: ${REQUESTS} requests over ${routes.length} routes (seed ${SEED}), answers by status ${JSON.stringify(counts)}`);
    expect(failures).toEqual([]);
  }, 600_000);
});
