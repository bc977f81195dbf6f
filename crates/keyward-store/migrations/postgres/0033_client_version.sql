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
CREATE FUNCTION client_version_moves() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE client_version SET version = version + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER applications_client_version AFTER INSERT OR UPDATE OR DELETE ON applications
    FOR EACH ROW EXECUTE FUNCTION client_version_moves();
CREATE TRIGGER application_credentials_client_version AFTER INSERT OR UPDATE OR DELETE ON application_credentials
    FOR EACH ROW EXECUTE FUNCTION client_version_moves();
CREATE TRIGGER service_principals_client_version AFTER INSERT OR UPDATE OR DELETE ON service_principals
    FOR EACH ROW EXECUTE FUNCTION client_version_moves();
CREATE TRIGGER role_assignments_client_version AFTER INSERT OR UPDATE OR DELETE ON role_assignments
    FOR EACH ROW EXECUTE FUNCTION client_version_moves();
CREATE TRIGGER role_eligibilities_client_version AFTER INSERT OR UPDATE OR DELETE ON role_eligibilities
    FOR EACH ROW EXECUTE FUNCTION client_version_moves();
-- Only a service principal's or a group's membership counts: a user's does not touch a client.
CREATE TRIGGER group_members_insert_client_version AFTER INSERT ON group_members
    FOR EACH ROW WHEN (new.member_kind IN ('servicePrincipal', 'group')) EXECUTE FUNCTION client_version_moves();
CREATE TRIGGER group_members_update_client_version AFTER UPDATE ON group_members
    FOR EACH ROW WHEN (old.member_kind IN ('servicePrincipal', 'group') OR new.member_kind IN ('servicePrincipal', 'group'))
    EXECUTE FUNCTION client_version_moves();
CREATE TRIGGER group_members_delete_client_version AFTER DELETE ON group_members
    FOR EACH ROW WHEN (old.member_kind IN ('servicePrincipal', 'group')) EXECUTE FUNCTION client_version_moves();
-- A group's members and roles count only while it is role-assignable.
CREATE TRIGGER directory_groups_client_version AFTER INSERT OR DELETE OR UPDATE OF is_assignable_to_role
    ON directory_groups FOR EACH ROW EXECUTE FUNCTION client_version_moves();
