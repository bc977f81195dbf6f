//! `/organization` (the tenant) and `/domains` (its verified domains).

use super::shape;
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use keyward_app::AppError;
use keyward_core::directory::Domain;
use serde_json::{Map, Value, json};

/// `GET /organization` — `microsoft.directory/organization/standard/read`.
async fn organization(ctx: GraphCtx) -> Result<Response, GraphError> {
    let tenant = ctx.state.app.organization(&ctx.caller).await?;
    let context = format!("{}/$metadata#organization", ctx.base());
    Ok(collection(context, vec![object(shape::organization(&tenant))], None, None))
}

/// `GET /organization/{id}`: the tenant, by its id.
async fn organization_by_id(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let tenant = ctx.state.app.organization(&ctx.caller).await?;
    if !tenant.id.as_str().eq_ignore_ascii_case(id.trim()) {
        return Err(GraphError::from(AppError::NotFound(id)));
    }
    Ok(entity(format!("{}/$metadata#organization/$entity", ctx.base()), shape::organization(&tenant), StatusCode::OK))
}

/// A verified domain in Graph's `domain` shape; every domain of a tenant is managed and verified.
fn domain(it: &Domain) -> Value {
    json!({
        "id": it.name,
        "authenticationType": "Managed",
        "availabilityStatus": null,
        "isAdminManaged": true,
        "isDefault": it.is_default,
        "isInitial": it.is_initial,
        "isRoot": true,
        "isVerified": true,
        "passwordNotificationWindowInDays": null,
        "passwordValidityPeriodInDays": null,
        "supportedServices": [],
        "state": null,
    })
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(it) => it,
        _ => Map::new(),
    }
}

/// `GET /domains`: the tenant's domains (read as the organization is).
async fn domains(ctx: GraphCtx) -> Result<Response, GraphError> {
    let tenant = ctx.state.app.organization(&ctx.caller).await?;
    let items = tenant.domains.iter().map(|it| object(domain(it))).collect();
    Ok(collection(format!("{}/$metadata#domains", ctx.base()), items, None, None))
}

/// `GET /domains/{id}`: one domain, by its name in any case.
async fn domain_by_name(ctx: GraphCtx, Path(name): Path<String>) -> Result<Response, GraphError> {
    let tenant = ctx.state.app.organization(&ctx.caller).await?;
    let found = tenant.domains.iter().find(|it| it.name.eq_ignore_ascii_case(name.trim()));
    let found = found.ok_or_else(|| GraphError::from(AppError::NotFound(name.clone())))?;
    Ok(entity(format!("{}/$metadata#domains/$entity", ctx.base()), domain(found), StatusCode::OK))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const ORG: &str = "organization";
    const READ: &str = "microsoft.directory/organization/standard/read";
    api.route("/organization", get(organization), Op::get(ORG, "List the organization", READ, "OrganizationCollection"))
        .route(
            "/organization/{id}",
            get(organization_by_id),
            Op::get(ORG, "Get the organization by its id", READ, "Organization").with_id(),
        )
        .route("/domains", get(domains), Op::get(ORG, "List the tenant's domains", READ, "DomainCollection"))
        .route("/domains/{id}", get(domain_by_name), Op::get(ORG, "Get a domain by its name", READ, "Domain").with_id())
}
