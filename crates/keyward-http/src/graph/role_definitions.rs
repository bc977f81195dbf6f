//! `/roleManagement/directory/roleDefinitions` (built-in and custom roles) and the resource
//! actions custom roles are made of.

use super::{Body, Query, allow_only, bad};
use crate::context::{GraphCtx, Version, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use keyward_app::{AppError, RoleDef};
use keyward_core::authz::custom::CustomRoleDraft;
use keyward_core::authz::{RESOURCE_ACTIONS, roles};
use keyward_core::odata::eval::{Value as Field, matches};
use keyward_core::query;
use keyward_core::query::RawQuery;
use serde_json::{Value, json};

pub(super) fn role_definition(role: &RoleDef, version: Version) -> Value {
    let (id, template_id, name, description, is_built_in, is_enabled, role_version, actions): (
        String,
        String,
        &str,
        Option<&str>,
        bool,
        bool,
        &str,
        Vec<&str>,
    ) = match role {
        RoleDef::BuiltIn(it) => (
            it.id.into(),
            it.id.into(),
            it.display_name,
            Some(it.description),
            true,
            true,
            "1",
            it.allowed_resource_actions.to_vec(),
        ),
        RoleDef::Custom(it) => (
            it.id.to_string(),
            it.template_id.clone(),
            &it.display_name,
            it.description.as_deref(),
            false,
            it.is_enabled,
            &it.version,
            it.allowed_resource_actions.iter().map(String::as_str).collect(),
        ),
    };
    let mut res = json!({
        "id": id,
        "templateId": template_id,
        "displayName": name,
        "description": description,
        "isBuiltIn": is_built_in,
        "isEnabled": is_enabled,
        "resourceScopes": ["/"],
        "version": role_version,
        "rolePermissions": [{"allowedResourceActions": actions, "condition": null}],
    });
    if version == Version::Beta {
        res["isPrivileged"] = json!(role.is_privileged());
        let inherits = match role {
            RoleDef::BuiltIn(it) if it.id != roles::DIRECTORY_READERS => json!([{"id": roles::DIRECTORY_READERS}]),
            _ => json!([]),
        };
        res["inheritsPermissionsFrom"] = inherits;
        res["allowedPrincipalTypes"] = json!("user,servicePrincipal,group");
    }
    res
}

fn role_fields<'a>(role: &'a RoleDef) -> impl Fn(&str) -> Option<Field<'a>> + 'a {
    move |name| match name {
        "id" => Some(Field::Str(match role {
            RoleDef::BuiltIn(it) => it.id,
            RoleDef::Custom(it) => it.id.as_str(),
        })),
        "templateId" => Some(Field::Str(match role {
            RoleDef::BuiltIn(it) => it.id,
            RoleDef::Custom(it) => &it.template_id,
        })),
        "displayName" => Some(Field::Str(role.display_name())),
        "isBuiltIn" => Some(Field::Bool(matches!(role, RoleDef::BuiltIn(_)))),
        "isEnabled" => Some(Field::Bool(match role {
            RoleDef::BuiltIn(_) => true,
            RoleDef::Custom(it) => it.is_enabled,
        })),
        "isPrivileged" => Some(Field::Bool(role.is_privileged())),
        _ => None,
    }
}

/// `GET /roleManagement/directory/roleDefinitions` — `roleDefinitions/allProperties/read`.
async fn list_role_definitions(ctx: GraphCtx, Query(query, _): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$filter"])?;
    let filter = match &query.raw.filter {
        Some(filter) => {
            // `isPrivileged` is a beta property.
            if ctx.version == Version::V1 && filter.to_ascii_lowercase().contains("isprivileged") {
                return Err(bad(
                    &ctx,
                    "Could not find a property named 'isPrivileged' on type 'microsoft.graph.unifiedRoleDefinition'; it is a beta property.",
                ));
            }
            let raw = RawQuery { filter: Some(filter.clone()), ..RawQuery::default() };
            query::plan(&query::ROLE_DEFINITION, &raw).map_err(AppError::from)?.filter
        }
        None => None,
    };
    let roles = ctx.state.app.list_role_definitions(&ctx.caller).await?;
    let items = roles
        .iter()
        .filter(|role| filter.as_ref().is_none_or(|expr| matches(expr, &role_fields(role))))
        .map(|role| role_definition(role, ctx.version))
        .collect();
    Ok(collection(format!("{}/$metadata#roleManagement/directory/roleDefinitions", ctx.base()), items, None, None))
}

/// `GET /roleManagement/directory/roleDefinitions/{id}`.
async fn get_role_definition(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let role = ctx.state.app.get_role_definition(&ctx.caller, &id).await?;
    let context = format!("{}/$metadata#roleManagement/directory/roleDefinitions/$entity", ctx.base());
    Ok(entity(context, role_definition(&role, ctx.version), StatusCode::OK))
}

fn role_draft(ctx: &GraphCtx, body: &Value) -> Result<CustomRoleDraft, GraphError> {
    let invalid = |name: &str| {
        bad(ctx, format!("Invalid value specified for property '{name}' of resource 'UnifiedRoleDefinition'."))
    };
    let object = body.as_object().ok_or_else(|| bad(ctx, "The request body must be a JSON object."))?;
    let mut draft = CustomRoleDraft::default();
    for (key, value) in object {
        match key.as_str() {
            "displayName" => draft.display_name = Some(value.as_str().ok_or_else(|| invalid(key))?.to_owned()),
            "description" => {
                if !(value.is_string() || value.is_null()) {
                    return Err(invalid(key));
                }
                draft.description = Some(value.as_str().map(str::to_owned));
            }
            "isEnabled" => draft.is_enabled = Some(value.as_bool().ok_or_else(|| invalid(key))?),
            "templateId" => draft.template_id = Some(value.as_str().ok_or_else(|| invalid(key))?.to_owned()),
            "version" => draft.version = Some(value.as_str().ok_or_else(|| invalid(key))?.to_owned()),
            "rolePermissions" => {
                let permissions = value.as_array().ok_or_else(|| invalid(key))?;
                let mut actions = Vec::new();
                for permission in permissions {
                    if permission.get("condition").is_some_and(|it| !it.is_null()) {
                        return Err(bad(ctx, "Conditions are not supported for custom roles."));
                    }
                    let allowed = permission
                        .get("allowedResourceActions")
                        .and_then(Value::as_array)
                        .ok_or_else(|| invalid(key))?;
                    for action in allowed {
                        actions.push(action.as_str().ok_or_else(|| invalid(key))?.to_owned());
                    }
                }
                draft.allowed_resource_actions = Some(actions);
            }
            "resourceScopes" => {
                let scopes = value.as_array().ok_or_else(|| invalid(key))?;
                if scopes.iter().any(|it| it.as_str() != Some("/")) {
                    return Err(bad(
                        ctx,
                        "Only '/' is supported in resourceScopes; attach a scope to the role assignment instead.",
                    ));
                }
            }
            "isBuiltIn" if value.as_bool() == Some(false) => (),
            k if k.starts_with('@') => (),
            _ => {
                return Err(bad(
                    ctx,
                    format!(
                        "Property '{key}' does not exist as a declared property or extension property on type 'microsoft.graph.unifiedRoleDefinition'."
                    ),
                ));
            }
        }
    }
    Ok(draft)
}

/// `POST /roleManagement/directory/roleDefinitions` — `roleDefinitions/allProperties/allTasks`.
async fn create_role_definition(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let draft = role_draft(&ctx, &body)?;
    let role = ctx.state.app.create_role_definition(&ctx.caller, draft).await?;
    let context = format!("{}/$metadata#roleManagement/directory/roleDefinitions/$entity", ctx.base());
    Ok(entity(context, role_definition(&RoleDef::Custom(role), ctx.version), StatusCode::CREATED))
}

/// `PATCH /roleManagement/directory/roleDefinitions/{id}` — `roleDefinitions/allProperties/allTasks`.
async fn update_role_definition(
    ctx: GraphCtx,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response, GraphError> {
    let draft = role_draft(&ctx, &body)?;
    ctx.state.app.update_role_definition(&ctx.caller, &id, draft).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /roleManagement/directory/roleDefinitions/{id}` — `roleDefinitions/allProperties/allTasks`.
async fn delete_role_definition(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.delete_role_definition(&ctx.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /beta/roleManagement/directory/resourceNamespaces/microsoft.directory/resourceActions`.
async fn list_resource_actions(ctx: GraphCtx, Query(query, _): Query) -> Result<Response, GraphError> {
    if ctx.version != Version::Beta {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Resource not found for the segment 'resourceNamespaces'.",
            &ctx.ids,
        ));
    }
    allow_only(&ctx, &query, &["$filter"])?;
    let filter = match &query.raw.filter {
        Some(filter) => {
            let raw = RawQuery { filter: Some(filter.clone()), ..RawQuery::default() };
            query::plan(&query::RESOURCE_ACTION, &raw).map_err(AppError::from)?.filter
        }
        None => None,
    };
    let items = RESOURCE_ACTIONS
        .iter()
        .map(|it| {
            let id = format!("{}-{}", it.name.replacen('/', "-", 1).replace('/', "-"), it.verb.to_lowercase());
            (it, id)
        })
        .filter(|(it, id)| {
            filter.as_ref().is_none_or(|expr| {
                let get = |name: &str| match name {
                    "id" => Some(Field::Str(id)),
                    "name" => Some(Field::Str(it.name)),
                    "actionVerb" => Some(Field::Str(it.verb)),
                    "isPrivileged" => Some(Field::Bool(it.is_privileged)),
                    _ => None,
                };
                matches(expr, &get)
            })
        })
        .map(|(it, id)| {
            json!({
                "actionVerb": it.verb, "description": it.description, "id": id, "isPrivileged": it.is_privileged,
                "name": it.name, "resourceScopeId": null, "isAuthenticationContextSettable": false, "authenticationContextId": null,
            })
        })
        .collect();
    let context = format!(
        "{}/$metadata#roleManagement/directory/resourceNamespaces('microsoft.directory')/resourceActions",
        ctx.base()
    );
    Ok(collection(context, items, None, None))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const ROLES: &str = "roleManagement";
    api.route(
        "/roleManagement/directory/roleDefinitions",
        get(list_role_definitions),
        Op::get(
            ROLES,
            "List role definitions ($filter on displayName, isBuiltIn; beta also isPrivileged)",
            "microsoft.directory/roleDefinitions/allProperties/read",
            "RoleDefinitionCollection",
        )
        .with_options(&["$filter"]),
    )
    .route(
        "/roleManagement/directory/roleDefinitions",
        post(create_role_definition),
        Op::post(
            ROLES,
            "Create a custom role",
            "microsoft.directory/roleDefinitions/allProperties/allTasks",
            "RoleDefinition",
            201,
            "RoleDefinition",
        ),
    )
    .route(
        "/roleManagement/directory/roleDefinitions/{id}",
        get(get_role_definition),
        Op::get(
            ROLES,
            "Get a role definition",
            "microsoft.directory/roleDefinitions/allProperties/read",
            "RoleDefinition",
        )
        .with_id(),
    )
    .route(
        "/roleManagement/directory/roleDefinitions/{id}",
        patch(update_role_definition),
        Op::patch(
            ROLES,
            "Update a custom role",
            "microsoft.directory/roleDefinitions/allProperties/allTasks",
            "RoleDefinition",
        )
        .with_id(),
    )
    .route(
        "/roleManagement/directory/roleDefinitions/{id}",
        delete(delete_role_definition),
        Op::delete(ROLES, "Delete a custom role", "microsoft.directory/roleDefinitions/allProperties/allTasks")
            .with_id(),
    )
    .route(
        "/roleManagement/directory/resourceNamespaces/microsoft.directory/resourceActions",
        get(list_resource_actions),
        Op::get(
            ROLES,
            "List resource actions (beta; $filter on isPrivileged)",
            "(any signed-in user)",
            "ResourceActionCollection",
        )
        .beta_only()
        .with_options(&["$filter"]),
    )
}
