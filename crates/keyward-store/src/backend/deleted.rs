//! Deleted items kept for restore: a deleted object's row and the rows that belong to it move to
//! exact copies of their tables (`deleted_…`, schema 17 and 18) with the time in `deleted_items`,
//! so no query on the live tables can see them, and move back on restore.
//!
//! `impl_deleted_rows!` is the same SQL for SQLite and PostgreSQL, expanded once per backend in
//! `backend/mod.rs`; users and groups (`backend/users.rs`, `backend/groups.rs`) call it.

/// A kind of object kept when deleted: its `deleted_items` kind, its table, the tables whose
/// rows move with it (each with a `deleted_` copy, the column holding the object's id, and the
/// condition a row must meet to come back on restore), the statements (binding the id as `$1`)
/// that remove rows naming the object which raced its deletion, so a restore never revives them,
/// and those that lock the objects the kept rows name.
pub(super) struct Kept {
    pub kind: &'static str,
    pub table: &'static str,
    pub children: &'static [(&'static str, &'static str, &'static str)],
    pub stale: &'static [&'static str],
    /// Statements (binding the id as `$1`) that lock the live objects the kept rows name, so a
    /// restore waits for a concurrent deletion of one of them (PostgreSQL).
    pub referenced: &'static [&'static str],
}

/// Implements the row moves of [`Kept`] objects for a backend's transaction type.
macro_rules! impl_deleted_rows {
    ($tx:ident, $db:ty) => {
        impl $tx {
            /// The units (id, whether restricted) a member of `table` (`administrative_unit_members`
            /// or its deleted copy) belongs to.
            async fn units_of_in(&mut self, table: &str, member: &ObjectId) -> Result<Vec<(ObjectId, bool)>, StoreError> {
                let sql = format!(
                    "SELECT u.id, u.is_member_management_restricted FROM {table} m \
                     JOIN administrative_units u ON u.id = m.unit_id WHERE m.member_id = $1 ORDER BY u.id"
                );
                let rows = q::query(q::AssertSqlSafe(sql)).bind(member.as_str()).fetch_all(&mut *self.0).await?;
                rows.iter().map(|row| Ok((oid(&row.try_get::<String, _>(0)?)?, row.try_get(1)?))).collect()
            }

            /// Rows of the tenant's objects of this kind deleted at or after `since`, with
            /// `columns` of the copy (named as the live table in the query, so the live table's
            /// column list reads it) and `deleted_at`: the object `id` (`exact`), or those after
            /// `id` in id order, at most `limit`.
            #[allow(clippy::too_many_arguments)]
            async fn deleted_rows(
                &mut self,
                kept: &Kept,
                columns: &str,
                tenant: &ObjectId,
                since: OffsetDateTime,
                id: &str,
                exact: bool,
                limit: usize,
            ) -> Result<Vec<DbRow>, StoreError> {
                let (table, kind) = (kept.table, kept.kind);
                let op = if exact { "=" } else { ">" };
                let sql = format!(
                    "SELECT {columns}, d.deleted_at FROM deleted_{table} {table} JOIN deleted_items d ON d.id = {table}.id \
                     WHERE d.tenant_id = $1 AND d.kind = '{kind}' AND d.deleted_at >= $2 AND d.id {op} $3 ORDER BY d.id{}",
                    limit_clause(limit)
                );
                q::query(q::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(fmt_ts(since))
                    .bind(id)
                    .fetch_all(&mut *self.0)
                    .await
                    .map_err(db)
            }

            /// Copies the object and its rows to the deleted copies and records when; the caller
            /// then deletes the live rows. `NotFound` when there is no such object.
            async fn keep_deleted(
                &mut self,
                kept: &Kept,
                tenant: &ObjectId,
                id: &ObjectId,
                at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                let table = kept.table;
                if DIALECT.row_locks {
                    // Copy the rows as they are once concurrent changes to them have committed.
                    let sql = format!("SELECT id FROM {table} WHERE tenant_id = $1 AND id = $2 FOR UPDATE");
                    q::query(q::AssertSqlSafe(sql))
                        .bind(tenant.as_str())
                        .bind(id.as_str())
                        .execute(&mut *self.0)
                        .await?;
                }
                let sql = format!("INSERT INTO deleted_{table} SELECT * FROM {table} WHERE tenant_id = $1 AND id = $2");
                let copied = q::query(q::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                if copied.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                for (child, key, _) in kept.children {
                    if DIALECT.row_locks {
                        // A concurrent removal of one of these rows commits first and is not copied.
                        let sql = format!("SELECT 1 FROM {child} WHERE {key} = $1 FOR UPDATE");
                        q::query(q::AssertSqlSafe(sql)).bind(id.as_str()).execute(&mut *self.0).await?;
                    }
                    let sql = format!("INSERT INTO deleted_{child} SELECT * FROM {child} WHERE {key} = $1");
                    q::query(q::AssertSqlSafe(sql)).bind(id.as_str()).execute(&mut *self.0).await?;
                }
                q::query("INSERT INTO deleted_items (id, tenant_id, kind, deleted_at) VALUES ($1, $2, $3, $4)")
                    .bind(id.as_str())
                    .bind(tenant.as_str())
                    .bind(kept.kind)
                    .bind(fmt_ts(at))
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            /// Moves a deleted object and those of its rows that meet their condition back to the
            /// live tables, and forgets the deleted copy. `NotFound` when there is none.
            async fn bring_back(&mut self, kept: &Kept, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                for sql in kept.stale {
                    q::query(q::AssertSqlSafe(*sql)).bind(id.as_str()).execute(&mut *self.0).await?;
                }
                if DIALECT.row_locks {
                    // Objects the rows name that are being deleted meanwhile finish first, so the
                    // rows' conditions below see them gone.
                    for sql in kept.referenced {
                        q::query(q::AssertSqlSafe(*sql)).bind(id.as_str()).execute(&mut *self.0).await?;
                    }
                }
                let table = kept.table;
                let sql = format!("INSERT INTO {table} SELECT * FROM deleted_{table} WHERE tenant_id = $1 AND id = $2");
                let restored = q::query(q::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                if restored.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                for (child, key, condition) in kept.children {
                    let sql = format!("INSERT INTO {child} SELECT * FROM deleted_{child} WHERE {key} = $1{condition}");
                    q::query(q::AssertSqlSafe(sql)).bind(id.as_str()).execute(&mut *self.0).await?;
                }
                self.forget_deleted(kept, tenant, id).await
            }

            /// Removes a deleted object's copies for good. `NotFound` when there is none.
            async fn forget_deleted(
                &mut self,
                kept: &Kept,
                tenant: &ObjectId,
                id: &ObjectId,
            ) -> Result<(), StoreError> {
                let done = q::query("DELETE FROM deleted_items WHERE tenant_id = $1 AND id = $2 AND kind = $3")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .bind(kept.kind)
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                for (child, key, _) in kept.children {
                    let sql = format!("DELETE FROM deleted_{child} WHERE {key} = $1");
                    q::query(q::AssertSqlSafe(sql)).bind(id.as_str()).execute(&mut *self.0).await?;
                }
                let sql = format!("DELETE FROM deleted_{} WHERE id = $1", kept.table);
                q::query(q::AssertSqlSafe(sql)).bind(id.as_str()).execute(&mut *self.0).await?;
                Ok(())
            }

            /// Removes for good the tenant's objects of this kind deleted before `before`; returns
            /// how many.
            async fn forget_deleted_before(
                &mut self,
                kept: &Kept,
                tenant: &ObjectId,
                before: OffsetDateTime,
            ) -> Result<u64, StoreError> {
                let expired = "SELECT id FROM deleted_items WHERE tenant_id = $1 AND kind = $2 AND deleted_at < $3";
                if DIALECT.row_locks {
                    // The items first, as a restore or permanent delete locks them, so the two
                    // never wait on each other's rows.
                    q::query(q::AssertSqlSafe(format!("{expired} FOR UPDATE")))
                        .bind(tenant.as_str())
                        .bind(kept.kind)
                        .bind(fmt_ts(before))
                        .execute(&mut *self.0)
                        .await?;
                }
                let copies = kept.children.iter().map(|(child, key, _)| format!("deleted_{child} WHERE {key}"));
                for table in copies.chain([format!("deleted_{} WHERE id", kept.table)]) {
                    q::query(q::AssertSqlSafe(format!("DELETE FROM {table} IN ({expired})")))
                        .bind(tenant.as_str())
                        .bind(kept.kind)
                        .bind(fmt_ts(before))
                        .execute(&mut *self.0)
                        .await?;
                }
                let done =
                    q::query("DELETE FROM deleted_items WHERE tenant_id = $1 AND kind = $2 AND deleted_at < $3")
                        .bind(tenant.as_str())
                        .bind(kept.kind)
                        .bind(fmt_ts(before))
                        .execute(&mut *self.0)
                        .await?;
                Ok(done.rows_affected())
            }
        }
    };
}
