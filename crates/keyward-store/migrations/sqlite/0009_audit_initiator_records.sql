-- Keyward schema 9: one initiator's records sit together too. Each record with an initiator (a
-- user, or an app's service principal) has a row in audit_initiators, keyed like audit_targets by
-- (tenant, initiator, time, record), keeping the key of its own copy of the record in
-- audit_copies. An initiator's copies take consecutive keys in a block of 2^32 keys of their own,
-- numbered after the blocks already in use: an initiator's day is then a few adjacent pages
-- instead of a page per record (fifty admins' records interleave in time). The rows replace the
-- initiator index on audit_records. Verification compares every copy with its record.
CREATE TABLE audit_initiators (
    tenant_id TEXT NOT NULL,
    initiator_id TEXT NOT NULL,
    activity_date_time TEXT NOT NULL,
    audit_seq INTEGER NOT NULL REFERENCES audit_records(seq) ON DELETE CASCADE,
    copy_key INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, initiator_id, activity_date_time, audit_seq)
) WITHOUT ROWID;
-- A record's copy: its fields by position, without the tenant and time its row holds
-- (audit_json::copy_json writes the same form for target rows), about half the length of the
-- canonical form, whose field names are most of it. Schema 8's target copies keep their longer
-- form; both are read.
CREATE VIEW audit_record_copies AS SELECT r.seq, r.tenant_id, r.initiator_id, r.activity_date_time, json_array(
        r.record ->> '$.id', r.record ->> '$.correlation_id', r.record ->> '$.logged_by_service',
        r.record ->> '$.category', r.record ->> '$.activity_display_name', r.record ->> '$.operation_type',
        r.record ->> '$.result', r.record ->> '$.result_reason',
        CASE r.record ->> '$.initiated_by.kind'
            WHEN 'User' THEN json_array('User', r.record ->> '$.initiated_by.id',
                r.record ->> '$.initiated_by.display_name', r.record ->> '$.initiated_by.user_principal_name',
                r.record ->> '$.initiated_by.ip_address')
            ELSE json_array(r.record ->> '$.initiated_by.kind', r.record ->> '$.initiated_by.app_id',
                r.record ->> '$.initiated_by.display_name', r.record ->> '$.initiated_by.service_principal_id', NULL)
        END,
        (SELECT json_group_array(json_array(t.value ->> '$.id', t.value ->> '$.display_name', t.value ->> '$.kind',
                t.value ->> '$.user_principal_name', json(t.value -> '$.modified_properties')))
            FROM json_each(r.record, '$.target_resources') t),
        json(r.record -> '$.additional_details')) AS copy
    FROM audit_records r;
-- Existing records: read from the initiator index, which holds these columns in this order (no
-- sort, no table read); blocks numbered after every block in use.
INSERT INTO audit_initiators (tenant_id, initiator_id, activity_date_time, audit_seq, copy_key)
    SELECT r.tenant_id, r.initiator_id, r.activity_date_time, r.seq,
        ((((SELECT coalesce(max(key), 0) FROM audit_copies) >> 32) + dense_rank() OVER (ORDER BY r.tenant_id, r.initiator_id)) << 32)
            + row_number() OVER (PARTITION BY r.tenant_id, r.initiator_id ORDER BY r.activity_date_time, r.seq) - 1
    FROM audit_records r INDEXED BY audit_records_initiator WHERE r.initiator_id IS NOT NULL
    ORDER BY r.tenant_id, r.initiator_id, r.activity_date_time, r.seq;
DROP INDEX audit_records_initiator;
-- In record (file) order: each record's copy goes to the end of its initiator's block, so the
-- log is read once from end to end and only the blocks' last pages are written to.
INSERT INTO audit_copies (key, record)
    SELECT i.copy_key, c.copy
    FROM audit_record_copies c CROSS JOIN audit_initiators i
    ON i.tenant_id = c.tenant_id AND i.initiator_id = c.initiator_id
        AND i.activity_date_time = c.activity_date_time AND i.audit_seq = c.seq;
CREATE INDEX audit_initiators_seq ON audit_initiators(audit_seq);
-- New records: the database writes the row and the copy itself, whoever inserts the record (a
-- server still running the previous version during an upgrade, too). The next key in the block
-- of the initiator's newest copy, or the first key of a new block after every block in use.
CREATE TRIGGER audit_initiators_follow_records AFTER INSERT ON audit_records WHEN new.initiator_id IS NOT NULL
BEGIN
    INSERT INTO audit_initiators (tenant_id, initiator_id, activity_date_time, audit_seq, copy_key)
    VALUES (new.tenant_id, new.initiator_id, new.activity_date_time, new.seq, coalesce(
        (SELECT CASE WHEN (largest + 1) & 4294967295 <> 0 THEN largest + 1 END FROM (
            SELECT (SELECT max(c.key) FROM audit_copies c
                    WHERE c.key >= (i.copy_key >> 32) << 32 AND c.key < ((i.copy_key >> 32) + 1) << 32) AS largest
            FROM audit_initiators i WHERE i.tenant_id = new.tenant_id AND i.initiator_id = new.initiator_id
            ORDER BY i.activity_date_time DESC, i.audit_seq DESC LIMIT 1)),
        (((SELECT coalesce(max(key), 0) FROM audit_copies) >> 32) + 1) << 32));
    INSERT INTO audit_copies (key, record)
    SELECT i.copy_key, c.copy FROM audit_initiators i, audit_record_copies c
    WHERE i.tenant_id = new.tenant_id AND i.initiator_id = new.initiator_id
        AND i.activity_date_time = new.activity_date_time AND i.audit_seq = new.seq AND c.seq = new.seq;
END;
-- A copy goes with its initiator row (retention deletes records, which deletes their rows).
CREATE TRIGGER audit_copies_follow_initiators AFTER DELETE ON audit_initiators
BEGIN
    DELETE FROM audit_copies WHERE key = old.copy_key;
END;
