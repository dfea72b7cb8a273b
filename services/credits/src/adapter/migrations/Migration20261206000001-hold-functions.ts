/**
 * The hold operations of migration Migration20261206000001 (part of it: applied with it, never
 * edited): one function per operation and the set form `credits_hold_operations`, over the
 * helpers that migration creates first.
 */
export const CREATE_HOLD_SQL = `
  CREATE FUNCTION credits_create_hold(p_request_id text, p_fingerprint text, p_account_id uuid, p_generation_id text,
                                      p_amount bigint, p_ttl_ms bigint, p_now timestamptz, p_grant_expired_reason text)
  RETURNS credits_hold_outcome LANGUAGE plpgsql AS $$
  DECLARE
    r credits_hold_outcome;
    acc record;
    g record;
    h holds;
    available bigint;
    rest bigint := p_amount;
    taken bigint;
    grant_ids uuid[] := '{}';
    amounts bigint[] := '{}';
    kinds text[] := '{}';
    trial bigint := 0;
    one_kind text;
  BEGIN
    r := credits_claim_key(p_request_id, 'CreateHold', p_fingerprint);
    IF r.outcome IS NOT NULL THEN RETURN r; END IF;
    PERFORM 1 FROM accounts WHERE id = p_account_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN r.outcome := 'not_found'; RETURN credits_finish(p_request_id, r); END IF;
    -- Expired credits are written off first, so the hold can never take them.
    PERFORM credits_expire_due_grants(p_account_id, p_now, p_grant_expired_reason);
    SELECT available_credits INTO available FROM accounts WHERE id = p_account_id;
    IF available < p_amount THEN
      r.outcome := 'insufficient_credits'; r.error_requested := p_amount; r.error_available := available;
      RETURN credits_finish(p_request_id, r);
    END IF;
    IF EXISTS (SELECT 1 FROM holds WHERE generation_id = p_generation_id) THEN
      r.outcome := 'conflict'; RETURN credits_finish(p_request_id, r);
    END IF;
    UPDATE accounts SET available_credits = available_credits - p_amount, held_credits = held_credits + p_amount
      WHERE id = p_account_id AND available_credits >= p_amount RETURNING available_credits, held_credits INTO acc;
    FOR g IN SELECT id, kind, remaining_amount FROM grants WHERE account_id = p_account_id AND remaining_amount > 0
             ORDER BY priority, expires_at NULLS LAST, CASE kind WHEN 'trial' THEN 1 WHEN 'purchased' THEN 2 ELSE 3 END,
                      created_at, id
             FOR UPDATE
    LOOP
      EXIT WHEN rest = 0;
      taken := least(g.remaining_amount, rest);
      grant_ids := grant_ids || g.id; amounts := amounts || taken; kinds := kinds || g.kind;
      IF g.kind = 'trial' THEN trial := trial + taken; END IF;
      rest := rest - taken;
    END LOOP;
    IF rest <> 0 THEN RAISE EXCEPTION 'INV-2: grants hold fewer remaining credits than the available balance'; END IF;
    UPDATE grants gr SET remaining_amount = gr.remaining_amount - v.amount
      FROM unnest(grant_ids, amounts) AS v (id, amount) WHERE gr.id = v.id;
    INSERT INTO holds (id, account_id, generation_id, status, amount, trial_amount, token_amount, expires_at)
      VALUES (credits_uuid_v7(), p_account_id, p_generation_id, 'active', p_amount, trial, p_amount - trial,
              now() + p_ttl_ms * interval '1 millisecond')
      RETURNING * INTO h;
    INSERT INTO hold_allocations (hold_id, grant_id, sequence, amount)
      SELECT h.id, v.id, (v.n - 1)::smallint, v.amount FROM unnest(grant_ids, amounts) WITH ORDINALITY AS v (id, amount, n);
    SELECT CASE WHEN count(DISTINCT k) = 1 THEN min(k) END INTO one_kind FROM unnest(kinds) AS k;
    INSERT INTO ledger_entries (id, account_id, kind, amount, held_change, grant_kind, hold_id, generation_id,
                                balance_after, held_after, hold_deadline, created_at)
      VALUES (credits_uuid_v7(), p_account_id, 'hold', -p_amount, p_amount, one_kind, h.id, h.generation_id,
              acc.available_credits, acc.held_credits, h.expires_at, clock_timestamp());
    RETURN credits_finish(p_request_id, credits_hold_answer(h, false));
  END $$`;

/** The checks every movement of an existing hold starts with: not_found, then hold_not_active. */
const HOLD_CHECKS = `
    IF h.id IS NULL THEN r.outcome := 'not_found'; RETURN credits_finish(p_request_id, r); END IF;
    IF h.status <> 'active' THEN
      r.outcome := 'hold_not_active'; r.hold_id := h.id; r.error_status := h.status;
      RETURN credits_finish(p_request_id, r);
    END IF;`;

export const CAPTURE_HOLD_SQL = `
  CREATE FUNCTION credits_capture_hold(p_request_id text, p_fingerprint text, p_hold_id uuid, p_amount bigint,
                                       p_capture_rest_reason text, p_now timestamptz, p_grant_expired_reason text)
  RETURNS credits_hold_outcome LANGUAGE plpgsql AS $$
  DECLARE
    r credits_hold_outcome;
    h holds;
    al record;
    acc record;
    captured bigint;
    to_charge bigint;
    charge bigint;
    charged_kinds text[] := '{}';
    one_kind text;
    back_grants uuid[] := '{}';
    back_amounts bigint[] := '{}';
    back_kinds text[] := '{}';
  BEGIN
    r := credits_claim_key(p_request_id, 'CaptureHold', p_fingerprint);
    IF r.outcome IS NOT NULL THEN RETURN r; END IF;
    h := credits_lock_hold(p_hold_id);${HOLD_CHECKS}
    captured := coalesce(p_amount, h.amount);
    IF captured > h.amount THEN
      r.outcome := 'validation'; r.error_held := h.amount; r.error_requested := captured;
      RETURN credits_finish(p_request_id, r);
    END IF;
    -- The charge burns allocations in the order taken; the rest goes back to the grants taken last.
    to_charge := captured;
    FOR al IN SELECT a.grant_id, g.kind, a.amount FROM hold_allocations a JOIN grants g ON g.id = a.grant_id
              WHERE a.hold_id = h.id ORDER BY a.sequence
    LOOP
      charge := least(al.amount, to_charge);
      to_charge := to_charge - charge;
      IF charge > 0 THEN charged_kinds := charged_kinds || al.kind; END IF;
      IF al.amount - charge > 0 THEN
        back_grants := back_grants || al.grant_id; back_amounts := back_amounts || (al.amount - charge);
        back_kinds := back_kinds || al.kind;
      END IF;
    END LOOP;
    UPDATE accounts SET held_credits = held_credits - captured, captured_credits = captured_credits + captured
      WHERE id = h.account_id RETURNING available_credits, held_credits INTO acc;
    SELECT CASE WHEN count(DISTINCT k) = 1 THEN min(k) END INTO one_kind FROM unnest(charged_kinds) AS k;
    INSERT INTO ledger_entries (id, account_id, kind, amount, held_change, captured_change, grant_kind, hold_id, generation_id,
                                balance_after, held_after, created_at)
      VALUES (credits_uuid_v7(), h.account_id, 'capture', 0, -captured, captured, one_kind, h.id, h.generation_id,
              acc.available_credits, acc.held_credits, clock_timestamp());
    IF cardinality(back_grants) > 0 THEN
      PERFORM credits_give_back(h, back_grants, back_amounts, back_kinds, 'release', p_capture_rest_reason, p_now, p_grant_expired_reason);
    END IF;
    UPDATE holds SET status = 'captured', captured_amount = captured, release_reason = NULL, ended_at = clock_timestamp()
      WHERE id = h.id AND status = 'active' RETURNING * INTO h;
    RETURN credits_finish(p_request_id, credits_hold_answer(h, false));
  END $$`;

export const RELEASE_HOLD_SQL = `
  CREATE FUNCTION credits_release_hold(p_request_id text, p_fingerprint text, p_hold_id uuid, p_reason text,
                                       p_now timestamptz, p_grant_expired_reason text)
  RETURNS credits_hold_outcome LANGUAGE plpgsql AS $$
  DECLARE
    r credits_hold_outcome;
    h holds;
    back_grants uuid[];
    back_amounts bigint[];
    back_kinds text[];
  BEGIN
    r := credits_claim_key(p_request_id, 'ReleaseHold', p_fingerprint);
    IF r.outcome IS NOT NULL THEN RETURN r; END IF;
    h := credits_lock_hold(p_hold_id);${HOLD_CHECKS}
    SELECT array_agg(a.grant_id ORDER BY a.sequence), array_agg(a.amount ORDER BY a.sequence), array_agg(g.kind ORDER BY a.sequence)
      INTO back_grants, back_amounts, back_kinds
      FROM hold_allocations a JOIN grants g ON g.id = a.grant_id WHERE a.hold_id = h.id;
    PERFORM credits_give_back(h, back_grants, back_amounts, back_kinds, 'release', p_reason, p_now, p_grant_expired_reason);
    UPDATE holds SET status = 'released', captured_amount = 0, release_reason = p_reason, ended_at = clock_timestamp()
      WHERE id = h.id AND status = 'active' RETURNING * INTO h;
    RETURN credits_finish(p_request_id, credits_hold_answer(h, false));
  END $$`;

export const EXTEND_HOLD_SQL = `
  CREATE FUNCTION credits_extend_hold(p_request_id text, p_fingerprint text, p_hold_id uuid, p_ttl_ms bigint)
  RETURNS credits_hold_outcome LANGUAGE plpgsql AS $$
  DECLARE
    r credits_hold_outcome;
    h holds;
    extended holds;
  BEGIN
    r := credits_claim_key(p_request_id, 'ExtendHold', p_fingerprint);
    IF r.outcome IS NOT NULL THEN RETURN r; END IF;
    h := credits_lock_hold(p_hold_id);${HOLD_CHECKS}
    UPDATE holds SET expires_at = greatest(expires_at, clock_timestamp() + p_ttl_ms * interval '1 millisecond')
      WHERE id = h.id AND status = 'active' RETURNING * INTO extended;
    r := credits_hold_answer(extended, extended.expires_at > h.expires_at);
    IF r.extended THEN
      INSERT INTO ledger_entries (id, account_id, kind, amount, hold_id, generation_id, balance_after, held_after,
                                  hold_deadline, created_at)
        VALUES (credits_uuid_v7(), h.account_id, 'extension', 0, h.id, h.generation_id, r.stored_available, r.held_credits,
                extended.expires_at, clock_timestamp());
    END IF;
    RETURN credits_finish(p_request_id, r);
  END $$`;

/**
 * The set form: members as parallel arrays (one element each), applied account by account in
 * ascending account id (a member naming a hold is on the hold's account; unknown holds first),
 * in arrival order within an account; one result row per member, `member` its 1-based index.
 */
export const OPERATIONS_SQL = `
  CREATE FUNCTION credits_hold_operations(
    p_operations text[], p_request_ids text[], p_fingerprints text[], p_account_ids uuid[], p_hold_ids uuid[],
    p_generation_ids text[], p_amounts bigint[], p_ttls_ms bigint[], p_reasons text[],
    p_now timestamptz, p_capture_rest_reason text, p_grant_expired_reason text)
  RETURNS SETOF credits_hold_outcome LANGUAGE plpgsql AS $$
  DECLARE
    m record;
    r credits_hold_outcome;
  BEGIN
    FOR m IN
      SELECT o.*, coalesce(o.account_id, (SELECT h.account_id FROM holds h WHERE h.id = o.hold_id)) AS lock_account
      FROM unnest(p_operations, p_request_ids, p_fingerprints, p_account_ids, p_hold_ids, p_generation_ids, p_amounts,
                  p_ttls_ms, p_reasons) WITH ORDINALITY
        AS o (operation, request_id, fingerprint, account_id, hold_id, generation_id, amount, ttl_ms, reason, n)
      ORDER BY lock_account NULLS FIRST, n
    LOOP
      IF m.operation = 'CreateHold' THEN
        r := credits_create_hold(m.request_id, m.fingerprint, m.account_id, m.generation_id, m.amount, m.ttl_ms, p_now, p_grant_expired_reason);
      ELSIF m.operation = 'CaptureHold' THEN
        r := credits_capture_hold(m.request_id, m.fingerprint, m.hold_id, m.amount, p_capture_rest_reason, p_now, p_grant_expired_reason);
      ELSIF m.operation = 'ReleaseHold' THEN
        r := credits_release_hold(m.request_id, m.fingerprint, m.hold_id, m.reason, p_now, p_grant_expired_reason);
      ELSIF m.operation = 'ExtendHold' THEN
        r := credits_extend_hold(m.request_id, m.fingerprint, m.hold_id, m.ttl_ms);
      ELSE
        RAISE EXCEPTION 'unknown hold operation %', m.operation;
      END IF;
      r.member := m.n;
      RETURN NEXT r;
    END LOOP;
  END $$`;
