-- A tenant row's fourth state, 'arriving': a move's copy of the tenant on its target cell, from the copy's first row
-- until the flip (control_plane/moves.py). The cell serves it nothing yet: its requests are answered 421
-- tenant_moved (cell/api/auth.py), its writes refused at the fence (LG012, routines/fence.sql), its queued effects,
-- webhooks and bulk requests left alone (they take active tenants only). A copy being made was 'frozen', which serves
-- reads: a router still routing the tenant to a cell it had left, which a move back is copying it to again, read the
-- partial copy there as the tenant's books until the flip. The mover makes it 'frozen' (the copy complete, the source
-- frozen for good) just before it moves the route, and 'active' after.
SET lock_timeout = '10s';
ALTER TABLE tenants DROP CONSTRAINT IF EXISTS tenants_state_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_state_check CHECK (state IN ('active', 'frozen', 'moved_out', 'arriving'));
RESET lock_timeout;
