import type { FastifyInstance } from "fastify";
import { context, isSpanContextValid, propagation, SpanKind, SpanStatusCode, trace, type Context, type Span } from "@opentelemetry/api";
import { tracer } from "@tally/platform/src/stateless";

declare module "fastify" {
  interface FastifyRequest {
    /** The request's span: @fastify/otel's when the SDK runs, else one made here (non-recording with no SDK). */
    span?: Span;
    /** Context holding `span`, the parent of downstream gRPC calls. */
    traceContext?: Context;
  }
}

/** What `@fastify/otel` (registered by the SDK preload, otel-register.ts) decorates a request with. */
interface FastifyOtelRequest {
  opentelemetry?: () => { instrumented: boolean; span?: Span; context?: Context };
}

/**
 * One server span per request. When the OpenTelemetry SDK runs (OTEL_EXPORTER_OTLP_ENDPOINT
 * set, see otel-register.ts), the HTTP instrumentation and `@fastify/otel` make the request's
 * spans; `request.span` is then @fastify/otel's request span (none for the untraced probe
 * paths, see otel-sdk.ts). Otherwise a SERVER span is
 * made here through the API, continuing the caller's `traceparent`: a no-op with no SDK, and
 * what a tracer provider registered in-process (tests) sees.
 */
export function installRequestTracing(app: FastifyInstance): void {
  app.addHook("onRequest", async (request) => {
    const otel = (request as FastifyOtelRequest).opentelemetry?.();
    if (otel) {
      // The SDK runs: @fastify/otel's span, or none where it leaves the path untraced (probes).
      if (otel.instrumented) {
        request.span = otel.span;
        request.traceContext = otel.context;
      }
      return;
    }
    const parent = propagation.extract(context.active(), request.headers);
    const route = request.routeOptions.url ?? "unmatched";
    const span = tracer("gateway").startSpan(
      `${request.method} ${route}`,
      { kind: SpanKind.SERVER, attributes: { "http.request.method": request.method, "http.route": route } },
      parent,
    );
    request.span = span;
    request.traceContext = trace.setSpan(parent, span);
    ownSpans.add(span);
  });
  app.addHook("onResponse", async (request, reply) => {
    if (!request.span || !ownSpans.has(request.span)) return;
    ownSpans.delete(request.span);
    request.span.setAttribute("http.response.status_code", reply.statusCode);
    if (reply.statusCode >= 500) request.span.setStatus({ code: SpanStatusCode.ERROR });
    request.span.end();
  });
}

/** The spans made here (ended here); @fastify/otel ends its own. */
const ownSpans = new WeakSet<Span>();

/** The request's trace id when tracing is on (a valid, sampled-or-not span context), else undefined. */
export function traceIdOf(span: Span | undefined): string | undefined {
  const spanContext = (span ?? trace.getActiveSpan())?.spanContext();
  return spanContext && isSpanContextValid(spanContext) ? spanContext.traceId : undefined;
}
