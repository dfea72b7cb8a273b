import { answerCodec, newId, runIdempotent } from "@tally/platform";
import { parseCreateGrantInput, type CreateGrantRequest } from "../domain/inputs";
import type { CreditsStores, CreditsUnitOfWork } from "../domain/ports";
import { accountNotFound, NO_LEDGER_CHANGE, type CreditsRules } from "../domain/rules";
import type { Grant, GrantKind, GrantWithBalance } from "../domain/types";
import type { LedgerService } from "./ledger";

/** A grant to add: credits of one kind, expiring at `expiresAt` (null: never). */
export interface GrantToAdd {
  accountId: string;
  kind: GrantKind;
  amount: bigint;
  expiresAt: Date | null;
}

/**
 * Grants: credits given to an account (trial on sign-up, purchased, promotional). Each one
 * credits the account and writes a GRANT ledger entry in the same transaction (INV-2).
 */
export class GrantsService {
  constructor(
    private readonly uow: CreditsUnitOfWork,
    private readonly rules: Pick<CreditsRules, "creditAmountMax">,
    private readonly ledger: LedgerService,
  ) {}

  /**
   * Adds a grant to an account, with a GRANT ledger entry, and answers the grant with the
   * balance after it. `expiresAt` null means it does not expire (expiry only orders
   * consumption for now). Idempotent per `requestId` (INV-4). Errors: `validation` (amount
   * 1..CREDIT_AMOUNT_MAX, expiry in the past, request_id), `not_found`, `idempotency_key_reused`.
   */
  async createGrant(request: CreateGrantRequest): Promise<GrantWithBalance> {
    const input = parseCreateGrantInput(request, this.rules);
    const parameters = { accountId: input.accountId, kind: input.kind, amount: input.amount, expiresAt: input.expiresAt };
    const call = { requestId: input.requestId, operation: "CreateGrant", parameters, ...answerCodec<GrantWithBalance>() };
    return this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, call, async () => {
        // INV-9: the account row is locked before anything of it moves.
        if (!(await stores.accounts.lock(input.accountId))) throw accountNotFound(input.accountId);
        const grant = await this.addGrant(stores, input);
        return { grant, balance: await this.ledger.readBalance(stores, input.accountId) };
      }),
    );
  }

  /**
   * Inserts a grant, credits the account's available balance and writes the GRANT entry with
   * the balances after it, on `stores` (the caller's transaction; account creation reuses it).
   */
  async addGrant(stores: CreditsStores, grant: GrantToAdd): Promise<Grant> {
    const added = await stores.grants.insert({ id: newId(), ...grant });
    const after = await stores.accounts.changeBalances(grant.accountId, { available: grant.amount });
    await stores.ledger.insert({
      ...NO_LEDGER_CHANGE,
      id: newId(),
      accountId: grant.accountId,
      kind: "grant",
      amount: grant.amount,
      grantKind: grant.kind,
      grantId: added.id,
      balanceAfter: after.available,
      heldAfter: after.held,
    });
    return added;
  }
}
