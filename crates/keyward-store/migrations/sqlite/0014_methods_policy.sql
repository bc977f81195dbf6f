-- The authentication methods policy (Graph's authenticationMethodsPolicy) beyond the Temporary
-- Access Pass settings `sign_in_policies` keeps: each method's targets and the registration
-- campaign, as one JSON document per tenant. No row means the defaults.
CREATE TABLE authentication_methods_policies (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    policy TEXT NOT NULL
);

-- Each user's skips of the registration campaign: how many, and until when the last one holds.
ALTER TABLE user_sign_in_state ADD COLUMN campaign_snoozes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE user_sign_in_state ADD COLUMN campaign_snoozed_until TEXT;
