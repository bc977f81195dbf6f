-- Keyward schema 33: a version of each tenant's clients, which every change to what the token
-- endpoint reads of an application moves in the same transaction as the change (triggers, so no
-- write path can forget it): the application, its credentials, its service principal, role
-- assignments and eligibilities, a service principal's (or group's) membership of a group, and a
-- group's role-assignability. Each node keeps the clients it has read with their tenant's version
-- at the time, and uses a kept client only while the version is unchanged.
--
-- A version is a new random number at each change, not a count: a database restored from a
-- backup, then changed, cannot come back to a version a node kept for other data. No row: no
-- change since this schema (version 0). One row per tenant, so a change in one tenant neither
-- makes other tenants' clients be read again nor waits for another tenant's transaction.
CREATE TABLE client_versions (
    tenant_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
CREATE TRIGGER applications_insert_client_version AFTER INSERT ON applications
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (new.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER applications_update_client_version AFTER UPDATE ON applications
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (new.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER applications_delete_client_version AFTER DELETE ON applications
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (old.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER service_principals_insert_client_version AFTER INSERT ON service_principals
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (new.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER service_principals_update_client_version AFTER UPDATE ON service_principals
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (new.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER service_principals_delete_client_version AFTER DELETE ON service_principals
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (old.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER role_assignments_insert_client_version AFTER INSERT ON role_assignments
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (new.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER role_assignments_update_client_version AFTER UPDATE ON role_assignments
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (new.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER role_assignments_delete_client_version AFTER DELETE ON role_assignments
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (old.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER role_eligibilities_insert_client_version AFTER INSERT ON role_eligibilities
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (new.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER role_eligibilities_update_client_version AFTER UPDATE ON role_eligibilities
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (new.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER role_eligibilities_delete_client_version AFTER DELETE ON role_eligibilities
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (old.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER directory_groups_insert_client_version AFTER INSERT ON directory_groups
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (new.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER directory_groups_update_client_version AFTER UPDATE OF is_assignable_to_role ON directory_groups
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (new.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER directory_groups_delete_client_version AFTER DELETE ON directory_groups
    BEGIN INSERT INTO client_versions (tenant_id, version) VALUES (old.tenant_id, random())
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
-- A credential's and a membership's tenant is its application's or group's (gone when that
-- is deleted with it, whose own trigger then moves the version).
CREATE TRIGGER application_credentials_insert_client_version AFTER INSERT ON application_credentials
    BEGIN INSERT INTO client_versions (tenant_id, version) SELECT tenant_id, random() FROM applications WHERE id = new.application_id
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER application_credentials_update_client_version AFTER UPDATE ON application_credentials
    BEGIN INSERT INTO client_versions (tenant_id, version) SELECT tenant_id, random() FROM applications WHERE id = new.application_id
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER application_credentials_delete_client_version AFTER DELETE ON application_credentials
    BEGIN INSERT INTO client_versions (tenant_id, version) SELECT tenant_id, random() FROM applications WHERE id = old.application_id
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
-- Only a service principal's or a group's membership counts: a user's does not touch a client.
CREATE TRIGGER group_members_insert_client_version AFTER INSERT ON group_members
    WHEN new.member_kind IN ('servicePrincipal', 'group')
    BEGIN INSERT INTO client_versions (tenant_id, version) SELECT tenant_id, random() FROM directory_groups WHERE id = new.group_id
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER group_members_update_client_version AFTER UPDATE ON group_members
    WHEN old.member_kind IN ('servicePrincipal', 'group') OR new.member_kind IN ('servicePrincipal', 'group')
    BEGIN INSERT INTO client_versions (tenant_id, version) SELECT tenant_id, random() FROM directory_groups WHERE id = new.group_id
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
CREATE TRIGGER group_members_delete_client_version AFTER DELETE ON group_members
    WHEN old.member_kind IN ('servicePrincipal', 'group')
    BEGIN INSERT INTO client_versions (tenant_id, version) SELECT tenant_id, random() FROM directory_groups WHERE id = old.group_id
        ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version; END;
