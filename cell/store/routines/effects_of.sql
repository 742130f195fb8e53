-- The effects of entries (what writing, posting or archiving them does), split by whether their account is
-- applied now: those go to ledger_apply as new effects, the others are queued here.
CREATE OR REPLACE FUNCTION ledger_effects_of(p_entry_ids uuid[], p_accounts uuid[], p_directions text[], p_amounts bigint[],
                                             p_kind text, p_posted boolean, p_effective_at timestamptz[])
RETURNS SETOF ledger_new_effect LANGUAGE sql IMMUTABLE AS $$
    SELECT e.account, e.id, p_kind,
           CASE WHEN e.direction = 'debit' THEN (CASE p_kind WHEN 'entry' THEN e.amount WHEN 'archive' THEN -e.amount ELSE 0 END) ELSE 0 END,
           CASE WHEN e.direction = 'credit' THEN (CASE p_kind WHEN 'entry' THEN e.amount WHEN 'archive' THEN -e.amount ELSE 0 END) ELSE 0 END,
           CASE WHEN e.direction = 'debit' AND (p_kind = 'post' OR (p_kind = 'entry' AND p_posted)) THEN e.amount ELSE 0 END,
           CASE WHEN e.direction = 'credit' AND (p_kind = 'post' OR (p_kind = 'entry' AND p_posted)) THEN e.amount ELSE 0 END,
           e.effective_at
    FROM unnest(p_entry_ids, p_accounts, p_directions, p_amounts, p_effective_at) WITH ORDINALITY
         AS e(id, account, direction, amount, effective_at, n)
    ORDER BY e.n
$$;
