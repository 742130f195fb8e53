-- Check balance locks on accounts just applied. p_checks: [{account_id, lock_version?,
-- pending_balance_amount?: {gte: n, ...}, posted_balance_amount?, available_balance_amount?}].
-- A stale lock_version (the account's version right before p_entry_ids, less `archived_before`: ledger_checks_before)
-- raises LG002, a balance that fails an operator LG001, each with a JSON detail (versions as the client gave and read
-- them); the amounts are ledger_balances', the one home of the formulas.
CREATE OR REPLACE FUNCTION ledger_check(p_checks jsonb, p_entry_ids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c jsonb;
    v_account uuid;
    b record;
    v_pre bigint;
    v_field text;
    v_amount numeric;
    v_op text;
    v_target numeric;
    v_ok boolean;
BEGIN
    FOR c IN SELECT value FROM jsonb_array_elements(p_checks) LOOP
        v_account := (c->>'account_id')::uuid;
        SELECT lb.pending_amount, lb.posted_amount, lb.available_amount INTO b
        FROM account_balances ab JOIN ledger_accounts la ON la.id = ab.account_id
        CROSS JOIN LATERAL ledger_balances(la.normal_balance, ab.pending_debits, ab.pending_credits,
                                           ab.posted_debits, ab.posted_credits) lb
        WHERE ab.account_id = v_account;
        IF c ? 'lock_version' THEN
            -- The posting's own effects, reached by entry_id alone, the account a FILTER: `account_id = ` in WHERE
            -- let min() walk the account's whole history in balance_effects_version (oldest first, the posting's
            -- effects being the newest), in a generic plan made while that was short.
            SELECT min(lock_version) FILTER (WHERE account_id = v_account) - 1
                   - coalesce((c->>'archived_before')::bigint, 0) INTO v_pre FROM balance_effects
            WHERE entry_id = ANY(p_entry_ids);
            IF v_pre IS DISTINCT FROM (c->>'lock_version')::bigint THEN
                RAISE EXCEPTION 'lock_version_mismatch' USING ERRCODE = 'LG002',
                    DETAIL = jsonb_build_object('ledger_account_id', v_account,
                        'expected', (c->>'lock_version')::bigint, 'actual', v_pre)::text;
            END IF;
        END IF;
        FOREACH v_field IN ARRAY ARRAY['pending_balance_amount', 'posted_balance_amount', 'available_balance_amount'] LOOP
            CONTINUE WHEN NOT c ? v_field;
            v_amount := CASE v_field
                WHEN 'pending_balance_amount' THEN b.pending_amount
                WHEN 'posted_balance_amount' THEN b.posted_amount
                ELSE b.available_amount
            END;
            FOR v_op, v_target IN SELECT key, value::text::numeric FROM jsonb_each(c->v_field) LOOP
                v_ok := CASE v_op
                    WHEN 'gt' THEN v_amount > v_target WHEN 'gte' THEN v_amount >= v_target
                    WHEN 'lt' THEN v_amount < v_target WHEN 'lte' THEN v_amount <= v_target
                    WHEN 'eq' THEN v_amount = v_target END;
                IF v_ok IS NOT TRUE THEN
                    RAISE EXCEPTION 'balance_lock_failed' USING ERRCODE = 'LG001',
                        DETAIL = jsonb_build_object('ledger_account_id', v_account, 'balance', v_field,
                            'operator', v_op, 'value', v_target, 'resulting_amount', v_amount)::text;
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
END $$;

-- A change that archives entries before writing its own (a PATCH replacing a pending transaction's entries, a partial
-- post archiving the pending one): each archived entry's effect is one more version of its account before the new
-- entries, and a lock_version given is the account's before the change. p_checks with each lock_version's check told
-- how many archived entries are on its account (`archived_before`; p_archived_accounts: one element per archived
-- entry), for ledger_check: the lock_version itself is kept, so that a refusal names the versions the client saw.
CREATE OR REPLACE FUNCTION ledger_checks_before(p_checks jsonb, p_archived_accounts uuid[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_agg(CASE WHEN NOT c ? 'lock_version' THEN c ELSE c || jsonb_build_object('archived_before',
               cardinality(array_positions(p_archived_accounts, (c ->> 'account_id')::uuid)))
           END ORDER BY n), '[]'::jsonb)
    FROM jsonb_array_elements(p_checks) WITH ORDINALITY AS k(c, n)
$$;
