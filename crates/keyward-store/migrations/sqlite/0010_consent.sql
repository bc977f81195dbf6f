-- Keyward schema 10: consent and single-use client assertions.

-- Delegated permission grants (Graph's oAuth2PermissionGrant): a client may act for every user
-- (consent_type 'AllPrincipals', principal_id NULL) or for one user ('Principal') with the
-- permissions in scope (space-separated). client_id is the client's service principal.
CREATE TABLE oauth2_permission_grants (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    client_id TEXT NOT NULL REFERENCES service_principals(id) ON DELETE CASCADE,
    consent_type TEXT NOT NULL,
    principal_id TEXT REFERENCES users(id) ON DELETE CASCADE,
    resource_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX oauth2_permission_grants_client ON oauth2_permission_grants(tenant_id, client_id);
-- One grant per client, consent type, user and resource: consent extends it.
CREATE UNIQUE INDEX oauth2_permission_grants_key
    ON oauth2_permission_grants(tenant_id, client_id, consent_type, (COALESCE(principal_id, '')), resource_id);

-- What users may consent to (Graph's authorizationPolicy permissionGrantPoliciesAssigned,
-- one policy id per line); no row means the default, low-risk permissions only.
CREATE TABLE authorization_policies (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    permission_grant_policies TEXT NOT NULL
);

-- private_key_jwt client assertions seen, by client and jti, until they expire: a replay within
-- an assertion's lifetime is refused on every node.
CREATE TABLE client_assertion_jtis (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX client_assertion_jtis_expiry ON client_assertion_jtis(expires_at);

-- A Temporary Access Pass that stays usable (for its lifetime) until its holder registers a
-- method: the first Global Administrator's, and the one `keyward admin recover` issues.
ALTER TABLE temporary_access_passes ADD COLUMN ends_at_registration BOOLEAN NOT NULL DEFAULT FALSE;
