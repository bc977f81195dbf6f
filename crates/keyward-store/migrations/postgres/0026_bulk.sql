-- Bulk operations run by the server: one change for many users. Each user's outcome is written
-- in the same transaction as the user's change (a guarded update of a pending item), so a run
-- interrupted by a crash goes on where it stopped, on any node, once its lease lapses.
CREATE TABLE bulk_jobs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    caller_id TEXT NOT NULL,
    caller_is_app BOOLEAN NOT NULL,
    caller_scopes TEXT,
    caller_ip TEXT,
    operation TEXT NOT NULL,
    per_user_mfa_state TEXT,
    role_id TEXT,
    scope TEXT,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    leased_until TEXT,
    lease_id TEXT,
    correlation_id TEXT NOT NULL
);
CREATE INDEX bulk_jobs_running ON bulk_jobs(status, leased_until);
CREATE TABLE bulk_items (
    job_id TEXT NOT NULL REFERENCES bulk_jobs(id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    user_key TEXT NOT NULL,
    user_id TEXT,
    state TEXT NOT NULL,
    detail TEXT,
    PRIMARY KEY (job_id, position)
);
