/**
 * Hold operations in ONE statement: `credits_hold_operations` (migration
 * Migration20261206000001) applies any number of CreateHold, CaptureHold, ReleaseHold and
 * ExtendHold members given as parallel arrays, sent as bind parameters of a named prepared
 * statement (parsed and planned once per connection). Run outside a transaction it is one
 * transaction: one round trip and one commit for the whole batch.
 */
import { isUniqueViolation, toBigInt, type Sql } from "@tally/platform";
import type { HoldBatchContext, HoldOperation, HoldOperationStore, HoldOutcome } from "../domain/ports";
import { generationConflict } from "../domain/rules";
import type { Hold } from "../domain/types";
import { toHold, type HoldRow } from "./hold-store";

/** Columns of `credits_hold_outcome`, as pg returns them (int8 as decimal strings): the hold's columns (its id as `hold_id`) and the rest. */
interface OutcomeRow extends Omit<HoldRow, "id"> {
  member: number;
  outcome: string;
  legacy_answer: Buffer | null;
  error_requested: string | null;
  error_available: string | null;
  error_status: string | null;
  error_held: string | null;
  hold_id: string | null;
  trial_credits: string;
  token_credits: string;
  held_credits: string;
  extended: boolean | null;
  stored_available: string;
  stored_total: string;
  granted: string;
  last_balance_after: string | null;
  last_held_after: string | null;
}

const HOLD_OPERATIONS_STATEMENT = {
  name: "credits_hold_operations",
  text: `SELECT * FROM credits_hold_operations($1::text[], $2::text[], $3::text[], $4::uuid[], $5::uuid[], $6::text[],
           $7::bigint[], $8::bigint[], $9::text[], $10::timestamptz, $11::text, $12::text)`,
};

/** The unique index that gives a generation one hold at most (INV-3): two holds of one generation racing. */
const HOLDS_GENERATION_ID_KEY = "holds_generation_id_key";

const nullableBigInt = (value: string | null): bigint | null => (value === null ? null : toBigInt(value));

const holdOf = (row: OutcomeRow): Hold => toHold({ ...row, id: row.hold_id! });

function toAnswer(row: OutcomeRow) {
  const [trialCredits, tokenCredits] = [toBigInt(row.trial_credits), toBigInt(row.token_credits)];
  const balance = { trialCredits, tokenCredits, heldCredits: toBigInt(row.held_credits), availableCredits: trialCredits + tokenCredits };
  return { hold: holdOf(row), balance, extended: row.extended === true };
}

function toOutcome(row: OutcomeRow): HoldOutcome {
  switch (row.outcome) {
    case "ok":
      return {
        outcome: "ok",
        answer: toAnswer(row),
        snapshot: {
          storedAvailable: toBigInt(row.stored_available),
          storedTotal: toBigInt(row.stored_total),
          granted: toBigInt(row.granted),
          lastBalanceAfter: nullableBigInt(row.last_balance_after),
          lastHeldAfter: nullableBigInt(row.last_held_after),
        },
      };
    case "replayed":
      return row.hold_id === null
        ? { outcome: "replayed", answer: null, legacyAnswer: row.legacy_answer ? new Uint8Array(row.legacy_answer) : null }
        : { outcome: "replayed", answer: toAnswer(row), legacyAnswer: null };
    case "insufficient_credits":
      return { outcome: "insufficient_credits", requested: toBigInt(row.error_requested), available: toBigInt(row.error_available) };
    case "hold_not_active":
      return { outcome: "hold_not_active", holdId: row.hold_id!, status: row.error_status ?? "" };
    case "validation":
      return { outcome: "validation", held: toBigInt(row.error_held), requested: toBigInt(row.error_requested) };
    case "not_found":
    case "conflict":
    case "idempotency_key_reused":
      return { outcome: row.outcome };
    default:
      throw new Error(`credits_hold_operations answered an unknown outcome ${row.outcome}`);
  }
}

/** `operations` as the function's parallel arrays (a member leaves the fields of other operations null). */
function toArrays(operations: readonly HoldOperation[]) {
  const pick = <T>(f: (op: HoldOperation) => T | undefined) => operations.map((op) => f(op) ?? null);
  return [
    pick((op) => op.operation),
    pick((op) => op.requestId),
    pick((op) => op.fingerprint),
    pick((op) => (op.operation === "CreateHold" ? op.accountId : undefined)),
    pick((op) => (op.operation === "CreateHold" ? undefined : op.holdId)),
    pick((op) => (op.operation === "CreateHold" ? op.generationId : undefined)),
    pick((op) => (op.operation === "CreateHold" || op.operation === "CaptureHold" ? op.amount : undefined)),
    pick((op) => (op.operation === "CreateHold" || op.operation === "ExtendHold" ? BigInt(op.ttlMs) : undefined)),
    pick((op) => (op.operation === "ReleaseHold" ? op.reason : undefined)),
  ];
}

export class SqlHoldOperationStore implements HoldOperationStore {
  constructor(private readonly sql: Sql) {}

  async apply(operations: readonly HoldOperation[], context: HoldBatchContext): Promise<HoldOutcome[]> {
    if (operations.length === 0) return [];
    const rows = await this.sql
      .bound<OutcomeRow>(HOLD_OPERATIONS_STATEMENT, [...toArrays(operations), context.now, context.captureRestReason, context.grantExpiredReason])
      .catch((error: unknown) => {
        // Two holds of one generation racing past the check on different accounts: the unique
        // index decides. Alone, the member is that conflict; in a batch, the caller retries
        // each member on its own.
        const only = operations.length === 1 ? operations[0] : undefined;
        if (only?.operation === "CreateHold" && isUniqueViolation(error, HOLDS_GENERATION_ID_KEY)) throw generationConflict(only.generationId);
        throw error;
      });
    const outcomes: HoldOutcome[] = new Array(operations.length);
    for (const row of rows) outcomes[row.member - 1] = toOutcome(row);
    return outcomes;
  }
}
