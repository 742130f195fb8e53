-- The generation of the routines applied (cell/store/routines/generations.txt, the code's; cell/store/migrate.py):
-- one row, written before the routines of a higher generation are. Code of a lower generation (an old process
-- restarting while an upgrade rolls out, or a rollback) finds the database newer: it writes none of its older
-- routines back and is ready; the same generation compares the routines' hashes. No row: a database whose routines
-- came before generations (0). A migration of its own: a process older than generations knows no 0222, so it finds
-- the database newer (its own rule) while the release that brings them rolls out.
CREATE TABLE IF NOT EXISTS schema_routines_generation (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation integer NOT NULL CHECK (generation >= 0),
    applied_at timestamptz NOT NULL DEFAULT now()
);
