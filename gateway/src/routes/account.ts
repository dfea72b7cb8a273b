import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { authenticate, principalOf } from "../auth/authenticate";
import { presentAccount, presentBalance, presentStats } from "./presenters";
import type { RouteContext } from "./context";
import { balanceResponse, meResponse, problemResponses } from "./schemas";

/** `GET /v1/me` and `GET /v1/credits/balance`. */
export function accountRoutes(context: RouteContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const routes = app.withTypeProvider<ZodTypeProvider>();
    const { callFor, clients } = context;
    const onRequest = authenticate(context.tokens);

    /**
     * The signed-in account (credits `GetAccount`) with its lifetime stats (usage
     * `GetUserStats`; zeros before any usage). 401 without a valid token.
     */
    routes.get(
      "/v1/me",
      {
        onRequest,
        schema: { tags: ["accounts"], summary: "The signed-in account and its stats", security: [{ bearerAuth: [] }], response: { 200: meResponse, ...problemResponses } },
      },
      async (request) => {
        const call = callFor(request);
        const { accountId } = principalOf(request);
        const [account, stats] = await Promise.all([
          call(clients.credits.getAccount.bind(clients.credits), { accountId }),
          call(clients.usage.getUserStats.bind(clients.usage), { userId: accountId }),
        ]);
        return { ...presentAccount(account.account), stats: presentStats(stats.stats) };
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
        const { accountId } = principalOf(request);
        const response = await call(clients.credits.getBalance.bind(clients.credits), { accountId });
        return presentBalance(response.balance);
      },
    );
  };
}
