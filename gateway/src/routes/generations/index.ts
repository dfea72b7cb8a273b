import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { RouteContext } from "../context";
import { cancelGenerationRoute } from "./cancel";
import { createGenerationRoute } from "./create";
import { generationEventsRoute } from "./events";
import { getGenerationRoute } from "./get";
import { listGenerationsRoute } from "./list";
import { generationOutputRoute } from "./output";
import { retryGenerationRoute } from "./retry";

/**
 * The generation routes (the REST contract is docs/api.md), one module each, all acting for
 * their caller only: a signed-in user, or a guest by `X-Guest-ID` (INV-7: another's
 * generation is not found). Registration order is the order of the OpenAPI document's paths.
 */
export function generationRoutes(context: RouteContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const routes = app.withTypeProvider<ZodTypeProvider>();
    const deps = { context, onRequest: context.hooks.userOrGuest };
    createGenerationRoute(routes, deps);
    listGenerationsRoute(routes, deps);
    getGenerationRoute(routes, deps);
    cancelGenerationRoute(routes, deps);
    retryGenerationRoute(routes, deps);
    generationOutputRoute(routes, deps);
    generationEventsRoute(routes, deps);
  };
}
