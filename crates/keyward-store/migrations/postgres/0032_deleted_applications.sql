-- Keyward schema 32: a deleted application registration is kept 30 days with its credentials,
-- as Entra keeps it, in exact copies of its tables (as schema 17 keeps users). A column added to
-- `applications` or `application_credentials` later must be added to its copy too.
CREATE TABLE deleted_applications (LIKE applications);
CREATE TABLE deleted_application_credentials (LIKE application_credentials);
CREATE UNIQUE INDEX deleted_applications_id ON deleted_applications(id);
CREATE INDEX deleted_application_credentials_application ON deleted_application_credentials(application_id);
-- Deleting an application revokes the refresh tokens issued to it: found by client, not by a
-- scan of every token (the cost: one more index entry for each refresh token written).
CREATE INDEX refresh_tokens_client ON refresh_tokens(tenant_id, client_id);
