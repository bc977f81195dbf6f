//! A user's sign-in security: per-user MFA state (`authentication/requirements`), sign-in
//! preferences (`authentication/signInPreferences`) and the service-desk actions
//! `revokeSignInSessions`, `requireMfaReregistration`, `revokeMfaSessions`.

use super::policies::body_object;
use super::{Body, NoParameters, OptionalBody};
use crate::context::{GraphCtx, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keyward_app::AppError;
use keyward_app::Who;
use keyward_core::secret::Secret;
use keyward_core::signin::{PerUserMfaState, SecondaryMethod, SignInPreferences};
use serde_json::{Value, json};

/// `POST /users/{id}/revokeSignInSessions` — `microsoft.directory/users/invalidateAllRefreshTokens`.
async fn revoke_sign_in_sessions(
    ctx: GraphCtx,
    Path(key): Path<String>,
    _: NoParameters,
) -> Result<Response, GraphError> {
    ctx.state.app.revoke_sign_in_sessions(&ctx.caller, &key).await?;
    Ok(entity(format!("{}/$metadata#Edm.Boolean", ctx.base()), json!({"value": true}), StatusCode::OK))
}

/// `POST /me/revokeSignInSessions` — the signed-in user's own sessions (no role needed).
async fn revoke_my_sign_in_sessions(ctx: GraphCtx, _: NoParameters) -> Result<Response, GraphError> {
    ctx.state.app.revoke_own_sign_in_sessions(&ctx.caller).await?;
    Ok(entity(format!("{}/$metadata#Edm.Boolean", ctx.base()), json!({"value": true}), StatusCode::OK))
}

/// Beta's `POST /users/{id}/invalidateAllRefreshTokens`: `revokeSignInSessions` under its older
/// name, which the beta PowerShell module still calls; answered as it is (`200`, `{"value": true}`).
async fn invalidate_all_refresh_tokens(
    ctx: GraphCtx,
    Path(key): Path<String>,
    _: NoParameters,
) -> Result<Response, GraphError> {
    beta_only(&ctx, "invalidateAllRefreshTokens", "It is revokeSignInSessions in v1.0, or")?;
    revoke_sign_in_sessions(ctx, Path(key), NoParameters).await
}

/// Beta's `POST /me/invalidateAllRefreshTokens`.
async fn invalidate_my_refresh_tokens(ctx: GraphCtx, _: NoParameters) -> Result<Response, GraphError> {
    beta_only(&ctx, "invalidateAllRefreshTokens", "It is revokeSignInSessions in v1.0, or")?;
    revoke_my_sign_in_sessions(ctx, NoParameters).await
}

/// `POST /me/changePassword` (204) — any user, their own password, with the current one.
async fn change_my_password(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let (mut current, mut new) = (None, None);
    for (name, value) in body_object(&body)? {
        let text = || {
            value
                .as_str()
                .map(|it| Secret::new(it.to_owned()))
                .ok_or_else(|| AppError::BadRequest(format!("Property '{name}' must be a string.")))
        };
        match name.as_str() {
            "currentPassword" => current = Some(text()?),
            "newPassword" => new = Some(text()?),
            other => {
                return Err(AppError::BadRequest(format!(
                    "Property '{other}' does not exist on the changePassword action: send currentPassword and \
                     newPassword."
                ))
                .into());
            }
        }
    }
    let (Some(current), Some(new)) = (current, new) else {
        return Err(AppError::BadRequest("Both currentPassword and newPassword are required.".into()).into());
    };
    ctx.state.app.change_own_password(&ctx.caller, &current, &new).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
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

/// `POST /users/{id}/authentication/resetMfa` (Keyward extension, 200) — the one-step reset:
/// re-registration, MFA sessions and sign-in sessions, and with a `temporaryAccessPass` object
/// (Graph's pass body) a new pass, shown only in this answer.
async fn reset_mfa(
    ctx: GraphCtx,
    Path(key): Path<String>,
    OptionalBody(body): OptionalBody,
) -> Result<Response, GraphError> {
    let object = body
        .as_object()
        .ok_or_else(|| GraphError::from(AppError::BadRequest("The request body must be a JSON object.".into())))?;
    let mut pass = None;
    for (name, value) in object {
        match name.as_str() {
            "temporaryAccessPass" if value.is_null() => (),
            "temporaryAccessPass" => pass = Some(super::authentication_methods::tap_request(value)?),
            other => {
                return Err(AppError::BadRequest(format!(
                    "Property '{other}' is not a parameter of resetMfa; the only one is 'temporaryAccessPass'."
                ))
                .into());
            }
        }
    }
    let created = ctx.state.app.reset_mfa(&ctx.caller, &key, pass).await?;
    let body = json!({"temporaryAccessPass": created.as_ref().map(super::authentication_methods::tap_json)});
    let mut response = entity(format!("{}/$metadata#keyward.mfaReset", ctx.base()), body, StatusCode::OK);
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Per-user MFA (`segment` `requirements`) and sign-in preferences exist in beta only, as in
/// Graph: `/v1.0` answers Graph's unknown-segment error naming where `what` is.
fn beta_only(ctx: &GraphCtx, segment: &str, what: &str) -> Result<(), GraphError> {
    match ctx.version {
        crate::Version::Beta => Ok(()),
        crate::Version::V1 => Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("Resource not found for the segment '{segment}'. {what} under /beta."),
            &ctx.ids,
        )),
    }
}

async fn requirements_of(ctx: GraphCtx, key: String) -> Result<Response, GraphError> {
    beta_only(&ctx, "requirements", "Per-user MFA is")?;
    let state = ctx.state.app.mfa_requirements(&ctx.caller, &key).await?;
    Ok(entity(
        format!("{}/$metadata#users('{key}')/authentication/requirements/$entity", ctx.base()),
        json!({"@odata.type": "#microsoft.graph.strongAuthenticationRequirements", "perUserMfaState": state.as_str()}),
        StatusCode::OK,
    ))
}

async fn set_requirements_of(ctx: GraphCtx, key: String, body: Value) -> Result<Response, GraphError> {
    beta_only(&ctx, "requirements", "Per-user MFA is")?;
    let fields = body_object(&body)?;
    let mut state = None;
    for (name, value) in fields {
        match name.as_str() {
            "@odata.type" => (),
            "perUserMfaState" => {
                state = Some(value.as_str().and_then(PerUserMfaState::parse).ok_or_else(|| {
                    GraphError::from(AppError::BadRequest(
                        "Property 'perUserMfaState' must be 'disabled', 'enabled' or 'enforced'.".into(),
                    ))
                })?);
            }
            other => {
                return Err(GraphError::from(AppError::BadRequest(format!(
                    "Property '{other}' does not exist on type 'microsoft.graph.strongAuthenticationRequirements'."
                ))));
            }
        }
    }
    let state =
        state.ok_or_else(|| GraphError::from(AppError::BadRequest("The body must set 'perUserMfaState'.".into())))?;
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

fn preferences_json(ctx: &GraphCtx, key: &str, preferences: SignInPreferences) -> Response {
    entity(
        format!("{}/$metadata#users('{key}')/authentication/signInPreferences/$entity", ctx.base()),
        json!({
            "@odata.type": "#microsoft.graph.signInPreferences",
            "isSystemPreferredAuthenticationMethodEnabled": preferences.is_system_preferred,
            "userPreferredMethodForSecondaryAuthentication": preferences.preferred.map(SecondaryMethod::as_str),
        }),
        StatusCode::OK,
    )
}

/// `GET /beta/users/{id}/authentication/signInPreferences` — read like the user's methods
/// (`microsoft.directory/users/authenticationMethods/standard/read`, or oneself).
async fn get_preferences(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    beta_only(&ctx, "signInPreferences", "Sign-in preferences are")?;
    let preferences = ctx.state.app.sign_in_preferences(&ctx.caller, &key).await?;
    Ok(preferences_json(&ctx, &key, preferences))
}

/// `GET /beta/me/authentication/signInPreferences`.
async fn get_my_preferences(ctx: GraphCtx) -> Result<Response, GraphError> {
    let key = ctx.me_key()?;
    get_preferences(ctx, Path(key)).await
}

/// The body of a `signInPreferences` update: each property optional, nothing else.
fn preferences_patch(body: &Value) -> Result<(Option<Option<SecondaryMethod>>, Option<bool>), GraphError> {
    let fields = body_object(body)?;
    let (mut preferred, mut system) = (None, None);
    let bad = |message: String| GraphError::from(AppError::BadRequest(message));
    for (name, value) in fields {
        match name.as_str() {
            "@odata.type" => (),
            "userPreferredMethodForSecondaryAuthentication" => {
                preferred = Some(match value {
                    Value::Null => None,
                    Value::String(it) => Some(SecondaryMethod::parse(it).ok_or_else(|| {
                        bad(format!(
                            "'{it}' is not a userDefaultAuthenticationMethodType: use push, oath, voiceMobile, voiceAlternateMobile, voiceOffice or sms."
                        ))
                    })?),
                    _ => return Err(bad("userPreferredMethodForSecondaryAuthentication is a string or null.".into())),
                });
            }
            "isSystemPreferredAuthenticationMethodEnabled" => {
                system = Some(
                    value
                        .as_bool()
                        .ok_or_else(|| bad("isSystemPreferredAuthenticationMethodEnabled is true or false.".into()))?,
                );
            }
            other => {
                return Err(bad(format!(
                    "Property '{other}' does not exist on type 'microsoft.graph.signInPreferences'."
                )));
            }
        }
    }
    Ok((preferred, system))
}

/// `PATCH /beta/users/{id}/authentication/signInPreferences` (200, the preferences) — changed
/// like a method: `microsoft.directory/users/authenticationMethods/basic/update` on the target.
async fn patch_preferences(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    beta_only(&ctx, "signInPreferences", "Sign-in preferences are")?;
    let (preferred, system) = preferences_patch(&body)?;
    let preferences = ctx.state.app.set_sign_in_preferences(&ctx.caller, Who::User(&key), preferred, system).await?;
    Ok(preferences_json(&ctx, &key, preferences))
}

/// `PATCH /beta/me/authentication/signInPreferences` (200) — oneself, with MFA in the last
/// ten minutes.
async fn patch_my_preferences(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    beta_only(&ctx, "signInPreferences", "Sign-in preferences are")?;
    let key = ctx.me_key()?;
    let (preferred, system) = preferences_patch(&body)?;
    let preferences = ctx.state.app.set_sign_in_preferences(&ctx.caller, Who::Me, preferred, system).await?;
    Ok(preferences_json(&ctx, &key, preferences))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const PER_USER_MFA: &str = "microsoft.directory/users/strongAuthentication/update";
    const METHODS_READ: &str = "microsoft.directory/users/authenticationMethods/standard/read";
    const METHODS_UPDATE: &str = "microsoft.directory/users/authenticationMethods/basic/update";
    api.route(
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
        Op::patch(
            "users",
            "Beta: set the signed-in user's per-user MFA state",
            PER_USER_MFA,
            "StrongAuthenticationRequirements",
        )
        .beta_only(),
    )
    .route(
        "/users/{id}/authentication/signInPreferences",
        get(get_preferences),
        Op::get("users", "Beta: the user's preferred second method", METHODS_READ, "SignInPreferences")
            .with_id()
            .beta_only(),
    )
    .route(
        "/users/{id}/authentication/signInPreferences",
        axum::routing::patch(patch_preferences),
        Op {
            status: 200,
            response: "SignInPreferences",
            ..Op::patch("users", "Beta: set the user's preferred second method", METHODS_UPDATE, "SignInPreferences")
        }
        .with_id()
        .beta_only(),
    )
    .route(
        "/me/authentication/signInPreferences",
        get(get_my_preferences),
        Op::get("users", "Beta: your preferred second method", "(self)", "SignInPreferences").beta_only(),
    )
    .route(
        "/me/authentication/signInPreferences",
        axum::routing::patch(patch_my_preferences),
        Op {
            status: 200,
            response: "SignInPreferences",
            ..Op::patch("users", "Beta: set your preferred second method", "(self)", "SignInPreferences")
        }
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
        "/users/{id}/invalidateAllRefreshTokens",
        post(invalidate_all_refresh_tokens),
        Op::post(
            "users",
            "Beta: revokeSignInSessions under its older name",
            "microsoft.directory/users/invalidateAllRefreshTokens",
            "Empty",
            200,
            "Boolean",
        )
        .with_id()
        .beta_only(),
    )
    .route(
        "/me/invalidateAllRefreshTokens",
        post(invalidate_my_refresh_tokens),
        Op::post("users", "Beta: revoke your own sessions (older name)", "(self)", "Empty", 200, "Boolean").beta_only(),
    )
    .route(
        "/me/changePassword",
        post(change_my_password),
        Op::post("users", "Change your own password", "(self)", "ChangePasswordRequest", 204, "Empty"),
    )
    .route(
        "/me/revokeSignInSessions",
        post(revoke_my_sign_in_sessions),
        Op::post(
            "users",
            "Revoke the signed-in user's own sessions and refresh tokens",
            "(self)",
            "Empty",
            200,
            "Boolean",
        ),
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
        .with_id()
        .may_be_held(),
    )
    .route(
        "/users/{id}/authentication/resetMfa",
        post(reset_mfa),
        Op::post(
            "users",
            "Keyward extension: reset MFA in one step (require re-registration, revoke MFA and sign-in sessions, optionally create a Temporary Access Pass)",
            "microsoft.directory/users/authenticationMethods/delete, basic/update, invalidateAllRefreshTokens (and authenticationMethods/create with a pass)",
            "MfaReset",
            200,
            "MfaReset",
        )
        .with_id()
        .may_be_held(),
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
