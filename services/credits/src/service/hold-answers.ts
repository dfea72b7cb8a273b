import assert from "node:assert/strict";
import { DomainError, storedAnswerCodec } from "@tally/platform";
import type { HoldOperation, HoldOutcome, HoldOutcomeSnapshot } from "../domain/ports";
import { accountNotFound, generationConflict, holdNotFound } from "../domain/rules";
import type { HoldWithBalance } from "../domain/types";

type HoldAnswer = HoldWithBalance & { extended: boolean };

/**
 * The answer of a hold operation from what the database answered, or the DomainError the
 * operation has always thrown for it (the gRPC and REST error tables do not change):
 * `insufficient_credits` (requested, available), `not_found` (account or hold), `conflict`
 * (the generation has a hold), `hold_not_active` (hold_id, status), `validation` (capture
 * amount over the held one: field, held, requested), `idempotency_key_reused` (request_id).
 * A fresh answer's balances are asserted against INV-2 first.
 */
export function answerOf(operation: HoldOperation, outcome: HoldOutcome): HoldAnswer {
  switch (outcome.outcome) {
    case "ok":
      assertBalances(outcome.answer, outcome.snapshot);
      return outcome.answer;
    case "replayed":
      if (outcome.answer) return outcome.answer;
      // Stored whole (JSON) by an earlier version of the service.
      assert.ok(outcome.legacyAnswer, "INV-4: a replayed key has a stored answer");
      return { extended: false, ...storedAnswerCodec.decode<HoldWithBalance & { extended?: boolean }>(outcome.legacyAnswer) };
    case "insufficient_credits":
      throw new DomainError("insufficient_credits", "not enough credits available for this hold", {
        requested: outcome.requested,
        available: outcome.available,
      });
    case "not_found":
      throw operation.operation === "CreateHold" ? accountNotFound(operation.accountId) : holdNotFound(operation.holdId);
    case "conflict":
      assert.equal(operation.operation, "CreateHold", "only a new hold can conflict with a generation's hold");
      throw generationConflict(operation.operation === "CreateHold" ? operation.generationId : "");
    case "hold_not_active":
      throw new DomainError("hold_not_active", `the hold is already ${outcome.status}`, { hold_id: outcome.holdId, status: outcome.status });
    case "validation":
      throw new DomainError("validation", "amount must not exceed the held amount", { field: "amount", held: outcome.held, requested: outcome.requested });
    case "idempotency_key_reused":
      throw new DomainError("idempotency_key_reused", "this request_id was already used with different parameters", { request_id: operation.requestId });
  }
}

/** The answer without ExtendHold's `extended` flag (CreateHold, CaptureHold and ReleaseHold answer a hold and a balance). */
export function withoutExtended({ extended: _extended, ...answer }: HoldAnswer): HoldWithBalance {
  return answer;
}

/** INV-2 on the balances one member's statement read (as LedgerService.readBalance asserts them). */
function assertBalances(answer: HoldAnswer, snapshot: HoldOutcomeSnapshot): void {
  const { balance, hold } = answer;
  assert.equal(balance.availableCredits, snapshot.storedAvailable, `INV-2: account ${hold.accountId}: available credits equal the grants' remaining credits`);
  assert.equal(snapshot.granted, snapshot.storedTotal, `INV-2: account ${hold.accountId}: everything granted is available, held, captured, expired or written off`);
  assert.deepEqual(
    { available: snapshot.lastBalanceAfter, held: snapshot.lastHeldAfter },
    { available: snapshot.storedAvailable, held: balance.heldCredits },
    `INV-2: the ledger's last entry records the stored balances (account ${hold.accountId})`,
  );
}
