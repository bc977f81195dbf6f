-- Keyward schema 3 (PostgreSQL): service principals, which can hold directory roles.

CREATE TABLE service_principals (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    app_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    display_name_lc TEXT COLLATE "C" NOT NULL,
    account_enabled BOOLEAN NOT NULL,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX service_principals_app ON service_principals(tenant_id, app_id);
