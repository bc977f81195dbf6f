//! `/directory/deletedItems`: deleted users, kept 30 days, listed, read, restored or removed for
//! good. Groups are deleted for good, so their list is always empty.

use super::{NoParameters, Query, allow_only, next_link, no_content, shape};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use keyward_app::DeletedUser;
use serde_json::{Value, json};

fn deleted_user(ctx: &GraphCtx, it: &DeletedUser) -> Value {
    let mut body = shape::user(&it.user, None, ctx.version);
    body.insert("@odata.type".into(), json!("#microsoft.graph.user"));
    body.insert("deletedDateTime".into(), json!(shape::timestamp(it.deleted)));
    Value::Object(body)
}

/// `GET /directory/deletedItems/microsoft.graph.user` (also `graph.user`, as the SDKs write the
/// cast) — `microsoft.directory/users/standard/read`; `$select`, `$top`, paged.
async fn list_users(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$top", "$skiptoken", "$select"])?;
    let select = ctx.state.app.user_select(query.raw.select.as_deref())?;
    let page =
        ctx.state.app.list_deleted_users(&ctx.caller, query.raw.top.as_deref(), query.raw.skiptoken.as_deref()).await?;
    let items = page
        .items
        .iter()
        .map(|it| {
            let mut body = deleted_user(&ctx, it);
            if let (Value::Object(map), Some(names)) = (&mut body, &select) {
                map.retain(|key, _| key.starts_with('@') || key == "deletedDateTime" || names.contains(&key.as_str()));
            }
            body
        })
        .collect::<Vec<_>>();
    let context = format!("{}/$metadata#directoryObjects/microsoft.graph.user", ctx.base());
    Ok(collection(context, items, None, next_link(&ctx, &query, &path, page.skiptoken)))
}

/// `GET /directory/deletedItems/microsoft.graph.group`: always empty (groups are deleted for good).
async fn list_groups(ctx: GraphCtx, Query(query, _): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$top", "$skiptoken"])?;
    keyward_core::query::parse_top(query.raw.top.as_deref()).map_err(keyward_app::AppError::from)?;
    if query.raw.skiptoken.is_some() {
        // The list is always empty, so no page follows one.
        return Err(super::bad(&ctx, "The $skiptoken is invalid: this list has no further pages."));
    }
    ctx.state.app.list_deleted_groups(&ctx.caller)?;
    let context = format!("{}/$metadata#directoryObjects/microsoft.graph.group", ctx.base());
    Ok(collection(context, Vec::<Value>::new(), None, None))
}

/// `GET /directory/deletedItems/{id}`.
async fn get_item(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let found = ctx.state.app.get_deleted_user(&ctx.caller, &key).await?;
    let context = format!("{}/$metadata#directoryObjects/$entity", ctx.base());
    Ok(entity(context, deleted_user(&ctx, &found), StatusCode::OK))
}

/// `POST /directory/deletedItems/{id}/restore` — `microsoft.directory/users/restore`; answers the
/// restored user.
async fn restore(ctx: GraphCtx, Path(key): Path<String>, _: NoParameters) -> Result<Response, GraphError> {
    let user = ctx.state.app.restore_deleted_user(&ctx.caller, &key).await?;
    let mut body = shape::user(&user, None, ctx.version);
    body.insert("@odata.type".into(), json!("#microsoft.graph.user"));
    Ok(entity(format!("{}/$metadata#directoryObjects/$entity", ctx.base()), Value::Object(body), StatusCode::OK))
}

/// `DELETE /directory/deletedItems/{id}` — `microsoft.directory/users/delete`: removed for good.
async fn purge(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.purge_deleted_user(&ctx.caller, &key).await?;
    Ok(no_content())
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const TAG: &str = "directory";
    const READ: &str = "microsoft.directory/users/standard/read";
    let users = || {
        Op::get(TAG, "List users deleted in the last 30 days", READ, "DirectoryObjectCollection")
            .pages_only()
            .with_options(&["$select"])
    };
    let groups = || {
        Op::get(TAG, "List deleted groups (none: groups are deleted for good)", READ, "DirectoryObjectCollection")
            .pages_only()
    };
    api.route("/directory/deletedItems/microsoft.graph.user", get(list_users), users())
        .route("/directory/deletedItems/graph.user", get(list_users), users())
        .route("/directory/deletedItems/microsoft.graph.group", get(list_groups), groups())
        .route("/directory/deletedItems/graph.group", get(list_groups), groups())
        .route(
            "/directory/deletedItems/{id}",
            get(get_item),
            Op::get(TAG, "Get a deleted user", READ, "DirectoryObject").with_id(),
        )
        .route(
            "/directory/deletedItems/{id}",
            delete(purge),
            Op::delete(TAG, "Delete a deleted user for good", "microsoft.directory/users/delete").with_id(),
        )
        .route(
            "/directory/deletedItems/{id}/restore",
            post(restore),
            Op::post(
                TAG,
                "Restore a deleted user",
                "microsoft.directory/users/restore",
                "Empty",
                200,
                "DirectoryObject",
            )
            .with_id(),
        )
}
