import { credits } from "@tally/contracts";
import { bindService, DomainError, type AsyncService, type Logger } from "@tally/platform";
import { redactDatabaseError } from "../adapter/database-errors";
import type { Account, Balance, Grant, GrantKind, Hold, HoldStatus, LedgerEntry, LedgerEntryKind, Role } from "../domain/types";
import type { CreditsService } from "../service/credits-service";

/** Full name of the gRPC service (health and reflection). */
export const CREDITS_SERVICE_NAME = "tally.credits.v1.CreditsService";

// ---------------------------------------------------------------- proto → domain

function roleFromProto(role: credits.Role): Role {
  switch (role) {
    case credits.Role.ROLE_UNSPECIFIED:
    case credits.Role.ROLE_USER:
      return "user";
    case credits.Role.ROLE_ADMIN:
      return "admin";
    default:
      throw new DomainError("validation", "role must be ROLE_USER or ROLE_ADMIN", { field: "role" });
  }
}

function grantKindFromProto(kind: credits.GrantKind): GrantKind {
  switch (kind) {
    case credits.GrantKind.GRANT_KIND_TRIAL:
      return "trial";
    case credits.GrantKind.GRANT_KIND_PURCHASED:
      return "purchased";
    case credits.GrantKind.GRANT_KIND_PROMOTIONAL:
      return "promotional";
    default:
      throw new DomainError("validation", "kind must be trial, purchased or promotional", { field: "kind" });
  }
}

// ---------------------------------------------------------------- domain → proto

const ROLE_TO_PROTO: Record<Role, credits.Role> = { user: credits.Role.ROLE_USER, admin: credits.Role.ROLE_ADMIN };
const GRANT_KIND_TO_PROTO: Record<GrantKind, credits.GrantKind> = {
  trial: credits.GrantKind.GRANT_KIND_TRIAL,
  purchased: credits.GrantKind.GRANT_KIND_PURCHASED,
  promotional: credits.GrantKind.GRANT_KIND_PROMOTIONAL,
};
const HOLD_STATUS_TO_PROTO: Record<HoldStatus, credits.HoldStatus> = {
  active: credits.HoldStatus.HOLD_STATUS_ACTIVE,
  captured: credits.HoldStatus.HOLD_STATUS_CAPTURED,
  released: credits.HoldStatus.HOLD_STATUS_RELEASED,
  expired: credits.HoldStatus.HOLD_STATUS_EXPIRED,
};
const LEDGER_KIND_TO_PROTO: Record<LedgerEntryKind, credits.LedgerEntryKind> = {
  grant: credits.LedgerEntryKind.LEDGER_ENTRY_KIND_GRANT,
  hold: credits.LedgerEntryKind.LEDGER_ENTRY_KIND_HOLD,
  capture: credits.LedgerEntryKind.LEDGER_ENTRY_KIND_CAPTURE,
  release: credits.LedgerEntryKind.LEDGER_ENTRY_KIND_RELEASE,
  expiry: credits.LedgerEntryKind.LEDGER_ENTRY_KIND_EXPIRY,
  adjustment: credits.LedgerEntryKind.LEDGER_ENTRY_KIND_ADJUSTMENT,
};

const accountToProto = (a: Account): credits.Account => ({
  id: a.id,
  email: a.email,
  plan: a.plan,
  role: ROLE_TO_PROTO[a.role],
  createdAt: a.createdAt,
  lastLoginAt: a.lastLoginAt ?? undefined,
  currentPeriodStart: a.currentPeriodStart,
});

const balanceToProto = (b: Balance): credits.Balance => ({ ...b });

const grantToProto = (g: Grant): credits.Grant => ({
  id: g.id,
  accountId: g.accountId,
  kind: GRANT_KIND_TO_PROTO[g.kind],
  amount: g.amount,
  remainingAmount: g.remainingAmount,
  expiresAt: g.expiresAt ?? undefined,
  createdAt: g.createdAt,
});

const holdToProto = (h: Hold): credits.Hold => ({
  id: h.id,
  accountId: h.accountId,
  generationId: h.generationId,
  status: HOLD_STATUS_TO_PROTO[h.status],
  amount: h.amount,
  trialAmount: h.trialAmount,
  tokenAmount: h.tokenAmount,
  capturedAmount: h.capturedAmount,
  expiresAt: h.expiresAt,
  createdAt: h.createdAt,
  endedAt: h.endedAt ?? undefined,
});

const ledgerEntryToProto = (e: LedgerEntry): credits.LedgerEntry => ({
  id: e.id,
  accountId: e.accountId,
  kind: LEDGER_KIND_TO_PROTO[e.kind],
  amount: e.amount,
  grantKind: e.grantKind ? GRANT_KIND_TO_PROTO[e.grantKind] : credits.GrantKind.GRANT_KIND_UNSPECIFIED,
  holdId: e.holdId ?? "",
  generationId: e.generationId ?? "",
  balanceAfter: e.balanceAfter,
  heldAfter: e.heldAfter,
  createdAt: e.createdAt,
});

/**
 * The RPCs of `credits.CreditsServiceServer` without the index signature it inherits from
 * grpc-js's UntypedServiceImplementation (which `AsyncService` would map to never).
 */
type CreditsRpcs = {
  [K in keyof credits.CreditsServiceServer as string extends K ? never : K]: credits.CreditsServiceServer[K];
};

const holdResponse = (r: { hold: Hold; balance: Balance }) => ({ hold: holdToProto(r.hold), balance: balanceToProto(r.balance) });

/**
 * Thin gRPC handlers for `tally.credits.v1.CreditsService`: proto request → service call →
 * proto response. Errors are the service's DomainErrors, mapped by `bindService`.
 */
export function creditsHandlers(service: CreditsService): AsyncService<CreditsRpcs> {
  return {
    async createAccount(req) {
      const result = await service.createAccount({
        requestId: req.requestId,
        email: req.email,
        password: req.password,
        plan: req.plan,
        role: roleFromProto(req.role),
      });
      return { account: accountToProto(result.account), balance: balanceToProto(result.balance) };
    },
    async authenticate(req) {
      const result = await service.authenticate({ requestId: req.requestId, email: req.email, password: req.password });
      return { account: accountToProto(result.account) };
    },
    async getAccount(req) {
      return { account: accountToProto(await service.getAccount(req.accountId)) };
    },
    async getBalance(req) {
      return { balance: balanceToProto(await service.getBalance(req.accountId)) };
    },
    async createGrant(req) {
      const result = await service.createGrant({
        requestId: req.requestId,
        accountId: req.accountId,
        kind: grantKindFromProto(req.kind),
        amount: req.amount,
        expiresAt: req.expiresAt ?? null,
      });
      return { grant: grantToProto(result.grant), balance: balanceToProto(result.balance) };
    },
    async createHold(req) {
      return holdResponse(
        await service.createHold({
          requestId: req.requestId,
          accountId: req.accountId,
          generationId: req.generationId,
          amount: req.amount,
          ttlMs: req.ttlMs,
        }),
      );
    },
    async captureHold(req) {
      return holdResponse(await service.captureHold({ requestId: req.requestId, holdId: req.holdId, amount: req.amount }));
    },
    async releaseHold(req) {
      return holdResponse(await service.releaseHold({ requestId: req.requestId, holdId: req.holdId, reason: req.reason }));
    },
    async listLedgerEntries(req) {
      const page = await service.listLedgerEntries({ accountId: req.accountId, pageSize: req.pageSize, pageToken: req.pageToken });
      return { entries: page.entries.map(ledgerEntryToProto), nextPageToken: page.nextPageToken };
    },
  };
}

/**
 * `handlers` with every database error replaced by its redacted form before `bindService`
 * logs it (it logs unexpected errors whole, and a DriverException's message is the SQL with
 * its parameters: emails, password hashes).
 */
function redactingDatabaseErrors<S>(handlers: AsyncService<S>): AsyncService<S> {
  const wrapped: Record<string, (request: unknown, context: unknown) => Promise<unknown>> = {};
  for (const [method, handler] of Object.entries(handlers) as [string, (request: unknown, context: unknown) => Promise<unknown>][]) {
    wrapped[method] = async (request, context) => {
      try {
        return await handler(request, context);
      } catch (error) {
        throw redactDatabaseError(error);
      }
    };
  }
  return wrapped as AsyncService<S>;
}

/** The bound grpc-js implementation, ready for `startGrpcServer`. */
export const bindCreditsService = (service: CreditsService, logger: Logger) =>
  bindService<CreditsRpcs>(CREDITS_SERVICE_NAME, redactingDatabaseErrors(creditsHandlers(service)), logger) as credits.CreditsServiceServer;
