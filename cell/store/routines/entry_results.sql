-- Resulting balances of a transaction's entries applied in the posting, for the response: running sums and
-- lock version right after each entry, and the amounts ledger_balances computes from them.
-- The effects are reached by (entry_id, kind), the only restriction in WHERE: `applied_at IS NOT NULL` there let a
-- generic plan (ledger_post's) walk the whole partial index balance_effects_account_effective, estimated empty when
-- the plan was made (no effect applied yet), for every sync posting: thousands of buffers, milliseconds, growing.
DROP FUNCTION IF EXISTS ledger_entry_results(uuid[], uuid[]);  -- a form this branch had for a while
CREATE OR REPLACE FUNCTION ledger_entry_results(p_entry_ids uuid[]) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
        'id', f.entry_id, 'lock_version', f.lock_version,
        'pending_debits', f.pending_debits, 'pending_credits', f.pending_credits,
        'posted_debits', f.posted_debits, 'posted_credits', f.posted_credits,
        'pending_amount', lb.pending_amount, 'posted_amount', lb.posted_amount,
        'available_debits', lb.available_debits, 'available_credits', lb.available_credits,
        'available_amount', lb.available_amount)) FILTER (WHERE f.applied_at IS NOT NULL), '[]'::jsonb)
    FROM balance_effects f
    JOIN ledger_accounts a ON a.id = f.account_id
    CROSS JOIN LATERAL ledger_balances(a.normal_balance, f.pending_debits, f.pending_credits, f.posted_debits,
                                       f.posted_credits) lb
    WHERE f.entry_id = ANY(p_entry_ids) AND f.kind = 'entry'
$$;
