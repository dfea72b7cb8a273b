import { Migration } from "@mikro-orm/migrations";

/**
 * `usage_log` partitioned by UTC month (PostgreSQL declarative RANGE partitioning on
 * `occurred_at`), converted in place: the entries are kept.
 *
 * - Partitions are named `usage_log_YYYY_MM` and cover [first of the month, first of the next)
 *   in UTC. `usage_log_default` (the DEFAULT partition) takes any entry whose month has no
 *   partition yet (a late event, a far-future clock), so an append never fails for want of one.
 * - `usage_log_ensure_partitions(months)` creates the partitions of `months` that are missing;
 *   when the default partition holds entries of one of them, it moves them in the same
 *   transaction (detach the default, create a fresh one and the months, re-route the old
 *   default's rows through `usage_log`, drop it: no row is ever UPDATEd or DELETEd, INV-8).
 *   `usage_log_maintain_partitions(now, ahead)` ensures the month of `now`, the `ahead` months
 *   after it and every month found in the default partition (the usage-log partition runner;
 *   this migration runs it once too, with three months ahead).
 * - Keys: a partitioned table's unique keys must include `occurred_at`, so the primary key is
 *   `(id, occurred_at)` and `event_id` is no longer UNIQUE here. One event id still yields at most
 *   one entry: the only writer appends an entry in the transaction that first inserts its event
 *   id into the inbox (`processed_events`, primary key, never pruned), and appends nothing when
 *   the id is already there (INV-5; services/usage/test/partitions.test.ts).
 * - Indexes kept (created on the parent, so on every partition): the per-user newest-first
 *   keyset `(user_id, occurred_at DESC, id DESC)`, the per-user completed windows
 *   `(user_id, occurred_at) WHERE outcome = 'completed'`; analytics over a window prune to its
 *   months.
 * - Immutability (INV-8): the row trigger rejecting UPDATE and DELETE is on the parent, so
 *   PostgreSQL clones it onto every partition; a statement TRUNCATE trigger is not cloned, so
 *   every partition (and the default) gets its own `usage_log_no_truncate` besides the parent's.
 * - `usage_month_contribution(e usage_log)` and the view `monthly_analytics_from_log` are typed
 *   on the table's row type: dropped before the swap and created again, unchanged, over the
 *   partitioned table (same columns in the same order).
 *
 * No `?` in this SQL: the migration runner would read it as a bind parameter.
 */
export class Migration20261128000001 extends Migration {
  async up(): Promise<void> {
    this.addSql("LOCK TABLE usage_log IN ACCESS EXCLUSIVE MODE");
    this.addSql("DROP VIEW monthly_analytics_from_log");
    this.addSql("DROP FUNCTION usage_month_contribution(usage_log)");
    this.addSql("ALTER TABLE usage_log RENAME TO usage_log_unpartitioned");
    this.addSql("ALTER TABLE usage_log_unpartitioned DROP CONSTRAINT usage_log_pkey, DROP CONSTRAINT usage_log_event_id_key");
    this.addSql("DROP INDEX usage_log_user_newest, usage_log_user_completed");

    this.addSql(`
CREATE TABLE usage_log (
  LIKE usage_log_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
  PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at)`);
    this.addSql("CREATE TABLE usage_log_default PARTITION OF usage_log DEFAULT");
    // Newest-first keyset pagination per user; completed entries per user and window (limits).
    this.addSql("CREATE INDEX usage_log_user_newest ON usage_log (user_id, occurred_at DESC, id DESC)");
    this.addSql("CREATE INDEX usage_log_user_completed ON usage_log (user_id, occurred_at) WHERE outcome = 'completed'");
    this.addSql(`
CREATE TRIGGER usage_log_immutable
  BEFORE UPDATE OR DELETE ON usage_log
  FOR EACH ROW EXECUTE FUNCTION usage_log_reject_change()`);
    this.addSql(`
CREATE TRIGGER usage_log_no_truncate
  BEFORE TRUNCATE ON usage_log
  FOR EACH STATEMENT EXECUTE FUNCTION usage_log_reject_change()`);
    this.addSql(`
CREATE TRIGGER usage_log_no_truncate
  BEFORE TRUNCATE ON usage_log_default
  FOR EACH STATEMENT EXECUTE FUNCTION usage_log_reject_change()`);

    this.addSql(`
CREATE FUNCTION usage_log_ensure_partitions(months date[]) RETURNS TABLE (partition_name text, rows_moved bigint) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
  m date;
  todo date[] := '{}';
  moving boolean;
  name text;
  moved bigint;
BEGIN
  -- One maintainer at a time (replicas run the runner too).
  PERFORM pg_advisory_xact_lock(hashtext('usage_log_partitions'));
  FOR m IN SELECT DISTINCT date_trunc('month', x)::date FROM unnest(months) x WHERE x IS NOT NULL AND isfinite(x) ORDER BY 1 LOOP
    IF to_regclass('usage_log_' || to_char(m, 'YYYY_MM')) IS NULL THEN todo := todo || m; END IF;
  END LOOP;
  IF cardinality(todo) = 0 THEN RETURN; END IF;
  moving := EXISTS (SELECT 1 FROM usage_log_default d WHERE date_trunc('month', d.occurred_at AT TIME ZONE 'UTC')::date = ANY (todo));
  IF moving THEN
    -- Writers wait until this commits; their rows then land in the right partition.
    LOCK TABLE usage_log IN ACCESS EXCLUSIVE MODE;
    ALTER TABLE usage_log DETACH PARTITION usage_log_default;
    ALTER TABLE usage_log_default RENAME TO usage_log_default_moving;
    CREATE TABLE usage_log_default PARTITION OF usage_log DEFAULT;
    CREATE TRIGGER usage_log_no_truncate BEFORE TRUNCATE ON usage_log_default FOR EACH STATEMENT EXECUTE FUNCTION usage_log_reject_change();
  END IF;
  FOREACH m IN ARRAY todo LOOP
    name := 'usage_log_' || to_char(m, 'YYYY_MM');
    EXECUTE format('CREATE TABLE %I PARTITION OF usage_log FOR VALUES FROM (%L) TO (%L)', name,
                   m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    EXECUTE format('CREATE TRIGGER usage_log_no_truncate BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION usage_log_reject_change()', name);
    moved := 0;
    IF moving THEN
      SELECT count(*) INTO moved FROM usage_log_default_moving d WHERE date_trunc('month', d.occurred_at AT TIME ZONE 'UTC')::date = m;
    END IF;
    partition_name := name;
    rows_moved := moved;
    RETURN NEXT;
  END LOOP;
  IF moving THEN
    -- Every row of the old default goes back through the parent: to its new month, or to the new default.
    INSERT INTO usage_log SELECT * FROM usage_log_default_moving;
    DROP TABLE usage_log_default_moving;
  END IF;
END
$fn$`);
    this.addSql(`
CREATE FUNCTION usage_log_maintain_partitions(now_at timestamptz, ahead_months integer) RETURNS TABLE (partition_name text, rows_moved bigint) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
  months date[];
BEGIN
  -- Computed first: no query of this function may still be reading the default partition when a move drops it.
  months := ARRAY(
    SELECT (date_trunc('month', now_at AT TIME ZONE 'UTC') + make_interval(months => k))::date FROM generate_series(0, greatest(ahead_months, 0)) k
    UNION
    SELECT DISTINCT date_trunc('month', d.occurred_at AT TIME ZONE 'UTC')::date FROM usage_log_default d WHERE isfinite(d.occurred_at));
  RETURN QUERY SELECT * FROM usage_log_ensure_partitions(months);
END
$fn$`);

    // A partition for every month the log has entries in, then the entries, then the old table goes.
    this.addSql(`
SELECT usage_log_ensure_partitions(ARRAY(
  SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date FROM usage_log_unpartitioned WHERE isfinite(occurred_at)))`);
    this.addSql("INSERT INTO usage_log SELECT * FROM usage_log_unpartitioned");
    this.addSql("DROP TABLE usage_log_unpartitioned");
    // The current month and the default three ahead, before the runner's first pass.
    this.addSql("SELECT usage_log_maintain_partitions(now(), 3)");

    // Unchanged from Migration20261126000001, over the partitioned table's row type.
    this.addSql(`
CREATE FUNCTION usage_month_contribution(e usage_log) RETURNS monthly_analytics LANGUAGE sql IMMUTABLE AS $fn$
  SELECT e.user_id,
         date_trunc('month', e.occurred_at AT TIME ZONE 'UTC')::date,
         (e.outcome = 'completed')::int::bigint,
         (e.outcome = 'failed')::int::bigint,
         CASE WHEN e.outcome = 'completed' THEN e.credits ELSE 0 END,
         CASE WHEN e.outcome = 'completed' THEN e.cost_micros ELSE 0 END,
         CASE WHEN e.outcome = 'completed' THEN e.processing_time_ms ELSE 0 END,
         CASE WHEN e.outcome = 'completed' THEN e.output_bytes ELSE 0 END,
         jsonb_build_object(e.input_type, jsonb_build_object('completed', (e.outcome = 'completed')::int, 'failed', (e.outcome = 'failed')::int)),
         jsonb_build_object(e.provider, jsonb_build_object('completed', (e.outcome = 'completed')::int, 'failed', (e.outcome = 'failed')::int)),
         jsonb_build_object(e.billing_classification, jsonb_build_object('completed', (e.outcome = 'completed')::int, 'failed', (e.outcome = 'failed')::int)),
         CASE WHEN e.plan IS NULL THEN '{}'::text[] ELSE ARRAY[e.plan] END
$fn$`);
    this.addSql(`
CREATE VIEW monthly_analytics_from_log AS
  SELECT c.subject_id, c.month, sum(c.generations)::bigint AS generations, sum(c.failed)::bigint AS failed,
         sum(c.credits)::bigint AS credits, sum(c.cost_micros)::bigint AS cost_micros, sum(c.processing_ms)::bigint AS processing_ms,
         sum(c.output_bytes)::bigint AS output_bytes, usage_counts_sum(c.by_input_type) AS by_input_type,
         usage_counts_sum(c.by_provider) AS by_provider, usage_counts_sum(c.by_classification) AS by_classification,
         usage_plans_sum(c.plans) AS plans
    FROM usage_log e CROSS JOIN LATERAL usage_month_contribution(e) c
   GROUP BY c.subject_id, c.month`);
  }
}
