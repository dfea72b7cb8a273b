import { Migration } from "@mikro-orm/migrations";
import { CAPTURE_HOLD_SQL, CREATE_HOLD_SQL, EXTEND_HOLD_SQL, OPERATIONS_SQL, RELEASE_HOLD_SQL } from "./Migration20261206000001-hold-functions";

/**
 * Hold operations in the database, one statement each (and many in one statement: group commit).
 *
 * - `credits_uuid_v7()`: time-ordered ids (UUIDv7: 48 bits of Unix milliseconds, version 7,
 *   random rest) for the rows the hot path inserts (holds, hold allocations' holds, ledger
 *   entries), so new rows land at the right edge of their primary-key index.
 * - `idempotency_keys.answer_*`: the first answer of a hold operation, compact (the hold id,
 *   its status, captured amount and times, the balance and the extension flag; the hold's fixed
 *   fields are read back from `holds`), instead of the whole answer as JSON in `response`.
 * - `credits_hold_operations(...)`: applies CreateHold, CaptureHold, ReleaseHold and ExtendHold
 *   members given as parallel arrays, in one transaction, and returns one row per member
 *   (`credits_hold_outcome`). Members are applied account by account (ascending account id,
 *   arrival order within an account), so two concurrent batches lock accounts in one order
 *   (INV-9). Each member claims its idempotency key, answers a retry from the stored answer
 *   (INV-4), writes off the account's due grants first, moves the account balance with one
 *   conditional UPDATE (INV-1), allocates over grants in consumption order (trial first, as
 *   domain/allocation.ts), writes the hold, its allocations and the ledger entries with the
 *   balances after them (INV-2), and stores its answer. An expected failure (not_found,
 *   insufficient_credits, conflict, hold_not_active, validation, idempotency_key_reused) is
 *   RETURNED as the member's outcome after undoing nothing but its key claim (it wrote no
 *   movement), so the other members still commit.
 */
export class Migration20261206000001 extends Migration {
  override async up(): Promise<void> {
    this.addSql(UUID_V7_SQL);
    this.addSql(`
      ALTER TABLE idempotency_keys
        ADD COLUMN answer_hold_id uuid,
        ADD COLUMN answer_hold_status text,
        ADD COLUMN answer_captured_amount bigint,
        ADD COLUMN answer_expires_at timestamptz,
        ADD COLUMN answer_ended_at timestamptz,
        ADD COLUMN answer_trial_credits bigint,
        ADD COLUMN answer_token_credits bigint,
        ADD COLUMN answer_held_credits bigint,
        ADD COLUMN answer_extended boolean`);
    this.addSql(OUTCOME_TYPE_SQL);
    for (const statement of [EXPIRE_DUE_GRANTS_SQL, BALANCE_SQL, ANSWER_SQL, CLAIM_SQL, FINISH_SQL, LOCK_ACTIVE_HOLD_SQL, GIVE_BACK_SQL]) {
      this.addSql(statement);
    }
    for (const statement of [CREATE_HOLD_SQL, CAPTURE_HOLD_SQL, RELEASE_HOLD_SQL, EXTEND_HOLD_SQL, OPERATIONS_SQL]) this.addSql(statement);
  }
}

const UUID_V7_SQL = `
  CREATE FUNCTION credits_uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(
      set_bit(set_bit(
        overlay(uuid_send(gen_random_uuid())
          placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
          FROM 1 FOR 6),
        52, 1), 53, 1),
      'hex')::uuid
  $$`;

/** One member's outcome: 'ok', 'replayed' or an error reason; the hold and balance when it has one. */
const OUTCOME_TYPE_SQL = `
  CREATE TYPE credits_hold_outcome AS (
    member integer,
    outcome text,
    legacy_answer bytea,
    error_requested bigint,
    error_available bigint,
    error_status text,
    error_held bigint,
    hold_id uuid,
    account_id uuid,
    generation_id text,
    status text,
    amount bigint,
    trial_amount bigint,
    token_amount bigint,
    captured_amount bigint,
    expires_at timestamptz,
    created_at timestamptz,
    ended_at timestamptz,
    trial_credits bigint,
    token_credits bigint,
    held_credits bigint,
    extended boolean,
    stored_available bigint,
    stored_total bigint,
    granted bigint,
    last_balance_after bigint,
    last_held_after bigint
  )`;

const EXPIRE_DUE_GRANTS_SQL = `
  CREATE FUNCTION credits_expire_due_grants(p_account_id uuid, p_now timestamptz, p_reason text) RETURNS void
  LANGUAGE plpgsql AS $$
  DECLARE
    g record;
    acc record;
  BEGIN
    FOR g IN SELECT id, kind, remaining_amount FROM grants
             WHERE account_id = p_account_id AND remaining_amount > 0 AND expires_at <= p_now ORDER BY id FOR UPDATE
    LOOP
      UPDATE grants SET remaining_amount = 0 WHERE id = g.id;
      UPDATE accounts SET available_credits = available_credits - g.remaining_amount,
                          expired_credits = expired_credits + g.remaining_amount
        WHERE id = p_account_id RETURNING available_credits, held_credits INTO acc;
      INSERT INTO ledger_entries (id, account_id, kind, amount, expired_change, grant_kind, grant_id, reason,
                                  balance_after, held_after, created_at)
        VALUES (credits_uuid_v7(), p_account_id, 'expiry', -g.remaining_amount, g.remaining_amount, g.kind, g.id, p_reason,
                acc.available_credits, acc.held_credits, clock_timestamp());
    END LOOP;
  END $$`;

const BALANCE_SQL = `
  CREATE FUNCTION credits_fill_balance(r credits_hold_outcome, p_account_id uuid) RETURNS credits_hold_outcome
  LANGUAGE plpgsql VOLATILE AS $$
  BEGIN
    SELECT coalesce(g.trial, 0), coalesce(g.token, 0), a.held_credits, a.available_credits,
           a.available_credits + a.held_credits + a.captured_credits + a.expired_credits + a.written_off_credits,
           coalesce(g.granted, 0), l.balance_after, l.held_after
      INTO r.trial_credits, r.token_credits, r.held_credits, r.stored_available, r.stored_total, r.granted,
           r.last_balance_after, r.last_held_after
      FROM accounts a
      LEFT JOIN LATERAL (
        SELECT sum(remaining_amount) FILTER (WHERE kind = 'trial') AS trial,
               sum(remaining_amount) FILTER (WHERE kind <> 'trial') AS token, sum(amount) AS granted
        FROM grants WHERE account_id = a.id) g ON true
      LEFT JOIN LATERAL (
        SELECT balance_after, held_after FROM ledger_entries WHERE account_id = a.id ORDER BY position DESC LIMIT 1) l ON true
      WHERE a.id = p_account_id;
    RETURN r;
  END $$`;

const ANSWER_SQL = `
  CREATE FUNCTION credits_hold_answer(h holds, p_extended boolean) RETURNS credits_hold_outcome
  LANGUAGE plpgsql VOLATILE AS $$
  DECLARE
    r credits_hold_outcome;
  BEGIN
    r.outcome := 'ok';
    r.hold_id := h.id; r.account_id := h.account_id; r.generation_id := h.generation_id; r.status := h.status;
    r.amount := h.amount; r.trial_amount := h.trial_amount; r.token_amount := h.token_amount;
    r.captured_amount := h.captured_amount; r.expires_at := h.expires_at; r.created_at := h.created_at;
    r.ended_at := h.ended_at; r.extended := p_extended;
    RETURN credits_fill_balance(r, h.account_id);
  END $$`;

/** Claims the key (NULL outcome: this transaction owns it now) or answers from what it holds. */
const CLAIM_SQL = `
  CREATE FUNCTION credits_claim_key(p_request_id text, p_operation text, p_fingerprint text) RETURNS credits_hold_outcome
  LANGUAGE plpgsql AS $$
  DECLARE
    k idempotency_keys;
    r credits_hold_outcome;
  BEGIN
    INSERT INTO idempotency_keys (request_id, operation, request_fingerprint) VALUES (p_request_id, p_operation, p_fingerprint)
      ON CONFLICT (request_id) DO NOTHING;
    IF FOUND THEN RETURN r; END IF;
    SELECT * INTO k FROM idempotency_keys WHERE request_id = p_request_id;
    IF k.request_fingerprint <> p_fingerprint OR (k.response IS NULL AND k.answer_hold_id IS NULL) THEN
      r.outcome := 'idempotency_key_reused';
      RETURN r;
    END IF;
    IF k.answer_hold_id IS NULL THEN
      r.outcome := 'replayed';
      r.legacy_answer := k.response;
      RETURN r;
    END IF;
    SELECT id, account_id, generation_id, amount, trial_amount, token_amount, created_at
      INTO r.hold_id, r.account_id, r.generation_id, r.amount, r.trial_amount, r.token_amount, r.created_at
      FROM holds WHERE id = k.answer_hold_id;
    r.outcome := 'replayed';
    r.status := k.answer_hold_status; r.captured_amount := k.answer_captured_amount;
    r.expires_at := k.answer_expires_at; r.ended_at := k.answer_ended_at;
    r.trial_credits := k.answer_trial_credits; r.token_credits := k.answer_token_credits;
    r.held_credits := k.answer_held_credits; r.extended := k.answer_extended;
    RETURN r;
  END $$`;

/** Stores an 'ok' answer on the claimed key; an error frees the key (errors are not stored: a retry re-evaluates). */
const FINISH_SQL = `
  CREATE FUNCTION credits_finish(p_request_id text, r credits_hold_outcome) RETURNS credits_hold_outcome
  LANGUAGE plpgsql AS $$
  BEGIN
    IF r.outcome = 'ok' THEN
      UPDATE idempotency_keys SET answer_hold_id = r.hold_id, answer_hold_status = r.status,
        answer_captured_amount = r.captured_amount, answer_expires_at = r.expires_at, answer_ended_at = r.ended_at,
        answer_trial_credits = r.trial_credits, answer_token_credits = r.token_credits,
        answer_held_credits = r.held_credits, answer_extended = r.extended
        WHERE request_id = p_request_id;
    ELSE
      DELETE FROM idempotency_keys WHERE request_id = p_request_id;
    END IF;
    RETURN r;
  END $$`;

/** Locks the hold's account, then the hold (INV-9); a row of NULLs when there is no such hold. */
const LOCK_ACTIVE_HOLD_SQL = `
  CREATE FUNCTION credits_lock_hold(p_hold_id uuid) RETURNS holds
  LANGUAGE plpgsql AS $$
  DECLARE
    acc uuid;
    h holds;
  BEGIN
    SELECT account_id INTO acc FROM holds WHERE id = p_hold_id;
    IF NOT FOUND THEN RETURN h; END IF;
    PERFORM 1 FROM accounts WHERE id = acc FOR UPDATE;
    SELECT * INTO h FROM holds WHERE id = p_hold_id FOR UPDATE;
    RETURN h;
  END $$`;

/** Returns allocations to their grants and the available balance with one entry (INV-2), then writes off what went back to an expired grant. */
const GIVE_BACK_SQL = `
  CREATE FUNCTION credits_give_back(h holds, p_grant_ids uuid[], p_amounts bigint[], p_kinds text[], p_kind text,
                                    p_reason text, p_now timestamptz, p_grant_expired_reason text) RETURNS void
  LANGUAGE plpgsql AS $$
  DECLARE
    total bigint;
    one_kind text;
    acc record;
  BEGIN
    SELECT sum(x) INTO total FROM unnest(p_amounts) AS x;
    IF total IS NULL OR total <= 0 THEN RAISE EXCEPTION 'INV-2: a give-back returns a positive amount'; END IF;
    UPDATE grants g SET remaining_amount = g.remaining_amount + v.amount
      FROM unnest(p_grant_ids, p_amounts) AS v (id, amount) WHERE g.id = v.id;
    UPDATE accounts SET available_credits = available_credits + total, held_credits = held_credits - total
      WHERE id = h.account_id RETURNING available_credits, held_credits INTO acc;
    SELECT CASE WHEN count(DISTINCT k) = 1 THEN min(k) END INTO one_kind FROM unnest(p_kinds) AS k;
    INSERT INTO ledger_entries (id, account_id, kind, amount, held_change, grant_kind, hold_id, generation_id, reason,
                                balance_after, held_after, created_at)
      VALUES (credits_uuid_v7(), h.account_id, p_kind, total, -total, one_kind, h.id, h.generation_id, p_reason,
              acc.available_credits, acc.held_credits, clock_timestamp());
    PERFORM credits_expire_due_grants(h.account_id, p_now, p_grant_expired_reason);
  END $$`;
