-- Fields Modern Treasury's SDK sends and reads: what a transaction reconciles to (ledgerable_*), why it was
-- archived, the pending transaction a partial post posts, and each entry's own metadata.
ALTER TABLE ledger_transactions
    ADD COLUMN ledgerable_type text CHECK (ledgerable_type IN ('expected_payment', 'incoming_payment_detail',
                                                               'payment_order', 'return', 'reversal')),
    ADD COLUMN ledgerable_id text,
    ADD COLUMN archived_reason text,
    ADD COLUMN partially_posts_id uuid;
CREATE INDEX ledger_transactions_ledgerable ON ledger_transactions (tenant_id, ledgerable_id)
    WHERE ledgerable_id IS NOT NULL;
CREATE INDEX ledger_transactions_partially_posts ON ledger_transactions (tenant_id, partially_posts_id)
    WHERE partially_posts_id IS NOT NULL;
CREATE INDEX ledger_transactions_reverses ON ledger_transactions (tenant_id, reverses_id)
    WHERE reverses_id IS NOT NULL;
ALTER TABLE ledger_entries ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
