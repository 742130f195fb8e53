-- The balance formulas (Modern Treasury's definitions), their one home in SQL: pending and posted amounts
-- are credits - debits for a credit-normal account (debits - credits for debit-normal); available is posted
-- money in minus everything, pending or posted, already promised out. One SELECT returning one row, declared
-- as a table so that the planner inlines it where it is called in FROM / LATERAL (every caller does).
CREATE OR REPLACE FUNCTION ledger_balances(p_normal text, p_pending_debits numeric, p_pending_credits numeric,
    p_posted_debits numeric, p_posted_credits numeric)
RETURNS TABLE (pending_amount numeric, posted_amount numeric,
               available_debits numeric, available_credits numeric, available_amount numeric)
LANGUAGE sql IMMUTABLE PARALLEL SAFE ROWS 1 AS $$
    SELECT CASE WHEN p_normal = 'credit' THEN p_pending_credits - p_pending_debits
                ELSE p_pending_debits - p_pending_credits END,
           CASE WHEN p_normal = 'credit' THEN p_posted_credits - p_posted_debits
                ELSE p_posted_debits - p_posted_credits END,
           CASE WHEN p_normal = 'credit' THEN p_pending_debits ELSE p_posted_debits END,
           CASE WHEN p_normal = 'credit' THEN p_posted_credits ELSE p_pending_credits END,
           CASE WHEN p_normal = 'credit' THEN p_posted_credits - p_pending_debits
                ELSE p_posted_debits - p_pending_credits END
$$;
