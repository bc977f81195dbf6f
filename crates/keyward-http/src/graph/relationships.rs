//! A user's manager and direct reports, groups' transitive members, and the member-group
//! functions (`getMemberGroups`, `checkMemberGroups`, `getMemberObjects`, `checkMemberObjects`)
//! on users, groups and `/me`.

use super::users::own_key;
use super::{Body, Query, bad, no_content, only_paging, shape};
use crate::context::{GraphCtx, GraphQuery, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use keyward_app::{ObjectPage, UserObjects};
use keyward_core::directory::DirectoryObject;
use serde_json::{Value, json};

/// A page of directory objects as a relationship collection, keeping one type with `cast`.
fn objects(
    ctx: &GraphCtx,
    query: &GraphQuery,
    path: &str,
    page: ObjectPage,
    cast: Option<&str>,
) -> Result<Response, GraphError> {
    let items = page.items.iter().map(|it| Value::Object(shape::directory_object(it, ctx.version))).collect();
    super::relationship_collection(ctx, query, path, items, cast, page.skiptoken)
}

async fn manager_of(ctx: GraphCtx, key: String, query: GraphQuery) -> Result<Response, GraphError> {
    super::allow_only(&ctx, &query, &["$select"])?;
    let select = ctx.state.app.user_select(query.raw.select.as_deref())?;
    let manager = ctx.state.app.manager(&ctx.caller, &key).await?;
    let mut body = shape::directory_object(&DirectoryObject::User(manager), ctx.version);
    if let Some(names) = select {
        body.retain(|key, _| key == "@odata.type" || names.contains(&key.as_str()));
    }
    Ok(entity(format!("{}/$metadata#directoryObjects/$entity", ctx.base()), Value::Object(body), StatusCode::OK))
}

/// `GET /users/{id}/manager` — `microsoft.directory/users/standard/read`; `404` without a manager.
async fn manager(ctx: GraphCtx, Path(key): Path<String>, Query(query, _): Query) -> Result<Response, GraphError> {
    manager_of(ctx, key, query).await
}

/// `GET /me/manager`.
async fn my_manager(ctx: GraphCtx, Query(query, _): Query) -> Result<Response, GraphError> {
    let key = own_key(&ctx)?;
    manager_of(ctx, key, query).await
}

/// `PUT /users/{id}/manager/$ref` with `{"@odata.id": "…/users/{managerId}"}` —
/// `microsoft.directory/users/manager/update`.
async fn set_manager(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let manager = shape::reference_id(&body).map_err(|message| bad(&ctx, message))?;
    ctx.state.app.set_manager(&ctx.caller, &key, Some(&manager)).await?;
    Ok(no_content())
}

/// `DELETE /users/{id}/manager/$ref` — `microsoft.directory/users/manager/update`.
async fn remove_manager(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.set_manager(&ctx.caller, &key, None).await?;
    Ok(no_content())
}

async fn user_objects_of(
    ctx: GraphCtx,
    key: String,
    which: UserObjects,
    query: GraphQuery,
    path: String,
) -> Result<Response, GraphError> {
    only_paging(&ctx, &query)?;
    let (top, skiptoken) = (query.raw.top.as_deref(), query.raw.skiptoken.as_deref());
    let page = ctx.state.app.user_objects(&ctx.caller, &key, which, top, skiptoken).await?;
    objects(&ctx, &query, &path, page, None)
}

/// `GET /users/{id}/directReports` and `GET /users/{id}/ownedObjects` (the groups the user owns).
async fn user_objects(
    which: UserObjects,
    ctx: GraphCtx,
    Path(key): Path<String>,
    Query(query, path): Query,
) -> Result<Response, GraphError> {
    user_objects_of(ctx, key, which, query, path).await
}

/// `GET /me/directReports` and `GET /me/ownedObjects`.
async fn my_user_objects(which: UserObjects, ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    let key = own_key(&ctx)?;
    user_objects_of(ctx, key, which, query, path).await
}

/// `GET /groups/{id}/memberOf` and `…/transitiveMemberOf` — `microsoft.directory/groups/standard/read`.
async fn group_member_of(
    ctx: GraphCtx,
    Path(key): Path<String>,
    Query(query, path): Query,
    transitive: bool,
) -> Result<Response, GraphError> {
    only_paging(&ctx, &query)?;
    let (top, skiptoken) = (query.raw.top.as_deref(), query.raw.skiptoken.as_deref());
    let page = ctx.state.app.group_member_of(&ctx.caller, &key, transitive, top, skiptoken).await?;
    super::users::membership_page(&ctx, &query, &path, page, None)
}

/// `GET /groups/{id}/transitiveMembers` — `microsoft.directory/groups/members/read`.
async fn transitive_members(
    ctx: GraphCtx,
    Path(key): Path<String>,
    Query(query, path): Query,
) -> Result<Response, GraphError> {
    transitive_members_of_type(ctx, key, None, query, path).await
}

/// `GET /groups/{id}/transitiveMembers/microsoft.graph.user` (or `graph.user`, `graph.group`).
async fn transitive_members_cast(
    ctx: GraphCtx,
    Path((key, cast)): Path<(String, String)>,
    Query(query, path): Query,
) -> Result<Response, GraphError> {
    let odata_type = super::cast_type(&ctx, &cast, &["user", "group", "servicePrincipal"])?;
    transitive_members_of_type(ctx, key, Some(odata_type), query, path).await
}

async fn transitive_members_of_type(
    ctx: GraphCtx,
    key: String,
    cast: Option<String>,
    query: GraphQuery,
    path: String,
) -> Result<Response, GraphError> {
    only_paging(&ctx, &query)?;
    let page = ctx
        .state
        .app
        .transitive_members(&ctx.caller, &key, query.raw.top.as_deref(), query.raw.skiptoken.as_deref())
        .await?;
    objects(&ctx, &query, &path, page, cast.as_deref())
}

/// The four member-group functions.
#[derive(Clone, Copy)]
enum Function {
    GetMemberGroups,
    GetMemberObjects,
    CheckMemberGroups,
    CheckMemberObjects,
}

impl Function {
    /// The one parameter each takes: a boolean for the `get…` functions, a list of ids for the
    /// `check…` ones.
    fn parameter(self) -> &'static str {
        match self {
            Function::GetMemberGroups | Function::GetMemberObjects => "securityEnabledOnly",
            Function::CheckMemberGroups => "groupIds",
            Function::CheckMemberObjects => "ids",
        }
    }
}

/// Each function on users, groups and `/me`: path, function, the object's tag, summary.
const FUNCTIONS: [(&str, Function, &str, &str); 12] = [
    ("/users/{id}/getMemberGroups", Function::GetMemberGroups, "users", GET_GROUPS),
    ("/groups/{id}/getMemberGroups", Function::GetMemberGroups, "groups", GET_GROUPS),
    ("/me/getMemberGroups", Function::GetMemberGroups, "users", GET_GROUPS),
    ("/users/{id}/getMemberObjects", Function::GetMemberObjects, "users", GET_OBJECTS),
    ("/groups/{id}/getMemberObjects", Function::GetMemberObjects, "groups", GET_OBJECTS),
    ("/me/getMemberObjects", Function::GetMemberObjects, "users", GET_OBJECTS),
    ("/users/{id}/checkMemberGroups", Function::CheckMemberGroups, "users", CHECK_GROUPS),
    ("/groups/{id}/checkMemberGroups", Function::CheckMemberGroups, "groups", CHECK_GROUPS),
    ("/me/checkMemberGroups", Function::CheckMemberGroups, "users", CHECK_GROUPS),
    ("/users/{id}/checkMemberObjects", Function::CheckMemberObjects, "users", CHECK_OBJECTS),
    ("/groups/{id}/checkMemberObjects", Function::CheckMemberObjects, "groups", CHECK_OBJECTS),
    ("/me/checkMemberObjects", Function::CheckMemberObjects, "users", CHECK_OBJECTS),
];
const GET_GROUPS: &str = "The ids of the groups the object is a member of, through nesting";
const GET_OBJECTS: &str = "The ids of the groups, directory roles and administrative units the object is a member of";
const CHECK_GROUPS: &str = "Which of up to 20 groups the object is a member of, through nesting";
const CHECK_OBJECTS: &str =
    "Which of up to 20 groups, directory roles or administrative units the object is a member of";

async fn call(ctx: GraphCtx, key: String, function: Function, body: Value) -> Result<Response, GraphError> {
    let name = function.parameter();
    let Some(fields) = body.as_object() else {
        return Err(bad(&ctx, format!("The body must be {{\"{name}\": …}}.")));
    };
    if let Some(other) = fields.keys().find(|it| *it != name && !it.starts_with("@odata.")) {
        return Err(bad(&ctx, format!("Property '{other}' does not exist: this action takes '{name}' only.")));
    }
    let app = &ctx.state.app;
    let value = match function {
        Function::GetMemberGroups | Function::GetMemberObjects => {
            let Some(security_only) = fields.get(name).and_then(Value::as_bool) else {
                return Err(bad(&ctx, format!("The parameter '{name}' (true or false) is required.")));
            };
            let objects = matches!(function, Function::GetMemberObjects);
            app.member_ids(&ctx.caller, &key, objects, security_only).await?
        }
        Function::CheckMemberGroups | Function::CheckMemberObjects => {
            let ids: Option<Vec<String>> = fields
                .get(name)
                .and_then(Value::as_array)
                .and_then(|it| it.iter().map(|id| id.as_str().map(str::to_owned)).collect());
            let Some(ids) = ids else {
                return Err(bad(&ctx, format!("The parameter '{name}' (a list of object ids) is required.")));
            };
            let objects = matches!(function, Function::CheckMemberObjects);
            app.check_member_ids(&ctx.caller, &key, &ids, objects).await?
        }
    };
    let context = format!("{}/$metadata#Collection(Edm.String)", ctx.base());
    Ok(entity(context, json!({ "value": value }), StatusCode::OK))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const USERS: &str = "users";
    let api = api
        .route(
            "/users/{id}/manager",
            get(manager),
            Op::get(USERS, "Get a user's manager", "microsoft.directory/users/standard/read", "DirectoryObject")
                .with_id()
                .with_options(&["$select"]),
        )
        .route(
            "/me/manager",
            get(my_manager),
            Op::get(USERS, "Get your manager", "(self)", "DirectoryObject").with_options(&["$select"]),
        )
        .route(
            "/users/{id}/manager/$ref",
            put(set_manager),
            Op::put(USERS, "Set a user's manager", "microsoft.directory/users/manager/update", "Reference").with_id(),
        )
        .route(
            "/users/{id}/manager/$ref",
            delete(remove_manager),
            Op::delete(USERS, "Remove a user's manager", "microsoft.directory/users/manager/update").with_id(),
        )
        .route(
            "/users/{id}/directReports",
            get(|ctx, key, query| user_objects(UserObjects::DirectReports, ctx, key, query)),
            Op::get(
                USERS,
                "List a user's direct reports",
                "microsoft.directory/users/standard/read",
                "DirectoryObjectCollection",
            )
            .with_id()
            .pages_only()
            .with_options(&["$select"]),
        )
        .route(
            "/users/{id}/ownedObjects",
            get(|ctx, key, query| user_objects(UserObjects::OwnedObjects, ctx, key, query)),
            Op::get(
                USERS,
                "List the groups a user owns",
                "microsoft.directory/users/standard/read",
                "DirectoryObjectCollection",
            )
            .with_id()
            .pages_only()
            .with_options(&["$select"]),
        )
        .route(
            "/me/ownedObjects",
            get(|ctx, query| my_user_objects(UserObjects::OwnedObjects, ctx, query)),
            Op::get(USERS, "List the groups you own", "(self)", "DirectoryObjectCollection")
                .pages_only()
                .with_options(&["$select"]),
        )
        .route(
            "/me/directReports",
            get(|ctx, query| my_user_objects(UserObjects::DirectReports, ctx, query)),
            Op::get(USERS, "List your direct reports", "(self)", "DirectoryObjectCollection")
                .pages_only()
                .with_options(&["$select"]),
        )
        .route(
            "/groups/{id}/transitiveMembers/{cast}",
            get(transitive_members_cast),
            Op::get(
                "groups",
                "List a group's members through nesting of one type (microsoft.graph.user, graph.group, …)",
                "microsoft.directory/groups/members/read",
                "DirectoryObjectCollection",
            )
            .with_id()
            .with_param("cast")
            .pages_only()
            .with_options(&["$select"]),
        )
        .route(
            "/groups/{id}/transitiveMembers",
            get(transitive_members),
            Op::get(
                "groups",
                "List a group's members through nesting",
                "microsoft.directory/groups/members/read",
                "DirectoryObjectCollection",
            )
            .with_id()
            .pages_only()
            .with_options(&["$select"]),
        );
    let api = [
        (
            "/groups/{id}/memberOf",
            false,
            "List the groups, directory roles and administrative units a group is a member of",
        ),
        ("/groups/{id}/transitiveMemberOf", true, "List what a group is a member of, through nesting"),
    ]
    .into_iter()
    .fold(api, |api, (path, transitive, summary)| {
        let op = Op::get("groups", summary, "microsoft.directory/groups/standard/read", "DirectoryObjectCollection");
        let handler = get(move |ctx, path, query| group_member_of(ctx, path, query, transitive));
        api.route(path, handler, op.with_id().pages_only().with_options(&["$select"]))
    });
    FUNCTIONS.into_iter().fold(api, |api, (path, function, tag, summary)| {
        let (handler, op) = if path.starts_with("/me/") {
            let handler = post(move |ctx: GraphCtx, Body(body): Body| async move {
                let key = own_key(&ctx)?;
                call(ctx, key, function, body).await
            });
            (handler, Op::post(tag, summary, "(self)", "MemberFunction", 200, "StringCollection"))
        } else {
            let handler =
                post(move |ctx: GraphCtx, Path(key): Path<String>, Body(body): Body| call(ctx, key, function, body));
            let permission = "microsoft.directory/users/memberOf/read (groups: groups/standard/read)";
            (handler, Op::post(tag, summary, permission, "MemberFunction", 200, "StringCollection").with_id())
        };
        api.route(path, handler, op)
    })
}
