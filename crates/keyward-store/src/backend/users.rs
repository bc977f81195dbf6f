//! Users and their multi-valued properties.
//!
//! `impl_user_store!` is the same SQL for SQLite and PostgreSQL, expanded once per backend in
//! `backend/mod.rs`.

/// Implements `UserStore` for a backend's transaction type.
macro_rules! impl_user_store {
    ($tx:ident, $db:ty) => {
        #[async_trait]
        impl UserStore for $tx {
            async fn insert_user(&mut self, user: &User, password_hash: Option<&str>) -> Result<(), StoreError> {
                let query = sqlx::query(sqlx::AssertSqlSafe(INSERT_USER.as_str()));
                let query = bind_user_columns!(query, user)
                    .bind(password_hash)
                    .bind(password_hash.map(|_| fmt_ts(user.last_password_change.unwrap_or(user.created))));
                bind_args!(query, profile_args(user)?).execute(&mut *self.0).await?;
                self.store_user_values(user).await
            }

            async fn update_user(&mut self, user: &User) -> Result<(), StoreError> {
                let query = sqlx::query(sqlx::AssertSqlSafe(UPDATE_USER.as_str()));
                let done =
                    bind_args!(bind_user_columns!(query, user), profile_args(user)?).execute(&mut *self.0).await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                self.store_user_values(user).await
            }

            async fn delete_user(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                // A deleted manager leaves their reports without one, as in Entra.
                sqlx::query("UPDATE users SET manager_id = NULL WHERE tenant_id = $1 AND manager_id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                let done = sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn get_user(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<User>, StoreError> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .fetch_optional(&mut *self.0)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let mut users = vec![Self::user_from_row(&row)?];
                self.load_user_values(&mut users).await?;
                Ok(users.pop())
            }

            async fn get_users(&mut self, tenant: &ObjectId, ids: &[ObjectId]) -> Result<Vec<User>, StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut sql = Sql::new(&format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = "));
                sql.arg(Arg::Text(tenant.to_string()));
                push_id_list(&mut sql, "users.id", ids);
                let rows =
                    bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                let mut users = rows.iter().map(Self::user_from_row).collect::<Result<Vec<_>, _>>()?;
                self.load_user_values(&mut users).await?;
                Ok(users)
            }

            async fn find_user_by_upn(&mut self, tenant: &ObjectId, upn: &str) -> Result<Option<User>, StoreError> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND upn_lc = $2");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(upn.to_lowercase())
                    .fetch_optional(&mut *self.0)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let mut users = vec![Self::user_from_row(&row)?];
                self.load_user_values(&mut users).await?;
                Ok(users.pop())
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
                let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
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
        }
    };
}
