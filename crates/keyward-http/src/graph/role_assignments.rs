//! `/roleManagement/directory/roleAssignments` and `transitiveRoleAssignments`.

use super::role_definitions::role_definition;
use super::{Body, Query, allow_only, bad, shape, unsupported};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use keyward_app::AppError;
use keyward_core::directory::{AssignmentFilter, RoleAssignment};
use keyward_core::query;
use serde_json::{Value, json};

fn assignment(it: &RoleAssignment) -> Value {
    json!({
        "id": it.id,
        "principalId": it.principal_id.as_str(),
        "roleDefinitionId": it.role_definition_id,
        "directoryScopeId": it.directory_scope_id,
        "appScopeId": null,
    })
}

/// The filter Graph supports on role assignments: `eq` or `in` on principalId, roleDefinitionId
/// and directoryScopeId, joined with `and`.
fn assignment_filter(ctx: &GraphCtx, raw: Option<&str>) -> Result<AssignmentFilter, GraphError> {
    let mut res = AssignmentFilter::default();
    let Some(raw) = raw else { return Ok(res) };
    let expr =
        keyward_core::odata::parse_filter(raw).map_err(|err| bad(ctx, format!("Invalid filter clause: {err}")))?;
    let clauses = keyward_core::odata::eq_or_in_clauses(expr).map_err(|_| {
        unsupported(
            ctx,
            "Role assignments filter with 'eq' or 'in' on principalId, roleDefinitionId and directoryScopeId, joined with 'and'.",
        )
    })?;
    for (name, values) in clauses {
        let twice = || unsupported(ctx, format!("Filter on '{name}' only once."));
        match name.to_ascii_lowercase().as_str() {
            "principalid" => {
                let ids = values
                    .iter()
                    .map(|text| {
                        keyward_core::ids::ObjectId::parse(text)
                            .ok_or_else(|| bad(ctx, format!("Invalid object identifier '{text}'.")))
                    })
                    .collect::<Result<_, _>>()?;
                if res.principal_id.replace(ids).is_some() {
                    return Err(twice());
                }
            }
            "roledefinitionid" => {
                if res.role_definition_id.replace(values).is_some() {
                    return Err(twice());
                }
            }
            "directoryscopeid" => {
                let scopes = values.iter().map(|it| keyward_core::directory::canonical_scope(it)).collect();
                if res.directory_scope_id.replace(scopes).is_some() {
                    return Err(twice());
                }
            }
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

/// `$expand` of a role assignment or a PIM schedule or request (`kind`, Graph's type name):
/// `principal`, `roleDefinition`.
pub(super) fn parse_expand(ctx: &GraphCtx, raw: Option<&str>, kind: &str) -> Result<Vec<&'static str>, GraphError> {
    let mut res = Vec::new();
    for it in raw.unwrap_or_default().split(',').map(str::trim).filter(|it| !it.is_empty()) {
        // Any case, as Graph takes it.
        match it.to_ascii_lowercase().as_str() {
            "principal" => res.push("principal"),
            "roledefinition" => res.push("roleDefinition"),
            other => {
                return Err(bad(
                    ctx,
                    format!(
                        "Could not find a property named '{other}' on type 'microsoft.graph.{kind}' that can be expanded."
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
    let expand = parse_expand(&ctx, query.raw.expand.as_deref(), "unifiedRoleAssignment")?;
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
    let expand = parse_expand(&ctx, query.raw.expand.as_deref(), "unifiedRoleAssignment")?;
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
    let Some([principal]) = filter.principal_id.as_deref() else {
        return Err(unsupported(&ctx, "transitiveRoleAssignments needs $filter=principalId eq '{id}'."));
    };
    let items = ctx.state.app.transitive_role_assignments(&ctx.caller, principal.as_str()).await?;
    // The principal's transitive assignments (some held through a group), narrowed by the
    // filter's other clauses.
    let rest = AssignmentFilter { principal_id: None, ..filter.clone() };
    let items: Vec<Value> = items.iter().filter(|it| rest.matches(it)).map(assignment).collect();
    let count = keyward_core::query::parse_count(query.raw.count.as_deref()).map_err(AppError::from)?;
    let total = count.then_some(items.len() as u64);
    Ok(collection(
        format!("{}/$metadata#roleManagement/directory/transitiveRoleAssignments", ctx.base()),
        items,
        total,
        None,
    ))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const ROLES: &str = "roleManagement";
    api.route(
        "/roleManagement/directory/roleAssignments",
        get(list_role_assignments),
        Op::get(
            ROLES,
            "List role assignments ($filter eq or in on principalId, roleDefinitionId, directoryScopeId; $expand=principal,roleDefinition)",
            "microsoft.directory/roleAssignments/allProperties/read",
            "RoleAssignmentCollection",
        )
        .pages_only().with_options(&["$filter", "$expand", "$top", "$skiptoken"]),
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
        .with_id().with_options(&["$expand"]),
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
        ).with_options(&["$filter", "$count"]),
    )
}
