import pino from "pino";
import { trace } from "@opentelemetry/api";
import { describeError } from "./database-errors";

export type Logger = pino.Logger;

/**
 * Structured JSON logs (pino) with the service name and, inside a span, its trace and span ids.
 * Level from `LOG_LEVEL` (default `info`). Every `err` field goes through `describeError`, so no
 * log line carries a database statement or its parameters. `destination` defaults to stdout
 * (tests pass one to read what would be logged).
 */
export function createLogger(service: string, level = process.env.LOG_LEVEL ?? "info", destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service },
    serializers: { err: describeError, cause: describeError },
    mixin() {
      const span = trace.getActiveSpan();
      if (!span) return {};
      const { traceId, spanId } = span.spanContext();
      return { trace_id: traceId, span_id: spanId };
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
