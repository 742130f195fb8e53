-- Balance monitors (Modern Treasury's ledger_account_balance_monitors): a condition on one account's balances
-- or lock version, fixed once created, evaluated by ledger_apply under the balance row lock after every change
-- of the account's balances (ledger_monitor). `triggered` and `lock_version` are the state as evaluated at that
-- lock version: each evaluation walks the effects applied since, so a transition inside one batch is seen.
-- Deleting sets discarded_at (the events that named the monitor keep meaning something).
CREATE TABLE ledger_account_balance_monitors (
    seq                bigint GENERATED ALWAYS AS IDENTITY,
    id                 uuid PRIMARY KEY,
    tenant_id          text NOT NULL,
    ledger_account_id  uuid NOT NULL REFERENCES ledger_accounts(id),
    description        text,
    alert_field        text NOT NULL CHECK (alert_field IN ('available_balance_amount', 'pending_balance_amount',
                                                            'posted_balance_amount', 'ledger_account_lock_version')),
    alert_operator     text NOT NULL CHECK (alert_operator IN ('less_than', 'less_than_or_equals', 'equals',
                                                              'greater_than_or_equals', 'greater_than')),
    alert_value        bigint NOT NULL,
    metadata           jsonb NOT NULL DEFAULT '{}',
    triggered          boolean NOT NULL,
    lock_version       bigint NOT NULL,
    discarded_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_account_balance_monitors_tenant_seq ON ledger_account_balance_monitors (tenant_id, seq);
CREATE INDEX ledger_account_balance_monitors_account ON ledger_account_balance_monitors (ledger_account_id)
    WHERE discarded_at IS NULL;
-- An account with a live monitor: ledger_apply evaluates monitors only then (the flag rides on the row the
-- apply already locks and updates, so an account without monitors pays nothing). Set and cleared under that
-- row's lock by the monitor's create and delete.
ALTER TABLE account_balances ADD COLUMN monitored boolean NOT NULL DEFAULT false;
