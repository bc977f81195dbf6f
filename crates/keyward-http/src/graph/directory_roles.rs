//! `/directoryRoles`: the activated roles and their members (the older role API).

use super::{Body, Query, allow_only, bad, no_content, shape};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

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

/// `POST /directoryRoles` with `{"roleTemplateId": …}`: activates a built-in role.
async fn activate(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let object = body.as_object().ok_or_else(|| bad(&ctx, "The request body must be a JSON object."))?;
    for key in object.keys() {
        if key != "roleTemplateId" && !key.starts_with('@') {
            return Err(bad(
                &ctx,
                format!(
                    "Property '{key}' cannot be written: a directory role is activated from its template, with roleTemplateId alone."
                ),
            ));
        }
    }
    let template = object
        .get("roleTemplateId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(&ctx, "Property 'roleTemplateId' is required: the id of a directoryRoleTemplate."))?;
    let role = ctx.state.app.activate_directory_role(&ctx.caller, template).await?;
    Ok(entity(format!("{}/$metadata#directoryRoles/$entity", ctx.base()), directory_role(role), StatusCode::CREATED))
}

/// `POST /directoryRoles/{id}/members/$ref`: a tenant-wide assignment of the role.
async fn add_member(ctx: GraphCtx, Path(id): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let member = shape::reference_id(&body).map_err(|message| bad(&ctx, message))?;
    ctx.state.app.add_directory_role_member(&ctx.caller, &id, &member).await?;
    Ok(no_content())
}

/// `DELETE /directoryRoles/{id}/members/{memberId}/$ref`.
async fn remove_member(ctx: GraphCtx, Path((id, member)): Path<(String, String)>) -> Result<Response, GraphError> {
    ctx.state.app.remove_directory_role_member(&ctx.caller, &id, &member).await?;
    Ok(no_content())
}

/// `DELETE /directoryRoles/{id}/members/$ref?$id={url}`: Kiota's form of the same.
async fn remove_member_by_url(
    ctx: GraphCtx,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, GraphError> {
    let member = shape::reference_in_query(query.as_deref(), "/directoryRoles/{id}/members/{memberId}/$ref")
        .map_err(|message| bad(&ctx, message))?;
    ctx.state.app.remove_directory_role_member(&ctx.caller, &id, &member).await?;
    Ok(no_content())
}

/// `GET /directoryRoles(roleTemplateId='…')/members`.
async fn members_by_template_id(ctx: GraphCtx, Path(captured): Path<String>) -> Result<Response, GraphError> {
    let id = super::alternate_key(&ctx, "roleTemplateId", &captured)?;
    directory_role_members(ctx, Path(id)).await
}

fn template(role: &keyward_core::authz::RoleDefinition) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.directoryRoleTemplate",
        "id": role.id,
        "deletedDateTime": null,
        "displayName": role.display_name,
        "description": role.description,
    })
}

/// `GET /directoryRoleTemplates`: every built-in role, activated or not.
async fn list_templates(ctx: GraphCtx, Query(query, _): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &[])?;
    let roles = ctx.state.app.list_directory_role_templates(&ctx.caller)?;
    Ok(collection(
        format!("{}/$metadata#directoryRoleTemplates", ctx.base()),
        roles.iter().map(template).collect::<Vec<_>>(),
        None,
        None,
    ))
}

/// `GET /directoryRoleTemplates/{id}`.
async fn get_template(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let role = ctx
        .state
        .app
        .list_directory_role_templates(&ctx.caller)?
        .iter()
        .find(|it| it.id.eq_ignore_ascii_case(&id))
        .ok_or_else(|| GraphError::from_app(keyward_app::AppError::NotFound(id.clone()), &ctx.ids))?;
    Ok(entity(format!("{}/$metadata#directoryRoleTemplates/$entity", ctx.base()), template(role), StatusCode::OK))
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
        .route_undocumented("/directoryRoles(roleTemplateId={key}/members", get(members_by_template_id))
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
            "/directoryRoles",
            post(activate),
            Op::post(
                ROLES,
                "Activate a directory role from its template ({\"roleTemplateId\": …})",
                "microsoft.directory/roleAssignments/allProperties/allTasks",
                "DirectoryRole",
                201,
                "DirectoryRole",
            ),
        )
        .route(
            "/directoryRoles/{id}/members/$ref",
            post(add_member),
            Op::post(
                ROLES,
                "Add a member (a tenant-wide role assignment)",
                "microsoft.directory/roleAssignments/allProperties/allTasks",
                "Reference",
                204,
                "",
            )
            .with_id(),
        )
        .route(
            "/directoryRoles/{id}/members/$ref",
            delete(remove_member_by_url),
            Op::delete(
                ROLES,
                "Remove a member named by $id={its URL}",
                "microsoft.directory/roleAssignments/allProperties/allTasks",
            )
            .with_id(),
        )
        .route(
            "/directoryRoles/{id}/members/{memberId}/$ref",
            delete(remove_member),
            Op::delete(ROLES, "Remove a member", "microsoft.directory/roleAssignments/allProperties/allTasks")
                .with_id()
                .with_param("memberId"),
        )
        .route(
            "/directoryRoleTemplates",
            get(list_templates),
            Op::get(
                ROLES,
                "List directory role templates (the built-in roles)",
                "microsoft.directory/directoryRoles/allProperties/read",
                "DirectoryRoleTemplateCollection",
            ),
        )
        .route(
            "/directoryRoleTemplates/{id}",
            get(get_template),
            Op::get(
                ROLES,
                "Get a directory role template",
                "microsoft.directory/directoryRoles/allProperties/read",
                "DirectoryRoleTemplate",
            )
            .with_id(),
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
