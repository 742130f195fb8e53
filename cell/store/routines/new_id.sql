-- A time-ordered (version 7, RFC 9562) UUID for a row the database names itself (an event, a webhook delivery),
-- as cell/service/common.new_ids names the service's rows: the current Unix millisecond first, random bits after,
-- so that rows written later sort after in every index keyed by id (a random id dirtied a random leaf page of the
-- primary key per row: a full-page image of WAL each after every checkpoint, in an aged cell). gen_random_uuid()'s
-- version 4 with its first 48 bits replaced by the time and its version set to 7 (any PostgreSQL; 18's uuidv7()
-- is the same thing). One SQL expression: the planner inlines it where it is called.
CREATE OR REPLACE FUNCTION ledger_new_id() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                                          PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint)
                                                            FROM 3)
                                          FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;
