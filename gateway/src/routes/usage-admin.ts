import { z } from "zod";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { usage } from "@tally/contracts";
import { PLAN_NAME_LENGTH_MAX, validationError } from "@tally/platform/src/stateless";
import type { RouteContext } from "./context";
import { presentOutcomeCounts, toJsonInteger } from "./presenters";
import { CONTROL_CHARACTERS_MESSAGE, NO_CONTROL_CHARACTERS, problemResponses } from "./schemas";

/** The default window of admin analytics, and the longest one, in days. */
const DEFAULT_DAYS = 90;
const MAX_DAYS = 731;
const DAY_MS = 86_400_000;
/**
 * The first and last day a query may name: the window ends the day after its last day, and the
 * services take times in the years 1 to 9999 only (platform `requireTime`).
 */
const DATE_MIN = "0001-01-01";
const DATE_MAX = "9999-12-30";

const isoDate = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, "a date YYYY-MM-DD")
  .refine((value) => !Number.isNaN(Date.parse(`${value}T00:00:00Z`)) && new Date(`${value}T00:00:00Z`).toISOString().startsWith(value), "a real calendar date")
  .refine((value) => value >= DATE_MIN && value <= DATE_MAX, `a day from ${DATE_MIN} to ${DATE_MAX}`);

const analyticsQuery = z.object({
  start_date: isoDate.optional().describe("first day (UTC), inclusive; default: 89 days before end_date"),
  end_date: isoDate.optional().describe("last day (UTC), inclusive; default: today"),
  plan: z.string().min(1).max(PLAN_NAME_LENGTH_MAX).regex(NO_CONTROL_CHARACTERS, CONTROL_CHARACTERS_MESSAGE).optional().describe("only generations recorded under this plan"),
});

const counts = z.record(z.string(), z.object({ completed: z.number().int(), failed: z.number().int() }));
const money = z
  .object({
    credits: z.number().int().describe("credits charged for completed generations"),
    revenue_micros: z.number().int().describe("those credits at their plan's credit_price_micros"),
    cost_micros: z.number().int().describe("what the provider's work cost, completed and failed generations"),
    margin_micros: z.number().int().describe("revenue_micros - cost_micros (negative at a loss)"),
  })
  .meta({ id: "Money" });

/** Usage's Money as public JSON (zeros when absent). */
const presentMoney = (m: usage.Money | undefined) => ({
  credits: toJsonInteger(m?.credits ?? 0n),
  revenue_micros: toJsonInteger(m?.revenueMicros ?? 0n),
  cost_micros: toJsonInteger(m?.costMicros ?? 0n),
  margin_micros: toJsonInteger(m?.marginMicros ?? 0n),
});
const presentMoneyMap = (map: Record<string, usage.Money>) => Object.fromEntries(Object.entries(map).map(([key, m]) => [key, presentMoney(m)]));

const analyticsResponse = z
  .object({
    start_date: z.string(),
    end_date: z.string(),
    plan: z.string().nullable(),
    generations: z.number().int().describe("completed generations (billable)"),
    failed: z.number().int().describe("failed generations (not billable)"),
    credits: z.number().int(),
    cost_micros: z.number().int(),
    average_cost_micros: z.number().int().describe("cost per completed generation, rounded down"),
    unique_users: z.number().int(),
    unique_guests: z.number().int(),
    by_plan: counts.describe('by the plan recorded with each generation ("" when unknown)'),
    by_provider: counts,
    by_input_type: counts,
    money: money.describe("revenue, provider cost and margin of the window"),
    money_by_plan: z.record(z.string(), money).describe("money by the plan recorded with each generation"),
    money_by_provider: z.record(z.string(), money).describe("money by provider"),
  })
  .meta({ id: "PlatformAnalytics" });

/** The window [start, end + 1 day) of the query's dates (UTC), with the defaults applied (the default start no earlier than DATE_MIN) and checked. */
export function analyticsWindow(query: { start_date?: string; end_date?: string }, today: Date): { startDate: string; endDate: string; since: Date; before: Date } {
  const endDate = query.end_date ?? today.toISOString().slice(0, 10);
  const end = new Date(`${endDate}T00:00:00Z`);
  const startDate = query.start_date ?? new Date(Math.max(end.getTime() - (DEFAULT_DAYS - 1) * DAY_MS, Date.parse(`${DATE_MIN}T00:00:00Z`))).toISOString().slice(0, 10);
  const since = new Date(`${startDate}T00:00:00Z`);
  if (since > end) throw validationError("query.start_date: must not be after end_date", { field: "query.start_date" });
  if ((end.getTime() - since.getTime()) / DAY_MS + 1 > MAX_DAYS) throw validationError(`query.start_date: the window is at most ${MAX_DAYS} days`, { field: "query.start_date" });
  return { startDate, endDate, since, before: new Date(end.getTime() + DAY_MS) };
}

/**
 * Registers `GET /v1/admin/usage/analytics?start_date&end_date&plan` (admins only, `requireAdmin`
 * passed in by the admin routes): platform totals over the UTC days [start_date, end_date]
 * (default the last 90 days), optionally of one plan, from usage GetPlatformAnalytics. Errors:
 * 400 `validation` (a date that is not YYYY-MM-DD or not from 0001-01-01 to 9999-12-30, start
 * after end, more than 731 days, a plan with a control character); 401;
 * 403 `forbidden`; 503.
 */
export function adminUsageAnalyticsRoute(app: FastifyInstance, context: RouteContext, requireAdmin: (request: FastifyRequest) => Promise<string>): void {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  routes.get(
    "/v1/admin/usage/analytics",
    {
      onRequest: context.hooks.user,
      schema: {
        tags: ["admin"],
        summary: "Platform usage analytics (admins)",
        security: [{ bearerAuth: [] }],
        querystring: analyticsQuery,
        response: { 200: analyticsResponse, ...problemResponses },
      },
    },
    async (request) => {
      await requireAdmin(request);
      const window = analyticsWindow(request.query, new Date());
      const usageClient = context.clients.usage;
      const a = await context.callFor(request)(usageClient.getPlatformAnalytics.bind(usageClient), {
        occurredSince: window.since,
        occurredBefore: window.before,
        plan: request.query.plan ?? "",
      });
      return {
        start_date: window.startDate,
        end_date: window.endDate,
        plan: request.query.plan ?? null,
        generations: toJsonInteger(a.generations),
        failed: toJsonInteger(a.failed),
        credits: toJsonInteger(a.credits),
        cost_micros: toJsonInteger(a.costMicros),
        average_cost_micros: toJsonInteger(a.averageCostMicros),
        unique_users: toJsonInteger(a.uniqueUsers),
        unique_guests: toJsonInteger(a.uniqueGuests),
        by_plan: presentOutcomeCounts(a.byPlan),
        by_provider: presentOutcomeCounts(a.byProvider),
        by_input_type: presentOutcomeCounts(a.byInputType),
        money: presentMoney(a.money),
        money_by_plan: presentMoneyMap(a.moneyByPlan),
        money_by_provider: presentMoneyMap(a.moneyByProvider),
      };
    },
  );
}
