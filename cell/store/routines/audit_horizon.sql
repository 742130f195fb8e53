-- The audit sealer's pass bounds: the horizon (the oldest transaction still running) and the watermark; and whether
-- a transaction of [watermark, horizon) wrote a covered row (two index probes). None did: a pass would link nothing
-- and need not move the watermark, since no transaction below the horizon writes any more (an idle cell's sealer
-- writes nothing). A routine so that its plan is made with no sequential scan, hash or merge join (as ledger_post):
-- made on a new cell's tables analyzed while empty, the statement kept a plan that scanned ledger_transaction_versions
-- and ledger_accounts from their oldest rows at every pass (5-19 ms a pass on a hot-account stack; the unsealed
-- rows are the newest). tests/integration/store/test_sealer_reads.py
CREATE OR REPLACE FUNCTION ledger_audit_horizon(OUT horizon bigint, OUT done bigint, OUT written boolean)
LANGUAGE sql SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
    SELECT h.horizon::text::bigint, s.done_txid::text::bigint,
           EXISTS (SELECT 1 FROM ledger_transaction_versions v
                   WHERE v.audit_txid >= s.done_txid AND v.audit_txid < h.horizon)
           OR EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.audit_txid >= s.done_txid AND a.audit_txid < h.horizon)
    FROM audit_sealer s CROSS JOIN (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon) h
$$;
