/**
 * Exported traces, end to end: the stack started as `npm start` starts it, with
 * OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/HTTP receiver in this process (JSON bodies).
 * One `POST /v1/generations` must come back as ONE trace, span by span, each with the right
 * parent: gateway server span → gRPC client → generations server span → usage limit check
 * (gRPC client → usage server) and credits hold (gRPC client → credits server) → the job
 * insert (pg) → the worker's span (continuing the context stored with the job) → the outbox
 * relay's NATS publish (producer) → the usage consumer (consumer) → its transaction → its
 * queries (pg). Log lines written inside the trace carry its trace_id and span_id, and a
 * problem document the trace_id of its request's exported trace.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Client } from "pg";
import { stringify } from "yaml";
import { DEFAULT_PLANS_DOCUMENT } from "@tally/platform";
import { eventually } from "@tally/platform/src/testing";
import { callGateway, startStack, type StackUnderTest } from "./stack-under-test";

/**
 * How long the traced stack may take to become ready, in milliseconds: longer than untraced,
 * since the SDK's module hooks slow every process's start (each of the four starts in turn).
 */
const TRACED_STACK_READY_TIMEOUT_MS = 240_000;

/** OTLP span kinds (the JSON encoding's numbers). */
const KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;

/** One exported span, flattened: ids as hex, its service, its attributes as plain values. */
interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  service: string;
  attributes: Record<string, unknown>;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
interface OtlpAttribute {
  key: string;
  value: OtlpValue;
}
interface OtlpTraces {
  resourceSpans?: {
    resource?: { attributes?: OtlpAttribute[] };
    scopeSpans?: { spans?: { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; attributes?: OtlpAttribute[] }[] }[];
  }[];
}

const valueOf = (value: OtlpValue) => value.stringValue ?? value.intValue ?? value.boolValue ?? value.doubleValue;
const attributesOf = (attributes: OtlpAttribute[] = []) => Object.fromEntries(attributes.map((a) => [a.key, valueOf(a.value)]));

/** The spans of one OTLP/JSON export request. */
function spansOf(body: OtlpTraces): ExportedSpan[] {
  return (body.resourceSpans ?? []).flatMap((resourceSpans) => {
    const service = String(attributesOf(resourceSpans.resource?.attributes)["service.name"]);
    return (resourceSpans.scopeSpans ?? []).flatMap((scope) =>
      (scope.spans ?? []).map((span) => ({
        traceId: span.traceId,
        spanId: span.spanId,
        parentSpanId: span.parentSpanId ?? "",
        name: span.name,
        kind: span.kind,
        service,
        attributes: attributesOf(span.attributes),
      })),
    );
  });
}

/** An in-process OTLP/HTTP receiver: takes `POST /v1/traces` (JSON) and keeps every span. */
async function startOtlpReceiver(): Promise<{ endpoint: string; spans: ExportedSpan[]; close(): Promise<void> }> {
  const spans: ExportedSpan[] = [];
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      if (request.method === "POST" && request.url === "/v1/traces") spans.push(...spansOf(JSON.parse(Buffer.concat(chunks).toString() || "{}") as OtlpTraces));
      response.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The spans of one trace, with lookups by parent chain. */
class Trace {
  private readonly byId: Map<string, ExportedSpan>;

  constructor(readonly spans: ExportedSpan[]) {
    this.byId = new Map(spans.map((span) => [span.spanId, span]));
  }

  /** The one span matching `where`; fails (naming what the trace holds) when there is none. */
  find(description: string, where: (span: ExportedSpan) => boolean): ExportedSpan {
    const found = this.spans.filter(where);
    if (found.length === 0) throw new Error(`no span "${description}" in the trace:\n${this.describe()}`);
    return found[0]!;
  }

  /** True when `ancestor` is `span`'s parent, or its parent's, and so on. */
  descendsFrom(span: ExportedSpan, ancestor: ExportedSpan): boolean {
    for (let current = this.byId.get(span.parentSpanId); current; current = this.byId.get(current.parentSpanId)) {
      if (current.spanId === ancestor.spanId) return true;
    }
    return false;
  }

  describe(): string {
    return this.spans.map((s) => `${s.service} ${s.name} kind=${s.kind} id=${s.spanId} parent=${s.parentSpanId || "-"}`).join("\n");
  }
}

const statementOf = (span: ExportedSpan) => String(span.attributes["db.query.text"] ?? span.attributes["db.statement"] ?? "");
const isPg = (span: ExportedSpan) => span.attributes["db.system"] === "postgresql" || span.attributes["db.system.name"] === "postgresql";

describe("exported traces (OTLP/HTTP, one trace per POST /v1/generations)", () => {
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
  let stack: StackUnderTest;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    stack = await startStack(stringify(DEFAULT_PLANS_DOCUMENT), {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_BSP_SCHEDULE_DELAY: "100",
      OTEL_TRACES_SAMPLER: "always_on",
      // Info, so the generations service's "generation created" line (logged inside the trace) is printed.
      LOG_LEVEL: "info",
    }, TRACED_STACK_READY_TIMEOUT_MS);
  }, TRACED_STACK_READY_TIMEOUT_MS + 30_000);

  afterAll(async () => {
    await stack?.destroy();
    await receiver?.close();
  }, 60_000);

  it("shows gateway → generations → usage check → credits hold → job insert → worker → outbox publish → usage consumer → its transaction", async () => {
    const registered = await callGateway(stack.base, "POST", "/v1/auth/register", { body: { email: `traced-${stack.suffix}@example.com`, password: "correct horse battery" } });
    expect(registered.status).toBe(201);
    const token = registered.body.access_token as string;
    const userId = registered.body.user.id as string;

    const created = await callGateway(stack.base, "POST", "/v1/generations", { token, body: { input_type: "text", prompt: "a traced lighthouse" } });
    expect(created.status).toBe(201);
    await eventually(async () => {
      const job = await callGateway(stack.base, "GET", `/v1/generations/${created.body.id}`, { token });
      return job.body.status === "completed" ? job.body : undefined;
    }, 60_000, 250);
    await eventually(() => usageLogHas(stack.databaseUrl("usage"), userId), 30_000, 250);

    // The usage consumer's transaction is the last link: wait until its queries are exported
    // (or give up waiting and let the assertions name the missing link).
    const traceOfTheRequest = () => {
      const root = receiver.spans.find((s) => s.service === "tally-gateway" && s.kind === KIND.SERVER && s.attributes["http.route"] === "/v1/generations");
      if (!root) throw new Error(`no gateway span for POST /v1/generations; spans received:\n${new Trace(receiver.spans).describe()}`);
      return new Trace(receiver.spans.filter((s) => s.traceId === root.traceId));
    };
    const complete = (spans: Trace) => {
      const record = spans.spans.find((s) => s.service === "tally-usage" && s.name === "usage.record");
      return record !== undefined && spans.spans.some((s) => s.parentSpanId === record.spanId && isPg(s));
    };
    const trace = await eventually(async () => (complete(traceOfTheRequest()) ? traceOfTheRequest() : undefined), 20_000, 200).catch(() => traceOfTheRequest());
    if (process.env.TALLY_TEST_VERBOSE) process.stdout.write(`${trace.describe()}\n`);
    assertTheChain(trace);

    // Logs and problem documents name the trace.
    const createdLog = logLines(stack.output()).find((line) => line.msg === "generation created" && line.generation_id === created.body.id);
    expect(createdLog).toMatchObject({ trace_id: trace.spans[0]!.traceId, span_id: expect.stringMatching(/^[0-9a-f]{16}$/) });
    expect(trace.spans.some((s) => s.spanId === createdLog!.span_id)).toBe(true);
    const invalid = await callGateway(stack.base, "POST", "/v1/generations", { token, body: { input_type: "nonsense" } });
    expect(invalid.status).toBe(400);
    const problemTrace = await eventually(async () => receiver.spans.find((s) => s.traceId === invalid.body.trace_id && s.service === "tally-gateway" && s.kind === KIND.SERVER), 10_000, 100);
    expect(problemTrace.attributes["http.route"]).toBe("/v1/generations");

    // Probes make no traces, though the stack was probed (GET /readyz, and gRPC health checks behind it) until ready.
    const probeSpans = receiver.spans.filter((s) => /readyz|healthz|grpc\.health/i.test(`${s.name} ${String(s.attributes["http.route"] ?? s.attributes["url.path"] ?? "")}`));
    expect(probeSpans).toEqual([]);
  }, 180_000);
});

/** The chain of one POST /v1/generations, asserted parent by parent. */
function assertTheChain(trace: Trace): void {
  const child = (of: ExportedSpan) => (span: ExportedSpan) => span.parentSpanId === of.spanId;
  const under = (of: ExportedSpan) => (span: ExportedSpan) => trace.descendsFrom(span, of);
  const grpc = (service: string, kind: number, method: string) => (span: ExportedSpan) => span.service === service && span.kind === kind && span.name.endsWith(`/${method}`) && span.name.startsWith("grpc.");
  const and = (...tests: ((span: ExportedSpan) => boolean)[]) => (span: ExportedSpan) => tests.every((test) => test(span));

  const gateway = trace.find("gateway server span", (s) => s.service === "tally-gateway" && s.kind === KIND.SERVER && s.attributes["http.route"] === "/v1/generations");
  expect(gateway.parentSpanId).toBe("");
  const createClient = trace.find("gateway → CreateGeneration (client)", and(grpc("tally-gateway", KIND.CLIENT, "CreateGeneration"), under(gateway)));
  const createServer = trace.find("generations CreateGeneration (server)", and(grpc("tally-generations", KIND.SERVER, "CreateGeneration"), child(createClient)));

  const usageClient = trace.find("generations → usage CheckAndReserve (client)", and(grpc("tally-generations", KIND.CLIENT, "CheckAndReserve"), under(createServer)));
  trace.find("usage CheckAndReserve (server)", and(grpc("tally-usage", KIND.SERVER, "CheckAndReserve"), child(usageClient)));
  const holdClient = trace.find("generations → credits CreateHold (client)", and(grpc("tally-generations", KIND.CLIENT, "CreateHold"), under(createServer)));
  const holdServer = trace.find("credits CreateHold (server)", and(grpc("tally-credits", KIND.SERVER, "CreateHold"), child(holdClient)));
  trace.find("credits' queries for the hold (pg)", and(isPg, under(holdServer)));
  trace.find("the job insert (pg)", and(isPg, (s) => /insert into "?generations"? /i.test(statementOf(s)), under(createServer)));

  const worker = trace.find("the worker's generation.run", and((s) => s.service === "tally-generations" && s.name === "generation.run", under(createServer)));
  const captureClient = trace.find("worker → credits CaptureHold (client)", and(grpc("tally-generations", KIND.CLIENT, "CaptureHold"), under(worker)));
  trace.find("credits CaptureHold (server)", and(grpc("tally-credits", KIND.SERVER, "CaptureHold"), child(captureClient)));
  const publish = trace.find("outbox relay publish (producer)", and((s) => s.service === "tally-generations" && s.kind === KIND.PRODUCER && s.name.endsWith(".generation.completed publish"), under(worker)));
  const consume = trace.find("usage consumer (consumer)", and((s) => s.service === "tally-usage" && s.kind === KIND.CONSUMER, child(publish)));
  const record = trace.find("the consumer's transaction", and((s) => s.service === "tally-usage" && s.name === "usage.record", child(consume)));
  trace.find("the usage log insert (pg)", and(isPg, (s) => /insert into "?usage_log"? /i.test(statementOf(s)), under(record)));
}

/** The JSON log lines in the stack's output (each behind a `[service] ` prefix). */
function logLines(output: string): Record<string, unknown>[] {
  return output.split("\n").flatMap((line) => {
    const start = line.indexOf("{");
    if (start < 0) return [];
    try {
      return [JSON.parse(line.slice(start)) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

/** True once the usage log holds an entry for `userId` (the consumer committed). */
async function usageLogHas(databaseUrl: string, userId: string): Promise<true | undefined> {
  const db = new Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const { rowCount } = await db.query("SELECT 1 FROM usage_log WHERE user_id = $1", [userId]);
    return rowCount ? true : undefined;
  } finally {
    await db.end();
  }
}
