-- An update of a ledger transaction in one call: fence, optimistic version check (LG008), new version, and
-- for pending -> posted/archived (else LG006) the entries' post/archive effects, applied now on
-- p_apply_all or sync-only accounts, queued otherwise. p_events: the change's events (ledger_events). A NULL
-- p_status .. p_metadata, p_external_id, p_ledgerable_type/_id: that field unchanged; p_cleared names the fields (of
-- description, external_id) set to NULL.
-- One generic plan per statement, for this call and the routines it calls, as ledger_post (README.md here).
DROP FUNCTION IF EXISTS ledger_transition(text, uuid, integer, text, text, jsonb, boolean, jsonb);
DROP FUNCTION IF EXISTS ledger_transition(text, uuid, integer, text, text, jsonb, boolean, jsonb, jsonb);
DROP FUNCTION IF EXISTS ledger_transition(text, uuid, integer, text, text, jsonb, boolean, jsonb, jsonb, text, text,
                                          text);
CREATE OR REPLACE FUNCTION ledger_transition(
    p_tenant text, p_txn_id uuid, p_expected_version integer, p_status text, p_description text,
    p_metadata jsonb, p_apply_all boolean, p_snapshot jsonb, p_events jsonb DEFAULT NULL,
    p_external_id text DEFAULT NULL, p_ledgerable_type text DEFAULT NULL, p_ledgerable_id text DEFAULT NULL,
    p_cleared text[] DEFAULT '{}'
) RETURNS jsonb LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
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
    -- By its primary key alone: `tenant_id IS NOT DISTINCT FROM` is no index condition (README.md here).
    SELECT * INTO t FROM ledger_transactions WHERE id = p_txn_id AND tenant_id IS NOT DISTINCT FROM p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger transaction not found' USING ERRCODE = 'LG005';
    ELSIF t.version <> p_expected_version THEN
        RAISE EXCEPTION 'the transaction changed; retry' USING ERRCODE = 'LG008';
    ELSIF p_status IS NOT NULL AND p_status <> t.status
          AND (t.status <> 'pending' OR p_status NOT IN ('posted', 'archived')) THEN
        -- Before the row is written: an archived one moved back would first clash over an external_id it freed.
        RAISE EXCEPTION 'cannot move a % transaction to %', t.status, p_status USING ERRCODE = 'LG006';
    END IF;

    UPDATE ledger_transactions
    SET status = coalesce(p_status, status),
        description = CASE WHEN 'description' = ANY(p_cleared) THEN NULL ELSE coalesce(p_description, description) END,
        metadata = coalesce(p_metadata, metadata),
        external_id = CASE WHEN 'external_id' = ANY(p_cleared) THEN NULL ELSE coalesce(p_external_id, external_id) END,
        ledgerable_type = coalesce(p_ledgerable_type, ledgerable_type),
        ledgerable_id = coalesce(p_ledgerable_id, ledgerable_id),
        version = version + 1,
        posted_at = CASE WHEN p_status = 'posted' AND status = 'pending' THEN v_now ELSE posted_at END,
        archived_at = CASE WHEN p_status = 'archived' AND status = 'pending' THEN v_now ELSE archived_at END,
        -- Never back in time (a reversal, which writes no version, may have committed a later now() while this
        -- call waited for the row): lists of what changed, or was posted, since a time read updated_at.
        updated_at = greatest(updated_at, v_now)
    WHERE id = p_txn_id;

    SELECT hash INTO v_prev FROM ledger_transaction_versions WHERE transaction_id = p_txn_id AND version = t.version;
    INSERT INTO ledger_transaction_versions (transaction_id, version, tenant_id, snapshot, prev_hash, hash, created_at)
    VALUES (p_txn_id, t.version + 1, p_tenant, p_snapshot, v_prev, ledger_version_hash(v_prev, p_snapshot), v_now);

    IF p_status IS NOT NULL AND p_status <> t.status THEN
        v_kind := CASE p_status WHEN 'posted' THEN 'post' ELSE 'archive' END;
        -- An archived reversal reversed nothing: its original is no longer reversed by it (and may be reversed
        -- anew). A partial post of it (ledger_post) links the original back to it: that did reverse it, in part.
        IF p_status = 'archived' AND t.reverses_id IS NOT NULL THEN
            UPDATE ledger_transactions SET reversed_by_id = NULL, updated_at = greatest(updated_at, v_now)
            WHERE id = t.reverses_id AND reversed_by_id = p_txn_id;
        END IF;
        SELECT array_agg(e.id ORDER BY e.seq), array_agg(e.ledger_account_id ORDER BY e.seq),
               array_agg(e.direction ORDER BY e.seq), array_agg(e.amount ORDER BY e.seq),
               array_agg(e.effective_at ORDER BY e.seq)
        INTO v_ids, v_accounts, v_directions, v_amounts, v_times
        FROM ledger_entries e WHERE e.transaction_id = p_txn_id AND ledger_entry_live(e.version, t.entries_version);
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
            PERFORM ledger_apply(v_apply, p_tenant, v_effects);
        END IF;
    END IF;
    PERFORM ledger_events(p_tenant, p_events, v_now, '{}'::jsonb);  -- events (0041): one row per event
    RETURN jsonb_build_object('updated_at', v_now, 'lock_wait_s', v_lock_wait);
END $$;
