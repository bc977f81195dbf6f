-- Caller verification (keywardServiceDeskPolicy.callerVerificationEnabled): an agent's proof that
-- the user is the caller, bound to both, confirmed by the user with the code the agent reads out
-- (kept as its SHA-256) or vouched for by their manager or another administrator.
CREATE TABLE caller_verification_policy (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    is_enabled BOOLEAN NOT NULL,
    -- The covered operations' names (keyward_core::caller_verification::Covered), space-separated.
    operations TEXT NOT NULL
);
CREATE TABLE caller_verifications (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    agent_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    code_sha256 BLOB NOT NULL,
    status TEXT NOT NULL,
    method TEXT,
    attested_by TEXT,
    attempts INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    verified_at TEXT
);
CREATE INDEX caller_verifications_by_user ON caller_verifications(tenant_id, user_id, agent_id);
