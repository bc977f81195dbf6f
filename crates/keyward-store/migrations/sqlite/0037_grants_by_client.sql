-- Keyward schema 37: a client's delegated permission grants in id order. `GET
-- /oauth2PermissionGrants?$filter=clientId eq '…'` pages through them by id, and a client that
-- users consent to one by one has a grant per user: with the index on (client_id, tenant_id)
-- each page read and sorted every grant of the client. The new index still serves the cascade
-- when a client's service principal is deleted (its first column).
DROP INDEX oauth2_permission_grants_client;
CREATE INDEX oauth2_permission_grants_client ON oauth2_permission_grants (client_id, tenant_id, id);
