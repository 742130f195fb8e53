-- A transaction version's audit hash: sha256(previous version's hash || snapshot).
-- STABLE, as convert_to is: so the planner inlines it into the statement that calls it (an IMMUTABLE function
-- whose body is only STABLE is run as a function call of its own, a statement per posting).
CREATE OR REPLACE FUNCTION ledger_version_hash(p_prev bytea, p_snapshot jsonb) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT sha256(coalesce(p_prev, ''::bytea) || convert_to(p_snapshot::text, 'UTF8'))
$$;
