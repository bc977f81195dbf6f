-- Just-in-time roles (Privileged Identity Management).
--
-- A role assignment may now have a window: it counts from start_at (NULL: from its creation)
-- until end_at (NULL: for good), judged by every read against the reader's clock, so an
-- activation stops counting the moment it ends without any job having to run. activated_using
-- names the eligibility an activation was made from (NULL: assigned by an administrator).
ALTER TABLE role_assignments ADD COLUMN start_at TEXT;
ALTER TABLE role_assignments ADD COLUMN end_at TEXT;
ALTER TABLE role_assignments ADD COLUMN activated_using TEXT;
CREATE INDEX role_assignments_ending ON role_assignments(tenant_id, end_at);
CREATE INDEX role_assignments_activated ON role_assignments(tenant_id) WHERE activated_using IS NOT NULL;

-- Eligibilities: who may activate which role at which scope, and for when.
CREATE TABLE role_eligibilities (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    principal_id TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    directory_scope_id TEXT NOT NULL,
    start_at TEXT NOT NULL,
    end_at TEXT,
    created_using TEXT,
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL
);
CREATE UNIQUE INDEX role_eligibilities_unique ON role_eligibilities(principal_id, role_definition_id, directory_scope_id);
CREATE INDEX role_eligibilities_tenant ON role_eligibilities(tenant_id, principal_id);

-- Requests on assignment (kind 'assignment') and eligibility (kind 'eligibility') schedules, as
-- Graph's roleAssignmentScheduleRequests and roleEligibilityScheduleRequests show them.
CREATE TABLE role_schedule_requests (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    directory_scope_id TEXT NOT NULL,
    justification TEXT,
    status TEXT NOT NULL,
    start_at TEXT,
    expiration_type TEXT NOT NULL,
    end_at TEXT,
    duration TEXT,
    ticket_number TEXT,
    ticket_system TEXT,
    target_schedule_id TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    completed_at TEXT,
    -- The approver's decision on an activation that needs approval (review_result 'Approve' or
    -- 'Deny').
    review_result TEXT,
    reviewed_by TEXT,
    reviewed_at TEXT,
    review_justification TEXT
);
CREATE INDEX role_schedule_requests_tenant ON role_schedule_requests(tenant_id, kind, created_at);
CREATE INDEX role_schedule_requests_status ON role_schedule_requests(tenant_id, status);

-- A role's settings (its role management policy), where an administrator changed them from
-- Entra's defaults. Durations in seconds; approvers as space-separated object ids.
CREATE TABLE role_settings (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    role_definition_id TEXT NOT NULL,
    activation_maximum_seconds INTEGER NOT NULL,
    activation_requires_mfa BOOLEAN NOT NULL,
    activation_requires_justification BOOLEAN NOT NULL,
    activation_requires_ticket BOOLEAN NOT NULL,
    approval_required BOOLEAN NOT NULL,
    approvers TEXT NOT NULL,
    eligibility_expiration_required BOOLEAN NOT NULL,
    eligibility_maximum_seconds INTEGER NOT NULL,
    assignment_expiration_required BOOLEAN NOT NULL,
    assignment_maximum_seconds INTEGER NOT NULL,
    assignment_requires_justification BOOLEAN NOT NULL,
    modified_at TEXT NOT NULL,
    modified_by TEXT NOT NULL,
    PRIMARY KEY (tenant_id, role_definition_id)
);
