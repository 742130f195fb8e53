-- What a transaction version's entries are rendered with beyond its snapshot's (id, account, direction, amount): each
-- entry's creation time and metadata and its account's currency, by entry id (a JSON object; the snapshot is what
-- the audit chain hashes, so it stays as it was written). One primary-key probe per entry and per account (LIMIT 1
-- under a LATERAL: a join the planner may otherwise make by row-level security's tenant index, every row of the
-- tenant's).
CREATE OR REPLACE FUNCTION ledger_version_entries(p_snapshot jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(x ->> 'id', jsonb_build_object(
               'created_at', e.created_at, 'metadata', e.metadata, 'currency', a.currency,
               'currency_exponent', a.currency_exponent)), '{}'::jsonb)
    FROM jsonb_array_elements(p_snapshot -> 'ledger_entries') AS x
    CROSS JOIN LATERAL (SELECT l.created_at, l.metadata FROM ledger_entries l
                        WHERE l.id = (x ->> 'id')::uuid LIMIT 1) e
    CROSS JOIN LATERAL (SELECT c.currency, c.currency_exponent FROM ledger_accounts c
                        WHERE c.id = (x ->> 'ledger_account_id')::uuid LIMIT 1) a
$$;
