import assert from "node:assert/strict";
import { answerCodec, DomainError, newId, runIdempotent } from "@tally/platform";
import { allocate, amountsByFamily, singleKind, splitCapture, type Allocation } from "../domain/allocation";
import {
  parseCaptureHoldInput,
  parseCreateHoldInput,
  parseExtendHoldInput,
  parseReleaseHoldInput,
  type CaptureHoldRequest,
  type CreateHoldInput,
  type CreateHoldRequest,
  type ExtendHoldRequest,
  type ReleaseHoldRequest,
} from "../domain/inputs";
import type { CreditsStores, CreditsUnitOfWork } from "../domain/ports";
import {
  accountNotFound,
  CAPTURE_REST_REASON,
  EXPIRY_REASON,
  generationConflict,
  holdNotFound,
  NO_LEDGER_CHANGE,
  type CreditsRules,
} from "../domain/rules";
import type { Hold, HoldWithBalance } from "../domain/types";
import type { GrantsService } from "./grants";
import type { LedgerService } from "./ledger";

/**
 * Holds: credits set aside for one generation, then captured, released or expired, each
 * exactly once (INV-3). A hold reserves its credits with one conditional UPDATE of the account
 * row (INV-1); every movement writes one ledger entry with the balances after it (INV-2); rows
 * are locked account first, then hold (INV-9).
 */
export class HoldsService {
  constructor(
    private readonly uow: CreditsUnitOfWork,
    private readonly rules: CreditsRules,
    private readonly ledger: LedgerService,
    private readonly grants: Pick<GrantsService, "expireBeforeUse" | "expireDueGrantsOf">,
  ) {}

  /**
   * Sets `amount` credits aside for one generation, trial grants first, and answers the hold
   * with the balance after it. `ttlMs` 0 means HOLD_TTL_MS; longer than HOLD_TTL_MS_MAX is
   * capped. Idempotent per `requestId` (INV-4). Errors: `validation`, `not_found`,
   * `insufficient_credits` (details: requested, available), `conflict` when the generation
   * already has a hold (INV-3), `idempotency_key_reused`.
   */
  async createHold(request: CreateHoldRequest): Promise<HoldWithBalance> {
    const input = parseCreateHoldInput(request, this.rules);
    const parameters = { accountId: input.accountId, generationId: input.generationId, amount: input.amount, ttlMs: input.requestedTtlMs };
    const call = { requestId: input.requestId, operation: "CreateHold", parameters, ...answerCodec<HoldWithBalance>() };
    return this.uow.inTransaction((stores) => runIdempotent(stores.idempotency, call, () => this.reserveHold(stores, input)));
  }

  /**
   * The conditional UPDATE reserves the credits atomically (INV-1) and locks the account, so
   * the allocation from grants that follows is serialised per account. The generation check
   * answers the common case; two holds of one generation on different accounts racing past it
   * are decided by the unique index (the store's insert throws `conflict`).
   */
  private async reserveHold(stores: CreditsStores, input: CreateHoldInput): Promise<HoldWithBalance> {
    // Expired credits are written off first, so the hold can never take them.
    await this.grants.expireBeforeUse(stores, input.accountId);
    const reserved = await stores.accounts.reserveCredits(input.accountId, input.amount);
    if (!reserved) {
      const current = await stores.accounts.lock(input.accountId);
      if (!current) throw accountNotFound(input.accountId);
      throw new DomainError("insufficient_credits", "not enough credits available for this hold", {
        requested: input.amount,
        available: current.available,
      });
    }
    if (await stores.holds.findIdByGeneration(input.generationId)) throw generationConflict(input.generationId);
    const allocations = allocate(await stores.grants.lockForConsumption(input.accountId), input.amount);
    await stores.grants.changeRemaining(allocations.map((a) => ({ grantId: a.grantId, delta: -a.amount })));
    const hold = await stores.holds.insert(
      { id: newId(), accountId: input.accountId, generationId: input.generationId, amount: input.amount, ttlMs: input.ttlMs, ...amountsByFamily(allocations) },
      allocations,
    );
    await stores.ledger.insert({
      ...NO_LEDGER_CHANGE,
      id: newId(),
      accountId: input.accountId,
      kind: "hold",
      amount: -input.amount,
      heldChange: input.amount,
      grantKind: singleKind(allocations),
      holdId: hold.id,
      generationId: hold.generationId,
      balanceAfter: reserved.available,
      heldAfter: reserved.held,
      holdDeadline: hold.expiresAt,
    });
    return { hold, balance: await this.ledger.readBalance(stores, input.accountId) };
  }

  /**
   * Charges an active hold for `amount` (unset: all of it); the uncaptured rest goes back to
   * the grants taken last, with a RELEASE entry after the CAPTURE entry. Idempotent per
   * `requestId` (INV-4). Errors: `validation` (amount not in 1..hold amount), `not_found`,
   * `hold_not_active` when the hold already ended (INV-3), `idempotency_key_reused`.
   */
  async captureHold(request: CaptureHoldRequest): Promise<HoldWithBalance> {
    const input = parseCaptureHoldInput(request);
    const call = { requestId: input.requestId, operation: "CaptureHold", parameters: { holdId: input.holdId, amount: input.amount }, ...answerCodec<HoldWithBalance>() };
    return this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => {
        const hold = await this.lockActiveHold(stores, input.holdId);
        const capturedAmount = input.amount ?? hold.amount;
        if (capturedAmount > hold.amount) {
          throw new DomainError("validation", "amount must not exceed the held amount", { field: "amount", held: hold.amount, requested: capturedAmount });
        }
        const { charged, returned } = splitCapture(await stores.holds.readAllocations(hold.id), capturedAmount);
        const afterCapture = await stores.accounts.changeBalances(hold.accountId, { held: -capturedAmount, captured: capturedAmount });
        await stores.ledger.insert({
          ...NO_LEDGER_CHANGE,
          id: newId(),
          accountId: hold.accountId,
          kind: "capture",
          // A capture moves held credits to captured ones: the available balance does not change.
          amount: 0n,
          heldChange: -capturedAmount,
          capturedChange: capturedAmount,
          grantKind: singleKind(charged),
          holdId: hold.id,
          generationId: hold.generationId,
          balanceAfter: afterCapture.available,
          heldAfter: afterCapture.held,
        });
        if (returned.length > 0) await this.giveBack(stores, hold, returned, "release", CAPTURE_REST_REASON);
        const ended = await stores.holds.end(hold.id, { status: "captured", capturedAmount, reason: null });
        return { hold: ended, balance: await this.ledger.readBalance(stores, hold.accountId) };
      }),
    );
  }

  /**
   * Gives all of an active hold's credits back to the grants they came from, with a RELEASE
   * entry. `reason` empty means "released". Idempotent per `requestId` (INV-4). Errors:
   * `validation` (reason too long or with a control character), `not_found`,
   * `hold_not_active` (INV-3), `idempotency_key_reused`.
   */
  async releaseHold(request: ReleaseHoldRequest): Promise<HoldWithBalance> {
    const input = parseReleaseHoldInput(request);
    const call = { requestId: input.requestId, operation: "ReleaseHold", parameters: { holdId: input.holdId, reason: input.reason }, ...answerCodec<HoldWithBalance>() };
    return this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => {
        const hold = await this.lockActiveHold(stores, input.holdId);
        await this.giveBack(stores, hold, await stores.holds.readAllocations(hold.id), "release", input.reason);
        const ended = await stores.holds.end(hold.id, { status: "released", capturedAmount: 0n, reason: input.reason });
        return { hold: ended, balance: await this.ledger.readBalance(stores, hold.accountId) };
      }),
    );
  }

  /**
   * Keeps a running job's hold alive (the worker calls this as it renews its lease): the
   * deadline becomes now + `ttlMs` (0: HOLD_TTL_MS; capped at HOLD_TTL_MS_MAX) when that is
   * later, with an EXTENSION ledger entry holding the new deadline (no credit moves; INV-2
   * untouched). `extended` false: the deadline was already as late and nothing was written.
   * A hold past its deadline that the sweeper has not expired yet may still be extended (as
   * it may still be captured). Idempotent per `requestId` (INV-4). Errors: `validation`
   * (ttl_ms), `not_found`, `hold_not_active` (INV-3: an ended hold stays ended),
   * `idempotency_key_reused`.
   */
  async extendHold(request: ExtendHoldRequest): Promise<HoldWithBalance & { extended: boolean }> {
    const input = parseExtendHoldInput(request, this.rules);
    const call = { requestId: input.requestId, operation: "ExtendHold", parameters: { holdId: input.holdId, ttlMs: input.requestedTtlMs }, ...answerCodec<HoldWithBalance & { extended: boolean }>() };
    return this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => {
        const hold = await this.lockActiveHold(stores, input.holdId);
        const extended = await stores.holds.extend(hold.id, input.ttlMs);
        const moved = extended.expiresAt.getTime() > hold.expiresAt.getTime();
        const balance = await this.ledger.readBalance(stores, hold.accountId);
        if (moved) {
          await stores.ledger.insert({
            ...NO_LEDGER_CHANGE,
            id: newId(),
            accountId: hold.accountId,
            kind: "extension",
            amount: 0n,
            holdId: hold.id,
            generationId: hold.generationId,
            balanceAfter: balance.availableCredits,
            heldAfter: balance.heldCredits,
            holdDeadline: extended.expiresAt,
          });
        }
        return { hold: extended, balance, extended: moved };
      }),
    );
  }

  /**
   * Expires up to `batchSize` active holds past their deadline, in one transaction: each goes
   * back to its grants with an EXPIRY entry. Accounts are locked before holds (INV-9) with SKIP
   * LOCKED, so a busy account waits for a later pass and several sweepers never block each
   * other. Returns how many holds expired (`batchSize` means more may be due).
   */
  async expireDueHolds(batchSize: number): Promise<number> {
    return this.uow.inTransaction(async (stores) => {
      const candidates = await stores.holds.findAccountsWithExpired(batchSize);
      const locked = await stores.accounts.lockSkipLocked(candidates);
      const holds = await stores.holds.lockExpired(locked, batchSize);
      for (const hold of holds) {
        await this.giveBack(stores, hold, await stores.holds.readAllocations(hold.id), "expiry", EXPIRY_REASON);
        await stores.holds.end(hold.id, { status: "expired", capturedAmount: 0n, reason: EXPIRY_REASON });
      }
      return holds.length;
    });
  }

  /** Locks the hold's account, then the hold (INV-9), and checks the hold is active (INV-3). */
  private async lockActiveHold(stores: CreditsStores, holdId: string): Promise<Hold> {
    const accountId = await stores.holds.findAccountId(holdId);
    if (!accountId) throw holdNotFound(holdId);
    await stores.accounts.lock(accountId);
    const hold = await stores.holds.lock(holdId);
    assert.ok(hold, "INV-3: a hold cannot vanish (holds are never deleted)");
    if (hold.status !== "active") {
      throw new DomainError("hold_not_active", `the hold is already ${hold.status}`, { hold_id: hold.id, status: hold.status });
    }
    return hold;
  }

  /** Returns `allocations` to their grants and the account's available balance, with one entry (INV-2); then writes off what went back to an expired grant. */
  private async giveBack(stores: CreditsStores, hold: Hold, allocations: readonly Allocation[], kind: "release" | "expiry", reason: string): Promise<void> {
    const amount = allocations.reduce((sum, a) => sum + a.amount, 0n);
    assert.ok(amount > 0n, "INV-2: a give-back returns a positive amount");
    await stores.grants.changeRemaining(allocations.map((a) => ({ grantId: a.grantId, delta: a.amount })));
    const after = await stores.accounts.changeBalances(hold.accountId, { available: amount, held: -amount });
    await stores.ledger.insert({
      ...NO_LEDGER_CHANGE,
      id: newId(),
      accountId: hold.accountId,
      kind,
      amount,
      heldChange: -amount,
      grantKind: singleKind(allocations),
      holdId: hold.id,
      generationId: hold.generationId,
      reason,
      balanceAfter: after.available,
      heldAfter: after.held,
    });
    // What went back to a grant that has expired meanwhile is written off at once.
    await this.grants.expireDueGrantsOf(stores, hold.accountId);
  }
}
