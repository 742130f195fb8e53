-- When a move began to take the tenant off this cell (NULL: no move is): set by the mover just before it freezes the
-- tenant here, cleared when the move gives the freeze up or is aborted, and when the tenant is moved out. From then
-- on the cell's processes remember none of the tenant's keys (cell/service/tenants.py KeyCache: each request checks
-- the tenant's state), and the mover freezes the tenant only once the keys remembered before have expired
-- (CONTROL_PLANE_CELLS_API_KEY_CACHE_TTL_S after this): so the moment the source is moved_out every request there is
-- answered 421, and a router that has not learnt of the flip never reads the source's left books after a write on the
-- target, without the wait in the freeze. Schema only, no rewrite: a nullable column without a default.
SET lock_timeout = '10s';
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS leaving_since timestamptz;
RESET lock_timeout;
