import { createHash } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { credits } from "@tally/contracts";
import { deterministicUuid, newId, type Logger, type PlanCatalog } from "@tally/platform/src/stateless";
import type { AccessTokens } from "../auth/tokens";
import type { DownstreamCall, GatewayClients } from "../clients";
import type { GatewayConfig } from "../config";
import type { PlanCache } from "../limits/plan-cache";
import type { RateLimits } from "../limits/rate-limits";

/** An `onRequest` hook of a route. */
export type RequestHook = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/** What the route plugins share. */
export interface RouteContext {
  config: GatewayConfig;
  clients: GatewayClients;
  /** Unary calls on behalf of `request`: the downstream deadline and the request's trace context. */
  callFor(request: FastifyRequest): DownstreamCall;
  /**
   * Credits GetAccount of `accountId` on behalf of `request`, asked at most once per request
   * and account (the live-account check, the rate limiter and the route share the answer).
   * Rejects as the call does (`not_found` for an unknown or deleted account, `unavailable`…).
   */
  accountOf(request: FastifyRequest, accountId: string): Promise<credits.Account | undefined>;
  tokens: AccessTokens;
  logger: Logger;
  /** The plans file (PLANS_FILE, else the built-in plans): names and requests_per_minute. */
  catalog: PlanCatalog;
  /** Plans of accounts as the rate limiter last learnt them (a plan change forgets its entry). */
  planCache: PlanCache;
  rateLimits: RateLimits;
  /**
   * The `onRequest` hooks of routes that act for someone: authentication, then the account's
   * requests_per_minute. `user`: signed-up users only, whose account must still exist (a
   * deleted account's token answers 401 at once); `userOrGuest`: users (the same), or guests
   * by `X-Guest-ID`; `userToken`: a valid token suffices, even of a deleted account (only
   * `DELETE /v1/me` uses it, so that a repeated deletion answers as the first).
   */
  hooks: { user: RequestHook[]; userOrGuest: RequestHook[]; userToken: RequestHook[] };
}

/** Who a mutating request is made by, which scopes its `Idempotency-Key`. */
export type RequestCaller = { accountId: string } | { anonymousEmail: string };

/** The normalized (trimmed, lower-cased) email an anonymous request's key is scoped by. */
export const normalizeEmail = (email: string): string => email.trim().toLowerCase();

/**
 * The `request_id` a mutating route passes to its service (INV-4). With an
 * `Idempotency-Key` header it is derived from the caller, the route and the key, so a retry
 * lands on the service's stored first answer (and the same key with another body is a
 * conflict the service detects); without one, every request is new. Anonymous routes
 * (register, login) are scoped by the SHA-256 of the body's normalized email, so two people
 * who happen to send the same key never share (or see) each other's stored answer.
 */
export function requestIdFor(request: FastifyRequest, caller: RequestCaller): string {
  const key = request.headers["idempotency-key"];
  if (typeof key !== "string") return newId();
  const route = request.routeOptions.url ?? request.url;
  if ("accountId" in caller) return deterministicUuid("idempotency", caller.accountId, request.method, route, key);
  const emailHash = createHash("sha256").update(normalizeEmail(caller.anonymousEmail)).digest("hex");
  return deterministicUuid("idempotency", "anonymous", emailHash, request.method, route, key);
}
