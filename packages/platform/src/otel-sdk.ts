import path from "node:path";
import type { IncomingMessage } from "node:http";
import type { NodeSDK } from "@opentelemetry/sdk-node";

/*
 * The OpenTelemetry SDK behind `otel-register.ts` (the `--import` preload). The SDK packages are
 * `require`d only when tracing is requested, so a process with tracing off never loads them.
 */

/** Where the running SDK is kept: on globalThis, so every copy of this module (ESM preload, CJS main) finds the one instance. */
const SDK_KEY = Symbol.for("tally.otel.sdk");

type Env = Record<string, string | undefined>;

const isTrue = (value: string | undefined) => value?.trim().toLowerCase() === "true";
const isSet = (value: string | undefined) => value !== undefined && value.trim() !== "";

/**
 * True when traces are to be exported: `OTEL_EXPORTER_OTLP_ENDPOINT` or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (non-empty) and `OTEL_SDK_DISABLED` is not `true`.
 */
export function tracingRequested(env: Env): boolean {
  if (isTrue(env.OTEL_SDK_DISABLED)) return false;
  return isSet(env.OTEL_EXPORTER_OTLP_ENDPOINT) || isSet(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/**
 * The `service.name` used when `OTEL_SERVICE_NAME` is unset: `tally-` and the folder of the
 * entry point (`…/services/credits/main.ts` → `tally-credits`, `…/gateway/main.ts` →
 * `tally-gateway`); `tally` when there is no entry point.
 */
export function defaultServiceName(entry: string | undefined): string {
  return entry ? `tally-${path.basename(path.dirname(path.resolve(entry)))}` : "tally";
}

/** True when the environment names the service (`OTEL_SERVICE_NAME`, or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`). */
const namedByEnvironment = (env: Env) => isSet(env.OTEL_SERVICE_NAME) || /(^|,)\s*service\.name\s*=/.test(env.OTEL_RESOURCE_ATTRIBUTES ?? "");

/** Paths of probes and scrapes, which would otherwise each make a trace of their own. */
const UNTRACED_HTTP_PATHS = new Set(["/metrics", "/healthz", "/readyz", "/livez"]);

const isUntracedPath = (url: string | undefined) => UNTRACED_HTTP_PATHS.has((url ?? "").split("?")[0]!);

/** gRPC health checks (grpc.health.v1.Health/Check and /Watch): probes, not work. */
const UNTRACED_GRPC_METHODS = ["Check", "Watch"];

/**
 * Starts the NodeSDK and registers it with the OpenTelemetry API (idempotent). What the SDK
 * reads from the environment it reads itself: the exporter (`OTEL_TRACES_EXPORTER`, default
 * OTLP), its endpoint and protocol (`OTEL_EXPORTER_OTLP_*`, default `http/protobuf`), the
 * sampler (`OTEL_TRACES_SAMPLER[_ARG]`), the batch processor (`OTEL_BSP_*`), the propagators
 * (`OTEL_PROPAGATORS`, default W3C trace context and baggage) and the resource
 * (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`, else `defaultServiceName(entry)`).
 * Metrics and logs stay with Prometheus and stdout: `OTEL_METRICS_EXPORTER` and
 * `OTEL_LOGS_EXPORTER` default to `none` here (set them to opt in).
 *
 * Instrumentations: HTTP (server spans, not for probe and scrape paths), gRPC (client and
 * server spans, not for health checks), `pg` (a span per query, only inside a traced
 * operation: polling loops make none) and Fastify (`@fastify/otel`, on every Fastify instance
 * at its creation: a request span and a handler span named by route, no span per hook). NATS is traced by hand (outbox relay and consumers).
 */
export function startTracingSdk(env: Env, entry: string | undefined): NodeSDK {
  const running = (globalThis as Record<symbol, NodeSDK | undefined>)[SDK_KEY];
  if (running) return running;
  env.OTEL_METRICS_EXPORTER ??= "none";
  env.OTEL_LOGS_EXPORTER ??= "none";
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { NodeSDK } = require("@opentelemetry/sdk-node") as typeof import("@opentelemetry/sdk-node");
  const { HttpInstrumentation } = require("@opentelemetry/instrumentation-http") as typeof import("@opentelemetry/instrumentation-http");
  const { GrpcInstrumentation } = require("@opentelemetry/instrumentation-grpc") as typeof import("@opentelemetry/instrumentation-grpc");
  const { PgInstrumentation } = require("@opentelemetry/instrumentation-pg") as typeof import("@opentelemetry/instrumentation-pg");
  const { FastifyOtelInstrumentation } = require("@fastify/otel") as typeof import("@fastify/otel");
  /* eslint-enable @typescript-eslint/no-require-imports */
  const sdk = new NodeSDK({
    serviceName: namedByEnvironment(env) ? undefined : defaultServiceName(entry),
    instrumentations: [
      new HttpInstrumentation({ ignoreIncomingRequestHook: (request: IncomingMessage) => isUntracedPath(request.url) }),
      new GrpcInstrumentation({ ignoreGrpcMethods: UNTRACED_GRPC_METHODS }),
      new PgInstrumentation({ requireParentSpan: true }),
      new FastifyOtelInstrumentation({
        registerOnInitialization: true,
        // Request and handler spans; a span per hook would multiply the spans of every request.
        instrumentHooks: false,
        ignorePaths: (route: { url?: string }) => isUntracedPath(route.url),
        // Handlers are anonymous functions: name their spans by route, not by the plugin's source text.
        lifecycleHook: (span, info) => span.updateName(`${info.hookName} ${info.request.method} ${info.request.routeOptions.url ?? "unmatched"}`),
      }),
    ],
  });
  sdk.start();
  (globalThis as Record<symbol, NodeSDK | undefined>)[SDK_KEY] = sdk;
  return sdk;
}

/**
 * Flushes the spans not yet exported and stops the SDK; waits at most `timeoutMs`
 * (milliseconds). A no-op when tracing is off. Called last in a graceful shutdown
 * (`handleShutdown`), so the spans of the drain itself are exported too.
 */
export async function shutdownTracing(timeoutMs: number): Promise<void> {
  const sdk = (globalThis as Record<symbol, NodeSDK | undefined>)[SDK_KEY];
  if (!sdk) return;
  (globalThis as Record<symbol, NodeSDK | undefined>)[SDK_KEY] = undefined;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
    timer.unref();
  });
  await Promise.race([sdk.shutdown().catch(() => undefined), timeout]);
  clearTimeout(timer);
}
