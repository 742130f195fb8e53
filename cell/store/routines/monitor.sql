-- Balance monitors (0042) of the accounts p_accounts, whose balance rows the caller (ledger_apply) holds locked:
-- each live monitor walks the effects applied since the lock version it was last evaluated at, in lock-version
-- order, and writes an event on every change of its condition's truth (false -> true: triggered, true -> false:
-- resolved). Under the row lock, each lock version is evaluated once: never two events for one transition.
-- The event's data is the monitor's row, its facts the balances at that lock version (the reader renders them).
CREATE OR REPLACE FUNCTION ledger_monitor(p_accounts uuid[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    m record;
    s record;
    v_triggered boolean;
    v_holds boolean;
    v_version bigint;
BEGIN
    FOR m IN SELECT mo.*, a.normal_balance, a.currency, a.currency_exponent FROM ledger_account_balance_monitors mo
             JOIN ledger_accounts a ON a.id = mo.ledger_account_id
             WHERE mo.ledger_account_id = ANY(p_accounts) AND mo.discarded_at IS NULL
             ORDER BY mo.id FOR UPDATE OF mo LOOP
        v_triggered := m.triggered;
        v_version := m.lock_version;
        FOR s IN SELECT f.lock_version, f.pending_debits, f.pending_credits, f.posted_debits, f.posted_credits, lb.*
                 FROM balance_effects f
                 CROSS JOIN LATERAL ledger_balances(m.normal_balance, f.pending_debits, f.pending_credits,
                                                    f.posted_debits, f.posted_credits) lb
                 WHERE f.account_id = m.ledger_account_id AND f.lock_version > m.lock_version
                 ORDER BY f.lock_version LOOP
            v_holds := ledger_monitor_holds(m.alert_field, m.alert_operator, m.alert_value, s.pending_amount,
                                            s.posted_amount, s.available_amount, s.lock_version);
            IF v_holds <> v_triggered THEN
                PERFORM ledger_event(m.tenant_id, 'ledger_account_balance_monitor',
                                     CASE WHEN v_holds THEN 'balance_monitor.triggered'
                                          ELSE 'balance_monitor.resolved' END,
                                     m.id, to_jsonb(m) - 'normal_balance' - 'currency' - 'currency_exponent', now(),
                                     to_jsonb(s) || jsonb_build_object('triggered', v_holds, 'currency', m.currency,
                                                                       'currency_exponent', m.currency_exponent));
                v_triggered := v_holds;
            END IF;
            v_version := s.lock_version;
        END LOOP;
        IF v_version <> m.lock_version THEN
            UPDATE ledger_account_balance_monitors SET triggered = v_triggered, lock_version = v_version
            WHERE id = m.id;
        END IF;
    END LOOP;
END $$;
