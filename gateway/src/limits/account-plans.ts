import type { FastifyRequest } from "fastify";
import type { Logger, Plan, PlanCatalog } from "@tally/platform/src/stateless";
import { principalOf } from "../auth/authenticate";
import type { PlanCache } from "./plan-cache";

export interface AccountPlanDeps {
  catalog: PlanCatalog;
  cache: PlanCache;
  /** The account's plan name from credits (GetAccount), on behalf of `request`. */
  loadPlan(request: FastifyRequest, accountId: string): Promise<string>;
  logger: Logger;
}

/**
 * The plan whose requests_per_minute applies to the request's principal: a guest's comes with
 * its principal (EnsureGuestAccount), a user's from credits through the plan cache. When
 * credits cannot say (down, or a token of an account it does not know) or names a plan this
 * gateway's plans file lacks, the catalogue's default (or guest) plan applies, logged: a
 * limiter must not turn a credits outage into an outage of every route.
 */
async function planOfPrincipal(deps: AccountPlanDeps, request: FastifyRequest): Promise<Plan> {
  const principal = principalOf(request);
  const fallback = principal.kind === "guest" ? deps.catalog.guestPlan : deps.catalog.defaultPlan;
  let name = fallback;
  if (principal.kind === "guest") name = principal.plan;
  else {
    try {
      name = await deps.cache.planOf(principal.accountId, () => deps.loadPlan(request, principal.accountId));
    } catch (error) {
      deps.logger.warn({ err: error instanceof Error ? error.message : String(error), account_id: principal.accountId }, "plan lookup failed; rate limited as the default plan");
    }
  }
  const plan = deps.catalog.plans[name];
  if (plan) return plan;
  deps.logger.warn({ plan: name, account_id: principal.accountId }, "plan not in the plans file; rate limited as the default plan");
  return deps.catalog.plans[fallback]!;
}

/**
 * `requestsPerMinuteOf(request)`: the principal's plan requests_per_minute (undefined:
 * unlimited), worked out once per request. Call only after authentication.
 */
export function requestsPerMinuteResolver(deps: AccountPlanDeps): (request: FastifyRequest) => Promise<number | undefined> {
  const resolved = new WeakMap<FastifyRequest, Promise<number | undefined>>();
  return (request) => {
    let limit = resolved.get(request);
    if (!limit) {
      limit = planOfPrincipal(deps, request).then((plan) => plan.limits.requests_per_minute?.limit);
      resolved.set(request, limit);
    }
    return limit;
  };
}
