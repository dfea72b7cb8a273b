import { answerCodec, newId, runIdempotent } from "@tally/platform";
import {
  parseAccountId,
  parseAuthenticateInput,
  parseCreateAccountInput,
  parseSetBillingAnchorInput,
  parseSetPlanInput,
  parseSetRoleInput,
  type AuthenticateRequest,
  type CreateAccountInput,
  type CreateAccountRequest,
  type SetBillingAnchorRequest,
  type SetPlanRequest,
  type SetRoleRequest,
} from "../domain/inputs";
import type { CreditsUnitOfWork } from "../domain/ports";
import { ACCOUNT_DELETED_REASON, accountBusy, accountNotFound, NO_LEDGER_CHANGE, emailConflict, guestHasNoBillingAnchor, noAccountWithEmail, requestIdReused, requireTimeForEffect, signInFailed, type CreditsRules } from "../domain/rules";
import type { Account, AccountDeletion, AccountWithBalance } from "../domain/types";
import type { CreditsStores } from "../domain/ports";
import type { GrantsService } from "./grants";
import type { LedgerService } from "./ledger";
import { NO_DEADLINE, type PasswordHasher } from "./passwords";

/**
 * Accounts, sign-in, plans and roles. Passwords are hashed with argon2id in a bounded pool
 * (passwords.ts) and verified with no transaction (or pooled connection) held; an account
 * starts with its plan's trial grant.
 */
export class AccountsService {
  constructor(
    private readonly uow: CreditsUnitOfWork,
    private readonly rules: CreditsRules,
    private readonly passwords: PasswordHasher,
    private readonly grants: GrantsService,
    private readonly ledger: LedgerService,
  ) {}

  /**
   * Creates an account with its credentials and its plan's trial grant (with a GRANT ledger
   * entry) in one transaction, and answers it with its balance. `plan` empty means the
   * catalogue's default plan; an email in TALLY_ADMIN_EMAILS makes an admin. With
   * `adoptGuestId`, the same transaction marks that guest adopted by the new account if it is
   * a guest not yet adopted (any other id is left alone). Idempotent per `requestId` (INV-4); a
   * replay is answered only to the same password. `deadlineMs` is the caller's deadline (epoch
   * ms): once hashing is done, nothing is written unless EFFECT_TIME_RESERVE_MS is left.
   * Errors: `validation` (email, password 8..256 characters without NUL, unknown plan,
   * adopt_guest_id, request_id); `conflict` when the email is taken; `idempotency_key_reused`
   * (other parameters, or a replay whose password does not match the account's);
   * `unavailable` (details `retry_after_seconds`) when the hashing pool is full or the deadline
   * is too near: then nothing was written.
   */
  async createAccount(request: CreateAccountRequest, deadlineMs = NO_DEADLINE): Promise<AccountWithBalance> {
    const input = parseCreateAccountInput(request, this.rules);
    // Hashing is slow on purpose: do it before taking a connection. The password is left out
    // of the idempotency fingerprint so that no unsalted digest of it is ever stored; a replay
    // is checked against the stored account's hash instead (below).
    const passwordHash = await this.passwords.hash(input.password, deadlineMs);
    requireTimeForEffect(deadlineMs);
    const { created, answer } = await this.insertAccount(input, passwordHash);
    // A replayed request_id returns the stored account only to whoever knows its password:
    // otherwise anyone who learns a request_id and email would get the account (and, through
    // the gateway, a token for it). Verified with no transaction open.
    if (!created) {
      const storedHash = await this.uow.withoutTransaction((stores) => stores.accounts.findPasswordHash(answer.account.id));
      if (storedHash === null || !(await this.passwords.verify(storedHash, input.password))) throw requestIdReused(input.requestId);
    }
    return answer;
  }

  /** The idempotent transaction of `createAccount`; `created` is false for a replayed answer. */
  private async insertAccount(input: CreateAccountInput, passwordHash: string): Promise<{ created: boolean; answer: AccountWithBalance }> {
    const { requestId, email, plan, role, adoptGuestId } = input;
    // Without a guest the fingerprint is the one registrations had before adoption existed, so
    // a retry that spans the upgrade still gets its first answer.
    const parameters = { email, plan, role, ...(adoptGuestId === null ? {} : { adoptGuestId }) };
    const call = { requestId, operation: "CreateAccount", parameters, ...answerCodec<AccountWithBalance>() };
    let created = false;
    const answer = await this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => {
        created = true;
        if (await stores.accounts.emailTaken(email)) throw emailConflict();
        const account = await stores.accounts.insert({ id: newId(), email, passwordHash, plan, role });
        if (input.trialCredits > 0n) {
          await this.grants.addGrant(stores, { accountId: account.id, kind: "trial", amount: input.trialCredits, expiresAt: null });
        }
        // A user's id, an adopted guest's or an id with no account is simply not adopted.
        if (adoptGuestId !== null) await stores.accounts.adoptGuest(adoptGuestId, account.id);
        return { account, balance: await this.ledger.readBalance(stores, account.id) };
      }),
    );
    return { created, answer };
  }

  /**
   * Checks an email and password, then sets `last_login_at` in one transaction (the password
   * is verified before it, with no transaction or connection held). An unknown email is
   * verified against a dummy hash so both failures take as long and give the same
   * `unauthenticated` error. Idempotent per `requestId` (a retry returns the first
   * `last_login_at`). `deadlineMs` as for `createAccount`. Errors: `validation` (empty email
   * or password, request_id), `unauthenticated`, `idempotency_key_reused`, `unavailable`
   * (pool full or deadline too near; nothing written).
   */
  async authenticate(request: AuthenticateRequest, deadlineMs = NO_DEADLINE): Promise<{ account: Account }> {
    const input = parseAuthenticateInput(request);
    // argon2 is slow on purpose: read the hash and verify it with no transaction open, so a
    // burst of sign-ins does not hold the pool's connections while hashing.
    const credentials = await this.uow.withoutTransaction((stores) => stores.accounts.findCredentials(input.email));
    let verified = false;
    if (credentials) verified = await this.passwords.verify(credentials.passwordHash, input.password, deadlineMs);
    else await this.passwords.verifyAgainstDummy(input.password, deadlineMs);
    if (!credentials || !verified) throw signInFailed();
    requireTimeForEffect(deadlineMs);
    // The password was checked above on every call, retries included; the idempotency record
    // only makes a retry return the first answer (the same last_login_at).
    const call = { requestId: input.requestId, operation: "Authenticate", parameters: { email: input.email }, ...answerCodec<{ account: Account }>() };
    return this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => ({ account: await stores.accounts.recordLogin(credentials.account.id) })),
    );
  }

  /**
   * Reads an account. Errors: `not_found` for an unknown or malformed id, and for a deleted
   * account (so a deleted user's access token stops working at once: the gateway asks here).
   */
  async getAccount(rawAccountId: string): Promise<Account> {
    const accountId = parseAccountId(rawAccountId);
    const account = await this.uow.withoutTransaction((stores) => stores.accounts.find(accountId));
    if (!account || account.deletedAt !== null) throw accountNotFound(rawAccountId);
    return account;
  }

  /**
   * Deletes a user's account, in one transaction: the account row is locked (INV-9), its
   * remaining credits are written off (each grant's remaining to zero, one WRITE_OFF ledger
   * entry per grant; INV-2 then counts them as written off), its email and password hash are
   * erased and `deleted_at` set, stored idempotent answers that carry them are forgotten (sign-in stops at once: Authenticate finds no credentials,
   * GetAccount answers `not_found`), and an `account.deleted` event goes to the outbox
   * (published once; INV-5). Ledger entries, grants and holds stay, attributed to the
   * anonymous account id (INV-8, INV-11). An account with active holds is refused: its
   * generations are running, and settling them needs the account. Idempotent per `requestId`
   * (INV-4); a new request for an account already deleted answers `deleted: false`, nothing
   * written off, and its first `deletedAt`. Errors: `validation` (request_id), `not_found`
   * (no account with this id, or a guest's), `conflict` while the account has active holds
   * (details `active_holds`), `idempotency_key_reused`.
   */
  async deleteAccount(request: { requestId: string; accountId: string }): Promise<AccountDeletion> {
    const accountId = parseAccountId(request.accountId);
    const call = { requestId: request.requestId, operation: "DeleteAccount", parameters: { accountId }, ...answerCodec<AccountDeletion>() };
    return this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => {
        const locked = await stores.accounts.lockForDeletion(accountId);
        if (!locked || locked.kind !== "user") throw accountNotFound(accountId);
        if (locked.deletedAt !== null) return { deleted: false, writtenOffCredits: 0n, deletedAt: locked.deletedAt };
        const activeHolds = await stores.holds.countActive(accountId);
        if (activeHolds > 0) throw accountBusy(accountId, activeHolds);
        const writtenOffCredits = await this.writeOff(stores, accountId);
        const deletedAt = await stores.accounts.markDeleted(accountId);
        await stores.accounts.forgetStoredAnswers(accountId);
        await stores.accountEvents.appendAccountDeleted({ accountId, occurredAt: deletedAt });
        return { deleted: true, writtenOffCredits, deletedAt };
      }),
    );
  }

  /** Writes off every grant's remaining credits of a locked account, one WRITE_OFF entry per grant (INV-2). Returns the total. */
  private async writeOff(stores: CreditsStores, accountId: string): Promise<bigint> {
    let total = 0n;
    for (const grant of await stores.grants.lockRemaining(accountId)) {
      const amount = grant.remainingAmount;
      await stores.grants.changeRemaining([{ grantId: grant.id, delta: -amount }]);
      const after = await stores.accounts.changeBalances(accountId, { available: -amount, writtenOff: amount });
      await stores.ledger.insert({
        ...NO_LEDGER_CHANGE,
        id: newId(),
        accountId,
        kind: "write_off",
        amount: -amount,
        writtenOffChange: amount,
        grantKind: grant.kind,
        grantId: grant.id,
        reason: ACCOUNT_DELETED_REASON,
        balanceAfter: after.available,
        heldAfter: after.held,
      });
      total += amount;
    }
    return total;
  }

  /**
   * Moves an account to another plan of the catalogue; the new plan's limits apply at once
   * (usage services read the plan from the account) and nothing counted so far is reset.
   * Idempotent per `requestId` (INV-4). Errors: `validation` (unknown plan, details: the known
   * plans; request_id), `not_found`, `idempotency_key_reused`.
   */
  async setPlan(request: SetPlanRequest): Promise<Account> {
    const input = parseSetPlanInput(request, this.rules);
    const call = { requestId: input.requestId, operation: "SetPlan", parameters: { accountId: input.accountId, plan: input.plan }, ...answerCodec<Account>() };
    return this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => {
        const account = await stores.accounts.setPlan(input.accountId, input.plan);
        if (!account) throw accountNotFound(input.accountId);
        return account;
      }),
    );
  }

  /**
   * Re-anchors a user's billing period: `anchor` becomes the account's `current_period_start`
   * (the only change of it after creation). Nothing is reset or moved: the usage service
   * computes the current period from the anchor and the clock on its next check (callers pass
   * the account's anchor), counts the new period's usage from its usage log, and leaves the
   * usage already counted in the period it was counted in. Idempotent per `requestId` (INV-4;
   * the fingerprint holds the anchor to the millisecond). `nowMs` is the clock, in epoch
   * milliseconds. Errors: `validation` (anchor missing, before 1970-01-01T00:00:00Z or after
   * `nowMs`, field `anchor`; a guest's account, field `account_id`; request_id), `not_found`,
   * `idempotency_key_reused`.
   */
  async setBillingAnchor(request: SetBillingAnchorRequest, nowMs = Date.now()): Promise<Account> {
    const input = parseSetBillingAnchorInput(request, nowMs);
    const parameters = { accountId: input.accountId, anchor: input.anchor.toISOString() };
    const call = { requestId: input.requestId, operation: "SetBillingAnchor", parameters, ...answerCodec<Account>() };
    return this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => {
        const account = await stores.accounts.setBillingAnchor(input.accountId, input.anchor);
        if (account) return account;
        // Nothing updated: no account, a deleted one, or a guest's (an account's kind never changes).
        const found = await stores.accounts.find(input.accountId);
        if (found?.kind === "guest") throw guestHasNoBillingAnchor(input.accountId);
        throw accountNotFound(input.accountId);
      }),
    );
  }

  /**
   * Sets the role of the account registered with `email` (e.g. promotes the first admin).
   * Idempotent per `requestId` (INV-4). Errors: `validation` (email, request_id), `not_found`
   * (no account with this email), `idempotency_key_reused`.
   */
  async setRole(request: SetRoleRequest): Promise<Account> {
    const input = parseSetRoleInput(request);
    const call = { requestId: input.requestId, operation: "SetRole", parameters: { email: input.email, role: input.role }, ...answerCodec<Account>() };
    return this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => {
        const account = await stores.accounts.setRoleByEmail(input.email, input.role);
        if (!account) throw noAccountWithEmail();
        return account;
      }),
    );
  }
}
