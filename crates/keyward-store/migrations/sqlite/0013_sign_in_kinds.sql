-- The kind of each sign-in (Graph's signInEventTypes): interactiveUser, nonInteractiveUser or
-- servicePrincipal (an application's client-credentials sign-in, logged from this version on).
ALTER TABLE sign_ins ADD COLUMN event_type TEXT NOT NULL DEFAULT 'interactiveUser';
UPDATE sign_ins SET event_type = 'nonInteractiveUser' WHERE json_extract(record, '$.is_interactive') = 0;

-- Each user's latest sign-ins (Graph's user.signInActivity), written with the sign-in log in the
-- same transaction. Retention, which cuts the log, leaves it: it says when a user last signed in,
-- however long ago. No row: the user never signed in.
CREATE TABLE user_sign_in_activity (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    last_sign_in_at TEXT,
    last_sign_in_id TEXT,
    last_non_interactive_at TEXT,
    last_non_interactive_id TEXT,
    last_success_at TEXT,
    last_success_id TEXT
);
-- No index on the times: a `$filter` on them looks each listed user's row up by its key, and an
-- index would cost a write on every sign-in.

-- What the log already holds.
INSERT INTO user_sign_in_activity (user_id, tenant_id)
    SELECT DISTINCT s.user_id, s.tenant_id FROM sign_ins s JOIN users u ON u.id = s.user_id;
UPDATE user_sign_in_activity SET
    last_sign_in_id = (SELECT s.id FROM sign_ins s WHERE s.tenant_id = user_sign_in_activity.tenant_id
        AND s.user_id = user_sign_in_activity.user_id AND s.event_type = 'interactiveUser'
        ORDER BY s.created_at DESC, s.seq DESC LIMIT 1),
    last_non_interactive_id = (SELECT s.id FROM sign_ins s WHERE s.tenant_id = user_sign_in_activity.tenant_id
        AND s.user_id = user_sign_in_activity.user_id AND s.event_type = 'nonInteractiveUser'
        ORDER BY s.created_at DESC, s.seq DESC LIMIT 1),
    last_success_id = (SELECT s.id FROM sign_ins s WHERE s.tenant_id = user_sign_in_activity.tenant_id
        AND s.user_id = user_sign_in_activity.user_id AND s.error_code = 0
        ORDER BY s.created_at DESC, s.seq DESC LIMIT 1);
UPDATE user_sign_in_activity SET
    last_sign_in_at = (SELECT s.created_at FROM sign_ins s WHERE s.id = user_sign_in_activity.last_sign_in_id),
    last_non_interactive_at = (SELECT s.created_at FROM sign_ins s WHERE s.id = user_sign_in_activity.last_non_interactive_id),
    last_success_at = (SELECT s.created_at FROM sign_ins s WHERE s.id = user_sign_in_activity.last_success_id);

-- Each user's sign-in preferences (beta's signInPreferences): the preferred second method
-- (Graph's userDefaultAuthenticationMethodType, NULL for none) and system-preferred MFA.
ALTER TABLE user_sign_in_state ADD COLUMN preferred_secondary_method TEXT;
ALTER TABLE user_sign_in_state ADD COLUMN system_preferred_enabled BOOLEAN NOT NULL DEFAULT FALSE;
