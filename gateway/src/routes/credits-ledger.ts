import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { notFound, requireUuid } from "@tally/platform/src/stateless";
import { credits } from "@tally/contracts";
import { userOf } from "../auth/authenticate";
import { requestIdFor, type RouteContext } from "./context";
import { presentBalance, toJsonInteger, toTimestamp } from "./presenters";
import { accountParams, balanceResponse, idempotencyHeaders, problemResponses } from "./schemas";

/** Longest page token accepted (the credits service's tokens are far shorter). */
const PAGE_TOKEN_LENGTH_MAX = 512;
/** Entries per ledger page: default and most. */
const LEDGER_PAGE_SIZE_DEFAULT = 20;
const LEDGER_PAGE_SIZE_MAX = 100;
/** The largest grant one request may make (the credits service's CREDIT_AMOUNT_MAX default). */
const GRANT_AMOUNT_MAX = 1_000_000_000_000;

const GRANT_KINDS: Record<credits.GrantKind, string | null> = {
  [credits.GrantKind.GRANT_KIND_UNSPECIFIED]: null,
  [credits.GrantKind.GRANT_KIND_TRIAL]: "trial",
  [credits.GrantKind.GRANT_KIND_PURCHASED]: "purchased",
  [credits.GrantKind.GRANT_KIND_PROMOTIONAL]: "promotional",
  [credits.GrantKind.UNRECOGNIZED]: null,
};

const LEDGER_KINDS = ["grant", "hold", "capture", "release", "expiry", "adjustment", "write_off", "void", "extension"] as const;
const LEDGER_KIND_NAMES: Partial<Record<credits.LedgerEntryKind, (typeof LEDGER_KINDS)[number]>> = {
  [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_GRANT]: "grant",
  [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_HOLD]: "hold",
  [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_CAPTURE]: "capture",
  [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_RELEASE]: "release",
  [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_EXPIRY]: "expiry",
  [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_ADJUSTMENT]: "adjustment",
  [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_WRITE_OFF]: "write_off",
  [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_VOID]: "void",
  [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_EXTENSION]: "extension",
};

const orNull = (value: string) => (value === "" ? null : value);

const grantSchema = z
  .object({
    id: z.string(),
    kind: z.string(),
    amount: z.number().int(),
    remaining_amount: z.number().int(),
    priority: z.number().int().describe("consumption rank, lowest first"),
    reference: z.string().nullable(),
    expires_at: z.string().nullable(),
    voided_at: z.string().nullable(),
    created_at: z.string().nullable(),
  })
  .meta({ id: "Grant" });

const grantResponse = z.object({ grant: grantSchema, balance: balanceResponse }).meta({ id: "GrantWithBalance" });

const ledgerEntrySchema = z.object({
  id: z.string(),
  kind: z.enum(LEDGER_KINDS),
  amount: z.number().int().describe("signed change of the available credits"),
  grant_id: z.string().nullable(),
  grant_kind: z.string().nullable(),
  hold_id: z.string().nullable(),
  generation_id: z.string().nullable(),
  balance_after: z.number().int().describe("available credits after the entry"),
  held_after: z.number().int().describe("held credits after the entry"),
  reason: z.string().nullable(),
  hold_deadline: z.string().nullable().describe("the hold's deadline after a hold or extension entry"),
  created_at: z.string().nullable(),
});

const ledgerResponse = z
  .object({ entries: z.array(ledgerEntrySchema), next_page_token: z.string().nullable().describe("null on the last page") })
  .meta({ id: "LedgerPage" });

const ledgerQuery = z.object({
  page_size: z.coerce.number().int().min(1).max(LEDGER_PAGE_SIZE_MAX).default(LEDGER_PAGE_SIZE_DEFAULT).describe("entries per page"),
  page_token: z.string().max(PAGE_TOKEN_LENGTH_MAX).optional().describe("next_page_token of the previous page"),
});

const grantBody = z.object({
  kind: z.enum(["purchased", "promotional"]),
  amount: z.number().int().min(1).max(GRANT_AMOUNT_MAX).describe("credits"),
  expires_at: z.iso.datetime({ offset: true }).optional().describe("RFC 3339, in the future; absent: never expires"),
  priority: z.number().int().min(0).max(1000).optional().describe("consumption rank, lowest first; absent: the kind's (purchased 2, promotional 3)"),
  reference: z.string().min(1).max(200).regex(/^[^\u0000-\u001f\u007f]*$/, "must not contain control characters").optional().describe("e.g. a payment id: grants once per account"),
});

const requiredIdempotencyHeaders = idempotencyHeaders.extend({
  "idempotency-key": idempotencyHeaders.shape["idempotency-key"].unwrap().describe("Required: a payment webhook retries; the same key never grants twice, and with another body answers 409"),
});

const grantParams = accountParams.extend({ grant_id: z.string() });
const voidBody = z.object({ reason: z.string().max(500).regex(/^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$/, "must not contain control characters").optional() }).optional();

function presentGrant(grant: credits.Grant | undefined) {
  if (!grant) throw new Error("credits service answered without a grant");
  return {
    id: grant.id,
    kind: GRANT_KINDS[grant.kind] ?? "unknown",
    amount: toJsonInteger(grant.amount),
    remaining_amount: toJsonInteger(grant.remainingAmount),
    priority: grant.priority,
    reference: orNull(grant.reference),
    expires_at: toTimestamp(grant.expiresAt),
    voided_at: toTimestamp(grant.voidedAt),
    created_at: toTimestamp(grant.createdAt),
  };
}

function presentLedgerEntry(entry: credits.LedgerEntry): z.infer<typeof ledgerEntrySchema> {
  const kind = LEDGER_KIND_NAMES[entry.kind];
  if (!kind) throw new Error(`credits service answered a ledger entry of unknown kind ${entry.kind}`);
  return {
    id: entry.id,
    kind,
    amount: toJsonInteger(entry.amount),
    grant_id: orNull(entry.grantId),
    grant_kind: GRANT_KINDS[entry.grantKind],
    hold_id: orNull(entry.holdId),
    generation_id: orNull(entry.generationId),
    balance_after: toJsonInteger(entry.balanceAfter),
    held_after: toJsonInteger(entry.heldAfter),
    reason: orNull(entry.reason),
    hold_deadline: toTimestamp(entry.holdDeadline),
    created_at: toTimestamp(entry.createdAt),
  };
}

/** The path's account id, or 404 when it is no UUID (it can name no account). */
const accountIdOf = (params: { user_id: string }) => requireUuid(params.user_id, () => notFound(`account ${params.user_id} not found`));

/**
 * `GET /v1/credits/ledger` (the signed-in user's), and for admins `GET
 * /v1/admin/accounts/{user_id}/ledger`, `POST /v1/admin/accounts/{user_id}/grants` and
 * `POST /v1/admin/accounts/{user_id}/grants/{grant_id}/void`. `requireAdmin` answers 403
 * `forbidden` to anyone not an admin.
 */
export function creditsLedgerRoutes(context: RouteContext, requireAdmin: (request: FastifyRequest) => Promise<string>) {
  return async (app: FastifyInstance): Promise<void> => {
    ledgerRoutes(app, context, requireAdmin);
    grantRoute(app, context, requireAdmin);
    voidRoute(app, context, requireAdmin);
  };
}

/** Registers the two ledger listings on `app`. */
function ledgerRoutes(app: FastifyInstance, context: RouteContext, requireAdmin: (request: FastifyRequest) => Promise<string>): void {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { callFor, clients } = context;
  const page = async (request: FastifyRequest, accountId: string, query: z.infer<typeof ledgerQuery>) => {
    const response = await callFor(request)(clients.credits.listLedgerEntries.bind(clients.credits), {
      accountId,
      pageSize: query.page_size,
      pageToken: query.page_token ?? "",
    });
    return { entries: response.entries.map(presentLedgerEntry), next_page_token: orNull(response.nextPageToken) };
  };

  /**
   * The signed-in user's ledger, newest first: every movement of its credits with the balances
   * after it (INV-2: the newest entry's balances are the account's). 200; 400 `validation`
   * (page_size 1..100, a page token that is not one of this account's); 401.
   */
  routes.get(
    "/v1/credits/ledger",
    {
      onRequest: context.hooks.user,
      schema: { tags: ["credits"], summary: "The credit ledger, newest first", security: [{ bearerAuth: [] }], querystring: ledgerQuery, response: { 200: ledgerResponse, ...problemResponses } },
    },
    async (request) => page(request, userOf(request).accountId, request.query),
  );

  /** A user's ledger for admins, as `GET /v1/credits/ledger` shows it. 403 `forbidden` for anyone else; 404 for an unknown account. */
  routes.get(
    "/v1/admin/accounts/:user_id/ledger",
    {
      onRequest: context.hooks.user,
      schema: {
        tags: ["admin"],
        summary: "A user's credit ledger (admins)",
        security: [{ bearerAuth: [] }],
        params: accountParams,
        querystring: ledgerQuery,
        response: { 200: ledgerResponse, ...problemResponses },
      },
    },
    async (request) => {
      await requireAdmin(request);
      return page(request, accountIdOf(request.params), request.query);
    },
  );
}

/** Registers `POST /v1/admin/accounts/{user_id}/grants` on `app`. */
function grantRoute(app: FastifyInstance, context: RouteContext, requireAdmin: (request: FastifyRequest) => Promise<string>): void {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { callFor, clients } = context;

  /**
   * Tops an account up (credits CreateGrant): 201 `{grant, balance}` for a new grant; 200 with
   * the grant made before when `reference` names one with the same terms (one payment grants
   * once, whatever the key). `Idempotency-Key` is required (scoped by the admin, INV-4): a
   * retry answers the first answer; the same key with another body is 409
   * `idempotency_key_reused`. 400 `validation` (body, missing key); 401; 403 `forbidden`; 404
   * unknown account; 409 `conflict` for a reference of a grant with other terms.
   */
  routes.post(
    "/v1/admin/accounts/:user_id/grants",
    {
      onRequest: context.hooks.user,
      schema: {
        tags: ["admin"],
        summary: "Top up an account: grant purchased or promotional credits (admins)",
        security: [{ bearerAuth: [] }],
        headers: requiredIdempotencyHeaders,
        params: accountParams,
        body: grantBody,
        response: { 200: grantResponse, 201: grantResponse, ...problemResponses },
      },
    },
    async (request, reply) => {
      const adminId = await requireAdmin(request);
      const accountId = accountIdOf(request.params);
      const { kind, amount, expires_at, priority, reference } = request.body;
      const response = await callFor(request)(clients.credits.createGrant.bind(clients.credits), {
        requestId: requestIdFor(request, { accountId: adminId }),
        accountId,
        kind: kind === "purchased" ? credits.GrantKind.GRANT_KIND_PURCHASED : credits.GrantKind.GRANT_KIND_PROMOTIONAL,
        amount: BigInt(amount),
        expiresAt: expires_at === undefined ? undefined : new Date(expires_at),
        priority,
        reference: reference ?? "",
      });
      return reply.code(response.created ? 201 : 200).send({ grant: presentGrant(response.grant), balance: presentBalance(response.balance) });
    },
  );
}

/** Registers `POST /v1/admin/accounts/{user_id}/grants/{grant_id}/void` on `app`. */
function voidRoute(app: FastifyInstance, context: RouteContext, requireAdmin: (request: FastifyRequest) => Promise<string>): void {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { callFor, clients } = context;

  /**
   * Voids an unused grant (credits VoidGrant): its credits are written off with a `void`
   * ledger entry. 200 `{grant, balance}`, also for a grant voided before; 401; 403
   * `forbidden`; 404 unknown account or grant; 409 `conflict` when part of it was used.
   * Idempotent with `Idempotency-Key` (scoped by the admin, INV-4).
   */
  routes.post(
    "/v1/admin/accounts/:user_id/grants/:grant_id/void",
    {
      onRequest: context.hooks.user,
      schema: {
        tags: ["admin"],
        summary: "Void an unused grant (admins)",
        security: [{ bearerAuth: [] }],
        headers: idempotencyHeaders,
        params: grantParams,
        body: voidBody,
        response: { 200: grantResponse, ...problemResponses },
      },
    },
    async (request) => {
      const adminId = await requireAdmin(request);
      const accountId = accountIdOf(request.params);
      const grantId = requireUuid(request.params.grant_id, () => notFound(`grant ${request.params.grant_id} not found`));
      const response = await callFor(request)(clients.credits.voidGrant.bind(clients.credits), {
        requestId: requestIdFor(request, { accountId: adminId }),
        accountId,
        grantId,
        reason: request.body?.reason ?? "",
      });
      return { grant: presentGrant(response.grant), balance: presentBalance(response.balance) };
    },
  );
}
