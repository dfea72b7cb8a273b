import assert from "node:assert";
import { FORGET_ANSWERS_MENTIONING_SQL, optionalDate, textArrayLiteral, toBigInt, type QueryParam, type Sql } from "@tally/platform";
import type { GenerationStore } from "../domain/ports";
import type {
  BillingClassificationName,
  ClaimedJob,
  CreditTypeName,
  GenerationOutput,
  GenerationRecord,
  GenerationStatusName,
  InputTypeName,
  JobEnding,
  JobOutcome,
  NewGeneration,
  Settlement,
  WatchedGeneration,
} from "../domain/types";
import type { SettlementOutcomeName, SettlementRuleName } from "../domain/settlement-rules";

/**
 * SQL over the `generations` and `generation_outputs` tables, on the caller's `Sql` (inside a
 * transaction or not); speaks GenerationRecord, rows never leave this module. Times that
 * decide leases come from the database clock, so replicas with skewed clocks agree.
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
  settlement: "capture" | "release" | null;
  settlement_outcome: SettlementOutcomeName | null;
  settlement_rule: SettlementRuleName | null;
  credits_captured: string;
  credits_released: string;
  plan: string;
  credit_price_micros: string;
  spent_micros: string;
  partial_output: boolean;
  settled_at: Date | string | null;
  lease_token: string | null;
  traceparent: string | null;
  created_at: Date | string;
  started_at: Date | string | null;
  completed_at: Date | string | null;
  parent_generation_id: string | null;
  root_generation_id: string | null;
  billing_classification: BillingClassificationName;
  billing_reason: string;
}

const COLUMNS = `id, user_id, status, input_type, prompt, photo_url, address, style, credit_cost, credit_type, hold_id,
  progress_percent, provider, output_content_type, error_message, error_code, cost_micros, processing_time_ms,
  settlement, settled_at, lease_token, traceparent, created_at, started_at, completed_at,
  parent_generation_id, root_generation_id, billing_classification, billing_reason,
  settlement_outcome, settlement_rule, credits_captured, credits_released, plan, credit_price_micros, spent_micros, partial_output`;

function toRecord(row: GenerationRow): GenerationRecord {
  const createdAt = optionalDate(row.created_at);
  assert.ok(createdAt, "generations.created_at is NOT NULL");
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
    settlement: settlementOfRow(row),
    plan: row.plan,
    creditPriceMicros: toBigInt(row.credit_price_micros),
    spentMicros: toBigInt(row.spent_micros),
    partialOutput: row.partial_output,
    createdAt,
    startedAt: optionalDate(row.started_at) ?? null,
    completedAt: optionalDate(row.completed_at) ?? null,
    parentGenerationId: row.parent_generation_id,
    rootGenerationId: row.root_generation_id,
    billingClassification: row.billing_classification,
    billingReason: row.billing_reason,
  };
}

const LEASE_INTERVAL = "(?::bigint * interval '1 millisecond')";

/**
 * The row's settlement; a `settlement` recorded without its outcome (by a replica of the
 * version before refund rules, during a rolling upgrade) reads as what it meant then: a capture
 * of the whole hold for a completed job, else a release of all of it.
 */
function settlementOfRow(row: GenerationRow): Settlement | null {
  if (row.settlement_outcome && row.settlement_rule) {
    return { outcome: row.settlement_outcome, rule: row.settlement_rule, creditsCaptured: toBigInt(row.credits_captured), creditsReleased: toBigInt(row.credits_released) };
  }
  if (row.settlement === null) return null;
  const cost = toBigInt(row.credit_cost);
  if (row.settlement === "capture") return { outcome: "completed", rule: "capture", creditsCaptured: cost, creditsReleased: 0n };
  const outcome = row.status !== "cancelled" ? "failed" : row.started_at === null ? "cancelled_before_start" : "cancelled_while_processing";
  return { outcome, rule: "release", creditsCaptured: 0n, creditsReleased: cost };
}

/** SET list storing a settlement decision; its values are `settlementParameters(decision)`. */
const SETTLEMENT_ASSIGNMENTS = "settlement = ?, settlement_outcome = ?, settlement_rule = ?, credits_captured = ?, credits_released = ?";

/** The credits call a decision makes: capture (of the captured credits) when it charges anything, else release. */
const settlementParameters = (d: Settlement): QueryParam[] => [d.creditsCaptured > 0n ? "capture" : "release", d.outcome, d.rule, d.creditsCaptured, d.creditsReleased];

/** GenerationStore on `generations` and `generation_outputs`. */
export class SqlGenerationStore implements GenerationStore {
  constructor(private readonly sql: Sql) {}

  async insert(g: NewGeneration): Promise<GenerationRecord> {
    const row = await this.sql.one<GenerationRow>(
      `INSERT INTO generations (id, user_id, status, input_type, prompt, photo_url, address, style, credit_cost, credit_type, hold_id, traceparent,
         parent_generation_id, root_generation_id, billing_classification, billing_reason, plan, credit_price_micros)
       VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ${COLUMNS}`,
      [
        g.id, g.userId, g.inputType, g.prompt, g.photoUrl, g.address, g.style, g.creditCost, g.creditType, g.holdId, g.traceparent,
        g.parentGenerationId, g.rootGenerationId, g.billingClassification, g.billingReason, g.plan, g.creditPriceMicros,
      ],
    );
    assert.ok(row, "INSERT ... RETURNING returns the row");
    return toRecord(row);
  }

  async lock(id: string): Promise<boolean> {
    const rows = await this.sql.query<{ id: string }>("SELECT id FROM generations WHERE id = ? FOR UPDATE", [id]);
    return rows.length === 1;
  }

  /** Served by the partial index generations_free_retries_of_root. */
  async countFreeRetries(rootId: string): Promise<number> {
    const row = await this.sql.one<{ total: string }>(
      "SELECT count(*) AS total FROM generations WHERE root_generation_id = ? AND billing_classification = 'free_retry'",
      [rootId],
    );
    return Number(row?.total ?? 0);
  }

  async find(id: string): Promise<GenerationRecord | null> {
    const row = await this.sql.one<GenerationRow>(`SELECT ${COLUMNS} FROM generations WHERE id = ?`, [id]);
    return row ? toRecord(row) : null;
  }

  async findWatched(id: string): Promise<WatchedGeneration | null> {
    const row = await this.sql.one<GenerationRow & { event_seq: string }>(`SELECT ${COLUMNS}, event_seq FROM generations WHERE id = ?`, [id]);
    return row ? { record: toRecord(row), eventSeq: toBigInt(row.event_seq) } : null;
  }

  async findOfUser(userId: string, id: string): Promise<GenerationRecord | null> {
    const row = await this.sql.one<GenerationRow>(`SELECT ${COLUMNS} FROM generations WHERE id = ? AND user_id = ?`, [id, userId]);
    return row ? toRecord(row) : null;
  }

  async listOfUser(userId: string, limit: number, offset: number): Promise<{ generations: GenerationRecord[]; totalSize: number }> {
    const rows = await this.sql.query<GenerationRow>(
      `SELECT ${COLUMNS} FROM generations WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`,
      [userId, limit, offset],
    );
    const count = await this.sql.one<{ total: string }>("SELECT count(*) AS total FROM generations WHERE user_id = ?", [userId]);
    return { generations: rows.map(toRecord), totalSize: Number(count?.total ?? 0) };
  }

  async findOutputOfUser(userId: string, id: string): Promise<GenerationOutput | null> {
    const row = await this.sql.one<{ content: Buffer; content_type: string }>(
      `SELECT o.content, o.content_type FROM generation_outputs o JOIN generations g ON g.id = o.generation_id
       WHERE g.id = ? AND g.user_id = ? AND g.status = 'completed'`,
      [id, userId],
    );
    return row ? { content: new Uint8Array(row.content), contentType: row.content_type } : null;
  }

  async outputBytes(id: string): Promise<bigint> {
    const row = await this.sql.one<{ bytes: string }>("SELECT octet_length(content) AS bytes FROM generation_outputs WHERE generation_id = ?", [id]);
    return row ? toBigInt(row.bytes) : 0n;
  }

  async outputBytesOfUser(userId: string, id: string): Promise<bigint | null> {
    const row = await this.sql.one<{ bytes: string }>(
      `SELECT octet_length(o.content) AS bytes FROM generation_outputs o JOIN generations g ON g.id = o.generation_id
       WHERE g.id = ? AND g.user_id = ? AND g.status = 'completed'`,
      [id, userId],
    );
    return row ? toBigInt(row.bytes) : null;
  }

  async cancel(userId: string, id: string, leaseMs: number, decide: (record: GenerationRecord) => Settlement): Promise<GenerationRecord | null> {
    const current = await this.sql.one<GenerationRow>(
      `SELECT ${COLUMNS} FROM generations WHERE id = ? AND user_id = ? AND status IN ('pending', 'processing') AND settlement IS NULL FOR UPDATE`,
      [id, userId],
    );
    if (!current) return null;
    const decision = decide(toRecord(current));
    const row = await this.sql.one<GenerationRow>(
      `UPDATE generations SET status = 'cancelled', completed_at = now(), updated_at = now(),
         ${SETTLEMENT_ASSIGNMENTS}, lease_token = NULL, lease_expires_at = now() + ${LEASE_INTERVAL}
       WHERE id = ? RETURNING ${COLUMNS}`,
      [...settlementParameters(decision), leaseMs, id],
    );
    return row ? toRecord(row) : null;
  }

  async markCancelSettled(id: string, uncharged: boolean): Promise<void> {
    await this.sql.query(
      `UPDATE generations SET settled_at = now(), lease_expires_at = NULL, updated_at = now(),
         settlement = CASE WHEN ? THEN 'release' ELSE settlement END,
         credits_captured = CASE WHEN ? THEN 0 ELSE credits_captured END,
         credits_released = CASE WHEN ? THEN credit_cost ELSE credits_released END
       WHERE id = ? AND status = 'cancelled'`,
      [uncharged, uncharged, uncharged, id],
    );
  }

  async isSettled(id: string): Promise<boolean> {
    const row = await this.sql.one<{ settled: boolean }>("SELECT settled_at IS NOT NULL AS settled FROM generations WHERE id = ?", [id]);
    return Boolean(row?.settled);
  }

  /**
   * Claimable: pending jobs; processing jobs whose lease ran out (their worker crashed);
   * cancelled jobs whose release was never confirmed. The status/lease conditions are
   * re-checked on the locked row, so a job claimed and committed by another replica a moment
   * ago is skipped too. Pending jobs become `processing` with `started_at` and `provider`.
   */
  async claimJobs(count: number, leaseMs: number, leaseToken: string, providerName: string): Promise<ClaimedJob[]> {
    const rows = await this.sql.query<GenerationRow>(
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
         lease_expires_at = now() + ${LEASE_INTERVAL},
         attempts = g.attempts + 1,
         updated_at = now()
       FROM claimable WHERE g.id = claimable.id
       RETURNING ${COLUMNS.split(",").map((c) => `g.${c.trim()}`).join(", ")}`,
      [count, providerName, leaseToken, leaseMs],
    );
    // The claim's token as stored, so the worker can check the row is really under its claim.
    return rows.map((row) => ({ generation: toRecord(row), leaseToken: row.lease_token ?? "", traceparent: row.traceparent }));
  }

  async renewLease(id: string, leaseToken: string, leaseMs: number, progressPercent?: number, spentMicros?: bigint): Promise<boolean> {
    const rows = await this.sql.query<{ id: string }>(
      `UPDATE generations SET lease_expires_at = now() + ${LEASE_INTERVAL},
         progress_percent = GREATEST(progress_percent, COALESCE(?::integer, progress_percent)),
         spent_micros = GREATEST(spent_micros, COALESCE(?::bigint, spent_micros)), updated_at = now()
       WHERE id = ? AND lease_token = ? AND status = 'processing' AND settlement IS NULL RETURNING id`,
      [leaseMs, progressPercent ?? null, spentMicros ?? null, id, leaseToken],
    );
    return rows.length === 1;
  }

  async expireLease(id: string, leaseToken: string): Promise<void> {
    await this.sql.query("UPDATE generations SET lease_expires_at = now(), updated_at = now() WHERE id = ? AND lease_token = ?", [id, leaseToken]);
  }

  /** Stores the outcome and the settlement it decided (INV-3), with a completed job's output. */
  async recordOutcome(id: string, leaseToken: string, outcome: JobOutcome, settlement: Settlement): Promise<boolean> {
    const completed = outcome.kind === "completed";
    const rows = await this.sql.query<{ id: string }>(
      `UPDATE generations SET ${SETTLEMENT_ASSIGNMENTS}, partial_output = ?, output_content_type = ?, error_message = ?, error_code = ?,
         cost_micros = ?, processing_time_ms = ?, updated_at = now()
       WHERE id = ? AND lease_token = ? AND status = 'processing' AND settlement IS NULL RETURNING id`,
      [
        ...settlementParameters(settlement),
        completed && outcome.partial,
        completed ? outcome.contentType : "",
        completed ? "" : outcome.errorMessage,
        completed ? "" : outcome.errorCode,
        outcome.costMicros,
        outcome.processingTimeMs,
        id,
        leaseToken,
      ],
    );
    assert.ok(rows.length <= 1, "INV-3: a settlement is recorded once (one row per generation id)");
    if (rows.length === 0) return false;
    if (completed) {
      // The image travels as a bind parameter (a Buffer), never inlined into the statement text.
      await this.sql.bound(
        {
          name: "generation_outputs_upsert",
          text: `INSERT INTO generation_outputs (generation_id, content_type, content) VALUES ($1, $2, $3)
           ON CONFLICT (generation_id) DO UPDATE SET content_type = EXCLUDED.content_type, content = EXCLUDED.content`,
        },
        [id, outcome.contentType, outcome.content],
      );
    }
    return true;
  }

  /**
   * `completed` sets progress 100; `failed` keeps the step-1 error unless `ending` names another;
   * an `uncharged` ending (credits refused the capture) records that nothing was captured.
   */
  async finishJob(id: string, ending: JobEnding): Promise<GenerationRecord | null> {
    const failed = ending.status === "failed";
    const uncharged = failed && ending.uncharged === true;
    const row = await this.sql.one<GenerationRow>(
      `UPDATE generations SET status = ?,
         settlement = CASE WHEN ? THEN 'release' ELSE settlement END,
         settlement_outcome = CASE WHEN ? THEN 'failed' ELSE settlement_outcome END,
         settlement_rule = CASE WHEN ? AND settlement_outcome <> 'failed' THEN 'release' ELSE settlement_rule END,
         credits_captured = CASE WHEN ? THEN 0 ELSE credits_captured END,
         credits_released = CASE WHEN ? THEN credit_cost ELSE credits_released END,
         partial_output = partial_output AND NOT ?,
         progress_percent = CASE WHEN ? THEN progress_percent ELSE 100 END,
         error_message = COALESCE(?, error_message),
         error_code = COALESCE(?, error_code),
         output_content_type = CASE WHEN ? THEN '' ELSE output_content_type END,
         completed_at = now(), settled_at = now(), lease_token = NULL, lease_expires_at = NULL, updated_at = now()
       WHERE id = ? AND status = 'processing' AND settlement IS NOT NULL AND settled_at IS NULL
       RETURNING ${COLUMNS}`,
      [
        ending.status,
        uncharged,
        uncharged,
        uncharged,
        uncharged,
        uncharged,
        uncharged,
        failed,
        failed ? (ending.errorMessage ?? null) : null,
        failed ? (ending.errorCode ?? null) : null,
        failed,
        id,
      ],
    );
    if (!row) return null;
    // A failed job keeps no output (a capture refused after rendering leaves one behind).
    if (failed) await this.sql.query("DELETE FROM generation_outputs WHERE generation_id = ?", [id]);
    return toRecord(row);
  }

  /** One UPDATE, so a sign-up's adoption moves all of a guest's generations or none. */
  async moveToUser(fromUserId: string, toUserId: string): Promise<number> {
    const rows = await this.sql.query<{ id: string }>("UPDATE generations SET user_id = ?, updated_at = now() WHERE user_id = ? RETURNING id", [
      toUserId,
      fromUserId,
    ]);
    return rows.length;
  }

  async eraseUser(userId: string): Promise<number> {
    await this.sql.query(
      "DELETE FROM generation_outputs WHERE generation_id IN (SELECT id FROM generations WHERE user_id = ?::uuid)",
      [userId],
    );
    // Stored answers of CreateGeneration, RetryGeneration and CancelGeneration carry the generation's inputs.
    await this.sql.query(FORGET_ANSWERS_MENTIONING_SQL, [textArrayLiteral(["CreateGeneration", "RetryGeneration", "CancelGeneration"]), userId]);
    const rows = await this.sql.query<{ id: string }>(
      `UPDATE generations SET prompt = '', photo_url = '', address = '', style = '', erased_at = clock_timestamp(), updated_at = now()
       WHERE user_id = ?::uuid AND erased_at IS NULL RETURNING id`,
      [userId],
    );
    return rows.length;
  }
}
