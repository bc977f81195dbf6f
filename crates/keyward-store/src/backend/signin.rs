//! The sign-in half of the SQLite and PostgreSQL stores (`SignInStore`), generated for both from
//! one body like the rest of `backend/`.

/// The upsert of a user's sign-in activity, written once: each slot takes the newer sign-in
/// (times are fixed-width text), so one committed after a later one does not go back in time.
pub(super) static ACTIVITY_UPSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let newer = ["last_sign_in", "last_non_interactive", "last_success"]
        .iter()
        .flat_map(|slot| {
            let is_newer = format!(
                "excluded.{slot}_at IS NOT NULL AND (user_sign_in_activity.{slot}_at IS NULL \
                 OR excluded.{slot}_at > user_sign_in_activity.{slot}_at)"
            );
            ["at", "id"].map(|part| {
                format!(
                    "{slot}_{part} = CASE WHEN {is_newer} THEN excluded.{slot}_{part} \
                     ELSE user_sign_in_activity.{slot}_{part} END"
                )
            })
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        concat!(
            "INSERT INTO user_sign_in_activity (user_id, tenant_id, last_sign_in_at, last_sign_in_id, ",
            "last_non_interactive_at, last_non_interactive_id, last_success_at, last_success_id) ",
            "SELECT id, tenant_id, $2, $3, $4, $5, $6, $7 FROM users WHERE id = $1 ",
            "ON CONFLICT (user_id) DO UPDATE SET {newer}"
        ),
        newer = newer
    )
});

/// `INSERT INTO sign_ins` with `entries` rows of nine parameters each, numbered as `dialect`
/// numbers them (`?n` on SQLite, which the driver on the calling thread binds by number without
/// looking each name up).
pub(super) fn sign_ins_insert(dialect: super::Dialect, entries: usize) -> String {
    let rows: Vec<String> = (0..entries)
        .map(|n| {
            let params: Vec<String> = (1..=9).map(|it| dialect.param(n * 9 + it)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        concat!(
            "INSERT INTO sign_ins (id, tenant_id, created_at, user_id, upn_lc, app_id, error_code, record, ",
            "event_type) VALUES {}"
        ),
        rows.join(", ")
    )
}

/// A sign-in record from a row that selected `sign_in_json::STORED_COLUMNS` from column `$at` on
/// (a macro: the rows of each database's driver and of the SQLite write connection differ).
macro_rules! sign_in_stored {
    ($row:expr, $at:expr) => {
        sign_in_json::from_stored(sign_in_json::Stored {
            id: $row.try_get($at)?,
            tenant_id: $row.try_get($at + 1)?,
            created_at: $row.try_get($at + 2)?,
            user_id: $row.try_get($at + 3)?,
            error_code: $row.try_get($at + 4)?,
            record: $row.try_get($at + 5)?,
        })?
    };
}

macro_rules! impl_sign_in_store {
    ($tx:ident, $db:ty) => {
        impl $tx {
            /// The user's signInActivity after `record` (none for an application's sign-in).
            async fn record_activity(&mut self, record: &SignInRecord) -> Result<(), StoreError> {
                if let Some(user) = &record.user_id {
                    let activity = SignInActivity::of(record);
                    let at = |slot: &Option<(OffsetDateTime, String)>| slot.as_ref().map(|(at, _)| fmt_ts(*at));
                    let id = |slot: &Option<(OffsetDateTime, String)>| slot.as_ref().map(|(_, id)| id.clone());
                    q::query(q::AssertSqlSafe(ACTIVITY_UPSERT.as_str()))
                        .bind(user.as_str())
                        .bind(at(&activity.last_sign_in))
                        .bind(id(&activity.last_sign_in))
                        .bind(at(&activity.last_non_interactive))
                        .bind(id(&activity.last_non_interactive))
                        .bind(at(&activity.last_success))
                        .bind(id(&activity.last_success))
                        .execute(&mut *self.0)
                        .await?;
                }
                Ok(())
            }

            async fn read_sign_in_state(&mut self, user: &ObjectId, lock: bool) -> Result<UserSignInState, StoreError> {
                let suffix = if lock && DIALECT.row_locks { " FOR UPDATE" } else { "" };
                let sql = format!(
                    concat!(
                        "SELECT per_user_mfa_state, remembered_devices_not_before, ",
                        "password_failures, password_lockouts, password_locked_until, ",
                        "code_failures, code_lockouts, code_locked_until, preferred_secondary_method, ",
                        "system_preferred_enabled, campaign_snoozes, campaign_snoozed_until FROM user_sign_in_state ",
                        "WHERE user_id = $1{suffix}"
                    ),
                    suffix = suffix
                );
                let row = q::query(q::AssertSqlSafe(sql)).bind(user.as_str()).fetch_optional(&mut *self.0).await?;
                let Some(row) = row else { return Ok(UserSignInState::default()) };
                let state: String = row.try_get(0)?;
                Ok(UserSignInState {
                    per_user_mfa: PerUserMfaState::parse(&state)
                        .ok_or_else(|| StoreError::Other(format!("corrupt per-user MFA state '{state}'")))?,
                    remembered_devices_not_before: opt_ts(row.try_get(1)?)?,
                    password: Lockout {
                        failures: row.try_get(2)?,
                        lockouts: row.try_get(3)?,
                        locked_until: opt_ts(row.try_get(4)?)?,
                    },
                    code: Lockout {
                        failures: row.try_get(5)?,
                        lockouts: row.try_get(6)?,
                        locked_until: opt_ts(row.try_get(7)?)?,
                    },
                    preferences: SignInPreferences {
                        preferred: row
                            .try_get::<Option<String>, _>(8)?
                            .map(|it| {
                                SecondaryMethod::parse(&it)
                                    .ok_or_else(|| StoreError::Other(format!("corrupt preferred method '{it}'")))
                            })
                            .transpose()?,
                        is_system_preferred: row.try_get(9)?,
                    },
                    campaign: CampaignSnooze { count: row.try_get(10)?, until: opt_ts(row.try_get(11)?)? },
                })
            }

            fn session_from_row(row: &DbRow) -> Result<BrowserSession, StoreError> {
                Ok(BrowserSession {
                    id_sha256: row.try_get("id_sha256")?,
                    tenant_id: oid(&row.try_get::<String, _>("tenant_id")?)?,
                    user_id: row.try_get::<Option<String>, _>("user_id")?.as_deref().map(oid).transpose()?,
                    stage: Stage::parse(&row.try_get::<String, _>("stage")?),
                    username: row.try_get("username")?,
                    return_to: row.try_get("return_to")?,
                    created: parse_ts(&row.try_get::<String, _>("created_at")?)?,
                    expires_at: parse_ts(&row.try_get::<String, _>("expires_at")?)?,
                    authenticated_at: opt_ts(row.try_get("authenticated_at")?)?,
                    mfa_at: opt_ts(row.try_get("mfa_at")?)?,
                    methods: Amr::parse(&row.try_get::<String, _>("methods")?),
                    pass_expires_at: opt_ts(row.try_get("pass_expires_at")?)?,
                    pending_secret: row.try_get("pending_secret")?,
                    correlation_id: row.try_get("correlation_id")?,
                    portal_seen_at: opt_ts(row.try_get("portal_seen_at")?)?,
                })
            }

            fn fido2_from_row(row: &DbRow) -> Result<Fido2Method, StoreError> {
                Ok(Fido2Method {
                    id: oid(&row.try_get::<String, _>("id")?)?,
                    tenant_id: oid(&row.try_get::<String, _>("tenant_id")?)?,
                    user_id: oid(&row.try_get::<String, _>("user_id")?)?,
                    display_name: row.try_get("display_name")?,
                    credential_id: row.try_get("credential_id")?,
                    cose_key: row.try_get("cose_key")?,
                    aaguid: row.try_get("aaguid")?,
                    sign_count: row.try_get("sign_count")?,
                    backup_eligible: row.try_get("backup_eligible")?,
                    backed_up: row.try_get("backed_up")?,
                    attestation_level: row.try_get("attestation_level")?,
                    created: parse_ts(&row.try_get::<String, _>("created_at")?)?,
                })
            }
        }

        #[async_trait]
        impl SignInStore for $tx {
            async fn sign_in_policy(&mut self, tenant: &ObjectId) -> Result<(SignInPolicy, TapPolicy), StoreError> {
                let row = q::query(concat!(
                    "SELECT mfa_for_privileged_roles, mfa_for_everyone, remember_mfa_days, ",
                    "lockout_threshold, lockout_seconds, code_attempt_limit, tap_enabled, ",
                    "tap_default_lifetime, tap_default_length, tap_minimum_lifetime, ",
                    "tap_maximum_lifetime, tap_usable_once FROM sign_in_policies WHERE ",
                    "tenant_id = $1"
                ))
                .bind(tenant.as_str())
                .fetch_optional(&mut *self.0)
                .await?;
                let Some(row) = row else { return Ok((SignInPolicy::default(), TapPolicy::default())) };
                Ok((
                    SignInPolicy {
                        mfa_for_privileged_roles: row.try_get(0)?,
                        mfa_for_everyone: row.try_get(1)?,
                        remember_mfa_days: row.try_get(2)?,
                        lockout_threshold: row.try_get(3)?,
                        lockout_seconds: row.try_get(4)?,
                        code_attempt_limit: row.try_get(5)?,
                    },
                    TapPolicy {
                        is_enabled: row.try_get(6)?,
                        default_lifetime_minutes: row.try_get(7)?,
                        default_length: row.try_get(8)?,
                        minimum_lifetime_minutes: row.try_get(9)?,
                        maximum_lifetime_minutes: row.try_get(10)?,
                        is_usable_once: row.try_get(11)?,
                    },
                ))
            }

            async fn set_sign_in_policy(
                &mut self,
                tenant: &ObjectId,
                policy: &SignInPolicy,
                tap: &TapPolicy,
            ) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO sign_in_policies (tenant_id, mfa_for_privileged_roles, ",
                    "mfa_for_everyone, remember_mfa_days, lockout_threshold, ",
                    "lockout_seconds, code_attempt_limit, tap_enabled, tap_default_lifetime, ",
                    "tap_default_length, tap_minimum_lifetime, tap_maximum_lifetime, ",
                    "tap_usable_once) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, ",
                    "$12, $13) ON CONFLICT (tenant_id) DO UPDATE SET ",
                    "mfa_for_privileged_roles = excluded.mfa_for_privileged_roles, ",
                    "mfa_for_everyone = excluded.mfa_for_everyone, remember_mfa_days = ",
                    "excluded.remember_mfa_days, lockout_threshold = ",
                    "excluded.lockout_threshold, lockout_seconds = excluded.lockout_seconds, ",
                    "code_attempt_limit = excluded.code_attempt_limit, tap_enabled = ",
                    "excluded.tap_enabled, tap_default_lifetime = ",
                    "excluded.tap_default_lifetime, tap_default_length = ",
                    "excluded.tap_default_length, tap_minimum_lifetime = ",
                    "excluded.tap_minimum_lifetime, tap_maximum_lifetime = ",
                    "excluded.tap_maximum_lifetime, tap_usable_once = ",
                    "excluded.tap_usable_once"
                ))
                .bind(tenant.as_str())
                .bind(policy.mfa_for_privileged_roles)
                .bind(policy.mfa_for_everyone)
                .bind(policy.remember_mfa_days)
                .bind(policy.lockout_threshold)
                .bind(policy.lockout_seconds)
                .bind(policy.code_attempt_limit)
                .bind(tap.is_enabled)
                .bind(tap.default_lifetime_minutes)
                .bind(tap.default_length)
                .bind(tap.minimum_lifetime_minutes)
                .bind(tap.maximum_lifetime_minutes)
                .bind(tap.is_usable_once)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn methods_policy(&mut self, tenant: &ObjectId) -> Result<MethodsPolicy, StoreError> {
                let row: Option<String> =
                    q::query_scalar("SELECT policy FROM authentication_methods_policies WHERE tenant_id = $1")
                        .bind(tenant.as_str())
                        .fetch_optional(&mut *self.0)
                        .await?;
                row.as_deref().map_or_else(|| Ok(MethodsPolicy::default()), crate::methods_policy_json::decode)
            }

            async fn lock_policy_changes(&mut self, tenant: &ObjectId) -> Result<(), StoreError> {
                self.advisory_lock(format!("keyward-policies-{tenant}")).await?;
                Ok(())
            }

            async fn agent_limits(&mut self, tenant: &ObjectId) -> Result<AgentLimits, StoreError> {
                Ok(self.desk_policies(tenant).await?.agent_limits)
            }

            async fn set_agent_limits(&mut self, tenant: &ObjectId, limits: &AgentLimits) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO agent_limits (tenant_id, passes_per_hour, password_resets_per_hour, ",
                    "mfa_resets_per_hour) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET ",
                    "passes_per_hour = excluded.passes_per_hour, password_resets_per_hour = ",
                    "excluded.password_resets_per_hour, mfa_resets_per_hour = excluded.mfa_resets_per_hour"
                ))
                .bind(tenant.as_str())
                .bind(limits.passes_per_hour)
                .bind(limits.password_resets_per_hour)
                .bind(limits.mfa_resets_per_hour)
                .execute(&mut *self.0)
                .await?;
                self.4 = None;
                Ok(())
            }

            async fn count_agent_actions(
                &mut self,
                tenant: &ObjectId,
                agent: &str,
                action: &str,
                since: OffsetDateTime,
            ) -> Result<i64, StoreError> {
                self.advisory_lock(format!("keyward-agent-{tenant}-{agent}")).await?;
                let count: i64 = q::query_scalar(concat!(
                    "SELECT COUNT(*) FROM agent_actions WHERE tenant_id = $1 AND agent_id = $2 AND action = $3 ",
                    "AND at >= $4"
                ))
                .bind(tenant.as_str())
                .bind(agent)
                .bind(action)
                .bind(fmt_ts(since))
                .fetch_one(&mut *self.0)
                .await?;
                Ok(count)
            }

            async fn record_agent_action(
                &mut self,
                tenant: &ObjectId,
                agent: &str,
                action: &str,
                at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                q::query("DELETE FROM agent_actions WHERE tenant_id = $1 AND agent_id = $2 AND at < $3")
                    .bind(tenant.as_str())
                    .bind(agent)
                    .bind(fmt_ts(at - time::Duration::hours(1)))
                    .execute(&mut *self.0)
                    .await?;
                q::query("INSERT INTO agent_actions (tenant_id, agent_id, action, at) VALUES ($1, $2, $3, $4)")
                    .bind(tenant.as_str())
                    .bind(agent)
                    .bind(action)
                    .bind(fmt_ts(at))
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn set_methods_policy(
                &mut self,
                tenant: &ObjectId,
                policy: &MethodsPolicy,
            ) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO authentication_methods_policies (tenant_id, policy) VALUES ($1, $2) ",
                    "ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy"
                ))
                .bind(tenant.as_str())
                .bind(crate::methods_policy_json::encode(policy)?)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn user_sign_in_state(&mut self, user: &ObjectId) -> Result<UserSignInState, StoreError> {
                self.read_sign_in_state(user, false).await
            }

            async fn lock_user_sign_in_state(&mut self, user: &ObjectId) -> Result<UserSignInState, StoreError> {
                // A row must exist to be locked: concurrent first failures would otherwise both read "none".
                q::query(concat!(
                    "INSERT INTO user_sign_in_state (user_id) VALUES ($1) ON CONFLICT ",
                    "(user_id) DO NOTHING"
                ))
                .bind(user.as_str())
                .execute(&mut *self.0)
                .await?;
                self.read_sign_in_state(user, true).await
            }

            async fn set_user_sign_in_state(
                &mut self,
                user: &ObjectId,
                state: &UserSignInState,
            ) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO user_sign_in_state (user_id, per_user_mfa_state, ",
                    "remembered_devices_not_before, password_failures, password_lockouts, ",
                    "password_locked_until, code_failures, code_lockouts, code_locked_until, ",
                    "preferred_secondary_method, system_preferred_enabled, campaign_snoozes, ",
                    "campaign_snoozed_until) ",
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (user_id) DO ",
                    "UPDATE SET per_user_mfa_state = excluded.per_user_mfa_state, ",
                    "remembered_devices_not_before = excluded.remembered_devices_not_before, ",
                    "password_failures = excluded.password_failures, password_lockouts = ",
                    "excluded.password_lockouts, password_locked_until = ",
                    "excluded.password_locked_until, code_failures = excluded.code_failures, ",
                    "code_lockouts = excluded.code_lockouts, code_locked_until = ",
                    "excluded.code_locked_until, preferred_secondary_method = ",
                    "excluded.preferred_secondary_method, system_preferred_enabled = ",
                    "excluded.system_preferred_enabled, campaign_snoozes = excluded.campaign_snoozes, ",
                    "campaign_snoozed_until = excluded.campaign_snoozed_until"
                ))
                .bind(user.as_str())
                .bind(state.per_user_mfa.as_str())
                .bind(state.remembered_devices_not_before.map(fmt_ts))
                .bind(state.password.failures)
                .bind(state.password.lockouts)
                .bind(state.password.locked_until.map(fmt_ts))
                .bind(state.code.failures)
                .bind(state.code.lockouts)
                .bind(state.code.locked_until.map(fmt_ts))
                .bind(state.preferences.preferred.map(SecondaryMethod::as_str))
                .bind(state.preferences.is_system_preferred)
                .bind(state.campaign.count)
                .bind(state.campaign.until.map(fmt_ts))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn list_software_oath_methods(
                &mut self,
                user: &ObjectId,
            ) -> Result<Vec<SoftwareOathMethod>, StoreError> {
                let rows = q::query(concat!(
                    "SELECT id, user_id, sealed_secret, created_at, last_used_step FROM ",
                    "software_oath_methods WHERE user_id = $1 ORDER BY created_at, id"
                ))
                .bind(user.as_str())
                .fetch_all(&mut *self.0)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(SoftwareOathMethod {
                            id: oid(&row.try_get::<String, _>(0)?)?,
                            user_id: oid(&row.try_get::<String, _>(1)?)?,
                            sealed_secret: row.try_get(2)?,
                            created: parse_ts(&row.try_get::<String, _>(3)?)?,
                            last_used_step: row.try_get(4)?,
                        })
                    })
                    .collect()
            }

            async fn list_fido2_methods(&mut self, user: &ObjectId) -> Result<Vec<Fido2Method>, StoreError> {
                let rows = q::query(concat!(
                    "SELECT id, tenant_id, user_id, display_name, credential_id, cose_key, aaguid, ",
                    "sign_count, backup_eligible, backed_up, attestation_level, created_at ",
                    "FROM fido2_methods WHERE user_id = $1 ORDER BY created_at, id"
                ))
                .bind(user.as_str())
                .fetch_all(&mut *self.0)
                .await?;
                rows.iter().map(Self::fido2_from_row).collect()
            }

            async fn find_fido2_method(&mut self, credential_id: &[u8]) -> Result<Option<Fido2Method>, StoreError> {
                let row = q::query(concat!(
                    "SELECT id, tenant_id, user_id, display_name, credential_id, cose_key, aaguid, ",
                    "sign_count, backup_eligible, backed_up, attestation_level, created_at ",
                    "FROM fido2_methods WHERE credential_id = $1"
                ))
                .bind(credential_id)
                .fetch_optional(&mut *self.0)
                .await?;
                row.as_ref().map(Self::fido2_from_row).transpose()
            }

            async fn use_fido2_method(
                &mut self,
                id: &ObjectId,
                seen_count: i64,
                new_count: i64,
                backed_up: bool,
            ) -> Result<bool, StoreError> {
                let done = q::query(
                    "UPDATE fido2_methods SET sign_count = $1, backed_up = $2 WHERE id = $3 AND sign_count = $4",
                )
                .bind(new_count)
                .bind(backed_up)
                .bind(id.as_str())
                .bind(seen_count)
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_fido2_method(&mut self, method: &Fido2Method) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO fido2_methods (id, tenant_id, user_id, display_name, credential_id, ",
                    "cose_key, aaguid, sign_count, backup_eligible, backed_up, attestation_level, ",
                    "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ))
                .bind(method.id.as_str())
                .bind(method.tenant_id.as_str())
                .bind(method.user_id.as_str())
                .bind(&method.display_name)
                .bind(&method.credential_id)
                .bind(&method.cose_key)
                .bind(&method.aaguid)
                .bind(method.sign_count)
                .bind(method.backup_eligible)
                .bind(method.backed_up)
                .bind(&method.attestation_level)
                .bind(fmt_ts(method.created))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn delete_fido2_method(&mut self, user: &ObjectId, id: &ObjectId) -> Result<bool, StoreError> {
                let done = q::query("DELETE FROM fido2_methods WHERE user_id = $1 AND id = $2")
                    .bind(user.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn put_webauthn_challenge(
                &mut self,
                challenge_sha256: &[u8],
                challenge: &WebauthnChallenge,
            ) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO webauthn_challenges (challenge_sha256, tenant_id, user_id, purpose, ",
                    "expires_at) VALUES ($1, $2, $3, $4, $5)"
                ))
                .bind(challenge_sha256)
                .bind(challenge.tenant_id.as_str())
                .bind(challenge.user_id.as_ref().map(ObjectId::as_str))
                .bind(&challenge.purpose)
                .bind(fmt_ts(challenge.expires_at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn take_webauthn_challenge(
                &mut self,
                challenge_sha256: &[u8],
                purpose: &str,
            ) -> Result<Option<WebauthnChallenge>, StoreError> {
                let row = q::query(concat!(
                    "DELETE FROM webauthn_challenges WHERE challenge_sha256 = $1 AND purpose = $2 ",
                    "RETURNING tenant_id, user_id, purpose, expires_at"
                ))
                .bind(challenge_sha256)
                .bind(purpose)
                .fetch_optional(&mut *self.0)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(WebauthnChallenge {
                    tenant_id: oid(&row.try_get::<String, _>("tenant_id")?)?,
                    user_id: row.try_get::<Option<String>, _>("user_id")?.as_deref().map(oid).transpose()?,
                    purpose: row.try_get("purpose")?,
                    expires_at: parse_ts(&row.try_get::<String, _>("expires_at")?)?,
                }))
            }

            async fn delete_expired_webauthn_challenges(&mut self, now: OffsetDateTime) -> Result<u64, StoreError> {
                let done = q::query("DELETE FROM webauthn_challenges WHERE expires_at < $1")
                    .bind(fmt_ts(now))
                    .execute(&mut *self.0)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn insert_software_oath_method(&mut self, method: &SoftwareOathMethod) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO software_oath_methods (id, user_id, sealed_secret, ",
                    "created_at, last_used_step) VALUES ($1, $2, $3, $4, $5)"
                ))
                .bind(method.id.as_str())
                .bind(method.user_id.as_str())
                .bind(&method.sealed_secret)
                .bind(fmt_ts(method.created))
                .bind(method.last_used_step)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn use_software_oath_step(&mut self, id: &ObjectId, step: i64) -> Result<bool, StoreError> {
                let done = q::query(concat!(
                    "UPDATE software_oath_methods SET last_used_step = $2 WHERE id = $1 AND ",
                    "last_used_step < $2"
                ))
                .bind(id.as_str())
                .bind(step)
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_software_oath_methods(
                &mut self,
                user: &ObjectId,
                id: Option<&ObjectId>,
            ) -> Result<u64, StoreError> {
                let done = match id {
                    Some(id) => {
                        q::query("DELETE FROM software_oath_methods WHERE user_id = $1 AND id = $2")
                            .bind(user.as_str())
                            .bind(id.as_str())
                            .execute(&mut *self.0)
                            .await?
                    }
                    None => {
                        q::query("DELETE FROM software_oath_methods WHERE user_id = $1")
                            .bind(user.as_str())
                            .execute(&mut *self.0)
                            .await?
                    }
                };
                if id.is_some() && done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(done.rows_affected())
            }

            async fn delete_temporary_access_pass(
                &mut self,
                user: &ObjectId,
                id: Option<&ObjectId>,
            ) -> Result<bool, StoreError> {
                let done = match id {
                    Some(id) => {
                        q::query("DELETE FROM temporary_access_passes WHERE user_id = $1 AND id = $2")
                            .bind(user.as_str())
                            .bind(id.as_str())
                            .execute(&mut *self.0)
                            .await?
                    }
                    None => {
                        q::query("DELETE FROM temporary_access_passes WHERE user_id = $1")
                            .bind(user.as_str())
                            .execute(&mut *self.0)
                            .await?
                    }
                };
                Ok(done.rows_affected() > 0)
            }

            async fn list_phone_methods(&mut self, user: &ObjectId) -> Result<Vec<(String, String)>, StoreError> {
                let rows = q::query(concat!(
                    "SELECT phone_type, phone_number FROM phone_methods WHERE user_id = $1 ",
                    "ORDER BY phone_type"
                ))
                .bind(user.as_str())
                .fetch_all(&mut *self.0)
                .await?;
                rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
            }

            async fn put_phone_method(
                &mut self,
                user: &ObjectId,
                phone_type: &str,
                number: &str,
                at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO phone_methods (user_id, phone_type, phone_number, ",
                    "created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, phone_type) ",
                    "DO UPDATE SET phone_number = excluded.phone_number"
                ))
                .bind(user.as_str())
                .bind(phone_type)
                .bind(number)
                .bind(fmt_ts(at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn delete_phone_method(&mut self, user: &ObjectId, phone_type: &str) -> Result<bool, StoreError> {
                let done = q::query("DELETE FROM phone_methods WHERE user_id = $1 AND phone_type = $2")
                    .bind(user.as_str())
                    .bind(phone_type)
                    .execute(&mut *self.0)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_phone_methods(&mut self, user: &ObjectId) -> Result<Vec<String>, StoreError> {
                let mut kinds: Vec<String> =
                    q::query_scalar("DELETE FROM phone_methods WHERE user_id = $1 RETURNING phone_type")
                        .bind(user.as_str())
                        .fetch_all(&mut *self.0)
                        .await?;
                kinds.sort();
                Ok(kinds)
            }

            async fn get_email_method(&mut self, user: &ObjectId) -> Result<Option<String>, StoreError> {
                q::query_scalar("SELECT email_address FROM email_methods WHERE user_id = $1")
                    .bind(user.as_str())
                    .fetch_optional(&mut *self.0)
                    .await
                    .map_err(db)
            }

            async fn put_email_method(
                &mut self,
                user: &ObjectId,
                address: &str,
                at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO email_methods (user_id, email_address, created_at) VALUES ",
                    "($1, $2, $3) ON CONFLICT (user_id) DO UPDATE SET email_address = ",
                    "excluded.email_address"
                ))
                .bind(user.as_str())
                .bind(address)
                .bind(fmt_ts(at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn delete_email_method(&mut self, user: &ObjectId) -> Result<bool, StoreError> {
                let done = q::query("DELETE FROM email_methods WHERE user_id = $1")
                    .bind(user.as_str())
                    .execute(&mut *self.0)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn insert_reset_operation(
                &mut self,
                tenant: &ObjectId,
                user: &ObjectId,
                id: &ObjectId,
                status: &str,
                at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO password_reset_operations (id, tenant_id, user_id, status, ",
                    "created_at) VALUES ($1, $2, $3, $4, $5)"
                ))
                .bind(id.as_str())
                .bind(tenant.as_str())
                .bind(user.as_str())
                .bind(status)
                .bind(fmt_ts(at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn get_reset_operation(
                &mut self,
                user: &ObjectId,
                id: &ObjectId,
            ) -> Result<Option<(String, OffsetDateTime)>, StoreError> {
                let row = q::query(concat!(
                    "SELECT status, created_at FROM password_reset_operations WHERE user_id ",
                    "= $1 AND id = $2"
                ))
                .bind(user.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *self.0)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some((row.try_get(0)?, parse_ts(&row.try_get::<String, _>(1)?)?)))
            }

            async fn spend_registration_pass(&mut self, user: &ObjectId, at: OffsetDateTime) -> Result<(), StoreError> {
                q::query(concat!(
                    "UPDATE temporary_access_passes SET is_usable_once = TRUE, used_at = $2 ",
                    "WHERE user_id = $1 AND ends_at_registration AND used_at IS NULL"
                ))
                .bind(user.as_str())
                .bind(fmt_ts(at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn use_temporary_access_pass(
                &mut self,
                id: &ObjectId,
                at: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let done = q::query(concat!(
                    "UPDATE temporary_access_passes SET used_at = $2 WHERE id = $1 AND ",
                    "used_at IS NULL"
                ))
                .bind(id.as_str())
                .bind(fmt_ts(at))
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_browser_session(&mut self, session: &BrowserSession) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO browser_sessions (id_sha256, tenant_id, user_id, stage, ",
                    "username, return_to, created_at, expires_at, authenticated_at, mfa_at, ",
                    "methods, pass_expires_at, pending_secret, correlation_id) VALUES ($1, ",
                    "$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                ))
                .bind(&session.id_sha256)
                .bind(session.tenant_id.as_str())
                .bind(session.user_id.as_ref().map(ObjectId::to_string))
                .bind(session.stage.as_str())
                .bind(&session.username)
                .bind(&session.return_to)
                .bind(fmt_ts(session.created))
                .bind(fmt_ts(session.expires_at))
                .bind(session.authenticated_at.map(fmt_ts))
                .bind(session.mfa_at.map(fmt_ts))
                .bind(session.methods.to_stored())
                .bind(session.pass_expires_at.map(fmt_ts))
                .bind(&session.pending_secret)
                .bind(&session.correlation_id)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn get_browser_session(&mut self, id_sha256: &[u8]) -> Result<Option<BrowserSession>, StoreError> {
                let row = q::query(concat!(
                    "SELECT id_sha256, tenant_id, user_id, stage, username, return_to, ",
                    "created_at, expires_at, authenticated_at, mfa_at, methods, ",
                    "pass_expires_at, pending_secret, correlation_id, portal_seen_at FROM ",
                    "browser_sessions WHERE id_sha256 = $1"
                ))
                .bind(id_sha256)
                .fetch_optional(&mut *self.0)
                .await?;
                row.as_ref().map(Self::session_from_row).transpose()
            }

            async fn update_browser_session(&mut self, session: &BrowserSession) -> Result<(), StoreError> {
                let done = q::query(concat!(
                    "UPDATE browser_sessions SET user_id = $2, stage = $3, username = $4, ",
                    "return_to = $5, expires_at = $6, authenticated_at = $7, mfa_at = $8, ",
                    "methods = $9, pass_expires_at = $10, pending_secret = $11, ",
                    "correlation_id = $12, created_at = CASE WHEN created_at > $13 THEN created_at ",
                    "ELSE $13 END WHERE id_sha256 = $1"
                ))
                .bind(&session.id_sha256)
                .bind(session.user_id.as_ref().map(ObjectId::to_string))
                .bind(session.stage.as_str())
                .bind(&session.username)
                .bind(&session.return_to)
                .bind(fmt_ts(session.expires_at))
                .bind(session.authenticated_at.map(fmt_ts))
                .bind(session.mfa_at.map(fmt_ts))
                .bind(session.methods.to_stored())
                .bind(session.pass_expires_at.map(fmt_ts))
                .bind(&session.pending_secret)
                .bind(&session.correlation_id)
                .bind(fmt_ts(session.created))
                .execute(&mut *self.0)
                .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn touch_portal_session(&mut self, id_sha256: &[u8], at: OffsetDateTime) -> Result<(), StoreError> {
                q::query(concat!(
                    "UPDATE browser_sessions SET portal_seen_at = $2 WHERE id_sha256 = $1 AND ",
                    "(portal_seen_at IS NULL OR portal_seen_at < $2)"
                ))
                .bind(id_sha256)
                .bind(fmt_ts(at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn delete_browser_session(&mut self, id_sha256: &[u8]) -> Result<(), StoreError> {
                q::query("DELETE FROM browser_sessions WHERE id_sha256 = $1")
                    .bind(id_sha256)
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn rekey_browser_session(&mut self, old_sha256: &[u8], new_sha256: &[u8]) -> Result<(), StoreError> {
                let done = q::query("UPDATE browser_sessions SET id_sha256 = $2 WHERE id_sha256 = $1")
                    .bind(old_sha256)
                    .bind(new_sha256)
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn take_pending_secret(&mut self, id_sha256: &[u8]) -> Result<bool, StoreError> {
                let done = q::query(concat!(
                    "UPDATE browser_sessions SET pending_secret = NULL WHERE id_sha256 = $1 ",
                    "AND pending_secret IS NOT NULL"
                ))
                .bind(id_sha256)
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_expired_browser_sessions(&mut self, now: OffsetDateTime) -> Result<u64, StoreError> {
                let done = q::query("DELETE FROM browser_sessions WHERE expires_at < $1")
                    .bind(fmt_ts(now))
                    .execute(&mut *self.0)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn insert_remembered_device(
                &mut self,
                id_sha256: &[u8],
                device: &RememberedDevice,
            ) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO remembered_devices (id_sha256, user_id, issued_at, ",
                    "expires_at) VALUES ($1, $2, $3, $4)"
                ))
                .bind(id_sha256)
                .bind(device.user_id.as_str())
                .bind(fmt_ts(device.issued_at))
                .bind(fmt_ts(device.expires_at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn get_remembered_device(
                &mut self,
                id_sha256: &[u8],
            ) -> Result<Option<RememberedDevice>, StoreError> {
                let row = q::query(concat!(
                    "SELECT user_id, issued_at, expires_at FROM remembered_devices WHERE ",
                    "id_sha256 = $1"
                ))
                .bind(id_sha256)
                .fetch_optional(&mut *self.0)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(RememberedDevice {
                    user_id: oid(&row.try_get::<String, _>(0)?)?,
                    issued_at: parse_ts(&row.try_get::<String, _>(1)?)?,
                    expires_at: parse_ts(&row.try_get::<String, _>(2)?)?,
                }))
            }

            async fn delete_remembered_devices(&mut self, user: &ObjectId) -> Result<(), StoreError> {
                q::query("DELETE FROM remembered_devices WHERE user_id = $1")
                    .bind(user.as_str())
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn insert_sign_in(&mut self, record: &SignInRecord) -> Result<(), StoreError> {
                self.insert_sign_ins(&[record]).await
            }

            async fn insert_sign_ins(&mut self, records: &[&SignInRecord]) -> Result<(), StoreError> {
                // Nine parameters an entry: 3,600 at most a statement, under both databases' limits.
                for chunk in records.chunks(if ONE_ROW_INSERTS { 1 } else { 400 }) {
                    // One text per batch size: kept out of the connection's statement cache
                    // unless it is the one-entry statement, which every lone entry reuses and
                    // which is built once (formatting it for each entry was 1.5% of the server's
                    // core for client credentials on SQLite, where every entry is a statement).
                    static ONE_ENTRY: std::sync::LazyLock<String> =
                        std::sync::LazyLock::new(|| sign_ins_insert(DIALECT, 1));
                    let mut query = if chunk.len() == 1 {
                        q::query(q::AssertSqlSafe(ONE_ENTRY.as_str()))
                    } else {
                        q::query(q::AssertSqlSafe(sign_ins_insert(DIALECT, chunk.len()))).persistent(false)
                    };
                    for record in chunk {
                        let row = sign_in_json::columns(record)?;
                        query = query
                            .bind(row.id)
                            .bind(row.tenant_id)
                            .bind(row.created_at)
                            .bind(row.user_id)
                            .bind(row.upn_lc)
                            .bind(row.app_id)
                            .bind(row.error_code)
                            .bind(row.record)
                            .bind(row.event_type);
                    }
                    query.execute(&mut *self.0).await?;
                }
                for record in records {
                    self.record_activity(record).await?;
                }
                Ok(())
            }
            async fn client_version(&mut self, tenant: &ObjectId) -> Result<i64, StoreError> {
                let version: Option<i64> = q::query_scalar(crate::backend::client_cache::CLIENT_VERSION)
                    .bind(tenant.as_str())
                    .fetch_optional(&mut *self.0)
                    .await?;
                Ok(version.unwrap_or(0))
            }

            async fn sign_in_activity(
                &mut self,
                users: &[ObjectId],
            ) -> Result<Vec<(ObjectId, SignInActivity)>, StoreError> {
                let mut found = Vec::new();
                for chunk in users.chunks(500) {
                    let mut sql = Sql::new(concat!(
                        "SELECT user_id, last_sign_in_at, last_sign_in_id, last_non_interactive_at, ",
                        "last_non_interactive_id, last_success_at, last_success_id FROM user_sign_in_activity ",
                        "WHERE user_id IN "
                    ));
                    push_list(&mut sql, chunk.iter().map(ToString::to_string));
                    let rows =
                        bind_args!(q::query(q::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                    for row in rows {
                        let slot = |at: usize| -> Result<Option<(OffsetDateTime, String)>, StoreError> {
                            let time: Option<String> = row.try_get(at)?;
                            let id: Option<String> = row.try_get(at + 1)?;
                            Ok(match (time, id) {
                                (Some(time), Some(id)) => Some((parse_ts(&time)?, id)),
                                _ => None,
                            })
                        };
                        let user: String = row.try_get(0)?;
                        let user = ObjectId::parse(&user).ok_or_else(|| {
                            StoreError::Other(format!("corrupt user id '{user}' in sign-in activity"))
                        })?;
                        found.push((
                            user,
                            SignInActivity {
                                last_sign_in: slot(1)?,
                                last_non_interactive: slot(3)?,
                                last_success: slot(5)?,
                            },
                        ));
                    }
                }
                Ok(found)
            }

            async fn query_sign_ins(
                &mut self,
                tenant: &ObjectId,
                filter: &SignInFilter,
                after: Option<&SignInCursor>,
                limit: usize,
            ) -> Result<Vec<(SignInCursor, SignInRecord)>, StoreError> {
                let mut sql = Sql::new(&format!(
                    "SELECT s.seq, {} FROM sign_ins s WHERE s.tenant_id = ",
                    sign_in_json::STORED_COLUMNS
                ));
                sql.arg(Arg::Text(tenant.to_string()));
                if let Some(user) = &filter.user_id {
                    sql.push(" AND s.user_id = ");
                    sql.arg(Arg::Text(user.clone()));
                }
                // `upn_lc <> ''`: the sign-in name index holds only entries that have one (schema
                // 34), and says so for the planner.
                match &filter.user_principal_name {
                    Some(TextMatch::Equals(upn)) => {
                        sql.push(" AND s.upn_lc <> '' AND s.upn_lc = ");
                        sql.arg(Arg::Text(upn.clone()));
                    }
                    Some(TextMatch::StartsWith(prefix)) => {
                        sql.push(" AND s.upn_lc <> '' AND s.upn_lc >= ");
                        sql.arg(Arg::Text(prefix.clone()));
                        sql.push(" AND s.upn_lc < ");
                        sql.arg(Arg::Text(format!("{prefix}\u{10FFFF}")));
                    }
                    None => (),
                }
                if let Some(app) = &filter.app_id {
                    sql.push(" AND s.app_id = ");
                    sql.arg(Arg::Text(app.clone()));
                }
                if let Some(code) = filter.error_code {
                    sql.push(" AND s.error_code = ");
                    sql.arg(Arg::Int(code));
                }
                match filter.is_success {
                    Some(true) => sql.push(" AND s.error_code = 0"),
                    Some(false) => sql.push(" AND s.error_code <> 0"),
                    None => (),
                }
                if let Some(from) = filter.from {
                    sql.push(" AND s.created_at >= ");
                    sql.arg(Arg::Text(fmt_ts(from)));
                }
                if let Some(until) = filter.until {
                    sql.push(" AND s.created_at <= ");
                    sql.arg(Arg::Text(fmt_ts(until)));
                }
                if let Some(id) = &filter.id {
                    sql.push(" AND s.id = ");
                    sql.arg(Arg::Text(id.clone()));
                }
                if filter.matches_nothing {
                    sql.push(" AND 1 = 0");
                }
                if filter.event_types.len() < SignInEventType::ALL.len() {
                    push_in(&mut sql, "s.event_type", filter.event_types.iter().map(|it| it.as_str().to_owned()));
                }
                // What no column holds is read from the record.
                for (field, value) in [
                    ("app_display_name", &filter.app_display_name),
                    ("ip_address", &filter.ip_address),
                    ("user_display_name", &filter.user_display_name),
                ] {
                    if let Some(text) = value {
                        push_json_text_match(&mut sql, &DIALECT.json_text_lc("s.record", field), text);
                    }
                }
                for (field, value) in
                    [("correlation_id", &filter.correlation_id), ("client_app_used", &filter.client_app_used)]
                {
                    if let Some(value) = value {
                        sql.push(&format!(" AND {} = ", DIALECT.json_text_lc("s.record", field)));
                        sql.arg(Arg::Text(value.clone()));
                    }
                }
                if let Some(is_multi_factor) = filter.is_multi_factor {
                    let expr = DIALECT.json_text_lc("s.record", "is_multi_factor");
                    // SQLite's json_extract reads JSON's true as 1.
                    let yes = if DIALECT.is_sqlite { "1" } else { "true" };
                    let op = if is_multi_factor { "=" } else { "<>" };
                    sql.push(&format!(" AND {expr} {op} '{yes}'"));
                }
                if let Some(cursor) = after {
                    sql.push(" AND (s.created_at, s.seq) < (");
                    sql.arg(Arg::Text(cursor.created.clone()));
                    sql.push(", ");
                    sql.arg(Arg::Int(cursor.seq));
                    sql.push(")");
                }
                sql.push(&format!(" ORDER BY s.created_at DESC, s.seq DESC{}", limit_clause(limit)));
                let rows = bind_args!(q::query(q::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                rows.iter()
                    .map(|row| {
                        let cursor = SignInCursor { created: row.try_get(3)?, seq: row.try_get(0)? };
                        Ok((cursor, sign_in_stored!(row, 1)))
                    })
                    .collect()
            }

            async fn delete_sign_ins_before(
                &mut self,
                tenant: &ObjectId,
                before: OffsetDateTime,
            ) -> Result<u64, StoreError> {
                let done = q::query("DELETE FROM sign_ins WHERE tenant_id = $1 AND created_at < $2")
                    .bind(tenant.as_str())
                    .bind(fmt_ts(before))
                    .execute(&mut *self.0)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn get_sign_in(&mut self, tenant: &ObjectId, id: &str) -> Result<Option<SignInRecord>, StoreError> {
                let sql = format!(
                    "SELECT {} FROM sign_ins s WHERE s.tenant_id = $1 AND s.id = $2",
                    sign_in_json::STORED_COLUMNS
                );
                let row =
                    q::query(q::AssertSqlSafe(sql)).bind(tenant.as_str()).bind(id).fetch_optional(&mut *self.0).await?;
                match row {
                    Some(row) => Ok(Some(sign_in_stored!(row, 0))),
                    None => Ok(None),
                }
            }
        }
    };
}
