-- Deleted users, kept 30 days for restore (`/directory/deletedItems`). A deleted user's row and
-- multi-valued properties move to exact copies of `users` and `user_values`, so every query on
-- the live tables stays as it is and a deleted user can never sign in or be read by mistake.
-- A later migration that changes `users` or `user_values` must change these copies the same way
-- (`INSERT … SELECT *` moves rows between them).
CREATE TABLE deleted_users (LIKE users);
CREATE TABLE deleted_user_values (LIKE user_values);
CREATE UNIQUE INDEX deleted_users_id ON deleted_users(id);
CREATE INDEX deleted_user_values_user ON deleted_user_values(user_id);
CREATE TABLE deleted_items (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    deleted_at TEXT NOT NULL
);
CREATE INDEX deleted_items_tenant ON deleted_items(tenant_id, kind, id);
