//! `/directory/administrativeUnits`: units, their members and scoped role members.

use super::{Body, Query, allow_only, bad, shape};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use keyward_app::AppError;
use keyward_core::directory::DirectoryObject;
use keyward_core::directory::{AdministrativeUnit, RoleAssignment};
use keyward_core::query;
use serde_json::{Value, json};

fn unit(it: &AdministrativeUnit) -> Value {
    shape::administrative_unit(it)
}

/// `GET /directory/administrativeUnits`.
async fn list_units(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$top", "$skiptoken"])?;
    let top = query::parse_top(query.raw.top.as_deref()).map_err(AppError::from)?;
    let page = ctx.state.app.list_units(&ctx.caller, top, query.raw.skiptoken.as_deref()).await?;
    let next = page.skiptoken.map(|token| query.next_link(&ctx.state.app.config().public_url, &path, &token));
    Ok(collection(
        format!("{}/$metadata#directory/administrativeUnits", ctx.base()),
        page.items.iter().map(unit).collect::<Vec<_>>(),
        None,
        next,
    ))
}

/// `GET /directory/administrativeUnits/{id}`.
async fn get_unit(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let found = ctx.state.app.get_unit(&ctx.caller, &id).await?;
    Ok(entity(format!("{}/$metadata#directory/administrativeUnits/$entity", ctx.base()), unit(&found), StatusCode::OK))
}

struct UnitBody {
    display_name: Option<String>,
    description: Option<Option<String>>,
    is_restricted: Option<bool>,
}

fn unit_body(ctx: &GraphCtx, body: &Value) -> Result<UnitBody, GraphError> {
    let invalid = |name: &str| {
        bad(ctx, format!("Invalid value specified for property '{name}' of resource 'AdministrativeUnit'."))
    };
    let object = body.as_object().ok_or_else(|| bad(ctx, "The request body must be a JSON object."))?;
    let mut res = UnitBody { display_name: None, description: None, is_restricted: None };
    for (key, value) in object {
        match key.as_str() {
            "displayName" => res.display_name = Some(value.as_str().ok_or_else(|| invalid(key))?.to_owned()),
            "description" => res.description = Some(value.as_str().map(str::to_owned)),
            "isMemberManagementRestricted" => res.is_restricted = Some(value.as_bool().ok_or_else(|| invalid(key))?),
            "visibility" if value.is_null() => (),
            k if k.starts_with('@') => (),
            _ => {
                return Err(bad(
                    ctx,
                    format!(
                        "Property '{key}' does not exist as a declared property or extension property on type 'microsoft.graph.administrativeUnit'."
                    ),
                ));
            }
        }
    }
    Ok(res)
}

/// `POST /directory/administrativeUnits` — `administrativeUnits/allProperties/allTasks`.
async fn create_unit(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let parsed = unit_body(&ctx, &body)?;
    let name = parsed.display_name.ok_or_else(|| {
        bad(&ctx, "Invalid value specified for property 'displayName' of resource 'AdministrativeUnit'.")
    })?;
    let created = ctx
        .state
        .app
        .create_unit(&ctx.caller, &name, parsed.description.flatten(), parsed.is_restricted.unwrap_or(false))
        .await?;
    Ok(entity(
        format!("{}/$metadata#directory/administrativeUnits/$entity", ctx.base()),
        unit(&created),
        StatusCode::CREATED,
    ))
}

/// `PATCH /directory/administrativeUnits/{id}`.
async fn update_unit(ctx: GraphCtx, Path(id): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let parsed = unit_body(&ctx, &body)?;
    ctx.state.app.update_unit(&ctx.caller, &id, parsed.display_name, parsed.description, parsed.is_restricted).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /directory/administrativeUnits/{id}`.
async fn delete_unit(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.delete_unit(&ctx.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /directory/administrativeUnits/{id}/members`.
async fn list_unit_members(
    ctx: GraphCtx,
    Path(id): Path<String>,
    Query(query, path): Query,
) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$top", "$skiptoken"])?;
    let top = query::parse_top(query.raw.top.as_deref()).map_err(AppError::from)?;
    let page = ctx.state.app.list_unit_members(&ctx.caller, &id, top, query.raw.skiptoken.as_deref()).await?;
    let items = page.items.iter().map(|it| Value::Object(shape::directory_object(it, ctx.version))).collect();
    let next = page.skiptoken.map(|token| query.next_link(&ctx.state.app.config().public_url, &path, &token));
    Ok(collection(format!("{}/$metadata#directoryObjects", ctx.base()), items, None, next))
}

/// `POST /directory/administrativeUnits/{id}/members/$ref`.
async fn add_unit_member(ctx: GraphCtx, Path(id): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let member = shape::reference_id(&body).map_err(|message| bad(&ctx, message))?;
    ctx.state.app.add_unit_member(&ctx.caller, &id, &member).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /directory/administrativeUnits/{id}/members/{memberId}/$ref`.
async fn remove_unit_member(ctx: GraphCtx, Path((id, member)): Path<(String, String)>) -> Result<Response, GraphError> {
    ctx.state.app.remove_unit_member(&ctx.caller, &id, &member).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn scoped_member(it: &RoleAssignment, unit_id: &str, member: Option<&DirectoryObject>) -> Value {
    let info = match member {
        Some(DirectoryObject::User(user)) => {
            json!({"id": user.id.as_str(), "displayName": user.display_name, "userPrincipalName": user.user_principal_name})
        }
        Some(DirectoryObject::Group(group)) => {
            json!({"id": group.id.as_str(), "displayName": group.display_name, "userPrincipalName": null})
        }
        Some(DirectoryObject::ServicePrincipal(principal)) => {
            json!({"id": principal.id.as_str(), "displayName": principal.display_name, "userPrincipalName": null})
        }
        None => json!({"id": it.principal_id.as_str(), "displayName": null, "userPrincipalName": null}),
    };
    json!({"id": it.id, "roleId": it.role_definition_id, "administrativeUnitId": unit_id, "roleMemberInfo": info})
}

/// `GET /directory/administrativeUnits/{id}/scopedRoleMembers`.
async fn list_scoped_role_members(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let members = ctx.state.app.list_scoped_role_members(&ctx.caller, &id).await?;
    let unit_id = id.to_lowercase();
    let items = members.iter().map(|(it, member)| scoped_member(it, &unit_id, member.as_ref())).collect();
    Ok(collection(format!("{}/$metadata#scopedRoleMemberships", ctx.base()), items, None, None))
}

/// `POST /directory/administrativeUnits/{id}/scopedRoleMembers` — `scopedRoleMemberships/allProperties/allTasks`.
async fn add_scoped_role_member(
    ctx: GraphCtx,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response, GraphError> {
    let role = body.get("roleId").and_then(Value::as_str).ok_or_else(|| bad(&ctx, "Property 'roleId' is required."))?;
    let member = body
        .get("roleMemberInfo")
        .and_then(|it| it.get("id"))
        .and_then(Value::as_str)
        .ok_or_else(|| bad(&ctx, "Property 'roleMemberInfo.id' is required."))?;
    let unit_id = keyward_core::ids::ObjectId::parse(&id)
        .ok_or_else(|| bad(&ctx, format!("Invalid object identifier '{id}'.")))?;
    let created = ctx
        .state
        .app
        .create_role_assignment(&ctx.caller, member, role, &format!("/administrativeUnits/{unit_id}"))
        .await?;
    let principal = ctx.state.app.get_directory_object(&ctx.caller, member).await.ok();
    let context = format!("{}/$metadata#scopedRoleMemberships/$entity", ctx.base());
    Ok(entity(context, scoped_member(&created, unit_id.as_str(), principal.as_ref()), StatusCode::CREATED))
}

/// `DELETE /directory/administrativeUnits/{id}/scopedRoleMembers/{membershipId}`.
async fn remove_scoped_role_member(
    ctx: GraphCtx,
    Path((id, membership)): Path<(String, String)>,
) -> Result<Response, GraphError> {
    let found = ctx.state.app.get_role_assignment(&ctx.caller, &membership).await?;
    if found.directory_scope_id != format!("/administrativeUnits/{}", id.to_lowercase()) {
        return Err(GraphError::from(AppError::NotFound(membership)));
    }
    ctx.state.app.delete_role_assignment(&ctx.caller, &membership).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const UNITS: &str = "administrativeUnits";
    api.route(
        "/directory/administrativeUnits",
        get(list_units),
        Op::get(
            UNITS,
            "List administrative units",
            "microsoft.directory/administrativeUnits/allProperties/read",
            "AdministrativeUnitCollection",
        )
        .pages_only(),
    )
    .route(
        "/directory/administrativeUnits",
        post(create_unit),
        Op::post(
            UNITS,
            "Create an administrative unit (isMemberManagementRestricted is fixed at creation)",
            "microsoft.directory/administrativeUnits/allProperties/allTasks",
            "AdministrativeUnit",
            201,
            "AdministrativeUnit",
        ),
    )
    .route(
        "/directory/administrativeUnits/{id}",
        get(get_unit),
        Op::get(
            UNITS,
            "Get an administrative unit",
            "microsoft.directory/administrativeUnits/allProperties/read",
            "AdministrativeUnit",
        )
        .with_id(),
    )
    .route(
        "/directory/administrativeUnits/{id}",
        patch(update_unit),
        Op::patch(
            UNITS,
            "Update an administrative unit",
            "microsoft.directory/administrativeUnits/allProperties/allTasks",
            "AdministrativeUnit",
        )
        .with_id(),
    )
    .route(
        "/directory/administrativeUnits/{id}",
        delete(delete_unit),
        Op::delete(
            UNITS,
            "Delete an administrative unit",
            "microsoft.directory/administrativeUnits/allProperties/allTasks",
        )
        .with_id(),
    )
    .route(
        "/directory/administrativeUnits/{id}/members",
        get(list_unit_members),
        Op::get(
            UNITS,
            "List an administrative unit's members",
            "microsoft.directory/administrativeUnits/allProperties/read",
            "DirectoryObjectCollection",
        )
        .with_id()
        .pages_only(),
    )
    .route(
        "/directory/administrativeUnits/{id}/members/$ref",
        post(add_unit_member),
        Op::post(
            UNITS,
            "Add a member to an administrative unit",
            "microsoft.directory/administrativeUnits/allProperties/allTasks",
            "Reference",
            204,
            "",
        )
        .with_id(),
    )
    .route(
        "/directory/administrativeUnits/{id}/members/{memberId}/$ref",
        delete(remove_unit_member),
        Op::delete(
            UNITS,
            "Remove a member from an administrative unit",
            "microsoft.directory/administrativeUnits/allProperties/allTasks",
        )
        .with_id()
        .with_param("memberId"),
    )
    .route(
        "/directory/administrativeUnits/{id}/scopedRoleMembers",
        get(list_scoped_role_members),
        Op::get(
            UNITS,
            "List roles assigned at the unit's scope",
            "microsoft.directory/scopedRoleMemberships/allProperties/read",
            "ScopedRoleMembershipCollection",
        )
        .with_id(),
    )
    .route(
        "/directory/administrativeUnits/{id}/scopedRoleMembers",
        post(add_scoped_role_member),
        Op::post(
            UNITS,
            "Assign a role at the unit's scope",
            "microsoft.directory/scopedRoleMemberships/allProperties/allTasks",
            "ScopedRoleMembership",
            201,
            "ScopedRoleMembership",
        )
        .with_id(),
    )
    .route(
        "/directory/administrativeUnits/{id}/scopedRoleMembers/{membershipId}",
        delete(remove_scoped_role_member),
        Op::delete(
            UNITS,
            "Remove a role assigned at the unit's scope",
            "microsoft.directory/scopedRoleMemberships/allProperties/allTasks",
        )
        .with_id()
        .with_param("membershipId"),
    )
}
