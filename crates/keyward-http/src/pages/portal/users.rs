//! The user list and a user's page: profile, memberships, methods, the service desk's actions
//! with their confirmations, and the one-time secrets some of them show.

use keyward_core::directory::{Membership, UserPatch};

use super::*;

/// The service desk's actions on a user's sign-in: the form's `action`, its button, what it does.
const ACTIONS: [(&str, &str, &str); 10] = [
    (
        "verify_caller",
        "Verify caller",
        "Gives you a code to read out to the caller; they confirm it on their Verify a service-desk call page, \
         signed in with their authenticator app or passkey. With caller verification on, you need this before a \
         Temporary Access Pass, a password reset or an MFA reset.",
    ),
    (
        "reset_mfa",
        "Reset MFA",
        "In one step: deletes the user's authenticator apps and phones, forgets the devices where they chose \
         not to be asked again, and signs them out everywhere; with a Temporary Access Pass (shown once) they \
         sign in and register again. All of it happens, or none of it.",
    ),
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
    (
        "disable",
        "Disable account",
        "Blocks sign-in: the user can no longer sign in, and their sessions and refresh tokens stop working.",
    ),
    ("enable", "Enable account", "Lets the user sign in again."),
    (
        "delete",
        "Delete user",
        "Deletes the user, with their methods, sessions, group memberships and role assignments. \
         For 30 days the account (without those) can be restored through Graph's deleted items.",
    ),
];

/// A secret shown once: a generated password or a Temporary Access Pass.
#[derive(Debug, Template)]
#[template(path = "portal/secret.html")]
pub(super) struct SecretPage {
    pub(super) title: &'static str,
    pub(super) tenant: String,
    pub(super) header: Header,
    pub(super) user: User,
    /// What the secret is and what happens next.
    pub(super) what: String,
    pub(super) secret: String,
}

#[derive(Debug, Template)]
#[template(path = "portal/users.html")]
struct UsersPage<'a> {
    title: &'static str,
    tenant: String,
    header: Header,
    notice: Option<&'static str>,
    search: &'a str,
    users: Vec<User>,
    next: Option<String>,
}

/// An action on the user's page: its name, button, what it does, and why the caller may not take
/// it (if so).
type ActionRow = (&'static str, &'static str, &'static str, Option<String>);

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
    /// Why the caller may not edit this user's profile, if so.
    edit_reason: Option<String>,
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
    actions: Vec<ActionRow>,
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

/// the display name, user principal name or mail.
/// `GET /{tenant}/admin/users?search=…&skiptoken=…`: the user list, searchable by the start of
/// the display name, user principal name or mail.
pub(in crate::pages) async fn users(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let (users, search, next) = match user_list_page(&state, &caller, &params, PAGE_SIZE, "/admin/users").await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    // Chosen from a fixed list, never echoed from the URL.
    let notice = (params.get("done").map(String::as_str) == Some("delete")).then_some("Done: the user was deleted.");
    let tenant = caller.tenant.id.to_string();
    html(
        StatusCode::OK,
        &UsersPage { title: "Users", header: Header::of(&caller), tenant, notice, search: &search, users, next },
    )
}

/// The key a method is deleted by on the portal: `phone:<type>`, `email`, `oath:<id>`,
/// `tap:<id>`, `passkey:<id>`; none for the password.
fn method_key(method: &AuthMethod) -> Option<String> {
    match method {
        AuthMethod::Password { .. } => None,
        AuthMethod::Phone(phone) => Some(format!("phone:{}", phone.phone_type.as_str())),
        AuthMethod::Email { .. } => Some("email".to_owned()),
        AuthMethod::SoftwareOath(oath) => Some(format!("oath:{}", oath.id)),
        AuthMethod::TemporaryAccessPass(pass) => Some(format!("tap:{}", pass.id)),
        AuthMethod::Passkey(passkey) => Some(format!("passkey:{}", passkey.id)),
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
        Some(("passkey", id)) => state.app.delete_passkey(caller, Who::User(user), id).await,
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
        AuthMethod::Passkey(passkey) => format!(
            "Passkey: {} ({}, added {})",
            passkey.display_name,
            if passkey.is_synced { "synced" } else { "device-bound" },
            keyward_app::rfc3339(passkey.created)
        ),
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
    let memberships = match state
        .app
        .member_of(caller, keyward_core::directory::ObjectKind::User, &id, true, Some("999"), None)
        .await
    {
        Ok(found) => {
            let mut groups = Vec::new();
            let mut roles = Vec::new();
            for it in &found.items {
                match it {
                    Membership::Group(group) => groups.push(group.display_name.clone()),
                    Membership::Role(role) => roles.push(role.display_name),
                    Membership::Unit(_) => (),
                }
            }
            groups.sort();
            roles.sort_unstable();
            Ok((groups, roles))
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
        select: None,
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
    let (actions, edit_reason) = match action_reasons(state, caller, &user).await {
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
        edit_reason,
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
        AppError::HeldForApproval(held) => {
            let secret = held.temporary_access_pass.as_ref().or(held.password.as_ref());
            let Some(secret) = secret else {
                let tenant = caller.tenant.id.to_string();
                return see_other(&format!("/{tenant}/admin/users/{}?done=held", url_encode(key)));
            };
            let user = match state.app.get_user(caller, key).await {
                Ok(it) => it,
                Err(err) => return failure(err),
            };
            let what = format!(
                "Sent for approval: dual control holds this change to a privileged user ({}) until another \
                 administrator approves it on the Approvals page (it expires at {} UTC). The {} below works only once \
                 it is approved. It is not shown again.",
                held.request.operation.describe(),
                keyward_app::rfc3339(held.request.expires),
                if held.password.is_some() { "password" } else { "Temporary Access Pass" },
            );
            let page = SecretPage {
                title: "Sent for approval",
                tenant: caller.tenant.id.to_string(),
                header: Header::of(caller),
                user,
                what,
                secret: secret.expose().to_owned(),
            };
            html(StatusCode::ACCEPTED, &page)
        }
        err => failure(err),
    }
}

/// "Verify caller": the code to read out, shown once (in the post's response, never cached).
async fn verify_caller(state: &AppState, caller: &Caller, key: &str) -> Response {
    let started = match state.app.start_caller_verification(caller, key).await {
        Ok(it) => it,
        Err(err) => return action_failed(state, caller, key, err).await,
    };
    let user = match state.app.get_user(caller, key).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let what = format!(
        "Read this code to the caller. Ask them to open {}/{}/verify-call, sign in with their authenticator app or \
         passkey, and type it. It counts for 15 minutes once they confirm; unanswered, it expires at {} UTC. If \
         they hold no factor, their manager or another administrator can vouch for them instead.",
        state.app.config().public_url,
        caller.tenant.id,
        keyward_app::rfc3339(started.expires),
    );
    let page = SecretPage {
        title: "Verify caller",
        tenant: caller.tenant.id.to_string(),
        header: Header::of(caller),
        user,
        what,
        secret: started.code.unwrap_or_default(),
    };
    html(StatusCode::OK, &page)
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
            // Unchecked: the tenant's policy decides (a policy of one-time passes refuses `false`).
            is_usable_once: fields.get("once").map(|it| it == "true"),
        };
        let created = if action == "reset_mfa" {
            let reset = state.app.reset_mfa(caller, key, Some(request)).await;
            reset.and_then(|it| it.ok_or_else(|| AppError::Unexpected(anyhow::anyhow!("the reset made no pass"))))
        } else {
            state.app.create_tap(caller, key, request).await
        };
        created.map(|view| {
            let what = format!(
                "{}A Temporary Access Pass, valid for {} minutes{}. It is not shown again.",
                if action == "reset_mfa" {
                    "MFA was reset: the user's authenticator apps and phones were deleted, their remembered \
                     devices forgotten and their sessions ended. "
                } else {
                    ""
                },
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
) -> Result<(Vec<ActionRow>, Option<String>), AppError> {
    let reasons = state.app.portal_user_actions(caller, &user.id.to_string()).await?;
    let why = |name: &str| reasons.iter().find(|(it, _)| *it == name).and_then(|(_, why)| why.clone());
    // An enabled account offers Disable, a disabled one Enable.
    let unused = if user.account_enabled { "enable" } else { "disable" };
    let actions = ACTIONS
        .iter()
        .filter(|(name, ..)| *name != unused)
        .map(|&(name, button, help)| (name, button, help, why(name)))
        .collect();
    Ok((actions, why("edit")))
}

/// `GET /{tenant}/admin/users/{id}/confirm?action=…`: what the action will do to this user, and
/// the form that does it (or why the caller may not).
pub(in crate::pages) async fn confirm(
    State(state): State<AppState>,
    Admin { caller, csrf }: Admin,
    Path((_, key)): Path<(String, String)>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let wanted = params.get("action").map(String::as_str).unwrap_or_default();
    let user = match state.app.get_user(&caller, &key).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let reasons = match action_reasons(&state, &caller, &user).await {
        Ok((it, _)) => it,
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
pub(in crate::pages) async fn user(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    Path((_, key)): Path<(String, String)>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    // The notice of a finished action is chosen from a fixed list, never echoed from the URL.
    let notice = match params.get("done").map(String::as_str) {
        Some("require_reregistration") => {
            Some("Done: the user must register their authentication methods again at their next sign-in.")
        }
        Some("revoke_mfa_sessions") => Some("Done: the user's remembered MFA devices were forgotten."),
        Some("revoke_sessions") => Some("Done: the user was signed out everywhere."),
        Some("reset_mfa") => Some(
            "Done: MFA was reset: the user's authenticator apps and phones were deleted, their remembered devices \
             forgotten and their sessions ended; they register again at their next sign-in.",
        ),
        Some("delete_method") => Some("Done: the method was deleted."),
        Some("disable") => Some("Done: the account is disabled; the user cannot sign in."),
        Some("enable") => Some("Done: the account is enabled; the user can sign in again."),
        Some("create") => Some("Done: the user was created with the password you typed."),
        Some("edit") => Some("Done: the profile was saved."),
        Some("unchanged") => Some("Nothing changed."),
        Some("held") => Some(
            "Sent for approval: dual control holds this change to a privileged user until another administrator \
             approves it on the Approvals page. Nothing changed yet.",
        ),
        _ => None,
    };
    user_page(&state, &caller, &key, notice, None).await
}

/// `POST /{tenant}/admin/users/{id}` with `csrf` and `action`.
pub(in crate::pages) async fn user_action(
    State(state): State<AppState>,
    Path((_, key)): Path<(String, String)>,
    posted: AdminForm,
) -> Response {
    let fields = posted.map();
    let caller = posted.caller;
    let action = fields.get("action").map(String::as_str).unwrap_or_default();
    let with_pass = fields.get("with_pass").is_some_and(|it| it == "true");
    if action == "reset_password" || action == "create_tap" || (action == "reset_mfa" && with_pass) {
        return secret_action(&state, &caller, &key, action, &fields).await;
    }
    if action == "verify_caller" {
        return verify_caller(&state, &caller, &key).await;
    }
    let result = match action {
        "require_reregistration" => state.app.require_mfa_reregistration(&caller, &key).await,
        "revoke_mfa_sessions" => state.app.revoke_mfa_sessions(&caller, &key).await,
        "revoke_sessions" => state.app.revoke_sign_in_sessions(&caller, &key).await,
        "reset_mfa" => state.app.reset_mfa(&caller, &key, None).await.map(|_| ()),
        "disable" | "enable" => {
            let patch = UserPatch { account_enabled: Some(action == "enable"), ..UserPatch::default() };
            state.app.update_user(&caller, &key, patch).await
        }
        "delete" => {
            return match state.app.delete_user(&caller, &key).await {
                Ok(()) => see_other(&format!("/{}/admin/users?done=delete", caller.tenant.id)),
                Err(err) => action_failed(&state, &caller, &key, err).await,
            };
        }
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
