-- A category's current running sums: the total-balance rows of every account its closure reaches, added up
-- (one index range of the closure, one row per account; bounded by the category's size, not its history).
CREATE OR REPLACE FUNCTION ledger_category_sums(p_category uuid)
RETURNS TABLE (pending_debits numeric, pending_credits numeric, posted_debits numeric, posted_credits numeric)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(b.pending_debits), 0), coalesce(sum(b.pending_credits), 0),
           coalesce(sum(b.posted_debits), 0), coalesce(sum(b.posted_credits), 0)
    FROM ledger_account_category_closure c JOIN account_balances b ON b.account_id = c.account_id
    WHERE c.category_id = p_category AND c.reachable
$$;
