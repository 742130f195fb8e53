-- Idempotency keys inside the caller's transaction. ledger_key_lock: the key held by this transaction until it
-- ends, or LG004 when another request holding it is still in flight. ledger_claim_key: held, then claimed; returns
-- true when the key was already used (the caller replays or rejects).
CREATE OR REPLACE FUNCTION ledger_key_lock(p_tenant text, p_key text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('idem:' || p_tenant || ':' || p_key, 0)) THEN
        RAISE EXCEPTION 'a request with this idempotency key is in flight' USING ERRCODE = 'LG004';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION ledger_claim_key(p_tenant text, p_key text, p_hash bytea, p_type text, p_resource uuid)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_key_lock(p_tenant, p_key);
    -- One statement: the key's primary-key probe is the insert's own conflict check (a used key: no row).
    INSERT INTO idempotency_keys (tenant_id, key, request_hash, resource_type, resource_id)
    VALUES (p_tenant, p_key, p_hash, p_type, p_resource)
    ON CONFLICT (tenant_id, key) DO NOTHING;
    RETURN NOT FOUND;
END $$;
