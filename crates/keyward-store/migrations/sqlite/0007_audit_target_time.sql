-- Keyward schema 7: each audit target row carries its record's time, and the target indexes are
-- ordered by it, so "one target's newest records" reads exactly one page of index entries and
-- that many records, however many records the target has (a popular group can have millions).
-- Clustered on the lookup key (WITHOUT ROWID): the index is the table.
CREATE TABLE audit_targets_by_time (
    target_id TEXT NOT NULL,
    activity_date_time TEXT NOT NULL,
    audit_seq INTEGER NOT NULL REFERENCES audit_records(seq) ON DELETE CASCADE,
    target_upn_lc TEXT,
    PRIMARY KEY (target_id, activity_date_time, audit_seq)
) WITHOUT ROWID;
INSERT INTO audit_targets_by_time (target_id, activity_date_time, audit_seq, target_upn_lc)
    SELECT t.target_id, r.activity_date_time, t.audit_seq, t.target_upn_lc
    FROM audit_targets t JOIN audit_records r ON r.seq = t.audit_seq;
DROP TABLE audit_targets;
ALTER TABLE audit_targets_by_time RENAME TO audit_targets;
CREATE INDEX audit_targets_upn ON audit_targets(target_upn_lc, activity_date_time, audit_seq);
CREATE INDEX audit_targets_seq ON audit_targets(audit_seq);
