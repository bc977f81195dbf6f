//! Passkeys (`…/authentication/fido2Methods`): Graph's provisioning (`creationOptions`, then
//! `POST` with the `publicKeyCredential` the authenticator made), list, get and delete, on
//! `/users/{id}` and `/me`.

use super::Body;
use super::authentication_methods::{list, one};
use crate::context::{GraphCtx, Version, entity, rfc3339};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_app::{AppError, CreationOptions, NewPasskey, PasskeyView, Who};
use keyward_core::webauthn::ALGORITHMS;
use serde_json::{Value, json};

const SEGMENT: &str = "fido2Methods";

/// A passkey as Graph's `fido2AuthenticationMethod`.
pub(super) fn passkey_json(view: &PasskeyView) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.fido2AuthenticationMethod",
        "id": view.id.as_str(),
        "displayName": view.display_name,
        "createdDateTime": rfc3339(view.created),
        "aaGuid": view.aaguid,
        "model": null,
        "attestationCertificates": [],
        "attestationLevel": view.attestation_level,
        "passkeyType": if view.is_synced { "synced" } else { "deviceBound" },
    })
}

/// The `publicKey` of `webauthnCredentialCreationOptions` (a discoverable credential required,
/// as Graph asks).
pub(crate) fn public_key_creation_json(options: &CreationOptions) -> Value {
    json!({
        "challenge": options.challenge,
        "timeout": 300_000,
        "attestation": options.attestation,
        "rp": {"id": options.rp_id, "name": "Keyward"},
        "user": {"id": options.user_handle, "name": options.user_name, "displayName": options.display_name},
        "pubKeyCredParams": ALGORITHMS.iter().map(|alg| json!({"type": "public-key", "alg": alg})).collect::<Vec<_>>(),
        "excludeCredentials": options.exclude.iter().map(|id| json!({"type": "public-key", "id": id, "transports": []})).collect::<Vec<_>>(),
        "authenticatorSelection": {"requireResidentKey": true, "userVerification": "required"},
    })
}

fn options_json(ctx: &GraphCtx, options: &CreationOptions) -> Response {
    entity(
        format!("{}/$metadata#microsoft.graph.webauthnCredentialCreationOptions", ctx.base()),
        json!({
            "challengeTimeoutDateTime": rfc3339(options.expires),
            "publicKey": public_key_creation_json(options),
        }),
        StatusCode::OK,
    )
}

async fn creation_options(ctx: GraphCtx, who: Who<'_>) -> Result<Response, GraphError> {
    let options = ctx.state.app.passkey_creation_options(&ctx.caller, who).await?;
    Ok(options_json(&ctx, &options))
}

/// `GET /users/{id}/authentication/fido2Methods/creationOptions` — `users/authenticationMethods/create`.
async fn user_creation_options(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    creation_options(ctx.clone(), Who::User(&key)).await
}

/// `GET /me/authentication/fido2Methods/creationOptions` — oneself, MFA within ten minutes.
async fn my_creation_options(ctx: GraphCtx) -> Result<Response, GraphError> {
    creation_options(ctx.clone(), Who::Me).await
}

fn bad(message: &str) -> GraphError {
    GraphError::from(AppError::BadRequest(message.to_owned()))
}

/// Reads `POST …/fido2Methods`'s body: `displayName` and `publicKeyCredential` with `id` and
/// `response.clientDataJSON` / `response.attestationObject` (Base64URL).
fn new_passkey(body: &Value) -> Result<NewPasskey, GraphError> {
    let object = body.as_object().ok_or_else(|| bad("The request body must be a JSON object."))?;
    if let Some(key) =
        object.keys().find(|it| !matches!(it.as_str(), "@odata.type" | "displayName" | "publicKeyCredential"))
    {
        return Err(bad(&format!("Property '{key}' cannot be set on a passkey.")));
    }
    let display_name = match object.get("displayName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => return Err(bad("displayName must be a string.")),
    };
    let credential = object
        .get("publicKeyCredential")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("publicKeyCredential is required: the credential navigator.credentials.create returned."))?;
    let text = |value: Option<&Value>, name: &str| {
        value
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad(&format!("publicKeyCredential.{name} is required.")))
    };
    let binary = |value: Option<&Value>, name: &str| -> Result<Vec<u8>, GraphError> {
        let raw = text(value, name)?;
        // Far above any real authenticator's response; a bound on what is parsed and stored.
        if raw.len() > 65_536 {
            return Err(bad(&format!("publicKeyCredential.{name} is too long.")));
        }
        URL_SAFE_NO_PAD
            .decode(raw.trim_end_matches('='))
            .map_err(|_| bad(&format!("publicKeyCredential.{name} must be Base64URL without padding.")))
    };
    let response = credential.get("response");
    Ok(NewPasskey {
        display_name,
        credential_id: text(credential.get("id"), "id")?,
        client_data_json: binary(response.and_then(|it| it.get("clientDataJSON")), "response.clientDataJSON")?,
        attestation_object: binary(response.and_then(|it| it.get("attestationObject")), "response.attestationObject")?,
    })
}

async fn register(ctx: &GraphCtx, key: &str, who: Who<'_>, body: &Value) -> Result<Response, GraphError> {
    let new = new_passkey(body)?;
    let view = ctx.state.app.register_passkey(&ctx.caller, who, new).await?;
    Ok(entity(
        format!("{}/$metadata#users('{key}')/authentication/{SEGMENT}/$entity", ctx.base()),
        passkey_json(&view),
        StatusCode::CREATED,
    ))
}

/// `POST /users/{id}/authentication/fido2Methods` (201) — `users/authenticationMethods/create`.
async fn create(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    register(&ctx, &key, Who::User(&key), &body).await
}

/// `POST /me/authentication/fido2Methods` (201).
async fn create_mine(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let key = ctx.me_key()?;
    register(&ctx, &key, Who::Me, &body).await
}

/// `GET …/fido2Methods`.
async fn list_passkeys(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let passkeys = ctx.state.app.list_passkeys(&ctx.caller, &key).await?;
    Ok(list(&ctx, &key, SEGMENT, passkeys.iter().map(passkey_json).collect()))
}

async fn list_mine(ctx: GraphCtx) -> Result<Response, GraphError> {
    let key = ctx.me_key()?;
    list_passkeys(ctx, Path(key)).await
}

/// `GET …/fido2Methods/{id}`, and beta's `…/fido2Methods/creationOptions(challengeTimeoutInMinutes=…)`
/// (a function with an argument, which the route sees as an id).
async fn get_passkey(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
    if let Some(minutes) = timeout_argument(&id) {
        if ctx.version != Version::Beta {
            return Err(bad("creationOptions(challengeTimeoutInMinutes=…) is a beta function: call /beta, or \
                 creationOptions without arguments (a five-minute challenge) on v1.0."));
        }
        let minutes = minutes.ok_or_else(|| bad("challengeTimeoutInMinutes must be a whole number of minutes."))?;
        let options = ctx.state.app.passkey_creation_options_lasting(&ctx.caller, Who::User(&key), minutes).await?;
        return Ok(options_json(&ctx, &options));
    }
    let passkeys = ctx.state.app.list_passkeys(&ctx.caller, &key).await?;
    let found = passkeys.iter().find(|it| it.id.as_str().eq_ignore_ascii_case(&id)).map(passkey_json);
    one(&ctx, &key, SEGMENT, &id, found)
}

/// `DELETE …/fido2Methods/{id}` (204) — `users/authenticationMethods/delete`.
async fn delete_passkey(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
    ctx.state.app.delete_passkey(&ctx.caller, Who::User(&key), &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_mine(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    if timeout_argument(&id).is_some() && ctx.version == Version::Beta {
        let minutes = timeout_argument(&id)
            .flatten()
            .ok_or_else(|| bad("challengeTimeoutInMinutes must be a whole number of minutes."))?;
        let options = ctx.state.app.passkey_creation_options_lasting(&ctx.caller, Who::Me, minutes).await?;
        return Ok(options_json(&ctx, &options));
    }
    let key = ctx.me_key()?;
    get_passkey(ctx, Path((key, id))).await
}

/// The argument of `creationOptions(challengeTimeoutInMinutes=N)` (names without case):
/// `None` when `segment` is not that call, `Some(None)` when its argument is not a number.
fn timeout_argument(segment: &str) -> Option<Option<i64>> {
    let (name, rest) = segment.split_once('(')?;
    if !name.eq_ignore_ascii_case("creationOptions") {
        return None;
    }
    let inner = rest.strip_suffix(')')?;
    let (parameter, value) = inner.split_once('=')?;
    if !parameter.trim().eq_ignore_ascii_case("challengeTimeoutInMinutes") {
        return Some(None);
    }
    Some(value.trim().parse().ok())
}

async fn delete_mine(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.delete_passkey(&ctx.caller, Who::Me, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const READ: &str = "microsoft.directory/users/authenticationMethods/standard/read";
    const CREATE: &str = "microsoft.directory/users/authenticationMethods/create";
    const DELETE: &str = "microsoft.directory/users/authenticationMethods/delete";
    const SELF: &str = "(self; changes need MFA within 10 minutes)";
    api.route(
        "/users/{id}/authentication/fido2Methods",
        get(list_passkeys),
        Op::get("authentication", "List passkeys (FIDO2)", READ, "AuthenticationMethodCollection").with_id(),
    )
    .route(
        "/users/{id}/authentication/fido2Methods",
        post(create),
        Op::post(
            "authentication",
            "Register a passkey from a credential made with creationOptions",
            CREATE,
            "NewPasskey",
            201,
            "AuthenticationMethod",
        )
        .with_id(),
    )
    .route(
        "/users/{id}/authentication/fido2Methods/creationOptions",
        get(user_creation_options),
        Op::get(
            "authentication",
            "WebAuthn options to create a passkey for the user (5-minute challenge)",
            CREATE,
            "PasskeyCreationOptions",
        )
        .with_id(),
    )
    .route(
        "/users/{id}/authentication/fido2Methods/{method}",
        get(get_passkey),
        Op::get("authentication", "Get a passkey (FIDO2)", READ, "AuthenticationMethod").with_id().with_param("method"),
    )
    .route(
        "/users/{id}/authentication/fido2Methods/{method}",
        delete(delete_passkey),
        Op::delete("authentication", "Delete a passkey (FIDO2)", DELETE).with_id().with_param("method").may_be_held(),
    )
    .route(
        "/me/authentication/fido2Methods",
        get(list_mine),
        Op::get("authentication", "Your passkeys", SELF, "AuthenticationMethodCollection"),
    )
    .route(
        "/me/authentication/fido2Methods",
        post(create_mine),
        Op::post("authentication", "Register a passkey for yourself", SELF, "NewPasskey", 201, "AuthenticationMethod"),
    )
    .route(
        "/me/authentication/fido2Methods/creationOptions",
        get(my_creation_options),
        Op::get("authentication", "WebAuthn options to create a passkey for yourself", SELF, "PasskeyCreationOptions"),
    )
    .route(
        "/me/authentication/fido2Methods/{method}",
        get(get_mine),
        Op::get("authentication", "One of your passkeys", SELF, "AuthenticationMethod").with_param("method"),
    )
    .route(
        "/me/authentication/fido2Methods/{method}",
        delete(delete_mine),
        Op::delete("authentication", "Delete one of your passkeys", SELF).with_param("method"),
    )
}
