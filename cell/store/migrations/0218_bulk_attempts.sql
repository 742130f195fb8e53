-- How many times a bulk request was claimed (claim_bulk_request counts each claim as it commits, so a worker that
-- crashes mid-request has used an attempt): past the workers' bulk_attempts_max, the next claim ends the request
-- (cell/service/bulk.py give_up) instead of processing it again at every lease expiry, forever. A constant default:
-- adding it rewrites nothing (a moment's exclusive lock, bounded).
SET lock_timeout = '10s';
ALTER TABLE bulk_requests ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0;
RESET lock_timeout;
