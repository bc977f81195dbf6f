//! `/users/delta` and `/groups/delta`: delta queries, as sync tools use them.

use super::{Query, select_suffix, shape};
use crate::context::{GraphCtx, graph_json};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::response::Response;
use axum::routing::get;
use keyward_app::{DeltaItem, DeltaNext, DeltaResource};
use keyward_core::directory::DirectoryObject;
use serde_json::{Map, Value, json};

/// `GET /users/delta` — `microsoft.directory/users/standard/read`;
/// `GET /groups/delta` — `microsoft.directory/groups/standard/read`.
async fn delta(resource: DeltaResource, ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    let page = ctx
        .state
        .app
        .delta(&ctx.caller, resource, &query.raw, query.deltatoken.as_deref(), query.max_page_size)
        .await?;
    let select = page.select.as_deref();
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|item| match item {
            DeltaItem::Current(DirectoryObject::User(user)) => Value::Object(shape::user(user, select, ctx.version)),
            DeltaItem::Current(DirectoryObject::Group(group)) => {
                Value::Object(shape::group(group, select, ctx.version))
            }
            DeltaItem::Current(DirectoryObject::ServicePrincipal(principal)) => {
                Value::Object(shape::service_principal(principal))
            }
            DeltaItem::Removed(id) => json!({"id": id.as_str(), "@removed": {"reason": "deleted"}}),
            DeltaItem::SoftDeleted(id) => json!({"id": id.as_str(), "@removed": {"reason": "changed"}}),
        })
        .collect();
    let collection = if resource == DeltaResource::Users { "users" } else { "groups" };
    let link = format!("{}{path}", ctx.state.app.config().public_url);
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!("{}/$metadata#{collection}{}", ctx.base(), select_suffix(select))),
    );
    match page.next {
        DeltaNext::Page(token) => body.insert("@odata.nextLink".into(), json!(format!("{link}?$skiptoken={token}"))),
        DeltaNext::Round(token) => body.insert("@odata.deltaLink".into(), json!(format!("{link}?$deltatoken={token}"))),
    };
    body.insert("value".into(), Value::Array(items));
    Ok(graph_json(Value::Object(body)))
}

const USERS_SUMMARY: &str = "Users changed since a delta token (the first round lists all); $select, $filter=id eq '…' or …, Prefer: odata.maxpagesize";
const GROUPS_SUMMARY: &str = "Groups changed since a delta token (the first round lists all); $select, $filter=id eq '…' or …, Prefer: odata.maxpagesize";

/// Registers this resource's routes (`delta()`, as the SDKs call the function, reaches them
/// through `casing`).
pub fn routes(api: Api) -> Api {
    api.route(
        "/users/delta",
        get(|ctx, query| delta(DeltaResource::Users, ctx, query)),
        Op::get("users", USERS_SUMMARY, "microsoft.directory/users/standard/read", "UserCollection")
            .with_options(crate::context::QUERY_OPTIONS_ALL),
    )
    .route(
        "/groups/delta",
        get(|ctx, query| delta(DeltaResource::Groups, ctx, query)),
        Op::get("groups", GROUPS_SUMMARY, "microsoft.directory/groups/standard/read", "GroupCollection")
            .with_options(crate::context::QUERY_OPTIONS_ALL),
    )
}
