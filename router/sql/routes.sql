-- name: load_routes
-- A tenant still `creating` has no row on its cell yet (or a cell that is gone): left out, it is answered as an
-- unknown tenant is (401), and routed once `tenants create` turns it active (and publishes the change).
SELECT t.id AS tenant_id, t.cell, c.api_url, t.epoch, t.rate_limit_per_s, t.rate_burst
FROM tenants t JOIN cells c ON c.name = t.cell
WHERE t.state <> 'creating'
