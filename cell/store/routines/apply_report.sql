-- The async path's apply: `ledger_apply` wrapped so that one call (one round trip, the locks never held
-- across a client round trip) also reports the accounts it skipped and the apply lag of every effect it
-- folded in (for the worker's metrics). It takes the tenant fence like every write: the shared advisory lock
-- of each tenant of the accounts, in tenant order and before any row lock (a move's exclusive lock waits for
-- this apply, never the other way round); accounts of a frozen or moved-out tenant are left alone (neither
-- applied nor skipped: their effects move with the tenant and the target's workers apply them). With p_skip_locked,
-- a tenant whose fence is held or asked for in the exclusive form (a move's freeze waiting out or linking its writes,
-- a delete) is not waited for: its accounts are skipped, as locked ones are, and the group's others applied now.
-- Planned per call (custom plans: one call applies a whole group of accounts, the planning is shared by all their
-- effects), and, like the posting routines, with no sequential scan, hash or merge join (README.md here), inherited
-- by ledger_apply: every table is reached by an index, per account or effect of the group. The planner's estimates
-- lag the tables in a cell's first minutes (no analyze yet): it scanned all of account_balances (the lock, the
-- balance update) and all of balance_effects (the apply lags) per call, a cost that grew with the tables.
-- No bitmap scans either: the fold reads each account's queue (balance_effects_unapplied) by a plain index scan, which
-- marks the entries of effects applied since the last vacuum dead in the index as it passes them (a bitmap scan
-- cannot: it revisits their heap rows on every apply of a busy account until vacuum), and the balance rows come in
-- the pkey's order, the lock's, without a sort: ~5-19% less backend CPU an applied effect (README.md here).
CREATE OR REPLACE FUNCTION ledger_apply_report(p_accounts uuid[], p_skip_locked boolean)
RETURNS TABLE (applied integer, skipped uuid[], lags_ms double precision[]) LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET enable_bitmapscan = off AS $$
DECLARE
    v_ids uuid[];       -- the accounts that have a balance row, sorted
    v_tenants text[];   -- their tenants, in the same order
    v_tenant text;
    v_fenced text[] := '{}';  -- with p_skip_locked: tenants whose fence was not to be had at once
    v_held uuid[];
    v_versions bigint[];
BEGIN
    -- The accounts and their tenants in one read (one primary-key probe an account); each tenant's fence, then its
    -- state, read per tenant by a statement after the locks (a statement's snapshot is taken when it starts).
    SELECT array_agg(b.account_id ORDER BY b.account_id), array_agg(b.tenant_id ORDER BY b.account_id)
    INTO v_ids, v_tenants FROM account_balances b WHERE b.account_id = ANY(p_accounts);
    FOREACH v_tenant IN ARRAY coalesce(ARRAY(SELECT DISTINCT t FROM unnest(v_tenants) t ORDER BY 1), '{}') LOOP
        IF NOT p_skip_locked THEN
            PERFORM pg_advisory_xact_lock_shared(ledger_fence_key(v_tenant));
        ELSIF NOT pg_try_advisory_xact_lock_shared(ledger_fence_key(v_tenant)) THEN
            v_fenced := v_fenced || v_tenant;
        END IF;
    END LOOP;
    p_accounts := ARRAY(SELECT u.id FROM unnest(v_ids, v_tenants) u(id, tenant_id)
                        WHERE u.tenant_id = ANY(ARRAY(SELECT t.id FROM tenants t
                                                      WHERE t.id = ANY(v_tenants) AND t.state = 'active'
                                                        AND t.id <> ALL(v_fenced))));
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
    -- Accounts without a balance row (a bogus id in a message) are neither applied nor skipped: p_accounts holds
    -- only those with one, so the skipped are p_accounts less the held (both sorted), no read.
    IF cardinality(v_held) = cardinality(p_accounts) AND cardinality(v_fenced) = 0 THEN
        skipped := '{}';
    ELSE
        skipped := ARRAY(SELECT unnest(p_accounts) EXCEPT SELECT unnest(v_held)
                         UNION SELECT u.id FROM unnest(v_ids, v_tenants) u(id, tenant_id) WHERE u.tenant_id = ANY(v_fenced)
                         ORDER BY 1);
    END IF;
    IF cardinality(v_held) = 0 THEN
        applied := 0;
        lags_ms := '{}';
        RETURN NEXT;
        RETURN;
    END IF;
    applied := ledger_apply(v_held);
    SELECT coalesce(array_agg(extract(epoch FROM be.applied_at - be.created_at) * 1000), '{}')
    INTO lags_ms
    FROM unnest(v_held, v_versions) AS h(account_id, lock_version)
    JOIN balance_effects be ON be.account_id = h.account_id AND be.lock_version > h.lock_version;
    RETURN NEXT;
END $$;
