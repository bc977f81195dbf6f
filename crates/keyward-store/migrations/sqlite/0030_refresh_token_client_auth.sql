-- Keyward schema 30: whether the client authenticated (a secret or a client assertion) when a
-- refresh token's family was granted. A refresh token granted to an authenticated client is
-- redeemed only by that client authenticating again, whatever the application's settings are
-- at the time: deleting every secret of an application after a leak stops the refresh tokens
-- the leaked secret obtained, and `isFallbackPublicClient` does not make them public. Tokens
-- issued before this migration keep the rule they were issued under (false: the application's
-- settings at redemption decide).
ALTER TABLE refresh_tokens ADD COLUMN client_authenticated BOOLEAN NOT NULL DEFAULT FALSE;
