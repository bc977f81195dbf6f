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
-- The trigger's argument says where the changed row's tenant is: its own `tenant_id`, its
-- application's (a credential) or its group's (a membership; gone when the group is deleted with
-- it, whose own trigger then moves the version).
CREATE FUNCTION client_version_moves() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed RECORD;
    tenant TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    IF TG_ARGV[0] = 'application' THEN
        SELECT a.tenant_id INTO tenant FROM applications a WHERE a.id = changed.application_id;
    ELSIF TG_ARGV[0] = 'group' THEN
        SELECT g.tenant_id INTO tenant FROM directory_groups g WHERE g.id = changed.group_id;
    ELSE
        tenant := changed.tenant_id;
    END IF;
    IF tenant IS NOT NULL THEN
        INSERT INTO client_versions (tenant_id, version) VALUES (tenant, floor(random() * 9007199254740991)::BIGINT)
            ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER applications_client_version AFTER INSERT OR UPDATE OR DELETE ON applications
    FOR EACH ROW EXECUTE FUNCTION client_version_moves('tenant');
CREATE TRIGGER service_principals_client_version AFTER INSERT OR UPDATE OR DELETE ON service_principals
    FOR EACH ROW EXECUTE FUNCTION client_version_moves('tenant');
CREATE TRIGGER role_assignments_client_version AFTER INSERT OR UPDATE OR DELETE ON role_assignments
    FOR EACH ROW EXECUTE FUNCTION client_version_moves('tenant');
CREATE TRIGGER role_eligibilities_client_version AFTER INSERT OR UPDATE OR DELETE ON role_eligibilities
    FOR EACH ROW EXECUTE FUNCTION client_version_moves('tenant');
CREATE TRIGGER directory_groups_client_version AFTER INSERT OR DELETE OR UPDATE OF is_assignable_to_role
    ON directory_groups FOR EACH ROW EXECUTE FUNCTION client_version_moves('tenant');
CREATE TRIGGER application_credentials_client_version AFTER INSERT OR UPDATE OR DELETE ON application_credentials
    FOR EACH ROW EXECUTE FUNCTION client_version_moves('application');
-- Only a service principal's or a group's membership counts: a user's does not touch a client.
CREATE TRIGGER group_members_insert_client_version AFTER INSERT ON group_members
    FOR EACH ROW WHEN (new.member_kind IN ('servicePrincipal', 'group')) EXECUTE FUNCTION client_version_moves('group');
CREATE TRIGGER group_members_update_client_version AFTER UPDATE ON group_members
    FOR EACH ROW WHEN (old.member_kind IN ('servicePrincipal', 'group') OR new.member_kind IN ('servicePrincipal', 'group'))
    EXECUTE FUNCTION client_version_moves('group');
CREATE TRIGGER group_members_delete_client_version AFTER DELETE ON group_members
    FOR EACH ROW WHEN (old.member_kind IN ('servicePrincipal', 'group')) EXECUTE FUNCTION client_version_moves('group');
