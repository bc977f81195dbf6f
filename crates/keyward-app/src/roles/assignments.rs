//! Role assignments, at tenant or administrative-unit scope, and a principal's effective roles.

use crate::commit_audited;
use crate::directory::{object_target, resolve_object};
use crate::facts::{RoleChange, check_global_administrator_change};
use crate::{App, AppError, Caller, new_id, require};
use keyward_core::audit::{Activity, TargetResource};
use keyward_core::authz::{Target, actions};
use keyward_core::directory::{DirectoryObject, PropertyChange};
use keyward_core::ids::ObjectId;
use keyward_core::json;
use keyward_store::{AssignmentFilter, RoleAssignment, StoreError, Tx};

use super::{ItemPage, page, unit_scope, unit_target};

impl App {
    /// `GET /roleManagement/directory/roleAssignments`.
    pub async fn list_role_assignments(
        &self,
        caller: &Caller,
        filter: &AssignmentFilter,
        top: usize,
        skiptoken: Option<&str>,
    ) -> Result<ItemPage<RoleAssignment>, AppError> {
        require(caller, actions::ROLE_ASSIGNMENTS_READ, Target::Tenant)?;
        let after = crate::directory::decode_id_skiptoken(skiptoken)?;
        let mut tx = self.read().await?;
        let items = tx.list_role_assignments(&caller.tenant.id, filter, after.as_deref(), top + 1).await?;
        Ok(page(items, top, |it| it.id.clone()))
    }

    /// `GET /roleManagement/directory/roleAssignments?$expand=principal`: a page of assignments,
    /// each with its principal (`None` if it no longer exists), read in one transaction.
    pub async fn list_role_assignments_with_principals(
        &self,
        caller: &Caller,
        filter: &AssignmentFilter,
        top: usize,
        skiptoken: Option<&str>,
    ) -> Result<ItemPage<(RoleAssignment, Option<DirectoryObject>)>, AppError> {
        require(caller, actions::ROLE_ASSIGNMENTS_READ, Target::Tenant)?;
        let after = crate::directory::decode_id_skiptoken(skiptoken)?;
        let mut tx = self.read().await?;
        let items = tx.list_role_assignments(&caller.tenant.id, filter, after.as_deref(), top + 1).await?;
        let ItemPage { items, skiptoken } = page(items, top, |it| it.id.clone());
        let mut res = Vec::with_capacity(items.len());
        for it in items {
            let principal = match resolve_object(&mut *tx, &caller.tenant, it.principal_id.as_str()).await {
                Ok(found) => Some(found),
                Err(AppError::NotFound(_)) => None,
                Err(err) => return Err(err),
            };
            res.push((it, principal));
        }
        Ok(ItemPage { items: res, skiptoken })
    }

    /// `GET /roleManagement/directory/roleAssignments/{id}`.
    pub async fn get_role_assignment(&self, caller: &Caller, id: &str) -> Result<RoleAssignment, AppError> {
        require(caller, actions::ROLE_ASSIGNMENTS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        tx.get_role_assignment(&caller.tenant.id, id).await?.ok_or_else(|| AppError::NotFound(id.to_owned()))
    }

    /// Every assignment that applies to a principal: direct, and through its groups.
    pub async fn transitive_role_assignments(
        &self,
        caller: &Caller,
        principal: &str,
    ) -> Result<Vec<RoleAssignment>, AppError> {
        require(caller, actions::ROLE_ASSIGNMENTS_READ, Target::Tenant)?;
        let principal = ObjectId::parse(principal)
            .ok_or_else(|| AppError::BadRequest(format!("Invalid object identifier '{principal}'.")))?;
        let mut tx = self.read().await?;
        Ok(tx.list_role_assignments_for(&caller.tenant.id, &principal).await?)
    }

    /// `POST /roleManagement/directory/roleAssignments`. Principals are users and role-assignable
    /// groups; only administrative-unit-scopable roles take an administrative-unit scope.
    pub async fn create_role_assignment(
        &self,
        caller: &Caller,
        principal_id: &str,
        role_definition_id: &str,
        directory_scope_id: &str,
    ) -> Result<RoleAssignment, AppError> {
        let now = self.now();
        let unit_id = match directory_scope_id {
            "/" => None,
            other => Some(other.strip_prefix("/administrativeUnits/").and_then(ObjectId::parse).ok_or_else(|| {
                AppError::BadRequest(format!(
                    "Invalid directoryScopeId '{other}': use '/' or '/administrativeUnits/{{id}}'."
                ))
            })?),
        };
        // The canonical scope: the unit's lowercase id, so lookups and deletions match it.
        let directory_scope_id = unit_id.as_ref().map_or_else(|| "/".to_owned(), unit_scope);
        let (action, first_activity) = match &unit_id {
            None => (actions::ROLE_ASSIGNMENTS_WRITE, Activity::AddMemberToRole),
            Some(_) => (actions::SCOPED_ROLE_MEMBERSHIPS_WRITE, Activity::AddScopedMemberToRole),
        };
        self.may_change_members(caller, action, first_activity, role_definition_id, principal_id).await?;
        let mut tx = self.write().await?;
        // A promotion: held off while a target-sensitive decision is in flight (see `user_facts`).
        tx.lock_role_changes(&caller.tenant.id).await?;
        // An ended activation of the same role and scope would stand in the way of this one.
        let lapsed = self.lapsed_records(&mut *tx, &caller.tenant).await?;
        let role = self
            .find_role(&mut *tx, caller, role_definition_id)
            .await?
            .ok_or_else(|| AppError::NotFound(role_definition_id.to_owned()))?;
        super::require_enabled(&role)?;
        let principal = resolve_object(&mut *tx, &caller.tenant, principal_id).await?;
        let unit = match &unit_id {
            None => None,
            Some(unit_id) => {
                let unit = tx
                    .get_administrative_unit(&caller.tenant.id, unit_id)
                    .await?
                    .ok_or_else(|| AppError::NotFound(unit_id.to_string()))?;
                if !role.is_au_scopable() {
                    return Err(AppError::BadRequest(format!(
                        "The role '{}' cannot be assigned at an administrative unit scope; assign it at '/'.",
                        role.display_name()
                    )));
                }
                Some(unit)
            }
        };
        let activity = match &unit {
            None => Activity::AddMemberToRole,
            Some(it) if it.is_member_management_restricted => Activity::AddMemberToRoleScopedOverRestrictedUnit,
            Some(_) => Activity::AddScopedMemberToRole,
        };
        let role_target = role.target()?;
        let mut targets = vec![role_target, object_target(&principal)];
        if let Some(unit) = &unit {
            targets.push(unit_target(unit));
        }
        if let DirectoryObject::Group(group) = &principal
            && !group.is_assignable_to_role
        {
            return Err(AppError::BadRequest(
                "Only role-assignable groups (isAssignableToRole true) can be assigned roles.".into(),
            ));
        }
        let assignment = RoleAssignment {
            id: new_id().to_string(),
            tenant_id: caller.tenant.id.clone(),
            principal_id: principal.id().clone(),
            role_definition_id: role.id(),
            directory_scope_id: directory_scope_id.clone(),
            created: now,
            start: None,
            end: None,
            activated_using: None,
        };
        super::insert_assignment(&mut *tx, &assignment).await.map_err(|err| match err {
            StoreError::Conflict { .. } => AppError::BadRequest(
                "A conflicting object with one or more of the specified property values is present in the directory."
                    .into(),
            ),
            other => other.into(),
        })?;
        let changes = vec![
            PropertyChange {
                name: "Role.DisplayName".into(),
                old_value: None,
                new_value: Some(json::string(role.display_name())),
            },
            PropertyChange {
                name: "Role.TemplateId".into(),
                old_value: None,
                new_value: Some(json::string(&role.template_id())),
            },
            PropertyChange {
                name: "DirectoryScopeId".into(),
                old_value: None,
                new_value: Some(json::string(&directory_scope_id)),
            },
        ];
        targets[0].modified_properties = changes;
        commit_audited(tx, lapsed.into_iter().chain([caller.succeeded(now, activity, targets)])).await?;
        Ok(assignment)
    }

    /// `DELETE /roleManagement/directory/roleAssignments/{id}`. A Global Administrator cannot
    /// remove their own Global Administrator assignment, nor the last active one.
    pub async fn delete_role_assignment(&self, caller: &Caller, id: &str) -> Result<(), AppError> {
        let now = self.now();
        let mut tx = self.write().await?;
        let assignment =
            tx.get_role_assignment(&caller.tenant.id, id).await?.ok_or_else(|| AppError::NotFound(id.to_owned()))?;
        let role = self.find_role(&mut *tx, caller, &assignment.role_definition_id).await?;
        let unit = match assignment.directory_scope_id.strip_prefix("/administrativeUnits/").and_then(ObjectId::parse) {
            Some(unit_id) => tx.get_administrative_unit(&caller.tenant.id, &unit_id).await?,
            None => None,
        };
        let activity = match &unit {
            None => Activity::RemoveMemberFromRole,
            Some(it) if it.is_member_management_restricted => Activity::RemoveMemberFromRoleScopedOverRestrictedUnit,
            Some(_) => Activity::RemoveScopedMemberFromRole,
        };
        let mut targets = Vec::new();
        if let Some(role) = &role {
            targets.push(role.target()?);
        }
        if let Ok(principal) = resolve_object(&mut *tx, &caller.tenant, assignment.principal_id.as_str()).await {
            targets.push(object_target(&principal));
        }
        let action =
            if unit.is_some() { actions::SCOPED_ROLE_MEMBERSHIPS_WRITE } else { actions::ROLE_ASSIGNMENTS_WRITE };
        if let Err(err) = require(caller, action, Target::Tenant)
            .or_else(|_| require(caller, actions::ROLE_ASSIGNMENTS_WRITE, Target::Tenant))
        {
            return Err(self.refused(Some(tx), caller, activity, targets, err).await);
        }
        if let Err(err) = check_global_administrator_change(
            &mut *tx,
            &caller.tenant,
            &caller.actor.id,
            &RoleChange::RemoveAssignment(id),
        )
        .await
        {
            return Err(self.refused(Some(tx), caller, activity, targets, err).await);
        }
        tx.delete_role_assignment(&caller.tenant.id, id).await?;
        commit_audited(tx, [caller.succeeded(now, activity, targets)]).await?;
        Ok(())
    }

    /// Ends a principal's group memberships and role assignments as it is deleted, recording each
    /// ended assignment, in the caller's transaction.
    pub(crate) async fn end_principal(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        principal: TargetResource,
        id: &ObjectId,
    ) -> Result<(), AppError> {
        let filter = AssignmentFilter { principal_id: Some(vec![id.clone()]), ..AssignmentFilter::default() };
        let assignments = tx.list_role_assignments(&caller.tenant.id, &filter, None, keyward_store::ALL_ROWS).await?;
        self.record_cascaded_removals(tx, caller, Some(principal.clone()), &assignments).await?;
        // Its eligibilities end with it too (`delete_role_assignments_of` removes them), each recorded.
        let now = self.now();
        for eligibility in tx.list_eligibilities(&caller.tenant.id, Some(id)).await? {
            let mut targets = Vec::new();
            if let Some(role) = self.find_role(tx, caller, &eligibility.role_definition_id).await? {
                targets.push(role.target()?);
            }
            targets.push(principal.clone());
            let activity =
                keyward_core::audit::PimActivity::EligibleRemoveCompleted { permanent: eligibility.end.is_none() };
            tx.defer_audit(caller.succeeded(now, Activity::Pim(activity), targets));
        }
        tx.delete_memberships_of(id).await?;
        tx.delete_role_assignments_of(id).await?;
        Ok(())
    }

    /// Writes "Remove member from role" (or the scoped form) for assignments that end because their
    /// principal or unit is deleted, in the caller's transaction and correlation.
    pub(crate) async fn record_cascaded_removals(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        principal: Option<TargetResource>,
        assignments: &[RoleAssignment],
    ) -> Result<(), AppError> {
        let now = self.now();
        for assignment in assignments {
            let role = self.find_role(tx, caller, &assignment.role_definition_id).await?;
            let activity = if assignment.directory_scope_id == "/" {
                Activity::RemoveMemberFromRole
            } else {
                Activity::RemoveScopedMemberFromRole
            };
            let mut targets = Vec::new();
            if let Some(role) = &role {
                targets.push(role.target()?);
            }
            if let Some(principal) = &principal {
                targets.push(principal.clone());
            }
            tx.defer_audit(caller.succeeded(now, activity, targets));
        }
        Ok(())
    }
}
