import type { EntityManager } from "@mikro-orm/postgresql";
import { DomainError } from "./errors";
import { fingerprint } from "./ids";

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
 * Runs `effect` at most once per `request_id`, inside the caller's transaction `em`
 * (DESIGN.md invariant 4). The key row is inserted first: a concurrent call with the same key
 * waits on its unique index until the first commits, then reads the first answer; if the
 * first rolls back (an error), the key is free again. A retry with the same parameters
 * returns the stored answer and moves nothing; different parameters fail with
 * `idempotency_key_reused`. Errors are not stored, so a retry after one re-evaluates.
 */
export async function runIdempotent<T>(em: EntityManager, call: IdempotentCall<T>, effect: () => Promise<T>): Promise<T> {
  // A control character (NUL above all) would reach PostgreSQL and fail as a server error.
  if (!call.requestId || call.requestId.length > REQUEST_ID_LENGTH_MAX || /[\u0000-\u001f\u007f]/.test(call.requestId)) {
    throw new DomainError("validation", `request_id is required (1..${REQUEST_ID_LENGTH_MAX} characters, no control characters)`, { field: "request_id" });
  }
  const requestFingerprint = fingerprint({ operation: call.operation, parameters: call.parameters });
  const inserted = await em.execute<{ request_id: string }[]>(
    `INSERT INTO idempotency_keys (request_id, operation, request_fingerprint) VALUES (?, ?, ?)
     ON CONFLICT (request_id) DO NOTHING RETURNING request_id`,
    [call.requestId, call.operation, requestFingerprint],
  );
  if (inserted.length === 0) {
    const [existing] = await em.execute<{ request_fingerprint: string; response: Buffer | null }[]>(
      "SELECT request_fingerprint, response FROM idempotency_keys WHERE request_id = ?",
      [call.requestId],
    );
    if (!existing || existing.request_fingerprint !== requestFingerprint || !existing.response) {
      throw new DomainError("idempotency_key_reused", "this request_id was already used with different parameters", {
        request_id: call.requestId,
      });
    }
    return call.decode(new Uint8Array(existing.response));
  }
  const response = await effect();
  await em.execute("UPDATE idempotency_keys SET response = ? WHERE request_id = ?", [
    Buffer.from(call.encode(response)),
    call.requestId,
  ]);
  return response;
}
