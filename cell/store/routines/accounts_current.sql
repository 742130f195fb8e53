-- The current balances of many accounts of one tenant, read together (cell/service/reads.py batches the balance
-- reads that arrive together): store.accounts.fetch's row for each id that is the tenant's account, one snapshot,
-- in no particular order. Row-level security applies as to any statement of the caller (SECURITY INVOKER).
-- Its cost follows the ids, not the tenant's accounts: one primary-key probe per id into each table. The LATERAL
-- subquery with its LIMIT is never flattened into the join, so no plan can trade the probes for a hash join over
-- every account of the tenant (the generic plan of the statement this replaces did: a batch of 2 reads cost as
-- much as reading all of them), and no seq scan either (a plan made while the tables were one page, in a young
-- cell, would keep one). Its one plan is generic on purpose (SET plan_cache_mode): a custom plan per call, which a
-- plain prepared statement takes when the batch is small (the estimate of a generic plan is of 10 ids), costs
-- more planning than the whole read (posting routines, post.sql, are held the same way).
-- Its columns grew (0203: external_id, ledgerable_type, ledgerable_id): CREATE OR REPLACE cannot change a result
-- type, so the old form goes first.
DROP FUNCTION IF EXISTS ledger_accounts_current(text, uuid[]);
CREATE OR REPLACE FUNCTION ledger_accounts_current(p_tenant text, p_ids uuid[])
RETURNS TABLE (seq bigint, id uuid, ledger_id uuid, name text, description text, normal_balance text, currency text,
               currency_exponent smallint, metadata jsonb, sync_only boolean, external_id text,
               ledgerable_type text, ledgerable_id text, created_at timestamptz,
               updated_at timestamptz, pending_debits numeric, pending_credits numeric, posted_debits numeric,
               posted_credits numeric, lock_version bigint, pending_amount numeric, posted_amount numeric,
               available_debits numeric, available_credits numeric, available_amount numeric)
LANGUAGE sql STABLE SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
    SELECT a.seq, a.id, a.ledger_id, a.name, a.description, a.normal_balance, a.currency, a.currency_exponent,
           a.metadata, a.sync_only, a.external_id, a.ledgerable_type, a.ledgerable_id, a.created_at,
           a.updated_at,
           a.pending_debits, a.pending_credits, a.posted_debits, a.posted_credits, a.lock_version, lb.*
    FROM unnest(p_ids) AS wanted(id)
    CROSS JOIN LATERAL (
        SELECT a.seq, a.id, a.ledger_id, a.name, a.description, a.normal_balance, a.currency, a.currency_exponent,
               a.metadata, a.sync_only, a.external_id, a.ledgerable_type, a.ledgerable_id, a.created_at,
           a.updated_at,
               b.pending_debits, b.pending_credits, b.posted_debits, b.posted_credits, b.lock_version
        FROM ledger_accounts a JOIN account_balances b ON b.account_id = a.id
        WHERE a.id = wanted.id AND a.tenant_id = p_tenant AND a.discarded_at IS NULL  -- a discarded one: not found
        LIMIT 1  -- an id is one account: the LIMIT only keeps the subquery a nested loop of probes
    ) a
    CROSS JOIN LATERAL ledger_balances(a.normal_balance, a.pending_debits, a.pending_credits, a.posted_debits,
                                       a.posted_credits) lb
$$;
