-- Dual control (keywardServiceDeskPolicy): whether a pass, a password reset, re-registration, the
-- one-step MFA reset or a method deletion on a privileged user (or a member of the chosen group)
-- waits for a second administrator, and how long a request waits.
CREATE TABLE dual_control_policy (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    is_enabled BOOLEAN NOT NULL,
    group_id TEXT,
    request_minutes INTEGER NOT NULL
);
-- The held changes. What runs on approval is kept here; a pass or password chosen at request
-- time only as its hash (secret_hash), never in clear.
CREATE TABLE service_desk_requests (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    requester_id TEXT NOT NULL,
    requester_is_app BOOLEAN NOT NULL,
    requester_scopes TEXT,
    requester_ip TEXT,
    target_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    pass_start TEXT,
    pass_lifetime_minutes INTEGER,
    pass_usable_once BOOLEAN,
    method_kind TEXT,
    method_id TEXT,
    secret_hash TEXT,
    justification TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at TEXT,
    decision_note TEXT,
    correlation_id TEXT NOT NULL
);
CREATE INDEX service_desk_requests_by_tenant ON service_desk_requests(tenant_id, id);
