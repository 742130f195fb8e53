-- Lock the accounts' total-balance rows in sorted order (never a deadlock); fold every queued effect of
-- those accounts in sequence order, then p_new (the caller's own effects, in the order given), into the
-- total, effective-time and resulting caches. Returns the number of effects applied. (Skipping accounts
-- locked by someone else is ledger_apply_report's, which locks first.)
-- The signature lost its p_skip_locked: CREATE OR REPLACE cannot change one, so the old one goes first.
-- Cost (README.md here): the balances are read once, by the lock, and the fold joins those arrays, never the
-- table; every statement keeps one generic plan (plan_cache_mode): re-planning the fold on every call was the
-- largest part of a sync posting's database CPU. Each statement reaches its rows by an index whatever the
-- table's size (`= ANY(v_locked)`), so that the one plan stays right.
DROP FUNCTION IF EXISTS ledger_apply(uuid[], boolean, text, ledger_new_effect[]);
CREATE OR REPLACE FUNCTION ledger_apply(p_accounts uuid[], p_tenant text DEFAULT NULL,
                                        p_new ledger_new_effect[] DEFAULT '{}')
RETURNS integer LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_locked uuid[];
    v_versions bigint[];
    v_pending_debits numeric[];
    v_pending_credits numeric[];
    v_posted_debits numeric[];
    v_posted_credits numeric[];
    v_applied integer;
    v_monitored boolean;
    v_past uuid[];
BEGIN
    SELECT array_agg(account_id), array_agg(lock_version), array_agg(pending_debits), array_agg(pending_credits),
           array_agg(posted_debits), array_agg(posted_credits)
    INTO v_locked, v_versions, v_pending_debits, v_pending_credits, v_posted_debits, v_posted_credits FROM (
        SELECT account_id, lock_version, pending_debits, pending_credits, posted_debits, posted_credits
        FROM account_balances WHERE account_id = ANY(p_accounts)
        ORDER BY account_id FOR UPDATE) s;
    IF cardinality(p_new) > 0 AND EXISTS (
            SELECT 1 FROM unnest(p_new) n WHERE v_locked IS NULL OR n.account_id <> ALL(v_locked)) THEN
        RAISE EXCEPTION 'ledger_apply: a new effect names an account that is not locked';
    END IF;
    IF v_locked IS NULL THEN
        RETURN 0;
    END IF;

    WITH b AS (
        -- The locked rows as they were read under the lock (this transaction holds it: they cannot change).
        SELECT * FROM unnest(v_locked, v_versions, v_pending_debits, v_pending_credits, v_posted_debits,
                             v_posted_credits)
            AS b(account_id, lock_version, pending_debits, pending_credits, posted_debits, posted_credits)
    ), src AS (
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
        FROM eff JOIN b ON b.account_id = eff.account_id
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
        FROM eff JOIN b ON b.account_id = eff.account_id
        WHERE eff.seq IS NULL
        ORDER BY eff.account_id, eff.rn
        RETURNING 1
    ), totals AS (
        SELECT account_id, count(*) AS n,
               sum(d_pending_debits) AS pd, sum(d_pending_credits) AS pc,
               sum(d_posted_debits) AS od, sum(d_posted_credits) AS oc
        FROM eff GROUP BY account_id
    ), balances AS (
        UPDATE account_balances ab
        SET pending_debits = ab.pending_debits + t.pd, pending_credits = ab.pending_credits + t.pc,
            posted_debits = ab.posted_debits + t.od, posted_credits = ab.posted_credits + t.oc,
            lock_version = ab.lock_version + t.n, updated_at = clock_timestamp()
        FROM totals t WHERE ab.account_id = t.account_id AND ab.account_id = ANY(v_locked)
        RETURNING ab.account_id, ab.pending_debits, ab.pending_credits, ab.monitored
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
    SELECT (SELECT count(*) FROM marked) + (SELECT count(*) FROM inserted),
           coalesce((SELECT bool_or(monitored) FROM balances), false),
           coalesce((SELECT array_agg(account_id) FROM balances
                     WHERE pending_debits > 4611686018427387904 OR pending_credits > 4611686018427387904), '{}')
    INTO v_applied, v_monitored, v_past;
    IF cardinality(v_past) > 0 THEN  -- past 2^62: the account's postings now take ledger_headroom's exact check
        UPDATE ledger_accounts SET headroom_low = true WHERE id = ANY(v_past) AND NOT headroom_low;
    END IF;
    IF v_monitored THEN  -- balance monitors (0042): only accounts that have one, under the row locks held here
        PERFORM ledger_monitor(v_locked);
    END IF;
    RETURN v_applied;
END $$;
