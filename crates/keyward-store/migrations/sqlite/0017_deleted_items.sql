-- Deleted users, kept 30 days for restore (`/directory/deletedItems`). A deleted user's row,
-- multi-valued properties, sign-in state (per-user MFA, preferences) and authentication methods
-- move to exact copies of their tables, so every query on the live tables stays as it is, a
-- deleted user can never sign in or be read by mistake, and a restore brings back the MFA that
-- protected the account. A later migration that changes one of these tables must change its
-- copy the same way (`INSERT … SELECT *` moves rows between them; a test compares the columns).
CREATE TABLE deleted_users AS SELECT * FROM users WHERE 0;
CREATE TABLE deleted_user_values AS SELECT * FROM user_values WHERE 0;
CREATE TABLE deleted_user_sign_in_state AS SELECT * FROM user_sign_in_state WHERE 0;
CREATE TABLE deleted_software_oath_methods AS SELECT * FROM software_oath_methods WHERE 0;
CREATE TABLE deleted_phone_methods AS SELECT * FROM phone_methods WHERE 0;
CREATE TABLE deleted_email_methods AS SELECT * FROM email_methods WHERE 0;
CREATE TABLE deleted_fido2_methods AS SELECT * FROM fido2_methods WHERE 0;
CREATE UNIQUE INDEX deleted_users_id ON deleted_users(id);
CREATE INDEX deleted_user_values_user ON deleted_user_values(user_id);
CREATE INDEX deleted_user_sign_in_state_user ON deleted_user_sign_in_state(user_id);
CREATE INDEX deleted_software_oath_methods_user ON deleted_software_oath_methods(user_id);
CREATE INDEX deleted_phone_methods_user ON deleted_phone_methods(user_id);
CREATE INDEX deleted_email_methods_user ON deleted_email_methods(user_id);
CREATE INDEX deleted_fido2_methods_user ON deleted_fido2_methods(user_id);
CREATE TABLE deleted_items (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    deleted_at TEXT NOT NULL
);
CREATE INDEX deleted_items_tenant ON deleted_items(tenant_id, kind, id);
