-- Keyward schema 35: the sign-in log's records are written in a shorter form. A record's JSON no
-- longer repeats what its row's columns hold (the id, the tenant, the time, the user, the error
-- code) and leaves out empty and default fields; reading takes those from the columns and the
-- defaults. Records written before keep their whole JSON and read back the same. Nothing in the
-- tables changes: this version is here so that a Keyward older than the shorter records, which
-- could not read them, refuses to start on this database instead of failing on its sign-in log.
SELECT 1;
