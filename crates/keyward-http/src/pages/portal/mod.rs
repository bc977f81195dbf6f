//! `/{tenant}/admin/…`: the admin portal. A signed-in administrator (with MFA) finds a user and
//! takes the service desk's actions on their authentication methods. Every action goes through
//! the same use case as the Graph API, so the same rules decide and the same audit records are
//! written; forms carry the session's CSRF token and follow post/redirect/get.

use std::collections::HashMap;
use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query as RawQuery, State};
use axum::http::request::Parts;
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

mod approvals;
mod audit;
mod bulk;
mod custom_roles;
mod groups;
mod manage;
mod mfa;
mod my_roles;
mod notifications;
mod picker;
mod reports;
mod roles;
mod settings;
mod sign_ins;
mod units;
mod users;

pub(super) use self::approvals::{approvals, approvals_action};
pub(super) use self::audit::{audit, audit_record};
pub(super) use self::bulk::{bulk, bulk_start};
pub(super) use self::custom_roles::{create_role, edit_role, new_role, save_role};
pub(super) use self::groups::{group, group_action, group_remove_confirm, groups};
pub(super) use self::manage::{create_user, edit_user, new_user, save_user};
pub(super) use self::mfa::{mfa, mfa_apply, mfa_confirm};
pub(super) use self::my_roles::{my_roles, my_roles_action};
pub(super) use self::notifications::notifications;
pub(super) use self::reports::reports;
pub(super) use self::roles::{role, role_action, role_remove_confirm, roles};
pub(super) use self::settings::{settings, settings_save};
pub(super) use self::sign_ins::{sign_in, sign_ins};
pub(super) use self::units::{unit, unit_action, unit_remove_confirm, units};
pub(super) use self::users::{confirm, user, user_action, users};

/// Users per page of the list.
const PAGE_SIZE: usize = 25;

/// Who is signed in, shown on every portal page.
#[derive(Debug)]
pub(super) struct Header {
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

/// The signed-in administrator a portal page acts as, with the session's CSRF token. Rejected with
/// the response that sends the browser to sign in (and back to this page), or the page that says
/// why the portal is closed to it.
pub(super) struct Admin {
    pub(super) caller: Box<Caller>,
    pub(super) csrf: String,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Admin, Response> {
        // `/{tenant}/admin/…`: the tenant, and the page to come back to after signing in (its
        // path below the tenant and its query; `administrator` puts the tenant's id in front).
        let (tenant, return_to) = portal_path(parts, state).await;
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned().map(axum::Extension);
        let (caller, csrf) = administrator(state, &tenant, &parts.headers, peer, &return_to).await?;
        Ok(Admin { caller, csrf })
    }
}

/// The tenant of a `/{tenant}/admin/…` request (percent-decoded, as the router's other
/// extractors decode it), and the page to come back to after signing in: its path below the
/// tenant and its query (`administrator` puts the tenant's id in front).
async fn portal_path(parts: &mut Parts, state: &AppState) -> (String, String) {
    let tenant = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .ok()
        .and_then(|it| it.0.get("tenant").cloned())
        .unwrap_or_default();
    let below = parts.uri.path().splitn(3, '/').nth(2).unwrap_or_default();
    let query = parts.uri.query().map(|it| format!("?{it}")).unwrap_or_default();
    (tenant, format!("/{below}{query}"))
}

/// A portal form post: the administrator it acts as and the form's fields, accepted only after
/// what every post checks first, in this order: the address's rate limit (before any session
/// lookup), the signed-in administrator, and the form's CSRF token. Rejected with the page that
/// says why.
pub(super) struct AdminForm {
    pub(super) caller: Box<Caller>,
    pub(super) csrf: String,
    pub(super) fields: Vec<(String, String)>,
}

impl AdminForm {
    /// The first value of the field `name`, or "".
    fn field(&self, name: &str) -> &str {
        self.fields.iter().find(|(key, _)| key == name).map_or("", |(_, value)| value.as_str())
    }

    /// The fields by name (the first value of a repeated one, as [`AdminForm::field`] reads it).
    fn map(&self) -> HashMap<String, String> {
        let mut map = HashMap::new();
        for (name, value) in &self.fields {
            map.entry(name.clone()).or_insert_with(|| value.clone());
        }
        map
    }

    /// Every value of the field `name` (checkboxes).
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields.iter().filter(move |(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

impl axum::extract::FromRequest<AppState> for AdminForm {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<AdminForm, Response> {
        let (mut parts, body) = request.into_parts();
        let (tenant, return_to) = portal_path(&mut parts, state).await;
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned().map(axum::Extension);
        let headers = parts.headers.clone();
        let request = axum::extract::Request::from_parts(parts, body);
        let Form(fields) = Form::<Vec<(String, String)>>::from_request(request, state).await.map_err(|_| {
            html(
                StatusCode::BAD_REQUEST,
                &Message::error("Admin portal", "This form could not be read. Reload the page and try again."),
            )
        })?;
        let presented = fields.iter().find(|(key, _)| key == "csrf").map_or("", |(_, value)| value.as_str());
        let (caller, csrf) = checked_post(state, &tenant, &headers, peer, &return_to, presented).await?;
        Ok(AdminForm { caller, csrf, fields })
    }
}

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
    // Only the administrator's own use keeps the session from going idle: a page another site
    // sent the browser to (its cookie goes with a top-level navigation) does not.
    let is_own_use = headers
        .get("sec-fetch-site")
        .and_then(|it| it.to_str().ok())
        .is_none_or(|it| it.eq_ignore_ascii_case("same-origin") || it.eq_ignore_ascii_case("none"));
    let access = state.app.portal_access(tenant, cookie, meta, is_own_use).await;
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
        AppError::NotFound(_) => html(
            StatusCode::NOT_FOUND,
            &Message::error(
                "Admin portal",
                "Not found in this tenant: it may have been deleted, or the address is wrong.",
            ),
        ),
        AppError::Forbidden { message, .. } => html(StatusCode::FORBIDDEN, &Message::alert("Admin portal", &message)),
        AppError::BadRequest(message) | AppError::UnsupportedQuery(message) | AppError::Rejected { message, .. } => {
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

/// The status and text a refused or invalid form shows above the fields; any other error is
/// given back, for a page of its own.
pub(super) fn form_error(err: AppError) -> Result<(StatusCode, String), AppError> {
    match err {
        AppError::BadRequest(text) | AppError::Rejected { message: text, .. } => Ok((StatusCode::BAD_REQUEST, text)),
        AppError::Conflict(text) => Ok((StatusCode::CONFLICT, text)),
        AppError::Forbidden { message, .. } => Ok((StatusCode::FORBIDDEN, message)),
        other => Err(other),
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
        // Someone only eligible for roles starts where they activate one.
        Ok((caller, _)) if caller.actor.roles.is_empty() => see_other(&format!("/{}/admin/my-roles", caller.tenant.id)),
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

/// The times a log filter's "From" and "Until" dates (`2026-12-01`, UTC, both inclusive) stand
/// for; either may be empty.
fn date_range(
    from: &str,
    until: &str,
) -> Result<(Option<time::OffsetDateTime>, Option<time::OffsetDateTime>), AppError> {
    let date = |raw: &str, what: &str| -> Result<Option<time::Date>, AppError> {
        if raw.is_empty() {
            return Ok(None);
        }
        // Bounded, so the day after "Until" can be taken: 9999-12-31 has none.
        time::Date::parse(raw, time::macros::format_description!("[year]-[month]-[day]"))
            .ok()
            .filter(|it| (1970..=8999).contains(&it.year()))
            .map(Some)
            .ok_or_else(|| AppError::BadRequest(format!("'{what}' must be a date from 1970 to 8999, like 2026-12-01.")))
    };
    Ok((
        date(from, "From")?.map(|it| it.midnight().assume_utc()),
        date(until, "Until")?
            .map(|it| it.midnight().assume_utc() + time::Duration::days(1) - time::Duration::microseconds(1)),
    ))
}
