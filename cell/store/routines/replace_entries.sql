-- A pending transaction's entries replaced, in one call (Modern Treasury's PATCH /api/ledger_transactions/{id} with
-- `ledger_entries` and/or `effective_at`): its next version (ledger_transition: fence, row lock, optimistic version
-- check LG008), still pending (else LG006); its entries so far are discarded (ledger_entry_live, 0206: an archive
-- effect each undoes their pending amounts, at their own effective time) and the new ones written, stamped with the
-- new version, effective at p_effective_at (the transaction's from now on), with their creation effects. Effects of
-- accounts applied now (p_apply_accounts, the sync-only ones, every account on p_apply_all) go through one
-- ledger_apply, the archives first, then the balance locks are checked (ledger_check: a lock_version is the account's
-- before this change); the others are queued. Entries stay insert-only: nothing written before is changed but the
-- transaction's row. Returns the resulting balances of the new entries applied now, as ledger_post does, and the
-- change's time. p_events: this change's events (ledger_events, with that answer: cell/service/events.py).
CREATE OR REPLACE FUNCTION ledger_replace_entries(
    p_tenant text, p_txn_id uuid, p_expected_version integer, p_effective_at timestamptz,
    p_entry_ids uuid[], p_accounts uuid[], p_directions text[], p_amounts bigint[], p_entry_metadata jsonb,
    p_apply_accounts uuid[], p_apply_all boolean, p_checks jsonb, p_snapshot jsonb, p_events jsonb DEFAULT NULL
) RETURNS jsonb LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    v_now timestamptz := now();
    t record;
    v_version integer := p_expected_version + 1;
    v_old_ids uuid[];
    v_old_accounts uuid[];
    v_old_directions text[];
    v_old_amounts bigint[];
    v_old_times timestamptz[];
    v_apply uuid[];
    v_effects ledger_new_effect[];
    v_lock_wait double precision := 0;
    v_headroom_low boolean;
    v_discarded uuid;
    v_entries jsonb := '[]';
    v_result jsonb;
BEGIN
    -- The next version (fence, row lock, version check, version row: ledger_transition's), then the transaction as
    -- it was, still locked: only a pending one's entries change.
    PERFORM ledger_transition(p_tenant, p_txn_id, p_expected_version, NULL, NULL, NULL, p_apply_all, p_snapshot);
    SELECT status, entries_version INTO t FROM ledger_transactions WHERE id = p_txn_id;
    IF t.status <> 'pending' THEN
        RAISE EXCEPTION 'only a pending transaction''s entries can be changed; this one is %', t.status
            USING ERRCODE = 'LG006';
    END IF;

    -- The entries so far (the transaction's own), discarded from this version on.
    SELECT array_agg(e.id ORDER BY e.seq), array_agg(e.ledger_account_id ORDER BY e.seq),
           array_agg(e.direction ORDER BY e.seq), array_agg(e.amount ORDER BY e.seq),
           array_agg(e.effective_at ORDER BY e.seq)
    INTO v_old_ids, v_old_accounts, v_old_directions, v_old_amounts, v_old_times
    FROM ledger_entries e WHERE e.transaction_id = p_txn_id AND ledger_entry_live(e.version, t.entries_version);

    UPDATE ledger_transactions SET effective_at = p_effective_at, entries_version = v_version WHERE id = p_txn_id;

    INSERT INTO ledger_entries (id, tenant_id, transaction_id, ledger_account_id, direction, amount, effective_at,
                                created_at, metadata, version)
    SELECT e.id, p_tenant, p_txn_id, e.account, e.direction, e.amount, p_effective_at, v_now,
           coalesce(p_entry_metadata -> (e.ord::int - 1), '{}'::jsonb), v_version
    FROM unnest(p_entry_ids, p_accounts, p_directions, p_amounts) WITH ORDINALITY AS e(id, account, direction, amount, ord);

    -- The new entries' accounts, once: discarded ones (0204) are not found, sync-only ones are applied now.
    SELECT coalesce(bool_or(a.headroom_low), false) OR 1099511627776 < ANY(p_amounts),
           min(a.id::text) FILTER (WHERE a.discarded_at IS NOT NULL)::uuid
    INTO v_headroom_low, v_discarded
    FROM (SELECT DISTINCT unnest(p_accounts)) AS u(id)
    CROSS JOIN LATERAL (SELECT l.id, l.headroom_low, l.discarded_at FROM ledger_accounts l WHERE l.id = u.id LIMIT 1) a;
    IF v_discarded IS NOT NULL OR v_headroom_low THEN
        -- The headroom is what the accounts hold once the change is written: the old entries' pending amounts
        -- released (their archives, applied before the new entries), the new ones added.
        PERFORM ledger_refuse_accounts(v_discarded, v_headroom_low, p_accounts || v_old_accounts,
                                       p_directions || v_old_directions,
                                       p_amounts || ARRAY(SELECT -x FROM unnest(v_old_amounts) AS o(x)));
    END IF;
    SELECT coalesce(array_agg(DISTINCT a.id), '{}') INTO v_apply
    FROM ledger_accounts a
    WHERE a.id = ANY(p_accounts || v_old_accounts)
      AND (p_apply_all OR a.sync_only OR a.id = ANY(coalesce(p_apply_accounts, '{}')));

    -- The effects: the old entries' archives, then the new entries' creations.
    INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,
                                 d_posted_debits, d_posted_credits, effective_at)
    SELECT p_tenant, f.account_id, f.entry_id, f.kind, f.d_pending_debits, f.d_pending_credits,
           f.d_posted_debits, f.d_posted_credits, f.effective_at
    FROM (SELECT * FROM ledger_effects_of(v_old_ids, v_old_accounts, v_old_directions, v_old_amounts, 'archive', false,
                                          v_old_times)
          UNION ALL
          SELECT * FROM ledger_effects_of(p_entry_ids, p_accounts, p_directions, p_amounts, 'entry', false,
                                          array_fill(p_effective_at, ARRAY[cardinality(p_entry_ids)]))) f
    WHERE f.account_id <> ALL(v_apply);
    IF cardinality(v_apply) > 0 THEN
        v_effects := ARRAY(
            SELECT f FROM ledger_effects_of(v_old_ids, v_old_accounts, v_old_directions, v_old_amounts, 'archive',
                                            false, v_old_times) f
            WHERE f.account_id = ANY(v_apply))
            || ARRAY(
            SELECT f FROM ledger_effects_of(p_entry_ids, p_accounts, p_directions, p_amounts, 'entry', false,
                                            array_fill(p_effective_at, ARRAY[cardinality(p_entry_ids)])) f
            WHERE f.account_id = ANY(v_apply));
        v_lock_wait := ledger_lock(v_apply);
        PERFORM ledger_apply(v_apply, p_tenant, v_effects);
        IF jsonb_array_length(p_checks) > 0 THEN
            -- A lock_version is the account's before this change: ledger_check finds the one right before the new
            -- entries, after the archives applied here to the same account.
            PERFORM ledger_check(ledger_checks_before(p_checks, v_old_accounts), p_entry_ids);
        END IF;
        v_entries := ledger_entry_results(p_entry_ids);
    END IF;

    v_result := jsonb_build_object('updated_at', v_now, 'entries', v_entries, 'lock_wait_s', v_lock_wait);
    IF p_events IS NOT NULL THEN
        PERFORM ledger_events(p_tenant, p_events, v_now, v_result);  -- events (0041): one row per event
    END IF;
    RETURN v_result;
END $$;
