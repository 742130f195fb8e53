-- How long this cell's API processes remember a checked key (their CELL_API_KEY_CACHE_TTL_S): each records its own as
-- it starts (cell/service/tenants.py record_key_cache_ttl), the row keeps the largest recorded, and when it was last.
-- A move waits that long after it marks a tenant leaving here before it freezes it (control_plane/moves.py
-- Mover._leave; its CONTROL_PLANE_CELLS_API_KEY_CACHE_TTL_S the least it waits, and all of it when no process has
-- recorded yet): so however the processes are configured, every request of the tenant here is answered 421 once it
-- is moved out. One row at most. After lowering the setting on every process of the cell, set the row to it.
-- Schema only: a new, empty table.
CREATE TABLE IF NOT EXISTS api_key_cache_ttl (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    ttl_s float8 NOT NULL CHECK (ttl_s >= 0),
    recorded_at timestamptz NOT NULL
);
