-- Keyward schema 7: each audit target row carries its record's time, and the target indexes are
-- ordered by it, so "one target's newest records" reads exactly one page of index entries and
-- that many records, however many records the target has (a popular group can have millions).
ALTER TABLE audit_targets ADD COLUMN activity_date_time TEXT;
UPDATE audit_targets t SET activity_date_time = r.activity_date_time FROM audit_records r WHERE r.seq = t.audit_seq;
ALTER TABLE audit_targets ALTER COLUMN activity_date_time SET NOT NULL;
ALTER TABLE audit_targets DROP CONSTRAINT audit_targets_pkey;
ALTER TABLE audit_targets ADD PRIMARY KEY (target_id, activity_date_time, audit_seq);
DROP INDEX audit_targets_upn;
CREATE INDEX audit_targets_upn ON audit_targets(target_upn_lc, activity_date_time, audit_seq);
