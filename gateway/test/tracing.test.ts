/**
 * With tracing on (a tracer provider registered), every problem document carries the
 * request's trace id; with it off (http.test.ts), none does.
 */
import { trace, TraceFlags, type Tracer, type TracerProvider } from "@opentelemetry/api";
import { startTestGateway, type TestGateway } from "./helpers";

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";

/** The smallest provider that gives spans a valid context (this test process registers no SDK; test/tracing-export.test.ts covers the real one). */
const provider: TracerProvider = {
  getTracer: () =>
    ({
      startSpan: () => trace.wrapSpanContext({ traceId: TRACE_ID, spanId: "b7ad6b7169203331", traceFlags: TraceFlags.SAMPLED }),
    }) as unknown as Tracer,
};

let gateway: TestGateway;

beforeAll(async () => {
  trace.setGlobalTracerProvider(provider);
  gateway = await startTestGateway();
});

afterAll(async () => {
  await gateway.close();
  trace.disable();
});

it("puts the trace id in problem documents", async () => {
  const unauthenticated = await gateway.app.inject({ method: "GET", url: "/v1/me" });
  expect(unauthenticated.json()).toMatchObject({ code: "unauthenticated", trace_id: TRACE_ID });
  const unknown = await gateway.app.inject({ method: "GET", url: "/nowhere" });
  expect(unknown.json()).toMatchObject({ code: "not_found", trace_id: TRACE_ID });
  const invalid = await gateway.app.inject({ method: "POST", url: "/v1/auth/login", payload: {} });
  expect(invalid.json()).toMatchObject({ code: "validation", trace_id: TRACE_ID });
});
