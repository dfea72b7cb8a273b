import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { usage } from "@tally/contracts";
import { principalOf } from "../auth/authenticate";
import type { RouteContext } from "./context";
import { limitsOf } from "./limits";
import { usageHistoryRoute } from "./usage-history";
import { usageSummaryRoute } from "./usage-summary";
import { presentOutcomeCounts, toJsonInteger } from "./presenters";
import { limitsResponse, monthlyAnalyticsResponse, problemResponses, userOrGuestSecurity } from "./schemas";

/** Months `GET /v1/usage/analytics` answers. */
const ANALYTICS_MONTHS = 12;

/** One month of usage's analytics as public JSON. */
function presentMonth(month: usage.MonthlyAnalytics) {
  return {
    month: month.month,
    generations: toJsonInteger(month.generations),
    failed: toJsonInteger(month.failed),
    credits: toJsonInteger(month.credits),
    cost_micros: toJsonInteger(month.costMicros),
    processing_time_ms: toJsonInteger(month.processingTimeMs),
    output_bytes: toJsonInteger(month.outputBytes),
    by_input_type: presentOutcomeCounts(month.byInputType),
    by_provider: presentOutcomeCounts(month.byProvider),
    by_billing_classification: presentOutcomeCounts(month.byBillingClassification),
    plans: month.plans,
    plan_changed: month.planChanged,
  };
}

/** `GET /v1/usage/limits`, `/analytics`, `/history` and `/summary`, for users and guests. */
export function usageRoutes(context: RouteContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const routes = app.withTypeProvider<ZodTypeProvider>();
    const { callFor, clients } = context;
    usageHistoryRoute(app, context);
    usageSummaryRoute(app, context);

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
        return limitsOf(context, request, await context.accountOf(request, accountId));
      },
    );

    /**
     * The caller's last 12 UTC months, newest first (usage GetMonthlyAnalytics): completed and
     * failed generations, credits, cost, processing time, output bytes, breakdowns by input
     * type, provider and billing classification, and the plans in force. A month without usage
     * has zeros. Only the caller's own analytics (INV-7).
     */
    routes.get(
      "/v1/usage/analytics",
      {
        onRequest: context.hooks.userOrGuest,
        schema: {
          tags: ["usage"],
          summary: "Monthly usage analytics of the last 12 months",
          security: userOrGuestSecurity,
          response: { 200: monthlyAnalyticsResponse, ...problemResponses },
        },
      },
      async (request) => {
        const { accountId } = principalOf(request);
        const response = await callFor(request)(clients.usage.getMonthlyAnalytics.bind(clients.usage), { subjectId: accountId, months: ANALYTICS_MONTHS });
        return { months: response.months.map(presentMonth) };
      },
    );
  };
}
