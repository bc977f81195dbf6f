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
                let query = sqlx::query(concat!(
                    "INSERT INTO users (id, tenant_id, upn, upn_lc, display_name, ",
                    "display_name_lc, given_name, given_name_lc, surname, surname_lc, mail, ",
                    "mail_lc, mail_nickname, mail_nickname_lc, mobile_phone, ",
                    "mobile_phone_lc, job_title, job_title_lc, department, department_lc, ",
                    "usage_location, usage_location_lc, account_enabled, created_at, ",
                    "sessions_valid_from, force_change_password, password_hash) VALUES ($1, ",
                    "$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, ",
                    "$18, $19, $20, $21, $22, $23, $24, $25, $26, $27)"
                ));
                bind_user_columns!(query, user).bind(password_hash).execute(&mut *self.0).await?;
                self.store_user_values(user).await
            }

            async fn update_user(&mut self, user: &User) -> Result<(), StoreError> {
                let query = sqlx::query(concat!(
                    "UPDATE users SET upn = $3, upn_lc = $4, display_name = $5, ",
                    "display_name_lc = $6, given_name = $7, given_name_lc = $8, surname = ",
                    "$9, surname_lc = $10, mail = $11, mail_lc = $12, mail_nickname = $13, ",
                    "mail_nickname_lc = $14, mobile_phone = $15, mobile_phone_lc = $16, ",
                    "job_title = $17, job_title_lc = $18, department = $19, department_lc = ",
                    "$20, usage_location = $21, usage_location_lc = $22, account_enabled = ",
                    "$23, created_at = $24, sessions_valid_from = $25, force_change_password ",
                    "= $26 WHERE id = $1 AND tenant_id = $2"
                ));
                let done = bind_user_columns!(query, user).execute(&mut *self.0).await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                self.store_user_values(user).await
            }

            async fn delete_user(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
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
        }
    };
}
