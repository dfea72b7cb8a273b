import assert from "node:assert/strict";
import { parseGuestId } from "../domain/inputs";
import type { CreditsStores, CreditsUnitOfWork } from "../domain/ports";
import { guestIdNotUsable, trialCreditsForPlan, type CreditsRules } from "../domain/rules";
import type { Account, GuestAccount } from "../domain/types";
import type { GrantsService } from "./grants";
import type { LedgerService } from "./ledger";

/**
 * Guests: accounts without credentials, one per self-asserted guest id, on the catalogue's
 * guest plan. The gateway ensures the guest's account before acting for it; a sign-up that
 * adopts the guest (AccountsService.createAccount) retires the id for good.
 */
export class GuestsService {
  constructor(
    private readonly uow: CreditsUnitOfWork,
    private readonly rules: Pick<CreditsRules, "plans">,
    private readonly grants: GrantsService,
    private readonly ledger: LedgerService,
  ) {}

  /**
   * Returns the guest's account with its balance, creating it on first use: the account (its
   * id is the guest id, lower-cased), the guest plan's trial grant and its GRANT ledger entry
   * in one transaction (INV-2). Idempotent on the guest id, also under concurrent calls: one
   * account and one trial grant, and `created` is true for exactly one call.
   * Errors: `validation` (guest_id not a UUID); `unauthenticated` when the id is a user's
   * account or a guest adopted by a sign-up.
   */
  async ensureGuestAccount(rawGuestId: string): Promise<GuestAccount> {
    const guestId = parseGuestId(rawGuestId);
    // Every request of a guest passes here: answer an existing guest with plain reads.
    const existing = await this.uow.withoutTransaction((stores) => this.readUsable(stores, guestId));
    if (existing) return existing;
    return this.uow.inTransaction(async (stores) => {
      const plan = this.rules.plans.guestPlan;
      const inserted = await stores.accounts.insertGuest({ id: guestId, plan });
      if (!inserted) {
        // Another call created it (or a user holds the id) since the read above.
        const raced = await this.readUsable(stores, guestId);
        assert.ok(raced, `account ${guestId} exists once its insert conflicted (accounts are never deleted)`);
        return raced;
      }
      const trialCredits = trialCreditsForPlan(plan, this.rules.plans);
      if (trialCredits > 0n) await this.grants.addGrant(stores, { accountId: guestId, kind: "trial", amount: trialCredits, expiresAt: null });
      return { account: inserted, balance: await this.ledger.readBalance(stores, guestId), created: true };
    });
  }

  /** The guest's account and balance, or null when there is no account with this id. Errors: `unauthenticated` as above. */
  private async readUsable(stores: CreditsStores, guestId: string): Promise<GuestAccount | null> {
    const account = await stores.accounts.find(guestId);
    if (!account) return null;
    requireUsableGuest(account);
    return { account, balance: await this.ledger.readBalance(stores, guestId), created: false };
  }
}

/** A guest id works only for a guest's account that no sign-up adopted. Errors: `unauthenticated`. */
function requireUsableGuest(account: Account): void {
  if (account.kind !== "guest" || account.adoptedBy !== null) throw guestIdNotUsable();
}
