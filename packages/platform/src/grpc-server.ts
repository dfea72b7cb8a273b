import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";
import { context, SpanStatusCode, trace, type Context } from "@opentelemetry/api";
import { DomainError, toServiceError } from "./errors";
import type { Logger } from "./logger";
import { startMetricsServer, type ServiceMetrics } from "./metrics";
import { contextFromMetadata, tracer } from "./telemetry";

/** What a handler sees of its call besides the request. */
export interface CallContext {
  metadata: grpc.Metadata;
  /** The call's deadline, when the caller set one. */
  deadline?: grpc.Deadline;
}

/**
 * A service implementation written as async functions: `(request, ctx) => Promise<response>`,
 * derived from a ts-proto `*Server` interface so the shapes stay checked against the proto.
 * ts-proto server interfaces extend grpc-js's UntypedServiceImplementation, whose catch-all
 * index signature is dropped here: only the named RPCs remain (no per-service workaround).
 */
export type AsyncService<S> = {
  [K in keyof S as string extends K ? never : K]: S[K] extends grpc.handleUnaryCall<infer Req, infer Res>
    ? (request: Req, ctx: CallContext) => Promise<Res>
    : never;
};

/**
 * The context a handler's span continues: the gRPC instrumentation's SERVER span when the SDK
 * runs (it is active around the handler), else the caller's trace from the call's metadata.
 */
function callerContext(metadata: grpc.Metadata): Context {
  return trace.getSpan(context.active()) ? context.active() : contextFromMetadata(metadata);
}

/**
 * Adapts an AsyncService to grpc-js handlers: each call runs in a span `<service>/<method>`
 * continuing the caller's trace (a child of the gRPC instrumentation's SERVER span when the
 * OpenTelemetry SDK runs), a thrown DomainError becomes its gRPC code with the reason in trailers, and anything
 * else is logged as a bug and answered INTERNAL. With `metrics`, every answer is counted by
 * method and status code and timed.
 */
export function bindService<S extends grpc.UntypedServiceImplementation>(
  serviceName: string,
  implementation: AsyncService<S>,
  logger: Logger,
  metrics?: ServiceMetrics,
): S {
  const handlers: Record<string, grpc.handleUnaryCall<unknown, unknown>> = {};
  for (const [method, fn] of Object.entries(implementation) as [string, (req: unknown, ctx: CallContext) => Promise<unknown>][]) {
    handlers[method] = (call, callback) => {
      const started = process.hrtime.bigint();
      const record = (code: grpc.status) => metrics?.recordRpc(serviceName, method, grpc.status[code] ?? String(code), Number(process.hrtime.bigint() - started) / 1e9);
      const parent = callerContext(call.metadata);
      const span = tracer(serviceName).startSpan(`${serviceName}/${method}`, {}, parent);
      context
        .with(trace.setSpan(parent, span), () => fn(call.request, { metadata: call.metadata, deadline: call.getDeadline() }))
        .then(
          (response) => {
            span.end();
            record(grpc.status.OK);
            callback(null, response);
          },
          (error: unknown) => {
            if (error instanceof DomainError) {
              logger.debug({ method, reason: error.reason, err: error.message }, "domain error");
            } else {
              logger.error({ method, err: error }, "unexpected error in handler");
              span.setStatus({ code: SpanStatusCode.ERROR });
            }
            span.end();
            const serviceError = toServiceError(error) as grpc.ServiceError;
            record(serviceError.code);
            callback(serviceError, null);
          },
        );
    };
  }
  return handlers as unknown as S;
}

export interface GrpcServerOptions {
  /** Port to listen on; 0 picks a free one. */
  port: number;
  host?: string;
  services: { name: string; definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation }[];
  /** Proto root and files served by gRPC reflection. */
  protoRoot: string;
  protoFiles: string[];
  logger: Logger;
  /** Served at `GET /metrics` on METRICS_HOST:METRICS_PORT beside the gRPC port when `port` is set (0: a free port). */
  metrics?: { metrics: ServiceMetrics; port?: number; host: string };
}

/** A started gRPC server with health (grpc.health.v1) and reflection. */
export interface RunningGrpcServer {
  server: grpc.Server;
  /** The bound port (useful when asked for 0). */
  port: number;
  /** The `/metrics` port, when metrics are served. */
  metricsPort?: number;
  /** Marks every service SERVING or NOT_SERVING in the health service. */
  setServing(serving: boolean): void;
  /** Stops taking calls, lets running ones finish for up to `timeoutMs`, then forces. */
  shutdown(timeoutMs: number): Promise<void>;
}

/** Starts a gRPC server; services start NOT_SERVING until `setServing(true)`. */
export async function startGrpcServer(options: GrpcServerOptions): Promise<RunningGrpcServer> {
  const server = new grpc.Server({ "grpc.max_receive_message_length": 16 * 1024 * 1024 });
  for (const service of options.services) server.addService(service.definition, service.implementation);

  const names = ["", ...options.services.map((s) => s.name)];
  const health = new HealthImplementation(Object.fromEntries(names.map((n) => [n, "NOT_SERVING" as const])));
  health.addToServer(server);

  const packageDefinition = protoLoader.loadSync(options.protoFiles, {
    includeDirs: [options.protoRoot],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  new ReflectionService(packageDefinition).addToServer(server);

  const address = `${options.host ?? "0.0.0.0"}:${options.port}`;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, boundPort) =>
      error ? reject(error) : resolve(boundPort),
    ),
  );
  options.logger.info({ port }, "gRPC server listening");
  const metricsServer =
    options.metrics?.port === undefined ? undefined : await startMetricsServer(options.metrics.metrics, options.metrics.port, options.metrics.host, options.logger);

  return {
    server,
    port,
    metricsPort: metricsServer?.port,
    setServing(serving) {
      for (const name of names) health.setStatus(name, serving ? "SERVING" : "NOT_SERVING");
    },
    async shutdown(timeoutMs) {
      for (const name of names) health.setStatus(name, "NOT_SERVING");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, timeoutMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await metricsServer?.close();
    },
  };
}
