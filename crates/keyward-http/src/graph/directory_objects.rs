//! `/directoryObjects/{id}` (a user, group, service principal, application or administrative
//! unit by id) and
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

/// A directory object by id, shaped with its `@odata.type`, and its type's name: a user, group or
/// service principal, else an application or an administrative unit, each read as its own
/// collection reads it (so with the same permission).
async fn any_object(ctx: &GraphCtx, key: &str) -> Result<(Value, &'static str), AppError> {
    let app = &ctx.state.app;
    match app.get_directory_object(&ctx.caller, key).await {
        Ok(found) => {
            let kind = match &found {
                DirectoryObject::User(_) => "user",
                DirectoryObject::Group(_) => "group",
                DirectoryObject::ServicePrincipal(_) => "servicePrincipal",
            };
            Ok((Value::Object(shape::directory_object(&found, ctx.version)), kind))
        }
        // Someone who may not read applications or units (a guest) learns only that no user,
        // group or service principal has the id.
        Err(AppError::NotFound(_)) => match app.get_application(&ctx.caller, key).await {
            Ok(view) => Ok((typed(super::applications::application_json(&view), "application"), "application")),
            Err(AppError::NotFound(_) | AppError::Forbidden { .. }) => match app.get_unit(&ctx.caller, key).await {
                Ok(unit) => Ok((typed(shape::administrative_unit(&unit), "administrativeUnit"), "administrativeUnit")),
                Err(AppError::Forbidden { .. }) => Err(AppError::NotFound(key.to_owned())),
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        },
        Err(err) => Err(err),
    }
}

fn typed(mut value: Value, kind: &str) -> Value {
    if let Some(fields) = value.as_object_mut() {
        fields.insert("@odata.type".into(), Value::String(format!("#microsoft.graph.{kind}")));
    }
    value
}

/// `GET /directoryObjects/{id}`: a user, group, service principal, application or administrative unit.
async fn get_directory_object(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let (object, _) = any_object(&ctx, &key).await?;
    let context = format!("{}/$metadata#directoryObjects/$entity", ctx.base());
    Ok(entity(context, object, StatusCode::OK))
}

/// The types `getByIds` finds.
const TYPES: [&str; 5] = ["user", "group", "servicePrincipal", "application", "administrativeUnit"];

/// At most this many ids in one `getByIds`, as Graph.
const MAX_IDS: usize = 1000;

/// `POST /directoryObjects/getByIds` `{"ids": [...], "types": [...]}`: the objects among `ids`
/// the caller may read (each read as `GET /directoryObjects/{id}` is), of the `types` named
/// (`user`, `group`, `servicePrincipal`, `application`, `administrativeUnit`; all when absent);
/// ids that name nothing are left out.
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
        let known = TYPES
            .into_iter()
            .find(|it| it.eq_ignore_ascii_case(kind.trim_start_matches("microsoft.graph.")))
            .ok_or_else(|| bad(format!("Type '{kind}' is not one of {}.", TYPES.join(", "))))?;
        types.push(known);
    }
    let mut items = Vec::new();
    for id in &ids {
        let (found, kind) = match any_object(&ctx, id).await {
            Ok(it) => it,
            // Not there, or not the caller's to read: left out, as Graph leaves out what it
            // does not find.
            Err(AppError::NotFound(_) | AppError::Forbidden { .. } | AppError::BadRequest(_)) => continue,
            Err(err) => return Err(GraphError::from(err)),
        };
        if types.is_empty() || types.contains(&kind) {
            items.push(found);
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
