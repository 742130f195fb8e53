-- ledger_post for a posting of a group (cell/service/posting_groups.py, store.post_group): the same call, except that
-- a violated balance lock or a stale lock_version (LG001, LG002: the posting's own answer, not the group's failure)
-- undoes this posting alone (the EXCEPTION block is a subtransaction, entered for each call) and is returned,
-- {"rejected": {"sqlstate", "detail"}}, rather than raised, so that the group's other postings are written in its
-- one transaction and the service raises for this one what it raises for a posting alone (store/errors.py). Any
-- other error still fails the whole group. Used for a tenant's groups with balance locks once one of them was
-- refused (posting_groups.ISOLATED_S): a subtransaction per posting costs the database, and the worker that reads
-- what it wrote, about a sixth more CPU.
CREATE OR REPLACE FUNCTION ledger_post_in_group(
    p_tenant text, p_idem_key text, p_idem_hash bytea,
    p_txn_id uuid, p_ledger_id uuid, p_description text, p_status text, p_effective_at timestamptz,
    p_external_id text, p_metadata jsonb, p_reverses_id uuid,
    p_entry_ids uuid[], p_accounts uuid[], p_directions text[], p_amounts bigint[],
    p_apply_accounts uuid[], p_checks jsonb, p_snapshot jsonb,
    p_ledgerable_type text, p_ledgerable_id text, p_entry_metadata jsonb,
    p_partial jsonb, p_archive_on_lock_failure boolean, p_events jsonb, p_answer bytea
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
    v_detail text;
BEGIN
    RETURN ledger_post(p_tenant, p_idem_key, p_idem_hash, p_txn_id, p_ledger_id, p_description, p_status,
                       p_effective_at, p_external_id, p_metadata, p_reverses_id, p_entry_ids, p_accounts,
                       p_directions, p_amounts, p_apply_accounts, p_checks, p_snapshot, p_ledgerable_type,
                       p_ledgerable_id, p_entry_metadata, p_partial, p_archive_on_lock_failure, p_events, p_answer);
EXCEPTION WHEN SQLSTATE 'LG001' OR SQLSTATE 'LG002' THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_detail = PG_EXCEPTION_DETAIL;
    RETURN jsonb_build_object('rejected', jsonb_build_object('sqlstate', v_state, 'detail', v_detail));
END $$;
