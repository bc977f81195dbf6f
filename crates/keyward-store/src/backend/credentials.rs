//! Passwords, authenticator-app secrets, phones, emails and Temporary Access Passes.
//!
//! `impl_credential_store!` is the same SQL for SQLite and PostgreSQL, expanded once per backend in
//! `backend/mod.rs`.

/// Implements `CredentialStore` for a backend's transaction type.
macro_rules! impl_credential_store {
    ($tx:ident, $db:ty) => {
        #[async_trait]
        impl CredentialStore for $tx {
            async fn get_password_hash(&mut self, user: &ObjectId) -> Result<Option<String>, StoreError> {
                let hash: Option<Option<String>> = q::query_scalar("SELECT password_hash FROM users WHERE id = $1")
                    .bind(user.as_str())
                    .fetch_optional(&mut *self.0)
                    .await?;
                Ok(hash.flatten())
            }

            async fn set_password_hash(
                &mut self,
                user: &ObjectId,
                hash: &str,
                at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                let done = q::query("UPDATE users SET password_hash = $2, password_changed_at = $3 WHERE id = $1")
                    .bind(user.as_str())
                    .bind(hash)
                    .bind(fmt_ts(at))
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn put_temporary_access_pass(&mut self, pass: &TemporaryAccessPass) -> Result<(), StoreError> {
                q::query("DELETE FROM temporary_access_passes WHERE user_id = $1")
                    .bind(pass.user_id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                q::query(concat!(
                    "INSERT INTO temporary_access_passes (id, user_id, pass_sha256, ",
                    "created_at, start_at, lifetime_minutes, is_usable_once, used_at, ",
                    "ends_at_registration) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(pass.id.as_str())
                .bind(pass.user_id.as_str())
                .bind(&pass.pass_sha256)
                .bind(fmt_ts(pass.created))
                .bind(fmt_ts(pass.start))
                .bind(pass.lifetime_minutes)
                .bind(pass.is_usable_once)
                .bind(pass.used_at.map(fmt_ts))
                .bind(pass.ends_at_registration)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn get_temporary_access_pass(
                &mut self,
                user: &ObjectId,
            ) -> Result<Option<TemporaryAccessPass>, StoreError> {
                let row = q::query(concat!(
                    "SELECT id, user_id, pass_sha256, created_at, start_at, ",
                    "lifetime_minutes, is_usable_once, used_at, ends_at_registration FROM ",
                    "temporary_access_passes WHERE user_id = $1"
                ))
                .bind(user.as_str())
                .fetch_optional(&mut *self.0)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(TemporaryAccessPass {
                    id: oid(&row.try_get::<String, _>(0)?)?,
                    user_id: oid(&row.try_get::<String, _>(1)?)?,
                    pass_sha256: row.try_get(2)?,
                    created: parse_ts(&row.try_get::<String, _>(3)?)?,
                    start: parse_ts(&row.try_get::<String, _>(4)?)?,
                    lifetime_minutes: row.try_get(5)?,
                    is_usable_once: row.try_get(6)?,
                    used_at: row.try_get::<Option<String>, _>(7)?.as_deref().map(parse_ts).transpose()?,
                    ends_at_registration: row.try_get(8)?,
                }))
            }
        }
    };
}
