-- Balances of one account from the effective-time cache: every applied effect with effective_at <= p_at
-- (or < p_at when p_inclusive is false); the rule is ledger_balances_at's.
CREATE OR REPLACE FUNCTION ledger_balance_at(p_account uuid, p_at timestamptz, p_inclusive boolean)
RETURNS TABLE (pending_debits numeric, pending_credits numeric, posted_debits numeric, posted_credits numeric)
LANGUAGE sql STABLE AS $$
    SELECT * FROM ledger_balances_at(ARRAY[p_account], p_at, p_inclusive)
$$;
