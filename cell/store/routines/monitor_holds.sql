-- Whether a balance monitor's condition (0042) holds for an account's amounts at a lock version: `field` compared
-- with `value` by `operator`. Used by ledger_monitor and by a monitor's creation (its first state).
CREATE OR REPLACE FUNCTION ledger_monitor_holds(p_field text, p_operator text, p_value bigint, p_pending numeric,
                                                p_posted numeric, p_available numeric, p_lock_version bigint)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_operator
        WHEN 'less_than' THEN v < p_value WHEN 'less_than_or_equals' THEN v <= p_value
        WHEN 'equals' THEN v = p_value WHEN 'greater_than_or_equals' THEN v >= p_value
        WHEN 'greater_than' THEN v > p_value END
    FROM (SELECT CASE p_field WHEN 'pending_balance_amount' THEN p_pending WHEN 'posted_balance_amount' THEN p_posted
                              WHEN 'available_balance_amount' THEN p_available
                              ELSE p_lock_version::numeric END AS v) s
$$;
