//! Just-in-time roles through Graph's unified role management API (Privileged Identity
//! Management): `roleEligibilityScheduleRequests`, `roleAssignmentScheduleRequests`, their
//! schedules and instances, `filterByCurrentUser`, and the activation approvals (beta).
//! The role settings (`/policies/roleManagementPolicies`) are in `role_policies`.

use super::role_assignments::parse_expand;
use super::role_definitions::role_definition;
use super::{Body, Query, allow_only, bad, shape, unsupported};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keyward_app::{AppError, CurrentUser, ScheduleRequestInput};
use keyward_core::directory::{RoleAssignment, RoleEligibility, RoleScheduleRequest, ScheduleKind, canonical_scope};
use keyward_core::odata::ValueClause;
use keyward_core::pim::{Expiration, ScheduleInfo, format_duration, parse_request_duration};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ROLES: &str = "roleManagement";

fn time_or_null(at: Option<OffsetDateTime>) -> Value {
    at.map_or(Value::Null, |it| Value::String(shape::timestamp(it)))
}

fn schedule_info(start: Option<OffsetDateTime>, end: Option<OffsetDateTime>) -> Value {
    let expiration = match end {
        Some(end) => json!({"type": "afterDateTime", "endDateTime": shape::timestamp(end), "duration": null}),
        None => json!({"type": "noExpiration", "endDateTime": null, "duration": null}),
    };
    json!({"startDateTime": time_or_null(start), "recurrence": null, "expiration": expiration})
}

fn request_json(it: &RoleScheduleRequest) -> Value {
    let expiration = match it.schedule.expiration {
        Expiration::NotSpecified => json!({"type": "notSpecified", "endDateTime": null, "duration": null}),
        Expiration::NoExpiration => json!({"type": "noExpiration", "endDateTime": null, "duration": null}),
        Expiration::AfterDateTime(end) => {
            json!({"type": "afterDateTime", "endDateTime": shape::timestamp(end), "duration": null})
        }
        Expiration::AfterDuration(duration) => {
            json!({"type": "afterDuration", "endDateTime": null, "duration": format_duration(duration)})
        }
    };
    let needs_approval = it.status == "PendingApproval" || it.review.is_some();
    json!({
        "id": it.id,
        "status": it.status,
        "action": it.action,
        "principalId": it.principal_id.as_str(),
        "roleDefinitionId": it.role_definition_id,
        "directoryScopeId": it.directory_scope_id,
        "appScopeId": null,
        "isValidationOnly": false,
        "targetScheduleId": it.target_schedule_id,
        "justification": it.justification,
        "createdDateTime": shape::timestamp(it.created),
        "completedDateTime": time_or_null(it.completed),
        "approvalId": if needs_approval { Value::String(it.id.clone()) } else { Value::Null },
        "customData": null,
        "createdBy": {"user": {"id": it.created_by.as_str(), "displayName": null}, "application": null, "device": null},
        "scheduleInfo": {"startDateTime": time_or_null(it.schedule.start), "recurrence": null, "expiration": expiration},
        "ticketInfo": {"ticketNumber": it.ticket_number, "ticketSystem": it.ticket_system},
    })
}

/// `memberType`: held directly, or through a role-assignable group (seen by its member).
fn member_type(principal: &str, viewer: Option<&str>) -> &'static str {
    match viewer {
        Some(viewer) if !viewer.eq_ignore_ascii_case(principal) => "Group",
        _ => "Direct",
    }
}

fn eligibility_schedule(it: &RoleEligibility, viewer: Option<&str>) -> Value {
    json!({
        "id": it.id,
        "principalId": it.principal_id.as_str(),
        "roleDefinitionId": it.role_definition_id,
        "directoryScopeId": it.directory_scope_id,
        "appScopeId": null,
        "createdUsing": it.created_using,
        "createdDateTime": shape::timestamp(it.created),
        "modifiedDateTime": shape::timestamp(it.modified),
        "status": "Provisioned",
        "memberType": member_type(it.principal_id.as_str(), viewer),
        "scheduleInfo": schedule_info(Some(it.start), it.end),
    })
}

fn eligibility_instance(it: &RoleEligibility, viewer: Option<&str>) -> Value {
    json!({
        "id": it.id,
        "principalId": it.principal_id.as_str(),
        "roleDefinitionId": it.role_definition_id,
        "directoryScopeId": it.directory_scope_id,
        "appScopeId": null,
        "startDateTime": shape::timestamp(it.start),
        "endDateTime": time_or_null(it.end),
        "memberType": member_type(it.principal_id.as_str(), viewer),
        "roleEligibilityScheduleId": it.id,
    })
}

fn assignment_type(it: &RoleAssignment) -> &'static str {
    if it.activated_using.is_some() { "Activated" } else { "Assigned" }
}

fn assignment_schedule(it: &RoleAssignment) -> Value {
    json!({
        "id": it.id,
        "principalId": it.principal_id.as_str(),
        "roleDefinitionId": it.role_definition_id,
        "directoryScopeId": it.directory_scope_id,
        "appScopeId": null,
        "createdUsing": null,
        "createdDateTime": shape::timestamp(it.created),
        "modifiedDateTime": null,
        "status": "Provisioned",
        "assignmentType": assignment_type(it),
        "memberType": "Direct",
        "scheduleInfo": schedule_info(Some(it.start.unwrap_or(it.created)), it.end),
    })
}

fn assignment_instance(it: &RoleAssignment) -> Value {
    json!({
        "id": it.id,
        "principalId": it.principal_id.as_str(),
        "roleDefinitionId": it.role_definition_id,
        "directoryScopeId": it.directory_scope_id,
        "appScopeId": null,
        "startDateTime": shape::timestamp(it.start.unwrap_or(it.created)),
        "endDateTime": time_or_null(it.end),
        "assignmentType": assignment_type(it),
        "memberType": "Direct",
        "roleAssignmentOriginId": it.id,
        "roleAssignmentScheduleId": it.id,
    })
}

/// `$filter` on these collections: `eq`, `in` or `ne` on the listed properties, joined with
/// `and`, applied to each item's JSON (ids compare case-insensitively).
fn item_filter(ctx: &GraphCtx, raw: Option<&str>, allowed: &[&str]) -> Result<Vec<ValueClause>, GraphError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let expr =
        keyward_core::odata::parse_filter(raw).map_err(|err| bad(ctx, format!("Invalid filter clause: {err}")))?;
    let clauses = keyward_core::odata::eq_in_or_ne_clauses(expr).map_err(|_| {
        unsupported(ctx, format!("Filter with 'eq', 'ne' or 'in' on {}, joined with 'and'.", allowed.join(", ")))
    })?;
    let mut res = Vec::new();
    for clause in clauses {
        let Some(property) = allowed.iter().find(|it| it.eq_ignore_ascii_case(&clause.property)) else {
            return Err(unsupported(
                ctx,
                format!("Unsupported or invalid query filter clause specified for property '{}'.", clause.property),
            ));
        };
        let values = if *property == "directoryScopeId" {
            clause.values.iter().map(|it| canonical_scope(it)).collect()
        } else {
            clause.values
        };
        res.push(ValueClause { property: (*property).to_owned(), values, negated: clause.negated });
    }
    Ok(res)
}

fn matches(item: &Value, filter: &[ValueClause]) -> bool {
    filter.iter().all(|clause| {
        let value = item[clause.property.as_str()].as_str().unwrap_or_default();
        clause.values.iter().any(|it| it.eq_ignore_ascii_case(value)) != clause.negated
    })
}

async fn expand(ctx: &GraphCtx, mut value: Value, expand: &[&str]) -> Result<Value, GraphError> {
    if expand.contains(&"principal") {
        let id = value["principalId"].as_str().unwrap_or_default().to_owned();
        value["principal"] = match ctx.state.app.get_directory_object(&ctx.caller, &id).await {
            Ok(object) => Value::Object(shape::directory_object(&object, ctx.version)),
            Err(AppError::NotFound(_) | AppError::Forbidden { .. }) => Value::Null,
            Err(err) => return Err(GraphError::from(err)),
        };
    }
    if expand.contains(&"roleDefinition") {
        let id = value["roleDefinitionId"].as_str().unwrap_or_default().to_owned();
        value["roleDefinition"] = match ctx.state.app.get_role_definition(&ctx.caller, &id).await {
            Ok(role) => role_definition(&role, ctx.version),
            Err(AppError::NotFound(_) | AppError::Forbidden { .. }) => Value::Null,
            Err(err) => return Err(GraphError::from(err)),
        };
    }
    Ok(value)
}

/// The query options a PIM collection takes.
const COLLECTION_OPTIONS: [&str; 6] = ["$filter", "$expand", "$select", "$top", "$skiptoken", "$count"];

/// Filters, pages, expands and answers a collection (at `path`, for its next link): all of it
/// without `$top`, else `$top` a page with `@odata.nextLink`; `$select` keeps the named
/// properties (and the expanded ones); `$count=true` adds the filtered total.
async fn answer(
    ctx: &GraphCtx,
    (query, path): (&super::GraphQuery, &str),
    items: Vec<Value>,
    kind: &str,
    filterable: &[&str],
    context: String,
) -> Result<Response, GraphError> {
    allow_only(ctx, query, &COLLECTION_OPTIONS)?;
    let filter = item_filter(ctx, query.raw.filter.as_deref(), filterable)?;
    let wanted = parse_expand(ctx, query.raw.expand.as_deref(), kind)?;
    let select: Option<Vec<&str>> =
        query.raw.select.as_deref().map(|list| list.split(',').map(str::trim).filter(|it| !it.is_empty()).collect());
    let count = keyward_core::query::parse_count(query.raw.count.as_deref()).map_err(AppError::from)?;
    let matching: Vec<Value> = items.into_iter().filter(|it| matches(it, &filter)).collect();
    let total = matching.len();
    // A property no item has is not one of the type's.
    if let (Some(names), Some(Value::Object(first))) = (&select, matching.first())
        && let Some(unknown) = names.iter().find(|it| !first.contains_key(**it) && !wanted.contains(*it))
    {
        return Err(bad(ctx, format!("Could not find a property named '{unknown}' on type 'microsoft.graph.{kind}'.")));
    }
    // A page token is the offset of the page's first item.
    let offset = match query.raw.skiptoken.as_deref() {
        None => 0,
        Some(token) => token
            .strip_prefix("pim-")
            .and_then(|it| it.parse::<usize>().ok())
            .ok_or_else(|| bad(ctx, "The $skiptoken is not valid: follow @odata.nextLink as it is."))?,
    };
    let top = match query.raw.top.as_deref() {
        None => usize::MAX,
        Some(raw) => keyward_core::query::parse_top(Some(raw)).map_err(AppError::from)?,
    };
    let end = offset.saturating_add(top).min(total);
    let next = super::next_link(ctx, query, path, (end < total).then(|| format!("pim-{end}")));
    let mut res = Vec::new();
    for item in matching.into_iter().skip(offset).take(top) {
        let mut item = expand(ctx, item, &wanted).await?;
        if let (Some(names), Value::Object(map)) = (&select, &mut item) {
            map.retain(|key, _| {
                key.starts_with("@odata.") || names.contains(&key.as_str()) || wanted.contains(&key.as_str())
            });
        }
        res.push(item);
    }
    Ok(collection(context, res, count.then_some(total as u64), next))
}

/// `filterByCurrentUser(on='…')`, from the captured rest of the segment (`'principal')`).
fn current_user(ctx: &GraphCtx, rest: &str, allow_approver: bool) -> Result<CurrentUser, GraphError> {
    let on = rest.trim_end_matches(')').trim_matches('\'');
    match on {
        "principal" => Ok(CurrentUser::Principal),
        "approver" if allow_approver => Ok(CurrentUser::Approver),
        other => Err(bad(
            ctx,
            format!(
                "filterByCurrentUser(on='{other}') is not supported here: use on='principal'{}.",
                if allow_approver { " or on='approver'" } else { "" }
            ),
        )),
    }
}

fn text(object: &Map<String, Value>, name: &str) -> Result<Option<String>, AppError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(it)) => Ok(Some(it.clone())),
        Some(_) => Err(AppError::BadRequest(format!("Property '{name}' must be a string."))),
    }
}

fn date_time(value: &Value, name: &str) -> Result<Option<OffsetDateTime>, AppError> {
    match value {
        Value::Null => Ok(None),
        // Kept in UTC, and before the year 9000, so no window's arithmetic can overflow.
        Value::String(it) => OffsetDateTime::parse(it, &Rfc3339)
            .ok()
            .and_then(|it| it.checked_to_offset(time::UtcOffset::UTC))
            .filter(|it| (1970..9000).contains(&it.year()))
            .map(Some)
            .ok_or_else(|| {
                AppError::BadRequest(format!(
                    "Property '{name}' must be a date and time such as 2026-01-01T00:00:00Z, before the year 9000."
                ))
            }),
        _ => Err(AppError::BadRequest(format!("Property '{name}' must be a date and time."))),
    }
}

/// The body of a schedule request.
fn request_input(body: &Value, kind: &str) -> Result<ScheduleRequestInput, AppError> {
    let object =
        body.as_object().ok_or_else(|| AppError::BadRequest("The request body must be a JSON object.".into()))?;
    const KNOWN: [&str; 11] = [
        "action",
        "principalId",
        "roleDefinitionId",
        "directoryScopeId",
        "appScopeId",
        "justification",
        "scheduleInfo",
        "ticketInfo",
        "isValidationOnly",
        "targetScheduleId",
        "customData",
    ];
    if let Some(key) = object.keys().find(|key| !KNOWN.contains(&key.as_str()) && !key.starts_with('@')) {
        return Err(AppError::BadRequest(format!(
            "Property '{key}' does not exist as a declared property or extension property on type 'microsoft.graph.{kind}'."
        )));
    }
    if object.get("appScopeId").is_some_and(|it| !it.is_null()) {
        return Err(AppError::BadRequest("appScopeId is not supported; use directoryScopeId.".into()));
    }
    let required = |name: &str| -> Result<String, AppError> {
        text(object, name)?.ok_or_else(|| AppError::BadRequest(format!("Property '{name}' is required.")))
    };
    let justification = text(object, "justification")?;
    if justification.as_ref().is_some_and(|it| it.chars().count() > 500) {
        return Err(AppError::BadRequest("The justification is longer than 500 characters.".into()));
    }
    let mut schedule = ScheduleInfo::default();
    match object.get("scheduleInfo") {
        None | Some(Value::Null) => (),
        Some(Value::Object(info)) => {
            schedule.start =
                date_time(info.get("startDateTime").unwrap_or(&Value::Null), "scheduleInfo.startDateTime")?;
            if info.get("recurrence").is_some_and(|it| !it.is_null()) {
                return Err(AppError::BadRequest(
                    "Recurring schedules are not supported: leave recurrence out.".into(),
                ));
            }
            if let Some(expiration) = info.get("expiration").filter(|it| !it.is_null()) {
                let expiration = expiration
                    .as_object()
                    .ok_or_else(|| AppError::BadRequest("scheduleInfo.expiration must be an object.".into()))?;
                let end = date_time(expiration.get("endDateTime").unwrap_or(&Value::Null), "expiration.endDateTime")?;
                let duration = match text(expiration, "duration")? {
                    Some(it) => Some(parse_request_duration(&it).ok_or_else(|| {
                        AppError::BadRequest(format!(
                            "Invalid duration '{it}': use an ISO 8601 duration such as PT8H or P365D."
                        ))
                    })?),
                    None => None,
                };
                let kind = text(expiration, "type")?.map(|it| canonical(it, &EXPIRATION_TYPES));
                schedule.expiration = match (kind.as_deref(), end, duration) {
                    (Some("noExpiration"), _, _) => Expiration::NoExpiration,
                    (Some("afterDateTime"), Some(end), _) => Expiration::AfterDateTime(end),
                    (Some("afterDuration"), _, Some(duration)) => Expiration::AfterDuration(duration),
                    (Some("afterDateTime"), None, _) => {
                        return Err(AppError::BadRequest(
                            "An expiration of type afterDateTime needs endDateTime.".into(),
                        ));
                    }
                    (Some("afterDuration"), _, None) => {
                        return Err(AppError::BadRequest("An expiration of type afterDuration needs duration.".into()));
                    }
                    (None | Some("notSpecified"), Some(end), _) => Expiration::AfterDateTime(end),
                    (None | Some("notSpecified"), None, Some(duration)) => Expiration::AfterDuration(duration),
                    (None | Some("notSpecified"), None, None) => Expiration::NotSpecified,
                    (Some(other), _, _) => {
                        return Err(AppError::BadRequest(format!(
                            "Invalid expiration type '{other}': use noExpiration, afterDateTime or afterDuration."
                        )));
                    }
                };
            }
        }
        Some(_) => return Err(AppError::BadRequest("scheduleInfo must be an object.".into())),
    }
    let (ticket_number, ticket_system) = match object.get("ticketInfo") {
        None | Some(Value::Null) => (None, None),
        Some(Value::Object(ticket)) => (text(ticket, "ticketNumber")?, text(ticket, "ticketSystem")?),
        Some(_) => return Err(AppError::BadRequest("ticketInfo must be an object.".into())),
    };
    let is_validation_only = match object.get("isValidationOnly") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(it)) => *it,
        Some(_) => return Err(AppError::BadRequest("Property 'isValidationOnly' must be true or false.".into())),
    };
    Ok(ScheduleRequestInput {
        action: canonical(required("action")?, &ACTIONS),
        principal_id: required("principalId")?,
        role_definition_id: required("roleDefinitionId")?,
        directory_scope_id: text(object, "directoryScopeId")?.unwrap_or_else(|| "/".into()),
        justification,
        schedule,
        ticket_number,
        ticket_system,
        is_validation_only,
    })
}

fn kind_of(kind: ScheduleKind) -> (&'static str, &'static str) {
    match kind {
        ScheduleKind::Assignment => ("roleAssignmentScheduleRequests", "unifiedRoleAssignmentScheduleRequest"),
        ScheduleKind::Eligibility => ("roleEligibilityScheduleRequests", "unifiedRoleEligibilityScheduleRequest"),
    }
}

async fn create_request(ctx: GraphCtx, kind: ScheduleKind, body: Value) -> Result<Response, GraphError> {
    let (segment, type_name) = kind_of(kind);
    let mut input = request_input(&body, type_name)?;
    let is_validation_only = input.is_validation_only;
    input.directory_scope_id = canonical_scope(&input.directory_scope_id);
    let created = match kind {
        ScheduleKind::Assignment => ctx.state.app.request_role_assignment(&ctx.caller, input).await?,
        ScheduleKind::Eligibility => ctx.state.app.request_role_eligibility(&ctx.caller, input).await?,
    };
    let mut value = request_json(&created);
    value["isValidationOnly"] = Value::Bool(is_validation_only);
    if is_validation_only {
        // Nothing was kept, so there is no approval to look up.
        value["approvalId"] = Value::Null;
    }
    Ok(entity(
        format!("{}/$metadata#roleManagement/directory/{segment}/$entity", ctx.base()),
        value,
        StatusCode::CREATED,
    ))
}

/// Graph's enumeration values, which it takes in any case and answers in camelCase.
const ACTIONS: [&str; 10] = [
    "adminAssign",
    "adminUpdate",
    "adminRemove",
    "selfActivate",
    "selfDeactivate",
    "adminExtend",
    "adminRenew",
    "selfExtend",
    "selfRenew",
    "unknownFutureValue",
];
const EXPIRATION_TYPES: [&str; 4] = ["notSpecified", "noExpiration", "afterDateTime", "afterDuration"];

/// `value` in the spelling `known` has for it, whatever its case (`AdminAssign` → `adminAssign`);
/// unknown values are kept as sent, for the refusal to name.
fn canonical(value: String, known: &[&str]) -> String {
    known.iter().find(|it| it.eq_ignore_ascii_case(&value)).map_or(value, |it| (*it).to_owned())
}

const REQUEST_FILTER: [&str; 6] = ["id", "principalId", "roleDefinitionId", "directoryScopeId", "status", "action"];
const SCHEDULE_FILTER: [&str; 5] =
    ["principalId", "roleDefinitionId", "directoryScopeId", "memberType", "assignmentType"];

async fn list_requests(
    ctx: GraphCtx,
    kind: ScheduleKind,
    (query, path): (super::GraphQuery, String),
    on: Option<CurrentUser>,
) -> Result<Response, GraphError> {
    let (segment, type_name) = kind_of(kind);
    let items = ctx.state.app.list_schedule_requests(&ctx.caller, kind, on).await?;
    let context = match on {
        None => format!("{}/$metadata#roleManagement/directory/{segment}", ctx.base()),
        Some(_) => format!("{}/$metadata#Collection({type_name})", ctx.base()),
    };
    let items = items.iter().map(request_json).collect();
    answer(&ctx, (&query, &path), items, type_name, &REQUEST_FILTER, context).await
}

async fn get_request(
    ctx: GraphCtx,
    kind: ScheduleKind,
    key: String,
    (query, path): (super::GraphQuery, String),
) -> Result<Response, GraphError> {
    if let Some(rest) = key.strip_prefix("filterByCurrentUser(on=") {
        let on = current_user(&ctx, rest, kind == ScheduleKind::Assignment)?;
        return list_requests(ctx, kind, (query, path), Some(on)).await;
    }
    allow_only(&ctx, &query, &["$expand"])?;
    let (segment, type_name) = kind_of(kind);
    let wanted = parse_expand(&ctx, query.raw.expand.as_deref(), type_name)?;
    let it = ctx.state.app.get_schedule_request(&ctx.caller, kind, &key).await?;
    let value = expand(&ctx, request_json(&it), &wanted).await?;
    Ok(entity(format!("{}/$metadata#roleManagement/directory/{segment}/$entity", ctx.base()), value, StatusCode::OK))
}

async fn cancel_request(ctx: GraphCtx, kind: ScheduleKind, id: String) -> Result<Response, GraphError> {
    ctx.state.app.cancel_schedule_request(&ctx.caller, kind, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Which schedule collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    EligibilitySchedules,
    EligibilityInstances,
    AssignmentSchedules,
    AssignmentInstances,
}

impl Listing {
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Listing::EligibilitySchedules => ("roleEligibilitySchedules", "unifiedRoleEligibilitySchedule"),
            Listing::EligibilityInstances => {
                ("roleEligibilityScheduleInstances", "unifiedRoleEligibilityScheduleInstance")
            }
            Listing::AssignmentSchedules => ("roleAssignmentSchedules", "unifiedRoleAssignmentSchedule"),
            Listing::AssignmentInstances => {
                ("roleAssignmentScheduleInstances", "unifiedRoleAssignmentScheduleInstance")
            }
        }
    }
}

async fn schedule_items(ctx: &GraphCtx, which: Listing, mine: bool) -> Result<Vec<Value>, GraphError> {
    let now = ctx.state.app.now();
    let viewer = if mine { Some(ctx.caller.id().to_string()) } else { None };
    let viewer = viewer.as_deref();
    Ok(match which {
        Listing::EligibilitySchedules | Listing::EligibilityInstances => {
            let items = ctx.state.app.list_eligibility_schedules(&ctx.caller, mine).await?;
            items
                .iter()
                .filter(|it| which == Listing::EligibilitySchedules || it.window().holds_at(now))
                .map(|it| {
                    if which == Listing::EligibilitySchedules {
                        eligibility_schedule(it, viewer)
                    } else {
                        eligibility_instance(it, viewer)
                    }
                })
                .collect()
        }
        Listing::AssignmentSchedules | Listing::AssignmentInstances => {
            let items = ctx.state.app.list_assignment_schedules(&ctx.caller, mine).await?;
            items
                .iter()
                .filter(|it| which == Listing::AssignmentSchedules || it.window().holds_at(now))
                .map(|it| {
                    if which == Listing::AssignmentSchedules {
                        assignment_schedule(it)
                    } else {
                        assignment_instance(it)
                    }
                })
                .collect()
        }
    })
}

async fn list_schedules(
    ctx: GraphCtx,
    which: Listing,
    (query, path): (super::GraphQuery, String),
) -> Result<Response, GraphError> {
    let (segment, type_name) = which.names();
    let items = schedule_items(&ctx, which, false).await?;
    let context = format!("{}/$metadata#roleManagement/directory/{segment}", ctx.base());
    answer(&ctx, (&query, &path), items, type_name, &SCHEDULE_FILTER, context).await
}

async fn get_schedule(
    ctx: GraphCtx,
    which: Listing,
    key: String,
    (query, path): (super::GraphQuery, String),
) -> Result<Response, GraphError> {
    let (segment, type_name) = which.names();
    if let Some(rest) = key.strip_prefix("filterByCurrentUser(on=") {
        current_user(&ctx, rest, false)?;
        let items = schedule_items(&ctx, which, true).await?;
        let context = format!("{}/$metadata#Collection({type_name})", ctx.base());
        return answer(&ctx, (&query, &path), items, type_name, &SCHEDULE_FILTER, context).await;
    }
    allow_only(&ctx, &query, &["$expand"])?;
    let wanted = parse_expand(&ctx, query.raw.expand.as_deref(), type_name)?;
    let item = schedule_items(&ctx, which, false)
        .await?
        .into_iter()
        .find(|it| it["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(&key)))
        .ok_or_else(|| GraphError::from(AppError::NotFound(key.clone())))?;
    let value = expand(&ctx, item, &wanted).await?;
    Ok(entity(format!("{}/$metadata#roleManagement/directory/{segment}/$entity", ctx.base()), value, StatusCode::OK))
}

fn beta_only(ctx: &GraphCtx) -> Result<(), GraphError> {
    match ctx.version {
        crate::Version::Beta => Ok(()),
        crate::Version::V1 => Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Resource not found for the segment 'roleAssignmentApprovals'. Approvals are under /beta.",
            &ctx.ids,
        )),
    }
}

fn approval_json(approval: &keyward_app::Approval) -> Value {
    let request = &approval.request;
    let review = request.review.as_ref();
    let step = json!({
        "id": request.id,
        "displayName": null,
        "assignedToMe": approval.assigned_to_me,
        "justification": review.and_then(|it| it.justification.clone()),
        "reviewResult": review.map_or("NotReviewed", |it| if it.approved { "Approve" } else { "Deny" }),
        "reviewedBy": review.map_or(Value::Null, |it| json!({"id": it.by.as_str(), "displayName": null})),
        "reviewedDateTime": time_or_null(review.map(|it| it.at)),
        "status": approval.status,
    });
    json!({"id": request.id, "steps": [step]})
}

async fn get_approval(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    beta_only(&ctx)?;
    let approval = ctx.state.app.get_approval(&ctx.caller, &id).await?;
    Ok(entity(
        format!("{}/$metadata#roleManagement/directory/roleAssignmentApprovals/$entity", ctx.base()),
        approval_json(&approval),
        StatusCode::OK,
    ))
}

async fn list_approval_steps(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    beta_only(&ctx)?;
    let approval = ctx.state.app.get_approval(&ctx.caller, &id).await?;
    let steps = approval_json(&approval)["steps"].as_array().cloned().unwrap_or_default();
    Ok(collection(
        format!("{}/$metadata#roleManagement/directory/roleAssignmentApprovals('{id}')/steps", ctx.base()),
        steps,
        None,
        None,
    ))
}

async fn get_approval_step(ctx: GraphCtx, Path((id, step)): Path<(String, String)>) -> Result<Response, GraphError> {
    beta_only(&ctx)?;
    let approval = ctx.state.app.get_approval(&ctx.caller, &id).await?;
    if !step.eq_ignore_ascii_case(&approval.request.id) {
        return Err(AppError::NotFound(step).into());
    }
    let value = approval_json(&approval)["steps"][0].clone();
    Ok(entity(
        format!("{}/$metadata#roleManagement/directory/roleAssignmentApprovals('{id}')/steps/$entity", ctx.base()),
        value,
        StatusCode::OK,
    ))
}

/// `PATCH /beta/roleManagement/directory/roleAssignmentApprovals/{id}/steps/{id}`:
/// `{"reviewResult": "Approve" | "Deny", "justification": "…"}`, 204.
async fn review_step(
    ctx: GraphCtx,
    Path((id, step)): Path<(String, String)>,
    Body(body): Body,
) -> Result<Response, GraphError> {
    beta_only(&ctx)?;
    if !step.eq_ignore_ascii_case(&id) {
        return Err(AppError::NotFound(step).into());
    }
    let object = body.as_object().ok_or_else(|| bad(&ctx, "The request body must be a JSON object."))?;
    if let Some(key) =
        object.keys().find(|it| !["reviewResult", "justification"].contains(&it.as_str()) && !it.starts_with('@'))
    {
        return Err(bad(&ctx, format!("Property '{key}' does not exist on type 'microsoft.graph.approvalStep'.")));
    }
    let result = object.get("reviewResult").and_then(Value::as_str).map(str::to_ascii_lowercase);
    let approve = match result.as_deref() {
        Some("approve") => true,
        Some("deny") => false,
        _ => return Err(bad(&ctx, "reviewResult must be 'Approve' or 'Deny'.")),
    };
    let justification = text(object, "justification")?;
    ctx.state.app.review_activation(&ctx.caller, &id, approve, justification).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const READ: &str =
        "microsoft.directory/roleAssignments/allProperties/read (filterByCurrentUser: any signed-in user)";
    const WRITE: &str =
        "microsoft.directory/roleAssignments/allProperties/allTasks (selfActivate, selfDeactivate: the eligible user)";
    let mut api = api;
    for kind in [ScheduleKind::Assignment, ScheduleKind::Eligibility] {
        let (path, one, cancel, summary_list, summary_create) = match kind {
            ScheduleKind::Assignment => (
                "/roleManagement/directory/roleAssignmentScheduleRequests",
                "/roleManagement/directory/roleAssignmentScheduleRequests/{id}",
                "/roleManagement/directory/roleAssignmentScheduleRequests/{id}/cancel",
                "List requests on active assignments and activations ($filter eq on principalId, roleDefinitionId, directoryScopeId, status, action; $expand)",
                "Activate (selfActivate) or deactivate a role you are eligible for, or assign, change or remove an active assignment",
            ),
            ScheduleKind::Eligibility => (
                "/roleManagement/directory/roleEligibilityScheduleRequests",
                "/roleManagement/directory/roleEligibilityScheduleRequests/{id}",
                "/roleManagement/directory/roleEligibilityScheduleRequests/{id}/cancel",
                "List requests on eligibility ($filter eq on principalId, roleDefinitionId, directoryScopeId, status, action; $expand)",
                "Make a principal eligible for a role, change the eligibility's schedule or remove it (Privileged Role Administrator)",
            ),
        };
        api = api
            .route(
                path,
                get(move |ctx, Query(query, path)| list_requests(ctx, kind, (query, path), None))
                    .post(move |ctx, Body(body)| create_request(ctx, kind, body)),
                Op::get(ROLES, summary_list, READ, "ScheduleRequestCollection").with_options(&COLLECTION_OPTIONS),
            )
            .document(path, Op::post(ROLES, summary_create, WRITE, "ScheduleRequest", 201, "ScheduleRequest"))
            .route(
                one,
                get(move |ctx, Path(key): Path<String>, Query(query, path)| get_request(ctx, kind, key, (query, path))),
                Op::get(
                    ROLES,
                    "Get a request, or filterByCurrentUser(on='principal'|'approver')",
                    READ,
                    "ScheduleRequest",
                )
                .with_id()
                .with_options(&COLLECTION_OPTIONS),
            )
            .route(
                cancel,
                post(move |ctx, Path(id): Path<String>| cancel_request(ctx, kind, id)),
                Op::post(
                    ROLES,
                    "Cancel a request that waits for approval (its requester)",
                    WRITE,
                    "Empty",
                    204,
                    "Empty",
                )
                .with_id(),
            );
    }
    for which in [
        Listing::EligibilitySchedules,
        Listing::EligibilityInstances,
        Listing::AssignmentSchedules,
        Listing::AssignmentInstances,
    ] {
        let (path, one, summary) = match which {
            Listing::EligibilitySchedules => (
                "/roleManagement/directory/roleEligibilitySchedules",
                "/roleManagement/directory/roleEligibilitySchedules/{id}",
                "Eligibilities that have not ended",
            ),
            Listing::EligibilityInstances => (
                "/roleManagement/directory/roleEligibilityScheduleInstances",
                "/roleManagement/directory/roleEligibilityScheduleInstances/{id}",
                "Eligibilities that hold now",
            ),
            Listing::AssignmentSchedules => (
                "/roleManagement/directory/roleAssignmentSchedules",
                "/roleManagement/directory/roleAssignmentSchedules/{id}",
                "Active assignments (Assigned and Activated) that have not ended",
            ),
            Listing::AssignmentInstances => (
                "/roleManagement/directory/roleAssignmentScheduleInstances",
                "/roleManagement/directory/roleAssignmentScheduleInstances/{id}",
                "Active assignments that hold now, with their start and end",
            ),
        };
        api = api
            .route(
                path,
                get(move |ctx, Query(query, path)| list_schedules(ctx, which, (query, path))),
                Op::get(ROLES, summary, READ, "ScheduleCollection").with_options(&COLLECTION_OPTIONS),
            )
            .route(
                one,
                get(move |ctx, Path(key): Path<String>, Query(query, path)| {
                    get_schedule(ctx, which, key, (query, path))
                }),
                Op::get(ROLES, "Get one, or filterByCurrentUser(on='principal')", READ, "Schedule")
                    .with_id()
                    .with_options(&COLLECTION_OPTIONS),
            );
    }
    api.route(
        "/roleManagement/directory/roleAssignmentApprovals/{id}",
        get(get_approval),
        Op::get(
            ROLES,
            "Beta: an activation's approval, with its one step",
            "(requester, approver, or roleAssignments read)",
            "Approval",
        )
        .with_id()
        .beta_only(),
    )
    .route(
        "/roleManagement/directory/roleAssignmentApprovals/{id}/steps",
        get(list_approval_steps),
        Op::get(
            ROLES,
            "Beta: an approval's steps",
            "(requester, approver, or roleAssignments read)",
            "ApprovalStepCollection",
        )
        .with_id()
        .beta_only(),
    )
    .route(
        "/roleManagement/directory/roleAssignmentApprovals/{id}/steps/{stepId}",
        get(get_approval_step).patch(review_step),
        Op::get(ROLES, "Beta: an approval step", "(requester, approver, or roleAssignments read)", "ApprovalStep")
            .with_id()
            .with_param("stepId")
            .beta_only(),
    )
    .document(
        "/roleManagement/directory/roleAssignmentApprovals/{id}/steps/{stepId}",
        Op::patch(
            ROLES,
            "Beta: approve or deny ({reviewResult: Approve|Deny, justification}); never your own request",
            "(an approver of the role)",
            "ApprovalStepReview",
        )
        .with_id()
        .with_param("stepId")
        .beta_only(),
    )
}
