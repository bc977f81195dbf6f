-- Per-agent limits (keywardServiceDeskPolicy): how many Temporary Access Passes, password resets
-- and MFA resets one administrator may do to other users in an hour (NULL: no limit), and the
-- actions counted against them, written in the action's own transaction. Rows older than an
-- hour are removed as the same agent acts again.
CREATE TABLE agent_limits (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    passes_per_hour BIGINT,
    password_resets_per_hour BIGINT,
    mfa_resets_per_hour BIGINT
);
CREATE TABLE agent_actions (
    tenant_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    action TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX agent_actions_by_agent ON agent_actions(tenant_id, agent_id, action, at);
