import assert from "node:assert";
import { callUnary, createGrpcClient } from "@tally/platform";
import { credits } from "@tally/contracts";
import type { AccountView, CreditsPort, HoldView } from "../domain/ports";
import { SettlementCoalescer } from "./credits-coalescer";

type CaptureRequest = { requestId: string; holdId: string; amount?: bigint };
type ReleaseRequest = { requestId: string; holdId: string; reason: string };

/**
 * CreditsPort over the credits service's gRPC contract. Every call carries a deadline
 * (`DOWNSTREAM_TIMEOUT_MS`) and rejects with the callee's DomainError reason
 * (`insufficient_credits`, `hold_not_active`, `not_found`, `unavailable`, ...).
 */
export class GrpcCreditsClient implements CreditsPort {
  private readonly client: credits.CreditsServiceClient;
  private readonly captures?: SettlementCoalescer<CaptureRequest>;
  private readonly releases?: SettlementCoalescer<ReleaseRequest>;

  /**
   * `settleCoalesceWindowMs` (CREDITS_SETTLE_COALESCE_WINDOW_MS, 0: off): captures and releases
   * made within this many milliseconds go as one BatchCaptureHolds / BatchReleaseHolds call.
   */
  constructor(
    address: string,
    private readonly timeoutMs: number,
    settleCoalesceWindowMs = 0,
  ) {
    this.client = createGrpcClient(credits.CreditsServiceClient, address);
    if (settleCoalesceWindowMs > 0) {
      const options = { timeoutMs: this.timeoutMs };
      this.captures = new SettlementCoalescer(async (requests) => {
        return (await callUnary(this.client.batchCaptureHolds.bind(this.client), { requests }, options)).results;
      }, settleCoalesceWindowMs);
      this.releases = new SettlementCoalescer(async (requests) => {
        return (await callUnary(this.client.batchReleaseHolds.bind(this.client), { requests }, options)).results;
      }, settleCoalesceWindowMs);
    }
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

  async createHold(request: { requestId: string; accountId: string; generationId: string; amount: bigint; ttlMs: number }): Promise<HoldView> {
    const response = await callUnary(
      this.client.createHold.bind(this.client),
      { requestId: request.requestId, accountId: request.accountId, generationId: request.generationId, amount: request.amount, ttlMs: BigInt(request.ttlMs) },
      { timeoutMs: this.timeoutMs },
    );
    return toHoldView(response.hold);
  }

  async captureHold(request: CaptureRequest): Promise<HoldView> {
    if (this.captures) return toHoldView(await this.captures.submit({ requestId: request.requestId, holdId: request.holdId, amount: request.amount }));
    const response = await callUnary(
      this.client.captureHold.bind(this.client),
      { requestId: request.requestId, holdId: request.holdId, amount: request.amount },
      { timeoutMs: this.timeoutMs },
    );
    return toHoldView(response.hold);
  }

  async releaseHold(request: ReleaseRequest): Promise<HoldView> {
    if (this.releases) return toHoldView(await this.releases.submit({ requestId: request.requestId, holdId: request.holdId, reason: request.reason }));
    const response = await callUnary(
      this.client.releaseHold.bind(this.client),
      { requestId: request.requestId, holdId: request.holdId, reason: request.reason },
      { timeoutMs: this.timeoutMs },
    );
    return toHoldView(response.hold);
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
