//! The built-in role catalog (Entra's built-in roles reference) and Keyward's resource-action catalogue.
//!
//! Role ids are Entra's template ids (for built-in roles the definition id equals the template id).
//! Descriptions are Entra's exact `description` strings. Where Entra's reference lists a role only as a
//! target of the reset matrices, its actions are the directory subset Keyward checks.

/// A resource action Keyward checks, with Entra's `isPrivileged` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceAction {
    pub name: &'static str,
    pub description: &'static str,
    pub is_privileged: bool,
    /// The HTTP verb Graph's `unifiedRbacResourceAction.actionVerb` gives it.
    pub verb: &'static str,
}

const fn action(
    name: &'static str,
    description: &'static str,
    is_privileged: bool,
    verb: &'static str,
) -> ResourceAction {
    ResourceAction { name, description, is_privileged, verb }
}

/// Every resource action Keyward checks. Custom roles may hold any of these.
pub const RESOURCE_ACTIONS: &[ResourceAction] = &[
    action("microsoft.directory/users/standard/read", "Read basic properties on users", false, "GET"),
    action("microsoft.directory/users/memberOf/read", "Read the group memberships of users", false, "GET"),
    action("microsoft.directory/users/create", "Add users", true, "POST"),
    action("microsoft.directory/users/delete", "Delete users", true, "DELETE"),
    action("microsoft.directory/users/restore", "Restore deleted users", false, "POST"),
    action("microsoft.directory/users/disable", "Disable users", true, "PATCH"),
    action("microsoft.directory/users/enable", "Enable users", true, "PATCH"),
    action("microsoft.directory/users/basic/update", "Update basic properties on users", false, "PATCH"),
    action(
        "microsoft.directory/users/contactInfo/update",
        "Update the sensitive contact properties of users (mobilePhone, businessPhones, otherMails), judged by Entra's sensitive-action table",
        true,
        "PATCH",
    ),
    action(
        "microsoft.directory/users/authorizationInfo/update",
        "Update the multivalued Certificate user IDs property of users",
        true,
        "PATCH",
    ),
    action("microsoft.directory/users/manager/update", "Update manager for users", false, "PATCH"),
    action("microsoft.directory/users/password/update", "Reset passwords for all users", true, "PATCH"),
    action("microsoft.directory/users/userPrincipalName/update", "Update User Principal Name of users", true, "PATCH"),
    action(
        "microsoft.directory/users/invalidateAllRefreshTokens",
        "Force sign-out by invalidating user refresh tokens",
        true,
        "POST",
    ),
    action(
        "microsoft.directory/users/authenticationMethods/create",
        "Update authentication methods for users",
        true,
        "POST",
    ),
    action(
        "microsoft.directory/users/authenticationMethods/delete",
        "Delete authentication methods for users",
        true,
        "DELETE",
    ),
    action(
        "microsoft.directory/users/authenticationMethods/basic/update",
        "Update basic properties of authentication methods for users",
        true,
        "PATCH",
    ),
    action(
        "microsoft.directory/users/authenticationMethods/standard/read",
        "Read standard properties of authentication methods that include personally identifiable information for users",
        true,
        "GET",
    ),
    action(
        "microsoft.directory/users/authenticationMethods/standard/restrictedRead",
        "Read standard properties of authentication methods that do not include personally identifiable information for users",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/users/strongAuthentication/update",
        "Update per-user MFA (enable, enforce, disable) for users; Keyward's name for the legacy action",
        false,
        "PATCH",
    ),
    action("microsoft.directory/users/allProperties/read", "Read all properties of users", true, "GET"),
    action(
        "microsoft.directory/users/allProperties/allTasks",
        "Create and delete users, and read and update all properties",
        true,
        "PATCH",
    ),
    action(
        "microsoft.directory/deletedItems.users/restore",
        "Restore soft deleted users to original state",
        false,
        "POST",
    ),
    action("microsoft.directory/groups/standard/read", "Read standard properties of groups", false, "GET"),
    action(
        "microsoft.directory/groups/create",
        "Create Security groups and Microsoft 365 groups, excluding role-assignable groups",
        false,
        "POST",
    ),
    action(
        "microsoft.directory/groups/delete",
        "Delete Security groups and Microsoft 365 groups, excluding role-assignable groups",
        false,
        "DELETE",
    ),
    action("microsoft.directory/groups/restore", "Restore groups from soft-deleted container", false, "POST"),
    action(
        "microsoft.directory/deletedItems.groups/restore",
        "Restore soft deleted groups to original state",
        false,
        "POST",
    ),
    action(
        "microsoft.directory/groups/basic/update",
        "Update basic properties on Security groups and Microsoft 365 groups, excluding role-assignable groups",
        false,
        "PATCH",
    ),
    action(
        "microsoft.directory/groups/members/read",
        "Read members of Security groups and Microsoft 365 groups",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/groups/members/update",
        "Update members of Security groups and Microsoft 365 groups, excluding role-assignable groups",
        false,
        "PATCH",
    ),
    action(
        "microsoft.directory/groups/owners/read",
        "Read owners of Security groups and Microsoft 365 groups",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/groups/owners/update",
        "Update owners of Security groups and Microsoft 365 groups, excluding role-assignable groups",
        false,
        "PATCH",
    ),
    action("microsoft.directory/groups/allProperties/read", "Read all properties of groups", false, "GET"),
    action(
        "microsoft.directory/groups/allProperties/allTasks",
        "Create and delete groups, and read and update all properties",
        true,
        "PATCH",
    ),
    action("microsoft.directory/groupsAssignableToRoles/create", "Create role-assignable groups", false, "POST"),
    action("microsoft.directory/groupsAssignableToRoles/delete", "Delete role-assignable groups", false, "DELETE"),
    action("microsoft.directory/groupsAssignableToRoles/restore", "Restore role-assignable groups", false, "POST"),
    action(
        "microsoft.directory/groupsAssignableToRoles/allProperties/update",
        "Update role-assignable groups",
        false,
        "PATCH",
    ),
    action(
        "microsoft.directory/servicePrincipals/standard/read",
        "Read standard properties of service principals",
        false,
        "GET",
    ),
    action("microsoft.directory/servicePrincipals/create", "Create service principals", false, "POST"),
    action("microsoft.directory/applications/create", "Create all types of applications", false, "POST"),
    action("microsoft.directory/applications/delete", "Delete all types of applications", false, "DELETE"),
    action("microsoft.directory/applications/standard/read", "Read standard properties of applications", false, "GET"),
    action(
        "microsoft.directory/applications/allProperties/read",
        "Read all properties (including privileged properties) on all types of applications",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/servicePrincipals/allProperties/read",
        "Read all properties (including privileged properties) on servicePrincipals",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/applications/basic/update",
        "Update basic properties of applications, including redirect URIs",
        false,
        "PATCH",
    ),
    action(
        "microsoft.directory/applications/credentials/update",
        "Update application credentials (client secrets and certificates)",
        true,
        "PATCH",
    ),
    action(
        "microsoft.directory/applications/allProperties/allTasks",
        "Create and delete applications, and read and update all properties",
        true,
        "PATCH",
    ),
    action("microsoft.directory/servicePrincipals/delete", "Delete service principals", false, "DELETE"),
    action(
        "microsoft.directory/servicePrincipals/basic/update",
        "Update basic properties on service principals",
        false,
        "PATCH",
    ),
    action("microsoft.directory/servicePrincipals/disable", "Disable service principals", false, "PATCH"),
    action("microsoft.directory/servicePrincipals/enable", "Enable service principals", false, "PATCH"),
    action(
        "microsoft.directory/servicePrincipals/allProperties/allTasks",
        "Create and delete service principals, and read and update all properties",
        true,
        "PATCH",
    ),
    action(
        "microsoft.directory/organization/standard/read",
        "Read standard properties of the organization",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/organization/allProperties/read",
        "Read all properties of the organization",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/organization/allProperties/allTasks",
        "Read and update all properties of the organization",
        false,
        "PATCH",
    ),
    action(
        "microsoft.directory/organization/strongAuthentication/allTasks",
        "Manage all aspects of strong authentication properties of an organization",
        false,
        "PATCH",
    ),
    action(
        "microsoft.directory/roleAssignments/allProperties/read",
        "Read all properties of role assignments",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/roleAssignments/allProperties/allTasks",
        "Create and delete role assignments, and read and update all role assignment properties",
        false,
        "PATCH",
    ),
    action(
        "microsoft.directory/roleDefinitions/allProperties/read",
        "Read all properties of role definitions",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/roleDefinitions/allProperties/allTasks",
        "Create and delete role definitions, and read and update all properties",
        false,
        "PATCH",
    ),
    action(
        "microsoft.directory/scopedRoleMemberships/allProperties/read",
        "Read all properties of scoped role memberships",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/scopedRoleMemberships/allProperties/allTasks",
        "Create and delete scopedRoleMemberships, and read and update all properties",
        false,
        "PATCH",
    ),
    action(
        "microsoft.directory/administrativeUnits/allProperties/read",
        "Read all properties of administrative units, including members",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/administrativeUnits/allProperties/allTasks",
        "Create and manage administrative units (including members)",
        true,
        "PATCH",
    ),
    action(
        "microsoft.directory/directoryRoles/allProperties/read",
        "Read all properties of directory roles",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/directoryRoles/allProperties/allTasks",
        "Create and delete directory roles, and read and update all properties",
        false,
        "PATCH",
    ),
    action(
        "microsoft.directory/auditLogs/allProperties/read",
        "Read all properties on audit logs, excluding custom security attributes audit logs",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/signInReports/allProperties/read",
        "Read all properties on sign-in reports, including privileged properties",
        false,
        "GET",
    ),
    action("microsoft.directory/policies/allProperties/read", "Read all properties of policies", false, "GET"),
    action(
        "microsoft.directory/conditionalAccessPolicies/tenantDefault/update",
        "Update the default tenant policies for conditional access (security defaults)",
        true,
        "PATCH",
    ),
    action(
        "microsoft.directory/conditionalAccessPolicies/allProperties/allTasks",
        "Manage all properties of conditional access policies",
        true,
        "PATCH",
    ),
    action(
        "microsoft.directory/policies/allProperties/allTasks",
        "Create and delete policies, and read and update all properties",
        true,
        "PATCH",
    ),
    action(
        "microsoft.directory/userCredentialPolicies/basic/update",
        "Update basic policies for users",
        false,
        "PATCH",
    ),
    action(
        "microsoft.directory/userCredentialPolicies/standard/read",
        "Read standard properties of credential policies for users",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/authorizationPolicy/allProperties/allTasks",
        "Manage all aspects of authorization policy",
        true,
        "PATCH",
    ),
    action(
        "microsoft.directory/authorizationPolicy/standard/read",
        "Read standard properties of authorization policy",
        false,
        "GET",
    ),
    action(
        "microsoft.directory/oAuth2PermissionGrants/allProperties/allTasks",
        "Create and delete OAuth 2.0 permission grants, and read and update all properties",
        true,
        "PATCH",
    ),
];

/// Actions custom roles may not hold: they manage roles, role-assignable groups and tenant-wide
/// policy, so holding them would let a custom role grant itself more (an escalation path).
pub const NOT_FOR_CUSTOM_ROLES: &[&str] = &[
    "microsoft.directory/users/allProperties/allTasks",
    "microsoft.directory/groups/allProperties/allTasks",
    "microsoft.directory/servicePrincipals/allProperties/allTasks",
    "microsoft.directory/groupsAssignableToRoles/create",
    "microsoft.directory/groupsAssignableToRoles/delete",
    "microsoft.directory/groupsAssignableToRoles/restore",
    "microsoft.directory/groupsAssignableToRoles/allProperties/update",
    "microsoft.directory/organization/allProperties/allTasks",
    "microsoft.directory/organization/strongAuthentication/allTasks",
    "microsoft.directory/conditionalAccessPolicies/tenantDefault/update",
    "microsoft.directory/conditionalAccessPolicies/allProperties/allTasks",
    "microsoft.directory/roleAssignments/allProperties/allTasks",
    "microsoft.directory/roleDefinitions/allProperties/allTasks",
    "microsoft.directory/scopedRoleMemberships/allProperties/allTasks",
    "microsoft.directory/administrativeUnits/allProperties/allTasks",
    "microsoft.directory/directoryRoles/allProperties/allTasks",
    "microsoft.directory/policies/allProperties/allTasks",
    "microsoft.directory/authorizationPolicy/allProperties/allTasks",
    // Granting an application delegated permissions for every user.
    "microsoft.directory/oAuth2PermissionGrants/allProperties/allTasks",
];

/// Whether a custom role may hold this action.
pub fn is_custom_role_action(name: &str) -> bool {
    resource_action(name).is_some() && !NOT_FOR_CUSTOM_ROLES.iter().any(|it| it.eq_ignore_ascii_case(name))
}

/// Looks a resource action up by name (case-insensitive).
pub fn resource_action(name: &str) -> Option<&'static ResourceAction> {
    RESOURCE_ACTIONS.iter().find(|it| it.name.eq_ignore_ascii_case(name))
}

/// A built-in role definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleDefinition {
    pub id: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
    pub is_privileged: bool,
    /// Whether the role may be assigned with an administrative-unit scope.
    pub is_au_scopable: bool,
    pub allowed_resource_actions: &'static [&'static str],
}

/// Built-in role template ids (= role definition ids), from Entra's built-in roles reference.
pub mod roles {
    pub const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";
    pub const PRIVILEGED_AUTHENTICATION_ADMINISTRATOR: &str = "7be44c8a-adaf-4e2a-84d6-ab2649e08a13";
    pub const AUTHENTICATION_ADMINISTRATOR: &str = "c4e39bd9-1100-46d3-8c65-fb160da0071f";
    pub const AUTHENTICATION_POLICY_ADMINISTRATOR: &str = "0526716b-113d-4c15-b2c8-68e3c22b9f80";
    pub const HELPDESK_ADMINISTRATOR: &str = "729827e3-9c14-49f7-bb1b-9608f156bbb8";
    pub const PASSWORD_ADMINISTRATOR: &str = "966707d0-3269-4727-9be2-8c3a10f19b9d";
    pub const USER_ADMINISTRATOR: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
    pub const PRIVILEGED_ROLE_ADMINISTRATOR: &str = "e8611ab8-c189-46e8-94e1-60213ab1f814";
    pub const GLOBAL_READER: &str = "f2ef992c-3afb-46b9-b7cf-a126ee74c451";
    pub const SECURITY_READER: &str = "5d6b6bb7-de71-4623-b4af-96380a352509";
    pub const SECURITY_ADMINISTRATOR: &str = "194ae4cb-b126-40b2-bd5b-6091b380977d";
    pub const SECURITY_OPERATOR: &str = "5f2222b1-57c3-48ba-8ad5-d4759f1fde6f";
    pub const REPORTS_READER: &str = "4a5d8f65-41da-4de4-8968-e035b65339cf";
    pub const DIRECTORY_READERS: &str = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b";
    pub const GUEST_INVITER: &str = "95e79109-95c0-4d8e-aee3-d01accf2d47b";
    pub const MESSAGE_CENTER_READER: &str = "790c1fb9-7f7d-4f88-86a1-ef1f95c05c1b";
    pub const GROUPS_ADMINISTRATOR: &str = "fdd7a751-b60b-444a-984c-02652fe8fa1c";
    pub const USER_EXPERIENCE_SUCCESS_MANAGER: &str = "27460883-1df1-4691-b032-3b79643e5e63";
    pub const USAGE_SUMMARY_REPORTS_READER: &str = "75934031-6c7e-415a-99d7-48dbd49e875e";
    pub const CONDITIONAL_ACCESS_ADMINISTRATOR: &str = "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9";
    pub const PARTNER_TIER1_SUPPORT: &str = "4ba39ca4-527c-499a-b93d-d9b492c50246";
    pub const PARTNER_TIER2_SUPPORT: &str = "e00e864a-17c5-4a4b-9c06-f5b95a8d5bd8";
}

use roles::*;

const USER_WRITE_ACTIONS_OF_AUTH_ADMINS: &[&str] = &[
    "microsoft.directory/users/authenticationMethods/create",
    "microsoft.directory/users/authenticationMethods/delete",
    "microsoft.directory/users/authenticationMethods/basic/update",
    "microsoft.directory/deletedItems.users/restore",
    "microsoft.directory/users/delete",
    "microsoft.directory/users/disable",
    "microsoft.directory/users/enable",
    "microsoft.directory/users/restore",
    "microsoft.directory/users/invalidateAllRefreshTokens",
    "microsoft.directory/users/basic/update",
    "microsoft.directory/users/manager/update",
    "microsoft.directory/users/password/update",
    "microsoft.directory/users/userPrincipalName/update",
];

/// Every built-in role Keyward knows: the roles of Entra's built-in roles reference and the roles that appear only as
/// targets in its matrices.
pub const BUILT_IN_ROLES: &[RoleDefinition] = &[
    RoleDefinition {
        id: GLOBAL_ADMINISTRATOR,
        display_name: "Global Administrator",
        description: "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities.",
        is_privileged: true,
        is_au_scopable: false,
        allowed_resource_actions: &[
            "microsoft.directory/users/allProperties/allTasks",
            "microsoft.directory/users/authenticationMethods/basic/update",
            "microsoft.directory/users/authenticationMethods/create",
            "microsoft.directory/users/authenticationMethods/delete",
            "microsoft.directory/users/authenticationMethods/standard/read",
            "microsoft.directory/users/strongAuthentication/update",
            "microsoft.directory/deletedItems.users/restore",
            "microsoft.directory/groups/allProperties/allTasks",
            "microsoft.directory/servicePrincipals/allProperties/allTasks",
            "microsoft.directory/applications/allProperties/allTasks",
            "microsoft.directory/groupsAssignableToRoles/create",
            "microsoft.directory/groupsAssignableToRoles/delete",
            "microsoft.directory/groupsAssignableToRoles/restore",
            "microsoft.directory/groupsAssignableToRoles/allProperties/update",
            "microsoft.directory/roleAssignments/allProperties/allTasks",
            "microsoft.directory/roleDefinitions/allProperties/allTasks",
            "microsoft.directory/scopedRoleMemberships/allProperties/allTasks",
            "microsoft.directory/administrativeUnits/allProperties/allTasks",
            "microsoft.directory/directoryRoles/allProperties/allTasks",
            "microsoft.directory/auditLogs/allProperties/read",
            "microsoft.directory/signInReports/allProperties/read",
            "microsoft.directory/organization/allProperties/allTasks",
            "microsoft.directory/organization/strongAuthentication/allTasks",
            "microsoft.directory/policies/allProperties/allTasks",
            "microsoft.directory/authorizationPolicy/allProperties/allTasks",
            "microsoft.directory/conditionalAccessPolicies/allProperties/allTasks",
            "microsoft.directory/oAuth2PermissionGrants/allProperties/allTasks",
        ],
    },
    RoleDefinition {
        id: PRIVILEGED_AUTHENTICATION_ADMINISTRATOR,
        display_name: "Privileged Authentication Administrator",
        description: "Can access to view, set and reset authentication method information for any user (admin or non-admin).",
        is_privileged: true,
        is_au_scopable: true,
        allowed_resource_actions: &[
            "microsoft.directory/users/authenticationMethods/create",
            "microsoft.directory/users/authenticationMethods/delete",
            "microsoft.directory/users/authenticationMethods/standard/read",
            "microsoft.directory/users/authenticationMethods/basic/update",
            "microsoft.directory/deletedItems.users/restore",
            "microsoft.directory/users/delete",
            "microsoft.directory/users/disable",
            "microsoft.directory/users/enable",
            "microsoft.directory/users/restore",
            "microsoft.directory/users/invalidateAllRefreshTokens",
            "microsoft.directory/users/basic/update",
            "microsoft.directory/users/contactInfo/update",
            "microsoft.directory/users/authorizationInfo/update",
            "microsoft.directory/users/manager/update",
            "microsoft.directory/users/password/update",
            "microsoft.directory/users/userPrincipalName/update",
        ],
    },
    RoleDefinition {
        id: AUTHENTICATION_ADMINISTRATOR,
        display_name: "Authentication Administrator",
        description: "Can access to view, set and reset authentication method information for any non-admin user.",
        is_privileged: true,
        is_au_scopable: true,
        allowed_resource_actions: &[
            "microsoft.directory/users/authenticationMethods/create",
            "microsoft.directory/users/authenticationMethods/delete",
            "microsoft.directory/users/authenticationMethods/standard/restrictedRead",
            "microsoft.directory/users/authenticationMethods/basic/update",
            "microsoft.directory/deletedItems.users/restore",
            "microsoft.directory/users/delete",
            "microsoft.directory/users/disable",
            "microsoft.directory/users/enable",
            "microsoft.directory/users/restore",
            "microsoft.directory/users/invalidateAllRefreshTokens",
            "microsoft.directory/users/basic/update",
            "microsoft.directory/users/contactInfo/update",
            "microsoft.directory/users/manager/update",
            "microsoft.directory/users/password/update",
            "microsoft.directory/users/userPrincipalName/update",
        ],
    },
    RoleDefinition {
        id: AUTHENTICATION_POLICY_ADMINISTRATOR,
        display_name: "Authentication Policy Administrator",
        description: "Can create and manage the authentication methods policy, tenant-wide MFA settings, password protection policy, and verifiable credentials.",
        is_privileged: false,
        is_au_scopable: false,
        allowed_resource_actions: &[
            "microsoft.directory/organization/strongAuthentication/allTasks",
            "microsoft.directory/users/strongAuthentication/update",
            "microsoft.directory/userCredentialPolicies/basic/update",
            "microsoft.directory/userCredentialPolicies/standard/read",
        ],
    },
    RoleDefinition {
        id: HELPDESK_ADMINISTRATOR,
        display_name: "Helpdesk Administrator",
        description: "Can reset passwords for non-administrators and Helpdesk Administrators.",
        is_privileged: true,
        is_au_scopable: true,
        allowed_resource_actions: &[
            "microsoft.directory/users/invalidateAllRefreshTokens",
            "microsoft.directory/users/password/update",
        ],
    },
    RoleDefinition {
        id: PASSWORD_ADMINISTRATOR,
        display_name: "Password Administrator",
        description: "Can reset passwords for non-administrators and Password Administrators.",
        is_privileged: true,
        is_au_scopable: true,
        allowed_resource_actions: &["microsoft.directory/users/password/update"],
    },
    RoleDefinition {
        id: USER_ADMINISTRATOR,
        display_name: "User Administrator",
        description: "Can manage all aspects of users and groups, including resetting passwords for limited admins.",
        is_privileged: true,
        is_au_scopable: true,
        allowed_resource_actions: &[
            "microsoft.directory/users/create",
            "microsoft.directory/users/delete",
            "microsoft.directory/users/disable",
            "microsoft.directory/users/enable",
            "microsoft.directory/users/invalidateAllRefreshTokens",
            "microsoft.directory/users/password/update",
            "microsoft.directory/users/userPrincipalName/update",
            "microsoft.directory/users/basic/update",
            "microsoft.directory/users/contactInfo/update",
            "microsoft.directory/users/manager/update",
            "microsoft.directory/users/restore",
            "microsoft.directory/deletedItems.users/restore",
            "microsoft.directory/groups/create",
            "microsoft.directory/groups/delete",
            "microsoft.directory/groups/restore",
            "microsoft.directory/deletedItems.groups/restore",
            "microsoft.directory/groups/basic/update",
            "microsoft.directory/groups/members/update",
            "microsoft.directory/groups/owners/update",
        ],
    },
    RoleDefinition {
        id: PRIVILEGED_ROLE_ADMINISTRATOR,
        display_name: "Privileged Role Administrator",
        description: "Can manage role assignments in Microsoft Entra ID, and all aspects of Privileged Identity Management.",
        is_privileged: true,
        is_au_scopable: false,
        allowed_resource_actions: &[
            "microsoft.directory/roleAssignments/allProperties/allTasks",
            "microsoft.directory/roleDefinitions/allProperties/allTasks",
            "microsoft.directory/scopedRoleMemberships/allProperties/allTasks",
            "microsoft.directory/administrativeUnits/allProperties/allTasks",
            "microsoft.directory/directoryRoles/allProperties/allTasks",
            "microsoft.directory/groupsAssignableToRoles/create",
            "microsoft.directory/groupsAssignableToRoles/delete",
            "microsoft.directory/groupsAssignableToRoles/restore",
            "microsoft.directory/groupsAssignableToRoles/allProperties/update",
            "microsoft.directory/authorizationPolicy/allProperties/allTasks",
            "microsoft.directory/oAuth2PermissionGrants/allProperties/allTasks",
        ],
    },
    RoleDefinition {
        id: GLOBAL_READER,
        display_name: "Global Reader",
        description: "Can read everything that a Global Administrator can, but not update anything.",
        is_privileged: true,
        is_au_scopable: false,
        allowed_resource_actions: &[
            "microsoft.directory/users/allProperties/read",
            "microsoft.directory/users/authenticationMethods/standard/restrictedRead",
            "microsoft.directory/groups/allProperties/read",
            "microsoft.directory/auditLogs/allProperties/read",
            "microsoft.directory/signInReports/allProperties/read",
            "microsoft.directory/roleAssignments/allProperties/read",
            "microsoft.directory/roleDefinitions/allProperties/read",
            "microsoft.directory/scopedRoleMemberships/allProperties/read",
            "microsoft.directory/administrativeUnits/allProperties/read",
            "microsoft.directory/directoryRoles/allProperties/read",
            "microsoft.directory/policies/allProperties/read",
            "microsoft.directory/organization/allProperties/read",
            "microsoft.directory/applications/allProperties/read",
            "microsoft.directory/servicePrincipals/allProperties/read",
        ],
    },
    RoleDefinition {
        id: SECURITY_READER,
        display_name: "Security Reader",
        description: "Can read security information and reports in Microsoft Entra ID and Office 365.",
        is_privileged: true,
        is_au_scopable: false,
        allowed_resource_actions: &[
            "microsoft.directory/auditLogs/allProperties/read",
            "microsoft.directory/signInReports/allProperties/read",
            "microsoft.directory/authorizationPolicy/standard/read",
        ],
    },
    RoleDefinition {
        id: SECURITY_ADMINISTRATOR,
        display_name: "Security Administrator",
        description: "Can read security information and reports, and manage configuration in Microsoft Entra ID and Office 365.",
        is_privileged: true,
        is_au_scopable: false,
        allowed_resource_actions: &[
            "microsoft.directory/auditLogs/allProperties/read",
            "microsoft.directory/signInReports/allProperties/read",
            "microsoft.directory/authorizationPolicy/standard/read",
            "microsoft.directory/conditionalAccessPolicies/tenantDefault/update",
        ],
    },
    RoleDefinition {
        id: SECURITY_OPERATOR,
        display_name: "Security Operator",
        description: "Creates and manages security events.",
        is_privileged: true,
        is_au_scopable: false,
        allowed_resource_actions: &[
            "microsoft.directory/auditLogs/allProperties/read",
            "microsoft.directory/signInReports/allProperties/read",
            "microsoft.directory/authorizationPolicy/standard/read",
            "microsoft.directory/users/disable",
            "microsoft.directory/users/enable",
            "microsoft.directory/users/invalidateAllRefreshTokens",
            "microsoft.directory/users/password/update",
        ],
    },
    RoleDefinition {
        id: REPORTS_READER,
        display_name: "Reports Reader",
        description: "Can read sign-in and audit reports.",
        is_privileged: false,
        is_au_scopable: false,
        allowed_resource_actions: &[
            "microsoft.directory/auditLogs/allProperties/read",
            "microsoft.directory/signInReports/allProperties/read",
        ],
    },
    RoleDefinition {
        id: DIRECTORY_READERS,
        display_name: "Directory Readers",
        description: "Can read basic directory information. Commonly used to grant directory read access to applications and guests.",
        is_privileged: false,
        is_au_scopable: false,
        allowed_resource_actions: &[
            "microsoft.directory/users/standard/read",
            "microsoft.directory/users/memberOf/read",
            "microsoft.directory/groups/standard/read",
            "microsoft.directory/groups/members/read",
            "microsoft.directory/groups/owners/read",
            "microsoft.directory/organization/standard/read",
            "microsoft.directory/administrativeUnits/allProperties/read",
            "microsoft.directory/applications/standard/read",
            "microsoft.directory/servicePrincipals/standard/read",
        ],
    },
    RoleDefinition {
        id: GUEST_INVITER,
        display_name: "Guest Inviter",
        description: "Can invite guest users independent of the 'members can invite guests' setting.",
        is_privileged: false,
        is_au_scopable: false,
        allowed_resource_actions: &["microsoft.directory/users/standard/read"],
    },
    RoleDefinition {
        id: MESSAGE_CENTER_READER,
        display_name: "Message Center Reader",
        description: "Can read messages and updates for their organization in Office 365 Message Center only.",
        is_privileged: false,
        is_au_scopable: false,
        allowed_resource_actions: &[],
    },
    RoleDefinition {
        id: GROUPS_ADMINISTRATOR,
        display_name: "Groups Administrator",
        description: "Members of this role can create/manage groups, create/manage groups settings like naming and expiration policies, and view groups activity and audit reports.",
        is_privileged: false,
        is_au_scopable: true,
        allowed_resource_actions: &[
            "microsoft.directory/groups/create",
            "microsoft.directory/groups/delete",
            "microsoft.directory/groups/restore",
            "microsoft.directory/deletedItems.groups/restore",
            "microsoft.directory/groups/basic/update",
            "microsoft.directory/groups/members/update",
            "microsoft.directory/groups/owners/update",
        ],
    },
    RoleDefinition {
        id: USER_EXPERIENCE_SUCCESS_MANAGER,
        display_name: "User Experience Success Manager",
        description: "Can see only tenant level aggregates in Microsoft 365 Usage Analytics and Productivity Score.",
        is_privileged: false,
        is_au_scopable: false,
        allowed_resource_actions: &[],
    },
    RoleDefinition {
        id: USAGE_SUMMARY_REPORTS_READER,
        display_name: "Usage Summary Reports Reader",
        description: "Read Usage reports and Adoption Score, but can't access user details.",
        is_privileged: false,
        is_au_scopable: false,
        allowed_resource_actions: &[],
    },
    RoleDefinition {
        id: CONDITIONAL_ACCESS_ADMINISTRATOR,
        display_name: "Conditional Access Administrator",
        description: "Can manage Conditional Access capabilities.",
        is_privileged: true,
        is_au_scopable: false,
        allowed_resource_actions: &[
            "microsoft.directory/policies/allProperties/read",
            "microsoft.directory/conditionalAccessPolicies/tenantDefault/update",
        ],
    },
    RoleDefinition {
        id: PARTNER_TIER1_SUPPORT,
        display_name: "Partner Tier1 Support",
        description: "Do not use - not intended for general use.",
        is_privileged: true,
        is_au_scopable: false,
        allowed_resource_actions: USER_WRITE_ACTIONS_OF_AUTH_ADMINS,
    },
    RoleDefinition {
        id: PARTNER_TIER2_SUPPORT,
        display_name: "Partner Tier2 Support",
        description: "Do not use - not intended for general use.",
        is_privileged: true,
        is_au_scopable: false,
        allowed_resource_actions: USER_WRITE_ACTIONS_OF_AUTH_ADMINS,
    },
];

/// Looks a built-in role up by its id (= template id), case-insensitively.
pub fn built_in_role(id: &str) -> Option<&'static RoleDefinition> {
    // Stored ids are lowercase: compare exactly first, the hot path of every decision.
    BUILT_IN_ROLES
        .iter()
        .find(|it| it.id == id)
        .or_else(|| BUILT_IN_ROLES.iter().find(|it| it.id.eq_ignore_ascii_case(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_have_unique_guid_ids_and_actions_from_the_catalogue() {
        let mut ids: Vec<&str> = BUILT_IN_ROLES.iter().map(|it| it.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), BUILT_IN_ROLES.len(), "duplicate role id");
        for role in BUILT_IN_ROLES {
            assert!(crate::ids::is_guid(role.id), "{}", role.display_name);
            for action in role.allowed_resource_actions {
                assert!(
                    resource_action(action).is_some(),
                    "{} holds {action}, which is not in the catalogue",
                    role.display_name
                );
            }
            let holds_privileged =
                role.allowed_resource_actions.iter().any(|it| resource_action(it).is_some_and(|a| a.is_privileged));
            if holds_privileged {
                assert!(
                    role.is_privileged,
                    "{} holds a privileged action but is not marked privileged",
                    role.display_name
                );
            }
        }
        let mut names: Vec<&str> = RESOURCE_ACTIONS.iter().map(|it| it.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RESOURCE_ACTIONS.len(), "duplicate resource action");
    }

    #[test]
    fn exact_ids_and_descriptions_of_the_service_desk_roles() {
        let cases = [
            (GLOBAL_ADMINISTRATOR, "Global Administrator", true),
            (PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, "Privileged Authentication Administrator", true),
            (AUTHENTICATION_ADMINISTRATOR, "Authentication Administrator", true),
            (AUTHENTICATION_POLICY_ADMINISTRATOR, "Authentication Policy Administrator", false),
            (REPORTS_READER, "Reports Reader", false),
        ];
        for (id, name, is_privileged) in cases {
            let role = built_in_role(&id.to_uppercase()).expect("known role");
            assert_eq!((role.display_name, role.is_privileged), (name, is_privileged));
        }
        assert_eq!(
            built_in_role(AUTHENTICATION_ADMINISTRATOR).map(|it| it.description),
            Some("Can access to view, set and reset authentication method information for any non-admin user.")
        );
    }
}
