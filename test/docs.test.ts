/**
 * Keeps docs/api.md and docs/errors.md true to the code. The gateway is built (no service
 * needs to run: fetching `/openapi.json` calls none) and its OpenAPI document is compared
 * with the routes docs/api.md lists; the error tables are compared with the platform's
 * reason table and the gateway's HTTP mapping.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { createLogger, ERROR_REASONS, loadConfig } from "@tally/platform";
import type { FastifyInstance } from "fastify";
import { buildGateway } from "../gateway/src/app";
import { gatewayConfigSchema } from "../gateway/src/config";
import { GATEWAY_REASONS, GRPC_STATUS_TO_HTTP, httpStatusForCode } from "../gateway/src/errors/http-status";

const DOCS = path.resolve(__dirname, "../docs");
const readDoc = (name: string) => readFileSync(path.join(DOCS, name), "utf8");

/** Marks a status the route answers but `/openapi.json` does not declare (docs/api.md legend). */
const UNDECLARED_MARK = "†";

type Schema = { $ref?: string; properties?: Record<string, unknown>; allOf?: Schema[] };
interface Operation {
  responses?: Record<string, { content?: Record<string, { schema?: Schema }> }>;
  parameters?: { in: string; name: string }[];
  requestBody?: { content?: Record<string, { schema?: Schema }> };
}
interface OpenApiDocument {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Schema> };
}

/** One `### \`METHOD /path\`` section of docs/api.md. */
interface DocumentedRoute {
  key: string;
  text: string;
  statuses: { status: number; undeclared: boolean; code: string | undefined }[];
}

const ROUTE_HEADING = /^### `([A-Z]+) (\/[^`]*)`\s*$/;
const STATUS_ROW = /^\|\s*(\d{3})\s*(†)?\s*\|\s*(?:`([a-z_]+)`)?\s*\|/;

/** The route sections of docs/api.md, keyed "METHOD /path" (OpenAPI path syntax). */
function documentedRoutes(markdown: string): Map<string, DocumentedRoute> {
  const routes = new Map<string, DocumentedRoute>();
  let current: DocumentedRoute | undefined;
  for (const line of markdown.split("\n")) {
    const heading = ROUTE_HEADING.exec(line);
    if (heading) {
      current = { key: `${heading[1]} ${heading[2]}`, text: "", statuses: [] };
      expect(routes.has(current.key)).toBe(false);
      routes.set(current.key, current);
      continue;
    }
    if (line.startsWith("#")) current = undefined;
    if (!current) continue;
    current.text += `${line}\n`;
    const row = STATUS_ROW.exec(line);
    if (row) current.statuses.push({ status: Number(row[1]), undeclared: row[2] === UNDECLARED_MARK, code: row[3] });
  }
  return routes;
}

/** "METHOD /path" → operation, for every operation of the OpenAPI document. */
function openApiOperations(document: OpenApiDocument): Map<string, Operation> {
  const operations = new Map<string, Operation>();
  for (const [route, methods] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(methods)) operations.set(`${method.toUpperCase()} ${route}`, operation);
  }
  return operations;
}

/** Whether an OpenAPI response key ("201", "4XX") covers `status`. */
const covers = (keys: string[], status: number) =>
  keys.includes(String(status)) || keys.map((key) => key.toUpperCase()).includes(`${String(status)[0]}XX`);

/** Top-level property names of a schema, following `$ref` and `allOf`. */
function propertyNames(schema: Schema | undefined, document: OpenApiDocument): string[] {
  if (!schema) return [];
  if (schema.$ref) return propertyNames(document.components?.schemas?.[schema.$ref.split("/").pop() ?? ""], document);
  const own = Object.keys(schema.properties ?? {});
  return [...own, ...(schema.allOf ?? []).flatMap((part) => propertyNames(part, document))];
}

/** Rows `| cell | cell | …` between `<!-- name:begin -->` and `<!-- name:end -->`, header and rule left out. */
function delimitedTable(markdown: string, name: string): string[][] {
  const begin = markdown.indexOf(`<!-- ${name}:begin -->`);
  const end = markdown.indexOf(`<!-- ${name}:end -->`);
  expect(begin).toBeGreaterThanOrEqual(0);
  expect(end).toBeGreaterThan(begin);
  const rows = markdown
    .slice(begin, end)
    .split("\n")
    .filter((line) => line.startsWith("|"))
    .map((line) => line.split("|").slice(1, -1).map((cell) => cell.trim().replace(/^`(.*)`$/, "$1")));
  return rows.slice(2);
}

describe("docs/api.md against /openapi.json", () => {
  let app: FastifyInstance;
  let document: OpenApiDocument;
  let operations: Map<string, Operation>;
  const routes = documentedRoutes(readDoc("api.md"));
  const apiMarkdown = readDoc("api.md");

  beforeAll(async () => {
    const config = loadConfig(gatewayConfigSchema, { JWT_SECRET: "docs-test-secret-docs-test-secret-0123", LOG_LEVEL: "silent" });
    // No route is called, so the gateway gets no service clients: building it must not need them.
    const clients = {} as Parameters<typeof buildGateway>[1];
    app = await buildGateway(config, clients, createLogger("docs-test", "silent"));
    const response = await app.inject({ method: "GET", url: "/openapi.json" });
    expect(response.statusCode).toBe(200);
    document = response.json() as OpenApiDocument;
    operations = openApiOperations(document);
  });

  afterAll(async () => {
    await app.close();
  });

  it("lists exactly the routes of the OpenAPI document", () => {
    expect([...routes.keys()].sort()).toEqual([...operations.keys()].sort());
  });

  it("lists, per route, the statuses the OpenAPI document declares, and marks the ones it does not", () => {
    for (const [key, route] of routes) {
      const keys = Object.keys(operations.get(key)?.responses ?? {});
      const declared = route.statuses.filter((entry) => !entry.undeclared).map((entry) => entry.status);
      for (const entry of route.statuses) {
        expect({ route: key, status: entry.status, declaredInOpenApi: covers(keys, entry.status) }).toEqual({
          route: key,
          status: entry.status,
          declaredInOpenApi: !entry.undeclared,
        });
      }
      for (const responseKey of keys) {
        const listed = /^\d{3}$/.test(responseKey)
          ? declared.includes(Number(responseKey))
          : declared.some((status) => `${String(status)[0]}XX` === responseKey.toUpperCase());
        expect({ route: key, openApiResponse: responseKey, listed }).toEqual({ route: key, openApiResponse: responseKey, listed: true });
      }
    }
  });

  it("gives each listed problem code the status the gateway answers it with", () => {
    for (const [key, route] of routes) {
      for (const entry of route.statuses.filter((candidate) => candidate.code !== undefined)) {
        const status = httpStatusForCode(entry.code as Parameters<typeof httpStatusForCode>[0]);
        expect({ route: key, code: entry.code, status: entry.status }).toEqual({ route: key, code: entry.code, status });
      }
    }
  });

  it("names every parameter and the Idempotency-Key header where the route takes them", () => {
    for (const [key, route] of routes) {
      const parameters = operations.get(key)?.parameters ?? [];
      const takesKey = parameters.some((parameter) => parameter.in === "header" && parameter.name.toLowerCase() === "idempotency-key");
      expect({ route: key, acceptsIdempotencyKey: route.text.includes("Accepts `Idempotency-Key`") }).toEqual({ route: key, acceptsIdempotencyKey: takesKey });
      for (const parameter of parameters.filter((candidate) => candidate.in === "query" || candidate.in === "path")) {
        expect({ route: key, parameter: parameter.name, named: route.text.includes(`\`${parameter.name}\``) }).toEqual({
          route: key,
          parameter: parameter.name,
          named: true,
        });
      }
    }
  });

  it("names every field of the request bodies and success answers", () => {
    for (const [key, operation] of operations) {
      const bodySchema = operation.requestBody?.content?.["application/json"]?.schema;
      const successSchemas = Object.entries(operation.responses ?? {})
        .filter(([status]) => status.startsWith("2"))
        .map(([, response]) => response.content?.["application/json"]?.schema);
      const names = [bodySchema, ...successSchemas].flatMap((schema) => propertyNames(schema, document));
      for (const name of names) {
        const named = apiMarkdown.includes(`\`${name}\``) || apiMarkdown.includes(`"${name}"`);
        expect({ route: key, field: name, named }).toEqual({ route: key, field: name, named: true });
      }
    }
  });
});

describe("docs/errors.md against the error tables of the code", () => {
  const errorsMarkdown = readDoc("errors.md");

  it("has one row per domain reason with its gRPC code and HTTP status", () => {
    const rows = delimitedTable(errorsMarkdown, "reasons");
    const documented = rows.map(([reason, code, http]) => ({ reason, code, http: Number(http) }));
    const expected = Object.entries(ERROR_REASONS).map(([reason, code]) => ({
      reason,
      code: grpc.status[code],
      http: httpStatusForCode(reason as keyof typeof ERROR_REASONS),
    }));
    const byReason = (a: { reason: string }, b: { reason: string }) => a.reason.localeCompare(b.reason);
    expect(documented.sort(byReason)).toEqual(expected.sort(byReason));
  });

  it("has one row per gateway-only code with its HTTP status", () => {
    const rows = delimitedTable(errorsMarkdown, "gateway-codes");
    const documented = Object.fromEntries(rows.map(([code, http]) => [code, Number(http)]));
    const expected = Object.fromEntries(
      Object.keys(GATEWAY_REASONS).map((code) => [code, httpStatusForCode(code as keyof typeof GATEWAY_REASONS)]),
    );
    expect(documented).toEqual(expected);
  });

  it("maps every gRPC status code to the HTTP status the gateway uses", () => {
    const rows = delimitedTable(errorsMarkdown, "grpc-codes");
    const documented = Object.fromEntries(rows.map(([code, http]) => [code, Number(http)]));
    const expected = Object.fromEntries(
      Object.entries(GRPC_STATUS_TO_HTTP).map(([code, http]) => [grpc.status[Number(code)], http]),
    );
    expect(documented).toEqual(expected);
  });
});

describe("documentation stands on its own", () => {
  it("refers to no document outside the repository", () => {
    for (const name of ["api.md", "errors.md", "architecture.md", "invariants.md", "../README.md", "../CONTRIBUTING.md"]) {
      const text = readDoc(name);
      expect({ file: name, outside: /\.\.\/shared|shared\/|DESIGN\.md|seed\s+0\d\d/i.test(text) }).toEqual({ file: name, outside: false });
    }
  });
});
