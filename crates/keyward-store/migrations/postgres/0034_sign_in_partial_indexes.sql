-- Keyward schema 34: the sign-in log's user and sign-in name indexes hold only the entries that
-- have a user and a name. An application's own sign-in (the client-credentials grant, often most
-- of the log) has neither, so its entry is written to the table, the id index and the time index
-- only: two B-trees fewer for each. A filter on a user reads `user_id = …`, which only such
-- entries match; a filter on a sign-in name also says `upn_lc <> ''` so that the planner may use
-- its index (an application's entry has no name to match).
DROP INDEX sign_ins_user;
DROP INDEX sign_ins_upn;
CREATE INDEX sign_ins_user ON sign_ins(tenant_id, user_id, created_at, seq) WHERE user_id IS NOT NULL;
CREATE INDEX sign_ins_upn ON sign_ins(tenant_id, upn_lc, created_at, seq) WHERE upn_lc <> '';
