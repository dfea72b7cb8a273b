/**
 * The SQL side of bench/credits-growth.ts: the size of the credits tables that grow with every
 * hold and capture, their buffer hit figures (pg_statio_*), pre-growing them with rows made by
 * SQL in the shapes the service writes, and growing pgbench's ledger to the same size.
 */
import type { Client } from "pg";

/** The credits tables a hold → capture pair adds rows to; their size counts indexes and TOAST (pg_total_relation_size). */
export const GROWING_TABLES = ["holds", "hold_allocations", "ledger_entries", "idempotency_keys"] as const;

/** The server's shared_buffers, in bytes. */
export async function sharedBuffersBytes(client: Client): Promise<number> {
  const { rows } = await client.query<{ bytes: string }>("SELECT pg_size_bytes(current_setting('shared_buffers')) AS bytes");
  return Number(rows[0]!.bytes);
}

/** pg_total_relation_size summed over `tables` (heap, indexes, TOAST), in bytes. */
export async function totalSizeBytes(client: Client, tables: readonly string[]): Promise<number> {
  const { rows } = await client.query<{ bytes: string }>(
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) AS bytes FROM pg_class c WHERE c.relkind = 'r' AND c.relname = ANY($1) AND c.relnamespace = 'public'::regnamespace",
    [tables],
  );
  return Number(rows[0]!.bytes);
}

/** Cumulative block reads (not found in shared_buffers) and hits of one relation: a table's heap or one index. */
export interface BlockCounts {
  relation: string;
  read: number;
  hit: number;
  sizeBytes: number;
}

/** Heap and per-index block reads and hits of `tables` so far (pg_statio_user_tables / pg_statio_user_indexes). */
export async function blockCounts(client: Client, tables: readonly string[]): Promise<BlockCounts[]> {
  const { rows } = await client.query<{ relation: string; read: string; hit: string; size_bytes: string }>(
    `SELECT relname || ' (heap)' AS relation, coalesce(heap_blks_read, 0) AS read, coalesce(heap_blks_hit, 0) AS hit,
            pg_relation_size(relid) AS size_bytes
       FROM pg_statio_user_tables WHERE relname = ANY($1)
     UNION ALL
     SELECT indexrelname AS relation, coalesce(idx_blks_read, 0), coalesce(idx_blks_hit, 0), pg_relation_size(indexrelid)
       FROM pg_statio_user_indexes WHERE relname = ANY($1)
     ORDER BY 1`,
    [tables],
  );
  return rows.map((row) => ({ relation: row.relation, read: Number(row.read), hit: Number(row.hit), sizeBytes: Number(row.size_bytes) }));
}

/** `after` − `before` per relation (reads and hits); the size is `after`'s. */
export function blockDelta(before: BlockCounts[], after: BlockCounts[]): BlockCounts[] {
  const earlier = new Map(before.map((counts) => [counts.relation, counts]));
  return after.map((counts) => {
    const base = earlier.get(counts.relation);
    return { relation: counts.relation, read: counts.read - (base?.read ?? 0), hit: counts.hit - (base?.hit ?? 0), sizeBytes: counts.sizeBytes };
  });
}

/**
 * Statements that add `pairs` captured holds spread round-robin over every funded account, as
 * a CreateHold of 1 credit and its CaptureHold leave them: the hold (ids from the service's own
 * `credits_uuid_v7()`, random generation id), its allocation on the account's grant, the HOLD
 * and CAPTURE ledger entries with the balances after them, the two idempotency keys with their
 * compact answers; then the accounts' and grants' balances moved by as much, so the ledger
 * still sums to the stored balances (INV-2). Run before any hold is active (held_after is 1
 * after the HOLD entry and 0 after the CAPTURE).
 */
export function seedStatements(pairs: number): string[] {
  return [
    `CREATE TEMP TABLE seed_accounts ON COMMIT DROP AS
       SELECT (row_number() OVER (ORDER BY a.id) - 1)::int AS k, a.id AS account_id, g.id AS grant_id, g.kind AS grant_kind,
              a.available_credits AS available
         FROM accounts a JOIN grants g ON g.account_id = a.id AND g.remaining_amount > 0`,
    `CREATE TEMP TABLE seed_pairs ON COMMIT DROP AS
       SELECT n, s.account_id, s.grant_id, s.grant_kind, s.available - (n / c.total) - 1 AS balance_after,
              credits_uuid_v7() AS hold_id, gen_random_uuid()::text AS generation_id,
              gen_random_uuid()::text AS hold_request, gen_random_uuid()::text AS capture_request, clock_timestamp() AS at
         FROM generate_series(0, ${pairs - 1}) AS n
         CROSS JOIN (SELECT count(*)::int AS total FROM seed_accounts) c
         JOIN seed_accounts s ON s.k = n % c.total`,
    `INSERT INTO holds (id, account_id, generation_id, status, amount, trial_amount, token_amount, captured_amount, expires_at, created_at, ended_at)
       SELECT hold_id, account_id, generation_id, 'captured', 1, CASE WHEN grant_kind = 'trial' THEN 1 ELSE 0 END,
              CASE WHEN grant_kind = 'trial' THEN 0 ELSE 1 END, 1, at + interval '1 hour', at, at
         FROM seed_pairs ORDER BY n`,
    "INSERT INTO hold_allocations (hold_id, grant_id, sequence, amount) SELECT hold_id, grant_id, 0, 1 FROM seed_pairs ORDER BY n",
    `INSERT INTO ledger_entries (id, account_id, kind, amount, held_change, captured_change, grant_kind, hold_id, generation_id,
                                 balance_after, held_after, hold_deadline, created_at)
       SELECT credits_uuid_v7(), account_id, e.kind, e.amount, e.held_change, e.captured_change, grant_kind, hold_id, generation_id,
              balance_after, e.held_after, CASE WHEN e.kind = 'hold' THEN at + interval '1 hour' END, at
         FROM seed_pairs
         CROSS JOIN (VALUES (1, 'hold', -1, 1, 0, 1), (2, 'capture', 0, -1, 1, 0)) AS e (step, kind, amount, held_change, captured_change, held_after)
         ORDER BY n, e.step`,
    `INSERT INTO idempotency_keys (request_id, operation, request_fingerprint, answer_hold_id, answer_hold_status, answer_captured_amount,
                                   answer_expires_at, answer_ended_at, answer_trial_credits, answer_token_credits, answer_held_credits,
                                   answer_extended, created_at)
       SELECT CASE WHEN e.step = 1 THEN hold_request ELSE capture_request END, e.operation,
              encode(sha256(convert_to(generation_id || e.operation, 'UTF8')), 'hex'), hold_id, e.status, e.captured,
              at + interval '1 hour', CASE WHEN e.step = 2 THEN at END, CASE WHEN grant_kind = 'trial' THEN balance_after ELSE 0 END,
              CASE WHEN grant_kind = 'trial' THEN 0 ELSE balance_after END, e.held, false, at
         FROM seed_pairs
         CROSS JOIN (VALUES (1, 'CreateHold', 'active', 0, 1), (2, 'CaptureHold', 'captured', 1, 0)) AS e (step, operation, status, captured, held)
         ORDER BY n, e.step`,
    `UPDATE accounts a SET available_credits = a.available_credits - p.pairs, captured_credits = a.captured_credits + p.pairs
       FROM (SELECT account_id, count(*) AS pairs FROM seed_pairs GROUP BY account_id) p WHERE a.id = p.account_id`,
    `UPDATE grants g SET remaining_amount = g.remaining_amount - p.pairs
       FROM (SELECT grant_id, count(*) AS pairs FROM seed_pairs GROUP BY grant_id) p WHERE g.id = p.grant_id`,
  ];
}

/**
 * Pre-grows the credits tables to at least `targetBytes` in transactions of `chunkPairs`
 * pairs (seedStatements), then VACUUM ANALYZE them (as autovacuum would have by then).
 * Resolves with the pairs added.
 */
export async function seedCredits(client: Client, targetBytes: number, chunkPairs: number, onChunk: (sizeBytes: number, pairs: number) => void): Promise<number> {
  let pairs = 0;
  for (let size = await totalSizeBytes(client, GROWING_TABLES); size < targetBytes; size = await totalSizeBytes(client, GROWING_TABLES)) {
    // After the first chunk, aim at what is left (its bytes per pair measured), so the seed stops near the target.
    const chunk = pairs === 0 ? chunkPairs : Math.max(1_000, Math.min(chunkPairs, Math.ceil(((targetBytes - size) / (size / pairs)) * 1.05)));
    await client.query("BEGIN");
    try {
      for (const statement of seedStatements(chunk)) await client.query(statement);
      await client.query("COMMIT");
    } catch (error) {
      await client.query("ROLLBACK");
      throw error;
    }
    pairs += chunk;
    onChunk(await totalSizeBytes(client, GROWING_TABLES), pairs);
  }
  for (const table of GROWING_TABLES) await client.query(`VACUUM ANALYZE ${table}`);
  return pairs;
}

/** Appends rows to pgbench's `ledger` (as its transaction writes them, random accounts of `accounts`) until `accounts` + `ledger` reach `targetBytes`; resolves with the rows added. */
export async function growPgbenchLedger(client: Client, targetBytes: number, accounts: number): Promise<number> {
  const tables = ["accounts", "ledger"];
  let added = 0;
  for (let size = await totalSizeBytes(client, tables); size < targetBytes; size = await totalSizeBytes(client, tables)) {
    // About 110 bytes per row with its primary-key entry: aim a little short, then top up.
    const rows = Math.max(10_000, Math.min(2_000_000, Math.floor(((targetBytes - size) / 110) * 0.9)));
    await client.query(
      `INSERT INTO ledger (account_id, amount) SELECT 1 + floor(random() * ${accounts})::int, -1 FROM generate_series(1, ${rows})`,
    );
    added += rows;
  }
  await client.query("VACUUM ANALYZE ledger");
  return added;
}

/**
 * One CreateHold and its CaptureHold through the service's own SQL functions, in a transaction
 * rolled back at the end, with auto_explain (ANALYZE, BUFFERS, nested statements) sent to this
 * client: resolves with one line per statement inside the functions, its shared buffers hit and
 * read (read = not in shared_buffers) and its time. Needs a superuser (LOAD).
 */
export async function explainHoldPair(client: Client, accountId: string): Promise<string[]> {
  const plans: string[] = [];
  const onNotice = (notice: { message?: string }) => void plans.push(notice.message ?? "");
  client.on("notice", onNotice);
  try {
    await client.query("BEGIN");
    await client.query("LOAD 'auto_explain'");
    for (const setting of ["log_min_duration = 0", "log_analyze = on", "log_buffers = on", "log_nested_statements = on", "log_level = notice"]) {
      await client.query(`SET LOCAL auto_explain.${setting}`);
    }
    const { rows } = await client.query<{ hold_id: string }>(
      "SELECT (credits_create_hold(gen_random_uuid()::text, 'explain', $1::uuid, gen_random_uuid()::text, 1, 60000, now(), 'grant_expired')).hold_id",
      [accountId],
    );
    await client.query("SELECT credits_capture_hold(gen_random_uuid()::text, 'explain', $1::uuid, NULL, 'capture_rest', now(), 'grant_expired')", [rows[0]!.hold_id]);
  } finally {
    await client.query("ROLLBACK");
    client.off("notice", onNotice);
  }
  return plans.map(summarisePlan).filter((line) => line.length > 0);
}

/** "<time> ms  hit=<n> read=<n>  <the statement's first line>" from one auto_explain notice. */
function summarisePlan(plan: string): string {
  const query = /Query Text: ([^\n]*)/.exec(plan)?.[1]?.trim().replace(/\s+/g, " ").slice(0, 110) ?? "";
  if (query.startsWith("SELECT (credits_create_hold") || query.startsWith("SELECT credits_capture_hold")) return "";
  const duration = /duration: ([\d.]+) ms/.exec(plan)?.[1] ?? "?";
  const buffers = /Buffers: shared ([^\n]*)/.exec(plan)?.[1]?.trim() ?? "no buffers";
  return `${duration.padStart(8)} ms  ${buffers.padEnd(34)} ${query}`;
}

/** Per growing table: updates, of which HOT (no new index entries), dead rows now, and autovacuum / autoanalyze runs so far. */
export async function tableActivity(client: Client, tables: readonly string[]): Promise<string[]> {
  const { rows } = await client.query<Record<string, string>>(
    `SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_dead_tup, autovacuum_count, autoanalyze_count
       FROM pg_stat_user_tables WHERE relname = ANY($1) ORDER BY relname`,
    [tables],
  );
  return rows.map((r) => `  ${r.relname!.padEnd(18)} inserts ${r.n_tup_ins}, updates ${r.n_tup_upd} (HOT ${r.n_tup_hot_upd}), dead now ${r.n_dead_tup}, autovacuums ${r.autovacuum_count}, autoanalyzes ${r.autoanalyze_count}`);
}
