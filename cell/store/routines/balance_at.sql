-- Balances of one account from the effective-time cache: every applied effect with effective_at <= p_at
-- (or < p_at when p_inclusive is false).
CREATE OR REPLACE FUNCTION ledger_balance_at(p_account uuid, p_at timestamptz, p_inclusive boolean)
RETURNS TABLE (pending_debits numeric, pending_credits numeric, posted_debits numeric, posted_credits numeric)
LANGUAGE sql STABLE AS $$
    WITH day AS (SELECT (p_at AT TIME ZONE 'UTC')::date AS d),
    whole AS (
        SELECT coalesce(sum(k.pending_debits), 0) pd, coalesce(sum(k.pending_credits), 0) pc,
               coalesce(sum(k.posted_debits), 0) od, coalesce(sum(k.posted_credits), 0) oc
        FROM effective_balance_buckets k, day WHERE k.account_id = p_account AND k.day < day.d
    ), part AS (
        SELECT coalesce(sum(e.d_pending_debits), 0) pd, coalesce(sum(e.d_pending_credits), 0) pc,
               coalesce(sum(e.d_posted_debits), 0) od, coalesce(sum(e.d_posted_credits), 0) oc
        FROM balance_effects e, day
        WHERE e.account_id = p_account AND e.applied_at IS NOT NULL
          AND e.effective_at >= (day.d::timestamp AT TIME ZONE 'UTC')
          AND (e.effective_at < p_at OR (p_inclusive AND e.effective_at = p_at))
    )
    SELECT whole.pd + part.pd, whole.pc + part.pc, whole.od + part.od, whole.oc + part.oc FROM whole, part
$$;
