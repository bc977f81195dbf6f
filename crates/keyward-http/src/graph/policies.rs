//! `/policies`: the authorization policy (user consent) and Keyward's sign-in policy. The
//! authentication methods policy and security defaults are in `methods_policy`.

use super::Body;
use crate::context::{GraphCtx, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use keyward_app::AppError;
use keyward_app::PolicyObject;
use keyward_core::agent_limits::AgentAction;
use keyward_core::dual_control::DualControl;
use keyward_core::ids::ObjectId;
use serde_json::{Value, json};

/// `keywardServiceDeskPolicy`'s caller verification switch.
const CALLER_VERIFICATION: &str = "callerVerificationEnabled";
/// What it covers.
const CALLER_VERIFICATION_OPERATIONS: &str = "callerVerificationOperations";

fn bad(message: String) -> AppError {
    AppError::BadRequest(message)
}

fn int_field(value: &Value, name: &str) -> Result<i64, AppError> {
    value.as_i64().ok_or_else(|| bad(format!("Property '{name}' must be an integer.")))
}

fn bool_field(value: &Value, name: &str) -> Result<bool, AppError> {
    value.as_bool().ok_or_else(|| bad(format!("Property '{name}' must be true or false.")))
}

pub(super) fn body_object(body: &Value) -> Result<&serde_json::Map<String, Value>, AppError> {
    body.as_object().ok_or_else(|| bad("The request body must be a JSON object.".into()))
}

/// `GET /policies/keywardSignInPolicy` (Keyward extension): what Graph has no policy object for
/// (MFA for privileged roles, remembered devices, lockout); MFA for everyone is security
/// defaults. Readable as the methods policy.
async fn get_sign_in_policy(ctx: GraphCtx) -> Result<Response, GraphError> {
    let policy = ctx.state.app.policies(&ctx.caller, PolicyObject::Methods).await?.sign_in;
    Ok(entity(
        format!("{}/$metadata#policies/keywardSignInPolicy/$entity", ctx.base()),
        json!({
            "requireMfaForPrivilegedRoles": policy.mfa_for_privileged_roles,
            "rememberMfaOnDeviceDays": policy.remember_mfa_days,
            "lockoutThreshold": policy.lockout_threshold,
            "lockoutDurationInSeconds": policy.lockout_seconds,
            "codeAttemptLimit": policy.code_attempt_limit,
        }),
        StatusCode::OK,
    ))
}

/// `PATCH /policies/keywardSignInPolicy` (Keyward extension, 204) —
/// `microsoft.directory/organization/strongAuthentication/allTasks`.
async fn patch_sign_in_policy(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let patch = body_object(&body)?.clone();
    ctx.state
        .app
        .update_policies(&ctx.caller, PolicyObject::Methods, move |policies| {
            let policy = &mut policies.sign_in;
            for (name, value) in &patch {
                match name.as_str() {
                    "requireMfaForPrivilegedRoles" => policy.mfa_for_privileged_roles = bool_field(value, name)?,
                    "rememberMfaOnDeviceDays" => policy.remember_mfa_days = int_field(value, name)?,
                    "lockoutThreshold" => policy.lockout_threshold = int_field(value, name)?,
                    "lockoutDurationInSeconds" => policy.lockout_seconds = int_field(value, name)?,
                    "codeAttemptLimit" => policy.code_attempt_limit = int_field(value, name)?,
                    "requireMfaForAllUsers" => {
                        return Err(bad("MFA for every user is security defaults: PATCH /policies/\
                             identitySecurityDefaultsEnforcementPolicy with {\"isEnabled\": true}."
                            .into()));
                    }
                    other => return Err(bad(format!("Property '{other}' does not exist on keywardSignInPolicy."))),
                }
            }
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /policies/keywardServiceDeskPolicy` (Keyward extension): per-agent limits, how many
/// passes, password resets and MFA resets one administrator may do to others in an hour
/// (`null`: no limit). Readable as the methods policy.
async fn get_service_desk_policy(ctx: GraphCtx) -> Result<Response, GraphError> {
    let policies = ctx.state.app.policies(&ctx.caller, PolicyObject::Methods).await?;
    let limits = policies.agents;
    let mut body = serde_json::Map::new();
    for action in AgentAction::ALL {
        body.insert(action.property().into(), json!(limits.cap(action)));
    }
    let dual = &policies.dual_control;
    body.insert(DualControl::ENABLED.into(), json!(dual.is_enabled));
    body.insert(DualControl::GROUP.into(), json!(dual.group_id.as_ref().map(|it| it.as_str())));
    body.insert(DualControl::MINUTES.into(), json!(dual.request_minutes));
    body.insert(CALLER_VERIFICATION.into(), json!(policies.caller_verification.is_enabled));
    let covered: Vec<&str> = policies.caller_verification.covered.iter().map(|it| it.as_str()).collect();
    body.insert(CALLER_VERIFICATION_OPERATIONS.into(), json!(covered));
    Ok(entity(
        format!("{}/$metadata#policies/keywardServiceDeskPolicy/$entity", ctx.base()),
        Value::Object(body),
        StatusCode::OK,
    ))
}

/// `PATCH /policies/keywardServiceDeskPolicy` (Keyward extension, 204) —
/// `microsoft.directory/organization/strongAuthentication/allTasks`; audited with the methods
/// policy (`Authentication Methods Policy Update`).
async fn patch_service_desk_policy(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let patch = body_object(&body)?.clone();
    ctx.state
        .app
        .update_policies(&ctx.caller, PolicyObject::Methods, move |policies| {
            for (name, value) in &patch {
                match name.as_str() {
                    CALLER_VERIFICATION => {
                        policies.caller_verification.is_enabled = bool_field(value, name)?;
                        continue;
                    }
                    CALLER_VERIFICATION_OPERATIONS => {
                        let names = value
                            .as_array()
                            .ok_or_else(|| bad(format!("Property '{name}' must be an array of operation names.")))?
                            .iter()
                            .map(|it| it.as_str().ok_or_else(|| bad(format!("Property '{name}' must hold strings."))))
                            .collect::<Result<Vec<_>, _>>()?;
                        policies.caller_verification.covered =
                            keyward_core::caller_verification::Policy::parse_covered(names)
                                .map_err(|err| bad(format!("Property '{name}': {err}")))?;
                        continue;
                    }
                    DualControl::ENABLED => {
                        policies.dual_control.is_enabled = bool_field(value, name)?;
                        continue;
                    }
                    DualControl::GROUP => {
                        policies.dual_control.group_id = match value {
                            Value::Null => None,
                            Value::String(it) => Some(ObjectId::parse(it).ok_or_else(|| {
                                bad(format!("Property '{name}' must be a group id (a GUID) or null."))
                            })?),
                            _ => return Err(bad(format!("Property '{name}' must be a group id (a GUID) or null."))),
                        };
                        continue;
                    }
                    DualControl::MINUTES => {
                        policies.dual_control.request_minutes = int_field(value, name)?;
                        continue;
                    }
                    _ => (),
                }
                let action = AgentAction::ALL
                    .into_iter()
                    .find(|it| it.property() == name)
                    .ok_or_else(|| bad(format!("Property '{name}' does not exist on keywardServiceDeskPolicy.")))?;
                let cap = match value {
                    Value::Null => None,
                    other => Some(int_field(other, name)?),
                };
                policies.agents.set(action, cap).map_err(bad)?;
            }
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn policy_json(policies: &[String]) -> Value {
    json!({
        "id": "authorizationPolicy",
        "displayName": "Authorization Policy",
        "description": "Used to manage authorization related settings across the company.",
        "defaultUserRolePermissions": {"permissionGrantPoliciesAssigned": policies},
    })
}

/// `GET /policies/authorizationPolicy` — `microsoft.directory/authorizationPolicy/standard/read`.
async fn get_policy(ctx: GraphCtx) -> Result<Response, GraphError> {
    let policies = ctx.state.app.user_consent_policies(&ctx.caller).await?;
    Ok(entity(
        format!("{}/$metadata#policies/authorizationPolicy/$entity", ctx.base()),
        policy_json(&policies),
        StatusCode::OK,
    ))
}

/// `PATCH /policies/authorizationPolicy` (`defaultUserRolePermissions.permissionGrantPoliciesAssigned`)
/// — `microsoft.directory/authorizationPolicy/allProperties/allTasks`.
async fn update_policy(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let unsupported = |name: &str| {
        GraphError::from(AppError::BadRequest(format!(
            "Property '{name}' of the authorization policy is not supported by Keyward; only \
             defaultUserRolePermissions.permissionGrantPoliciesAssigned can be changed."
        )))
    };
    let fields = body
        .as_object()
        .ok_or_else(|| GraphError::from(AppError::BadRequest("The request body must be a JSON object.".into())))?;
    if let Some(key) = fields.keys().find(|it| !it.starts_with("@odata.") && *it != "defaultUserRolePermissions") {
        return Err(unsupported(key));
    }
    let permissions = fields.get("defaultUserRolePermissions").and_then(Value::as_object).ok_or_else(|| {
        GraphError::from(AppError::BadRequest("Property 'defaultUserRolePermissions' is required.".into()))
    })?;
    if let Some(key) = permissions.keys().find(|it| *it != "permissionGrantPoliciesAssigned") {
        return Err(unsupported(&format!("defaultUserRolePermissions.{key}")));
    }
    let list = permissions.get("permissionGrantPoliciesAssigned").and_then(Value::as_array).ok_or_else(|| {
        GraphError::from(AppError::BadRequest("Invalid value for property 'permissionGrantPoliciesAssigned'.".into()))
    })?;
    let policies =
        list.iter().map(|it| it.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>().ok_or_else(|| {
            GraphError::from(AppError::BadRequest(
                "Invalid value for property 'permissionGrantPoliciesAssigned'.".into(),
            ))
        })?;
    ctx.state.app.set_user_consent_policies(&ctx.caller, policies).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

const POLICY: &str = "microsoft.directory/authorizationPolicy/allProperties/allTasks";

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const POLICY_ALL: &str = "microsoft.directory/organization/strongAuthentication/allTasks";
    api.route(
        "/policies/keywardSignInPolicy",
        get(get_sign_in_policy),
        Op::get(
            "policies",
            "Keyward extension: get the sign-in policy (MFA for privileged roles, remembered devices, lockout)",
            POLICY_ALL,
            "KeywardSignInPolicy",
        ),
    )
    .route(
        "/policies/keywardSignInPolicy",
        axum::routing::patch(patch_sign_in_policy),
        Op::patch("policies", "Keyward extension: update the sign-in policy", POLICY_ALL, "KeywardSignInPolicy"),
    )
    .route(
        "/policies/keywardServiceDeskPolicy",
        get(get_service_desk_policy),
        Op::get(
            "policies",
            "Keyward extension: get the service desk policy (per-agent limits per hour, dual control)",
            POLICY_ALL,
            "KeywardServiceDeskPolicy",
        ),
    )
    .route(
        "/policies/keywardServiceDeskPolicy",
        axum::routing::patch(patch_service_desk_policy),
        Op::patch(
            "policies",
            "Keyward extension: set the service desk policy (per-agent limits, null: no limit; dual control)",
            POLICY_ALL,
            "KeywardServiceDeskPolicy",
        ),
    )
    .route(
        "/policies/authorizationPolicy",
        get(get_policy),
        Op::get(
            "consent",
            "What users may consent to",
            "microsoft.directory/authorizationPolicy/standard/read",
            "AuthorizationPolicy",
        ),
    )
    .route(
        "/policies/authorizationPolicy",
        patch(update_policy),
        Op::patch(
            "consent",
            "Set what users may consent to (permissionGrantPoliciesAssigned)",
            POLICY,
            "AuthorizationPolicy",
        ),
    )
}
