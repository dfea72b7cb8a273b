import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { userOf } from "../auth/authenticate";
import { presentAccount, presentBalance, presentStats } from "./presenters";
import type { RouteContext } from "./context";
import { limitsOf } from "./limits";
import { balanceResponse, meResponse, problemResponses } from "./schemas";

/** `GET /v1/me` and `GET /v1/credits/balance`. */
export function accountRoutes(context: RouteContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const routes = app.withTypeProvider<ZodTypeProvider>();
    const { callFor, clients } = context;
    const onRequest = context.hooks.user;

    /**
     * The signed-in account (credits `GetAccount`: with its `plan`) with its lifetime stats
     * (usage `GetUserStats`; zeros before any usage), its current billing `period` and its
     * plan's `limits` (as `GET /v1/usage/limits`). 401 without a valid token.
     */
    routes.get(
      "/v1/me",
      {
        onRequest,
        schema: { tags: ["accounts"], summary: "The signed-in account and its stats", security: [{ bearerAuth: [] }], response: { 200: meResponse, ...problemResponses } },
      },
      async (request) => {
        const call = callFor(request);
        const { accountId } = userOf(request);
        const [account, stats] = await Promise.all([
          call(clients.credits.getAccount.bind(clients.credits), { accountId }),
          call(clients.usage.getUserStats.bind(clients.usage), { userId: accountId }),
        ]);
        const limits = await limitsOf(context, request, account.account);
        return { ...presentAccount(account.account), stats: presentStats(stats.stats), period: limits.period, limits: limits.limits };
      },
    );

    /** `{trial_credits, token_balance, held, total_available}` of the signed-in account. */
    routes.get(
      "/v1/credits/balance",
      {
        onRequest,
        schema: { tags: ["credits"], summary: "Credit balance", security: [{ bearerAuth: [] }], response: { 200: balanceResponse, ...problemResponses } },
      },
      async (request) => {
        const call = callFor(request);
        const { accountId } = userOf(request);
        const response = await call(clients.credits.getBalance.bind(clients.credits), { accountId });
        return presentBalance(response.balance);
      },
    );
  };
}
