import assert from "node:assert";
import type { FastifyReply, FastifyRequest } from "fastify";
import { DomainError, type Logger } from "@tally/platform/src/stateless";
import { guestIdOf } from "./guest";
import type { AccessTokens, GuestPrincipal, Principal, UserPrincipal } from "./tokens";

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the `authenticate` / `authenticateUserOrGuest` hooks on routes that act for someone. */
    principal?: Principal;
  }
}

/** The challenge sent with every 401 (RFC 6750 §3). */
export const BEARER_CHALLENGE = 'Bearer realm="tally"';

const BEARER_PATTERN = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)\s*$/i;

/** The outcome of checking a request's `Authorization` header: a principal, or why not (with its challenge). */
type BearerCheck = { principal: UserPrincipal } | { error: DomainError; challenge: string };

/** One check per request: the rate limiter and the route's hook both ask, the token is verified once. */
const bearerChecks = new WeakMap<FastifyRequest, Promise<BearerCheck | undefined>>();

async function runBearerCheck(header: string | undefined, tokens: AccessTokens): Promise<BearerCheck | undefined> {
  if (!header) return undefined;
  const match = BEARER_PATTERN.exec(header);
  if (!match) {
    const error = new DomainError("unauthenticated", "the Authorization header must be 'Bearer <access token>'");
    return { error, challenge: `${BEARER_CHALLENGE}, error="invalid_request"` };
  }
  try {
    return { principal: await tokens.verify(match[1]!) };
  } catch (error) {
    const domainError = error instanceof DomainError ? error : new DomainError("unauthenticated", "access token is invalid");
    return { error: domainError, challenge: `${BEARER_CHALLENGE}, error="invalid_token"` };
  }
}

/**
 * The request's bearer token checked (memoized per request): undefined without an
 * `Authorization` header, else the user it names or the reason it names nobody. Never throws.
 */
export function checkBearer(request: FastifyRequest, tokens: AccessTokens): Promise<BearerCheck | undefined> {
  let check = bearerChecks.get(request);
  if (!check) {
    check = runBearerCheck(request.headers.authorization, tokens);
    bearerChecks.set(request, check);
  }
  return check;
}

/** Sets the principal of a checked token, or throws its 401 with the matching challenge. */
function acceptBearer(check: BearerCheck, request: FastifyRequest, reply: FastifyReply): void {
  if ("error" in check) {
    reply.header("www-authenticate", check.challenge);
    throw check.error;
  }
  request.principal = check.principal;
}

/**
 * An `onRequest` hook for routes that need a signed-up user: requires
 * `Authorization: Bearer <access token>` and sets `request.principal`. Missing, malformed,
 * badly signed or expired tokens answer 401 `unauthenticated` with a `WWW-Authenticate: Bearer`
 * challenge (RFC 6750 `invalid_token` when a token was given); so does a guest (`X-Guest-ID`
 * alone). It runs before the body is read or validated, so an anonymous caller gets 401
 * rather than learning a route's input rules.
 */
export function authenticate(tokens: AccessTokens) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const check = await checkBearer(request, tokens);
    if (!check) {
      reply.header("www-authenticate", BEARER_CHALLENGE);
      throw new DomainError("unauthenticated", "missing bearer token (Authorization: Bearer <access token>)");
    }
    acceptBearer(check, request, reply);
  };
}

/** Credits' GetAccount on behalf of `request`: the account's plan, or a rejection (`not_found` for an unknown or deleted account). */
export type LoadAccountPlan = (request: FastifyRequest, accountId: string) => Promise<string>;

/**
 * The answer to a request whose signed-up caller's account no longer exists: 401
 * `unauthenticated` with the `invalid_token` challenge set on `reply`. Thrown by the live-account
 * check, and by the error handler when a service finds the account gone later in the request.
 */
export function deletedAccountError(reply: FastifyReply): DomainError {
  reply.header("www-authenticate", `${BEARER_CHALLENGE}, error="invalid_token"`);
  return new DomainError("unauthenticated", "the account of this access token no longer exists");
}

/**
 * An `onRequest` hook, after `authenticate` or `authenticateUserOrGuest`: a signed-up user's
 * account must still exist in credits, asked on every request (no cache), so that the token
 * of a deleted account stops working at once on every replica (credits answers `not_found`
 * for a deleted account): 401 `unauthenticated`, challenge `invalid_token`. When credits
 * cannot answer (down, deadline), the request goes on, logged: the route's own calls answer
 * for the outage (a check must not turn a credits outage into one of every route, nor hide a
 * route's 400 or 404), and a deleted account has no credits, credentials or personal data left
 * to reach. The plan of the answer is handed to `remember` (the rate limiter's plan cache), so
 * the check costs no extra call there. Guests pass (their account was checked by
 * EnsureGuestAccount).
 */
export function requireLiveAccount(loadPlan: LoadAccountPlan, remember: (accountId: string, plan: string) => void, logger: Logger) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const principal = principalOf(request);
    if (principal.kind !== "user") return;
    let plan: string;
    try {
      plan = await loadPlan(request, principal.accountId);
    } catch (error) {
      if (error instanceof DomainError && error.reason === "not_found") throw deletedAccountError(reply);
      logger.warn({ err: error instanceof Error ? error.message : String(error), account_id: principal.accountId }, "account check failed; request goes on");
      return;
    }
    remember(principal.accountId, plan);
  };
}

/** Finds or creates a guest's account (credits EnsureGuestAccount) for `request`. */
export type EnsureGuest = (request: FastifyRequest, guestId: string) => Promise<GuestPrincipal>;

/**
 * An `onRequest` hook for routes a guest may use too. A bearer token wins and is checked as
 * `authenticate` does; with none, `X-Guest-ID` names a guest: 400 `validation` naming
 * `headers.x-guest-id` unless it is a UUID, then `ensureGuest` (credits answers 401
 * `unauthenticated` for an id that is a user's or was adopted by a sign-up). Neither: 401.
 */
export function authenticateUserOrGuest(tokens: AccessTokens, ensureGuest: EnsureGuest) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const check = await checkBearer(request, tokens);
    if (check) return acceptBearer(check, request, reply);
    const guestId = guestIdOf(request);
    if (guestId === undefined) {
      reply.header("www-authenticate", BEARER_CHALLENGE);
      throw new DomainError("unauthenticated", "missing bearer token (Authorization: Bearer <access token>) or guest id (X-Guest-ID: <uuid>)");
    }
    request.principal = await ensureGuest(request, guestId);
  };
}

/** The principal of a request that went through one of the hooks above (a bug otherwise). */
export function principalOf(request: FastifyRequest): Principal {
  assert(request.principal, "route must use the authenticate hook");
  return request.principal;
}

/** The signed-up user of a request that went through `authenticate` (a bug otherwise). */
export function userOf(request: FastifyRequest): UserPrincipal {
  const principal = principalOf(request);
  assert(principal.kind === "user", "route must use the authenticate hook (users only)");
  return principal;
}
