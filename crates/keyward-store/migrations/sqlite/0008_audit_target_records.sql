-- Keyward schema 8: one target's records sit together. Each audit target row keeps its record's
-- tenant (first in the key, so one tenant's lookups never walk another tenant's rows: built-in
-- role template ids are targets in every tenant) and the key of a copy of its record in
-- audit_copies. A target's copies get consecutive keys in a block of 2^32 keys of its own, so its
-- newest records are a few adjacent pages of a rowid table instead of one page per record
-- anywhere in the log, and that table's interior pages hold only integer keys (a WITHOUT ROWID
-- table keeping the copies in its rows had a fan-out of about 4). Verification compares every
-- copy with its record. A copy leaves out the tenant and the time, which the target row holds.
CREATE TABLE audit_copies (
    key INTEGER PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE audit_targets_v8 (
    tenant_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    activity_date_time TEXT NOT NULL,
    audit_seq INTEGER NOT NULL REFERENCES audit_records(seq) ON DELETE CASCADE,
    target_upn_lc TEXT,
    copy_key INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, target_id, activity_date_time, audit_seq)
) WITHOUT ROWID;
-- Blocks numbered from 1 in (tenant, target) order, keys in a block in (time, record) order. Both
-- statements read audit_records in file order (CROSS JOIN fixes the join order) and leave the
-- ordering to SQLite's sorter, so a large log is read once from end to end, not a page per row.
INSERT INTO audit_targets_v8 (tenant_id, target_id, activity_date_time, audit_seq, target_upn_lc, copy_key)
    SELECT r.tenant_id, t.target_id, t.activity_date_time, t.audit_seq, t.target_upn_lc,
        (dense_rank() OVER (ORDER BY r.tenant_id, t.target_id) << 32)
            + row_number() OVER (PARTITION BY r.tenant_id, t.target_id ORDER BY t.activity_date_time, t.audit_seq) - 1
    FROM audit_records r CROSS JOIN audit_targets t ON t.audit_seq = r.seq
    ORDER BY r.tenant_id, t.target_id, t.activity_date_time, t.audit_seq;
DROP TABLE audit_targets;
CREATE INDEX audit_targets_seq ON audit_targets_v8(audit_seq);
INSERT INTO audit_copies (key, record)
    SELECT t.copy_key, json_remove(r.record, '$.tenant_id', '$.activity_date_time')
    FROM audit_records r CROSS JOIN audit_targets_v8 t ON t.audit_seq = r.seq ORDER BY t.copy_key;
ALTER TABLE audit_targets_v8 RENAME TO audit_targets;
CREATE INDEX audit_targets_upn ON audit_targets(tenant_id, target_upn_lc, activity_date_time, audit_seq);
-- A copy goes with its target row (retention deletes records, which deletes their target rows).
CREATE TRIGGER audit_copies_follow_targets AFTER DELETE ON audit_targets
BEGIN
    DELETE FROM audit_copies WHERE key = old.copy_key;
END;
