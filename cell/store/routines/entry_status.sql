-- Whether an entry is its transaction's (the one home of that rule): a pending transaction's entries replaced
-- (routines/replace_entries.sql, 0206) leaves the old ones discarded, archived whatever the transaction's status
-- becomes. `ledger_entries.version` is the version that wrote the entry (NULL: 1), `ledger_transactions.
-- entries_version` the version whose entries are the transaction's (NULL: never replaced). Inlined SQL functions:
-- the expression itself wherever they are called, so a plan keeps its estimates (all NULL: every entry live).
CREATE OR REPLACE FUNCTION ledger_entry_live(p_entry_version integer, p_entries_version integer)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_entries_version IS NULL OR coalesce(p_entry_version, 1) = p_entries_version
$$;

-- An entry's status: its transaction's, or archived when discarded.
CREATE OR REPLACE FUNCTION ledger_entry_status(p_entry_version integer, p_entries_version integer, p_status text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_entries_version IS NULL OR coalesce(p_entry_version, 1) = p_entries_version THEN p_status
                ELSE 'archived' END
$$;
