//! `/directoryObjects/{id}` (a user, group or service principal by id) and
//! `/directoryObjects/getByIds`.

use super::{Body, shape};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use keyward_app::AppError;
use keyward_core::directory::DirectoryObject;
use serde_json::Value;

/// `GET /directoryObjects/{id}` — read of the user or group.
async fn get_directory_object(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let object = ctx.state.app.get_directory_object(&ctx.caller, &key).await?;
    let context = format!("{}/$metadata#directoryObjects/$entity", ctx.base());
    Ok(entity(context, shape::directory_object(&object, ctx.version), StatusCode::OK))
}

/// At most this many ids in one `getByIds`, as Graph.
const MAX_IDS: usize = 1000;

/// `POST /directoryObjects/getByIds` `{"ids": [...], "types": [...]}`: the objects among `ids`
/// the caller may read (each read as `GET /directoryObjects/{id}` is), of the `types` named
/// (`user`, `group`, `servicePrincipal`; all when absent); ids that name nothing are left out.
async fn get_by_ids(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let bad = |message: String| GraphError::from(AppError::BadRequest(message));
    let object = body.as_object().ok_or_else(|| bad("The request body must be a JSON object.".into()))?;
    if let Some(unknown) = object.keys().find(|it| !matches!(it.as_str(), "ids" | "types")) {
        return Err(bad(format!("'{unknown}' is not a parameter of getByIds: it takes 'ids' and 'types'.")));
    }
    let strings = |name: &str| -> Result<Vec<String>, GraphError> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|it| it.as_str().map(str::to_owned).ok_or_else(|| bad(format!("'{name}' must hold strings."))))
                .collect(),
            Some(_) => Err(bad(format!("'{name}' must be an array of strings."))),
        }
    };
    let ids = strings("ids")?;
    if ids.is_empty() || ids.len() > MAX_IDS {
        return Err(bad(format!("'ids' must name 1 to {MAX_IDS} objects.")));
    }
    let mut types = Vec::new();
    for kind in strings("types")? {
        let known = ["user", "group", "servicePrincipal"]
            .into_iter()
            .find(|it| it.eq_ignore_ascii_case(kind.trim_start_matches("microsoft.graph.")))
            .ok_or_else(|| bad(format!("Type '{kind}' is not one of user, group or servicePrincipal.")))?;
        types.push(known);
    }
    let mut items = Vec::new();
    for id in &ids {
        let found = match ctx.state.app.get_directory_object(&ctx.caller, id).await {
            Ok(it) => it,
            // Not there, or not the caller's to read: left out, as Graph leaves out what it
            // does not find.
            Err(AppError::NotFound(_) | AppError::Forbidden { .. } | AppError::BadRequest(_)) => continue,
            Err(err) => return Err(GraphError::from(err)),
        };
        let kind = match &found {
            DirectoryObject::User(_) => "user",
            DirectoryObject::Group(_) => "group",
            DirectoryObject::ServicePrincipal(_) => "servicePrincipal",
        };
        if types.is_empty() || types.contains(&kind) {
            items.push(shape::directory_object(&found, ctx.version));
        }
    }
    Ok(collection(format!("{}/$metadata#directoryObjects", ctx.base()), items, None, None))
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
    .route(
        "/directoryObjects/getByIds",
        post(get_by_ids),
        Op::post(
            USERS,
            "Get directory objects by their ids (users, groups, service principals the caller may read)",
            "each object's read",
            "GetByIdsRequest",
            200,
            "DirectoryObjectCollection",
        ),
    )
}
