-- The ids of at most p_limit accounts of tenant p_tenant whose metadata contains p_metadata, by the metadata index
-- (ledger_accounts_metadata): store.accounts.list_page reads a few matching accounts by these ids, not by a walk of
-- the tenant's accounts. SECURITY DEFINER because under row-level security no plan can take that index: `@>`
-- (jsonb_contains) is not leakproof, so the policy's condition comes first and every account of the tenant is read
-- (~470 buffers at 20,000 accounts for 3 matching; 2 by the index, tests/integration/store/test_list_reads.py). The
-- policy's rule is kept here instead, for every caller: only the accounts of the tenant the session acts for
-- (ledger.tenant, which every pooled connection sets to its task's tenant: cell/store/db.py); a session acting for
-- none gets nothing. Planned per call (plan_cache_mode): a generic plan does not know the value, and the index's
-- estimate needs it.
CREATE OR REPLACE FUNCTION ledger_accounts_matching(p_tenant text, p_metadata jsonb, p_limit int)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET plan_cache_mode = force_custom_plan AS $$
    SELECT a.id FROM ledger_accounts a
    WHERE a.tenant_id = p_tenant AND a.metadata @> p_metadata
      AND p_tenant = current_setting('ledger.tenant', true)
    LIMIT p_limit
$$;
