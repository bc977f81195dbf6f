//! `/auditLogs/signIns`: the sign-in log in Graph's `signIn` shape.

use super::Query;
use crate::context::{GraphCtx, collection, entity, rfc3339};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use keyward_app::AppError;
use keyward_core::signin::SignInRecord;
use keyward_core::signin_query;
use serde_json::{Value, json};

/// A sign-in in Graph's `signIn` shape.
pub fn sign_in_json(record: &SignInRecord) -> Value {
    json!({
        "id": record.id,
        "createdDateTime": rfc3339(record.created),
        "userDisplayName": record.user_display_name,
        "userPrincipalName": record.user_principal_name,
        "userId": record.user_id.as_ref().map(|it| it.as_str()),
        "appId": record.app_id,
        "appDisplayName": record.app_display_name,
        "ipAddress": record.ip_address,
        "clientAppUsed": record.client_app_used,
        "correlationId": record.correlation_id,
        "conditionalAccessStatus": "notApplied",
        "isInteractive": record.is_interactive,
        "status": {
            "errorCode": record.error_code,
            "failureReason": record.failure_reason,
            "additionalDetails": null,
        },
        "authenticationRequirement": if record.is_multi_factor { "multiFactorAuthentication" } else { "singleFactorAuthentication" },
        "authenticationRequirementPolicies": record.requirement_policies.iter().map(|it| json!({"requirementProvider": "multiFactorAuthentication", "detail": it})).collect::<Vec<_>>(),
        "authenticationDetails": record.details.iter().map(|it| json!({
            "authenticationStepDateTime": rfc3339(it.at),
            "authenticationMethod": it.method,
            "authenticationMethodDetail": null,
            "succeeded": it.succeeded,
            "authenticationStepResultDetail": it.result_detail,
            "authenticationStepRequirement": if record.is_multi_factor { "Multifactor authentication" } else { "Primary authentication" },
        })).collect::<Vec<_>>(),
    })
}

/// `GET /auditLogs/signIns` — `microsoft.directory/signInReports/allProperties/read`.
async fn list_sign_ins(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    let plan = signin_query::plan(&query.raw).map_err(AppError::from)?;
    let page = ctx.state.app.list_sign_ins(&ctx.caller, &plan).await?;
    let next = page.skiptoken.map(|token| query.next_link(&ctx.state.app.config().public_url, &path, &token));
    let items: Vec<Value> = page.items.iter().map(sign_in_json).collect();
    Ok(collection(format!("{}/$metadata#auditLogs/signIns", ctx.base()), items, None, next))
}

/// `GET /auditLogs/signIns/{id}` — `microsoft.directory/signInReports/allProperties/read`.
async fn get_sign_in(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let record = ctx.state.app.get_sign_in(&ctx.caller, &id).await?;
    Ok(entity(format!("{}/$metadata#auditLogs/signIns/$entity", ctx.base()), sign_in_json(&record), StatusCode::OK))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    api.route(
        "/auditLogs/signIns",
        get(list_sign_ins),
        Op::get(
            "auditLogs",
            "List sign-ins, newest first ($filter on userId, userPrincipalName, appId, createdDateTime, status/errorCode)",
            "microsoft.directory/signInReports/allProperties/read",
            "SignInCollection",
        )
        .pages_only(),
    ).route(
        "/auditLogs/signIns/{id}",
        get(get_sign_in),
        Op::get("auditLogs", "Get a sign-in", "microsoft.directory/signInReports/allProperties/read", "SignIn").with_id(),
    )
}
