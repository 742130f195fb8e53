-- The ids of at most p_limit transactions of tenant p_tenant whose metadata contains p_metadata (a non-empty object),
-- by the metadata index (ledger_transactions_metadata, 0195, partial: only transactions with metadata, which is what
-- `metadata <> '{}'` below lets the plan take): store.transactions.list_page reads a few matching transactions by
-- these ids, not by a walk of the tenant's transactions. SECURITY DEFINER for the reason ledger_accounts_matching
-- is (`@>` is not leakproof: under row-level security no plan can take the index), keeping the policy's rule as it
-- does: only the transactions of the tenant the session acts for (ledger.tenant); a session acting for none gets
-- nothing. Planned per call: a generic plan does not know the value, and the index's estimate needs it.
CREATE OR REPLACE FUNCTION ledger_transactions_matching(p_tenant text, p_metadata jsonb, p_limit int)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET plan_cache_mode = force_custom_plan AS $$
    SELECT t.id FROM ledger_transactions t
    WHERE t.tenant_id = p_tenant AND t.metadata @> p_metadata AND t.metadata <> '{}'::jsonb
      AND p_metadata <> '{}'::jsonb AND p_tenant = current_setting('ledger.tenant', true)
    LIMIT p_limit
$$;
