//! `/directory/deletedItems`: deleted users, groups and applications, kept 30 days, listed, read,
//! restored or removed for good.

use super::{NoParameters, Query, allow_only, next_link, no_content, shape};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use keyward_app::{ApplicationView, Deleted, DeletedItem, Restored};
use keyward_core::directory::{Group, User};
use serde_json::{Map, Value, json};

/// A deleted or restored object's body: its properties (all, or `select`), its type, and when it
/// was deleted.
fn body(
    mut properties: Map<String, Value>,
    kind: &str,
    deleted: Option<time::OffsetDateTime>,
    select: Option<&[&str]>,
) -> Value {
    if let Some(names) = select {
        properties.retain(|key, _| names.contains(&key.as_str()));
    }
    properties.insert("@odata.type".into(), json!(format!("#microsoft.graph.{kind}")));
    let shows_deleted = select.is_none_or(|names| names.contains(&DELETED_AT));
    if let Some(at) = deleted.filter(|_| shows_deleted) {
        properties.insert("deletedDateTime".into(), json!(shape::timestamp(at)));
    }
    Value::Object(properties)
}

/// `deletedDateTime`, a directory object's property that only deleted items carry.
const DELETED_AT: &str = "deletedDateTime";

/// A deleted item's `$select`: the type's own properties (validated as the type's), and
/// `deletedDateTime` when it is named (or nothing is selected).
fn deleted_select(
    select: Option<&str>,
    validate: impl Fn(Option<&str>) -> Result<Option<Vec<&'static str>>, keyward_app::AppError>,
) -> Result<Option<Vec<&'static str>>, GraphError> {
    let Some(list) = select else { return Ok(None) };
    let names: Vec<&str> = list.split(',').map(str::trim).filter(|it| !it.is_empty()).collect();
    let wants_deleted = names.iter().any(|it| it.eq_ignore_ascii_case(DELETED_AT));
    let own: Vec<&str> = names.into_iter().filter(|it| !it.eq_ignore_ascii_case(DELETED_AT)).collect();
    let own = if own.is_empty() { "id".to_owned() } else { own.join(",") };
    let mut res = validate(Some(&own))?;
    if wants_deleted && let Some(names) = &mut res {
        names.push(DELETED_AT);
    }
    Ok(res)
}

fn deleted_user(ctx: &GraphCtx, it: &Deleted<User>, select: Option<&[&str]>) -> Value {
    body(shape::user(&it.object, None, ctx.version), "user", Some(it.deleted), select)
}

fn deleted_group(ctx: &GraphCtx, it: &Deleted<Group>, select: Option<&[&str]>) -> Value {
    body(shape::group(&it.object, None, ctx.version), "group", Some(it.deleted), select)
}

/// `GET /directory/deletedItems/microsoft.graph.user` (also `graph.user`, as the SDKs write the
/// cast) — `microsoft.directory/users/standard/read`; `$select`, `$top`, paged.
async fn list_users(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$top", "$skiptoken", "$select"])?;
    let select = deleted_select(query.raw.select.as_deref(), |it| ctx.state.app.user_select(it))?;
    let page =
        ctx.state.app.list_deleted_users(&ctx.caller, query.raw.top.as_deref(), query.raw.skiptoken.as_deref()).await?;
    let items = page.items.iter().map(|it| deleted_user(&ctx, it, select.as_deref())).collect::<Vec<_>>();
    let context = format!("{}/$metadata#directoryObjects/microsoft.graph.user", ctx.base());
    Ok(collection(context, items, None, next_link(&ctx, &query, &path, page.skiptoken)))
}

/// `GET /directory/deletedItems/microsoft.graph.group` (also `graph.group`) —
/// `microsoft.directory/groups/standard/read`; `$select`, `$top`, paged.
async fn list_groups(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$top", "$skiptoken", "$select"])?;
    let select = deleted_select(query.raw.select.as_deref(), |it| ctx.state.app.group_select(it))?;
    let page = ctx
        .state
        .app
        .list_deleted_groups(&ctx.caller, query.raw.top.as_deref(), query.raw.skiptoken.as_deref())
        .await?;
    let items = page.items.iter().map(|it| deleted_group(&ctx, it, select.as_deref())).collect::<Vec<_>>();
    let context = format!("{}/$metadata#directoryObjects/microsoft.graph.group", ctx.base());
    Ok(collection(context, items, None, next_link(&ctx, &query, &path, page.skiptoken)))
}

/// An application's body, deleted (with when) or restored.
fn application_body(view: &ApplicationView, deleted: Option<time::OffsetDateTime>) -> Value {
    let Value::Object(properties) = super::applications::application_json(view) else { return Value::Null };
    body(properties, "application", deleted, None)
}

fn deleted_application(it: &Deleted<ApplicationView>) -> Value {
    application_body(&it.object, Some(it.deleted))
}

/// `GET /directory/deletedItems/microsoft.graph.application` (also `graph.application`) —
/// `microsoft.directory/applications/standard/read`; `$top`, paged.
async fn list_applications(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$top", "$skiptoken"])?;
    let page = ctx
        .state
        .app
        .list_deleted_applications(&ctx.caller, query.raw.top.as_deref(), query.raw.skiptoken.as_deref())
        .await?;
    let items = page.items.iter().map(deleted_application).collect::<Vec<_>>();
    let context = format!("{}/$metadata#directoryObjects/microsoft.graph.application", ctx.base());
    Ok(collection(context, items, None, next_link(&ctx, &query, &path, page.skiptoken)))
}

/// `GET /directory/deletedItems/{id}`: a deleted user, group or application.
async fn get_item(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let found = ctx.state.app.get_deleted_item(&ctx.caller, &key).await?;
    let item = match &found {
        DeletedItem::User(it) => deleted_user(&ctx, it, None),
        DeletedItem::Group(it) => deleted_group(&ctx, it, None),
        DeletedItem::Application(it) => deleted_application(it),
    };
    let context = format!("{}/$metadata#directoryObjects/$entity", ctx.base());
    Ok(entity(context, item, StatusCode::OK))
}

/// `POST /directory/deletedItems/{id}/restore` — `microsoft.directory/users/restore` for a user,
/// `microsoft.directory/groups/restore` (or `groupsAssignableToRoles/restore`) for a group;
/// answers the restored object.
async fn restore(ctx: GraphCtx, Path(key): Path<String>, _: NoParameters) -> Result<Response, GraphError> {
    let restored = ctx.state.app.restore_deleted_item(&ctx.caller, &key).await?;
    let item = match &restored {
        Restored::User(user) => body(shape::user(user, None, ctx.version), "user", None, None),
        Restored::Group(group) => body(shape::group(group, None, ctx.version), "group", None, None),
        Restored::Application(view) => application_body(view, None),
    };
    Ok(entity(format!("{}/$metadata#directoryObjects/$entity", ctx.base()), item, StatusCode::OK))
}

/// `DELETE /directory/deletedItems/{id}` — removed for good (`users/delete` or `groups/delete`).
async fn purge(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.purge_deleted_item(&ctx.caller, &key).await?;
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
        Op::get(
            TAG,
            "List groups deleted in the last 30 days",
            "microsoft.directory/groups/standard/read",
            "DirectoryObjectCollection",
        )
        .pages_only()
        .with_options(&["$select"])
    };
    let applications = || {
        Op::get(
            TAG,
            "List applications deleted in the last 30 days",
            "microsoft.directory/applications/standard/read",
            "DirectoryObjectCollection",
        )
        .pages_only()
    };
    api.route("/directory/deletedItems/microsoft.graph.user", get(list_users), users())
        .route("/directory/deletedItems/microsoft.graph.application", get(list_applications), applications())
        .route("/directory/deletedItems/graph.application", get(list_applications), applications())
        .route("/directory/deletedItems/graph.user", get(list_users), users())
        .route("/directory/deletedItems/microsoft.graph.group", get(list_groups), groups())
        .route("/directory/deletedItems/graph.group", get(list_groups), groups())
        .route(
            "/directory/deletedItems/{id}",
            get(get_item),
            Op::get(
                TAG,
                "Get a deleted user, group or application",
                "microsoft.directory/users/standard/read (users), microsoft.directory/groups/standard/read (groups), microsoft.directory/applications/standard/read (applications)",
                "DirectoryObject",
            )
            .with_id(),
        )
        .route(
            "/directory/deletedItems/{id}",
            delete(purge),
            Op::delete(
                TAG,
                "Delete a deleted user, group or application for good",
                "microsoft.directory/users/delete (users), microsoft.directory/groups/delete (groups), microsoft.directory/applications/delete (applications)",
            )
            .with_id(),
        )
        .route(
            "/directory/deletedItems/{id}/restore",
            post(restore),
            Op::post(
                TAG,
                "Restore a deleted user, group or application",
                "microsoft.directory/users/restore (users), microsoft.directory/groups/restore (groups), microsoft.directory/applications/delete (applications)",
                "Empty",
                200,
                "DirectoryObject",
            )
            .with_id(),
        )
}
