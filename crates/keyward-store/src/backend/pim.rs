//! Just-in-time roles: eligibilities, schedule requests and role settings (`PimStore`).
//!
//! `impl_pim_store!` is the same SQL for SQLite and PostgreSQL, expanded once per backend in
//! `backend/mod.rs`. Windows are judged by the transaction's time (`RoleStore::set_now`).

/// The columns an eligibility is read from.
macro_rules! eligibility_columns {
    () => {
        concat!(
            "id, tenant_id, principal_id, role_definition_id, directory_scope_id, start_at, end_at, ",
            "created_using, created_at, modified_at"
        )
    };
}

/// Tenant `$1`'s rows of `table` (its `columns`) not ended at `$2`, of principal `$3`, or of
/// everyone when `principal` is `None` (`$3` bound NULL): two texts, so that one principal's are
/// looked up by the table's `(tenant_id, principal_id)` index, which `$3 IS NULL OR principal_id
/// = $3` (one text for both) left unused.
macro_rules! unended_of {
    ($columns:expr, $table:literal, $principal:expr) => {
        match $principal {
            Some(_) => concat!(
                "SELECT ",
                $columns,
                " FROM ",
                $table,
                " WHERE tenant_id = $1 AND (end_at IS NULL OR end_at > $2) AND principal_id = $3 ORDER BY id"
            ),
            None => concat!(
                "SELECT ",
                $columns,
                " FROM ",
                $table,
                " WHERE tenant_id = $1 AND (end_at IS NULL OR end_at > $2) AND $3 IS NULL ORDER BY id"
            ),
        }
    };
}

/// The columns a schedule request is read from.
macro_rules! request_columns {
    () => {
        concat!(
            "id, tenant_id, kind, action, principal_id, role_definition_id, directory_scope_id, ",
            "justification, status, start_at, expiration_type, end_at, duration, ticket_number, ",
            "ticket_system, target_schedule_id, created_by, created_at, completed_at, review_result, ",
            "reviewed_by, reviewed_at, review_justification"
        )
    };
}

/// The columns of a role's settings.
macro_rules! settings_columns {
    () => {
        concat!(
            "role_definition_id, activation_maximum_seconds, activation_requires_mfa, ",
            "activation_requires_justification, activation_requires_ticket, approval_required, approvers, ",
            "eligibility_expiration_required, eligibility_maximum_seconds, assignment_expiration_required, ",
            "assignment_maximum_seconds, assignment_requires_justification, modified_at, modified_by"
        )
    };
}

/// Implements `PimStore` for a backend's transaction type.
macro_rules! impl_pim_store {
    ($tx:ident, $db:ty) => {
        #[async_trait]
        impl PimStore for $tx {
            async fn insert_eligibility(&mut self, it: &RoleEligibility) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO role_eligibilities (",
                    eligibility_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ))
                .bind(&it.id)
                .bind(it.tenant_id.as_str())
                .bind(it.principal_id.as_str())
                .bind(it.role_definition_id.to_lowercase())
                .bind(&it.directory_scope_id)
                .bind(fmt_ts(it.start))
                .bind(it.end.map(fmt_ts))
                .bind(&it.created_using)
                .bind(fmt_ts(it.created))
                .bind(fmt_ts(it.modified))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn update_eligibility(&mut self, it: &RoleEligibility) -> Result<(), StoreError> {
                let done = q::query(concat!(
                    "UPDATE role_eligibilities SET start_at = $3, end_at = $4, modified_at = $5 ",
                    "WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(it.tenant_id.as_str())
                .bind(&it.id)
                .bind(fmt_ts(it.start))
                .bind(it.end.map(fmt_ts))
                .bind(fmt_ts(it.modified))
                .execute(&mut *self.0)
                .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn delete_eligibility(&mut self, tenant: &ObjectId, id: &str) -> Result<(), StoreError> {
                let done = q::query("DELETE FROM role_eligibilities WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn get_eligibility(
                &mut self,
                tenant: &ObjectId,
                id: &str,
            ) -> Result<Option<RoleEligibility>, StoreError> {
                let row = q::query(concat!(
                    "SELECT ",
                    eligibility_columns!(),
                    " FROM role_eligibilities WHERE tenant_id = $1 AND id = $2 AND (end_at IS NULL OR end_at > $3)"
                ))
                .bind(tenant.as_str())
                .bind(id)
                .bind(&self.1)
                .fetch_optional(&mut *self.0)
                .await?;
                row.as_ref().map(Self::eligibility_from_row).transpose()
            }

            async fn list_eligibilities(
                &mut self,
                tenant: &ObjectId,
                principal: Option<&ObjectId>,
            ) -> Result<Vec<RoleEligibility>, StoreError> {
                let rows = q::query(unended_of!(eligibility_columns!(), "role_eligibilities", principal))
                    .bind(tenant.as_str())
                    .bind(&self.1)
                    .bind(principal.map(ObjectId::as_str))
                    .fetch_all(&mut *self.0)
                    .await?;
                rows.iter().map(Self::eligibility_from_row).collect()
            }

            async fn list_eligibilities_for(
                &mut self,
                tenant: &ObjectId,
                user: &ObjectId,
            ) -> Result<Vec<RoleEligibility>, StoreError> {
                let rows = q::query(concat!(
                    "SELECT ",
                    eligibility_columns!(),
                    " FROM role_eligibilities WHERE tenant_id = $1 AND (end_at IS NULL OR end_at > $3) ",
                    "AND ",
                    principal_or_its_groups!("2", "4"),
                    " ORDER BY id"
                ))
                .bind(tenant.as_str())
                .bind(user.as_str())
                .bind(&self.1)
                .bind(true)
                .fetch_all(&mut *self.0)
                .await?;
                rows.iter().map(Self::eligibility_from_row).collect()
            }

            async fn take_ended_eligibilities(
                &mut self,
                tenant: &ObjectId,
            ) -> Result<Vec<RoleEligibility>, StoreError> {
                let rows = q::query(concat!(
                    "SELECT ",
                    eligibility_columns!(),
                    " FROM role_eligibilities WHERE tenant_id = $1 AND end_at <= $2 ORDER BY id"
                ))
                .bind(tenant.as_str())
                .bind(&self.1)
                .fetch_all(&mut *self.0)
                .await?;
                let mut ended = Vec::new();
                for row in &rows {
                    let it = Self::eligibility_from_row(row)?;
                    // Gone already (its unit or principal deleted meanwhile): nothing to record.
                    match self.delete_eligibility(tenant, &it.id).await {
                        Ok(()) => ended.push(it),
                        Err(StoreError::NotFound) => (),
                        Err(err) => return Err(err),
                    }
                }
                Ok(ended)
            }

            async fn list_role_assignment_schedules(
                &mut self,
                tenant: &ObjectId,
                principal: Option<&ObjectId>,
            ) -> Result<Vec<RoleAssignment>, StoreError> {
                let rows = q::query(unended_of!(assignment_columns!(), "role_assignments", principal))
                    .bind(tenant.as_str())
                    .bind(&self.1)
                    .bind(principal.map(ObjectId::as_str))
                    .fetch_all(&mut *self.0)
                    .await?;
                rows.iter().map(Self::assignment_from_row).collect()
            }

            async fn take_ended_role_assignments(
                &mut self,
                tenant: &ObjectId,
            ) -> Result<Vec<RoleAssignment>, StoreError> {
                // Ended by time, or an activation whose eligibility no longer holds (the negation
                // of `current_assignment!` for rows that have started).
                // Two halves, each served by its own index (an `OR` would read every row).
                let rows = q::query(concat!(
                    "SELECT ",
                    assignment_columns!(),
                    " FROM role_assignments WHERE tenant_id = $1 AND end_at <= $2 UNION SELECT ",
                    assignment_columns!(),
                    " FROM role_assignments WHERE tenant_id = $1 AND activated_using IS NOT NULL AND NOT ",
                    "EXISTS (SELECT 1 FROM role_eligibilities e WHERE e.id = role_assignments.activated_using ",
                    "AND (e.end_at IS NULL OR e.end_at > $2) AND (e.principal_id = role_assignments.principal_id ",
                    "OR e.principal_id IN (SELECT gm.group_id FROM group_members gm WHERE gm.member_id = ",
                    "role_assignments.principal_id))) ORDER BY id"
                ))
                .bind(tenant.as_str())
                .bind(&self.1)
                .fetch_all(&mut *self.0)
                .await?;
                let mut ended = Vec::new();
                for row in &rows {
                    let it = Self::assignment_from_row(row)?;
                    // Gone already (its unit or principal deleted meanwhile): nothing to record.
                    match self.delete_role_assignment(tenant, &it.id).await {
                        Ok(()) => ended.push(it),
                        Err(StoreError::NotFound) => (),
                        Err(err) => return Err(err),
                    }
                }
                Ok(ended)
            }

            async fn set_role_assignment_window(
                &mut self,
                tenant: &ObjectId,
                id: &str,
                start: Option<OffsetDateTime>,
                end: Option<OffsetDateTime>,
            ) -> Result<(), StoreError> {
                let done = q::query(concat!(
                    "UPDATE role_assignments SET end_at = $3, start_at = COALESCE($4, start_at) ",
                    "WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant.as_str())
                .bind(id)
                .bind(end.map(fmt_ts))
                .bind(start.map(fmt_ts))
                .execute(&mut *self.0)
                .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn insert_schedule_request(&mut self, it: &RoleScheduleRequest) -> Result<(), StoreError> {
                use keyward_core::pim::Expiration;
                let (expiration_type, end, duration) = match it.schedule.expiration {
                    Expiration::NotSpecified => ("notSpecified", None, None),
                    Expiration::NoExpiration => ("noExpiration", None, None),
                    Expiration::AfterDateTime(end) => ("afterDateTime", Some(fmt_ts(end)), None),
                    Expiration::AfterDuration(duration) => {
                        ("afterDuration", None, Some(keyward_core::pim::format_duration(duration)))
                    }
                };
                q::query(concat!(
                    "INSERT INTO role_schedule_requests (",
                    request_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, ",
                    "$20, $21, $22, $23)"
                ))
                .bind(&it.id)
                .bind(it.tenant_id.as_str())
                .bind(it.kind.as_str())
                .bind(&it.action)
                .bind(it.principal_id.as_str())
                .bind(it.role_definition_id.to_lowercase())
                .bind(&it.directory_scope_id)
                .bind(&it.justification)
                .bind(&it.status)
                .bind(it.schedule.start.map(fmt_ts))
                .bind(expiration_type)
                .bind(end)
                .bind(duration)
                .bind(&it.ticket_number)
                .bind(&it.ticket_system)
                .bind(&it.target_schedule_id)
                .bind(it.created_by.as_str())
                .bind(fmt_ts(it.created))
                .bind(it.completed.map(fmt_ts))
                .bind(it.review.as_ref().map(|it| if it.approved { "Approve" } else { "Deny" }))
                .bind(it.review.as_ref().map(|it| it.by.to_string()))
                .bind(it.review.as_ref().map(|it| fmt_ts(it.at)))
                .bind(it.review.as_ref().and_then(|it| it.justification.clone()))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn update_schedule_request(&mut self, it: &RoleScheduleRequest) -> Result<(), StoreError> {
                let done = q::query(concat!(
                    "UPDATE role_schedule_requests SET status = $3, completed_at = $4, target_schedule_id = $5, ",
                    "review_result = $6, reviewed_by = $7, reviewed_at = $8, review_justification = $9 ",
                    "WHERE tenant_id = $1 AND id = $2 AND status = 'PendingApproval'"
                ))
                .bind(it.tenant_id.as_str())
                .bind(&it.id)
                .bind(&it.status)
                .bind(it.completed.map(fmt_ts))
                .bind(&it.target_schedule_id)
                .bind(it.review.as_ref().map(|it| if it.approved { "Approve" } else { "Deny" }))
                .bind(it.review.as_ref().map(|it| it.by.to_string()))
                .bind(it.review.as_ref().map(|it| fmt_ts(it.at)))
                .bind(it.review.as_ref().and_then(|it| it.justification.clone()))
                .execute(&mut *self.0)
                .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn get_schedule_request(
                &mut self,
                tenant: &ObjectId,
                kind: ScheduleKind,
                id: &str,
            ) -> Result<Option<RoleScheduleRequest>, StoreError> {
                let row = q::query(concat!(
                    "SELECT ",
                    request_columns!(),
                    " FROM role_schedule_requests WHERE tenant_id = $1 AND kind = $2 AND id = $3"
                ))
                .bind(tenant.as_str())
                .bind(kind.as_str())
                .bind(id)
                .fetch_optional(&mut *self.0)
                .await?;
                row.as_ref().map(Self::schedule_request_from_row).transpose()
            }

            async fn list_schedule_requests(
                &mut self,
                tenant: &ObjectId,
                kind: ScheduleKind,
                principal: Option<&ObjectId>,
                pending_only: bool,
            ) -> Result<Vec<RoleScheduleRequest>, StoreError> {
                let rows = q::query(concat!(
                    "SELECT ",
                    request_columns!(),
                    " FROM role_schedule_requests WHERE tenant_id = $1 AND kind = $2 ",
                    "AND ($3 IS NULL OR principal_id = $3) AND ($4 IS NULL OR status = $4) ",
                    "ORDER BY created_at DESC, id"
                ))
                .bind(tenant.as_str())
                .bind(kind.as_str())
                .bind(principal.map(ObjectId::as_str))
                .bind(pending_only.then_some("PendingApproval"))
                .fetch_all(&mut *self.0)
                .await?;
                rows.iter().map(Self::schedule_request_from_row).collect()
            }

            async fn get_role_settings(
                &mut self,
                tenant: &ObjectId,
                role_definition_id: &str,
            ) -> Result<Option<(RoleSettings, OffsetDateTime, ObjectId)>, StoreError> {
                let row = q::query(concat!(
                    "SELECT ",
                    settings_columns!(),
                    " FROM role_settings WHERE tenant_id = $1 AND role_definition_id = $2"
                ))
                .bind(tenant.as_str())
                .bind(role_definition_id.to_lowercase())
                .fetch_optional(&mut *self.0)
                .await?;
                Ok(row.as_ref().map(Self::role_settings_from_row).transpose()?.map(|(_, it, at, by)| (it, at, by)))
            }

            async fn list_role_settings(
                &mut self,
                tenant: &ObjectId,
            ) -> Result<Vec<(String, RoleSettings, OffsetDateTime, ObjectId)>, StoreError> {
                let rows = q::query(concat!(
                    "SELECT ",
                    settings_columns!(),
                    " FROM role_settings WHERE tenant_id = $1 ORDER BY role_definition_id"
                ))
                .bind(tenant.as_str())
                .fetch_all(&mut *self.0)
                .await?;
                rows.iter().map(Self::role_settings_from_row).collect()
            }

            async fn put_role_settings(
                &mut self,
                tenant: &ObjectId,
                role_definition_id: &str,
                it: &RoleSettings,
                at: OffsetDateTime,
                by: &ObjectId,
            ) -> Result<(), StoreError> {
                let approvers: Vec<&str> = it.approvers.iter().map(ObjectId::as_str).collect();
                q::query(concat!(
                    "INSERT INTO role_settings (tenant_id, ",
                    settings_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ",
                    "ON CONFLICT (tenant_id, role_definition_id) DO UPDATE SET ",
                    "activation_maximum_seconds = excluded.activation_maximum_seconds, ",
                    "activation_requires_mfa = excluded.activation_requires_mfa, ",
                    "activation_requires_justification = excluded.activation_requires_justification, ",
                    "activation_requires_ticket = excluded.activation_requires_ticket, ",
                    "approval_required = excluded.approval_required, approvers = excluded.approvers, ",
                    "eligibility_expiration_required = excluded.eligibility_expiration_required, ",
                    "eligibility_maximum_seconds = excluded.eligibility_maximum_seconds, ",
                    "assignment_expiration_required = excluded.assignment_expiration_required, ",
                    "assignment_maximum_seconds = excluded.assignment_maximum_seconds, ",
                    "assignment_requires_justification = excluded.assignment_requires_justification, ",
                    "modified_at = excluded.modified_at, modified_by = excluded.modified_by"
                ))
                .bind(tenant.as_str())
                .bind(role_definition_id.to_lowercase())
                .bind(it.activation_maximum.whole_seconds())
                .bind(it.activation_requires_mfa)
                .bind(it.activation_requires_justification)
                .bind(it.activation_requires_ticket)
                .bind(it.approval_required)
                .bind(approvers.join(" "))
                .bind(it.eligibility_expiration_required)
                .bind(it.eligibility_maximum.whole_seconds())
                .bind(it.assignment_expiration_required)
                .bind(it.assignment_maximum.whole_seconds())
                .bind(it.assignment_requires_justification)
                .bind(fmt_ts(at))
                .bind(by.as_str())
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }
        }
    };
}
