-- An application's `uniqueName`: the client-chosen alternate key of
-- `/applications(uniqueName='…')`, set once when an upsert creates the application and never
-- changed. Matched without case, unique in a tenant; applications created otherwise have none.
ALTER TABLE applications ADD COLUMN unique_name TEXT;
ALTER TABLE applications ADD COLUMN unique_name_lc TEXT;
CREATE UNIQUE INDEX applications_unique_name ON applications(tenant_id, unique_name_lc);
