import assert from "node:assert";
import { callUnary, createGrpcClient } from "@tally/platform";
import { credits } from "@tally/contracts";
import type { AccountView, CreditsPort, HoldView } from "../domain/ports";
import { CreditsCallBatcher, type CreditsCallCounts } from "./credits-batcher";

type CreateRequest = { requestId: string; accountId: string; generationId: string; amount: bigint; ttlMs: number };
type CaptureRequest = { requestId: string; holdId: string; amount?: bigint };
type ReleaseRequest = { requestId: string; holdId: string; reason: string };

/** How calls to credits are batched (CREDITS_BATCH_MAX_OPERATIONS, CREDITS_BATCH_WINDOW_MS). */
export interface CreditsBatching {
  /** Most members of one batch call; 1: every call unary. */
  maxOperations: number;
  /** Extra wait (0 or 1 ms) after a call in flight returns before the calls queued behind it go. */
  windowMs: number;
}

/** What was sent to credits for each batched kind of call (the `/metrics` gauges read it). */
export type CreditsClientCounts = Record<"create_hold" | "capture_hold" | "release_hold", CreditsCallCounts>;

/**
 * CreditsPort over the credits service's gRPC contract. Every call carries a deadline
 * (`DOWNSTREAM_TIMEOUT_MS`) and rejects with the callee's DomainError reason
 * (`insufficient_credits`, `hold_not_active`, `not_found`, `unavailable`, ...).
 *
 * CreateHold, CaptureHold and ReleaseHold are batched adaptively (CreditsCallBatcher): a call
 * with none of its kind in flight goes at once as the unary call; calls made while one is in
 * flight go together as one BatchCreateHolds / BatchCaptureHolds / BatchReleaseHolds call when
 * it returns, each caller still answered its own hold or error.
 */
export class GrpcCreditsClient implements CreditsPort {
  private readonly client: credits.CreditsServiceClient;
  private readonly creates: CreditsCallBatcher<CreateRequest>;
  private readonly captures: CreditsCallBatcher<CaptureRequest>;
  private readonly releases: CreditsCallBatcher<ReleaseRequest>;

  /** `batching` defaults to batches of up to 64 members and no extra window. */
  constructor(
    address: string,
    private readonly timeoutMs: number,
    batching: CreditsBatching = { maxOperations: 64, windowMs: 0 },
  ) {
    this.client = createGrpcClient(credits.CreditsServiceClient, address);
    const c = this.client;
    const options = { ...batching, timeoutMs };
    const toCreate = (r: CreateRequest) => ({ requestId: r.requestId, accountId: r.accountId, generationId: r.generationId, amount: r.amount, ttlMs: BigInt(r.ttlMs) });
    this.creates = new CreditsCallBatcher<CreateRequest>({
      one: async (r, ms) => (await callUnary(c.createHold.bind(c), toCreate(r), { timeoutMs: ms })).hold,
      many: async (rs, ms) => (await callUnary(c.batchCreateHolds.bind(c), { requests: rs.map(toCreate) }, { timeoutMs: ms })).results,
    }, options);
    this.captures = new CreditsCallBatcher<CaptureRequest>({
      one: async (r, ms) => (await callUnary(c.captureHold.bind(c), r, { timeoutMs: ms })).hold,
      many: async (rs, ms) => (await callUnary(c.batchCaptureHolds.bind(c), { requests: rs }, { timeoutMs: ms })).results,
    }, options);
    this.releases = new CreditsCallBatcher<ReleaseRequest>({
      one: async (r, ms) => (await callUnary(c.releaseHold.bind(c), r, { timeoutMs: ms })).hold,
      many: async (rs, ms) => (await callUnary(c.batchReleaseHolds.bind(c), { requests: rs }, { timeoutMs: ms })).results,
    }, options);
  }

  /** Operations made and unary / batch calls sent, per kind of hold call (counts only grow). */
  get counts(): CreditsClientCounts {
    return { create_hold: { ...this.creates.counts }, capture_hold: { ...this.captures.counts }, release_hold: { ...this.releases.counts } };
  }

  /** GetAccount: kind (ACCOUNT_KIND_UNSPECIFIED, from a credits that predates kinds, is a user), plan, billing anchor. */
  async getAccount(accountId: string): Promise<AccountView> {
    const response = await callUnary(this.client.getAccount.bind(this.client), { accountId }, { timeoutMs: this.timeoutMs });
    const account = response.account;
    assert.ok(account, "credits answers GetAccount with the account");
    assert.ok(account.currentPeriodStart, "credits answers every account with its billing anchor (current_period_start)");
    return {
      id: account.id,
      kind: account.kind === credits.AccountKind.ACCOUNT_KIND_GUEST ? "guest" : "user",
      plan: account.plan,
      periodAnchor: account.currentPeriodStart,
    };
  }

  /** CreateHold (batched): the new hold; rejects `insufficient_credits` (details requested/available), `not_found`, ... */
  async createHold(request: CreateRequest): Promise<HoldView> {
    return toHoldView(await this.creates.submit({ requestId: request.requestId, accountId: request.accountId, generationId: request.generationId, amount: request.amount, ttlMs: request.ttlMs }));
  }

  /** CaptureHold (batched): the ended hold; rejects `hold_not_active`, `not_found`, `validation`. */
  async captureHold(request: CaptureRequest): Promise<HoldView> {
    return toHoldView(await this.captures.submit({ requestId: request.requestId, holdId: request.holdId, amount: request.amount }));
  }

  /** ReleaseHold (batched): the ended hold; rejects `hold_not_active`, `not_found`. */
  async releaseHold(request: ReleaseRequest): Promise<HoldView> {
    return toHoldView(await this.releases.submit({ requestId: request.requestId, holdId: request.holdId, reason: request.reason }));
  }

  async extendHold(request: { requestId: string; holdId: string; ttlMs: number }): Promise<HoldView> {
    const response = await callUnary(
      this.client.extendHold.bind(this.client),
      { requestId: request.requestId, holdId: request.holdId, ttlMs: BigInt(request.ttlMs) },
      { timeoutMs: this.timeoutMs },
    );
    return toHoldView(response.hold);
  }

  close(): void {
    this.client.close();
  }
}

function toHoldView(hold: credits.Hold | undefined): HoldView {
  assert.ok(hold, "INV-3: credits answers every hold call with the hold");
  return {
    id: hold.id,
    amount: hold.amount,
    trialAmount: hold.trialAmount,
    tokenAmount: hold.tokenAmount,
    capturedAmount: hold.capturedAmount,
    expiresAt: hold.expiresAt ?? new Date(0),
  };
}
