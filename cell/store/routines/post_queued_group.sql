-- A group of queued postings in one call, set-wise: what one ledger_post call per posting writes for a posting that
-- applies no account now (no balance lock, lock_version or resulting balances; neither a reversal nor a partial
-- post: cell/service/posting_groups.py's async groups), one INSERT per table for the whole group instead of each
-- posting's own statements (executor start-up, CHECK constraints planned again, the call itself: about half a
-- queued posting's database CPU; docs/performance.md). The same rows, index entries and answer, in the postings'
-- order; tests/integration/cell/test_posting_groups.py holds the rows equal to ledger_post's. Per posting, the arrays
-- p_txn_ids .. p_answers (p_metadata, p_snapshots: JSON arrays, an element a posting's); p_events, every posting's
-- events in one JSON array; per entry, p_entry_postings (its posting's ordinal, from 1) .. p_entry_metadata (a JSON
-- array, as ledger_post's).
-- What it leaves to ledger_post, raising LG014 before anything is written (the store then sends the postings one
-- ledger_post call each, cell/store/transactions.py): an account marked sync-only or near the signed
-- 64-bit range, an entry past 2^40 (ledger_headroom's exact check), an Idempotency-Key already used (a replay) or
-- twice in the group (the second is the first's replay). Returns the answer ledger_post gives each posting.
CREATE OR REPLACE FUNCTION ledger_post_queued_group(
    p_tenant text, p_txn_ids uuid[], p_ledger_ids uuid[], p_descriptions text[], p_statuses text[],
    p_effective_ats timestamptz[], p_external_ids text[], p_metadata jsonb, p_ledgerable_types text[],
    p_ledgerable_ids text[], p_snapshots jsonb, p_events jsonb, p_idem_keys text[], p_idem_hashes bytea[],
    p_answers bytea[], p_entry_postings integer[], p_entry_ids uuid[], p_accounts uuid[], p_directions text[],
    p_amounts bigint[], p_entry_metadata jsonb
) RETURNS jsonb LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    v_now timestamptz := now();
    v_result jsonb := jsonb_build_object('created_at', v_now, 'entries', '[]'::jsonb, 'lock_wait_s', 0);
    v_keyed boolean := EXISTS (SELECT 1 FROM unnest(p_idem_keys) k WHERE k IS NOT NULL);
BEGIN
    PERFORM ledger_fence(p_tenant);
    IF v_keyed THEN
        IF (SELECT count(k) <> count(DISTINCT k) FROM unnest(p_idem_keys) k) THEN
            RAISE EXCEPTION 'an idempotency key twice in the group' USING ERRCODE = 'LG014';
        END IF;
        PERFORM ledger_key_lock(p_tenant, k) FROM unnest(p_idem_keys) k WHERE k IS NOT NULL;
        IF EXISTS (SELECT 1 FROM unnest(p_idem_keys) u(k)
                   CROSS JOIN LATERAL (SELECT 1 FROM idempotency_keys i
                                       WHERE i.tenant_id = p_tenant AND i.key = u.k LIMIT 1) used) THEN
            RAISE EXCEPTION 'an idempotency key already used' USING ERRCODE = 'LG014';
        END IF;
    END IF;
    -- ledger_post's one read of the accounts, for the whole group: one primary-key probe per distinct account.
    IF 1099511627776 < ANY(p_amounts) OR EXISTS (
            SELECT 1 FROM (SELECT DISTINCT unnest(p_accounts)) AS u(id)
            CROSS JOIN LATERAL (SELECT l.sync_only, l.headroom_low, l.discarded_at FROM ledger_accounts l
                                WHERE l.id = u.id LIMIT 1) a
            WHERE a.sync_only OR a.headroom_low OR a.discarded_at IS NOT NULL) THEN
        -- (a discarded account, 0204: each posting alone, where ledger_post says which is not found)
        RAISE EXCEPTION 'an account applied now, near the 64-bit range or discarded' USING ERRCODE = 'LG014';
    END IF;

    WITH p AS (
        SELECT * FROM unnest(p_txn_ids, p_ledger_ids, p_descriptions, p_statuses, p_effective_ats, p_external_ids,
                             p_ledgerable_types, p_ledgerable_ids)
                      WITH ORDINALITY AS p(id, ledger_id, description, status, effective_at, external_id,
                                           ledgerable_type, ledgerable_id, ord)
    ), txn AS (
        INSERT INTO ledger_transactions (id, tenant_id, ledger_id, description, status, effective_at, external_id,
                                         metadata, reverses_id, posted_at, created_at, updated_at, ledgerable_type,
                                         ledgerable_id, partially_posts_id)
        SELECT p.id, p_tenant, p.ledger_id, p.description, p.status, p.effective_at, p.external_id,
               p_metadata -> (p.ord::int - 1), NULL, CASE WHEN p.status = 'posted' THEN v_now END, v_now, v_now,
               p.ledgerable_type, p.ledgerable_id, NULL
        FROM p ORDER BY p.ord
    )
    INSERT INTO ledger_entries (id, tenant_id, transaction_id, ledger_account_id, direction, amount, effective_at,
                                created_at, metadata)
    SELECT e.id, p_tenant, p_txn_ids[e.posting], e.account, e.direction, e.amount, p_effective_ats[e.posting], v_now,
           coalesce(p_entry_metadata -> (e.ord::int - 1), '{}'::jsonb)
    FROM unnest(p_entry_postings, p_entry_ids, p_accounts, p_directions, p_amounts)
         WITH ORDINALITY AS e(posting, id, account, direction, amount, ord)
    ORDER BY e.ord;

    WITH version AS (
        INSERT INTO ledger_transaction_versions (transaction_id, version, tenant_id, snapshot, prev_hash, hash,
                                                 created_at)
        SELECT p.id, 1, p_tenant, p_snapshots -> (p.ord::int - 1), NULL,
               ledger_version_hash(NULL, p_snapshots -> (p.ord::int - 1)), v_now
        FROM unnest(p_txn_ids) WITH ORDINALITY AS p(id, ord) ORDER BY p.ord
    )
    INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,
                                 d_posted_debits, d_posted_credits, effective_at)
    SELECT p_tenant, f.account_id, f.entry_id, f.kind, f.d_pending_debits, f.d_pending_credits,
           f.d_posted_debits, f.d_posted_credits, f.effective_at
    FROM unnest(p_entry_postings, p_entry_ids, p_accounts, p_directions, p_amounts)
         WITH ORDINALITY AS e(posting, id, account, direction, amount, ord)
    CROSS JOIN LATERAL ledger_effects_of(ARRAY[e.id], ARRAY[e.account], ARRAY[e.direction], ARRAY[e.amount], 'entry',
                                         p_statuses[e.posting] = 'posted', ARRAY[p_effective_ats[e.posting]]) f
    ORDER BY e.ord;

    -- Every posting's events (p_events: one array, in the postings' order; NULL: events are off) in one
    -- ledger_events call: one commit time and one answer (the facts) for all.
    IF jsonb_array_length(p_events) > 0 THEN
        PERFORM ledger_events(p_tenant, p_events, v_now, v_result);
    END IF;
    IF v_keyed THEN
        INSERT INTO idempotency_keys (tenant_id, key, request_hash, resource_type, resource_id, status_code,
                                      response, facts)
        SELECT p_tenant, k.key, k.hash, 'ledger_transaction', k.txn_id, 201, k.answer,
               CASE WHEN k.answer IS NOT NULL THEN v_result END
        FROM unnest(p_idem_keys, p_idem_hashes, p_txn_ids, p_answers) AS k(key, hash, txn_id, answer)
        WHERE k.key IS NOT NULL;
    END IF;
    RETURN v_result;
END $$;
