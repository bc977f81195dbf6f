//! Sign-in rules: when MFA is required (Entra's per-user MFA states and Entra's registration interrupt), what follows a first factor, smart
//! lockout, whether a browser session or a remembered device still counts, Temporary Access Pass
//! usability and policy (Graph's temporaryAccessPassAuthenticationMethod and Entra's Temporary Access Pass policy), and the sign-in log record (Graph's signIn resource).
//!
//! Everything here is a pure function of the facts and the time passed in.

use time::{Duration, OffsetDateTime};

use crate::ids::ObjectId;

/// Entra's sign-in error codes (`status.errorCode`).
pub mod codes {
    pub const SUCCESS: i32 = 0;
    /// Invalid username or password.
    pub const INVALID_CREDENTIALS: i32 = 50126;
    /// The user name names no account (logged only: the page answers as for a wrong password).
    pub const USER_NOT_FOUND: i32 = 50034;
    /// Account locked by smart lockout.
    pub const LOCKED: i32 = 50053;
    /// Account disabled.
    pub const DISABLED: i32 = 50057;
    /// Password expired or must be changed.
    pub const PASSWORD_EXPIRED: i32 = 50055;
    /// Strong authentication is required (the MFA prompt was shown).
    pub const MFA_REQUIRED: i32 = 50076;
    /// The user must register for MFA (the registration interrupt was shown).
    pub const MFA_REGISTRATION_REQUIRED: i32 = 50079;
    /// The second factor failed.
    pub const MFA_FAILED: i32 = 500121;
    /// The session or grant was revoked or has expired.
    pub const SESSION_REVOKED: i32 = 50173;
}

/// Per-user MFA state, as Entra has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PerUserMfaState {
    #[default]
    Disabled,
    Enabled,
    Enforced,
}

impl PerUserMfaState {
    /// Graph's value: `disabled`, `enabled`, `enforced`.
    pub fn as_str(self) -> &'static str {
        match self {
            PerUserMfaState::Disabled => "disabled",
            PerUserMfaState::Enabled => "enabled",
            PerUserMfaState::Enforced => "enforced",
        }
    }

    pub fn parse(text: &str) -> Option<PerUserMfaState> {
        match text {
            "disabled" => Some(PerUserMfaState::Disabled),
            "enabled" => Some(PerUserMfaState::Enabled),
            "enforced" => Some(PerUserMfaState::Enforced),
            _ => None,
        }
    }

    /// The state after the user registers an MFA method: `enabled` becomes `enforced`.
    pub fn after_registration(self) -> PerUserMfaState {
        match self {
            PerUserMfaState::Enabled => PerUserMfaState::Enforced,
            other => other,
        }
    }
}

/// A tenant's sign-in settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInPolicy {
    /// Users holding a privileged directory role must use MFA (on by default).
    pub mfa_for_privileged_roles: bool,
    /// Every user must use MFA.
    pub mfa_for_everyone: bool,
    /// Days a browser may skip MFA after "Don't ask again"; 0 turns the offer off.
    pub remember_mfa_days: i64,
    /// Failed password attempts before smart lockout locks the account.
    pub lockout_threshold: i64,
    /// The first lockout's length; each further lockout doubles it (up to a day).
    pub lockout_seconds: i64,
    /// Failed one-time codes before the code step is locked for the same duration.
    pub code_attempt_limit: i64,
}

impl Default for SignInPolicy {
    fn default() -> SignInPolicy {
        SignInPolicy {
            mfa_for_privileged_roles: true,
            mfa_for_everyone: false,
            remember_mfa_days: 0,
            lockout_threshold: 10,
            lockout_seconds: 60,
            code_attempt_limit: 5,
        }
    }
}

impl SignInPolicy {
    /// Checks the bounds: remembered devices 0–365 days, lockout threshold 1–100, first lockout
    /// 5 s–1 day, code attempts 1–100.
    pub fn validate(&self) -> Result<(), String> {
        if !(0..=365).contains(&self.remember_mfa_days) {
            return Err("'rememberMfaOnDeviceDays' must be between 0 (off) and 365.".into());
        }
        if !(1..=100).contains(&self.lockout_threshold) {
            return Err("lockoutThreshold must be between 1 and 100.".into());
        }
        if !(5..=86_400).contains(&self.lockout_seconds) {
            return Err("lockoutDurationInSeconds must be between 5 and 86400.".into());
        }
        if !(1..=100).contains(&self.code_attempt_limit) {
            return Err("codeAttemptLimit must be between 1 and 100.".into());
        }
        Ok(())
    }
}

/// Why a user must use MFA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaReason {
    /// Per-user MFA is `enabled` or `enforced` ("MFA: Per-user" in the sign-in log).
    PerUser,
    /// The user holds a privileged role and the tenant requires MFA for them.
    PrivilegedRole,
    /// The tenant requires MFA for everyone.
    Everyone,
}

impl MfaReason {
    /// The `authenticationRequirementPolicies` detail Keyward writes to the sign-in log.
    pub fn detail(self) -> &'static str {
        match self {
            MfaReason::PerUser => "MFA: Per-user",
            MfaReason::PrivilegedRole => "MFA: Privileged role",
            MfaReason::Everyone => "MFA: Tenant requires MFA for all users",
        }
    }
}

/// Whether the user must use MFA, and why.
pub fn mfa_requirement(
    policy: &SignInPolicy,
    per_user: PerUserMfaState,
    holds_privileged_role: bool,
) -> Option<MfaReason> {
    if per_user != PerUserMfaState::Disabled {
        Some(MfaReason::PerUser)
    } else if holds_privileged_role && policy.mfa_for_privileged_roles {
        Some(MfaReason::PrivilegedRole)
    } else if policy.mfa_for_everyone {
        Some(MfaReason::Everyone)
    } else {
        None
    }
}

/// Whether any of the assigned roles is privileged: a built-in role Entra marks `isPrivileged`,
/// or an enabled custom role holding a privileged action.
pub fn holds_privileged_role<'a>(
    mut assigned: impl Iterator<Item = &'a str>,
    custom_roles: &[crate::authz::custom::CustomRole],
) -> bool {
    assigned.any(|id| match crate::authz::built_in_role(id) {
        Some(role) => role.is_privileged,
        None => custom_roles
            .iter()
            .any(|role| role.is_enabled && role.id.as_str().eq_ignore_ascii_case(id) && role.is_privileged()),
    })
}

/// The first factor the user presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstFactor {
    Password,
    TemporaryAccessPass,
}

/// What the sign-in needs after a good first factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Signed in. `mfa` says whether MFA counts as done (TAP, a remembered device) or was not needed.
    Done { mfa: MfaDone },
    /// Ask for a one-time code (errorCode 50076 until it is given).
    Challenge,
    /// Show the registration interrupt; it cannot be skipped (errorCode 50079).
    Register,
}

/// How the MFA requirement was met at the end of a first factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaDone {
    NotRequired,
    /// A Temporary Access Pass is a strong credential on its own.
    ByTemporaryAccessPass,
    /// A remembered device ("Previously satisfied").
    ByRememberedDevice,
}

/// Decides what follows a good first factor.
pub fn after_first_factor(
    factor: FirstFactor,
    requirement: Option<MfaReason>,
    has_usable_method: bool,
    device_remembered: bool,
) -> NextStep {
    match (factor, requirement) {
        // A pass is strong on its own, but a user who must use MFA and has no method still
        // registers one before going on (Entra's registration interrupt: TAP users are sent to interrupt mode).
        (FirstFactor::TemporaryAccessPass, Some(_)) if !has_usable_method => NextStep::Register,
        (FirstFactor::TemporaryAccessPass, _) => NextStep::Done { mfa: MfaDone::ByTemporaryAccessPass },
        (FirstFactor::Password, None) => NextStep::Done { mfa: MfaDone::NotRequired },
        (FirstFactor::Password, Some(_)) if !has_usable_method => NextStep::Register,
        (FirstFactor::Password, Some(_)) if device_remembered => NextStep::Done { mfa: MfaDone::ByRememberedDevice },
        (FirstFactor::Password, Some(_)) => NextStep::Challenge,
    }
}

/// Smart-lockout counters for one user (kept in the database, so every node sees them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lockout {
    /// Failed attempts since the last success or lockout.
    pub failures: i64,
    /// Lockouts so far; each doubles the next one's length.
    pub lockouts: i64,
    /// Locked until this time, if locked.
    pub locked_until: Option<OffsetDateTime>,
}

/// The longest single lockout.
const MAX_LOCKOUT: Duration = Duration::days(1);

impl Lockout {
    /// `Some(until)` while locked at `now`.
    pub fn locked_at(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.locked_until.filter(|until| *until > now)
    }

    /// The counters after a failed attempt: the `threshold`-th failure locks the account for
    /// `base` doubled per earlier lockout, capped at a day.
    pub fn after_failure(self, threshold: i64, base: Duration, now: OffsetDateTime) -> Lockout {
        let failures = self.failures + 1;
        if failures < threshold {
            return Lockout { failures, ..self };
        }
        let factor = 1_i32 << self.lockouts.clamp(0, 16);
        let length = (base * factor).min(MAX_LOCKOUT);
        Lockout { failures: 0, lockouts: self.lockouts + 1, locked_until: Some(now + length) }
    }

    /// The counters after a success: failures are forgotten; the lockout count stays, so an
    /// attacker who guesses slowly still meets growing lockouts until a day passes quietly.
    pub fn after_success(self, now: OffsetDateTime) -> Lockout {
        let quiet = self.locked_until.is_none_or(|until| now - until > MAX_LOCKOUT);
        Lockout { failures: 0, lockouts: if quiet { 0 } else { self.lockouts }, locked_until: None }
    }

    /// Reserves an attempt before its secret is checked: the attempt counts as a failure until
    /// it proves right, so at most `threshold` attempts per lockout window ever reach the hasher,
    /// however many arrive at once. The `threshold`-th reservation locks the account for every
    /// later attempt (it still has its own secret checked). `Err(until)` while locked: the
    /// attempt is refused without checking its secret, so the answer cannot depend on it.
    pub fn reserve(self, threshold: i64, base: Duration, now: OffsetDateTime) -> Result<Reservation, OffsetDateTime> {
        match self.locked_at(now) {
            Some(until) => Err(until),
            None => Ok(Reservation { before: self, after: self.after_failure(threshold, base, now) }),
        }
    }
}

/// An attempt counted before its secret was checked ([`Lockout::reserve`]): the counters before
/// and after the reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub before: Lockout,
    pub after: Lockout,
}

impl Reservation {
    /// Whether this reservation locked the account (it was the threshold-th attempt).
    pub fn locked_the_account(&self) -> bool {
        self.after.lockouts > self.before.lockouts
    }

    /// The counters after this attempt's secret proved right, given the counters `current` as
    /// they are now (read under the row lock). `None` when another attempt locked the account
    /// while this one was checked: the success does not count and the attempt is answered like a
    /// wrong one. A lock this attempt set itself is undone: the threshold-th guess may be right.
    pub fn succeed(&self, current: Lockout, now: OffsetDateTime) -> Option<Lockout> {
        match current.locked_at(now) {
            None => Some(current.after_success(now)),
            Some(_) if self.locked_the_account() && current.lockouts == self.after.lockouts => {
                Some(self.before.after_success(now))
            }
            Some(_) => None,
        }
    }
}

/// Why a browser session no longer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    Expired,
    /// Issued before the user's `signInSessionsValidFromDateTime` (revoked sessions).
    Revoked,
    Disabled,
    /// Obtained with a Temporary Access Pass that has since expired.
    PassExpired,
}

impl SessionEnd {
    /// The sign-in log's error code for a session ended this way; `None` for one that simply
    /// expired, which is not logged.
    pub fn code(self) -> Option<i32> {
        match self {
            SessionEnd::Revoked | SessionEnd::PassExpired => Some(codes::SESSION_REVOKED),
            SessionEnd::Disabled => Some(codes::DISABLED),
            SessionEnd::Expired => None,
        }
    }
}

/// Whether the account still lets a session, or a sign-in under way, that began at `began` go
/// on: not once it is disabled, nor once its sessions were revoked after `began`.
pub fn account_allows(
    began: OffsetDateTime,
    sessions_valid_from: OffsetDateTime,
    account_enabled: bool,
) -> Result<(), SessionEnd> {
    if !account_enabled {
        return Err(SessionEnd::Disabled);
    }
    // "Issued before": a session from the very instant of the cut-off (a user created and
    // signed in within one microsecond) still counts.
    if began < sessions_valid_from {
        return Err(SessionEnd::Revoked);
    }
    Ok(())
}

/// The facts about a signed-in browser session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionFacts {
    pub authenticated_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub pass_expires_at: Option<OffsetDateTime>,
}

/// Whether a session still counts at `now` for a user with these properties.
pub fn session_valid(
    session: &SessionFacts,
    sessions_valid_from: OffsetDateTime,
    account_enabled: bool,
    now: OffsetDateTime,
) -> Result<(), SessionEnd> {
    account_allows(session.authenticated_at, sessions_valid_from, account_enabled)?;
    if session.pass_expires_at.is_some_and(|until| until <= now) {
        return Err(SessionEnd::PassExpired);
    }
    if session.expires_at <= now {
        return Err(SessionEnd::Expired);
    }
    Ok(())
}

/// A remembered-device cookie's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RememberedDevice {
    pub user_id: ObjectId,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Whether a remembered device lets `user` skip MFA: only for that user, only until it expires,
/// only if issued after the user's remembered-devices cut-off ("Revoke MFA sessions").
pub fn device_honoured(
    device: &RememberedDevice,
    user: &ObjectId,
    not_before: Option<OffsetDateTime>,
    remember_days: i64,
    now: OffsetDateTime,
) -> bool {
    remember_days > 0
        && device.user_id == *user
        && device.expires_at > now
        // A policy shortened since the device was remembered applies at once.
        && device.issued_at + Duration::days(remember_days) > now
        && not_before.is_none_or(|cut| device.issued_at > cut)
}

/// Entra's Temporary Access Pass policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapPolicy {
    pub is_enabled: bool,
    pub default_lifetime_minutes: i64,
    pub default_length: i64,
    pub minimum_lifetime_minutes: i64,
    pub maximum_lifetime_minutes: i64,
    pub is_usable_once: bool,
}

impl Default for TapPolicy {
    fn default() -> TapPolicy {
        TapPolicy {
            is_enabled: true,
            default_lifetime_minutes: 60,
            default_length: 8,
            minimum_lifetime_minutes: 60,
            maximum_lifetime_minutes: 480,
            is_usable_once: false,
        }
    }
}

impl TapPolicy {
    /// Checks Entra's Temporary Access Pass policy's bounds: lifetimes 10–43,200 minutes with minimum ≤ default ≤
    /// maximum, length 8–48.
    pub fn validate(&self) -> Result<(), String> {
        let lifetimes = [
            ("minimumLifetimeInMinutes", self.minimum_lifetime_minutes),
            ("maximumLifetimeInMinutes", self.maximum_lifetime_minutes),
            ("defaultLifetimeInMinutes", self.default_lifetime_minutes),
        ];
        for (name, value) in lifetimes {
            if !(10..=43_200).contains(&value) {
                return Err(format!("{name} must be between 10 and 43200."));
            }
        }
        if self.minimum_lifetime_minutes > self.maximum_lifetime_minutes {
            return Err("minimumLifetimeInMinutes must not exceed maximumLifetimeInMinutes.".into());
        }
        if !(self.minimum_lifetime_minutes..=self.maximum_lifetime_minutes).contains(&self.default_lifetime_minutes) {
            return Err(
                "defaultLifetimeInMinutes must lie between minimumLifetimeInMinutes and maximumLifetimeInMinutes."
                    .into(),
            );
        }
        if !(8..=48).contains(&self.default_length) {
            return Err("defaultLength must be between 8 and 48.".into());
        }
        Ok(())
    }
}

/// Graph's `methodUsabilityReason` for a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapUsability {
    EnabledByPolicy,
    DisabledByPolicy,
    Expired,
    NotYetValid,
    OneTimeUsed,
}

impl TapUsability {
    pub fn as_str(self) -> &'static str {
        match self {
            TapUsability::EnabledByPolicy => "EnabledByPolicy",
            TapUsability::DisabledByPolicy => "DisabledByPolicy",
            TapUsability::Expired => "Expired",
            TapUsability::NotYetValid => "NotYetValid",
            TapUsability::OneTimeUsed => "OneTimeUsed",
        }
    }

    pub fn is_usable(self) -> bool {
        self == TapUsability::EnabledByPolicy
    }
}

/// Whether a pass can sign in at `now`.
pub fn tap_usability(
    policy_enabled: bool,
    start: OffsetDateTime,
    lifetime_minutes: i64,
    is_usable_once: bool,
    used: bool,
    now: OffsetDateTime,
) -> TapUsability {
    if !policy_enabled {
        TapUsability::DisabledByPolicy
    } else if is_usable_once && used {
        TapUsability::OneTimeUsed
    } else if now < start {
        TapUsability::NotYetValid
    } else if now >= start + Duration::minutes(lifetime_minutes) {
        TapUsability::Expired
    } else {
        TapUsability::EnabledByPolicy
    }
}

/// One step of a sign-in, as `authenticationDetails` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationDetail {
    pub at: OffsetDateTime,
    /// "Password", "Temporary Access Pass", "Software OATH token", "Previously satisfied", …
    pub method: String,
    pub succeeded: bool,
    pub result_detail: String,
}

/// One sign-in attempt, in the shape of Graph's `signIn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInRecord {
    pub id: String,
    pub tenant_id: ObjectId,
    pub created: OffsetDateTime,
    pub user_id: Option<ObjectId>,
    pub user_principal_name: String,
    pub user_display_name: Option<String>,
    pub app_id: String,
    pub app_display_name: String,
    pub ip_address: Option<String>,
    pub correlation_id: String,
    pub error_code: i32,
    pub failure_reason: Option<String>,
    pub is_multi_factor: bool,
    pub requirement_policies: Vec<String>,
    pub details: Vec<AuthenticationDetail>,
    /// Entra's `clientAppUsed`: `Browser` for the sign-in pages, `Mobile Apps and Desktop clients`
    /// for the token endpoint's grants.
    pub client_app_used: String,
    /// `false` for sign-ins without the user at the keyboard: refresh-token redemptions,
    /// device-code completions and the password grant.
    pub is_interactive: bool,
    /// An application's own sign-in (the client-credentials grant): its service principal's id.
    /// The user fields are then empty and `app_*` name the application.
    pub service_principal_id: Option<String>,
    /// Graph's `authenticationProtocol` (beta): `none`, `ropc` or `deviceCode`.
    pub protocol: String,
    /// Graph's `clientCredentialType` (beta): `none`, `clientSecret` or `clientAssertion`.
    pub client_credential: String,
    /// Graph's `incomingTokenType` (beta): `none` or `refreshToken`.
    pub incoming_token: String,
    /// The client's `User-Agent`, at most [`USER_AGENT_MAX`] characters.
    pub user_agent: Option<String>,
}

/// A user's latest sign-ins, Graph's `signInActivity`: each the time and the sign-in's id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignInActivity {
    /// The last interactive sign-in, successful or not.
    pub last_sign_in: Option<(OffsetDateTime, String)>,
    /// The last non-interactive sign-in (a refresh token redeemed, the password grant, a device
    /// code completed), successful or not.
    pub last_non_interactive: Option<(OffsetDateTime, String)>,
    /// The last successful sign-in of either kind.
    pub last_success: Option<(OffsetDateTime, String)>,
}

impl SignInActivity {
    /// What `record` changes: the slots it fills (the others `None`).
    pub fn of(record: &SignInRecord) -> Self {
        let this = Some((record.created, record.id.clone()));
        let kind = record.event_type();
        Self {
            last_sign_in: this.clone().filter(|_| kind == SignInEventType::InteractiveUser),
            last_non_interactive: this.clone().filter(|_| kind == SignInEventType::NonInteractiveUser),
            last_success: this.filter(|_| record.error_code == 0),
        }
    }
}

/// A second method a user may prefer (Graph's `userDefaultAuthenticationMethodType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondaryMethod {
    Push,
    Oath,
    VoiceMobile,
    VoiceAlternateMobile,
    VoiceOffice,
    Sms,
}

impl SecondaryMethod {
    pub const ALL: [SecondaryMethod; 6] =
        [Self::Push, Self::Oath, Self::VoiceMobile, Self::VoiceAlternateMobile, Self::VoiceOffice, Self::Sms];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Oath => "oath",
            Self::VoiceMobile => "voiceMobile",
            Self::VoiceAlternateMobile => "voiceAlternateMobile",
            Self::VoiceOffice => "voiceOffice",
            Self::Sms => "sms",
        }
    }

    /// Graph's value, in any case.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|it| it.as_str().eq_ignore_ascii_case(raw))
    }

    /// Whether a user with these methods may prefer it: the method must be registered (an
    /// authenticator app for `oath`, the phone of that type for texts and calls); `push` needs
    /// Microsoft Authenticator, which Keyward does not register.
    pub fn check_registered(self, has_authenticator_app: bool, phone_types: &[&str]) -> Result<(), String> {
        let (is_registered, what) = match self {
            Self::Oath => (has_authenticator_app, "an authenticator app"),
            Self::Sms | Self::VoiceMobile => (phone_types.contains(&"mobile"), "a mobile phone"),
            Self::VoiceAlternateMobile => (phone_types.contains(&"alternateMobile"), "an alternate mobile phone"),
            Self::VoiceOffice => (phone_types.contains(&"office"), "an office phone"),
            Self::Push => (false, "Microsoft Authenticator, which Keyward does not register,"),
        };
        if is_registered {
            Ok(())
        } else {
            Err(format!("'{}' needs {what} registered for the user: register it first.", self.as_str()))
        }
    }
}

/// A user's sign-in preferences (beta's `signInPreferences`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignInPreferences {
    /// `userPreferredMethodForSecondaryAuthentication`.
    pub preferred: Option<SecondaryMethod>,
    /// `isSystemPreferredAuthenticationMethodEnabled`.
    pub is_system_preferred: bool,
}

impl SignInPreferences {
    /// Whether the second-factor page offers a passkey before the authenticator-app code: a
    /// user's own preference for `oath` puts the code first, unless system-preferred MFA is on,
    /// which (as Entra's) asks for the strongest method the user has, a passkey. Without a
    /// preference Keyward can prompt for, the passkey comes first too.
    pub fn passkey_first(&self) -> bool {
        self.is_system_preferred || self.preferred != Some(SecondaryMethod::Oath)
    }
}

/// The longest `User-Agent` kept in the sign-in log.
pub const USER_AGENT_MAX: usize = 512;

/// Graph's `signInEventTypes` (beta): what kind of sign-in a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignInEventType {
    InteractiveUser,
    NonInteractiveUser,
    ServicePrincipal,
}

impl SignInEventType {
    pub const ALL: [SignInEventType; 3] = [Self::InteractiveUser, Self::NonInteractiveUser, Self::ServicePrincipal];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InteractiveUser => "interactiveUser",
            Self::NonInteractiveUser => "nonInteractiveUser",
            Self::ServicePrincipal => "servicePrincipal",
        }
    }

    /// Graph's value, in any case.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|it| it.as_str().eq_ignore_ascii_case(raw))
    }
}

impl SignInRecord {
    /// A successful interactive browser sign-in of `user_principal_name` to `app` (its id and
    /// display name), with nothing else known: the starting point that writers fill in.
    pub fn browser(
        id: String,
        tenant_id: ObjectId,
        created: OffsetDateTime,
        user_principal_name: String,
        app: (&str, &str),
    ) -> SignInRecord {
        SignInRecord {
            id,
            tenant_id,
            created,
            user_id: None,
            user_principal_name,
            user_display_name: None,
            app_id: app.0.to_owned(),
            app_display_name: app.1.to_owned(),
            ip_address: None,
            correlation_id: String::new(),
            error_code: 0,
            failure_reason: None,
            is_multi_factor: false,
            requirement_policies: Vec::new(),
            details: Vec::new(),
            client_app_used: CLIENT_APP_BROWSER.into(),
            is_interactive: true,
            service_principal_id: None,
            protocol: "none".into(),
            client_credential: "none".into(),
            incoming_token: "none".into(),
            user_agent: None,
        }
    }

    /// The record's `signInEventTypes` entry.
    pub fn event_type(&self) -> SignInEventType {
        if self.service_principal_id.is_some() {
            SignInEventType::ServicePrincipal
        } else if self.is_interactive {
            SignInEventType::InteractiveUser
        } else {
            SignInEventType::NonInteractiveUser
        }
    }
}

/// Graph's `deviceDetail.browser` and `deviceDetail.operatingSystem`, read from a `User-Agent` the
/// way Entra names them (`Chrome 120.0.0`, `Windows10`); empty where the agent does not say.
pub fn device_detail(user_agent: &str) -> (String, String) {
    let version_after = |marker: &str| {
        user_agent
            .split(marker)
            .nth(1)
            .map(|rest| rest.split(|c: char| !(c.is_ascii_digit() || c == '.')).next().unwrap_or_default().to_owned())
    };
    let browser = [("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Version/", "Safari")]
        .into_iter()
        .find_map(|(marker, name)| {
            let is_safari = name != "Safari" || user_agent.contains("Safari/");
            version_after(marker).filter(|_| is_safari).map(|version| format!("{name} {version}").trim().to_owned())
        })
        .unwrap_or_default();
    let os = if user_agent.contains("Windows NT 10") {
        "Windows10"
    } else if user_agent.contains("Windows") {
        "Windows"
    } else if user_agent.contains("Android") {
        "Android"
    } else if user_agent.contains("iPhone") || user_agent.contains("iPad") {
        "Ios"
    } else if user_agent.contains("Mac OS X") {
        "MacOs"
    } else if user_agent.contains("Linux") {
        "Linux"
    } else {
        ""
    };
    (browser, os.to_owned())
}

/// `clientAppUsed` of the sign-in pages.
pub const CLIENT_APP_BROWSER: &str = "Browser";
/// `clientAppUsed` of sign-ins through the token endpoint.
pub const CLIENT_APP_DESKTOP: &str = "Mobile Apps and Desktop clients";

/// Entra's failure reason text for an error code.
pub fn failure_reason(code: i32) -> Option<&'static str> {
    Some(match code {
        codes::SUCCESS => return None,
        codes::INVALID_CREDENTIALS => "Error validating credentials due to invalid username or password.",
        codes::USER_NOT_FOUND => "The user account does not exist in the tenant directory.",
        codes::LOCKED => {
            "Account is locked because user tried to sign in too many times with an incorrect user ID or password."
        }
        codes::DISABLED => "User account is disabled. The account has been disabled by an administrator.",
        codes::PASSWORD_EXPIRED => "The password is expired. The user must change it.",
        codes::MFA_REQUIRED => {
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access this resource."
        }
        codes::MFA_REGISTRATION_REQUIRED => "User must enroll for second factor authentication.",
        codes::MFA_FAILED => "Authentication failed during strong authentication request.",
        codes::SESSION_REVOKED => {
            "The provided grant has expired due to it being revoked, a fresh auth token is needed."
        }
        _ => "Other.",
    })
}

/// Where a sign-in stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Username,
    Password,
    ChangePassword,
    Mfa,
    MoreInfo,
    /// The registration campaign's "set up an authenticator app" prompt.
    Campaign,
    RegisterTotp,
    /// Creating a passkey (at the registration interrupt or from the account page).
    RegisterPasskey,
    Done,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Username => "username",
            Stage::Password => "password",
            Stage::ChangePassword => "change_password",
            Stage::Mfa => "mfa",
            Stage::MoreInfo => "more_info",
            Stage::Campaign => "campaign",
            Stage::RegisterTotp => "register_totp",
            Stage::RegisterPasskey => "register_passkey",
            Stage::Done => "done",
        }
    }

    /// A stored stage; anything unknown starts the sign-in again.
    pub fn parse(text: &str) -> Stage {
        match text {
            "password" => Stage::Password,
            "change_password" => Stage::ChangePassword,
            "mfa" => Stage::Mfa,
            "more_info" => Stage::MoreInfo,
            "campaign" => Stage::Campaign,
            "register_totp" => Stage::RegisterTotp,
            "register_passkey" => Stage::RegisterPasskey,
            "done" => Stage::Done,
            _ => Stage::Username,
        }
    }
}

/// One way a user proved who they are, as an OpenID Connect `amr` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethodRef {
    /// A password.
    Password,
    /// A Temporary Access Pass (Keyward's value; it counts as multi-factor, as in Entra).
    TemporaryAccessPass,
    /// An authenticator-app code.
    Otp,
    /// More than one factor.
    Mfa,
    /// A passkey (FIDO2 / WebAuthn credential).
    Fido,
    /// Proof of a hardware-bound key (a device-bound passkey).
    Hwk,
    /// Proof of a software-held key (a synced passkey).
    Swk,
}

impl AuthMethodRef {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethodRef::Password => "pwd",
            AuthMethodRef::TemporaryAccessPass => "tap",
            AuthMethodRef::Otp => "otp",
            AuthMethodRef::Mfa => "mfa",
            AuthMethodRef::Fido => "fido",
            AuthMethodRef::Hwk => "hwk",
            AuthMethodRef::Swk => "swk",
        }
    }

    fn parse(text: &str) -> Option<AuthMethodRef> {
        [
            AuthMethodRef::Password,
            AuthMethodRef::TemporaryAccessPass,
            AuthMethodRef::Otp,
            AuthMethodRef::Mfa,
            AuthMethodRef::Fido,
            AuthMethodRef::Hwk,
            AuthMethodRef::Swk,
        ]
        .into_iter()
        .find(|it| it.as_str() == text)
    }
}

/// How a sign-in authenticated: its `amr` values in the order they were earned, each once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Amr(Vec<AuthMethodRef>);

impl Amr {
    pub fn of(methods: &[AuthMethodRef]) -> Amr {
        let mut amr = Amr::default();
        for method in methods {
            amr.push(*method);
        }
        amr
    }

    /// The stored form: values separated by spaces. Unknown values are dropped.
    pub fn parse(stored: &str) -> Amr {
        Amr::of(&stored.split_whitespace().filter_map(AuthMethodRef::parse).collect::<Vec<_>>())
    }

    pub fn to_stored(&self) -> String {
        self.0.iter().map(|it| it.as_str()).collect::<Vec<_>>().join(" ")
    }

    /// Adds a method (once).
    pub fn push(&mut self, method: AuthMethodRef) {
        if !self.0.contains(&method) {
            self.0.push(method);
        }
    }

    pub fn contains(&self, method: AuthMethodRef) -> bool {
        self.0.contains(&method)
    }

    /// Whether the sign-in met multi-factor authentication.
    pub fn is_multi_factor(&self) -> bool {
        self.contains(AuthMethodRef::Mfa)
    }

    /// The values as a token's `amr` claim carries them.
    pub fn values(&self) -> Vec<String> {
        self.0.iter().map(|it| it.as_str().to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn device_detail_names_browser_and_system_as_entra_does() {
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.71 Safari/537.36";
        assert_eq!(device_detail(chrome), ("Chrome 120.0.6099.71".into(), "Windows10".into()));
        let edge =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61";
        assert_eq!(device_detail(edge), ("Edge 120.0.2210.61".into(), "Linux".into()));
        let safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Version/17.1 Mobile/15E148 Safari/604.1";
        assert_eq!(device_detail(safari), ("Safari 17.1".into(), "Ios".into()));
        assert_eq!(device_detail("python-requests/2.32.3"), (String::new(), String::new()));
        assert_eq!(SignInEventType::parse("SERVICEPRINCIPAL"), Some(SignInEventType::ServicePrincipal));
        assert_eq!(SignInEventType::parse("managedIdentity"), None);
        assert_eq!(SecondaryMethod::parse("VOICEOFFICE"), Some(SecondaryMethod::VoiceOffice));
        assert!(SecondaryMethod::Oath.check_registered(true, &[]).is_ok());
        assert!(SecondaryMethod::Oath.check_registered(false, &["mobile"]).is_err());
        assert!(SecondaryMethod::Sms.check_registered(false, &["mobile"]).is_ok());
        assert!(SecondaryMethod::VoiceOffice.check_registered(true, &["mobile"]).is_err());
        assert!(SecondaryMethod::Push.check_registered(true, &["mobile", "office"]).is_err());
    }

    #[test]
    fn amr_keeps_each_method_once_in_order_and_round_trips() {
        let mut amr = Amr::of(&[AuthMethodRef::Password]);
        assert!(!amr.is_multi_factor());
        amr.push(AuthMethodRef::Otp);
        amr.push(AuthMethodRef::Mfa);
        amr.push(AuthMethodRef::Mfa);
        assert_eq!(amr.to_stored(), "pwd otp mfa");
        assert!(amr.is_multi_factor());
        assert_eq!(Amr::parse("pwd otp mfa"), amr);
        assert_eq!(Amr::parse("  tap  bogus mfa "), Amr::of(&[AuthMethodRef::TemporaryAccessPass, AuthMethodRef::Mfa]));
        assert_eq!(Amr::parse("").values(), Vec::<String>::new());
    }

    const NOW: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

    #[test]
    fn mfa_is_required_by_per_user_state_privileged_roles_or_tenant() {
        let policy = SignInPolicy::default();
        assert_eq!(mfa_requirement(&policy, PerUserMfaState::Disabled, false), None);
        assert_eq!(mfa_requirement(&policy, PerUserMfaState::Enabled, false), Some(MfaReason::PerUser));
        assert_eq!(mfa_requirement(&policy, PerUserMfaState::Enforced, true), Some(MfaReason::PerUser));
        assert_eq!(mfa_requirement(&policy, PerUserMfaState::Disabled, true), Some(MfaReason::PrivilegedRole));
        let relaxed = SignInPolicy { mfa_for_privileged_roles: false, ..SignInPolicy::default() };
        assert_eq!(mfa_requirement(&relaxed, PerUserMfaState::Disabled, true), None);
        let strict = SignInPolicy { mfa_for_everyone: true, ..relaxed };
        assert_eq!(mfa_requirement(&strict, PerUserMfaState::Disabled, false), Some(MfaReason::Everyone));
        assert_eq!(PerUserMfaState::Enabled.after_registration(), PerUserMfaState::Enforced);
        assert_eq!(PerUserMfaState::Disabled.after_registration(), PerUserMfaState::Disabled);
    }

    #[test]
    fn privileged_roles_are_built_in_privileged_ones_or_custom_roles_with_privileged_actions() {
        use crate::authz::custom::CustomRole;
        use crate::authz::roles;
        assert!(holds_privileged_role([roles::GLOBAL_ADMINISTRATOR].into_iter(), &[]));
        assert!(!holds_privileged_role([roles::AUTHENTICATION_POLICY_ADMINISTRATOR].into_iter(), &[]));
        let custom = |actions: &[&str], is_enabled: bool| CustomRole {
            id: ObjectId::from_bytes([9; 16]),
            tenant_id: ObjectId::from_bytes([1; 16]),
            display_name: "Desk".into(),
            description: None,
            is_enabled,
            template_id: String::new(),
            version: "1".into(),
            allowed_resource_actions: actions.iter().map(|it| (*it).to_owned()).collect(),
            created: NOW,
        };
        let id = ObjectId::from_bytes([9; 16]).to_string();
        let reset = custom(&["microsoft.directory/users/password/update"], true);
        assert!(holds_privileged_role([id.as_str()].into_iter(), std::slice::from_ref(&reset)));
        let read = custom(&["microsoft.directory/users/standard/read"], true);
        assert!(!holds_privileged_role([id.as_str()].into_iter(), &[read]));
        let disabled = custom(&["microsoft.directory/users/password/update"], false);
        assert!(!holds_privileged_role([id.as_str()].into_iter(), &[disabled]));
    }

    #[test]
    fn after_a_first_factor_the_user_is_done_challenged_or_interrupted() {
        let req = Some(MfaReason::PerUser);
        use FirstFactor::*;
        assert_eq!(after_first_factor(Password, None, false, false), NextStep::Done { mfa: MfaDone::NotRequired });
        assert_eq!(after_first_factor(Password, req, true, false), NextStep::Challenge);
        assert_eq!(after_first_factor(Password, req, false, false), NextStep::Register);
        // A remembered device never stands in for a method the user no longer has.
        assert_eq!(after_first_factor(Password, req, false, true), NextStep::Register);
        assert_eq!(after_first_factor(Password, req, true, true), NextStep::Done { mfa: MfaDone::ByRememberedDevice });
        assert_eq!(after_first_factor(TemporaryAccessPass, req, false, false), NextStep::Register);
        assert_eq!(
            after_first_factor(TemporaryAccessPass, req, true, false),
            NextStep::Done { mfa: MfaDone::ByTemporaryAccessPass }
        );
        assert_eq!(
            after_first_factor(TemporaryAccessPass, None, false, false),
            NextStep::Done { mfa: MfaDone::ByTemporaryAccessPass }
        );
    }

    #[test]
    fn lockout_locks_at_the_threshold_and_grows() {
        let base = Duration::seconds(60);
        let mut state = Lockout::default();
        for _ in 0..9 {
            state = state.after_failure(10, base, NOW);
            assert_eq!(state.locked_at(NOW), None);
        }
        state = state.after_failure(10, base, NOW);
        assert_eq!(state.locked_at(NOW), Some(NOW + base));
        assert_eq!(state.locked_at(NOW + base), None);
        let later = NOW + base;
        for _ in 0..10 {
            state = state.after_failure(10, base, later);
        }
        assert_eq!(state.locked_at(later), Some(later + Duration::seconds(120)));
        let mut many = Lockout { lockouts: 40, ..Lockout::default() };
        many = many.after_failure(1, base, NOW);
        assert_eq!(many.locked_until, Some(NOW + Duration::days(1)));
        let ok = state.after_success(later + Duration::seconds(121));
        assert_eq!((ok.failures, ok.lockouts, ok.locked_until), (0, 2, None));
        let quiet = state.after_success(later + Duration::days(2));
        assert_eq!(quiet.lockouts, 0);
    }

    #[test]
    fn reservations_let_at_most_the_threshold_reach_the_check() {
        let base = Duration::seconds(60);
        // Thirty attempts arrive at once: each is reserved before any is checked.
        let mut state = Lockout::default();
        let mut granted = Vec::new();
        for _ in 0..30 {
            match state.reserve(3, base, NOW) {
                Ok(reservation) => {
                    state = reservation.after;
                    granted.push(reservation);
                }
                Err(until) => assert_eq!(until, NOW + base),
            }
        }
        assert_eq!(granted.len(), 3, "only the threshold is checked");
        assert!(!granted[0].locked_the_account() && granted[2].locked_the_account());
        // An early attempt that proves right after the third locked the account does not count.
        assert_eq!(granted[0].succeed(state, NOW), None);
        // The third attempt locked the account itself: if its guess is right, it gets in.
        let ok = granted[2].succeed(state, NOW).expect("own lock undone");
        assert_eq!((ok.failures, ok.locked_until), (0, None));
        assert_eq!(ok.lockouts, 0, "a quiet account's lockout count stays at zero");
        // Sequential attempts behave as before: two wrong, then a right one.
        let first = Lockout::default().reserve(3, base, NOW).expect("open");
        let second = first.after.reserve(3, base, NOW).expect("open");
        let third = second.after.reserve(3, base, NOW).expect("open");
        assert!(third.locked_the_account());
        assert_eq!(third.succeed(third.after, NOW).map(|it| it.failures), Some(0));
        // Once its lock expired and another attempt locked again, the old lock is not its own.
        let later = NOW + Duration::seconds(61);
        let relocked = Lockout { failures: 0, lockouts: third.after.lockouts + 1, locked_until: Some(later + base) };
        assert_eq!(third.succeed(relocked, later), None);
    }

    #[test]
    fn sessions_end_on_revocation_disabling_expiry_and_pass_expiry() {
        let facts = SessionFacts { authenticated_at: NOW, expires_at: NOW + Duration::hours(8), pass_expires_at: None };
        let before = NOW - Duration::minutes(1);
        assert_eq!(session_valid(&facts, before, true, NOW), Ok(()));
        assert_eq!(session_valid(&facts, NOW, true, NOW), Ok(()));
        assert_eq!(session_valid(&facts, NOW + Duration::microseconds(1), true, NOW), Err(SessionEnd::Revoked));
        assert_eq!(session_valid(&facts, before, false, NOW), Err(SessionEnd::Disabled));
        assert_eq!(session_valid(&facts, before, true, NOW + Duration::hours(8)), Err(SessionEnd::Expired));
        let tap = SessionFacts { pass_expires_at: Some(NOW + Duration::hours(1)), ..facts };
        assert_eq!(session_valid(&tap, before, true, NOW + Duration::minutes(59)), Ok(()));
        assert_eq!(session_valid(&tap, before, true, NOW + Duration::hours(1)), Err(SessionEnd::PassExpired));
    }

    #[test]
    fn a_session_ended_by_the_account_is_logged_with_its_code() {
        let later = NOW + Duration::microseconds(1);
        assert_eq!(account_allows(NOW, NOW, true), Ok(()));
        assert_eq!(account_allows(NOW, later, true).map_err(SessionEnd::code), Err(Some(codes::SESSION_REVOKED)));
        assert_eq!(account_allows(later, NOW, false).map_err(SessionEnd::code), Err(Some(codes::DISABLED)));
        assert_eq!(SessionEnd::PassExpired.code(), Some(codes::SESSION_REVOKED));
        assert_eq!(SessionEnd::Expired.code(), None);
    }

    #[test]
    fn remembered_devices_hold_only_for_their_user_until_expiry_and_after_the_cut_off() {
        let user = ObjectId::from_bytes([1; 16]);
        let other = ObjectId::from_bytes([2; 16]);
        let device = RememberedDevice { user_id: user.clone(), issued_at: NOW, expires_at: NOW + Duration::days(14) };
        assert!(device_honoured(&device, &user, None, 14, NOW));
        assert!(!device_honoured(&device, &user, None, 0, NOW), "the setting is off");
        assert!(!device_honoured(&device, &other, None, 14, NOW));
        assert!(!device_honoured(&device, &user, None, 14, NOW + Duration::days(14)));
        assert!(!device_honoured(&device, &user, Some(NOW), 14, NOW), "revoked MFA sessions");
        assert!(device_honoured(&device, &user, Some(NOW - Duration::seconds(1)), 14, NOW));
        assert!(!device_honoured(&device, &user, None, 7, NOW + Duration::days(8)), "the policy was shortened");
        assert!(device_honoured(&device, &user, None, 7, NOW + Duration::days(6)));
    }

    #[test]
    fn tap_policy_bounds_and_usability() {
        assert_eq!(TapPolicy::default().validate(), Ok(()));
        let bad = [
            TapPolicy { minimum_lifetime_minutes: 9, ..TapPolicy::default() },
            TapPolicy { maximum_lifetime_minutes: 43_201, ..TapPolicy::default() },
            TapPolicy { default_lifetime_minutes: 500, ..TapPolicy::default() },
            TapPolicy { minimum_lifetime_minutes: 600, ..TapPolicy::default() },
            TapPolicy { default_length: 7, ..TapPolicy::default() },
            TapPolicy { default_length: 49, ..TapPolicy::default() },
        ];
        for policy in bad {
            assert!(policy.validate().is_err(), "{policy:?}");
        }
        let start = NOW;
        assert_eq!(tap_usability(true, start, 60, false, false, NOW), TapUsability::EnabledByPolicy);
        assert_eq!(tap_usability(false, start, 60, false, false, NOW), TapUsability::DisabledByPolicy);
        assert_eq!(tap_usability(true, start, 60, true, true, NOW), TapUsability::OneTimeUsed);
        assert_eq!(tap_usability(true, start, 60, false, true, NOW), TapUsability::EnabledByPolicy);
        assert_eq!(tap_usability(true, start, 60, false, false, NOW - Duration::seconds(1)), TapUsability::NotYetValid);
        assert_eq!(tap_usability(true, start, 60, false, false, NOW + Duration::hours(1)), TapUsability::Expired);
    }

    #[test]
    fn sign_in_policy_bounds() {
        assert_eq!(SignInPolicy::default().validate(), Ok(()));
        assert!(SignInPolicy { remember_mfa_days: 366, ..SignInPolicy::default() }.validate().is_err());
        assert!(SignInPolicy { lockout_threshold: 0, ..SignInPolicy::default() }.validate().is_err());
        assert!(SignInPolicy { lockout_seconds: 1, ..SignInPolicy::default() }.validate().is_err());
    }
}
