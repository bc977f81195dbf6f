//! The Graph-compatible API: users, groups, memberships, the organization.
//!
//! Each handler's doc comment names the resource action it needs; the app layer asks the core's
//! decision function for exactly that action.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use serde_json::Value;

use keyward_app::Relation;

use crate::AppState;
use crate::context::{GraphCtx, GraphQuery, collection, entity, request_ids};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use crate::shape;

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
        Ok(Query(query, path))
    }
}

/// A JSON request body; anything unparsable is refused with Graph's message.
pub struct Body(pub Value);

impl FromRequest<AppState> for Body {
    type Rejection = GraphError;

    async fn from_request(request: Request, state: &AppState) -> Result<Body, GraphError> {
        let (parts, body) = request.into_parts();
        let ids = request_ids(&parts);
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

/// The body of an action without parameters: none, or a JSON object (whose properties are
/// refused, as the action takes none). Anything else is a Graph `400`.
pub struct NoParameters;

impl FromRequest<AppState> for NoParameters {
    type Rejection = GraphError;

    async fn from_request(request: Request, state: &AppState) -> Result<NoParameters, GraphError> {
        let (parts, body) = request.into_parts();
        let ids = request_ids(&parts);
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|_| GraphError::bad_request("The request body could not be read.", &ids))?;
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

fn select_suffix(select: Option<&[&str]>) -> String {
    select.map_or_else(String::new, |it| format!("({})", it.join(",")))
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn next_link(ctx: &GraphCtx, query: &GraphQuery, path: &str, skiptoken: Option<String>) -> Option<String> {
    skiptoken.map(|token| query.next_link(&ctx.state.app.config().public_url, path, &token))
}

/// `GET /users` — `microsoft.directory/users/standard/read`.
async fn list_users(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    let page = ctx.state.app.list_users(&ctx.caller, &query.raw).await?;
    let select = page.select.as_deref();
    let items = page.items.iter().map(|it| shape::user(it, select, ctx.version)).collect();
    let context = format!("{}/$metadata#users{}", ctx.base(), select_suffix(select));
    Ok(collection(context, items, page.count, next_link(&ctx, &query, &path, page.skiptoken)))
}

/// `GET /users/$count` and `GET /groups/$count` — need `ConsistencyLevel: eventual`, as in Graph.
async fn count(is_users: bool, ctx: GraphCtx, Query(mut query, _): Query) -> Result<Response, GraphError> {
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

/// Relationship collections page with `$top` and `$skiptoken` only; other options are refused
/// rather than silently ignored.
fn only_paging(ctx: &GraphCtx, query: &GraphQuery) -> Result<(), GraphError> {
    let raw = &query.raw;
    let refused = [
        ("$filter", raw.filter.is_some()),
        ("$select", raw.select.is_some()),
        ("$orderby", raw.orderby.is_some()),
        ("$search", raw.search.is_some()),
        ("$expand", raw.expand.is_some()),
        ("$count", raw.count.is_some()),
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

/// `GET /users/{id | userPrincipalName}` — `microsoft.directory/users/standard/read`.
async fn get_user(ctx: GraphCtx, Path(key): Path<String>, Query(query, _): Query) -> Result<Response, GraphError> {
    let select = ctx.state.app.user_select(query.raw.select.as_deref())?;
    let user = ctx.state.app.get_user(&ctx.caller, &key).await?;
    let context = format!("{}/$metadata#users{}/$entity", ctx.base(), select_suffix(select.as_deref()));
    Ok(entity(context, shape::user(&user, select.as_deref(), ctx.version), StatusCode::OK))
}

/// `GET /me` — the signed-in user.
async fn get_me(ctx: GraphCtx, Query(query, _): Query) -> Result<Response, GraphError> {
    let select = ctx.state.app.user_select(query.raw.select.as_deref())?;
    let me = ctx.state.app.me(&ctx.caller)?;
    let context = format!("{}/$metadata#users{}/$entity", ctx.base(), select_suffix(select.as_deref()));
    Ok(entity(context, shape::user(&me, select.as_deref(), ctx.version), StatusCode::OK))
}

/// `POST /users` — `microsoft.directory/users/create`.
async fn create_user(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let draft = shape::user_draft(&body).map_err(|message| GraphError::bad_request(message, &ctx.ids))?;
    let user = ctx.state.app.create_user(&ctx.caller, draft).await?;
    let context = format!("{}/$metadata#users/$entity", ctx.base());
    Ok(entity(context, shape::user(&user, None, ctx.version), StatusCode::CREATED))
}

/// `PATCH /users/{id}` — `users/basic/update`, plus `users/password/update`,
/// `users/userPrincipalName/update`, `users/enable` or `users/disable` for those properties.
async fn update_user(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let patch = shape::user_patch(&body).map_err(|message| GraphError::bad_request(message, &ctx.ids))?;
    ctx.state.app.update_user(&ctx.caller, &key, patch).await?;
    Ok(no_content())
}

/// `DELETE /users/{id}` — `microsoft.directory/users/delete`.
async fn delete_user(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.delete_user(&ctx.caller, &key).await?;
    Ok(no_content())
}

/// `GET /users/{id}/memberOf` — `microsoft.directory/users/memberOf/read`.
async fn member_of(ctx: GraphCtx, Path(key): Path<String>, Query(query, path): Query) -> Result<Response, GraphError> {
    only_paging(&ctx, &query)?;
    let page =
        ctx.state.app.member_of(&ctx.caller, &key, query.raw.top.as_deref(), query.raw.skiptoken.as_deref()).await?;
    let items = page.items.iter().map(|it| shape::directory_object(it, ctx.version)).collect();
    let context = format!("{}/$metadata#directoryObjects", ctx.base());
    Ok(collection(context, items, None, next_link(&ctx, &query, &path, page.skiptoken)))
}

/// `GET /groups` — `microsoft.directory/groups/standard/read`.
async fn list_groups(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    let page = ctx.state.app.list_groups(&ctx.caller, &query.raw).await?;
    let select = page.select.as_deref();
    let items = page.items.iter().map(|it| shape::group(it, select, ctx.version)).collect();
    let context = format!("{}/$metadata#groups{}", ctx.base(), select_suffix(select));
    Ok(collection(context, items, page.count, next_link(&ctx, &query, &path, page.skiptoken)))
}

/// `GET /groups/{id}` — `microsoft.directory/groups/standard/read`.
async fn get_group(ctx: GraphCtx, Path(key): Path<String>, Query(query, _): Query) -> Result<Response, GraphError> {
    let select = ctx.state.app.group_select(query.raw.select.as_deref())?;
    let group = ctx.state.app.get_group(&ctx.caller, &key).await?;
    let context = format!("{}/$metadata#groups{}/$entity", ctx.base(), select_suffix(select.as_deref()));
    Ok(entity(context, shape::group(&group, select.as_deref(), ctx.version), StatusCode::OK))
}

/// `POST /groups` — `microsoft.directory/groups/create`, or
/// `microsoft.directory/groupsAssignableToRoles/create` for a role-assignable group.
async fn create_group(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let draft = shape::group_draft(&body).map_err(|message| GraphError::bad_request(message, &ctx.ids))?;
    let group = ctx.state.app.create_group(&ctx.caller, draft).await?;
    let context = format!("{}/$metadata#groups/$entity", ctx.base());
    Ok(entity(context, shape::group(&group, None, ctx.version), StatusCode::CREATED))
}

/// `PATCH /groups/{id}` — `microsoft.directory/groups/basic/update` (role-assignable groups:
/// `groupsAssignableToRoles/allProperties/update`).
async fn update_group(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let patch = shape::group_patch(&body).map_err(|message| GraphError::bad_request(message, &ctx.ids))?;
    ctx.state.app.update_group(&ctx.caller, &key, patch).await?;
    Ok(no_content())
}

/// `DELETE /groups/{id}` — `microsoft.directory/groups/delete` (role-assignable groups:
/// `groupsAssignableToRoles/delete`).
async fn delete_group(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.delete_group(&ctx.caller, &key).await?;
    Ok(no_content())
}

/// `GET /groups/{id}/members` — `microsoft.directory/groups/members/read`;
/// `GET /groups/{id}/owners` — `microsoft.directory/groups/owners/read`.
async fn list_relation(
    relation: Relation,
    ctx: GraphCtx,
    Path(key): Path<String>,
    Query(query, path): Query,
) -> Result<Response, GraphError> {
    only_paging(&ctx, &query)?;
    let page = ctx
        .state
        .app
        .list_group_relation(&ctx.caller, relation, &key, query.raw.top.as_deref(), query.raw.skiptoken.as_deref())
        .await?;
    let items = page.items.iter().map(|it| shape::directory_object(it, ctx.version)).collect();
    let context = format!("{}/$metadata#directoryObjects", ctx.base());
    Ok(collection(context, items, None, next_link(&ctx, &query, &path, page.skiptoken)))
}

/// `POST /groups/{id}/members/$ref` — `microsoft.directory/groups/members/update`;
/// `POST /groups/{id}/owners/$ref` — `microsoft.directory/groups/owners/update`.
async fn add_reference(
    relation: Relation,
    ctx: GraphCtx,
    Path(key): Path<String>,
    Body(body): Body,
) -> Result<Response, GraphError> {
    let object = shape::reference_id(&body).map_err(|message| GraphError::bad_request(message, &ctx.ids))?;
    ctx.state.app.add_to_group(&ctx.caller, relation, &key, &object).await?;
    Ok(no_content())
}

/// `DELETE /groups/{id}/members/{memberId}/$ref` and `DELETE /groups/{id}/owners/{ownerId}/$ref` —
/// the relation's `update` action.
async fn remove_reference(
    relation: Relation,
    ctx: GraphCtx,
    Path((key, object)): Path<(String, String)>,
) -> Result<Response, GraphError> {
    ctx.state.app.remove_from_group(&ctx.caller, relation, &key, &object).await?;
    Ok(no_content())
}

/// `GET /directoryObjects/{id}` — read of the user or group.
async fn get_directory_object(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let object = ctx.state.app.get_directory_object(&ctx.caller, &key).await?;
    let context = format!("{}/$metadata#directoryObjects/$entity", ctx.base());
    Ok(entity(context, shape::directory_object(&object, ctx.version), StatusCode::OK))
}

/// `GET /organization` — `microsoft.directory/organization/standard/read`.
async fn organization(ctx: GraphCtx) -> Result<Response, GraphError> {
    let tenant = ctx.state.app.organization(&ctx.caller).await?;
    let context = format!("{}/$metadata#organization", ctx.base());
    let Value::Object(item) = shape::organization(&tenant) else {
        return Err(GraphError::bad_request("organization", &ctx.ids));
    };
    Ok(collection(context, vec![item], None, None))
}

/// Registers every Graph route once; the caller nests the result under `/v1.0` and `/beta`.
pub fn routes(api: Api) -> Api {
    const USERS: &str = "users";
    const GROUPS: &str = "groups";
    const ORG: &str = "organization";
    api.route("/me", get(get_me), Op::get(USERS, "Get the signed-in user", "(self)", "User"))
        .route(
            "/organization",
            get(organization),
            Op::get(
                ORG,
                "List the organization",
                "microsoft.directory/organization/standard/read",
                "OrganizationCollection",
            ),
        )
        .route(
            "/users",
            get(list_users),
            Op::get(
                USERS,
                "List users ($filter, $select, $top, $orderby, $count, $search, $skiptoken)",
                "microsoft.directory/users/standard/read",
                "UserCollection",
            )
            .paged(),
        )
        .route(
            "/users",
            post(create_user),
            Op::post(USERS, "Create a user", "microsoft.directory/users/create", "UserCreate", 201, "User"),
        )
        .route(
            "/users/$count",
            get(|ctx, query| count(true, ctx, query)),
            Op::get(
                USERS,
                "Count users (needs ConsistencyLevel: eventual)",
                "microsoft.directory/users/standard/read",
                "Count",
            ),
        )
        .route(
            "/users/{id}",
            get(get_user),
            Op::get(USERS, "Get a user by id or userPrincipalName", "microsoft.directory/users/standard/read", "User")
                .with_id(),
        )
        .route(
            "/users/{id}",
            patch(update_user),
            Op::patch(
                USERS,
                "Update a user",
                "microsoft.directory/users/basic/update (+password/update, userPrincipalName/update, enable, disable)",
                "UserUpdate",
            )
            .with_id(),
        )
        .route(
            "/users/{id}",
            delete(delete_user),
            Op::delete(USERS, "Delete a user", "microsoft.directory/users/delete").with_id(),
        )
        .route(
            "/users/{id}/memberOf",
            get(member_of),
            Op::get(
                USERS,
                "List the groups a user is a direct member of",
                "microsoft.directory/users/memberOf/read",
                "DirectoryObjectCollection",
            )
            .with_id()
            .pages_only(),
        )
        .route(
            "/groups",
            get(list_groups),
            Op::get(GROUPS, "List groups", "microsoft.directory/groups/standard/read", "GroupCollection").paged(),
        )
        .route(
            "/groups",
            post(create_group),
            Op::post(
                GROUPS,
                "Create a group",
                "microsoft.directory/groups/create (role-assignable: groupsAssignableToRoles/create)",
                "GroupCreate",
                201,
                "Group",
            ),
        )
        .route(
            "/groups/$count",
            get(|ctx, query| count(false, ctx, query)),
            Op::get(
                GROUPS,
                "Count groups (needs ConsistencyLevel: eventual)",
                "microsoft.directory/groups/standard/read",
                "Count",
            ),
        )
        .route(
            "/groups/{id}",
            get(get_group),
            Op::get(GROUPS, "Get a group", "microsoft.directory/groups/standard/read", "Group").with_id(),
        )
        .route(
            "/groups/{id}",
            patch(update_group),
            Op::patch(GROUPS, "Update a group", "microsoft.directory/groups/basic/update", "GroupUpdate").with_id(),
        )
        .route(
            "/groups/{id}",
            delete(delete_group),
            Op::delete(GROUPS, "Delete a group", "microsoft.directory/groups/delete").with_id(),
        )
        .route(
            "/groups/{id}/members",
            get(|ctx, key, query| list_relation(Relation::Members, ctx, key, query)),
            Op::get(
                GROUPS,
                "List a group's members",
                "microsoft.directory/groups/members/read",
                "DirectoryObjectCollection",
            )
            .with_id()
            .pages_only(),
        )
        .route(
            "/groups/{id}/members/$ref",
            post(|ctx, key, body| add_reference(Relation::Members, ctx, key, body)),
            Op::post(GROUPS, "Add a member", "microsoft.directory/groups/members/update", "Reference", 204, "")
                .with_id(),
        )
        .route(
            "/groups/{id}/members/{memberId}/$ref",
            delete(|ctx, key| remove_reference(Relation::Members, ctx, key)),
            Op::delete(GROUPS, "Remove a member", "microsoft.directory/groups/members/update")
                .with_id()
                .with_param("memberId"),
        )
        .route(
            "/groups/{id}/owners",
            get(|ctx, key, query| list_relation(Relation::Owners, ctx, key, query)),
            Op::get(
                GROUPS,
                "List a group's owners",
                "microsoft.directory/groups/owners/read",
                "DirectoryObjectCollection",
            )
            .with_id()
            .pages_only(),
        )
        .route(
            "/groups/{id}/owners/$ref",
            post(|ctx, key, body| add_reference(Relation::Owners, ctx, key, body)),
            Op::post(GROUPS, "Add an owner", "microsoft.directory/groups/owners/update", "Reference", 204, "")
                .with_id(),
        )
        .route(
            "/groups/{id}/owners/{ownerId}/$ref",
            delete(|ctx, key| remove_reference(Relation::Owners, ctx, key)),
            Op::delete(GROUPS, "Remove an owner", "microsoft.directory/groups/owners/update")
                .with_id()
                .with_param("ownerId"),
        )
        .route(
            "/directoryObjects/{id}",
            get(get_directory_object),
            Op::get(
                USERS,
                "Get a directory object (user or group)",
                "users or groups standard/read",
                "DirectoryObject",
            )
            .with_id(),
        )
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
