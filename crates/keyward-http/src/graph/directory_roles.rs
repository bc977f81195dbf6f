//! `/directoryRoles`: the activated roles and their members (the older role API).

use super::{Query, allow_only, shape};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::Value;

pub(super) fn directory_role(role: &keyward_core::authz::RoleDefinition) -> Value {
    shape::directory_role(role)
}

/// `GET /directoryRoles`: activated roles (with at least one tenant-wide assignment).
async fn list_directory_roles(ctx: GraphCtx, Query(query, _): Query) -> Result<Response, GraphError> {
    // No query option is applied here: each is refused, never ignored.
    allow_only(&ctx, &query, &[])?;
    let roles = ctx.state.app.list_directory_roles(&ctx.caller).await?;
    Ok(collection(
        format!("{}/$metadata#directoryRoles", ctx.base()),
        roles.into_iter().map(directory_role).collect::<Vec<_>>(),
        None,
        None,
    ))
}

/// `GET /directoryRoles/{id}` (id = role template id).
async fn get_directory_role(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let role = ctx.state.app.get_directory_role(&ctx.caller, &id).await?;
    Ok(entity(format!("{}/$metadata#directoryRoles/$entity", ctx.base()), directory_role(role), StatusCode::OK))
}

/// `GET /directoryRoles/{id}/members`.
async fn directory_role_members(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let members = ctx.state.app.directory_role_members(&ctx.caller, &id).await?;
    let items = members.iter().map(|it| Value::Object(shape::directory_object(it, ctx.version))).collect();
    Ok(collection(format!("{}/$metadata#directoryObjects", ctx.base()), items, None, None))
}

/// `GET /directoryRoles(roleTemplateId='…')`: a directory role by its template id (Keyward's
/// directory roles have their template id as id).
async fn get_by_template_id(ctx: GraphCtx, Path(captured): Path<String>) -> Result<Response, GraphError> {
    let id = super::alternate_key(&ctx, "roleTemplateId", &captured)?;
    get_directory_role(ctx, Path(id)).await
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const ROLES: &str = "roleManagement";
    api.route_undocumented("/directoryRoles(roleTemplateId={key}", get(get_by_template_id))
        .document(
            "/directoryRoles(roleTemplateId='{roleTemplateId}')",
            Op::get(
                ROLES,
                "Get a directory role by its template id",
                "microsoft.directory/directoryRoles/allProperties/read",
                "DirectoryRole",
            )
            .with_param("roleTemplateId"),
        )
        .route(
            "/directoryRoles",
            get(list_directory_roles),
            Op::get(
                ROLES,
                "List activated directory roles",
                "microsoft.directory/directoryRoles/allProperties/read",
                "DirectoryRoleCollection",
            ),
        )
        .route(
            "/directoryRoles/{id}",
            get(get_directory_role),
            Op::get(
                ROLES,
                "Get a directory role (id = role template id)",
                "microsoft.directory/directoryRoles/allProperties/read",
                "DirectoryRole",
            )
            .with_id(),
        )
        .route(
            "/directoryRoles/{id}/members",
            get(directory_role_members),
            Op::get(
                ROLES,
                "List a directory role's members",
                "microsoft.directory/directoryRoles/allProperties/read",
                "DirectoryObjectCollection",
            )
            .with_id(),
        )
}
