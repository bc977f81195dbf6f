-- Keyward schema 1 (PostgreSQL): tenants, users, groups, memberships, roles, audit, signing keys.
-- Timestamps are TEXT in the fixed form YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC), so text order is time order.
-- Columns ending in _lc hold the lowercased value the case-insensitive filters compare against.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    -- Days the audit log keeps records (Entra P1 keeps 30).
    audit_retention_days INTEGER NOT NULL DEFAULT 30,
    -- MAC of a changed retention under the key-encryption key (empty for the default), so a
    -- database writer cannot shorten it to have the server delete history.
    audit_retention_mac TEXT NOT NULL DEFAULT ''
);

CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    is_default BOOLEAN NOT NULL,
    is_initial BOOLEAN NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    upn TEXT NOT NULL,
    upn_lc TEXT COLLATE "C" NOT NULL,
    display_name TEXT NOT NULL,
    display_name_lc TEXT COLLATE "C" NOT NULL,
    given_name TEXT,
    given_name_lc TEXT COLLATE "C",
    surname TEXT,
    surname_lc TEXT COLLATE "C",
    mail TEXT,
    mail_lc TEXT COLLATE "C",
    mail_nickname TEXT NOT NULL,
    mail_nickname_lc TEXT COLLATE "C" NOT NULL,
    mobile_phone TEXT,
    mobile_phone_lc TEXT COLLATE "C",
    job_title TEXT,
    job_title_lc TEXT COLLATE "C",
    department TEXT,
    department_lc TEXT COLLATE "C",
    usage_location TEXT,
    usage_location_lc TEXT COLLATE "C",
    account_enabled BOOLEAN NOT NULL,
    created_at TEXT NOT NULL,
    sessions_valid_from TEXT NOT NULL,
    force_change_password BOOLEAN NOT NULL,
    password_hash TEXT
);
CREATE UNIQUE INDEX users_upn ON users(tenant_id, upn_lc);
CREATE INDEX users_display_name ON users(tenant_id, display_name_lc, id);
CREATE INDEX users_mail ON users(tenant_id, mail_lc);

-- Multi-valued user properties (otherMails, businessPhones), in order.
CREATE TABLE user_values (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    position BIGINT NOT NULL,
    value TEXT NOT NULL,
    value_lc TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, kind, position)
);
CREATE INDEX user_values_value ON user_values(kind, value_lc);

CREATE TABLE directory_groups (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    display_name TEXT NOT NULL,
    display_name_lc TEXT COLLATE "C" NOT NULL,
    description TEXT,
    description_lc TEXT COLLATE "C",
    mail_nickname TEXT NOT NULL,
    mail_nickname_lc TEXT COLLATE "C" NOT NULL,
    mail_enabled BOOLEAN NOT NULL,
    security_enabled BOOLEAN NOT NULL,
    is_assignable_to_role BOOLEAN NOT NULL,
    group_types_lc TEXT COLLATE "C" NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX groups_display_name ON directory_groups(tenant_id, display_name_lc, id);

-- Members and owners of groups; member_id names a user or a group (member_kind).
CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES directory_groups(id) ON DELETE CASCADE,
    member_id TEXT NOT NULL,
    member_kind TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_member ON group_members(member_id);

CREATE TABLE group_owners (
    group_id TEXT NOT NULL REFERENCES directory_groups(id) ON DELETE CASCADE,
    owner_id TEXT NOT NULL,
    owner_kind TEXT NOT NULL,
    PRIMARY KEY (group_id, owner_id)
);
CREATE INDEX group_owners_owner ON group_owners(owner_id);

CREATE TABLE administrative_units (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    display_name TEXT NOT NULL,
    description TEXT,
    is_member_management_restricted BOOLEAN NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE administrative_unit_members (
    unit_id TEXT NOT NULL REFERENCES administrative_units(id) ON DELETE CASCADE,
    member_id TEXT NOT NULL,
    member_kind TEXT NOT NULL,
    PRIMARY KEY (unit_id, member_id)
);
CREATE INDEX administrative_unit_members_member ON administrative_unit_members(member_id);

-- Role assignments: directory_scope_id is '/' or '/administrativeUnits/{id}'.
CREATE TABLE role_assignments (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    principal_id TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    directory_scope_id TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX role_assignments_unique ON role_assignments(principal_id, role_definition_id, directory_scope_id);

-- Temporary Access Passes; only a SHA-256 of the pass is kept.
CREATE TABLE temporary_access_passes (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    pass_sha256 BYTEA NOT NULL,
    created_at TEXT NOT NULL,
    start_at TEXT NOT NULL,
    lifetime_minutes BIGINT NOT NULL,
    is_usable_once BOOLEAN NOT NULL,
    used_at TEXT
);

-- Token signing keys; the private key is sealed with the node key-encryption key.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    sealed_private_key BYTEA NOT NULL,
    public_key BYTEA NOT NULL,
    created_at TEXT NOT NULL,
    activated_at TEXT,
    retired_at TEXT
);

-- Audit records; seq orders them, the record column holds the whole record, and the other
-- columns are the parts the query API filters on (lowercased where matching is case-insensitive).
CREATE TABLE audit_records (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    activity_date_time TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    category TEXT NOT NULL,
    activity_display_name TEXT NOT NULL,
    activity_display_name_lc TEXT COLLATE "C" NOT NULL,
    logged_by_service TEXT NOT NULL,
    result TEXT NOT NULL,
    initiator_id TEXT,
    initiator_upn_lc TEXT COLLATE "C",
    initiator_app_id TEXT,
    record TEXT NOT NULL,
    -- The tenant's hash chain (keyward_core::audit_chain): number, predecessor's hash, own hash.
    chain_index BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (tenant_id, chain_index)
);
CREATE INDEX audit_records_time ON audit_records(tenant_id, activity_date_time, seq);
CREATE INDEX audit_records_initiator ON audit_records(tenant_id, initiator_id, activity_date_time, seq);
CREATE INDEX audit_records_initiator_upn ON audit_records(tenant_id, initiator_upn_lc, activity_date_time, seq);
CREATE INDEX audit_records_activity ON audit_records(tenant_id, activity_display_name_lc, activity_date_time, seq);
CREATE INDEX audit_records_correlation ON audit_records(tenant_id, correlation_id);

CREATE TABLE audit_targets (
    audit_seq BIGINT NOT NULL REFERENCES audit_records(seq) ON DELETE CASCADE,
    target_id TEXT NOT NULL,
    target_upn_lc TEXT COLLATE "C",
    PRIMARY KEY (target_id, audit_seq)
);
CREATE INDEX audit_targets_upn ON audit_targets(target_upn_lc, audit_seq);
CREATE INDEX audit_targets_seq ON audit_targets(audit_seq);

-- Each tenant's audit chain head: the last record's number and hash. Writers lock this row, so a
-- tenant's records are chained one at a time in commit order.
-- Where retention last cut each tenant's chain: the last removed record's number and hash, the
-- cut-off time, and a MAC under the server's key-encryption key (keyward_core::audit_chain::Checkpoint).
CREATE TABLE audit_checkpoints (
    tenant_id TEXT PRIMARY KEY,
    chain_index BIGINT NOT NULL,
    hash TEXT NOT NULL,
    cut_before TEXT NOT NULL,
    signature TEXT NOT NULL
);

CREATE TABLE audit_chain_heads (
    tenant_id TEXT PRIMARY KEY,
    chain_index BIGINT NOT NULL,
    hash TEXT NOT NULL
);
