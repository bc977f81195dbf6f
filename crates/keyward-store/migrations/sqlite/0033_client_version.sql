-- Keyward schema 33: a counter that every change to what the token endpoint reads of an
-- application moves, in the same transaction as the change (triggers, so no write path can
-- forget it): the application, its credentials, its service principal, role assignments and
-- eligibilities, a service principal's (or group's) membership of a group, and a group's
-- role-assignability. Each node keeps the clients it has read with the counter's value at the
-- time and reads the counter at every grant: an unchanged counter means an unchanged client, a
-- moved one means reading the client again. One row for the whole database: a change in any
-- tenant makes every node read its clients again once, which is cheap, and no write path has to
-- say which tenant or application it touched.
CREATE TABLE client_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO client_version (id, version) VALUES (1, 0);
CREATE TRIGGER applications_insert_client_version AFTER INSERT ON applications
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER applications_update_client_version AFTER UPDATE ON applications
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER applications_delete_client_version AFTER DELETE ON applications
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER application_credentials_insert_client_version AFTER INSERT ON application_credentials
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER application_credentials_update_client_version AFTER UPDATE ON application_credentials
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER application_credentials_delete_client_version AFTER DELETE ON application_credentials
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER service_principals_insert_client_version AFTER INSERT ON service_principals
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER service_principals_update_client_version AFTER UPDATE ON service_principals
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER service_principals_delete_client_version AFTER DELETE ON service_principals
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER role_assignments_insert_client_version AFTER INSERT ON role_assignments
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER role_assignments_update_client_version AFTER UPDATE ON role_assignments
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER role_assignments_delete_client_version AFTER DELETE ON role_assignments
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER role_eligibilities_insert_client_version AFTER INSERT ON role_eligibilities
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER role_eligibilities_update_client_version AFTER UPDATE ON role_eligibilities
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER role_eligibilities_delete_client_version AFTER DELETE ON role_eligibilities
    BEGIN UPDATE client_version SET version = version + 1; END;
-- Only a service principal's or a group's membership counts: a user's does not touch a client.
CREATE TRIGGER group_members_insert_client_version AFTER INSERT ON group_members
    WHEN new.member_kind IN ('servicePrincipal', 'group')
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER group_members_update_client_version AFTER UPDATE ON group_members
    WHEN old.member_kind IN ('servicePrincipal', 'group') OR new.member_kind IN ('servicePrincipal', 'group')
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER group_members_delete_client_version AFTER DELETE ON group_members
    WHEN old.member_kind IN ('servicePrincipal', 'group')
    BEGIN UPDATE client_version SET version = version + 1; END;
-- A group's members and roles count only while it is role-assignable.
CREATE TRIGGER directory_groups_insert_client_version AFTER INSERT ON directory_groups
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER directory_groups_update_client_version AFTER UPDATE OF is_assignable_to_role ON directory_groups
    BEGIN UPDATE client_version SET version = version + 1; END;
CREATE TRIGGER directory_groups_delete_client_version AFTER DELETE ON directory_groups
    BEGIN UPDATE client_version SET version = version + 1; END;
