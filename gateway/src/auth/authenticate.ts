import assert from "node:assert";
import type { FastifyReply, FastifyRequest } from "fastify";
import { DomainError } from "@tally/platform";
import type { AccessTokens, Principal } from "./tokens";

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the `authenticate` hook on routes that require a bearer token. */
    principal?: Principal;
  }
}

/** The challenge sent with every 401 (RFC 6750 §3). */
export const BEARER_CHALLENGE = 'Bearer realm="tally"';

const BEARER_PATTERN = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)\s*$/i;

/**
 * An `onRequest` hook that requires `Authorization: Bearer <access token>` and sets
 * `request.principal`. Missing, malformed, badly signed or expired tokens answer 401
 * `unauthenticated` with a `WWW-Authenticate: Bearer` challenge (RFC 6750 `invalid_token`
 * when a token was given). It runs before the body is read or validated, so an anonymous
 * caller gets 401 rather than learning a route's input rules.
 */
export function authenticate(tokens: AccessTokens) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const header = request.headers.authorization;
    if (!header) {
      reply.header("www-authenticate", BEARER_CHALLENGE);
      throw new DomainError("unauthenticated", "missing bearer token (Authorization: Bearer <access token>)");
    }
    const match = BEARER_PATTERN.exec(header);
    if (!match) {
      reply.header("www-authenticate", `${BEARER_CHALLENGE}, error="invalid_request"`);
      throw new DomainError("unauthenticated", "the Authorization header must be 'Bearer <access token>'");
    }
    try {
      request.principal = await tokens.verify(match[1]!);
    } catch (error) {
      reply.header("www-authenticate", `${BEARER_CHALLENGE}, error="invalid_token"`);
      throw error;
    }
  };
}

/** The authenticated principal of a request that went through the `authenticate` hook (a bug otherwise). */
export function principalOf(request: FastifyRequest): Principal {
  assert(request.principal, "route must use the authenticate hook");
  return request.principal;
}
