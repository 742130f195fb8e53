-- The posting path's schema: the type of a balance effect the routines pass between them. The routines
-- themselves (ledger_post, ledger_apply, ...) are code, not migrations: cell/store/routines/, applied by
-- migrate after the numbered migrations and re-applied when their text changes.
-- (Databases migrated before that split created the routines here; the routine files replace them.)

-- A balance effect a posting or transition is about to write, handed to ledger_apply (applied now) or
-- inserted unapplied (left for the workers).
CREATE TYPE ledger_new_effect AS (
    account_id        uuid,
    entry_id          uuid,
    kind              text,
    d_pending_debits  bigint,
    d_pending_credits bigint,
    d_posted_debits   bigint,
    d_posted_credits  bigint,
    effective_at      timestamptz
);
