//! Graph's role management: role definitions, role assignments, directory roles, administrative
//! units and scoped role members.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use keyward_app::{AppError, RoleDef};
use keyward_core::authz::custom::CustomRoleDraft;
use keyward_core::authz::{RESOURCE_ACTIONS, roles};
use keyward_core::directory::DirectoryObject;
use keyward_core::odata::eval::{Value as Field, matches};
use keyward_core::query::{self, RawQuery};
use keyward_store::{AdministrativeUnit, AssignmentFilter, RoleAssignment};
use serde_json::{Value, json};

use crate::context::{GraphCtx, GraphQuery, Version, collection, entity};
use crate::error::GraphError;
use crate::graph::{Body, Query};
use crate::openapi::{Api, Op};
use crate::shape;

fn bad(ctx: &GraphCtx, message: impl Into<String>) -> GraphError {
    GraphError::bad_request(message, &ctx.ids)
}

fn unsupported(ctx: &GraphCtx, message: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message, &ctx.ids)
}

/// Only these options are honoured here; others are refused rather than ignored.
pub(crate) fn allow_only(ctx: &GraphCtx, query: &GraphQuery, allowed: &[&str]) -> Result<(), GraphError> {
    let raw = &query.raw;
    let present = [
        ("$filter", raw.filter.is_some()),
        ("$select", raw.select.is_some()),
        ("$orderby", raw.orderby.is_some()),
        ("$search", raw.search.is_some()),
        ("$expand", raw.expand.is_some()),
        ("$count", raw.count.is_some()),
        ("$skip", raw.has_skip),
        ("$top", raw.top.is_some()),
        ("$skiptoken", raw.skiptoken.is_some()),
    ];
    match present.iter().find(|(name, is_present)| *is_present && !allowed.contains(name)) {
        Some((name, _)) => {
            Err(unsupported(ctx, format!("The query option '{name}' is not supported on this resource.")))
        }
        None => Ok(()),
    }
}

fn role_definition(role: &RoleDef, version: Version) -> Value {
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
        "isPrivileged": role.is_privileged(),
        "resourceScopes": ["/"],
        "version": role_version,
        "rolePermissions": [{"allowedResourceActions": actions, "condition": null}],
    });
    if version == Version::Beta {
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

fn assignment(it: &RoleAssignment) -> Value {
    json!({
        "id": it.id,
        "principalId": it.principal_id.as_str(),
        "roleDefinitionId": it.role_definition_id,
        "directoryScopeId": it.directory_scope_id,
        "appScopeId": null,
    })
}

/// The filter Graph supports on role assignments: `eq` on principalId, roleDefinitionId and
/// directoryScopeId, joined with `and`.
fn assignment_filter(ctx: &GraphCtx, raw: Option<&str>) -> Result<AssignmentFilter, GraphError> {
    let mut res = AssignmentFilter::default();
    let Some(raw) = raw else { return Ok(res) };
    let expr =
        keyward_core::odata::parse_filter(raw).map_err(|err| bad(ctx, format!("Invalid filter clause: {err}")))?;
    let pairs = keyward_core::odata::eq_clauses(expr).map_err(|_| {
        unsupported(
            ctx,
            "Role assignments filter with 'eq' on principalId, roleDefinitionId and directoryScopeId, joined with 'and'.",
        )
    })?;
    for (name, text) in pairs {
        match name.to_ascii_lowercase().as_str() {
            "principalid" => {
                res.principal_id = Some(
                    keyward_core::ids::ObjectId::parse(&text)
                        .ok_or_else(|| bad(ctx, format!("Invalid object identifier '{text}'.")))?,
                )
            }
            "roledefinitionid" => res.role_definition_id = Some(text),
            "directoryscopeid" => res.directory_scope_id = Some(text.to_lowercase()),
            _ => {
                return Err(unsupported(
                    ctx,
                    format!(
                        "Unsupported or invalid query filter clause specified for property '{name}' of resource 'UnifiedRoleAssignment'."
                    ),
                ));
            }
        }
    }
    Ok(res)
}

async fn expand_assignment(ctx: &GraphCtx, it: &RoleAssignment, expand: &[&str]) -> Result<Value, GraphError> {
    let mut value = assignment(it);
    if expand.contains(&"principal") {
        let principal = ctx.state.app.get_directory_object(&ctx.caller, it.principal_id.as_str()).await;
        value["principal"] = match principal {
            Ok(object) => Value::Object(shape::directory_object(&object, ctx.version)),
            Err(AppError::NotFound(_)) => Value::Null,
            Err(err) => return Err(GraphError::from(err)),
        };
    }
    if expand.contains(&"roleDefinition") {
        let role = ctx.state.app.get_role_definition(&ctx.caller, &it.role_definition_id).await;
        value["roleDefinition"] = match role {
            Ok(role) => role_definition(&role, ctx.version),
            Err(AppError::NotFound(_)) => Value::Null,
            Err(err) => return Err(GraphError::from(err)),
        };
    }
    Ok(value)
}

fn parse_expand<'a>(ctx: &GraphCtx, raw: Option<&'a str>) -> Result<Vec<&'a str>, GraphError> {
    let mut res = Vec::new();
    for it in raw.unwrap_or_default().split(',').map(str::trim).filter(|it| !it.is_empty()) {
        match it {
            "principal" | "roleDefinition" => res.push(it),
            other => {
                return Err(bad(
                    ctx,
                    format!(
                        "Could not find a property named '{other}' on type 'microsoft.graph.unifiedRoleAssignment' that can be expanded."
                    ),
                ));
            }
        }
    }
    Ok(res)
}

/// `GET /roleManagement/directory/roleAssignments` — `roleAssignments/allProperties/read`.
async fn list_role_assignments(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$filter", "$expand", "$top", "$skiptoken"])?;
    let filter = assignment_filter(&ctx, query.raw.filter.as_deref())?;
    let expand = parse_expand(&ctx, query.raw.expand.as_deref())?;
    let top = query::parse_top(query.raw.top.as_deref()).map_err(AppError::from)?;
    let page = ctx.state.app.list_role_assignments(&ctx.caller, &filter, top, query.raw.skiptoken.as_deref()).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for it in &page.items {
        items.push(expand_assignment(&ctx, it, &expand).await?);
    }
    let next = page.skiptoken.map(|token| query.next_link(&ctx.state.app.config().public_url, &path, &token));
    Ok(collection(format!("{}/$metadata#roleManagement/directory/roleAssignments", ctx.base()), items, None, next))
}

/// `GET /roleManagement/directory/roleAssignments/{id}`.
async fn get_role_assignment(
    ctx: GraphCtx,
    Path(id): Path<String>,
    Query(query, _): Query,
) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$expand"])?;
    let expand = parse_expand(&ctx, query.raw.expand.as_deref())?;
    let it = ctx.state.app.get_role_assignment(&ctx.caller, &id).await?;
    let value = expand_assignment(&ctx, &it, &expand).await?;
    Ok(entity(
        format!("{}/$metadata#roleManagement/directory/roleAssignments/$entity", ctx.base()),
        value,
        StatusCode::OK,
    ))
}

/// `POST /roleManagement/directory/roleAssignments` — `roleAssignments/allProperties/allTasks`
/// (administrative-unit scope: `scopedRoleMemberships/allProperties/allTasks`).
async fn create_role_assignment(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let object = body.as_object().ok_or_else(|| bad(&ctx, "The request body must be a JSON object."))?;
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    for key in object.keys() {
        if !["principalId", "roleDefinitionId", "directoryScopeId", "appScopeId"].contains(&key.as_str())
            && !key.starts_with('@')
        {
            return Err(bad(
                &ctx,
                format!(
                    "Property '{key}' does not exist as a declared property or extension property on type 'microsoft.graph.unifiedRoleAssignment'."
                ),
            ));
        }
    }
    if object.get("appScopeId").is_some_and(|it| !it.is_null()) {
        return Err(bad(&ctx, "appScopeId is not supported; use directoryScopeId."));
    }
    let principal = text("principalId").ok_or_else(|| bad(&ctx, "Property 'principalId' is required."))?;
    let role = text("roleDefinitionId").ok_or_else(|| bad(&ctx, "Property 'roleDefinitionId' is required."))?;
    let scope = text("directoryScopeId")
        .ok_or_else(|| bad(&ctx, "Exactly one of directoryScopeId and appScopeId is required."))?;
    let created = ctx.state.app.create_role_assignment(&ctx.caller, principal, role, scope).await?;
    Ok(entity(
        format!("{}/$metadata#roleManagement/directory/roleAssignments/$entity", ctx.base()),
        assignment(&created),
        StatusCode::CREATED,
    ))
}

/// `DELETE /roleManagement/directory/roleAssignments/{id}`.
async fn delete_role_assignment(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.delete_role_assignment(&ctx.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /roleManagement/directory/transitiveRoleAssignments?$filter=principalId eq '…'`.
async fn transitive_role_assignments(ctx: GraphCtx, Query(query, _): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$filter", "$count"])?;
    let filter = assignment_filter(&ctx, query.raw.filter.as_deref())?;
    let Some(principal) = filter.principal_id else {
        return Err(unsupported(&ctx, "transitiveRoleAssignments needs $filter=principalId eq '{id}'."));
    };
    let items = ctx.state.app.transitive_role_assignments(&ctx.caller, principal.as_str()).await?;
    let items = items.iter().map(assignment).collect();
    Ok(collection(
        format!("{}/$metadata#roleManagement/directory/transitiveRoleAssignments", ctx.base()),
        items,
        None,
        None,
    ))
}

fn directory_role(role: &keyward_core::authz::RoleDefinition) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.directoryRole",
        "id": role.id,
        "displayName": role.display_name,
        "description": role.description,
        "roleTemplateId": role.id,
    })
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

/// `GET /users/{id}/transitiveMemberOf`: groups through nesting and directory roles.
async fn transitive_member_of(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let found = ctx.state.app.transitive_member_of(&ctx.caller, &key).await?;
    let mut items: Vec<Value> =
        found.groups.iter().map(|it| Value::Object(shape::directory_object(it, ctx.version))).collect();
    items.extend(found.roles.into_iter().map(directory_role));
    Ok(collection(format!("{}/$metadata#directoryObjects", ctx.base()), items, None, None))
}

fn unit(it: &AdministrativeUnit) -> Value {
    json!({
        "id": it.id.as_str(),
        "displayName": it.display_name,
        "description": it.description,
        "visibility": null,
        "isMemberManagementRestricted": it.is_member_management_restricted,
    })
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

/// `GET /servicePrincipals` — `servicePrincipals/standard/read`.
async fn list_service_principals(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$top", "$skiptoken"])?;
    let top = query::parse_top(query.raw.top.as_deref()).map_err(AppError::from)?;
    let page = ctx.state.app.list_service_principals(&ctx.caller, top, query.raw.skiptoken.as_deref()).await?;
    let next = page.skiptoken.map(|token| query.next_link(&ctx.state.app.config().public_url, &path, &token));
    let items: Vec<_> = page.items.iter().map(shape::service_principal).collect();
    Ok(collection(format!("{}/$metadata#servicePrincipals", ctx.base()), items, None, next))
}

/// `GET /servicePrincipals/{id}`.
async fn get_service_principal(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let found = ctx.state.app.get_service_principal(&ctx.caller, &id).await?;
    Ok(entity(
        format!("{}/$metadata#servicePrincipals/$entity", ctx.base()),
        shape::service_principal(&found),
        StatusCode::OK,
    ))
}

/// `POST /servicePrincipals` — `servicePrincipals/create`.
async fn create_service_principal(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let object = body.as_object().ok_or_else(|| bad(&ctx, "The request body must be a JSON object."))?;
    for key in object.keys() {
        if !["appId", "displayName", "accountEnabled"].contains(&key.as_str()) && !key.starts_with('@') {
            return Err(bad(
                &ctx,
                format!(
                    "Property '{key}' does not exist as a declared property or extension property on type 'microsoft.graph.servicePrincipal'."
                ),
            ));
        }
    }
    let app_id = object.get("appId").and_then(Value::as_str).map(str::to_owned);
    let display_name = object.get("displayName").and_then(Value::as_str).map(str::to_owned);
    let account_enabled = object.get("accountEnabled").and_then(Value::as_bool);
    let created = ctx.state.app.create_service_principal(&ctx.caller, app_id, display_name, account_enabled).await?;
    Ok(entity(
        format!("{}/$metadata#servicePrincipals/$entity", ctx.base()),
        shape::service_principal(&created),
        StatusCode::CREATED,
    ))
}

/// `DELETE /servicePrincipals/{id}` — `servicePrincipals/delete`.
async fn delete_service_principal(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.delete_service_principal(&ctx.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Registers the role-management routes.
pub fn routes(api: Api) -> Api {
    const ROLES: &str = "roleManagement";
    const UNITS: &str = "administrativeUnits";
    api.route(
        "/roleManagement/directory/roleDefinitions",
        get(list_role_definitions),
        Op::get(
            ROLES,
            "List role definitions ($filter on displayName, isBuiltIn, isPrivileged)",
            "microsoft.directory/roleDefinitions/allProperties/read",
            "RoleDefinitionCollection",
        ),
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
        .beta_only(),
    )
    .route(
        "/roleManagement/directory/roleAssignments",
        get(list_role_assignments),
        Op::get(
            ROLES,
            "List role assignments ($filter on principalId, roleDefinitionId; $expand=principal,roleDefinition)",
            "microsoft.directory/roleAssignments/allProperties/read",
            "RoleAssignmentCollection",
        )
        .pages_only(),
    )
    .route(
        "/roleManagement/directory/roleAssignments",
        post(create_role_assignment),
        Op::post(
            ROLES,
            "Assign a role",
            "microsoft.directory/roleAssignments/allProperties/allTasks",
            "RoleAssignment",
            201,
            "RoleAssignment",
        ),
    )
    .route(
        "/roleManagement/directory/roleAssignments/{id}",
        get(get_role_assignment),
        Op::get(
            ROLES,
            "Get a role assignment",
            "microsoft.directory/roleAssignments/allProperties/read",
            "RoleAssignment",
        )
        .with_id(),
    )
    .route(
        "/roleManagement/directory/roleAssignments/{id}",
        delete(delete_role_assignment),
        Op::delete(ROLES, "Remove a role assignment", "microsoft.directory/roleAssignments/allProperties/allTasks")
            .with_id(),
    )
    .route(
        "/roleManagement/directory/transitiveRoleAssignments",
        get(transitive_role_assignments),
        Op::get(
            ROLES,
            "A principal's effective role assignments ($filter=principalId eq '…')",
            "microsoft.directory/roleAssignments/allProperties/read",
            "RoleAssignmentCollection",
        ),
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
    .route(
        "/users/{id}/transitiveMemberOf",
        get(transitive_member_of),
        Op::get(
            "users",
            "List groups (through nesting) and directory roles of a user",
            "microsoft.directory/users/memberOf/read",
            "DirectoryObjectCollection",
        )
        .with_id(),
    )
    .route(
        "/servicePrincipals",
        get(list_service_principals),
        Op::get(
            "servicePrincipals",
            "List service principals",
            "microsoft.directory/servicePrincipals/standard/read",
            "ServicePrincipalCollection",
        )
        .pages_only(),
    )
    .route(
        "/servicePrincipals",
        post(create_service_principal),
        Op::post(
            "servicePrincipals",
            "Create a service principal for an appId",
            "microsoft.directory/servicePrincipals/create",
            "ServicePrincipal",
            201,
            "ServicePrincipal",
        ),
    )
    .route(
        "/servicePrincipals/{id}",
        get(get_service_principal),
        Op::get(
            "servicePrincipals",
            "Get a service principal",
            "microsoft.directory/servicePrincipals/standard/read",
            "ServicePrincipal",
        )
        .with_id(),
    )
    .route(
        "/servicePrincipals/{id}",
        delete(delete_service_principal),
        Op::delete(
            "servicePrincipals",
            "Delete a service principal (and its role assignments)",
            "microsoft.directory/servicePrincipals/delete",
        )
        .with_id(),
    )
    .route(
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
