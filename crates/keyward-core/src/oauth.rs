//! OAuth 2.0 and OpenID Connect rules: redirect URI matching (exact, with RFC 8252 loopback
//! ports for public clients), PKCE (RFC 7636), scopes and what a delegated token's scopes permit,
//! refresh-token rotation with reuse detection, and Entra's error codes.

use sha2::{Digest, Sha256};

use crate::secret::constant_time_eq;

/// The first-party public client every tenant has (device code, authorization code with PKCE,
/// loopback redirect URIs).
pub const FIRST_PARTY_CLIENT_ID: &str = "keyward-cli";
/// The audience Entra gives Microsoft Graph tokens; Keyward's API answers to it.
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

/// Entra's `AADSTS` error numbers, sent as `error_codes`.
pub mod codes {
    /// The redirect URI does not match the application's.
    pub const REDIRECT_URI_MISMATCH: i64 = 50011;
    /// The code verifier does not match the challenge.
    pub const PKCE_MISMATCH: i64 = 501_481;
    /// A public client must send a code challenge.
    pub const PKCE_REQUIRED: i64 = 9_002_325;
    /// The authorization code was already redeemed.
    pub const CODE_REDEEMED: i64 = 54005;
    /// The authorization code or grant expired or is invalid.
    pub const GRANT_INVALID: i64 = 70008;
    /// Invalid client secret.
    pub const INVALID_CLIENT_SECRET: i64 = 7_000_215;
    /// The application was not found in the tenant.
    pub const UNKNOWN_CLIENT: i64 = 700_016;
    /// The application's service principal is disabled in this tenant (`accountEnabled` false).
    pub const CLIENT_DISABLED: i64 = 7_000_112;
    /// The grant was revoked (sessions revoked, or a refresh token reused).
    pub const GRANT_REVOKED: i64 = 50173;
    /// Strong authentication is required.
    pub const MFA_REQUIRED: i64 = 50076;
    /// Invalid username or password.
    pub const INVALID_CREDENTIALS: i64 = 50126;
    /// Device code: the user has not finished yet.
    pub const AUTHORIZATION_PENDING: i64 = 70016;
    /// Device code expired.
    pub const DEVICE_CODE_EXPIRED: i64 = 70020;
    /// The user declined.
    pub const ACCESS_DENIED: i64 = 65004;
    /// The scope is invalid or unknown.
    pub const INVALID_SCOPE: i64 = 70011;
    /// Unsupported grant type.
    pub const UNSUPPORTED_GRANT: i64 = 70003;
    /// A required parameter is missing.
    pub const MISSING_PARAMETER: i64 = 900_144;
    /// The client is public and may not use this grant or a secret.
    pub const PUBLIC_CLIENT: i64 = 700_025;
    /// The tenant is unknown.
    pub const UNKNOWN_TENANT: i64 = 90002;
    /// A client assertion is invalid.
    pub const INVALID_CLIENT_ASSERTION: i64 = 700_027;
    /// The password grant is turned off.
    pub const PASSWORD_GRANT_DISABLED: i64 = 7_000_218;
    /// The account is disabled.
    pub const ACCOUNT_DISABLED: i64 = 50057;
    /// The account is locked.
    pub const ACCOUNT_LOCKED: i64 = 50053;
    /// Too many requests (Entra's `TenantThrottlingError`).
    pub const THROTTLED: i64 = 90055;
    /// No consent for the application (`DelegationDoesNotExist`).
    pub const CONSENT_REQUIRED: i64 = 65001;
    /// The request is malformed (a `claims` parameter that is not a JSON object).
    pub const INVALID_REQUEST: i64 = 90023;
    /// A parameter sent more than once (Entra's "Request is ambiguous").
    pub const AMBIGUOUS_REQUEST: i64 = 90011;
}

/// The parameters that may be sent once only (RFC 6749 §3.1, OpenID Connect Core, RFC 7009,
/// RFC 8628, RFC 7636, and Keyward's own `kw_after`). Others, read or not, may repeat: the
/// first value counts, and RFC 8707's `resource`, for one, is defined to repeat.
pub const SINGLE_VALUED: [&str; 34] = [
    "acr_values",
    "claims",
    "client_assertion",
    "client_assertion_type",
    "client_id",
    "client_info",
    "client_secret",
    "code",
    "code_challenge",
    "code_challenge_method",
    "code_verifier",
    "device_code",
    "display",
    "domain_hint",
    "grant_type",
    "id_token_hint",
    "kw_after",
    "login_hint",
    "max_age",
    "nonce",
    "password",
    "post_logout_redirect_uri",
    "prompt",
    "redirect_uri",
    "refresh_token",
    "response_mode",
    "response_type",
    "scope",
    "state",
    "token",
    "token_type_hint",
    "ui_locales",
    "user_code",
    "username",
];

/// AADSTS900144's description, in Entra's words: the request lacks the parameter `name`.
pub fn missing_parameter(name: &str) -> String {
    format!("The request body must contain the following parameter: '{name}'.")
}

/// The description of a request that sent `name` more than once (RFC 6749 §3.1: "Request and
/// response parameters MUST NOT be included more than once"). Entra answers a repeated
/// `client_id` with AADSTS90011, "Request is ambiguous"; Keyward answers every repeated
/// [`SINGLE_VALUED`] parameter so. The values are never repeated back: one of them may be a
/// secret.
pub fn repeated_parameter(name: &str) -> String {
    format!("Request is ambiguous: the parameter '{name}' is sent more than once. Send each parameter once.")
}

/// The client capability that opts into continuous access evaluation's claims challenges.
pub const CAE_CAPABILITY: &str = "cp1";

/// The claims request a resource sends back for a token issued before `not_before` (unix time):
/// Entra's `{"access_token":{"nbf":{"essential":true,"value":"…"}}}`, minified.
pub fn revocation_claims(not_before: i64) -> String {
    format!(r#"{{"access_token":{{"nbf":{{"essential":true,"value":"{not_before}"}}}}}}"#)
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "[::1]" | "localhost")
}

/// Splits `http://host:port/path` into `(host, path)` for loopback comparison.
fn loopback_parts(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.bytes().all(|it| it.is_ascii_digit()) => host,
        _ => authority,
    };
    is_loopback_host(host).then_some((host, if path.is_empty() { "/" } else { path }))
}

/// Whether `requested` is one of the application's redirect URIs: exact string equality, except
/// that for a public client a loopback `http://` URI may use any port (RFC 8252 §7.3).
pub fn redirect_uri_matches(registered: &[String], requested: &str, is_public_client: bool) -> bool {
    if requested.len() > 2048 || requested.contains('#') {
        return false;
    }
    if registered.iter().any(|it| it == requested) {
        return true;
    }
    if !is_public_client {
        return false;
    }
    let Some((host, path)) = loopback_parts(requested) else { return false };
    registered
        .iter()
        .filter_map(|it| loopback_parts(it))
        .any(|(reg_host, reg_path)| reg_host == host && reg_path == path)
}

/// Checks a redirect URI for an app registration: at most 256 characters, no fragment, no
/// whitespace; `web` URIs must be `https://` (or `http://localhost`, as Entra allows for
/// development); `publicClient` URIs may be `https://`, loopback `http://`, or a private-use
/// scheme (`com.example.app:/callback`, RFC 8252 §7.1).
pub fn validate_redirect_uri(uri: &str, is_public_client: bool) -> Result<(), String> {
    if uri.is_empty() || uri.len() > 256 {
        return Err(format!("The redirect URI '{uri}' must have 1 to 256 characters."));
    }
    if uri.contains('#') || uri.chars().any(|it| it.is_whitespace() || it.is_control()) {
        return Err(format!("The redirect URI '{uri}' must not contain a fragment or whitespace."));
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(format!("The redirect URI '{uri}' is not an absolute URI."));
    };
    let is_loopback = loopback_parts(uri).is_some();
    let ok = match scheme {
        "https" => rest.starts_with("//") && rest.len() > 2,
        "http" => is_loopback,
        _ => {
            is_public_client
                && scheme.contains('.')
                && scheme.bytes().all(|it| it.is_ascii_alphanumeric() || matches!(it, b'.' | b'+' | b'-'))
        }
    };
    if ok {
        Ok(())
    } else if is_public_client {
        Err(format!("The redirect URI '{uri}' must use https, a loopback http address, or a private-use scheme."))
    } else {
        Err(format!("The redirect URI '{uri}' must use https (http is allowed only for localhost)."))
    }
}

/// Whether a PKCE code verifier is well formed: 43–128 unreserved characters (RFC 7636 §4.1).
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|it| it.is_ascii_alphanumeric() || matches!(it, b'-' | b'.' | b'_' | b'~'))
}

/// BASE64URL without padding.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut res = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0_u32, |acc, (idx, byte)| acc | (u32::from(*byte) << (16 - 8 * idx)));
        for idx in 0..=chunk.len() {
            res.push(char::from(ALPHABET[((n >> (18 - 6 * idx)) & 63) as usize]));
        }
    }
    res
}

/// Checks a PKCE verifier against the challenge sent to the authorization endpoint, in constant
/// time. `plain` is accepted only where the caller allows it (never for public clients).
pub fn pkce_matches(method: &str, challenge: &str, verifier: &str) -> bool {
    if !is_valid_verifier(verifier) {
        return false;
    }
    let expected = match method {
        "S256" => base64url(&Sha256::digest(verifier.as_bytes())),
        "plain" => verifier.to_owned(),
        _ => return false,
    };
    constant_time_eq(expected.as_bytes(), challenge.as_bytes())
}

/// The Graph permissions Keyward's API knows, for delegated (`scp`) tokens.
pub const API_PERMISSIONS: &[&str] = &[
    "User.Read",
    "User.ReadBasic.All",
    "User.Read.All",
    "User.ReadWrite.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "GroupMember.Read.All",
    "GroupMember.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "RoleManagement.Read.Directory",
    "RoleManagement.ReadWrite.Directory",
    "RoleAssignmentSchedule.Read.Directory",
    "RoleAssignmentSchedule.ReadWrite.Directory",
    "RoleEligibilitySchedule.Read.Directory",
    "RoleEligibilitySchedule.ReadWrite.Directory",
    "RoleManagementPolicy.Read.Directory",
    "RoleManagementPolicy.ReadWrite.Directory",
    "AdministrativeUnit.Read.All",
    "AdministrativeUnit.ReadWrite.All",
    "AuditLog.Read.All",
    "UserAuthenticationMethod.Read",
    "UserAuthenticationMethod.ReadWrite",
    "UserAuthenticationMethod.Read.All",
    "UserAuthenticationMethod.ReadWrite.All",
    "Policy.Read.All",
    "Policy.ReadWrite.AuthenticationMethod",
    "Policy.ReadWrite.ConditionalAccess",
    "Application.Read.All",
    "Application.ReadWrite.All",
];

/// A requested scope, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    pub openid: bool,
    pub profile: bool,
    pub email: bool,
    pub offline_access: bool,
    /// Graph permissions for Keyward's API, in Graph's spelling.
    pub api: Vec<String>,
    /// `.default` as the client spelled it (`https://graph.microsoft.com/.default`): the
    /// permissions the client holds for the user, resolved once both are known
    /// ([`Scopes::resolve_default`]).
    pub default: Option<String>,
    /// The API permissions named one by one, as the client spelled them (with or without the
    /// resource, in its case), so that the token response answers in the client's terms.
    pub spelled: Vec<String>,
    /// Whether `.default` was resolved (once per request: what it stands for is read once).
    pub is_resolved: bool,
}

impl Scopes {
    /// Whether any API permission was requested (an access token for the API is issued then, or
    /// when only OpenID scopes were asked, for `/oidc/userinfo`).
    pub fn has_api(&self) -> bool {
        !self.api.is_empty() || self.default.is_some()
    }

    /// The `scp` claim: the API permissions, space-separated.
    pub fn scp(&self) -> String {
        self.api.join(" ")
    }

    /// Adds what `.default` stands for, when it was asked: `available`, the permissions the
    /// client holds for the user (every API permission for the pre-consented first-party
    /// client, the granted ones for a registered application).
    pub fn resolve_default<'a>(&mut self, available: impl IntoIterator<Item = &'a str>) {
        if self.default.is_none() {
            return;
        }
        self.is_resolved = true;
        for name in available {
            if let Some(known) = API_PERMISSIONS.iter().find(|it| it.eq_ignore_ascii_case(name)) {
                self.api.push((*known).to_owned());
            }
        }
        self.api.sort();
        self.api.dedup();
    }

    /// The scope string as the token response returns it: each permission named as the client
    /// named it (`User.Read`, or `https://graph.microsoft.com/User.Read`), `.default` as asked,
    /// others (what `.default` stood for) by Graph's name, then the OpenID Connect scopes. A
    /// client's token cache, which looks tokens up by the scopes it asked for, then finds them.
    pub fn granted(&self) -> String {
        let mut res: Vec<String> = Vec::new();
        for name in &self.api {
            res.push(self.spelling_of(name).map_or_else(|| name.clone(), str::to_owned));
        }
        if let Some(default) = &self.default {
            res.push(default.clone());
        }
        res.extend(self.openid_scopes().map(str::to_owned));
        res.join(" ")
    }

    /// The scope as stored with a grant: what was asked, as it was spelled, so that parsing it
    /// again gives these scopes back.
    pub fn stored(&self) -> String {
        let mut parts: Vec<String> = self.api.iter().filter(|it| self.spelling_of(it).is_none()).cloned().collect();
        parts.extend(self.spelled.iter().cloned());
        parts.extend(self.default.iter().cloned());
        parts.extend(self.openid_scopes().map(str::to_owned));
        parts.join(" ")
    }

    /// The OpenID Connect scopes asked for, in their usual order.
    pub fn openid_scopes(&self) -> impl Iterator<Item = &'static str> {
        [
            (self.openid, "openid"),
            (self.profile, "profile"),
            (self.email, "email"),
            (self.offline_access, "offline_access"),
        ]
        .into_iter()
        .filter(|(asked, _)| *asked)
        .map(|(_, name)| name)
    }

    /// How the client spelled permission `name`, if it named it.
    fn spelling_of(&self, name: &str) -> Option<&str> {
        self.spelled
            .iter()
            .find(|it| {
                let bare = it.rsplit('/').next().unwrap_or(it);
                bare.eq_ignore_ascii_case(name)
            })
            .map(String::as_str)
    }
}

/// Why a scope was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeError(pub String);

/// Parses a space-separated scope. `https://graph.microsoft.com/.default`, `{public-url}/.default`
/// and Graph permission names (bare, or prefixed with either resource) mean Keyward's API;
/// `openid`, `profile`, `email`, `offline_access` are OpenID Connect's. Anything else is refused.
pub fn parse_scope(scope: &str, public_url: &str) -> Result<Scopes, ScopeError> {
    let mut res = Scopes::default();
    let mut api = Vec::new();
    for item in scope.split_whitespace() {
        match item {
            "openid" => res.openid = true,
            "profile" => res.profile = true,
            "email" => res.email = true,
            "offline_access" => res.offline_access = true,
            _ => {
                let name = [GRAPH_RESOURCE, public_url]
                    .iter()
                    .find_map(|resource| item.strip_prefix(resource).and_then(|it| it.strip_prefix('/')))
                    .unwrap_or(item);
                if name == ".default" {
                    res.default = Some(item.to_owned());
                } else if let Some(known) = API_PERMISSIONS.iter().find(|it| it.eq_ignore_ascii_case(name)) {
                    api.push((*known).to_owned());
                    if !res.spelled.iter().any(|it| it == item) {
                        res.spelled.push(item.to_owned());
                    }
                } else {
                    return Err(ScopeError(format!(
                        "The provided value for the input parameter 'scope' is not valid. The scope '{item}' does not exist."
                    )));
                }
            }
        }
    }
    api.sort();
    api.dedup();
    res.api = api;
    Ok(res)
}

/// [`parse_scope`] for a scope a client sent: `.default` stands for every permission the client
/// holds, so it cannot be combined with permissions named one by one (Entra's `AADSTS70011`).
/// What Keyward stores with a grant may hold both (what `.default` stood for, and `.default`).
pub fn parse_requested_scope(scope: &str, public_url: &str) -> Result<Scopes, ScopeError> {
    let scopes = parse_scope(scope, public_url)?;
    if let Some(default) = scopes.default.as_deref().filter(|_| !scopes.api.is_empty()) {
        return Err(ScopeError(format!(
            "The provided value for the input parameter 'scope' is not valid. '{default}' cannot be combined with other \
             permissions of the same resource ({}): ask for '{default}' alone, or name each permission.",
            scopes.spelled.join(", ")
        )));
    }
    Ok(scopes)
}

/// Whether a delegated token's permissions allow a resource action (the user's roles must allow
/// it too; this is the token half of the check). `on_self` is whether the action's target is the
/// signed-in user: Graph's permissions without `.All` (`User.Read`,
/// `UserAuthenticationMethod.Read`, `UserAuthenticationMethod.ReadWrite`) reach only oneself.
pub fn scope_permits(scp: &[String], action: &str, on_self: bool) -> bool {
    let has = |names: &[&str]| scp.iter().any(|it| names.iter().any(|name| it.eq_ignore_ascii_case(name)));
    let Some(rest) = action.strip_prefix("microsoft.directory/") else { return false };
    let (resource, verb) = rest.split_once('/').unwrap_or((rest, ""));
    let is_read = verb.ends_with("read") || verb.ends_with("Read");
    let is_security_info =
        resource == "users" && (verb.starts_with("authenticationMethods") || verb.starts_with("strongAuthentication"));
    let directory =
        if is_read { &["Directory.Read.All", "Directory.ReadWrite.All"][..] } else { &["Directory.ReadWrite.All"][..] };
    // Directory.* covers the directory, not security info, the logs or the authentication and
    // conditional-access policies (Graph wants Policy.* for those).
    let is_policy = resource == "conditionalAccessPolicies"
        || resource == "organization" && verb.starts_with("strongAuthentication");
    // Nor just-in-time roles, which Graph gives only to its role-management permissions.
    let is_pim = matches!(resource, "roleAssignmentSchedules" | "roleEligibilitySchedules" | "roleManagementPolicies");
    // Nor granting roles: Graph's role writes (assignments, definitions, directory roles' and
    // units' members, role-assignable groups) need `RoleManagement.ReadWrite.Directory`, with no
    // higher permission that also allows them.
    let is_role_write = !is_read
        && matches!(
            resource,
            "roleAssignments"
                | "roleDefinitions"
                | "directoryRoles"
                | "scopedRoleMemberships"
                | "groupsAssignableToRoles"
        );
    if has(directory)
        && !is_security_info
        && !is_policy
        && !is_pim
        && !is_role_write
        && resource != "auditLogs"
        && resource != "signInReports"
    {
        return true;
    }
    match (resource, is_read) {
        ("users", _) if verb.starts_with("strongAuthentication") => {
            if is_read {
                has(&["Policy.Read.All", "Policy.ReadWrite.AuthenticationMethod"])
            } else {
                has(&["Policy.ReadWrite.AuthenticationMethod"])
            }
        }
        ("users", true) if is_security_info => {
            has(&["UserAuthenticationMethod.Read.All", "UserAuthenticationMethod.ReadWrite.All"])
                || on_self && has(&["UserAuthenticationMethod.Read", "UserAuthenticationMethod.ReadWrite"])
        }
        ("users", false) if is_security_info => {
            has(&["UserAuthenticationMethod.ReadWrite.All"]) || on_self && has(&["UserAuthenticationMethod.ReadWrite"])
        }
        ("users", true) => {
            has(&["User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All"]) || on_self && has(&["User.Read"])
        }
        ("users", false) => has(&["User.ReadWrite.All"]),
        ("groups" | "groupsAssignableToRoles", true) => {
            has(&["Group.Read.All", "Group.ReadWrite.All", "GroupMember.Read.All", "GroupMember.ReadWrite.All"])
        }
        ("groups", false) => {
            has(&["Group.ReadWrite.All"]) || (verb.starts_with("members") && has(&["GroupMember.ReadWrite.All"]))
        }
        // A role-assignable group grants its roles: the group permission and role management's.
        ("groupsAssignableToRoles", false) => {
            has(&["RoleManagement.ReadWrite.Directory"])
                && (has(&["Group.ReadWrite.All", "Directory.ReadWrite.All"])
                    || (verb.starts_with("members") && has(&["GroupMember.ReadWrite.All"])))
        }
        ("roleAssignments" | "roleDefinitions" | "directoryRoles" | "scopedRoleMemberships", true) => {
            has(&["RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory"])
        }
        ("roleAssignments" | "roleDefinitions" | "directoryRoles" | "scopedRoleMemberships", false) => {
            has(&["RoleManagement.ReadWrite.Directory"])
        }
        // Just-in-time roles: PIM's own permissions, or role management's.
        ("roleAssignmentSchedules" | "roleEligibilitySchedules" | "roleManagementPolicies", _) => {
            let own = match resource {
                "roleAssignmentSchedules" => "RoleAssignmentSchedule",
                "roleEligibilitySchedules" => "RoleEligibilitySchedule",
                _ => "RoleManagementPolicy",
            };
            let (read, write) = (format!("{own}.Read.Directory"), format!("{own}.ReadWrite.Directory"));
            if is_read {
                has(&[&read, &write, "RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory"])
            } else {
                has(&[&write, "RoleManagement.ReadWrite.Directory"])
            }
        }
        ("administrativeUnits", true) => has(&["AdministrativeUnit.Read.All", "AdministrativeUnit.ReadWrite.All"]),
        ("administrativeUnits", false) => has(&["AdministrativeUnit.ReadWrite.All"]),
        ("auditLogs" | "signInReports", _) => has(&["AuditLog.Read.All"]),
        ("organization", true) => has(&["User.Read", "Directory.Read.All", "Policy.Read.All"]),
        ("organization", false) => has(&["Policy.ReadWrite.AuthenticationMethod"]),
        ("policies" | "conditionalAccessPolicies", true) => has(&["Policy.Read.All"]),
        ("conditionalAccessPolicies", false) => has(&["Policy.ReadWrite.ConditionalAccess"]),
        ("servicePrincipals" | "applications", true) => has(&["Application.Read.All", "Application.ReadWrite.All"]),
        ("servicePrincipals" | "applications", false) => has(&["Application.ReadWrite.All"]),
        _ => false,
    }
}

/// What a refresh token's row says when it is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshVerdict {
    /// Good: rotate it.
    Valid,
    /// Already rotated: someone replays an old token, so the whole family is revoked.
    Reused,
    Expired,
    /// Revoked, or issued before the user's sessions were revoked.
    Revoked,
}

/// Judges a refresh token at `now`.
pub fn refresh_verdict(
    is_rotated: bool,
    is_revoked: bool,
    issued_at: time::OffsetDateTime,
    expires_at: time::OffsetDateTime,
    sessions_valid_from: time::OffsetDateTime,
    now: time::OffsetDateTime,
) -> RefreshVerdict {
    if is_rotated {
        RefreshVerdict::Reused
    } else if is_revoked || issued_at < sessions_valid_from {
        RefreshVerdict::Revoked
    } else if expires_at <= now {
        RefreshVerdict::Expired
    } else {
        RefreshVerdict::Valid
    }
}

/// A device-code user code: eight letters from an alphabet without vowels or look-alikes,
/// shown as `XXXX-XXXX`. `random` supplies the choices.
pub fn user_code(random: &[u8; 8]) -> String {
    const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
    let letters: String = random.iter().map(|it| char::from(ALPHABET[usize::from(*it) % ALPHABET.len()])).collect();
    format!("{}-{}", &letters[..4], &letters[4..])
}

/// Normalises what a user typed as a user code: letters uppercased, separators dropped.
pub fn normalize_user_code(typed: &str) -> String {
    let letters: String = typed.chars().filter(char::is_ascii_alphanumeric).map(|it| it.to_ascii_uppercase()).collect();
    if letters.len() == 8 { format!("{}-{}", &letters[..4], &letters[4..]) } else { letters }
}

/// Where a device authorization (RFC 8628) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCodeStatus {
    /// Waiting for the user at the verification page.
    Pending,
    /// The user approved; the next poll redeems it.
    Approved,
    /// The user declined.
    Denied,
    /// Tokens were issued for it.
    Redeemed,
}

impl DeviceCodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceCodeStatus::Pending => "pending",
            DeviceCodeStatus::Approved => "approved",
            DeviceCodeStatus::Denied => "denied",
            DeviceCodeStatus::Redeemed => "redeemed",
        }
    }

    /// A stored status; `None` for anything else.
    pub fn parse(text: &str) -> Option<DeviceCodeStatus> {
        [DeviceCodeStatus::Pending, DeviceCodeStatus::Approved, DeviceCodeStatus::Denied, DeviceCodeStatus::Redeemed]
            .into_iter()
            .find(|it| it.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_parameter_is_named_in_entras_words() {
        assert_eq!(
            super::missing_parameter("grant_type"),
            "The request body must contain the following parameter: 'grant_type'."
        );
    }

    #[test]
    fn pim_permissions_cover_pim_alone() {
        let scp = |it: &str| vec![it.to_owned()];
        let activate = "microsoft.directory/roleAssignmentSchedules/allProperties/allTasks";
        assert!(scope_permits(&scp("RoleAssignmentSchedule.ReadWrite.Directory"), activate, true));
        assert!(scope_permits(&scp("RoleManagement.ReadWrite.Directory"), activate, true));
        assert!(!scope_permits(&scp("RoleAssignmentSchedule.Read.Directory"), activate, true));
        assert!(!scope_permits(&scp("User.Read"), activate, true));
        let eligibility = "microsoft.directory/roleEligibilitySchedules/allProperties/read";
        assert!(scope_permits(&scp("RoleEligibilitySchedule.Read.Directory"), eligibility, false));
        assert!(!scope_permits(&scp("RoleAssignmentSchedule.Read.Directory"), eligibility, false));
        assert!(!scope_permits(&scp("Directory.ReadWrite.All"), activate, true), "Graph's PIM wants its own");
        // PIM's own permissions do not assign roles outside PIM.
        let assign = "microsoft.directory/roleAssignments/allProperties/allTasks";
        assert!(!scope_permits(&scp("RoleAssignmentSchedule.ReadWrite.Directory"), assign, false));
    }

    #[test]
    fn only_role_management_grants_roles() {
        let scp = |names: &[&str]| names.iter().map(|it| (*it).to_owned()).collect::<Vec<_>>();
        for action in [
            "microsoft.directory/roleAssignments/allProperties/allTasks",
            "microsoft.directory/roleDefinitions/allProperties/allTasks",
            "microsoft.directory/directoryRoles/members/update",
            "microsoft.directory/scopedRoleMemberships/allProperties/allTasks",
        ] {
            assert!(!scope_permits(&scp(&["Directory.ReadWrite.All"]), action, false), "{action}");
            assert!(scope_permits(&scp(&["RoleManagement.ReadWrite.Directory"]), action, false), "{action}");
        }
        // Reading roles is still the directory's.
        let read = "microsoft.directory/roleAssignments/allProperties/read";
        assert!(scope_permits(&scp(&["Directory.Read.All"]), read, false));
        // A role-assignable group: both the group's permission and role management's.
        use crate::authz::actions::{ROLE_ASSIGNABLE_GROUPS_CREATE, ROLE_ASSIGNABLE_GROUPS_UPDATE};
        for action in [ROLE_ASSIGNABLE_GROUPS_UPDATE, ROLE_ASSIGNABLE_GROUPS_CREATE] {
            assert!(!scope_permits(&scp(&["Group.ReadWrite.All"]), action, false), "{action}");
            assert!(!scope_permits(&scp(&["Directory.ReadWrite.All"]), action, false), "{action}");
            assert!(!scope_permits(&scp(&["RoleManagement.ReadWrite.Directory"]), action, false), "{action}");
            let both = scp(&["Group.ReadWrite.All", "RoleManagement.ReadWrite.Directory"]);
            assert!(scope_permits(&both, action, false), "{action}");
        }
        let members = "microsoft.directory/groupsAssignableToRoles/members/update";
        assert!(scope_permits(
            &scp(&["GroupMember.ReadWrite.All", "RoleManagement.ReadWrite.Directory"]),
            members,
            false
        ));
        // Other groups as before.
        assert!(scope_permits(&scp(&["Group.ReadWrite.All"]), "microsoft.directory/groups/members/update", false));
    }

    #[test]
    fn device_code_statuses_round_trip_and_nothing_else_parses() {
        use super::DeviceCodeStatus as S;
        for status in [S::Pending, S::Approved, S::Denied, S::Redeemed] {
            assert_eq!(S::parse(status.as_str()), Some(status));
        }
        assert_eq!(S::parse("Pending"), None);
        assert_eq!(S::parse(""), None);
    }

    use super::*;
    use time::macros::datetime;

    #[test]
    fn redirect_uris_match_exactly_or_by_loopback_for_public_clients() {
        let registered = vec!["https://app.example/cb".to_owned(), "http://localhost".to_owned()];
        assert!(redirect_uri_matches(&registered, "https://app.example/cb", false));
        assert!(!redirect_uri_matches(&registered, "https://app.example/cb/", false));
        assert!(!redirect_uri_matches(&registered, "https://app.example/cb?x=1", false));
        assert!(!redirect_uri_matches(&registered, "https://APP.example/cb", false));
        assert!(redirect_uri_matches(&registered, "http://localhost:53211", true));
        assert!(redirect_uri_matches(&registered, "http://localhost:53211/", true));
        assert!(!redirect_uri_matches(&registered, "http://localhost:53211", false), "confidential: exact only");
        assert!(!redirect_uri_matches(&registered, "http://localhost.evil:80", true));
        assert!(!redirect_uri_matches(&registered, "http://127.0.0.1:8400", true), "a different loopback host");
        assert!(!redirect_uri_matches(&registered, "http://localhost:1/other", true));
        assert!(!redirect_uri_matches(&registered, "https://app.example/cb#frag", false));
    }

    #[test]
    fn registered_redirect_uris_are_checked() {
        assert!(validate_redirect_uri("https://app.example/cb", false).is_ok());
        assert!(validate_redirect_uri("http://localhost:3000/cb", false).is_ok());
        assert!(validate_redirect_uri("http://app.example/cb", false).is_err());
        assert!(validate_redirect_uri("https://app.example/cb#x", false).is_err());
        assert!(validate_redirect_uri("com.example.app:/oauth", true).is_ok());
        assert!(validate_redirect_uri("com.example.app:/oauth", false).is_err());
        assert!(validate_redirect_uri("javascript:alert(1)", true).is_err());
        assert!(validate_redirect_uri("http://127.0.0.1", true).is_ok());
    }

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches("S256", challenge, verifier));
        assert!(!pkce_matches("S256", challenge, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"));
        assert!(!pkce_matches("S256", challenge, "short"));
        assert!(!pkce_matches("S512", challenge, verifier));
        assert!(pkce_matches("plain", verifier, verifier));
    }

    #[test]
    fn default_is_asked_alone() {
        let mixed = parse_requested_scope("https://graph.microsoft.com/.default User.Read openid", "https://kw");
        assert!(mixed.expect_err("mixed").0.contains("cannot be combined"));
        let alone = parse_requested_scope("https://graph.microsoft.com/.default openid offline_access", "https://kw");
        assert!(alone.expect("alone").default.is_some());
        assert!(parse_requested_scope("User.Read openid", "https://kw").is_ok());
        // A stored grant holds both, and reads back.
        let mut resolved = alone_default();
        resolved.resolve_default(["User.Read"]);
        assert_eq!(parse_scope(&resolved.stored(), "https://kw").expect("stored").api, ["User.Read"]);
    }

    fn alone_default() -> Scopes {
        parse_scope("https://graph.microsoft.com/.default", "https://kw").expect("ok")
    }

    #[test]
    fn base64url_has_no_padding() {
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn scopes_map_graph_names_and_default_to_the_api() {
        let scopes = parse_scope("openid profile offline_access https://graph.microsoft.com/.default", "https://kw")
            .expect("ok");
        assert!(scopes.openid && scopes.profile && scopes.offline_access && !scopes.email);
        assert!(scopes.api.is_empty() && scopes.has_api(), "`.default` waits for the client and user");
        let mut resolved = scopes.clone();
        resolved.resolve_default(API_PERMISSIONS.iter().copied());
        assert_eq!(resolved.api.len(), API_PERMISSIONS.len());
        let mut granted = scopes;
        granted.resolve_default(["user.read", "openid", "Group.Read.All"]);
        assert_eq!(granted.api, ["Group.Read.All", "User.Read"]);
        assert_eq!(
            granted.granted(),
            "Group.Read.All User.Read https://graph.microsoft.com/.default openid profile offline_access"
        );
        let own = parse_scope("https://kw/.default", "https://kw").expect("ok");
        assert_eq!(own.default.as_deref(), Some("https://kw/.default"));
        // Answered as asked, and stored so that parsing it again gives the same scopes.
        let mixed =
            parse_scope("https://graph.microsoft.com/user.read Group.Read.All openid", "https://kw").expect("ok");
        assert_eq!(
            mixed.granted(),
            "Group.Read.All https://graph.microsoft.com/user.read openid",
            "as asked, case too"
        );
        assert_eq!(parse_scope(&mixed.stored(), "https://kw").expect("again"), mixed);
        assert_eq!(parse_scope(&granted.stored(), "https://kw").expect("again").api, granted.api);
        let named = parse_scope("user.read https://graph.microsoft.com/User.ReadWrite.All", "https://kw").expect("ok");
        assert_eq!(named.api, vec!["User.Read".to_owned(), "User.ReadWrite.All".to_owned()]);
        assert!(parse_scope("Mail.Send", "https://kw").is_err());
        assert!(parse_scope("https://other.example/.default", "https://kw").is_err());
    }

    #[test]
    fn delegated_scopes_gate_actions() {
        let scp = |names: &[&str]| names.iter().map(|it| (*it).to_owned()).collect::<Vec<_>>();
        assert!(scope_permits(&scp(&["User.Read"]), "microsoft.directory/users/standard/read", true));
        assert!(
            !scope_permits(&scp(&["User.Read"]), "microsoft.directory/users/standard/read", false),
            "User.Read is oneself only"
        );
        assert!(!scope_permits(&scp(&["User.Read"]), "microsoft.directory/users/basic/update", true));
        assert!(scope_permits(&scp(&["Directory.ReadWrite.All"]), "microsoft.directory/users/basic/update", false));
        assert!(!scope_permits(
            &scp(&["Directory.ReadWrite.All"]),
            "microsoft.directory/users/strongAuthentication/update",
            false
        ));
        // The authentication and conditional-access policies want Policy.* permissions.
        let defaults = "microsoft.directory/conditionalAccessPolicies/tenantDefault/update";
        let methods_policy = "microsoft.directory/organization/strongAuthentication/allTasks";
        assert!(!scope_permits(&scp(&["Directory.ReadWrite.All"]), defaults, false));
        assert!(!scope_permits(&scp(&["Directory.ReadWrite.All"]), methods_policy, false));
        assert!(scope_permits(&scp(&["Policy.ReadWrite.ConditionalAccess"]), defaults, false));
        assert!(!scope_permits(&scp(&["Policy.ReadWrite.AuthenticationMethod"]), defaults, false));
        assert!(scope_permits(&scp(&["Policy.ReadWrite.AuthenticationMethod"]), methods_policy, false));
        assert!(scope_permits(
            &scp(&["Directory.ReadWrite.All"]),
            "microsoft.directory/organization/allProperties/allTasks",
            false
        ));
        let own = scp(&["UserAuthenticationMethod.ReadWrite"]);
        assert!(scope_permits(&own, "microsoft.directory/users/authenticationMethods/delete", true));
        assert!(!scope_permits(&own, "microsoft.directory/users/authenticationMethods/delete", false));
        assert!(!scope_permits(
            &scp(&["Directory.ReadWrite.All"]),
            "microsoft.directory/users/authenticationMethods/delete",
            false
        ));
        assert!(scope_permits(
            &scp(&["UserAuthenticationMethod.ReadWrite.All"]),
            "microsoft.directory/users/authenticationMethods/delete",
            false
        ));
        assert!(!scope_permits(
            &scp(&["Directory.Read.All"]),
            "microsoft.directory/auditLogs/allProperties/read",
            false
        ));
        assert!(scope_permits(&scp(&["AuditLog.Read.All"]), "microsoft.directory/auditLogs/allProperties/read", false));
        assert!(scope_permits(
            &scp(&["GroupMember.ReadWrite.All"]),
            "microsoft.directory/groups/members/update",
            false
        ));
        assert!(!scope_permits(&scp(&["GroupMember.ReadWrite.All"]), "microsoft.directory/groups/delete", false));
        let all = scp(API_PERMISSIONS);
        // `.default` (every permission) covers every action of the catalogue.
        for action in crate::authz::RESOURCE_ACTIONS {
            assert!(scope_permits(&all, action.name, false), "{}", action.name);
        }
    }

    #[test]
    fn refresh_tokens_rotate_once() {
        let at = datetime!(2026-11-26 12:00 UTC);
        let later = at + time::Duration::days(1);
        let from = at - time::Duration::hours(1);
        assert_eq!(refresh_verdict(false, false, at, later, from, at), RefreshVerdict::Valid);
        assert_eq!(refresh_verdict(true, false, at, later, from, at), RefreshVerdict::Reused);
        assert_eq!(refresh_verdict(false, true, at, later, from, at), RefreshVerdict::Revoked);
        assert_eq!(
            refresh_verdict(false, false, at, later, at + time::Duration::seconds(1), at),
            RefreshVerdict::Revoked
        );
        assert_eq!(refresh_verdict(false, false, at, later, from, later), RefreshVerdict::Expired);
    }

    #[test]
    fn user_codes_are_readable_and_normalised() {
        let code = user_code(&[0, 1, 2, 3, 4, 5, 6, 255]);
        assert_eq!(code.len(), 9);
        assert_eq!(&code[4..5], "-");
        assert_eq!(normalize_user_code(&code.to_lowercase().replace('-', " ")), code);
    }
}
