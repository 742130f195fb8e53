-- The events of one routine call (ledger_post, ledger_transition), rendered by the service before the call:
-- p_events is a JSON array of {resource, event_name, entity_id, data, id} (NULL: events are off; `id` as the service
-- named it, service.events.Draft: ledger_new_id names one without), written at p_time with p_facts, the routine's
-- own answer, from which the reader finishes `data`. The one way an event row is written (ledger_event is one event
-- through here): one INSERT for all of them, no function call per event.
CREATE OR REPLACE FUNCTION ledger_events(p_tenant text, p_events jsonb, p_time timestamptz, p_facts jsonb)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO events (id, tenant_id, resource, event_name, entity_id, data, event_time, facts)
    SELECT coalesce((e ->> 'id')::uuid, ledger_new_id()), p_tenant, e ->> 'resource', e ->> 'event_name',
           (e ->> 'entity_id')::uuid, e -> 'data', p_time, p_facts
    FROM jsonb_array_elements(coalesce(p_events, '[]'::jsonb)) AS e
$$;
