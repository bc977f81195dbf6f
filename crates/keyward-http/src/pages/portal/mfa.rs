//! Per-user MFA: users with their state, and Enable / Enforce / Disable for many at once.

use super::*;

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
pub(in crate::pages) async fn mfa(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let (users, search, next) = match user_list_page(&state, &caller, &params, MFA_PAGE_SIZE, "/admin/mfa").await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let states = match state.app.mfa_requirements_of(&caller, &users).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let rows =
        users.into_iter().zip(states).map(|(user, it)| (user, it.map_or("-", PerUserMfaState::as_str))).collect();
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
pub(in crate::pages) async fn mfa_confirm(
    State(state): State<AppState>,
    Admin { caller, csrf }: Admin,
    RawQuery(fields): RawQuery<Vec<(String, String)>>,
) -> Response {
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
pub(in crate::pages) async fn mfa_apply(
    State(state): State<AppState>,
    AdminForm { caller, fields, .. }: AdminForm,
) -> Response {
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
            Err(AppError::BadRequest(message)) => refused.push((id.clone(), message)),
            // The users before it are changed already: the page says which were not, and the
            // rest are still tried.
            Err(err) => {
                tracing::error!(user = %id.escape_debug(), error = ?err, "a per-user MFA change failed");
                refused.push((id.clone(), "Not changed: the server failed (its log has why). Try again.".to_owned()));
            }
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
