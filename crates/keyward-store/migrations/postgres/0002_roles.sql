-- Keyward schema 2 (PostgreSQL): custom role definitions.
-- Allowed resource actions are stored one per line.

CREATE TABLE role_definitions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    display_name TEXT NOT NULL,
    display_name_lc TEXT COLLATE "C" NOT NULL,
    description TEXT,
    is_enabled BOOLEAN NOT NULL,
    template_id TEXT NOT NULL,
    version TEXT NOT NULL,
    allowed_resource_actions TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX role_definitions_name ON role_definitions(tenant_id, display_name_lc);
CREATE UNIQUE INDEX role_definitions_template ON role_definitions(tenant_id, template_id);

CREATE INDEX role_assignments_principal ON role_assignments(tenant_id, principal_id);
CREATE INDEX role_assignments_role ON role_assignments(tenant_id, role_definition_id);
