/**
 * Preload that turns trace export on: every start path runs a service as
 * `node --import tsx --import <this file> main.ts` (spawnService, the workspaces' `npm start`,
 * the Dockerfile), so the OpenTelemetry SDK is registered before main.ts loads what it
 * instruments (`http`, `@grpc/grpc-js`, `pg`, Fastify).
 *
 * Configured only by the standard `OTEL_*` variables, read by the SDK itself. It starts only
 * when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set and
 * `OTEL_SDK_DISABLED` is not `true`; otherwise it loads nothing and costs nothing (the
 * OpenTelemetry API stays a no-op). See `startTracingSdk` for what it registers.
 */
import { startTracingSdk, tracingRequested } from "./otel-sdk";

if (tracingRequested(process.env)) startTracingSdk(process.env, process.argv[1]);
