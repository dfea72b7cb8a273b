import { z } from "zod";
import { intFromEnv } from "@tally/platform/src/stateless";

/** Parses "true"/"false"/"1"/"0" environment values; anything else is a configuration error. */
const booleanFromEnv = (defaultValue: boolean) =>
  z
    .enum(["true", "false", "1", "0"])
    .default(defaultValue ? "true" : "false")
    .transform((value) => value === "true" || value === "1");

/**
 * The gateway's configuration, from environment variables only. Every limit is named here
 * with its default; `JWT_SECRET` has none on purpose, so a deployment cannot run with a
 * secret that is known from the source.
 */
export const gatewayConfigSchema = z.object({
  PORT: intFromEnv(8080),
  HOST: z.string().min(1).default("0.0.0.0"),
  CREDITS_GRPC_ADDRESS: z.string().min(1).default("127.0.0.1:50051"),
  GENERATIONS_GRPC_ADDRESS: z.string().min(1).default("127.0.0.1:50052"),
  USAGE_GRPC_ADDRESS: z.string().min(1).default("127.0.0.1:50053"),
  /** HMAC key for HS256 access tokens; at least 32 characters (RFC 7518 §3.2 wants ≥ 256 bits). */
  JWT_SECRET: z.string().min(32, "JWT_SECRET must be at least 32 characters"),
  JWT_ISSUER: z.string().min(1).default("tally"),
  ACCESS_TOKEN_TTL_SECONDS: intFromEnv(3600).pipe(z.number().int().positive()),
  /** Deadline of every gRPC call to a downstream service, in milliseconds. */
  DOWNSTREAM_TIMEOUT_MS: intFromEnv(5000).pipe(z.number().int().positive()),
  /** Deadline of the two Reconcile calls of `GET /v1/admin/reconciliation`, in milliseconds (they read whole tables). */
  RECONCILIATION_TIMEOUT_MS: intFromEnv(60000).pipe(z.number().int().positive()),
  /** Deadline of each readiness health check, in milliseconds. */
  READINESS_TIMEOUT_MS: intFromEnv(1000).pipe(z.number().int().positive()),
  /** Largest accepted request body, in bytes (413 beyond). */
  BODY_LIMIT_BYTES: intFromEnv(65536).pipe(z.number().int().positive()),
  /** Trust X-Forwarded-* headers (behind a reverse proxy) for the protocol and host of output URLs. */
  TRUST_PROXY: booleanFromEnv(false),
  /** Base of the problem `type` URIs (RFC 9457 §3.1.1); the reason code is appended. */
  PROBLEM_TYPE_BASE_URI: z.string().min(1).default("https://tally.dev/problems/"),
  /** The plans file (YAML or JSON, docs/plans.md); unset: the built-in plans. Read for requests_per_minute and plan names. */
  PLANS_FILE: z.string().min(1).optional(),
  /** How long an account's plan is reused for rate limiting before credits is asked again, in milliseconds. */
  PLAN_CACHE_TTL_MS: intFromEnv(5000).pipe(z.number().int().nonnegative()),
  /** Requests per minute per client IP without a valid bearer token (anonymous traffic and guests). */
  RATE_LIMIT_ANONYMOUS_PER_MINUTE: intFromEnv(600).pipe(z.number().int().positive()),
  /** Sign-ups and sign-ins (POST /v1/auth/register and /v1/auth/login) per minute per client IP. */
  RATE_LIMIT_AUTH_PER_MINUTE: intFromEnv(60).pipe(z.number().int().positive()),
  /** Redis shared by every replica's rate limiter (e.g. redis://127.0.0.1:6379); unset: counts are per replica. */
  REDIS_URL: z.string().min(1).optional(),
  /** Prefix of the rate limiter's Redis keys (deployments sharing one Redis keep apart by it). */
  RATE_LIMIT_REDIS_PREFIX: z.string().min(1).default("tally:rate-limit:"),
  /** How often an open `GET /v1/generations/{id}/events` stream sends a `: heartbeat` comment, in milliseconds. */
  SSE_HEARTBEAT_MS: intFromEnv(15000).pipe(z.number().int().positive()),
  /** Longest life of one events stream, in milliseconds; then it ends and the client resumes with Last-Event-ID. */
  SSE_STREAM_MAX_MS: intFromEnv(3600000).pipe(z.number().int().positive()),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type GatewayConfig = z.infer<typeof gatewayConfigSchema>;
