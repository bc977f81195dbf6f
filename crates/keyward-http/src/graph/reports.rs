//! `/reports/authenticationMethods`: the registration report in Graph's shapes
//! (`userRegistrationDetails`, `userRegistrationMethodSummary`, `userRegistrationFeatureSummary`).

use super::{Query, unknown_segment};
use crate::context::{GraphCtx, collection, entity, rfc3339};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::{OriginalUri, Path};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keyward_app::{AppError, RegistrationDetail};
use keyward_core::registration::{self, RegistrationCounts, SummaryScope};
use serde_json::{Value, json};

const PERMISSION: &str = "AuditLog.Read.All; Reports Reader, Security Reader, Security Administrator, Global Reader, Authentication Administrator or above";

/// A user's details in Graph's `userRegistrationDetails` shape.
pub fn registration_json(detail: &RegistrationDetail) -> Value {
    let methods = &detail.methods;
    json!({
        "id": detail.id,
        "userPrincipalName": detail.user_principal_name,
        "userDisplayName": detail.user_display_name,
        "userType": if methods.is_guest { "guest" } else { "member" },
        "isAdmin": methods.is_admin,
        "isSsprRegistered": methods.is_sspr_registered(),
        "isSsprEnabled": false,
        "isSsprCapable": false,
        "isMfaRegistered": methods.is_mfa_registered(),
        "isMfaCapable": methods.is_mfa_capable(),
        "isPasswordlessCapable": methods.is_passwordless_capable(),
        "methodsRegistered": methods.methods_registered(),
        "isSystemPreferredAuthenticationMethodEnabled": false,
        "systemPreferredAuthenticationMethods": [],
        "userPreferredMethodForSecondaryAuthentication": methods.preferred_secondary_method(),
        "lastUpdatedDateTime": rfc3339(detail.last_updated),
    })
}

/// `GET /reports/authenticationMethods/userRegistrationDetails` — `$filter` (`and` of `eq` on the
/// booleans, `userType`, `id`; `eq`/`startswith` on `userPrincipalName`, `userDisplayName`;
/// `methodsRegistered/any`), `$orderby`, `$top`, paged.
async fn list_details(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    let plan = registration::plan(&query.raw).map_err(AppError::from)?;
    let page = ctx.state.app.registration_details(&ctx.caller, &plan).await?;
    let next = page.skiptoken.map(|token| query.next_link(&ctx.state.app.config().public_url, &path, &token));
    let items: Vec<Value> = page.items.iter().map(registration_json).collect();
    Ok(collection(
        format!("{}/$metadata#reports/authenticationMethods/userRegistrationDetails", ctx.base()),
        items,
        None,
        next,
    ))
}

/// `GET /reports/authenticationMethods/userRegistrationDetails/{id}`.
async fn get_detail(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let detail = ctx.state.app.registration_detail(&ctx.caller, &id).await?;
    let context = format!("{}/$metadata#reports/authenticationMethods/userRegistrationDetails/$entity", ctx.base());
    Ok(entity(context, registration_json(&detail), StatusCode::OK))
}

fn method_summary(scope: &SummaryScope, counts: &RegistrationCounts) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.userRegistrationMethodSummary",
        "userTypes": scope.types_name(),
        "userRoles": scope.roles_name(),
        "userRegistrationMethodCounts": counts.by_method().iter()
            .map(|(method, n)| json!({"authenticationMethod": method, "userCount": n})).collect::<Vec<_>>(),
    })
}

fn feature_summary(scope: &SummaryScope, counts: &RegistrationCounts) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.userRegistrationFeatureSummary",
        "totalUserCount": counts.total,
        "userTypes": scope.types_name(),
        "userRoles": scope.roles_name(),
        "userRegistrationFeatureCounts": counts.by_feature().iter()
            .map(|(feature, n)| json!({"feature": feature, "userCount": n})).collect::<Vec<_>>(),
    })
}

/// `GET /reports/authenticationMethods/usersRegisteredByMethod(includedUserTypes='…',includedUserRoles='…')`
/// and `…/usersRegisteredByFeature(…)`; either parameter may be left out (`all`).
async fn summary(ctx: GraphCtx, Path(call): Path<String>, uri: OriginalUri) -> Result<Response, GraphError> {
    let (name, parameters) = match call.split_once('(') {
        Some((name, rest)) => match rest.strip_suffix(')') {
            Some(parameters) => (name, parameters),
            None => {
                return Err(GraphError::bad_request(format!("The function call '{call}' is not closed."), &ctx.ids));
            }
        },
        None => (call.as_str(), ""),
    };
    let is_by_method = name.eq_ignore_ascii_case("usersRegisteredByMethod");
    if !is_by_method && !name.eq_ignore_ascii_case("usersRegisteredByFeature") {
        return Ok(unknown_segment(ctx, uri).await.into_response());
    }
    let scope = registration::parse_summary_scope(parameters).map_err(AppError::from)?;
    let counts = ctx.state.app.registration_counts(&ctx.caller, &scope).await?;
    let (context, body) = if is_by_method {
        ("microsoft.graph.userRegistrationMethodSummary", method_summary(&scope, &counts))
    } else {
        ("microsoft.graph.userRegistrationFeatureSummary", feature_summary(&scope, &counts))
    };
    Ok(entity(format!("{}/$metadata#{context}", ctx.base()), body, StatusCode::OK))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    api.route(
        "/reports/authenticationMethods/userRegistrationDetails",
        get(list_details),
        Op::get(
            "reports",
            "List users' authentication method registration details ($filter, $orderby, $top)",
            PERMISSION,
            "UserRegistrationDetailsCollection",
        )
        .pages_only().with_options(crate::context::QUERY_OPTIONS_ALL),
    )
    .route(
        "/reports/authenticationMethods/userRegistrationDetails/{id}",
        get(get_detail),
        Op::get("reports", "Get a user's registration details", PERMISSION, "UserRegistrationDetails").with_id(),
    )
    .route_undocumented("/reports/authenticationMethods/{function}", get(summary))
    .document(
        "/reports/authenticationMethods/usersRegisteredByMethod(includedUserRoles='{includedUserRoles}',includedUserTypes='{includedUserTypes}')",
        Op::get("reports", "Users registered for each authentication method (includedUserRoles: all, privilegedAdmin, admin, user; includedUserTypes: all, member, guest)", PERMISSION, "UserRegistrationMethodSummary")
            .with_param("includedUserRoles")
            .with_param("includedUserTypes"),
    )
    .document(
        "/reports/authenticationMethods/usersRegisteredByFeature(includedUserRoles='{includedUserRoles}',includedUserTypes='{includedUserTypes}')",
        Op::get("reports", "Users registered for, enabled for and capable of each feature (MFA, passwordless, self-service reset)", PERMISSION, "UserRegistrationFeatureSummary")
            .with_param("includedUserRoles")
            .with_param("includedUserTypes"),
    )
}
