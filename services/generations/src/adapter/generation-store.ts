import assert from "node:assert";
import type { EntityManager } from "@mikro-orm/postgresql";
import { optionalDate, toBigInt } from "@tally/platform";
import type {
  CreditTypeName,
  GenerationRecord,
  GenerationStatusName,
  InputTypeName,
  Settlement,
} from "../domain/generation";

/**
 * SQL over the `generations` and `generation_outputs` tables. Every function takes the
 * caller's EntityManager (a fork, usually inside a transaction) and speaks GenerationRecord;
 * rows never leave this module. Times that decide leases come from the database clock, so
 * replicas with skewed clocks agree.
 */

interface GenerationRow {
  id: string;
  user_id: string;
  status: GenerationStatusName;
  input_type: InputTypeName;
  prompt: string;
  photo_url: string;
  address: string;
  style: string;
  credit_cost: string;
  credit_type: CreditTypeName;
  hold_id: string;
  progress_percent: number;
  provider: string;
  output_content_type: string;
  error_message: string;
  error_code: string;
  cost_micros: string;
  processing_time_ms: string;
  settlement: Settlement | null;
  settled_at: Date | string | null;
  lease_token: string | null;
  traceparent: string | null;
  created_at: Date | string;
  started_at: Date | string | null;
  completed_at: Date | string | null;
}

const COLUMNS = `id, user_id, status, input_type, prompt, photo_url, address, style, credit_cost, credit_type, hold_id,
  progress_percent, provider, output_content_type, error_message, error_code, cost_micros, processing_time_ms,
  settlement, settled_at, lease_token, traceparent, created_at, started_at, completed_at`;

function toRecord(row: GenerationRow): GenerationRecord {
  return {
    id: row.id,
    userId: row.user_id,
    status: row.status,
    inputType: row.input_type,
    prompt: row.prompt,
    photoUrl: row.photo_url,
    address: row.address,
    style: row.style,
    creditCost: toBigInt(row.credit_cost),
    creditType: row.credit_type,
    holdId: row.hold_id,
    progressPercent: row.progress_percent,
    provider: row.provider,
    outputContentType: row.output_content_type,
    errorMessage: row.error_message,
    errorCode: row.error_code,
    costMicros: toBigInt(row.cost_micros),
    processingTimeMs: toBigInt(row.processing_time_ms),
    settlement: row.settlement,
    createdAt: optionalDate(row.created_at)!,
    startedAt: optionalDate(row.started_at) ?? null,
    completedAt: optionalDate(row.completed_at) ?? null,
  };
}

export interface NewGeneration {
  id: string;
  userId: string;
  inputType: InputTypeName;
  prompt: string;
  photoUrl: string;
  address: string;
  style: string;
  creditCost: bigint;
  creditType: CreditTypeName;
  holdId: string;
  traceparent: string | null;
}

/** Inserts a `pending` generation and returns it. */
export async function insertGeneration(em: EntityManager, g: NewGeneration): Promise<GenerationRecord> {
  const [row] = await em.execute<GenerationRow[]>(
    `INSERT INTO generations (id, user_id, status, input_type, prompt, photo_url, address, style, credit_cost, credit_type, hold_id, traceparent)
     VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ${COLUMNS}`,
    [g.id, g.userId, g.inputType, g.prompt, g.photoUrl, g.address, g.style, g.creditCost.toString(), g.creditType, g.holdId, g.traceparent],
  );
  assert(row, "INSERT ... RETURNING returns the row");
  return toRecord(row);
}

/** The generation `id` of `userId`, or null (also for another user's generation). */
export async function findGenerationOfUser(em: EntityManager, userId: string, id: string): Promise<GenerationRecord | null> {
  const [row] = await em.execute<GenerationRow[]>(`SELECT ${COLUMNS} FROM generations WHERE id = ? AND user_id = ?`, [id, userId]);
  return row ? toRecord(row) : null;
}

/** A generation by id, or null. */
export async function findGeneration(em: EntityManager, id: string): Promise<GenerationRecord | null> {
  const [row] = await em.execute<GenerationRow[]>(`SELECT ${COLUMNS} FROM generations WHERE id = ?`, [id]);
  return row ? toRecord(row) : null;
}

/** One page of the user's generations, newest first, and how many they have in all. */
export async function listGenerationsOfUser(
  em: EntityManager,
  userId: string,
  limit: number,
  offset: number,
): Promise<{ generations: GenerationRecord[]; totalSize: number }> {
  const rows = await em.execute<GenerationRow[]>(
    `SELECT ${COLUMNS} FROM generations WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`,
    [userId, limit, offset],
  );
  const [count] = await em.execute<{ total: string }[]>("SELECT count(*) AS total FROM generations WHERE user_id = ?", [userId]);
  return { generations: rows.map(toRecord), totalSize: Number(count?.total ?? 0) };
}

/**
 * Cancels a pending or processing generation whose ending has not started (no settlement):
 * status `cancelled`, settlement `release`. The lease is set so the worker's sweep redoes the
 * release only if the caller dies before doing it. Returns null when no such row exists.
 */
export async function cancelGeneration(em: EntityManager, userId: string, id: string, leaseMs: number): Promise<GenerationRecord | null> {
  const [row] = await em.execute<GenerationRow[]>(
    `UPDATE generations SET status = 'cancelled', settlement = 'release', completed_at = now(), updated_at = now(),
       lease_token = NULL, lease_expires_at = now() + (?::bigint * interval '1 millisecond')
     WHERE id = ? AND user_id = ? AND status IN ('pending', 'processing') AND settlement IS NULL
     RETURNING ${COLUMNS}`,
    [leaseMs, id, userId],
  );
  return row ? toRecord(row) : null;
}

/** Records that a cancelled generation's hold was released. */
export async function markCancelSettled(em: EntityManager, id: string): Promise<void> {
  await em.execute("UPDATE generations SET settled_at = now(), lease_expires_at = NULL, updated_at = now() WHERE id = ? AND status = 'cancelled'", [id]);
}

/** True when the generation still has a hold to release or capture. */
export async function isSettled(em: EntityManager, id: string): Promise<boolean> {
  const [row] = await em.execute<{ settled: boolean }[]>("SELECT settled_at IS NOT NULL AS settled FROM generations WHERE id = ?", [id]);
  return Boolean(row?.settled);
}

/** A job handed to one worker by claimJobs. */
export interface ClaimedJob {
  generation: GenerationRecord;
  /** Identifies this claim: only its holder may renew the lease or record the outcome. */
  leaseToken: string;
  traceparent: string | null;
}

/**
 * Claims up to `count` jobs for one worker and leases them for `leaseMs`:
 * pending jobs; processing jobs whose lease ran out (their worker crashed); cancelled jobs
 * whose release was never confirmed. `FOR UPDATE SKIP LOCKED` lets replicas claim side by side
 * without ever taking the same row; the status/lease conditions are re-checked on the locked
 * row, so a job claimed and committed by another replica a moment ago is skipped too.
 * Pending jobs become `processing` with `started_at` and `provider`; the others keep their
 * status (the caller looks at `settlement` to know what is left to do).
 */
export async function claimJobs(
  em: EntityManager,
  count: number,
  leaseMs: number,
  leaseToken: string,
  providerName: string,
): Promise<ClaimedJob[]> {
  const rows = await em.execute<GenerationRow[]>(
    `WITH claimable AS (
       SELECT id FROM generations
       WHERE status = 'pending'
          OR (status = 'processing' AND lease_expires_at < now())
          OR (status = 'cancelled' AND settled_at IS NULL AND (lease_expires_at IS NULL OR lease_expires_at < now()))
       ORDER BY created_at, id
       LIMIT ?
       FOR UPDATE SKIP LOCKED
     )
     UPDATE generations g SET
       status = CASE WHEN g.status = 'pending' THEN 'processing' ELSE g.status END,
       started_at = CASE WHEN g.status = 'cancelled' THEN g.started_at ELSE COALESCE(g.started_at, now()) END,
       provider = CASE WHEN g.status = 'pending' THEN ? ELSE g.provider END,
       lease_token = ?,
       lease_expires_at = now() + (?::bigint * interval '1 millisecond'),
       attempts = g.attempts + 1,
       updated_at = now()
     FROM claimable WHERE g.id = claimable.id
     RETURNING ${COLUMNS.split(",").map((c) => `g.${c.trim()}`).join(", ")}`,
    [count, providerName, leaseToken, leaseMs],
  );
  return rows.map((row) => ({ generation: toRecord(row), leaseToken, traceparent: row.traceparent }));
}

/**
 * Extends the lease of a processing job this claim still holds, optionally with its progress.
 * Returns false when the job is no longer this worker's to run (cancelled or reclaimed).
 */
export async function renewLease(em: EntityManager, id: string, leaseToken: string, leaseMs: number, progressPercent?: number): Promise<boolean> {
  const rows = await em.execute<{ id: string }[]>(
    `UPDATE generations SET lease_expires_at = now() + (?::bigint * interval '1 millisecond'),
       progress_percent = GREATEST(progress_percent, COALESCE(?::integer, progress_percent)), updated_at = now()
     WHERE id = ? AND lease_token = ? AND status = 'processing' AND settlement IS NULL RETURNING id`,
    [leaseMs, progressPercent ?? null, id, leaseToken],
  );
  return rows.length === 1;
}

/** Lets another worker reclaim a job at once (a worker abandoning it at shutdown). */
export async function expireLease(em: EntityManager, id: string, leaseToken: string): Promise<void> {
  await em.execute("UPDATE generations SET lease_expires_at = now(), updated_at = now() WHERE id = ? AND lease_token = ?", [id, leaseToken]);
}

/** What a provider run came to (step 1 of ending a job). */
export type JobOutcome =
  | { kind: "completed"; content: Uint8Array; contentType: string; costMicros: bigint; processingTimeMs: bigint }
  | { kind: "failed"; errorMessage: string; errorCode: string; costMicros: bigint; processingTimeMs: bigint };

/**
 * Step 1 of ending a job: decides its settlement (capture for a completed job, release for a
 * failed one) and stores the outcome, only while the job is still processing under this claim
 * with no settlement. Returns false when it is not (cancelled or reclaimed meanwhile): the
 * caller drops the result.
 */
export async function recordOutcome(em: EntityManager, id: string, leaseToken: string, outcome: JobOutcome): Promise<boolean> {
  const completed = outcome.kind === "completed";
  const rows = await em.execute<{ id: string }[]>(
    `UPDATE generations SET settlement = ?, output_content_type = ?, error_message = ?, error_code = ?,
       cost_micros = ?, processing_time_ms = ?, updated_at = now()
     WHERE id = ? AND lease_token = ? AND status = 'processing' AND settlement IS NULL RETURNING id`,
    [
      completed ? "capture" : "release",
      completed ? outcome.contentType : "",
      completed ? "" : outcome.errorMessage,
      completed ? "" : outcome.errorCode,
      outcome.costMicros.toString(),
      outcome.processingTimeMs.toString(),
      id,
      leaseToken,
    ],
  );
  if (rows.length === 0) return false;
  if (completed) {
    await em.execute(
      `INSERT INTO generation_outputs (generation_id, content_type, content) VALUES (?, ?, ?)
       ON CONFLICT (generation_id) DO UPDATE SET content_type = EXCLUDED.content_type, content = EXCLUDED.content`,
      [id, outcome.contentType, Buffer.from(outcome.content)],
    );
  }
  return true;
}

/**
 * Step 3 of ending a job, after credits captured or released its hold: status `completed`
 * (progress 100) or `failed` (with the error given here, else the one recorded in step 1),
 * `completed_at`, settled. Only a processing job
 * with a settlement moves, so two workers finishing the same job finish it once. Returns the
 * finished generation, or null when another worker finished it first.
 */
export async function finishJob(
  em: EntityManager,
  id: string,
  result: { status: "completed" } | { status: "failed"; errorMessage?: string; errorCode?: string },
): Promise<GenerationRecord | null> {
  const failed = result.status === "failed";
  const [row] = await em.execute<GenerationRow[]>(
    `UPDATE generations SET status = ?,
       settlement = CASE WHEN ? THEN 'release' ELSE settlement END,
       progress_percent = CASE WHEN ? THEN progress_percent ELSE 100 END,
       error_message = COALESCE(?, error_message),
       error_code = COALESCE(?, error_code),
       output_content_type = CASE WHEN ? THEN '' ELSE output_content_type END,
       completed_at = now(), settled_at = now(), lease_token = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE id = ? AND status = 'processing' AND settlement IS NOT NULL AND settled_at IS NULL
     RETURNING ${COLUMNS}`,
    [
      result.status,
      failed,
      failed,
      failed ? (result.errorMessage ?? null) : null,
      failed ? (result.errorCode ?? null) : null,
      failed,
      id,
    ],
  );
  if (!row) return null;
  // A failed job keeps no output (a capture refused after rendering leaves one behind).
  if (failed) await em.execute("DELETE FROM generation_outputs WHERE generation_id = ?", [id]);
  return toRecord(row);
}

/** The stored output of a completed generation of `userId`, or null. */
export async function findOutputOfUser(
  em: EntityManager,
  userId: string,
  id: string,
): Promise<{ content: Uint8Array; contentType: string } | null> {
  const [row] = await em.execute<{ content: Buffer; content_type: string }[]>(
    `SELECT o.content, o.content_type FROM generation_outputs o JOIN generations g ON g.id = o.generation_id
     WHERE g.id = ? AND g.user_id = ? AND g.status = 'completed'`,
    [id, userId],
  );
  return row ? { content: new Uint8Array(row.content), contentType: row.content_type } : null;
}
