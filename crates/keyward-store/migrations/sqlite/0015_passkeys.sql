-- Passkeys (FIDO2 / WebAuthn credentials): each user's registered credentials, and the
-- single-use challenges of ceremonies in progress (kept here, so a ceremony started on one node
-- finishes on another).
CREATE TABLE fido2_methods (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    display_name TEXT NOT NULL,
    credential_id BLOB NOT NULL,
    -- The credential's public key as the authenticator sent it (COSE_Key).
    cose_key BLOB NOT NULL,
    aaguid TEXT NOT NULL,
    sign_count BIGINT NOT NULL,
    backup_eligible BOOLEAN NOT NULL,
    backed_up BOOLEAN NOT NULL,
    attestation_level TEXT NOT NULL,
    created_at TEXT NOT NULL
);
-- A credential id names one credential on the whole server: every tenant shares the relying party.
CREATE UNIQUE INDEX fido2_methods_credential ON fido2_methods(credential_id);
CREATE INDEX fido2_methods_user ON fido2_methods(user_id);

-- A challenge is stored by its SHA-256 and deleted when used or expired.
CREATE TABLE webauthn_challenges (
    challenge_sha256 BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT,
    purpose TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
