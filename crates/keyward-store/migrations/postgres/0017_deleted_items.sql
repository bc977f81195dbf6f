-- Deleted users, kept 30 days for restore (`/directory/deletedItems`). A deleted user's row,
-- multi-valued properties, sign-in state (per-user MFA, preferences) and authentication methods
-- move to exact copies of their tables, so every query on the live tables stays as it is, a
-- deleted user can never sign in or be read by mistake, and a restore brings back the MFA that
-- protected the account. A later migration that changes one of these tables must change its
-- copy the same way (`INSERT … SELECT *` moves rows between them; a test compares the columns).
CREATE TABLE deleted_users (LIKE users);
CREATE TABLE deleted_user_values (LIKE user_values);
CREATE TABLE deleted_user_sign_in_state (LIKE user_sign_in_state);
CREATE TABLE deleted_software_oath_methods (LIKE software_oath_methods);
CREATE TABLE deleted_phone_methods (LIKE phone_methods);
CREATE TABLE deleted_email_methods (LIKE email_methods);
CREATE TABLE deleted_fido2_methods (LIKE fido2_methods);
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
