-- The end of a move's freeze of the tenant (its lease): past it, the tenant's next write (or the sweeper) makes it
-- active again (ledger_thaw, routines/fence.sql), so that a mover that died in the freeze leaves it frozen no longer.
-- NULL: no end (a freeze the mover has committed to its flip, or one set by a mover older than the lease).
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS frozen_until timestamptz;
