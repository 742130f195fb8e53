-- Resulting balances of a transaction's entries, for the response.
CREATE OR REPLACE FUNCTION ledger_entry_results(p_entry_ids uuid[]) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
        'id', entry_id, 'lock_version', lock_version,
        'pending_debits', pending_debits, 'pending_credits', pending_credits,
        'posted_debits', posted_debits, 'posted_credits', posted_credits)), '[]'::jsonb)
    FROM balance_effects WHERE entry_id = ANY(p_entry_ids) AND kind = 'entry' AND applied_at IS NOT NULL
$$;
