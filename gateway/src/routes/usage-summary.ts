import assert from "node:assert";
import { z } from "zod";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { principalOf } from "../auth/authenticate";
import type { RouteContext } from "./context";
import { presentLimits, subjectOf } from "./limits";
import { presentStats, toJsonInteger } from "./presenters";
import { lifetimeStatsSchema, limitSchema, periodTotalsSchema, problemResponses, userOrGuestSecurity } from "./schemas";
import { entrySchema, presentEntry } from "./usage-history";

/** How many of the newest usage log entries the summary shows. */
const RECENT_ENTRIES = 10;

export const summaryResponse = z
  .object({
    plan: z.string(),
    period: periodTotalsSchema,
    limits: z.array(limitSchema).describe("the plan's limits, as GET /v1/usage/limits lists them"),
    lifetime: lifetimeStatsSchema,
    recent: z.array(entrySchema).describe(`the ${RECENT_ENTRIES} newest usage log entries, newest first`),
  })
  .meta({ id: "UsageSummary" });

/**
 * `GET /v1/usage/summary`: the caller's plan; the current billing period with the totals of its
 * usage log entries in it (usage GetUsageTotals) and every limit (as `GET /v1/usage/limits`);
 * the lifetime stats; and the 10 newest usage log entries. Users and guests, their own usage
 * only (INV-7). Errors: 401; 503 when credits or usage is down.
 */
export function usageSummaryRoute(app: FastifyInstance, context: RouteContext): void {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  routes.get(
    "/v1/usage/summary",
    {
      onRequest: context.hooks.userOrGuest,
      schema: {
        tags: ["usage"],
        summary: "The plan, the current billing period's usage and limits, lifetime totals and the newest entries",
        security: userOrGuestSecurity,
        response: { 200: summaryResponse, ...problemResponses },
      },
    },
    async (request) => (await summaryOf(context, request, principalOf(request).accountId)).summary,
  );
}

/**
 * The usage summary of `accountId` (GET /v1/usage/summary's answer) and its credits account:
 * credits GetAccount, then ONE usage call, GetUsageSummary (limits as ListLimits, the current
 * billing period's totals, lifetime stats and the newest entries, read in one statement), plus
 * requests_per_minute from the gateway's limiter. Errors: `not_found` for an unknown account.
 */
export async function summaryOf(context: RouteContext, request: FastifyRequest, accountId: string) {
  const { clients } = context;
  const account = await context.accountOf(request, accountId);
  const answer = await context.callFor(request)(clients.usage.getUsageSummary.bind(clients.usage), { subject: subjectOf(account), recentCount: RECENT_ENTRIES });
  assert(answer.limits && answer.stats, "usage answered GetUsageSummary without limits or stats");
  const limits = await presentLimits(context, request, answer.limits);
  const [start, end] = [limits.period.start, limits.period.end];
  const totals = answer.periodTotals;
  const summary = {
    plan: limits.plan,
    period: {
      start,
      end,
      generations: toJsonInteger(totals?.generations),
      failed: toJsonInteger(totals?.failed),
      credits: toJsonInteger(totals?.credits),
      cost_micros: toJsonInteger(totals?.costMicros),
      processing_time_ms: toJsonInteger(totals?.processingTimeMs),
      output_bytes: toJsonInteger(totals?.outputBytes),
    },
    limits: limits.limits,
    lifetime: presentStats(answer.stats),
    recent: answer.recent.map(presentEntry),
  };
  return { summary, account };
}
