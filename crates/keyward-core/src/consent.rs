//! Consent: which delegated permissions a client may use for a user, and who may grant them.
//!
//! A registered application gets a code or token for a user only for permissions granted to it,
//! for that user (`Principal`) or for everyone (`AllPrincipals`) (Graph's
//! `oAuth2PermissionGrant`). The first-party client `keyward-cli` is pre-consented. What users
//! may consent to themselves is the tenant's authorization policy
//! (`permissionGrantPoliciesAssigned`): by default only the low-risk permissions below, as
//! Microsoft recommends; anything else needs an administrator.

use time::OffsetDateTime;

use crate::ids::ObjectId;
use crate::oauth::Scopes;

/// Permissions Microsoft classifies as low risk: signing in and reading one's own profile.
pub const LOW_RISK: &[&str] = &["openid", "profile", "email", "offline_access", "User.Read"];

/// The permission grant policy ids users may be assigned, as Graph names them.
pub const POLICY_LOW: &str = "ManagePermissionGrantsForSelf.microsoft-user-default-low";
pub const POLICY_LEGACY: &str = "ManagePermissionGrantsForSelf.microsoft-user-default-legacy";

/// The object id Keyward's API (Microsoft Graph) has as a grant's `resourceId`: Keyward keeps no
/// service principal for its own API, so grants name it by Microsoft Graph's application id.
pub const GRAPH_RESOURCE_ID: &str = "00000003-0000-0000-c000-000000000000";

/// What users may consent to by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserConsent {
    /// No user consent: an administrator grants every permission.
    Disabled,
    /// Only [`LOW_RISK`] permissions (the default).
    LowRisk,
    /// Any permission that needs no administrator (Keyward: every delegated permission).
    All,
}

impl UserConsent {
    /// The setting named by `permissionGrantPoliciesAssigned` (`None`: never set, the default).
    /// Entries are compared case-insensitively; other policies (owned resources) are ignored.
    pub fn from_policies(policies: Option<&[String]>) -> UserConsent {
        let Some(policies) = policies else { return UserConsent::LowRisk };
        let has = |id: &str| policies.iter().any(|it| it.eq_ignore_ascii_case(id));
        if has(POLICY_LEGACY) {
            UserConsent::All
        } else if has(POLICY_LOW) {
            UserConsent::LowRisk
        } else {
            UserConsent::Disabled
        }
    }

    /// Whether a user may consent to `permission` alone.
    pub fn allows(self, permission: &str) -> bool {
        match self {
            UserConsent::Disabled => false,
            UserConsent::LowRisk => LOW_RISK.iter().any(|it| it.eq_ignore_ascii_case(permission)),
            UserConsent::All => true,
        }
    }
}

/// Whether a policy id is one Keyward knows (others are refused, never dropped).
pub fn is_known_policy(id: &str) -> bool {
    [POLICY_LOW, POLICY_LEGACY].iter().any(|it| it.eq_ignore_ascii_case(id))
}

/// The permissions a request asks for: OpenID scopes and API permissions, in a stable order. A
/// request without an API permission gets an access token with `User.Read` (as Entra gives one
/// for Microsoft Graph), so it asks for `User.Read` too.
pub fn requested(scopes: &Scopes) -> Vec<String> {
    let mut res: Vec<String> = scopes.openid_scopes().map(str::to_owned).collect();
    if scopes.api.is_empty() {
        res.push("User.Read".to_owned());
    }
    res.extend(scopes.api.iter().cloned());
    res
}

/// The requested permissions no grant covers (`granted`: the scope strings of the grants that
/// apply to this client and user).
pub fn missing<'a>(requested: &'a [String], granted: &[&str]) -> Vec<&'a str> {
    requested
        .iter()
        .filter(|wanted| !granted.iter().flat_map(|it| it.split_whitespace()).any(|it| it.eq_ignore_ascii_case(wanted)))
        .map(String::as_str)
        .collect()
}

/// A grant's scope after adding `more` (each permission once, in the order first seen).
pub fn merged(scope: &str, more: &[&str]) -> String {
    let mut res: Vec<&str> = Vec::new();
    for it in scope.split_whitespace().chain(more.iter().copied()) {
        if !res.iter().any(|seen| seen.eq_ignore_ascii_case(it)) {
            res.push(it);
        }
    }
    res.join(" ")
}

/// Whether a grant's scope names only permissions Keyward knows (OpenID scopes and the API's).
pub fn valid_scope(scope: &str) -> Result<(), String> {
    if scope.len() > 3850 {
        return Err("Invalid value for property 'scope': at most 3850 characters.".into());
    }
    for it in scope.split_whitespace() {
        let known = LOW_RISK[..4].iter().chain(crate::oauth::API_PERMISSIONS).any(|name| name.eq_ignore_ascii_case(it));
        if !known {
            return Err(format!(
                "Invalid value for property 'scope': '{it}' is not a delegated permission of the API."
            ));
        }
    }
    Ok(())
}

/// A short description of a permission for the consent page.
pub fn describe(permission: &str) -> &'static str {
    match permission {
        "openid" => "Sign you in",
        "profile" => "View your basic profile",
        "email" => "View your email address",
        "offline_access" => "Maintain access to data you have given it access to",
        "User.Read" => "Sign you in and read your profile",
        "User.ReadBasic.All" => "Read all users' basic profiles",
        "User.Read.All" => "Read all users' full profiles",
        "User.ReadWrite.All" => "Read and write all users' full profiles",
        "Group.Read.All" => "Read all groups",
        "Group.ReadWrite.All" => "Read and write all groups",
        "GroupMember.Read.All" => "Read group memberships",
        "GroupMember.ReadWrite.All" => "Read and write group memberships",
        "Directory.Read.All" => "Read directory data",
        "Directory.ReadWrite.All" => "Read and write directory data",
        "RoleManagement.Read.Directory" => "Read your organization's directory role settings",
        "RoleManagement.ReadWrite.Directory" => "Read and write your organization's directory role settings",
        "RoleAssignmentSchedule.Read.Directory" => "Read active assignments for your company's directory",
        "RoleAssignmentSchedule.ReadWrite.Directory" => {
            "Read, update, and delete all active role assignments for your company's directory"
        }
        "RoleEligibilitySchedule.Read.Directory" => "Read all eligible role assignments for your company's directory",
        "RoleEligibilitySchedule.ReadWrite.Directory" => {
            "Read, update, and delete all eligible role assignments for your company's directory"
        }
        "RoleManagementPolicy.Read.Directory" => "Read your company's role management policies",
        "RoleManagementPolicy.ReadWrite.Directory" => {
            "Read, update, and delete your company's role management policies"
        }
        "AdministrativeUnit.Read.All" => "Read administrative units",
        "AdministrativeUnit.ReadWrite.All" => "Read and write administrative units",
        "AuditLog.Read.All" => "Read audit log data",
        "UserAuthenticationMethod.Read" => "Read your authentication methods",
        "UserAuthenticationMethod.ReadWrite" => "Read and write your authentication methods",
        "UserAuthenticationMethod.Read.All" => "Read all users' authentication methods",
        "UserAuthenticationMethod.ReadWrite.All" => "Read and write all users' authentication methods",
        "Policy.Read.All" => "Read your organization's policies",
        "Policy.ReadWrite.AuthenticationMethod" => "Read and write your organization's authentication method policies",
        "Policy.ReadWrite.ConditionalAccess" => "Read and write your organization's conditional access policies",
        "Application.Read.All" => "Read applications",
        "Application.ReadWrite.All" => "Read and write all applications",
        _ => "Access the Keyward API",
    }
}

/// A delegated permission grant (Graph's `oAuth2PermissionGrant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionGrant {
    pub id: String,
    pub tenant_id: ObjectId,
    /// The client's service principal.
    pub client_id: ObjectId,
    /// `AllPrincipals` or `Principal`.
    pub consent_type: String,
    /// The user, for `Principal` grants.
    pub principal_id: Option<ObjectId>,
    pub resource_id: String,
    /// Space-separated permission names.
    pub scope: String,
    pub created: OffsetDateTime,
}

/// A property `GET /oauth2PermissionGrants` filters on (`eq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantProperty {
    ClientId,
    ConsentType,
    PrincipalId,
    ResourceId,
}

impl GrantProperty {
    /// Every property, with its name as Graph spells it.
    pub const ALL: [(GrantProperty, &'static str); 4] = [
        (GrantProperty::ClientId, "clientId"),
        (GrantProperty::ConsentType, "consentType"),
        (GrantProperty::PrincipalId, "principalId"),
        (GrantProperty::ResourceId, "resourceId"),
    ];
}

/// Which grants `GET /oauth2PermissionGrants` lists: each present field is the value the
/// grant's property must equal, in the form grants keep it (ids lowercase, the consent type as
/// `AllPrincipals` or `Principal`), so that the comparison is Graph's, without regard to case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    pub client_id: Option<String>,
    pub consent_type: Option<String>,
    pub principal_id: Option<String>,
    pub resource_id: Option<String>,
}

impl GrantFilter {
    /// The filter of `eq` clauses joined with `and`. `None` when two clauses on one property ask
    /// for different values: no grant matches.
    pub fn of(clauses: &[(GrantProperty, String)]) -> Option<GrantFilter> {
        let mut res = GrantFilter::default();
        for (property, value) in clauses {
            let (slot, value) = match property {
                GrantProperty::ClientId => (&mut res.client_id, value.to_ascii_lowercase()),
                GrantProperty::PrincipalId => (&mut res.principal_id, value.to_ascii_lowercase()),
                GrantProperty::ResourceId => (&mut res.resource_id, value.to_ascii_lowercase()),
                GrantProperty::ConsentType => {
                    let canonical =
                        ["AllPrincipals", "Principal"].into_iter().find(|it| it.eq_ignore_ascii_case(value));
                    // Another value is kept as sent: no grant has it.
                    (&mut res.consent_type, canonical.map_or_else(|| value.clone(), str::to_owned))
                }
            };
            match slot {
                Some(earlier) if *earlier != value => return None,
                _ => *slot = Some(value),
            }
        }
        Some(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_filter_takes_values_in_the_form_grants_keep_them() {
        let clauses = [
            (GrantProperty::ClientId, "0A5E2F1C-1111-4222-8333-444455556666".to_owned()),
            (GrantProperty::ConsentType, "allprincipals".to_owned()),
            (GrantProperty::ResourceId, GRAPH_RESOURCE_ID.to_uppercase()),
        ];
        let filter = GrantFilter::of(&clauses).expect("one value each");
        assert_eq!(filter.client_id.as_deref(), Some("0a5e2f1c-1111-4222-8333-444455556666"));
        assert_eq!(filter.consent_type.as_deref(), Some("AllPrincipals"));
        assert_eq!(filter.resource_id.as_deref(), Some(GRAPH_RESOURCE_ID));
        assert_eq!(filter.principal_id, None);
        let other = GrantFilter::of(&[(GrantProperty::ConsentType, "Everyone".to_owned())]).expect("filter");
        assert_eq!(other.consent_type.as_deref(), Some("Everyone"), "matches no grant");
        // The same value twice, however spelled, is one clause; two values match nothing.
        let twice = [(GrantProperty::PrincipalId, "AB".to_owned()), (GrantProperty::PrincipalId, "ab".to_owned())];
        assert_eq!(GrantFilter::of(&twice).expect("same").principal_id.as_deref(), Some("ab"));
        let apart = [(GrantProperty::PrincipalId, "a".to_owned()), (GrantProperty::PrincipalId, "b".to_owned())];
        assert_eq!(GrantFilter::of(&apart), None);
    }

    #[test]
    fn the_default_lets_users_consent_only_to_low_risk_permissions() {
        let default = UserConsent::from_policies(None);
        assert_eq!(default, UserConsent::LowRisk);
        assert!(default.allows("openid") && default.allows("user.read"));
        assert!(!default.allows("Directory.ReadWrite.All"));
        assert_eq!(UserConsent::from_policies(Some(&[])), UserConsent::Disabled);
        let legacy = [POLICY_LEGACY.to_lowercase()];
        assert_eq!(UserConsent::from_policies(Some(&legacy)), UserConsent::All);
        assert!(!UserConsent::Disabled.allows("openid"));
    }

    #[test]
    fn missing_permissions_are_those_no_grant_covers() {
        let requested: Vec<String> = ["openid", "User.Read", "Group.Read.All"].map(str::to_owned).to_vec();
        assert_eq!(missing(&requested, &["openid user.read"]), vec!["Group.Read.All"]);
        assert_eq!(missing(&requested, &["openid", "User.Read Group.Read.All"]), Vec::<&str>::new());
        assert_eq!(merged("openid User.Read", &["user.read", "email"]), "openid User.Read email");
        assert!(valid_scope("openid User.Read Directory.Read.All").is_ok());
        assert!(valid_scope("Mail.Send").is_err());
        // A request without an API permission gets User.Read in its access token, so asks for it.
        let openid = Scopes { openid: true, ..Scopes::default() };
        assert_eq!(super::requested(&openid), ["openid", "User.Read"]);
    }
}
