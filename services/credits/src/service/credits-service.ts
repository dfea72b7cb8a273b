import { parseAccountId } from "../domain/inputs";
import type { CreditsUnitOfWork } from "../domain/ports";
import type { CreditsRules } from "../domain/rules";
import { AccountsService } from "./accounts";
import { GrantsService } from "./grants";
import { GuestsService } from "./guests";
import { HoldsService } from "./holds";
import { LedgerService } from "./ledger";
import type { PasswordHasher } from "./passwords";

/**
 * The credits service as the gRPC layer and in-process tools see it (proto
 * `tally.credits.v1.CreditsService`): one object composing the aggregates, each rule in
 * exactly one of them (accounts.ts, guests.ts, grants.ts, holds.ts, ledger.ts). It adds no rule of its own.
 */
export class CreditsService {
  readonly ledger: LedgerService;
  readonly grants: GrantsService;
  readonly accounts: AccountsService;
  readonly holds: HoldsService;
  readonly guests: GuestsService;

  /** `now` is the clock grant expiry is decided by (the system clock unless a test injects one). */
  constructor(uow: CreditsUnitOfWork, rules: CreditsRules, passwords: PasswordHasher, now: () => Date = () => new Date()) {
    this.ledger = new LedgerService(uow, rules.reconcileBatchAccounts);
    this.grants = new GrantsService(uow, rules, this.ledger, now);
    this.accounts = new AccountsService(uow, rules, passwords, this.grants, this.ledger);
    this.holds = new HoldsService(uow, rules, this.grants, now);
    this.guests = new GuestsService(uow, rules, this.grants, this.ledger);
  }

  /** See AccountsService.createAccount. */
  readonly createAccount: AccountsService["createAccount"] = (request, deadlineMs) => this.accounts.createAccount(request, deadlineMs);
  /** See AccountsService.authenticate. */
  readonly authenticate: AccountsService["authenticate"] = (request, deadlineMs) => this.accounts.authenticate(request, deadlineMs);
  /** See AccountsService.setPlan. */
  readonly setPlan: AccountsService["setPlan"] = (request) => this.accounts.setPlan(request);
  /** See AccountsService.setBillingAnchor. */
  readonly setBillingAnchor: AccountsService["setBillingAnchor"] = (request, nowMs) => this.accounts.setBillingAnchor(request, nowMs);
  /** See AccountsService.deleteAccount. */
  readonly deleteAccount: AccountsService["deleteAccount"] = (request) => this.accounts.deleteAccount(request);
  /** See AccountsService.setRole. */
  readonly setRole: AccountsService["setRole"] = (request) => this.accounts.setRole(request);
  /** See GuestsService.ensureGuestAccount. */
  readonly ensureGuestAccount: GuestsService["ensureGuestAccount"] = (guestId) => this.guests.ensureGuestAccount(guestId);
  /** See AccountsService.getAccount. */
  readonly getAccount: AccountsService["getAccount"] = (accountId) => this.accounts.getAccount(accountId);
  /** See LedgerService.getBalance; first writes off the account's expired grants, if any (GrantsService.expireIfDue), so a balance never shows expired credits. */
  readonly getBalance: LedgerService["getBalance"] = async (accountId) => {
    await this.grants.expireIfDue(parseAccountId(accountId));
    return this.ledger.getBalance(accountId);
  };
  /** See LedgerService.getBalanceAt. */
  readonly getBalanceAt: LedgerService["getBalanceAt"] = (accountId, at, nowMs) => this.ledger.getBalanceAt(accountId, at, nowMs);
  /** See LedgerService.listLedgerEntries. */
  readonly listLedgerEntries: LedgerService["listLedgerEntries"] = (request) => this.ledger.listLedgerEntries(request);
  /** See LedgerService.reconcile. */
  readonly reconcile: LedgerService["reconcile"] = () => this.ledger.reconcile();
  /** See GrantsService.createGrant. */
  readonly createGrant: GrantsService["createGrant"] = (request) => this.grants.createGrant(request);
  /** See HoldsService.extendHold. */
  readonly extendHold: HoldsService["extendHold"] = (request) => this.holds.extendHold(request);
  /** See GrantsService.voidGrant. */
  readonly voidGrant: GrantsService["voidGrant"] = (request) => this.grants.voidGrant(request);
  /** See HoldsService.createHold. */
  readonly createHold: HoldsService["createHold"] = (request) => this.holds.createHold(request);
  /** See HoldsService.captureHold. */
  readonly captureHold: HoldsService["captureHold"] = (request) => this.holds.captureHold(request);
  /** See HoldsService.releaseHold. */
  readonly releaseHold: HoldsService["releaseHold"] = (request) => this.holds.releaseHold(request);
  /** See HoldsService.createHolds (BatchCreateHolds). */
  readonly createHolds: HoldsService["createHolds"] = (requests) => this.holds.createHolds(requests);
  /** See HoldsService.captureHolds (BatchCaptureHolds). */
  readonly captureHolds: HoldsService["captureHolds"] = (requests) => this.holds.captureHolds(requests);
  /** See HoldsService.releaseHolds (BatchReleaseHolds). */
  readonly releaseHolds: HoldsService["releaseHolds"] = (requests) => this.holds.releaseHolds(requests);
  /** See HoldsService.expireDueHolds. */
  readonly expireDueHolds: HoldsService["expireDueHolds"] = (batchSize) => this.holds.expireDueHolds(batchSize);
}
