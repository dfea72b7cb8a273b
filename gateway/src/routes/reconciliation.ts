import { z } from "zod";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { credits, usage } from "@tally/contracts";
import { downstreamCaller } from "../clients";
import type { RouteContext } from "./context";
import { toJsonInteger } from "./presenters";
import { problemResponses } from "./schemas";

const creditsItem = z
  .object({
    check: z.string().describe("the INV-2 equality that fails (docs/invariants.md), e.g. ledger_available, grants_remaining, grant_parts"),
    account_id: z.string(),
    grant_id: z.string().nullable().describe("the grant of a per-grant check; null for a per-account one"),
    expected: z.number().int().describe("what the ledger, the grants or the holds say, in credits"),
    actual: z.number().int().describe("the stored figure checked against them, in credits"),
  })
  .meta({ id: "CreditsReconciliationDifference" });

const usageItem = z
  .object({
    check: z.string().describe("<table>.<column> of the derived figure (INV-6), e.g. user_stats.total_generations, period_usage.reserved_credits"),
    subject_id: z.string().describe("the user or guest"),
    key: z.string().nullable().describe("the row's window: a period or day start, or a month YYYY-MM; null for user stats and the active reservation count"),
    expected: z.string().nullable().describe("what the usage log says (integers as decimal strings; null: no row)"),
    actual: z.string().nullable().describe("what is stored (null: no row)"),
  })
  .meta({ id: "UsageReconciliationDifference" });

const reconciliationResponse = z
  .object({
    differences: z.number().int().describe("every difference found in both services (0: all agree)"),
    credits: z.object({ differences: z.number().int(), items: z.array(creditsItem).describe("the first 100") }),
    usage: z.object({ differences: z.number().int(), items: z.array(usageItem).describe("the first 100") }),
    checked_at: z.string().describe("when the checks were made (RFC 3339)"),
  })
  .meta({ id: "Reconciliation" });

/** Credits' answer as public JSON. */
export const presentCreditsReconciliation = (r: credits.ReconcileResponse) => ({
  differences: toJsonInteger(r.differencesTotal),
  items: r.differences.map((d) => ({
    check: d.check,
    account_id: d.accountId,
    grant_id: d.grantId === "" ? null : d.grantId,
    expected: toJsonInteger(d.expected),
    actual: toJsonInteger(d.actual),
  })),
});

/** Usage's answer as public JSON ("" → null). */
export const presentUsageReconciliation = (r: usage.ReconcileResponse) => ({
  differences: toJsonInteger(r.differencesTotal),
  items: r.differences.map((d) => ({
    check: d.check,
    subject_id: d.subjectId,
    key: d.key === "" ? null : d.key,
    expected: d.expected === "" ? null : d.expected,
    actual: d.actual === "" ? null : d.actual,
  })),
});

/**
 * Registers `GET /v1/admin/reconciliation` (admins only, `requireAdmin` passed in by the admin
 * routes): credits Reconcile (INV-2: the ledger replays to the balances; grants and holds
 * account for every credit) and usage Reconcile (INV-6: every derived table equals the usage
 * log), asked at once; answers both, each with its count and first 100 differences, and their
 * sum. Read only; both calls have the deadline `RECONCILIATION_TIMEOUT_MS`. Errors: 401; 403
 * `forbidden`; 503 when either service is down; 504 past the deadline.
 */
export function adminReconciliationRoute(app: FastifyInstance, context: RouteContext, requireAdmin: (request: FastifyRequest) => Promise<string>): void {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  routes.get(
    "/v1/admin/reconciliation",
    {
      onRequest: context.hooks.user,
      schema: {
        tags: ["admin"],
        summary: "Reconciliation of credits and usage with their ledgers and logs (admins)",
        security: [{ bearerAuth: [] }],
        response: { 200: reconciliationResponse, ...problemResponses },
      },
    },
    async (request) => {
      await requireAdmin(request);
      const checkedAt = new Date();
      // Their own deadline: each reads whole tables, longer than an ordinary call may take.
      const call = downstreamCaller(context.config.RECONCILIATION_TIMEOUT_MS, request.traceContext);
      const { credits: creditsClient, usage: usageClient } = context.clients;
      const [creditsAnswer, usageAnswer] = await Promise.all([
        call(creditsClient.reconcile.bind(creditsClient), {}),
        call(usageClient.reconcile.bind(usageClient), {}),
      ]);
      const creditsPart = presentCreditsReconciliation(creditsAnswer);
      const usagePart = presentUsageReconciliation(usageAnswer);
      return { differences: creditsPart.differences + usagePart.differences, credits: creditsPart, usage: usagePart, checked_at: checkedAt.toISOString() };
    },
  );
}
