/**
 * The runs of migration Migration20261207000001 (part of it: applied with it, never edited):
 * `credits_hold_run` applies consecutive CreateHold and whole CaptureHold members of ONE
 * account as a group, over three helpers: `credits_claim_run` (the members' idempotency keys),
 * `credits_run_start` (the account lock, due grants, balances and grants read once) and
 * `credits_finish_run` (their stored answers).
 */

/**
 * Claims each member's key, in arrival order: a row with outcome 'pending' when this
 * transaction now owns it, 'duplicate' when an earlier member of the run claimed the same key
 * (decided after that member: a replay of its answer, a refusal, or a fresh claim if it failed),
 * else what the key already answers ('replayed' or 'idempotency_key_reused', as
 * `credits_claim_key`).
 */
export const CLAIM_RUN_SQL = `
  CREATE FUNCTION credits_claim_run(p_operations text[], p_request_ids text[], p_fingerprints text[]) RETURNS credits_hold_outcome[]
  LANGUAGE plpgsql AS $$
  DECLARE
    claims credits_hold_outcome[] := '{}';
    r credits_hold_outcome;
    fi integer;
  BEGIN
    FOR i IN 1 .. cardinality(p_request_ids) LOOP
      fi := array_position(p_request_ids, p_request_ids[i]);
      r := NULL;
      IF fi < i AND (claims[fi]).outcome IN ('pending', 'duplicate') THEN
        r.outcome := 'duplicate';
      ELSE
        -- A key this run does not own is as the database holds it (the same for every member naming it).
        r := credits_claim_key(p_request_ids[i], p_operations[i], p_fingerprints[i]);
        IF r.outcome IS NULL THEN r.outcome := 'pending'; END IF;
      END IF;
      claims := claims || r;
    END LOOP;
    RETURN claims;
  END $$`;

/**
 * Stores the answer of every key the run owns at its end (one UPDATE, with the fingerprint of
 * the member that owns it last) and frees the keys whose last owner failed (one DELETE: errors
 * are not stored, a retry re-evaluates).
 */
export const FINISH_RUN_SQL = `
  CREATE FUNCTION credits_finish_run(p_request_ids text[], p_fingerprints text[], p_owners integer[],
                                     p_results credits_hold_outcome[]) RETURNS void
  LANGUAGE plpgsql AS $$
  BEGIN
    WITH owned AS (
      SELECT p_request_ids[o.w] AS request_id, p_fingerprints[o.w] AS fingerprint, (p_results[o.w]).*
      FROM unnest(p_owners) AS o (w) WHERE o.w IS NOT NULL)
    UPDATE idempotency_keys k SET request_fingerprint = owned.fingerprint, answer_hold_id = owned.hold_id,
      answer_hold_status = owned.status, answer_captured_amount = owned.captured_amount, answer_expires_at = owned.expires_at,
      answer_ended_at = owned.ended_at, answer_trial_credits = owned.trial_credits, answer_token_credits = owned.token_credits,
      answer_held_credits = owned.held_credits, answer_extended = owned.extended
      FROM owned WHERE owned.outcome = 'ok' AND k.request_id = owned.request_id;
    DELETE FROM idempotency_keys WHERE request_id IN (
      SELECT p_request_ids[o.w] FROM unnest(p_owners) AS o (w)
      WHERE o.w IS NOT NULL AND (p_results[o.w]).outcome <> 'ok');
  END $$`;


/** Reads what a run decides against, once: due grants written off first (a live account), then the balances and the grants in consumption order. */
export const RUN_START_SQL = `
  CREATE FUNCTION credits_run_start(p_account_id uuid, p_now timestamptz, p_grant_expired_reason text,
    OUT live boolean, OUT available bigint, OUT held bigint, OUT trial_left bigint, OUT token_left bigint,
    OUT g_ids uuid[], OUT g_kinds text[], OUT g_left bigint[])
  LANGUAGE plpgsql AS $$
  BEGIN
    SELECT a.deleted_at IS NULL INTO live FROM accounts a WHERE a.id = p_account_id FOR UPDATE;
    IF live IS NULL THEN RETURN; END IF;
    -- Expired credits are written off first, so no hold can take them.
    IF live THEN PERFORM credits_expire_due_grants(p_account_id, p_now, p_grant_expired_reason); END IF;
    SELECT a.available_credits, a.held_credits INTO available, held FROM accounts a WHERE a.id = p_account_id;
    PERFORM 1 FROM grants WHERE account_id = p_account_id AND remaining_amount > 0 FOR UPDATE;
    SELECT coalesce(array_agg(g.id ORDER BY g.o), '{}'), coalesce(array_agg(g.kind ORDER BY g.o), '{}'),
           coalesce(array_agg(g.remaining_amount ORDER BY g.o), '{}'),
           coalesce(sum(g.remaining_amount) FILTER (WHERE g.kind = 'trial'), 0), coalesce(sum(g.remaining_amount) FILTER (WHERE g.kind <> 'trial'), 0)
      INTO g_ids, g_kinds, g_left, trial_left, token_left
      FROM (SELECT id, kind, remaining_amount, row_number() OVER (
              ORDER BY priority, expires_at NULLS LAST, CASE kind WHEN 'trial' THEN 1 WHEN 'purchased' THEN 2 ELSE 3 END, created_at, id) AS o
            FROM grants WHERE account_id = p_account_id AND remaining_amount > 0) g;
  END $$`;

/**
 * A run: consecutive CreateHold and whole CaptureHold members of ONE account (arrival order),
 * applied as a group with the outcome of each exactly as if applied one after another
 * (credits_create_hold, credits_capture_hold): the account is locked and its due grants written
 * off ONCE (credits_run_start); then each member in turn is a replay, a refusal, or decided
 * against the RUNNING balances: a CreateHold is `not_found`, `insufficient_credits` (with the
 * running available), `conflict` (its generation has a hold, or an earlier member took it) or
 * taken over the grants' running remaining amounts in consumption order (trial first); a
 * CaptureHold locks its hold (after the account, INV-9) and is `hold_not_active` (also when an
 * earlier member captured it) or charged whole. Then ONE conditional `UPDATE accounts` for the
 * run (INV-1), one `UPDATE grants`, one insert of the new holds, one of their allocations, one
 * `UPDATE holds` of the captured ones, and one insert of the ledger entries in member order
 * with the running balances after each (INV-2: the ledger replays to the balance). Each fresh
 * answer's snapshot is the balance read after the run plus what the later members moved: the
 * INV-2 assertions of hold-answers.ts still compare running values with stored ones.
 */
export const HOLD_RUN_SQL = `
  CREATE FUNCTION credits_hold_run(p_account_id uuid, p_members integer[], p_operations text[], p_request_ids text[],
                                   p_fingerprints text[], p_hold_ids uuid[], p_generation_ids text[], p_amounts bigint[],
                                   p_ttls_ms bigint[], p_now timestamptz, p_grant_expired_reason text)
  RETURNS SETOF credits_hold_outcome LANGUAGE plpgsql AS $$
  DECLARE
    n integer := cardinality(p_members);
    res credits_hold_outcome[] := credits_claim_run(p_operations, p_request_ids, p_fingerprints);
    owners integer[] := array_fill(NULL::integer, ARRAY[n]);
    r credits_hold_outcome;
    fin credits_hold_outcome;
    h holds;
    live boolean; available bigint; held bigint; trial_left bigint; token_left bigint;
    g_ids uuid[]; g_kinds text[]; g_left bigint[]; gi integer := 1;
    taken_gens text[] := '{}';
    o_ids uuid[] := '{}'; o_gens text[] := '{}'; o_amounts bigint[] := '{}'; o_trials bigint[] := '{}'; o_expires timestamptz[] := '{}';
    c_ids uuid[] := '{}'; c_amounts bigint[] := '{}'; c_ended timestamptz[] := '{}';
    l_kinds text[] := '{}'; l_holds uuid[] := '{}'; l_gens text[] := '{}'; l_amounts bigint[] := '{}'; l_held_changes bigint[] := '{}';
    l_captured bigint[] := '{}'; l_grant_kinds text[] := '{}'; l_after bigint[] := '{}'; l_held bigint[] := '{}'; l_deadlines timestamptz[] := '{}';
    a_holds uuid[] := '{}'; a_grants uuid[] := '{}'; a_seqs smallint[] := '{}'; a_amounts bigint[] := '{}';
    fi integer; rest bigint; taken bigint; trial bigint; seq smallint; kinds text[]; one_kind text; create_total bigint; capture_total bigint;
  BEGIN
    IF EXISTS (SELECT 1 FROM unnest(res) AS c WHERE c.outcome = 'pending') THEN
      SELECT * INTO live, available, held, trial_left, token_left, g_ids, g_kinds, g_left
        FROM credits_run_start(p_account_id, p_now, p_grant_expired_reason);
      SELECT coalesce(array_agg(generation_id), '{}') INTO taken_gens FROM holds WHERE generation_id = ANY (p_generation_ids);
    END IF;
    FOR i IN 1 .. n LOOP
      r := res[i];
      fi := array_position(p_request_ids, p_request_ids[i]);
      IF r.outcome = 'pending' THEN
        owners[fi] := i;
      ELSIF r.outcome = 'duplicate' THEN
        IF (res[owners[fi]]).outcome = 'ok' THEN
          IF p_fingerprints[owners[fi]] = p_fingerprints[i] THEN
            r := res[owners[fi]]; r.outcome := 'replayed';
          ELSE
            r := NULL; r.outcome := 'idempotency_key_reused';
          END IF;
        ELSE
          owners[fi] := i; -- the earlier member failed and freed the key: this one claims it anew
          r.outcome := 'pending';
        END IF;
      END IF;
      IF r.outcome = 'pending' AND p_operations[i] = 'CreateHold' THEN
        r := NULL;
        IF NOT coalesce(live, false) THEN
          r.outcome := 'not_found';
        ELSIF available < p_amounts[i] THEN
          r.outcome := 'insufficient_credits'; r.error_requested := p_amounts[i]; r.error_available := available;
        ELSIF p_generation_ids[i] = ANY (taken_gens) THEN
          r.outcome := 'conflict';
        ELSE
          r.hold_id := credits_uuid_v7();
          rest := p_amounts[i]; trial := 0; seq := 0; kinds := '{}';
          WHILE rest > 0 LOOP
            IF gi > cardinality(g_ids) THEN RAISE EXCEPTION 'INV-2: grants hold fewer remaining credits than the available balance'; END IF;
            IF g_left[gi] = 0 THEN gi := gi + 1; CONTINUE; END IF;
            taken := least(g_left[gi], rest);
            a_holds := a_holds || r.hold_id; a_grants := a_grants || g_ids[gi]; a_seqs := a_seqs || seq; a_amounts := a_amounts || taken;
            g_left[gi] := g_left[gi] - taken; seq := seq + 1; rest := rest - taken;
            IF NOT g_kinds[gi] = ANY (kinds) THEN kinds := kinds || g_kinds[gi]; END IF;
            IF g_kinds[gi] = 'trial' THEN trial := trial + taken; trial_left := trial_left - taken; ELSE token_left := token_left - taken; END IF;
          END LOOP;
          available := available - p_amounts[i]; held := held + p_amounts[i];
          taken_gens := taken_gens || p_generation_ids[i];
          r.outcome := 'ok'; r.account_id := p_account_id; r.generation_id := p_generation_ids[i]; r.status := 'active';
          r.amount := p_amounts[i]; r.trial_amount := trial; r.token_amount := p_amounts[i] - trial; r.captured_amount := 0;
          r.expires_at := now() + p_ttls_ms[i] * interval '1 millisecond'; r.created_at := now();
          o_ids := o_ids || r.hold_id; o_gens := o_gens || r.generation_id; o_amounts := o_amounts || r.amount;
          o_trials := o_trials || trial; o_expires := o_expires || r.expires_at;
          l_kinds := l_kinds || 'hold'::text; l_amounts := l_amounts || -r.amount; l_held_changes := l_held_changes || r.amount;
          l_captured := l_captured || 0::bigint; l_deadlines := l_deadlines || r.expires_at;
          l_grant_kinds := l_grant_kinds || CASE WHEN cardinality(kinds) = 1 THEN kinds[1] END;
        END IF;
      ELSIF r.outcome = 'pending' THEN
        r := NULL;
        SELECT * INTO h FROM holds WHERE id = p_hold_ids[i] FOR UPDATE;
        IF h.id IS NULL THEN
          r.outcome := 'not_found';
        ELSIF h.status <> 'active' OR h.id = ANY (c_ids) THEN
          r.outcome := 'hold_not_active'; r.hold_id := h.id; r.error_status := CASE WHEN h.id = ANY (c_ids) THEN 'captured' ELSE h.status END;
        ELSE
          SELECT CASE WHEN count(DISTINCT g.kind) = 1 THEN min(g.kind) END INTO one_kind
            FROM hold_allocations a JOIN grants g ON g.id = a.grant_id WHERE a.hold_id = h.id;
          held := held - h.amount;
          r.outcome := 'ok'; r.hold_id := h.id; r.account_id := h.account_id; r.generation_id := h.generation_id; r.status := 'captured';
          r.amount := h.amount; r.trial_amount := h.trial_amount; r.token_amount := h.token_amount; r.captured_amount := h.amount;
          r.expires_at := h.expires_at; r.created_at := h.created_at; r.ended_at := clock_timestamp();
          c_ids := c_ids || h.id; c_amounts := c_amounts || h.amount; c_ended := c_ended || r.ended_at;
          l_kinds := l_kinds || 'capture'::text; l_amounts := l_amounts || 0::bigint; l_held_changes := l_held_changes || -h.amount;
          l_captured := l_captured || h.amount; l_deadlines := l_deadlines || NULL::timestamptz; l_grant_kinds := l_grant_kinds || one_kind;
        END IF;
      END IF;
      IF r.outcome = 'ok' THEN -- decided just now: the running balances after it
        r.extended := false; r.trial_credits := trial_left; r.token_credits := token_left; r.held_credits := held;
        r.last_balance_after := available; r.last_held_after := held;
        l_holds := l_holds || r.hold_id; l_gens := l_gens || r.generation_id; l_after := l_after || available; l_held := l_held || held;
      END IF;
      res[i] := r;
    END LOOP;
    IF cardinality(l_kinds) > 0 THEN
      SELECT coalesce(sum(x), 0) INTO create_total FROM unnest(o_amounts) AS x;
      SELECT coalesce(sum(x), 0) INTO capture_total FROM unnest(c_amounts) AS x;
      UPDATE accounts SET available_credits = available_credits - create_total,
                          held_credits = held_credits + create_total - capture_total, captured_credits = captured_credits + capture_total
        WHERE id = p_account_id AND available_credits >= create_total;
      IF NOT FOUND THEN RAISE EXCEPTION 'INV-1: the run took more than the available balance'; END IF;
      UPDATE grants gr SET remaining_amount = gr.remaining_amount - v.taken
        FROM (SELECT u.id, sum(u.amount) AS taken FROM unnest(a_grants, a_amounts) AS u (id, amount) GROUP BY u.id) v
        WHERE gr.id = v.id;
      INSERT INTO holds (id, account_id, generation_id, status, amount, trial_amount, token_amount, expires_at, created_at)
        SELECT u.id, p_account_id, u.gen, 'active', u.amount, u.trial, u.amount - u.trial, u.expires, now()
        FROM unnest(o_ids, o_gens, o_amounts, o_trials, o_expires) AS u (id, gen, amount, trial, expires);
      INSERT INTO hold_allocations (hold_id, grant_id, sequence, amount) SELECT * FROM unnest(a_holds, a_grants, a_seqs, a_amounts);
      UPDATE holds hd SET status = 'captured', captured_amount = v.amount, release_reason = NULL, ended_at = v.ended
        FROM unnest(c_ids, c_amounts, c_ended) AS v (id, amount, ended) WHERE hd.id = v.id AND hd.status = 'active';
      INSERT INTO ledger_entries (id, account_id, kind, amount, held_change, captured_change, grant_kind, hold_id, generation_id,
                                  balance_after, held_after, hold_deadline, created_at)
        SELECT credits_uuid_v7(), p_account_id, u.kind, u.amount, u.held_change, u.captured, u.grant_kind, u.hold, u.gen,
               u.after, u.held, u.deadline, clock_timestamp()
        FROM unnest(l_kinds, l_amounts, l_held_changes, l_captured, l_grant_kinds, l_holds, l_gens, l_after, l_held, l_deadlines)
          WITH ORDINALITY AS u (kind, amount, held_change, captured, grant_kind, hold, gen, after, held, deadline, k)
        ORDER BY u.k;
      fin := credits_fill_balance(fin, p_account_id);
    END IF;
    PERFORM credits_finish_run(p_request_ids, p_fingerprints, owners, res);
    FOR i IN 1 .. n LOOP
      r := res[i];
      r.member := p_members[i];
      IF r.outcome = 'ok' THEN
        -- The stored balances after this member: those read after the run plus what later members moved.
        r.stored_available := fin.stored_available + (r.last_balance_after - available);
        r.stored_total := fin.stored_total; r.granted := fin.granted;
        r.last_balance_after := fin.last_balance_after + (r.last_balance_after - available);
        r.last_held_after := fin.last_held_after + (r.last_held_after - held);
      END IF;
      RETURN NEXT r;
    END LOOP;
  END $$`;
