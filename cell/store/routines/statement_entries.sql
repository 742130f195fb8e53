-- The entries of a ledger account statement, the one home of that rule (the entry list, the version list and the
-- verifier read it): entries of its account effective in [lower, upper) whose balance effect had been applied at
-- the statement's lock version and that no archive applied by then had undone. Later entries, backdated or not,
-- and later archives do not change it.
CREATE OR REPLACE FUNCTION ledger_statement_entries(p_tenant text, p_statement uuid)
RETURNS TABLE (entry_id uuid, transaction_id uuid) LANGUAGE sql STABLE AS $$
    SELECT e.id, e.transaction_id
    FROM ledger_account_statements s
    JOIN ledger_entries e ON e.ledger_account_id = s.ledger_account_id
        AND e.effective_at >= s.effective_at_lower_bound AND e.effective_at < s.effective_at_upper_bound
    JOIN balance_effects f ON f.entry_id = e.id AND f.kind = 'entry'
        AND f.lock_version <= s.ledger_account_lock_version
    WHERE s.tenant_id = p_tenant AND s.id = p_statement
      AND NOT EXISTS (SELECT 1 FROM balance_effects x WHERE x.entry_id = e.id AND x.kind = 'archive'
                      AND x.lock_version <= s.ledger_account_lock_version)
$$;
