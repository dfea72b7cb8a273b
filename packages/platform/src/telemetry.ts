import * as grpc from "@grpc/grpc-js";
import { context, propagation, trace, type Context } from "@opentelemetry/api";

/** Tracer for a service; a no-op until an OpenTelemetry SDK is registered. */
export const tracer = (name: string) => trace.getTracer(name);

/** W3C trace context of the active span as carrier fields (`traceparent`, `tracestate`). */
export function currentTraceCarrier(): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier;
}

/** A context continuing the trace carried by `carrier` (e.g. message headers, an outbox row). */
export function contextFromCarrier(carrier: Record<string, string | undefined>): Context {
  return propagation.extract(context.active(), carrier);
}

/** Copies the active trace context into gRPC metadata. */
export function injectTraceMetadata(metadata: grpc.Metadata): void {
  for (const [key, value] of Object.entries(currentTraceCarrier())) metadata.set(key, value);
}

/** Reads a trace context from incoming gRPC metadata. */
export function contextFromMetadata(metadata: grpc.Metadata): Context {
  const carrier: Record<string, string> = {};
  for (const key of ["traceparent", "tracestate"]) {
    const value = metadata.get(key)[0];
    if (value !== undefined) carrier[key] = value.toString();
  }
  return contextFromCarrier(carrier);
}
