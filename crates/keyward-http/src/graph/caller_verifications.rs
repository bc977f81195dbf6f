//! `/beta/keyward/callerVerifications` (Keyward extension): an agent verifies that the caller is
//! the user before handing over a pass or a password (`keywardServiceDeskPolicy.
//! callerVerificationEnabled`). The user confirms the agent's code on `/{tenant}/verify-call`, or
//! their manager or another administrator vouches for them here.

use super::{Body, OptionalBody};
use crate::context::{GraphCtx, entity};
use crate::error::GraphError;
use crate::graph::shape::timestamp;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use keyward_app::AppError;
use keyward_app::caller_verification::VerificationView;
use serde_json::{Value, json};

const PERMISSION: &str = "microsoft.directory/users/authenticationMethods/create (or delete, basic/update, password/update) on the user; reads: the agent, the user, or audit-log readers; attest: the user's manager or an administrator who may create the user's methods";

fn verification_json(it: &VerificationView) -> Value {
    let mut body = json!({
        "id": it.id.as_str(),
        "userId": it.user_id.as_str(),
        "agentId": it.agent_id.as_str(),
        "agentDisplayName": it.agent_name,
        "status": it.status.as_str(),
        "method": it.method,
        "createdDateTime": timestamp(it.created),
        "expirationDateTime": timestamp(it.expires),
    });
    if let Some(code) = &it.code {
        body["code"] = json!(code);
    }
    body
}

/// `POST /beta/keyward/callerVerifications` with `{"userId": "…"}` (an id or a user principal
/// name): `201` with the code to read out, shown only here.
async fn start(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let object = body
        .as_object()
        .ok_or_else(|| GraphError::from(AppError::BadRequest("The request body must be a JSON object.".into())))?;
    if let Some(name) = object.keys().find(|it| *it != "userId") {
        return Err(GraphError::from(AppError::BadRequest(format!(
            "Property '{name}' does not exist on keywardCallerVerification."
        ))));
    }
    let user = object
        .get("userId")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::from(AppError::BadRequest("'userId' (a string) is required.".into())))?;
    let started = ctx.state.app.start_caller_verification(&ctx.caller, user).await?;
    let context = format!("{}/$metadata#keyward/callerVerifications/$entity", ctx.base());
    let mut response = entity(context, verification_json(&started), StatusCode::CREATED);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /beta/keyward/callerVerifications/{id}`: its status (the code is never shown again).
async fn get_one(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let found = ctx.state.app.get_caller_verification(&ctx.caller, &id).await?;
    let context = format!("{}/$metadata#keyward/callerVerifications/$entity", ctx.base());
    Ok(entity(context, verification_json(&found), StatusCode::OK))
}

/// `POST /beta/keyward/callerVerifications/{id}/attest`: the user's manager or another
/// administrator vouches for a user who holds no factor.
async fn attest(ctx: GraphCtx, Path(id): Path<String>, OptionalBody(_): OptionalBody) -> Result<Response, GraphError> {
    let done = ctx.state.app.attest_caller(&ctx.caller, &id).await?;
    let context = format!("{}/$metadata#keyward/callerVerifications/$entity", ctx.base());
    Ok(entity(context, verification_json(&done), StatusCode::OK))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const TAG: &str = "callerVerifications";
    api.route(
        "/keyward/callerVerifications",
        post(start),
        Op::post(
            TAG,
            "Keyward extension: start verifying that the caller is the user; the code to read out is in the answer",
            PERMISSION,
            "KeywardCallerVerificationRequest",
            201,
            "KeywardCallerVerification",
        )
        .beta_only(),
    )
    .route(
        "/keyward/callerVerifications/{id}",
        get(get_one),
        Op::get(TAG, "Keyward extension: a caller verification's status", PERMISSION, "KeywardCallerVerification")
            .with_id()
            .beta_only(),
    )
    .route(
        "/keyward/callerVerifications/{id}/attest",
        post(attest),
        Op::post(
            TAG,
            "Keyward extension: the user's manager or another administrator vouches for the caller",
            PERMISSION,
            "Empty",
            200,
            "KeywardCallerVerification",
        )
        .with_id()
        .beta_only(),
    )
}
