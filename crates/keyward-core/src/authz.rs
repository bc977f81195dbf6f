//! Authorization: the resource actions Keyward checks, the role catalog, and the decision function.
//!
//! Every handler names the Entra resource action it needs and asks [`authorize`]; nothing else
//! decides. This catalog holds the Global Administrator and the default permissions of a
//! member user; the full catalog and the who-may-act-on-whom matrices build on the same shape.

use crate::ids::ObjectId;

/// Resource actions checked by Keyward, spelled as Entra spells them.
pub mod actions {
    pub const USERS_READ: &str = "microsoft.directory/users/standard/read";
    pub const USERS_CREATE: &str = "microsoft.directory/users/create";
    pub const USERS_BASIC_UPDATE: &str = "microsoft.directory/users/basic/update";
    pub const USERS_DELETE: &str = "microsoft.directory/users/delete";
    pub const USERS_DISABLE: &str = "microsoft.directory/users/disable";
    pub const USERS_ENABLE: &str = "microsoft.directory/users/enable";
    pub const USERS_PASSWORD_UPDATE: &str = "microsoft.directory/users/password/update";
    pub const USERS_UPN_UPDATE: &str = "microsoft.directory/users/userPrincipalName/update";
    pub const USERS_MEMBER_OF_READ: &str = "microsoft.directory/users/memberOf/read";
    pub const GROUPS_READ: &str = "microsoft.directory/groups/standard/read";
    pub const GROUPS_CREATE: &str = "microsoft.directory/groups/create";
    pub const GROUPS_BASIC_UPDATE: &str = "microsoft.directory/groups/basic/update";
    pub const GROUPS_DELETE: &str = "microsoft.directory/groups/delete";
    pub const GROUPS_MEMBERS_READ: &str = "microsoft.directory/groups/members/read";
    pub const GROUPS_MEMBERS_UPDATE: &str = "microsoft.directory/groups/members/update";
    pub const GROUPS_OWNERS_READ: &str = "microsoft.directory/groups/owners/read";
    pub const GROUPS_OWNERS_UPDATE: &str = "microsoft.directory/groups/owners/update";
    pub const ROLE_ASSIGNABLE_GROUPS_CREATE: &str = "microsoft.directory/groupsAssignableToRoles/create";
    pub const ROLE_ASSIGNABLE_GROUPS_DELETE: &str = "microsoft.directory/groupsAssignableToRoles/delete";
    pub const ROLE_ASSIGNABLE_GROUPS_UPDATE: &str = "microsoft.directory/groupsAssignableToRoles/allProperties/update";
    pub const ORGANIZATION_READ: &str = "microsoft.directory/organization/standard/read";
    pub const AUDIT_LOGS_READ: &str = "microsoft.directory/auditLogs/allProperties/read";
}

/// Built-in role template ids (= role definition ids), from entra.md §1.
pub mod roles {
    pub const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";
    pub const PRIVILEGED_AUTHENTICATION_ADMINISTRATOR: &str = "7be44c8a-adaf-4e2a-84d6-ab2649e08a13";
    pub const AUTHENTICATION_ADMINISTRATOR: &str = "c4e39bd9-1100-46d3-8c65-fb160da0071f";
    pub const HELPDESK_ADMINISTRATOR: &str = "729827e3-9c14-49f7-bb1b-9608f156bbb8";

    /// Display names of the roles Keyward names before the full catalog lands.
    pub const NAMES: &[(&str, &str)] = &[
        (GLOBAL_ADMINISTRATOR, "Global Administrator"),
        (PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, "Privileged Authentication Administrator"),
        (AUTHENTICATION_ADMINISTRATOR, "Authentication Administrator"),
        (HELPDESK_ADMINISTRATOR, "Helpdesk Administrator"),
    ];

    /// The display name of a role template id, if Keyward knows it.
    pub fn display_name(id: &str) -> Option<&'static str> {
        NAMES.iter().find(|(it, _)| it.eq_ignore_ascii_case(id)).map(|(_, name)| *name)
    }
}

/// A role definition as the decision function sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDefinition {
    pub id: &'static str,
    pub display_name: &'static str,
    pub allowed_resource_actions: &'static [&'static str],
}

/// The roles whose permissions Keyward enforces in this version of the catalog.
pub const CATALOG: &[RoleDefinition] = &[RoleDefinition {
    id: roles::GLOBAL_ADMINISTRATOR,
    display_name: "Global Administrator",
    allowed_resource_actions: &[
        "microsoft.directory/users/allProperties/allTasks",
        "microsoft.directory/groups/allProperties/allTasks",
        "microsoft.directory/groupsAssignableToRoles/create",
        "microsoft.directory/groupsAssignableToRoles/delete",
        "microsoft.directory/groupsAssignableToRoles/allProperties/update",
        "microsoft.directory/organization/allProperties/allTasks",
        "microsoft.directory/roleAssignments/allProperties/allTasks",
        "microsoft.directory/auditLogs/allProperties/read",
    ],
}];

/// What every member user may do without a role (Entra's default user permissions, read side).
pub const DEFAULT_USER_PERMISSIONS: &[&str] = &[
    actions::USERS_READ,
    actions::USERS_MEMBER_OF_READ,
    actions::GROUPS_READ,
    actions::GROUPS_MEMBERS_READ,
    actions::GROUPS_OWNERS_READ,
    actions::ORGANIZATION_READ,
];

/// Looks a role up in the catalog by its id (= template id).
pub fn role(id: &str) -> Option<&'static RoleDefinition> {
    CATALOG.iter().find(|it| it.id.eq_ignore_ascii_case(id))
}

/// Where a role assignment applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Tenant,
    AdministrativeUnit(ObjectId),
}

/// One active role assignment of the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRole {
    pub role_definition_id: String,
    pub scope: Scope,
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: ObjectId,
    pub roles: Vec<ActiveRole>,
}

/// What the action is done to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The tenant as a whole: reads of collections, creation of new objects.
    Tenant,
    /// An existing user.
    User(&'a ObjectId),
    /// An existing group.
    Group(&'a ObjectId),
}

/// The outcome of a decision; a denial names the rule that refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow { rule: &'static str },
    Deny { rule: &'static str },
}

impl Decision {
    /// Whether the decision allows the action.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// Decides whether `actor` may perform `action` on `target`.
pub fn authorize(actor: &Actor, action: &str, target: Target<'_>) -> Decision {
    let _ = target;
    for assignment in &actor.roles {
        let Some(definition) = role(&assignment.role_definition_id) else { continue };
        if assignment.scope != Scope::Tenant {
            continue;
        }
        if definition.allowed_resource_actions.iter().any(|pattern| grants(pattern, action)) {
            return Decision::Allow { rule: "role-grants-action" };
        }
    }
    if DEFAULT_USER_PERMISSIONS.iter().any(|pattern| grants(pattern, action)) {
        return Decision::Allow { rule: "default-user-permissions" };
    }
    Decision::Deny { rule: "no-role-grants-action" }
}

/// Whether an allowed-resource-action `pattern` covers `action`.
///
/// Entra's grammar is `namespace/entity/propertySet/verb`; `allProperties/allTasks` covers every
/// action on the entity, `allProperties/read` every read of it.
pub fn grants(pattern: &str, action: &str) -> bool {
    if pattern.eq_ignore_ascii_case(action) {
        return true;
    }
    let Some(entity) = entity_of(pattern) else { return false };
    if entity_of(action) != Some(entity) {
        return false;
    }
    let rest = &pattern[entity.len()..];
    match rest {
        "/allProperties/allTasks" => true,
        "/allProperties/read" => action.ends_with("/read"),
        _ => false,
    }
}

fn entity_of(action: &str) -> Option<&str> {
    let mut slashes = action.match_indices('/');
    let (_, _) = slashes.next()?;
    let (second, _) = slashes.next()?;
    Some(&action[..second])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(roles: &[&str]) -> Actor {
        Actor {
            id: ObjectId::parse("00000000-0000-0000-0000-000000000001").expect("guid"),
            roles: roles
                .iter()
                .map(|it| ActiveRole { role_definition_id: (*it).to_owned(), scope: Scope::Tenant })
                .collect(),
        }
    }

    #[test]
    fn patterns_cover_actions_by_entity() {
        let cases = [
            ("microsoft.directory/users/allProperties/allTasks", actions::USERS_DELETE, true),
            ("microsoft.directory/users/allProperties/allTasks", actions::GROUPS_DELETE, false),
            ("microsoft.directory/users/allProperties/read", actions::USERS_READ, true),
            ("microsoft.directory/users/allProperties/read", actions::USERS_CREATE, false),
            ("microsoft.directory/groups/allProperties/allTasks", actions::ROLE_ASSIGNABLE_GROUPS_CREATE, false),
            (actions::USERS_READ, actions::USERS_READ, true),
            ("microsoft.directory/users", actions::USERS_READ, false),
        ];
        for (pattern, action, expected) in cases {
            assert_eq!(grants(pattern, action), expected, "{pattern} vs {action}");
        }
    }

    #[test]
    fn global_administrator_may_write_and_plain_users_may_only_read() {
        let admin = actor(&[roles::GLOBAL_ADMINISTRATOR]);
        let user = actor(&[]);
        let target_id = ObjectId::parse("00000000-0000-0000-0000-000000000002").expect("guid");
        for action in [actions::USERS_CREATE, actions::USERS_DELETE, actions::GROUPS_MEMBERS_UPDATE] {
            assert!(authorize(&admin, action, Target::User(&target_id)).is_allowed(), "{action}");
            assert_eq!(
                authorize(&user, action, Target::User(&target_id)),
                Decision::Deny { rule: "no-role-grants-action" }
            );
        }
        assert_eq!(
            authorize(&user, actions::USERS_READ, Target::Tenant),
            Decision::Allow { rule: "default-user-permissions" }
        );
        let unknown = actor(&["00000000-0000-0000-0000-00000000ffff"]);
        assert!(!authorize(&unknown, actions::USERS_CREATE, Target::Tenant).is_allowed());
    }

    #[test]
    fn au_scoped_assignments_do_not_act_tenant_wide_yet() {
        let mut admin = actor(&[roles::GLOBAL_ADMINISTRATOR]);
        admin.roles[0].scope = Scope::AdministrativeUnit(admin.id.clone());
        assert!(!authorize(&admin, actions::USERS_CREATE, Target::Tenant).is_allowed());
    }
}
