import { answerCodec, newId, runIdempotent } from "@tally/platform";
import { parseCreateGrantInput, parseVoidGrantInput, requireFutureExpiry, type CreateGrantInput, type CreateGrantRequest, type VoidGrantRequest } from "../domain/inputs";
import type { CreditsStores, CreditsUnitOfWork, NewGrant } from "../domain/ports";
import { accountNotFound, GRANT_EXPIRED_REASON, grantInUse, grantNotFound, grantReferenceConflict, NO_LEDGER_CHANGE, type CreditsRules } from "../domain/rules";
import type { CreatedGrant, Grant, GrantWithBalance } from "../domain/types";
import type { LedgerService } from "./ledger";

/** A grant to add: credits of one kind, expiring at `expiresAt` (null: never), with an optional priority and reference (NewGrant without its id). */
export type GrantToAdd = Omit<NewGrant, "id">;

/** Whether an earlier grant asked for what `input` asks for (its reference's terms). */
const sameTerms = (grant: Grant, input: CreateGrantInput): boolean =>
  grant.kind === input.kind &&
  grant.amount === input.amount &&
  grant.priority === input.priority &&
  (grant.expiresAt?.getTime() ?? null) === (input.expiresAt?.getTime() ?? null);

/**
 * Grants: credits given to an account (trial on sign-up, purchased top-ups, promotional) and
 * taken back unused (void). Each one moves the account's balances and writes its ledger entry
 * in the same transaction (INV-2), under the account's row lock (INV-9).
 */
export class GrantsService {
  constructor(
    private readonly uow: CreditsUnitOfWork,
    private readonly rules: Pick<CreditsRules, "creditAmountMax">,
    private readonly ledger: LedgerService,
    /** The clock grant expiry is decided by (tests inject one). */
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Adds a grant to an account, with a GRANT ledger entry, and answers the grant with the
   * balance after it (`created` true). `expiresAt` null means it does not expire; `priority`
   * null means its kind's rank. Idempotent per `requestId` (INV-4); a `reference` grants once
   * per account whatever the request id: a later request naming it with the same terms (kind,
   * amount, priority, expiry) answers the earlier grant with `created` false. Errors:
   * `validation` (amount 1..CREDIT_AMOUNT_MAX, expiry in the past, priority 0..1000, reference
   * 1..200 characters without control characters, request_id), `not_found` (no live account),
   * `conflict` (the reference names a grant with other terms), `idempotency_key_reused`.
   */
  async createGrant(request: CreateGrantRequest): Promise<CreatedGrant> {
    // The expiry is checked inside the idempotent call: a retry once it has passed still gets the first answer (INV-4).
    const input = parseCreateGrantInput(request, this.rules, null);
    const { requestId: _requestId, ...parameters } = input;
    const call = { requestId: input.requestId, operation: "CreateGrant", parameters, ...answerCodec<CreatedGrant>() };
    return this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => {
        // INV-9: the account row is locked before anything of it moves; it also serializes
        // two requests for one reference, so the second finds the first's grant.
        requireFutureExpiry(input.expiresAt, this.now().getTime());
        if (!(await stores.accounts.lock(input.accountId))) throw accountNotFound(input.accountId);
        const earlier = input.reference === null ? null : await stores.grants.findByReference(input.accountId, input.reference);
        if (earlier && !sameTerms(earlier, input)) throw grantReferenceConflict(input.reference!, earlier.id);
        const grant = earlier ?? (await this.addGrant(stores, input));
        return { grant, balance: await this.ledger.readBalance(stores, input.accountId), created: earlier === null };
      }),
    );
  }

  /**
   * Voids an unused grant: nothing of it remains and its whole amount is written off with a
   * VOID ledger entry (INV-2: granted = available + held + captured + expired + written off).
   * Unused means nothing of it was ever held, spent or expired (remaining = amount). Voiding a
   * voided grant answers it unchanged. Idempotent per `requestId` (INV-4). Errors: `not_found`
   * (no live account, or no such grant of it), `conflict` (part of it was used),
   * `validation` (reason), `idempotency_key_reused`.
   */
  async voidGrant(request: VoidGrantRequest): Promise<GrantWithBalance> {
    const input = parseVoidGrantInput(request);
    const { requestId: _requestId, ...parameters } = input;
    const call = { requestId: input.requestId, operation: "VoidGrant", parameters, ...answerCodec<GrantWithBalance>() };
    return this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => {
        if (!(await stores.accounts.lock(input.accountId))) throw accountNotFound(input.accountId);
        const grant = await stores.grants.lockOne(input.accountId, input.grantId);
        if (!grant) throw grantNotFound(input.grantId);
        if (grant.voidedAt !== null) return { grant, balance: await this.ledger.readBalance(stores, input.accountId) };
        if (grant.remainingAmount !== grant.amount) throw grantInUse(grant.id, grant.amount, grant.remainingAmount);
        const voided = await stores.grants.markVoided(grant.id);
        const after = await stores.accounts.changeBalances(input.accountId, { available: -grant.amount, writtenOff: grant.amount });
        await stores.ledger.insert({
          ...NO_LEDGER_CHANGE,
          id: newId(),
          accountId: input.accountId,
          kind: "void",
          amount: -grant.amount,
          writtenOffChange: grant.amount,
          grantKind: grant.kind,
          grantId: grant.id,
          reason: input.reason,
          balanceAfter: after.available,
          heldAfter: after.held,
        });
        return { grant: voided, balance: await this.ledger.readBalance(stores, input.accountId) };
      }),
    );
  }

  /**
   * Writes off every grant of a locked account that is past its `expires_at` and still has
   * credits, each with one EXPIRY ledger entry (amount −remaining, `expired_change`
   * +remaining; INV-2), exactly once: the grant is left with nothing, so a second call finds
   * nothing. Credits already held from such a grant stay with their hold (a capture still
   * charges them); what a release gives back to it later is written off by the next call
   * (HoldsService calls this after every give-back). The caller holds the account's row lock
   * (INV-9). Returns how many grants expired.
   */
  async expireDueGrantsOf(stores: CreditsStores, accountId: string): Promise<number> {
    const due = await stores.grants.lockDue(accountId, this.now());
    for (const grant of due) {
      const amount = grant.remainingAmount;
      await stores.grants.changeRemaining([{ grantId: grant.id, delta: -amount }]);
      const after = await stores.accounts.changeBalances(accountId, { available: -amount, expired: amount });
      await stores.ledger.insert({
        ...NO_LEDGER_CHANGE,
        id: newId(),
        accountId,
        kind: "expiry",
        amount: -amount,
        expiredChange: amount,
        grantKind: grant.kind,
        grantId: grant.id,
        reason: GRANT_EXPIRED_REASON,
        balanceAfter: after.available,
        heldAfter: after.held,
      });
    }
    return due.length;
  }

  /**
   * The lazy half of grant expiry, before credits are used: when the account has a grant due
   * (one index probe, no lock), locks the account (INV-9) and writes the due grants off, on the
   * caller's transaction. So a hold never takes, and a balance never shows, expired credits even
   * while the sweeper is behind.
   */
  async expireBeforeUse(stores: CreditsStores, accountId: string): Promise<void> {
    if (!(await stores.grants.hasDue(accountId, this.now()))) return;
    if (await stores.accounts.lock(accountId)) await this.expireDueGrantsOf(stores, accountId);
  }

  /** `expireBeforeUse` in a transaction of its own, when the account has a grant due (a balance read's lazy expiry). */
  async expireIfDue(accountId: string): Promise<void> {
    const due = await this.uow.withoutTransaction((stores) => stores.grants.hasDue(accountId, this.now()));
    if (due) await this.uow.inTransaction((stores) => this.expireBeforeUse(stores, accountId));
  }

  /**
   * The sweeper's pass: writes off the due grants of up to `batchSize` accounts (earliest due
   * first) in one transaction. Accounts are locked with SKIP LOCKED, so a busy account waits
   * for a later pass (or its own next hold or read expires it). Returns how many accounts were
   * visited (`batchSize` means more may be due).
   */
  async expireDueGrants(batchSize: number): Promise<number> {
    return this.uow.inTransaction(async (stores) => {
      const candidates = await stores.grants.findAccountsWithDue(this.now(), batchSize);
      for (const accountId of await stores.accounts.lockSkipLocked(candidates)) await this.expireDueGrantsOf(stores, accountId);
      return candidates.length;
    });
  }

  /**
   * Inserts a grant, credits the account's available balance and writes the GRANT entry with
   * the balances after it, on `stores` (the caller's transaction; account creation reuses it).
   */
  async addGrant(stores: CreditsStores, grant: GrantToAdd): Promise<Grant> {
    const toInsert: NewGrant = { id: newId(), ...grant };
    const added = await stores.grants.insert(toInsert);
    const after = await stores.accounts.changeBalances(grant.accountId, { available: grant.amount });
    await stores.ledger.insert({
      ...NO_LEDGER_CHANGE,
      id: newId(),
      accountId: grant.accountId,
      kind: "grant",
      amount: grant.amount,
      grantKind: grant.kind,
      grantId: added.id,
      reason: grant.reference ?? null,
      balanceAfter: after.available,
      heldAfter: after.held,
    });
    return added;
  }
}
