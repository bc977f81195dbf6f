-- Keyward schema 5: the OpenID Connect provider. App registrations and their credentials,
-- authorization codes, refresh tokens and device codes. Secrets, codes and tokens are stored as
-- SHA-256 only.

CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    app_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    display_name_lc TEXT NOT NULL,
    is_fallback_public_client BOOLEAN NOT NULL,
    -- Redirect URIs, one per line.
    public_redirect_uris TEXT NOT NULL,
    web_redirect_uris TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX applications_app ON applications(tenant_id, app_id);

-- Client secrets (kind 'password', a SHA-256 of the secret) and certificates (kind
-- 'certificate', the DER certificate whose key signs private_key_jwt assertions).
CREATE TABLE application_credentials (
    key_id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    display_name TEXT,
    hint TEXT,
    secret_sha256 BLOB,
    certificate BLOB,
    thumbprint TEXT,
    start_at TEXT NOT NULL,
    end_at TEXT NOT NULL
);
CREATE INDEX application_credentials_app ON application_credentials(application_id);

CREATE TABLE authorization_codes (
    code_sha256 BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    nonce TEXT,
    code_challenge TEXT,
    code_challenge_method TEXT,
    auth_time TEXT NOT NULL,
    amr TEXT NOT NULL,
    pass_expires_at TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);

-- Refresh tokens: each redemption rotates the token; a family shares the first grant's id, so
-- replaying a rotated token revokes every token of its family.
CREATE TABLE refresh_tokens (
    token_sha256 BLOB PRIMARY KEY,
    family_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    auth_time TEXT NOT NULL,
    amr TEXT NOT NULL,
    pass_expires_at TEXT,
    issued_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    rotated_at TEXT,
    revoked_at TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens(expires_at);

CREATE TABLE device_codes (
    device_sha256 BLOB PRIMARY KEY,
    user_code TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    interval_seconds BIGINT NOT NULL,
    last_poll_at TEXT,
    status TEXT NOT NULL,
    user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
    auth_time TEXT,
    amr TEXT NOT NULL,
    pass_expires_at TEXT
);
