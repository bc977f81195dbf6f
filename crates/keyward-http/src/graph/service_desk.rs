//! `/beta/keyward/serviceDeskRequests` (Keyward extension): the changes dual control holds for a
//! second administrator (`keywardServiceDeskPolicy.dualControlEnabled`), and their approval or
//! denial. Each caller sees their own requests, those they may decide, or all of them with the
//! audit log's read permission.

use super::{Body, Query, allow_only, next_link};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::graph::shape::timestamp;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use keyward_app::AppError;
use keyward_app::dual_control::{Held, Party, RequestView};
use serde_json::{Value, json};

/// Who may call: the caller's own requests, those they may decide, audit readers all.
const ANYONE: &str = "the requester, an administrator who may make the change (not the requester or the target), or microsoft.directory/auditLogs/allProperties/read";

/// Where a request is read (root-relative; `observe` makes it absolute).
pub fn location(id: &str) -> String {
    format!("/beta/keyward/serviceDeskRequests/{id}")
}

fn party_json(it: &Party) -> Value {
    json!({"id": it.id.as_str(), "displayName": it.display_name, "userPrincipalName": it.user_principal_name})
}

pub fn request_json(it: &RequestView) -> Value {
    json!({
        "id": it.id.as_str(),
        "operation": it.operation.name(),
        "description": it.operation.describe(),
        "status": it.status.as_str(),
        "requestedBy": party_json(&it.requester),
        "target": party_json(&it.target),
        "createdDateTime": timestamp(it.created),
        "expirationDateTime": timestamp(it.expires),
        "decidedBy": it.decided_by.as_ref().map(party_json),
        "decidedDateTime": it.decided.map(timestamp),
        "decisionNote": it.decision_note,
        "canBeDecidedByMe": it.can_decide,
    })
}

/// The `202` body of a held change: the request and, once, the pass or password it will set.
pub fn held_json(held: &Held) -> Value {
    let mut body = request_json(&held.request);
    if let Some(pass) = &held.temporary_access_pass {
        body["pendingTemporaryAccessPass"] = json!(pass.expose());
    }
    if let Some(password) = &held.password {
        body["pendingPassword"] = json!(password.expose());
    }
    body
}

/// `GET /beta/keyward/serviceDeskRequests` — newest first; `$filter=status eq 'pendingApproval'`
/// keeps those waiting; `$top`, paged.
async fn list(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$filter", "$top", "$skiptoken"])?;
    let raw = &query.raw;
    let pending = match raw.filter.as_deref().map(str::trim) {
        None => false,
        Some(filter) if filter.replace('"', "'") == "status eq 'pendingApproval'" => true,
        Some(_) => {
            return Err(GraphError::from(AppError::BadRequest(
                "Only $filter=status eq 'pendingApproval' is supported on serviceDeskRequests.".into(),
            )));
        }
    };
    let (items, skiptoken) = ctx
        .state
        .app
        .list_service_desk_requests(&ctx.caller, pending, raw.top.as_deref(), raw.skiptoken.as_deref())
        .await?;
    let items = items.iter().map(request_json).collect::<Vec<_>>();
    let context = format!("{}/$metadata#keyward/serviceDeskRequests", ctx.base());
    Ok(collection(context, items, None, next_link(&ctx, &query, &path, skiptoken)))
}

/// `GET /beta/keyward/serviceDeskRequests/{id}`.
async fn get_one(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let request = ctx.state.app.get_service_desk_request(&ctx.caller, &id).await?;
    let context = format!("{}/$metadata#keyward/serviceDeskRequests/$entity", ctx.base());
    Ok(entity(context, request_json(&request), StatusCode::OK))
}

fn justification(body: &Value) -> Result<Option<String>, GraphError> {
    let object = body
        .as_object()
        .ok_or_else(|| GraphError::from(AppError::BadRequest("The request body must be a JSON object.".into())))?;
    if let Some(name) = object.keys().find(|it| *it != "justification") {
        return Err(GraphError::from(AppError::BadRequest(format!(
            "Property '{name}' does not exist on keywardServiceDeskDecision."
        ))));
    }
    match object.get("justification") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(it)) => Ok(Some(it.clone())),
        Some(_) => Err(GraphError::from(AppError::BadRequest("'justification' must be a string.".into()))),
    }
}

async fn decide(ctx: GraphCtx, id: &str, body: &Value, approve: bool) -> Result<Response, GraphError> {
    let justification = justification(body)?;
    let request = ctx.state.app.decide_service_desk_request(&ctx.caller, id, approve, justification).await?;
    let context = format!("{}/$metadata#keyward/serviceDeskRequests/$entity", ctx.base());
    Ok(entity(context, request_json(&request), StatusCode::OK))
}

/// `POST /beta/keyward/serviceDeskRequests/{id}/approve`: the change runs now, as its requester.
async fn approve(ctx: GraphCtx, Path(id): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    decide(ctx, &id, &body, true).await
}

/// `POST /beta/keyward/serviceDeskRequests/{id}/deny`.
async fn deny(ctx: GraphCtx, Path(id): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    decide(ctx, &id, &body, false).await
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const TAG: &str = "serviceDeskRequests";
    api.route(
        "/keyward/serviceDeskRequests",
        get(list),
        Op::get(
            TAG,
            "Keyward extension: changes held by dual control, newest first ($filter=status eq 'pendingApproval')",
            ANYONE,
            "KeywardServiceDeskRequestCollection",
        )
        .pages_only()
        .with_options(&["$filter"])
        .beta_only(),
    )
    .route(
        "/keyward/serviceDeskRequests/{id}",
        get(get_one),
        Op::get(TAG, "Keyward extension: one held change and its status", ANYONE, "KeywardServiceDeskRequest")
            .with_id()
            .beta_only(),
    )
    .route(
        "/keyward/serviceDeskRequests/{id}/approve",
        post(approve),
        Op::post(
            TAG,
            "Keyward extension: approve a held change (never one's own request or one's own account); it runs now as the requester",
            ANYONE,
            "KeywardServiceDeskDecision",
            200,
            "KeywardServiceDeskRequest",
        )
        .with_id()
        .beta_only(),
    )
    .route(
        "/keyward/serviceDeskRequests/{id}/deny",
        post(deny),
        Op::post(
            TAG,
            "Keyward extension: deny a held change",
            ANYONE,
            "KeywardServiceDeskDecision",
            200,
            "KeywardServiceDeskRequest",
        )
        .with_id()
        .beta_only(),
    )
}
