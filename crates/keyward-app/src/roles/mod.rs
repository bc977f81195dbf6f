//! Role management: role definitions (built-in and custom), role assignments, directory roles,
//! administrative units and their scoped role members.

mod assignments;
mod definitions;
mod pim;
pub(crate) mod service_principals;
mod units;

pub use pim::{APPROVAL_TIMEOUT, Approval, CurrentUser, RolePolicy, ScheduleRequestInput};

use crate::AppError;
use keyward_core::audit::TargetResource;
use keyward_core::authz::RoleDefinition;
use keyward_core::authz::custom::CustomRole;
use keyward_core::ids::ObjectId;
use keyward_store::AdministrativeUnit;

/// A role definition: one of the catalog's, or one of the tenant's custom roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleDef {
    BuiltIn(&'static RoleDefinition),
    Custom(CustomRole),
}

/// A disabled custom role (`isEnabled` false) is not available for assignment, as in Entra.
pub(crate) fn require_enabled(role: &RoleDef) -> Result<(), AppError> {
    match role {
        RoleDef::Custom(custom) if !custom.is_enabled => Err(AppError::BadRequest(format!(
            "The role '{}' is disabled (isEnabled false) and is not available for assignment; enable it first.",
            custom.display_name
        ))),
        _ => Ok(()),
    }
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

impl crate::App {
    /// Whether the caller may change role members with `action` at all, decided before anything
    /// is looked up (so a refused caller learns nothing of who holds a role, which roles are
    /// activated or what exists) and recorded as `activity` on the role and principal named when
    /// refused.
    pub(crate) async fn may_change_members(
        &self,
        caller: &crate::Caller,
        action: &'static str,
        activity: keyward_core::audit::Activity,
        role: &str,
        principal: &str,
    ) -> Result<(), AppError> {
        let Err(err) = crate::require(caller, action, keyward_core::authz::Target::Tenant) else { return Ok(()) };
        let targets = [TargetResource::named(role, "Role"), TargetResource::named(principal, "Other")]
            .into_iter()
            .flatten()
            .collect();
        Err(self.refused(None, caller, activity, targets, err).await)
    }
}

/// Inserts a role assignment; one of a built-in role at the tenant's scope also activates the role
/// for the older directory-role API, where it stays activated when the assignment ends, as in
/// Entra.
pub(crate) async fn insert_assignment(
    tx: &mut dyn keyward_store::Tx,
    assignment: &keyward_store::RoleAssignment,
) -> Result<(), keyward_store::StoreError> {
    tx.insert_role_assignment(assignment).await?;
    if assignment.directory_scope_id == "/"
        && keyward_core::authz::built_in_role(&assignment.role_definition_id).is_some()
    {
        tx.activate_directory_role(&assignment.tenant_id, &assignment.role_definition_id, assignment.created).await?;
    }
    Ok(())
}

/// A role definition of `tenant` by id or template id: built-in first, then custom roles.
pub(crate) async fn role_in(
    tx: &mut dyn keyward_store::Tx,
    tenant: &ObjectId,
    id: &str,
) -> Result<Option<RoleDef>, AppError> {
    if let Some(role) = keyward_core::authz::built_in_role(id) {
        return Ok(Some(RoleDef::BuiltIn(role)));
    }
    Ok(tx.get_custom_role(tenant, id).await?.map(RoleDef::Custom))
}

/// A page of role assignments or administrative units, and the `$skiptoken` of the next page.
#[derive(Debug, Clone)]
pub struct ItemPage<T> {
    pub items: Vec<T>,
    pub skiptoken: Option<String>,
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

fn page<T>(items: Vec<T>, top: usize, id: impl Fn(&T) -> String) -> ItemPage<T> {
    page_with(items, top, |it| crate::directory::id_skiptoken(&id(it)))
}

/// The first `top` of `items` (read `top + 1` of them), and the `$skiptoken` that continues after
/// the last of those (`token`) when there are more.
pub(crate) fn page_with<T>(mut items: Vec<T>, top: usize, token: impl Fn(&T) -> String) -> ItemPage<T> {
    let has_more = items.len() > top;
    items.truncate(top);
    let skiptoken = if has_more { items.last().map(token) } else { None };
    ItemPage { items, skiptoken }
}
