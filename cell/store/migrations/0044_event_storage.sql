-- An event row holds its object as rendered (a 2-entry transaction is ~2 kB of jsonb): past the default 2 kB
-- tuple target PostgreSQL compresses it with pglz on every insert, the largest part of an event's cost to a
-- posting (measured: a 2 kB event cost a posting ~2x the database time of an empty one). Rows up to 8 kB now stay
-- as they are, uncompressed and in line; larger ones are still compressed / moved out of line.
ALTER TABLE events SET (toast_tuple_target = 8160);
