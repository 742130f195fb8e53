-- Balances of a set of accounts, summed, from the effective-time cache: every applied effect with
-- effective_at <= p_at (or < p_at when p_inclusive is false). Whole UTC days come from the day buckets, the
-- day of p_at from the effects themselves. (ledger_balance_at is this for one account; a category's balance
-- at a time is this for its accounts.)
CREATE OR REPLACE FUNCTION ledger_balances_at(p_accounts uuid[], p_at timestamptz, p_inclusive boolean)
RETURNS TABLE (pending_debits numeric, pending_credits numeric, posted_debits numeric, posted_credits numeric)
LANGUAGE sql STABLE AS $$
    WITH day AS (SELECT (p_at AT TIME ZONE 'UTC')::date AS d),
    whole AS (
        SELECT coalesce(sum(k.pending_debits), 0) pd, coalesce(sum(k.pending_credits), 0) pc,
               coalesce(sum(k.posted_debits), 0) od, coalesce(sum(k.posted_credits), 0) oc
        FROM effective_balance_buckets k, day WHERE k.account_id = ANY(p_accounts) AND k.day < day.d
    ), part AS (
        SELECT coalesce(sum(e.d_pending_debits), 0) pd, coalesce(sum(e.d_pending_credits), 0) pc,
               coalesce(sum(e.d_posted_debits), 0) od, coalesce(sum(e.d_posted_credits), 0) oc
        FROM balance_effects e, day
        WHERE e.account_id = ANY(p_accounts) AND e.applied_at IS NOT NULL
          AND e.effective_at >= (day.d::timestamp AT TIME ZONE 'UTC')
          AND (e.effective_at < p_at OR (p_inclusive AND e.effective_at = p_at))
    )
    SELECT whole.pd + part.pd, whole.pc + part.pc, whole.od + part.od, whole.oc + part.oc FROM whole, part
$$;
