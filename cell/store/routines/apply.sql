-- Lock the accounts' total-balance rows in sorted order (never a deadlock); fold every queued effect of
-- those accounts in sequence order, then p_new (the caller's own effects, in the order given), into the
-- total, effective-time and resulting caches. Returns the number of effects applied. (Skipping accounts
-- locked by someone else is ledger_apply_report's, which locks first.)
-- The signature lost its p_skip_locked: CREATE OR REPLACE cannot change one, so the old one goes first.
-- Cost (README.md here): the balances are read once, by the lock, and start each account's running sums: the fold
-- joins nothing. Called by a posting (ledger_post, ledger_transition), every statement keeps the one generic plan those
-- routines set (re-planning this fold on every sync posting was the largest part of its database CPU); called
-- by the worker (ledger_apply_report, a whole group of accounts a call), custom plans, by index only (as that sets).
DROP FUNCTION IF EXISTS ledger_apply(uuid[], boolean, text, ledger_new_effect[]);
CREATE OR REPLACE FUNCTION ledger_apply(p_accounts uuid[], p_tenant text DEFAULT NULL,
                                        p_new ledger_new_effect[] DEFAULT '{}')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_locked uuid[];
    v_balances account_balances[];  -- the locked rows, in v_locked's order (two aggregates, not six)
    v_applied integer;
    v_monitored boolean;
    v_past uuid[];
BEGIN
    SELECT array_agg(s.account_id), array_agg(s.ab) INTO v_locked, v_balances FROM (
        SELECT ab.account_id, ab FROM account_balances ab WHERE ab.account_id = ANY(p_accounts)
        ORDER BY ab.account_id FOR UPDATE) s;
    IF cardinality(p_new) > 0 AND EXISTS (
            SELECT 1 FROM unnest(p_new) n WHERE v_locked IS NULL OR n.account_id <> ALL(v_locked)) THEN
        RAISE EXCEPTION 'ledger_apply: a new effect names an account that is not locked';
    END IF;
    IF v_locked IS NULL THEN
        RETURN 0;
    END IF;

    -- One window over each locked account's rows: its balance row as locked (part 0, the starting point), then its
    -- queued effects in sequence order (part 1), then p_new in the order given (part 2). The running sums are the
    -- resulting balances and lock version after each effect: no join of the effects to the balances.
    WITH src AS (
        SELECT 0 AS part, NULL::bigint AS seq, NULL::tid AS row_id, 0::bigint AS ord, b.account_id,
               NULL::uuid AS entry_id, NULL::text AS kind, NULL::timestamptz AS effective_at, b.lock_version AS d_version,
               b.pending_debits AS d_pending_debits, b.pending_credits AS d_pending_credits,
               b.posted_debits AS d_posted_debits, b.posted_credits AS d_posted_credits
        FROM unnest(v_balances) b
        UNION ALL
        SELECT 1, e.seq, e.ctid, 0, e.account_id, e.entry_id, e.kind, e.effective_at, 1,
               e.d_pending_debits, e.d_pending_credits, e.d_posted_debits, e.d_posted_credits
        FROM balance_effects e
        WHERE e.account_id = ANY(v_locked) AND e.applied_at IS NULL
        UNION ALL
        SELECT 2, NULL, NULL, n.ord, n.account_id, n.entry_id, n.kind, n.effective_at, 1,
               n.d_pending_debits, n.d_pending_credits, n.d_posted_debits, n.d_posted_credits
        FROM unnest(p_new) WITH ORDINALITY AS n(account_id, entry_id, kind, d_pending_debits, d_pending_credits,
                                                d_posted_debits, d_posted_credits, effective_at, ord)
    ), running AS (
        SELECT src.*,
               sum(d_version) OVER w AS lock_version,
               sum(d_pending_debits) OVER w AS pending_debits,
               sum(d_pending_credits) OVER w AS pending_credits,
               sum(d_posted_debits) OVER w AS posted_debits,
               sum(d_posted_credits) OVER w AS posted_credits
        FROM src
        WINDOW w AS (PARTITION BY account_id ORDER BY part, seq, ord ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    ), eff AS (
        SELECT * FROM running WHERE part > 0
    ), marked AS (
        -- The queued effects folded, each reached by the row id the fold read it at (a TID scan per effect; none
        -- updates them meanwhile: that takes the balance rows' locks, held here). Joined on seq, a generic plan made
        -- while balance_effects was small walked its whole primary key for every sync posting; given seq = ANY of
        -- the folded ones too, the nested loop (the only join these routines allow) compared every pair.
        UPDATE balance_effects be
        SET applied_at = clock_timestamp(), lock_version = eff.lock_version,
            pending_debits = eff.pending_debits, pending_credits = eff.pending_credits,
            posted_debits = eff.posted_debits, posted_credits = eff.posted_credits
        FROM eff
        WHERE eff.part = 1 AND be.ctid = eff.row_id
        RETURNING 1
    ), inserted AS (
        INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,
                                     d_posted_debits, d_posted_credits, effective_at, applied_at, lock_version,
                                     pending_debits, pending_credits, posted_debits, posted_credits)
        SELECT p_tenant, account_id, entry_id, kind, d_pending_debits, d_pending_credits, d_posted_debits,
               d_posted_credits, effective_at, clock_timestamp(), lock_version, pending_debits, pending_credits,
               posted_debits, posted_credits
        FROM eff
        WHERE part = 2
        ORDER BY account_id, ord
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
        FROM totals t WHERE ab.account_id = t.account_id
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
