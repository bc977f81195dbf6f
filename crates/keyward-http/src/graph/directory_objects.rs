//! `/directoryObjects/{id}`: a user or group by id.

use super::shape;
use crate::context::{GraphCtx, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

/// `GET /directoryObjects/{id}` — read of the user or group.
async fn get_directory_object(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let object = ctx.state.app.get_directory_object(&ctx.caller, &key).await?;
    let context = format!("{}/$metadata#directoryObjects/$entity", ctx.base());
    Ok(entity(context, shape::directory_object(&object, ctx.version), StatusCode::OK))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const USERS: &str = "users";
    api.route(
        "/directoryObjects/{id}",
        get(get_directory_object),
        Op::get(USERS, "Get a directory object (user or group)", "users or groups standard/read", "DirectoryObject")
            .with_id(),
    )
}
