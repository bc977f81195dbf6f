//! The audit record model, in the shape of Graph's `directoryAudit`.

use time::OffsetDateTime;

use crate::directory::{Group, PropertyChange, User};
use crate::ids::ObjectId;

/// Entra's activities for directory changes: service, category, display name and operation type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    AddUser,
    UpdateUser,
    DeleteUser,
    /// `Set user manager`: a user's manager set or removed.
    SetUserManager,
    /// `Restore user`: a deleted user brought back from the deleted items.
    RestoreUser,
    /// `Hard Delete user`: a deleted user removed for good.
    HardDeleteUser,
    AddGroup,
    UpdateGroup,
    DeleteGroup,
    /// `Restore group`: a deleted group brought back from the deleted items.
    RestoreGroup,
    /// `Hard Delete group`: a deleted group removed for good.
    HardDeleteGroup,
    AddMemberToGroup,
    RemoveMemberFromGroup,
    AddOwnerToGroup,
    RemoveOwnerFromGroup,
    AddMemberToRole,
    AddScopedMemberToRole,
    AddMemberToRoleScopedOverRestrictedUnit,
    RemoveMemberFromRole,
    RemoveScopedMemberFromRole,
    RemoveMemberFromRoleScopedOverRestrictedUnit,
    AddRoleDefinition,
    UpdateRoleDefinition,
    DeleteRoleDefinition,
    /// `Add role from template`: a directory role activated (Graph's `POST /directoryRoles`).
    AddRoleFromTemplate,
    AddAdministrativeUnit,
    UpdateAdministrativeUnit,
    DeleteAdministrativeUnit,
    AddMemberToAdministrativeUnit,
    RemoveMemberFromAdministrativeUnit,
    AddMemberToRestrictedUnit,
    RemoveMemberFromRestrictedUnit,
    AddServicePrincipal,
    RemoveServicePrincipal,
    /// `Update service principal`: its name or whether it may sign in (`accountEnabled`).
    UpdateServicePrincipal,
    /// `Update StsRefreshTokenValidFrom Timestamp`: sign-in sessions revoked.
    UpdateStsRefreshTokenValidFrom,
    /// `User registered security info` (Authentication Methods).
    UserRegisteredSecurityInfo,
    /// `Change password (self-service)` (Self-service Password Management).
    ChangePasswordSelfService,
    /// `Authentication Methods Policy Update` (Authentication Methods, ApplicationManagement).
    AuthenticationMethodsPolicyUpdate,
    UpdateSecurityDefaults,
    GetPasskeyCreationOptions,
    /// A passkey's signature counter went back: refused as possibly cloned (Keyward's own).
    PasskeyPossiblyCloned,
    /// `Add Passkey (device-bound)` (Device Registration Service): a device-bound passkey registered.
    AddPasskeyDeviceBound,
    /// `Delete Passkey (device-bound)` (Device Registration Service).
    DeletePasskeyDeviceBound,
    /// `Enable Strong Authentication`: per-user MFA turned on.
    EnableStrongAuthentication,
    /// `Disable Strong Authentication`: per-user MFA turned off.
    DisableStrongAuthentication,
    AddApplication,
    UpdateApplication,
    DeleteApplication,
    /// `Restore application`: a deleted application brought back from the deleted items.
    RestoreApplication,
    /// `Hard Delete application`: a deleted application removed for good.
    HardDeleteApplication,
    /// `Update application – Certificates and secrets management `: a secret or certificate added or removed.
    UpdateApplicationCredentials,
    /// `Admin registered security info` (Authentication Methods).
    AdminRegisteredSecurityInfo,
    /// `Admin deleted security info` (Authentication Methods).
    AdminDeletedSecurityInfo,
    /// `Admin updated security info` (Authentication Methods).
    AdminUpdatedSecurityInfo,
    /// `Reset password (by admin)` (Self-service Password Management).
    ResetPasswordByAdmin,
    /// `User deleted security info` (Authentication Methods).
    UserDeletedSecurityInfo,
    /// `User updated security info` (Authentication Methods).
    UserUpdatedSecurityInfo,
    /// `User reported suspicious activity` (Authentication Methods): the user used a
    /// notification's "This wasn't me" link.
    UserReportedSuspiciousActivity,
    /// `Request approval of a service desk change` (Keyward, Authentication Methods): dual
    /// control held a change to a privileged user for a second administrator.
    RequestServiceDeskApproval,
    /// `Approve service desk change` (Keyward): a second administrator approved a held change,
    /// which ran in the same transaction as the requester.
    ApproveServiceDeskChange,
    /// `Deny service desk change` (Keyward): a second administrator denied a held change.
    DenyServiceDeskChange,
    /// `Caller verified` (Keyward, Authentication Methods): the user confirmed a service-desk
    /// call with the agent's code, or their manager or another administrator vouched for them.
    CallerVerified,
    /// `Caller verification failed` (Keyward): wrong codes, or the user said it was not their call.
    CallerVerificationFailed,
    /// `Complete bulk operation` (Keyward): a bulk operation finished; its counts are in
    /// `additionalDetails` (each user's change has its own record).
    CompleteBulkOperation,
    /// `Consent to application` (ApplicationManagement): a user or administrator consented.
    ConsentToApplication,
    /// `Add delegated permission grant` (ApplicationManagement): a grant created or extended.
    AddDelegatedPermissionGrant,
    /// `Remove delegated permission grant` (ApplicationManagement).
    RemoveDelegatedPermissionGrant,
    /// `Update authorization policy` (AuthorizationPolicy): for example what users may consent to.
    UpdateAuthorizationPolicy,
    /// `Update audit log retention` (Keyward, Policy): an operator changed how long the tenant's
    /// audit records are kept (`keyward audit retention --days`).
    UpdateAuditRetention,
    /// Privileged Identity Management's records (`loggedByService` `PIM`, category `RoleManagement`).
    Pim(PimActivity),
}

/// Privileged Identity Management's activities for directory roles, with Entra's strings.
/// `permanent` chooses between the `(permanent)` and `(timebound)` forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PimActivity {
    EligibleAddRequested {
        permanent: bool,
    },
    EligibleAddCompleted {
        permanent: bool,
    },
    EligibleRemoveRequested {
        permanent: bool,
    },
    EligibleRemoveCompleted {
        permanent: bool,
    },
    /// `Update eligible member in PIM requested (extend)`: an eligibility's schedule changed.
    EligibleUpdateRequested,
    MemberAddRequested {
        permanent: bool,
    },
    MemberAddCompleted {
        permanent: bool,
    },
    MemberRemoveRequested {
        permanent: bool,
    },
    MemberRemoveCompleted {
        permanent: bool,
    },
    /// `Update member in PIM requested (extend)`: an active assignment's schedule changed.
    MemberUpdateRequested,
    ActivationRequested,
    ActivationApprovalRequested,
    ActivationCompleted,
    ActivationCanceled,
    ActivationApproved,
    ActivationDenied,
    DeactivationRequested,
    DeactivationCompleted,
    /// `Remove member from role (PIM activation expired)`, written when the end is first observed.
    ActivationExpired,
    /// `PIM activation request expired`: nobody decided on it in time.
    RequestExpired,
    /// `Update role setting in PIM`.
    RoleSettingUpdated,
}

impl PimActivity {
    pub fn display_name(self) -> &'static str {
        use PimActivity::*;
        let bound = |permanent: bool, a: &'static str, b: &'static str| if permanent { a } else { b };
        match self {
            EligibleAddRequested { permanent } => bound(
                permanent,
                "Add eligible member to role in PIM requested (permanent)",
                "Add eligible member to role in PIM requested (timebound)",
            ),
            EligibleAddCompleted { permanent } => bound(
                permanent,
                "Add eligible member to role in PIM completed (permanent)",
                "Add eligible member to role in PIM completed (timebound)",
            ),
            EligibleRemoveRequested { permanent } => bound(
                permanent,
                "Remove eligible member from role in PIM requested (permanent)",
                "Remove eligible member from role in PIM requested (timebound)",
            ),
            EligibleRemoveCompleted { permanent } => bound(
                permanent,
                "Remove eligible member from role in PIM completed (permanent)",
                "Remove eligible member from role in PIM completed (timebound)",
            ),
            EligibleUpdateRequested => "Update eligible member in PIM requested (extend)",
            MemberAddRequested { permanent } => bound(
                permanent,
                "Add member to role in PIM requested (permanent)",
                "Add member to role in PIM requested (timebound)",
            ),
            MemberAddCompleted { permanent } => bound(
                permanent,
                "Add member to role in PIM completed (permanent)",
                "Add member to role in PIM completed (timebound)",
            ),
            MemberRemoveRequested { permanent } => bound(
                permanent,
                "Remove member from role in PIM requested (permanent)",
                "Remove member from role in PIM requested (timebound)",
            ),
            MemberRemoveCompleted { permanent } => bound(
                permanent,
                "Remove member from role in PIM completed (permanent)",
                "Remove member from role in PIM completed (timebound)",
            ),
            MemberUpdateRequested => "Update member in PIM requested (extend)",
            ActivationRequested => "Add member to role requested (PIM activation)",
            ActivationApprovalRequested => "Add member to role approval requested (PIM activation)",
            ActivationCompleted => "Add member to role completed (PIM activation)",
            ActivationCanceled => "Add member to role canceled (PIM activation)",
            ActivationApproved => "Add member to role request approved (PIM activation)",
            ActivationDenied => "Add member to role request denied (PIM activation)",
            DeactivationRequested => "Remove member from role requested (PIM deactivate)",
            DeactivationCompleted => "Remove member from role completed (PIM deactivate)",
            ActivationExpired => "Remove member from role (PIM activation expired)",
            RequestExpired => "PIM activation request expired",
            RoleSettingUpdated => "Update role setting in PIM",
        }
    }

    pub fn operation_type(self) -> &'static str {
        use PimActivity::*;
        match self {
            EligibleAddRequested { .. }
            | EligibleAddCompleted { .. }
            | MemberAddRequested { .. }
            | MemberAddCompleted { .. }
            | ActivationRequested
            | ActivationApprovalRequested
            | ActivationCompleted => "Add",
            EligibleRemoveRequested { .. }
            | EligibleRemoveCompleted { .. }
            | MemberRemoveRequested { .. }
            | MemberRemoveCompleted { .. }
            | DeactivationRequested
            | DeactivationCompleted
            | ActivationExpired => "Delete",
            EligibleUpdateRequested
            | MemberUpdateRequested
            | ActivationCanceled
            | ActivationApproved
            | ActivationDenied
            | RequestExpired
            | RoleSettingUpdated => "Update",
        }
    }
}

impl Activity {
    /// `activityDisplayName`, exactly as Entra writes it.
    pub fn display_name(self) -> &'static str {
        match self {
            Activity::AddUser => "Add user",
            Activity::UpdateUser => "Update user",
            Activity::DeleteUser => "Delete user",
            Activity::SetUserManager => "Set user manager",
            Activity::RestoreUser => "Restore user",
            Activity::HardDeleteUser => "Hard Delete user",
            Activity::AddGroup => "Add group",
            Activity::UpdateGroup => "Update group",
            Activity::DeleteGroup => "Delete group",
            Activity::RestoreGroup => "Restore group",
            Activity::HardDeleteGroup => "Hard Delete group",
            Activity::AddMemberToGroup => "Add member to group",
            Activity::RemoveMemberFromGroup => "Remove member from group",
            Activity::AddOwnerToGroup => "Add owner to group",
            Activity::RemoveOwnerFromGroup => "Remove owner from group",
            Activity::AddMemberToRole => "Add member to role",
            Activity::AddScopedMemberToRole => "Add scoped member to role",
            Activity::AddMemberToRoleScopedOverRestrictedUnit => {
                "Add member to role scoped over Restricted Management Administrative Unit"
            }
            Activity::RemoveMemberFromRole => "Remove member from role",
            Activity::RemoveScopedMemberFromRole => "Remove scoped member from role",
            Activity::RemoveMemberFromRoleScopedOverRestrictedUnit => {
                "Remove member from role scoped over Restricted Management Administrative Unit"
            }
            Activity::AddRoleDefinition => "Add role definition",
            Activity::UpdateRoleDefinition => "Update role definition",
            Activity::DeleteRoleDefinition => "Delete role definition",
            Activity::AddRoleFromTemplate => "Add role from template",
            Activity::AddAdministrativeUnit => "Add administrative unit",
            Activity::UpdateAdministrativeUnit => "Update administrative unit",
            Activity::DeleteAdministrativeUnit => "Delete administrative unit",
            Activity::AddMemberToAdministrativeUnit => "Add member to administrative unit",
            Activity::RemoveMemberFromAdministrativeUnit => "Remove member from administrative unit",
            Activity::AddMemberToRestrictedUnit => "Add member to restricted management administrative unit",
            Activity::RemoveMemberFromRestrictedUnit => "Remove member from restricted management administrative unit",
            Activity::AddServicePrincipal => "Add service principal",
            Activity::RemoveServicePrincipal => "Remove service principal",
            Activity::UpdateServicePrincipal => "Update service principal",
            Activity::UpdateStsRefreshTokenValidFrom => "Update StsRefreshTokenValidFrom Timestamp",
            Activity::UserRegisteredSecurityInfo => "User registered security info",
            Activity::ChangePasswordSelfService => "Change password (self-service)",
            Activity::AuthenticationMethodsPolicyUpdate => "Authentication Methods Policy Update",
            Activity::UpdateSecurityDefaults => "Update security defaults",
            Activity::GetPasskeyCreationOptions => "Get passkey creation options",
            Activity::PasskeyPossiblyCloned => "Passkey possibly cloned",
            Activity::AddPasskeyDeviceBound => "Add Passkey (device-bound)",
            Activity::DeletePasskeyDeviceBound => "Delete Passkey (device-bound)",
            Activity::EnableStrongAuthentication => "Enable Strong Authentication",
            Activity::DisableStrongAuthentication => "Disable Strong Authentication",
            Activity::AddApplication => "Add application",
            Activity::UpdateApplication => "Update application",
            Activity::DeleteApplication => "Delete application",
            Activity::RestoreApplication => "Restore application",
            Activity::HardDeleteApplication => "Hard Delete application",
            // Entra's string, with its en dash and trailing space.
            Activity::UpdateApplicationCredentials => "Update application – Certificates and secrets management ",
            Activity::AdminRegisteredSecurityInfo => "Admin registered security info",
            Activity::AdminDeletedSecurityInfo => "Admin deleted security info",
            Activity::AdminUpdatedSecurityInfo => "Admin updated security info",
            Activity::ResetPasswordByAdmin => "Reset password (by admin)",
            Activity::UserDeletedSecurityInfo => "User deleted security info",
            Activity::UserUpdatedSecurityInfo => "User updated security info",
            Activity::UserReportedSuspiciousActivity => "User reported suspicious activity",
            Activity::RequestServiceDeskApproval => "Request approval of a service desk change",
            Activity::ApproveServiceDeskChange => "Approve service desk change",
            Activity::DenyServiceDeskChange => "Deny service desk change",
            Activity::CompleteBulkOperation => "Complete bulk operation",
            Activity::CallerVerified => "Caller verified",
            Activity::CallerVerificationFailed => "Caller verification failed",
            Activity::ConsentToApplication => "Consent to application",
            Activity::AddDelegatedPermissionGrant => "Add delegated permission grant",
            Activity::RemoveDelegatedPermissionGrant => "Remove delegated permission grant",
            Activity::UpdateAuthorizationPolicy => "Update authorization policy",
            Activity::UpdateAuditRetention => "Update audit log retention",
            Activity::Pim(it) => it.display_name(),
        }
    }

    /// `category`.
    pub fn category(self) -> &'static str {
        match self {
            Activity::AddUser
            | Activity::UpdateUser
            | Activity::DeleteUser
            | Activity::SetUserManager
            | Activity::RestoreUser
            | Activity::HardDeleteUser
            | Activity::UpdateStsRefreshTokenValidFrom
            | Activity::UserRegisteredSecurityInfo
            | Activity::ChangePasswordSelfService
            | Activity::EnableStrongAuthentication
            | Activity::DisableStrongAuthentication
            | Activity::AdminRegisteredSecurityInfo
            | Activity::AdminDeletedSecurityInfo
            | Activity::AdminUpdatedSecurityInfo
            | Activity::UserDeletedSecurityInfo
            | Activity::UserUpdatedSecurityInfo
            | Activity::UserReportedSuspiciousActivity
            | Activity::RequestServiceDeskApproval
            | Activity::ApproveServiceDeskChange
            | Activity::DenyServiceDeskChange
            | Activity::CallerVerified
            | Activity::CallerVerificationFailed
            | Activity::CompleteBulkOperation
            | Activity::GetPasskeyCreationOptions
            | Activity::PasskeyPossiblyCloned
            | Activity::AddPasskeyDeviceBound
            | Activity::DeletePasskeyDeviceBound
            | Activity::ResetPasswordByAdmin => "UserManagement",
            Activity::AddMemberToRole
            | Activity::AddScopedMemberToRole
            | Activity::AddMemberToRoleScopedOverRestrictedUnit
            | Activity::RemoveMemberFromRole
            | Activity::RemoveScopedMemberFromRole
            | Activity::RemoveMemberFromRoleScopedOverRestrictedUnit
            | Activity::AddRoleDefinition
            | Activity::UpdateRoleDefinition
            | Activity::DeleteRoleDefinition
            | Activity::AddRoleFromTemplate
            | Activity::Pim(_) => "RoleManagement",
            Activity::AddAdministrativeUnit
            | Activity::UpdateAdministrativeUnit
            | Activity::DeleteAdministrativeUnit
            | Activity::AddMemberToAdministrativeUnit
            | Activity::RemoveMemberFromAdministrativeUnit
            | Activity::AddMemberToRestrictedUnit
            | Activity::RemoveMemberFromRestrictedUnit => "AdministrativeUnit",
            Activity::AddServicePrincipal
            | Activity::RemoveServicePrincipal
            | Activity::UpdateServicePrincipal
            | Activity::AuthenticationMethodsPolicyUpdate
            | Activity::AddApplication
            | Activity::UpdateApplication
            | Activity::DeleteApplication
            | Activity::RestoreApplication
            | Activity::HardDeleteApplication
            | Activity::UpdateApplicationCredentials
            | Activity::ConsentToApplication
            | Activity::AddDelegatedPermissionGrant
            | Activity::RemoveDelegatedPermissionGrant => "ApplicationManagement",
            Activity::UpdateAuthorizationPolicy => "AuthorizationPolicy",
            Activity::UpdateSecurityDefaults | Activity::UpdateAuditRetention => "Policy",
            _ => "GroupManagement",
        }
    }

    /// `loggedByService`.
    pub fn logged_by_service(self) -> &'static str {
        match self {
            Activity::UserRegisteredSecurityInfo
            | Activity::AuthenticationMethodsPolicyUpdate
            | Activity::AdminRegisteredSecurityInfo
            | Activity::AdminDeletedSecurityInfo
            | Activity::AdminUpdatedSecurityInfo
            | Activity::UserDeletedSecurityInfo
            | Activity::UserUpdatedSecurityInfo
            | Activity::UserReportedSuspiciousActivity
            | Activity::RequestServiceDeskApproval
            | Activity::ApproveServiceDeskChange
            | Activity::DenyServiceDeskChange
            | Activity::CallerVerified
            | Activity::CallerVerificationFailed
            | Activity::GetPasskeyCreationOptions
            | Activity::PasskeyPossiblyCloned => "Authentication Methods",
            Activity::AddPasskeyDeviceBound | Activity::DeletePasskeyDeviceBound => "Device Registration Service",
            Activity::ResetPasswordByAdmin => "Self-service Password Management",
            Activity::ChangePasswordSelfService => "Self-service Password Management",
            Activity::UpdateSecurityDefaults => "Conditional Access",
            Activity::Pim(_) => "PIM",
            _ => "Core Directory",
        }
    }

    /// `operationType`.
    pub fn operation_type(self) -> &'static str {
        match self {
            Activity::AddUser
            | Activity::AddGroup
            | Activity::AddMemberToGroup
            | Activity::AddOwnerToGroup
            | Activity::AddAdministrativeUnit
            | Activity::AddMemberToAdministrativeUnit => "Add",
            Activity::AddMemberToRole
            | Activity::AddScopedMemberToRole
            | Activity::AddMemberToRoleScopedOverRestrictedUnit => "Assign",
            Activity::RemoveMemberFromRole
            | Activity::RemoveScopedMemberFromRole
            | Activity::RemoveMemberFromRoleScopedOverRestrictedUnit => "Unassign",
            Activity::AddRoleDefinition | Activity::AddRoleFromTemplate => "Add",
            Activity::UpdateRoleDefinition | Activity::UpdateAdministrativeUnit => "Update",
            Activity::DeleteRoleDefinition | Activity::DeleteAdministrativeUnit => "Delete",
            Activity::RemoveMemberFromAdministrativeUnit | Activity::RemoveMemberFromRestrictedUnit => "Unassign",
            Activity::AddMemberToRestrictedUnit | Activity::AddServicePrincipal => "Add",
            Activity::RemoveServicePrincipal => "Delete",
            Activity::UpdateUser
            | Activity::SetUserManager
            | Activity::RestoreUser
            | Activity::UpdateGroup
            | Activity::RestoreGroup
            | Activity::UpdateStsRefreshTokenValidFrom
            | Activity::ChangePasswordSelfService
            | Activity::AuthenticationMethodsPolicyUpdate
            | Activity::UpdateSecurityDefaults
            | Activity::EnableStrongAuthentication
            | Activity::DisableStrongAuthentication => "Update",
            Activity::UserRegisteredSecurityInfo | Activity::AddApplication | Activity::AdminRegisteredSecurityInfo => {
                "Add"
            }
            Activity::AdminDeletedSecurityInfo | Activity::UserDeletedSecurityInfo => "Delete",
            Activity::ResetPasswordByAdmin
            | Activity::AdminUpdatedSecurityInfo
            | Activity::UserUpdatedSecurityInfo
            | Activity::UserReportedSuspiciousActivity
            | Activity::ApproveServiceDeskChange
            | Activity::DenyServiceDeskChange
            | Activity::CompleteBulkOperation
            | Activity::CallerVerified
            | Activity::CallerVerificationFailed => "Update",
            Activity::RequestServiceDeskApproval => "Add",
            Activity::DeleteApplication | Activity::HardDeleteApplication => "Delete",
            Activity::UpdateApplication
            | Activity::UpdateApplicationCredentials
            | Activity::RestoreApplication
            | Activity::UpdateServicePrincipal => "Update",
            Activity::DeleteUser | Activity::HardDeleteUser | Activity::DeleteGroup | Activity::HardDeleteGroup => {
                "Delete"
            }
            Activity::RemoveMemberFromGroup | Activity::RemoveOwnerFromGroup => "Unassign",
            Activity::ConsentToApplication | Activity::AddDelegatedPermissionGrant => "Assign",
            Activity::RemoveDelegatedPermissionGrant => "Unassign",
            Activity::UpdateAuthorizationPolicy | Activity::UpdateAuditRetention => "Update",
            Activity::GetPasskeyCreationOptions | Activity::PasskeyPossiblyCloned => "Other",
            Activity::AddPasskeyDeviceBound => "Add",
            Activity::DeletePasskeyDeviceBound => "Delete",
            Activity::Pim(it) => it.operation_type(),
        }
    }
}

/// `result` of an audited operation; serialized in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditResult {
    Success,
    Failure,
}

impl AuditResult {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Failure => "failure",
        }
    }
}

/// Who initiated an operation (`initiatedBy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initiator {
    User { id: ObjectId, display_name: String, user_principal_name: String, ip_address: Option<String> },
    App { app_id: String, display_name: String, service_principal_id: Option<ObjectId> },
}

/// Every `category` Keyward's records carry, for filters to offer.
pub const CATEGORIES: [&str; 7] = [
    "AdministrativeUnit",
    "ApplicationManagement",
    "AuthorizationPolicy",
    "GroupManagement",
    "Policy",
    "RoleManagement",
    "UserManagement",
];

/// Every `loggedByService` Keyward's records carry.
pub const SERVICES: [&str; 6] = [
    "Authentication Methods",
    "Conditional Access",
    "Core Directory",
    "Device Registration Service",
    "PIM",
    "Self-service Password Management",
];

/// One target of an operation (`targetResources[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetResource {
    pub id: ObjectId,
    pub display_name: Option<String>,
    pub kind: &'static str,
    pub user_principal_name: Option<String>,
    pub modified_properties: Vec<PropertyChange>,
}

impl TargetResource {
    /// A user target without property changes.
    pub fn user(user: &User) -> TargetResource {
        TargetResource {
            id: user.id.clone(),
            display_name: Some(user.display_name.clone()),
            kind: "User",
            user_principal_name: Some(user.user_principal_name.clone()),
            modified_properties: Vec::new(),
        }
    }

    /// A service principal target without property changes.
    pub fn service_principal(principal: &crate::directory::ServicePrincipal) -> TargetResource {
        TargetResource {
            id: principal.id.clone(),
            display_name: Some(principal.display_name.clone()),
            kind: "ServicePrincipal",
            user_principal_name: None,
            modified_properties: Vec::new(),
        }
    }

    /// A group target without property changes.
    pub fn group(group: &Group) -> TargetResource {
        TargetResource {
            id: group.id.clone(),
            display_name: Some(group.display_name.clone()),
            kind: "Group",
            user_principal_name: None,
            modified_properties: Vec::new(),
        }
    }

    /// A target known only by its id and type (a refused request's, or an object that is gone).
    pub fn bare(id: ObjectId, kind: &'static str) -> TargetResource {
        TargetResource { id, display_name: None, kind, user_principal_name: None, modified_properties: Vec::new() }
    }

    /// [`bare`](Self::bare) for an id as a client sent it: none when it is no object id.
    pub fn named(key: &str, kind: &'static str) -> Option<TargetResource> {
        ObjectId::parse(key).map(|id| TargetResource::bare(id, kind))
    }

    /// The same target with these modified properties.
    pub fn with_changes(mut self, changes: Vec<PropertyChange>) -> TargetResource {
        self.modified_properties = changes;
        self
    }
}

/// A `directoryAudit` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: String,
    pub tenant_id: ObjectId,
    pub correlation_id: String,
    pub activity_date_time: OffsetDateTime,
    pub logged_by_service: String,
    pub category: String,
    pub activity_display_name: String,
    pub operation_type: String,
    pub result: AuditResult,
    pub result_reason: String,
    pub initiated_by: Initiator,
    pub target_resources: Vec<TargetResource>,
    pub additional_details: Vec<(String, String)>,
}

/// The context every record of one operation shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditContext {
    pub tenant_id: ObjectId,
    pub correlation_id: String,
    pub at: OffsetDateTime,
    pub initiated_by: Initiator,
}

impl AuditContext {
    /// A refused attempt at `activity` on `targets`, with the reason.
    pub fn failure(&self, id: String, activity: Activity, targets: Vec<TargetResource>, reason: &str) -> AuditRecord {
        let mut res = self.success(id, activity, targets);
        res.result = AuditResult::Failure;
        res.result_reason = reason.to_owned();
        res
    }

    /// A successful record of `activity` on `targets`; `id` is a fresh unique id from the caller.
    pub fn success(&self, id: String, activity: Activity, targets: Vec<TargetResource>) -> AuditRecord {
        AuditRecord {
            id,
            tenant_id: self.tenant_id.clone(),
            correlation_id: self.correlation_id.clone(),
            activity_date_time: self.at,
            logged_by_service: activity.logged_by_service().to_owned(),
            category: activity.category().to_owned(),
            activity_display_name: activity.display_name().to_owned(),
            operation_type: activity.operation_type().to_owned(),
            result: AuditResult::Success,
            result_reason: String::new(),
            initiated_by: self.initiated_by.clone(),
            target_resources: targets,
            additional_details: Vec::new(),
        }
    }
}

/// The properties Entra records on the member or owner when a group relation is added (`new`) or
/// removed (`old`): the group's id and name.
pub fn group_reference_properties(group: &Group, is_added: bool) -> Vec<PropertyChange> {
    let values = [
        ("Group.ObjectID", crate::json::string(group.id.as_str())),
        ("Group.DisplayName", crate::json::string(&group.display_name)),
    ];
    values
        .into_iter()
        .map(|(name, value)| {
            let (old_value, new_value) = if is_added { (None, Some(value)) } else { (Some(value), None) };
            PropertyChange { name: name.to_owned(), old_value, new_value }
        })
        .collect()
}

/// The properties Entra records when a group is created.
pub fn group_creation_properties(group: &Group) -> Vec<PropertyChange> {
    vec![
        PropertyChange::new("DisplayName", "[]", crate::json::string_array([group.display_name.as_str()])),
        PropertyChange::new("MailNickname", "[]", crate::json::string_array([group.mail_nickname.as_str()])),
        PropertyChange::new("SecurityEnabled", "[]", format!("[{}]", group.security_enabled)),
        PropertyChange::new("IsAssignableToRole", "[]", format!("[{}]", group.is_assignable_to_role)),
    ]
}

/// The properties Entra records when a user is created.
pub fn user_creation_properties(user: &User) -> Vec<PropertyChange> {
    let text = |value: &str| crate::json::string_array([value]);
    let mut res = vec![
        PropertyChange::new("AccountEnabled", "[]", format!("[{}]", user.account_enabled)),
        PropertyChange::new("DisplayName", "[]", text(&user.display_name)),
        PropertyChange::new("MailNickname", "[]", text(&user.mail_nickname)),
        PropertyChange::new("UserPrincipalName", "[]", text(&user.user_principal_name)),
    ];
    if let Some(mail) = &user.mail {
        res.push(PropertyChange::new("Mail", "[]", text(mail)));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activities_use_entras_strings() {
        let cases = [
            (Activity::AddUser, "Add user", "UserManagement", "Add"),
            (Activity::UpdateUser, "Update user", "UserManagement", "Update"),
            (Activity::DeleteUser, "Delete user", "UserManagement", "Delete"),
            (Activity::SetUserManager, "Set user manager", "UserManagement", "Update"),
            (Activity::RestoreUser, "Restore user", "UserManagement", "Update"),
            (Activity::HardDeleteUser, "Hard Delete user", "UserManagement", "Delete"),
            (Activity::AddGroup, "Add group", "GroupManagement", "Add"),
            (Activity::RestoreGroup, "Restore group", "GroupManagement", "Update"),
            (Activity::HardDeleteGroup, "Hard Delete group", "GroupManagement", "Delete"),
            (Activity::AddMemberToGroup, "Add member to group", "GroupManagement", "Add"),
            (Activity::RemoveMemberFromGroup, "Remove member from group", "GroupManagement", "Unassign"),
            (Activity::AddOwnerToGroup, "Add owner to group", "GroupManagement", "Add"),
            (Activity::AddMemberToRole, "Add member to role", "RoleManagement", "Assign"),
            (Activity::AddScopedMemberToRole, "Add scoped member to role", "RoleManagement", "Assign"),
            (Activity::AddRoleFromTemplate, "Add role from template", "RoleManagement", "Add"),
            (Activity::AddAdministrativeUnit, "Add administrative unit", "AdministrativeUnit", "Add"),
            (Activity::AddMemberToAdministrativeUnit, "Add member to administrative unit", "AdministrativeUnit", "Add"),
        ];
        for (activity, name, category, operation) in cases {
            assert_eq!(activity.display_name(), name);
            assert_eq!(activity.category(), category);
            assert_eq!(activity.operation_type(), operation);
            assert_eq!(activity.logged_by_service(), "Core Directory");
        }
    }

    #[test]
    fn pim_activities_use_entras_strings() {
        let cases = [
            (PimActivity::ActivationRequested, "Add member to role requested (PIM activation)"),
            (PimActivity::ActivationCompleted, "Add member to role completed (PIM activation)"),
            (
                PimActivity::EligibleAddCompleted { permanent: true },
                "Add eligible member to role in PIM completed (permanent)",
            ),
            (
                PimActivity::EligibleRemoveCompleted { permanent: false },
                "Remove eligible member from role in PIM completed (timebound)",
            ),
            (PimActivity::ActivationExpired, "Remove member from role (PIM activation expired)"),
            (PimActivity::RoleSettingUpdated, "Update role setting in PIM"),
        ];
        for (activity, name) in cases {
            let activity = Activity::Pim(activity);
            assert_eq!(activity.display_name(), name);
            assert_eq!(activity.category(), "RoleManagement");
            assert_eq!(activity.logged_by_service(), "PIM");
        }
    }
}
