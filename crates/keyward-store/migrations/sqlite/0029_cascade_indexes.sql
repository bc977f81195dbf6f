-- Keyward schema 29: an index for every foreign key whose rows are deleted with their parent.
-- Deleting a user deletes their browser sessions, authorization codes, refresh tokens, device
-- codes and consent grants; deleting a service principal deletes the grants made to it. The
-- database finds those rows by the key, and with no index leading with it, it read the whole
-- table for each deletion: every session and refresh token of every user, once for each user a
-- bulk job or the deleted-items purge removes. Each index costs one more entry per row written
-- (a session or a refresh token at each sign-in).
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);
CREATE INDEX authorization_codes_user ON authorization_codes (user_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX device_codes_user ON device_codes (user_id);
CREATE INDEX oauth2_permission_grants_principal ON oauth2_permission_grants (principal_id);
-- Led by the client, the grants' client index also serves its tenant's lookups.
DROP INDEX oauth2_permission_grants_client;
CREATE INDEX oauth2_permission_grants_client ON oauth2_permission_grants (client_id, tenant_id);
