//! `/beta/keyward/bulkOperations` (Keyward extension): one service-desk change for the users of a
//! group, an administrative unit, a `$filter` or a list (a CSV), with a dry run that changes
//! nothing; a real run goes on in the background, survives a crash (another node takes it over),
//! and is read back with its per-user results.

use super::{Body, Query, allow_only};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::graph::shape::timestamp;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use keyward_app::AppError;
use keyward_app::bulk::{BulkRequest, ItemView, JobView, Source};
use keyward_core::bulk::{ItemState, Operation};
use serde_json::{Map, Value, json};

/// Who may call: anyone may start one (each user's change is decided on its own); reads are for
/// whoever started it and readers of the audit log.
const PERMISSION: &str = "each user's change needs its own permission; reads: the caller who started it, or microsoft.directory/auditLogs/allProperties/read";

fn bad(message: impl Into<String>) -> GraphError {
    GraphError::from(AppError::BadRequest(message.into()))
}

fn job_json(job: &JobView) -> Value {
    let summary: Map<String, Value> =
        ItemState::ALL.iter().zip(job.counts).map(|(state, n)| (state.as_str().to_owned(), json!(n))).collect();
    let mut body = json!({
        "id": job.id.as_ref().map(|it| it.as_str()),
        "operation": job.operation.name(),
        "source": job.source,
        "status": job.status,
        "createdDateTime": timestamp(job.created),
        "finishedDateTime": job.finished.map(timestamp),
        "summary": summary,
    });
    match &job.operation {
        Operation::SetPerUserMfa(state) => body["perUserMfaState"] = json!(state.as_str()),
        Operation::AssignRole { role, scope } | Operation::RemoveRole { role, scope } => {
            body["roleDefinitionId"] = json!(role);
            body["directoryScopeId"] = json!(scope);
        }
        _ => (),
    }
    body
}

fn item_json(it: &ItemView) -> Value {
    json!({
        "position": it.position,
        "user": it.user_key,
        "userId": it.user_id.as_ref().map(|id| id.as_str()),
        "result": it.state.as_str(),
        "detail": it.detail,
    })
}

/// The request body: the operation, its parameters, the users, and `dryRun`.
fn bulk_request(body: &Value) -> Result<BulkRequest, GraphError> {
    let object = body.as_object().ok_or_else(|| bad("The request body must be a JSON object."))?;
    let known = ["operation", "perUserMfaState", "roleDefinitionId", "directoryScopeId", "users", "dryRun"];
    if let Some(name) = object.keys().find(|it| !known.contains(&it.as_str())) {
        return Err(bad(format!("Property '{name}' does not exist on keywardBulkOperation.")));
    }
    let text = |name: &str| -> Result<Option<&str>, GraphError> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(it)) => Ok(Some(it.as_str())),
            Some(_) => Err(bad(format!("'{name}' must be a string."))),
        }
    };
    let name = text("operation")?.ok_or_else(|| bad("'operation' is required."))?;
    let operation =
        Operation::parse(name, text("perUserMfaState")?, text("roleDefinitionId")?, text("directoryScopeId")?)
            .map_err(bad)?;
    let dry_run = match object.get("dryRun") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(it)) => *it,
        Some(_) => return Err(bad("'dryRun' must be true or false.")),
    };
    let users = object.get("users").and_then(Value::as_object).ok_or_else(|| {
        bad("'users' is required: {\"groupId\"}, {\"administrativeUnitId\"}, {\"filter\"}, {\"ids\"} or {\"csv\"}.")
    })?;
    let [(kind, value)] = users.iter().collect::<Vec<_>>()[..] else {
        return Err(bad("'users' takes exactly one of groupId, administrativeUnitId, filter, ids, csv."));
    };
    let string = || value.as_str().map(str::to_owned).ok_or_else(|| bad(format!("'users.{kind}' must be a string.")));
    let source = match kind.as_str() {
        "groupId" => Source::Group(string()?),
        "administrativeUnitId" => Source::Unit(string()?),
        "filter" => Source::Filter(string()?),
        "csv" => Source::Users(keyward_core::bulk::csv_users(&string()?).map_err(bad)?),
        "ids" => Source::Users(
            value
                .as_array()
                .ok_or_else(|| bad("'users.ids' must be an array of user principal names or ids."))?
                .iter()
                .map(|it| it.as_str().map(str::to_owned).ok_or_else(|| bad("'users.ids' must hold strings.")))
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(bad(format!("'users.{other}' is not one of groupId, administrativeUnitId, filter, ids, csv.")));
        }
    };
    Ok(BulkRequest { operation, source, dry_run })
}

/// `POST /beta/keyward/bulkOperations`: a dry run answers `200` with every user's outcome; a
/// real run answers `202` with the job (its first 100 users) and goes on in the background.
async fn start(ctx: GraphCtx, Query(query, _): Query, Body(body): Body) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &[])?;
    let request = bulk_request(&body)?;
    let started = ctx.state.app.start_bulk(&ctx.caller, request).await?;
    let mut body = job_json(&started.job);
    body["results"] = Value::Array(started.items.iter().map(item_json).collect());
    let context = format!("{}/$metadata#keyward/bulkOperations/$entity", ctx.base());
    let Some(id) = started.job.id else {
        return Ok(entity(context, body, StatusCode::OK));
    };
    ctx.state.app.spawn_bulk(ctx.caller.tenant.clone(), id.clone());
    let mut response = entity(context, body, StatusCode::ACCEPTED);
    let location = format!("{}/keyward/bulkOperations/{id}", ctx.base());
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET /beta/keyward/bulkOperations/{id}`: its status and counts.
async fn get_one(ctx: GraphCtx, Path(id): Path<String>, Query(query, _): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &[])?;
    let job = ctx.state.app.get_bulk(&ctx.caller, &id).await?;
    let context = format!("{}/$metadata#keyward/bulkOperations/$entity", ctx.base());
    Ok(entity(context, job_json(&job), StatusCode::OK))
}

/// `GET /beta/keyward/bulkOperations/{id}/results`: each user's outcome, in order, paged.
async fn results(ctx: GraphCtx, Path(id): Path<String>, Query(query, path): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$top", "$skiptoken"])?;
    let raw = &query.raw;
    let (items, next) =
        ctx.state.app.list_bulk_results(&ctx.caller, &id, raw.top.as_deref(), raw.skiptoken.as_deref()).await?;
    let items = items.iter().map(item_json).collect::<Vec<_>>();
    let context = format!("{}/$metadata#keyward/bulkOperations('{id}')/results", ctx.base());
    Ok(collection(context, items, None, super::next_link(&ctx, &query, &path, next)))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const TAG: &str = "bulkOperations";
    api.route(
        "/keyward/bulkOperations",
        post(start),
        Op::post(
            TAG,
            "Keyward extension: one change for many users (a group, a unit, a $filter, a list or CSV); 202 and runs in the background, or with dryRun 200 with each user's outcome and nothing changed",
            PERMISSION,
            "KeywardBulkOperationRequest",
            202,
            "KeywardBulkOperation",
        )
        .beta_only(),
    )
    .route(
        "/keyward/bulkOperations/{id}",
        get(get_one),
        Op::get(TAG, "Keyward extension: a bulk operation's status and counts", PERMISSION, "KeywardBulkOperation")
            .with_id()
            .beta_only(),
    )
    .route(
        "/keyward/bulkOperations/{id}/results",
        get(results),
        Op::get(TAG, "Keyward extension: each user's outcome, in order", PERMISSION, "KeywardBulkResultCollection")
            .with_id()
            .pages_only()
            .beta_only(),
    )
}
