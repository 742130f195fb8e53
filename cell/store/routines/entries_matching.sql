-- The ids of at most p_limit entries of tenant p_tenant whose metadata contains p_metadata (a non-empty object): an
-- entry's own (ledger_entries.metadata, by ledger_entries_metadata, 0196), unless PATCH set it another since, or that
-- other (ledger_entry_metadata, by ledger_entry_metadata_metadata): exactly the entries whose
-- coalesce(m.metadata, e.metadata) contains it, as store.entries.list_page filters them. It reads a few matching
-- entries by these ids, not by a walk of the tenant's entries. SECURITY DEFINER, keeping the policy's rule, and
-- planned per call, for the reasons ledger_transactions_matching is (`@>` is not leakproof: under row-level
-- security no plan can take the index).
CREATE OR REPLACE FUNCTION ledger_entries_matching(p_tenant text, p_metadata jsonb, p_limit int)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET plan_cache_mode = force_custom_plan AS $$
    SELECT c.id FROM (
        SELECT e.id FROM ledger_entries e
        WHERE e.tenant_id = p_tenant AND e.metadata @> p_metadata AND e.metadata <> '{}'::jsonb
          AND NOT EXISTS (SELECT 1 FROM ledger_entry_metadata m WHERE m.entry_id = e.id)
        UNION ALL
        SELECT m.entry_id FROM ledger_entry_metadata m
        WHERE m.tenant_id = p_tenant AND m.metadata @> p_metadata AND m.metadata <> '{}'::jsonb
    ) c
    WHERE p_metadata <> '{}'::jsonb AND p_tenant = current_setting('ledger.tenant', true)
    LIMIT p_limit
$$;
