-- Keyward schema 8: each audit target row keeps its record's tenant, first in the key, so one
-- tenant's target lookups never walk another tenant's rows (built-in role template ids are
-- targets in every tenant). Unlike SQLite, the rows keep no copy of the record: PostgreSQL
-- tables are heaps in insertion order, where a copy would sit as scattered as the record itself.
ALTER TABLE audit_targets ADD COLUMN tenant_id TEXT;
UPDATE audit_targets t SET tenant_id = r.tenant_id FROM audit_records r WHERE r.seq = t.audit_seq;
ALTER TABLE audit_targets ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE audit_targets DROP CONSTRAINT audit_targets_pkey;
ALTER TABLE audit_targets ADD PRIMARY KEY (tenant_id, target_id, activity_date_time, audit_seq);
DROP INDEX audit_targets_upn;
CREATE INDEX audit_targets_upn ON audit_targets(tenant_id, target_upn_lc, activity_date_time, audit_seq);
