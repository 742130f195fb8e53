-- The closure kept equal to the graph: for every pair of p_categories x p_accounts, the closure row says
-- whether the account is reachable from the category now (a live membership of the category or of a category
-- below it through live edges). A change to the graph calls it, in its own transaction, with the categories
-- whose reach may have changed (the changed category and its ancestors) and the accounts that may have
-- entered or left it; the caller holds the ledger's category lock. Returns the number of closure rows changed.
CREATE OR REPLACE FUNCTION ledger_category_refresh(p_tenant text, p_categories uuid[], p_accounts uuid[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_changed integer;
BEGIN
    WITH RECURSIVE down(root, id) AS (
        SELECT c, c FROM unnest(p_categories) AS c
        UNION
        SELECT d.root, e.child_id FROM down d
        JOIN ledger_account_category_edges e ON e.parent_id = d.id AND e.removed_at IS NULL
    ), accounts AS (
        SELECT DISTINCT a AS account_id FROM unnest(p_accounts) AS a
    ), want AS (
        SELECT DISTINCT d.root AS category_id, m.account_id
        FROM down d
        JOIN ledger_account_category_members m ON m.category_id = d.id AND m.removed_at IS NULL
        JOIN accounts s ON s.account_id = m.account_id
    ), reached AS (
        INSERT INTO ledger_account_category_closure AS c (category_id, account_id, tenant_id, reachable)
        SELECT category_id, account_id, p_tenant, true FROM want
        ON CONFLICT (category_id, account_id) DO UPDATE SET reachable = true, updated_at = now()
        WHERE NOT c.reachable
        RETURNING 1
    ), lost AS (
        UPDATE ledger_account_category_closure c SET reachable = false, updated_at = now()
        FROM accounts s
        WHERE c.account_id = s.account_id AND c.category_id = ANY(p_categories) AND c.reachable
          AND NOT EXISTS (SELECT 1 FROM want w WHERE w.category_id = c.category_id AND w.account_id = c.account_id)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM reached) + (SELECT count(*) FROM lost) INTO v_changed;
    RETURN v_changed;
END $$;
