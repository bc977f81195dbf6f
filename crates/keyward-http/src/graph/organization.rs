//! `/organization`: the tenant.

use super::shape;
use crate::context::{GraphCtx, collection};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::response::Response;
use axum::routing::get;
use serde_json::Value;

/// `GET /organization` — `microsoft.directory/organization/standard/read`.
async fn organization(ctx: GraphCtx) -> Result<Response, GraphError> {
    let tenant = ctx.state.app.organization(&ctx.caller).await?;
    let context = format!("{}/$metadata#organization", ctx.base());
    let Value::Object(item) = shape::organization(&tenant) else {
        return Err(GraphError::bad_request("organization", &ctx.ids));
    };
    Ok(collection(context, vec![item], None, None))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const ORG: &str = "organization";
    api.route(
        "/organization",
        get(organization),
        Op::get(
            ORG,
            "List the organization",
            "microsoft.directory/organization/standard/read",
            "OrganizationCollection",
        ),
    )
}
