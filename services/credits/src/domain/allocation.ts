import assert from "node:assert/strict";
import type { GrantKind } from "./types";

/**
 * Consumption rank of each grant kind, lowest first: trial before purchased before promotional.
 * A grant's `priority` is its kind's unless an admin gave it another; the kind's rank also
 * breaks ties between grants of equal priority and expiry.
 */
export const GRANT_KIND_PRIORITY: Record<GrantKind, number> = { trial: 1, purchased: 2, promotional: 3 };

/** What allocation needs to know of a grant. */
export interface AllocatableGrant {
  id: string;
  kind: GrantKind;
  /** Consumption rank, lowest first (GRANT_KIND_PRIORITY of its kind unless given). */
  priority: number;
  remainingAmount: bigint;
  /** Null when the grant does not expire (consumed after every expiring grant of its kind). */
  expiresAt: Date | null;
  createdAt: Date;
}

/** Credits of one grant taken by (or given back from) one hold. */
export interface Allocation {
  grantId: string;
  kind: GrantKind;
  amount: bigint;
}

/**
 * Orders grants for consumption (the rule docs/invariants.md states): by priority, lowest
 * first; then earlier expiry first (no expiry last); then by kind (trial before purchased
 * before promotional); then older first, then by id so the order is total. The adapter's SQL
 * `ORDER BY priority, expires_at NULLS LAST, <kind rank>, created_at, id` is the same order.
 */
export function compareForConsumption(a: AllocatableGrant, b: AllocatableGrant): number {
  const byPriority = a.priority - b.priority;
  if (byPriority !== 0) return byPriority;
  if (a.expiresAt?.getTime() !== b.expiresAt?.getTime()) {
    if (a.expiresAt === null) return 1;
    if (b.expiresAt === null) return -1;
    return a.expiresAt.getTime() - b.expiresAt.getTime();
  }
  const byKind = GRANT_KIND_PRIORITY[a.kind] - GRANT_KIND_PRIORITY[b.kind];
  if (byKind !== 0) return byKind;
  const byAge = a.createdAt.getTime() - b.createdAt.getTime();
  if (byAge !== 0) return byAge;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Takes `amount` credits from `grants` in consumption order, each grant giving at most its
 * remaining amount. Returns one allocation per grant used, in consumption order.
 *
 * The caller has already reserved `amount` on the account's available balance, and the
 * available balance always equals the sum of remaining amounts, so running short here is a
 * broken invariant (an assertion), not an expected error.
 */
export function allocate(grants: readonly AllocatableGrant[], amount: bigint): Allocation[] {
  assert.ok(amount > 0n, "INV-2: an allocation takes a positive amount");
  const ordered = [...grants].sort(compareForConsumption);
  const allocations: Allocation[] = [];
  let rest = amount;
  for (const grant of ordered) {
    if (rest === 0n) break;
    if (grant.remainingAmount <= 0n) continue;
    const taken = grant.remainingAmount < rest ? grant.remainingAmount : rest;
    allocations.push({ grantId: grant.id, kind: grant.kind, amount: taken });
    rest -= taken;
  }
  assert.equal(rest, 0n, "INV-2: grants hold fewer remaining credits than the account's available balance");
  return allocations;
}

/**
 * Splits a hold's allocations (in consumption order) for a capture of `capturedAmount`: the
 * charge burns the allocations in the same order they were taken (so trial credits are spent
 * before purchased ones, as for the hold itself) and the uncaptured rest goes back to the
 * grants taken last.
 */
export function splitCapture(
  allocations: readonly Allocation[],
  capturedAmount: bigint,
): { charged: Allocation[]; returned: Allocation[] } {
  const total = allocations.reduce((sum, a) => sum + a.amount, 0n);
  assert.ok(capturedAmount >= 0n && capturedAmount <= total, "INV-2: a capture charges between 0 and the held amount");
  const charged: Allocation[] = [];
  const returned: Allocation[] = [];
  let toCharge = capturedAmount;
  for (const allocation of allocations) {
    const charge = allocation.amount < toCharge ? allocation.amount : toCharge;
    toCharge -= charge;
    if (charge > 0n) charged.push({ ...allocation, amount: charge });
    if (allocation.amount - charge > 0n) returned.push({ ...allocation, amount: allocation.amount - charge });
  }
  return { charged, returned };
}

/** Credits of `allocations` by kind family: trial, and purchased + promotional. */
export function amountsByFamily(allocations: readonly Allocation[]): { trialAmount: bigint; tokenAmount: bigint } {
  let trialAmount = 0n;
  let tokenAmount = 0n;
  for (const allocation of allocations) {
    if (allocation.kind === "trial") trialAmount += allocation.amount;
    else tokenAmount += allocation.amount;
  }
  return { trialAmount, tokenAmount };
}

/** The one grant kind all `allocations` share, or null when they mix kinds (for the ledger entry). */
export function singleKind(allocations: readonly Allocation[]): GrantKind | null {
  const kinds = new Set(allocations.map((a) => a.kind));
  return kinds.size === 1 ? [...kinds][0]! : null;
}
