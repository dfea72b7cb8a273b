import {
  INVALID_SPAN_CONTEXT,
  propagation,
  trace,
  type Context,
  type Span,
  type SpanContext,
  type SpanOptions,
  type TextMapPropagator,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";
import { events } from "@tally/contracts";
import { newId } from "@tally/platform";
import { eventually } from "@tally/platform/src/testing";
import { completedEvent, createUsageTestBed, type UsageTestBed } from "./helpers";

/** Reads a W3C `traceparent` (no SDK is registered in this test process, so the test brings the minimum). */
const traceparentPropagator: TextMapPropagator = {
  inject() {},
  extract(context, carrier, getter) {
    const value = getter.get(carrier, "traceparent");
    const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(String(value ?? ""));
    if (!match) return context;
    return trace.setSpanContext(context, { traceId: match[1]!, spanId: match[2]!, traceFlags: parseInt(match[3]!, 16), isRemote: true });
  },
  fields: () => ["traceparent"],
};

/** Records the name and parent of every span started. */
const started: { name: string; parent: SpanContext | undefined; attributes: SpanOptions["attributes"] }[] = [];
const recordingTracer: Tracer = {
  startSpan(name: string, options?: SpanOptions, context?: Context): Span {
    started.push({ name, parent: context ? trace.getSpanContext(context) : undefined, attributes: options?.attributes });
    return trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
  },
  startActiveSpan: (() => {
    throw new Error("not used");
  }) as never,
};
const provider: TracerProvider = { getTracer: () => recordingTracer };

describe("trace context from the producer", () => {
  let bed: UsageTestBed;

  beforeAll(async () => {
    propagation.setGlobalPropagator(traceparentPropagator);
    trace.setGlobalTracerProvider(provider);
    bed = await createUsageTestBed("tracing");
    await bed.start();
  });
  afterAll(async () => {
    await bed?.close();
    propagation.disable();
    trace.disable();
  });

  it("handles each message in a span whose parent is the message's traceparent", async () => {
    const traceId = newId().replace(/-/g, "");
    const spanId = newId().replace(/-/g, "").slice(0, 16);
    const event = completedEvent(newId());
    await bed.publishRaw(bed.subjects.completed, events.GenerationCompleted.encode(event).finish(), event.eventId, {
      traceparent: `00-${traceId}-${spanId}-01`,
    });
    const span = await eventually(async () => started.find((s) => s.name === `${bed.subjects.completed} process`));
    expect(span.parent).toMatchObject({ traceId, spanId, isRemote: true });
    expect(span.attributes).toMatchObject({ "messaging.system": "nats", "messaging.message.id": event.eventId });
  });
});
