import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { userOf } from "../auth/authenticate";
import { presentAccount, presentBalance, presentStats } from "./presenters";
import { requestIdFor, type RouteContext } from "./context";
import { limitsOf } from "./limits";
import { balanceResponse, idempotencyHeaders, meResponse, noContentResponse, problemResponses } from "./schemas";

/**
 * Deletes `accountId`'s account (credits DeleteAccount) on behalf of `request`, whose caller
 * (`callerId`) scopes its Idempotency-Key: sign-in stops at once, remaining credits are written
 * off, every service erases the account's personal data once (`account.deleted`), and every
 * fact (usage log, analytics, ledger) stays under the anonymous account id (INV-11). An account
 * already deleted answers as the first deletion did. Errors: `not_found` (no user's account
 * with this id), `conflict` while a generation of the account is running (details
 * `active_holds`).
 */
export async function deleteAccountFor(context: RouteContext, request: FastifyRequest, callerId: string, accountId: string): Promise<void> {
  const creditsClient = context.clients.credits;
  await context.callFor(request)(creditsClient.deleteAccount.bind(creditsClient), { requestId: requestIdFor(request, { accountId: callerId }), accountId });
}

const balanceQuery = z.object({
  at: z.iso.datetime({ offset: true }).optional().describe("RFC 3339: the balance as it stood at this moment (not in the future)"),
});

/** `GET /v1/me`, `DELETE /v1/me` and `GET /v1/credits/balance`. */
export function accountRoutes(context: RouteContext) {
  return async (app: FastifyInstance): Promise<void> => {
    deleteMeRoute(app, context);
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
          context.accountOf(request, accountId),
          call(clients.usage.getUserStats.bind(clients.usage), { userId: accountId }),
        ]);
        const limits = await limitsOf(context, request, account);
        return { ...presentAccount(account), stats: presentStats(stats.stats), period: limits.period, limits: limits.limits };
      },
    );

    /**
     * `{trial_credits, token_balance, held, total_available}` of the signed-in account, now or,
     * with `at` (RFC 3339, not in the future: 400 `validation`), as it stood then (replayed by
     * credits from its grants, holds and ledger).
     */
    routes.get(
      "/v1/credits/balance",
      {
        onRequest,
        schema: {
          tags: ["credits"],
          summary: "Credit balance, now or at a past moment",
          security: [{ bearerAuth: [] }],
          querystring: balanceQuery,
          response: { 200: balanceResponse, ...problemResponses },
        },
      },
      async (request) => {
        const call = callFor(request);
        const { accountId } = userOf(request);
        const at = request.query.at === undefined ? undefined : new Date(request.query.at);
        const response = await call(clients.credits.getBalance.bind(clients.credits), { accountId, at });
        return presentBalance(response.balance);
      },
    );
  };
}

/** Registers `DELETE /v1/me` on `app`. */
function deleteMeRoute(app: FastifyInstance, context: RouteContext): void {
  const routes = app.withTypeProvider<ZodTypeProvider>();

  /**
   * Deletes the signed-in user's account (deleteAccountFor): 204, also for a repeat with the
   * same (now dead) token, so a retry answers as the first call did; 401 without a valid
   * token; 409 `conflict` while a generation of the account is running (try again once it
   * has finished). Idempotent with `Idempotency-Key` (INV-4).
   */
  routes.delete(
    "/v1/me",
    {
      onRequest: context.hooks.userToken,
      schema: {
        tags: ["accounts"],
        summary: "Delete the signed-in account (erases personal data, keeps usage facts)",
        security: [{ bearerAuth: [] }],
        headers: idempotencyHeaders,
        response: { 204: noContentResponse, ...problemResponses },
      },
    },
    async (request, reply) => {
      const { accountId } = userOf(request);
      await deleteAccountFor(context, request, accountId, accountId);
      context.planCache.forget(accountId);
      return reply.code(204).send(null);
    },
  );
}
