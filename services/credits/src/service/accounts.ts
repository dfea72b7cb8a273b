import { answerCodec, newId, runIdempotent } from "@tally/platform";
import {
  parseAccountId,
  parseAuthenticateInput,
  parseCreateAccountInput,
  type AuthenticateRequest,
  type CreateAccountInput,
  type CreateAccountRequest,
} from "../domain/inputs";
import type { CreditsUnitOfWork } from "../domain/ports";
import { accountNotFound, emailConflict, requestIdReused, signInFailed, type CreditsRules } from "../domain/rules";
import type { Account, AccountWithBalance } from "../domain/types";
import type { GrantsService } from "./grants";
import type { LedgerService } from "./ledger";
import type { PasswordHasher } from "./passwords";

/**
 * Accounts and sign-in. Passwords are hashed with argon2id and verified with no transaction
 * (or pooled connection) held; an account starts with its plan's trial grant.
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
   * entry) in one transaction, and answers it with its balance. `plan` empty means the default
   * plan. Idempotent per `requestId` (INV-4); a replay is answered only to the same password.
   * Errors: `validation` (email, password 8..256 characters without NUL, unknown plan,
   * request_id); `conflict` when the email is taken; `idempotency_key_reused` (other
   * parameters, or a replay whose password does not match the account's).
   */
  async createAccount(request: CreateAccountRequest): Promise<AccountWithBalance> {
    const input = parseCreateAccountInput(request, this.rules);
    // Hashing is slow on purpose: do it before taking a connection. The password is left out
    // of the idempotency fingerprint so that no unsalted digest of it is ever stored; a replay
    // is checked against the stored account's hash instead (below).
    const passwordHash = await this.passwords.hash(input.password);
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
    const { requestId, email, plan, role } = input;
    const call = { requestId, operation: "CreateAccount", parameters: { email, plan, role }, ...answerCodec<AccountWithBalance>() };
    let created = false;
    const answer = await this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => {
        created = true;
        if (await stores.accounts.emailTaken(email)) throw emailConflict();
        const account = await stores.accounts.insert({ id: newId(), email, passwordHash, plan, role });
        if (input.trialCredits > 0n) {
          await this.grants.addGrant(stores, { accountId: account.id, kind: "trial", amount: input.trialCredits, expiresAt: null });
        }
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
   * `last_login_at`). Errors: `validation` (empty email or password, request_id),
   * `unauthenticated`, `idempotency_key_reused`.
   */
  async authenticate(request: AuthenticateRequest): Promise<{ account: Account }> {
    const input = parseAuthenticateInput(request);
    // argon2 is slow on purpose: read the hash and verify it with no transaction open, so a
    // burst of sign-ins does not hold the pool's connections while hashing.
    const credentials = await this.uow.withoutTransaction((stores) => stores.accounts.findCredentials(input.email));
    let verified = false;
    if (credentials) verified = await this.passwords.verify(credentials.passwordHash, input.password);
    else await this.passwords.verifyAgainstDummy(input.password);
    if (!credentials || !verified) throw signInFailed();
    // The password was checked above on every call, retries included; the idempotency record
    // only makes a retry return the first answer (the same last_login_at).
    const call = { requestId: input.requestId, operation: "Authenticate", parameters: { email: input.email }, ...answerCodec<{ account: Account }>() };
    return this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => ({ account: await stores.accounts.recordLogin(credentials.account.id) })),
    );
  }

  /** Reads an account. Errors: `not_found` for an unknown or malformed id. */
  async getAccount(rawAccountId: string): Promise<Account> {
    const accountId = parseAccountId(rawAccountId);
    const account = await this.uow.withoutTransaction((stores) => stores.accounts.find(accountId));
    if (!account) throw accountNotFound(rawAccountId);
    return account;
  }
}
