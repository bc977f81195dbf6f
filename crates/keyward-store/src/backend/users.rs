//! Users and their multi-valued properties, and deleted users ([`KEPT_USER`], moved by
//! `backend/deleted.rs`).
//!
//! `impl_user_store!` is the same SQL for SQLite and PostgreSQL, expanded once per backend in
//! `backend/mod.rs`.

use super::deleted::Kept;

/// A deleted user, kept for restore: its row, multi-valued properties, sign-in state,
/// authentication methods and administrative units, all of which come back (units that still
/// exist); its group memberships and role assignments do not.
pub(super) const KEPT_USER: Kept = Kept {
    kind: "user",
    table: "users",
    children: &[
        ("user_values", "user_id", ""),
        ("user_sign_in_state", "user_id", ""),
        ("software_oath_methods", "user_id", ""),
        ("phone_methods", "user_id", ""),
        ("email_methods", "user_id", ""),
        ("fido2_methods", "user_id", ""),
        ("administrative_unit_members", "member_id", " AND unit_id IN (SELECT id FROM administrative_units)"),
    ],
    stale: &[
        "DELETE FROM group_members WHERE member_id = $1",
        "DELETE FROM group_owners WHERE owner_id = $1",
        "DELETE FROM administrative_unit_members WHERE member_id = $1",
        "DELETE FROM role_assignments WHERE principal_id = $1",
        "DELETE FROM role_eligibilities WHERE principal_id = $1",
    ],
    referenced: &[UNITS_REFERENCED],
};

/// Locks the units a deleted object's kept unit memberships name (see [`Kept::referenced`]).
pub(super) const UNITS_REFERENCED: &str = "SELECT 1 FROM administrative_units WHERE id IN \
     (SELECT unit_id FROM deleted_administrative_unit_members WHERE member_id = $1) FOR SHARE";

/// Whether a user row has multi-valued properties: most have none, and a read of one user then
/// needs no second statement.
pub(super) const HAS_VALUES: &str =
    "EXISTS (SELECT 1 FROM user_values WHERE user_values.user_id = users.id) AS has_values";

/// Implements `UserStore` for a backend's transaction type.
macro_rules! impl_user_store {
    ($tx:ident, $db:ty) => {
        impl $tx {
            /// The one user `sql` (`USER_BY_ID` or `USER_BY_UPN`) finds by `key`; with `lock`,
            /// its row locked until the transaction ends (`FOR NO KEY UPDATE`, which `UPDATE users`
            /// takes too: the foreign keys that reference the user, a sign-in's new session for
            /// one, do not wait for it).
            async fn one_user(
                &mut self,
                tenant: &ObjectId,
                sql: &'static str,
                key: &str,
                lock: bool,
            ) -> Result<Option<User>, StoreError> {
                let sql: std::borrow::Cow<'static, str> = if lock {
                    std::borrow::Cow::Owned(format!("{sql} FOR NO KEY UPDATE OF users"))
                } else {
                    std::borrow::Cow::Borrowed(sql)
                };
                let row = q::query(q::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(key)
                    .fetch_optional(&mut *self.0)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let mut users = vec![Self::user_from_row(&row)?];
                // A locked read that waited for another writer returns that writer's row, but
                // `has_values` from before it: the values are read again whatever it says, or
                // values that writer added would be written back as none.
                if lock || row.try_get::<bool, _>("has_values")? {
                    self.load_user_values(&mut users).await?;
                }
                Ok(users.pop())
            }
        }

        #[async_trait]
        impl UserStore for $tx {
            async fn insert_user(&mut self, user: &User, password_hash: Option<&str>) -> Result<(), StoreError> {
                let query = q::query(q::AssertSqlSafe(INSERT_USER.as_str()));
                let query = bind_user_columns!(query, user)
                    .bind(password_hash)
                    .bind(password_hash.map(|_| fmt_ts(user.last_password_change.unwrap_or(user.created))));
                let mut args = profile_args(user)?;
                args.push(Arg::MaybeText(user.manager.as_ref().map(ToString::to_string)));
                bind_args!(query, args).execute(&mut *self.0).await?;
                self.store_user_values(user).await
            }

            async fn update_user(&mut self, user: &User) -> Result<(), StoreError> {
                let query = q::query(q::AssertSqlSafe(UPDATE_USER.as_str()));
                let done =
                    bind_args!(bind_user_columns!(query, user), profile_args(user)?).execute(&mut *self.0).await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                self.store_user_values(user).await
            }

            async fn delete_user(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                // A deleted manager leaves their reports without one, as in Entra.
                q::query("UPDATE users SET manager_id = NULL WHERE tenant_id = $1 AND manager_id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                let done = q::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn get_user(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<User>, StoreError> {
                self.one_user(tenant, &crate::backend::USER_BY_ID, id.as_str(), false).await
            }

            async fn get_user_for_update(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
            ) -> Result<Option<User>, StoreError> {
                self.one_user(tenant, &crate::backend::USER_BY_ID, id.as_str(), DIALECT.row_locks).await
            }

            async fn get_users(&mut self, tenant: &ObjectId, ids: &[ObjectId]) -> Result<Vec<User>, StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut sql = Sql::new(&format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = "));
                sql.arg(Arg::Text(tenant.to_string()));
                push_id_list(&mut sql, "users.id", ids);
                let rows = bind_args!(q::query(q::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                let mut users = rows.iter().map(Self::user_from_row).collect::<Result<Vec<_>, _>>()?;
                self.load_user_values(&mut users).await?;
                Ok(users)
            }

            async fn find_user_by_upn(&mut self, tenant: &ObjectId, upn: &str) -> Result<Option<User>, StoreError> {
                self.one_user(tenant, &crate::backend::USER_BY_UPN, &upn.to_lowercase(), false).await
            }

            async fn list_users(
                &mut self,
                tenant: &ObjectId,
                plan: &Plan,
                after: Option<&Cursor>,
            ) -> Result<Page<User>, StoreError> {
                let (rows, count) = self.list_rows(USERS, USER_COLUMNS, tenant, plan, after).await?;
                let mut items = rows.iter().map(Self::user_from_row).collect::<Result<Vec<_>, _>>()?;
                let next = next_cursor(&mut items, plan, |user| {
                    let key = match plan.order_by.map(|it| it.property) {
                        Some("createdDateTime") => fmt_ts(user.created),
                        Some("userPrincipalName") => user.user_principal_name.to_lowercase(),
                        Some("givenName") => user.given_name.clone().unwrap_or_default().to_lowercase(),
                        Some("surname") => user.surname.clone().unwrap_or_default().to_lowercase(),
                        Some("mail") => user.mail.clone().unwrap_or_default().to_lowercase(),
                        Some("jobTitle") => user.job_title.clone().unwrap_or_default().to_lowercase(),
                        Some("department") => user.department.clone().unwrap_or_default().to_lowercase(),
                        _ => user.display_name.to_lowercase(),
                    };
                    (key, user.id.to_string())
                });
                self.load_user_values(&mut items).await?;
                Ok(Page { items, next, count })
            }

            async fn list_direct_reports(
                &mut self,
                tenant: &ObjectId,
                manager: &ObjectId,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<ObjectId>, StoreError> {
                let ids: Vec<String> = q::query_scalar(q::AssertSqlSafe(format!(
                    "SELECT id FROM users WHERE manager_id = $1 AND tenant_id = $2 AND id > $3 ORDER BY id{}",
                    limit_clause(limit)
                )))
                .bind(manager.as_str())
                .bind(tenant.as_str())
                .bind(after.unwrap_or(""))
                .fetch_all(&mut *self.0)
                .await?;
                ids.iter().map(|it| oid(it)).collect()
            }

            async fn soft_delete_user(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
                at: OffsetDateTime,
                held: &HeldRoles,
            ) -> Result<(), StoreError> {
                self.keep_deleted(&KEPT_USER, tenant, id, at).await?;
                q::query(concat!(
                    "UPDATE deleted_items SET held_roles = $3, held_restricted_scope = $4, held_protected = $5 ",
                    "WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .bind(held.role_ids.join(","))
                .bind(held.has_role_scoped_to_restricted_unit)
                .bind(held.is_role_assignable_group_member_or_owner)
                .execute(&mut *self.0)
                .await?;
                self.delete_user(tenant, id).await
            }

            async fn deleted_user_held_roles(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
            ) -> Result<Option<HeldRoles>, StoreError> {
                let row = q::query(concat!(
                    "SELECT held_roles, held_restricted_scope, held_protected FROM deleted_items ",
                    "WHERE tenant_id = $1 AND id = $2 AND kind = 'user'"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *self.0)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let Some(roles) = row.try_get::<Option<String>, _>(0)? else { return Ok(None) };
                Ok(Some(HeldRoles {
                    role_ids: roles.split(',').filter(|it| !it.is_empty()).map(str::to_owned).collect(),
                    has_role_scoped_to_restricted_unit: row.try_get(1)?,
                    is_role_assignable_group_member_or_owner: row.try_get(2)?,
                }))
            }

            async fn list_deleted_users(
                &mut self,
                tenant: &ObjectId,
                since: OffsetDateTime,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<(User, OffsetDateTime)>, StoreError> {
                let after = after.unwrap_or("");
                let rows = self.deleted_rows(&KEPT_USER, USER_COLUMNS, tenant, since, after, false, limit).await?;
                self.deleted_users_from_rows(&rows).await
            }

            async fn get_deleted_user(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
                since: OffsetDateTime,
            ) -> Result<Option<(User, OffsetDateTime)>, StoreError> {
                let rows = self.deleted_rows(&KEPT_USER, USER_COLUMNS, tenant, since, id.as_str(), true, 1).await?;
                Ok(self.deleted_users_from_rows(&rows).await?.pop())
            }

            async fn lock_deleted_item(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                if DIALECT.row_locks {
                    q::query("SELECT id FROM deleted_items WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
                        .bind(tenant.as_str())
                        .bind(id.as_str())
                        .fetch_optional(&mut *self.0)
                        .await?;
                }
                Ok(())
            }

            async fn restore_user(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                self.bring_back(&KEPT_USER, tenant, id).await?;
                q::query(concat!(
                    "UPDATE users SET manager_id = NULL WHERE id = $1 AND manager_id IS NOT NULL ",
                    "AND NOT EXISTS (SELECT 1 FROM users m WHERE m.id = users.manager_id)"
                ))
                .bind(id.as_str())
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn purge_deleted_user(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                self.forget_deleted(&KEPT_USER, tenant, id).await
            }

            async fn purge_deleted_users_before(
                &mut self,
                tenant: &ObjectId,
                before: OffsetDateTime,
            ) -> Result<u64, StoreError> {
                self.forget_deleted_before(&KEPT_USER, tenant, before).await
            }

            async fn set_manager(
                &mut self,
                tenant: &ObjectId,
                user: &ObjectId,
                manager: Option<&ObjectId>,
            ) -> Result<(), StoreError> {
                let done = q::query("UPDATE users SET manager_id = $3 WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(user.as_str())
                    .bind(manager.map(ObjectId::as_str))
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }
        }
    };
}
