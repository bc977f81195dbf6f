-- Keyward schema 6: authentication-method administration. Password resets by an administrator
-- are long-running operations in Graph (202 with a Location to poll); Keyward completes them at
-- once and keeps the record for the status read.
CREATE TABLE password_reset_operations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX password_reset_operations_user ON password_reset_operations(user_id);

-- Phone methods: at most one per type (mobile, alternateMobile, office).
CREATE TABLE phone_methods (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    phone_type TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, phone_type)
);

-- The email method (self-service password reset): at most one per user.
CREATE TABLE email_methods (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    email_address TEXT NOT NULL,
    created_at TEXT NOT NULL
);
