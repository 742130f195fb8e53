-- Events' position indexes hold positioned rows only: an unpositioned row (position NULL) entered them at its
-- insert, so the sequencer's max(position) per tenant walked past every row still waiting (NULLs sort last),
-- and every posting paid two index entries more than it needs. Readers always ask for `position > n`.
DROP INDEX events_tenant_position;
CREATE UNIQUE INDEX events_tenant_position ON events (tenant_id, position) WHERE position IS NOT NULL;
DROP INDEX events_tenant_entity;
CREATE INDEX events_tenant_entity ON events (tenant_id, entity_id, position) WHERE position IS NOT NULL;
