//! `/oauth2PermissionGrants`: delegated permission grants (consent).

use super::{Body, Query, allow_only};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use keyward_app::{AppError, PermissionGrantDraft};
use keyward_core::consent::{GrantProperty, PermissionGrant};
use serde_json::{Value, json};

const MANAGE: &str = "microsoft.directory/oAuth2PermissionGrants/allProperties/allTasks";

const READ: &str = "microsoft.directory/servicePrincipals/standard/read";

fn grant_json(grant: &PermissionGrant) -> Value {
    json!({
        "id": grant.id,
        "clientId": grant.client_id.as_str(),
        "consentType": grant.consent_type,
        "principalId": grant.principal_id.as_ref().map(|it| it.as_str()),
        "resourceId": grant.resource_id,
        "scope": grant.scope,
    })
}

fn unsupported(ctx: &GraphCtx, message: String) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message, &ctx.ids)
}

/// The clauses Graph supports on grants: `eq` on `clientId`, `consentType`, `principalId` and
/// `resourceId` (property names in any case), joined with `and`. Anything else is refused.
fn grant_filter(ctx: &GraphCtx, raw: &str) -> Result<Vec<(GrantProperty, String)>, GraphError> {
    let expr = keyward_core::odata::parse_filter(raw)
        .map_err(|err| GraphError::bad_request(format!("Invalid filter clause: {err}"), &ctx.ids))?;
    let pairs = keyward_core::odata::eq_clauses(expr).map_err(|other| {
        unsupported(
            ctx,
            format!(
                "Unsupported filter clause '{other}': oauth2PermissionGrants support eq on clientId, consentType, \
                 principalId and resourceId, joined with 'and'."
            ),
        )
    })?;
    let mut res = Vec::new();
    for (name, text) in pairs {
        let (property, _) =
            GrantProperty::ALL.into_iter().find(|(_, it)| it.eq_ignore_ascii_case(&name)).ok_or_else(|| {
                unsupported(
                    ctx,
                    format!(
                        "Unsupported filter on property '{name}': oauth2PermissionGrants are filtered with eq on \
                         clientId, consentType, principalId or resourceId."
                    ),
                )
            })?;
        res.push((property, text));
    }
    Ok(res)
}

/// `GET /oauth2PermissionGrants` — `microsoft.directory/servicePrincipals/standard/read`. Pages
/// of `$top` (100 unless given, at most 999) in id order, the next one behind `@odata.nextLink`.
async fn list_grants(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$filter", "$top", "$skiptoken"])?;
    let clauses = match query.raw.filter.as_deref() {
        Some(raw) => grant_filter(&ctx, raw)?,
        None => Vec::new(),
    };
    let top = keyward_core::query::parse_top(query.raw.top.as_deref()).map_err(AppError::from)?;
    let page = ctx.state.app.list_permission_grants(&ctx.caller, &clauses, top, query.raw.skiptoken.as_deref()).await?;
    let items: Vec<Value> = page.items.iter().map(grant_json).collect();
    let next = page.skiptoken.map(|token| query.next_link(&ctx.state.app.config().public_url, &path, &token));
    Ok(collection(format!("{}/$metadata#oauth2PermissionGrants", ctx.base()), items, None, next))
}

/// `GET /oauth2PermissionGrants/{id}` — `microsoft.directory/servicePrincipals/standard/read`.
async fn get_grant(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let grant = ctx.state.app.get_permission_grant(&ctx.caller, &id).await?;
    Ok(entity(format!("{}/$metadata#oauth2PermissionGrants/$entity", ctx.base()), grant_json(&grant), StatusCode::OK))
}

fn text(body: &Value, name: &str) -> Result<Option<String>, GraphError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(it)) => Ok(Some(it.clone())),
        Some(_) => Err(GraphError::from(AppError::BadRequest(format!("Invalid value for property '{name}'.")))),
    }
}

/// Refuses properties a body may not carry (never drops them silently).
fn only(body: &Value, allowed: &[&str]) -> Result<(), GraphError> {
    let Some(fields) = body.as_object() else {
        return Err(GraphError::from(AppError::BadRequest("The request body must be a JSON object.".into())));
    };
    match fields.keys().find(|key| !key.starts_with("@odata.") && !allowed.contains(&key.as_str())) {
        Some(key) => Err(GraphError::from(AppError::BadRequest(format!(
            "Property '{key}' does not exist on type 'microsoft.graph.oAuth2PermissionGrant' or cannot be set."
        )))),
        None => Ok(()),
    }
}

/// `POST /oauth2PermissionGrants` — `microsoft.directory/oAuth2PermissionGrants/allProperties/allTasks`.
async fn create_grant(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    only(&body, &["clientId", "consentType", "principalId", "resourceId", "scope"])?;
    let draft = PermissionGrantDraft {
        client_id: text(&body, "clientId")?,
        consent_type: text(&body, "consentType")?,
        principal_id: text(&body, "principalId")?,
        resource_id: text(&body, "resourceId")?,
        scope: text(&body, "scope")?,
    };
    let grant = ctx.state.app.create_permission_grant(&ctx.caller, draft).await?;
    Ok(entity(
        format!("{}/$metadata#oauth2PermissionGrants/$entity", ctx.base()),
        grant_json(&grant),
        StatusCode::CREATED,
    ))
}

/// `PATCH /oauth2PermissionGrants/{id}` (only `scope`) — `…/oAuth2PermissionGrants/allProperties/allTasks`.
async fn update_grant(ctx: GraphCtx, Path(id): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    only(&body, &["scope"])?;
    let scope = text(&body, "scope")?;
    ctx.state.app.update_permission_grant(&ctx.caller, &id, scope).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /oauth2PermissionGrants/{id}` — `…/oAuth2PermissionGrants/allProperties/allTasks`.
async fn delete_grant(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.delete_permission_grant(&ctx.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    api.route(
        "/oauth2PermissionGrants",
        get(list_grants),
        Op::get(
            "consent",
            "List delegated permission grants ($filter: eq on clientId, consentType, principalId, resourceId; \
             pages of $top, 100 unless given)",
            READ,
            "OAuth2PermissionGrantCollection",
        )
        .pages_only()
        .with_options(&["$filter"]),
    )
    .route(
        "/oauth2PermissionGrants",
        post(create_grant),
        Op::post(
            "consent",
            "Grant an application delegated permissions (admin consent)",
            MANAGE,
            "OAuth2PermissionGrantCreate",
            201,
            "OAuth2PermissionGrant",
        ),
    )
    .route(
        "/oauth2PermissionGrants/{id}",
        get(get_grant),
        Op::get("consent", "Get a delegated permission grant", READ, "OAuth2PermissionGrant").with_id(),
    )
    .route(
        "/oauth2PermissionGrants/{id}",
        patch(update_grant),
        Op::patch("consent", "Replace a grant's scope", MANAGE, "OAuth2PermissionGrantUpdate").with_id(),
    )
    .route(
        "/oauth2PermissionGrants/{id}",
        delete(delete_grant),
        Op::delete("consent", "Remove a delegated permission grant", MANAGE).with_id(),
    )
}
