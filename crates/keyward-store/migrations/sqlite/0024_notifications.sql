-- The notification outbox: messages to users about changes to their security info, and to
-- administrators, written in the change's own transaction and delivered by the server's sender
-- with retries. The "This wasn't me" link's token is drawn when a message is sent; only its
-- SHA-256 is kept.
CREATE TABLE notification_outbox (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    recipient TEXT,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    leased_until TEXT,
    lease_id TEXT,
    last_error TEXT,
    sent_at TEXT,
    link_hash BLOB UNIQUE,
    reported_at TEXT
);
CREATE INDEX notification_outbox_due ON notification_outbox(state, next_attempt_at);
CREATE INDEX notification_outbox_by_tenant ON notification_outbox(tenant_id, id);
