import assert from "node:assert/strict";
import { checkRequestId, DomainError, fingerprint, newId, validationError } from "@tally/platform";
import { singleKind, type Allocation } from "../domain/allocation";
import {
  parseCaptureHoldInput,
  parseCreateHoldInput,
  parseExtendHoldInput,
  parseReleaseHoldInput,
  type CaptureHoldRequest,
  type CreateHoldRequest,
  type ExtendHoldRequest,
  type ReleaseHoldRequest,
} from "../domain/inputs";
import type { CreditsStores, CreditsUnitOfWork, HoldOperation } from "../domain/ports";
import { CAPTURE_REST_REASON, EXPIRY_REASON, GRANT_EXPIRED_REASON, NO_LEDGER_CHANGE, type CreditsRules } from "../domain/rules";
import type { Hold, HoldWithBalance, MemberResult } from "../domain/types";
import type { GrantsService } from "./grants";
import { HoldGroupCommit } from "./group-commit";
import { answerOf, withoutExtended } from "./hold-answers";

/** Most members of one BatchCreateHolds, BatchCaptureHolds or BatchReleaseHolds call. */
export const BATCH_HOLDS_MAX = 1_000;

/**
 * Holds: credits set aside for one generation, then captured, released or expired, each
 * exactly once (INV-3). A hold reserves its credits with one conditional UPDATE of the account
 * row (INV-1); every movement writes one ledger entry with the balances after it (INV-2); rows
 * are locked account first, then hold (INV-9). Create, capture, release and extend are each
 * ONE statement in the database (HoldOperationStore), group-committed (HoldGroupCommit); the
 * expiry sweep runs here over the stores.
 */
export class HoldsService {
  private readonly groupCommit: HoldGroupCommit;

  constructor(
    private readonly uow: CreditsUnitOfWork,
    private readonly rules: CreditsRules,
    private readonly grants: Pick<GrantsService, "expireDueGrantsOf">,
    /** The clock grant expiry is decided by. */
    now: () => Date = () => new Date(),
  ) {
    const context = () => ({ now: now(), captureRestReason: CAPTURE_REST_REASON, grantExpiredReason: GRANT_EXPIRED_REASON });
    // Outside a transaction: the one statement is the batch's transaction (one round trip, one commit).
    const apply = (operations: readonly HoldOperation[]) => this.uow.withoutTransaction((stores) => stores.holdOperations.apply(operations, context()));
    this.groupCommit = new HoldGroupCommit(apply, rules.groupCommit ?? { windowMs: 0, maxOperations: 1 });
  }

  /**
   * Sets `amount` credits aside for one generation, trial grants first, and answers the hold
   * with the balance after it. `ttlMs` 0 means HOLD_TTL_MS; longer than HOLD_TTL_MS_MAX is
   * capped. Idempotent per `requestId` (INV-4). Errors: `validation`, `not_found`,
   * `insufficient_credits` (details: requested, available), `conflict` when the generation
   * already has a hold (INV-3), `idempotency_key_reused`.
   *
   * One statement (group-committed with other hold operations): due grants are written off
   * first, the credits are reserved by a conditional UPDATE of the locked account row (INV-1),
   * and the hold, its allocations and the HOLD entry with the balances after (INV-2) are written
   * with the stored answer. Two holds of one generation on different accounts racing past the
   * check are decided by the unique index (`conflict`).
   */
  async createHold(request: CreateHoldRequest): Promise<HoldWithBalance> {
    return withoutExtended(await this.applyOperation(this.createOperation(request)));
  }

  /**
   * Charges an active hold for `amount` (unset: all of it); the uncaptured rest goes back to
   * the grants taken last, with a RELEASE entry after the CAPTURE entry. Idempotent per
   * `requestId` (INV-4). Errors: `validation` (amount not in 1..hold amount), `not_found`,
   * `hold_not_active` when the hold already ended (INV-3), `idempotency_key_reused`.
   */
  async captureHold(request: CaptureHoldRequest): Promise<HoldWithBalance> {
    return withoutExtended(await this.applyOperation(this.captureOperation(request)));
  }

  /**
   * Gives all of an active hold's credits back to the grants they came from, with a RELEASE
   * entry. `reason` empty means "released". Idempotent per `requestId` (INV-4). Errors:
   * `validation` (reason too long or with a control character), `not_found`,
   * `hold_not_active` (INV-3), `idempotency_key_reused`.
   */
  async releaseHold(request: ReleaseHoldRequest): Promise<HoldWithBalance> {
    return withoutExtended(await this.applyOperation(this.releaseOperation(request)));
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
    const key = this.keyOf(input.requestId, "ExtendHold", { holdId: input.holdId, ttlMs: input.requestedTtlMs });
    return this.applyOperation({ operation: "ExtendHold", ...key, holdId: input.holdId, ttlMs: input.ttlMs });
  }

  /**
   * The batch forms (BatchCreateHolds, BatchCaptureHolds, BatchReleaseHolds): `requests` applied
   * together, one transaction for up to CREDITS_GROUP_COMMIT_MAX_OPERATIONS of them, each with
   * its own result in the order given: the answer, or the DomainError its unary call would throw
   * (a malformed member fails alone). Errors of the whole call: `validation` (no requests, or
   * more than BATCH_HOLDS_MAX).
   */
  createHolds(requests: readonly CreateHoldRequest[]): Promise<MemberResult[]> {
    return this.applyBatch(requests, (request) => this.createOperation(request));
  }

  /** See createHolds. */
  captureHolds(requests: readonly CaptureHoldRequest[]): Promise<MemberResult[]> {
    return this.applyBatch(requests, (request) => this.captureOperation(request));
  }

  /** See createHolds. */
  releaseHolds(requests: readonly ReleaseHoldRequest[]): Promise<MemberResult[]> {
    return this.applyBatch(requests, (request) => this.releaseOperation(request));
  }

  /** Sends what the group commit holds and waits for its answers (graceful stop). */
  drain(): Promise<void> {
    return this.groupCommit.drain();
  }

  private createOperation(request: CreateHoldRequest): HoldOperation {
    const input = parseCreateHoldInput(request, this.rules);
    const { accountId, generationId, amount, ttlMs } = input;
    const key = this.keyOf(input.requestId, "CreateHold", { accountId, generationId, amount, ttlMs: input.requestedTtlMs });
    return { operation: "CreateHold", ...key, accountId, generationId, amount, ttlMs };
  }

  private captureOperation(request: CaptureHoldRequest): HoldOperation {
    const input = parseCaptureHoldInput(request);
    const key = this.keyOf(input.requestId, "CaptureHold", { holdId: input.holdId, amount: input.amount });
    return { operation: "CaptureHold", ...key, holdId: input.holdId, amount: input.amount };
  }

  private releaseOperation(request: ReleaseHoldRequest): HoldOperation {
    const input = parseReleaseHoldInput(request);
    const key = this.keyOf(input.requestId, "ReleaseHold", { holdId: input.holdId, reason: input.reason });
    return { operation: "ReleaseHold", ...key, holdId: input.holdId, reason: input.reason };
  }

  private async applyBatch<R>(requests: readonly R[], toOperation: (request: R) => HoldOperation): Promise<MemberResult[]> {
    if (requests.length === 0 || requests.length > BATCH_HOLDS_MAX) {
      throw validationError(`requests must hold 1..${BATCH_HOLDS_MAX} members`, { field: "requests" });
    }
    const results: MemberResult[] = new Array(requests.length);
    const operations: { index: number; operation: HoldOperation }[] = [];
    requests.forEach((request, index) => {
      try {
        operations.push({ index, operation: toOperation(request) });
      } catch (error) {
        if (!(error instanceof DomainError)) throw error;
        results[index] = { error };
      }
    });
    const outcomes = await this.groupCommit.submitAll(operations.map((o) => o.operation));
    operations.forEach(({ index, operation }, i) => {
      try {
        results[index] = { ok: withoutExtended(answerOf(operation, outcomes[i]!)) };
      } catch (error) {
        if (!(error instanceof DomainError)) throw error;
        results[index] = { error };
      }
    });
    return results;
  }

  /** The idempotency key and fingerprint of a call (INV-4), as `runIdempotent` computes them. Errors: `validation` (request_id). */
  private keyOf(requestId: string, operation: HoldOperation["operation"], parameters: unknown): { requestId: string; fingerprint: string } {
    checkRequestId(requestId);
    return { requestId, fingerprint: fingerprint({ operation, parameters }) };
  }

  /** Applies one operation in the next group commit and maps its outcome to the answer or the DomainError of before. */
  private async applyOperation(operation: HoldOperation): Promise<HoldWithBalance & { extended: boolean }> {
    return answerOf(operation, await this.groupCommit.submit(operation));
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
