//! `/groups`, their members and owners.

use super::{Body, Query, count, expanded, next_link, no_content, only_paging, select_suffix, shape};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, patch, post};
use keyward_app::{AppError, Related, Relation};
use keyward_core::directory::Group;
use keyward_core::query;
use serde_json::Value;

/// Groups in Graph's shape, with their members or owners (first 20) when `$expand` names them
/// (`microsoft.directory/groups/members/read` or `owners/read`).
async fn groups_json(
    ctx: &GraphCtx,
    groups: &[Group],
    select: Option<&[&'static str]>,
    expand: Option<&query::Expand>,
) -> Result<Vec<Value>, GraphError> {
    let mut res = Vec::with_capacity(groups.len());
    for group in groups {
        let mut body = shape::group(group, select, ctx.version);
        if let Some(expand) = expand {
            let relation = if expand.property == "owners" { Relation::Owners } else { Relation::Members };
            let limit = query::EXPAND_LIMIT.to_string();
            let page =
                ctx.state.app.list_group_relation(&ctx.caller, relation, group.id.as_str(), Some(&limit), None).await?;
            let objects = page.items.iter().map(|it| shape::directory_object(it, ctx.version));
            body.insert(expand.property.into(), expanded(objects, expand));
        }
        res.push(Value::Object(body));
    }
    Ok(res)
}

/// `GET /groups` — `microsoft.directory/groups/standard/read`.
async fn list_groups(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    let page = ctx.state.app.list_groups(&ctx.caller, &query.raw).await?;
    let select = page.select.as_deref();
    let items = groups_json(&ctx, &page.items, select, page.expand.as_ref()).await?;
    let context = format!("{}/$metadata#groups{}", ctx.base(), select_suffix(select));
    Ok(collection(context, items, page.count, next_link(&ctx, &query, &path, page.skiptoken)))
}

/// `GET /groups/{id}` — `microsoft.directory/groups/standard/read`.
async fn get_group(ctx: GraphCtx, Path(key): Path<String>, Query(query, _): Query) -> Result<Response, GraphError> {
    let select = ctx.state.app.group_select(query.raw.select.as_deref())?;
    let expand = query::parse_expand(&query::GROUP, query.raw.expand.as_deref()).map_err(AppError::from)?;
    let group = ctx.state.app.get_group(&ctx.caller, &key).await?;
    let context = format!("{}/$metadata#groups{}/$entity", ctx.base(), select_suffix(select.as_deref()));
    let body = groups_json(&ctx, std::slice::from_ref(&group), select.as_deref(), expand.as_ref()).await?.remove(0);
    Ok(entity(context, body, StatusCode::OK))
}

/// Takes `name` (`members@odata.bind`, `owners@odata.bind`) out of `body`: the ids of its URLs.
fn bound(ctx: &GraphCtx, body: &mut serde_json::Value, name: &str) -> Result<Vec<String>, GraphError> {
    let Some(value) = body.as_object_mut().and_then(|it| it.remove(name)) else { return Ok(Vec::new()) };
    let invalid = || {
        GraphError::bad_request(
            format!(
                "'{name}' must be a list of object URLs such as \"https://graph.microsoft.com/v1.0/users/{{id}}\"."
            ),
            &ctx.ids,
        )
    };
    let urls = value.as_array().ok_or_else(invalid)?;
    urls.iter()
        .map(|url| shape::reference_id(&serde_json::json!({ "@odata.id": url })).map_err(|_| invalid()))
        .collect()
}

/// `POST /groups` — `microsoft.directory/groups/create`, or
/// `microsoft.directory/groupsAssignableToRoles/create` for a role-assignable group.
async fn create_group(ctx: GraphCtx, Body(mut body): Body) -> Result<Response, GraphError> {
    let members = bound(&ctx, &mut body, "members@odata.bind")?;
    let owners = bound(&ctx, &mut body, "owners@odata.bind")?;
    let draft = shape::group_draft(&body).map_err(|message| GraphError::bad_request(message, &ctx.ids))?;
    let group = ctx.state.app.create_group_with(&ctx.caller, draft, &members, &owners).await?;
    let context = format!("{}/$metadata#groups/$entity", ctx.base());
    Ok(entity(context, shape::group(&group, None, ctx.version), StatusCode::CREATED))
}

/// `PATCH /groups/{id}` — `microsoft.directory/groups/basic/update` (role-assignable groups:
/// `groupsAssignableToRoles/allProperties/update`).
async fn update_group(ctx: GraphCtx, Path(key): Path<String>, Body(mut body): Body) -> Result<Response, GraphError> {
    // "Add multiple members to a group in a single request", as Graph documents it.
    let members = bound(&ctx, &mut body, "members@odata.bind")?;
    let owners = bound(&ctx, &mut body, "owners@odata.bind")?;
    let patch = shape::group_patch(&body).map_err(|message| GraphError::bad_request(message, &ctx.ids))?;
    ctx.state.app.update_group_with(&ctx.caller, &key, patch, &members, &owners).await?;
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
    query: Query,
) -> Result<Response, GraphError> {
    relation_page(relation, ctx, key, None, query).await
}

async fn relation_page(
    relation: Relation,
    ctx: GraphCtx,
    key: String,
    cast: Option<String>,
    Query(query, path): Query,
) -> Result<Response, GraphError> {
    only_paging(&ctx, &query)?;
    let page = ctx
        .state
        .app
        .list_group_relation(&ctx.caller, relation, &key, query.raw.top.as_deref(), query.raw.skiptoken.as_deref())
        .await?;
    let items = page.items.iter().map(|it| Value::Object(shape::directory_object(it, ctx.version))).collect();
    let related = (Related::Group(relation), key.as_str());
    super::relationship_collection(&ctx, &query, &path, (items, page.skiptoken), cast.as_deref(), related).await
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

/// `DELETE /groups/{id}/members/$ref?$id={url}` (and owners): the form Kiota's SDKs write,
/// the object named by its URL in `$id`.
async fn remove_reference_by_url(
    relation: Relation,
    ctx: GraphCtx,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, GraphError> {
    let segment = if relation == Relation::Members { "members" } else { "owners" };
    let object = shape::reference_in_query(query.as_deref(), &format!("/groups/{{id}}/{segment}/{{objectId}}/$ref"))
        .map_err(|message| GraphError::bad_request(message, &ctx.ids))?;
    ctx.state.app.remove_from_group(&ctx.caller, relation, &key, &object).await?;
    Ok(no_content())
}

/// The type casts of a group's members, in Graph's spelling and the SDKs' (`graph.user`), with
/// the `@odata.type` each keeps.
const MEMBER_CASTS: [(&str, &str); 6] = [
    ("/groups/{id}/members/microsoft.graph.user", "#microsoft.graph.user"),
    ("/groups/{id}/members/graph.user", "#microsoft.graph.user"),
    ("/groups/{id}/members/microsoft.graph.group", "#microsoft.graph.group"),
    ("/groups/{id}/members/graph.group", "#microsoft.graph.group"),
    ("/groups/{id}/members/microsoft.graph.servicePrincipal", "#microsoft.graph.servicePrincipal"),
    ("/groups/{id}/members/graph.servicePrincipal", "#microsoft.graph.servicePrincipal"),
];

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    let api = MEMBER_CASTS.into_iter().fold(api, |api, (path, odata_type)| {
        api.route(
            path,
            get(move |ctx, Path(key): Path<String>, query| {
                relation_page(Relation::Members, ctx, key, Some(odata_type.to_owned()), query)
            }),
            Op::get(
                "groups",
                "List a group's members of one type",
                "microsoft.directory/groups/members/read",
                "DirectoryObjectCollection",
            )
            .with_id()
            .relationship(),
        )
    });
    const GROUPS: &str = "groups";
    api.route(
        "/groups",
        get(list_groups),
        Op::get(
            GROUPS,
            "List groups ($filter, $select, $expand=members or owners, $top, $orderby, $count, $search, $skiptoken)",
            "microsoft.directory/groups/standard/read",
            "GroupCollection",
        )
        .paged(),
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
        )
        .with_options(&["$filter", "$search"]),
    )
    .route(
        "/groups/{id}",
        get(get_group),
        Op::get(GROUPS, "Get a group", "microsoft.directory/groups/standard/read", "Group")
            .with_id()
            .with_options(&["$select", "$expand"]),
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
        .relationship(),
    )
    .route(
        "/groups/{id}/members/$ref",
        post(|ctx, key, body| add_reference(Relation::Members, ctx, key, body)),
        Op::post(GROUPS, "Add a member", "microsoft.directory/groups/members/update", "Reference", 204, "").with_id(),
    )
    .route(
        "/groups/{id}/members/$ref",
        delete(|ctx, key, query| remove_reference_by_url(Relation::Members, ctx, key, query)),
        Op::delete(GROUPS, "Remove a member named by $id={its URL}", "microsoft.directory/groups/members/update")
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
        Op::get(GROUPS, "List a group's owners", "microsoft.directory/groups/owners/read", "DirectoryObjectCollection")
            .with_id()
            .relationship(),
    )
    .route(
        "/groups/{id}/owners/$ref",
        post(|ctx, key, body| add_reference(Relation::Owners, ctx, key, body)),
        Op::post(GROUPS, "Add an owner", "microsoft.directory/groups/owners/update", "Reference", 204, "").with_id(),
    )
    .route(
        "/groups/{id}/owners/$ref",
        delete(|ctx, key, query| remove_reference_by_url(Relation::Owners, ctx, key, query)),
        Op::delete(GROUPS, "Remove an owner named by $id={its URL}", "microsoft.directory/groups/owners/update")
            .with_id(),
    )
    .route(
        "/groups/{id}/owners/{ownerId}/$ref",
        delete(|ctx, key| remove_reference(Relation::Owners, ctx, key)),
        Op::delete(GROUPS, "Remove an owner", "microsoft.directory/groups/owners/update")
            .with_id()
            .with_param("ownerId"),
    )
}
