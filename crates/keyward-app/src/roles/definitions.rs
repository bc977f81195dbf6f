//! Role definitions (built-in and custom) and the directory roles of the older API.

use crate::commit_audited;
use crate::directory::resolve_object;
use crate::{App, AppError, Caller, new_id, require};
use keyward_core::audit::Activity;
use keyward_core::audit::TargetResource;
use keyward_core::authz::custom::{self, CustomRole, CustomRoleDraft};
use keyward_core::authz::{self, BUILT_IN_ROLES, RoleDefinition, Target, actions};
use keyward_core::directory::{DirectoryObject, PropertyChange};
use keyward_core::ids::ObjectId;
use keyward_core::json;
use keyward_store::{AssignmentFilter, StoreError, Tx};

use super::RoleDef;

impl App {
    /// Finds a role definition by id or template id: built-in first, then the tenant's custom roles.
    pub(super) async fn find_role(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        id: &str,
    ) -> Result<Option<RoleDef>, AppError> {
        super::role_in(tx, &caller.tenant.id, id).await
    }

    /// `GET /roleManagement/directory/roleDefinitions`: built-in roles, then custom roles.
    pub async fn list_role_definitions(&self, caller: &Caller) -> Result<Vec<RoleDef>, AppError> {
        require(caller, actions::ROLE_DEFINITIONS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        let mut res: Vec<RoleDef> = BUILT_IN_ROLES.iter().map(RoleDef::BuiltIn).collect();
        res.extend(tx.list_custom_roles(&caller.tenant.id).await?.into_iter().map(RoleDef::Custom));
        Ok(res)
    }

    /// `GET /roleManagement/directory/roleDefinitions/{id}`.
    pub async fn get_role_definition(&self, caller: &Caller, id: &str) -> Result<RoleDef, AppError> {
        require(caller, actions::ROLE_DEFINITIONS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        self.find_role(&mut *tx, caller, id).await?.ok_or_else(|| AppError::NotFound(id.to_owned()))
    }

    /// `POST /roleManagement/directory/roleDefinitions`: a custom role.
    pub async fn create_role_definition(
        &self,
        caller: &Caller,
        draft: CustomRoleDraft,
    ) -> Result<CustomRole, AppError> {
        self.require_recorded(
            caller,
            actions::ROLE_DEFINITIONS_WRITE,
            Target::Tenant,
            Activity::AddRoleDefinition,
            Vec::new,
        )
        .await?;
        let now = self.now();
        let role = custom::new_custom_role(&caller.tenant.id, new_id(), draft, now)
            .map_err(|err| AppError::BadRequest(err.to_string()))?;
        if authz::built_in_role(&role.template_id).is_some()
            || BUILT_IN_ROLES.iter().any(|it| it.display_name.eq_ignore_ascii_case(&role.display_name))
        {
            return Err(AppError::BadRequest(
                "A built-in role already has this templateId or displayName; choose another.".into(),
            ));
        }
        let mut tx = self.write().await?;
        tx.insert_custom_role(&role).await.map_err(|err| match err {
            StoreError::Conflict { .. } => AppError::BadRequest(format!(
                "A role definition named '{}' or with templateId '{}' already exists.",
                role.display_name, role.template_id
            )),
            other => other.into(),
        })?;
        let changes = vec![
            PropertyChange {
                name: "RoleDefinition.DisplayName".into(),
                old_value: None,
                new_value: Some(json::string(&role.display_name)),
            },
            PropertyChange {
                name: "RoleDefinition.AllowedResourceActions".into(),
                old_value: None,
                new_value: Some(json::string_array(role.allowed_resource_actions.iter().map(String::as_str))),
            },
        ];
        let target = RoleDef::Custom(role.clone()).target()?.with_changes(changes);
        commit_audited(tx, [caller.succeeded(now, Activity::AddRoleDefinition, vec![target])]).await?;
        Ok(role)
    }

    /// `PATCH /roleManagement/directory/roleDefinitions/{id}`: custom roles only.
    pub async fn update_role_definition(
        &self,
        caller: &Caller,
        id: &str,
        draft: CustomRoleDraft,
    ) -> Result<(), AppError> {
        self.require_recorded(
            caller,
            actions::ROLE_DEFINITIONS_WRITE,
            Target::Tenant,
            Activity::UpdateRoleDefinition,
            Vec::new,
        )
        .await?;
        let now = self.now();
        let mut tx = self.write().await?;
        // A role's permissions decide who is privileged (see `facts::user_facts`).
        tx.lock_role_changes(&caller.tenant.id).await?;
        let current = match self.find_role(&mut *tx, caller, id).await? {
            None => return Err(AppError::NotFound(id.to_owned())),
            Some(RoleDef::BuiltIn(_)) => {
                return Err(AppError::BadRequest(custom::RoleDefinitionError::BuiltIn.to_string()));
            }
            Some(RoleDef::Custom(it)) => it,
        };
        let role = custom::update_custom_role(&current, draft).map_err(|err| AppError::BadRequest(err.to_string()))?;
        if BUILT_IN_ROLES.iter().any(|it| it.display_name.eq_ignore_ascii_case(&role.display_name)) {
            return Err(AppError::BadRequest("A built-in role already has this displayName; choose another.".into()));
        }
        if current.is_au_scopable() && !role.is_au_scopable() {
            let scoped = tx
                .list_role_assignments(
                    &caller.tenant.id,
                    &AssignmentFilter {
                        role_definition_id: Some(vec![role.id.to_string()]),
                        ..AssignmentFilter::default()
                    },
                    None,
                    keyward_store::ALL_ROWS,
                )
                .await?
                .into_iter()
                .any(|it| it.directory_scope_id != "/");
            if scoped {
                return Err(AppError::BadRequest(
                    "The role is assigned at an administrative unit scope, so it must keep at least one user or group permission.".into(),
                ));
            }
        }
        tx.update_custom_role(&role).await.map_err(|err| match err {
            StoreError::Conflict { .. } => {
                AppError::BadRequest(format!("A role definition named '{}' already exists.", role.display_name))
            }
            other => other.into(),
        })?;
        let actions_of = |it: &CustomRole| json::string_array(it.allowed_resource_actions.iter().map(String::as_str));
        let candidates = [
            ("RoleDefinition.DisplayName", json::string(&current.display_name), json::string(&role.display_name)),
            (
                "RoleDefinition.Description",
                json::string(current.description.as_deref().unwrap_or_default()),
                json::string(role.description.as_deref().unwrap_or_default()),
            ),
            ("RoleDefinition.IsEnabled", current.is_enabled.to_string(), role.is_enabled.to_string()),
            ("RoleDefinition.AllowedResourceActions", actions_of(&current), actions_of(&role)),
        ];
        let changes: Vec<PropertyChange> = candidates
            .into_iter()
            .filter(|(_, old, new)| old != new)
            .map(|(name, old, new)| PropertyChange { name: name.into(), old_value: Some(old), new_value: Some(new) })
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        let target = RoleDef::Custom(role).target()?.with_changes(changes);
        commit_audited(tx, [caller.succeeded(now, Activity::UpdateRoleDefinition, vec![target])]).await?;
        Ok(())
    }

    /// `DELETE /roleManagement/directory/roleDefinitions/{id}`: custom roles without assignments.
    pub async fn delete_role_definition(&self, caller: &Caller, id: &str) -> Result<(), AppError> {
        self.require_recorded(
            caller,
            actions::ROLE_DEFINITIONS_WRITE,
            Target::Tenant,
            Activity::DeleteRoleDefinition,
            Vec::new,
        )
        .await?;
        let now = self.now();
        let mut tx = self.write().await?;
        let role = match self.find_role(&mut *tx, caller, id).await? {
            None => return Err(AppError::NotFound(id.to_owned())),
            Some(RoleDef::BuiltIn(_)) => {
                return Err(AppError::BadRequest(custom::RoleDefinitionError::BuiltIn.to_string()));
            }
            Some(RoleDef::Custom(it)) => it,
        };
        let filter =
            AssignmentFilter { role_definition_id: Some(vec![role.id.to_string()]), ..AssignmentFilter::default() };
        // Held against a concurrent assignment or eligibility of this role.
        tx.lock_role_changes(&caller.tenant.id).await?;
        let role_id = role.id.to_string();
        let scheduled = tx.list_role_assignment_schedules(&caller.tenant.id, None).await?;
        if !tx.list_role_assignments(&caller.tenant.id, &filter, None, 1).await?.is_empty()
            || scheduled.iter().any(|it| it.role_definition_id.eq_ignore_ascii_case(&role_id))
        {
            return Err(AppError::BadRequest(
                "The role definition is assigned; delete its role assignments first.".into(),
            ));
        }
        let eligible = tx.list_eligibilities(&caller.tenant.id, None).await?;
        if eligible.iter().any(|it| it.role_definition_id.eq_ignore_ascii_case(&role_id)) {
            return Err(AppError::BadRequest(
                "Someone is eligible for the role definition; remove the eligibility first (roleEligibilityScheduleRequests, adminRemove).".into(),
            ));
        }
        tx.delete_custom_role(&caller.tenant.id, &role.id).await?;
        let target = RoleDef::Custom(role).target()?;
        commit_audited(tx, [caller.succeeded(now, Activity::DeleteRoleDefinition, vec![target])]).await?;
        Ok(())
    }

    /// `GET /directoryRoles`: the activated built-in roles.
    pub async fn list_directory_roles(&self, caller: &Caller) -> Result<Vec<&'static RoleDefinition>, AppError> {
        require(caller, actions::DIRECTORY_ROLES_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        activated_roles(&mut *tx, &caller.tenant.id).await
    }

    /// `GET /directoryRoles/{id}` (the id is the role's template id): 404 until it is activated.
    pub async fn get_directory_role(&self, caller: &Caller, id: &str) -> Result<&'static RoleDefinition, AppError> {
        self.list_directory_roles(caller)
            .await?
            .into_iter()
            .find(|it| it.id.eq_ignore_ascii_case(id))
            .ok_or_else(|| AppError::NotFound(id.to_owned()))
    }

    /// `GET /directoryRoleTemplates`: every built-in role, activated or not.
    pub fn list_directory_role_templates(&self, caller: &Caller) -> Result<&'static [RoleDefinition], AppError> {
        require(caller, actions::DIRECTORY_ROLES_READ, Target::Tenant)?;
        Ok(BUILT_IN_ROLES)
    }

    /// `POST /directoryRoles`: activates a built-in role from its template, so that the older API
    /// can read it and change its members. Activating an activated role is a conflict, as in Entra.
    pub async fn activate_directory_role(
        &self,
        caller: &Caller,
        role_template_id: &str,
    ) -> Result<&'static RoleDefinition, AppError> {
        let now = self.now();
        let named = TargetResource::named(role_template_id, "Role");
        // Decided before anything is looked up, as every role change.
        if let Err(err) = require(caller, actions::ROLE_ASSIGNMENTS_WRITE, Target::Tenant) {
            return Err(self
                .refused(None, caller, Activity::AddRoleFromTemplate, named.into_iter().collect(), err)
                .await);
        }
        let role = BUILT_IN_ROLES
            .iter()
            .find(|it| it.id.eq_ignore_ascii_case(role_template_id))
            .ok_or_else(|| AppError::NotFound(role_template_id.to_owned()))?;
        let conflict = || {
            AppError::BadRequest(
                "A conflicting object with one or more of the specified property values is present in the directory."
                    .into(),
            )
        };
        let mut tx = self.write().await?;
        let recorded = tx.list_activated_directory_roles(&caller.tenant.id).await?;
        if is_activated(&mut *tx, &caller.tenant.id, role, &recorded).await? {
            return Err(conflict());
        }
        // Two activations at once: the second finds the first's row and is the conflict.
        if !tx.activate_directory_role(&caller.tenant.id, role.id, now).await? {
            return Err(conflict());
        }
        let mut target = RoleDef::BuiltIn(role).target()?;
        target.modified_properties.push(PropertyChange {
            name: "Role.TemplateId".into(),
            old_value: None,
            new_value: Some(json::string(role.id)),
        });
        commit_audited(tx, [caller.succeeded(now, Activity::AddRoleFromTemplate, vec![target])]).await?;
        Ok(role)
    }

    /// `POST /directoryRoles/{id}/members/$ref`: a tenant-wide assignment of an activated role,
    /// made and decided as `POST /roleManagement/directory/roleAssignments` makes it.
    pub async fn add_directory_role_member(&self, caller: &Caller, id: &str, principal: &str) -> Result<(), AppError> {
        self.may_change_members(caller, actions::ROLE_ASSIGNMENTS_WRITE, Activity::AddMemberToRole, id, principal)
            .await?;
        let role = self.activated_role(&caller.tenant.id, id).await?;
        self.create_role_assignment(caller, principal, role.id, "/").await?;
        Ok(())
    }

    /// The activated built-in role `id` names (`404` otherwise), once the caller may change role
    /// members (`may_change_members`); the role-assignment use case that follows decides the rest.
    async fn activated_role(&self, tenant: &ObjectId, id: &str) -> Result<&'static RoleDefinition, AppError> {
        let role = BUILT_IN_ROLES
            .iter()
            .find(|it| it.id.eq_ignore_ascii_case(id))
            .ok_or_else(|| AppError::NotFound(id.to_owned()))?;
        let mut tx = self.read().await?;
        let recorded = tx.list_activated_directory_roles(tenant).await?;
        if is_activated(&mut *tx, tenant, role, &recorded).await? {
            Ok(role)
        } else {
            Err(AppError::NotFound(id.to_owned()))
        }
    }

    /// `DELETE /directoryRoles/{id}/members/{memberId}/$ref`: the member's tenant-wide assignment
    /// of the role ends, decided and recorded as `DELETE …/roleAssignments/{id}`. A member who
    /// holds it only through a group, or only at an administrative unit's scope, is not a member
    /// to remove here (404).
    pub async fn remove_directory_role_member(
        &self,
        caller: &Caller,
        id: &str,
        principal: &str,
    ) -> Result<(), AppError> {
        let principal_id = ObjectId::parse(principal)
            .ok_or_else(|| AppError::BadRequest(format!("Invalid object identifier '{principal}'.")))?;
        self.may_change_members(caller, actions::ROLE_ASSIGNMENTS_WRITE, Activity::RemoveMemberFromRole, id, principal)
            .await?;
        let role = self.activated_role(&caller.tenant.id, id).await?;
        let filter = AssignmentFilter {
            role_definition_id: Some(vec![role.id.into()]),
            directory_scope_id: Some(vec!["/".into()]),
            principal_id: Some(vec![principal_id]),
        };
        let assignments = {
            let mut tx = self.read().await?;
            tx.list_role_assignments(&caller.tenant.id, &filter, None, 10).await?
        };
        // A lasting assignment before a just-in-time activation of the same role (ending an
        // activation this way is recorded as removing the member, as this API knows no other).
        let assignment = assignments
            .iter()
            .find(|it| it.activated_using.is_none())
            .or_else(|| assignments.first())
            .ok_or_else(|| AppError::NotFound(principal.to_owned()))?;
        self.delete_role_assignment(caller, &assignment.id).await
    }

    /// `GET /directoryRoles/{id}/members`: principals with a tenant-wide assignment of the role.
    pub async fn directory_role_members(&self, caller: &Caller, id: &str) -> Result<Vec<DirectoryObject>, AppError> {
        let role = self.get_directory_role(caller, id).await?;
        let mut tx = self.read().await?;
        let filter = AssignmentFilter {
            role_definition_id: Some(vec![role.id.into()]),
            directory_scope_id: Some(vec!["/".into()]),
            ..AssignmentFilter::default()
        };
        let assignments = tx.list_role_assignments(&caller.tenant.id, &filter, None, 10_000).await?;
        let mut res = Vec::with_capacity(assignments.len());
        for it in assignments {
            if let Ok(object) = resolve_object(&mut *tx, &caller.tenant, it.principal_id.as_str()).await {
                res.push(object);
            }
        }
        Ok(res)
    }
}

/// The tenant's activated built-in roles: activated by `POST /directoryRoles` or by a tenant-wide
/// assignment since schema 31, or holding a tenant-wide assignment now.
async fn activated_roles(tx: &mut dyn Tx, tenant: &ObjectId) -> Result<Vec<&'static RoleDefinition>, AppError> {
    let recorded = tx.list_activated_directory_roles(tenant).await?;
    let tenant_wide = AssignmentFilter { directory_scope_id: Some(vec!["/".into()]), ..AssignmentFilter::default() };
    let assigned = tx.list_role_assignments(tenant, &tenant_wide, None, keyward_store::ALL_ROWS).await?;
    let is_named = |role: &RoleDefinition| {
        recorded.iter().any(|it| it.eq_ignore_ascii_case(role.id))
            || assigned.iter().any(|it| it.role_definition_id.eq_ignore_ascii_case(role.id))
    };
    Ok(BUILT_IN_ROLES.iter().filter(|role| is_named(role)).collect())
}

/// Whether `role` is activated: among the `recorded` activations, or assigned tenant-wide now.
async fn is_activated(
    tx: &mut dyn Tx,
    tenant: &ObjectId,
    role: &RoleDefinition,
    recorded: &[String],
) -> Result<bool, AppError> {
    if recorded.iter().any(|it| it.eq_ignore_ascii_case(role.id)) {
        return Ok(true);
    }
    let filter = AssignmentFilter {
        role_definition_id: Some(vec![role.id.into()]),
        directory_scope_id: Some(vec!["/".into()]),
        ..AssignmentFilter::default()
    };
    Ok(!tx.list_role_assignments(tenant, &filter, None, 1).await?.is_empty())
}
