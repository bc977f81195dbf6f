//! The OpenID Connect provider's endpoints (Entra-shaped paths, DESIGN.md): discovery, authorize,
//! token, device authorization and its verification page, userinfo, logout, revocation; and the
//! Graph `/applications` routes.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query as RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use base64::Engine;
use keyward_app::{
    AppError, ApplicationDraft, ApplicationView, AuthorizeOutcome, AuthorizeRequest, ClientAuth, KeyCredentialDraft,
    OAuthError, ResponseMode, Surface, url_encode,
};
use keyward_core::secret::Secret;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::context::{GraphCtx, collection, entity, rfc3339};
use crate::error::GraphError;
use crate::graph::{Body, Query};
use crate::openapi::{Api, Op};
use crate::signin::{cookie_names, esc, form, html_response, meta, page, read_cookie};

type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

/// The provider's routes, relative to the root.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(discovery))
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize).post(authorize_post))
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(devicecode))
        .route("/{tenant}/oauth2/v2.0/logout", get(logout).post(logout_post))
        .route("/{tenant}/oauth2/v2.0/revoke", post(revoke))
        .route("/{tenant}/oauth2/v2.0/consent", post(consent_post))
        .route("/{tenant}/devicelogin", get(devicelogin).post(devicelogin_post))
        .route("/oidc/userinfo", get(userinfo).post(userinfo))
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
async fn discovery(State(state): State<AppState>, Path(tenant_key): Path<String>) -> Response {
    let tenant = match state.app.find_tenant(&tenant_key).await {
        Ok(Some(it)) => it,
        Ok(None) => return oauth_error(&unknown_tenant(&tenant_key)),
        Err(err) => return server_error(err),
    };
    let base = &state.app.config().public_url;
    let id = tenant.id.as_str();
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
        "grant_types_supported": [
            "authorization_code", "refresh_token", "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code", "password"
        ],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "none"],
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

fn unknown_tenant(key: &str) -> OAuthError {
    OAuthError {
        status: 400,
        error: "invalid_tenant",
        description: format!("AADSTS90002: Tenant '{key}' not found. Check the tenant id or domain name."),
        codes: vec![90002],
        retry_after: None,
    }
}

fn server_error(err: AppError) -> Response {
    if matches!(err, AppError::TooManyRequests { .. } | AppError::Overloaded { .. }) {
        return oauth_error(&OAuthError::from(err));
    }
    tracing::error!(error = ?err, "OpenID Connect endpoint failed");
    oauth_error(&OAuthError {
        status: 500,
        error: "server_error",
        description: "The server failed; try again.".into(),
        codes: Vec::new(),
        retry_after: None,
    })
}

/// An error in RFC 6749 form with Entra's extra fields.
fn oauth_error(err: &OAuthError) -> Response {
    let now = time::OffsetDateTime::now_utc();
    let timestamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let trace = uuid::Uuid::new_v4().to_string();
    let body = json!({
        "error": err.error,
        "error_description": err.description,
        "error_codes": err.codes,
        "timestamp": timestamp,
        "trace_id": trace,
        "correlation_id": trace,
    });
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if err.status == 401 {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"keyward\""));
    }
    if let Some(seconds) = err.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn session_cookie<'a>(state: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    read_cookie(headers, cookie_names(state).0)
}

/// `GET /{tenant}/oauth2/v2.0/authorize`.
async fn authorize(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path_and_query = uri.path_and_query().map_or_else(|| uri.path().to_owned(), |it| it.as_str().to_owned());
    run_authorize(&state, &tenant, params, path_and_query, &headers).await
}

/// `POST /{tenant}/oauth2/v2.0/authorize` (form-encoded parameters, OIDC Core §3.1.2.1).
async fn authorize_post(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v))).collect();
    let path_and_query = format!("/{tenant}/oauth2/v2.0/authorize?{}", query.join("&"));
    run_authorize(&state, &tenant, params, path_and_query, &headers).await
}

async fn run_authorize(
    state: &AppState,
    tenant: &str,
    params: HashMap<String, String>,
    path_and_query: String,
    headers: &HeaderMap,
) -> Response {
    let request = AuthorizeRequest { params, path_and_query };
    match state.app.authorize(tenant, &request, session_cookie(state, headers)).await {
        Ok(AuthorizeOutcome::ErrorPage(message)) => html_response(
            StatusCode::BAD_REQUEST,
            &page(
                "Sorry, but we're having trouble signing you in",
                &format!(
                    "<p class=\"error\" role=\"alert\">{}</p><p>Tell the application's owner; the request cannot be sent back to it.</p>",
                    esc(&message)
                ),
            ),
        ),
        Ok(AuthorizeOutcome::SignIn { location }) => redirect(&location),
        Ok(AuthorizeOutcome::Consent(request)) => {
            let csrf = session_cookie(state, headers).map(keyward_app::csrf_token).unwrap_or_default();
            consent_page(tenant, &csrf, &request)
        }
        Ok(AuthorizeOutcome::Respond { redirect_uri, mode: ResponseMode::Query, params }) => {
            let query: Vec<String> =
                params.iter().map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v))).collect();
            let separator = if redirect_uri.contains('?') { '&' } else { '?' };
            redirect(&format!("{redirect_uri}{separator}{}", query.join("&")))
        }
        Ok(AuthorizeOutcome::Respond { redirect_uri, mode: ResponseMode::FormPost, params }) => {
            form_post(&redirect_uri, &params)
        }
        Err(err) => {
            tracing::error!(error = ?err, "authorize failed");
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &page("Sign in", "<p class=\"error\">Something went wrong on our side. Try again in a moment.</p>"),
            )
        }
    }
}

/// The consent page: what the application asks for, and Accept / Cancel.
fn consent_page(tenant: &str, csrf: &str, request: &keyward_app::ConsentRequest) -> Response {
    let action = format!("/{tenant}/oauth2/v2.0/consent");
    let items: String = request
        .permissions
        .iter()
        .map(|(name, text)| format!("<li><strong>{}</strong> <code>{}</code></li>", esc(text), esc(name)))
        .collect();
    let names: Vec<&str> = request.permissions.iter().map(|(name, _)| name.as_str()).collect();
    let hidden = |decision: &str| {
        format!(
            "<input type=\"hidden\" name=\"client_id\" value=\"{}\"><input type=\"hidden\" name=\"permissions\" \
             value=\"{}\"><input type=\"hidden\" name=\"return_to\" value=\"{}\"><input type=\"hidden\" \
             name=\"token\" value=\"{}\"><input type=\"hidden\" name=\"decision\" value=\"{decision}\">",
            esc(&request.client_id),
            esc(&names.join(" ")),
            esc(&request.return_to),
            esc(&request.token)
        )
    };
    let organization = if request.may_consent_for_organization {
        "<p><input type=\"checkbox\" id=\"for_organization\" name=\"for_organization\" value=\"true\"> \
         <label for=\"for_organization\">Consent on behalf of your organization</label></p>"
    } else {
        ""
    };
    html_response(
        StatusCode::OK,
        &page(
            "Permissions requested",
            &format!(
                "<p><strong>{}</strong> (application id <code>{}</code>) wants to:</p><ul id=\"permissions\">{items}</ul>\
                 <p>Accept only if you trust this application. An administrator can remove its access later.</p>{}{}",
                esc(&request.client_name),
                esc(&request.client_id),
                form(&action, csrf, "consent", &format!("{}{organization}", hidden("accept")), "Accept"),
                form(&action, csrf, "consent", &hidden("cancel"), "Cancel"),
            ),
        ),
    )
}

/// `POST /{tenant}/oauth2/v2.0/consent`: the consent page's answer; back to the authorization
/// request (which then issues the code, or answers `access_denied` after Cancel).
async fn consent_post(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    let Some(cookie) = session_cookie(&state, &headers).map(str::to_owned) else {
        return redirect(&format!("/{tenant}/login"));
    };
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    let csrf = keyward_app::csrf_token(&cookie);
    if !keyward_core::totp::constant_time_eq(csrf.as_bytes(), field("csrf").as_bytes()) {
        return html_response(
            StatusCode::BAD_REQUEST,
            &page(
                "Permissions requested",
                "<p class=\"error\">This form did not come from this page. Go back to the application and sign in again.</p>",
            ),
        );
    }
    let return_to = field("return_to");
    if !return_to.starts_with('/') || return_to.starts_with("//") || !return_to.contains("/oauth2/v2.0/authorize?") {
        return html_response(
            StatusCode::BAD_REQUEST,
            &page("Permissions requested", "<p class=\"error\">The consent request is invalid.</p>"),
        );
    }
    let meta = meta(&headers, peer.map(|it| it.0.0));
    let answer = state
        .app
        .answer_consent(
            &tenant,
            &cookie,
            field("client_id"),
            field("permissions"),
            return_to,
            field("token"),
            field("decision") == "accept",
            field("for_organization") == "true",
            meta,
        )
        .await;
    match answer {
        Ok(location) => redirect(&location),
        Err(AppError::Unauthenticated(_)) => redirect(&format!("/{tenant}/login")),
        Err(err @ (AppError::BadRequest(_) | AppError::Forbidden { .. } | AppError::NotFound(_))) => html_response(
            StatusCode::BAD_REQUEST,
            &page("Permissions requested", &format!("<p class=\"error\" role=\"alert\">{}</p>", esc(&err.to_string()))),
        ),
        Err(err) => server_error(err),
    }
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The `form_post` response mode: a form that posts itself (one inline script, allowed by its
/// hash), with a button for browsers without JavaScript.
fn form_post(redirect_uri: &str, params: &[(String, String)]) -> Response {
    const SCRIPT: &str = "document.forms[0].submit()";
    /// SHA-256 of `SCRIPT`, base64 (the Content-Security-Policy allows exactly this script).
    const SCRIPT_HASH: &str = "ePniVEkSivX/c7XWBGafqh8tSpiRrKiqYeqbG7N1TOE=";
    let inputs: String = params
        .iter()
        .map(|(name, value)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", esc(name), esc(value)))
        .collect();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Working…</title></head><body>\
         <form method=\"post\" action=\"{}\">{inputs}<noscript><p>Your browser runs no scripts: continue by hand.</p>\
         <button type=\"submit\">Continue</button></noscript></form><script>{SCRIPT}</script></body></html>",
        esc(redirect_uri)
    );
    let mut response = (StatusCode::OK, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'sha256-{SCRIPT_HASH}'; form-action *; frame-ancestors 'none'"
    )) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// Client credentials from `Authorization: Basic` (RFC 6749 §2.3.1: form-urlencoded id and secret).
fn basic_auth(headers: &HeaderMap) -> Result<ClientAuth, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|it| it.to_str().ok()) else {
        return Ok(ClientAuth::default());
    };
    let Some((scheme, encoded)) = value.split_once(' ') else { return Ok(ClientAuth::default()) };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(ClientAuth::default());
    }
    let bad = || OAuthError {
        status: 401,
        error: "invalid_client",
        description: "AADSTS7000215: The Authorization header is not valid Basic credentials.".into(),
        codes: vec![7_000_215],
        retry_after: None,
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let decode = |it: &str| {
        form_urlencoded::parse(format!("x={it}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    Ok(ClientAuth { client_id: Some(decode(id)), secret: Some(Secret::new(decode(secret))) })
}

/// `POST /{tenant}/oauth2/v2.0/token`.
async fn token(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    let auth = match basic_auth(&headers) {
        Ok(it) => it,
        Err(err) => return oauth_error(&err),
    };
    let meta = meta(&headers, peer.map(|it| it.0.0));
    if let Err(err) = state.app.throttle(Surface::Token, meta.ip_address.as_deref(), None) {
        return oauth_error(&OAuthError::from(err));
    }
    match state.app.token(&tenant, &params, auth, &meta).await {
        Ok(response) => {
            let mut response = Json(response).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(err) => oauth_error(&err),
    }
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
async fn devicecode(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    peer: Peer,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    let address = peer.map(|it| it.0.0.ip().to_string());
    if let Err(err) = state.app.throttle(Surface::DeviceCode, address.as_deref(), None) {
        return oauth_error(&OAuthError::from(err));
    }
    match state.app.device_authorization(&tenant, &params).await {
        Ok(response) => Json(response).into_response(),
        Err(err) => oauth_error(&err),
    }
}

/// `POST /{tenant}/oauth2/v2.0/revoke` (RFC 7009): 200 for any token once the client is known
/// (and authenticated, if confidential); an unknown or foreign token changes nothing.
async fn revoke(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    let auth = match basic_auth(&headers) {
        Ok(it) => it,
        Err(err) => return oauth_error(&err),
    };
    match state.app.revoke_token(&tenant, &params, auth).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(err) => oauth_error(&err),
    }
}

/// `GET /{tenant}/oauth2/v2.0/logout`: ends the browser session; goes to
/// `post_logout_redirect_uri` only if it is registered for the client (`client_id` or the
/// `id_token_hint`'s audience).
async fn logout(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    run_logout(&state, &tenant, &params, &headers).await
}

async fn logout_post(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    run_logout(&state, &tenant, &params, &headers).await
}

async fn run_logout(state: &AppState, tenant: &str, params: &HashMap<String, String>, headers: &HeaderMap) -> Response {
    let client_id = params
        .get("client_id")
        .cloned()
        .or_else(|| params.get("id_token_hint").and_then(|it| state.app.id_token_audience(it)));
    let target = params.get("post_logout_redirect_uri").map(String::as_str);
    let result = state.app.logout(tenant, session_cookie(state, headers), client_id.as_deref(), target).await;
    let (session_name, _, secure) = cookie_names(state);
    let clear =
        format!("{session_name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}", if secure { "; Secure" } else { "" });
    let mut response = match result {
        Ok(Some(target)) => {
            let location = match params.get("state") {
                Some(value) => {
                    format!("{target}{}state={}", if target.contains('?') { '&' } else { '?' }, url_encode(value))
                }
                None => target,
            };
            redirect(&location)
        }
        Ok(None) => html_response(
            StatusCode::OK,
            &page(
                "You signed out",
                "<p>You signed out of your account. It's a good idea to close all browser windows.</p>",
            ),
        ),
        Err(AppError::NotFound(_)) => {
            html_response(StatusCode::NOT_FOUND, &page("Sign out", "<p class=\"error\">No such tenant.</p>"))
        }
        Err(err) => return server_error(err),
    };
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `GET /oidc/userinfo` with a bearer token.
async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|it| it.to_str().ok()).and_then(|it| {
        it.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, token)| token)
    });
    let meta = keyward_app::RequestMeta { correlation_id: uuid::Uuid::new_v4().to_string(), ip_address: None };
    match state.app.authenticate(bearer, meta).await {
        Ok(caller) => match caller.user() {
            Some(user) => Json(json!({
                "sub": user.id.as_str(),
                "oid": user.id.as_str(),
                "tid": caller.tenant.id.as_str(),
                "name": user.display_name,
                "preferred_username": user.user_principal_name,
                "email": user.mail,
                "given_name": user.given_name,
                "family_name": user.surname,
            }))
            .into_response(),
            None => bearer_error("invalid_token", "userinfo needs a token issued to a user"),
        },
        Err(_) => bearer_error("invalid_token", "The access token is missing, invalid or expired"),
    }
}

fn bearer_error(error: &str, description: &str) -> Response {
    let mut response =
        (StatusCode::UNAUTHORIZED, Json(json!({"error": error, "error_description": description}))).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer error=\"{error}\", error_description=\"{description}\""))
    {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// `GET /{tenant}/devicelogin`: the device-code verification page (needs a signed-in session).
async fn devicelogin(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    // Locations are built from the tenant's id, never from the path as given (a percent-encoded
    // `/` or `\` in it would make `//evil.example` of them).
    let Ok(Some(tenant_row)) = state.app.find_tenant(&tenant).await else {
        return html_response(StatusCode::NOT_FOUND, &page("Enter code", "<p class=\"error\">No such tenant.</p>"));
    };
    let tenant = tenant_row.id.to_string();
    let Some(cookie) = session_cookie(&state, &headers).map(str::to_owned) else {
        return sign_in_first(&tenant);
    };
    match state.app.signed_in(&tenant_row, &cookie).await {
        Ok(true) => (),
        Ok(false) => return sign_in_first(&tenant),
        Err(err) => return server_error(err),
    }
    let csrf = keyward_app::csrf_token(&cookie);
    let action = format!("/{tenant}/devicelogin");
    let code = params.get("user_code").map(String::as_str).unwrap_or("");
    html_response(StatusCode::OK, &code_page(&action, &csrf, code, None))
}

/// Sends the browser to sign in, and back to the device-code page (`tenant` is a tenant id).
fn sign_in_first(tenant: &str) -> Response {
    // A fresh sign-in (`prompt=login`): the session may count but lack the MFA the user now needs.
    redirect(&format!("/{tenant}/login?prompt=login&return_to={}", url_encode(&format!("/{tenant}/devicelogin"))))
}

fn code_page(action: &str, csrf: &str, code: &str, error: Option<&str>) -> String {
    let error = error.map(|it| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(it))).unwrap_or_default();
    page(
        "Enter code",
        &format!(
            "<p>Enter the code displayed on your app or device.</p>{error}{}",
            form(
                action,
                csrf,
                "device_code",
                &format!(
                    "<label for=\"user_code\">Code</label><input type=\"text\" id=\"user_code\" name=\"user_code\" \
                     autocomplete=\"off\" autocapitalize=\"characters\" value=\"{}\" required autofocus>",
                    esc(code)
                ),
                "Next"
            )
        ),
    )
}

/// `POST /{tenant}/devicelogin`: `step=device_code` shows the confirmation; `step=device_confirm`
/// (with `decision=approve|deny`) records it.
async fn devicelogin_post(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    let Ok(Some(tenant_row)) = state.app.find_tenant(&tenant).await else {
        return html_response(StatusCode::NOT_FOUND, &page("Enter code", "<p class=\"error\">No such tenant.</p>"));
    };
    let tenant = tenant_row.id.to_string();
    let Some(cookie) = session_cookie(&state, &headers).map(str::to_owned) else {
        return sign_in_first(&tenant);
    };
    let csrf = keyward_app::csrf_token(&cookie);
    let presented = fields.get("csrf").map(String::as_str).unwrap_or("");
    if !keyward_core::totp::constant_time_eq(csrf.as_bytes(), presented.as_bytes()) {
        return html_response(
            StatusCode::BAD_REQUEST,
            &page(
                "Enter code",
                "<p class=\"error\">This form did not come from this page. Reload it and try again.</p>",
            ),
        );
    }
    let action = format!("/{tenant}/devicelogin");
    let code = fields.get("user_code").map(String::as_str).unwrap_or("").trim().to_owned();
    match fields.get("step").map(String::as_str) {
        Some("device_code") => match state.app.device_code_client(&tenant, &cookie, &code).await {
            Ok(Some((client, permissions))) => html_response(
                StatusCode::OK,
                &page(
                    "Are you trying to sign in?",
                    &format!(
                        "<p>{} wants to sign you in. Only continue if you started this on a device you trust and the code came from it.</p>{}{}{}",
                        esc(&client),
                        if permissions.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "<p>Continuing also lets it:</p><ul id=\"permissions\">{}</ul>",
                                permissions
                                    .iter()
                                    .map(|(name, text)| format!(
                                        "<li><strong>{}</strong> <code>{}</code></li>",
                                        esc(text),
                                        esc(name)
                                    ))
                                    .collect::<String>()
                            )
                        },
                        form(
                            &action,
                            &csrf,
                            "device_confirm",
                            &format!(
                                "<input type=\"hidden\" name=\"user_code\" value=\"{}\"><input type=\"hidden\" name=\"decision\" value=\"approve\">",
                                esc(&code)
                            ),
                            "Continue"
                        ),
                        form(
                            &action,
                            &csrf,
                            "device_confirm",
                            &format!(
                                "<input type=\"hidden\" name=\"user_code\" value=\"{}\"><input type=\"hidden\" name=\"decision\" value=\"deny\">",
                                esc(&code)
                            ),
                            "Cancel"
                        ),
                    ),
                ),
            ),
            Ok(None) => html_response(
                StatusCode::OK,
                &code_page(
                    &action,
                    &csrf,
                    &code,
                    Some(
                        "That code is not valid or has expired. Check the code on your device, or start the sign-in there again.",
                    ),
                ),
            ),
            Err(AppError::BadRequest(message)) => {
                html_response(StatusCode::OK, &code_page(&action, &csrf, &code, Some(&message)))
            }
            Err(AppError::Unauthenticated(_)) => sign_in_first(&tenant),
            Err(err) => server_error(err),
        },
        Some("device_confirm") => {
            let approve = fields.get("decision").map(String::as_str) == Some("approve");
            match state.app.approve_device_code(&tenant, &cookie, &code, approve, meta(&headers, None)).await {
                Ok(client) if approve => html_response(
                    StatusCode::OK,
                    &page(
                        "You're signed in",
                        &format!(
                            "<p id=\"device-done\">You have signed in to {} on your device. You may now close this window.</p>",
                            esc(&client)
                        ),
                    ),
                ),
                Ok(_) => html_response(
                    StatusCode::OK,
                    &page(
                        "Sign-in cancelled",
                        "<p id=\"device-done\">You declined the sign-in. You may close this window.</p>",
                    ),
                ),
                Err(AppError::BadRequest(message)) => {
                    html_response(StatusCode::OK, &code_page(&action, &csrf, &code, Some(&message)))
                }
                Err(AppError::Unauthenticated(_)) => sign_in_first(&tenant),
                Err(err) => server_error(err),
            }
        }
        _ => html_response(StatusCode::OK, &code_page(&action, &csrf, &code, None)),
    }
}

// ---------------------------------------------------------------------------------------------
// Graph: /applications

fn application_json(view: &ApplicationView) -> Value {
    let app = &view.application;
    let passwords: Vec<Value> = view
        .credentials
        .iter()
        .filter_map(|it| {
            it.secret.as_ref().map(|(_, hint)| {
                json!({
                    "keyId": it.key_id.as_str(), "displayName": it.display_name, "hint": hint,
                    "startDateTime": rfc3339(it.start),
                    "endDateTime": rfc3339(it.end),
                    "secretText": null, "customKeyIdentifier": null,
                })
            })
        })
        .collect();
    json!({
        "id": app.id.as_str(),
        "appId": app.app_id,
        "displayName": app.display_name,
        "createdDateTime": rfc3339(app.created),
        "signInAudience": "AzureADMyOrg",
        "isFallbackPublicClient": app.is_fallback_public_client,
        "publicClient": {"redirectUris": app.public_redirect_uris},
        "web": {"redirectUris": app.web_redirect_uris},
        "passwordCredentials": passwords,
        "keyCredentials": view.credentials.iter().filter_map(|it| it.certificate.as_ref().map(|(_, thumbprint)| json!({
            "keyId": it.key_id.as_str(), "type": "AsymmetricX509Cert", "usage": "Verify", "displayName": it.display_name,
            "customKeyIdentifier": thumbprint, "key": null,
            "startDateTime": rfc3339(it.start),
            "endDateTime": rfc3339(it.end),
        }))).collect::<Vec<_>>(),
    })
}

fn uris(value: &Value, path: &str) -> Result<Option<Vec<String>>, AppError> {
    let Some(object) = value.as_object() else {
        return Err(AppError::BadRequest(format!("Property '{path}' must be an object with 'redirectUris'.")));
    };
    let Some(list) = object.get("redirectUris") else { return Ok(None) };
    let list = list
        .as_array()
        .ok_or_else(|| AppError::BadRequest(format!("'{path}.redirectUris' must be an array of strings.")))?;
    list.iter()
        .map(|it| {
            it.as_str()
                .map(str::to_owned)
                .ok_or_else(|| AppError::BadRequest(format!("'{path}.redirectUris' must be an array of strings.")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn key_credentials(value: &Value) -> Result<Vec<KeyCredentialDraft>, AppError> {
    let bad = |what: &str| AppError::BadRequest(format!("keyCredentials: {what}."));
    let list = value.as_array().ok_or_else(|| bad("must be an array"))?;
    list.iter()
        .map(|item| {
            let kind = item.get("type").and_then(Value::as_str).unwrap_or("AsymmetricX509Cert");
            let usage = item.get("usage").and_then(Value::as_str).unwrap_or("Verify");
            if kind != "AsymmetricX509Cert" || usage != "Verify" {
                return Err(bad("only type 'AsymmetricX509Cert' with usage 'Verify' is supported"));
            }
            let key = item
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("each needs 'key', the base64 DER certificate"))?;
            let der =
                base64::engine::general_purpose::STANDARD.decode(key.trim()).map_err(|_| bad("'key' is not base64"))?;
            let time = |name: &str| -> Result<Option<time::OffsetDateTime>, AppError> {
                item.get(name)
                    .and_then(Value::as_str)
                    .map(|it| {
                        time::OffsetDateTime::parse(it, &Rfc3339)
                            .map_err(|_| bad(&format!("'{name}' is not a date and time")))
                    })
                    .transpose()
            };
            Ok(KeyCredentialDraft {
                der,
                display_name: item.get("displayName").and_then(Value::as_str).map(str::to_owned),
                start: time("startDateTime")?,
                end: time("endDateTime")?,
            })
        })
        .collect()
}

fn application_draft(body: &Value) -> Result<ApplicationDraft, AppError> {
    let object =
        body.as_object().ok_or_else(|| AppError::BadRequest("The request body must be a JSON object.".into()))?;
    let mut draft = ApplicationDraft::default();
    for (name, value) in object {
        match name.as_str() {
            "displayName" => {
                draft.display_name = Some(
                    value
                        .as_str()
                        .ok_or_else(|| AppError::BadRequest("'displayName' must be a string.".into()))?
                        .to_owned(),
                );
            }
            "isFallbackPublicClient" => {
                draft.is_fallback_public_client =
                    Some(value.as_bool().ok_or_else(|| {
                        AppError::BadRequest("'isFallbackPublicClient' must be true or false.".into())
                    })?);
            }
            "publicClient" => draft.public_redirect_uris = uris(value, "publicClient")?,
            "keyCredentials" => draft.key_credentials = Some(key_credentials(value)?),
            "web" => draft.web_redirect_uris = uris(value, "web")?,
            "signInAudience" if value.as_str() == Some("AzureADMyOrg") => (),
            "@odata.type" | "id" | "appId" => (),
            other => {
                return Err(AppError::BadRequest(format!(
                    "Property '{other}' is not supported on 'microsoft.graph.application' by Keyward."
                )));
            }
        }
    }
    Ok(draft)
}

/// `GET /applications` — `microsoft.directory/applications/standard/read`.
async fn list_applications(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    // Options Keyward does not apply here are refused, never ignored.
    crate::roles::allow_only(&ctx, &query, &["$top", "$skiptoken"])?;
    let top = keyward_core::query::parse_top(query.raw.top.as_deref()).map_err(AppError::from)?;
    let (apps, next) = ctx.state.app.list_applications(&ctx.caller, query.raw.skiptoken.as_deref(), top).await?;
    let next = next.map(|token| query.next_link(&ctx.state.app.config().public_url, &path, &token));
    Ok(collection(
        format!("{}/$metadata#applications", ctx.base()),
        apps.iter().map(application_json).collect(),
        None,
        next,
    ))
}

/// `POST /applications` — `microsoft.directory/applications/create` (also creates the service principal).
async fn create_application(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let draft = application_draft(&body)?;
    let view = ctx.state.app.create_application(&ctx.caller, draft).await?;
    Ok(entity(format!("{}/$metadata#applications/$entity", ctx.base()), application_json(&view), StatusCode::CREATED))
}

/// `GET /applications/{id}` — `microsoft.directory/applications/standard/read`.
async fn get_application(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let view = ctx.state.app.get_application(&ctx.caller, &key).await?;
    Ok(entity(format!("{}/$metadata#applications/$entity", ctx.base()), application_json(&view), StatusCode::OK))
}

/// `PATCH /applications/{id}` — `microsoft.directory/applications/basic/update`.
async fn update_application(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let draft = application_draft(&body)?;
    ctx.state.app.update_application(&ctx.caller, &key, draft).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /applications/{id}` — `microsoft.directory/applications/delete`.
async fn delete_application(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.delete_application(&ctx.caller, &key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /applications/{id}/addPassword` — `microsoft.directory/applications/credentials/update`.
async fn add_password(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let credential = body.get("passwordCredential").cloned().unwrap_or(Value::Null);
    let display_name = credential.get("displayName").and_then(Value::as_str).map(str::to_owned);
    let end = match credential.get("endDateTime").and_then(Value::as_str) {
        Some(text) => Some(time::OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
            GraphError::from(AppError::BadRequest(format!("'endDateTime' is not a valid date and time: '{text}'.")))
        })?),
        None => None,
    };
    let created = ctx.state.app.add_application_password(&ctx.caller, &key, display_name, end).await?;
    let hint = created.credential.secret.as_ref().map(|it| it.1.clone()).unwrap_or_default();
    Ok(entity(
        format!("{}/$metadata#microsoft.graph.passwordCredential", ctx.base()),
        json!({
            "keyId": created.credential.key_id.as_str(),
            "displayName": created.credential.display_name,
            "hint": hint,
            "secretText": created.secret.expose(),
            "startDateTime": rfc3339(created.credential.start),
            "endDateTime": rfc3339(created.credential.end),
            "customKeyIdentifier": null,
        }),
        StatusCode::OK,
    ))
}

/// `POST /applications/{id}/removePassword` (204) — `microsoft.directory/applications/credentials/update`.
async fn remove_password(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let key_id = body
        .get("keyId")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::from(AppError::BadRequest("Property 'keyId' is required.".into())))?;
    ctx.state.app.remove_application_password(&ctx.caller, &key, key_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Registers the `/applications` Graph routes.
pub fn graph_routes(api: Api) -> Api {
    const READ: &str = "microsoft.directory/applications/standard/read";
    const CREDENTIALS: &str = "microsoft.directory/applications/credentials/update";
    api.route(
        "/applications",
        get(list_applications),
        Op::get("applications", "List app registrations", READ, "ApplicationCollection").pages_only(),
    )
    .route(
        "/applications",
        post(create_application),
        Op::post(
            "applications",
            "Register an application (and create its service principal)",
            "microsoft.directory/applications/create",
            "Application",
            201,
            "Application",
        ),
    )
    .route(
        "/applications/{id}",
        get(get_application),
        Op::get("applications", "Get an app registration", READ, "Application").with_id(),
    )
    .route(
        "/applications/{id}",
        axum::routing::patch(update_application),
        Op::patch(
            "applications",
            "Update displayName, isFallbackPublicClient, publicClient and web redirect URIs",
            "microsoft.directory/applications/basic/update",
            "Application",
        )
        .with_id(),
    )
    .route(
        "/applications/{id}",
        axum::routing::delete(delete_application),
        Op::delete(
            "applications",
            "Delete an app registration and its service principal",
            "microsoft.directory/applications/delete",
        )
        .with_id(),
    )
    .route(
        "/applications/{id}/addPassword",
        post(add_password),
        Op::post(
            "applications",
            "Add a client secret (returned once, in secretText)",
            CREDENTIALS,
            "PasswordCredentialRequest",
            200,
            "PasswordCredential",
        )
        .with_id(),
    )
    .route(
        "/applications/{id}/removePassword",
        post(remove_password),
        Op::post("applications", "Remove a client secret", CREDENTIALS, "KeyIdRequest", 204, "").with_id(),
    )
}
