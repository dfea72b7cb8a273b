import pino from "pino";
import { trace } from "@opentelemetry/api";

export type Logger = pino.Logger;

/**
 * Structured JSON logs (pino) with the service name and, inside a span, its trace id.
 * Level from `LOG_LEVEL` (default `info`).
 */
export function createLogger(service: string, level = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino({
    level,
    base: { service },
    mixin() {
      const span = trace.getActiveSpan();
      return span ? { trace_id: span.spanContext().traceId } : {};
    },
  });
}
