-- Balance components are reported as signed 64-bit integers (what Modern Treasury's API and SDKs carry):
-- a posting that would take an account's pending debits or credits beyond 2^63 - 1 is refused (LG013).
-- Pending counts every pending and posted entry, so it bounds the posted components too. The account's
-- queued effects (postings still waiting for a worker) count: cached + queued + this posting.
--
-- ledger_post calls it only when it can matter: an entry above 2^40, or an account flagged headroom_low
-- (past 2^62, set here and by ledger_apply). Below that, reaching 2^63 would take millions of queued
-- postings on one account; summing a hot account's queue on every posting cost ~100 us of database time.
-- Concurrent postings to one account are each checked against what was committed before them: each first locks its
-- accounts' rows (in id order; held to its commit), so the sums, read by the next statement, include every posting
-- checked before it (a snapshot taken before would miss one still in flight, and two could pass 2^63 together).
CREATE OR REPLACE FUNCTION ledger_headroom(p_accounts uuid[], p_directions text[], p_amounts bigint[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v record;
BEGIN
    PERFORM 1 FROM ledger_accounts WHERE id = ANY(p_accounts) ORDER BY id FOR UPDATE;
    WITH n AS (
        SELECT account_id, coalesce(sum(amount) FILTER (WHERE direction = 'debit'), 0) AS d,
               coalesce(sum(amount) FILTER (WHERE direction = 'credit'), 0) AS c
        FROM unnest(p_accounts, p_directions, p_amounts) AS e(account_id, direction, amount)
        GROUP BY account_id
    ), t AS (
        SELECT n.account_id, b.pending_debits + q.d + n.d AS debits, b.pending_credits + q.c + n.c AS credits
        FROM n JOIN account_balances b ON b.account_id = n.account_id
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(f.d_pending_debits), 0) AS d, coalesce(sum(f.d_pending_credits), 0) AS c
            FROM balance_effects f WHERE f.account_id = n.account_id AND f.applied_at IS NULL
        ) q
    ), flagged AS (
        UPDATE ledger_accounts a SET headroom_low = true
        FROM t WHERE a.id = t.account_id AND NOT a.headroom_low
          AND (t.debits > 4611686018427387904 OR t.credits > 4611686018427387904)
        RETURNING 1
    )
    SELECT account_id, debits, credits INTO v FROM t
    WHERE debits > 9223372036854775807 OR credits > 9223372036854775807
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'balance_overflow' USING ERRCODE = 'LG013',
            DETAIL = jsonb_build_object('ledger_account_id', v.account_id, 'pending_debits', v.debits,
                                        'pending_credits', v.credits)::text;
    END IF;
END $$;

-- What a write of entries finds in its accounts' one read (ledger_post, ledger_replace_entries), refused: an account
-- discarded (0204) since the cell looked it up is not found (LG015), and no balance goes past the signed 64-bit range
-- (ledger_headroom, when it can matter). Called only when one of them is so: nothing more on the common path.
CREATE OR REPLACE FUNCTION ledger_refuse_accounts(p_discarded uuid, p_headroom_low boolean, p_accounts uuid[],
                                                  p_directions text[], p_amounts bigint[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_discarded IS NOT NULL THEN
        RAISE EXCEPTION 'ledger account % not found', p_discarded USING ERRCODE = 'LG015',
            DETAIL = jsonb_build_object('ledger_account_id', p_discarded)::text;
    END IF;
    IF p_headroom_low THEN
        PERFORM ledger_headroom(p_accounts, p_directions, p_amounts);
    END IF;
END $$;
