-- Lock the accounts' total-balance rows in sorted order (never a deadlock); fold every queued effect of
-- those accounts in sequence order, then p_new (the caller's own effects, in the order given), into the
-- total, effective-time and resulting caches. Returns the number of effects applied. (Skipping accounts
-- locked by someone else is ledger_apply_report's, which locks first.)
-- The signature lost its p_skip_locked: CREATE OR REPLACE cannot change one, so the old one goes first.
DROP FUNCTION IF EXISTS ledger_apply(uuid[], boolean, text, ledger_new_effect[]);
CREATE OR REPLACE FUNCTION ledger_apply(p_accounts uuid[], p_tenant text DEFAULT NULL,
                                        p_new ledger_new_effect[] DEFAULT '{}')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_locked uuid[];
    v_applied integer;
    v_monitored boolean;
BEGIN
    SELECT array_agg(account_id) INTO v_locked FROM (
        SELECT account_id FROM account_balances WHERE account_id = ANY(p_accounts)
        ORDER BY account_id FOR UPDATE) s;
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
        RETURNING b.account_id, b.pending_debits, b.pending_credits, b.monitored
    ), headroom AS (
        -- Past 2^62: the account's postings now take ledger_headroom's exact check.
        UPDATE ledger_accounts a SET headroom_low = true
        FROM balances WHERE a.id = balances.account_id AND NOT a.headroom_low
          AND (balances.pending_debits > 4611686018427387904 OR balances.pending_credits > 4611686018427387904)
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
    SELECT (SELECT count(*) FROM marked) + (SELECT count(*) FROM inserted),
           coalesce((SELECT bool_or(monitored) FROM balances), false)
    INTO v_applied, v_monitored;
    IF v_monitored THEN  -- balance monitors (0042): only accounts that have one, under the row locks held here
        PERFORM ledger_monitor(v_locked);
    END IF;
    RETURN v_applied;
END $$;
