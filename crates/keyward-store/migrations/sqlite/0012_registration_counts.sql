-- The registration report's totals without reading every user: disabled users and enabled users
-- without a password are few, so each partial index holds only them (nothing to maintain for the
-- rest), and the totals are the tenant's user count minus these.
CREATE INDEX users_disabled ON users(tenant_id) WHERE NOT account_enabled;
CREATE INDEX users_enabled_without_password ON users(tenant_id) WHERE account_enabled AND password_hash IS NULL;
