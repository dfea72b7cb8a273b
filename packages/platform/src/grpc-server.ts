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
  [K in keyof S as string extends K ? never : K]: S[K] extends grpc.handleServerStreamingCall<infer Req, infer Res>
    ? StreamingHandler<Req, Res>
    : S[K] extends grpc.handleUnaryCall<infer Req, infer Res>
      ? (request: Req, ctx: CallContext) => Promise<Res>
      : never;
};

/** What a server-streaming handler writes to and learns its call's end from. */
export interface ResponseStream<Res> extends CallContext {
  /** Sends the response headers now (by default they go with the first message): "the call is accepted". */
  accept(): void;
  /** Sends one message; resolves once the transport takes more (backpressure), at once when the call has ended. */
  write(message: Res): Promise<void>;
  /** Aborted when the caller cancels, the deadline passes or the server shuts down. */
  signal: AbortSignal;
}

/**
 * A server-streaming RPC as an async function: it writes messages to `stream` and resolves to
 * end the call OK; a thrown DomainError ends it with its code, as for unary calls. Mark it
 * with `streaming()` so bindService can tell it from a unary handler.
 */
export interface StreamingHandler<Req, Res> {
  (request: Req, stream: ResponseStream<Res>): Promise<void>;
  readonly streaming: true;
}

/** Marks `fn` as the handler of a server-streaming RPC (see StreamingHandler). */
export function streaming<Req, Res>(fn: (request: Req, stream: ResponseStream<Res>) => Promise<void>): StreamingHandler<Req, Res> {
  return Object.assign(fn, { streaming: true as const });
}

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
  const handlers: Record<string, grpc.handleUnaryCall<unknown, unknown> | grpc.handleServerStreamingCall<unknown, unknown>> = {};
  for (const [method, fn] of Object.entries(implementation) as [string, (req: unknown, ctx: CallContext) => Promise<unknown>][]) {
    if ((fn as Partial<StreamingHandler<unknown, unknown>>).streaming) {
      handlers[method] = bindStreaming(serviceName, method, fn as unknown as StreamingHandler<unknown, unknown>, logger, metrics);
      continue;
    }
    handlers[method] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
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

/**
 * One server-streaming RPC as a grpc-js handler: the call runs in a span like a unary one; the
 * handler's `signal` aborts when the call is cancelled (caller gone, deadline, shutdown);
 * writes wait for the transport to drain (a slow reader holds the handler, not a growing
 * buffer); the call ends OK when the handler resolves, or with its error's code. Metrics
 * record the call when it ends (CANCELLED when the caller went away first).
 */
function bindStreaming(
  serviceName: string,
  method: string,
  fn: StreamingHandler<unknown, unknown>,
  logger: Logger,
  metrics?: ServiceMetrics,
): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    const started = process.hrtime.bigint();
    const record = (code: grpc.status) => metrics?.recordRpc(serviceName, method, grpc.status[code] ?? String(code), Number(process.hrtime.bigint() - started) / 1e9);
    const aborter = new AbortController();
    let ended = false;
    call.on("cancelled", () => aborter.abort());
    call.on("error", () => aborter.abort());
    const stream: ResponseStream<unknown> = {
      metadata: call.metadata,
      deadline: call.getDeadline(),
      signal: aborter.signal,
      accept: () => call.sendMetadata(new grpc.Metadata()),
      write: (message) =>
        new Promise<void>((resolve) => {
          if (ended || aborter.signal.aborted || call.write(message)) return resolve();
          const done = () => {
            call.off("drain", done);
            aborter.signal.removeEventListener("abort", done);
            resolve();
          };
          call.on("drain", done);
          aborter.signal.addEventListener("abort", done);
        }),
    };
    const parent = contextFromMetadata(call.metadata);
    const span = tracer(serviceName).startSpan(`${serviceName}/${method}`, {}, parent);
    context.with(trace.setSpan(parent, span), () => fn(call.request, stream)).then(
      () => {
        ended = true;
        span.end();
        record(aborter.signal.aborted ? grpc.status.CANCELLED : grpc.status.OK);
        if (!aborter.signal.aborted) call.end();
      },
      (error: unknown) => {
        ended = true;
        if (error instanceof DomainError) logger.debug({ method, reason: error.reason, err: error.message }, "domain error");
        else {
          logger.error({ method, err: error }, "unexpected error in handler");
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
        span.end();
        const serviceError = toServiceError(error) as grpc.ServiceError;
        record(serviceError.code);
        if (!aborter.signal.aborted) call.emit("error", serviceError);
      },
    );
  };
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
