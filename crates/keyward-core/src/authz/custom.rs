//! Custom role definitions: their shape and the rules for creating and changing them.

use time::OffsetDateTime;

use crate::authz::catalog::{is_custom_role_action, resource_action};
use crate::ids::ObjectId;

/// A tenant's custom role definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRole {
    pub id: ObjectId,
    pub tenant_id: ObjectId,
    pub display_name: String,
    pub description: Option<String>,
    pub is_enabled: bool,
    pub template_id: String,
    pub version: String,
    pub allowed_resource_actions: Vec<String>,
    pub created: OffsetDateTime,
}

impl CustomRole {
    /// Whether the role holds a privileged action (then it is privileged, as in Entra).
    pub fn is_privileged(&self) -> bool {
        self.allowed_resource_actions.iter().any(|it| resource_action(it).is_some_and(|action| action.is_privileged))
    }

    /// Whether the role may be assigned at an administrative-unit scope: it must hold at least one
    /// user or group permission (Entra's built-in roles reference).
    pub fn is_au_scopable(&self) -> bool {
        self.allowed_resource_actions
            .iter()
            .any(|it| it.starts_with("microsoft.directory/users/") || it.starts_with("microsoft.directory/groups/"))
    }
}

/// The fields of a custom role to create or change, already parsed from the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomRoleDraft {
    pub display_name: Option<String>,
    pub description: Option<Option<String>>,
    pub is_enabled: Option<bool>,
    pub template_id: Option<String>,
    pub version: Option<String>,
    pub allowed_resource_actions: Option<Vec<String>>,
}

/// Why a custom role definition was refused; the messages are Graph's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleDefinitionError {
    #[error("Invalid value specified for property '{0}' of resource 'UnifiedRoleDefinition'.")]
    InvalidValue(&'static str),
    #[error("Action '{0}' is not supported for Custom Role creation.")]
    UnsupportedAction(String),
    #[error("A custom role needs at least one allowed resource action in rolePermissions.")]
    NoActions,
    #[error("Built-in role definitions cannot be changed or deleted.")]
    BuiltIn,
}

/// The maximum number of actions in one custom role.
pub const MAX_ACTIONS: usize = 200;

fn check_actions(actions: &[String]) -> Result<Vec<String>, RoleDefinitionError> {
    if actions.is_empty() {
        return Err(RoleDefinitionError::NoActions);
    }
    if actions.len() > MAX_ACTIONS {
        return Err(RoleDefinitionError::InvalidValue("rolePermissions"));
    }
    let mut res = Vec::with_capacity(actions.len());
    for action in actions {
        match resource_action(action).filter(|it| is_custom_role_action(it.name)) {
            Some(known) => {
                if !res.contains(&known.name.to_owned()) {
                    res.push(known.name.to_owned());
                }
            }
            None => return Err(RoleDefinitionError::UnsupportedAction(action.clone())),
        }
    }
    Ok(res)
}

fn check_name(name: &str) -> Result<String, RoleDefinitionError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 256 || name.chars().any(char::is_control) {
        return Err(RoleDefinitionError::InvalidValue("displayName"));
    }
    Ok(name.to_owned())
}

/// Validates a new custom role: a display name and at least one action from Keyward's catalogue.
pub fn new_custom_role(
    tenant: &ObjectId,
    id: ObjectId,
    draft: CustomRoleDraft,
    now: OffsetDateTime,
) -> Result<CustomRole, RoleDefinitionError> {
    let Some(name) = draft.display_name else { return Err(RoleDefinitionError::InvalidValue("displayName")) };
    let Some(actions) = draft.allowed_resource_actions else { return Err(RoleDefinitionError::NoActions) };
    let description = draft.description.flatten().map(|it| it.trim().to_owned()).filter(|it| !it.is_empty());
    if description.as_deref().is_some_and(|it| it.chars().any(char::is_control) || it.chars().count() > 1024) {
        return Err(RoleDefinitionError::InvalidValue("description"));
    }
    let template_id = match draft.template_id {
        Some(it) => ObjectId::parse(&it).ok_or(RoleDefinitionError::InvalidValue("templateId"))?.to_string(),
        None => id.to_string(),
    };
    Ok(CustomRole {
        tenant_id: tenant.clone(),
        display_name: check_name(&name)?,
        description,
        is_enabled: draft.is_enabled.unwrap_or(true),
        template_id,
        version: draft.version.unwrap_or_else(|| "1".to_owned()),
        allowed_resource_actions: check_actions(&actions)?,
        created: now,
        id,
    })
}

/// Applies a change to a custom role.
pub fn update_custom_role(current: &CustomRole, draft: CustomRoleDraft) -> Result<CustomRole, RoleDefinitionError> {
    let mut role = current.clone();
    if let Some(name) = draft.display_name {
        role.display_name = check_name(&name)?;
    }
    if let Some(description) = draft.description {
        role.description = description.map(|it| it.trim().to_owned()).filter(|it| !it.is_empty());
    }
    if let Some(is_enabled) = draft.is_enabled {
        role.is_enabled = is_enabled;
    }
    if let Some(version) = draft.version {
        role.version = version;
    }
    if draft.template_id.is_some_and(|it| !it.eq_ignore_ascii_case(&current.template_id)) {
        return Err(RoleDefinitionError::InvalidValue("templateId"));
    }
    if let Some(actions) = draft.allowed_resource_actions {
        role.allowed_resource_actions = check_actions(&actions)?;
    }
    Ok(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::parse(&format!("00000000-0000-4000-8000-0000000000{n:02x}")).expect("guid")
    }

    #[test]
    fn custom_roles_hold_only_catalogue_actions() {
        let draft = CustomRoleDraft {
            display_name: Some("Per-user MFA operators".into()),
            allowed_resource_actions: Some(vec![
                "microsoft.directory/users/strongAuthentication/update".into(),
                "microsoft.directory/users/standard/read".into(),
            ]),
            ..CustomRoleDraft::default()
        };
        let role = new_custom_role(&id(1), id(2), draft.clone(), OffsetDateTime::UNIX_EPOCH).expect("valid");
        assert!(role.is_enabled && role.is_au_scopable() && !role.is_privileged());
        assert_eq!(role.template_id, id(2).to_string());
        let bad = CustomRoleDraft {
            allowed_resource_actions: Some(vec!["microsoft.directory/policies/standard/read".into()]),
            ..draft.clone()
        };
        let err = new_custom_role(&id(1), id(2), bad, OffsetDateTime::UNIX_EPOCH).expect_err("unsupported");
        assert_eq!(
            err.to_string(),
            "Action 'microsoft.directory/policies/standard/read' is not supported for Custom Role creation."
        );
        let none = CustomRoleDraft { allowed_resource_actions: Some(Vec::new()), ..draft };
        assert_eq!(
            new_custom_role(&id(1), id(2), none.clone(), OffsetDateTime::UNIX_EPOCH),
            Err(RoleDefinitionError::NoActions)
        );
        let escalation = CustomRoleDraft {
            allowed_resource_actions: Some(vec!["microsoft.directory/roleAssignments/allProperties/allTasks".into()]),
            ..none
        };
        assert!(matches!(
            new_custom_role(&id(1), id(2), escalation, OffsetDateTime::UNIX_EPOCH),
            Err(RoleDefinitionError::UnsupportedAction(_))
        ));
    }
}
