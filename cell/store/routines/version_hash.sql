-- A transaction version's audit hash: sha256(previous version's hash || snapshot).
CREATE OR REPLACE FUNCTION ledger_version_hash(p_prev bytea, p_snapshot jsonb) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(coalesce(p_prev, ''::bytea) || convert_to(p_snapshot::text, 'UTF8'))
$$;
