-- name: load_routes
SELECT t.id AS tenant_id, t.cell, c.api_url, t.epoch, t.rate_limit_per_s, t.rate_burst
FROM tenants t JOIN cells c ON c.name = t.cell
