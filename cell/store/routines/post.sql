-- A new ledger transaction in one call: fence, idempotency key, reversal bookkeeping, rows, first version;
-- the effects of accounts applied now go through ledger_apply and the balance locks (ledger_check), the
-- others are queued for the workers. Returns the resulting balances of the entries applied now.
-- The signature gained the SDK's fields (defaults keep 18-argument calls working): the old ones go first.
-- p_archive_on_lock_failure (the SDK's archive_on_balance_lock_failure): a violated balance lock (LG001, LG002)
-- undoes the apply (a subtransaction around ledger_apply + ledger_check, entered only then) and the transaction
-- is written archived, archived_reason 'balance_lock_failure', with no balance effect at all: nothing counts.
-- p_status 'archived' (a record, e.g. a declined authorization, archived at creation): written the same way, with
-- archived_reason NULL, nothing applied, queued or checked (its balance locks and lock_versions are not checked:
-- it changes no balance); a reversal so made reverses nothing (its original is not marked reversed).
-- p_events: the events of this change, rendered by the service (ledger_events), written with this call's answer.
-- p_answer (with p_idem_key): the answer as the service rendered it before the call; the key is kept with it and
-- this call's answer (its facts, 0140_idempotency_facts.sql) by one INSERT at the end, so that a POST with an
-- Idempotency-Key is this one statement. The key is held from the start (ledger_key_lock: a concurrent duplicate
-- is LG004) and probed once; a used key answers {replay: true} and writes nothing.
-- What one posting writes (rows, index entries) and why every statement keeps one generic plan: README.md here.
DROP FUNCTION IF EXISTS ledger_post(text, text, bytea, uuid, uuid, text, text, timestamptz, text, jsonb, uuid,
                                    uuid[], uuid[], text[], bigint[], uuid[], jsonb, jsonb);
DROP FUNCTION IF EXISTS ledger_post(text, text, bytea, uuid, uuid, text, text, timestamptz, text, jsonb, uuid,
                                    uuid[], uuid[], text[], bigint[], uuid[], jsonb, jsonb, text, text, jsonb);
DROP FUNCTION IF EXISTS ledger_post(text, text, bytea, uuid, uuid, text, text, timestamptz, text, jsonb, uuid,
                                    uuid[], uuid[], text[], bigint[], uuid[], jsonb, jsonb, text, text, jsonb, jsonb);
DROP FUNCTION IF EXISTS ledger_post(text, text, bytea, uuid, uuid, text, text, timestamptz, text, jsonb, uuid,
                                    uuid[], uuid[], text[], bigint[], uuid[], jsonb, jsonb, text, text, jsonb, jsonb,
                                    boolean);
DROP FUNCTION IF EXISTS ledger_post(text, text, bytea, uuid, uuid, text, text, timestamptz, text, jsonb, uuid,
                                    uuid[], uuid[], text[], bigint[], uuid[], jsonb, jsonb, text, text, jsonb, jsonb,
                                    boolean, jsonb);
CREATE OR REPLACE FUNCTION ledger_post(
    p_tenant text, p_idem_key text, p_idem_hash bytea,
    p_txn_id uuid, p_ledger_id uuid, p_description text, p_status text, p_effective_at timestamptz,
    p_external_id text, p_metadata jsonb, p_reverses_id uuid,
    p_entry_ids uuid[], p_accounts uuid[], p_directions text[], p_amounts bigint[],
    p_apply_accounts uuid[], p_checks jsonb, p_snapshot jsonb,
    p_ledgerable_type text DEFAULT NULL, p_ledgerable_id text DEFAULT NULL, p_entry_metadata jsonb DEFAULT NULL,
    p_partial jsonb DEFAULT NULL, p_archive_on_lock_failure boolean DEFAULT false,
    p_events jsonb DEFAULT NULL, p_answer bytea DEFAULT NULL
) RETURNS jsonb LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    v_now timestamptz := now();
    v_original record;
    v_partial_id uuid := (p_partial ->> 'id')::uuid;
    v_apply uuid[];
    v_applied ledger_new_effect[];
    v_lock_wait double precision := 0;
    v_sync_only uuid[];
    v_headroom_low boolean;  -- an account past 2^62 or an entry past 2^40: ledger_headroom's exact check
    v_discarded uuid;  -- an account discarded (0204) since the caller looked it up: not found
    v_failed boolean := p_status = 'archived';  -- written archived, without effects (on a failed lock: below)
    v_archived_reason text;
    v_result jsonb;
    v_entries jsonb := '[]';  -- the resulting balances of the entries applied now
BEGIN
    PERFORM ledger_fence(p_tenant);
    IF p_idem_key IS NOT NULL THEN
        PERFORM ledger_key_lock(p_tenant, p_idem_key);
        IF EXISTS (SELECT 1 FROM idempotency_keys WHERE tenant_id = p_tenant AND key = p_idem_key) THEN
            RETURN jsonb_build_object('replay', true);
        END IF;
    END IF;

    -- The original (and below, the pending transaction) by its primary key alone: `tenant_id IS NOT DISTINCT FROM`
    -- is no index condition (README.md here: a generic plan made on an empty table walked a (tenant_id, ...) index).
    IF p_reverses_id IS NOT NULL THEN
        SELECT status, reversed_by_id, entries_version INTO v_original FROM ledger_transactions
        WHERE id = p_reverses_id AND tenant_id IS NOT DISTINCT FROM p_tenant FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger transaction not found' USING ERRCODE = 'LG005';
        ELSIF v_original.reversed_by_id IS NOT NULL THEN
            RAISE EXCEPTION 'already reversed' USING ERRCODE = 'LG007';
        ELSIF v_original.status <> 'posted' THEN
            RAISE EXCEPTION 'only a posted transaction can be reversed' USING ERRCODE = 'LG006';
        END IF;
        -- The reversal's entries (the caller's, from the original as it read it) mirror the original's as they are
        -- now, under its lock: entries replaced since (a PATCH of the pending transaction, then posted) are a
        -- version conflict, and the reversal is made again from a fresh read.
        IF EXISTS ((SELECT e.ledger_account_id, CASE e.direction WHEN 'debit' THEN 'credit' ELSE 'debit' END, e.amount
                    FROM ledger_entries e
                    WHERE e.transaction_id = p_reverses_id AND ledger_entry_live(e.version, v_original.entries_version)
                    EXCEPT ALL SELECT * FROM unnest(p_accounts, p_directions, p_amounts))
                   UNION ALL
                   (SELECT * FROM unnest(p_accounts, p_directions, p_amounts)
                    EXCEPT ALL
                    SELECT e.ledger_account_id, CASE e.direction WHEN 'debit' THEN 'credit' ELSE 'debit' END, e.amount
                    FROM ledger_entries e
                    WHERE e.transaction_id = p_reverses_id
                      AND ledger_entry_live(e.version, v_original.entries_version))) THEN
            RAISE EXCEPTION 'the transaction''s entries changed while its reversal was made' USING ERRCODE = 'LG008';
        END IF;
        -- Never back in time: this call's now() may precede a change (its posting) that committed while it waited.
        IF NOT v_failed THEN
            UPDATE ledger_transactions SET reversed_by_id = p_txn_id, updated_at = greatest(updated_at, v_now)
            WHERE id = p_reverses_id;
        END IF;
    END IF;

    -- A partial post: the pending transaction ({id, expected_version, snapshot, apply_all}) is archived here,
    -- its effects undone, before this posting's own effects are written and its balance locks checked.
    IF v_partial_id IS NOT NULL THEN
        SELECT status, reverses_id INTO v_original FROM ledger_transactions
        WHERE id = v_partial_id AND tenant_id IS NOT DISTINCT FROM p_tenant FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger transaction not found' USING ERRCODE = 'LG005';
        ELSIF v_original.status <> 'pending' THEN
            RAISE EXCEPTION 'only a pending transaction can be partially posted' USING ERRCODE = 'LG006';
        END IF;
        PERFORM ledger_transition(p_tenant, v_partial_id, (p_partial ->> 'expected_version')::integer, 'archived',
                                  NULL, NULL, (p_partial ->> 'apply_all')::boolean, p_partial -> 'snapshot');
        IF v_original.reverses_id IS NOT NULL THEN  -- a pending reversal, partially posted: it did reverse its
            UPDATE ledger_transactions SET reversed_by_id = v_partial_id  -- original (the archive unlinked it)
            WHERE id = v_original.reverses_id AND reversed_by_id IS NULL;
        END IF;
        IF jsonb_array_length(p_checks) > 0 THEN
            -- A lock_version is the account's before this change, not after the pending entries' archives.
            SELECT ledger_checks_before(p_checks, coalesce(array_agg(e.ledger_account_id), '{}')) INTO p_checks
            FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
            WHERE t.id = v_partial_id AND ledger_entry_live(e.version, t.entries_version);
        END IF;
    END IF;

    -- The transaction and its entries in one statement (a data-modifying WITH: one executor start-up, not two).
    -- p_entry_metadata: a JSON array of objects in the order of p_entry_ids (NULL: none).
    WITH txn AS (
        INSERT INTO ledger_transactions (id, tenant_id, ledger_id, description, status, effective_at, external_id,
                                         metadata, reverses_id, posted_at, created_at, updated_at, ledgerable_type,
                                         ledgerable_id, partially_posts_id)
        VALUES (p_txn_id, p_tenant, p_ledger_id, p_description, p_status, p_effective_at, p_external_id,
                p_metadata, p_reverses_id, CASE WHEN p_status = 'posted' THEN v_now END, v_now, v_now,
                p_ledgerable_type, p_ledgerable_id, v_partial_id)
    )
    INSERT INTO ledger_entries (id, tenant_id, transaction_id, ledger_account_id, direction, amount, effective_at,
                                created_at, metadata)
    SELECT e.id, p_tenant, p_txn_id, e.account, e.direction, e.amount, p_effective_at, v_now,
           coalesce(p_entry_metadata -> (e.ord::int - 1), '{}'::jsonb)
    FROM unnest(p_entry_ids, p_accounts, p_directions, p_amounts) WITH ORDINALITY AS e(id, account, direction, amount, ord);

    -- One read of the accounts: the sync-only ones not already applied, and whether the overflow check can matter.
    -- One primary-key probe per distinct account: under `id = ANY(p_accounts)` the generic plan reached the
    -- table by row-level security's tenant_id (ledger_accounts_ledger) and filtered every account of the tenant.
    v_apply := coalesce(p_apply_accounts, '{}');
    SELECT coalesce(array_agg(a.id) FILTER (WHERE a.sync_only AND a.id <> ALL(v_apply)), '{}'),
           coalesce(bool_or(a.headroom_low), false) OR 1099511627776 < ANY(p_amounts),
           min(a.id::text) FILTER (WHERE a.discarded_at IS NOT NULL)::uuid
    INTO v_sync_only, v_headroom_low, v_discarded
    FROM (SELECT DISTINCT unnest(p_accounts)) AS u(id)
    CROSS JOIN LATERAL (SELECT l.id, l.sync_only, l.headroom_low, l.discarded_at FROM ledger_accounts l
                        WHERE l.id = u.id LIMIT 1) a;
    -- A discarded account, or a balance past the signed 64-bit range (before this posting's own effects are queued);
    -- one written archived at creation counts nowhere, so it takes no balance past it (not its headroom's to refuse).
    v_headroom_low := v_headroom_low AND p_status <> 'archived';
    IF v_discarded IS NOT NULL OR v_headroom_low THEN
        PERFORM ledger_refuse_accounts(v_discarded, v_headroom_low, p_accounts, p_directions, p_amounts);
    END IF;

    -- Accounts applied now: those the caller needs an exact answer on, and accounts marked sync-only.
    IF cardinality(v_sync_only) > 0 THEN
        SELECT array_agg(DISTINCT a) INTO v_apply FROM (SELECT unnest(v_apply) UNION SELECT unnest(v_sync_only)) s(a);
    END IF;

    -- The entries' effects: those of accounts applied now go to ledger_apply, the others are queued (below).
    IF cardinality(v_apply) > 0 AND NOT v_failed THEN
        v_applied := ARRAY(SELECT f FROM ledger_effects_of(p_entry_ids, p_accounts, p_directions, p_amounts, 'entry',
                                                           p_status = 'posted',
                                                           array_fill(p_effective_at, ARRAY[cardinality(p_entry_ids)])) f
                           WHERE f.account_id = ANY(v_apply));
        v_lock_wait := ledger_lock(v_apply);
        IF p_archive_on_lock_failure AND jsonb_array_length(p_checks) > 0 THEN
            BEGIN
                PERFORM ledger_apply(v_apply, p_tenant, v_applied);
                PERFORM ledger_check(p_checks, p_entry_ids);
            EXCEPTION WHEN SQLSTATE 'LG001' OR SQLSTATE 'LG002' THEN
                v_failed := true;
                v_archived_reason := 'balance_lock_failure';
            END;
        ELSE
            PERFORM ledger_apply(v_apply, p_tenant, v_applied);
            IF jsonb_array_length(p_checks) > 0 THEN
                PERFORM ledger_check(p_checks, p_entry_ids);
            END IF;
        END IF;
    END IF;

    IF v_failed THEN
        -- Nothing queued, nothing applied: the entries stay, as an archived transaction's, without effects.
        UPDATE ledger_transactions SET status = 'archived', posted_at = NULL, archived_at = v_now,
                                       archived_reason = v_archived_reason
        WHERE id = p_txn_id;
        INSERT INTO ledger_transaction_versions (transaction_id, version, tenant_id, snapshot, prev_hash, hash,
                                                 created_at)
        VALUES (p_txn_id, 1, p_tenant, jsonb_set(p_snapshot, '{status}', '"archived"'), NULL,
                ledger_version_hash(NULL, jsonb_set(p_snapshot, '{status}', '"archived"')), v_now);
        v_result := jsonb_build_object('created_at', v_now, 'entries', '[]'::jsonb, 'lock_wait_s', v_lock_wait,
                                       'archived_reason', v_archived_reason);
    ELSE
        -- The first version and the queued effects (those of entries whose account is not applied now: after the
        -- apply, other accounts) in one statement; every account applied now: no effect queued, the version alone.
        IF NOT p_accounts <@ v_apply THEN
            WITH version AS (
                INSERT INTO ledger_transaction_versions (transaction_id, version, tenant_id, snapshot, prev_hash,
                                                         hash, created_at)
                VALUES (p_txn_id, 1, p_tenant, p_snapshot, NULL, ledger_version_hash(NULL, p_snapshot), v_now)
            )
            INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,
                                         d_posted_debits, d_posted_credits, effective_at)
            SELECT p_tenant, f.account_id, f.entry_id, f.kind, f.d_pending_debits, f.d_pending_credits,
                   f.d_posted_debits, f.d_posted_credits, f.effective_at
            FROM ledger_effects_of(p_entry_ids, p_accounts, p_directions, p_amounts, 'entry', p_status = 'posted',
                                   array_fill(p_effective_at, ARRAY[cardinality(p_entry_ids)])) f
            WHERE f.account_id <> ALL(v_apply);
            IF cardinality(v_apply) > 0 THEN
                v_entries := ledger_entry_results(p_entry_ids);
            END IF;
        ELSE
            -- Every account applied now: the version, and the entries' resulting balances read in the same statement.
            WITH version AS (
                INSERT INTO ledger_transaction_versions (transaction_id, version, tenant_id, snapshot, prev_hash,
                                                         hash, created_at)
                VALUES (p_txn_id, 1, p_tenant, p_snapshot, NULL, ledger_version_hash(NULL, p_snapshot), v_now)
            )
            SELECT ledger_entry_results(p_entry_ids) INTO v_entries;
        END IF;

        v_result := jsonb_build_object('created_at', v_now, 'entries', v_entries, 'lock_wait_s', v_lock_wait);
    END IF;
    IF p_events IS NOT NULL THEN
        PERFORM ledger_events(p_tenant, p_events, v_now, v_result);  -- events (0041): one row per event
    END IF;
    -- The key, kept in its final state by one row insert (held since the start by every posting that uses it; a
    -- bulk request's claim, which does not take the lock, made meanwhile fails this insert on the primary key: the
    -- same 409 in flight, cell/store/errors.py). Without p_answer the key keeps no answer (a replay renders the
    -- transaction anew), but it is final all the same: status 201, none is to come (0150's unanswered index).
    IF p_idem_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (tenant_id, key, request_hash, resource_type, resource_id, status_code,
                                      response, facts)
        VALUES (p_tenant, p_idem_key, p_idem_hash, 'ledger_transaction', p_txn_id,
                201, p_answer,
                CASE WHEN p_answer IS NOT NULL THEN v_result END);
    END IF;
    RETURN v_result;
END $$;
