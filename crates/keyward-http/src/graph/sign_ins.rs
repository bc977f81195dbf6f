//! `/auditLogs/signIns`: the sign-in log in Graph's `signIn` shape.

use super::{Query, pick, select_suffix};
use crate::context::{GraphCtx, Version, collection, entity, rfc3339};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use keyward_app::AppError;
use keyward_core::signin::{self, SignInRecord};
use keyward_core::signin_query;
use serde_json::{Value, json};

/// Microsoft Graph, the resource of every token Keyward issues.
const GRAPH_NAME: &str = "Microsoft Graph";
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// An `authenticationRequirementPolicies` entry for a stored reason: the provider Entra names
/// (per-user MFA is `user`; the tenant-wide rules are Keyward's security defaults and its
/// baseline for privileged roles) and a detail.
fn requirement_policy(detail: &str) -> Value {
    let (provider, text) = match detail {
        "MFA: Per-user" => ("user", "Per-user MFA"),
        "MFA: Privileged role" => ("baselineProtection", "MFA for privileged roles"),
        "MFA: Tenant requires MFA for all users" => ("securityDefaults", "MFA for all users"),
        other => ("request", other),
    };
    json!({"requirementProvider": provider, "detail": text})
}

/// A sign-in in Graph's `signIn` shape of `version`: v1.0's properties, and beta's beyond them.
pub fn sign_in_json(record: &SignInRecord, version: Version) -> Value {
    let is_app = record.service_principal_id.is_some();
    let (browser, operating_system) = signin::device_detail(record.user_agent.as_deref().unwrap_or_default());
    let user = |value: Value| if is_app { Value::Null } else { value };
    let mut entity = json!({
        "id": record.id,
        "createdDateTime": rfc3339(record.created),
        "userDisplayName": user(json!(record.user_display_name)),
        "userPrincipalName": user(json!(record.user_principal_name.to_lowercase())),
        "userId": user(json!(record.user_id.as_ref().map(|it| it.as_str()))),
        "appId": record.app_id,
        "appDisplayName": record.app_display_name,
        "ipAddress": record.ip_address,
        "clientAppUsed": record.client_app_used,
        "userAgent": record.user_agent,
        "correlationId": record.correlation_id,
        "conditionalAccessStatus": "notApplied",
        "appliedConditionalAccessPolicies": [],
        "isInteractive": record.is_interactive,
        "deviceDetail": {
            "deviceId": "", "displayName": "", "operatingSystem": operating_system, "browser": browser,
            "isCompliant": false, "isManaged": false, "trustType": "",
        },
        "location": {
            "city": "", "state": "", "countryOrRegion": "",
            "geoCoordinates": {"altitude": null, "latitude": null, "longitude": null},
        },
        "riskDetail": "none",
        "riskLevelAggregated": "none",
        "riskLevelDuringSignIn": "none",
        "riskState": "none",
        "riskEventTypes": [],
        "riskEventTypes_v2": [],
        "resourceDisplayName": GRAPH_NAME,
        "resourceId": GRAPH_APP_ID,
        "resourceTenantId": record.tenant_id.as_str(),
        "homeTenantId": record.tenant_id.as_str(),
        "servicePrincipalId": record.service_principal_id,
        "servicePrincipalName": is_app.then_some(&record.app_display_name),
        "status": {
            "errorCode": record.error_code,
            "failureReason": record.failure_reason,
            "additionalDetails": null,
        },
    });
    if version == Version::Beta
        && let Value::Object(map) = &mut entity
    {
        let requirement = if record.is_multi_factor { "Multifactor authentication" } else { "Primary authentication" };
        let mut used: Vec<&str> = Vec::new();
        for detail in record.details.iter().filter(|it| it.succeeded && it.method != "Previously satisfied") {
            if !used.contains(&detail.method.as_str()) {
                used.push(&detail.method);
            }
        }
        // The step that made it multi-factor (an authenticator app's code, a pass), for mfaDetail.
        let second = record
            .details
            .iter()
            .find(|it| it.succeeded && !["Password", "Previously satisfied"].contains(&it.method.as_str()));
        let mfa_detail = match second {
            Some(step) if record.is_multi_factor => json!({"authMethod": step.method, "authDetail": null}),
            _ => Value::Null,
        };
        let beta = json!({
            "mfaDetail": mfa_detail,
            "userType": user(json!("member")),
            "authenticationDetails": record.details.iter().map(|it| json!({
                "authenticationStepDateTime": rfc3339(it.at),
                "authenticationMethod": it.method,
                "authenticationMethodDetail": null,
                "succeeded": it.succeeded,
                "authenticationStepResultDetail": it.result_detail,
                "authenticationStepRequirement": requirement,
            })).collect::<Vec<_>>(),
            "authenticationMethodsUsed": used,
            "authenticationProtocol": record.protocol,
            "authenticationRequirement": if record.is_multi_factor { "multiFactorAuthentication" } else { "singleFactorAuthentication" },
            "authenticationRequirementPolicies": record.requirement_policies.iter().map(|it| requirement_policy(it)).collect::<Vec<_>>(),
            "clientCredentialType": record.client_credential,
            "crossTenantAccessType": "none",
            "flaggedForReview": false,
            "incomingTokenType": record.incoming_token,
            "isTenantRestricted": false,
            "originalRequestId": record.id,
            "signInEventTypes": [record.event_type().as_str()],
            "signInIdentifier": user(json!(record.user_principal_name)),
            "signInIdentifierType": user(json!("userPrincipalName")),
            "tokenIssuerType": "AzureAD",
        });
        if let Value::Object(extra) = beta {
            map.extend(extra);
        }
        // Beta has only the second version of the risk event types.
        map.remove("riskEventTypes");
    }
    entity
}

/// `GET /auditLogs/signIns` — `microsoft.directory/signInReports/allProperties/read`.
async fn list_sign_ins(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    let plan = signin_query::plan(&query.raw, ctx.version == Version::Beta).map_err(AppError::from)?;
    let page = ctx.state.app.list_sign_ins(&ctx.caller, &plan).await?;
    let next = page.skiptoken.map(|token| query.next_link(&ctx.state.app.config().public_url, &path, &token));
    let select = plan.select.as_deref();
    let items: Vec<Value> = page.items.iter().map(|it| pick(sign_in_json(it, ctx.version), select)).collect();
    let context = format!("{}/$metadata#auditLogs/signIns{}", ctx.base(), select_suffix(select));
    Ok(collection(context, items, None, next))
}

/// `GET /auditLogs/signIns/{id}` — `microsoft.directory/signInReports/allProperties/read`.
async fn get_sign_in(ctx: GraphCtx, Path(id): Path<String>, Query(query, _): Query) -> Result<Response, GraphError> {
    let select = signin_query::plan_one(&query.raw, ctx.version == Version::Beta).map_err(AppError::from)?;
    let record = ctx.state.app.get_sign_in(&ctx.caller, &id).await?;
    let body = pick(sign_in_json(&record, ctx.version), select.as_deref());
    let context = format!("{}/$metadata#auditLogs/signIns{}/$entity", ctx.base(), select_suffix(select.as_deref()));
    Ok(entity(context, body, StatusCode::OK))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    api.route(
        "/auditLogs/signIns",
        get(list_sign_ins),
        Op::get(
            "auditLogs",
            "List sign-ins, newest first ($filter on id, createdDateTime, userId, userPrincipalName, userDisplayName, appId, appDisplayName, ipAddress, correlationId, clientAppUsed, conditionalAccessStatus, status/errorCode; beta also signInEventTypes/any and authenticationRequirement; $select; $top up to 1000)",
            "microsoft.directory/signInReports/allProperties/read",
            "SignInCollection",
        )
        .pages_only().with_options(crate::context::QUERY_OPTIONS_ALL),
    ).route(
        "/auditLogs/signIns/{id}",
        get(get_sign_in),
        Op::get("auditLogs", "Get a sign-in", "microsoft.directory/signInReports/allProperties/read", "SignIn").with_id().with_options(crate::context::QUERY_OPTIONS_ALL),
    )
}
