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
    /// Every field's value as the page shows it (form-encoded), so a save changes only what the
    /// administrator changed on it.
    shown: String,
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
    let policies = match state.app.policies(caller, PolicyObject::Methods).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let shown = form_urlencoded::Serializer::new(String::new()).extend_pairs(form_values(&policies)).finish();
    let keyward_app::Policies { sign_in: policy, tap, agents, dual_control, caller_verification, .. } = policies;
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
        shown,
        csrf,
        notice,
        error,
    };
    html(status, &page)
}

/// Every field of the settings form with the value it shows for `policies` (a checked box is
/// `true`, an unchecked one empty).
fn form_values(policies: &keyward_app::Policies) -> Vec<(&'static str, String)> {
    let flag = |on: bool| if on { "true".to_owned() } else { String::new() };
    let (policy, tap, dual) = (&policies.sign_in, &policies.tap, &policies.dual_control);
    let mut values = vec![
        ("mfa_privileged", flag(policy.mfa_for_privileged_roles)),
        ("mfa_everyone", flag(policy.mfa_for_everyone)),
        ("remember_days", policy.remember_mfa_days.to_string()),
        ("lockout_threshold", policy.lockout_threshold.to_string()),
        ("lockout_seconds", policy.lockout_seconds.to_string()),
        ("code_attempts", policy.code_attempt_limit.to_string()),
        ("tap_enabled", flag(tap.is_enabled)),
        ("tap_min", tap.minimum_lifetime_minutes.to_string()),
        ("tap_default", tap.default_lifetime_minutes.to_string()),
        ("tap_max", tap.maximum_lifetime_minutes.to_string()),
        ("tap_length", tap.default_length.to_string()),
        ("tap_once", flag(tap.is_usable_once)),
        ("caller_verification", flag(policies.caller_verification.is_enabled)),
        ("dual_enabled", flag(dual.is_enabled)),
        ("dual_group", dual.group_id.as_ref().map(ToString::to_string).unwrap_or_default()),
        ("dual_minutes", dual.request_minutes.to_string()),
    ];
    for (field, _, action) in AGENT_LIMITS {
        values.push((field, policies.agents.cap(action).map(|it| it.to_string()).unwrap_or_default()));
    }
    for (field, _, covered) in COVERED {
        values.push((field, flag(policies.caller_verification.covered.contains(&covered))));
    }
    values
}

/// The fields to save: each one the administrator changed on the page (its submitted value
/// differs from the one the page showed) as submitted, every other one as `stored` has it now.
/// Without what the page showed, every field as submitted.
fn merged(
    submitted: &HashMap<String, String>,
    shown: Option<&HashMap<String, String>>,
    stored: Vec<(&'static str, String)>,
) -> HashMap<String, String> {
    let sent = |name: &str| submitted.get(name).map(|it| it.trim().to_owned()).unwrap_or_default();
    stored
        .into_iter()
        .map(|(name, now)| {
            let changed =
                shown.is_none_or(|shown| shown.get(name).map(String::as_str).unwrap_or_default() != sent(name));
            (name.to_owned(), if changed { sent(name) } else { now })
        })
        .collect()
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
    let submitted = posted.map();
    let AdminForm { caller, csrf, .. } = posted;
    // What the page showed, when it says (a form without it changes every field, as before).
    let shown: Option<HashMap<String, String>> =
        submitted.get("shown").map(|it| form_urlencoded::parse(it.as_bytes()).into_owned().collect());
    let saved = state
        .app
        .update_policies(&caller, PolicyObject::Methods, |policies| {
            // Only the fields changed on the page are taken from it; the others keep what is
            // stored now, so a page shown before another administrator's change does not put
            // their switches back.
            let fields = merged(&submitted, shown.as_ref(), form_values(policies));
            let number = |name: &str| -> Result<i64, AppError> {
                fields
                    .get(name)
                    .and_then(|it| it.trim().parse().ok())
                    .ok_or_else(|| AppError::BadRequest(format!("'{name}' must be a whole number.")))
            };
            let flag = |name: &str| fields.get(name).is_some_and(|it| it == "true");
            let (policy, tap) = (&mut policies.sign_in, &mut policies.tap);
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
