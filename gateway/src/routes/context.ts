import type { FastifyRequest } from "fastify";
import { deterministicUuid, newId, type Logger } from "@tally/platform";
import type { AccessTokens } from "../auth/tokens";
import type { DownstreamCall, GatewayClients } from "../clients";
import type { GatewayConfig } from "../config";

/** What the route plugins share. */
export interface RouteContext {
  config: GatewayConfig;
  clients: GatewayClients;
  /** Unary calls on behalf of `request`: the downstream deadline and the request's trace context. */
  callFor(request: FastifyRequest): DownstreamCall;
  tokens: AccessTokens;
  logger: Logger;
}

/**
 * The `request_id` a mutating route passes to its service (DESIGN.md invariant 4). With an
 * `Idempotency-Key` header it is derived from the caller, the route and the key, so a retry
 * lands on the service's stored first answer (and the same key with another body is a
 * conflict the service detects); without one, every request is new.
 */
export function requestIdFor(request: FastifyRequest, accountId: string | undefined): string {
  const key = request.headers["idempotency-key"];
  if (typeof key !== "string") return newId();
  return deterministicUuid("idempotency", accountId ?? "anonymous", request.method, request.routeOptions.url ?? request.url, key);
}
