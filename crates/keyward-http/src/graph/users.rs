//! `/users`, `/me` and a user's memberships.

use super::{Body, Query, count, expanded, next_link, no_content, only_paging, select_suffix, shape};
use crate::context::{GraphCtx, GraphQuery, UserRead, collection, entity, entity_json, entity_written, written_json};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, patch, post};
use keyward_app::{AppError, Related, UserObjects};
use keyward_core::directory::{DirectoryObject, ObjectKind, User};
use keyward_core::ids::ObjectId;
use keyward_core::query;
use serde_json::Value;
use std::sync::Arc;

/// Users in Graph's shape, with their `signInActivity` when `$select` names it (read with the
/// sign-in log's permission, `microsoft.directory/signInReports/allProperties/read`) and their
/// groups with `$expand=memberOf` (`microsoft.directory/users/memberOf/read`, first 20).
async fn users_json(
    ctx: &GraphCtx,
    users: &[User],
    select: Option<&[&'static str]>,
    expand: Option<&query::Expand>,
) -> Result<Vec<Value>, GraphError> {
    let activity = if select.is_some_and(|it| it.contains(&query::SIGN_IN_ACTIVITY)) {
        let ids: Vec<ObjectId> = users.iter().map(|it| it.id.clone()).collect();
        Some(ctx.state.app.sign_in_activity(&ctx.caller, &ids).await?)
    } else {
        None
    };
    let mut res = Vec::with_capacity(users.len());
    for user in users {
        let mut body = shape::user(user, select, ctx.version);
        if let Some(activity) = &activity {
            body.insert(query::SIGN_IN_ACTIVITY.into(), shape::sign_in_activity(activity.get(&user.id)));
        }
        if let Some(expand) = expand {
            let limit = query::EXPAND_LIMIT.to_string();
            let app = &ctx.state.app;
            let key = user.id.as_str();
            let related = match expand.property {
                "manager" => match app.manager(&ctx.caller, key).await {
                    // Graph leaves the property out for a user without a manager.
                    Err(AppError::NotFound(_)) => None,
                    found => {
                        let manager = DirectoryObject::User(found?);
                        expanded([shape::directory_object(&manager, ctx.version)], expand)
                            .as_array_mut()
                            .and_then(Vec::pop)
                    }
                },
                "directReports" => {
                    let page =
                        app.user_objects(&ctx.caller, key, UserObjects::DirectReports, Some(&limit), None).await?;
                    Some(expanded(page.items.iter().map(|it| shape::directory_object(it, ctx.version)), expand))
                }
                _ => {
                    let page = app.member_of(&ctx.caller, ObjectKind::User, key, false, Some(&limit), None).await?;
                    Some(expanded(page.items.iter().map(|it| shape::membership(it, ctx.version)), expand))
                }
            };
            if let Some(related) = related {
                body.insert(expand.property.into(), related);
            }
        }
        res.push(Value::Object(body));
    }
    Ok(res)
}

/// `GET /users` — `microsoft.directory/users/standard/read`.
async fn list_users(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    let page = ctx.state.app.list_users(&ctx.caller, &query.raw).await?;
    let select = page.select.as_deref();
    let items = users_json(&ctx, &page.items, select, page.expand.as_ref()).await?;
    let context = format!("{}/$metadata#users{}", ctx.base(), select_suffix(select));
    Ok(collection(context, items, page.count, next_link(&ctx, &query, &path, page.skiptoken)))
}

/// `GET /users/{id | userPrincipalName}` — `microsoft.directory/users/standard/read`.
async fn get_user(UserRead { ctx, key, found }: UserRead, Query(query, _): Query) -> Result<Response, GraphError> {
    let select = ctx.state.app.user_select(query.raw.select.as_deref())?;
    let expand = query::parse_expand(&query::USER, query.raw.expand.as_deref()).map_err(AppError::from)?;
    let user = ctx.state.app.get_found_user(&ctx.caller, &key, found).await?;
    one_user(&ctx, &user, 1, select.as_deref(), expand.as_ref()).await
}

/// One user as an entity: written straight to JSON unless something is added to it (an
/// expansion, the sign-in activity), which `users_json` reads.
/// `held_here`: the references to `user` the request itself holds (see `rendered_users`).
async fn one_user(
    ctx: &GraphCtx,
    user: &Arc<User>,
    held_here: usize,
    select: Option<&[&'static str]>,
    expand: Option<&query::Expand>,
) -> Result<Response, GraphError> {
    let context = || format!("{}/$metadata#users{}/$entity", ctx.base(), select_suffix(select));
    if select.is_none() && expand.is_none() {
        // Written once per kept user and version (see `rendered_users`).
        let json = ctx.state.rendered_users.get_or_write(user, held_here, ctx.version, |user| {
            written_json(&shape::UserEntity::new(&context(), user, None, ctx.version))
        });
        return Ok(entity_json(StatusCode::OK, json));
    }
    let context = context();
    if expand.is_none() && !select.is_some_and(|it| it.contains(&query::SIGN_IN_ACTIVITY)) {
        let body = shape::UserEntity::new(&context, user, select, ctx.version);
        return Ok(entity_written(&body, StatusCode::OK));
    }
    let body = users_json(ctx, std::slice::from_ref(&**user), select, expand).await?.remove(0);
    Ok(entity(context, body, StatusCode::OK))
}

/// `GET /me` — the signed-in user.
async fn get_me(ctx: GraphCtx, Query(query, _): Query) -> Result<Response, GraphError> {
    let select = ctx.state.app.user_select(query.raw.select.as_deref())?;
    let expand = query::parse_expand(&query::USER, query.raw.expand.as_deref()).map_err(AppError::from)?;
    let me = ctx.state.app.me(&ctx.caller)?;
    // Held twice here: by the caller, and as handed back.
    one_user(&ctx, &me, 2, select.as_deref(), expand.as_ref()).await
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

/// `PATCH /me` — the signed-in user, as `PATCH /users/{own id}`.
async fn update_me(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let key = own_key(&ctx)?;
    update_user(ctx, Path(key), Body(body)).await
}

/// `DELETE /users/{id}` — `microsoft.directory/users/delete`.
async fn delete_user(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.delete_user(&ctx.caller, &key).await?;
    Ok(no_content())
}

/// The signed-in user's id, for the `/me/…` relationships.
pub(super) fn own_key(ctx: &GraphCtx) -> Result<String, GraphError> {
    Ok(ctx.state.app.me(&ctx.caller)?.id.to_string())
}

/// `memberOf` or `transitiveMemberOf` of the user `key`, paged.
async fn memberships(
    ctx: GraphCtx,
    key: String,
    query: GraphQuery,
    path: String,
    transitive: bool,
) -> Result<Response, GraphError> {
    memberships_of_type(ctx, ObjectKind::User, key, None, query, path, transitive).await
}

/// `memberOf` or `transitiveMemberOf` of the user or group (`kind`) `key` as a relationship
/// collection (`$select`, `$count`, next link), keeping one type with `cast` (the `@odata.type`).
pub(super) async fn memberships_of_type(
    ctx: GraphCtx,
    kind: ObjectKind,
    key: String,
    cast: Option<String>,
    query: GraphQuery,
    path: String,
    transitive: bool,
) -> Result<Response, GraphError> {
    only_paging(&ctx, &query)?;
    let (top, skiptoken) = (query.raw.top.as_deref(), query.raw.skiptoken.as_deref());
    let page = ctx.state.app.member_of(&ctx.caller, kind, &key, transitive, top, skiptoken).await?;
    let items = page.items.iter().map(|it| Value::Object(shape::membership(it, ctx.version))).collect();
    let related = (Related::MemberOf(kind, transitive), key.as_str());
    super::relationship_collection(&ctx, &query, &path, (items, page.skiptoken), cast.as_deref(), related).await
}

/// The cast segment of a membership list (`microsoft.graph.group`, `graph.directoryRole`, …).
pub(super) const MEMBERSHIP_TYPES: [&str; 3] = ["group", "directoryRole", "administrativeUnit"];

/// `GET /users/{id}/memberOf/{cast}` and `…/transitiveMemberOf/{cast}`: one type only.
async fn member_of_cast(
    ctx: GraphCtx,
    Path((key, cast)): Path<(String, String)>,
    Query(query, path): Query,
    transitive: bool,
) -> Result<Response, GraphError> {
    let odata_type = super::cast_type(&ctx, &cast, &MEMBERSHIP_TYPES)?;
    memberships_of_type(ctx, ObjectKind::User, key, Some(odata_type), query, path, transitive).await
}

/// `GET /me/memberOf/{cast}` and `/me/transitiveMemberOf/{cast}`.
async fn my_member_of_cast(
    ctx: GraphCtx,
    Path(cast): Path<String>,
    Query(query, path): Query,
    transitive: bool,
) -> Result<Response, GraphError> {
    let odata_type = super::cast_type(&ctx, &cast, &MEMBERSHIP_TYPES)?;
    let key = own_key(&ctx)?;
    memberships_of_type(ctx, ObjectKind::User, key, Some(odata_type), query, path, transitive).await
}

/// `GET /users/{id}/memberOf` — `microsoft.directory/users/memberOf/read`: groups, directory roles
/// and administrative units.
async fn member_of(ctx: GraphCtx, Path(key): Path<String>, Query(query, path): Query) -> Result<Response, GraphError> {
    memberships(ctx, key, query, path, false).await
}

/// `GET /me/memberOf`.
async fn my_member_of(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    let key = own_key(&ctx)?;
    memberships(ctx, key, query, path, false).await
}

/// `GET /users/{id}/transitiveMemberOf`: groups through nesting, directory roles held directly
/// or through a group, administrative units.
async fn transitive_member_of(
    ctx: GraphCtx,
    Path(key): Path<String>,
    Query(query, path): Query,
) -> Result<Response, GraphError> {
    memberships(ctx, key, query, path, true).await
}

/// `GET /me/transitiveMemberOf`.
async fn my_transitive_member_of(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    let key = own_key(&ctx)?;
    memberships(ctx, key, query, path, true).await
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const USERS: &str = "users";
    api.route(
        "/me",
        get(get_me),
        Op::get(USERS, "Get the signed-in user", "(self)", "User").with_options(&["$select", "$expand"]),
    )
    .route(
        "/me",
        patch(update_me),
        Op::patch(USERS, "Update the signed-in user", "as PATCH /users/{id} on oneself", "UserUpdate"),
    )
    .route(
        "/users",
        get(list_users),
        Op::get(
            USERS,
            "List users ($filter, $select, $expand=memberOf, $top, $orderby, $count, $search, $skiptoken)",
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
        )
        .with_options(&["$filter", "$search"]),
    )
    .route(
        "/users/{id}",
        get(get_user),
        Op::get(USERS, "Get a user by id or userPrincipalName", "microsoft.directory/users/standard/read", "User")
            .with_id()
            .with_options(&["$select", "$expand"]),
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
            "List the groups, directory roles and administrative units a user is a direct member of",
            "microsoft.directory/users/memberOf/read",
            "DirectoryObjectCollection",
        )
        .with_id()
        .relationship(),
    )
    .route(
        "/users/{id}/transitiveMemberOf",
        get(transitive_member_of),
        Op::get(
            USERS,
            "List the groups (through nesting), directory roles and administrative units of a user",
            "microsoft.directory/users/memberOf/read",
            "DirectoryObjectCollection",
        )
        .with_id()
        .relationship(),
    )
    .route(
        "/users/{id}/memberOf/{cast}",
        get(|ctx, path, query| member_of_cast(ctx, path, query, false)),
        Op::get(USERS, "List a user's memberships of one type (microsoft.graph.group, graph.directoryRole, graph.administrativeUnit)", "microsoft.directory/users/memberOf/read", "DirectoryObjectCollection")
            .with_id()
            .with_param("cast")
            .relationship(),
    )
    .route(
        "/users/{id}/transitiveMemberOf/{cast}",
        get(|ctx, path, query| member_of_cast(ctx, path, query, true)),
        Op::get(USERS, "List a user's memberships through nesting of one type", "microsoft.directory/users/memberOf/read", "DirectoryObjectCollection")
            .with_id()
            .with_param("cast")
            .relationship(),
    )
    .route(
        "/me/memberOf/{cast}",
        get(|ctx, path, query| my_member_of_cast(ctx, path, query, false)),
        Op::get(USERS, "List your memberships of one type", "(self)", "DirectoryObjectCollection").with_param("cast").relationship(),
    )
    .route(
        "/me/transitiveMemberOf/{cast}",
        get(|ctx, path, query| my_member_of_cast(ctx, path, query, true)),
        Op::get(USERS, "List your memberships through nesting of one type", "(self)", "DirectoryObjectCollection").with_param("cast").relationship(),
    )
    .route(
        "/me/memberOf",
        get(my_member_of),
        Op::get(
            USERS,
            "List your groups, directory roles and administrative units",
            "(self)",
            "DirectoryObjectCollection",
        )
        .relationship(),
    )
    .route(
        "/me/transitiveMemberOf",
        get(my_transitive_member_of),
        Op::get(
            USERS,
            "List your groups (through nesting), directory roles and administrative units",
            "(self)",
            "DirectoryObjectCollection",
        )
        .relationship(),
    )
}
