//! The notification outbox (`OutboxStore`): messages written in a change's transaction, claimed by
//! one node's sender at a time, and the "This wasn't me" link's hash.
//!
//! `impl_outbox_store!` is the same SQL for SQLite and PostgreSQL, expanded once per backend in
//! `backend/mod.rs`.

/// The columns a message is read from, in `decode_message`'s order.
macro_rules! outbox_columns {
    () => {
        concat!(
            "id, tenant_id, kind, user_id, recipient, subject, body, correlation_id, created_at, state, ",
            "attempts, next_attempt_at, last_error, sent_at, reported_at"
        )
    };
}

macro_rules! impl_outbox_store {
    ($tx:ident, $db:ty) => {
        impl $tx {
            fn decode_message(row: &DbRow) -> Result<OutboxMessage, StoreError> {
                Ok(OutboxMessage {
                    id: row.try_get(0)?,
                    tenant_id: oid(&row.try_get::<String, _>(1)?)?,
                    kind: row.try_get(2)?,
                    user_id: oid(&row.try_get::<String, _>(3)?)?,
                    recipient: row.try_get(4)?,
                    subject: row.try_get(5)?,
                    body: row.try_get(6)?,
                    correlation_id: row.try_get(7)?,
                    created_at: parse_ts(&row.try_get::<String, _>(8)?)?,
                    state: row.try_get(9)?,
                    attempts: row.try_get(10)?,
                    next_attempt_at: opt_ts(row.try_get(11)?)?,
                    last_error: row.try_get(12)?,
                    sent_at: opt_ts(row.try_get(13)?)?,
                    reported_at: opt_ts(row.try_get(14)?)?,
                })
            }
        }

        #[async_trait]
        impl OutboxStore for $tx {
            async fn insert_message(&mut self, it: &OutboxMessage) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO notification_outbox (",
                    outbox_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                ))
                .bind(&it.id)
                .bind(it.tenant_id.as_str())
                .bind(&it.kind)
                .bind(it.user_id.as_str())
                .bind(&it.recipient)
                .bind(&it.subject)
                .bind(&it.body)
                .bind(&it.correlation_id)
                .bind(fmt_ts(it.created_at))
                .bind(&it.state)
                .bind(it.attempts)
                .bind(it.next_attempt_at.map(fmt_ts))
                .bind(&it.last_error)
                .bind(it.sent_at.map(fmt_ts))
                .bind(it.reported_at.map(fmt_ts))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn list_messages(
                &mut self,
                tenant: &ObjectId,
                state: Option<&str>,
                before: Option<&str>,
                limit: usize,
            ) -> Result<Vec<OutboxMessage>, StoreError> {
                let sql = format!(
                    concat!(
                        "SELECT ",
                        outbox_columns!(),
                        " FROM notification_outbox WHERE tenant_id = $1 AND ($2 IS NULL OR state = $2) ",
                        "AND ($3 IS NULL OR id < $3) ORDER BY id DESC{limit}"
                    ),
                    limit = limit_clause(limit)
                );
                let rows = q::query(q::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(state)
                    .bind(before)
                    .fetch_all(&mut *self.0)
                    .await?;
                rows.iter().map(Self::decode_message).collect()
            }

            async fn get_message(&mut self, tenant: &ObjectId, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
                let row = q::query(concat!(
                    "SELECT ",
                    outbox_columns!(),
                    " FROM notification_outbox WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(&mut *self.0)
                .await?;
                row.as_ref().map(Self::decode_message).transpose()
            }

            async fn claim_messages(
                &mut self,
                now: OffsetDateTime,
                lease_id: &str,
                limit: usize,
            ) -> Result<Vec<OutboxMessage>, StoreError> {
                let now_text = fmt_ts(now);
                let skip = if DIALECT.row_locks { " FOR UPDATE SKIP LOCKED" } else { "" };
                let sql = format!(
                    concat!(
                        "SELECT ",
                        outbox_columns!(),
                        " FROM notification_outbox WHERE state = 'pending' AND next_attempt_at <= $1 ",
                        "AND (leased_until IS NULL OR leased_until <= $1) ORDER BY next_attempt_at{limit}{skip}"
                    ),
                    limit = limit_clause(limit),
                    skip = skip
                );
                let rows = q::query(q::AssertSqlSafe(sql)).bind(&now_text).fetch_all(&mut *self.0).await?;
                let messages = rows.iter().map(Self::decode_message).collect::<Result<Vec<_>, _>>()?;
                let lease = fmt_ts(now + keyward_core::notify::LEASE);
                for message in &messages {
                    q::query("UPDATE notification_outbox SET leased_until = $2, lease_id = $3 WHERE id = $1")
                        .bind(&message.id)
                        .bind(&lease)
                        .bind(lease_id)
                        .execute(&mut *self.0)
                        .await?;
                }
                Ok(messages)
            }

            async fn set_message_link(&mut self, id: &str, lease_id: &str, hash: &[u8]) -> Result<bool, StoreError> {
                let done = q::query(
                    "UPDATE notification_outbox SET link_hash = $3 WHERE id = $1 AND lease_id = $2 AND state = 'pending'",
                )
                .bind(id)
                .bind(lease_id)
                .bind(hash)
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn finish_message(&mut self, it: &OutboxMessage, lease_id: &str) -> Result<bool, StoreError> {
                let done = q::query(concat!(
                    "UPDATE notification_outbox SET state = $2, attempts = $3, next_attempt_at = $4, ",
                    "last_error = $5, sent_at = $6, leased_until = NULL, lease_id = NULL ",
                    "WHERE id = $1 AND lease_id = $7 AND state = 'pending'"
                ))
                .bind(&it.id)
                .bind(&it.state)
                .bind(it.attempts)
                .bind(it.next_attempt_at.map(fmt_ts))
                .bind(&it.last_error)
                .bind(it.sent_at.map(fmt_ts))
                .bind(lease_id)
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_messages_before(
                &mut self,
                tenant: &ObjectId,
                before: OffsetDateTime,
            ) -> Result<u64, StoreError> {
                let done = q::query("DELETE FROM notification_outbox WHERE tenant_id = $1 AND state <> 'pending' AND COALESCE(sent_at, created_at) < $2")
                    .bind(tenant.as_str())
                    .bind(fmt_ts(before))
                    .execute(&mut *self.0)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn spend_message_link(
                &mut self,
                hash: &[u8],
                now: OffsetDateTime,
            ) -> Result<Option<OutboxMessage>, StoreError> {
                let sql = concat!(
                    "UPDATE notification_outbox SET reported_at = $2 WHERE link_hash = $1 AND reported_at IS NULL ",
                    "AND sent_at IS NOT NULL AND sent_at > $3 RETURNING ",
                    outbox_columns!()
                );
                let row = q::query(sql)
                    .bind(hash)
                    .bind(fmt_ts(now))
                    .bind(fmt_ts(now - keyward_core::notify::LINK_LIFETIME))
                    .fetch_optional(&mut *self.0)
                    .await?;
                row.as_ref().map(Self::decode_message).transpose()
            }
        }
    };
}
