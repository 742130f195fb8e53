-- A tenant being created: its catalog row is written first, as `creating`, in the transaction that checks its cell
-- takes tenants (a drain waits for it); the cell's row comes next, then the state turns `active`. A failure in
-- between leaves a tenant `tenants list` shows and a second `tenants create` finishes, never a row in a cell that
-- the catalog does not know.
ALTER TABLE tenants DROP CONSTRAINT tenants_state_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_state_check CHECK (state IN ('active', 'moving', 'creating'));
