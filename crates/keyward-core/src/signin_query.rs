//! The query options of `GET /auditLogs/signIns`: the `$filter` clauses Graph documents for
//! `signIn` (joined with `and`), `$select`, `$top` up to 1,000, newest first, paged with
//! `$skiptoken`. The beta version adds `signInEventTypes` and `authenticationRequirement`.
//!
//! Without a `signInEventTypes` clause the log lists user sign-ins, interactive and not;
//! applications' own sign-ins (client credentials) are listed only when a beta request asks for
//! `servicePrincipal`, as Entra lists them.

use time::OffsetDateTime;

use crate::audit_query::{
    TextMatch, entry_select, log_filter, log_select, log_top, lowered, set, time_bound, unsupported_clause,
};
use crate::odata::{CmpOp, Expr, Literal, StrFunc};
use crate::query::{QueryError, RawQuery};
use crate::signin::SignInEventType;

/// The filters of a sign-in query; every present filter must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInFilter {
    pub from: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub id: Option<String>,
    /// Lowercased.
    pub user_id: Option<String>,
    /// Lowercased.
    pub user_principal_name: Option<TextMatch>,
    /// ASCII-lowercased, like the other fields read from the record (`app_display_name`,
    /// `ip_address`, `correlation_id`, `client_app_used`).
    pub user_display_name: Option<TextMatch>,
    pub error_code: Option<i64>,
    /// `status/errorCode eq 0` (`Some(true)`) or `ne 0` (`Some(false)`): succeeded or failed.
    pub is_success: Option<bool>,
    /// Lowercased.
    pub app_id: Option<String>,
    /// Lowercased.
    pub app_display_name: Option<TextMatch>,
    /// Lowercased.
    pub ip_address: Option<TextMatch>,
    /// Lowercased.
    pub correlation_id: Option<String>,
    /// Lowercased.
    pub client_app_used: Option<String>,
    /// `authenticationRequirement` (beta): `Some(true)` for `multiFactorAuthentication`.
    pub is_multi_factor: Option<bool>,
    /// The kinds of sign-in listed: never empty.
    pub event_types: Vec<SignInEventType>,
    /// A clause no record can meet (`conditionalAccessStatus eq 'success'`: Keyward applies no
    /// Conditional Access policy, so every record is `notApplied`).
    pub matches_nothing: bool,
}

impl Default for SignInFilter {
    fn default() -> Self {
        Self {
            from: None,
            until: None,
            id: None,
            user_id: None,
            user_principal_name: None,
            user_display_name: None,
            error_code: None,
            is_success: None,
            app_id: None,
            app_display_name: None,
            ip_address: None,
            correlation_id: None,
            client_app_used: None,
            is_multi_factor: None,
            event_types: USER_SIGN_INS.to_vec(),
            matches_nothing: false,
        }
    }
}

/// What a query without `signInEventTypes` lists.
pub const USER_SIGN_INS: [SignInEventType; 2] = [SignInEventType::InteractiveUser, SignInEventType::NonInteractiveUser];

/// `signIn`'s properties in v1.0, as `$select` names them.
pub const V1_PROPERTIES: &[&str] = &[
    "id",
    "createdDateTime",
    "userDisplayName",
    "userPrincipalName",
    "userId",
    "appId",
    "appDisplayName",
    "ipAddress",
    "clientAppUsed",
    "userAgent",
    "correlationId",
    "conditionalAccessStatus",
    "appliedConditionalAccessPolicies",
    "isInteractive",
    "deviceDetail",
    "location",
    "riskDetail",
    "riskLevelAggregated",
    "riskLevelDuringSignIn",
    "riskState",
    "riskEventTypes",
    "riskEventTypes_v2",
    "resourceDisplayName",
    "resourceId",
    "resourceTenantId",
    "homeTenantId",
    "servicePrincipalId",
    "servicePrincipalName",
    "status",
];

/// What beta's `signIn` has beyond [`V1_PROPERTIES`] (beta has no `riskEventTypes`, only its
/// second version).
pub const BETA_PROPERTIES: &[&str] = &[
    "authenticationDetails",
    "authenticationMethodsUsed",
    "authenticationProtocol",
    "authenticationRequirement",
    "authenticationRequirementPolicies",
    "clientCredentialType",
    "crossTenantAccessType",
    "flaggedForReview",
    "incomingTokenType",
    "isTenantRestricted",
    "mfaDetail",
    "originalRequestId",
    "signInEventTypes",
    "signInIdentifier",
    "signInIdentifierType",
    "tokenIssuerType",
    "userType",
];

/// A validated sign-in query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInQuery {
    pub filter: SignInFilter,
    /// The properties `$select` names, in Graph's spelling (`id` always among them).
    pub select: Option<Vec<&'static str>>,
    pub top: usize,
    pub skiptoken: Option<String>,
}

/// The page size of the sign-in log, by default and at most: Graph's 1,000.
pub const SIGN_IN_TOP: usize = 1000;

fn unsupported(property: &str) -> QueryError {
    unsupported_clause(property, "SignIn")
}

fn text(value: &Literal, property: &str) -> Result<String, QueryError> {
    lowered(value, property, "SignIn")
}

/// A value compared with a property that no column holds, read from the stored record and
/// lowercased by the database, which folds ASCII letters only on both backends: so is the value.
fn record_text(value: &Literal, property: &str) -> Result<String, QueryError> {
    match value {
        Literal::String(it) | Literal::Guid(it) if !it.contains('\0') => Ok(it.to_ascii_lowercase()),
        _ => Err(unsupported(property)),
    }
}

/// `eq` or `startswith` on a text property; `in_record` for those read from the record.
fn text_match(op: Option<CmpOp>, value: &Literal, property: &str, in_record: bool) -> Result<TextMatch, QueryError> {
    let value = if in_record { record_text(value, property)? } else { text(value, property)? };
    Ok(if op.is_some() { TextMatch::Equals(value) } else { TextMatch::StartsWith(value) })
}

fn clause(filter: &mut SignInFilter, expr: &Expr, is_beta: bool, has_event_types: &mut bool) -> Result<(), QueryError> {
    match expr {
        Expr::And(left, right) => {
            clause(filter, left, is_beta, has_event_types)?;
            clause(filter, right, is_beta, has_event_types)
        }
        Expr::Compare { path, op, value } => {
            let property = path.to_string();
            match (property.to_ascii_lowercase().as_str(), op, value) {
                ("createddatetime", op, Literal::DateTime(at)) if *op != CmpOp::Ne => {
                    time_bound(&mut filter.from, &mut filter.until, *op, *at, &property)
                }
                ("id", CmpOp::Eq, _) => set(&mut filter.id, text(value, &property)?, &property),
                ("userid", CmpOp::Eq, _) => set(&mut filter.user_id, text(value, &property)?, &property),
                ("userprincipalname", CmpOp::Eq, _) => {
                    set(&mut filter.user_principal_name, text_match(Some(*op), value, &property, false)?, &property)
                }
                ("userdisplayname", CmpOp::Eq, _) => {
                    set(&mut filter.user_display_name, text_match(Some(*op), value, &property, true)?, &property)
                }
                ("appid", CmpOp::Eq, _) => set(&mut filter.app_id, text(value, &property)?, &property),
                ("appdisplayname", CmpOp::Eq, _) => {
                    set(&mut filter.app_display_name, text_match(Some(*op), value, &property, true)?, &property)
                }
                ("ipaddress", CmpOp::Eq, _) => {
                    set(&mut filter.ip_address, text_match(Some(*op), value, &property, true)?, &property)
                }
                ("correlationid", CmpOp::Eq, _) => {
                    set(&mut filter.correlation_id, record_text(value, &property)?, &property)
                }
                ("clientappused", CmpOp::Eq, _) => {
                    set(&mut filter.client_app_used, record_text(value, &property)?, &property)
                }
                ("conditionalaccessstatus", CmpOp::Eq, _) => match text(value, &property)?.as_str() {
                    "notapplied" => Ok(()),
                    "success" | "failure" | "unknownfuturevalue" => {
                        filter.matches_nothing = true;
                        Ok(())
                    }
                    other => Err(QueryError::BadRequest(format!(
                        "The value '{other}' is not a member of 'microsoft.graph.conditionalAccessStatus'."
                    ))),
                },
                ("authenticationrequirement", CmpOp::Eq, _) if is_beta => {
                    let is_multi_factor = match text(value, &property)?.as_str() {
                        "multifactorauthentication" => true,
                        "singlefactorauthentication" => false,
                        _ => return Err(unsupported(&property)),
                    };
                    set(&mut filter.is_multi_factor, is_multi_factor, &property)
                }
                ("status/errorcode", CmpOp::Eq, Literal::Int(code)) => set(&mut filter.error_code, *code, &property),
                ("status/errorcode", CmpOp::Ne, Literal::Int(0)) => set(&mut filter.is_success, false, &property),
                _ => Err(unsupported(&property)),
            }
        }
        Expr::Func { func: StrFunc::StartsWith, path, value } => {
            let property = path.to_string();
            let (slot, in_record) = match property.to_ascii_lowercase().as_str() {
                "userprincipalname" => (&mut filter.user_principal_name, false),
                "userdisplayname" => (&mut filter.user_display_name, true),
                "appdisplayname" => (&mut filter.app_display_name, true),
                "ipaddress" => (&mut filter.ip_address, true),
                _ => return Err(unsupported(&property)),
            };
            set(slot, text_match(None, value, &property, in_record)?, &property)
        }
        Expr::Any { collection, var, body }
            if is_beta && collection.to_string().eq_ignore_ascii_case("signInEventTypes") =>
        {
            if std::mem::replace(has_event_types, true) {
                return Err(QueryError::Unsupported("Filter on 'signInEventTypes' only once.".into()));
            }
            filter.event_types = event_types(var, body)?;
            Ok(())
        }
        Expr::Or(..) => Err(QueryError::Unsupported("Sign-in log filters combine with 'and' only.".into())),
        other => Err(unsupported(&format!("{other}"))),
    }
}

/// The kinds a `signInEventTypes/any(t: …)` body accepts: `t eq 'x'` joined with `or`, or one
/// `t ne 'x'`.
fn event_types(var: &str, body: &Expr) -> Result<Vec<SignInEventType>, QueryError> {
    let kind = |path: &crate::odata::Path, value: &Literal| match (path.0.as_slice(), value) {
        ([head], Literal::String(it)) if head == var => SignInEventType::parse(it).ok_or_else(|| {
            QueryError::BadRequest(format!(
                "'{it}' is not a sign-in event type: use interactiveUser, nonInteractiveUser or servicePrincipal."
            ))
        }),
        _ => Err(unsupported("signInEventTypes")),
    };
    match body {
        Expr::Compare { path, op: CmpOp::Ne, value } => {
            let excluded = kind(path, value)?;
            Ok(SignInEventType::ALL.into_iter().filter(|it| *it != excluded).collect())
        }
        _ => {
            let mut kinds = Vec::new();
            let mut pending = vec![body];
            while let Some(expr) = pending.pop() {
                match expr {
                    Expr::Or(left, right) => pending.extend([right.as_ref(), left.as_ref()]),
                    Expr::Compare { path, op: CmpOp::Eq, value } => {
                        let it = kind(path, value)?;
                        if !kinds.contains(&it) {
                            kinds.push(it);
                        }
                    }
                    _ => return Err(unsupported("signInEventTypes")),
                }
            }
            Ok(kinds)
        }
    }
}

/// `signIn`'s properties in v1.0 or beta.
fn properties(is_beta: bool) -> Vec<&'static str> {
    V1_PROPERTIES
        .iter()
        .filter(|it| !is_beta || **it != "riskEventTypes")
        .chain(if is_beta { BETA_PROPERTIES } else { &[] })
        .copied()
        .collect()
}

/// The query options of `GET /auditLogs/signIns/{id}`: `$select` only.
pub fn plan_one(raw: &RawQuery, is_beta: bool) -> Result<Option<Vec<&'static str>>, QueryError> {
    entry_select(raw, &properties(is_beta), "signIn", "one sign-in")
}

/// Validates the query options of a sign-in log request; `is_beta` for `/beta`.
pub fn plan(raw: &RawQuery, is_beta: bool) -> Result<SignInQuery, QueryError> {
    let expr = log_filter(raw, "signIns")?;
    // The log is read newest first: `createdDateTime desc`, the order scripts ask for, is taken.
    if let Some(order) = raw.orderby.as_deref() {
        let words: Vec<&str> = order.split_whitespace().collect();
        let is_newest_first = matches!(words.as_slice(), [property, direction]
            if property.eq_ignore_ascii_case("createdDateTime") && direction.eq_ignore_ascii_case("desc"));
        if !is_newest_first {
            return Err(QueryError::Unsupported(
                "Only $orderby=createdDateTime desc (newest first, the default) is supported on signIns.".into(),
            ));
        }
    }
    let mut filter = SignInFilter::default();
    if let Some(expr) = expr {
        clause(&mut filter, &expr, is_beta, &mut false)?;
    }
    Ok(SignInQuery {
        filter,
        select: log_select(raw, &properties(is_beta), "signIn")?,
        top: log_top(raw, SIGN_IN_TOP)?.unwrap_or(SIGN_IN_TOP),
        skiptoken: raw.skiptoken.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_is_the_one_order() {
        let order = |it: &str| plan(&RawQuery { orderby: Some(it.into()), ..RawQuery::default() }, false);
        assert!(order("createdDateTime desc").is_ok() && order("CreatedDateTime DESC").is_ok());
        for refused in ["createdDateTime", "createdDateTime asc", "userPrincipalName desc", ""] {
            assert!(matches!(order(refused), Err(QueryError::Unsupported(_))), "{refused}");
        }
    }

    fn raw(filter: &str) -> RawQuery {
        RawQuery { filter: Some(filter.into()), ..RawQuery::default() }
    }

    #[test]
    fn documented_filters_plan() {
        let query = plan(
            &raw("userId eq 'AB5C1E6A-0000-4000-8000-000000000001' and status/errorCode eq 50126 and \
             createdDateTime ge 2026-01-01T00:00:00Z and createdDateTime lt 2026-02-01T00:00:00Z"),
            false,
        )
        .expect("plans");
        assert_eq!(query.filter.user_id.as_deref(), Some("ab5c1e6a-0000-4000-8000-000000000001"));
        assert_eq!(query.filter.error_code, Some(50126));
        assert!(query.filter.from.is_some() && query.filter.until.is_some());
        assert_eq!(query.top, SIGN_IN_TOP);
        let upn = plan(&raw("startswith(userPrincipalName,'Adele')"), false).expect("plans");
        assert_eq!(upn.filter.user_principal_name, Some(TextMatch::StartsWith("adele".into())));
        assert_eq!(plan(&raw("status/errorCode ne 0"), false).expect("plans").filter.is_success, Some(false));
        let app = plan(
            &raw("startswith(appDisplayName,'Graph') and ipAddress eq '10.0.0.1' and \
                 conditionalAccessStatus eq 'notApplied' and clientAppUsed eq 'Browser'"),
            false,
        )
        .expect("plans");
        assert_eq!(app.filter.app_display_name, Some(TextMatch::StartsWith("graph".into())));
        assert_eq!(app.filter.ip_address, Some(TextMatch::Equals("10.0.0.1".into())));
        assert!(!app.filter.matches_nothing);
        assert!(plan(&raw("conditionalAccessStatus eq 'success'"), false).expect("plans").filter.matches_nothing);
        assert_eq!(app.filter.event_types, USER_SIGN_INS.to_vec());
    }

    #[test]
    fn event_types_are_a_beta_filter() {
        let one = plan(&raw("signInEventTypes/any(t: t eq 'servicePrincipal')"), true).expect("plans");
        assert_eq!(one.filter.event_types, vec![SignInEventType::ServicePrincipal]);
        let two = plan(&raw("signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'servicePrincipal')"), true)
            .expect("plans");
        assert_eq!(two.filter.event_types, vec![SignInEventType::InteractiveUser, SignInEventType::ServicePrincipal]);
        let not = plan(&raw("signInEventTypes/any(t: t ne 'interactiveUser')"), true).expect("plans");
        assert_eq!(
            not.filter.event_types,
            vec![SignInEventType::NonInteractiveUser, SignInEventType::ServicePrincipal]
        );
        assert!(plan(&raw("signInEventTypes/any(t: t eq 'servicePrincipal')"), false).is_err());
        assert!(plan(&raw("signInEventTypes/any(t: t eq 'robot')"), true).is_err());
    }

    #[test]
    fn select_and_top_follow_the_version() {
        let query = RawQuery { select: Some("userId,STATUS".into()), top: Some("1000".into()), ..RawQuery::default() };
        let planned = plan(&query, false).expect("plans");
        assert_eq!(planned.select, Some(vec!["id", "userId", "status"]));
        assert_eq!(planned.top, 1000);
        let beta_only = RawQuery { select: Some("authenticationDetails".into()), ..RawQuery::default() };
        assert!(matches!(plan(&beta_only, false), Err(QueryError::BadRequest(_))));
        assert!(plan(&beta_only, true).is_ok());
        let too_many = RawQuery { top: Some("1001".into()), ..RawQuery::default() };
        assert!(matches!(plan(&too_many, false), Err(QueryError::BadRequest(_))));
    }

    #[test]
    fn other_filters_are_refused() {
        for bad in [
            "location/city eq 'Oslo'",
            "userId eq 'a' or userId eq 'b'",
            "status/errorCode eq '0'",
            "authenticationRequirement eq 'multiFactorAuthentication'",
        ] {
            assert!(matches!(plan(&raw(bad), false), Err(QueryError::Unsupported(_))), "{bad}");
        }
        assert!(matches!(plan(&raw("userId eq"), false), Err(QueryError::BadRequest(_))));
        assert!(matches!(plan(&raw("conditionalAccessStatus eq 'maybe'"), false), Err(QueryError::BadRequest(_))));
    }
}
