-- When a browser session last used the admin portal: the portal signs an administrator out
-- after a configurable time without activity (its own reading of the session, not the account
-- page's). NULL: not since the session signed in.
ALTER TABLE browser_sessions ADD COLUMN portal_seen_at TEXT;
