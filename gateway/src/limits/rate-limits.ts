import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fastifyRateLimit, { normalizeIP } from "@fastify/rate-limit";
import { Redis } from "ioredis";
import { DomainError, type Logger } from "@tally/platform/src/stateless";
import { checkBearer, principalOf } from "../auth/authenticate";
import type { AccessTokens } from "../auth/tokens";
import type { GatewayConfig } from "../config";

/**
 * Request rate limits (docs/plans.md, "Rate limits"), counted by `@fastify/rate-limit` in
 * fixed one-minute windows: per client IP for traffic without a valid bearer token (anonymous
 * callers and guests, RATE_LIMIT_ANONYMOUS_PER_MINUTE), per client IP for sign-up and sign-in
 * (RATE_LIMIT_AUTH_PER_MINUTE), and per account (user or guest id) at its plan's
 * `requests_per_minute`. With REDIS_URL the counts live in Redis and every replica shares
 * them; without it each replica counts on its own. A Redis failure lets requests through
 * (the limiter is a guard, not a dependency).
 */

/** The window every limit counts in, in milliseconds. */
export const RATE_WINDOW_MS = 60_000;
/** Routes never limited: probes and scrapes must not be refused by a busy neighbour. */
const UNLIMITED_ROUTES = new Set(["/healthz", "/readyz", "/metrics"]);
/** Sign-up and sign-in, limited per client IP on their own budget too. */
const AUTH_ROUTES = new Set(["/v1/auth/register", "/v1/auth/login"]);
/** Distinct keys each limiter remembers per window without Redis (beyond it the oldest are forgotten). */
const LOCAL_KEYS_MAX = 50_000;
/** A Redis call slower than this lets the request through rather than holding it, in milliseconds. */
const REDIS_COMMAND_TIMEOUT_MS = 500;

type Limiter = ReturnType<FastifyInstance["createRateLimit"]>;

/** Where a request stands against one limit. */
interface RateState {
  max: number;
  remaining: number;
  resetSeconds: number;
}

/** The tightest state met so far per request: its headers are the ones the answer carries. */
const tightest = new WeakMap<FastifyRequest, RateState>();

/** `RateLimit-*` (draft-ietf-httpapi-ratelimit-headers) for the tightest limit a request met. */
function setRateHeaders(reply: FastifyReply, state: RateState): void {
  reply.header("ratelimit-limit", state.max);
  reply.header("ratelimit-remaining", state.remaining);
  reply.header("ratelimit-reset", state.resetSeconds);
  reply.header("ratelimit-policy", `${state.max};w=${RATE_WINDOW_MS / 1000}`);
}

/**
 * Counts the request against `limiter`. Errors: `rate_limited` (429, `Retry-After` and
 * `RateLimit-*` headers, `limit` and `retry_after_seconds` members) once over the limit.
 */
async function enforce(limiter: Limiter, what: string, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const result = await limiter(request);
  if (result.isAllowed) return;
  const state = { max: result.max, remaining: result.remaining, resetSeconds: Math.max(1, result.ttlInSeconds) };
  if (result.isExceeded) {
    setRateHeaders(reply, { ...state, remaining: 0 });
    reply.header("retry-after", state.resetSeconds);
    throw new DomainError("rate_limited", `too many requests ${what}: at most ${state.max} per minute; retry in ${state.resetSeconds} s`, {
      limit: state.max,
      retry_after_seconds: state.resetSeconds,
    });
  }
  const previous = tightest.get(request);
  if (!previous || state.remaining < previous.remaining) {
    tightest.set(request, state);
    setRateHeaders(reply, state);
  }
}

/** What the routes get: the per-account hook and a read of an account's count. */
export interface RateLimits {
  /** Route-level `onRequest` hook, after authentication: the principal's plan requests_per_minute. */
  accountHook(request: FastifyRequest, reply: FastifyReply): Promise<void>;
  /** The request's principal's count in the current minute, without counting: `{used, resetsAt}` (resetsAt null when no window is open). */
  accountUsage(request: FastifyRequest): Promise<{ used: number; resetsAt: Date | null }>;
}

export interface RateLimitDeps {
  config: Pick<GatewayConfig, "RATE_LIMIT_ANONYMOUS_PER_MINUTE" | "RATE_LIMIT_AUTH_PER_MINUTE" | "REDIS_URL" | "RATE_LIMIT_REDIS_PREFIX">;
  tokens: AccessTokens;
  /** The principal's plan requests_per_minute; undefined: unlimited. Called after authentication. */
  requestsPerMinuteOf(request: FastifyRequest): Promise<number | undefined>;
  logger: Logger;
}

/** The Redis client of the shared store (closed with the app), or undefined without REDIS_URL. */
function redisClient(app: FastifyInstance, url: string | undefined, logger: Logger): Redis | undefined {
  if (!url) return undefined;
  const redis = new Redis(url, { maxRetriesPerRequest: 1, commandTimeout: REDIS_COMMAND_TIMEOUT_MS, connectionName: "tally-gateway" });
  redis.on("error", (error: Error) => logger.warn({ err: error.message }, "rate limiter: redis error (requests are let through)"));
  app.addHook("onClose", async () => {
    await redis.quit().catch(() => redis.disconnect());
  });
  return redis;
}

/**
 * Registers `@fastify/rate-limit` (no global hook: the gateway decides which limits a request
 * meets) and the IP limits as a root `onRequest` hook; returns the per-account limit for the
 * routes. Call before the routes are registered.
 */
export async function installRateLimits(app: FastifyInstance, deps: RateLimitDeps): Promise<RateLimits> {
  const { config, tokens } = deps;
  const redis = redisClient(app, config.REDIS_URL, deps.logger);
  await app.register(fastifyRateLimit, { global: false, redis, nameSpace: config.RATE_LIMIT_REDIS_PREFIX, skipOnError: true, timeWindow: RATE_WINDOW_MS });
  const ipOf = (request: FastifyRequest) => normalizeIP(request.ip);
  const create = (options: Parameters<FastifyInstance["createRateLimit"]>[0]) =>
    app.createRateLimit({ timeWindow: RATE_WINDOW_MS, skipOnError: true, cache: LOCAL_KEYS_MAX, ...options } as Parameters<FastifyInstance["createRateLimit"]>[0]);
  const anonymous = create({ keyGenerator: (request) => `anonymous:${ipOf(request)}`, max: config.RATE_LIMIT_ANONYMOUS_PER_MINUTE });
  const auth = create({ keyGenerator: (request) => `auth:${ipOf(request)}`, max: config.RATE_LIMIT_AUTH_PER_MINUTE });
  const account = create({
    keyGenerator: (request) => `account:${principalOf(request).accountId}`,
    max: async (request) => (await deps.requestsPerMinuteOf(request)) ?? 0,
    allowList: async (request) => (await deps.requestsPerMinuteOf(request)) === undefined,
  });

  app.addHook("onRequest", async (request, reply) => {
    const route = request.routeOptions.url;
    if (route !== undefined && UNLIMITED_ROUTES.has(route)) return;
    const bearer = await checkBearer(request, tokens);
    if (!bearer || "error" in bearer) await enforce(anonymous, "from this address", request, reply);
    if (request.method === "POST" && route !== undefined && AUTH_ROUTES.has(route)) await enforce(auth, "to sign up or sign in from this address", request, reply);
  });

  return {
    accountHook: (request, reply) => enforce(account, "for this account", request, reply),
    async accountUsage(request) {
      const result = await account(request, { increment: false });
      if (result.isAllowed) return { used: 0, resetsAt: null };
      return { used: result.max - result.remaining, resetsAt: result.ttl > 0 ? new Date(Date.now() + result.ttl) : null };
    },
  };
}
