import assert from "node:assert/strict";
import { DomainError, isUuid, newId, answerCodec, runIdempotent, Sql, SqlIdempotencyStore, type Logger, type Orm } from "@tally/platform";
import { allocate, amountsByFamily, singleKind, splitCapture, type Allocation } from "../domain/allocation";
import { decodePageToken, encodePageToken } from "../domain/page-token";
import {
  accountNotFound,
  containsNul,
  EMAIL_LENGTH_MAX,
  GENERATION_ID_LENGTH_MAX,
  holdNotFound,
  normalizeEmail,
  PASSWORD_LENGTH_MAX,
  RELEASE_REASON_LENGTH_MAX,
  resolveHoldTtlMs,
  resolveLedgerPageSize,
  trialCreditsForPlan,
  validatePassword,
  validatePositiveAmount,
  validateRequiredText,
} from "../domain/rules";
import type { Account, Balance, Grant, GrantKind, Hold, LedgerEntry, Role } from "../domain/types";
import * as store from "../adapter/store";
import type { Transaction } from "../adapter/store";
import type { PasswordHasher } from "./passwords";

/** The configured rules the service applies (from CreditsConfig). */
export interface CreditsRules {
  defaultPlan: string;
  /** Trial credits of the default plan. */
  defaultPlanTrialCredits: number;
  /** Trial credits per plan name; wins over `defaultPlanTrialCredits`. */
  planTrialCredits: Record<string, number>;
  /** Hold time to live when the caller gives 0, in milliseconds. */
  holdTtlMs: number;
  /** Longest hold time to live, in milliseconds; longer requests are capped. */
  holdTtlMsMax: number;
  /** Largest single grant or hold, in credits. */
  creditAmountMax: bigint;
}

export interface AccountWithBalance {
  account: Account;
  balance: Balance;
}
export interface GrantWithBalance {
  grant: Grant;
  balance: Balance;
}
export interface HoldWithBalance {
  hold: Hold;
  balance: Balance;
}
export interface LedgerPage {
  entries: LedgerEntry[];
  /** Empty when there is no further page. */
  nextPageToken: string;
}

/** Reason recorded on the RELEASE entry for the uncaptured rest of a capture. */
const CAPTURE_REST_REASON = "capture_rest";
/** Reason recorded when a release names none. */
const RELEASE_REASON_DEFAULT = "released";
/** Reason recorded on EXPIRY entries. */
const EXPIRY_REASON = "hold_expired";

/**
 * The credits rules: accounts and sign-in, grants, holds and the ledger (proto
 * `tally.credits.v1.CreditsService`). Every mutation runs in one READ COMMITTED transaction
 * together with its idempotency record (DESIGN.md invariant 4), moves balances only through
 * atomic UPDATEs on the account row (invariant 1) and writes one immutable ledger entry per
 * movement with the balances after it (invariant 2). Expected failures are DomainErrors only.
 */
export class CreditsService {
  constructor(
    private readonly orm: Orm,
    private readonly rules: CreditsRules,
    private readonly passwords: PasswordHasher,
    private readonly logger: Logger,
  ) {}

  /** Runs `work` in its own transaction on a fresh EntityManager fork (never the global one). */
  private transaction<T>(work: (em: Transaction) => Promise<T>): Promise<T> {
    return this.orm.em.fork().transactional((em) => work(em as Transaction));
  }

  // ---------------------------------------------------------------- accounts

  /**
   * Creates an account with its credentials and its plan's trial grant (with a GRANT ledger
   * entry) in one transaction. `plan` empty means the default plan; `role` null means user.
   * Errors: `validation` (email, password 8..256 characters without NUL, unknown plan, request_id);
   * `conflict` when the email is taken; `idempotency_key_reused` (other parameters, or a
   * replay whose password does not match the account's).
   */
  async createAccount(input: { requestId: string; email: string; password: string; plan: string; role: Role }): Promise<AccountWithBalance> {
    const email = normalizeEmail(input.email);
    validatePassword(input.password);
    const plan = input.plan.trim() || this.rules.defaultPlan;
    const trialCredits = trialCreditsForPlan(plan, {
      defaultPlan: this.rules.defaultPlan,
      defaultPlanTrialCredits: this.rules.defaultPlanTrialCredits,
      planTrialCredits: this.rules.planTrialCredits,
    });
    // Hashing is slow on purpose: do it before taking a connection. The password is left out
    // of the idempotency fingerprint so that no unsalted digest of it is ever stored; a replay
    // is checked against the stored account's hash instead (below).
    const passwordHash = await this.passwords.hash(input.password);
    const emailConflict = () => new DomainError("conflict", "an account with this email already exists", { field: "email" });
    let created = false;
    let answer: AccountWithBalance;
    try {
      answer = await this.transaction((em) =>
        runIdempotent(new SqlIdempotencyStore(new Sql(em)),
          { requestId: input.requestId, operation: "CreateAccount", parameters: { email, plan, role: input.role }, ...answerCodec<AccountWithBalance>() },
          async () => {
            created = true;
            if (await store.emailTaken(em, email)) throw emailConflict();
            const account = await store.insertAccount(em, { id: newId(), email, passwordHash, plan, role: input.role });
            if (trialCredits > 0n) await this.addGrant(em, account.id, "trial", trialCredits, null);
            return { account, balance: await this.readBalance(em, account.id) };
          },
        ),
      );
    } catch (error) {
      // Two registrations of one email racing: the unique index decides, the loser gets conflict.
      if (store.isUniqueViolation(error, store.ACCOUNTS_EMAIL_KEY)) throw emailConflict();
      throw error;
    }
    // A replayed request_id returns the stored account only to whoever knows its password:
    // otherwise anyone who learns a request_id and email would get the account (and, through
    // the gateway, a token for it). Verified with no transaction open.
    if (!created) {
      const storedHash = await store.findPasswordHash(this.orm.em.fork() as Transaction, answer.account.id);
      if (storedHash === null || !(await this.passwords.verify(storedHash, input.password))) {
        throw new DomainError("idempotency_key_reused", "this request_id was already used with different parameters", {
          request_id: input.requestId,
        });
      }
    }
    return answer;
  }

  /**
   * Checks an email and password, then sets `last_login_at` in one transaction (the password
   * is verified before it, with no transaction or connection held). An unknown email is
   * verified against a dummy hash so both failures take as long and give the same
   * `unauthenticated` error. Errors: `validation` (empty email or password, request_id),
   * `unauthenticated`, `idempotency_key_reused`.
   */
  async authenticate(input: { requestId: string; email: string; password: string }): Promise<{ account: Account }> {
    const email = input.email.trim().toLowerCase();
    if (email.length === 0) throw new DomainError("validation", "email is required", { field: "email" });
    if (input.password.length === 0) throw new DomainError("validation", "password is required", { field: "password" });
    // No stored password is longer than the limit and no stored email longer than its limit, so
    // such input cannot match: refuse it before hashing (argon2 on megabytes is a cheap DoS).
    // Nor can any stored credential contain a NUL (PostgreSQL text cannot hold one, and sign-up
    // refuses it): refuse it before the database sees it.
    if ([...input.password].length > PASSWORD_LENGTH_MAX || email.length > EMAIL_LENGTH_MAX || containsNul(email) || containsNul(input.password)) {
      throw new DomainError("unauthenticated", "email or password is wrong");
    }
    // argon2 is slow on purpose: read the hash and verify it with no transaction open, so a
    // burst of sign-ins does not hold the pool's connections while hashing.
    const credentials = await store.findCredentials(this.orm.em.fork() as Transaction, email);
    let verified = false;
    if (credentials) verified = await this.passwords.verify(credentials.passwordHash, input.password);
    else await this.passwords.verifyAgainstDummy(input.password);
    if (!credentials || !verified) throw new DomainError("unauthenticated", "email or password is wrong");
    // The password was checked above on every call, retries included; the idempotency record
    // only makes a retry return the first answer (the same last_login_at).
    return this.transaction((em) =>
      runIdempotent(new SqlIdempotencyStore(new Sql(em)),
        { requestId: input.requestId, operation: "Authenticate", parameters: { email }, ...answerCodec<{ account: Account }>() },
        async () => ({ account: await store.recordLogin(em, credentials.account.id) }),
      ),
    );
  }

  /** Reads an account. Errors: `not_found` for an unknown or malformed id. */
  async getAccount(accountId: string): Promise<Account> {
    if (!isUuid(accountId)) throw accountNotFound(accountId);
    const account = await store.findAccount(this.orm.em.fork() as Transaction, accountId);
    if (!account) throw accountNotFound(accountId);
    return account;
  }

  /** Reads an account's balance. Errors: `not_found` for an unknown or malformed id. */
  async getBalance(accountId: string): Promise<Balance> {
    if (!isUuid(accountId)) throw accountNotFound(accountId);
    return this.readBalance(this.orm.em.fork() as Transaction, accountId);
  }

  // ---------------------------------------------------------------- grants

  /**
   * Adds a grant to an account, with a GRANT ledger entry. `expiresAt` null means it does not
   * expire (expiry only orders consumption for now; expiry processing is a later issue).
   * Errors: `validation` (amount 1..CREDIT_AMOUNT_MAX, expiry in the past), `not_found`,
   * `idempotency_key_reused`.
   */
  async createGrant(input: { requestId: string; accountId: string; kind: GrantKind; amount: bigint; expiresAt: Date | null }): Promise<GrantWithBalance> {
    validatePositiveAmount(input.amount, "amount", this.rules.creditAmountMax);
    if (input.expiresAt !== null && input.expiresAt.getTime() <= Date.now()) {
      throw new DomainError("validation", "expires_at must be in the future", { field: "expires_at" });
    }
    if (!isUuid(input.accountId)) throw accountNotFound(input.accountId);
    const parameters = { accountId: input.accountId, kind: input.kind, amount: input.amount, expiresAt: input.expiresAt };
    return this.transaction((em) =>
      runIdempotent(new SqlIdempotencyStore(new Sql(em)), { requestId: input.requestId, operation: "CreateGrant", parameters, ...answerCodec<GrantWithBalance>() }, async () => {
        if (!(await store.lockAccount(em, input.accountId))) throw accountNotFound(input.accountId);
        const grant = await this.addGrant(em, input.accountId, input.kind, input.amount, input.expiresAt);
        return { grant, balance: await this.readBalance(em, input.accountId) };
      }),
    );
  }

  /** Inserts a grant, credits the account and writes the GRANT entry (inside `em`). */
  private async addGrant(em: Transaction, accountId: string, kind: GrantKind, amount: bigint, expiresAt: Date | null): Promise<Grant> {
    const grant = await store.insertGrant(em, { id: newId(), accountId, kind, amount, expiresAt });
    const after = await store.changeBalances(em, accountId, { available: amount });
    await store.insertLedgerEntry(em, {
      ...NO_CHANGE,
      id: newId(),
      accountId,
      kind: "grant",
      amount,
      grantKind: kind,
      grantId: grant.id,
      balanceAfter: after.available,
      heldAfter: after.held,
    });
    return grant;
  }

  // ---------------------------------------------------------------- holds

  /**
   * Sets `amount` credits aside for one generation, trial grants first. The conditional
   * UPDATE on the account row reserves the credits atomically (the available balance never
   * goes below zero under any concurrency) and locks the account, so the allocation from
   * grants that follows is serialised per account. `ttlMs` 0 means HOLD_TTL_MS; longer than
   * HOLD_TTL_MS_MAX is capped. Errors: `validation`, `not_found`, `insufficient_credits`
   * (details: requested, available), `conflict` when the generation already has a hold,
   * `idempotency_key_reused`.
   */
  async createHold(input: { requestId: string; accountId: string; generationId: string; amount: bigint; ttlMs: bigint }): Promise<HoldWithBalance> {
    validateRequiredText(input.generationId, "generation_id", GENERATION_ID_LENGTH_MAX);
    validatePositiveAmount(input.amount, "amount", this.rules.creditAmountMax);
    const ttlMs = resolveHoldTtlMs(input.ttlMs, this.rules.holdTtlMs, this.rules.holdTtlMsMax);
    if (!isUuid(input.accountId)) throw accountNotFound(input.accountId);
    const parameters = { accountId: input.accountId, generationId: input.generationId, amount: input.amount, ttlMs: input.ttlMs };
    const generationConflict = () =>
      new DomainError("conflict", "this generation already has a hold", { generation_id: input.generationId });
    try {
      return await this.transaction((em) =>
        runIdempotent(new SqlIdempotencyStore(new Sql(em)), { requestId: input.requestId, operation: "CreateHold", parameters, ...answerCodec<HoldWithBalance>() }, async () => {
          const reserved = await store.reserveCredits(em, input.accountId, input.amount);
          if (!reserved) {
            const current = await store.lockAccount(em, input.accountId);
            if (!current) throw accountNotFound(input.accountId);
            throw new DomainError("insufficient_credits", "not enough credits available for this hold", {
              requested: input.amount,
              available: current.available,
            });
          }
          if (await store.findHoldIdByGeneration(em, input.generationId)) throw generationConflict();
          const allocations = allocate(await store.lockGrantsForConsumption(em, input.accountId), input.amount);
          await store.changeGrantRemaining(em, allocations.map((a) => ({ grantId: a.grantId, delta: -a.amount })));
          const hold = await store.insertHold(
            em,
            { id: newId(), accountId: input.accountId, generationId: input.generationId, amount: input.amount, ttlMs, ...amountsByFamily(allocations) },
            allocations,
          );
          await store.insertLedgerEntry(em, {
            ...NO_CHANGE,
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
          });
          return { hold, balance: await this.readBalance(em, input.accountId) };
        }),
      );
    } catch (error) {
      // Two holds for one generation on different accounts racing: the unique index decides.
      if (store.isUniqueViolation(error, store.HOLDS_GENERATION_ID_KEY)) throw generationConflict();
      throw error;
    }
  }

  /**
   * Charges an active hold for `amount` (unset: all of it); the uncaptured rest goes back to
   * the grants taken last, with a RELEASE entry after the CAPTURE entry. Errors: `validation`
   * (amount not in 1..hold amount), `not_found`, `hold_not_active` when the hold was already
   * captured, released or expired, `idempotency_key_reused`.
   */
  async captureHold(input: { requestId: string; holdId: string; amount: bigint | undefined }): Promise<HoldWithBalance> {
    if (input.amount !== undefined && input.amount <= 0n) {
      throw new DomainError("validation", "amount must be greater than 0 (release the hold to charge nothing)", { field: "amount" });
    }
    if (!isUuid(input.holdId)) throw holdNotFound(input.holdId);
    const parameters = { holdId: input.holdId, amount: input.amount ?? null };
    return this.transaction((em) =>
      runIdempotent(new SqlIdempotencyStore(new Sql(em)), { requestId: input.requestId, operation: "CaptureHold", parameters, ...answerCodec<HoldWithBalance>() }, async () => {
        const hold = await this.lockActiveHold(em, input.holdId);
        const capturedAmount = input.amount ?? hold.amount;
        if (capturedAmount > hold.amount) {
          throw new DomainError("validation", "amount must not exceed the held amount", { field: "amount", held: hold.amount, requested: capturedAmount });
        }
        const { charged, returned } = splitCapture(await store.readAllocations(em, hold.id), capturedAmount);
        const afterCapture = await store.changeBalances(em, hold.accountId, { held: -capturedAmount, captured: capturedAmount });
        await store.insertLedgerEntry(em, {
          ...NO_CHANGE,
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
        if (returned.length > 0) await this.giveBack(em, hold, returned, "release", CAPTURE_REST_REASON);
        const ended = await store.endHold(em, hold.id, { status: "captured", capturedAmount, reason: null });
        return { hold: ended, balance: await this.readBalance(em, hold.accountId) };
      }),
    );
  }

  /**
   * Gives all of an active hold's credits back to the grants they came from, with a RELEASE
   * entry. Errors: `validation` (reason too long or with a NUL), `not_found`, `hold_not_active`,
   * `idempotency_key_reused`.
   */
  async releaseHold(input: { requestId: string; holdId: string; reason: string }): Promise<HoldWithBalance> {
    const reason = input.reason.trim() || RELEASE_REASON_DEFAULT;
    if (reason.length > RELEASE_REASON_LENGTH_MAX) {
      throw new DomainError("validation", `reason must be at most ${RELEASE_REASON_LENGTH_MAX} characters`, { field: "reason" });
    }
    if (containsNul(reason)) throw new DomainError("validation", "reason must not contain NUL characters", { field: "reason" });
    if (!isUuid(input.holdId)) throw holdNotFound(input.holdId);
    const parameters = { holdId: input.holdId, reason };
    return this.transaction((em) =>
      runIdempotent(new SqlIdempotencyStore(new Sql(em)), { requestId: input.requestId, operation: "ReleaseHold", parameters, ...answerCodec<HoldWithBalance>() }, async () => {
        const hold = await this.lockActiveHold(em, input.holdId);
        await this.giveBack(em, hold, await store.readAllocations(em, hold.id), "release", reason);
        const ended = await store.endHold(em, hold.id, { status: "released", capturedAmount: 0n, reason });
        return { hold: ended, balance: await this.readBalance(em, hold.accountId) };
      }),
    );
  }

  /**
   * Expires up to `batchSize` active holds past their deadline, in one transaction: each goes
   * back to its grants with an EXPIRY entry. Accounts are locked before holds (the same order
   * as capture and release) with SKIP LOCKED, so a busy account waits for a later pass and
   * several sweepers never block each other. Returns how many holds expired.
   */
  async expireDueHolds(batchSize: number): Promise<number> {
    return this.transaction(async (em) => {
      const candidates = await store.findAccountsWithExpiredHolds(em, batchSize);
      const locked = await store.lockAccountsSkipLocked(em, candidates);
      const holds = await store.lockExpiredHolds(em, locked, batchSize);
      for (const hold of holds) {
        await this.giveBack(em, hold, await store.readAllocations(em, hold.id), "expiry", EXPIRY_REASON);
        await store.endHold(em, hold.id, { status: "expired", capturedAmount: 0n, reason: EXPIRY_REASON });
      }
      if (holds.length > 0) this.logger.info({ holds: holds.length }, "expired holds past their deadline");
      return holds.length;
    });
  }

  /** Locks the hold's account, then the hold (fixed order), and checks the hold is active. */
  private async lockActiveHold(em: Transaction, holdId: string): Promise<Hold> {
    const accountId = await store.findHoldAccountId(em, holdId);
    if (!accountId) throw holdNotFound(holdId);
    await store.lockAccount(em, accountId);
    const hold = await store.lockHold(em, holdId);
    assert.ok(hold, "a hold cannot vanish: holds are never deleted");
    if (hold.status !== "active") {
      throw new DomainError("hold_not_active", `the hold is already ${hold.status}`, { hold_id: hold.id, status: hold.status });
    }
    return hold;
  }

  /** Returns `allocations` to their grants and the account's available balance, with one entry. */
  private async giveBack(em: Transaction, hold: Hold, allocations: readonly Allocation[], kind: "release" | "expiry", reason: string): Promise<void> {
    const amount = allocations.reduce((sum, a) => sum + a.amount, 0n);
    assert.ok(amount > 0n, "a give-back returns a positive amount");
    await store.changeGrantRemaining(em, allocations.map((a) => ({ grantId: a.grantId, delta: a.amount })));
    const after = await store.changeBalances(em, hold.accountId, { available: amount, held: -amount });
    await store.insertLedgerEntry(em, {
      ...NO_CHANGE,
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
  }

  // ---------------------------------------------------------------- ledger and balance

  /**
   * Lists an account's ledger entries newest first. `pageSize` 0 means 20, else 1..100;
   * `pageToken` is one this method returned. Errors: `validation` (page size, token),
   * `not_found`.
   */
  async listLedgerEntries(input: { accountId: string; pageSize: number; pageToken: string }): Promise<LedgerPage> {
    const pageSize = resolveLedgerPageSize(input.pageSize);
    if (!isUuid(input.accountId)) throw accountNotFound(input.accountId);
    const cursor = input.pageToken ? decodePageToken(input.pageToken, input.accountId) : null;
    const em = this.orm.em.fork() as Transaction;
    if (!(await store.findAccount(em, input.accountId))) throw accountNotFound(input.accountId);
    // One extra row says whether another page follows without a count query.
    const rows = await store.listLedgerEntries(em, input.accountId, cursor?.position ?? null, pageSize + 1);
    const page = rows.slice(0, pageSize);
    const last = page.at(-1);
    const nextPageToken = rows.length > pageSize && last ? encodePageToken({ accountId: input.accountId, position: last.position }) : "";
    return { entries: page.map(({ position: _position, ...entry }) => entry), nextPageToken };
  }

  /**
   * The balance from one consistent snapshot, asserting DESIGN.md invariant 2 on the way:
   * the available balance equals the grants' remaining credits, and everything granted is
   * available, held, captured or expired.
   */
  private async readBalance(em: Transaction, accountId: string): Promise<Balance> {
    const snapshot = await store.readBalanceSnapshot(em, accountId);
    if (!snapshot) throw accountNotFound(accountId);
    const { stored, totals } = snapshot;
    assert.equal(totals.trialRemaining + totals.tokenRemaining, stored.available, `account ${accountId}: available credits differ from the grants' remaining credits`);
    assert.equal(totals.granted, stored.available + stored.held + stored.captured + stored.expired, `account ${accountId}: credits are not conserved`);
    return {
      trialCredits: totals.trialRemaining,
      tokenCredits: totals.tokenRemaining,
      heldCredits: stored.held,
      availableCredits: stored.available,
    };
  }
}

/** Ledger fields most movements leave at their zero value. */
const NO_CHANGE = {
  heldChange: 0n,
  capturedChange: 0n,
  expiredChange: 0n,
  grantKind: null,
  grantId: null,
  holdId: null,
  generationId: null,
  reason: null,
} satisfies Partial<store.NewLedgerEntry>;
