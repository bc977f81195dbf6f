//! Sealed signing keys.
//!
//! `impl_key_store!` is the same SQL for SQLite and PostgreSQL, expanded once per backend in
//! `backend/mod.rs`.

/// Implements `KeyStore` for a backend's transaction type.
macro_rules! impl_key_store {
    ($tx:ident, $db:ty) => {
        #[async_trait]
        impl KeyStore for $tx {
            async fn insert_signing_key(&mut self, key: &SigningKey) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO signing_keys (kid, algorithm, sealed_private_key, ",
                    "public_key, created_at, activated_at, retired_at) VALUES ($1, $2, $3, ",
                    "$4, $5, $6, $7)"
                ))
                .bind(&key.kid)
                .bind(&key.algorithm)
                .bind(&key.sealed_private_key)
                .bind(&key.public_key)
                .bind(fmt_ts(key.created))
                .bind(key.activated.map(fmt_ts))
                .bind(key.retired.map(fmt_ts))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn list_signing_keys(&mut self) -> Result<Vec<SigningKey>, StoreError> {
                let rows = q::query(concat!(
                    "SELECT kid, algorithm, sealed_private_key, public_key, created_at, ",
                    "activated_at, retired_at FROM signing_keys ORDER BY created_at, kid"
                ))
                .fetch_all(&mut *self.0)
                .await?;
                let time = |raw: Option<String>| raw.as_deref().map(parse_ts).transpose();
                rows.iter()
                    .map(|row| {
                        Ok(SigningKey {
                            kid: row.try_get(0)?,
                            algorithm: row.try_get(1)?,
                            sealed_private_key: row.try_get(2)?,
                            public_key: row.try_get(3)?,
                            created: parse_ts(&row.try_get::<String, _>(4)?)?,
                            activated: time(row.try_get(5)?)?,
                            retired: time(row.try_get(6)?)?,
                        })
                    })
                    .collect()
            }

            async fn retire_signing_key(&mut self, kid: &str, at: OffsetDateTime) -> Result<(), StoreError> {
                let done = q::query(concat!(
                    "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at ",
                    "IS NULL"
                ))
                .bind(kid)
                .bind(fmt_ts(at))
                .execute(&mut *self.0)
                .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }
        }
    };
}
