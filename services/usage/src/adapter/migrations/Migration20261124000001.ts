import { Migration } from "@mikro-orm/migrations";

/**
 * CheckAndReserve in one round trip: `quota_check_and_reserve` does, in one statement (so one
 * transaction), what the service otherwise does in several statements inside BEGIN/COMMIT: lock
 * the subject (storing its latest kind, plan and anchor), answer an existing reservation of
 * the generation, read the period and day counters, check every limit and, when all allow it,
 * insert the reservation and bump the reserved counters (INV-10). When the subject has no
 * period or day row yet, or its stored anchor is not the one given (a re-anchored billing
 * period), it changes nothing but the new subject's row and answers `setup_needed`: the service
 * then takes the transactional path that rebuilds and creates those rows from the usage log.
 *
 * `quota_allows` is the limit rule of the domain (services/usage/src/domain/limits.ts
 * `allows`): used + reserved + amount <= limit, or used + reserved < limit when the amount is
 * not known in advance (0). The service checks, on every answer, that this function's
 * decision is the one the domain rule gives for the counters it returns.
 *
 * (No `?` in this SQL: the migration runner would read it as a bind parameter; key tests use
 * `->>` instead.)
 */
export class Migration20261124000001 extends Migration {
  async up(): Promise<void> {
    this.addSql(`
CREATE FUNCTION quota_allows(used bigint, reserved bigint, amount bigint, max_allowed bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT AS $fn$
  SELECT CASE WHEN amount = 0 THEN used + reserved < max_allowed ELSE used + reserved + amount <= max_allowed END
$fn$`);

    // p_limits: {"generations_per_period": n, ...}, only the limits the plan sets (usage's
    // five; requests_per_minute is the gateway's). Counters are answered as they were before
    // this call's reservation, as text (bigint-exact).
    this.addSql(`
CREATE FUNCTION quota_check_and_reserve(
  p_subject_id uuid, p_kind text, p_plan text, p_period_anchor timestamptz,
  p_generation_id uuid, p_credits bigint, p_period_start timestamptz, p_day timestamptz,
  p_expires_at timestamptz, p_now timestamptz, p_limits jsonb)
RETURNS TABLE (
  outcome text, reservation jsonb, period_end timestamptz, generations text, credits text, processing_ms text,
  reserved_generations text, reserved_credits text, day_generations text, day_reserved_generations text, active_reservations integer)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
  s subjects%ROWTYPE;
  p period_usage%ROWTYPE;
  d daily_usage%ROWTYPE;
  r quota_reservations%ROWTYPE;
  refused boolean;
BEGIN
  -- The lock: every later statement of this function takes a new snapshot, so it sees
  -- everything committed by whoever held the lock before us.
  INSERT INTO subjects (id, kind, plan, period_anchor) VALUES (p_subject_id, p_kind, p_plan, p_period_anchor)
  ON CONFLICT (id) DO NOTHING;
  SELECT * INTO s FROM subjects WHERE id = p_subject_id FOR UPDATE;
  IF s.period_anchor IS NOT NULL AND s.period_anchor <> p_period_anchor THEN
    -- A re-anchored billing period: the service rebuilds the period counters first.
    RETURN QUERY SELECT 'setup_needed'::text, NULL::jsonb,
      NULL::timestamptz, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, s.active_reservations;
    RETURN;
  END IF;
  IF (s.kind, s.plan, s.period_anchor) IS DISTINCT FROM (p_kind, p_plan, p_period_anchor) THEN
    UPDATE subjects SET kind = p_kind, plan = p_plan, period_anchor = p_period_anchor, updated_at = now() WHERE id = p_subject_id
    RETURNING * INTO s;
  END IF;

  SELECT * INTO r FROM quota_reservations WHERE generation_id = p_generation_id;
  IF FOUND THEN
    RETURN QUERY SELECT 'existing'::text, to_jsonb(r) || jsonb_build_object('credits', r.credits::text),
      NULL::timestamptz, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, s.active_reservations;
    RETURN;
  END IF;

  SELECT * INTO p FROM period_usage WHERE subject_id = p_subject_id AND period_start = p_period_start;
  IF FOUND THEN
    SELECT * INTO d FROM daily_usage WHERE subject_id = p_subject_id AND day = p_day;
  END IF;
  IF p.subject_id IS NULL OR d.subject_id IS NULL THEN
    RETURN QUERY SELECT 'setup_needed'::text, NULL::jsonb,
      NULL::timestamptz, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, s.active_reservations;
    RETURN;
  END IF;

  refused :=
       NOT coalesce(quota_allows(p.generations, p.reserved_generations, 1, (p_limits->>'generations_per_period')::bigint), true)
    OR NOT coalesce(quota_allows(p.credits, p.reserved_credits, p_credits, (p_limits->>'credits_per_period')::bigint), true)
    OR NOT coalesce(quota_allows(p.processing_ms / 1000, 0, 0, (p_limits->>'processing_seconds_per_period')::bigint), true)
    OR NOT coalesce(quota_allows(d.generations, d.reserved_generations, 1, (p_limits->>'generations_per_day')::bigint), true)
    OR NOT coalesce(quota_allows(s.active_reservations, 0, 1, (p_limits->>'concurrent_generations')::bigint), true);

  IF NOT refused THEN
    INSERT INTO quota_reservations (generation_id, subject_id, kind, plan, period_start, day, credits, status, expires_at, created_at, ended_at)
    VALUES (p_generation_id, p_subject_id, p_kind, p_plan, p_period_start, p_day, p_credits, 'active', p_expires_at, p_now, NULL)
    ON CONFLICT (generation_id) DO NOTHING
    RETURNING * INTO r;
    IF NOT FOUND THEN
      -- Another subject's call inserted this generation id meanwhile: answer that reservation.
      SELECT * INTO r FROM quota_reservations WHERE generation_id = p_generation_id;
      RETURN QUERY SELECT 'existing'::text, to_jsonb(r) || jsonb_build_object('credits', r.credits::text),
        NULL::timestamptz, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, s.active_reservations;
      RETURN;
    END IF;
    UPDATE period_usage SET reserved_generations = reserved_generations + 1, reserved_credits = reserved_credits + p_credits, updated_at = now()
     WHERE subject_id = p_subject_id AND period_start = p_period_start;
    UPDATE daily_usage SET reserved_generations = reserved_generations + 1, updated_at = now()
     WHERE subject_id = p_subject_id AND day = p_day;
    UPDATE subjects SET active_reservations = active_reservations + 1 WHERE id = p_subject_id;
  END IF;

  RETURN QUERY SELECT CASE WHEN refused THEN 'refused' ELSE 'reserved' END,
    CASE WHEN refused THEN NULL ELSE to_jsonb(r) || jsonb_build_object('credits', r.credits::text) END,
    p.period_end, p.generations::text, p.credits::text, p.processing_ms::text, p.reserved_generations::text, p.reserved_credits::text,
    d.generations::text, d.reserved_generations::text, s.active_reservations;
END
$fn$`);
  }
}
