import assert from "node:assert/strict";
import { validationError } from "@tally/platform";
import { encodeLedgerCursor } from "../domain/ledger-cursor";
import { parseAccountId, parseListLedgerEntriesInput, type ListLedgerEntriesRequest } from "../domain/inputs";
import type { CreditsStores, CreditsUnitOfWork } from "../domain/ports";
import { accountNotFound } from "../domain/rules";
import type { Balance, CreditsReconciliation, LedgerPage } from "../domain/types";

/** Most differences a reconciliation lists (the total counts them all). */
export const RECONCILIATION_DIFFERENCES_MAX = 100;
/** Accounts reconciled per statement: bounds each statement's work and memory however many accounts there are. */
export const RECONCILIATION_BATCH_ACCOUNTS = 1_000;

/**
 * The ledger and balance reads of the credits service. Every balance it returns has passed the
 * INV-2 assertions (`readBalance`), so a broken conservation rule shows up as a failed call
 * (and a logged bug) instead of a wrong number.
 */
export class LedgerService {
  constructor(
    private readonly uow: CreditsUnitOfWork,
    /** Accounts reconciled per statement. */
    private readonly reconcileBatchAccounts = RECONCILIATION_BATCH_ACCOUNTS,
  ) {}

  /**
   * Lists an account's ledger entries newest first. `pageSize` 0 means 20, else 1..100;
   * `pageToken` is empty or one this method returned for the same account. Errors:
   * `validation` (page size, token), `not_found`.
   */
  async listLedgerEntries(request: ListLedgerEntriesRequest): Promise<LedgerPage> {
    const { accountId, pageSize, cursor } = parseListLedgerEntriesInput(request);
    return this.uow.withoutTransaction(async (stores) => {
      if (!(await stores.accounts.find(accountId))) throw accountNotFound(accountId);
      // One extra row says whether another page follows without a count query.
      const rows = await stores.ledger.list(accountId, cursor?.position ?? null, pageSize + 1);
      const page = rows.slice(0, pageSize);
      const last = page.at(-1);
      const nextPageToken = rows.length > pageSize && last ? encodeLedgerCursor({ accountId, position: last.position }) : "";
      return { entries: page.map(({ position: _position, ...entry }) => entry), nextPageToken };
    });
  }

  /**
   * The account's balance as it stood at `at` (not after `nowMs`), replayed from its grants,
   * holds and ledger entries (LedgerStore.readBalanceAt); at a moment after the last movement it
   * equals the current balance. Errors: `validation` (`at` in the future), `not_found`.
   */
  async getBalanceAt(rawAccountId: string, at: Date, nowMs = Date.now()): Promise<Balance> {
    const accountId = parseAccountId(rawAccountId);
    if (at.getTime() > nowMs) throw validationError("at must not be in the future", { field: "at" });
    const balance = await this.uow.withoutTransaction((stores) => stores.ledger.readBalanceAt(accountId, at));
    if (!balance) throw accountNotFound(accountId);
    return balance;
  }

  /** Reads an account's balance (INV-2 asserted). Errors: `not_found` for an unknown or malformed id. */
  async getBalance(rawAccountId: string): Promise<Balance> {
    const accountId = parseAccountId(rawAccountId);
    return this.uow.withoutTransaction((stores) => this.readBalance(stores, accountId));
  }

  /**
   * The balance from one consistent snapshot, on `stores` (inside the caller's transaction or
   * not), asserting INV-2 on the way: the available balance equals the grants' remaining
   * credits; everything granted is available, held, captured or expired; and the ledger's
   * newest entry records the stored available and held credits. Errors: `not_found`.
   */
  async readBalance(stores: Pick<CreditsStores, "ledger">, accountId: string): Promise<Balance> {
    const snapshot = await stores.ledger.readBalanceSnapshot(accountId);
    if (!snapshot) throw accountNotFound(accountId);
    const { stored, totals } = snapshot;
    assert.equal(
      totals.trialRemaining + totals.tokenRemaining,
      stored.available,
      `INV-2: account ${accountId}: available credits equal the grants' remaining credits`,
    );
    assert.equal(
      totals.granted,
      stored.available + stored.held + stored.captured + stored.expired + stored.writtenOff,
      `INV-2: account ${accountId}: everything granted is available, held, captured, expired or written off`,
    );
    // An account without entries has never moved a credit: its balances are still zero.
    const lastEntry = snapshot.lastEntry ?? { balanceAfter: 0n, heldAfter: 0n };
    assert.deepEqual(
      { available: lastEntry.balanceAfter, held: lastEntry.heldAfter },
      { available: stored.available, held: stored.held },
      `INV-2: the ledger's last entry records the stored balances (account ${accountId})`,
    );
    return {
      trialCredits: totals.trialRemaining,
      tokenCredits: totals.tokenRemaining,
      heldCredits: stored.held,
      availableCredits: stored.available,
    };
  }

  /**
   * Checks INV-2 over every account and grant, in batches of `batchSize` accounts by id
   * (RECONCILE_BATCH_ACCOUNTS unless given; each
   * batch one statement and one snapshot, so its bounded work never sees a movement half done;
   * read only; safe while credits move): the ledger replays to each account's stored balances and its newest entry
   * states them; the grants' remaining credits are the available balance, the active holds the
   * held one, the captured holds the captured one; everything granted is available + held +
   * captured + expired + written off; and each grant's amount is its remaining credits + what
   * active holds took from it + what captured holds charged it + expired + written off (the
   * check names are listed in docs/invariants.md). Answers the number of failing equalities
   * (0: the books balance) and the first `RECONCILIATION_DIFFERENCES_MAX` of them, ordered by
   * account, grant and check. Errors: none of its own (database errors propagate).
   */
  async reconcile(batchSize = this.reconcileBatchAccounts): Promise<CreditsReconciliation> {
    const result: CreditsReconciliation = { differencesTotal: 0, differences: [] };
    for (let after: string | null = null; ; ) {
      const limit = RECONCILIATION_DIFFERENCES_MAX - result.differences.length;
      const batch = await this.uow.withoutTransaction((stores) => stores.reconciliation.differencesOfBatch(after, batchSize, Math.max(limit, 1)));
      if (batch.lastAccountId === null) return result;
      result.differencesTotal += batch.differencesTotal;
      result.differences.push(...batch.differences.slice(0, limit));
      after = batch.lastAccountId;
    }
  }
}
