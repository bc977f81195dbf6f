//! A user's manager and direct reports, groups' transitive members, and the member-group
//! functions (`getMemberGroups`, `checkMemberGroups`, `getMemberObjects`, `checkMemberObjects`)
//! on users, groups and `/me`.

use super::users::{MEMBERSHIP_TYPES, own_key};
use super::{Body, Query, bad, no_content, only_paging, shape};
use crate::context::{GraphCtx, GraphQuery, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use keyward_app::{ObjectPage, Related, Relation, UserObjects};
use keyward_core::directory::{DirectoryObject, ObjectKind};
use serde_json::{Value, json};

/// A page of directory objects as a relationship collection (`related` of the object `key`),
/// keeping one type with `cast`.
async fn objects(
    ctx: &GraphCtx,
    query: &GraphQuery,
    path: &str,
    page: ObjectPage,
    cast: Option<&str>,
    related: (Related, &str),
) -> Result<Response, GraphError> {
    let items = page.items.iter().map(|it| Value::Object(shape::directory_object(it, ctx.version))).collect();
    super::relationship_collection(ctx, query, path, (items, page.skiptoken), cast, related).await
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
    objects(&ctx, &query, &path, page, None, (Related::User(which), &key)).await
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
    super::users::memberships_of_type(ctx, ObjectKind::Group, key, None, query, path, transitive).await
}

/// `GET /groups/{id}/memberOf/{cast}` and `…/transitiveMemberOf/{cast}`: one type only
/// (`microsoft.graph.group` or `microsoft.graph.administrativeUnit`, as Graph casts them).
async fn group_member_of_cast(
    ctx: GraphCtx,
    Path((key, cast)): Path<(String, String)>,
    Query(query, path): Query,
    transitive: bool,
) -> Result<Response, GraphError> {
    let odata_type = super::cast_type(&ctx, &cast, &GROUP_MEMBERSHIP_TYPES)?;
    super::users::memberships_of_type(ctx, ObjectKind::Group, key, Some(odata_type), query, path, transitive).await
}

/// The types Graph casts a group's memberships to.
const GROUP_MEMBERSHIP_TYPES: [&str; 2] = ["administrativeUnit", "group"];

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
    let odata_type = super::cast_type(&ctx, &cast, &MEMBER_TYPES)?;
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
    objects(&ctx, &query, &path, page, cast.as_deref(), (Related::TransitiveMembers, &key)).await
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

/// The `$count` segments of the relationship collections: the path, the signed-in user's form
/// of it, and what it counts.
const COUNTED: [(&str, Option<&str>, Related); 9] = [
    ("/groups/{id}/members/$count", None, Related::Group(Relation::Members)),
    ("/groups/{id}/owners/$count", None, Related::Group(Relation::Owners)),
    ("/groups/{id}/transitiveMembers/$count", None, Related::TransitiveMembers),
    ("/groups/{id}/memberOf/$count", None, Related::MemberOf(ObjectKind::Group, false)),
    ("/groups/{id}/transitiveMemberOf/$count", None, Related::MemberOf(ObjectKind::Group, true)),
    ("/users/{id}/memberOf/$count", Some("/me/memberOf/$count"), Related::MemberOf(ObjectKind::User, false)),
    (
        "/users/{id}/transitiveMemberOf/$count",
        Some("/me/transitiveMemberOf/$count"),
        Related::MemberOf(ObjectKind::User, true),
    ),
    ("/users/{id}/directReports/$count", Some("/me/directReports/$count"), Related::User(UserObjects::DirectReports)),
    ("/users/{id}/ownedObjects/$count", Some("/me/ownedObjects/$count"), Related::User(UserObjects::OwnedObjects)),
];

/// The relationships whose `$count` segment also follows a type cast, with the types Graph casts
/// them to (`…/members/microsoft.graph.user/$count`, or `graph.user` as the SDKs write it).
const CAST_COUNTED: [(&str, Related, &[&str]); 8] = [
    ("/groups/{id}/members", Related::Group(Relation::Members), &MEMBER_TYPES),
    ("/groups/{id}/transitiveMembers", Related::TransitiveMembers, &MEMBER_TYPES),
    ("/groups/{id}/memberOf", Related::MemberOf(ObjectKind::Group, false), &GROUP_MEMBERSHIP_TYPES),
    ("/groups/{id}/transitiveMemberOf", Related::MemberOf(ObjectKind::Group, true), &GROUP_MEMBERSHIP_TYPES),
    ("/users/{id}/memberOf", Related::MemberOf(ObjectKind::User, false), &MEMBERSHIP_TYPES),
    ("/users/{id}/transitiveMemberOf", Related::MemberOf(ObjectKind::User, true), &MEMBERSHIP_TYPES),
    ("/me/memberOf", Related::MemberOf(ObjectKind::User, false), &MEMBERSHIP_TYPES),
    ("/me/transitiveMemberOf", Related::MemberOf(ObjectKind::User, true), &MEMBERSHIP_TYPES),
];

/// Every `$count` segment after a type cast: its path, what it counts and the type, built once
/// from [`CAST_COUNTED`] (routes are `'static`).
fn cast_counts() -> &'static [(String, Related, &'static str)] {
    static PATHS: std::sync::OnceLock<Vec<(String, Related, &'static str)>> = std::sync::OnceLock::new();
    PATHS.get_or_init(|| {
        let mut res = Vec::new();
        for (base, related, types) in CAST_COUNTED {
            for name in types {
                for prefix in ["microsoft.graph.", "graph."] {
                    res.push((format!("{base}/{prefix}{name}/$count"), related, *name));
                }
            }
        }
        res
    })
}

/// The types a group's members may be.
const MEMBER_TYPES: [&str; 3] = ["user", "group", "servicePrincipal"];

/// `GET …/{relationship}/$count` and `GET …/{relationship}/{cast}/$count` — the permission that
/// reads the relationship; needs `ConsistencyLevel: eventual`. `key` `None` is the signed-in user.
async fn count_related(
    ctx: GraphCtx,
    key: Option<String>,
    related: Related,
    cast: Option<&str>,
    query: GraphQuery,
) -> Result<Response, GraphError> {
    let key = match key {
        Some(key) => key,
        None => own_key(&ctx)?,
    };
    super::relationship_count(&ctx, &query, (related, &key), cast).await
}

/// Registers the `$count` segments of the relationship collections.
fn count_routes(api: Api) -> Api {
    let op = |path: &str, summary| {
        let tag = if path.starts_with("/groups") { "groups" } else { "users" };
        let op = Op::get(tag, summary, "(as reading the relationship)", "Count");
        if path.contains("{id}") { op.with_id() } else { op }
    };
    let api = COUNTED.into_iter().fold(api, |api, (path, own, related)| {
        const SUMMARY: &str = "Count a relationship's objects (needs ConsistencyLevel: eventual)";
        let handler = get(move |ctx, Path(key): Path<String>, Query(query, _): Query| {
            count_related(ctx, Some(key), related, None, query)
        });
        let api = api.route(path, handler, op(path, SUMMARY));
        let Some(own) = own else { return api };
        let handler = get(move |ctx, Query(query, _): Query| count_related(ctx, None, related, None, query));
        api.route(own, handler, op(own, SUMMARY))
    });
    cast_counts().iter().fold(api, |api, (path, related, name)| {
        const SUMMARY: &str = "Count a relationship's objects of one type (needs ConsistencyLevel: eventual)";
        let (related, name) = (*related, *name);
        let handler = if path.starts_with("/me/") {
            get(move |ctx, Query(query, _): Query| count_related(ctx, None, related, Some(name), query))
        } else {
            get(move |ctx, Path(key): Path<String>, Query(query, _): Query| {
                count_related(ctx, Some(key), related, Some(name), query)
            })
        };
        api.route(path, handler, op(path, SUMMARY))
    })
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const USERS: &str = "users";
    let api = count_routes(api);
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
            .relationship(),
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
            .relationship(),
        )
        .route(
            "/me/ownedObjects",
            get(|ctx, query| my_user_objects(UserObjects::OwnedObjects, ctx, query)),
            Op::get(USERS, "List the groups you own", "(self)", "DirectoryObjectCollection").relationship(),
        )
        .route(
            "/me/directReports",
            get(|ctx, query| my_user_objects(UserObjects::DirectReports, ctx, query)),
            Op::get(USERS, "List your direct reports", "(self)", "DirectoryObjectCollection").relationship(),
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
            .relationship(),
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
            .relationship(),
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
        const READ: &str = "microsoft.directory/groups/standard/read";
        let op = Op::get("groups", summary, READ, "DirectoryObjectCollection");
        let handler = get(move |ctx, path, query| group_member_of(ctx, path, query, transitive));
        let api = api.route(path, handler, op.with_id().relationship());
        let cast = Op::get(
            "groups",
            "List a group's memberships of one type (microsoft.graph.group, graph.administrativeUnit)",
            READ,
            "DirectoryObjectCollection",
        );
        let handler = get(move |ctx, path, query| group_member_of_cast(ctx, path, query, transitive));
        let cast_path =
            if transitive { "/groups/{id}/transitiveMemberOf/{cast}" } else { "/groups/{id}/memberOf/{cast}" };
        api.route(cast_path, handler, cast.with_id().with_param("cast").relationship())
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
