//! The authentication methods registration report (Graph's `userRegistrationDetails`,
//! `usersRegisteredByMethod` and `usersRegisteredByFeature`): what each enabled user has
//! registered, what that makes them capable of in Keyward, and the query options on the list.
//!
//! Keyward computes the report live from the directory (Entra refreshes its copy periodically),
//! so `lastUpdatedDateTime` is the time of the request.

use time::Date;

use crate::audit::{Activity, AuditRecord, AuditResult};
use crate::audit_query::{TextMatch, log_filter, lowered, set, unsupported_clause};
use crate::odata::{CmpOp, Expr, Literal, StrFunc};
use crate::query::{QueryError, RawQuery, parse_top};

/// What one enabled user has registered, as the store reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisteredMethods {
    pub password: bool,
    pub software_oath: bool,
    pub mobile_phone: bool,
    pub alternate_mobile_phone: bool,
    pub office_phone: bool,
    pub email: bool,
    /// A passkey that is not backup eligible (a security key, a device's platform authenticator).
    pub passkey_device_bound: bool,
    /// A synced passkey (backup eligible).
    pub passkey_synced: bool,
    /// Holds a directory role (any, at any scope, directly or through a group).
    pub is_admin: bool,
    /// A guest (`userType` `Guest`) rather than a member.
    pub is_guest: bool,
}

/// Whether a user has a method.
type Has = fn(&RegisteredMethods) -> bool;

/// A `methodsRegistered` value Keyward can report, and whether a user has it.
pub const METHODS: [(&str, Has); 7] = [
    ("softwareOneTimePasscode", |it| it.software_oath),
    ("passKeyDeviceBound", |it| it.passkey_device_bound),
    ("passKeySynced", |it| it.passkey_synced),
    ("mobilePhone", |it| it.mobile_phone),
    ("alternateMobilePhone", |it| it.alternate_mobile_phone),
    ("officePhone", |it| it.office_phone),
    ("email", |it| it.email),
];

impl RegisteredMethods {
    /// `methodsRegistered`, in a fixed order (the password is not listed, as in Entra).
    pub fn methods_registered(&self) -> Vec<&'static str> {
        METHODS.iter().filter(|(_, has)| has(self)).map(|(name, _)| *name).collect()
    }

    /// A strong second factor is registered: an authenticator app, a phone or a passkey
    /// (Entra's meaning).
    pub fn is_mfa_registered(&self) -> bool {
        self.software_oath
            || self.mobile_phone
            || self.alternate_mobile_phone
            || self.office_phone
            || self.has_passkey()
    }

    /// Registered with a second factor Keyward can prompt for at sign-in: an authenticator app or
    /// a passkey. (Keyward sends no texts or calls, so a phone alone does not make a user MFA
    /// capable.)
    pub fn is_mfa_capable(&self) -> bool {
        self.software_oath || self.has_passkey()
    }

    /// Registered with a passkey, which signs in without a password.
    pub fn is_passwordless_capable(&self) -> bool {
        self.has_passkey()
    }

    fn has_passkey(&self) -> bool {
        self.passkey_device_bound || self.passkey_synced
    }

    /// Registered methods a self-service password reset could use (Keyward offers no
    /// self-service reset, so `isSsprEnabled` and `isSsprCapable` are always false).
    pub fn is_sspr_registered(&self) -> bool {
        self.email || self.mobile_phone || self.alternate_mobile_phone || self.office_phone
    }

    /// `userPreferredMethodForSecondaryAuthentication`.
    pub fn preferred_secondary_method(&self) -> &'static str {
        if self.software_oath { "oath" } else { "none" }
    }
}

/// The report's boolean properties a `$filter` may test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    IsAdmin,
    IsMfaRegistered,
    IsMfaCapable,
    /// A passkey is registered.
    IsPasswordlessCapable,
    IsSsprRegistered,
    /// Always false: Keyward has no self-service password reset.
    IsSsprEnabled,
    /// Always false: Keyward has no self-service password reset.
    IsSsprCapable,
    /// Always false: Keyward has no system-preferred MFA.
    IsSystemPreferredAuthenticationMethodEnabled,
    /// Not Graph's: a member or owner of a role-assignable group (protected as an administrator
    /// whether or not the group holds a role), for readers who see users without a role only.
    InRoleAssignableGroup,
}

const FLAGS: [(&str, Flag); 8] = [
    ("isAdmin", Flag::IsAdmin),
    ("isMfaRegistered", Flag::IsMfaRegistered),
    ("isMfaCapable", Flag::IsMfaCapable),
    ("isPasswordlessCapable", Flag::IsPasswordlessCapable),
    ("isSsprRegistered", Flag::IsSsprRegistered),
    ("isSsprEnabled", Flag::IsSsprEnabled),
    ("isSsprCapable", Flag::IsSsprCapable),
    ("isSystemPreferredAuthenticationMethodEnabled", Flag::IsSystemPreferredAuthenticationMethodEnabled),
];

/// The filters of a registration details query; every one must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrationFilter {
    /// Lowercased.
    pub id: Option<String>,
    /// Lowercased.
    pub user_principal_name: Option<TextMatch>,
    /// Lowercased.
    pub user_display_name: Option<TextMatch>,
    pub flags: Vec<(Flag, bool)>,
    /// `methodsRegistered/any(m: m eq '…')`, each a name from [`METHODS`] or one Keyward never
    /// reports (which then matches nobody).
    pub methods: Vec<String>,
    /// `userType eq 'guest'` (`Some(true)`) or `eq 'member'` (`Some(false)`).
    pub guests: Option<bool>,
}

/// The sort key of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationOrder {
    UserPrincipalName,
    UserDisplayName,
}

/// A validated `GET /reports/authenticationMethods/userRegistrationDetails`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationQuery {
    pub filter: RegistrationFilter,
    pub order: RegistrationOrder,
    pub descending: bool,
    pub top: usize,
    pub skiptoken: Option<String>,
}

fn unsupported(property: &str) -> QueryError {
    unsupported_clause(property, "UserRegistrationDetails")
}

fn text(value: &Literal, property: &str) -> Result<String, QueryError> {
    lowered(value, property, "UserRegistrationDetails")
}

fn text_match(func: Option<StrFunc>, value: &Literal, property: &str) -> Result<TextMatch, QueryError> {
    let value = text(value, property)?;
    Ok(if func.is_some() { TextMatch::StartsWith(value) } else { TextMatch::Equals(value) })
}

fn clause(filter: &mut RegistrationFilter, expr: &Expr) -> Result<(), QueryError> {
    match expr {
        Expr::And(left, right) => {
            clause(filter, left)?;
            clause(filter, right)
        }
        Expr::Compare { path, op: CmpOp::Eq, value } => {
            let property = path.to_string();
            let name = property.to_ascii_lowercase();
            if let Some((_, flag)) = FLAGS.iter().find(|(it, _)| it.eq_ignore_ascii_case(&name)) {
                let Literal::Bool(wanted) = value else { return Err(unsupported(&property)) };
                if filter.flags.iter().any(|(it, _)| it == flag) {
                    return Err(QueryError::Unsupported(format!("Filter on '{property}' only once.")));
                }
                filter.flags.push((*flag, *wanted));
                return Ok(());
            }
            match name.as_str() {
                "id" => set(&mut filter.id, text(value, &property)?, &property),
                "userprincipalname" => {
                    set(&mut filter.user_principal_name, text_match(None, value, &property)?, &property)
                }
                "userdisplayname" => set(&mut filter.user_display_name, text_match(None, value, &property)?, &property),
                "usertype" => match text(value, &property)?.as_str() {
                    "member" => set(&mut filter.guests, false, &property),
                    "guest" => set(&mut filter.guests, true, &property),
                    _ => Err(unsupported(&property)),
                },
                _ => Err(unsupported(&property)),
            }
        }
        Expr::Func { func: StrFunc::StartsWith, path, value } => {
            let property = path.to_string();
            let slot = match property.to_ascii_lowercase().as_str() {
                "userprincipalname" => &mut filter.user_principal_name,
                "userdisplayname" => &mut filter.user_display_name,
                _ => return Err(unsupported(&property)),
            };
            set(slot, text_match(Some(StrFunc::StartsWith), value, &property)?, &property)
        }
        Expr::Any { collection, var, body } if collection.to_string().eq_ignore_ascii_case("methodsRegistered") => {
            match body.as_ref() {
                Expr::Compare { path, op: CmpOp::Eq, value: Literal::String(method) }
                    if path.0.len() == 1 && path.0[0] == *var =>
                {
                    let known = METHODS.iter().find(|(name, _)| name.eq_ignore_ascii_case(method));
                    filter.methods.push(known.map_or_else(|| method.clone(), |(name, _)| (*name).to_owned()));
                    Ok(())
                }
                _ => Err(unsupported("methodsRegistered")),
            }
        }
        Expr::Or(..) => Err(QueryError::Unsupported("Registration details filters combine with 'and' only.".into())),
        other => Err(unsupported(&format!("{other}"))),
    }
}

/// Validates the query options of a registration details request.
pub fn plan(raw: &RawQuery) -> Result<RegistrationQuery, QueryError> {
    let mut filter = RegistrationFilter::default();
    if let Some(expr) = log_filter(raw, "userRegistrationDetails")? {
        clause(&mut filter, &expr)?;
    }
    let (order, descending) = match raw.orderby.as_deref().map(str::trim) {
        None | Some("") => (RegistrationOrder::UserPrincipalName, false),
        Some(text) => {
            let mut words = text.split_whitespace();
            let property = words.next().unwrap_or_default();
            let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(_) => return Err(QueryError::BadRequest(format!("Invalid $orderby: '{text}'."))),
            };
            if words.next().is_some() {
                return Err(QueryError::Unsupported("Order by one property only.".into()));
            }
            let order = match property.to_ascii_lowercase().as_str() {
                "userprincipalname" => RegistrationOrder::UserPrincipalName,
                "userdisplayname" => RegistrationOrder::UserDisplayName,
                _ => {
                    return Err(QueryError::Unsupported(format!(
                        "Sorting by '{property}' is not supported; sort by userPrincipalName or userDisplayName."
                    )));
                }
            };
            (order, descending)
        }
    };
    Ok(RegistrationQuery {
        filter,
        order,
        descending,
        top: parse_top(raw.top.as_deref())?,
        skiptoken: raw.skiptoken.clone(),
    })
}

/// Whose registrations a summary counts (`includedUserRoles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludedRoles {
    All,
    /// Holders of the roles Entra counts as privileged for this report (see [`PRIVILEGED_ADMIN_ROLES`]).
    PrivilegedAdmin,
    /// Holders of any directory role.
    Admin,
    /// Users without a directory role.
    User,
    /// Not Graph's (never parsed): users without a directory role who are neither members nor
    /// owners of a role-assignable group, what an Authentication Administrator reaches; named
    /// `user` in answers.
    Reachable,
}

/// `privilegedAdmin` in the summaries: Global, Security, Conditional Access, Exchange,
/// SharePoint, Helpdesk, Billing, User and Authentication Administrator.
pub const PRIVILEGED_ADMIN_ROLES: [&str; 9] = [
    "62e90394-69f5-4237-9190-012177145e10",
    "194ae4cb-b126-40b2-bd5b-6091b380977d",
    "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9",
    "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "f28a1f50-f6e7-4571-818b-6a12f2af6b6c",
    "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "b0f54661-2d74-4c50-afa3-1ec803f12efe",
    "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "c4e39bd9-1100-46d3-8c65-fb160da0071f",
];

/// Whose registrations a summary counts (`includedUserTypes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludedTypes {
    All,
    Member,
    Guest,
}

/// The parameters of `usersRegisteredByMethod(…)` / `usersRegisteredByFeature(…)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryScope {
    pub roles: IncludedRoles,
    pub types: IncludedTypes,
}

impl SummaryScope {
    pub fn roles_name(&self) -> &'static str {
        match self.roles {
            IncludedRoles::All => "all",
            IncludedRoles::PrivilegedAdmin => "privilegedAdmin",
            IncludedRoles::Admin => "admin",
            IncludedRoles::User | IncludedRoles::Reachable => "user",
        }
    }

    pub fn types_name(&self) -> &'static str {
        match self.types {
            IncludedTypes::All => "all",
            IncludedTypes::Member => "member",
            IncludedTypes::Guest => "guest",
        }
    }
}

/// Parses a summary function's parameter list, the text between the parentheses of
/// `usersRegisteredByMethod(includedUserTypes='all',includedUserRoles='admin')`: both optional,
/// in any order, names in any case; a missing one means `all`. The comma between them may be
/// missing (msgraph-sdk for Python sends none).
pub fn parse_summary_scope(parameters: &str) -> Result<SummaryScope, QueryError> {
    let mut scope = SummaryScope { roles: IncludedRoles::All, types: IncludedTypes::All };
    let (mut seen_roles, mut seen_types) = (false, false);
    let bad = || {
        QueryError::BadRequest(format!(
            "Invalid function parameters '{parameters}': use includedUserRoles='…' and includedUserTypes='…'."
        ))
    };
    let mut rest = parameters.trim_start_matches([',', ' ']);
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').ok_or_else(bad)?;
        let after = after.trim_start().strip_prefix('\'').ok_or_else(bad)?;
        let (value, after) = after.split_once('\'').ok_or_else(bad)?;
        rest = after.trim_start_matches([',', ' ']);
        let value = value.to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "includeduserroles" if !seen_roles => {
                seen_roles = true;
                scope.roles = match value.as_str() {
                    "all" => IncludedRoles::All,
                    "privilegedadmin" => IncludedRoles::PrivilegedAdmin,
                    "admin" => IncludedRoles::Admin,
                    "user" => IncludedRoles::User,
                    _ => {
                        return Err(QueryError::BadRequest(format!(
                            "Invalid includedUserRoles '{value}': use all, privilegedAdmin, admin or user."
                        )));
                    }
                };
            }
            "includedusertypes" if !seen_types => {
                seen_types = true;
                scope.types = match value.as_str() {
                    "all" => IncludedTypes::All,
                    "member" => IncludedTypes::Member,
                    "guest" => IncludedTypes::Guest,
                    _ => {
                        return Err(QueryError::BadRequest(format!(
                            "Invalid includedUserTypes '{value}': use all, member or guest."
                        )));
                    }
                };
            }
            _ => return Err(bad()),
        }
    }
    Ok(scope)
}

/// Counts for the summaries, over the users a [`SummaryScope`] includes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrationCounts {
    pub total: i64,
    pub password: i64,
    pub software_oath: i64,
    pub mobile_phone: i64,
    pub alternate_mobile_phone: i64,
    pub office_phone: i64,
    pub email: i64,
    pub mfa_registered: i64,
    pub mfa_capable: i64,
    pub sspr_registered: i64,
    pub passkey_device_bound: i64,
    pub passkey_synced: i64,
    pub passwordless_capable: i64,
}

impl RegistrationCounts {
    /// These counts less `part`'s (a subset of the same users): users without an admin role are
    /// all users less the role holders.
    pub fn without(&self, part: &RegistrationCounts) -> RegistrationCounts {
        RegistrationCounts {
            total: self.total - part.total,
            password: self.password - part.password,
            software_oath: self.software_oath - part.software_oath,
            mobile_phone: self.mobile_phone - part.mobile_phone,
            alternate_mobile_phone: self.alternate_mobile_phone - part.alternate_mobile_phone,
            office_phone: self.office_phone - part.office_phone,
            email: self.email - part.email,
            mfa_registered: self.mfa_registered - part.mfa_registered,
            mfa_capable: self.mfa_capable - part.mfa_capable,
            sspr_registered: self.sspr_registered - part.sspr_registered,
            passkey_device_bound: self.passkey_device_bound - part.passkey_device_bound,
            passkey_synced: self.passkey_synced - part.passkey_synced,
            passwordless_capable: self.passwordless_capable - part.passwordless_capable,
        }
    }

    /// `userRegistrationMethodCounts`: every method Keyward has, zeros included.
    pub fn by_method(&self) -> [(&'static str, i64); 8] {
        [
            ("password", self.password),
            ("email", self.email),
            ("mobilePhone", self.mobile_phone),
            ("alternateMobilePhone", self.alternate_mobile_phone),
            ("officePhone", self.office_phone),
            ("softwareOneTimePasscode", self.software_oath),
            ("passKeyDeviceBound", self.passkey_device_bound),
            ("passKeySynced", self.passkey_synced),
        ]
    }

    /// `userRegistrationFeatureCounts`.
    pub fn by_feature(&self) -> [(&'static str, i64); 5] {
        [
            ("ssprRegistered", self.sspr_registered),
            ("ssprEnabled", 0),
            ("ssprCapable", 0),
            ("passwordlessCapable", self.passwordless_capable),
            ("mfaCapable", self.mfa_capable),
        ]
    }
}

/// One day of the service desk's activity on authentication methods, from the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayActivity {
    pub day: Date,
    /// Passwords reset by an administrator.
    pub resets: u32,
    /// Temporary Access Passes created.
    pub passes: u32,
    /// Administrator actions refused (records with result `failure`).
    pub refused: u32,
}

/// Counts `records` per UTC day for the `days` days from `first_day`; records outside are
/// ignored.
pub fn daily_activity(records: &[AuditRecord], first_day: Date, days: u16) -> Vec<DayActivity> {
    let mut out: Vec<DayActivity> = (0..days)
        .filter_map(|offset| first_day.checked_add(time::Duration::days(i64::from(offset))))
        .map(|day| DayActivity { day, resets: 0, passes: 0, refused: 0 })
        .collect();
    for record in records {
        let day = record.activity_date_time.to_offset(time::UtcOffset::UTC).date();
        let Some(slot) = out.iter_mut().find(|it| it.day == day) else { continue };
        if record.result == AuditResult::Failure {
            slot.refused += 1;
        } else if record.activity_display_name == Activity::ResetPasswordByAdmin.display_name() {
            slot.resets += 1;
        } else if record.activity_display_name == Activity::AdminRegisteredSecurityInfo.display_name()
            && record.result_reason.contains("temporary access pass")
        {
            slot.passes += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(filter: &str) -> RawQuery {
        RawQuery { filter: Some(filter.into()), ..RawQuery::default() }
    }

    #[test]
    fn documented_filters_plan() {
        let query = plan(&raw(
            "isMfaRegistered eq true and isAdmin eq false and methodsRegistered/any(m: m eq 'MobilePhone') \
             and startswith(userPrincipalName,'Adele') and userType eq 'member'",
        ))
        .expect("plans");
        assert_eq!(query.filter.flags, vec![(Flag::IsMfaRegistered, true), (Flag::IsAdmin, false)]);
        assert_eq!(query.filter.methods, vec!["mobilePhone".to_owned()]);
        assert_eq!(query.filter.user_principal_name, Some(TextMatch::StartsWith("adele".into())));
        assert_eq!(query.filter.guests, Some(false));
        let ordered = plan(&RawQuery { orderby: Some("userDisplayName desc".into()), ..RawQuery::default() });
        let ordered = ordered.expect("plans");
        assert_eq!((ordered.order, ordered.descending), (RegistrationOrder::UserDisplayName, true));
    }

    #[test]
    fn other_filters_and_options_are_refused() {
        for bad in [
            "isAdmin eq 'yes'",
            "isAdmin eq true or isMfaCapable eq true",
            "isAdmin eq true and isAdmin eq false",
            "lastUpdatedDateTime ge 2026-01-01T00:00:00Z",
            "userType eq 'robot'",
            "methodsRegistered/any(m: startswith(m, 'mobile'))",
        ] {
            assert!(matches!(plan(&raw(bad)), Err(QueryError::Unsupported(_))), "{bad}");
        }
        assert!(plan(&RawQuery { orderby: Some("isAdmin".into()), ..RawQuery::default() }).is_err());
        assert!(plan(&RawQuery { select: Some("id".into()), ..RawQuery::default() }).is_err());
    }

    #[test]
    fn a_passkey_is_mfa_and_passwordless_capable() {
        let bound = RegisteredMethods { passkey_device_bound: true, ..RegisteredMethods::default() };
        assert_eq!(bound.methods_registered(), vec!["passKeyDeviceBound"]);
        assert!(bound.is_mfa_registered() && bound.is_mfa_capable() && bound.is_passwordless_capable());
        let synced = RegisteredMethods { passkey_synced: true, email: true, ..RegisteredMethods::default() };
        assert_eq!(synced.methods_registered(), vec!["passKeySynced", "email"]);
        let app = RegisteredMethods { software_oath: true, ..RegisteredMethods::default() };
        assert!(app.is_mfa_capable() && !app.is_passwordless_capable());
        let filter = plan(&raw("methodsRegistered/any(m: m eq 'PASSKEYSYNCED')")).expect("plan").filter;
        assert_eq!(filter.methods, vec!["passKeySynced".to_owned()]);
    }

    #[test]
    fn summary_parameters_parse_in_any_order_and_case() {
        let scope =
            parse_summary_scope("includedUserTypes='member',INCLUDEDUSERROLES='privilegedAdmin'").expect("parses");
        assert_eq!(scope, SummaryScope { roles: IncludedRoles::PrivilegedAdmin, types: IncludedTypes::Member });
        assert_eq!(parse_summary_scope("").expect("parses").roles_name(), "all");
        let no_comma = parse_summary_scope("includedUserTypes='all'includedUserRoles='admin'").expect("parses");
        assert_eq!(no_comma.roles, IncludedRoles::Admin);
        for bad in [
            "includedUserRoles='root'",
            "includedUserRoles=all",
            "colour='red'",
            "includedUserRoles='all',includedUserRoles='admin'",
        ] {
            assert!(parse_summary_scope(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn capability_follows_what_keyward_can_prompt_for() {
        let phone_only = RegisteredMethods { password: true, mobile_phone: true, ..RegisteredMethods::default() };
        assert!(phone_only.is_mfa_registered() && !phone_only.is_mfa_capable() && phone_only.is_sspr_registered());
        assert_eq!(phone_only.methods_registered(), vec!["mobilePhone"]);
        let app = RegisteredMethods { software_oath: true, ..RegisteredMethods::default() };
        assert!(app.is_mfa_capable() && !app.is_sspr_registered());
        assert_eq!(app.preferred_secondary_method(), "oath");
    }

    #[test]
    fn daily_activity_counts_resets_passes_and_refusals_per_utc_day() {
        use crate::audit::{AuditContext, Initiator};
        use crate::ids::ObjectId;
        use time::macros::datetime;
        let id = ObjectId::parse("00000000-0000-4000-8000-000000000001").expect("id");
        let at = |when| AuditContext {
            tenant_id: id.clone(),
            correlation_id: "c".into(),
            at: when,
            initiated_by: Initiator::App { app_id: "a".into(), display_name: "A".into(), service_principal_id: None },
        };
        let mut pass =
            at(datetime!(2026-12-02 23:59 UTC)).success("1".into(), Activity::AdminRegisteredSecurityInfo, vec![]);
        pass.result_reason = "Admin registered temporary access pass method for user".into();
        let phone =
            at(datetime!(2026-12-02 10:00 UTC)).success("2".into(), Activity::AdminRegisteredSecurityInfo, vec![]);
        let reset = at(datetime!(2026-12-01 00:00 UTC)).success("3".into(), Activity::ResetPasswordByAdmin, vec![]);
        let refused =
            at(datetime!(2026-12-01 12:00 UTC)).failure("4".into(), Activity::ResetPasswordByAdmin, vec![], "no");
        let too_old = at(datetime!(2026-11-29 12:00 UTC)).success("5".into(), Activity::ResetPasswordByAdmin, vec![]);
        let days = daily_activity(&[pass, phone, reset, refused, too_old], time::macros::date!(2026 - 11 - 30), 3);
        let counts: Vec<(u32, u32, u32)> = days.iter().map(|it| (it.resets, it.passes, it.refused)).collect();
        assert_eq!(counts, vec![(0, 0, 0), (1, 0, 1), (0, 1, 0)]);
        assert_eq!(days[2].day, time::macros::date!(2026 - 12 - 02));
    }
}
