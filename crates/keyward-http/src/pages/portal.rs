//! `/{tenant}/admin/…`: the admin portal. A signed-in administrator (with MFA) finds a user and
//! takes the service desk's actions on their authentication methods. Every action goes through
//! the same use case as the Graph API, so the same rules decide and the same audit records are
//! written; forms carry the session's CSRF token and follow post/redirect/get.

use std::collections::HashMap;
use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Path, Query as RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyward_app::{AppError, AuthMethod, Caller, MAX_SEARCH, PortalAccess, Relation, Surface, Who, url_encode};
use keyward_core::audit::{AuditRecord, AuditResult, Initiator};
use keyward_core::audit_query::{AuditFilter, AuditQuery, TextMatch};
use keyward_core::auth_methods::{PhoneType, TapRequest};
use keyward_core::authz;
use keyward_core::directory::User;
use keyward_core::directory::{AssignmentFilter, DirectoryObject, Group};
use keyward_core::query::RawQuery as QueryOptions;
use keyward_core::secret::constant_time_eq;
use keyward_core::signin::{PerUserMfaState, SignInPolicy, TapPolicy};
use keyward_core::signin_query::{SignInFilter, SignInQuery};

use super::{Message, cookie_names, html, meta, read_cookie};
use crate::AppState;

/// Users per page of the list.
const PAGE_SIZE: usize = 25;

/// The service desk's actions on a user's sign-in: the form's `action`, its button, what it does.
const ACTIONS: [(&str, &str, &str); 5] = [
    (
        "require_reregistration",
        "Require re-register MFA",
        "Deletes the user's authenticator apps and phones; they register again at their next sign-in.",
    ),
    (
        "revoke_mfa_sessions",
        "Revoke MFA sessions",
        "Forgets the devices where the user chose not to be asked again; the next sign-in asks for MFA.",
    ),
    ("revoke_sessions", "Revoke sessions", "Signs the user out everywhere: sessions and refresh tokens end."),
    (
        "reset_password",
        "Reset password",
        "Sets a new password that Keyward chooses, shown once; the user must change it at the next sign-in, \
         and their sessions end.",
    ),
    (
        "create_tap",
        "Create Temporary Access Pass",
        "Creates a pass the user signs in with (and registers new methods with), shown once. Tell it to the \
         user only once you know who is asking.",
    ),
];

/// A secret shown once: a generated password or a Temporary Access Pass.
#[derive(Debug, Template)]
#[template(path = "portal/secret.html")]
struct SecretPage {
    title: &'static str,
    tenant: String,
    header: Header,
    user: User,
    /// What the secret is and what happens next.
    what: String,
    secret: String,
}

/// Who is signed in, shown on every portal page.
#[derive(Debug)]
struct Header {
    display_name: String,
    user_principal_name: String,
    roles: String,
}

impl Header {
    fn of(caller: &Caller) -> Header {
        let user = caller.user();
        let mut roles: Vec<&str> = caller
            .actor
            .roles
            .iter()
            .map(|it| authz::built_in_role(&it.role_definition_id).map_or("Custom role", |role| role.display_name))
            .collect();
        roles.sort_unstable();
        roles.dedup();
        Header {
            display_name: user.map(|it| it.display_name.clone()).unwrap_or_default(),
            user_principal_name: user.map(|it| it.user_principal_name.clone()).unwrap_or_default(),
            roles: roles.join(", "),
        }
    }
}

#[derive(Debug, Template)]
#[template(path = "portal/users.html")]
struct UsersPage<'a> {
    title: &'static str,
    tenant: String,
    header: Header,
    search: &'a str,
    users: Vec<User>,
    next: Option<String>,
}

#[derive(Debug, Template)]
#[template(path = "portal/user.html")]
struct UserPage {
    title: String,
    tenant: String,
    header: Header,
    user: User,
    /// The methods as text with the key that deletes them (none for the password), or why they
    /// are not shown.
    methods: Result<Vec<(String, Option<String>)>, String>,
    /// Why the caller may not delete this user's methods, if so.
    delete_reason: Option<String>,
    /// The groups the user belongs to (directly or through groups) and the roles they hold, or
    /// why they are not shown.
    memberships: Result<(Vec<String>, Vec<&'static str>), String>,
    /// The per-user MFA state (`disabled`, `enabled`, `enforced`), or why it is not shown.
    mfa_state: Result<&'static str, String>,
    /// The newest sign-ins: (time, application, result, address), or why they are not shown.
    sign_ins: Result<Vec<(String, String, String, String)>, String>,
    /// The newest audit records that name the user: (time, activity, initiator, result), or why
    /// they are not shown.
    audit: Result<Vec<(String, String, String, &'static str)>, String>,
    notice: Option<&'static str>,
    error: Option<String>,
    /// Each action: its name, button, what it does, and why the caller may not take it (if so).
    actions: Vec<(&'static str, &'static str, &'static str, Option<String>)>,
}

/// The confirmation of one action: what will happen, and the form that does it.
#[derive(Debug, Template)]
#[template(path = "portal/confirm.html")]
struct ConfirmPage {
    title: &'static str,
    tenant: String,
    header: Header,
    user: User,
    action: &'static str,
    button: &'static str,
    help: String,
    /// The method a `delete_method` confirmation is about.
    method: Option<String>,
    reason: Option<String>,
    csrf: String,
}

/// Audit records the user page shows.
const AUDIT_ROWS: usize = 20;

/// Who started an audited change, as the page shows it.
fn initiator(record: &AuditRecord) -> String {
    match &record.initiated_by {
        Initiator::User { user_principal_name, .. } => user_principal_name.clone(),
        Initiator::App { display_name, .. } => display_name.clone(),
    }
}

type Peer = Option<axum::Extension<ConnectInfo<SocketAddr>>>;

/// The administrator a request acts as, or the response that sends it elsewhere: to sign in, or
/// a page that says why the portal is closed to it.
async fn administrator(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    peer: Peer,
    return_to: &str,
) -> Result<(Box<Caller>, String), Response> {
    let (session_name, _, _) = cookie_names(state);
    let cookie = read_cookie(headers, session_name);
    let meta = meta(headers, peer.map(|it| it.0.0));
    let access = state.app.portal_access(tenant, cookie, meta, true).await;
    match access {
        Ok(PortalAccess::Administrator(caller)) => {
            let csrf = cookie.map(keyward_app::csrf_token).unwrap_or_default();
            Ok((caller, csrf))
        }
        Ok(PortalAccess::SignedOut(tenant_id)) => {
            // Locations are built from the tenant's id, never from the path as given.
            let back = format!("/{tenant_id}{return_to}");
            Err(see_other(&format!("/{tenant_id}/login?return_to={}", url_encode(&back))))
        }
        Ok(PortalAccess::NotAnAdministrator(tenant_id)) => {
            let account = format!("/{tenant_id}/login");
            Err(html(
                StatusCode::FORBIDDEN,
                &Message::error(
                    "Admin portal",
                    "Your account holds no administrator role, so the admin portal is closed to you.",
                )
                .with_link(&account, "Your security info is on your account page"),
            ))
        }
        Ok(PortalAccess::NeedsMfa(tenant_id)) => {
            let account = format!("/{tenant_id}/login");
            Err(html(
                StatusCode::FORBIDDEN,
                &Message::error(
                    "Admin portal",
                    "The admin portal needs multi-factor authentication. Sign out, then sign in again with \
                     your authenticator app (add one on your account page if you have none).",
                )
                .with_link(&account, "Your account page"),
            ))
        }
        Err(AppError::NotFound(_)) => {
            Err(html(StatusCode::NOT_FOUND, &Message::error("Admin portal", "No such tenant.")))
        }
        Err(err) => Err(failure(err)),
    }
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A failure the page cannot show in place.
fn failure(err: AppError) -> Response {
    match err {
        AppError::NotFound(_) => {
            html(StatusCode::NOT_FOUND, &Message::error("Admin portal", "No such user in this tenant."))
        }
        AppError::Forbidden { message, .. } => html(StatusCode::FORBIDDEN, &Message::alert("Admin portal", &message)),
        AppError::BadRequest(message) | AppError::UnsupportedQuery(message) => {
            html(StatusCode::BAD_REQUEST, &Message::alert("Admin portal", &message))
        }
        err => {
            tracing::error!(error = ?err, "admin portal page failed");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                &Message::error(
                    "Admin portal",
                    "Something went wrong on our side. Try again in a moment; if it keeps happening, tell \
                     your administrator.",
                ),
            )
        }
    }
}

/// `GET /{tenant}/admin`.
pub(super) async fn home(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    match administrator(&state, &tenant, &headers, peer, "/admin/users").await {
        Ok((caller, _)) => see_other(&format!("/{}/admin/users", caller.tenant.id)),
        Err(response) => response,
    }
}

/// One page of the user list: `search` and `skiptoken` from the request; the users, the search
/// as the page shows it, and the next page's address under `path` (`/admin/users`, …).
async fn user_list_page(
    state: &AppState,
    caller: &Caller,
    params: &HashMap<String, String>,
    size: usize,
    path: &str,
) -> Result<(Vec<User>, String, Option<String>), AppError> {
    let search: String =
        params.get("search").map(String::as_str).unwrap_or_default().chars().take(MAX_SEARCH).collect();
    let skiptoken = params.get("skiptoken").map(String::as_str);
    let (users, next) = state.app.portal_users(caller, &search, size, skiptoken).await?;
    let tenant = &caller.tenant.id;
    let next =
        next.map(|token| format!("/{tenant}{path}?search={}&skiptoken={}", url_encode(&search), url_encode(&token)));
    Ok((users, search, next))
}

/// What every portal post checks first: the address's rate limit, the administrator, and the
/// form's CSRF token (`presented`).
async fn checked_post(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    peer: Peer,
    return_to: &str,
    presented: &str,
) -> Result<(Box<Caller>, String), Response> {
    let ip = peer.as_ref().map(|it| it.0.0.ip().to_string());
    if let Err(err) = state.app.throttle(Surface::SignInPages, ip.as_deref(), None) {
        let mut response = html(StatusCode::TOO_MANY_REQUESTS, &Message::alert("Admin portal", &err.to_string()));
        if let AppError::TooManyRequests { retry_after } | AppError::Overloaded { retry_after } = err {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        return Err(response);
    }
    let (caller, csrf) = administrator(state, tenant, headers, peer, return_to).await?;
    if csrf.is_empty() || !constant_time_eq(csrf.as_bytes(), presented.as_bytes()) {
        return Err(html(
            StatusCode::BAD_REQUEST,
            &Message::error("Admin portal", "This form did not come from this page. Reload the page and try again."),
        ));
    }
    Ok((caller, csrf))
}

/// `GET /{tenant}/admin/users?search=…&skiptoken=…`: the user list, searchable by the start of
/// the display name, user principal name or mail.
pub(super) async fn users(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let (caller, _) = match administrator(&state, &tenant, &headers, peer, "/admin/users").await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let (users, search, next) = match user_list_page(&state, &caller, &params, PAGE_SIZE, "/admin/users").await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let tenant = caller.tenant.id.to_string();
    html(
        StatusCode::OK,
        &UsersPage { title: "Users", header: Header::of(&caller), tenant, search: &search, users, next },
    )
}

/// The key a method is deleted by on the portal: `phone:<type>`, `email`, `oath:<id>`,
/// `tap:<id>`; none for the password.
fn method_key(method: &AuthMethod) -> Option<String> {
    match method {
        AuthMethod::Password { .. } => None,
        AuthMethod::Phone(phone) => Some(format!("phone:{}", phone.phone_type.as_str())),
        AuthMethod::Email { .. } => Some("email".to_owned()),
        AuthMethod::SoftwareOath(oath) => Some(format!("oath:{}", oath.id)),
        AuthMethod::TemporaryAccessPass(pass) => Some(format!("tap:{}", pass.id)),
    }
}

/// Deletes the method `key` names (see [`method_key`]) of user `user`.
async fn delete_method(state: &AppState, caller: &Caller, user: &str, key: &str) -> Result<(), AppError> {
    let unknown = || AppError::BadRequest("Unknown method: choose Delete next to one of the user's methods.".into());
    match key.split_once(':') {
        Some(("phone", kind)) => {
            let kind = PhoneType::parse(kind).ok_or_else(unknown)?;
            state.app.delete_phone(caller, Who::User(user), kind).await
        }
        Some(("oath", id)) => state.app.delete_software_oath(caller, Who::User(user), id).await,
        Some(("tap", id)) => state.app.delete_tap(caller, user, id).await,
        None if key == "email" => state.app.delete_email(caller, Who::User(user)).await,
        _ => Err(unknown()),
    }
}

/// One method as the page lists it.
fn describe(method: &AuthMethod) -> String {
    match method {
        AuthMethod::Password { .. } => "Password".to_owned(),
        AuthMethod::Phone(phone) => format!("Phone ({}): {}", phone.phone_type.as_str(), phone.number),
        AuthMethod::Email { address } => format!("Email: {address}"),
        AuthMethod::SoftwareOath(oath) => format!("Authenticator app (added {})", keyward_app::rfc3339(oath.created)),
        AuthMethod::TemporaryAccessPass(pass) => {
            format!(
                "Temporary Access Pass (from {}, {} minutes)",
                keyward_app::rfc3339(pass.start),
                pass.lifetime_minutes
            )
        }
    }
}

async fn user_page(
    state: &AppState,
    caller: &Caller,
    key: &str,
    notice: Option<&'static str>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let user = match state.app.get_user(caller, key).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let methods = match state.app.list_auth_methods(caller, &user.id.to_string()).await {
        Ok(methods) => Ok(methods.iter().map(|it| (describe(it), method_key(it))).collect()),
        Err(AppError::Forbidden { .. }) => Err("Your roles do not let you read this user's methods.".to_owned()),
        Err(err) => return failure(err),
    };
    let id = user.id.to_string();
    let hidden = |what: &str| format!("Your roles do not let you read {what}.");
    let memberships = match state.app.transitive_member_of(caller, &id).await {
        Ok(found) => {
            let groups = found
                .groups
                .iter()
                .map(|it| match it {
                    DirectoryObject::Group(group) => group.display_name.clone(),
                    DirectoryObject::User(user) => user.display_name.clone(),
                    DirectoryObject::ServicePrincipal(principal) => principal.display_name.clone(),
                })
                .collect();
            Ok((groups, found.roles.iter().map(|it| it.display_name).collect()))
        }
        Err(AppError::Forbidden { .. }) => Err(hidden("this user's groups and roles")),
        Err(err) => return failure(err),
    };
    let mfa_state = match state.app.mfa_requirements(caller, &id).await {
        Ok(state) => Ok(state.as_str()),
        Err(AppError::Forbidden { .. }) => Err(hidden("this user's per-user MFA state")),
        Err(err) => return failure(err),
    };
    let query = SignInQuery {
        filter: SignInFilter { user_id: Some(id.to_lowercase()), ..SignInFilter::default() },
        top: AUDIT_ROWS,
        skiptoken: None,
    };
    let sign_ins = match state.app.list_sign_ins(caller, &query).await {
        Ok(page) => Ok(page
            .items
            .iter()
            .map(|it| {
                let result =
                    if it.error_code == 0 { "success".to_owned() } else { format!("failure ({})", it.error_code) };
                (
                    keyward_app::rfc3339(it.created),
                    it.app_display_name.clone(),
                    result,
                    it.ip_address.clone().unwrap_or_default(),
                )
            })
            .collect()),
        Err(AppError::Forbidden { .. }) => Err(hidden("the sign-in log")),
        Err(err) => return failure(err),
    };
    let audit = match state.app.audit_for_target(caller, &user.id, AUDIT_ROWS).await {
        Ok(records) => Ok(records
            .iter()
            .map(|it| {
                let result = if it.result == AuditResult::Success { "success" } else { "failure" };
                (keyward_app::rfc3339(it.activity_date_time), it.activity_display_name.clone(), initiator(it), result)
            })
            .collect()),
        Err(AppError::Forbidden { .. }) => Err("Your roles do not let you read the audit log.".to_owned()),
        Err(err) => return failure(err),
    };
    let actions = match action_reasons(state, caller, &user).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let delete_reason = actions.iter().find(|it| it.0 == "require_reregistration").and_then(|it| it.3.clone());
    let (status, error) = match error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    let page = UserPage {
        title: user.display_name.clone(),
        tenant: caller.tenant.id.to_string(),
        header: Header::of(caller),
        user,
        methods,
        delete_reason,
        memberships,
        mfa_state,
        sign_ins,
        audit,
        notice,
        error,
        actions,
    };
    html(status, &page)
}

/// An action's refusal or bad input, shown on the user's page with its message; anything else as
/// a page of its own.
async fn action_failed(state: &AppState, caller: &Caller, key: &str, err: AppError) -> Response {
    match err {
        AppError::Forbidden { message, .. } => {
            user_page(state, caller, key, None, Some((StatusCode::FORBIDDEN, message))).await
        }
        AppError::BadRequest(message) => {
            user_page(state, caller, key, None, Some((StatusCode::BAD_REQUEST, message))).await
        }
        err => failure(err),
    }
}

/// The two actions whose result is a secret shown once: rendered in the post's response (not
/// stored for a redirect), never cached.
async fn secret_action(
    state: &AppState,
    caller: &Caller,
    key: &str,
    action: &str,
    fields: &HashMap<String, String>,
) -> Response {
    let shown = if action == "reset_password" {
        state.app.reset_password(caller, key, None).await.map(|reset| {
            let secret = reset.generated.map(|it| it.expose().to_owned()).unwrap_or_default();
            (
                "New password",
                "The user's new password. Give it to them over a channel you trust; they choose \
              their own at the next sign-in. It is not shown again."
                    .to_owned(),
                secret,
            )
        })
    } else {
        let lifetime = match fields.get("lifetime").filter(|it| !it.is_empty()).map(|it| it.parse::<i64>()) {
            None => None,
            Some(Ok(minutes)) => Some(minutes),
            Some(Err(_)) => {
                let err = AppError::BadRequest("The lifetime must be a number of minutes.".into());
                return action_failed(state, caller, key, err).await;
            }
        };
        let request = TapRequest {
            start: None,
            lifetime_minutes: lifetime,
            is_usable_once: Some(fields.get("once").is_some_and(|it| it == "true")),
        };
        state.app.create_tap(caller, key, request).await.map(|view| {
            let what = format!(
                "A Temporary Access Pass, valid for {} minutes{}. It is not shown again.",
                view.lifetime_minutes,
                if view.is_usable_once { ", for one sign-in" } else { "" }
            );
            ("Temporary Access Pass", what, view.pass.map(|it| it.expose().to_owned()).unwrap_or_default())
        })
    };
    match shown {
        Ok((title, what, secret)) => {
            let user = match state.app.get_user(caller, key).await {
                Ok(it) => it,
                Err(err) => return failure(err),
            };
            let page = SecretPage {
                title,
                tenant: caller.tenant.id.to_string(),
                header: Header::of(caller),
                user,
                what,
                secret,
            };
            html(StatusCode::OK, &page)
        }
        Err(err) => action_failed(state, caller, key, err).await,
    }
}

/// Each action with its button and help, and why the caller may not take it on `user` (if so).
async fn action_reasons(
    state: &AppState,
    caller: &Caller,
    user: &User,
) -> Result<Vec<(&'static str, &'static str, &'static str, Option<String>)>, AppError> {
    let reasons = state.app.portal_user_actions(caller, &user.id.to_string()).await?;
    Ok(ACTIONS
        .iter()
        .map(|&(name, button, help)| {
            let reason = reasons.iter().find(|(it, _)| *it == name).and_then(|(_, why)| why.clone());
            (name, button, help, reason)
        })
        .collect())
}

/// `GET /{tenant}/admin/users/{id}/confirm?action=…`: what the action will do to this user, and
/// the form that does it (or why the caller may not).
pub(super) async fn confirm(
    State(state): State<AppState>,
    Path((tenant, key)): Path<(String, String)>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let return_to = format!("/admin/users/{}", url_encode(&key));
    let (caller, csrf) = match administrator(&state, &tenant, &headers, peer, &return_to).await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let wanted = params.get("action").map(String::as_str).unwrap_or_default();
    let user = match state.app.get_user(&caller, &key).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let reasons = match action_reasons(&state, &caller, &user).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let (action, button, help, reason, method) = if wanted == "delete_method" {
        let method = params.get("method").cloned().unwrap_or_default();
        let listed = match state.app.list_auth_methods(&caller, &user.id.to_string()).await {
            Ok(methods) => methods.iter().find(|it| method_key(it).as_deref() == Some(method.as_str())).map(describe),
            Err(err) => return failure(err),
        };
        let Some(described) = listed else {
            return failure(AppError::BadRequest(
                "Unknown method: choose Delete next to one of the user's methods.".into(),
            ));
        };
        // Deleting a method needs what requiring re-registration needs (`authenticationMethods/delete`).
        let reason = reasons.iter().find(|it| it.0 == "require_reregistration").and_then(|it| it.3.clone());
        let help = format!("Deletes this method: {described}. The user can no longer sign in with it.");
        ("delete_method", "Delete method", help, reason, Some(method))
    } else {
        let Some(&(action, button, help)) = ACTIONS.iter().find(|(name, ..)| *name == wanted) else {
            return failure(AppError::BadRequest(
                "Unknown action: choose one of the buttons on the user's page.".into(),
            ));
        };
        let reason = reasons.into_iter().find(|it| it.0 == action).and_then(|it| it.3);
        (action, button, help.to_owned(), reason, None)
    };
    let page = ConfirmPage {
        title: button,
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        user,
        action,
        button,
        help,
        method,
        reason,
        csrf,
    };
    html(StatusCode::OK, &page)
}

/// `GET /{tenant}/admin/users/{id}`: the profile and authentication methods, with the actions.
pub(super) async fn user(
    State(state): State<AppState>,
    Path((tenant, key)): Path<(String, String)>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let return_to = format!("/admin/users/{}", url_encode(&key));
    let (caller, _) = match administrator(&state, &tenant, &headers, peer, &return_to).await {
        Ok(it) => it,
        Err(response) => return response,
    };
    // The notice of a finished action is chosen from a fixed list, never echoed from the URL.
    let notice = match params.get("done").map(String::as_str) {
        Some("require_reregistration") => {
            Some("Done: the user must register their authentication methods again at their next sign-in.")
        }
        Some("revoke_mfa_sessions") => Some("Done: the user's remembered MFA devices were forgotten."),
        Some("revoke_sessions") => Some("Done: the user was signed out everywhere."),
        Some("delete_method") => Some("Done: the method was deleted."),
        _ => None,
    };
    user_page(&state, &caller, &key, notice, None).await
}

/// `POST /{tenant}/admin/users/{id}` with `csrf` and `action`.
pub(super) async fn user_action(
    State(state): State<AppState>,
    Path((tenant, key)): Path<(String, String)>,
    headers: HeaderMap,
    peer: Peer,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    let return_to = format!("/admin/users/{}", url_encode(&key));
    let presented = fields.get("csrf").map(String::as_str).unwrap_or_default();
    let (caller, _) = match checked_post(&state, &tenant, &headers, peer, &return_to, presented).await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let action = fields.get("action").map(String::as_str).unwrap_or_default();
    if action == "reset_password" || action == "create_tap" {
        return secret_action(&state, &caller, &key, action, &fields).await;
    }
    let result = match action {
        "require_reregistration" => state.app.require_mfa_reregistration(&caller, &key).await,
        "revoke_mfa_sessions" => state.app.revoke_mfa_sessions(&caller, &key).await,
        "revoke_sessions" => state.app.revoke_sign_in_sessions(&caller, &key).await,
        "delete_method" => {
            let method = fields.get("method").map(String::as_str).unwrap_or_default();
            delete_method(&state, &caller, &key, method).await
        }
        _ => Err(AppError::BadRequest("Unknown action: choose one of the buttons on the user's page.".into())),
    };
    match result {
        Ok(()) => {
            let user = caller.tenant.id.to_string();
            see_other(&format!("/{user}/admin/users/{}?done={action}", url_encode(&key)))
        }
        Err(err) => action_failed(&state, &caller, &key, err).await,
    }
}

/// Users the per-user MFA page lists at once, and changes at once.
const MFA_PAGE_SIZE: usize = 100;

#[derive(Debug, Template)]
#[template(path = "portal/mfa.html")]
struct MfaPage<'a> {
    title: &'static str,
    tenant: String,
    header: Header,
    search: &'a str,
    /// Each user with their per-user MFA state (or `-` where the caller may not read it).
    rows: Vec<(User, &'static str)>,
    next: Option<String>,
}

#[derive(Debug, Template)]
#[template(path = "portal/mfa_confirm.html")]
struct MfaConfirmPage {
    title: &'static str,
    tenant: String,
    header: Header,
    state: &'static str,
    users: Vec<User>,
    csrf: String,
}

#[derive(Debug, Template)]
#[template(path = "portal/mfa_result.html")]
struct MfaResultPage {
    title: &'static str,
    tenant: String,
    header: Header,
    done: usize,
    refused: Vec<(String, String)>,
}

/// `GET /{tenant}/admin/mfa`: users with their per-user MFA state, to select and change.
pub(super) async fn mfa(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let (caller, _) = match administrator(&state, &tenant, &headers, peer, "/admin/mfa").await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let (users, search, next) = match user_list_page(&state, &caller, &params, MFA_PAGE_SIZE, "/admin/mfa").await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let mut rows = Vec::with_capacity(users.len());
    for user in users {
        let shown = match state.app.mfa_requirements(&caller, &user.id.to_string()).await {
            Ok(it) => it.as_str(),
            Err(AppError::Forbidden { .. }) => "-",
            Err(err) => return failure(err),
        };
        rows.push((user, shown));
    }
    let tenant = caller.tenant.id.to_string();
    let page = MfaPage { title: "Per-user MFA", header: Header::of(&caller), tenant, search: &search, rows, next };
    html(StatusCode::OK, &page)
}

/// The selected users and the state of a per-user MFA form; a `400` page when it is unusable.
fn mfa_selection(fields: &[(String, String)]) -> Result<(PerUserMfaState, Vec<String>), Box<Response>> {
    let chosen = fields.iter().find(|(name, _)| name == "state").map(|(_, value)| value.as_str()).unwrap_or_default();
    let Some(new) = PerUserMfaState::parse(chosen) else {
        return Err(Box::new(failure(AppError::BadRequest("Choose Enabled, Enforced or Disabled.".into()))));
    };
    let mut users: Vec<String> = fields.iter().filter(|(name, _)| name == "user").map(|(_, it)| it.clone()).collect();
    users.sort();
    users.dedup();
    if users.is_empty() {
        return Err(Box::new(failure(AppError::BadRequest("Select at least one user.".into()))));
    }
    if users.len() > MFA_PAGE_SIZE {
        return Err(Box::new(failure(AppError::BadRequest(format!("Select at most {MFA_PAGE_SIZE} users at once.")))));
    }
    Ok((new, users))
}

/// `GET /{tenant}/admin/mfa/confirm?state=…&user=…`: how many users the change affects.
pub(super) async fn mfa_confirm(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(fields): RawQuery<Vec<(String, String)>>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let (caller, csrf) = match administrator(&state, &tenant, &headers, peer, "/admin/mfa").await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let (new, ids) = match mfa_selection(&fields) {
        Ok(it) => it,
        Err(response) => return *response,
    };
    let mut users = Vec::with_capacity(ids.len());
    for id in &ids {
        match state.app.get_user(&caller, id).await {
            Ok(user) => users.push(user),
            Err(err) => return failure(err),
        }
    }
    users.sort_by(|a, b| a.display_name.cmp(&b.display_name));
    let page = MfaConfirmPage {
        title: "Per-user MFA",
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        state: new.as_str(),
        users,
        csrf,
    };
    html(StatusCode::OK, &page)
}

/// `POST /{tenant}/admin/mfa`: sets per-user MFA for each selected user through the same use
/// case as Graph's `PATCH …/authentication/requirements`; the result lists what was refused.
pub(super) async fn mfa_apply(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    peer: Peer,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let presented = fields.iter().find(|(name, _)| name == "csrf").map(|(_, it)| it.as_str()).unwrap_or_default();
    let (caller, _) = match checked_post(&state, &tenant, &headers, peer, "/admin/mfa", presented).await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let (new, ids) = match mfa_selection(&fields) {
        Ok(it) => it,
        Err(response) => return *response,
    };
    let mut done = 0;
    let mut refused = Vec::new();
    for id in &ids {
        match state.app.set_mfa_requirements(&caller, id, new).await {
            Ok(()) => done += 1,
            Err(AppError::Forbidden { message, .. }) => refused.push((id.clone(), message)),
            Err(AppError::NotFound(_)) => refused.push((id.clone(), "No such user in this tenant.".to_owned())),
            Err(err) => return failure(err),
        }
    }
    let page = MfaResultPage {
        title: "Per-user MFA",
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        done,
        refused,
    };
    html(StatusCode::OK, &page)
}

#[derive(Debug, Template)]
#[template(path = "portal/settings.html")]
struct SettingsPage {
    title: &'static str,
    tenant: String,
    header: Header,
    policy: SignInPolicy,
    tap: TapPolicy,
    csrf: String,
    notice: Option<&'static str>,
    error: Option<String>,
}

async fn settings_page(
    state: &AppState,
    caller: &Caller,
    csrf: String,
    notice: Option<&'static str>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let (policy, tap) = match state.app.sign_in_policies(caller).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let (status, error) = match error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    let page = SettingsPage {
        title: "Settings",
        tenant: caller.tenant.id.to_string(),
        header: Header::of(caller),
        policy,
        tap,
        csrf,
        notice,
        error,
    };
    html(status, &page)
}

/// `GET /{tenant}/admin/settings`: the sign-in policy and the Temporary Access Pass policy.
pub(super) async fn settings(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let (caller, csrf) = match administrator(&state, &tenant, &headers, peer, "/admin/settings").await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let notice = params.get("done").map(|_| "Saved.");
    settings_page(&state, &caller, csrf, notice, None).await
}

/// `POST /{tenant}/admin/settings`: both policies at once, through the same use case (bounds,
/// audit) as Graph's policy updates.
pub(super) async fn settings_save(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    peer: Peer,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    let presented = fields.get("csrf").map(String::as_str).unwrap_or_default();
    let (caller, csrf) = match checked_post(&state, &tenant, &headers, peer, "/admin/settings", presented).await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let number = |name: &str| -> Result<i64, AppError> {
        fields
            .get(name)
            .and_then(|it| it.trim().parse().ok())
            .ok_or_else(|| AppError::BadRequest(format!("'{name}' must be a whole number.")))
    };
    let flag = |name: &str| fields.get(name).is_some_and(|it| it == "true");
    let saved = state
        .app
        .update_sign_in_policies(&caller, |policy, tap| {
            policy.mfa_for_privileged_roles = flag("mfa_privileged");
            policy.mfa_for_everyone = flag("mfa_everyone");
            policy.remember_mfa_days = number("remember_days")?;
            policy.lockout_threshold = number("lockout_threshold")?;
            policy.lockout_seconds = number("lockout_seconds")?;
            policy.code_attempt_limit = number("code_attempts")?;
            tap.is_enabled = flag("tap_enabled");
            tap.minimum_lifetime_minutes = number("tap_min")?;
            tap.default_lifetime_minutes = number("tap_default")?;
            tap.maximum_lifetime_minutes = number("tap_max")?;
            tap.default_length = number("tap_length")?;
            tap.is_usable_once = flag("tap_once");
            Ok(())
        })
        .await;
    match saved {
        Ok(()) => see_other(&format!("/{}/admin/settings?done=1", caller.tenant.id)),
        Err(AppError::BadRequest(message)) => {
            settings_page(&state, &caller, csrf, None, Some((StatusCode::BAD_REQUEST, message))).await
        }
        Err(err) => failure(err),
    }
}

#[derive(Debug, Template)]
#[template(path = "portal/roles.html")]
struct RolesPage {
    title: &'static str,
    tenant: String,
    header: Header,
    /// Each role: id, name, privileged, description.
    roles: Vec<(String, String, bool, String)>,
}

#[derive(Debug, Template)]
#[template(path = "portal/role.html")]
struct RolePage {
    title: String,
    tenant: String,
    header: Header,
    description: String,
    privileged: bool,
    /// Each assignment: principal, its type, scope; or why they are not shown.
    assignments: Result<Vec<(String, &'static str, String)>, String>,
}

fn role_description(role: &keyward_app::RoleDef) -> String {
    match role {
        keyward_app::RoleDef::BuiltIn(it) => it.description.to_owned(),
        keyward_app::RoleDef::Custom(it) => it.description.clone().unwrap_or_default(),
    }
}

/// `GET /{tenant}/admin/roles`: every role, built-in and custom, with its description and a
/// privileged badge.
pub(super) async fn roles(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let (caller, _) = match administrator(&state, &tenant, &headers, peer, "/admin/roles").await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let all = match state.app.list_role_definitions(&caller).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let mut roles: Vec<_> = all
        .iter()
        .map(|it| (it.id(), it.display_name().to_owned(), it.is_privileged(), role_description(it)))
        .collect();
    roles.sort_by(|a, b| a.1.cmp(&b.1));
    let page = RolesPage {
        title: "Roles and administrators",
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        roles,
    };
    html(StatusCode::OK, &page)
}

/// `GET /{tenant}/admin/roles/{id}`: a role and who holds it, at which scope.
pub(super) async fn role(
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let return_to = format!("/admin/roles/{}", url_encode(&id));
    let (caller, _) = match administrator(&state, &tenant, &headers, peer, &return_to).await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let role = match state.app.get_role_definition(&caller, &id).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let filter = AssignmentFilter { role_definition_id: Some(role.id()), ..AssignmentFilter::default() };
    let assignments = match state.app.list_role_assignments(&caller, &filter, 100, None).await {
        Ok(page) => {
            let mut rows = Vec::with_capacity(page.items.len());
            for assignment in &page.items {
                let (name, kind) =
                    match state.app.get_directory_object(&caller, &assignment.principal_id.to_string()).await {
                        Ok(DirectoryObject::User(user)) => {
                            (format!("{} ({})", user.display_name, user.user_principal_name), "User")
                        }
                        Ok(DirectoryObject::Group(group)) => (group.display_name, "Group"),
                        Ok(DirectoryObject::ServicePrincipal(principal)) => {
                            (principal.display_name, "Service principal")
                        }
                        Err(_) => (assignment.principal_id.to_string(), "-"),
                    };
                let scope = match assignment.directory_scope_id.as_str() {
                    "/" => "Directory".to_owned(),
                    other => format!("Administrative unit {}", other.trim_start_matches("/administrativeUnits/")),
                };
                rows.push((name, kind, scope));
            }
            Ok(rows)
        }
        Err(AppError::Forbidden { .. }) => Err("Your roles do not let you read role assignments.".to_owned()),
        Err(err) => return failure(err),
    };
    let page = RolePage {
        title: role.display_name().to_owned(),
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        description: role_description(&role),
        privileged: role.is_privileged(),
        assignments,
    };
    html(StatusCode::OK, &page)
}

/// Audit records per page, and at most in one download.
const AUDIT_PAGE_SIZE: usize = 50;
const AUDIT_EXPORT_LIMIT: usize = 10_000;

/// The audit page's filters, as the form sends them back.
#[derive(Debug, Default)]
struct AuditForm {
    from: String,
    until: String,
    activity: String,
    initiator: String,
    target: String,
    result: String,
}

#[derive(Debug, Template)]
#[template(path = "portal/audit.html")]
struct AuditPage {
    title: &'static str,
    tenant: String,
    header: Header,
    form: AuditForm,
    /// Each record: time, activity, category, initiator, targets, result.
    rows: Vec<(String, String, String, String, String, &'static str)>,
    next: Option<String>,
    /// The page's address with its filters, to which `format=` is added for a download.
    download: String,
    export_limit: usize,
}

/// The store filter of the audit page's form; a `400` message when a field is unusable.
fn audit_filter(params: &HashMap<String, String>) -> Result<(AuditForm, AuditFilter), AppError> {
    let text = |name: &str| -> String {
        params
            .get(name)
            .map(|it| it.trim().chars().filter(|c| !c.is_control()).take(MAX_SEARCH).collect())
            .unwrap_or_default()
    };
    let form = AuditForm {
        from: text("from"),
        until: text("until"),
        activity: text("activity"),
        initiator: text("initiator"),
        target: text("target"),
        result: text("result"),
    };
    let date = |raw: &str, what: &str| -> Result<Option<time::Date>, AppError> {
        if raw.is_empty() {
            return Ok(None);
        }
        time::Date::parse(raw, time::macros::format_description!("[year]-[month]-[day]"))
            .map(Some)
            .map_err(|_| AppError::BadRequest(format!("'{what}' must be a date like 2026-12-01.")))
    };
    let mut filter = AuditFilter {
        from: date(&form.from, "From")?.map(|it| it.midnight().assume_utc()),
        until: date(&form.until, "Until")?
            .map(|it| it.midnight().assume_utc() + time::Duration::days(1) - time::Duration::microseconds(1)),
        ..AuditFilter::default()
    };
    if !form.activity.is_empty() {
        filter.activity = Some(TextMatch::StartsWith(form.activity.to_lowercase()));
    }
    if !form.initiator.is_empty() {
        filter.initiator_upn = Some(TextMatch::StartsWith(form.initiator.to_lowercase()));
    }
    if !form.target.is_empty() {
        filter.target_upn = Some(form.target.to_lowercase());
    }
    match form.result.as_str() {
        "" => (),
        "success" | "failure" => filter.result = Some(form.result.clone()),
        _ => return Err(AppError::BadRequest("The result is success or failure.".into())),
    }
    Ok((form, filter))
}

/// One record as the page and the CSV show it.
fn audit_row(record: &AuditRecord) -> (String, String, String, String, String, &'static str) {
    let targets = record
        .target_resources
        .iter()
        .map(|it| {
            it.user_principal_name.clone().or_else(|| it.display_name.clone()).unwrap_or_else(|| it.id.to_string())
        })
        .collect::<Vec<_>>()
        .join(", ");
    (
        keyward_app::rfc3339(record.activity_date_time),
        record.activity_display_name.clone(),
        record.category.clone(),
        initiator(record),
        targets,
        if record.result == AuditResult::Success { "success" } else { "failure" },
    )
}

/// A CSV cell: quoted, quotes doubled, and a leading `=`, `+`, `-`, `@` neutralised so a
/// spreadsheet does not run it as a formula.
fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// `GET /{tenant}/admin/audit`: the audit log with filters, paged newest first; with
/// `format=csv` or `format=jsonl`, the filtered records as a download (Graph's `directoryAudit`
/// shape in JSON lines).
pub(super) async fn audit(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let (caller, _) = match administrator(&state, &tenant, &headers, peer, "/admin/audit").await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let (form, filter) = match audit_filter(&params) {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let tenant = caller.tenant.id.to_string();
    let query_string = format!(
        "from={}&until={}&activity={}&initiator={}&target={}&result={}",
        url_encode(&form.from),
        url_encode(&form.until),
        url_encode(&form.activity),
        url_encode(&form.initiator),
        url_encode(&form.target),
        url_encode(&form.result)
    );
    let format = params.get("format").map(String::as_str);
    if let Some(format @ ("csv" | "jsonl")) = format {
        let mut records = Vec::new();
        let mut skiptoken: Option<String> = None;
        loop {
            let query =
                AuditQuery { filter: filter.clone(), top: 999, is_ascending: false, skiptoken: skiptoken.clone() };
            let page = match state.app.list_audit(&caller, &query).await {
                Ok(it) => it,
                Err(err) => return failure(err),
            };
            records.extend(page.items);
            skiptoken = page.skiptoken;
            if skiptoken.is_none() || records.len() >= AUDIT_EXPORT_LIMIT {
                break;
            }
        }
        records.truncate(AUDIT_EXPORT_LIMIT);
        let (body, content_type, name) = if format == "csv" {
            let mut body = String::from(
                "activityDateTime,activityDisplayName,category,initiatedBy,targets,result,correlationId,id\n",
            );
            for record in &records {
                let (at, activity, category, by, targets, result) = audit_row(record);
                let cells = [
                    at,
                    activity,
                    category,
                    by,
                    targets,
                    result.to_owned(),
                    record.correlation_id.clone(),
                    record.id.clone(),
                ];
                body.push_str(&cells.iter().map(|it| csv_cell(it)).collect::<Vec<_>>().join(","));
                body.push('\n');
            }
            (body, "text/csv; charset=utf-8", "audit.csv")
        } else {
            let body: String = records.iter().map(|it| format!("{}\n", crate::directory_audit(it))).collect();
            (body, "application/x-ndjson", "audit.jsonl")
        };
        let mut response = (StatusCode::OK, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
        return response;
    }
    let query =
        AuditQuery { filter, top: AUDIT_PAGE_SIZE, is_ascending: false, skiptoken: params.get("skiptoken").cloned() };
    let page = match state.app.list_audit(&caller, &query).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let base = format!("/{tenant}/admin/audit?{query_string}");
    let next = page.skiptoken.map(|token| format!("{base}&skiptoken={}", url_encode(&token)));
    let rows = page.items.iter().map(audit_row).collect();
    let page = AuditPage {
        title: "Audit logs",
        header: Header::of(&caller),
        tenant,
        form,
        rows,
        next,
        download: base,
        export_limit: AUDIT_EXPORT_LIMIT,
    };
    html(StatusCode::OK, &page)
}

#[derive(Debug, Template)]
#[template(path = "portal/groups.html")]
struct GroupsPage<'a> {
    title: &'static str,
    tenant: String,
    header: Header,
    search: &'a str,
    groups: Vec<Group>,
    next: Option<String>,
}

#[derive(Debug, Template)]
#[template(path = "portal/group.html")]
struct GroupPage {
    title: String,
    tenant: String,
    header: Header,
    group: Group,
    /// (name, type) of each member and owner, or why they are not shown.
    members: Result<Vec<(String, &'static str)>, String>,
    owners: Result<Vec<(String, &'static str)>, String>,
}

/// `GET /{tenant}/admin/groups?search=…`: groups whose display name starts with the search.
pub(super) async fn groups(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let (caller, _) = match administrator(&state, &tenant, &headers, peer, "/admin/groups").await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let search: String = params
        .get("search")
        .map(String::as_str)
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|it| !it.is_control())
        .take(MAX_SEARCH)
        .collect();
    let raw = QueryOptions {
        filter: (!search.is_empty()).then(|| format!("startswith(displayName,'{}')", search.replace('\'', "''"))),
        top: Some(PAGE_SIZE.to_string()),
        skiptoken: params.get("skiptoken").cloned(),
        ..QueryOptions::default()
    };
    let page = match state.app.list_groups(&caller, &raw).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let tenant = caller.tenant.id.to_string();
    let next = page
        .skiptoken
        .map(|token| format!("/{tenant}/admin/groups?search={}&skiptoken={}", url_encode(&search), url_encode(&token)));
    let page =
        GroupsPage { title: "Groups", header: Header::of(&caller), tenant, search: &search, groups: page.items, next };
    html(StatusCode::OK, &page)
}

/// Members or owners as the group page lists them.
async fn relation_rows(
    state: &AppState,
    caller: &Caller,
    relation: Relation,
    key: &str,
) -> Result<Result<Vec<(String, &'static str)>, String>, AppError> {
    match state.app.list_group_relation(caller, relation, key, Some("100"), None).await {
        Ok(page) => Ok(Ok(page
            .items
            .iter()
            .map(|it| match it {
                DirectoryObject::User(user) => {
                    (format!("{} ({})", user.display_name, user.user_principal_name), "user")
                }
                DirectoryObject::Group(group) => (group.display_name.clone(), "group"),
                DirectoryObject::ServicePrincipal(principal) => (principal.display_name.clone(), "service principal"),
            })
            .collect())),
        Err(AppError::Forbidden { .. }) => Ok(Err("Your roles do not let you read this.".to_owned())),
        Err(err) => Err(err),
    }
}

/// `GET /{tenant}/admin/groups/{id}`: a group, its members and owners.
pub(super) async fn group(
    State(state): State<AppState>,
    Path((tenant, key)): Path<(String, String)>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let return_to = format!("/admin/groups/{}", url_encode(&key));
    let (caller, _) = match administrator(&state, &tenant, &headers, peer, &return_to).await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let group = match state.app.get_group(&caller, &key).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let id = group.id.to_string();
    let members = match relation_rows(&state, &caller, Relation::Members, &id).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let owners = match relation_rows(&state, &caller, Relation::Owners, &id).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let page = GroupPage {
        title: group.display_name.clone(),
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        group,
        members,
        owners,
    };
    html(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(csv_cell("plain"), "\"plain\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("@sum"), "\"'@sum\"");
        assert_eq!(csv_cell("-1"), "\"'-1\"");
    }

    #[test]
    fn audit_filters_come_from_the_form_and_bad_dates_are_refused() {
        let params: HashMap<String, String> = [
            ("from", "2026-12-01"),
            ("until", "2026-12-01"),
            ("activity", "Add "),
            ("initiator", "Desk@"),
            ("result", "failure"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        let (_, filter) = audit_filter(&params).expect("a usable form");
        assert_eq!(filter.activity, Some(TextMatch::StartsWith("add".into())));
        assert_eq!(filter.initiator_upn, Some(TextMatch::StartsWith("desk@".into())));
        assert_eq!(filter.result.as_deref(), Some("failure"));
        let (from, until) = (filter.from.expect("from"), filter.until.expect("until"));
        assert_eq!((until - from).whole_seconds(), 86_399, "the until day is inclusive");
        let bad: HashMap<String, String> = [("from".to_owned(), "yesterday".to_owned())].into_iter().collect();
        assert!(matches!(audit_filter(&bad), Err(AppError::BadRequest(_))));
        let odd: HashMap<String, String> = [("result".to_owned(), "maybe".to_owned())].into_iter().collect();
        assert!(matches!(audit_filter(&odd), Err(AppError::BadRequest(_))));
    }
}
