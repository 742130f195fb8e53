-- The posting routines: the tenant write fence, `ledger_apply` (the one routine that folds balance effects
-- into the three caches, used by the sync path and by the workers), `ledger_post` and `ledger_transition`.
-- Each posting is one call, one round trip: no row lock is ever held across a client round trip.
--
-- A sync posting hands its own effects to ledger_apply, which folds every queued effect of the locked
-- accounts first, then the new ones, and inserts those already applied: a balance lock is never checked
-- against a stale balance, and each entry's resulting balance includes everything committed before it.
--
-- Error codes raised here (SQLSTATE class LG, translated in cell/store/errors.py):
--   LG001 balance_lock_failed   LG002 lock_version_mismatch  LG003 tenant_frozen
--   LG004 idempotency_in_flight LG005 not_found             LG006 invalid_status_transition
--   LG007 already_reversed      LG008 version_conflict       LG009 insert_only
--   LG011 unknown_tenant        LG012 tenant_moved

CREATE FUNCTION ledger_fence(p_tenant text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
BEGIN
    -- Shared advisory lock: a tenant move takes the exclusive form to wait out every write in flight.
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('tenant:' || p_tenant, 0));
    SELECT state INTO v_state FROM tenants WHERE id = p_tenant;
    IF v_state IS NULL THEN
        RAISE EXCEPTION 'unknown tenant' USING ERRCODE = 'LG011';
    ELSIF v_state = 'frozen' THEN
        RAISE EXCEPTION 'tenant is frozen for a move' USING ERRCODE = 'LG003';
    ELSIF v_state = 'moved_out' THEN
        RAISE EXCEPTION 'tenant has moved to another cell' USING ERRCODE = 'LG012';
    END IF;
END $$;

-- Claim an idempotency key inside the caller's transaction. Returns true when the key was already used
-- (the caller replays or rejects); raises LG004 when another request holding the key is still in flight.
CREATE FUNCTION ledger_claim_key(p_tenant text, p_key text, p_hash bytea, p_type text, p_resource uuid)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('idem:' || p_tenant || ':' || p_key, 0)) THEN
        RAISE EXCEPTION 'a request with this idempotency key is in flight' USING ERRCODE = 'LG004';
    END IF;
    PERFORM 1 FROM idempotency_keys WHERE tenant_id = p_tenant AND key = p_key;
    IF FOUND THEN
        RETURN true;
    END IF;
    INSERT INTO idempotency_keys (tenant_id, key, request_hash, resource_type, resource_id)
    VALUES (p_tenant, p_key, p_hash, p_type, p_resource);
    RETURN false;
END $$;

-- A balance effect a posting or transition is about to write, handed to ledger_apply (applied now) or
-- inserted unapplied (left for the workers).
CREATE TYPE ledger_new_effect AS (
    account_id        uuid,
    entry_id          uuid,
    kind              text,
    d_pending_debits  bigint,
    d_pending_credits bigint,
    d_posted_debits   bigint,
    d_posted_credits  bigint,
    effective_at      timestamptz
);

-- Lock the accounts' total-balance rows in sorted order (never a deadlock); fold every queued effect of
-- those accounts in sequence order, then p_new (the caller's own effects, in the order given), into the
-- total, effective-time and resulting caches. With p_skip_locked, accounts locked by someone else are left
-- for them (p_new must then be empty). Returns the number of effects applied.
CREATE FUNCTION ledger_apply(p_accounts uuid[], p_skip_locked boolean DEFAULT false,
                             p_tenant text DEFAULT NULL, p_new ledger_new_effect[] DEFAULT '{}')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_locked uuid[];
    v_applied integer;
BEGIN
    IF p_skip_locked THEN
        SELECT array_agg(account_id) INTO v_locked FROM (
            SELECT account_id FROM account_balances WHERE account_id = ANY(p_accounts)
            ORDER BY account_id FOR UPDATE SKIP LOCKED) s;
    ELSE
        SELECT array_agg(account_id) INTO v_locked FROM (
            SELECT account_id FROM account_balances WHERE account_id = ANY(p_accounts)
            ORDER BY account_id FOR UPDATE) s;
    END IF;
    IF cardinality(p_new) > 0 AND EXISTS (
            SELECT 1 FROM unnest(p_new) n WHERE v_locked IS NULL OR n.account_id <> ALL(v_locked)) THEN
        RAISE EXCEPTION 'ledger_apply: a new effect names an account that is not locked';
    END IF;
    IF v_locked IS NULL THEN
        RETURN 0;
    END IF;

    WITH src AS (
        SELECT e.seq, 0::bigint AS ord, e.account_id, e.entry_id, e.kind, e.effective_at,
               e.d_pending_debits, e.d_pending_credits, e.d_posted_debits, e.d_posted_credits
        FROM balance_effects e
        WHERE e.account_id = ANY(v_locked) AND e.applied_at IS NULL
        UNION ALL
        SELECT NULL, n.ord, n.account_id, n.entry_id, n.kind, n.effective_at,
               n.d_pending_debits, n.d_pending_credits, n.d_posted_debits, n.d_posted_credits
        FROM unnest(p_new) WITH ORDINALITY AS n(account_id, entry_id, kind, d_pending_debits, d_pending_credits,
                                                d_posted_debits, d_posted_credits, effective_at, ord)
    ), eff AS (
        SELECT src.*,
               row_number() OVER w AS rn,
               sum(d_pending_debits) OVER w AS c_pending_debits,
               sum(d_pending_credits) OVER w AS c_pending_credits,
               sum(d_posted_debits) OVER w AS c_posted_debits,
               sum(d_posted_credits) OVER w AS c_posted_credits
        FROM src
        WINDOW w AS (PARTITION BY account_id ORDER BY seq IS NULL, seq, ord
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    ), marked AS (
        UPDATE balance_effects be
        SET applied_at = clock_timestamp(),
            lock_version = b.lock_version + eff.rn,
            pending_debits = b.pending_debits + eff.c_pending_debits,
            pending_credits = b.pending_credits + eff.c_pending_credits,
            posted_debits = b.posted_debits + eff.c_posted_debits,
            posted_credits = b.posted_credits + eff.c_posted_credits
        FROM eff JOIN account_balances b ON b.account_id = eff.account_id
        WHERE eff.seq IS NOT NULL AND be.seq = eff.seq
        RETURNING 1
    ), inserted AS (
        INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,
                                     d_posted_debits, d_posted_credits, effective_at, applied_at, lock_version,
                                     pending_debits, pending_credits, posted_debits, posted_credits)
        SELECT p_tenant, eff.account_id, eff.entry_id, eff.kind, eff.d_pending_debits, eff.d_pending_credits,
               eff.d_posted_debits, eff.d_posted_credits, eff.effective_at, clock_timestamp(),
               b.lock_version + eff.rn, b.pending_debits + eff.c_pending_debits,
               b.pending_credits + eff.c_pending_credits, b.posted_debits + eff.c_posted_debits,
               b.posted_credits + eff.c_posted_credits
        FROM eff JOIN account_balances b ON b.account_id = eff.account_id
        WHERE eff.seq IS NULL
        ORDER BY eff.account_id, eff.rn
        RETURNING 1
    ), totals AS (
        SELECT account_id, count(*) AS n,
               sum(d_pending_debits) AS pd, sum(d_pending_credits) AS pc,
               sum(d_posted_debits) AS od, sum(d_posted_credits) AS oc
        FROM eff GROUP BY account_id
    ), balances AS (
        UPDATE account_balances b
        SET pending_debits = b.pending_debits + t.pd, pending_credits = b.pending_credits + t.pc,
            posted_debits = b.posted_debits + t.od, posted_credits = b.posted_credits + t.oc,
            lock_version = b.lock_version + t.n, updated_at = clock_timestamp()
        FROM totals t WHERE b.account_id = t.account_id
        RETURNING 1
    ), days AS (
        INSERT INTO effective_balance_buckets AS k
            (account_id, day, pending_debits, pending_credits, posted_debits, posted_credits)
        SELECT account_id, (effective_at AT TIME ZONE 'UTC')::date,
               sum(d_pending_debits), sum(d_pending_credits), sum(d_posted_debits), sum(d_posted_credits)
        FROM eff GROUP BY 1, 2
        ON CONFLICT (account_id, day) DO UPDATE
        SET pending_debits = k.pending_debits + excluded.pending_debits,
            pending_credits = k.pending_credits + excluded.pending_credits,
            posted_debits = k.posted_debits + excluded.posted_debits,
            posted_credits = k.posted_credits + excluded.posted_credits
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM marked) + (SELECT count(*) FROM inserted) INTO v_applied;
    RETURN v_applied;
END $$;

-- The async path's apply: `ledger_apply` wrapped so that one call (one round trip, the locks never held
-- across a client round trip) also reports the accounts it skipped and the apply lag of every effect it
-- folded in (for the worker's metrics).
CREATE FUNCTION ledger_apply_report(p_accounts uuid[], p_skip_locked boolean)
RETURNS TABLE (applied integer, skipped uuid[], lags_ms double precision[]) LANGUAGE plpgsql AS $$
DECLARE
    v_held uuid[];
    v_versions bigint[];
BEGIN
    -- Lock first (sorted, like ledger_apply) to learn the lock versions before the fold: the effects this
    -- call applies are exactly those above them. ledger_apply then re-locks rows this transaction holds.
    IF p_skip_locked THEN
        SELECT array_agg(s.account_id ORDER BY s.account_id), array_agg(s.lock_version ORDER BY s.account_id)
        INTO v_held, v_versions FROM (
            SELECT account_id, lock_version FROM account_balances WHERE account_id = ANY(p_accounts)
            ORDER BY account_id FOR UPDATE SKIP LOCKED) s;
    ELSE
        SELECT array_agg(s.account_id ORDER BY s.account_id), array_agg(s.lock_version ORDER BY s.account_id)
        INTO v_held, v_versions FROM (
            SELECT account_id, lock_version FROM account_balances WHERE account_id = ANY(p_accounts)
            ORDER BY account_id FOR UPDATE) s;
    END IF;
    v_held := coalesce(v_held, '{}');
    -- Accounts without a balance row (a bogus id in a message) are neither applied nor skipped.
    skipped := ARRAY(SELECT account_id FROM account_balances
                     WHERE account_id = ANY(p_accounts) AND account_id <> ALL(v_held) ORDER BY account_id);
    IF cardinality(v_held) = 0 THEN
        applied := 0;
        lags_ms := '{}';
        RETURN NEXT;
        RETURN;
    END IF;
    applied := ledger_apply(v_held, false);
    SELECT coalesce(array_agg(extract(epoch FROM be.applied_at - be.created_at) * 1000), '{}')
    INTO lags_ms
    FROM unnest(v_held, v_versions) AS h(account_id, lock_version)
    JOIN balance_effects be ON be.account_id = h.account_id AND be.lock_version > h.lock_version;
    RETURN NEXT;
END $$;

-- Lock the accounts' total-balance rows in sorted order and say how long that waited: the sync path's lock
-- wait, exported as a metric. ledger_apply's own lock of the same rows is then free (this transaction holds them).
CREATE FUNCTION ledger_lock(p_accounts uuid[]) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    v_start timestamptz := clock_timestamp();
BEGIN
    PERFORM 1 FROM account_balances WHERE account_id = ANY(p_accounts) ORDER BY account_id FOR UPDATE;
    RETURN extract(epoch FROM clock_timestamp() - v_start);
END $$;

-- Check balance locks on accounts just applied. p_checks: [{account_id, lock_version?,
-- pending_balance_amount?: {gte: n, ...}, posted_balance_amount?, available_balance_amount?}].
CREATE FUNCTION ledger_check(p_checks jsonb, p_entry_ids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c jsonb;
    v_account uuid;
    b record;
    v_pre bigint;
    v_field text;
    v_amount numeric;
    v_op text;
    v_target numeric;
    v_ok boolean;
BEGIN
    FOR c IN SELECT value FROM jsonb_array_elements(p_checks) LOOP
        v_account := (c->>'account_id')::uuid;
        SELECT ab.*, la.normal_balance INTO b
        FROM account_balances ab JOIN ledger_accounts la ON la.id = ab.account_id
        WHERE ab.account_id = v_account;
        IF c ? 'lock_version' THEN
            SELECT min(lock_version) - 1 INTO v_pre FROM balance_effects
            WHERE account_id = v_account AND entry_id = ANY(p_entry_ids);
            IF v_pre IS DISTINCT FROM (c->>'lock_version')::bigint THEN
                RAISE EXCEPTION 'lock_version_mismatch' USING ERRCODE = 'LG002',
                    DETAIL = jsonb_build_object('ledger_account_id', v_account,
                        'expected', (c->>'lock_version')::bigint, 'actual', v_pre)::text;
            END IF;
        END IF;
        FOREACH v_field IN ARRAY ARRAY['pending_balance_amount', 'posted_balance_amount', 'available_balance_amount'] LOOP
            CONTINUE WHEN NOT c ? v_field;
            v_amount := CASE
                WHEN v_field = 'pending_balance_amount' AND b.normal_balance = 'credit' THEN b.pending_credits - b.pending_debits
                WHEN v_field = 'pending_balance_amount' THEN b.pending_debits - b.pending_credits
                WHEN v_field = 'posted_balance_amount' AND b.normal_balance = 'credit' THEN b.posted_credits - b.posted_debits
                WHEN v_field = 'posted_balance_amount' THEN b.posted_debits - b.posted_credits
                WHEN b.normal_balance = 'credit' THEN b.posted_credits - b.pending_debits
                ELSE b.posted_debits - b.pending_credits
            END;
            FOR v_op, v_target IN SELECT key, value::text::numeric FROM jsonb_each(c->v_field) LOOP
                v_ok := CASE v_op
                    WHEN 'gt' THEN v_amount > v_target WHEN 'gte' THEN v_amount >= v_target
                    WHEN 'lt' THEN v_amount < v_target WHEN 'lte' THEN v_amount <= v_target
                    WHEN 'eq' THEN v_amount = v_target END;
                IF v_ok IS NOT TRUE THEN
                    RAISE EXCEPTION 'balance_lock_failed' USING ERRCODE = 'LG001',
                        DETAIL = jsonb_build_object('ledger_account_id', v_account, 'balance', v_field,
                            'operator', v_op, 'value', v_target, 'resulting_amount', v_amount)::text;
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
END $$;

CREATE FUNCTION ledger_version_hash(p_prev bytea, p_snapshot jsonb) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(coalesce(p_prev, ''::bytea) || convert_to(p_snapshot::text, 'UTF8'))
$$;

-- Resulting balances of a transaction's entries, for the response.
CREATE FUNCTION ledger_entry_results(p_entry_ids uuid[]) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
        'id', entry_id, 'lock_version', lock_version,
        'pending_debits', pending_debits, 'pending_credits', pending_credits,
        'posted_debits', posted_debits, 'posted_credits', posted_credits)), '[]'::jsonb)
    FROM balance_effects WHERE entry_id = ANY(p_entry_ids) AND kind = 'entry' AND applied_at IS NOT NULL
$$;

-- The effects of entries (what writing, posting or archiving them does), split by whether their account is
-- applied now: those go to ledger_apply as new effects, the others are queued here.
CREATE FUNCTION ledger_effects_of(p_entry_ids uuid[], p_accounts uuid[], p_directions text[], p_amounts bigint[],
                                  p_kind text, p_posted boolean, p_effective_at timestamptz[])
RETURNS SETOF ledger_new_effect LANGUAGE sql IMMUTABLE AS $$
    SELECT e.account, e.id, p_kind,
           CASE WHEN e.direction = 'debit' THEN (CASE p_kind WHEN 'entry' THEN e.amount WHEN 'archive' THEN -e.amount ELSE 0 END) ELSE 0 END,
           CASE WHEN e.direction = 'credit' THEN (CASE p_kind WHEN 'entry' THEN e.amount WHEN 'archive' THEN -e.amount ELSE 0 END) ELSE 0 END,
           CASE WHEN e.direction = 'debit' AND (p_kind = 'post' OR (p_kind = 'entry' AND p_posted)) THEN e.amount ELSE 0 END,
           CASE WHEN e.direction = 'credit' AND (p_kind = 'post' OR (p_kind = 'entry' AND p_posted)) THEN e.amount ELSE 0 END,
           e.effective_at
    FROM unnest(p_entry_ids, p_accounts, p_directions, p_amounts, p_effective_at) WITH ORDINALITY
         AS e(id, account, direction, amount, effective_at, n)
    ORDER BY e.n
$$;

CREATE FUNCTION ledger_post(
    p_tenant text, p_idem_key text, p_idem_hash bytea,
    p_txn_id uuid, p_ledger_id uuid, p_description text, p_status text, p_effective_at timestamptz,
    p_external_id text, p_metadata jsonb, p_reverses_id uuid,
    p_entry_ids uuid[], p_accounts uuid[], p_directions text[], p_amounts bigint[],
    p_apply_accounts uuid[], p_checks jsonb, p_snapshot jsonb
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := now();
    v_original record;
    v_apply uuid[];
    v_effects ledger_new_effect[];
    v_lock_wait double precision := 0;
BEGIN
    PERFORM ledger_fence(p_tenant);
    IF p_idem_key IS NOT NULL AND ledger_claim_key(p_tenant, p_idem_key, p_idem_hash, 'ledger_transaction', p_txn_id) THEN
        RETURN jsonb_build_object('replay', true);
    END IF;

    IF p_reverses_id IS NOT NULL THEN
        SELECT status, reversed_by_id INTO v_original FROM ledger_transactions
        WHERE id = p_reverses_id AND tenant_id = p_tenant FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger transaction not found' USING ERRCODE = 'LG005';
        ELSIF v_original.reversed_by_id IS NOT NULL THEN
            RAISE EXCEPTION 'already reversed' USING ERRCODE = 'LG007';
        ELSIF v_original.status <> 'posted' THEN
            RAISE EXCEPTION 'only a posted transaction can be reversed' USING ERRCODE = 'LG006';
        END IF;
        UPDATE ledger_transactions SET reversed_by_id = p_txn_id, updated_at = v_now WHERE id = p_reverses_id;
    END IF;

    INSERT INTO ledger_transactions (id, tenant_id, ledger_id, description, status, effective_at, external_id,
                                     metadata, reverses_id, posted_at, created_at, updated_at)
    VALUES (p_txn_id, p_tenant, p_ledger_id, p_description, p_status, p_effective_at, p_external_id,
            p_metadata, p_reverses_id, CASE WHEN p_status = 'posted' THEN v_now END, v_now, v_now);

    INSERT INTO ledger_entries (id, tenant_id, transaction_id, ledger_account_id, direction, amount, effective_at, created_at)
    SELECT e.id, p_tenant, p_txn_id, e.account, e.direction, e.amount, p_effective_at, v_now
    FROM unnest(p_entry_ids, p_accounts, p_directions, p_amounts) AS e(id, account, direction, amount);

    INSERT INTO ledger_transaction_versions (transaction_id, version, tenant_id, snapshot, prev_hash, hash, created_at)
    VALUES (p_txn_id, 1, p_tenant, p_snapshot, NULL, ledger_version_hash(NULL, p_snapshot), v_now);

    -- Accounts applied now: those the caller needs an exact answer on, and accounts marked sync-only.
    v_apply := coalesce(p_apply_accounts, '{}');
    IF EXISTS (SELECT 1 FROM ledger_accounts WHERE id = ANY(p_accounts) AND sync_only AND id <> ALL(v_apply)) THEN
        SELECT array_agg(DISTINCT a) INTO v_apply FROM (
            SELECT unnest(p_apply_accounts) AS a
            UNION SELECT id FROM ledger_accounts WHERE id = ANY(p_accounts) AND sync_only) s;
    END IF;

    -- Queued: the effects of entries whose account is not applied now.
    INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,
                                 d_posted_debits, d_posted_credits, effective_at)
    SELECT p_tenant, f.account_id, f.entry_id, f.kind, f.d_pending_debits, f.d_pending_credits,
           f.d_posted_debits, f.d_posted_credits, f.effective_at
    FROM ledger_effects_of(p_entry_ids, p_accounts, p_directions, p_amounts, 'entry', p_status = 'posted',
                           array_fill(p_effective_at, ARRAY[cardinality(p_entry_ids)])) f
    WHERE f.account_id <> ALL(v_apply);

    IF cardinality(v_apply) = 0 THEN
        RETURN jsonb_build_object('created_at', v_now, 'entries', '[]'::jsonb, 'lock_wait_s', 0);
    ELSE
        SELECT array_agg(f) INTO v_effects
        FROM ledger_effects_of(p_entry_ids, p_accounts, p_directions, p_amounts, 'entry', p_status = 'posted',
                               array_fill(p_effective_at, ARRAY[cardinality(p_entry_ids)])) f
        WHERE f.account_id = ANY(v_apply);
        v_lock_wait := ledger_lock(v_apply);
        PERFORM ledger_apply(v_apply, false, p_tenant, v_effects);
        IF jsonb_array_length(p_checks) > 0 THEN
            PERFORM ledger_check(p_checks, p_entry_ids);
        END IF;
    END IF;

    RETURN jsonb_build_object('created_at', v_now, 'entries', ledger_entry_results(p_entry_ids),
                              'lock_wait_s', v_lock_wait);
END $$;

CREATE FUNCTION ledger_transition(
    p_tenant text, p_txn_id uuid, p_expected_version integer, p_status text, p_description text,
    p_metadata jsonb, p_apply_all boolean, p_snapshot jsonb
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := now();
    t record;
    v_kind text;
    v_prev bytea;
    v_apply uuid[] := '{}';
    v_ids uuid[];
    v_accounts uuid[];
    v_directions text[];
    v_amounts bigint[];
    v_times timestamptz[];
    v_effects ledger_new_effect[];
    v_lock_wait double precision := 0;
BEGIN
    PERFORM ledger_fence(p_tenant);
    SELECT * INTO t FROM ledger_transactions WHERE id = p_txn_id AND tenant_id = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger transaction not found' USING ERRCODE = 'LG005';
    ELSIF t.version <> p_expected_version THEN
        RAISE EXCEPTION 'the transaction changed; retry' USING ERRCODE = 'LG008';
    END IF;

    UPDATE ledger_transactions
    SET status = coalesce(p_status, status),
        description = coalesce(p_description, description),
        metadata = coalesce(p_metadata, metadata),
        version = version + 1,
        posted_at = CASE WHEN p_status = 'posted' AND status = 'pending' THEN v_now ELSE posted_at END,
        archived_at = CASE WHEN p_status = 'archived' AND status = 'pending' THEN v_now ELSE archived_at END,
        updated_at = v_now
    WHERE id = p_txn_id;

    SELECT hash INTO v_prev FROM ledger_transaction_versions WHERE transaction_id = p_txn_id AND version = t.version;
    INSERT INTO ledger_transaction_versions (transaction_id, version, tenant_id, snapshot, prev_hash, hash, created_at)
    VALUES (p_txn_id, t.version + 1, p_tenant, p_snapshot, v_prev, ledger_version_hash(v_prev, p_snapshot), v_now);

    IF p_status IS NOT NULL AND p_status <> t.status THEN
        IF t.status <> 'pending' OR p_status NOT IN ('posted', 'archived') THEN
            RAISE EXCEPTION 'cannot move a % transaction to %', t.status, p_status USING ERRCODE = 'LG006';
        END IF;
        v_kind := CASE p_status WHEN 'posted' THEN 'post' ELSE 'archive' END;
        SELECT array_agg(e.id ORDER BY e.seq), array_agg(e.ledger_account_id ORDER BY e.seq),
               array_agg(e.direction ORDER BY e.seq), array_agg(e.amount ORDER BY e.seq),
               array_agg(e.effective_at ORDER BY e.seq)
        INTO v_ids, v_accounts, v_directions, v_amounts, v_times
        FROM ledger_entries e WHERE e.transaction_id = p_txn_id;
        SELECT coalesce(array_agg(DISTINCT a.id), '{}') INTO v_apply
        FROM ledger_accounts a WHERE a.id = ANY(v_accounts) AND (p_apply_all OR a.sync_only);

        INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,
                                     d_posted_debits, d_posted_credits, effective_at)
        SELECT p_tenant, f.account_id, f.entry_id, f.kind, f.d_pending_debits, f.d_pending_credits,
               f.d_posted_debits, f.d_posted_credits, f.effective_at
        FROM ledger_effects_of(v_ids, v_accounts, v_directions, v_amounts, v_kind, false, v_times) f
        WHERE f.account_id <> ALL(v_apply);
        IF cardinality(v_apply) > 0 THEN
            SELECT array_agg(f) INTO v_effects
            FROM ledger_effects_of(v_ids, v_accounts, v_directions, v_amounts, v_kind, false, v_times) f
            WHERE f.account_id = ANY(v_apply);
            v_lock_wait := ledger_lock(v_apply);
            PERFORM ledger_apply(v_apply, false, p_tenant, v_effects);
        END IF;
    END IF;
    RETURN jsonb_build_object('updated_at', v_now, 'lock_wait_s', v_lock_wait);
END $$;

-- Balances of one account from the effective-time cache: every applied effect with effective_at <= p_at
-- (or < p_at when p_inclusive is false).
CREATE FUNCTION ledger_balance_at(p_account uuid, p_at timestamptz, p_inclusive boolean)
RETURNS TABLE (pending_debits numeric, pending_credits numeric, posted_debits numeric, posted_credits numeric)
LANGUAGE sql STABLE AS $$
    WITH day AS (SELECT (p_at AT TIME ZONE 'UTC')::date AS d),
    whole AS (
        SELECT coalesce(sum(k.pending_debits), 0) pd, coalesce(sum(k.pending_credits), 0) pc,
               coalesce(sum(k.posted_debits), 0) od, coalesce(sum(k.posted_credits), 0) oc
        FROM effective_balance_buckets k, day WHERE k.account_id = p_account AND k.day < day.d
    ), part AS (
        SELECT coalesce(sum(e.d_pending_debits), 0) pd, coalesce(sum(e.d_pending_credits), 0) pc,
               coalesce(sum(e.d_posted_debits), 0) od, coalesce(sum(e.d_posted_credits), 0) oc
        FROM balance_effects e, day
        WHERE e.account_id = p_account AND e.applied_at IS NOT NULL
          AND e.effective_at >= (day.d::timestamp AT TIME ZONE 'UTC')
          AND (e.effective_at < p_at OR (p_inclusive AND e.effective_at = p_at))
    )
    SELECT whole.pd + part.pd, whole.pc + part.pc, whole.od + part.od, whole.oc + part.oc FROM whole, part
$$;
