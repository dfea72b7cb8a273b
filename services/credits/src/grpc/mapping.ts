/**
 * Proto ⇄ domain for `tally.credits.v1`: the only place (with handlers.ts) where proto types
 * meet the credits domain. Requests become the domain's raw requests (checked by
 * domain/inputs.ts); enum values the domain does not know are `validation` errors here.
 */
import { credits } from "@tally/contracts";
import { validationError } from "@tally/platform";
import type {
  CaptureHoldRequest,
  CreateAccountRequest,
  CreateGrantRequest,
  CreateHoldRequest,
  ExtendHoldRequest,
  ReleaseHoldRequest,
  SetBillingAnchorRequest,
  SetRoleRequest,
  VoidGrantRequest,
} from "../domain/inputs";
import type { Account, AccountKind, Balance, CreditsReconciliation, GuestAccount, Grant, GrantKind, GrantWithBalance, Hold, HoldStatus, HoldWithBalance, LedgerEntry, LedgerEntryKind, MemberResult, Role } from "../domain/types";

// ---------------------------------------------------------------- proto → domain

/** ROLE_UNSPECIFIED means user. Errors: `validation` (field `role`) for any other unknown value. */
export function roleFromProto(role: credits.Role): Role {
  switch (role) {
    case credits.Role.ROLE_UNSPECIFIED:
    case credits.Role.ROLE_USER:
      return "user";
    case credits.Role.ROLE_ADMIN:
      return "admin";
    default:
      throw validationError("role must be ROLE_USER or ROLE_ADMIN", { field: "role" });
  }
}

/** Errors: `validation` (field `kind`) for GRANT_KIND_UNSPECIFIED or an unknown value. */
export function grantKindFromProto(kind: credits.GrantKind): GrantKind {
  switch (kind) {
    case credits.GrantKind.GRANT_KIND_TRIAL:
      return "trial";
    case credits.GrantKind.GRANT_KIND_PURCHASED:
      return "purchased";
    case credits.GrantKind.GRANT_KIND_PROMOTIONAL:
      return "promotional";
    default:
      throw validationError("kind must be trial, purchased or promotional", { field: "kind" });
  }
}

export const createAccountRequestFromProto = (req: credits.CreateAccountRequest): CreateAccountRequest => ({
  requestId: req.requestId,
  email: req.email,
  password: req.password,
  plan: req.plan,
  role: roleFromProto(req.role),
  adoptGuestId: req.adoptGuestId,
});

/** A role change names its role: ROLE_UNSPECIFIED (or an unknown value) is `validation` (field `role`). */
export function setRoleRequestFromProto(req: credits.SetRoleRequest): SetRoleRequest {
  if (req.role === credits.Role.ROLE_UNSPECIFIED) throw validationError("role must be ROLE_USER or ROLE_ADMIN", { field: "role" });
  return { requestId: req.requestId, email: req.email, role: roleFromProto(req.role) };
}

/** An unset `anchor` is left null for domain/inputs.ts to refuse (`validation`, field `anchor`). */
export const setBillingAnchorRequestFromProto = (req: credits.SetBillingAnchorRequest): SetBillingAnchorRequest => ({
  requestId: req.requestId,
  accountId: req.accountId,
  anchor: req.anchor ?? null,
});

/**
 * A gRPC call's deadline as epoch milliseconds (Infinity when the caller set none), the form
 * the service's deadline checks take.
 */
export const deadlineMsFromCall = (deadline: Date | number | undefined): number =>
  deadline === undefined ? Infinity : deadline instanceof Date ? deadline.getTime() : deadline;

export const createGrantRequestFromProto = (req: credits.CreateGrantRequest): CreateGrantRequest => ({
  requestId: req.requestId,
  accountId: req.accountId,
  kind: grantKindFromProto(req.kind),
  amount: req.amount,
  expiresAt: req.expiresAt ?? null,
  reference: req.reference,
  priority: req.priority ?? null,
});

export const voidGrantRequestFromProto = (req: credits.VoidGrantRequest): VoidGrantRequest => ({
  requestId: req.requestId,
  accountId: req.accountId,
  grantId: req.grantId,
  reason: req.reason,
});

export const createHoldRequestFromProto = (req: credits.CreateHoldRequest): CreateHoldRequest => ({
  requestId: req.requestId,
  accountId: req.accountId,
  generationId: req.generationId,
  amount: req.amount,
  ttlMs: req.ttlMs,
});

/** An unset `amount` captures the whole hold. */
export const captureHoldRequestFromProto = (req: credits.CaptureHoldRequest): CaptureHoldRequest => ({
  requestId: req.requestId,
  holdId: req.holdId,
  amount: req.amount,
});

export const extendHoldRequestFromProto = (req: credits.ExtendHoldRequest): ExtendHoldRequest => ({
  requestId: req.requestId,
  holdId: req.holdId,
  ttlMs: req.ttlMs,
});

export const releaseHoldRequestFromProto = (req: credits.ReleaseHoldRequest): ReleaseHoldRequest => ({
  requestId: req.requestId,
  holdId: req.holdId,
  reason: req.reason,
});

// ---------------------------------------------------------------- domain → proto

const ROLE_TO_PROTO: Record<Role, credits.Role> = { user: credits.Role.ROLE_USER, admin: credits.Role.ROLE_ADMIN };
const ACCOUNT_KIND_TO_PROTO: Record<AccountKind, credits.AccountKind> = {
  user: credits.AccountKind.ACCOUNT_KIND_USER,
  guest: credits.AccountKind.ACCOUNT_KIND_GUEST,
};
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
  write_off: credits.LedgerEntryKind.LEDGER_ENTRY_KIND_WRITE_OFF,
  void: credits.LedgerEntryKind.LEDGER_ENTRY_KIND_VOID,
  extension: credits.LedgerEntryKind.LEDGER_ENTRY_KIND_EXTENSION,
};

/** A guest's email and a missing adopter are empty strings in the proto. */
export const accountToProto = (a: Account): credits.Account => ({
  id: a.id,
  email: a.email ?? "",
  plan: a.plan,
  role: ROLE_TO_PROTO[a.role],
  createdAt: a.createdAt,
  lastLoginAt: a.lastLoginAt ?? undefined,
  currentPeriodStart: a.currentPeriodStart,
  kind: ACCOUNT_KIND_TO_PROTO[a.kind],
  adoptedBy: a.adoptedBy ?? "",
});

export const guestAccountToProto = (g: GuestAccount): credits.EnsureGuestAccountResponse => ({
  account: accountToProto(g.account),
  balance: balanceToProto(g.balance),
  created: g.created,
});

export const balanceToProto = (b: Balance): credits.Balance => ({
  trialCredits: b.trialCredits,
  tokenCredits: b.tokenCredits,
  heldCredits: b.heldCredits,
  availableCredits: b.availableCredits,
});

export const grantToProto = (g: Grant): credits.Grant => ({
  id: g.id,
  accountId: g.accountId,
  kind: GRANT_KIND_TO_PROTO[g.kind],
  amount: g.amount,
  remainingAmount: g.remainingAmount,
  expiresAt: g.expiresAt ?? undefined,
  createdAt: g.createdAt,
  priority: g.priority,
  reference: g.reference ?? "",
  voidedAt: g.voidedAt ?? undefined,
});

/** CreateGrant and VoidGrant answer alike: the grant and the balance after it (CreateGrant also says whether it made the grant). */
export const grantWithBalanceToProto = (r: GrantWithBalance) => ({ grant: grantToProto(r.grant), balance: balanceToProto(r.balance) });

export const holdToProto = (h: Hold): credits.Hold => ({
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

/** CreateHold, CaptureHold and ReleaseHold answer alike: the hold and the balance after it. */
export const holdWithBalanceToProto = (r: HoldWithBalance) => ({ hold: holdToProto(r.hold), balance: balanceToProto(r.balance) });

export const ledgerEntryToProto = (e: LedgerEntry): credits.LedgerEntry => ({
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
  grantId: e.grantId ?? "",
  reason: e.reason ?? "",
  holdDeadline: e.holdDeadline ?? undefined,
});

/** The reconciliation's answer; a per-account difference has grant_id "". */
export const reconciliationToProto = (r: CreditsReconciliation): credits.ReconcileResponse => ({
  differencesTotal: BigInt(r.differencesTotal),
  differences: r.differences.map((d) => ({ check: d.check, accountId: d.accountId, grantId: d.grantId ?? "", expected: d.expected, actual: d.actual })),
});

/** One member's result of a batch call: the hold and balance, or its error as a unary call carries it (reason, message, details as JSON). */
export function memberResultToProto(result: MemberResult): credits.HoldResult {
  if (result.error) {
    const detailsJson = JSON.stringify(result.error.details, (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value));
    return { ok: undefined, error: { reason: result.error.reason, message: result.error.message, detailsJson } };
  }
  return { ok: holdWithBalanceToProto(result.ok!), error: undefined };
}
