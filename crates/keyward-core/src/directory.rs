//! The directory model: tenants, users and groups, and the rules for creating and changing them.

use time::OffsetDateTime;

use crate::ids::ObjectId;
use crate::json;
use crate::profile::{self, Profile};
use crate::secret::Secret;

/// A tenant (Graph `organization`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: ObjectId,
    pub display_name: String,
    pub created: OffsetDateTime,
    pub domains: Vec<Domain>,
}

impl Tenant {
    /// Whether `name` is one of the tenant's verified domains (case-insensitive).
    pub fn has_domain(&self, name: &str) -> bool {
        self.domains.iter().any(|it| it.name.eq_ignore_ascii_case(name))
    }
}

/// A verified domain of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub name: String,
    pub is_default: bool,
    pub is_initial: bool,
}

/// A user account. Secrets (password hash, methods) are never part of this type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: ObjectId,
    pub tenant_id: ObjectId,
    pub user_principal_name: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub mail: Option<String>,
    pub mail_nickname: String,
    pub other_mails: Vec<String>,
    pub mobile_phone: Option<String>,
    pub business_phones: Vec<String>,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub account_enabled: bool,
    pub usage_location: Option<String>,
    pub created: OffsetDateTime,
    pub sign_in_sessions_valid_from: OffsetDateTime,
    pub force_change_password_next_sign_in: bool,
    /// When the password was last set (`lastPasswordChangeDateTime`); `None` without a password.
    pub last_password_change: Option<OffsetDateTime>,
    /// The user's manager (`manager`), a user of the same tenant.
    pub manager: Option<ObjectId>,
    pub profile: Profile,
}

impl User {
    /// A guest (`userType` `Guest`), who has a guest's limited default access.
    pub fn is_guest(&self) -> bool {
        self.profile.get("userType") == Some("Guest")
    }
}

/// A group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: ObjectId,
    pub tenant_id: ObjectId,
    pub display_name: String,
    pub description: Option<String>,
    pub mail_nickname: String,
    pub mail_enabled: bool,
    pub security_enabled: bool,
    pub is_assignable_to_role: bool,
    pub group_types: Vec<String>,
    pub created: OffsetDateTime,
}

/// A service principal: an application's identity in the tenant. Directory roles can be assigned
/// to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePrincipal {
    pub id: ObjectId,
    pub tenant_id: ObjectId,
    pub app_id: String,
    pub display_name: String,
    pub account_enabled: bool,
    pub created: OffsetDateTime,
}

/// Validates a new service principal: an application id (a GUID) and a display name.
pub fn new_service_principal(
    tenant: &Tenant,
    id: ObjectId,
    app_id: Option<String>,
    display_name: Option<String>,
    account_enabled: Option<bool>,
    now: OffsetDateTime,
) -> Result<ServicePrincipal, DirectoryError> {
    let app_id = app_id
        .and_then(|it| ObjectId::parse(&it))
        .ok_or(DirectoryError::InvalidValue { property: "appId", resource: "ServicePrincipal" })?;
    let display_name = match display_name {
        Some(name) => service_principal_name(name)?,
        None => app_id.to_string(),
    };
    Ok(ServicePrincipal {
        id,
        tenant_id: tenant.id.clone(),
        app_id: app_id.to_string(),
        display_name,
        account_enabled: account_enabled.unwrap_or(true),
        created: now,
    })
}

/// A change to a service principal (`PATCH /servicePrincipals/{id}`); `None` leaves a property
/// as it is.
#[derive(Debug, Default, Clone)]
pub struct ServicePrincipalDraft {
    pub display_name: Option<String>,
    pub account_enabled: Option<bool>,
    /// `id` or `appId` stated in the body: accepted when they are the principal's own (clients
    /// that send the object back whole), refused otherwise, as they are read-only.
    pub stated_ids: Vec<(&'static str, String)>,
}

impl ServicePrincipalDraft {
    /// The display name to set, checked as a new principal's is: 1 to 256 characters once
    /// trimmed, no control characters.
    pub fn display_name(&self) -> Result<Option<String>, DirectoryError> {
        self.display_name.clone().map(service_principal_name).transpose()
    }
}

/// A service principal's display name, created or changed: 1 to 256 characters once trimmed, no
/// control characters.
fn service_principal_name(name: String) -> Result<String, DirectoryError> {
    let name = required_text(Some(name), "displayName", "ServicePrincipal")?;
    if !is_clean_text(&name) {
        return Err(DirectoryError::InvalidValue { property: "displayName", resource: "ServicePrincipal" });
    }
    Ok(name)
}

/// The kind of a directory object, as it appears in `@odata.type` and audit `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    User,
    Group,
    ServicePrincipal,
}

impl ObjectKind {
    /// The stored name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::User => "user",
            ObjectKind::Group => "group",
            ObjectKind::ServicePrincipal => "servicePrincipal",
        }
    }

    /// Parses the stored name of the kind.
    pub fn parse(raw: &str) -> Option<ObjectKind> {
        match raw {
            "user" => Some(ObjectKind::User),
            "group" => Some(ObjectKind::Group),
            "servicePrincipal" => Some(ObjectKind::ServicePrincipal),
            _ => None,
        }
    }
}

/// A reference to a directory object with the names an audit record or a mixed collection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant, reason = "short-lived values in small collections; boxing buys nothing")]
pub enum DirectoryObject {
    User(User),
    Group(Group),
    ServicePrincipal(ServicePrincipal),
}

impl DirectoryObject {
    /// The object's id.
    pub fn id(&self) -> &ObjectId {
        match self {
            DirectoryObject::User(it) => &it.id,
            DirectoryObject::Group(it) => &it.id,
            DirectoryObject::ServicePrincipal(it) => &it.id,
        }
    }
}

/// Why a directory change was refused. The message is Graph's, naming the property.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("Invalid value specified for property '{property}' of resource '{resource}'.")]
    InvalidValue { property: &'static str, resource: &'static str },
    #[error(
        "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization."
    )]
    UnverifiedDomain,
    #[error("Property '{property}' is read-only and cannot be set.")]
    ReadOnly { property: &'static str },
    #[error(
        "The specified password does not comply with password complexity requirements. Please provide a different password."
    )]
    WeakPassword,
    #[error(
        "Keyward does not allow weaker passwords: passwordPolicies may be 'DisablePasswordExpiration' (Keyward's passwords never expire) or null, not 'DisableStrongPassword'."
    )]
    StrongPasswordRequired,
    #[error(
        "A user cannot be their own manager, nor the manager of someone in their own line of managers. Remove the other link first."
    )]
    ManagerLoop,
}

/// The fields of a user to create, already parsed from the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDraft {
    pub user_principal_name: Option<String>,
    pub display_name: Option<String>,
    pub mail_nickname: Option<String>,
    pub account_enabled: Option<bool>,
    pub password: Option<Secret>,
    pub force_change_password_next_sign_in: Option<bool>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub mail: Option<String>,
    pub other_mails: Vec<String>,
    pub mobile_phone: Option<String>,
    pub business_phones: Vec<String>,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub usage_location: Option<String>,
    /// Profile properties as sent, checked by [`new_user`].
    pub profile: Vec<(&'static profile::Field, Option<String>)>,
}

/// What a user or group is a member of (`memberOf`): a group, a directory role (a built-in role
/// assigned at the tenant's scope) or an administrative unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    Group(Group),
    Role(&'static crate::authz::RoleDefinition),
    Unit(AdministrativeUnit),
}

impl Membership {
    /// The object's id as Graph shows it (a directory role's is its template id), lowercase.
    pub fn id(&self) -> String {
        match self {
            Membership::Group(it) => it.id.to_string(),
            Membership::Role(it) => it.id.to_ascii_lowercase(),
            Membership::Unit(it) => it.id.to_string(),
        }
    }
}

/// Whether `manager` may become `user`'s manager. `chain` is the manager's own line of managers,
/// nearest first: a user cannot manage themselves, nor someone up their own line, which would
/// make a loop no organisation chart has.
pub fn check_manager(user: &ObjectId, manager: &ObjectId, chain: &[ObjectId]) -> Result<(), DirectoryError> {
    if user == manager || chain.contains(user) {
        return Err(DirectoryError::ManagerLoop);
    }
    Ok(())
}

/// A validated new user; the password is handed to the hasher separately and never stored here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub user: User,
    pub password: Secret,
}

/// Validates a user draft against Graph's rules for `POST /users`.
///
/// Graph requires `accountEnabled`, `displayName`, `mailNickname`, `passwordProfile` and
/// `userPrincipalName`; the UPN must use a verified domain of the tenant.
pub fn new_user(
    tenant: &Tenant,
    id: ObjectId,
    draft: UserDraft,
    now: OffsetDateTime,
) -> Result<NewUser, DirectoryError> {
    let invalid = |property| DirectoryError::InvalidValue { property, resource: "User" };
    let dirty = find_dirty(
        [
            ("userPrincipalName", draft.user_principal_name.as_deref()),
            ("displayName", draft.display_name.as_deref()),
            ("mailNickname", draft.mail_nickname.as_deref()),
            ("givenName", draft.given_name.as_deref()),
            ("surname", draft.surname.as_deref()),
            ("mail", draft.mail.as_deref()),
            ("mobilePhone", draft.mobile_phone.as_deref()),
            ("jobTitle", draft.job_title.as_deref()),
            ("department", draft.department.as_deref()),
            ("usageLocation", draft.usage_location.as_deref()),
        ]
        .into_iter()
        .chain(draft.other_mails.iter().map(|it| ("otherMails", Some(it.as_str()))))
        .chain(draft.business_phones.iter().map(|it| ("businessPhones", Some(it.as_str())))),
    );
    if let Some(property) = dirty {
        return Err(invalid(property));
    }
    let Some(upn) = draft.user_principal_name else { return Err(invalid("userPrincipalName")) };
    let upn = parse_upn(tenant, &upn)?;
    let display_name = required_text(draft.display_name, "displayName", "User")?;
    let mail_nickname = required_text(draft.mail_nickname, "mailNickname", "User")?;
    if !is_mail_nickname(&mail_nickname) {
        return Err(invalid("mailNickname"));
    }
    let Some(account_enabled) = draft.account_enabled else { return Err(invalid("accountEnabled")) };
    let Some(password) = draft.password else { return Err(invalid("passwordProfile")) };
    if let Some(mail) = &draft.mail
        && !is_mail(mail)
    {
        return Err(invalid("mail"));
    }
    if draft.other_mails.iter().any(|it| !is_mail(it)) {
        return Err(invalid("otherMails"));
    }
    if let Some(loc) = &draft.usage_location
        && !is_usage_location(loc)
    {
        return Err(invalid("usageLocation"));
    }
    check_business_phones(&draft.business_phones)?;
    let mut profile = Profile::new_member();
    for (field, value) in draft.profile {
        profile.set(field, profile::parse(field, value.as_deref())?);
    }
    let user = User {
        id,
        tenant_id: tenant.id.clone(),
        user_principal_name: upn,
        display_name,
        given_name: optional_text(draft.given_name),
        surname: optional_text(draft.surname),
        mail: optional_text(draft.mail),
        mail_nickname,
        other_mails: draft.other_mails,
        mobile_phone: optional_text(draft.mobile_phone),
        business_phones: draft.business_phones,
        job_title: optional_text(draft.job_title),
        department: optional_text(draft.department),
        account_enabled,
        usage_location: optional_text(draft.usage_location).map(|it| it.to_ascii_uppercase()),
        created: now,
        sign_in_sessions_valid_from: now,
        force_change_password_next_sign_in: draft.force_change_password_next_sign_in.unwrap_or(true),
        last_password_change: Some(now),
        manager: None,
        profile,
    };
    check_lengths(&[
        ("givenName", user.given_name.as_deref()),
        ("surname", user.surname.as_deref()),
        ("mobilePhone", user.mobile_phone.as_deref()),
        ("jobTitle", user.job_title.as_deref()),
        ("department", user.department.as_deref()),
    ])?;
    Ok(NewUser { user, password })
}

/// A partial update of a user. `None` leaves a property alone; `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub user_principal_name: Option<String>,
    pub display_name: Option<String>,
    pub mail_nickname: Option<String>,
    pub account_enabled: Option<bool>,
    pub password: Option<Secret>,
    pub force_change_password_next_sign_in: Option<bool>,
    pub given_name: Option<Option<String>>,
    pub surname: Option<Option<String>>,
    pub mail: Option<Option<String>>,
    pub other_mails: Option<Vec<String>>,
    pub mobile_phone: Option<Option<String>>,
    pub business_phones: Option<Vec<String>>,
    pub job_title: Option<Option<String>>,
    pub department: Option<Option<String>>,
    pub usage_location: Option<Option<String>>,
    /// Profile properties to set (`Some`) or clear (`None`), checked by [`update_user`].
    pub profile: Vec<(&'static profile::Field, Option<String>)>,
}

/// One changed property, as Entra's audit log shows it: values are JSON text, or absent (`null`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyChange {
    pub name: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
}

impl PropertyChange {
    /// A change from `old` to `new`, both JSON text.
    pub fn new(name: &str, old: impl Into<String>, new: impl Into<String>) -> PropertyChange {
        PropertyChange { name: name.to_owned(), old_value: Some(old.into()), new_value: Some(new.into()) }
    }
}

/// The result of applying a patch: the new state, what changed, and a new password if one was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserUpdate {
    pub user: User,
    pub changes: Vec<PropertyChange>,
    pub new_password: Option<Secret>,
}

/// Applies a patch to a user, validating every value, and lists the changed properties.
///
/// The password itself never appears in the changes; a password change is reported by name only.
pub fn update_user(tenant: &Tenant, current: &User, patch: UserPatch) -> Result<UserUpdate, DirectoryError> {
    let invalid = |property| DirectoryError::InvalidValue { property, resource: "User" };
    let dirty = find_dirty(
        [
            ("userPrincipalName", patch.user_principal_name.as_deref()),
            ("displayName", patch.display_name.as_deref()),
            ("mailNickname", patch.mail_nickname.as_deref()),
            ("givenName", inner(&patch.given_name)),
            ("surname", inner(&patch.surname)),
            ("mail", inner(&patch.mail)),
            ("mobilePhone", inner(&patch.mobile_phone)),
            ("jobTitle", inner(&patch.job_title)),
            ("department", inner(&patch.department)),
            ("usageLocation", inner(&patch.usage_location)),
        ]
        .into_iter()
        .chain(patch.other_mails.iter().flatten().map(|it| ("otherMails", Some(it.as_str()))))
        .chain(patch.business_phones.iter().flatten().map(|it| ("businessPhones", Some(it.as_str())))),
    );
    if let Some(property) = dirty {
        return Err(invalid(property));
    }
    // Only what the patch sets: a value stored before the limits must not block other changes
    // (disabling the account, say).
    check_lengths(&[
        ("givenName", inner(&patch.given_name)),
        ("surname", inner(&patch.surname)),
        ("mobilePhone", inner(&patch.mobile_phone)),
        ("jobTitle", inner(&patch.job_title)),
        ("department", inner(&patch.department)),
    ])?;
    let mut user = current.clone();
    let mut changes = Vec::new();
    if let Some(upn) = patch.user_principal_name {
        user.user_principal_name = parse_upn(tenant, &upn)?;
    }
    if let Some(name) = patch.display_name {
        user.display_name = required_text(Some(name), "displayName", "User")?;
    }
    if let Some(nick) = patch.mail_nickname {
        let nick = required_text(Some(nick), "mailNickname", "User")?;
        if !is_mail_nickname(&nick) {
            return Err(invalid("mailNickname"));
        }
        user.mail_nickname = nick;
    }
    if let Some(enabled) = patch.account_enabled {
        user.account_enabled = enabled;
    }
    if let Some(force) = patch.force_change_password_next_sign_in {
        user.force_change_password_next_sign_in = force;
    }
    if let Some(it) = patch.given_name {
        user.given_name = optional_text(it);
    }
    if let Some(it) = patch.surname {
        user.surname = optional_text(it);
    }
    if let Some(it) = patch.mail {
        let it = optional_text(it);
        if it.as_deref().is_some_and(|m| !is_mail(m)) {
            return Err(invalid("mail"));
        }
        user.mail = it;
    }
    if let Some(it) = patch.other_mails {
        if it.iter().any(|m| !is_mail(m)) {
            return Err(invalid("otherMails"));
        }
        user.other_mails = it;
    }
    if let Some(it) = patch.mobile_phone {
        user.mobile_phone = optional_text(it);
    }
    if let Some(it) = patch.business_phones {
        check_business_phones(&it)?;
        user.business_phones = it;
    }
    if let Some(it) = patch.job_title {
        user.job_title = optional_text(it);
    }
    if let Some(it) = patch.department {
        user.department = optional_text(it);
    }
    if let Some(it) = patch.usage_location {
        let it = optional_text(it).map(|loc| loc.to_ascii_uppercase());
        if it.as_deref().is_some_and(|loc| !is_usage_location(loc)) {
            return Err(invalid("usageLocation"));
        }
        user.usage_location = it;
    }
    for (field, value) in patch.profile {
        user.profile.set(field, profile::parse(field, value.as_deref())?);
    }

    let text = |value: &Option<String>| json::string_array(value.as_deref());
    let mut diff = |name: &str, old: String, new: String| {
        if old != new {
            changes.push(PropertyChange::new(name, old, new));
        }
    };
    diff(
        "UserPrincipalName",
        text(&Some(current.user_principal_name.clone())),
        text(&Some(user.user_principal_name.clone())),
    );
    diff("DisplayName", text(&Some(current.display_name.clone())), text(&Some(user.display_name.clone())));
    diff("MailNickname", text(&Some(current.mail_nickname.clone())), text(&Some(user.mail_nickname.clone())));
    diff("AccountEnabled", bool_array(current.account_enabled), bool_array(user.account_enabled));
    diff("GivenName", text(&current.given_name), text(&user.given_name));
    diff("Surname", text(&current.surname), text(&user.surname));
    diff("Mail", text(&current.mail), text(&user.mail));
    diff(
        "OtherMail",
        json::string_array(current.other_mails.iter().map(String::as_str)),
        json::string_array(user.other_mails.iter().map(String::as_str)),
    );
    diff("Mobile", text(&current.mobile_phone), text(&user.mobile_phone));
    diff(
        "TelephoneNumber",
        json::string_array(current.business_phones.iter().map(String::as_str)),
        json::string_array(user.business_phones.iter().map(String::as_str)),
    );
    diff("JobTitle", text(&current.job_title), text(&user.job_title));
    diff("Department", text(&current.department), text(&user.department));
    diff("UsageLocation", text(&current.usage_location), text(&user.usage_location));
    for (name, old, new) in profile::changes(&current.profile, &user.profile) {
        diff(name, old, new);
    }
    diff(
        "ForceChangePasswordNextSignIn",
        bool_array(current.force_change_password_next_sign_in),
        bool_array(user.force_change_password_next_sign_in),
    );
    if patch.password.is_some() {
        // Entra reports that the password changed, never its value.
        changes.push(PropertyChange::new("PasswordProfile", "[]", "[]"));
    }
    Ok(UserUpdate { user, changes, new_password: patch.password })
}

/// The extra property Entra adds to "Update user" records: the names of the changed properties.
pub fn included_updated_properties(changes: &[PropertyChange]) -> PropertyChange {
    let names: Vec<&str> = changes.iter().map(|it| it.name.as_str()).collect();
    PropertyChange {
        name: "Included Updated Properties".into(),
        old_value: None,
        new_value: Some(json::string(&names.join(", "))),
    }
}

/// The fields of a group to create, already parsed from the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupDraft {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub mail_nickname: Option<String>,
    pub mail_enabled: Option<bool>,
    pub security_enabled: Option<bool>,
    pub is_assignable_to_role: Option<bool>,
    pub group_types: Vec<String>,
}

/// Validates a group draft against Graph's rules for `POST /groups`.
///
/// `displayName`, `mailEnabled`, `mailNickname` and `securityEnabled` are required.
/// A role-assignable group must be a security group (or Microsoft 365 group) with assigned membership.
pub fn new_group(
    tenant: &Tenant,
    id: ObjectId,
    draft: GroupDraft,
    now: OffsetDateTime,
) -> Result<Group, DirectoryError> {
    let invalid = |property| DirectoryError::InvalidValue { property, resource: "Group" };
    let dirty = find_dirty([
        ("displayName", draft.display_name.as_deref()),
        ("description", draft.description.as_deref()),
        ("mailNickname", draft.mail_nickname.as_deref()),
    ]);
    if let Some(property) = dirty {
        return Err(invalid(property));
    }
    let display_name = required_text(draft.display_name, "displayName", "Group")?;
    let mail_nickname = required_text(draft.mail_nickname, "mailNickname", "Group")?;
    if !is_mail_nickname(&mail_nickname) {
        return Err(invalid("mailNickname"));
    }
    let Some(mail_enabled) = draft.mail_enabled else { return Err(invalid("mailEnabled")) };
    let Some(security_enabled) = draft.security_enabled else { return Err(invalid("securityEnabled")) };
    let is_unified = draft.group_types.iter().any(|it| it.eq_ignore_ascii_case("Unified"));
    if draft.group_types.iter().any(|it| !it.eq_ignore_ascii_case("Unified")) {
        return Err(invalid("groupTypes"));
    }
    if mail_enabled && !is_unified {
        // Mail-enabled security groups and distribution lists are Exchange objects Graph cannot create.
        return Err(invalid("mailEnabled"));
    }
    let is_assignable_to_role = draft.is_assignable_to_role.unwrap_or(false);
    if is_assignable_to_role && !security_enabled {
        return Err(invalid("isAssignableToRole"));
    }
    Ok(Group {
        id,
        tenant_id: tenant.id.clone(),
        display_name,
        description: optional_text(draft.description),
        mail_nickname,
        mail_enabled,
        security_enabled,
        is_assignable_to_role,
        group_types: if is_unified { vec!["Unified".to_owned()] } else { Vec::new() },
        created: now,
    })
}

/// A partial update of a group. `isAssignableToRole` is settable only at creation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPatch {
    pub display_name: Option<String>,
    pub description: Option<Option<String>>,
    pub mail_nickname: Option<String>,
    pub security_enabled: Option<bool>,
    pub mail_enabled: Option<bool>,
    pub is_assignable_to_role: Option<bool>,
}

/// Applies a patch to a group and lists the changed properties.
pub fn update_group(current: &Group, patch: GroupPatch) -> Result<(Group, Vec<PropertyChange>), DirectoryError> {
    let invalid = |property| DirectoryError::InvalidValue { property, resource: "Group" };
    let dirty = find_dirty([
        ("displayName", patch.display_name.as_deref()),
        ("description", patch.description.as_ref().and_then(|it| it.as_deref())),
        ("mailNickname", patch.mail_nickname.as_deref()),
    ]);
    if let Some(property) = dirty {
        return Err(invalid(property));
    }
    if let Some(value) = patch.is_assignable_to_role
        && value != current.is_assignable_to_role
    {
        return Err(DirectoryError::ReadOnly { property: "isAssignableToRole" });
    }
    if let Some(value) = patch.mail_enabled
        && value != current.mail_enabled
    {
        return Err(invalid("mailEnabled"));
    }
    let mut group = current.clone();
    if let Some(name) = patch.display_name {
        group.display_name = required_text(Some(name), "displayName", "Group")?;
    }
    if let Some(it) = patch.description {
        group.description = optional_text(it);
    }
    if let Some(nick) = patch.mail_nickname {
        let nick = required_text(Some(nick), "mailNickname", "Group")?;
        if !is_mail_nickname(&nick) {
            return Err(invalid("mailNickname"));
        }
        group.mail_nickname = nick;
    }
    if let Some(it) = patch.security_enabled {
        if !it && group.is_assignable_to_role {
            return Err(invalid("securityEnabled"));
        }
        group.security_enabled = it;
    }
    let text = |value: &Option<String>| json::string_array(value.as_deref());
    let mut changes = Vec::new();
    let mut diff = |name: &str, old: String, new: String| {
        if old != new {
            changes.push(PropertyChange::new(name, old, new));
        }
    };
    diff("DisplayName", text(&Some(current.display_name.clone())), text(&Some(group.display_name.clone())));
    diff("Description", text(&current.description), text(&group.description));
    diff("MailNickname", text(&Some(current.mail_nickname.clone())), text(&Some(group.mail_nickname.clone())));
    diff("SecurityEnabled", bool_array(current.security_enabled), bool_array(group.security_enabled));
    if !changes.is_empty() {
        changes.push(included_updated_properties(&changes));
    }
    Ok((group, changes))
}

/// Why a membership change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("One or more added object references already exist for the following modified properties: '{0}'.")]
    AlreadyExists(&'static str),
    #[error("A role-assignable group cannot have groups as members.")]
    NestedRoleAssignableGroup,
    #[error("A group cannot be a member of itself.")]
    SelfMembership,
}

/// Decides whether `member` may be added to `group` as a member.
pub fn check_add_member(
    group: &Group,
    member: &DirectoryObject,
    is_already_member: bool,
) -> Result<(), MembershipError> {
    if is_already_member {
        return Err(MembershipError::AlreadyExists("members"));
    }
    match member {
        DirectoryObject::Group(it) if it.id == group.id => Err(MembershipError::SelfMembership),
        DirectoryObject::Group(_) if group.is_assignable_to_role => Err(MembershipError::NestedRoleAssignableGroup),
        _ => Ok(()),
    }
}

/// Parses a user principal name and checks its domain against the tenant's verified domains.
///
/// Graph's rules: `alias@domain`, alias of letters, digits and `' . - _ ! # ^ ~`, no leading,
/// trailing or doubled dot, at most 64 characters before the `@` and 113 in all.
pub fn parse_upn(tenant: &Tenant, raw: &str) -> Result<String, DirectoryError> {
    let invalid = DirectoryError::InvalidValue { property: "userPrincipalName", resource: "User" };
    let raw = raw.trim();
    let Some((alias, domain)) = raw.split_once('@') else { return Err(invalid) };
    let is_alias_char = |c: char| c.is_ascii_alphanumeric() || "'.-_!#^~".contains(c);
    if alias.is_empty()
        || alias.len() > 64
        || raw.len() > 113
        || !alias.chars().all(is_alias_char)
        || alias.starts_with('.')
        || alias.ends_with('.')
        || alias.contains("..")
        || domain.is_empty()
        || domain.contains('@')
    {
        return Err(invalid);
    }
    if !tenant.has_domain(domain) {
        return Err(DirectoryError::UnverifiedDomain);
    }
    Ok(format!("{alias}@{}", domain.to_ascii_lowercase()))
}

fn required_text(
    value: Option<String>,
    property: &'static str,
    resource: &'static str,
) -> Result<String, DirectoryError> {
    match optional_text(value) {
        Some(it) if it.chars().count() <= 256 => Ok(it),
        _ => Err(DirectoryError::InvalidValue { property, resource }),
    }
}

/// Whether a directory string is free of control characters (NUL, line breaks, tabs, …), which
/// no directory property may hold and PostgreSQL's `text` cannot store (NUL).
pub fn is_clean_text(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

/// The first text property of a user or group draft or patch that holds a control character.
fn inner(value: &Option<Option<String>>) -> Option<&str> {
    value.as_ref().and_then(|it| it.as_deref())
}

fn find_dirty<'a>(values: impl IntoIterator<Item = (&'static str, Option<&'a str>)>) -> Option<&'static str> {
    values.into_iter().find(|(_, value)| value.is_some_and(|it| !is_clean_text(it))).map(|(name, _)| name)
}

/// Graph's maximum lengths of the user's text properties (characters).
fn max_length(property: &str) -> usize {
    match property {
        "jobTitle" => 128,
        "givenName" | "surname" | "mobilePhone" | "department" | "businessPhones" => 64,
        _ => 256,
    }
}

/// Checks text properties against Graph's maximum lengths.
fn check_lengths(values: &[(&'static str, Option<&str>)]) -> Result<(), DirectoryError> {
    match values.iter().copied().find(|(name, value)| value.is_some_and(|it| it.chars().count() > max_length(name))) {
        Some((property, _)) => Err(DirectoryError::InvalidValue { property, resource: "User" }),
        None => Ok(()),
    }
}

/// Graph takes one business phone number at most.
fn check_business_phones(phones: &[String]) -> Result<(), DirectoryError> {
    let too_long = phones.iter().any(|it| it.chars().count() > max_length("businessPhones"));
    if phones.len() > 1 || too_long {
        return Err(DirectoryError::InvalidValue { property: "businessPhones", resource: "User" });
    }
    Ok(())
}

fn optional_text(value: Option<String>) -> Option<String> {
    value.map(|it| it.trim().to_owned()).filter(|it| !it.is_empty())
}

fn is_mail_nickname(value: &str) -> bool {
    value.len() <= 64 && value.chars().all(|c| c.is_ascii_graphic() && !"@()\\[]\";:<>, ".contains(c))
}

fn is_mail(value: &str) -> bool {
    match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !value.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

fn is_usage_location(value: &str) -> bool {
    value.len() == 2 && value.chars().all(|c| c.is_ascii_alphabetic())
}

fn bool_array(value: bool) -> String {
    format!("[{value}]")
}

/// A role assignment row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    pub id: String,
    pub tenant_id: ObjectId,
    pub principal_id: ObjectId,
    pub role_definition_id: String,
    pub directory_scope_id: String,
    pub created: OffsetDateTime,
    /// When the assignment starts counting (`None`: from its creation).
    pub start: Option<OffsetDateTime>,
    /// When it stops counting (`None`: a permanent assignment).
    pub end: Option<OffsetDateTime>,
    /// The eligibility it was activated from (`assignmentType` `Activated`); `None` for an
    /// assignment an administrator made (`Assigned`).
    pub activated_using: Option<String>,
}

impl RoleAssignment {
    /// When it counts.
    pub fn window(&self) -> crate::pim::Window {
        crate::pim::Window { start: self.start.unwrap_or(self.created), end: self.end }
    }
}

/// An eligibility for a role (`unifiedRoleEligibilitySchedule`): the principal may activate the
/// role at the scope within the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleEligibility {
    pub id: String,
    pub tenant_id: ObjectId,
    pub principal_id: ObjectId,
    pub role_definition_id: String,
    pub directory_scope_id: String,
    pub start: OffsetDateTime,
    pub end: Option<OffsetDateTime>,
    /// The request that created it.
    pub created_using: Option<String>,
    pub created: OffsetDateTime,
    pub modified: OffsetDateTime,
}

impl RoleEligibility {
    pub fn window(&self) -> crate::pim::Window {
        crate::pim::Window { start: self.start, end: self.end }
    }
}

/// Which schedule a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// `roleAssignmentScheduleRequests`.
    Assignment,
    /// `roleEligibilityScheduleRequests`.
    Eligibility,
}

impl ScheduleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleKind::Assignment => "assignment",
            ScheduleKind::Eligibility => "eligibility",
        }
    }
}

/// A request on a role's assignment or eligibility schedule, as recorded (`unifiedRoleAssignmentScheduleRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleScheduleRequest {
    pub id: String,
    pub tenant_id: ObjectId,
    pub kind: ScheduleKind,
    /// `adminAssign`, `selfActivate`, …
    pub action: String,
    pub principal_id: ObjectId,
    pub role_definition_id: String,
    pub directory_scope_id: String,
    pub justification: Option<String>,
    /// `Provisioned`, `Revoked`, `Granted`, `Canceled`, …
    pub status: String,
    pub schedule: crate::pim::ScheduleInfo,
    pub ticket_number: Option<String>,
    pub ticket_system: Option<String>,
    pub target_schedule_id: Option<String>,
    pub created_by: ObjectId,
    pub created: OffsetDateTime,
    pub completed: Option<OffsetDateTime>,
    /// The approver's decision, for an activation that needed approval.
    pub review: Option<Review>,
}

/// An approver's decision on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub approved: bool,
    pub by: ObjectId,
    pub at: OffsetDateTime,
    pub justification: Option<String>,
}

/// Which role assignments to list: each present field holds the values one of which an
/// assignment must have (`eq` gives one, `in` several); `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignmentFilter {
    pub principal_id: Option<Vec<ObjectId>>,
    pub role_definition_id: Option<Vec<String>>,
    pub directory_scope_id: Option<Vec<String>>,
}

/// A `directoryScopeId` as assignments store it: `/`, or `/administrativeUnits/` and the unit's
/// lowercase id, however the client spelled it; anything else as sent (it matches nothing).
pub fn canonical_scope(raw: &str) -> String {
    const UNITS: &str = "/administrativeUnits/";
    match raw.get(..UNITS.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(UNITS) => match ObjectId::parse(&raw[UNITS.len()..]) {
            Some(id) => format!("{UNITS}{id}"),
            None => raw.to_owned(),
        },
        _ => raw.to_owned(),
    }
}

impl AssignmentFilter {
    /// Whether `assignment` passes the filter.
    pub fn matches(&self, assignment: &RoleAssignment) -> bool {
        self.principal_id.as_ref().is_none_or(|ids| ids.contains(&assignment.principal_id))
            && self
                .role_definition_id
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|it| it.eq_ignore_ascii_case(&assignment.role_definition_id)))
            && self.directory_scope_id.as_ref().is_none_or(|scopes| scopes.contains(&assignment.directory_scope_id))
    }
}

/// An administrative unit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdministrativeUnit {
    pub id: ObjectId,
    pub tenant_id: ObjectId,
    pub display_name: String,
    pub description: Option<String>,
    pub is_member_management_restricted: bool,
    pub created: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_take_the_stored_spelling() {
        let unit = "/administrativeUnits/0a1b2c3d-0000-4000-8000-00000000000a";
        assert_eq!(canonical_scope("/ADMINISTRATIVEUNITS/0A1B2C3D-0000-4000-8000-00000000000A"), unit);
        assert_eq!(canonical_scope("/"), "/");
        assert_eq!(canonical_scope("/administrativeUnits/nope"), "/administrativeUnits/nope");
        assert_eq!(canonical_scope("/a"), "/a");
    }

    fn tenant() -> Tenant {
        Tenant {
            id: ObjectId::parse("00000000-0000-0000-0000-0000000000aa").expect("guid"),
            display_name: "Contoso".into(),
            created: OffsetDateTime::UNIX_EPOCH,
            domains: vec![Domain { name: "contoso.test".into(), is_default: true, is_initial: true }],
        }
    }

    fn draft() -> UserDraft {
        UserDraft {
            user_principal_name: Some("Adele.Vance@Contoso.test".into()),
            display_name: Some("Adele Vance".into()),
            mail_nickname: Some("adele".into()),
            account_enabled: Some(true),
            password: Some(Secret::new("correct horse battery")),
            ..UserDraft::default()
        }
    }

    fn id(n: u8) -> ObjectId {
        ObjectId::parse(&format!("00000000-0000-0000-0000-0000000000{n:02x}")).expect("guid")
    }

    #[test]
    fn a_value_stored_before_the_limits_does_not_block_other_changes() {
        let mut user = new_user(&tenant(), id(1), draft(), OffsetDateTime::UNIX_EPOCH).expect("valid").user;
        user.job_title = Some("x".repeat(500));
        let disable = UserPatch { account_enabled: Some(false), ..UserPatch::default() };
        assert!(update_user(&tenant(), &user, disable).is_ok());
        let longer = UserPatch { job_title: Some(Some("y".repeat(129))), ..UserPatch::default() };
        assert!(matches!(
            update_user(&tenant(), &user, longer),
            Err(DirectoryError::InvalidValue { property: "jobTitle", .. })
        ));
    }

    #[test]
    fn new_user_requires_graphs_mandatory_properties() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let created = new_user(&tenant(), id(1), draft(), now).expect("valid");
        assert_eq!(created.user.user_principal_name, "Adele.Vance@contoso.test");
        assert!(created.user.force_change_password_next_sign_in);
        type Mutation = fn(&mut UserDraft);
        let cases: [(Mutation, &str); 5] = [
            (|d| d.user_principal_name = None, "userPrincipalName"),
            (|d| d.display_name = Some("  ".into()), "displayName"),
            (|d| d.mail_nickname = None, "mailNickname"),
            (|d| d.account_enabled = None, "accountEnabled"),
            (|d| d.password = None, "passwordProfile"),
        ];
        for (mutate, property) in cases {
            let mut d = draft();
            mutate(&mut d);
            assert_eq!(
                new_user(&tenant(), id(1), d, now),
                Err(DirectoryError::InvalidValue { property, resource: "User" })
            );
        }
    }

    #[test]
    fn control_characters_are_refused_everywhere() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut d = draft();
        d.display_name = Some("Adele\u{0}Vance".into());
        assert_eq!(
            new_user(&tenant(), id(1), d, now),
            Err(DirectoryError::InvalidValue { property: "displayName", resource: "User" })
        );
        let mut d = draft();
        d.other_mails = vec!["a@b.c\n".into()];
        assert_eq!(
            new_user(&tenant(), id(1), d, now),
            Err(DirectoryError::InvalidValue { property: "otherMails", resource: "User" })
        );
        let user = new_user(&tenant(), id(1), draft(), now).expect("valid").user;
        let patch = UserPatch { job_title: Some(Some("x\ty".into())), ..UserPatch::default() };
        assert_eq!(
            update_user(&tenant(), &user, patch),
            Err(DirectoryError::InvalidValue { property: "jobTitle", resource: "User" })
        );
    }

    #[test]
    fn upn_must_use_a_verified_domain_and_a_valid_alias() {
        assert_eq!(parse_upn(&tenant(), "a@fabrikam.test"), Err(DirectoryError::UnverifiedDomain));
        for bad in ["no-at-sign", "@contoso.test", ".a@contoso.test", "a..b@contoso.test", "a b@contoso.test", "a@"] {
            assert!(matches!(parse_upn(&tenant(), bad), Err(DirectoryError::InvalidValue { .. })), "{bad}");
        }
        assert_eq!(parse_upn(&tenant(), "o'brien@CONTOSO.TEST").as_deref(), Ok("o'brien@contoso.test"));
    }

    #[test]
    fn update_user_reports_changed_properties_as_json_text_and_hides_the_password() {
        let user = new_user(&tenant(), id(1), draft(), OffsetDateTime::UNIX_EPOCH).expect("valid").user;
        let patch = UserPatch {
            job_title: Some(Some("Engineer".into())),
            account_enabled: Some(false),
            display_name: Some("Adele Vance".into()),
            password: Some(Secret::new("another secret value")),
            ..UserPatch::default()
        };
        let update = update_user(&tenant(), &user, patch).expect("valid");
        let names: Vec<&str> = update.changes.iter().map(|it| it.name.as_str()).collect();
        assert_eq!(names, ["AccountEnabled", "JobTitle", "PasswordProfile"]);
        assert_eq!(update.changes[1].old_value.as_deref(), Some("[]"));
        assert_eq!(update.changes[1].new_value.as_deref(), Some(r#"["Engineer"]"#));
        assert!(!format!("{update:?}").contains("another secret"), "neither the changes nor Debug show the password");
        assert_eq!(
            included_updated_properties(&update.changes).new_value.as_deref(),
            Some(r#""AccountEnabled, JobTitle, PasswordProfile""#)
        );
    }

    #[test]
    fn role_assignable_groups_are_fixed_at_creation_and_refuse_nested_groups() {
        let draft = GroupDraft {
            display_name: Some("Helpdesk".into()),
            mail_nickname: Some("helpdesk".into()),
            mail_enabled: Some(false),
            security_enabled: Some(true),
            is_assignable_to_role: Some(true),
            ..GroupDraft::default()
        };
        let group = new_group(&tenant(), id(2), draft, OffsetDateTime::UNIX_EPOCH).expect("valid");
        let patch = GroupPatch { is_assignable_to_role: Some(false), ..GroupPatch::default() };
        assert_eq!(update_group(&group, patch), Err(DirectoryError::ReadOnly { property: "isAssignableToRole" }));
        let other = Group { id: id(3), is_assignable_to_role: false, ..group.clone() };
        assert_eq!(
            check_add_member(&group, &DirectoryObject::Group(other), false),
            Err(MembershipError::NestedRoleAssignableGroup)
        );
        assert_eq!(
            check_add_member(&group, &DirectoryObject::Group(group.clone()), false),
            Err(MembershipError::SelfMembership)
        );
    }
}
