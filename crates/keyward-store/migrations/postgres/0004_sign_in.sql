-- Keyward schema 4: sign-in. Policies, per-user MFA and lockout state, software OATH methods,
-- browser sessions, remembered devices and the sign-in log.

-- A tenant's sign-in and Temporary Access Pass policy; no row means the defaults.
CREATE TABLE sign_in_policies (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    mfa_for_privileged_roles BOOLEAN NOT NULL,
    mfa_for_everyone BOOLEAN NOT NULL,
    remember_mfa_days BIGINT NOT NULL,
    lockout_threshold BIGINT NOT NULL,
    lockout_seconds BIGINT NOT NULL,
    code_attempt_limit BIGINT NOT NULL,
    tap_enabled BOOLEAN NOT NULL,
    tap_default_lifetime BIGINT NOT NULL,
    tap_default_length BIGINT NOT NULL,
    tap_minimum_lifetime BIGINT NOT NULL,
    tap_maximum_lifetime BIGINT NOT NULL,
    tap_usable_once BOOLEAN NOT NULL
);

-- Per-user sign-in state; no row means per-user MFA disabled and clean counters.
CREATE TABLE user_sign_in_state (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    per_user_mfa_state TEXT NOT NULL DEFAULT 'disabled',
    remembered_devices_not_before TEXT,
    password_failures BIGINT NOT NULL DEFAULT 0,
    password_lockouts BIGINT NOT NULL DEFAULT 0,
    password_locked_until TEXT,
    code_failures BIGINT NOT NULL DEFAULT 0,
    code_lockouts BIGINT NOT NULL DEFAULT 0,
    code_locked_until TEXT
);

-- Software OATH (TOTP) methods; the secret is sealed with the key-encryption key.
CREATE TABLE software_oath_methods (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    sealed_secret BYTEA NOT NULL,
    created_at TEXT NOT NULL,
    last_used_step BIGINT NOT NULL
);
CREATE INDEX software_oath_methods_user ON software_oath_methods(user_id);

-- Browser sessions, from the first page of a sign-in to sign-out; keyed by a SHA-256 of the cookie.
CREATE TABLE browser_sessions (
    id_sha256 BYTEA PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    username TEXT,
    return_to TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    authenticated_at TEXT,
    mfa_at TEXT,
    methods TEXT NOT NULL,
    pass_expires_at TEXT,
    pending_secret BYTEA,
    correlation_id TEXT NOT NULL
);
CREATE INDEX browser_sessions_expiry ON browser_sessions(expires_at);

-- Devices that may skip MFA ("Don't ask again"); keyed by a SHA-256 of the cookie.
CREATE TABLE remembered_devices (
    id_sha256 BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    issued_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX remembered_devices_user ON remembered_devices(user_id);

-- The sign-in log: indexed columns plus the whole record.
CREATE TABLE sign_ins (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    user_id TEXT,
    upn_lc TEXT COLLATE "C" NOT NULL,
    app_id TEXT COLLATE "C" NOT NULL,
    error_code BIGINT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX sign_ins_time ON sign_ins(tenant_id, created_at, seq);
CREATE INDEX sign_ins_user ON sign_ins(tenant_id, user_id, created_at, seq);
CREATE INDEX sign_ins_upn ON sign_ins(tenant_id, upn_lc, created_at, seq);
