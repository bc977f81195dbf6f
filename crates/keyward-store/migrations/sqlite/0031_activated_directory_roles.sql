-- Keyward schema 31: the directory roles activated in a tenant (Graph's older role API,
-- `POST /directoryRoles` with a `roleTemplateId`). A built-in role is activated by that request
-- or by its first tenant-wide assignment, and stays activated when its members are gone, as in
-- Entra. Roles assigned before this migration count as activated while they have a tenant-wide
-- assignment.
CREATE TABLE activated_directory_roles (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    role_template_id TEXT NOT NULL,
    activated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, role_template_id)
);
