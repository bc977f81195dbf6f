//! The query options of `GET /auditLogs/directoryAudits`: the filters Graph documents for
//! `directoryAudit`, joined with `and`, newest first, paged with `$skiptoken`.

use time::OffsetDateTime;

use crate::odata::{CmpOp, Expr, Literal, StrFunc, parse_filter};
use crate::query::{QueryError, RawQuery};

/// `directoryAudit`'s properties, as `$select` names them.
pub const PROPERTIES: &[&str] = &[
    "id",
    "category",
    "correlationId",
    "result",
    "resultReason",
    "activityDisplayName",
    "activityDateTime",
    "loggedByService",
    "operationType",
    "initiatedBy",
    "targetResources",
    "additionalDetails",
];

/// The largest page of either log: Graph's 1,000.
pub const LOG_MAX_TOP: usize = 1000;

/// How a text property is matched (case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextMatch {
    Equals(String),
    StartsWith(String),
}

/// The filters of an audit query; every present filter must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub from: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub activity: Option<TextMatch>,
    pub category: Option<String>,
    pub correlation_id: Option<String>,
    pub logged_by_service: Option<String>,
    pub result: Option<String>,
    pub initiator_user_id: Option<String>,
    pub initiator_upn: Option<TextMatch>,
    pub initiator_app_id: Option<String>,
    pub target_id: Option<String>,
    pub target_upn: Option<String>,
    /// As written: record ids are case-sensitive (`Directory_…`).
    pub id: Option<String>,
    /// `initiatedBy/user/displayName`, ASCII-lowercased (compared with the record's text, which
    /// the database folds only in ASCII).
    pub initiator_user_name: Option<String>,
    /// `initiatedBy/app/displayName`, ASCII-lowercased.
    pub initiator_app_name: Option<String>,
}

/// A validated audit query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    /// The properties `$select` names, in Graph's spelling (`id` always among them).
    pub select: Option<Vec<&'static str>>,
    pub top: usize,
    pub is_ascending: bool,
    pub skiptoken: Option<String>,
}

fn unsupported(property: &str) -> QueryError {
    unsupported_clause(property, "DirectoryAudit")
}

/// Graph's refusal of a filter clause on a log or report resource.
pub(crate) fn unsupported_clause(property: &str, resource: &str) -> QueryError {
    QueryError::Unsupported(format!(
        "Unsupported or invalid query filter clause specified for property '{property}' of resource '{resource}'."
    ))
}

/// A string or GUID literal, lowercased, for a filter on `property` of `resource`.
pub(crate) fn lowered(value: &Literal, property: &str, resource: &str) -> Result<String, QueryError> {
    match value {
        Literal::String(it) | Literal::Guid(it) if !it.contains('\0') => Ok(it.to_lowercase()),
        _ => Err(unsupported_clause(property, resource)),
    }
}

/// What every log and report list checks first: `$skip` is refused (page with the next link),
/// `$search`, `$expand` and `$count` are refused on `collection` (and `$select` on the reports, which the
/// logs read with [`log_select`]), and the `$filter` is parsed.
pub(crate) fn log_filter(raw: &RawQuery, collection: &str) -> Result<Option<Expr>, QueryError> {
    if raw.has_skip {
        return Err(QueryError::BadRequest(
            "'$skip' is not supported by the service. Use the @odata.nextLink to page.".into(),
        ));
    }
    let is_log = matches!(collection, "signIns" | "directoryAudits");
    for (name, is_present) in [
        ("$select", raw.select.is_some() && !is_log),
        ("$search", raw.search.is_some()),
        ("$expand", raw.expand.is_some()),
        ("$count", raw.count.is_some()),
    ] {
        if is_present {
            return Err(QueryError::Unsupported(format!(
                "The query option '{name}' is not supported on {collection}."
            )));
        }
    }
    raw.filter
        .as_deref()
        .map(|it| parse_filter(it).map_err(|err| QueryError::BadRequest(format!("Invalid filter clause: {err}"))))
        .transpose()
}

/// A log's `$select`: each name one of `properties` (in any case), given back in Graph's spelling
/// with `id` first.
pub(crate) fn log_select(
    raw: &RawQuery,
    properties: &[&'static str],
    type_name: &str,
) -> Result<Option<Vec<&'static str>>, QueryError> {
    let Some(select) = raw.select.as_deref() else { return Ok(None) };
    let mut chosen = vec!["id"];
    for name in select.split(',').map(str::trim) {
        let property = properties.iter().find(|it| it.eq_ignore_ascii_case(name)).ok_or_else(|| {
            QueryError::BadRequest(format!(
                "Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'."
            ))
        })?;
        if !chosen.contains(property) {
            chosen.push(property);
        }
    }
    Ok(Some(chosen))
}

/// A log's `$top`: 1 to `max`, `None` when absent.
pub(crate) fn log_top(raw: &RawQuery, max: usize) -> Result<Option<usize>, QueryError> {
    raw.top
        .as_deref()
        .map(|it| match it.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(QueryError::BadRequest(format!(
                "Invalid page size specified: '{it}'. Must be between 1 and {max} inclusive."
            ))),
        })
        .transpose()
}

fn text(value: &Literal, property: &str) -> Result<String, QueryError> {
    match value {
        Literal::String(it) | Literal::Guid(it) if !it.contains('\0') => Ok(it.clone()),
        _ => Err(unsupported(property)),
    }
}

const MICROSECOND: time::Duration = time::Duration::microseconds(1);

/// Turns `property op at` into inclusive `from`/`until` bounds. Records carry microsecond
/// precision, so a strict bound is the inclusive bound one microsecond further in.
pub(crate) fn time_bound(
    from: &mut Option<OffsetDateTime>,
    until: &mut Option<OffsetDateTime>,
    op: CmpOp,
    at: OffsetDateTime,
    property: &str,
) -> Result<(), QueryError> {
    match op {
        CmpOp::Ge => set(from, at, property),
        CmpOp::Gt => set(from, at + MICROSECOND, property),
        CmpOp::Le => set(until, at, property),
        CmpOp::Lt => set(until, at - MICROSECOND, property),
        CmpOp::Eq => {
            set(from, at, property)?;
            set(until, at, property)
        }
        CmpOp::Ne => Err(QueryError::Unsupported(format!("'ne' is not supported on '{property}'."))),
    }
}

/// Fills a filter slot once; a second clause on the same property is refused.
pub(crate) fn set<T>(slot: &mut Option<T>, value: T, property: &str) -> Result<(), QueryError> {
    if slot.is_some() {
        return Err(QueryError::Unsupported(format!("Filter on '{property}' only once.")));
    }
    *slot = Some(value);
    Ok(())
}

fn clause(filter: &mut AuditFilter, expr: &Expr) -> Result<(), QueryError> {
    match expr {
        Expr::And(left, right) => {
            clause(filter, left)?;
            clause(filter, right)
        }
        Expr::Compare { path, op, value } => {
            let property = path.to_string();
            match (property.to_ascii_lowercase().as_str(), op, value) {
                ("activitydatetime", op, Literal::DateTime(at)) if *op != CmpOp::Ne => {
                    time_bound(&mut filter.from, &mut filter.until, *op, *at, &property)
                }
                ("activitydisplayname", CmpOp::Eq, _) => {
                    set(&mut filter.activity, TextMatch::Equals(text(value, &property)?.to_lowercase()), &property)
                }
                // Compared in any case, as the other text filters are: the known values are
                // stored in one spelling, so the filter takes that spelling.
                ("category", CmpOp::Eq, _) => {
                    set(&mut filter.category, canonical(&crate::audit::CATEGORIES, text(value, &property)?), &property)
                }
                ("correlationid", CmpOp::Eq, _) => {
                    set(&mut filter.correlation_id, text(value, &property)?.to_lowercase(), &property)
                }
                ("loggedbyservice", CmpOp::Eq, _) => {
                    let service = canonical(&crate::audit::SERVICES, text(value, &property)?);
                    set(&mut filter.logged_by_service, service, &property)
                }
                ("result", CmpOp::Eq, _) => set(&mut filter.result, text(value, &property)?.to_lowercase(), &property),
                ("initiatedby/user/id", CmpOp::Eq, _) => {
                    set(&mut filter.initiator_user_id, text(value, &property)?.to_lowercase(), &property)
                }
                ("initiatedby/user/userprincipalname", CmpOp::Eq, _) => {
                    set(&mut filter.initiator_upn, TextMatch::Equals(text(value, &property)?.to_lowercase()), &property)
                }
                ("initiatedby/app/appid", CmpOp::Eq, _) => {
                    set(&mut filter.initiator_app_id, text(value, &property)?.to_lowercase(), &property)
                }
                ("initiatedby/user/displayname", CmpOp::Eq, _) => {
                    set(&mut filter.initiator_user_name, text(value, &property)?.to_ascii_lowercase(), &property)
                }
                ("initiatedby/app/displayname", CmpOp::Eq, _) => {
                    set(&mut filter.initiator_app_name, text(value, &property)?.to_ascii_lowercase(), &property)
                }
                ("id", CmpOp::Eq, _) => set(&mut filter.id, text(value, &property)?, &property),
                _ => Err(unsupported(&property)),
            }
        }
        Expr::Func { func: StrFunc::StartsWith, path, value } => {
            let property = path.to_string();
            match property.to_ascii_lowercase().as_str() {
                "activitydisplayname" => {
                    set(&mut filter.activity, TextMatch::StartsWith(text(value, &property)?.to_lowercase()), &property)
                }
                "initiatedby/user/userprincipalname" => set(
                    &mut filter.initiator_upn,
                    TextMatch::StartsWith(text(value, &property)?.to_lowercase()),
                    &property,
                ),
                _ => Err(unsupported(&property)),
            }
        }
        Expr::Any { collection, var, body } if collection.to_string().eq_ignore_ascii_case("targetResources") => {
            match body.as_ref() {
                Expr::Compare { path, op: CmpOp::Eq, value } => {
                    let member = path.0.as_slice();
                    match member {
                        [head, name] if head == var && name.eq_ignore_ascii_case("id") => set(
                            &mut filter.target_id,
                            text(value, "targetResources/id")?.to_lowercase(),
                            "targetResources/id",
                        ),
                        [head, name] if head == var && name.eq_ignore_ascii_case("userPrincipalName") => set(
                            &mut filter.target_upn,
                            text(value, "targetResources/userPrincipalName")?.to_lowercase(),
                            "targetResources/userPrincipalName",
                        ),
                        _ => Err(unsupported(&format!("targetResources/{}", path))),
                    }
                }
                _ => Err(unsupported("targetResources")),
            }
        }
        Expr::Or(..) => Err(QueryError::Unsupported("Audit log filters combine with 'and' only.".into())),
        other => Err(unsupported(&format!("{other}"))),
    }
}

/// The query options of one log entry: `$select` only (see [`log_select`]); `what` names the
/// entry in the refusal of any other option.
pub(crate) fn entry_select(
    raw: &RawQuery,
    properties: &[&'static str],
    type_name: &str,
    what: &str,
) -> Result<Option<Vec<&'static str>>, QueryError> {
    if *raw != (RawQuery { select: raw.select.clone(), is_eventual: raw.is_eventual, ..RawQuery::default() }) {
        return Err(QueryError::Unsupported(format!("Only $select applies to {what}.")));
    }
    log_select(raw, properties, type_name)
}

/// The query options of `GET /auditLogs/directoryAudits/{id}`: `$select` only.
pub fn plan_one(raw: &RawQuery) -> Result<Option<Vec<&'static str>>, QueryError> {
    entry_select(raw, PROPERTIES, "directoryAudit", "one audit record")
}

/// Validates the query options of an audit log request.
pub fn plan(raw: &RawQuery) -> Result<AuditQuery, QueryError> {
    let mut filter = AuditFilter::default();
    if let Some(expr) = log_filter(raw, "directoryAudits")? {
        clause(&mut filter, &expr)?;
    }
    let is_ascending = match raw.orderby.as_deref().map(str::trim) {
        None => false,
        Some(it) => {
            let mut words = it.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("activityDateTime"), None | Some("desc"), None) => it.ends_with("asc") && !it.ends_with("desc"),
                (Some("activityDateTime"), Some("asc"), None) => true,
                _ => {
                    return Err(QueryError::Unsupported(
                        "Only $orderby=activityDateTime [asc|desc] is supported on directoryAudits.".into(),
                    ));
                }
            }
        }
    };
    Ok(AuditQuery {
        filter,
        select: log_select(raw, PROPERTIES, "directoryAudit")?,
        top: log_top(raw, LOG_MAX_TOP)?.unwrap_or(LOG_MAX_TOP),
        is_ascending,
        skiptoken: raw.skiptoken.clone(),
    })
}

/// `value` in the spelling of the known value it names in another case, or as it is.
fn canonical(known: &[&str], value: String) -> String {
    known.iter().find(|it| it.eq_ignore_ascii_case(&value)).map_or(value, |it| (*it).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(filter: &str) -> RawQuery {
        RawQuery { filter: Some(filter.into()), ..RawQuery::default() }
    }

    #[test]
    fn every_documented_filter_plans() {
        let query =
            plan(&raw("activityDateTime ge 2024-01-01T00:00:00Z and activityDateTime le 2024-02-01T00:00:00Z and \
             startswith(activityDisplayName,'Add') and category eq 'UserManagement' and result eq 'success' and \
             initiatedBy/user/userPrincipalName eq 'Admin@Contoso.test' and \
             targetResources/any(t: t/id eq '00000000-0000-4000-8000-000000000001')"))
            .expect("valid");
        assert_eq!(query.filter.activity, Some(TextMatch::StartsWith("add".into())));
        assert_eq!(query.filter.initiator_upn, Some(TextMatch::Equals("admin@contoso.test".into())));
        assert_eq!(query.filter.target_id.as_deref(), Some("00000000-0000-4000-8000-000000000001"));
        assert!(query.filter.from.is_some() && query.filter.until.is_some());
        assert!(!query.is_ascending);
        let upn = plan(&raw(
            "targetResources/any(x:x/userPrincipalName eq 'A@B.test') and loggedByService eq 'Core Directory'",
        ))
        .expect("valid");
        assert_eq!(upn.filter.target_upn.as_deref(), Some("a@b.test"));
        let asc = RawQuery { orderby: Some("activityDateTime asc".into()), ..RawQuery::default() };
        assert!(plan(&asc).expect("valid").is_ascending);
        let named =
            plan(&raw("initiatedBy/user/displayName eq 'MEGAN Bowen' and initiatedBy/app/displayName eq 'Sync' and \
             id eq 'Directory_ABC'"))
            .expect("valid");
        assert_eq!(named.filter.initiator_user_name.as_deref(), Some("megan bowen"));
        assert_eq!(named.filter.initiator_app_name.as_deref(), Some("sync"));
        assert_eq!(named.filter.id.as_deref(), Some("Directory_ABC"));
        let select = RawQuery {
            select: Some("activityDisplayName,targetresources".into()),
            top: Some("1000".into()),
            ..RawQuery::default()
        };
        let planned = plan(&select).expect("valid");
        assert_eq!(planned.select, Some(vec!["id", "activityDisplayName", "targetResources"]));
        assert_eq!(planned.top, 1000);
        assert_eq!(plan(&RawQuery::default()).expect("valid").top, LOG_MAX_TOP, "Graph's page without $top");
        let cased = RawQuery {
            filter: Some("category eq 'usermanagement' and loggedByService eq 'pim'".into()),
            ..RawQuery::default()
        };
        let cased = plan(&cased).expect("valid").filter;
        assert_eq!(
            (cased.category.as_deref(), cased.logged_by_service.as_deref()),
            (Some("UserManagement"), Some("PIM"))
        );
        let unknown = RawQuery { select: Some("nope".into()), ..RawQuery::default() };
        assert!(matches!(plan(&unknown), Err(QueryError::BadRequest(_))));
    }

    #[test]
    fn other_filters_are_refused_with_graphs_message() {
        for filter in [
            "resultReason eq 'x'",
            "category eq 'a' or category eq 'b'",
            "targetResources/any(t: t/displayName eq 'x')",
            "category ne 'x'",
        ] {
            assert!(matches!(plan(&raw(filter)), Err(QueryError::Unsupported(_))), "{filter}");
        }
        let orderby = RawQuery { orderby: Some("category".into()), ..RawQuery::default() };
        assert!(plan(&orderby).is_err());
    }
}
