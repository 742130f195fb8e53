-- The posting routines: the tenant write fence, `ledger_apply` (the one routine that folds balance effects
-- into the three caches), `ledger_post` and `ledger_transition`. Each posting is one call, one round trip:
-- no row lock is ever held across a client round trip.
--
-- Error codes raised here (SQLSTATE class LG, translated in cell/store/errors.py):
--   LG001 balance_lock_failed   LG002 lock_version_mismatch  LG003 tenant_frozen
--   LG004 idempotency_in_flight LG005 not_found             LG006 invalid_status_transition
--   LG007 already_reversed      LG008 version_conflict       LG009 insert_only
--   LG011 unknown_tenant        LG012 tenant_moved

CREATE OR REPLACE FUNCTION ledger_fence(p_tenant text) RETURNS void LANGUAGE plpgsql AS $$
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
CREATE OR REPLACE FUNCTION ledger_claim_key(p_tenant text, p_key text, p_hash bytea, p_type text, p_resource uuid)
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

-- Lock the accounts' total-balance rows in sorted order (never a deadlock), then fold every unapplied
-- effect of those accounts, in sequence order, into the total, effective-time and resulting caches.
-- With p_skip_locked, accounts locked by someone else are left for them. Returns the effects applied.
CREATE OR REPLACE FUNCTION ledger_apply(p_accounts uuid[], p_skip_locked boolean DEFAULT false)
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
    IF v_locked IS NULL THEN
        RETURN 0;
    END IF;

    WITH eff AS (
        SELECT e.seq, e.account_id, e.effective_at,
               e.d_pending_debits, e.d_pending_credits, e.d_posted_debits, e.d_posted_credits,
               row_number() OVER w AS rn,
               sum(e.d_pending_debits) OVER w AS c_pending_debits,
               sum(e.d_pending_credits) OVER w AS c_pending_credits,
               sum(e.d_posted_debits) OVER w AS c_posted_debits,
               sum(e.d_posted_credits) OVER w AS c_posted_credits
        FROM balance_effects e
        WHERE e.account_id = ANY(v_locked) AND e.applied_at IS NULL
        WINDOW w AS (PARTITION BY e.account_id ORDER BY e.seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    ), marked AS (
        UPDATE balance_effects be
        SET applied_at = clock_timestamp(),
            lock_version = b.lock_version + eff.rn,
            pending_debits = b.pending_debits + eff.c_pending_debits,
            pending_credits = b.pending_credits + eff.c_pending_credits,
            posted_debits = b.posted_debits + eff.c_posted_debits,
            posted_credits = b.posted_credits + eff.c_posted_credits
        FROM eff JOIN account_balances b ON b.account_id = eff.account_id
        WHERE be.seq = eff.seq
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
    SELECT count(*) INTO v_applied FROM marked;
    RETURN v_applied;
END $$;

-- Check balance locks on accounts just applied. p_checks: [{account_id, lock_version?,
-- pending_balance_amount?: {gte: n, ...}, posted_balance_amount?, available_balance_amount?}].
CREATE OR REPLACE FUNCTION ledger_check(p_checks jsonb, p_entry_ids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION ledger_version_hash(p_prev bytea, p_snapshot jsonb) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(coalesce(p_prev, ''::bytea) || convert_to(p_snapshot::text, 'UTF8'))
$$;

-- Resulting balances of a transaction's entries, for the response.
CREATE OR REPLACE FUNCTION ledger_entry_results(p_entry_ids uuid[]) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
        'id', entry_id, 'lock_version', lock_version,
        'pending_debits', pending_debits, 'pending_credits', pending_credits,
        'posted_debits', posted_debits, 'posted_credits', posted_credits)), '[]'::jsonb)
    FROM balance_effects WHERE entry_id = ANY(p_entry_ids) AND kind = 'entry' AND applied_at IS NOT NULL
$$;

-- Create a transaction with its entries and balance effects; apply the sync accounts; check their locks.
-- Returns {"replay": true} when the idempotency key was used before, else {"created_at", "entries"}.
CREATE OR REPLACE FUNCTION ledger_post(
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
    v_posted boolean := p_status = 'posted';
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
            p_metadata, p_reverses_id, CASE WHEN v_posted THEN v_now END, v_now, v_now);

    INSERT INTO ledger_entries (id, tenant_id, transaction_id, ledger_account_id, direction, amount, effective_at, created_at)
    SELECT e.id, p_tenant, p_txn_id, e.account, e.direction, e.amount, p_effective_at, v_now
    FROM unnest(p_entry_ids, p_accounts, p_directions, p_amounts) AS e(id, account, direction, amount);

    INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,
                                 d_posted_debits, d_posted_credits, effective_at)
    SELECT p_tenant, e.account, e.id, 'entry',
           CASE WHEN e.direction = 'debit' THEN e.amount ELSE 0 END,
           CASE WHEN e.direction = 'credit' THEN e.amount ELSE 0 END,
           CASE WHEN v_posted AND e.direction = 'debit' THEN e.amount ELSE 0 END,
           CASE WHEN v_posted AND e.direction = 'credit' THEN e.amount ELSE 0 END,
           p_effective_at
    FROM unnest(p_entry_ids, p_accounts, p_directions, p_amounts) WITH ORDINALITY AS e(id, account, direction, amount, n)
    ORDER BY e.n;

    INSERT INTO ledger_transaction_versions (transaction_id, version, tenant_id, snapshot, prev_hash, hash, created_at)
    VALUES (p_txn_id, 1, p_tenant, p_snapshot, NULL, ledger_version_hash(NULL, p_snapshot), v_now);

    SELECT array_agg(DISTINCT a) INTO v_apply FROM (
        SELECT unnest(p_apply_accounts) AS a
        UNION SELECT id FROM ledger_accounts WHERE id = ANY(p_accounts) AND sync_only) s;
    IF v_apply IS NOT NULL THEN
        PERFORM ledger_apply(v_apply);
        IF jsonb_array_length(p_checks) > 0 THEN
            PERFORM ledger_check(p_checks, p_entry_ids);
        END IF;
    END IF;

    RETURN jsonb_build_object('created_at', v_now, 'entries', ledger_entry_results(p_entry_ids));
END $$;

-- Move a transaction pending -> posted | archived and/or change its description or metadata, as a new
-- version. p_expected_version guards against a concurrent change (LG008: the caller reloads and retries).
CREATE OR REPLACE FUNCTION ledger_transition(
    p_tenant text, p_txn_id uuid, p_expected_version integer, p_status text, p_description text,
    p_metadata jsonb, p_apply_all boolean, p_snapshot jsonb
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := now();
    t record;
    v_kind text;
    v_prev bytea;
    v_accounts uuid[];
BEGIN
    PERFORM ledger_fence(p_tenant);
    SELECT * INTO t FROM ledger_transactions WHERE id = p_txn_id AND tenant_id = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger transaction not found' USING ERRCODE = 'LG005';
    ELSIF t.version <> p_expected_version THEN
        RAISE EXCEPTION 'the transaction changed; retry' USING ERRCODE = 'LG008';
    END IF;

    IF p_status IS NOT NULL AND p_status <> t.status THEN
        IF t.status <> 'pending' OR p_status NOT IN ('posted', 'archived') THEN
            RAISE EXCEPTION 'cannot move a % transaction to %', t.status, p_status USING ERRCODE = 'LG006';
        END IF;
        v_kind := CASE p_status WHEN 'posted' THEN 'post' ELSE 'archive' END;
        INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,
                                     d_posted_debits, d_posted_credits, effective_at)
        SELECT p_tenant, e.ledger_account_id, e.id, v_kind,
               CASE WHEN v_kind = 'archive' AND e.direction = 'debit' THEN -e.amount ELSE 0 END,
               CASE WHEN v_kind = 'archive' AND e.direction = 'credit' THEN -e.amount ELSE 0 END,
               CASE WHEN v_kind = 'post' AND e.direction = 'debit' THEN e.amount ELSE 0 END,
               CASE WHEN v_kind = 'post' AND e.direction = 'credit' THEN e.amount ELSE 0 END,
               e.effective_at
        FROM ledger_entries e WHERE e.transaction_id = p_txn_id ORDER BY e.seq;
        SELECT array_agg(DISTINCT e.ledger_account_id) INTO v_accounts
        FROM ledger_entries e LEFT JOIN ledger_accounts a ON a.id = e.ledger_account_id
        WHERE e.transaction_id = p_txn_id AND (p_apply_all OR a.sync_only);
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

    IF v_accounts IS NOT NULL THEN
        PERFORM ledger_apply(v_accounts);
    END IF;
    RETURN jsonb_build_object('updated_at', v_now);
END $$;

-- Balances of one account from the effective-time cache: every applied effect with effective_at <= p_at
-- (or < p_at when p_inclusive is false).
CREATE OR REPLACE FUNCTION ledger_balance_at(p_account uuid, p_at timestamptz, p_inclusive boolean)
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
