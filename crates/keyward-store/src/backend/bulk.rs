//! Bulk operations (`BulkStore`): the job, its items, and the lease a node holds while it runs it.
//!
//! `impl_bulk_store!` is the same SQL for SQLite and PostgreSQL, expanded once per backend in
//! `backend/mod.rs`.

/// The columns a job is read from, in `decode_bulk_job`'s order.
macro_rules! bulk_job_columns {
    () => {
        concat!(
            "id, tenant_id, caller_id, caller_is_app, caller_scopes, caller_ip, operation, ",
            "per_user_mfa_state, role_id, scope, source, status, created_at, finished_at, correlation_id"
        )
    };
}

macro_rules! impl_bulk_store {
    ($tx:ident, $db:ty) => {
        impl $tx {
            fn decode_bulk_job(row: &DbRow) -> Result<BulkJob, StoreError> {
                Ok(BulkJob {
                    id: oid(&row.try_get::<String, _>(0)?)?,
                    tenant_id: oid(&row.try_get::<String, _>(1)?)?,
                    caller_id: oid(&row.try_get::<String, _>(2)?)?,
                    caller_is_app: row.try_get(3)?,
                    caller_scopes: row.try_get(4)?,
                    caller_ip: row.try_get(5)?,
                    operation: row.try_get(6)?,
                    per_user_mfa_state: row.try_get(7)?,
                    role_id: row.try_get(8)?,
                    scope: row.try_get(9)?,
                    source: row.try_get(10)?,
                    status: row.try_get(11)?,
                    created_at: parse_ts(&row.try_get::<String, _>(12)?)?,
                    finished_at: opt_ts(row.try_get(13)?)?,
                    correlation_id: row.try_get(14)?,
                })
            }
        }

        #[async_trait]
        impl BulkStore for $tx {
            async fn insert_bulk_job(
                &mut self,
                job: &BulkJob,
                items: &[BulkItem],
                lease_id: &str,
                leased_until: OffsetDateTime,
            ) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO bulk_jobs (",
                    bulk_job_columns!(),
                    ", leased_until, lease_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, ",
                    "$15, $16, $17)"
                ))
                .bind(job.id.as_str())
                .bind(job.tenant_id.as_str())
                .bind(job.caller_id.as_str())
                .bind(job.caller_is_app)
                .bind(&job.caller_scopes)
                .bind(&job.caller_ip)
                .bind(&job.operation)
                .bind(&job.per_user_mfa_state)
                .bind(&job.role_id)
                .bind(&job.scope)
                .bind(&job.source)
                .bind(&job.status)
                .bind(fmt_ts(job.created_at))
                .bind(job.finished_at.map(fmt_ts))
                .bind(&job.correlation_id)
                .bind(fmt_ts(leased_until))
                .bind(lease_id)
                .execute(&mut *self.0)
                .await?;
                for item in items {
                    q::query(concat!(
                        "INSERT INTO bulk_items (job_id, position, user_key, user_id, state, detail) ",
                        "VALUES ($1, $2, $3, $4, $5, $6)"
                    ))
                    .bind(job.id.as_str())
                    .bind(item.position)
                    .bind(&item.user_key)
                    .bind(item.user_id.as_ref().map(ObjectId::as_str))
                    .bind(&item.state)
                    .bind(&item.detail)
                    .execute(&mut *self.0)
                    .await?;
                }
                Ok(())
            }

            async fn get_bulk_job(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<BulkJob>, StoreError> {
                let row = q::query(concat!(
                    "SELECT ",
                    bulk_job_columns!(),
                    " FROM bulk_jobs WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *self.0)
                .await?;
                row.as_ref().map(Self::decode_bulk_job).transpose()
            }

            async fn list_bulk_items(
                &mut self,
                job: &ObjectId,
                after: Option<i64>,
                limit: usize,
            ) -> Result<Vec<BulkItem>, StoreError> {
                let rows = q::query(concat!(
                    "SELECT position, user_key, user_id, state, detail FROM bulk_items WHERE job_id = $1 ",
                    "AND position > $2 ORDER BY position LIMIT $3"
                ))
                .bind(job.as_str())
                .bind(after.unwrap_or(-1))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&mut *self.0)
                .await?;
                rows.iter()
                    .map(|row| {
                        let user: Option<String> = row.try_get(2)?;
                        Ok(BulkItem {
                            position: row.try_get(0)?,
                            user_key: row.try_get(1)?,
                            user_id: user.as_deref().map(oid).transpose()?,
                            state: row.try_get(3)?,
                            detail: row.try_get(4)?,
                        })
                    })
                    .collect()
            }

            async fn count_bulk_items(&mut self, job: &ObjectId) -> Result<Vec<(String, i64)>, StoreError> {
                let rows = q::query("SELECT state, COUNT(*) FROM bulk_items WHERE job_id = $1 GROUP BY state")
                    .bind(job.as_str())
                    .fetch_all(&mut *self.0)
                    .await?;
                rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
            }

            async fn finish_bulk_item(
                &mut self,
                job: &ObjectId,
                position: i64,
                state: &str,
                detail: Option<&str>,
            ) -> Result<bool, StoreError> {
                let done = q::query(concat!(
                    "UPDATE bulk_items SET state = $3, detail = $4 WHERE job_id = $1 AND position = $2 ",
                    "AND state = 'pending'"
                ))
                .bind(job.as_str())
                .bind(position)
                .bind(state)
                .bind(detail)
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn claim_bulk_job(
                &mut self,
                now: OffsetDateTime,
                lease_id: &str,
                leased_until: OffsetDateTime,
            ) -> Result<Option<BulkJob>, StoreError> {
                let skip = if DIALECT.row_locks { " FOR UPDATE SKIP LOCKED" } else { "" };
                let sql = format!(
                    concat!(
                        "SELECT ",
                        bulk_job_columns!(),
                        " FROM bulk_jobs WHERE status = 'running' AND (leased_until IS NULL OR leased_until <= $1) ",
                        "ORDER BY created_at LIMIT 1{skip}"
                    ),
                    skip = skip
                );
                let row = q::query(q::AssertSqlSafe(sql)).bind(fmt_ts(now)).fetch_optional(&mut *self.0).await?;
                let Some(job) = row.as_ref().map(Self::decode_bulk_job).transpose()? else { return Ok(None) };
                q::query("UPDATE bulk_jobs SET leased_until = $2, lease_id = $3 WHERE id = $1")
                    .bind(job.id.as_str())
                    .bind(fmt_ts(leased_until))
                    .bind(lease_id)
                    .execute(&mut *self.0)
                    .await?;
                Ok(Some(job))
            }

            async fn renew_bulk_job(
                &mut self,
                job: &ObjectId,
                lease_id: &str,
                leased_until: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let done = q::query(
                    "UPDATE bulk_jobs SET leased_until = $3 WHERE id = $1 AND lease_id = $2 AND status = 'running'",
                )
                .bind(job.as_str())
                .bind(lease_id)
                .bind(fmt_ts(leased_until))
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn finish_pending_bulk_items(
                &mut self,
                job: &ObjectId,
                state: &str,
                detail: &str,
            ) -> Result<u64, StoreError> {
                let done =
                    q::query("UPDATE bulk_items SET state = $2, detail = $3 WHERE job_id = $1 AND state = 'pending'")
                        .bind(job.as_str())
                        .bind(state)
                        .bind(detail)
                        .execute(&mut *self.0)
                        .await?;
                Ok(done.rows_affected())
            }

            async fn count_running_bulk_jobs(
                &mut self,
                tenant: &ObjectId,
                caller: Option<&ObjectId>,
            ) -> Result<i64, StoreError> {
                // Its own statement first: the count's snapshot is then taken with the lock held.
                self.advisory_lock(format!("keyward-bulk-{tenant}")).await?;
                let count: i64 = q::query_scalar(concat!(
                    "SELECT COUNT(*) FROM bulk_jobs WHERE tenant_id = $1 AND status = 'running' ",
                    "AND ($2 IS NULL OR caller_id = $2)"
                ))
                .bind(tenant.as_str())
                .bind(caller.map(ObjectId::as_str))
                .fetch_one(&mut *self.0)
                .await?;
                Ok(count)
            }

            async fn delete_bulk_jobs_before(
                &mut self,
                tenant: &ObjectId,
                before: OffsetDateTime,
            ) -> Result<u64, StoreError> {
                let old = "SELECT id FROM bulk_jobs WHERE tenant_id = $1 AND status = 'completed' AND finished_at < $2";
                q::query(q::AssertSqlSafe(format!("DELETE FROM bulk_items WHERE job_id IN ({old})")))
                    .bind(tenant.as_str())
                    .bind(fmt_ts(before))
                    .execute(&mut *self.0)
                    .await?;
                let done = q::query(
                    "DELETE FROM bulk_jobs WHERE tenant_id = $1 AND status = 'completed' AND finished_at < $2",
                )
                .bind(tenant.as_str())
                .bind(fmt_ts(before))
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected())
            }

            async fn complete_bulk_job(&mut self, job: &ObjectId, at: OffsetDateTime) -> Result<bool, StoreError> {
                let done = q::query(concat!(
                    "UPDATE bulk_jobs SET status = 'completed', finished_at = $2, leased_until = NULL, ",
                    "lease_id = NULL WHERE id = $1 AND status = 'running'"
                ))
                .bind(job.as_str())
                .bind(fmt_ts(at))
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}
