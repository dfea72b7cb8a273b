import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { principalOf } from "../auth/authenticate";
import type { RouteContext } from "./context";
import { limitsOf } from "./limits";
import { limitsResponse, problemResponses, userOrGuestSecurity } from "./schemas";

/** `GET /v1/usage/limits`, for users and guests. */
export function usageRoutes(context: RouteContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const routes = app.withTypeProvider<ZodTypeProvider>();
    const { callFor, clients } = context;

    /**
     * The caller's plan, its current billing period `{start, end}` and every limit of the plan
     * `{name, window, limit, used, reserved, remaining, within_limit, resets_at}` (credits
     * GetAccount for the plan and billing anchor, usage ListLimits, plus requests_per_minute
     * from the gateway's own limiter). A plan change shows at once.
     */
    routes.get(
      "/v1/usage/limits",
      {
        onRequest: context.hooks.userOrGuest,
        schema: {
          tags: ["usage"],
          summary: "The plan's limits and the usage counted against them",
          security: userOrGuestSecurity,
            response: { 200: limitsResponse, ...problemResponses },
        },
      },
      async (request) => {
        const { accountId } = principalOf(request);
        const response = await callFor(request)(clients.credits.getAccount.bind(clients.credits), { accountId });
        return limitsOf(context, request, response.account);
      },
    );
  };
}
