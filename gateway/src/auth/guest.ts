import assert from "node:assert";
import type { FastifyRequest } from "fastify";
import { parseUuid, validationError } from "@tally/platform/src/stateless";
import type { DownstreamCall, GatewayClients } from "../clients";
import type { PlanCache } from "../limits/plan-cache";
import type { EnsureGuest } from "./authenticate";

/** The header a guest names itself with (a UUID the client made up and keeps). */
export const GUEST_ID_HEADER = "x-guest-id";

/** The field name a refused guest id is reported under, as schema validation names headers. */
const GUEST_ID_FIELD = `headers.${GUEST_ID_HEADER}`;

/**
 * The lower-cased guest id of `X-Guest-ID`, or undefined when the header is absent.
 * Errors: `validation` (400) naming `headers.x-guest-id` when it is present but not one UUID
 * (a repeated header is refused too: one request acts for one guest).
 */
export function guestIdOf(request: FastifyRequest): string | undefined {
  const value = request.headers[GUEST_ID_HEADER];
  if (value === undefined) return undefined;
  const id = typeof value === "string" ? parseUuid(value.trim()) : null;
  if (id === null) {
    const message = "must be a UUID";
    throw validationError(`${GUEST_ID_FIELD}: ${message}`, { errors: [{ field: GUEST_ID_FIELD, message }] });
  }
  return id;
}

/**
 * The `ensureGuest` of `authenticateUserOrGuest`: credits EnsureGuestAccount (creates the
 * guest's account with the guest plan's trial credits on first use; idempotent on the id),
 * and the plan it answers is remembered for the rate limiter. Errors: credits' reasons
 * (`unauthenticated` for a user's id or an adopted guest's, `unavailable`, ...).
 */
export function guestAccounts(clients: GatewayClients, callFor: (request: FastifyRequest) => DownstreamCall, planCache: PlanCache): EnsureGuest {
  return async (request, guestId) => {
    const credits = clients.credits;
    const response = await callFor(request)(credits.ensureGuestAccount.bind(credits), { guestId });
    assert(response.account, "credits answered EnsureGuestAccount without an account");
    planCache.remember(response.account.id, response.account.plan);
    return { kind: "guest", accountId: response.account.id, plan: response.account.plan };
  };
}
