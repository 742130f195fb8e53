-- One event, inside the transaction of the change it reports (see 0040_events.sql), written by ledger_events.
-- p_data is the object as the API renders it; with p_facts, what only the database knew at the change, from
-- which the reader finishes p_data (see 0041_event_facts.sql).
DROP FUNCTION IF EXISTS ledger_event(text, text, text, uuid, jsonb, timestamptz);
CREATE OR REPLACE FUNCTION ledger_event(p_tenant text, p_resource text, p_event_name text, p_entity_id uuid,
                                        p_data jsonb, p_time timestamptz DEFAULT now(), p_facts jsonb DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    SELECT ledger_events(p_tenant, jsonb_build_array(jsonb_build_object('resource', p_resource,
                                                                        'event_name', p_event_name,
                                                                        'entity_id', p_entity_id, 'data', p_data)),
                         p_time, p_facts)
$$;
