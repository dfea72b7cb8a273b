import { DomainError } from "./errors";
import { fingerprint } from "./ids";
import { hasControlCharacter } from "./text";

/**
 * DDL of the idempotency store every service keeps in its own database. A migration of each
 * service runs it; rows are the first successful answer to each `request_id`.
 */
export const IDEMPOTENCY_TABLE_SQL = `
CREATE TABLE idempotency_keys (
  request_id text PRIMARY KEY,
  operation text NOT NULL,
  request_fingerprint text NOT NULL,
  response bytea,
  created_at timestamptz NOT NULL DEFAULT now()
)`;

/** Longest accepted `request_id`, in characters. */
export const REQUEST_ID_LENGTH_MAX = 200;

/** What `claim` found: the key is now this transaction's, or an earlier answer's record. */
export type IdempotencyClaim = { claimed: true } | { claimed: false; requestFingerprint: string; response: Uint8Array | null };

/**
 * The idempotency store, bound to the caller's transaction (a port: `SqlIdempotencyStore` in
 * db.ts implements it on `idempotency_keys`).
 */
export interface IdempotencyStore {
  /**
   * Inserts the key row unless it exists. A concurrent claim of the same key waits on the
   * unique index until the first transaction ends, then sees its row (or, after a rollback,
   * claims the key itself).
   */
  claim(requestId: string, operation: string, requestFingerprint: string): Promise<IdempotencyClaim>;
  /** Stores the answer of a claimed key, in the same transaction as the effect. */
  saveResponse(requestId: string, response: Uint8Array): Promise<void>;
}

export interface IdempotentCall<T> {
  requestId: string;
  /** The RPC, e.g. "CreateHold"; part of the fingerprint. */
  operation: string;
  /** The request's parameters without `request_id`; compared on a retry. */
  parameters: unknown;
  encode(response: T): Uint8Array;
  decode(bytes: Uint8Array): T;
}

/**
 * Checks a `request_id`: 1..REQUEST_ID_LENGTH_MAX characters without control characters (a NUL
 * would reach PostgreSQL and fail as a server error). Throws `validation` (field `request_id`).
 */
export function checkRequestId(requestId: string, lengthMax = REQUEST_ID_LENGTH_MAX): void {
  if (!requestId || requestId.length > lengthMax || hasControlCharacter(requestId, "identifier")) {
    throw new DomainError("validation", `request_id is required (1..${lengthMax} characters, no control characters)`, { field: "request_id" });
  }
}

/**
 * Runs `effect` at most once per `request_id`, inside the transaction `store` is bound to
 * (INV-4). The key row is claimed first: a concurrent call with the same key waits until the
 * first commits, then reads the first answer; if the first rolls back (an error), the key is
 * free again. A retry with the same parameters returns the stored answer and moves nothing;
 * different parameters fail with `idempotency_key_reused`. Errors are not stored, so a retry
 * after one re-evaluates. Errors: `validation` for a malformed request_id.
 */
export async function runIdempotent<T>(store: IdempotencyStore, call: IdempotentCall<T>, effect: () => Promise<T>): Promise<T> {
  checkRequestId(call.requestId);
  const requestFingerprint = fingerprint({ operation: call.operation, parameters: call.parameters });
  const claim = await store.claim(call.requestId, call.operation, requestFingerprint);
  if (!claim.claimed) {
    if (claim.requestFingerprint !== requestFingerprint || !claim.response) {
      throw new DomainError("idempotency_key_reused", "this request_id was already used with different parameters", {
        request_id: call.requestId,
      });
    }
    return call.decode(claim.response);
  }
  const response = await effect();
  await store.saveResponse(call.requestId, call.encode(response));
  return response;
}

/**
 * Codec for the first answer to an idempotent mutation, as stored in `idempotency_keys`:
 * JSON that keeps `bigint` (credits) and `Date` values exact, so a retry returns an answer
 * equal to the first one, to the credit and the millisecond.
 */
export const storedAnswerCodec = {
  encode(value: unknown): Uint8Array {
    const json = JSON.stringify(value, function (this: Record<string, unknown>, key: string, current: unknown) {
      // `this[key]` is the value before Date#toJSON ran, so Dates can be told apart from strings.
      const original = this[key];
      if (typeof original === "bigint") return { $bigint: original.toString() };
      if (original instanceof Date) return { $date: original.toISOString() };
      return current;
    });
    return Buffer.from(json, "utf8");
  },
  decode<T>(bytes: Uint8Array): T {
    return JSON.parse(Buffer.from(bytes).toString("utf8"), (_key, value: unknown) => {
      if (value && typeof value === "object" && !Array.isArray(value)) {
        const keys = Object.keys(value);
        if (keys.length === 1 && keys[0] === "$bigint") return BigInt((value as { $bigint: string }).$bigint);
        if (keys.length === 1 && keys[0] === "$date") return new Date((value as { $date: string }).$date);
      }
      return value;
    }) as T;
  },
};

/** A codec for one answer type, in the shape `runIdempotent` takes. */
export const answerCodec = <T>() => ({
  encode: (value: T) => storedAnswerCodec.encode(value),
  decode: (bytes: Uint8Array) => storedAnswerCodec.decode<T>(bytes),
});

/**
 * SQL that deletes the stored answers (`idempotency_keys` rows) of `operations` whose answer
 * mentions a text (parameters: operations as a text[] literal, then the text), for erasure:
 * a stored answer may hold personal data (an account's email, a generation's prompt). A retry
 * of a forgotten key runs anew. Scans the table; erasure is rare.
 */
export const FORGET_ANSWERS_MENTIONING_SQL =
  "DELETE FROM idempotency_keys WHERE operation = ANY(?::text[]) AND response IS NOT NULL AND position(convert_to(?, 'UTF8') in response) > 0";

/** A PostgreSQL text[] literal of plain identifiers (no quoting needed). */
export const textArrayLiteral = (values: readonly string[]): string => `{${values.join(",")}}`;
