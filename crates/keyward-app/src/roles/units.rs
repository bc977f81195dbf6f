//! Administrative units, their members and scoped role members.

use crate::commit_audited;
use crate::directory::{load_refs, object_target, resolve_object};
use crate::{App, AppError, Caller, new_id, require};
use keyward_core::audit::Activity;
use keyward_core::authz::{Target, actions};
use keyward_core::directory::{DirectoryObject, ObjectKind, PropertyChange};
use keyward_core::ids::ObjectId;
use keyward_core::json;
use keyward_store::{AdministrativeUnit, AssignmentFilter, MemberRef, RoleAssignment, StoreError, Tx};

use super::{ItemPage, page, unit_scope, unit_target};

impl App {
    /// `GET /directory/administrativeUnits`.
    pub async fn list_units(
        &self,
        caller: &Caller,
        top: usize,
        skiptoken: Option<&str>,
    ) -> Result<ItemPage<AdministrativeUnit>, AppError> {
        require(caller, actions::UNITS_READ, Target::Tenant)?;
        let after = crate::directory::decode_id_skiptoken(skiptoken)?;
        let mut tx = self.read().await?;
        let items = tx.list_administrative_units(&caller.tenant.id, after.as_deref(), top + 1).await?;
        Ok(page(items, top, |it| it.id.to_string()))
    }

    pub(super) async fn resolve_unit(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        key: &str,
    ) -> Result<AdministrativeUnit, AppError> {
        let id =
            ObjectId::parse(key).ok_or_else(|| AppError::BadRequest(format!("Invalid object identifier '{key}'.")))?;
        tx.get_administrative_unit(&caller.tenant.id, &id).await?.ok_or_else(|| AppError::NotFound(key.to_owned()))
    }

    /// `GET /directory/administrativeUnits/{id}`.
    pub async fn get_unit(&self, caller: &Caller, key: &str) -> Result<AdministrativeUnit, AppError> {
        require(caller, actions::UNITS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        self.resolve_unit(&mut *tx, caller, key).await
    }

    /// `POST /directory/administrativeUnits`; `isMemberManagementRestricted` is fixed at creation.
    pub async fn create_unit(
        &self,
        caller: &Caller,
        display_name: &str,
        description: Option<String>,
        is_member_management_restricted: bool,
    ) -> Result<AdministrativeUnit, AppError> {
        self.require_recorded(caller, actions::UNITS_WRITE, Target::Tenant, Activity::AddAdministrativeUnit, Vec::new)
            .await?;
        let name = display_name.trim();
        if name.is_empty() || name.chars().any(char::is_control) || name.chars().count() > 256 {
            return Err(AppError::BadRequest(
                "Invalid value specified for property 'displayName' of resource 'AdministrativeUnit'.".into(),
            ));
        }
        if description.as_deref().is_some_and(|it| it.chars().any(char::is_control)) {
            return Err(AppError::BadRequest(
                "Invalid value specified for property 'description' of resource 'AdministrativeUnit'.".into(),
            ));
        }
        let now = self.now();
        let unit = AdministrativeUnit {
            id: new_id(),
            tenant_id: caller.tenant.id.clone(),
            display_name: name.to_owned(),
            description,
            is_member_management_restricted,
            created: now,
        };
        let mut tx = self.write().await?;
        if is_member_management_restricted && tx.list_restricted_units(&caller.tenant.id).await?.len() >= 100 {
            return Err(AppError::BadRequest(
                "A tenant can have at most 100 restricted management administrative units.".into(),
            ));
        }
        tx.insert_administrative_unit(&unit).await?;
        let changes = vec![PropertyChange {
            name: "IsMemberManagementRestricted".into(),
            old_value: None,
            new_value: Some(format!("[{is_member_management_restricted}]")),
        }];
        let targets = vec![unit_target(&unit).with_changes(changes)];
        commit_audited(tx, [caller.succeeded(now, Activity::AddAdministrativeUnit, targets)]).await?;
        Ok(unit)
    }

    /// `PATCH /directory/administrativeUnits/{id}`.
    pub async fn update_unit(
        &self,
        caller: &Caller,
        key: &str,
        display_name: Option<String>,
        description: Option<Option<String>>,
        is_member_management_restricted: Option<bool>,
    ) -> Result<(), AppError> {
        self.require_recorded(
            caller,
            actions::UNITS_WRITE,
            Target::Tenant,
            Activity::UpdateAdministrativeUnit,
            Vec::new,
        )
        .await?;
        let now = self.now();
        let mut tx = self.write().await?;
        let current = self.resolve_unit(&mut *tx, caller, key).await?;
        if is_member_management_restricted.is_some_and(|it| it != current.is_member_management_restricted) {
            return Err(AppError::BadRequest(
                "Property 'isMemberManagementRestricted' can be set only when the administrative unit is created."
                    .into(),
            ));
        }
        let mut unit = current.clone();
        if let Some(name) = display_name {
            let name = name.trim().to_owned();
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(AppError::BadRequest(
                    "Invalid value specified for property 'displayName' of resource 'AdministrativeUnit'.".into(),
                ));
            }
            unit.display_name = name;
        }
        if let Some(description) = description {
            unit.description = description;
        }
        if unit == current {
            return Ok(());
        }
        tx.update_administrative_unit(&unit).await?;
        let candidates = [
            (
                "DisplayName",
                json::string_array([current.display_name.as_str()]),
                json::string_array([unit.display_name.as_str()]),
            ),
            (
                "Description",
                json::string_array(current.description.as_deref()),
                json::string_array(unit.description.as_deref()),
            ),
        ];
        let changes: Vec<PropertyChange> = candidates
            .into_iter()
            .filter(|(_, old, new)| old != new)
            .map(|(name, old, new)| PropertyChange { name: name.into(), old_value: Some(old), new_value: Some(new) })
            .collect();
        let targets = vec![unit_target(&unit).with_changes(changes)];
        commit_audited(tx, [caller.succeeded(now, Activity::UpdateAdministrativeUnit, targets)]).await?;
        Ok(())
    }

    /// `DELETE /directory/administrativeUnits/{id}`: also ends its memberships and scoped assignments.
    pub async fn delete_unit(&self, caller: &Caller, key: &str) -> Result<(), AppError> {
        self.require_recorded(
            caller,
            actions::UNITS_WRITE,
            Target::Tenant,
            Activity::DeleteAdministrativeUnit,
            Vec::new,
        )
        .await?;
        let now = self.now();
        // Its members go with it, any number of them: a long write.
        let mut tx = self.write_long().await?;
        // Its scoped assignments and memberships end: who may act on whom changes (see
        // `facts::user_facts`).
        tx.lock_role_changes(&caller.tenant.id).await?;
        let unit = self.resolve_unit(&mut *tx, caller, key).await?;
        let filter =
            AssignmentFilter { directory_scope_id: Some(vec![unit_scope(&unit.id)]), ..AssignmentFilter::default() };
        let scoped = tx.list_role_assignments(&caller.tenant.id, &filter, None, keyward_store::ALL_ROWS).await?;
        for assignment in &scoped {
            let principal = resolve_object(&mut *tx, &caller.tenant, assignment.principal_id.as_str())
                .await
                .ok()
                .map(|it| object_target(&it));
            self.record_cascaded_removals(&mut *tx, caller, principal, std::slice::from_ref(assignment)).await?;
        }
        tx.delete_administrative_unit(&caller.tenant.id, &unit.id).await?;
        let targets = vec![unit_target(&unit)];
        commit_audited(tx, [caller.succeeded(now, Activity::DeleteAdministrativeUnit, targets)]).await?;
        Ok(())
    }

    /// `GET /directory/administrativeUnits/{id}/members`.
    pub async fn list_unit_members(
        &self,
        caller: &Caller,
        key: &str,
        top: usize,
        skiptoken: Option<&str>,
    ) -> Result<ItemPage<DirectoryObject>, AppError> {
        require(caller, actions::UNITS_READ, Target::Tenant)?;
        let after = crate::directory::decode_id_skiptoken(skiptoken)?;
        let mut tx = self.read().await?;
        let unit = self.resolve_unit(&mut *tx, caller, key).await?;
        let mut refs = tx.list_unit_members(&unit.id, after.as_deref(), top + 1).await?;
        let has_more = refs.len() > top;
        refs.truncate(top);
        let skiptoken =
            if has_more { refs.last().map(|it| crate::directory::id_skiptoken(it.id.as_str())) } else { None };
        let items = load_refs(&mut *tx, &caller.tenant, refs).await?;
        Ok(ItemPage { items, skiptoken })
    }

    /// `POST /directory/administrativeUnits/{id}/members/$ref` (users and groups).
    pub async fn add_unit_member(&self, caller: &Caller, key: &str, member_key: &str) -> Result<(), AppError> {
        self.require_recorded(
            caller,
            actions::UNITS_WRITE,
            Target::Tenant,
            Activity::AddMemberToAdministrativeUnit,
            Vec::new,
        )
        .await?;
        let now = self.now();
        let mut tx = self.write().await?;
        let unit = self.resolve_unit(&mut *tx, caller, key).await?;
        if unit.is_member_management_restricted {
            // Moving into a restricted unit changes who may act on the member (see `user_facts`).
            tx.lock_role_changes(&caller.tenant.id).await?;
        }
        let member = resolve_object(&mut *tx, &caller.tenant, member_key).await?;
        if tx.is_unit_member(&unit.id, member.id()).await? {
            return Err(AppError::BadRequest(
                "One or more added object references already exist for the following modified properties: 'members'."
                    .into(),
            ));
        }
        let kind = match &member {
            DirectoryObject::User(_) => ObjectKind::User,
            DirectoryObject::Group(_) => ObjectKind::Group,
            DirectoryObject::ServicePrincipal(_) => {
                return Err(AppError::BadRequest(
                    "Administrative units hold users and groups, not service principals.".into(),
                ));
            }
        };
        tx.insert_administrative_unit_member(&unit.id, &MemberRef { kind, id: member.id().clone() }).await?;
        let activity = if unit.is_member_management_restricted {
            Activity::AddMemberToRestrictedUnit
        } else {
            Activity::AddMemberToAdministrativeUnit
        };
        let targets = vec![object_target(&member), unit_target(&unit)];
        commit_audited(tx, [caller.succeeded(now, activity, targets)]).await?;
        Ok(())
    }

    /// `DELETE /directory/administrativeUnits/{id}/members/{memberId}/$ref`.
    pub async fn remove_unit_member(&self, caller: &Caller, key: &str, member_key: &str) -> Result<(), AppError> {
        self.require_recorded(
            caller,
            actions::UNITS_WRITE,
            Target::Tenant,
            Activity::RemoveMemberFromAdministrativeUnit,
            Vec::new,
        )
        .await?;
        let now = self.now();
        let mut tx = self.write().await?;
        // Leaving a unit changes who may act on the member (see `facts::user_facts`).
        tx.lock_role_changes(&caller.tenant.id).await?;
        let unit = self.resolve_unit(&mut *tx, caller, key).await?;
        let member = resolve_object(&mut *tx, &caller.tenant, member_key).await?;
        match tx.delete_administrative_unit_member(&unit.id, member.id()).await {
            Err(StoreError::NotFound) => return Err(AppError::NotFound(member_key.to_owned())),
            other => other?,
        }
        let activity = if unit.is_member_management_restricted {
            Activity::RemoveMemberFromRestrictedUnit
        } else {
            Activity::RemoveMemberFromAdministrativeUnit
        };
        let targets = vec![object_target(&member), unit_target(&unit)];
        commit_audited(tx, [caller.succeeded(now, activity, targets)]).await?;
        Ok(())
    }

    /// `GET /directory/administrativeUnits/{id}/scopedRoleMembers`: the assignments scoped to the unit.
    pub async fn list_scoped_role_members(
        &self,
        caller: &Caller,
        key: &str,
    ) -> Result<Vec<(RoleAssignment, Option<DirectoryObject>)>, AppError> {
        require(caller, actions::SCOPED_ROLE_MEMBERSHIPS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        let unit = self.resolve_unit(&mut *tx, caller, key).await?;
        let filter =
            AssignmentFilter { directory_scope_id: Some(vec![unit_scope(&unit.id)]), ..AssignmentFilter::default() };
        let assignments = tx.list_role_assignments(&caller.tenant.id, &filter, None, 10_000).await?;
        let mut res = Vec::with_capacity(assignments.len());
        for it in assignments {
            let member = resolve_object(&mut *tx, &caller.tenant, it.principal_id.as_str()).await.ok();
            res.push((it, member));
        }
        Ok(res)
    }
}
