import assert from "node:assert";
import { callUnary, createGrpcClient } from "@tally/platform";
import { credits } from "@tally/contracts";
import type { CreditsPort, HoldView } from "../domain/ports";

/**
 * CreditsPort over the credits service's gRPC contract. Every call carries a deadline
 * (`DOWNSTREAM_TIMEOUT_MS`) and rejects with the callee's DomainError reason
 * (`insufficient_credits`, `hold_not_active`, `unavailable`, ...).
 */
export class GrpcCreditsClient implements CreditsPort {
  private readonly client: credits.CreditsServiceClient;

  constructor(
    address: string,
    private readonly timeoutMs: number,
  ) {
    this.client = createGrpcClient(credits.CreditsServiceClient, address);
  }

  async createHold(request: { requestId: string; accountId: string; generationId: string; amount: bigint; ttlMs: number }): Promise<HoldView> {
    const response = await callUnary(
      this.client.createHold.bind(this.client),
      { requestId: request.requestId, accountId: request.accountId, generationId: request.generationId, amount: request.amount, ttlMs: BigInt(request.ttlMs) },
      { timeoutMs: this.timeoutMs },
    );
    return toHoldView(response.hold);
  }

  async captureHold(request: { requestId: string; holdId: string }): Promise<HoldView> {
    const response = await callUnary(
      this.client.captureHold.bind(this.client),
      { requestId: request.requestId, holdId: request.holdId },
      { timeoutMs: this.timeoutMs },
    );
    return toHoldView(response.hold);
  }

  async releaseHold(request: { requestId: string; holdId: string; reason: string }): Promise<HoldView> {
    const response = await callUnary(
      this.client.releaseHold.bind(this.client),
      { requestId: request.requestId, holdId: request.holdId, reason: request.reason },
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
  };
}
