//! `/servicePrincipals`.

use super::{Body, Query, allow_only, bad, shape};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use keyward_app::AppError;
use keyward_core::query;
use serde_json::Value;

/// `GET /servicePrincipals` — `servicePrincipals/standard/read`.
async fn list_service_principals(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$top", "$skiptoken", "$filter", "$select"])?;
    let top = query::parse_top(query.raw.top.as_deref()).map_err(AppError::from)?;
    let filter = super::in_memory_filter(&query::SERVICE_PRINCIPAL, query.raw.filter.as_deref())?;
    let select = super::select_for(&query::SERVICE_PRINCIPAL, query.raw.select.as_deref())?;
    let skiptoken = query.raw.skiptoken.as_deref();
    let page = ctx.state.app.list_service_principals(&ctx.caller, filter.as_ref(), top, skiptoken).await?;
    let next = page.skiptoken.map(|token| query.next_link(&ctx.state.app.config().public_url, &path, &token));
    let items: Vec<_> = page
        .items
        .iter()
        .map(|it| super::pick(Value::Object(shape::service_principal(it)), select.as_deref()))
        .collect();
    let context = format!("{}/$metadata#servicePrincipals{}", ctx.base(), super::select_suffix(select.as_deref()));
    Ok(collection(context, items, None, next))
}

/// `GET /servicePrincipals/{id}` (`$select` too).
async fn get_service_principal(ctx: GraphCtx, Path(id): Path<String>, query: Query) -> Result<Response, GraphError> {
    let Query(query, _) = query;
    allow_only(&ctx, &query, &["$select"])?;
    let select = super::select_for(&query::SERVICE_PRINCIPAL, query.raw.select.as_deref())?;
    let found = ctx.state.app.get_service_principal(&ctx.caller, &id).await?;
    let suffix = super::select_suffix(select.as_deref());
    Ok(entity(
        format!("{}/$metadata#servicePrincipals{suffix}/$entity", ctx.base()),
        super::pick(Value::Object(shape::service_principal(&found)), select.as_deref()),
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

/// `PATCH /servicePrincipals/{id}` (204) — `servicePrincipals/basic/update` for `displayName`,
/// `servicePrincipals/disable` or `…/enable` for `accountEnabled`.
async fn update_service_principal(
    ctx: GraphCtx,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response, GraphError> {
    let draft = shape::service_principal_patch(&body).map_err(|message| GraphError::bad_request(message, &ctx.ids))?;
    ctx.state.app.update_service_principal(&ctx.caller, &id, draft).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /servicePrincipals/{id}` — `servicePrincipals/delete`.
async fn delete_service_principal(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.delete_service_principal(&ctx.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The object id a `/servicePrincipals(appId='…')` route names.
async fn by_app_id(ctx: &GraphCtx, captured: &str) -> Result<String, GraphError> {
    let app_id = super::alternate_key(ctx, "appId", captured)?;
    Ok(ctx.state.app.service_principal_by_app_id(&ctx.caller, &app_id).await?)
}

/// `GET /servicePrincipals(appId='…')`.
async fn get_by_app_id(ctx: GraphCtx, Path(captured): Path<String>, query: Query) -> Result<Response, GraphError> {
    let id = by_app_id(&ctx, &captured).await?;
    get_service_principal(ctx, Path(id), query).await
}

/// `PATCH /servicePrincipals(appId='…')`.
async fn update_by_app_id(ctx: GraphCtx, Path(captured): Path<String>, body: Body) -> Result<Response, GraphError> {
    let id = by_app_id(&ctx, &captured).await?;
    update_service_principal(ctx, Path(id), body).await
}

/// `DELETE /servicePrincipals(appId='…')`.
async fn delete_by_app_id(ctx: GraphCtx, Path(captured): Path<String>) -> Result<Response, GraphError> {
    let id = by_app_id(&ctx, &captured).await?;
    delete_service_principal(ctx, Path(id)).await
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    api.route_undocumented_with("/servicePrincipals(appId={key}", get(get_by_app_id), &["$select"])
        .route_undocumented("/servicePrincipals(appId={key}", delete(delete_by_app_id))
        .route_undocumented("/servicePrincipals(appId={key}", patch(update_by_app_id))
        .document(
            "/servicePrincipals(appId='{appId}')",
            Op::get(
                "servicePrincipals",
                "Get a service principal by its application id",
                "microsoft.directory/servicePrincipals/standard/read",
                "ServicePrincipal",
            )
            .with_param("appId")
            .with_options(&["$select"]),
        )
        .document(
            "/servicePrincipals(appId='{appId}')",
            Op::patch(
                "servicePrincipals",
                "Update a service principal by its application id",
                "microsoft.directory/servicePrincipals/basic/update",
                "ServicePrincipal",
            )
            .with_param("appId"),
        )
        .document(
            "/servicePrincipals(appId='{appId}')",
            Op::delete(
                "servicePrincipals",
                "Delete a service principal by its application id",
                "microsoft.directory/servicePrincipals/delete",
            )
            .with_param("appId"),
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
            .pages_only()
            .with_options(&["$filter", "$select"]),
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
            .with_id()
            .with_options(&["$select"]),
        )
        .route(
            "/servicePrincipals/{id}",
            patch(update_service_principal),
            Op::patch(
                "servicePrincipals",
                "Update a service principal (displayName; accountEnabled needs servicePrincipals/disable or /enable)",
                "microsoft.directory/servicePrincipals/basic/update",
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
}
