import assert from "node:assert";
import type { FastifyRequest } from "fastify";
import { credits, usage } from "@tally/contracts";
import type { LimitWindow, PlanCatalog } from "@tally/platform/src/stateless";
import type { RateLimits } from "../limits/rate-limits";
import { toJsonInteger, toTimestamp } from "./presenters";
import type { RouteContext } from "./context";

/** One limit of the account's plan and where the account stands against it (docs/plans.md). */
export interface LimitJson {
  name: string;
  window: LimitWindow;
  limit: number;
  used: number;
  reserved: number;
  remaining: number;
  within_limit: boolean;
  /** When the window starts again; null for concurrent_generations (and a minute with no request yet). */
  resets_at: string | null;
}

/** `GET /v1/usage/limits`: the plan, its current billing period and every limit of it. */
export interface LimitsJson {
  plan: string;
  period: { start: string | null; end: string | null };
  limits: LimitJson[];
}

/**
 * The usage Subject of an account as credits knows it: id, kind, plan and billing anchor
 * (`current_period_start`). An account of unspecified kind predates guests: a user.
 */
export function subjectOf(account: credits.Account | undefined): usage.Subject {
  assert(account, "credits service answered without an account");
  const kind = account.kind === credits.AccountKind.ACCOUNT_KIND_GUEST ? usage.SubjectKind.SUBJECT_KIND_GUEST : usage.SubjectKind.SUBJECT_KIND_USER;
  return { id: account.id, kind, plan: account.plan, periodAnchor: account.currentPeriodStart };
}

const WINDOWS: readonly string[] = ["period", "day", "concurrent", "minute"] satisfies LimitWindow[];

/** A usage LimitStatus as public JSON. */
export function presentLimit(status: usage.LimitStatus): LimitJson {
  assert(WINDOWS.includes(status.window), `usage answered an unknown limit window (${status.window})`);
  return {
    name: status.name,
    window: status.window as LimitWindow,
    limit: toJsonInteger(status.limit),
    used: toJsonInteger(status.used),
    reserved: toJsonInteger(status.reserved),
    remaining: toJsonInteger(status.remaining),
    within_limit: status.withinLimit,
    resets_at: toTimestamp(status.resetsAt),
  };
}

/**
 * The plan's requests_per_minute, which the gateway itself enforces (usage leaves it out):
 * the count of the request's own account in the current minute, this request included.
 * Undefined when the plan sets none (unlimited) or is not in this gateway's plans file.
 */
async function requestsPerMinute(catalog: PlanCatalog, rateLimits: RateLimits, plan: string, request: FastifyRequest): Promise<LimitJson | undefined> {
  const limit = catalog.plans[plan]?.limits.requests_per_minute?.limit;
  if (limit === undefined) return undefined;
  const { used, resetsAt } = await rateLimits.accountUsage(request);
  return {
    name: "requests_per_minute",
    window: "minute",
    limit,
    used,
    reserved: 0,
    remaining: Math.max(0, limit - used),
    within_limit: used <= limit,
    resets_at: resetsAt ? resetsAt.toISOString() : null,
  };
}

/**
 * The limits of the request's own account (`account` as credits answered it): usage
 * ListLimits with the account's Subject, plus requests_per_minute from the gateway's limiter.
 */
export async function limitsOf(context: RouteContext, request: FastifyRequest, account: credits.Account | undefined): Promise<LimitsJson> {
  const usageClient = context.clients.usage;
  const response = await context.callFor(request)(usageClient.listLimits.bind(usageClient), { subject: subjectOf(account) });
  return presentLimits(context, request, response);
}

/** A usage ListLimitsResponse as public JSON, plus requests_per_minute from the gateway's limiter. */
export async function presentLimits(context: RouteContext, request: FastifyRequest, response: usage.ListLimitsResponse): Promise<LimitsJson> {
  const limits = response.limits.map(presentLimit);
  const perMinute = await requestsPerMinute(context.catalog, context.rateLimits, response.plan, request);
  if (perMinute) limits.push(perMinute);
  return { plan: response.plan, period: { start: toTimestamp(response.periodStart), end: toTimestamp(response.periodEnd) }, limits };
}
