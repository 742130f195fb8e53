-- The sync path writes its own effects already applied, through the same `ledger_apply`: a posting hands its
-- new effects to the routine, which folds every queued effect of the locked accounts first (sequence order),
-- then the new ones, and inserts those with their lock versions and resulting balances. No sync effect is
-- ever inserted unapplied and then updated (half the index writes of a posting), and the catch-up order of
-- 0011 holds by construction: a posting's own effects always come after everything already committed.
--
-- Also: one partial index for the queue (by account; the sweeper reads created_at from it), no unique
-- indexes on `seq` columns (identities; pagination uses the tenant- or account-scoped indexes), and
-- autovacuum tuned for the queue and the hot balance rows.

DROP INDEX balance_effects_unapplied_age;
DROP INDEX balance_effects_unapplied;
CREATE INDEX balance_effects_unapplied ON balance_effects (account_id, seq) INCLUDE (created_at)
    WHERE applied_at IS NULL;

ALTER TABLE ledgers DROP CONSTRAINT ledgers_seq_key;
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_seq_key;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_seq_key;
ALTER TABLE ledger_transaction_versions DROP CONSTRAINT ledger_transaction_versions_seq_key;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_seq_key;

ALTER TABLE balance_effects SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05);
ALTER TABLE account_balances SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 2000);
ALTER TABLE effective_balance_buckets SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 2000);

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

DROP FUNCTION ledger_apply(uuid[], boolean);

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

CREATE OR REPLACE FUNCTION ledger_queue_effects(p_tenant text, p_effects ledger_new_effect[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,
                                 d_posted_debits, d_posted_credits, effective_at)
    SELECT p_tenant, n.account_id, n.entry_id, n.kind, n.d_pending_debits, n.d_pending_credits,
           n.d_posted_debits, n.d_posted_credits, n.effective_at
    FROM unnest(p_effects) WITH ORDINALITY AS n(account_id, entry_id, kind, d_pending_debits, d_pending_credits,
                                                d_posted_debits, d_posted_credits, effective_at, ord)
    ORDER BY n.ord
$$;

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
    v_effects ledger_new_effect[];
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

    SELECT array_agg(f) INTO v_effects
    FROM ledger_effects_of(p_entry_ids, p_accounts, p_directions, p_amounts, 'entry', p_status = 'posted',
                           array_fill(p_effective_at, ARRAY[cardinality(p_entry_ids)])) f
    WHERE f.account_id <> ALL(v_apply);
    IF v_effects IS NOT NULL THEN
        PERFORM ledger_queue_effects(p_tenant, v_effects);
    END IF;

    IF cardinality(v_apply) > 0 THEN
        SELECT array_agg(f) INTO v_effects
        FROM ledger_effects_of(p_entry_ids, p_accounts, p_directions, p_amounts, 'entry', p_status = 'posted',
                               array_fill(p_effective_at, ARRAY[cardinality(p_entry_ids)])) f
        WHERE f.account_id = ANY(v_apply);
        PERFORM ledger_apply(v_apply, false, p_tenant, v_effects);
        IF jsonb_array_length(p_checks) > 0 THEN
            PERFORM ledger_check(p_checks, p_entry_ids);
        END IF;
    END IF;

    RETURN jsonb_build_object('created_at', v_now, 'entries', ledger_entry_results(p_entry_ids));
END $$;

CREATE OR REPLACE FUNCTION ledger_transition(
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

        SELECT array_agg(f) INTO v_effects
        FROM ledger_effects_of(v_ids, v_accounts, v_directions, v_amounts, v_kind, false, v_times) f
        WHERE f.account_id <> ALL(v_apply);
        IF v_effects IS NOT NULL THEN
            PERFORM ledger_queue_effects(p_tenant, v_effects);
        END IF;
        IF cardinality(v_apply) > 0 THEN
            SELECT array_agg(f) INTO v_effects
            FROM ledger_effects_of(v_ids, v_accounts, v_directions, v_amounts, v_kind, false, v_times) f
            WHERE f.account_id = ANY(v_apply);
            PERFORM ledger_apply(v_apply, false, p_tenant, v_effects);
        END IF;
    END IF;
    RETURN jsonb_build_object('updated_at', v_now);
END $$;
