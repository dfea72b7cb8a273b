import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { DomainError, notFound, requireUuid, validationError } from "@tally/platform/src/stateless";
import { credits } from "@tally/contracts";
import { userOf } from "../auth/authenticate";
import { presentAccount } from "./presenters";
import { requestIdFor, type RouteContext } from "./context";
import { deleteAccountFor } from "./account";
import { adminUsageAnalyticsRoute } from "./usage-admin";
import { creditsLedgerRoutes } from "./credits-ledger";
import { adminReconciliationRoute } from "./reconciliation";
import { summaryOf, summaryResponse } from "./usage-summary";
import { accountParams, accountSchema, idempotencyHeaders, noContentResponse, problemResponses, setBillingAnchorBody, setPlanBody } from "./schemas";

/**
 * Admins only: the token must say `admin`, and credits must still say so (a demoted admin's
 * token, valid until it expires, no longer works). Errors: 403 `forbidden`.
 */
export async function requireAdmin(context: RouteContext, request: FastifyRequest): Promise<string> {
  const { accountId, role } = userOf(request);
  const forbidden = () => new DomainError("forbidden", "this route is for admins only");
  if (role !== "admin") throw forbidden();
  if ((await context.accountOf(request, accountId))?.role !== credits.Role.ROLE_ADMIN) throw forbidden();
  return accountId;
}

/**
 * `PUT /v1/admin/accounts/{user_id}/plan`, `PUT /v1/admin/accounts/{user_id}/billing-anchor`,
 * `DELETE /v1/admin/accounts/{user_id}`, `GET /v1/admin/users/{user_id}/usage`,
 * `GET /v1/admin/usage/analytics`, `GET /v1/admin/reconciliation`, and the ledger and grant
 * routes of credits-ledger.ts (`GET /v1/credits/ledger` among them).
 */
export function adminRoutes(context: RouteContext) {
  return async (app: FastifyInstance): Promise<void> => {
    planRoute(app, context);
    billingAnchorRoute(app, context);
    deleteAccountRoute(app, context);
    userUsageRoute(app, context);
    adminUsageAnalyticsRoute(app, context, (request) => requireAdmin(context, request));
    adminReconciliationRoute(app, context, (request) => requireAdmin(context, request));
    await app.register(creditsLedgerRoutes(context, (request) => requireAdmin(context, request)));
  };
}

/** Registers `GET /v1/admin/users/{user_id}/usage` on `app`. */
function userUsageRoute(app: FastifyInstance, context: RouteContext): void {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  /**
   * For support: a user's account and usage summary (as `GET /v1/usage/summary` answers the user
   * itself). Admins only: 401 without a token, 403 `forbidden` for anyone else; 404 for an
   * unknown account or an id that is not a UUID.
   */
  routes.get(
    "/v1/admin/users/:user_id/usage",
    {
      onRequest: context.hooks.user,
      schema: {
        tags: ["admin"],
        summary: "A user's account and usage summary (admins, for support)",
        security: [{ bearerAuth: [] }],
        params: accountParams,
        response: { 200: z.object({ account: accountSchema, summary: summaryResponse }).meta({ id: "UserUsage" }), ...problemResponses },
      },
    },
    async (request) => {
      await requireAdmin(context, request);
      const accountId = requireUuid(request.params.user_id, () => notFound(`account ${request.params.user_id} not found`));
      const { summary, account } = await summaryOf(context, request, accountId);
      return { account: presentAccount(account), summary };
    },
  );
}

/** Registers `DELETE /v1/admin/accounts/{user_id}` on `app`. */
function deleteAccountRoute(app: FastifyInstance, context: RouteContext): void {
  const routes = app.withTypeProvider<ZodTypeProvider>();

  /**
   * Deletes a user's account (deleteAccountFor in account.ts): 204, also when it was deleted
   * before (idempotent); 401 without a token; 403 `forbidden` unless the caller is an admin;
   * 404 for an id that never named a user's account (unknown, not a UUID, or a guest's); 409
   * `conflict` while a generation of the account is running. Idempotent with
   * `Idempotency-Key` (scoped by the admin, INV-4).
   */
  routes.delete(
    "/v1/admin/accounts/:user_id",
    {
      onRequest: context.hooks.user,
      schema: {
        tags: ["admin"],
        summary: "Delete a user's account (admins; erases personal data, keeps usage facts)",
        security: [{ bearerAuth: [] }],
        headers: idempotencyHeaders,
        params: accountParams,
        response: { 204: noContentResponse, ...problemResponses },
      },
    },
    async (request, reply) => {
      const adminId = await requireAdmin(context, request);
      const accountId = requireUuid(request.params.user_id, () => notFound(`account ${request.params.user_id} not found`));
      await deleteAccountFor(context, request, adminId, accountId);
      context.planCache.forget(accountId);
      return reply.code(204).send(null);
    },
  );
}

/** Registers `PUT /v1/admin/accounts/{user_id}/plan` on `app`. */
function planRoute(app: FastifyInstance, context: RouteContext): void {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { callFor, clients, catalog } = context;

  /**
   * Moves an account to another plan (credits SetPlan): the new plan's limits apply at once,
   * usage already counted in the current billing period stays counted (docs/plans.md).
   * 200 account; 400 `validation` for a plan the plans file does not name; 401 without a
   * token; 403 `forbidden` unless the caller is an admin; 404 for an unknown account (or an
   * id that is not a UUID). Idempotent with `Idempotency-Key` (scoped by the admin, INV-4).
   */
  routes.put(
    "/v1/admin/accounts/:user_id/plan",
    {
      onRequest: context.hooks.user,
      schema: {
        tags: ["admin"],
        summary: "Change an account's plan (admins)",
        security: [{ bearerAuth: [] }],
        headers: idempotencyHeaders,
        params: accountParams,
        body: setPlanBody,
        response: { 200: accountSchema, ...problemResponses },
      },
    },
    async (request) => {
      const adminId = await requireAdmin(context, request);
      const accountId = requireUuid(request.params.user_id, () => notFound(`account ${request.params.user_id} not found`));
      const { plan } = request.body;
      if (!(plan in catalog.plans)) {
        const known = Object.keys(catalog.plans).sort();
        throw validationError(`body.plan: unknown plan "${plan}" (plans: ${known.join(", ")})`, { field: "body.plan", known_plans: known });
      }
      const response = await callFor(request)(clients.credits.setPlan.bind(clients.credits), {
        requestId: requestIdFor(request, { accountId: adminId }),
        accountId,
        plan,
      });
      const account = presentAccount(response.account);
      // This replica limits the account at its new plan at once; others within PLAN_CACHE_TTL_MS.
      context.planCache.remember(account.id, account.plan);
      return account;
    },
  );
}

/** Registers `PUT /v1/admin/accounts/{user_id}/billing-anchor` on `app`. */
function billingAnchorRoute(app: FastifyInstance, context: RouteContext): void {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { callFor, clients } = context;

  /**
   * Re-anchors an account's billing period (credits SetBillingAnchor): `anchor` becomes its
   * `current_period_start`, the current period is recomputed from it at once and holds
   * exactly the usage log's entries inside it (docs/plans.md). 200 account; 400
   * `validation` for a body without an RFC 3339 `anchor`, an anchor in the future or before
   * 1970, or a guest's account; 401 without a token; 403 `forbidden` unless the caller is an
   * admin; 404 for an unknown account (or an id that is not a UUID). Idempotent with
   * `Idempotency-Key` (scoped by the admin, INV-4).
   */
  routes.put(
    "/v1/admin/accounts/:user_id/billing-anchor",
    {
      onRequest: context.hooks.user,
      schema: {
        tags: ["admin"],
        summary: "Re-anchor an account's billing period (admins)",
        security: [{ bearerAuth: [] }],
        headers: idempotencyHeaders,
        params: accountParams,
        body: setBillingAnchorBody,
        response: { 200: accountSchema, ...problemResponses },
      },
    },
    async (request) => {
      const adminId = await requireAdmin(context, request);
      const accountId = requireUuid(request.params.user_id, () => notFound(`account ${request.params.user_id} not found`));
      const anchor = new Date(request.body.anchor);
      // Credits decides by its own clock too; this names the body's field for the caller.
      if (anchor.getTime() > Date.now()) throw validationError("body.anchor: must not be in the future", { field: "body.anchor" });
      const response = await callFor(request)(clients.credits.setBillingAnchor.bind(clients.credits), {
        requestId: requestIdFor(request, { accountId: adminId }),
        accountId,
        anchor,
      });
      const account = presentAccount(response.account);
      // The plan cache holds plans, not anchors (the anchor is read from credits on every
      // limit check and listing): refresh this replica's entry as the plan route does.
      context.planCache.remember(account.id, account.plan);
      return account;
    },
  );
}
