import type { FastifyInstance } from "fastify";
import { context, isSpanContextValid, propagation, SpanKind, SpanStatusCode, trace, type Context, type Span } from "@opentelemetry/api";
import { tracer } from "@tally/platform";

declare module "fastify" {
  interface FastifyRequest {
    /** The request's server span (non-recording until an OpenTelemetry SDK is registered). */
    span?: Span;
    /** Context holding `span`, the parent of downstream gRPC calls. */
    traceContext?: Context;
  }
}

/**
 * One server span per request, continuing the caller's `traceparent`, through the
 * OpenTelemetry API only: with no SDK registered every span is a no-op, so tracing costs
 * nothing until ops turns it on. (`@fastify/otel` would do this given an SDK; the API alone
 * keeps the gateway free of SDK dependencies.)
 */
export function installRequestTracing(app: FastifyInstance): void {
  app.addHook("onRequest", async (request) => {
    const parent = propagation.extract(context.active(), request.headers);
    const route = request.routeOptions.url ?? "unmatched";
    const span = tracer("gateway").startSpan(
      `${request.method} ${route}`,
      { kind: SpanKind.SERVER, attributes: { "http.request.method": request.method, "http.route": route } },
      parent,
    );
    request.span = span;
    request.traceContext = trace.setSpan(parent, span);
  });
  app.addHook("onResponse", async (request, reply) => {
    if (!request.span) return;
    request.span.setAttribute("http.response.status_code", reply.statusCode);
    if (reply.statusCode >= 500) request.span.setStatus({ code: SpanStatusCode.ERROR });
    request.span.end();
  });
}

/** The request's trace id when tracing is on (a valid, sampled-or-not span context), else undefined. */
export function traceIdOf(span: Span | undefined): string | undefined {
  const spanContext = (span ?? trace.getActiveSpan())?.spanContext();
  return spanContext && isSpanContextValid(spanContext) ? spanContext.traceId : undefined;
}
