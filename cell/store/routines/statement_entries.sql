-- The entries of a ledger account statement, the one home of that rule (the entry list, the version list and the
-- verifier read it): entries of its account effective in [lower, upper) whose balance effect had been applied at
-- the statement's lock version and that no archive applied by then had undone. Later entries, backdated or not,
-- and later archives do not change it. The statement is read first and its account's entries by its bounds, each a
-- subquery of its own (OFFSET 0): as a join, a plan made on tables analyzed while tiny read every entry of the
-- tenant and looked each one's statement up (tests/integration/store/test_request_reads.py).
CREATE OR REPLACE FUNCTION ledger_statement_entries(p_tenant text, p_statement uuid)
RETURNS TABLE (entry_id uuid, transaction_id uuid) LANGUAGE sql STABLE AS $$
    SELECT e.id, e.transaction_id
    FROM (SELECT s.ledger_account_id, s.effective_at_lower_bound, s.effective_at_upper_bound,
                 s.ledger_account_lock_version
          FROM ledger_account_statements s WHERE s.tenant_id = p_tenant AND s.id = p_statement OFFSET 0) s
    CROSS JOIN LATERAL (
        SELECT e.id, e.transaction_id FROM ledger_entries e
        WHERE e.ledger_account_id = s.ledger_account_id
          AND e.effective_at >= s.effective_at_lower_bound AND e.effective_at < s.effective_at_upper_bound
        OFFSET 0) e
    JOIN balance_effects f ON f.entry_id = e.id AND f.kind = 'entry'
        AND f.lock_version <= s.ledger_account_lock_version
    WHERE NOT EXISTS (SELECT 1 FROM balance_effects x WHERE x.entry_id = e.id AND x.kind = 'archive'
                      AND x.lock_version <= s.ledger_account_lock_version)
$$;
