//! The OpenID Connect half of the SQLite and PostgreSQL stores (`OAuthStore`), generated for both
//! from one body like the rest of `backend/`. Codes, refresh tokens and device codes are spent
//! with guarded `UPDATE … WHERE` statements, so two nodes can never both redeem one.

/// The columns `application_from_row` reads (by name).
pub(crate) const APPLICATION_COLUMNS: &str = concat!(
    "id, tenant_id, app_id, display_name, is_fallback_public_client, ",
    "public_redirect_uris, web_redirect_uris, created_at, unique_name"
);

/// `APPLICATION_COLUMNS` named by table, for a query that joins `deleted_items`.
pub(crate) const DELETED_APPLICATION_COLUMNS: &str = concat!(
    "applications.id, applications.tenant_id, applications.app_id, applications.display_name, ",
    "applications.is_fallback_public_client, applications.public_redirect_uris, ",
    "applications.web_redirect_uris, applications.created_at, applications.unique_name"
);

/// A deleted application, kept for restore with its credentials (schema 32). Its service
/// principal is not kept: deleting the application deletes it, with its role assignments and
/// consent grants, for good.
pub(crate) const KEPT_APPLICATION: super::deleted::Kept = super::deleted::Kept {
    kind: "application",
    table: "applications",
    children: &[("application_credentials", "application_id", "")],
    stale: &[],
    referenced: &[],
};

/// An application from the columns of `APPLICATION_COLUMNS`.
pub(crate) fn application_from(row: &impl super::Columns) -> Result<crate::Application, crate::StoreError> {
    Ok(crate::Application {
        id: super::oid(&row.required("id")?)?,
        tenant_id: super::oid(&row.required("tenant_id")?)?,
        app_id: row.required("app_id")?,
        display_name: row.required("display_name")?,
        is_fallback_public_client: row.flag("is_fallback_public_client")?,
        public_redirect_uris: split_uris(&row.required("public_redirect_uris")?),
        web_redirect_uris: split_uris(&row.required("web_redirect_uris")?),
        created: crate::sql::parse_ts(&row.required("created_at")?)?,
        unique_name: row.text("unique_name")?,
    })
}

/// Redirect URIs (and policy ids) are stored one per line.
pub(crate) fn join_uris(uris: &[String]) -> String {
    uris.join("\n")
}

pub(crate) fn split_uris(text: &str) -> Vec<String> {
    text.lines().filter(|it| !it.is_empty()).map(str::to_owned).collect()
}

/// `SELECT` of a permission grant's columns `FROM oauth2_permission_grants` (what
/// `permission_grant_from_row` reads).
macro_rules! select_grants {
    () => {
        concat!(
            "SELECT id, tenant_id, client_id, consent_type, principal_id, resource_id, scope, created_at ",
            "FROM oauth2_permission_grants"
        )
    };
}

/// Whether a refresh token's family was revoked: one lookup in the partial index
/// `refresh_tokens_family_revoked` (schema 38), which holds only revoked rows.
pub(super) const FAMILY_REVOKED: &str =
    "SELECT CAST(1 AS BIGINT) FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NOT NULL LIMIT 1";

macro_rules! impl_oauth_store {
    ($tx:ident, $db:ty) => {
        impl $tx {
            fn application_from_row(row: &DbRow) -> Result<Application, StoreError> {
                crate::backend::oauth::application_from(row)
            }

            fn deleted_application_from_row(row: &DbRow) -> Result<(Application, OffsetDateTime), StoreError> {
                Ok((Self::application_from_row(row)?, parse_ts(&row.try_get::<String, _>("deleted_at")?)?))
            }

            /// Takes a refresh token family's lock until the transaction ends (PostgreSQL; SQLite's
            /// writers take turns): its revocations and the check before a token joins it.
            async fn lock_refresh_family(&mut self, family_id: &str) -> Result<(), StoreError> {
                self.advisory_lock(format!("keyward-refresh-family-{family_id}")).await
            }

            /// One application by object id; with `lock`, its row locked until the transaction
            /// ends (`FOR NO KEY UPDATE`, as `get_user_for_update` locks a user's).
            async fn application_by_id(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
                lock: bool,
            ) -> Result<Option<Application>, StoreError> {
                let lock = if lock { " FOR NO KEY UPDATE OF applications" } else { "" };
                let sql = format!(
                    "SELECT {} FROM applications WHERE tenant_id = $1 AND id = $2{lock}",
                    crate::backend::oauth::APPLICATION_COLUMNS
                );
                self.one_by_key(q::AssertSqlSafe(sql), tenant, id.to_string(), Self::application_from_row).await
            }

            /// Reads the grant columns starting at `at`: tenant, client, user, scope, auth_time, amr, pass end.
            fn grant_from_row(row: &DbRow, at: usize) -> Result<Grant, StoreError> {
                Ok(Grant {
                    tenant_id: oid(&row.try_get::<String, _>(at)?)?,
                    client_id: row.try_get(at + 1)?,
                    user_id: oid(&row.try_get::<String, _>(at + 2)?)?,
                    scope: row.try_get(at + 3)?,
                    auth_time: parse_ts(&row.try_get::<String, _>(at + 4)?)?,
                    amr: Amr::parse(&row.try_get::<String, _>(at + 5)?),
                    pass_expires_at: opt_ts(row.try_get(at + 6)?)?,
                })
            }

            /// Reads the columns `id, tenant_id, client_id, consent_type, principal_id, resource_id, scope,
            /// created_at` by name.
            fn permission_grant_from_row(row: &DbRow) -> Result<PermissionGrant, StoreError> {
                Ok(PermissionGrant {
                    id: row.try_get("id")?,
                    tenant_id: oid(&row.try_get::<String, _>("tenant_id")?)?,
                    client_id: oid(&row.try_get::<String, _>("client_id")?)?,
                    consent_type: row.try_get("consent_type")?,
                    principal_id: row.try_get::<Option<String>, _>("principal_id")?.as_deref().map(oid).transpose()?,
                    resource_id: row.try_get("resource_id")?,
                    scope: row.try_get("scope")?,
                    created: parse_ts(&row.try_get::<String, _>("created_at")?)?,
                })
            }

            fn device_from_row(row: &DbRow) -> Result<DeviceCode, StoreError> {
                Ok(DeviceCode {
                    device_sha256: row.try_get("device_sha256")?,
                    user_code: row.try_get("user_code")?,
                    tenant_id: oid(&row.try_get::<String, _>("tenant_id")?)?,
                    client_id: row.try_get("client_id")?,
                    scope: row.try_get("scope")?,
                    created: parse_ts(&row.try_get::<String, _>("created_at")?)?,
                    expires_at: parse_ts(&row.try_get::<String, _>("expires_at")?)?,
                    interval_seconds: row.try_get("interval_seconds")?,
                    last_poll_at: opt_ts(row.try_get("last_poll_at")?)?,
                    status: DeviceCodeStatus::parse(&row.try_get::<String, _>("status")?)
                        .ok_or_else(|| StoreError::Other("corrupt device code status".into()))?,
                    user_id: row.try_get::<Option<String>, _>("user_id")?.as_deref().map(oid).transpose()?,
                    auth_time: opt_ts(row.try_get("auth_time")?)?,
                    amr: Amr::parse(&row.try_get::<String, _>("amr")?),
                    pass_expires_at: opt_ts(row.try_get("pass_expires_at")?)?,
                })
            }
        }

        #[async_trait]
        impl OAuthStore for $tx {
            async fn insert_application(&mut self, app: &Application) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO applications (id, tenant_id, app_id, display_name, ",
                    "display_name_lc, is_fallback_public_client, public_redirect_uris, ",
                    "web_redirect_uris, created_at, unique_name, unique_name_lc) VALUES ($1, $2, $3, ",
                    "$4, $5, $6, $7, $8, $9, $10, $11)"
                ))
                .bind(app.id.as_str())
                .bind(app.tenant_id.as_str())
                .bind(&app.app_id)
                .bind(&app.display_name)
                .bind(app.display_name.to_lowercase())
                .bind(app.is_fallback_public_client)
                .bind(crate::backend::oauth::join_uris(&app.public_redirect_uris))
                .bind(crate::backend::oauth::join_uris(&app.web_redirect_uris))
                .bind(fmt_ts(app.created))
                .bind(&app.unique_name)
                .bind(app.unique_name.as_deref().map(str::to_lowercase))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn update_application(&mut self, app: &Application) -> Result<(), StoreError> {
                let done = q::query(concat!(
                    "UPDATE applications SET display_name = $3, display_name_lc = $4, ",
                    "is_fallback_public_client = $5, public_redirect_uris = $6, ",
                    "web_redirect_uris = $7 WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(app.tenant_id.as_str())
                .bind(app.id.as_str())
                .bind(&app.display_name)
                .bind(app.display_name.to_lowercase())
                .bind(app.is_fallback_public_client)
                .bind(crate::backend::oauth::join_uris(&app.public_redirect_uris))
                .bind(crate::backend::oauth::join_uris(&app.web_redirect_uris))
                .execute(&mut *self.0)
                .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn delete_application(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                let done = q::query("DELETE FROM applications WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn soft_delete_application(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
                at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                self.keep_deleted(&crate::backend::oauth::KEPT_APPLICATION, tenant, id, at).await?;
                self.delete_application(tenant, id).await
            }

            async fn list_deleted_applications(
                &mut self,
                tenant: &ObjectId,
                since: OffsetDateTime,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<(Application, OffsetDateTime)>, StoreError> {
                let (kept, columns) =
                    (&crate::backend::oauth::KEPT_APPLICATION, crate::backend::oauth::DELETED_APPLICATION_COLUMNS);
                let rows = self.deleted_rows(kept, columns, tenant, since, after.unwrap_or(""), false, limit).await?;
                rows.iter().map(Self::deleted_application_from_row).collect()
            }

            async fn get_deleted_application(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
                since: OffsetDateTime,
            ) -> Result<Option<(Application, OffsetDateTime)>, StoreError> {
                let (kept, columns) =
                    (&crate::backend::oauth::KEPT_APPLICATION, crate::backend::oauth::DELETED_APPLICATION_COLUMNS);
                let rows = self.deleted_rows(kept, columns, tenant, since, id.as_str(), true, 1).await?;
                rows.first().map(Self::deleted_application_from_row).transpose()
            }

            async fn list_deleted_app_credentials(
                &mut self,
                application: &ObjectId,
            ) -> Result<Vec<AppCredential>, StoreError> {
                let rows = q::query(crate::backend::DELETED_CREDENTIALS_OF)
                    .bind(application.as_str())
                    .fetch_all(&mut *self.0)
                    .await?;
                rows.iter().map(crate::backend::credential_from).collect()
            }

            async fn restore_application(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                self.bring_back(&crate::backend::oauth::KEPT_APPLICATION, tenant, id).await
            }

            async fn purge_deleted_application(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                self.forget_deleted(&crate::backend::oauth::KEPT_APPLICATION, tenant, id).await
            }

            async fn purge_deleted_applications_before(
                &mut self,
                tenant: &ObjectId,
                before: OffsetDateTime,
            ) -> Result<u64, StoreError> {
                self.forget_deleted_before(&crate::backend::oauth::KEPT_APPLICATION, tenant, before).await
            }

            async fn revoke_client_tokens(
                &mut self,
                tenant: &ObjectId,
                client_id: &str,
                at: OffsetDateTime,
            ) -> Result<u64, StoreError> {
                // Codes not redeemed yet would start new families after the revocation (were the
                // application restored and consented to again within a code's lifetime).
                for sql in [
                    "DELETE FROM authorization_codes WHERE tenant_id = $1 AND client_id = $2",
                    "DELETE FROM device_codes WHERE tenant_id = $1 AND client_id = $2",
                ] {
                    q::query(sql).bind(tenant.as_str()).bind(client_id).execute(&mut *self.0).await?;
                }
                let done = q::query(concat!(
                    "UPDATE refresh_tokens SET revoked_at = $3 WHERE tenant_id = $1 AND client_id = $2 ",
                    "AND revoked_at IS NULL"
                ))
                .bind(tenant.as_str())
                .bind(client_id)
                .bind(fmt_ts(at))
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected())
            }

            async fn get_application(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
            ) -> Result<Option<Application>, StoreError> {
                self.application_by_id(tenant, id, false).await
            }

            async fn get_application_for_update(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
            ) -> Result<Option<Application>, StoreError> {
                self.application_by_id(tenant, id, DIALECT.row_locks).await
            }

            async fn find_application(
                &mut self,
                tenant: &ObjectId,
                app_id: &str,
            ) -> Result<Option<Application>, StoreError> {
                let sql = q::AssertSqlSafe(crate::backend::APPLICATION_BY_APP_ID.as_str());
                self.one_by_key(sql, tenant, app_id.to_lowercase(), Self::application_from_row).await
            }

            async fn find_application_by_unique_name(
                &mut self,
                tenant: &ObjectId,
                name: &str,
            ) -> Result<Option<Application>, StoreError> {
                let sql = format!(
                    "SELECT {} FROM applications WHERE tenant_id = $1 AND unique_name_lc = $2",
                    crate::backend::oauth::APPLICATION_COLUMNS
                );
                self.one_by_key(q::AssertSqlSafe(sql), tenant, name.to_lowercase(), Self::application_from_row).await
            }

            async fn list_applications(
                &mut self,
                tenant: &ObjectId,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<Application>, StoreError> {
                let sql = format!(
                    concat!("SELECT {} FROM applications WHERE tenant_id = $1 AND id > $2 ORDER BY ", "id{}"),
                    crate::backend::oauth::APPLICATION_COLUMNS,
                    limit_clause(limit)
                );
                let rows = q::query(q::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(after.unwrap_or(""))
                    .fetch_all(&mut *self.0)
                    .await?;
                rows.iter().map(Self::application_from_row).collect()
            }

            async fn insert_app_credential(&mut self, credential: &AppCredential) -> Result<(), StoreError> {
                let kind = if credential.secret.is_some() { "password" } else { "certificate" };
                q::query(concat!(
                    "INSERT INTO application_credentials (key_id, application_id, kind, ",
                    "display_name, hint, secret_sha256, certificate, thumbprint, start_at, ",
                    "end_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ))
                .bind(credential.key_id.as_str())
                .bind(credential.application_id.as_str())
                .bind(kind)
                .bind(&credential.display_name)
                .bind(credential.secret.as_ref().map(|it| it.1.clone()))
                .bind(credential.secret.as_ref().map(|it| it.0.clone()))
                .bind(credential.certificate.as_ref().map(|it| it.0.clone()))
                .bind(credential.certificate.as_ref().map(|it| it.1.clone()))
                .bind(fmt_ts(credential.start))
                .bind(fmt_ts(credential.end))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn list_app_credentials(&mut self, application: &ObjectId) -> Result<Vec<AppCredential>, StoreError> {
                let rows =
                    q::query(crate::backend::CREDENTIALS_OF).bind(application.as_str()).fetch_all(&mut *self.0).await?;
                rows.iter().map(crate::backend::credential_from).collect()
            }

            async fn delete_app_credential(
                &mut self,
                application: &ObjectId,
                key_id: &ObjectId,
            ) -> Result<(), StoreError> {
                let done = q::query(concat!(
                    "DELETE FROM application_credentials WHERE application_id = $1 AND ",
                    "key_id = $2"
                ))
                .bind(application.as_str())
                .bind(key_id.as_str())
                .execute(&mut *self.0)
                .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn insert_auth_code(&mut self, code: &AuthCode) -> Result<(), StoreError> {
                let grant = &code.grant;
                q::query(concat!(
                    "INSERT INTO authorization_codes (code_sha256, tenant_id, client_id, ",
                    "user_id, scope, auth_time, amr, pass_expires_at, redirect_uri, nonce, ",
                    "code_challenge, code_challenge_method, created_at, expires_at, used_at) ",
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, ",
                    "$15)"
                ))
                .bind(&code.code_sha256)
                .bind(grant.tenant_id.as_str())
                .bind(&grant.client_id)
                .bind(grant.user_id.as_str())
                .bind(&grant.scope)
                .bind(fmt_ts(grant.auth_time))
                .bind(grant.amr.to_stored())
                .bind(grant.pass_expires_at.map(fmt_ts))
                .bind(&code.redirect_uri)
                .bind(&code.nonce)
                .bind(&code.code_challenge)
                .bind(&code.code_challenge_method)
                .bind(fmt_ts(code.created))
                .bind(fmt_ts(code.expires_at))
                .bind(code.used_at.map(fmt_ts))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn get_auth_code(&mut self, code_sha256: &[u8]) -> Result<Option<AuthCode>, StoreError> {
                let row = q::query(concat!(
                    "SELECT code_sha256, redirect_uri, nonce, code_challenge, ",
                    "code_challenge_method, created_at, expires_at, used_at, tenant_id, ",
                    "client_id, user_id, scope, auth_time, amr, pass_expires_at FROM ",
                    "authorization_codes WHERE code_sha256 = $1"
                ))
                .bind(code_sha256)
                .fetch_optional(&mut *self.0)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(AuthCode {
                    code_sha256: row.try_get(0)?,
                    redirect_uri: row.try_get(1)?,
                    nonce: row.try_get(2)?,
                    code_challenge: row.try_get(3)?,
                    code_challenge_method: row.try_get(4)?,
                    created: parse_ts(&row.try_get::<String, _>(5)?)?,
                    expires_at: parse_ts(&row.try_get::<String, _>(6)?)?,
                    used_at: opt_ts(row.try_get(7)?)?,
                    grant: Self::grant_from_row(&row, 8)?,
                }))
            }

            async fn use_auth_code(&mut self, code_sha256: &[u8], at: OffsetDateTime) -> Result<bool, StoreError> {
                let done = q::query(concat!(
                    "UPDATE authorization_codes SET used_at = $2 WHERE code_sha256 = $1 AND ",
                    "used_at IS NULL"
                ))
                .bind(code_sha256)
                .bind(fmt_ts(at))
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_refresh_token(&mut self, token: &RefreshToken) -> Result<(), StoreError> {
                let grant = &token.grant;
                q::query(concat!(
                    "INSERT INTO refresh_tokens (token_sha256, family_id, tenant_id, ",
                    "client_id, user_id, scope, auth_time, amr, pass_expires_at, issued_at, ",
                    "expires_at, rotated_at, revoked_at, client_authenticated) VALUES ($1, $2, ",
                    "$3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                ))
                .bind(&token.token_sha256)
                .bind(&token.family_id)
                .bind(grant.tenant_id.as_str())
                .bind(&grant.client_id)
                .bind(grant.user_id.as_str())
                .bind(&grant.scope)
                .bind(fmt_ts(grant.auth_time))
                .bind(grant.amr.to_stored())
                .bind(grant.pass_expires_at.map(fmt_ts))
                .bind(fmt_ts(token.issued_at))
                .bind(fmt_ts(token.expires_at))
                .bind(token.rotated_at.map(fmt_ts))
                .bind(token.revoked_at.map(fmt_ts))
                .bind(token.client_authenticated)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn get_refresh_token(&mut self, token_sha256: &[u8]) -> Result<Option<RefreshToken>, StoreError> {
                let row = q::query(concat!(
                    "SELECT token_sha256, family_id, issued_at, expires_at, rotated_at, ",
                    "revoked_at, tenant_id, client_id, user_id, scope, auth_time, amr, ",
                    "pass_expires_at, client_authenticated FROM refresh_tokens WHERE token_sha256 = $1"
                ))
                .bind(token_sha256)
                .fetch_optional(&mut *self.0)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(RefreshToken {
                    token_sha256: row.try_get(0)?,
                    family_id: row.try_get(1)?,
                    issued_at: parse_ts(&row.try_get::<String, _>(2)?)?,
                    expires_at: parse_ts(&row.try_get::<String, _>(3)?)?,
                    rotated_at: opt_ts(row.try_get(4)?)?,
                    revoked_at: opt_ts(row.try_get(5)?)?,
                    grant: Self::grant_from_row(&row, 6)?,
                    client_authenticated: row.try_get(13)?,
                }))
            }

            async fn rotate_refresh_token(
                &mut self,
                token_sha256: &[u8],
                at: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let done = q::query(concat!(
                    "UPDATE refresh_tokens SET rotated_at = $2 WHERE token_sha256 = $1 AND ",
                    "rotated_at IS NULL AND revoked_at IS NULL"
                ))
                .bind(token_sha256)
                .bind(fmt_ts(at))
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn is_refresh_family_revoked(&mut self, family_id: &str) -> Result<bool, StoreError> {
                // Its own statement before the read: under READ COMMITTED the read's snapshot is
                // then taken once the lock is held, and sees a revocation that held it.
                self.lock_refresh_family(family_id).await?;
                let revoked: Option<i64> = q::query_scalar(crate::backend::oauth::FAMILY_REVOKED)
                    .bind(family_id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                Ok(revoked.is_some())
            }

            async fn revoke_refresh_family(&mut self, family_id: &str, at: OffsetDateTime) -> Result<(), StoreError> {
                self.lock_refresh_family(family_id).await?;
                q::query(concat!(
                    "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND ",
                    "revoked_at IS NULL"
                ))
                .bind(family_id)
                .bind(fmt_ts(at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn delete_expired_grants(&mut self, before: OffsetDateTime) -> Result<u64, StoreError> {
                let mut removed = 0;
                for sql in [
                    "DELETE FROM refresh_tokens WHERE expires_at < $1",
                    "DELETE FROM authorization_codes WHERE expires_at < $1",
                    "DELETE FROM device_codes WHERE expires_at < $1",
                ] {
                    removed += q::query(sql).bind(fmt_ts(before)).execute(&mut *self.0).await?.rows_affected();
                }
                Ok(removed)
            }

            async fn insert_device_code(&mut self, code: &DeviceCode) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO device_codes (device_sha256, user_code, tenant_id, ",
                    "client_id, scope, created_at, expires_at, interval_seconds, ",
                    "last_poll_at, status, user_id, auth_time, amr, pass_expires_at) VALUES ",
                    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                ))
                .bind(&code.device_sha256)
                .bind(&code.user_code)
                .bind(code.tenant_id.as_str())
                .bind(&code.client_id)
                .bind(&code.scope)
                .bind(fmt_ts(code.created))
                .bind(fmt_ts(code.expires_at))
                .bind(code.interval_seconds)
                .bind(code.last_poll_at.map(fmt_ts))
                .bind(code.status.as_str())
                .bind(code.user_id.as_ref().map(ObjectId::to_string))
                .bind(code.auth_time.map(fmt_ts))
                .bind(code.amr.to_stored())
                .bind(code.pass_expires_at.map(fmt_ts))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn get_device_code(&mut self, device_sha256: &[u8]) -> Result<Option<DeviceCode>, StoreError> {
                let row = q::query(concat!(
                    "SELECT device_sha256, user_code, tenant_id, client_id, scope, ",
                    "created_at, expires_at, interval_seconds, last_poll_at, status, ",
                    "user_id, auth_time, amr, pass_expires_at FROM device_codes WHERE ",
                    "device_sha256 = $1"
                ))
                .bind(device_sha256)
                .fetch_optional(&mut *self.0)
                .await?;
                row.as_ref().map(Self::device_from_row).transpose()
            }

            async fn find_device_code(&mut self, user_code: &str) -> Result<Option<DeviceCode>, StoreError> {
                let row = q::query(concat!(
                    "SELECT device_sha256, user_code, tenant_id, client_id, scope, ",
                    "created_at, expires_at, interval_seconds, last_poll_at, status, ",
                    "user_id, auth_time, amr, pass_expires_at FROM device_codes WHERE ",
                    "user_code = $1"
                ))
                .bind(user_code)
                .fetch_optional(&mut *self.0)
                .await?;
                row.as_ref().map(Self::device_from_row).transpose()
            }

            async fn update_device_code(
                &mut self,
                code: &DeviceCode,
                expected_status: DeviceCodeStatus,
            ) -> Result<bool, StoreError> {
                let done = q::query(concat!(
                    "UPDATE device_codes SET last_poll_at = $2, status = $3, user_id = $4, ",
                    "auth_time = $5, amr = $6, pass_expires_at = $7 WHERE device_sha256 = $1 ",
                    "AND status = $8"
                ))
                .bind(&code.device_sha256)
                .bind(code.last_poll_at.map(fmt_ts))
                .bind(code.status.as_str())
                .bind(code.user_id.as_ref().map(ObjectId::to_string))
                .bind(code.auth_time.map(fmt_ts))
                .bind(code.amr.to_stored())
                .bind(code.pass_expires_at.map(fmt_ts))
                .bind(expected_status.as_str())
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn use_client_assertion(
                &mut self,
                client_id: &str,
                jti: &str,
                expires_at: OffsetDateTime,
                now: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                // Kept a minute past their end: nodes' clocks and the skew allowed differ.
                q::query("DELETE FROM client_assertion_jtis WHERE expires_at < $1")
                    .bind(fmt_ts(now - time::Duration::minutes(1)))
                    .execute(&mut *self.0)
                    .await?;
                let done = q::query(concat!(
                    "INSERT INTO client_assertion_jtis (client_id, jti, expires_at) VALUES ",
                    "($1, $2, $3) ON CONFLICT (client_id, jti) DO NOTHING"
                ))
                .bind(client_id)
                .bind(jti)
                .bind(fmt_ts(expires_at))
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_permission_grant(&mut self, grant: &PermissionGrant) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO oauth2_permission_grants (id, tenant_id, client_id, ",
                    "consent_type, principal_id, resource_id, scope, created_at) VALUES ($1, ",
                    "$2, $3, $4, $5, $6, $7, $8)"
                ))
                .bind(&grant.id)
                .bind(grant.tenant_id.as_str())
                .bind(grant.client_id.as_str())
                .bind(&grant.consent_type)
                .bind(grant.principal_id.as_ref().map(ObjectId::to_string))
                .bind(&grant.resource_id)
                .bind(&grant.scope)
                .bind(fmt_ts(grant.created))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn update_permission_grant_scope(&mut self, id: &str, scope: &str) -> Result<(), StoreError> {
                q::query("UPDATE oauth2_permission_grants SET scope = $2 WHERE id = $1")
                    .bind(id)
                    .bind(scope)
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn delete_permission_grant(&mut self, tenant: &ObjectId, id: &str) -> Result<bool, StoreError> {
                let done = q::query("DELETE FROM oauth2_permission_grants WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&mut *self.0)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn get_permission_grant(
                &mut self,
                tenant: &ObjectId,
                id: &str,
            ) -> Result<Option<PermissionGrant>, StoreError> {
                self.one_by_key(
                    concat!(select_grants!(), " WHERE tenant_id = $1 AND id = $2"),
                    tenant,
                    id.to_owned(),
                    Self::permission_grant_from_row,
                )
                .await
            }

            async fn permission_grants_for(
                &mut self,
                tenant: &ObjectId,
                client: &ObjectId,
                principal: Option<&ObjectId>,
            ) -> Result<Vec<PermissionGrant>, StoreError> {
                // Each half spells out the unique key `oauth2_permission_grants_key` (tenant,
                // client, consent type, `COALESCE(principal_id, '')`), so each is one index
                // lookup whatever the planner's statistics say (as one `WHERE … OR …`, SQLite
                // without statistics walked every grant of the client). An `AllPrincipals` grant
                // has no principal; a `Principal` grant always has one.
                let rows = q::query(concat!(
                    select_grants!(),
                    " WHERE tenant_id = $1 AND client_id = $2 AND consent_type = 'AllPrincipals' AND ",
                    "COALESCE(principal_id, '') = '' UNION ALL ",
                    select_grants!(),
                    " WHERE tenant_id = $1 AND client_id = $2 AND consent_type = 'Principal' AND ",
                    "COALESCE(principal_id, '') = $3 ORDER BY id"
                ))
                .bind(tenant.as_str())
                .bind(client.as_str())
                .bind(principal.map_or("", ObjectId::as_str))
                .fetch_all(&mut *self.0)
                .await?;
                rows.iter().map(Self::permission_grant_from_row).collect()
            }

            async fn list_permission_grants(
                &mut self,
                tenant: &ObjectId,
                filter: &keyward_core::consent::GrantFilter,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<PermissionGrant>, StoreError> {
                // A client's grants come in id order from `oauth2_permission_grants_client`
                // (schema 37), so a page of a client with many users reads only that page.
                let mut sql = Sql::new(concat!(select_grants!(), " WHERE tenant_id = "));
                sql.arg(Arg::Text(tenant.to_string()));
                let equal = [
                    ("client_id", &filter.client_id),
                    ("consent_type", &filter.consent_type),
                    ("principal_id", &filter.principal_id),
                    ("resource_id", &filter.resource_id),
                ];
                for (column, value) in equal {
                    if let Some(value) = value {
                        sql.push(&format!(" AND {column} = "));
                        sql.arg(Arg::Text(value.clone()));
                    }
                }
                if let Some(after) = after {
                    sql.push(" AND id > ");
                    sql.arg(Arg::Text(after.to_owned()));
                }
                sql.push(&format!(" ORDER BY id{}", crate::sql::limit_clause(limit)));
                let rows = bind_args!(q::query(q::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                rows.iter().map(Self::permission_grant_from_row).collect()
            }

            async fn user_consent_policies(&mut self, tenant: &ObjectId) -> Result<Option<Vec<String>>, StoreError> {
                let text: Option<String> = q::query_scalar(concat!(
                    "SELECT permission_grant_policies FROM authorization_policies WHERE ",
                    "tenant_id = $1"
                ))
                .bind(tenant.as_str())
                .fetch_optional(&mut *self.0)
                .await?;
                Ok(text.map(|it| crate::backend::oauth::split_uris(&it)))
            }

            async fn set_user_consent_policies(
                &mut self,
                tenant: &ObjectId,
                policies: &[String],
            ) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO authorization_policies (tenant_id, ",
                    "permission_grant_policies) VALUES ($1, $2) ON CONFLICT (tenant_id) DO ",
                    "UPDATE SET permission_grant_policies = ",
                    "excluded.permission_grant_policies"
                ))
                .bind(tenant.as_str())
                .bind(crate::backend::oauth::join_uris(policies))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn redeem_device_code(&mut self, device_sha256: &[u8]) -> Result<bool, StoreError> {
                let done = q::query(concat!(
                    "UPDATE device_codes SET status = 'redeemed' WHERE device_sha256 = $1 ",
                    "AND status = 'approved'"
                ))
                .bind(device_sha256)
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}
