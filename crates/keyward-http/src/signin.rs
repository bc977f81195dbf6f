//! Sign-in: the Graph routes (`/auditLogs/signIns`, the Temporary Access Pass policy, Keyward's
//! sign-in policy, and the session and MFA revocations), and the HTML sign-in pages at
//! `/{tenant}/login` (plain forms that work without JavaScript, with standard `autocomplete`
//! tokens).

use axum::extract::{ConnectInfo, Path, Query as RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use keyward_app::{AppError, RequestMeta, SignInForm, SignInPage, SignInView, Stage, Surface};
use keyward_core::secret::Secret;
use keyward_core::signin::{PerUserMfaState, SignInRecord, TapPolicy};
use keyward_core::signin_query;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;

use crate::AppState;
use crate::context::{GraphCtx, collection, entity, rfc3339};
use crate::error::GraphError;
use crate::graph::{Body, NoParameters, Query};
use crate::openapi::{Api, Op};

/// A sign-in in Graph's `signIn` shape (entra.md §7.5).
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

fn tap_policy_json(policy: &TapPolicy) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.temporaryAccessPassAuthenticationMethodConfiguration",
        "id": "TemporaryAccessPass",
        "state": if policy.is_enabled { "enabled" } else { "disabled" },
        "defaultLifetimeInMinutes": policy.default_lifetime_minutes,
        "defaultLength": policy.default_length,
        "minimumLifetimeInMinutes": policy.minimum_lifetime_minutes,
        "maximumLifetimeInMinutes": policy.maximum_lifetime_minutes,
        "isUsableOnce": policy.is_usable_once,
        "includeTargets": [{"targetType": "group", "id": "all_users", "isRegistrationRequired": false}],
        "excludeTargets": [],
    })
}

/// `GET /policies/authenticationMethodsPolicy/authenticationMethodConfigurations/TemporaryAccessPass`
/// — `microsoft.directory/organization/strongAuthentication/allTasks` or `organization/allProperties/read`.
async fn get_tap_policy(ctx: GraphCtx) -> Result<Response, GraphError> {
    let (_, tap) = ctx.state.app.sign_in_policies(&ctx.caller).await?;
    Ok(entity(
        format!(
            "{}/$metadata#policies/authenticationMethodsPolicy/authenticationMethodConfigurations/$entity",
            ctx.base()
        ),
        tap_policy_json(&tap),
        StatusCode::OK,
    ))
}

fn bad(message: String) -> AppError {
    AppError::BadRequest(message)
}

fn int_field(value: &Value, name: &str) -> Result<i64, AppError> {
    value.as_i64().ok_or_else(|| bad(format!("Property '{name}' must be an integer.")))
}

fn bool_field(value: &Value, name: &str) -> Result<bool, AppError> {
    value.as_bool().ok_or_else(|| bad(format!("Property '{name}' must be true or false.")))
}

fn body_object(body: &Value) -> Result<&serde_json::Map<String, Value>, AppError> {
    body.as_object().ok_or_else(|| bad("The request body must be a JSON object.".into()))
}

/// `PATCH …/authenticationMethodConfigurations/TemporaryAccessPass` (204) —
/// `microsoft.directory/organization/strongAuthentication/allTasks`.
async fn patch_tap_policy(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let patch = body_object(&body)?.clone();
    ctx.state
        .app
        .update_sign_in_policies(&ctx.caller, move |_, tap| {
            for (name, value) in &patch {
                match name.as_str() {
                    "@odata.type" | "id" | "includeTargets" | "excludeTargets" => (),
                    "state" => {
                        tap.is_enabled = match value.as_str() {
                            Some("enabled") => true,
                            Some("disabled") => false,
                            _ => return Err(bad("Property 'state' must be 'enabled' or 'disabled'.".into())),
                        }
                    }
                    "defaultLifetimeInMinutes" => tap.default_lifetime_minutes = int_field(value, name)?,
                    "defaultLength" => tap.default_length = int_field(value, name)?,
                    "minimumLifetimeInMinutes" => tap.minimum_lifetime_minutes = int_field(value, name)?,
                    "maximumLifetimeInMinutes" => tap.maximum_lifetime_minutes = int_field(value, name)?,
                    "isUsableOnce" => tap.is_usable_once = bool_field(value, name)?,
                    other => {
                        return Err(bad(format!(
                            "Property '{other}' does not exist on type 'microsoft.graph.temporaryAccessPassAuthenticationMethodConfiguration'."
                        )));
                    }
                }
            }
            Ok(())
        })
        .await
        ?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /policies/keywardSignInPolicy` (Keyward extension) — as the TAP policy.
async fn get_sign_in_policy(ctx: GraphCtx) -> Result<Response, GraphError> {
    let (policy, _) = ctx.state.app.sign_in_policies(&ctx.caller).await?;
    Ok(entity(
        format!("{}/$metadata#policies/keywardSignInPolicy/$entity", ctx.base()),
        json!({
            "requireMfaForPrivilegedRoles": policy.mfa_for_privileged_roles,
            "requireMfaForAllUsers": policy.mfa_for_everyone,
            "rememberMfaOnDeviceDays": policy.remember_mfa_days,
            "lockoutThreshold": policy.lockout_threshold,
            "lockoutDurationInSeconds": policy.lockout_seconds,
            "codeAttemptLimit": policy.code_attempt_limit,
        }),
        StatusCode::OK,
    ))
}

/// `PATCH /policies/keywardSignInPolicy` (Keyward extension, 204) —
/// `microsoft.directory/organization/strongAuthentication/allTasks`.
async fn patch_sign_in_policy(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let patch = body_object(&body)?.clone();
    ctx.state
        .app
        .update_sign_in_policies(&ctx.caller, move |policy, _| {
            for (name, value) in &patch {
                match name.as_str() {
                    "requireMfaForPrivilegedRoles" => policy.mfa_for_privileged_roles = bool_field(value, name)?,
                    "requireMfaForAllUsers" => policy.mfa_for_everyone = bool_field(value, name)?,
                    "rememberMfaOnDeviceDays" => policy.remember_mfa_days = int_field(value, name)?,
                    "lockoutThreshold" => policy.lockout_threshold = int_field(value, name)?,
                    "lockoutDurationInSeconds" => policy.lockout_seconds = int_field(value, name)?,
                    "codeAttemptLimit" => policy.code_attempt_limit = int_field(value, name)?,
                    other => return Err(bad(format!("Property '{other}' does not exist on keywardSignInPolicy."))),
                }
            }
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /users/{id}/revokeSignInSessions` — `microsoft.directory/users/invalidateAllRefreshTokens`.
async fn revoke_sign_in_sessions(
    ctx: GraphCtx,
    Path(key): Path<String>,
    _: NoParameters,
) -> Result<Response, GraphError> {
    ctx.state.app.revoke_sign_in_sessions(&ctx.caller, &key).await?;
    Ok(entity(format!("{}/$metadata#Edm.Boolean", ctx.base()), json!({"value": true}), StatusCode::OK))
}

/// `POST /users/{id}/authentication/requireMfaReregistration` (Keyward extension, 204) —
/// `microsoft.directory/users/authenticationMethods/delete`.
async fn require_mfa_reregistration(
    ctx: GraphCtx,
    Path(key): Path<String>,
    _: NoParameters,
) -> Result<Response, GraphError> {
    ctx.state.app.require_mfa_reregistration(&ctx.caller, &key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /users/{id}/authentication/revokeMfaSessions` (Keyward extension, 204) —
/// `microsoft.directory/users/authenticationMethods/basic/update`.
async fn revoke_mfa_sessions(ctx: GraphCtx, Path(key): Path<String>, _: NoParameters) -> Result<Response, GraphError> {
    ctx.state.app.revoke_mfa_sessions(&ctx.caller, &key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Per-user MFA exists in beta only, as in Graph.
fn beta_only(ctx: &GraphCtx) -> Result<(), GraphError> {
    match ctx.version {
        crate::Version::Beta => Ok(()),
        crate::Version::V1 => Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Resource not found for the segment 'requirements'. Per-user MFA is under /beta.",
            &ctx.ids,
        )),
    }
}

async fn requirements_of(ctx: GraphCtx, key: String) -> Result<Response, GraphError> {
    beta_only(&ctx)?;
    let state = ctx.state.app.mfa_requirements(&ctx.caller, &key).await?;
    Ok(entity(
        format!("{}/$metadata#users('{key}')/authentication/requirements/$entity", ctx.base()),
        json!({"@odata.type": "#microsoft.graph.strongAuthenticationRequirements", "perUserMfaState": state.as_str()}),
        StatusCode::OK,
    ))
}

async fn set_requirements_of(ctx: GraphCtx, key: String, body: Value) -> Result<Response, GraphError> {
    beta_only(&ctx)?;
    let fields = body_object(&body)?;
    let mut state = None;
    for (name, value) in fields {
        match name.as_str() {
            "@odata.type" => (),
            "perUserMfaState" => {
                state = Some(value.as_str().and_then(PerUserMfaState::parse).ok_or_else(|| {
                    GraphError::from(bad(
                        "Property 'perUserMfaState' must be 'disabled', 'enabled' or 'enforced'.".into()
                    ))
                })?);
            }
            other => {
                return Err(GraphError::from(bad(format!(
                    "Property '{other}' does not exist on type 'microsoft.graph.strongAuthenticationRequirements'."
                ))));
            }
        }
    }
    let state = state.ok_or_else(|| GraphError::from(bad("The body must set 'perUserMfaState'.".into())))?;
    ctx.state.app.set_mfa_requirements(&ctx.caller, &key, state).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /beta/users/{id}/authentication/requirements` — `microsoft.directory/users/strongAuthentication/update`
/// (or Global Reader, or oneself).
async fn get_requirements(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    requirements_of(ctx, key).await
}

/// `GET /beta/me/authentication/requirements`.
async fn get_my_requirements(ctx: GraphCtx) -> Result<Response, GraphError> {
    let key = ctx.me_key()?;
    requirements_of(ctx, key).await
}

/// `PATCH /beta/users/{id}/authentication/requirements` (204) — `microsoft.directory/users/strongAuthentication/update`.
async fn patch_requirements(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    set_requirements_of(ctx, key, body).await
}

/// `PATCH /beta/me/authentication/requirements` (204).
async fn patch_my_requirements(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let key = ctx.me_key()?;
    set_requirements_of(ctx, key, body).await
}

/// Registers the sign-in Graph routes.
pub fn routes(api: Api) -> Api {
    const TAP: &str = "/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/TemporaryAccessPass";
    const POLICY_ALL: &str = "microsoft.directory/organization/strongAuthentication/allTasks";
    const PER_USER_MFA: &str = "microsoft.directory/users/strongAuthentication/update";
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
    )
    .route(
        "/auditLogs/signIns/{id}",
        get(get_sign_in),
        Op::get("auditLogs", "Get a sign-in", "microsoft.directory/signInReports/allProperties/read", "SignIn").with_id(),
    )
    .route(TAP, get(get_tap_policy), Op::get("policies", "Get the Temporary Access Pass policy", POLICY_ALL, "TemporaryAccessPassPolicy"))
    .route(
        TAP,
        axum::routing::patch(patch_tap_policy),
        Op::patch("policies", "Update the Temporary Access Pass policy", POLICY_ALL, "TemporaryAccessPassPolicy"),
    )
    .route(
        "/policies/keywardSignInPolicy",
        get(get_sign_in_policy),
        Op::get("policies", "Keyward extension: get the sign-in policy (MFA, remembered devices, lockout)", POLICY_ALL, "KeywardSignInPolicy"),
    )
    .route(
        "/policies/keywardSignInPolicy",
        axum::routing::patch(patch_sign_in_policy),
        Op::patch("policies", "Keyward extension: update the sign-in policy", POLICY_ALL, "KeywardSignInPolicy"),
    )
    .route(
        "/users/{id}/authentication/requirements",
        get(get_requirements),
        Op::get("users", "Beta: the user's per-user MFA state", PER_USER_MFA, "StrongAuthenticationRequirements")
            .with_id()
            .beta_only(),
    )
    .route(
        "/users/{id}/authentication/requirements",
        axum::routing::patch(patch_requirements),
        Op::patch("users", "Beta: set the user's per-user MFA state", PER_USER_MFA, "StrongAuthenticationRequirements")
            .with_id()
            .beta_only(),
    )
    .route(
        "/me/authentication/requirements",
        get(get_my_requirements),
        Op::get("users", "Beta: the signed-in user's per-user MFA state", "(self)", "StrongAuthenticationRequirements")
            .beta_only(),
    )
    .route(
        "/me/authentication/requirements",
        axum::routing::patch(patch_my_requirements),
        Op::patch("users", "Beta: set the signed-in user's per-user MFA state", PER_USER_MFA, "StrongAuthenticationRequirements")
            .beta_only(),
    )
    .route(
        "/users/{id}/revokeSignInSessions",
        post(revoke_sign_in_sessions),
        Op::post(
            "users",
            "Revoke the user's sessions and refresh tokens",
            "microsoft.directory/users/invalidateAllRefreshTokens",
            "Empty",
            200,
            "Boolean",
        )
        .with_id(),
    )
    .route(
        "/users/{id}/authentication/requireMfaReregistration",
        post(require_mfa_reregistration),
        Op::post(
            "users",
            "Keyward extension: delete the user's MFA methods so the next sign-in asks to register again",
            "microsoft.directory/users/authenticationMethods/delete",
            "Empty",
            204,
            "",
        )
        .with_id(),
    )
    .route(
        "/users/{id}/authentication/revokeMfaSessions",
        post(revoke_mfa_sessions),
        Op::post(
            "users",
            "Keyward extension: forget the user's remembered MFA devices",
            "microsoft.directory/users/authenticationMethods/basic/update",
            "Empty",
            204,
            "",
        )
        .with_id(),
    )
}

// ---------------------------------------------------------------------------------------------
// The HTML pages.

/// The sign-in page routes, relative to the root.
pub fn page_routes() -> Router<AppState> {
    Router::new().route("/{tenant}/login", get(page_get).post(page_post))
}

pub(crate) fn cookie_names(state: &AppState) -> (&'static str, &'static str, bool) {
    if state.app.config().public_url.starts_with("https://") {
        ("__Host-keyward-session", "__Host-keyward-device", true)
    } else {
        ("keyward-session", "keyward-device", false)
    }
}

pub(crate) fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|it| it.to_str().ok())
        .flat_map(|it| it.split(';'))
        .filter_map(|it| it.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|it| !it.is_empty() && it.len() <= 128)
}

pub(crate) fn meta(headers: &HeaderMap, peer: Option<SocketAddr>) -> RequestMeta {
    let correlation_id = headers
        .get("client-request-id")
        .and_then(|it| it.to_str().ok())
        .and_then(|it| uuid::Uuid::parse_str(it).ok())
        .unwrap_or_else(uuid::Uuid::new_v4)
        .to_string();
    RequestMeta { correlation_id, ip_address: peer.map(|it| it.ip().to_string()) }
}

async fn page_get(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery<HashMap<String, String>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let (session_name, _, _) = cookie_names(&state);
    // `prompt=login` (from the authorization endpoint) starts a fresh sign-in even when a session
    // exists; the new session's cookie replaces the old one.
    let cookie =
        read_cookie(&headers, session_name).filter(|_| query.get("prompt").map(String::as_str) != Some("login"));
    let return_to = query.get("return_to").map(String::as_str);
    let meta = meta(&headers, peer.map(|it| it.0.0));
    if let Err(err) = state.app.throttle(Surface::SignInPages, meta.ip_address.as_deref(), None) {
        return respond(&state, &tenant, Err(err), None);
    }
    let result = state.app.sign_in_view(&tenant, cookie, return_to, meta).await;
    respond(&state, &tenant, result, query.get("login_hint").map(String::as_str))
}

async fn page_post(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let (session_name, device_name, _) = cookie_names(&state);
    let cookie = read_cookie(&headers, session_name);
    let device = read_cookie(&headers, device_name);
    let mut form = SignInForm::default();
    for (name, value) in fields {
        match name.as_str() {
            "step" => form.step = value,
            "csrf" => form.csrf = value,
            "username" => form.username = Some(value),
            "password" => form.password = Some(Secret::new(value)),
            "code" => form.code = Some(value),
            "remember" => form.remember = value == "on" || value == "true",
            "new_password" => form.new_password = Some(Secret::new(value)),
            "confirm_password" => form.confirm_password = Some(Secret::new(value)),
            "return_to" => form.return_to = Some(value),
            _ => (),
        }
    }
    let meta = meta(&headers, peer.map(|it| it.0.0));
    if let Err(err) = state.app.throttle(Surface::SignInPages, meta.ip_address.as_deref(), None) {
        return respond(&state, &tenant, Err(err), None);
    }
    let result = state.app.sign_in_submit(&tenant, cookie, device, form, meta).await;
    respond(&state, &tenant, result, None)
}

/// Turns a view into the response; `login_hint` (from the authorization request) fills the user
/// name field.
fn respond(state: &AppState, tenant: &str, result: Result<SignInView, AppError>, login_hint: Option<&str>) -> Response {
    let (session_name, device_name, secure) = cookie_names(state);
    let secure_attr = if secure { "; Secure" } else { "" };
    let view = match result {
        Ok(view) => view,
        Err(AppError::NotFound(_)) => {
            return html_response(
                StatusCode::NOT_FOUND,
                &page(
                    "Sign in",
                    &format!(
                        "<p class=\"error\">No tenant '{}' exists here. Check the sign-in address.</p>",
                        esc(tenant)
                    ),
                ),
            );
        }
        Err(AppError::BadRequest(message)) => {
            return html_response(
                StatusCode::BAD_REQUEST,
                &page(
                    "Sign in",
                    &format!(
                        "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/{}/login\">Start again</a></p>",
                        esc(&message),
                        esc(tenant)
                    ),
                ),
            );
        }
        Err(err @ (AppError::TooManyRequests { retry_after } | AppError::Overloaded { retry_after })) => {
            let status = if matches!(err, AppError::TooManyRequests { .. }) {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut response = html_response(
                status,
                &page("Sign in", &format!("<p class=\"error\" role=\"alert\">{}</p>", esc(&err.to_string()))),
            );
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return response;
        }
        Err(err) => {
            tracing::error!(error = ?err, "sign-in page failed");
            return html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &page(
                    "Sign in",
                    "<p class=\"error\">Something went wrong on our side. Try again in a moment; if it keeps happening, tell your administrator.</p>",
                ),
            );
        }
    };
    let mut response = match (&view.redirect, &view.page) {
        (Some(target), _) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(target) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        (None, Some(page_kind)) => {
            let action = format!("/{}/login", view.tenant_id);
            html_response(
                StatusCode::OK,
                &render(page_kind, &action, &view.csrf, login_hint, view.pending_return_to.as_deref()),
            )
        }
        (None, None) => StatusCode::NO_CONTENT.into_response(),
    };
    let headers = response.headers_mut();
    if let Some(value) = &view.set_session {
        let cookie = format!("{session_name}={value}; Path=/; HttpOnly; SameSite=Lax{secure_attr}");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    if view.clear_session {
        let cookie = format!("{session_name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure_attr}");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    if let Some((value, days)) = &view.set_device {
        let cookie =
            format!("{device_name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure_attr}", days * 86_400);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Sign-in pages with their security headers. The Content-Security-Policy has no `form-action`:
/// browsers apply it to the whole redirect chain after a form, and the sign-in's last redirect
/// goes to the application's redirect URI.
pub(crate) fn html_response(status: StatusCode, body: &str) -> Response {
    let mut response = (status, body.to_owned()).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// HTML-escapes text for element content and quoted attributes.
pub(crate) fn esc(text: &str) -> String {
    let mut res = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => res.push_str("&amp;"),
            '<' => res.push_str("&lt;"),
            '>' => res.push_str("&gt;"),
            '"' => res.push_str("&quot;"),
            '\'' => res.push_str("&#39;"),
            other => res.push(other),
        }
    }
    res
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f2f2f2;margin:0}\
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem 2.5rem;box-shadow:0 2px 6px rgba(0,0,0,.2)}\
h1{font-size:1.5rem;font-weight:600}label{display:block;margin:.8rem 0 .3rem}\
input[type=text],input[type=password],input[type=email]{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}\
button{margin-top:1rem;padding:.5rem 1.5rem;font-size:1rem;background:#0067b8;color:#fff;border:0}\
.error{color:#a80000}.notice{color:#107c10}.secret{font-family:monospace;word-break:break-all}\
.user{color:#555}svg{display:block;margin:1rem auto}";

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>{} – Keyward</title><style>{STYLE}</style></head>\
         <body><main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

pub(crate) fn message(error: &Option<String>) -> String {
    error
        .as_ref()
        .map(|it| format!("<p class=\"error\" id=\"error\" role=\"alert\">{}</p>", esc(it)))
        .unwrap_or_default()
}

pub(crate) fn form(action: &str, csrf: &str, step: &str, inner: &str, button: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"step\" value=\"{}\">{inner}<button type=\"submit\">{}</button></form>",
        esc(action),
        esc(csrf),
        esc(step),
        esc(button)
    )
}

/// A "Cancel" button back to the account page, for steps a signed-in user started.
fn cancel(is_shown: bool, action: &str, csrf: &str) -> String {
    if is_shown { form(action, csrf, "cancel", "", "Cancel") } else { String::new() }
}

fn who(username: &str) -> String {
    format!("<p class=\"user\">{}</p>", esc(username))
}

/// Renders one page.
fn render(kind: &SignInPage, action: &str, csrf: &str, login_hint: Option<&str>, return_to: Option<&str>) -> String {
    match kind {
        SignInPage::Username { error } => page(
            "Sign in",
            &format!(
                "{}{}",
                message(error),
                form(
                    action,
                    csrf,
                    Stage::Username.as_str(),
                    &format!(
                        "<label for=\"username\">Sign-in name (user principal name, like adele@contoso.com)</label><input type=\"email\" id=\"username\" \
                         name=\"username\" autocomplete=\"username\" value=\"{}\" required autofocus>{}",
                        esc(login_hint.unwrap_or_default()),
                        return_to
                            .map(|it| format!("<input type=\"hidden\" name=\"return_to\" value=\"{}\">", esc(it)))
                            .unwrap_or_default()
                    ),
                    "Next"
                )
            ),
        ),
        SignInPage::Password { username, error } => page(
            "Enter password",
            &format!(
                "{}{}{}",
                who(username),
                message(error),
                form(
                    action,
                    csrf,
                    Stage::Password.as_str(),
                    &format!(
                        "<input type=\"hidden\" name=\"username\" value=\"{}\" autocomplete=\"username\">\
                         <label for=\"password\">Password or Temporary Access Pass</label><input type=\"password\" \
                         id=\"password\" name=\"password\" autocomplete=\"current-password\" required autofocus>",
                        esc(username)
                    ),
                    "Sign in"
                )
            ),
        ),
        SignInPage::ChangePassword { username, is_required, error } => page(
            "Update your password",
            &format!(
                "{}{}{}{}{}",
                who(username),
                if *is_required {
                    "<p>You need to update your password because this is the first time you are signing in, or \
                     because your password was reset.</p>"
                } else {
                    ""
                },
                message(error),
                form(
                    action,
                    csrf,
                    Stage::ChangePassword.as_str(),
                    &format!(
                        "<input type=\"hidden\" name=\"username\" value=\"{}\" autocomplete=\"username\">\
                         <label for=\"password\">Current password</label><input type=\"password\" id=\"password\" \
                         name=\"password\" autocomplete=\"current-password\" required>\
                         <label for=\"new_password\">New password</label><input type=\"password\" id=\"new_password\" \
                         name=\"new_password\" autocomplete=\"new-password\" minlength=\"8\" required>\
                         <label for=\"confirm_password\">Confirm new password</label><input type=\"password\" \
                         id=\"confirm_password\" name=\"confirm_password\" autocomplete=\"new-password\" minlength=\"8\" required>",
                        esc(username)
                    ),
                    "Update password"
                ),
                cancel(!*is_required, action, csrf)
            ),
        ),
        SignInPage::Mfa { username, remember_days, error } => {
            let remember = if *remember_days > 0 {
                format!(
                    "<label><input type=\"checkbox\" name=\"remember\" value=\"on\"> Don't ask again for {remember_days} days</label>"
                )
            } else {
                String::new()
            };
            page(
                "Enter code",
                &format!(
                    "{}<p>Enter the code displayed in your authenticator app.</p>{}{}",
                    who(username),
                    message(error),
                    form(
                        action,
                        csrf,
                        Stage::Mfa.as_str(),
                        &format!(
                            "<label for=\"code\">Code</label><input type=\"text\" id=\"code\" name=\"code\" \
                             autocomplete=\"one-time-code\" inputmode=\"numeric\" pattern=\"[0-9 ]*\" maxlength=\"8\" \
                             required autofocus>{remember}"
                        ),
                        "Verify"
                    )
                ),
            )
        }
        SignInPage::MoreInfo { username } => page(
            "More information required",
            &format!(
                "{}<p id=\"ProofUpDescription\">Your organization needs more information to keep your account secure</p>{}",
                who(username),
                form(action, csrf, Stage::MoreInfo.as_str(), "", "Next")
            ),
        ),
        SignInPage::RegisterTotp { username, secret, uri, can_cancel, error } => page(
            "Set up your authenticator app",
            &format!(
                "{}<p>Scan the QR code with your authenticator app, or enter the secret key by hand.</p>{}\
                 <p>Secret key: <span class=\"secret\" id=\"secret\">{}</span></p>\
                 <p>Or add this address: <span class=\"secret\" id=\"otpauth\">{}</span></p>{}{}{}",
                who(username),
                qr_svg(uri),
                esc(secret),
                esc(uri),
                message(error),
                form(
                    action,
                    csrf,
                    Stage::RegisterTotp.as_str(),
                    "<label for=\"code\">Enter the code the app shows</label><input type=\"text\" id=\"code\" \
                     name=\"code\" autocomplete=\"one-time-code\" inputmode=\"numeric\" pattern=\"[0-9 ]*\" \
                     maxlength=\"8\" required autofocus>",
                    "Next"
                ),
                cancel(*can_cancel, action, csrf)
            ),
        ),
        SignInPage::Account { display_name, user_principal_name, methods, notice } => {
            let items: String = methods.iter().map(|it| format!("<li>{}</li>", esc(it))).collect();
            let notice = notice
                .as_ref()
                .map(|it| format!("<p class=\"notice\" role=\"status\">{}</p>", esc(it)))
                .unwrap_or_default();
            page(
                "My account",
                &format!(
                    "<p id=\"signed-in\">Signed in as <strong>{}</strong> ({})</p>{notice}<h2>Security info</h2><ul>{items}</ul>{}{}{}",
                    esc(display_name),
                    esc(user_principal_name),
                    form(action, csrf, "add_totp", "", "Add authenticator app"),
                    form(action, csrf, "change_password", "", "Change password"),
                    form(action, csrf, "signout", "", "Sign out"),
                ),
            )
        }
    }
}

/// The QR code of `text` as an inline SVG (no external assets).
fn qr_svg(text: &str) -> String {
    let Ok(code) = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Medium) else {
        return String::new();
    };
    let size = code.size();
    let border = 4;
    let dimension = size + border * 2;
    let mut path = String::new();
    for y in 0..size {
        for x in 0..size {
            if code.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"qr\" role=\"img\" aria-label=\"QR code for your authenticator app\" \
         viewBox=\"0 0 {dimension} {dimension}\" width=\"220\" height=\"220\" shape-rendering=\"crispEdges\">\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn qr_codes_are_inline_svg() {
        let svg = qr_svg("otpauth://totp/Keyward:a@b?secret=ABC");
        assert!(svg.starts_with("<svg") && svg.contains("<path d=\"M"), "{svg}");
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; keyward-session=abc; keyward-sessionx=zzz"));
        assert_eq!(read_cookie(&headers, "keyward-session"), Some("abc"));
        assert_eq!(read_cookie(&headers, "b"), None);
    }

    #[test]
    fn pages_escape_messages_and_carry_autocomplete_tokens() {
        let html = render(
            &SignInPage::Username { error: Some("<bad>".into()) },
            "/t/login",
            "tok",
            Some("a\"b"),
            Some("/x?a&b"),
        );
        assert!(html.contains("value=\"a&quot;b\""), "{html}");
        assert!(html.contains("autocomplete=\"username\"") && html.contains("&lt;bad&gt;"));
        assert!(html.contains("name=\"csrf\" value=\"tok\""));
    }
}
