import assert from "node:assert";
import type { CreditTypeName } from "./types";

/**
 * Which credits paid for a hold, from how much of it came from trial and from purchased
 * (including promotional) grants: only trial → "trial", only purchased → "purchased",
 * both → "mixed". The parts must add up to the hold's amount (a broken hold is a bug).
 */
export function creditTypeOfHold(hold: { amount: bigint; trialAmount: bigint; tokenAmount: bigint }): CreditTypeName {
  assert(hold.amount > 0n, `INV-2: a hold holds credits (amount ${hold.amount})`);
  assert(hold.trialAmount >= 0n && hold.tokenAmount >= 0n, "INV-2: hold parts are not negative");
  assert.equal(hold.trialAmount + hold.tokenAmount, hold.amount, "INV-2: hold parts add up to its amount");
  if (hold.trialAmount > 0n && hold.tokenAmount > 0n) return "mixed";
  return hold.trialAmount > 0n ? "trial" : "purchased";
}
