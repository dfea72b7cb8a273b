import type { FastifyBaseLogger, FastifyInstance, FastifyRequest, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { notFound, requireUuid } from "@tally/platform/src/stateless";
import type { RequestHook, RouteContext } from "../context";

/** A route plugin's instance with the zod type provider: handlers see typed bodies, queries and params. */
export type ZodRoutes = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, ZodTypeProvider>;

/** What every generation route module receives: the shared context and the principal hooks. */
export interface GenerationRouteDeps {
  context: RouteContext;
  /** Users or guests (`context.hooks.userOrGuest`): every generation route acts for its caller only. */
  onRequest: RequestHook[];
}

/** OpenAPI security requirement of every generation route: a bearer token or `X-Guest-ID`. */
export { userOrGuestSecurity as security } from "../schemas";

/** Absolute URL of a generation's output, from the request's protocol and host. */
export function outputUrlBuilder(request: FastifyRequest): (id: string) => string {
  return (id) => `${request.protocol}://${request.host}/v1/generations/${id}/output`;
}

/**
 * The lower-cased generation id of a path. An id that cannot name a generation is simply not
 * found (404, never a 500 or a 400), the same answer as another user's generation.
 */
export function generationIdFrom(params: { id: string }): string {
  return requireUuid(params.id, () => notFound(`generation ${params.id} not found`));
}
