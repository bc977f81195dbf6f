//! Discovery (`/{tenant}/v2.0/.well-known/openid-configuration`) and the signing keys
//! (`/{tenant}/discovery/v2.0/keys`).

use super::{oauth_error, server_error, unknown_tenant};
use crate::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub(super) async fn discovery(State(state): State<AppState>, Path(tenant_key): Path<String>) -> Response {
    let tenant = match state.app.find_tenant(&tenant_key).await {
        Ok(Some(it)) => it,
        Ok(None) => return oauth_error(&unknown_tenant(&tenant_key)),
        Err(err) => return server_error(err),
    };
    let base = &state.app.config().public_url;
    let id = tenant.id.as_str();
    // The password grant only when it is turned on (`--allow-password-grant`).
    let mut grants = vec![
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:device_code",
    ];
    if state.app.config().allow_password_grant {
        grants.push("password");
    }
    let body = json!({
        "issuer": state.app.issuer(&tenant.id),
        "authorization_endpoint": format!("{base}/{id}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/{id}/oauth2/v2.0/token"),
        "device_authorization_endpoint": format!("{base}/{id}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{base}/{id}/oauth2/v2.0/logout"),
        "revocation_endpoint": format!("{base}/{id}/oauth2/v2.0/revoke"),
        "userinfo_endpoint": format!("{base}/oidc/userinfo"),
        "jwks_uri": format!("{base}/{id}/discovery/v2.0/keys"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": grants,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "nbf", "auth_time", "nonce", "oid", "tid", "name",
            "preferred_username", "email", "amr", "acr", "ver"
        ],
        "prompt_values_supported": ["none", "login", "select_account", "consent"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "tenant_region_scope": null,
        "cloud_instance_name": "keyward",
    });
    ([(header::CACHE_CONTROL, "max-age=300")], Json(body)).into_response()
}

/// `GET /{tenant}/discovery/v2.0/keys`: every unretired signing key.
pub(super) async fn jwks(State(state): State<AppState>, Path(tenant): Path<String>) -> Response {
    match state.app.find_tenant(&tenant).await {
        Ok(Some(_)) => (),
        Ok(None) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({
                    "error": "invalid_tenant",
                    "error_description": format!("AADSTS90002: Tenant '{tenant}' not found. Check the tenant id or domain name."),
                })),
            )
                .into_response();
        }
        Err(err) => {
            tracing::error!(error = ?err, "loading tenant for JWKS failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    match state.app.public_keys().await {
        Ok(keys) => {
            let keys: Vec<_> = keys
                .iter()
                .map(|it| json!({"kty": "EC", "use": "sig", "alg": "ES256", "kid": it.kid, "crv": "P-256", "x": it.x, "y": it.y}))
                .collect();
            ([(header::CACHE_CONTROL, "max-age=300")], axum::Json(json!({ "keys": keys }))).into_response()
        }
        Err(err) => {
            tracing::error!(error = ?err, "loading signing keys failed");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
