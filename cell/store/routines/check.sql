-- Check balance locks on accounts just applied. p_checks: [{account_id, lock_version?,
-- pending_balance_amount?: {gte: n, ...}, posted_balance_amount?, available_balance_amount?}].
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
        SELECT ab.*, la.normal_balance INTO b
        FROM account_balances ab JOIN ledger_accounts la ON la.id = ab.account_id
        WHERE ab.account_id = v_account;
        IF c ? 'lock_version' THEN
            SELECT min(lock_version) - 1 INTO v_pre FROM balance_effects
            WHERE account_id = v_account AND entry_id = ANY(p_entry_ids);
            IF v_pre IS DISTINCT FROM (c->>'lock_version')::bigint THEN
                RAISE EXCEPTION 'lock_version_mismatch' USING ERRCODE = 'LG002',
                    DETAIL = jsonb_build_object('ledger_account_id', v_account,
                        'expected', (c->>'lock_version')::bigint, 'actual', v_pre)::text;
            END IF;
        END IF;
        FOREACH v_field IN ARRAY ARRAY['pending_balance_amount', 'posted_balance_amount', 'available_balance_amount'] LOOP
            CONTINUE WHEN NOT c ? v_field;
            v_amount := CASE
                WHEN v_field = 'pending_balance_amount' AND b.normal_balance = 'credit' THEN b.pending_credits - b.pending_debits
                WHEN v_field = 'pending_balance_amount' THEN b.pending_debits - b.pending_credits
                WHEN v_field = 'posted_balance_amount' AND b.normal_balance = 'credit' THEN b.posted_credits - b.posted_debits
                WHEN v_field = 'posted_balance_amount' THEN b.posted_debits - b.posted_credits
                WHEN b.normal_balance = 'credit' THEN b.posted_credits - b.pending_debits
                ELSE b.posted_debits - b.pending_credits
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
