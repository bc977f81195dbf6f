//! The sign-in and Temporary Access Pass policies, and the service desk's per-agent limits.

use super::*;
use keyward_app::PolicyObject;
use keyward_core::agent_limits::AgentAction;

#[derive(Debug, Template)]
#[template(path = "portal/settings.html")]
struct SettingsPage {
    title: &'static str,
    tenant: String,
    header: Header,
    policy: SignInPolicy,
    tap: TapPolicy,
    /// Per-agent limits, each `(field, label, value)`; an empty value is no limit.
    limits: Vec<(&'static str, &'static str, String)>,
    dual_control: keyward_core::dual_control::DualControl,
    caller_verification: bool,
    /// Each coverable operation: field, label, whether covered.
    covered: Vec<(&'static str, &'static str, bool)>,
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
    let (policy, tap, agents, dual_control, caller_verification) =
        match state.app.policies(caller, PolicyObject::Methods).await {
            Ok(it) => (it.sign_in, it.tap, it.agents, it.dual_control, it.caller_verification),
            Err(err) => return failure(err),
        };
    let limits = AGENT_LIMITS
        .iter()
        .map(|(field, label, action)| {
            (*field, *label, agents.cap(*action).map(|it| it.to_string()).unwrap_or_default())
        })
        .collect();
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
        limits,
        dual_control,
        caller_verification: caller_verification.is_enabled,
        covered: COVERED
            .iter()
            .map(|(field, label, it)| (*field, *label, caller_verification.covered.contains(it)))
            .collect(),
        csrf,
        notice,
        error,
    };
    html(status, &page)
}

/// What caller verification may cover, on the page: form field, label, the operation.
const COVERED: [(&str, &str, keyward_core::caller_verification::Covered); 5] = {
    use keyward_core::caller_verification::Covered;
    [
        ("verify_passes", "Creating a Temporary Access Pass", Covered::TemporaryAccessPasses),
        ("verify_passwords", "Resetting a password", Covered::PasswordResets),
        ("verify_mfa", "Resetting MFA (re-registration, Reset MFA, a passkey for the user)", Covered::MfaResets),
        ("verify_privileged", "Any other method change for a privileged user", Covered::PrivilegedMethodChanges),
        ("verify_all", "Any other method change for anyone", Covered::AllMethodChanges),
    ]
};

/// The per-agent limits on the page: form field, label, what it caps.
const AGENT_LIMITS: [(&str, &str, AgentAction); 3] = [
    ("limit_passes", "Temporary Access Passes one administrator may create per hour", AgentAction::TemporaryAccessPass),
    ("limit_passwords", "Password resets one administrator may do per hour", AgentAction::PasswordReset),
    (
        "limit_mfa",
        "MFA resets and re-registration requirements one administrator may do per hour",
        AgentAction::MfaReset,
    ),
];

/// `GET /{tenant}/admin/settings`: the sign-in policy and the Temporary Access Pass policy.
pub(in crate::pages) async fn settings(
    State(state): State<AppState>,
    Admin { caller, csrf }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let notice = params.get("done").map(|_| "Saved.");
    settings_page(&state, &caller, csrf, notice, None).await
}

/// `POST /{tenant}/admin/settings`: both policies at once, through the same use case (bounds,
/// audit) as Graph's policy updates.
pub(in crate::pages) async fn settings_save(State(state): State<AppState>, posted: AdminForm) -> Response {
    let fields = posted.map();
    let AdminForm { caller, csrf, .. } = posted;
    let number = |name: &str| -> Result<i64, AppError> {
        fields
            .get(name)
            .and_then(|it| it.trim().parse().ok())
            .ok_or_else(|| AppError::BadRequest(format!("'{name}' must be a whole number.")))
    };
    let flag = |name: &str| fields.get(name).is_some_and(|it| it == "true");
    let saved = state
        .app
        .update_policies(&caller, PolicyObject::Methods, |policies| {
            let (policy, tap) = (&mut policies.sign_in, &mut policies.tap);
            policy.mfa_for_privileged_roles = flag("mfa_privileged");
            // Security defaults change only when the box was changed on the page: a page shown
            // before someone else changed them must not silently put them back.
            if flag("mfa_everyone") != flag("mfa_everyone_shown") {
                policy.mfa_for_everyone = flag("mfa_everyone");
            }
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
            for (field, _, action) in AGENT_LIMITS {
                let cap = match fields.get(field).map(|it| it.trim()).unwrap_or_default() {
                    "" => None,
                    text => Some(text.parse().map_err(|_| {
                        AppError::BadRequest(format!("'{field}' must be empty (no limit) or a whole number."))
                    })?),
                };
                policies.agents.set(action, cap).map_err(AppError::BadRequest)?;
            }
            policies.caller_verification.is_enabled = flag("caller_verification");
            policies.caller_verification.covered =
                COVERED.iter().filter(|(field, ..)| flag(field)).map(|(_, _, it)| *it).collect();
            let dual = &mut policies.dual_control;
            dual.is_enabled = flag("dual_enabled");
            dual.request_minutes = number("dual_minutes")?;
            dual.group_id = match fields.get("dual_group").map(|it| it.trim()).unwrap_or_default() {
                "" => None,
                text => Some(keyward_core::ids::ObjectId::parse(text).ok_or_else(|| {
                    AppError::BadRequest("The dual control group must be empty or a group's object id.".into())
                })?),
            };
            Ok(())
        })
        .await;
    match saved {
        Ok(_) => see_other(&format!("/{}/admin/settings?done=1", caller.tenant.id)),
        Err(AppError::BadRequest(message)) => {
            settings_page(&state, &caller, csrf, None, Some((StatusCode::BAD_REQUEST, message))).await
        }
        Err(err) => failure(err),
    }
}
