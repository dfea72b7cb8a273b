import { credits } from "@tally/contracts";
import { bindService, type AsyncService, type Logger, type ServiceMetrics } from "@tally/platform";
import type { CreditsService } from "../service/credits-service";
import {
  accountToProto,
  balanceToProto,
  captureHoldRequestFromProto,
  createAccountRequestFromProto,
  createGrantRequestFromProto,
  createHoldRequestFromProto,
  extendHoldRequestFromProto,
  deadlineMsFromCall,
  grantWithBalanceToProto,
  guestAccountToProto,
  holdWithBalanceToProto,
  ledgerEntryToProto,
  memberResultToProto,
  reconciliationToProto,
  releaseHoldRequestFromProto,
  setBillingAnchorRequestFromProto,
  setRoleRequestFromProto,
  voidGrantRequestFromProto,
} from "./mapping";

/** Full name of the gRPC service (health and reflection). */
export const CREDITS_SERVICE_NAME = "tally.credits.v1.CreditsService";

/** What the handlers call: the CreditsService facade (tests pass a stub of some of it). */
export type CreditsApi = Pick<
  CreditsService,
  | "createAccount"
  | "authenticate"
  | "getAccount"
  | "getBalance"
  | "createGrant"
  | "createHold"
  | "captureHold"
  | "releaseHold"
  | "listLedgerEntries"
  | "ensureGuestAccount"
  | "setPlan"
  | "setBillingAnchor"
  | "setRole"
  | "deleteAccount"
  | "voidGrant"
  | "extendHold"
  | "createHolds"
  | "captureHolds"
  | "releaseHolds"
  | "reconcile"
  | "getBalanceAt"
>;

/**
 * Thin gRPC handlers for `tally.credits.v1.CreditsService`: proto request → service call →
 * proto response (mapping.ts). Errors are the service's DomainErrors, mapped to gRPC codes by
 * `bindService`; anything else is logged (redacted by the platform logger) and answered INTERNAL.
 * Each RPC's rules, errors and invariants are documented on the service method it calls.
 */
export function creditsHandlers(service: CreditsApi): AsyncService<credits.CreditsServiceServer> {
  return { ...accountHandlers(service), ...movementHandlers(service), ...batchHandlers(service) };
}

type Handlers = AsyncService<credits.CreditsServiceServer>;

/** Accounts and guests: sign-up, sign-in, reads, plan, anchor, role and deletion. */
function accountHandlers(service: CreditsApi): Pick<Handlers, "createAccount" | "authenticate" | "getAccount" | "ensureGuestAccount" | "setPlan" | "setBillingAnchor" | "setRole" | "deleteAccount"> {
  return {
    /** CreateAccount → account and balance (AccountsService.createAccount; INV-4); the call's deadline bounds the effect. */
    async createAccount(req, ctx) {
      const result = await service.createAccount(createAccountRequestFromProto(req), deadlineMsFromCall(ctx.deadline));
      return { account: accountToProto(result.account), balance: balanceToProto(result.balance) };
    },
    /** Authenticate → account with last_login_at (AccountsService.authenticate); the call's deadline bounds the effect. */
    async authenticate(req, ctx) {
      const request = { requestId: req.requestId, email: req.email, password: req.password };
      const result = await service.authenticate(request, deadlineMsFromCall(ctx.deadline));
      return { account: accountToProto(result.account) };
    },
    /** GetAccount → account, `not_found` for an unknown id. */
    async getAccount(req) {
      return { account: accountToProto(await service.getAccount(req.accountId)) };
    },
    /** EnsureGuestAccount → guest account, balance and created (GuestsService.ensureGuestAccount; INV-2). */
    async ensureGuestAccount(req) {
      return guestAccountToProto(await service.ensureGuestAccount(req.guestId));
    },
    /** SetPlan → account on its new plan (AccountsService.setPlan; INV-4). */
    async setPlan(req) {
      return { account: accountToProto(await service.setPlan({ requestId: req.requestId, accountId: req.accountId, plan: req.plan })) };
    },
    /** SetBillingAnchor → account with its new current_period_start (AccountsService.setBillingAnchor; INV-4). */
    async setBillingAnchor(req) {
      return { account: accountToProto(await service.setBillingAnchor(setBillingAnchorRequestFromProto(req))) };
    },
    /** SetRole → account with its new role, by email (AccountsService.setRole; INV-4). */
    async setRole(req) {
      return { account: accountToProto(await service.setRole(setRoleRequestFromProto(req))) };
    },
    /** DeleteAccount → deleted, written_off_credits, deleted_at (AccountsService.deleteAccount; INV-2, INV-4, INV-5). */
    async deleteAccount(req) {
      const result = await service.deleteAccount({ requestId: req.requestId, accountId: req.accountId });
      return { deleted: result.deleted, writtenOffCredits: result.writtenOffCredits, deletedAt: result.deletedAt };
    },
  };
}

/** Credit movements and reads: balance, grants, holds and the ledger. */
function movementHandlers(service: CreditsApi): Omit<Handlers, keyof ReturnType<typeof accountHandlers> | keyof ReturnType<typeof batchHandlers>> {
  return {
    /** GetBalance → balance in credits now (LedgerService.getBalance; INV-2 asserted), or at `at` (LedgerService.getBalanceAt). */
    async getBalance(req) {
      const balance = req.at ? await service.getBalanceAt(req.accountId, req.at) : await service.getBalance(req.accountId);
      return { balance: balanceToProto(balance) };
    },
    /** CreateGrant → grant, balance and whether it was made now (GrantsService.createGrant; INV-2, INV-4). */
    async createGrant(req) {
      const result = await service.createGrant(createGrantRequestFromProto(req));
      return { ...grantWithBalanceToProto(result), created: result.created };
    },
    /** ExtendHold → hold, balance and whether its deadline moved (HoldsService.extendHold; INV-3, INV-4, INV-9). */
    async extendHold(req) {
      const result = await service.extendHold(extendHoldRequestFromProto(req));
      return { ...holdWithBalanceToProto(result), extended: result.extended };
    },
    /** VoidGrant → the voided grant and the balance (GrantsService.voidGrant; INV-2, INV-4, INV-9). */
    async voidGrant(req) {
      return grantWithBalanceToProto(await service.voidGrant(voidGrantRequestFromProto(req)));
    },
    /** CreateHold → hold and balance (HoldsService.createHold; INV-1, INV-3, INV-4). */
    async createHold(req) {
      return holdWithBalanceToProto(await service.createHold(createHoldRequestFromProto(req)));
    },
    /** CaptureHold → ended hold and balance (HoldsService.captureHold; INV-3, INV-4, INV-9). */
    async captureHold(req) {
      return holdWithBalanceToProto(await service.captureHold(captureHoldRequestFromProto(req)));
    },
    /** ReleaseHold → ended hold and balance (HoldsService.releaseHold; INV-3, INV-4, INV-9). */
    async releaseHold(req) {
      return holdWithBalanceToProto(await service.releaseHold(releaseHoldRequestFromProto(req)));
    },
    /** Reconcile → how many INV-2 equalities fail and the first of them (LedgerService.reconcile; read only). */
    async reconcile() {
      return reconciliationToProto(await service.reconcile());
    },
    /** ListLedgerEntries → entries newest first and next_page_token (LedgerService.listLedgerEntries). */
    async listLedgerEntries(req) {
      const page = await service.listLedgerEntries({ accountId: req.accountId, pageSize: req.pageSize, pageToken: req.pageToken });
      return { entries: page.entries.map(ledgerEntryToProto), nextPageToken: page.nextPageToken };
    },
  };
}

/** The batch forms of hold operations: one result per member, the answer or the member's error (HoldsService.createHolds). */
function batchHandlers(service: CreditsApi): Pick<Handlers, "batchCreateHolds" | "batchCaptureHolds" | "batchReleaseHolds"> {
  return {
    /** BatchCreateHolds → one HoldResult per request (HoldsService.createHolds; INV-1, INV-3, INV-4, INV-9). */
    async batchCreateHolds(req) {
      return { results: (await service.createHolds(req.requests.map(createHoldRequestFromProto))).map(memberResultToProto) };
    },
    /** BatchCaptureHolds → one HoldResult per request (HoldsService.captureHolds; INV-3, INV-4, INV-9). */
    async batchCaptureHolds(req) {
      return { results: (await service.captureHolds(req.requests.map(captureHoldRequestFromProto))).map(memberResultToProto) };
    },
    /** BatchReleaseHolds → one HoldResult per request (HoldsService.releaseHolds; INV-3, INV-4, INV-9). */
    async batchReleaseHolds(req) {
      return { results: (await service.releaseHolds(req.requests.map(releaseHoldRequestFromProto))).map(memberResultToProto) };
    },
  };
}

/** The bound grpc-js implementation of CreditsService, ready for `startGrpcServer` (each RPC counted and timed in `metrics`). */
export const bindCreditsService = (service: CreditsApi, logger: Logger, metrics?: ServiceMetrics): credits.CreditsServiceServer =>
  bindService<credits.CreditsServiceServer>(CREDITS_SERVICE_NAME, creditsHandlers(service), logger, metrics);
