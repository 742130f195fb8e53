-- An event's rendered object (`data`) and the routine's answer (`facts`) go out of line, uncompressed, in a row past
-- PostgreSQL's TOAST threshold (~2 kB: a 2-entry transaction's event is ~2.2 kB): the sequencer rewrites every event
-- row once to give it its position (0040), and with the object in line that rewrite wrote it whole again, half of a
-- posting's WAL (docs/performance.md). Out of line, the rewrite copies a ~200-byte row and the same TOAST pointer:
-- the object is written once (its insert pays a TOAST row, index entry and OID: about the CPU the rewrite saves, for
-- 14-30% less WAL a posting). EXTERNAL: never compressed (pglz cost a posting more than it saved, 0044); the tuple
-- target back to the default (0044's 8 kB kept such rows whole). Readers see the same values (a page of 100 events
-- reads ~3 us an event more: the TOAST lookup). Smaller rows, and the rows already written, stay as they are: on a
-- live cell it is a moment's exclusive lock (the catalog only, no rewrite), bounded so as not to queue postings long.
SET lock_timeout = '10s';
ALTER TABLE events
    ALTER COLUMN data SET STORAGE EXTERNAL,
    ALTER COLUMN facts SET STORAGE EXTERNAL,
    RESET (toast_tuple_target);
RESET lock_timeout;
