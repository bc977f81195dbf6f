//! Dual control (`ServiceDeskStore`): the tenant's policy and the changes it holds for a second
//! administrator.
//!
//! `impl_service_desk_store!` is the same SQL for SQLite and PostgreSQL, expanded once per backend
//! in `backend/mod.rs`.

/// The columns a request is read from, in `decode_request`'s order.
macro_rules! service_desk_columns {
    () => {
        concat!(
            "id, tenant_id, requester_id, requester_is_app, requester_scopes, requester_ip, target_id, ",
            "operation, pass_start, pass_lifetime_minutes, pass_usable_once, method_kind, method_id, ",
            "secret_hash, justification, created_at, expires_at, status, decided_by, decided_at, ",
            "decision_note, correlation_id"
        )
    };
}

/// The columns a caller verification is read from, in `decode_verification`'s order.
macro_rules! verification_columns {
    () => {
        concat!(
            "id, tenant_id, agent_id, user_id, code_sha256, status, method, attested_by, attempts, created_at, ",
            "verified_at"
        )
    };
}

macro_rules! impl_service_desk_store {
    ($tx:ident, $db:ty) => {
        impl $tx {
            fn decode_request(row: &DbRow) -> Result<ServiceDeskRequest, StoreError> {
                let opt_oid = |raw: Option<String>| raw.as_deref().map(oid).transpose();
                Ok(ServiceDeskRequest {
                    id: oid(&row.try_get::<String, _>(0)?)?,
                    tenant_id: oid(&row.try_get::<String, _>(1)?)?,
                    requester_id: oid(&row.try_get::<String, _>(2)?)?,
                    requester_is_app: row.try_get(3)?,
                    requester_scopes: row.try_get(4)?,
                    requester_ip: row.try_get(5)?,
                    target_id: oid(&row.try_get::<String, _>(6)?)?,
                    operation: row.try_get(7)?,
                    pass_start: opt_ts(row.try_get(8)?)?,
                    pass_lifetime_minutes: row.try_get(9)?,
                    pass_usable_once: row.try_get(10)?,
                    method_kind: row.try_get(11)?,
                    method_id: row.try_get(12)?,
                    secret_hash: row.try_get(13)?,
                    justification: row.try_get(14)?,
                    created_at: parse_ts(&row.try_get::<String, _>(15)?)?,
                    expires_at: parse_ts(&row.try_get::<String, _>(16)?)?,
                    status: row.try_get(17)?,
                    decided_by: opt_oid(row.try_get(18)?)?,
                    decided_at: opt_ts(row.try_get(19)?)?,
                    decision_note: row.try_get(20)?,
                    correlation_id: row.try_get(21)?,
                })
            }
        }

        impl $tx {
            /// The tenant's service-desk policies: read in one statement at the first ask, then
            /// kept for the transaction (`DeskPolicies`). A tenant without a row for a policy has
            /// its defaults.
            async fn desk_policies(&mut self, tenant: &ObjectId) -> Result<&DeskPolicies, StoreError> {
                use keyward_core::caller_verification::Policy;
                if self.4.as_ref().is_some_and(|it| it.tenant == *tenant) {
                    return Ok(self.4.as_deref().expect("checked above"));
                }
                let row = q::query(concat!(
                    "SELECT cv.is_enabled, cv.operations, dc.is_enabled, dc.group_id, dc.request_minutes, ",
                    "al.passes_per_hour, al.password_resets_per_hour, al.mfa_resets_per_hour FROM tenants t ",
                    "LEFT JOIN caller_verification_policy cv ON cv.tenant_id = t.id ",
                    "LEFT JOIN dual_control_policy dc ON dc.tenant_id = t.id ",
                    "LEFT JOIN agent_limits al ON al.tenant_id = t.id WHERE t.id = $1"
                ))
                .bind(tenant.as_str())
                .fetch_optional(&mut *self.0)
                .await?;
                let mut policies = DeskPolicies {
                    tenant: tenant.clone(),
                    caller_verification: Policy::default(),
                    dual_control: DualControl::default(),
                    agent_limits: AgentLimits::default(),
                };
                if let Some(row) = row {
                    if let Some(is_enabled) = row.try_get::<Option<bool>, _>(0)? {
                        let operations: String = row.try_get(1)?;
                        policies.caller_verification = Policy {
                            is_enabled,
                            covered: Policy::parse_covered(operations.split_whitespace())
                                .map_err(|err| StoreError::Other(format!("caller verification policy: {err}")))?,
                        };
                    }
                    if let Some(is_enabled) = row.try_get::<Option<bool>, _>(2)? {
                        let group: Option<String> = row.try_get(3)?;
                        policies.dual_control = DualControl {
                            is_enabled,
                            group_id: group.as_deref().map(oid).transpose()?,
                            request_minutes: row.try_get(4)?,
                        };
                    }
                    policies.agent_limits = AgentLimits {
                        passes_per_hour: row.try_get(5)?,
                        password_resets_per_hour: row.try_get(6)?,
                        mfa_resets_per_hour: row.try_get(7)?,
                    };
                }
                Ok(self.4.insert(Box::new(policies)))
            }

            fn decode_verification(row: &DbRow) -> Result<CallerVerification, StoreError> {
                let by: Option<String> = row.try_get(7)?;
                Ok(CallerVerification {
                    id: oid(&row.try_get::<String, _>(0)?)?,
                    tenant_id: oid(&row.try_get::<String, _>(1)?)?,
                    agent_id: oid(&row.try_get::<String, _>(2)?)?,
                    user_id: oid(&row.try_get::<String, _>(3)?)?,
                    code_sha256: row.try_get(4)?,
                    status: row.try_get(5)?,
                    method: row.try_get(6)?,
                    attested_by: by.as_deref().map(oid).transpose()?,
                    attempts: row.try_get(8)?,
                    created_at: parse_ts(&row.try_get::<String, _>(9)?)?,
                    verified_at: opt_ts(row.try_get(10)?)?,
                })
            }
        }

        #[async_trait]
        impl ServiceDeskStore for $tx {
            async fn caller_verification_policy(
                &mut self,
                tenant: &ObjectId,
            ) -> Result<keyward_core::caller_verification::Policy, StoreError> {
                Ok(self.desk_policies(tenant).await?.caller_verification.clone())
            }

            async fn set_caller_verification_policy(
                &mut self,
                tenant: &ObjectId,
                policy: &keyward_core::caller_verification::Policy,
            ) -> Result<(), StoreError> {
                let operations: Vec<&str> = policy.covered.iter().map(|it| it.as_str()).collect();
                q::query(concat!(
                    "INSERT INTO caller_verification_policy (tenant_id, is_enabled, operations) VALUES ($1, $2, $3) ",
                    "ON CONFLICT (tenant_id) DO UPDATE SET is_enabled = excluded.is_enabled, ",
                    "operations = excluded.operations"
                ))
                .bind(tenant.as_str())
                .bind(policy.is_enabled)
                .bind(operations.join(" "))
                .execute(&mut *self.0)
                .await?;
                self.4 = None;
                Ok(())
            }

            async fn insert_caller_verification(&mut self, it: &CallerVerification) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO caller_verifications (",
                    verification_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                ))
                .bind(it.id.as_str())
                .bind(it.tenant_id.as_str())
                .bind(it.agent_id.as_str())
                .bind(it.user_id.as_str())
                .bind(&it.code_sha256)
                .bind(&it.status)
                .bind(&it.method)
                .bind(it.attested_by.as_ref().map(ObjectId::as_str))
                .bind(it.attempts)
                .bind(fmt_ts(it.created_at))
                .bind(it.verified_at.map(fmt_ts))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn get_caller_verification(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
            ) -> Result<Option<CallerVerification>, StoreError> {
                let row = q::query(concat!(
                    "SELECT ",
                    verification_columns!(),
                    " FROM caller_verifications WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *self.0)
                .await?;
                row.as_ref().map(Self::decode_verification).transpose()
            }

            async fn list_caller_verifications(
                &mut self,
                tenant: &ObjectId,
                user: &ObjectId,
                since: OffsetDateTime,
            ) -> Result<Vec<CallerVerification>, StoreError> {
                let rows = q::query(concat!(
                    "SELECT ",
                    verification_columns!(),
                    " FROM caller_verifications WHERE tenant_id = $1 AND user_id = $2 AND created_at > $3 ",
                    "ORDER BY created_at DESC LIMIT 20"
                ))
                .bind(tenant.as_str())
                .bind(user.as_str())
                .bind(fmt_ts(since))
                .fetch_all(&mut *self.0)
                .await?;
                rows.iter().map(Self::decode_verification).collect()
            }

            async fn update_caller_verification(
                &mut self,
                it: &CallerVerification,
                previous_attempts: i64,
                made_after: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let done = q::query(concat!(
                    "UPDATE caller_verifications SET status = $3, method = $4, attested_by = $5, attempts = $6, ",
                    "verified_at = $7 WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND created_at > $8 ",
                    "AND attempts = $9"
                ))
                .bind(it.tenant_id.as_str())
                .bind(it.id.as_str())
                .bind(&it.status)
                .bind(&it.method)
                .bind(it.attested_by.as_ref().map(ObjectId::as_str))
                .bind(it.attempts)
                .bind(it.verified_at.map(fmt_ts))
                .bind(fmt_ts(made_after))
                .bind(previous_attempts)
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn has_verified_caller(
                &mut self,
                tenant: &ObjectId,
                agent: &ObjectId,
                user: &ObjectId,
                verified_after: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let found: Option<String> = q::query_scalar(concat!(
                    "SELECT id FROM caller_verifications WHERE tenant_id = $1 AND agent_id = $2 AND user_id = $3 ",
                    "AND status = 'verified' AND verified_at > $4 LIMIT 1"
                ))
                .bind(tenant.as_str())
                .bind(agent.as_str())
                .bind(user.as_str())
                .bind(fmt_ts(verified_after))
                .fetch_optional(&mut *self.0)
                .await?;
                Ok(found.is_some())
            }

            async fn dual_control_policy(&mut self, tenant: &ObjectId) -> Result<DualControl, StoreError> {
                Ok(self.desk_policies(tenant).await?.dual_control.clone())
            }

            async fn set_dual_control_policy(
                &mut self,
                tenant: &ObjectId,
                policy: &DualControl,
            ) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO dual_control_policy (tenant_id, is_enabled, group_id, request_minutes) ",
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET is_enabled = excluded.is_enabled, ",
                    "group_id = excluded.group_id, request_minutes = excluded.request_minutes"
                ))
                .bind(tenant.as_str())
                .bind(policy.is_enabled)
                .bind(policy.group_id.as_ref().map(ObjectId::as_str))
                .bind(policy.request_minutes)
                .execute(&mut *self.0)
                .await?;
                self.4 = None;
                Ok(())
            }

            async fn insert_service_desk_request(&mut self, it: &ServiceDeskRequest) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO service_desk_requests (",
                    service_desk_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, ",
                    "$19, $20, $21, $22)"
                ))
                .bind(it.id.as_str())
                .bind(it.tenant_id.as_str())
                .bind(it.requester_id.as_str())
                .bind(it.requester_is_app)
                .bind(&it.requester_scopes)
                .bind(&it.requester_ip)
                .bind(it.target_id.as_str())
                .bind(&it.operation)
                .bind(it.pass_start.map(fmt_ts))
                .bind(it.pass_lifetime_minutes)
                .bind(it.pass_usable_once)
                .bind(&it.method_kind)
                .bind(&it.method_id)
                .bind(&it.secret_hash)
                .bind(&it.justification)
                .bind(fmt_ts(it.created_at))
                .bind(fmt_ts(it.expires_at))
                .bind(&it.status)
                .bind(it.decided_by.as_ref().map(ObjectId::as_str))
                .bind(it.decided_at.map(fmt_ts))
                .bind(&it.decision_note)
                .bind(&it.correlation_id)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn count_pending_service_desk_requests(
                &mut self,
                tenant: &ObjectId,
                requester: &ObjectId,
                now: OffsetDateTime,
            ) -> Result<i64, StoreError> {
                self.advisory_lock(format!("keyward-desk-{tenant}-{requester}")).await?;
                let count: i64 = q::query_scalar(concat!(
                    "SELECT COUNT(*) FROM service_desk_requests WHERE tenant_id = $1 AND requester_id = $2 ",
                    "AND status = 'pendingApproval' AND expires_at > $3"
                ))
                .bind(tenant.as_str())
                .bind(requester.as_str())
                .bind(fmt_ts(now))
                .fetch_one(&mut *self.0)
                .await?;
                Ok(count)
            }

            async fn get_service_desk_request(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
            ) -> Result<Option<ServiceDeskRequest>, StoreError> {
                let row = q::query(concat!(
                    "SELECT ",
                    service_desk_columns!(),
                    " FROM service_desk_requests WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *self.0)
                .await?;
                row.as_ref().map(Self::decode_request).transpose()
            }

            async fn list_service_desk_requests(
                &mut self,
                tenant: &ObjectId,
                before: Option<&ObjectId>,
                limit: usize,
            ) -> Result<Vec<ServiceDeskRequest>, StoreError> {
                let rows = q::query(concat!(
                    "SELECT ",
                    service_desk_columns!(),
                    " FROM service_desk_requests WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) ",
                    "ORDER BY id DESC LIMIT $3"
                ))
                .bind(tenant.as_str())
                .bind(before.map(ObjectId::as_str))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&mut *self.0)
                .await?;
                rows.iter().map(Self::decode_request).collect()
            }

            async fn decide_service_desk_request(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
                status: &str,
                by: &ObjectId,
                at: OffsetDateTime,
                note: Option<&str>,
            ) -> Result<bool, StoreError> {
                let done = q::query(concat!(
                    "UPDATE service_desk_requests SET status = $3, decided_by = $4, decided_at = $5, ",
                    "decision_note = $6, secret_hash = NULL WHERE tenant_id = $1 AND id = $2 AND status = 'pendingApproval' ",
                    "AND expires_at > $5"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .bind(status)
                .bind(by.as_str())
                .bind(fmt_ts(at))
                .bind(note)
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}
