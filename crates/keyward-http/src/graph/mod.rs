//! The Graph-compatible API, one module per resource; this module holds what they share: the
//! request extractors, paging and error helpers, and the fallbacks for unknown paths.
//!
//! Each handler's doc comment names the resource action it needs; the app layer asks the core's
//! decision function for exactly that action.

mod administrative_units;
mod applications;
mod authentication_methods;
mod batch;
mod bulk;
mod caller_verifications;
mod deleted_items;
mod delta;
pub(crate) mod directory_audits;
mod directory_objects;
mod directory_roles;
mod groups;
mod methods_policy;
mod notifications;
mod organization;
pub(crate) mod passkeys;
mod permission_grants;
mod pim;
mod policies;
mod relationships;
mod reports;
mod role_assignments;
mod role_definitions;
mod role_policies;
pub(crate) mod service_desk;
mod service_principals;
pub(crate) mod shape;
mod sign_ins;
mod user_security;
mod users;

use crate::AppState;
use crate::context::{GraphCtx, GraphQuery, request_ids};
use crate::error::GraphError;
use crate::openapi::Api;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Graph query options, decoded; refused options become Graph errors.
pub struct Query(pub GraphQuery, pub String);

impl FromRequestParts<AppState> for Query {
    type Rejection = GraphError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Query, GraphError> {
        let ids = request_ids(parts);
        let path = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.path().to_owned(), |it| it.path().to_owned());
        let query = GraphQuery::parse(parts.uri.query(), &parts.headers)
            .map_err(|message| GraphError::bad_request(message, &ids))?;
        let is_delta = || {
            let lower = path.to_ascii_lowercase();
            lower.ends_with("/delta") || lower.ends_with("/delta()")
        };
        if query.deltatoken.is_some() && !is_delta() {
            return Err(GraphError::bad_request("Query option '$deltatoken' is only for delta queries.", &ids));
        }
        Ok(Query(query, path))
    }
}

/// A `$filter` on a collection filtered in memory, checked against `resource` (unknown
/// properties and unsupported clauses get Graph's errors).
pub(crate) fn in_memory_filter(
    resource: &keyward_core::query::Resource,
    filter: Option<&str>,
) -> Result<Option<keyward_core::odata::Expr>, GraphError> {
    let Some(filter) = filter else { return Ok(None) };
    let raw = keyward_core::query::RawQuery { filter: Some(filter.to_owned()), ..Default::default() };
    Ok(keyward_core::query::plan(resource, &raw).map_err(keyward_app::AppError::from)?.filter)
}

/// A JSON request body; anything unparsable is refused with Graph's message.
pub struct Body(pub Value);

impl FromRequest<AppState> for Body {
    type Rejection = GraphError;

    async fn from_request(request: Request, state: &AppState) -> Result<Body, GraphError> {
        let (parts, body) = request.into_parts();
        let ids = request_ids(&parts);
        json_content_type(parts.headers.get(axum::http::header::CONTENT_TYPE), &ids)?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state).await.map_err(|err| {
            if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
                GraphError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    format!("The request body is larger than {} bytes.", crate::GRAPH_BODY_LIMIT),
                    &ids,
                )
            } else {
                GraphError::bad_request("The request body could not be read.", &ids)
            }
        })?;
        let value = serde_json::from_slice(&bytes).map_err(|_| {
            GraphError::bad_request(
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
                &ids,
            )
        })?;
        Ok(Body(value))
    }
}

/// The body of an action whose parameters are all optional (`resetPassword`): none is `{}`.
pub struct OptionalBody(pub Value);

impl FromRequest<AppState> for OptionalBody {
    type Rejection = GraphError;

    async fn from_request(request: Request, state: &AppState) -> Result<OptionalBody, GraphError> {
        let (bytes, ids) = body_bytes(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(Value::Object(serde_json::Map::new())));
        }
        serde_json::from_slice(&bytes).map(OptionalBody).map_err(|_| {
            GraphError::bad_request(
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
                &ids,
            )
        })
    }
}

/// A request's optional body, whole, with the request's ids for errors; a body that is there must
/// be declared JSON, as Graph wants it.
async fn body_bytes(request: Request, state: &AppState) -> Result<(Bytes, crate::context::RequestIds), GraphError> {
    let (parts, body) = request.into_parts();
    let ids = request_ids(&parts);
    let content_type = parts.headers.get(axum::http::header::CONTENT_TYPE).cloned();
    let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
        .await
        .map_err(|_| GraphError::bad_request("The request body could not be read.", &ids))?;
    if !bytes.is_empty() {
        json_content_type(content_type.as_ref(), &ids)?;
    }
    Ok((bytes, ids))
}

/// Graph reads a request body only when it is declared JSON (`application/json`, with or without
/// parameters such as `charset` or `odata.metadata`): without a `Content-Type`, or with another,
/// it answers `400` before looking at the body.
fn json_content_type(
    value: Option<&axum::http::HeaderValue>,
    ids: &crate::context::RequestIds,
) -> Result<(), GraphError> {
    let Some(value) = value else {
        return Err(GraphError::bad_request(
            "Write requests (excluding DELETE) must contain the Content-Type header declaration.",
            ids,
        ));
    };
    let media = value.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(GraphError::bad_request(
            "Entity only allows writes with a JSON Content-Type header: send Content-Type: application/json.",
            ids,
        ))
    }
}

/// The body of an action without parameters: none, or a JSON object (whose properties are
/// refused, as the action takes none). Anything else is a Graph `400`.
pub struct NoParameters;

impl FromRequest<AppState> for NoParameters {
    type Rejection = GraphError;

    async fn from_request(request: Request, state: &AppState) -> Result<NoParameters, GraphError> {
        let (bytes, ids) = body_bytes(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(NoParameters);
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(fields)) if fields.keys().all(|it| it.starts_with("@odata.")) => Ok(NoParameters),
            Ok(Value::Object(fields)) => Err(GraphError::bad_request(
                format!(
                    "Property '{}' does not exist: this action takes no parameters; send no body or {{}}.",
                    fields.keys().find(|it| !it.starts_with("@odata.")).map(String::as_str).unwrap_or_default()
                ),
                &ids,
            )),
            _ => Err(GraphError::bad_request("This action takes no parameters: send no body or {}.", &ids)),
        }
    }
}

pub(crate) fn select_suffix(select: Option<&[&str]>) -> String {
    select.map_or_else(String::new, |it| format!("({})", it.join(",")))
}

/// Related objects as an `$expand` returns them: each with its `@odata.type`, and only the
/// properties the expansion's `$select` names.
pub(crate) fn expanded(
    objects: impl IntoIterator<Item = serde_json::Map<String, Value>>,
    expand: &keyward_core::query::Expand,
) -> Value {
    Value::Array(
        objects
            .into_iter()
            .map(|mut body| {
                if let Some(names) = &expand.select {
                    body.retain(|key, _| key == "@odata.type" || names.contains(&key.as_str()));
                }
                Value::Object(body)
            })
            .collect(),
    )
}

/// A `$select` checked against `resource`'s properties (`None` without one): an unknown name is
/// Graph's `400`, never ignored.
pub(crate) fn select_for(
    resource: &keyward_core::query::Resource,
    select: Option<&str>,
) -> Result<Option<Vec<&'static str>>, GraphError> {
    let raw = keyward_core::query::RawQuery { select: select.map(str::to_owned), ..Default::default() };
    Ok(keyward_core::query::plan(resource, &raw).map_err(keyward_app::AppError::from)?.select)
}

/// Keeps only the `select`ed properties of an entity (all without a `$select`).
pub(crate) fn pick(value: Value, select: Option<&[&str]>) -> Value {
    match (value, select) {
        (Value::Object(mut map), Some(names)) => {
            map.retain(|key, _| names.contains(&key.as_str()));
            Value::Object(map)
        }
        (value, _) => value,
    }
}

pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub(crate) fn next_link(ctx: &GraphCtx, query: &GraphQuery, path: &str, skiptoken: Option<String>) -> Option<String> {
    skiptoken.map(|token| query.next_link(&ctx.state.app.config().public_url, path, &token))
}

/// `GET /users/$count` and `GET /groups/$count` — need `ConsistencyLevel: eventual`, as in Graph.
pub(crate) async fn count(is_users: bool, ctx: GraphCtx, Query(mut query, _): Query) -> Result<Response, GraphError> {
    if !query.raw.is_eventual {
        return Err(GraphError::bad_request("$count is not currently supported.", &ctx.ids));
    }
    query.raw.count = Some("true".into());
    query.raw.top = Some("1".into());
    let app = &ctx.state.app;
    let n = if is_users {
        app.list_users(&ctx.caller, &query.raw).await.map(|it| it.count)
    } else {
        app.list_groups(&ctx.caller, &query.raw).await.map(|it| it.count)
    };
    let n = n?.unwrap_or(0);
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain;charset=utf-8")], n.to_string()).into_response())
}

/// Relationship collections page with `$top` and `$skiptoken` and take `$select`
/// ([`relationship_select`]) and `$count` ([`relationship_collection`]); other options are
/// refused rather than silently ignored.
pub(crate) fn only_paging(ctx: &GraphCtx, query: &GraphQuery) -> Result<(), GraphError> {
    let raw = &query.raw;
    let refused = [
        ("$filter", raw.filter.is_some()),
        ("$orderby", raw.orderby.is_some()),
        ("$search", raw.search.is_some()),
        ("$expand", raw.expand.is_some()),
        ("$skip", raw.has_skip),
    ];
    match refused.iter().find(|(_, is_present)| *is_present) {
        Some((name, _)) => Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            format!(
                "The query option '{name}' is not supported on this relationship; page with $top and @odata.nextLink."
            ),
            &ctx.ids,
        )),
        None => Ok(()),
    }
}

/// The value of an alternate key as its route captures it: after `(appId=` comes `'value')`
/// (quotes doubled inside, as OData writes them). Anything else is Graph's `400`.
pub(crate) fn alternate_key(ctx: &GraphCtx, name: &str, captured: &str) -> Result<String, GraphError> {
    captured
        .strip_suffix(')')
        .and_then(|it| it.strip_prefix('\''))
        .and_then(|it| it.strip_suffix('\''))
        .filter(|it| !it.is_empty() && !it.replace("''", "").contains('\''))
        .map(|it| it.replace("''", "'"))
        .ok_or_else(|| bad(ctx, format!("The alternate key must be written {name}='value'.")))
}

/// The `@odata.type` a type-cast segment keeps (`microsoft.graph.user`, or `graph.user` as the
/// SDKs write it), if it is one of `types` (`user`, `group`, …); otherwise Graph's `400`.
pub(crate) fn cast_type(ctx: &GraphCtx, cast: &str, types: &[&str]) -> Result<String, GraphError> {
    let name = cast.strip_prefix("microsoft.").unwrap_or(cast);
    let name = name.strip_prefix("graph.").unwrap_or_default();
    match types.iter().find(|it| it.eq_ignore_ascii_case(name)) {
        Some(found) => Ok(format!("#microsoft.graph.{found}")),
        None => {
            let known: Vec<String> = types.iter().map(|it| format!("microsoft.graph.{it}")).collect();
            Err(bad(ctx, format!("'{cast}' is not a type this collection holds; cast to one of {}.", known.join(", "))))
        }
    }
}

/// A page of a relationship collection (`members`, `memberOf`, …): the objects of the cast's
/// type (all without a cast), with the properties `$select` names, the next link, and with
/// `$count=true` the number of objects the whole collection holds of that type (`related` of the
/// object `key`).
pub(crate) async fn relationship_collection(
    ctx: &GraphCtx,
    query: &GraphQuery,
    path: &str,
    page: (Vec<Value>, Option<String>),
    cast: Option<&str>,
    (related, key): (keyward_app::Related, &str),
) -> Result<Response, GraphError> {
    let (mut items, skiptoken) = page;
    let count = match wants_count(ctx, query)? {
        true => Some(ctx.state.app.count_related(&ctx.caller, related, key, cast_name(cast)).await?),
        false => None,
    };
    if let Some(odata_type) = cast {
        items.retain(|it| it["@odata.type"] == odata_type);
    }
    relationship_select(query, &mut items)?;
    let context = format!("{}/$metadata#directoryObjects", ctx.base());
    Ok(crate::context::collection(context, items, count, next_link(ctx, query, path, skiptoken)))
}

/// The Graph type name of a cast's `@odata.type` (`#microsoft.graph.user` is `user`).
fn cast_name(cast: Option<&str>) -> Option<&str> {
    cast.map(|it| it.strip_prefix("#microsoft.graph.").unwrap_or(it))
}

/// Whether a relationship read asks for `@odata.count`: `$count=true`, which needs the header
/// `ConsistencyLevel: eventual` as in Graph.
fn wants_count(ctx: &GraphCtx, query: &GraphQuery) -> Result<bool, GraphError> {
    match query.raw.count.as_deref().map(str::trim) {
        None => Ok(false),
        Some(it) if it.eq_ignore_ascii_case("false") => Ok(false),
        Some(it) if it.eq_ignore_ascii_case("true") && query.raw.is_eventual => Ok(true),
        Some(it) if it.eq_ignore_ascii_case("true") => {
            Err(bad(ctx, "$count on a relationship needs the request header ConsistencyLevel: eventual."))
        }
        Some(other) => Err(bad(ctx, format!("Invalid $count value '{other}'. Use true or false."))),
    }
}

/// `GET …/{relationship}/$count` (and `…/{relationship}/{cast}/$count`): the number of objects, as
/// text; needs `ConsistencyLevel: eventual`, as in Graph.
pub(crate) async fn relationship_count(
    ctx: &GraphCtx,
    query: &GraphQuery,
    (related, key): (keyward_app::Related, &str),
    cast: Option<&str>,
) -> Result<Response, GraphError> {
    if !query.raw.is_eventual {
        return Err(GraphError::bad_request("$count is not currently supported.", &ctx.ids));
    }
    let n = ctx.state.app.count_related(&ctx.caller, related, key, cast_name(cast)).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain;charset=utf-8")], n.to_string()).into_response())
}

/// A relationship page's objects with only the properties `$select` names (and `@odata.type`).
fn relationship_select(query: &GraphQuery, items: &mut [Value]) -> Result<(), GraphError> {
    let Some(list) = query.raw.select.as_deref() else { return Ok(()) };
    let names = keyward_core::query::parse_object_select(list).map_err(keyward_app::AppError::from)?;
    for item in items {
        if let Value::Object(map) = item {
            map.retain(|key, _| key == "@odata.type" || names.contains(&key.as_str()));
        }
    }
    Ok(())
}

pub(crate) fn bad(ctx: &GraphCtx, message: impl Into<String>) -> GraphError {
    GraphError::bad_request(message, &ctx.ids)
}

pub(crate) fn unsupported(ctx: &GraphCtx, message: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message, &ctx.ids)
}

/// Only these options are honoured here; others are refused rather than ignored.
pub(crate) fn allow_only(ctx: &GraphCtx, query: &GraphQuery, allowed: &[&str]) -> Result<(), GraphError> {
    let raw = &query.raw;
    let present = [
        ("$filter", raw.filter.is_some()),
        ("$select", raw.select.is_some()),
        ("$orderby", raw.orderby.is_some()),
        ("$search", raw.search.is_some()),
        ("$expand", raw.expand.is_some()),
        ("$count", raw.count.is_some()),
        ("$skip", raw.has_skip),
        ("$top", raw.top.is_some()),
        ("$skiptoken", raw.skiptoken.is_some()),
    ];
    match present.iter().find(|(name, is_present)| *is_present && !allowed.contains(name)) {
        Some((name, _)) => {
            Err(unsupported(ctx, format!("The query option '{name}' is not supported on this resource.")))
        }
        None => Ok(()),
    }
}

/// Unknown Graph paths: Graph's `BadRequest` naming the segment, after authentication (a request
/// without a valid token gets 401 first, as everywhere under the API).
pub async fn unknown_segment(ctx: GraphCtx, OriginalUri(uri): OriginalUri) -> GraphError {
    let segment = uri.path().trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_owned();
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("Resource not found for the segment '{segment}'."),
        &ctx.ids,
    )
}

/// A method the path does not support, after authentication.
pub async fn method_not_allowed(ctx: GraphCtx, method: axum::http::Method) -> GraphError {
    GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        format!("Specified HTTP method '{method}' is not allowed for the request target."),
        &ctx.ids,
    )
}

/// Every Graph resource, each registering its own routes (the caller nests the result under
/// `/v1.0` and `/beta`).
const RESOURCES: [fn(Api) -> Api; 29] = [
    users::routes,
    relationships::routes,
    delta::routes,
    groups::routes,
    directory_objects::routes,
    deleted_items::routes,
    organization::routes,
    role_definitions::routes,
    role_assignments::routes,
    pim::routes,
    role_policies::routes,
    directory_roles::routes,
    administrative_units::routes,
    service_principals::routes,
    applications::routes,
    permission_grants::routes,
    authentication_methods::routes,
    user_security::routes,
    policies::routes,
    methods_policy::routes,
    passkeys::routes,
    directory_audits::routes,
    sign_ins::routes,
    reports::routes,
    notifications::routes,
    service_desk::routes,
    bulk::routes,
    caller_verifications::routes,
    batch::routes,
];

/// Registers every Graph route once.
pub fn routes(api: Api) -> Api {
    RESOURCES.iter().fold(api, |api, register| register(api))
}
