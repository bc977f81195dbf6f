//! Role management: role definitions (built-in and custom), role assignments, directory roles,
//! administrative units and their scoped role members.

use keyward_core::audit::{Activity, TargetResource};
use keyward_core::authz::custom::{self, CustomRole, CustomRoleDraft};
use keyward_core::authz::{self, BUILT_IN_ROLES, RoleDefinition, Target, actions};
use keyward_core::directory::{self, DirectoryObject, ObjectKind, PropertyChange, ServicePrincipal, User};
use keyward_core::ids::ObjectId;
use keyward_core::json;
use keyward_store::{AdministrativeUnit, AssignmentFilter, MemberRef, RoleAssignment, StoreError, Tx};

use crate::commit_audited;
use crate::directory::{load_refs, object_target, resolve_object, resolve_user};
use crate::facts::{RoleChange, check_global_administrator_change};
use crate::{App, AppError, Caller, audit_id, new_id, require};

/// A role definition: one of the catalog's, or one of the tenant's custom roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleDef {
    BuiltIn(&'static RoleDefinition),
    Custom(CustomRole),
}

impl RoleDef {
    pub fn id(&self) -> String {
        match self {
            RoleDef::BuiltIn(it) => it.id.to_owned(),
            RoleDef::Custom(it) => it.id.to_string(),
        }
    }

    pub fn template_id(&self) -> String {
        match self {
            RoleDef::BuiltIn(it) => it.id.to_owned(),
            RoleDef::Custom(it) => it.template_id.clone(),
        }
    }

    pub fn display_name(&self) -> &str {
        match self {
            RoleDef::BuiltIn(it) => it.display_name,
            RoleDef::Custom(it) => &it.display_name,
        }
    }

    pub fn is_au_scopable(&self) -> bool {
        match self {
            RoleDef::BuiltIn(it) => it.is_au_scopable,
            RoleDef::Custom(it) => it.is_au_scopable(),
        }
    }

    pub fn is_privileged(&self) -> bool {
        match self {
            RoleDef::BuiltIn(it) => it.is_privileged,
            RoleDef::Custom(it) => it.is_privileged(),
        }
    }

    fn target(&self) -> Result<TargetResource, AppError> {
        let id = ObjectId::parse(&self.id())
            .ok_or_else(|| AppError::Unexpected(anyhow::anyhow!("role id is not a GUID")))?;
        Ok(TargetResource {
            id,
            display_name: Some(self.display_name().to_owned()),
            kind: "Role",
            user_principal_name: None,
            modified_properties: Vec::new(),
        })
    }
}

/// A page of role assignments or administrative units, and the `$skiptoken` of the next page.
#[derive(Debug, Clone)]
pub struct ItemPage<T> {
    pub items: Vec<T>,
    pub skiptoken: Option<String>,
}

/// What `transitiveMemberOf` returns: groups (through nesting) and the directory roles held.
#[derive(Debug, Clone)]
pub struct Memberships {
    pub groups: Vec<DirectoryObject>,
    pub roles: Vec<&'static RoleDefinition>,
}

fn unit_scope(unit: &ObjectId) -> String {
    format!("/administrativeUnits/{unit}")
}

fn unit_target(unit: &AdministrativeUnit) -> TargetResource {
    TargetResource {
        id: unit.id.clone(),
        display_name: Some(unit.display_name.clone()),
        kind: "Other",
        user_principal_name: None,
        modified_properties: Vec::new(),
    }
}

fn page<T>(mut items: Vec<T>, top: usize, id: impl Fn(&T) -> String) -> ItemPage<T> {
    let has_more = items.len() > top;
    items.truncate(top);
    let skiptoken = if has_more { items.last().map(|it| crate::directory::id_skiptoken(&id(it))) } else { None };
    ItemPage { items, skiptoken }
}

impl App {
    /// Finds a role definition by id or template id: built-in first, then the tenant's custom roles.
    async fn find_role(&self, tx: &mut dyn Tx, caller: &Caller, id: &str) -> Result<Option<RoleDef>, AppError> {
        if let Some(role) = authz::built_in_role(id) {
            return Ok(Some(RoleDef::BuiltIn(role)));
        }
        Ok(tx.get_custom_role(&caller.tenant.id, id).await?.map(RoleDef::Custom))
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
                    &AssignmentFilter { role_definition_id: Some(role.id.to_string()), ..AssignmentFilter::default() },
                    None,
                    100_000,
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
        let filter = AssignmentFilter { role_definition_id: Some(role.id.to_string()), ..AssignmentFilter::default() };
        if !tx.list_role_assignments(&caller.tenant.id, &filter, None, 1).await?.is_empty() {
            return Err(AppError::BadRequest(
                "The role definition is assigned; delete its role assignments first.".into(),
            ));
        }
        tx.delete_custom_role(&caller.tenant.id, &role.id).await?;
        let target = RoleDef::Custom(role).target()?;
        commit_audited(tx, [caller.succeeded(now, Activity::DeleteRoleDefinition, vec![target])]).await?;
        Ok(())
    }

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
        // Decide before looking anything up: a refused caller learns nothing about what exists.
        if let Err(err) = require(caller, action, Target::Tenant) {
            let named = |id: &str, kind: &'static str| {
                ObjectId::parse(id).map(|id| TargetResource {
                    id,
                    display_name: None,
                    kind,
                    user_principal_name: None,
                    modified_properties: Vec::new(),
                })
            };
            let targets =
                [named(role_definition_id, "Role"), named(principal_id, "Other")].into_iter().flatten().collect();
            return Err(self.refused(None, caller, first_activity, targets, err).await);
        }
        let mut tx = self.write().await?;
        // A promotion: held off while a target-sensitive decision is in flight (see `user_facts`).
        tx.lock_role_changes(&caller.tenant.id).await?;
        let role = self
            .find_role(&mut *tx, caller, role_definition_id)
            .await?
            .ok_or_else(|| AppError::NotFound(role_definition_id.to_owned()))?;
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
        };
        tx.insert_role_assignment(&assignment).await.map_err(|err| match err {
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
        commit_audited(tx, [caller.succeeded(now, activity, targets)]).await?;
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

    /// `GET /directoryRoles`: built-in roles with at least one tenant-wide assignment ("activated").
    pub async fn list_directory_roles(&self, caller: &Caller) -> Result<Vec<&'static RoleDefinition>, AppError> {
        require(caller, actions::DIRECTORY_ROLES_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        let mut res = Vec::new();
        for role in BUILT_IN_ROLES {
            let filter = AssignmentFilter {
                role_definition_id: Some(role.id.into()),
                directory_scope_id: Some("/".into()),
                ..AssignmentFilter::default()
            };
            if !tx.list_role_assignments(&caller.tenant.id, &filter, None, 1).await?.is_empty() {
                res.push(role);
            }
        }
        Ok(res)
    }

    /// `GET /directoryRoles/{id}` (the id is the role's template id).
    pub async fn get_directory_role(&self, caller: &Caller, id: &str) -> Result<&'static RoleDefinition, AppError> {
        self.list_directory_roles(caller)
            .await?
            .into_iter()
            .find(|it| it.id.eq_ignore_ascii_case(id))
            .ok_or_else(|| AppError::NotFound(id.to_owned()))
    }

    /// `GET /directoryRoles/{id}/members`: principals with a tenant-wide assignment of the role.
    pub async fn directory_role_members(&self, caller: &Caller, id: &str) -> Result<Vec<DirectoryObject>, AppError> {
        let role = self.get_directory_role(caller, id).await?;
        let mut tx = self.read().await?;
        let filter = AssignmentFilter {
            role_definition_id: Some(role.id.into()),
            directory_scope_id: Some("/".into()),
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

    /// `GET /users/{id}/transitiveMemberOf`: groups through nesting, and the directory roles the
    /// user holds tenant-wide (directly or through a role-assignable group).
    pub async fn transitive_member_of(&self, caller: &Caller, key: &str) -> Result<Memberships, AppError> {
        let mut tx = self.read().await?;
        let user: User = resolve_user(&mut *tx, &caller.tenant, key).await?;
        require(caller, actions::USERS_MEMBER_OF_READ, Target::Tenant)?;
        let mut seen: Vec<ObjectId> = Vec::new();
        let mut frontier = vec![user.id.clone()];
        while let Some(next) = frontier.pop() {
            for group in tx.list_member_of(&next, None, 10_000).await? {
                if !seen.contains(&group) {
                    seen.push(group.clone());
                    frontier.push(group);
                }
            }
        }
        let refs = seen.into_iter().map(|id| MemberRef { kind: ObjectKind::Group, id }).collect();
        let groups = load_refs(&mut *tx, &caller.tenant, refs).await?;
        let mut roles: Vec<&'static RoleDefinition> = tx
            .list_role_assignments_for(&caller.tenant.id, &user.id)
            .await?
            .iter()
            .filter(|it| it.directory_scope_id == "/")
            .filter_map(|it| authz::built_in_role(&it.role_definition_id))
            .collect();
        roles.sort_by_key(|it| it.display_name);
        roles.dedup();
        Ok(Memberships { groups, roles })
    }

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

    async fn resolve_unit(&self, tx: &mut dyn Tx, caller: &Caller, key: &str) -> Result<AdministrativeUnit, AppError> {
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
        let mut tx = self.write().await?;
        let unit = self.resolve_unit(&mut *tx, caller, key).await?;
        let filter = AssignmentFilter { directory_scope_id: Some(unit_scope(&unit.id)), ..AssignmentFilter::default() };
        let scoped = tx.list_role_assignments(&caller.tenant.id, &filter, None, 100_000).await?;
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
        let filter = AssignmentFilter { directory_scope_id: Some(unit_scope(&unit.id)), ..AssignmentFilter::default() };
        let assignments = tx.list_role_assignments(&caller.tenant.id, &filter, None, 10_000).await?;
        let mut res = Vec::with_capacity(assignments.len());
        for it in assignments {
            let member = resolve_object(&mut *tx, &caller.tenant, it.principal_id.as_str()).await.ok();
            res.push((it, member));
        }
        Ok(res)
    }

    /// `GET /servicePrincipals`.
    pub async fn list_service_principals(
        &self,
        caller: &Caller,
        top: usize,
        skiptoken: Option<&str>,
    ) -> Result<ItemPage<ServicePrincipal>, AppError> {
        require(caller, actions::SERVICE_PRINCIPALS_READ, Target::Tenant)?;
        let after = crate::directory::decode_id_skiptoken(skiptoken)?;
        let mut tx = self.read().await?;
        let items = tx.list_service_principals(&caller.tenant.id, after.as_deref(), top + 1).await?;
        Ok(page(items, top, |it| it.id.to_string()))
    }

    /// `GET /servicePrincipals/{id}`.
    pub async fn get_service_principal(&self, caller: &Caller, key: &str) -> Result<ServicePrincipal, AppError> {
        require(caller, actions::SERVICE_PRINCIPALS_READ, Target::Tenant)?;
        let id =
            ObjectId::parse(key).ok_or_else(|| AppError::BadRequest(format!("Invalid object identifier '{key}'.")))?;
        let mut tx = self.read().await?;
        tx.get_service_principal(&caller.tenant.id, &id).await?.ok_or_else(|| AppError::NotFound(key.to_owned()))
    }

    /// `POST /servicePrincipals`: an application's identity in this tenant (one per appId).
    pub async fn create_service_principal(
        &self,
        caller: &Caller,
        app_id: Option<String>,
        display_name: Option<String>,
        account_enabled: Option<bool>,
    ) -> Result<ServicePrincipal, AppError> {
        self.require_recorded(
            caller,
            actions::SERVICE_PRINCIPALS_CREATE,
            Target::Tenant,
            Activity::AddServicePrincipal,
            Vec::new,
        )
        .await?;
        let now = self.now();
        let principal =
            directory::new_service_principal(&caller.tenant, new_id(), app_id, display_name, account_enabled, now)
                .map_err(|err| AppError::BadRequest(err.to_string()))?;
        let mut tx = self.write().await?;
        tx.insert_service_principal(&principal).await.map_err(|err| match err {
            StoreError::Conflict { .. } => AppError::BadRequest(format!(
                "A service principal for appId '{}' already exists in this tenant.",
                principal.app_id
            )),
            other => other.into(),
        })?;
        let changes = vec![PropertyChange {
            name: "AppId".into(),
            old_value: None,
            new_value: Some(json::string_array([principal.app_id.as_str()])),
        }];
        let targets = vec![TargetResource::service_principal(&principal).with_changes(changes)];
        commit_audited(tx, [caller.succeeded(now, Activity::AddServicePrincipal, targets)]).await?;
        Ok(principal)
    }

    /// `DELETE /servicePrincipals/{id}`: also ends its role assignments and memberships.
    pub async fn delete_service_principal(&self, caller: &Caller, key: &str) -> Result<(), AppError> {
        self.require_recorded(
            caller,
            actions::SERVICE_PRINCIPALS_DELETE,
            Target::Tenant,
            Activity::RemoveServicePrincipal,
            Vec::new,
        )
        .await?;
        let id =
            ObjectId::parse(key).ok_or_else(|| AppError::BadRequest(format!("Invalid object identifier '{key}'.")))?;
        let now = self.now();
        let mut tx = self.write().await?;
        let principal = tx
            .get_service_principal(&caller.tenant.id, &id)
            .await?
            .ok_or_else(|| AppError::NotFound(key.to_owned()))?;
        // A principal that holds a role is deleted only by the roles that could assign it.
        let facts = crate::facts::service_principal_facts(&mut *tx, &caller.tenant, &principal.id).await?;
        if let Err(err) = require(caller, actions::SERVICE_PRINCIPALS_DELETE, Target::Application(&facts)) {
            let targets = vec![TargetResource::service_principal(&principal)];
            return Err(self.refused(Some(tx), caller, Activity::RemoveServicePrincipal, targets, err).await);
        }
        let filter = AssignmentFilter { principal_id: Some(principal.id.clone()), ..AssignmentFilter::default() };
        let assignments = tx.list_role_assignments(&caller.tenant.id, &filter, None, 100_000).await?;
        self.record_cascaded_removals(
            &mut *tx,
            caller,
            Some(TargetResource::service_principal(&principal)),
            &assignments,
        )
        .await?;
        tx.delete_memberships_of(&principal.id).await?;
        tx.delete_role_assignments_of(&principal.id).await?;
        tx.delete_service_principal(&caller.tenant.id, &principal.id).await?;
        let targets = vec![TargetResource::service_principal(&principal)];
        commit_audited(tx, [caller.succeeded(now, Activity::RemoveServicePrincipal, targets)]).await?;
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
            tx.insert_audit(&caller.succeeded(now, activity, targets)).await?;
        }
        Ok(())
    }

    /// Asks the decision function before a change opens its transaction; a refusal is recorded as a
    /// failure of `activity`.
    pub(crate) async fn require_recorded(
        &self,
        caller: &Caller,
        action: &'static str,
        target: Target<'_>,
        activity: Activity,
        targets: impl FnOnce() -> Vec<TargetResource>,
    ) -> Result<(), AppError> {
        match require(caller, action, target) {
            Ok(()) => Ok(()),
            Err(err) => Err(self.refused(None, caller, activity, targets(), err).await),
        }
    }

    /// Records a refused attempt after dropping the caller's transaction (on SQLite it holds the
    /// write lock), and hands the refusal back.
    pub(crate) async fn refused(
        &self,
        tx: Option<Box<dyn Tx>>,
        caller: &Caller,
        activity: Activity,
        targets: Vec<TargetResource>,
        err: AppError,
    ) -> AppError {
        drop(tx);
        let AppError::Forbidden { message, .. } = &err else { return err };
        let record =
            caller.audit(self.now()).failure(audit_id(&caller.meta.correlation_id), activity, targets, message);
        let written = async {
            let tx = self.write().await?;
            commit_audited(tx, [record]).await?;
            Ok::<(), AppError>(())
        };
        if let Err(write_err) = written.await {
            tracing::error!(error = %write_err, "could not record a refused attempt in the audit log");
        }
        err
    }
}
