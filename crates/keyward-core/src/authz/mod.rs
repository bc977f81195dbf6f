//! Authorization: the resource actions Keyward checks, the role catalog, and the decision function.
//!
//! Every handler names the Entra resource action it needs and asks [`authorize`]; nothing else
//! decides. The rules are data: the role catalog (`catalog.rs`), Entra's two who-may-act-on-whom tables
//! (`matrix.rs`), and the cross-cutting rules below, each with a name a denial reports.

pub mod catalog;
pub mod custom;
pub mod matrix;
mod table;

use crate::ids::ObjectId;

pub use crate::authz::catalog::{
    BUILT_IN_ROLES, RESOURCE_ACTIONS, ResourceAction, RoleDefinition, built_in_role, resource_action, roles,
};

/// Resource actions checked by Keyward, spelled as Entra spells them.
pub mod actions {
    pub const USERS_READ: &str = "microsoft.directory/users/standard/read";
    pub const USERS_CREATE: &str = "microsoft.directory/users/create";
    pub const USERS_BASIC_UPDATE: &str = "microsoft.directory/users/basic/update";
    pub const USERS_MANAGER_UPDATE: &str = "microsoft.directory/users/manager/update";
    /// `mobilePhone`, `businessPhones` and `otherMails`: sensitive (Entra's "Who can perform sensitive actions" table), since whoever
    /// changes them can take the account over through self-service password reset or MFA.
    pub const USERS_CONTACT_INFO_UPDATE: &str = "microsoft.directory/users/contactInfo/update";
    pub const USERS_DELETE: &str = "microsoft.directory/users/delete";
    pub const USERS_RESTORE: &str = "microsoft.directory/users/restore";
    pub const USERS_DISABLE: &str = "microsoft.directory/users/disable";
    pub const USERS_ENABLE: &str = "microsoft.directory/users/enable";
    pub const USERS_PASSWORD_UPDATE: &str = "microsoft.directory/users/password/update";
    pub const USERS_UPN_UPDATE: &str = "microsoft.directory/users/userPrincipalName/update";
    pub const USERS_MEMBER_OF_READ: &str = "microsoft.directory/users/memberOf/read";
    pub const USERS_INVALIDATE_REFRESH_TOKENS: &str = "microsoft.directory/users/invalidateAllRefreshTokens";
    pub const USERS_AUTH_METHODS_CREATE: &str = "microsoft.directory/users/authenticationMethods/create";
    pub const USERS_AUTH_METHODS_DELETE: &str = "microsoft.directory/users/authenticationMethods/delete";
    pub const USERS_AUTH_METHODS_UPDATE: &str = "microsoft.directory/users/authenticationMethods/basic/update";
    pub const USERS_AUTH_METHODS_READ: &str = "microsoft.directory/users/authenticationMethods/standard/read";
    pub const USERS_AUTH_METHODS_RESTRICTED_READ: &str =
        "microsoft.directory/users/authenticationMethods/standard/restrictedRead";
    /// Per-user MFA state; Keyward's name for the legacy action (Entra's built-in roles reference).
    pub const USERS_STRONG_AUTHENTICATION_UPDATE: &str = "microsoft.directory/users/strongAuthentication/update";
    pub const GROUPS_READ: &str = "microsoft.directory/groups/standard/read";
    pub const GROUPS_CREATE: &str = "microsoft.directory/groups/create";
    pub const GROUPS_BASIC_UPDATE: &str = "microsoft.directory/groups/basic/update";
    pub const GROUPS_DELETE: &str = "microsoft.directory/groups/delete";
    pub const GROUPS_RESTORE: &str = "microsoft.directory/groups/restore";
    pub const GROUPS_MEMBERS_READ: &str = "microsoft.directory/groups/members/read";
    pub const GROUPS_MEMBERS_UPDATE: &str = "microsoft.directory/groups/members/update";
    pub const GROUPS_OWNERS_READ: &str = "microsoft.directory/groups/owners/read";
    pub const GROUPS_OWNERS_UPDATE: &str = "microsoft.directory/groups/owners/update";
    pub const ROLE_ASSIGNABLE_GROUPS_CREATE: &str = "microsoft.directory/groupsAssignableToRoles/create";
    pub const ROLE_ASSIGNABLE_GROUPS_DELETE: &str = "microsoft.directory/groupsAssignableToRoles/delete";
    pub const ROLE_ASSIGNABLE_GROUPS_RESTORE: &str = "microsoft.directory/groupsAssignableToRoles/restore";
    pub const ROLE_ASSIGNABLE_GROUPS_UPDATE: &str = "microsoft.directory/groupsAssignableToRoles/allProperties/update";
    pub const ORGANIZATION_READ: &str = "microsoft.directory/organization/standard/read";
    pub const AUDIT_LOGS_READ: &str = "microsoft.directory/auditLogs/allProperties/read";
    pub const SERVICE_PRINCIPALS_READ: &str = "microsoft.directory/servicePrincipals/standard/read";
    pub const APPLICATIONS_READ: &str = "microsoft.directory/applications/standard/read";
    pub const APPLICATIONS_CREATE: &str = "microsoft.directory/applications/create";
    pub const APPLICATIONS_UPDATE: &str = "microsoft.directory/applications/basic/update";
    pub const APPLICATIONS_CREDENTIALS_UPDATE: &str = "microsoft.directory/applications/credentials/update";
    pub const APPLICATIONS_DELETE: &str = "microsoft.directory/applications/delete";
    pub const SERVICE_PRINCIPALS_CREATE: &str = "microsoft.directory/servicePrincipals/create";
    pub const SERVICE_PRINCIPALS_DELETE: &str = "microsoft.directory/servicePrincipals/delete";
    pub const SERVICE_PRINCIPALS_UPDATE: &str = "microsoft.directory/servicePrincipals/basic/update";
    pub const SERVICE_PRINCIPALS_DISABLE: &str = "microsoft.directory/servicePrincipals/disable";
    pub const SERVICE_PRINCIPALS_ENABLE: &str = "microsoft.directory/servicePrincipals/enable";
    pub const ROLE_DEFINITIONS_READ: &str = "microsoft.directory/roleDefinitions/allProperties/read";
    pub const ROLE_DEFINITIONS_WRITE: &str = "microsoft.directory/roleDefinitions/allProperties/allTasks";
    pub const ROLE_ASSIGNMENTS_READ: &str = "microsoft.directory/roleAssignments/allProperties/read";
    pub const ROLE_ASSIGNMENTS_WRITE: &str = "microsoft.directory/roleAssignments/allProperties/allTasks";
    /// Just-in-time roles' requests, schedules and settings: what a delegated token must carry
    /// for them (`oauth::scope_permits`). Roles are decided with the role-assignment actions.
    pub const PIM_ASSIGNMENTS_READ: &str = "microsoft.directory/roleAssignmentSchedules/allProperties/read";
    pub const PIM_ASSIGNMENTS_WRITE: &str = "microsoft.directory/roleAssignmentSchedules/allProperties/allTasks";
    pub const PIM_ELIGIBILITY_READ: &str = "microsoft.directory/roleEligibilitySchedules/allProperties/read";
    pub const PIM_ELIGIBILITY_WRITE: &str = "microsoft.directory/roleEligibilitySchedules/allProperties/allTasks";
    pub const PIM_POLICIES_READ: &str = "microsoft.directory/roleManagementPolicies/allProperties/read";
    pub const PIM_POLICIES_WRITE: &str = "microsoft.directory/roleManagementPolicies/allProperties/allTasks";
    pub const DIRECTORY_ROLES_READ: &str = "microsoft.directory/directoryRoles/allProperties/read";
    pub const UNITS_READ: &str = "microsoft.directory/administrativeUnits/allProperties/read";
    pub const UNITS_WRITE: &str = "microsoft.directory/administrativeUnits/allProperties/allTasks";
    pub const SCOPED_ROLE_MEMBERSHIPS_READ: &str = "microsoft.directory/scopedRoleMemberships/allProperties/read";
    pub const SCOPED_ROLE_MEMBERSHIPS_WRITE: &str = "microsoft.directory/scopedRoleMemberships/allProperties/allTasks";

    /// Actions governed by Entra's "Who can reset passwords" table.
    pub const PASSWORD_RESET_CLASS: &[&str] = &[
        USERS_PASSWORD_UPDATE,
        USERS_INVALIDATE_REFRESH_TOKENS,
        USERS_AUTH_METHODS_CREATE,
        USERS_AUTH_METHODS_DELETE,
        USERS_AUTH_METHODS_UPDATE,
        USERS_AUTH_METHODS_READ,
        USERS_AUTH_METHODS_RESTRICTED_READ,
    ];

    /// Actions governed by Entra's "Who can perform sensitive actions" table.
    pub const SENSITIVE_CLASS: &[&str] =
        &[USERS_DELETE, USERS_RESTORE, USERS_DISABLE, USERS_ENABLE, USERS_UPN_UPDATE, USERS_CONTACT_INFO_UPDATE];

    /// Admin actions nobody may take on their own account (Entra's rules across those tables).
    pub const NOT_ON_ONESELF: &[&str] = &[USERS_PASSWORD_UPDATE, USERS_AUTH_METHODS_CREATE];
}

/// Names of the rules a decision reports.
pub mod rules {
    pub const ROLE_GRANTS_ACTION: &str = "role-grants-action";
    pub const DEFAULT_USER_PERMISSIONS: &str = "default-user-permissions";
    pub const GUEST_USER_PERMISSIONS: &str = "guest-user-permissions";
    pub const NO_ROLE_GRANTS_ACTION: &str = "no-role-grants-action";
    pub const ADMINISTRATIVE_UNIT_SCOPE: &str = "administrative-unit-scope";
    pub const ADMINISTRATIVE_UNIT_ADMIN_TARGET: &str = "administrative-unit-scope-acts-only-on-non-admins";
    pub const RESTRICTED_MANAGEMENT_UNIT: &str = "restricted-management-administrative-unit";
    pub const PASSWORD_RESET_MATRIX: &str = "who-can-reset-passwords";
    pub const SENSITIVE_ACTION_MATRIX: &str = "who-can-perform-sensitive-actions";
    pub const CUSTOM_ROLE_TARGET: &str = "custom-roles-act-only-on-non-admins";
    pub const NOT_ON_ONESELF: &str = "no-admin-action-on-oneself";
    pub const LAST_GLOBAL_ADMINISTRATOR: &str = "last-global-administrator";
    pub const PRIVILEGED_APPLICATION: &str = "privileged-applications-need-privileged-role-administrator";
}

/// The roles that may change an application (or service principal) whose principal holds a
/// directory role: its credentials are that role's credentials, so nobody below the roles that
/// could assign the role themselves may touch them.
pub const PRIVILEGED_APPLICATION_MANAGERS: &[&str] =
    &[roles::GLOBAL_ADMINISTRATOR, roles::PRIVILEGED_ROLE_ADMINISTRATOR];

/// What every member user may do without a role (Entra's default user permissions, read side).
pub const DEFAULT_USER_PERMISSIONS: &[&str] = &[
    actions::USERS_READ,
    actions::USERS_MEMBER_OF_READ,
    actions::GROUPS_READ,
    actions::GROUPS_MEMBERS_READ,
    actions::GROUPS_OWNERS_READ,
    actions::ORGANIZATION_READ,
    actions::SERVICE_PRINCIPALS_READ,
    // Members read the tenant's application registrations, as in Entra (secrets are never read).
    actions::APPLICATIONS_READ,
    // Members read role definitions, role assignments, directory roles and administrative units,
    // as Entra's default user permissions allow.
    "microsoft.directory/roleDefinitions/allProperties/read",
    "microsoft.directory/roleAssignments/allProperties/read",
    "microsoft.directory/directoryRoles/allProperties/read",
    "microsoft.directory/administrativeUnits/allProperties/read",
    "microsoft.directory/scopedRoleMemberships/allProperties/read",
];

/// The only actions a guest without a role may be allowed, on the targets [`guest_may`] names.
const GUEST_USER_ACTIONS: &[&str] = &[actions::USERS_READ, actions::USERS_MEMBER_OF_READ, actions::ORGANIZATION_READ];

/// Whether a guest without a role may take `action` on `target`: Entra's default guest access
/// ("Guest users have limited access to properties and memberships of directory objects"). A
/// guest reads a user it names (by id or sign-in name), its own memberships and the
/// organization, but lists nobody: no directory enumeration, no groups, roles, administrative
/// units or applications.
fn guest_may(actor: &Actor, action: &str, target: Target<'_>) -> bool {
    if !GUEST_USER_ACTIONS.contains(&action) {
        return false;
    }
    match (action, target) {
        (actions::USERS_READ, Target::User(_)) => true,
        (actions::USERS_MEMBER_OF_READ, Target::User(user)) => user.id.as_ref() == Some(&actor.id),
        (actions::ORGANIZATION_READ, _) => true,
        _ => false,
    }
}

/// Looks a built-in role up by its id (= template id).
pub fn role(id: &str) -> Option<&'static RoleDefinition> {
    built_in_role(id)
}

/// Where a role assignment applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Tenant,
    AdministrativeUnit(ObjectId),
}

/// One active role assignment of the actor. A custom role carries its actions; a built-in role's
/// actions come from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRole {
    pub role_definition_id: String,
    pub scope: Scope,
    pub custom_actions: Option<Vec<String>>,
}

impl ActiveRole {
    /// A built-in role assignment.
    pub fn built_in(role_definition_id: &str, scope: Scope) -> ActiveRole {
        ActiveRole { role_definition_id: role_definition_id.to_owned(), scope, custom_actions: None }
    }

    /// Whether this assignment's role grants `action` (at whatever scope it holds).
    pub fn grants(&self, action: &str) -> bool {
        self.grants_indexed(action, table::action_index(action))
    }

    /// [`ActiveRole::grants`] with the action's catalogue index already looked up: a built-in
    /// role's answer is a bit of its precomputed set when both are spelled as the catalogue
    /// spells them, and its patterns otherwise.
    fn grants_indexed(&self, action: &str, index: Option<table::ActionIndex>) -> bool {
        match &self.custom_actions {
            Some(custom) => custom.iter().any(|pattern| grants(pattern, action)),
            None => match index.and_then(|index| table::built_in_grants(&self.role_definition_id, index)) {
                Some(granted) => granted,
                None => built_in_role(&self.role_definition_id)
                    .is_some_and(|role| role.allowed_resource_actions.iter().any(|pattern| grants(pattern, action))),
            },
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: ObjectId,
    pub roles: Vec<ActiveRole>,
    /// A guest (`userType` `Guest`): without a role, only what `guest_may` allows, not the
    /// member's [`DEFAULT_USER_PERMISSIONS`].
    pub is_guest: bool,
}

/// A target's membership of an administrative unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitMembership {
    pub id: ObjectId,
    pub is_restricted: bool,
}

/// What the rules need to know about a target user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFacts {
    pub id: Option<ObjectId>,
    /// Template ids of every role the user holds, at any scope, directly or through a group;
    /// custom roles are named by their definition id.
    pub role_ids: Vec<String>,
    /// The user holds a role assigned at the scope of a restricted-management unit.
    pub has_role_scoped_to_restricted_unit: bool,
    /// The user is a member or owner of a role-assignable group.
    pub is_role_assignable_group_member_or_owner: bool,
    pub units: Vec<UnitMembership>,
    /// The user is the only enabled holder of Global Administrator.
    pub is_last_active_global_administrator: bool,
}

impl UserFacts {
    /// Whether the user holds any directory role. A role scoped to a restricted unit counts even
    /// if the caller left it out of `role_ids`, so inconsistent facts never widen a custom role's reach.
    pub fn is_admin(&self) -> bool {
        !self.role_ids.is_empty() || self.has_role_scoped_to_restricted_unit
    }
}

/// What the rules need to know about a target group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupFacts {
    pub id: Option<ObjectId>,
    pub is_assignable_to_role: bool,
    pub units: Vec<UnitMembership>,
}

/// What the action is done to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The tenant as a whole: reads of collections, creation of new objects.
    Tenant,
    /// An existing user.
    User(&'a UserFacts),
    /// An existing group.
    Group(&'a GroupFacts),
    /// An existing application registration or service principal.
    Application(&'a ApplicationFacts),
}

/// What the rules need to know about a target application (or its service principal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplicationFacts {
    /// The application's service principal holds a directory role (at any scope, directly or
    /// through a group): changing its credentials, redirect URIs or owners, or deleting it, is
    /// acting with that role.
    pub is_privileged: bool,
}

/// The outcome of a decision; both sides name the rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Entra's message for a refused directory operation.
pub const INSUFFICIENT_PRIVILEGES: &str = "Insufficient privileges to complete the operation.";

/// The message a client sees, and the audit record's `resultReason`, for a denial of `action` by
/// `rule`: Entra's own text where it has one for the rule, otherwise Entra's generic text
/// followed by the rule in words and its name.
pub fn denial_message(rule: &str, action: &str) -> String {
    let why = match rule {
        rules::RESTRICTED_MANAGEMENT_UNIT => {
            return "This user is a member of a restricted management administrative unit. Management rights are limited to administrators scoped on that administrative unit.".into();
        }
        rules::NO_ROLE_GRANTS_ACTION => match roles_granting(action) {
            names if names.is_empty() => format!("None of the caller's roles grants '{action}'."),
            names => format!("None of the caller's roles grants '{action}'; built-in roles that do: {names}."),
        },
        rules::GUEST_USER_PERMISSIONS => format!(
            "Guests have limited access to the directory: they read users they name and their own memberships, \
             but cannot list the directory or read groups, roles or applications ('{action}')."
        ),
        rules::ADMINISTRATIVE_UNIT_SCOPE => {
            "The caller's role is scoped to an administrative unit that the target is not a member of.".into()
        }
        rules::ADMINISTRATIVE_UNIT_ADMIN_TARGET => {
            "A role scoped to an administrative unit acts only on members who hold no admin role.".into()
        }
        rules::PASSWORD_RESET_MATRIX => "The caller's roles cannot reset the password or manage the authentication \
             methods of a user who holds this user's roles (an Authentication Administrator cannot act on a user who \
             holds an admin role; a Privileged Authentication Administrator can)."
            .into(),
        rules::SENSITIVE_ACTION_MATRIX => {
            "The caller's roles cannot perform sensitive actions (delete, disable, change \
             the sign-in name or contact details) on a user who holds this user's roles."
                .into()
        }
        rules::CUSTOM_ROLE_TARGET => "A custom role acts only on users who hold no admin role and on users and groups \
             outside role-assignable groups."
            .into(),
        rules::NOT_ON_ONESELF => "Administrators cannot do this to their own account: nobody resets their own \
             password, creates a Temporary Access Pass for themselves, or removes their own Global Administrator role."
            .into(),
        rules::LAST_GLOBAL_ADMINISTRATOR => {
            "The last enabled Global Administrator cannot be removed, deleted or disabled.".into()
        }
        rules::PRIVILEGED_APPLICATION => "The application's service principal holds a directory role: only a Global \
             Administrator or Privileged Role Administrator may change or delete it."
            .into(),
        _ => String::new(),
    };
    if why.is_empty() {
        INSUFFICIENT_PRIVILEGES.to_owned()
    } else {
        format!("{INSUFFICIENT_PRIVILEGES} {why} (rule: {rule})")
    }
}

/// The built-in roles that grant `action`, narrowest first (fewest actions), for a refusal to name
/// (at most five, then how many more): what to ask for is as useful to an administrator as why it
/// failed.
fn roles_granting(action: &str) -> String {
    let mut names: Vec<(usize, &str)> = BUILT_IN_ROLES
        .iter()
        // Entra's Partner Tier roles say "Do not use": never suggest them.
        .filter(|role| !role.description.starts_with("Do not use"))
        .filter(|role| role.allowed_resource_actions.iter().any(|pattern| grants(pattern, action)))
        .map(|role| (role.allowed_resource_actions.len(), role.display_name))
        .collect();
    names.sort_by_key(|(actions, _)| *actions);
    let mut text = names.iter().take(5).map(|(_, name)| *name).collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        text.push_str(&format!(" and {} more", names.len() - 5));
    }
    text
}

fn is_read(action: &str) -> bool {
    action.ends_with("/read") || action.ends_with("/restrictedRead")
}

fn units_of<'a>(target: Target<'a>) -> &'a [UnitMembership] {
    match target {
        Target::Tenant | Target::Application(_) => &[],
        Target::User(it) => &it.units,
        Target::Group(it) => &it.units,
    }
}

/// Checks one assignment that grants the action against the target; `Err` names the rule.
fn check_assignment(assignment: &ActiveRole, action: &str, target: Target<'_>) -> Result<(), &'static str> {
    let is_write = !is_read(action);
    let units = units_of(target);
    // Restricted-management units: only assignments scoped to the unit change its members.
    if is_write && units.iter().any(|it| it.is_restricted) {
        let is_scoped_to_it = match &assignment.scope {
            Scope::AdministrativeUnit(unit) => units.iter().any(|it| it.is_restricted && &it.id == unit),
            Scope::Tenant => false,
        };
        if !is_scoped_to_it {
            return Err(rules::RESTRICTED_MANAGEMENT_UNIT);
        }
    }
    if let Scope::AdministrativeUnit(unit) = &assignment.scope {
        if !units.iter().any(|it| &it.id == unit) {
            return Err(rules::ADMINISTRATIVE_UNIT_SCOPE);
        }
        if let Target::User(user) = target
            && (is_write || actions::PASSWORD_RESET_CLASS.contains(&action))
            && user.is_admin()
        {
            return Err(rules::ADMINISTRATIVE_UNIT_ADMIN_TARGET);
        }
    }
    let is_custom = assignment.custom_actions.is_some();
    match target {
        Target::Tenant => Ok(()),
        Target::Application(app) => {
            let may_manage_privileged = !is_custom
                && PRIVILEGED_APPLICATION_MANAGERS
                    .iter()
                    .any(|it| it.eq_ignore_ascii_case(&assignment.role_definition_id));
            if is_write && app.is_privileged && !may_manage_privileged {
                return Err(rules::PRIVILEGED_APPLICATION);
            }
            Ok(())
        }
        Target::Group(group) => {
            if is_custom && is_write && group.is_assignable_to_role {
                return Err(rules::CUSTOM_ROLE_TARGET);
            }
            Ok(())
        }
        Target::User(user) => {
            if !is_write && !actions::PASSWORD_RESET_CLASS.contains(&action) {
                return Ok(());
            }
            if is_custom {
                if user.is_admin() || user.is_role_assignable_group_member_or_owner {
                    return Err(rules::CUSTOM_ROLE_TARGET);
                }
                return Ok(());
            }
            // Read-only roles (Global Reader) have no column: their restricted read reaches everyone.
            if !is_write
                && !matrix::PASSWORD_RESET
                    .iter()
                    .any(|it| it.actor_role.eq_ignore_ascii_case(&assignment.role_definition_id))
            {
                return Ok(());
            }
            let (table, rule) = if actions::PASSWORD_RESET_CLASS.contains(&action) {
                (matrix::PASSWORD_RESET, rules::PASSWORD_RESET_MATRIX)
            } else if actions::SENSITIVE_CLASS.contains(&action) {
                (matrix::SENSITIVE_ACTIONS, rules::SENSITIVE_ACTION_MATRIX)
            } else {
                return Ok(());
            };
            if reaches(matrix::reach(table, &assignment.role_definition_id), user) { Ok(()) } else { Err(rule) }
        }
    }
}

/// Whether a reach covers a target user: every role the user holds must be in it.
pub fn reaches(reach: matrix::Reach, user: &UserFacts) -> bool {
    match reach {
        matrix::Reach::Everyone => true,
        matrix::Reach::Roles(allowed) => {
            !user.is_role_assignable_group_member_or_owner
                && !user.has_role_scoped_to_restricted_unit
                && user.role_ids.iter().all(|held| allowed.iter().any(|it| it.eq_ignore_ascii_case(held)))
        }
    }
}

/// Decides whether `actor` may perform `action` on `target`.
///
/// Allowed when some active assignment grants the action and passes every rule for the target;
/// otherwise denied with the most specific rule that refused.
pub fn authorize(actor: &Actor, action: &str, target: Target<'_>) -> Decision {
    if let Target::User(user) = target {
        if user.id.as_ref() == Some(&actor.id) && actions::NOT_ON_ONESELF.contains(&action) {
            return Decision::Deny { rule: rules::NOT_ON_ONESELF };
        }
        if user.is_last_active_global_administrator && [actions::USERS_DELETE, actions::USERS_DISABLE].contains(&action)
        {
            return Decision::Deny { rule: rules::LAST_GLOBAL_ADMINISTRATOR };
        }
    }
    let index = table::action_index(action);
    let mut refused = None;
    for assignment in actor.roles.iter().filter(|it| it.grants_indexed(action, index)) {
        match check_assignment(assignment, action, target) {
            Ok(()) => return Decision::Allow { rule: rules::ROLE_GRANTS_ACTION },
            // The restricted-unit refusal explains most; keep it over the others.
            Err(rule) if refused != Some(rules::RESTRICTED_MANAGEMENT_UNIT) => refused = Some(rule),
            Err(_) => (),
        }
    }
    if actor.is_guest {
        if guest_may(actor, action, target) {
            return Decision::Allow { rule: rules::GUEST_USER_PERMISSIONS };
        }
        return Decision::Deny { rule: refused.unwrap_or(rules::GUEST_USER_PERMISSIONS) };
    }
    let is_default = match index {
        Some(index) => table::default_user_grants(index),
        None => DEFAULT_USER_PERMISSIONS.iter().any(|pattern| grants(pattern, action)),
    };
    if is_default {
        return Decision::Allow { rule: rules::DEFAULT_USER_PERMISSIONS };
    }
    Decision::Deny { rule: refused.unwrap_or(rules::NO_ROLE_GRANTS_ACTION) }
}

/// Whether some target could allow `actor` one of `actions`: a role it holds grants one (at any
/// scope), or the default user permissions or a guest's do. When this is `false`, [`authorize`]
/// and [`authorize_app`] deny each of the actions on every target, so a caller can be refused
/// before the target is looked up and the refusal tells nothing about it.
pub fn may_allow_any(actor: &Actor, wanted: &[&str]) -> bool {
    wanted.iter().any(|action| {
        actor.roles.iter().any(|role| role.grants(action))
            || if actor.is_guest {
                GUEST_USER_ACTIONS.contains(action)
            } else {
                DEFAULT_USER_PERMISSIONS.iter().any(|pattern| grants(pattern, action))
            }
    })
}

/// The decision for an application acting as itself (an app-only token). An application with
/// no directory role may do nothing; one holding a role acts with that role and, like a member,
/// may read the directory (Keyward grants no application permissions, so a role is how an
/// administrator gives an application access).
pub fn authorize_app(actor: &Actor, action: &str, target: Target<'_>) -> Decision {
    match authorize(actor, action, target) {
        Decision::Allow { rule } if rule == rules::DEFAULT_USER_PERMISSIONS && !holds_tenant_wide_role(actor) => {
            Decision::Deny { rule: rules::NO_ROLE_GRANTS_ACTION }
        }
        other => other,
    }
}

/// Whether the actor holds a tenant-wide role that grants something (a unit-scoped role, or a
/// disabled or deleted custom role, does not open the directory to an application).
fn holds_tenant_wide_role(actor: &Actor) -> bool {
    actor.roles.iter().any(|role| {
        role.scope == Scope::Tenant && role.custom_actions.as_ref().is_none_or(|actions| !actions.is_empty())
    })
}

/// Checks a change to who holds Global Administrator, given the enabled holders before and after
/// it: the last active Global Administrator cannot be removed (through an assignment, a
/// role-assignable group, deletion or disabling), and a Global Administrator cannot remove their
/// own Global Administrator role.
pub fn check_global_administrators(
    actor: &ObjectId,
    before: &[ObjectId],
    after: &[ObjectId],
) -> Result<(), &'static str> {
    if after.is_empty() && !before.is_empty() {
        return Err(rules::LAST_GLOBAL_ADMINISTRATOR);
    }
    if before.contains(actor) && !after.contains(actor) {
        return Err(rules::NOT_ON_ONESELF);
    }
    Ok(())
}

/// Whether an allowed-resource-action `pattern` covers `action`.
///
/// Entra's grammar is `namespace/entity/propertySet/verb`; `allProperties/allTasks` covers every
/// action on the entity, `allProperties/read` every read of it. Authentication methods and
/// per-user MFA are granted only by name: `users/allProperties/*` does not cover them (Global
/// Administrator and Global Reader list them separately). Actions are compared in their canonical
/// spelling (the catalogue's; custom roles store it).
pub fn grants(pattern: &str, action: &str) -> bool {
    if pattern == action {
        return true;
    }
    // Reading authentication methods in full includes reading them without personal data.
    if pattern == actions::USERS_AUTH_METHODS_READ && action == actions::USERS_AUTH_METHODS_RESTRICTED_READ {
        return true;
    }
    let (entity, is_read_only) =
        match (pattern.strip_suffix("/allProperties/allTasks"), pattern.strip_suffix("/allProperties/read")) {
            (Some(entity), _) => (entity, false),
            (None, Some(entity)) => (entity, true),
            (None, None) => return false,
        };
    let Some(rest) = action.strip_prefix(entity) else { return false };
    if !rest.starts_with('/')
        || rest.starts_with("/authenticationMethods/")
        || rest.starts_with("/strongAuthentication/")
    {
        return false;
    }
    // The entity must be the whole `namespace/entity` of the action, not a prefix of a longer one.
    if entity.matches('/').count() != 1 {
        return false;
    }
    !is_read_only || is_read(action)
}

#[cfg(test)]
mod tests;
