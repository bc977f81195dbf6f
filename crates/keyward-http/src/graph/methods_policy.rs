//! `/policies/authenticationMethodsPolicy` (with its registration campaign and each method's
//! configuration) and `/policies/identitySecurityDefaultsEnforcementPolicy`.
//!
//! The configurations Keyward implements are `TemporaryAccessPass`, `SoftwareOath`, `Email` and
//! `Fido2` (passkeys), each with `includeTargets` and `excludeTargets` honoured at registration
//! and sign-in. `Sms` and `Voice` are listed disabled (Keyward sends no texts and makes no calls)
//! and cannot be turned on. Input Keyward cannot honour is refused, never dropped.

use super::Body;
use super::policies::body_object;
use crate::context::{GraphCtx, Version, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch};
use keyward_app::{AppError, Policies, PolicyObject};
use keyward_core::methods_policy::{
    CampaignState, KeyRestrictions, MethodConfig, MethodsPolicy, Target, TargetType, Targets,
};
use keyward_core::signin::TapPolicy;
use serde_json::{Map, Value, json};

const POLICY_ALL: &str = "microsoft.directory/organization/strongAuthentication/allTasks";
/// The target types a client may name in a target's `@odata.type`.
const TARGET_TYPES: &[&str] = &[
    "#microsoft.graph.authenticationMethodTarget",
    "#microsoft.graph.excludeTarget",
    "#microsoft.graph.authenticationMethodsRegistrationCampaignIncludeTarget",
    "#microsoft.graph.smsAuthenticationMethodTarget",
    "#microsoft.graph.voiceAuthenticationMethodTarget",
    "#microsoft.graph.passkeyAuthenticationMethodTarget",
];
/// Security defaults' id, as Entra's.
const SECURITY_DEFAULTS_ID: &str = "00000000-0000-0000-0000-000000000005";
const CONFIGURATIONS: &str = "/policies/authenticationMethodsPolicy/authenticationMethodConfigurations";

/// A method configuration, by its id (compared without case, as Graph does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    TemporaryAccessPass,
    SoftwareOath,
    Email,
    Sms,
    Voice,
    Fido2,
}

const METHODS: [Method; 6] =
    [Method::Fido2, Method::Sms, Method::TemporaryAccessPass, Method::SoftwareOath, Method::Voice, Method::Email];

impl Method {
    fn id(self) -> &'static str {
        match self {
            Method::TemporaryAccessPass => "TemporaryAccessPass",
            Method::SoftwareOath => "SoftwareOath",
            Method::Email => "Email",
            Method::Sms => "Sms",
            Method::Voice => "Voice",
            Method::Fido2 => "Fido2",
        }
    }

    fn odata_type(self) -> &'static str {
        match self {
            Method::TemporaryAccessPass => "#microsoft.graph.temporaryAccessPassAuthenticationMethodConfiguration",
            Method::SoftwareOath => "#microsoft.graph.softwareOathAuthenticationMethodConfiguration",
            Method::Email => "#microsoft.graph.emailAuthenticationMethodConfiguration",
            Method::Sms => "#microsoft.graph.smsAuthenticationMethodConfiguration",
            Method::Voice => "#microsoft.graph.voiceAuthenticationMethodConfiguration",
            Method::Fido2 => "#microsoft.graph.fido2AuthenticationMethodConfiguration",
        }
    }

    fn find(id: &str) -> Result<Method, AppError> {
        METHODS.into_iter().find(|it| it.id().eq_ignore_ascii_case(id)).ok_or_else(|| {
            AppError::NotFound(format!(
                "{id}: Keyward's authentication method configurations are TemporaryAccessPass, SoftwareOath, Email, \
                 Sms, Voice and Fido2"
            ))
        })
    }

    /// Why a method Keyward lists but cannot use stays off.
    fn unavailable(self) -> Option<&'static str> {
        match self {
            Method::Sms => Some("Keyward sends no text messages"),
            Method::Voice => Some("Keyward makes no phone calls"),
            _ => None,
        }
    }
}

fn bad(message: String) -> AppError {
    AppError::BadRequest(message)
}

/// Checks an `@odata.type` or `id` a client sent along: it may only repeat what the object is.
fn check_same(value: &Value, property: &str, allowed: &[&str]) -> Result<(), AppError> {
    let matches = value.as_str().is_some_and(|it| {
        allowed.iter().any(|allowed| it.trim_start_matches('#').eq_ignore_ascii_case(allowed.trim_start_matches('#')))
    });
    if matches {
        Ok(())
    } else {
        Err(bad(format!("'{property}' must be '{}' here; it cannot be changed.", allowed[0])))
    }
}

fn state(enabled: bool) -> &'static str {
    if enabled { "enabled" } else { "disabled" }
}

fn include_json(targets: &[Target]) -> Vec<Value> {
    targets
        .iter()
        .map(|it| json!({"targetType": it.target_type.as_str(), "id": it.id, "isRegistrationRequired": false}))
        .collect()
}

fn exclude_json(targets: &[Target]) -> Vec<Value> {
    targets.iter().map(|it| json!({"targetType": it.target_type.as_str(), "id": it.id})).collect()
}

fn config_json(method: Method, policies: &Policies) -> Value {
    let mut value = json!({"@odata.type": method.odata_type(), "id": method.id()});
    let config = |value: &mut Value, enabled: bool, targets: &Targets| {
        value["state"] = json!(state(enabled));
        value["includeTargets"] = json!(include_json(&targets.include));
        value["excludeTargets"] = json!(exclude_json(&targets.exclude));
    };
    let methods = &policies.methods;
    match method {
        Method::TemporaryAccessPass => {
            let tap = &policies.tap;
            config(&mut value, tap.is_enabled, &methods.tap_targets);
            value["defaultLifetimeInMinutes"] = json!(tap.default_lifetime_minutes);
            value["defaultLength"] = json!(tap.default_length);
            value["minimumLifetimeInMinutes"] = json!(tap.minimum_lifetime_minutes);
            value["maximumLifetimeInMinutes"] = json!(tap.maximum_lifetime_minutes);
            value["isUsableOnce"] = json!(tap.is_usable_once);
        }
        Method::SoftwareOath => config(&mut value, methods.software_oath.is_enabled, &methods.software_oath.targets),
        Method::Email => {
            config(&mut value, methods.email.is_enabled, &methods.email.targets);
            value["allowExternalIdToUseEmailOtp"] = json!("disabled");
        }
        Method::Fido2 => {
            config(&mut value, methods.fido2.is_enabled, &methods.fido2.targets);
            value["isSelfServiceRegistrationAllowed"] = json!(methods.fido2_registration);
            value["isAttestationEnforced"] = json!(methods.fido2_attestation);
            let keys = &methods.fido2_keys;
            value["keyRestrictions"] = json!({
                "isEnforced": keys.is_enforced,
                "enforcementType": if keys.allow { "allow" } else { "block" },
                "aaGuids": keys.aaguids,
            });
        }
        Method::Sms | Method::Voice => {
            config(&mut value, false, &Targets::everyone());
            match method {
                Method::Sms => value["includeTargets"][0]["isUsableForSignIn"] = json!(false),
                _ => value["isOfficePhoneAllowed"] = json!(false),
            }
        }
    }
    value
}

fn policy_json(ctx: &GraphCtx, policies: &Policies) -> Value {
    let campaign = &policies.methods.campaign;
    let mut campaign_json = json!({
        "snoozeDurationInDays": campaign.snooze_days,
        "state": campaign.state.as_str(),
        "excludeTargets": exclude_json(&campaign.targets.exclude),
        "includeTargets": campaign.targets.include.iter().map(|it| json!({
            "id": it.id,
            "targetType": it.target_type.as_str(),
            "targetedAuthenticationMethod": "microsoftAuthenticator",
        })).collect::<Vec<_>>(),
    });
    if ctx.version == Version::Beta {
        campaign_json["enforceRegistrationAfterAllowedSnoozes"] = json!(campaign.enforce_after_snoozes);
    }
    json!({
        "id": "authenticationMethodsPolicy",
        "displayName": "Authentication Methods Policy",
        "description": "The tenant-wide policy that controls which authentication methods are allowed in the tenant, \
                        authentication method registration requirements, and self-service password reset settings",
        "lastModifiedDateTime": policies.methods.last_modified.map(keyward_app::rfc3339),
        "policyVersion": "1.5",
        "policyMigrationState": "migrationComplete",
        "registrationEnforcement": {"authenticationMethodsRegistrationCampaign": campaign_json},
        "authenticationMethodConfigurations@odata.context": format!(
            "{}/$metadata#policies/authenticationMethodsPolicy/authenticationMethodConfigurations",
            ctx.base()
        ),
        "authenticationMethodConfigurations":
            METHODS.iter().map(|it| config_json(*it, policies)).collect::<Vec<_>>(),
    })
}

fn policy_entity(ctx: &GraphCtx, policies: &Policies, status: StatusCode) -> Response {
    entity(
        format!("{}/$metadata#policies/authenticationMethodsPolicy/$entity", ctx.base()),
        policy_json(ctx, policies),
        status,
    )
}

/// `GET /policies/authenticationMethodsPolicy` (its configurations expanded, as Graph does).
async fn get_policy(ctx: GraphCtx) -> Result<Response, GraphError> {
    let policies = ctx.state.app.policies(&ctx.caller, PolicyObject::Methods).await?;
    Ok(policy_entity(&ctx, &policies, StatusCode::OK))
}

/// Reads a target list: objects with `targetType` and `id`, and `extra` naming what else an
/// element may carry (checked by `extra_ok`).
fn parse_targets(
    value: &Value,
    property: &str,
    extra_ok: &dyn Fn(&str, &Value) -> Result<(), AppError>,
) -> Result<Vec<Target>, AppError> {
    let list = value.as_array().ok_or_else(|| bad(format!("Property '{property}' must be an array of targets.")))?;
    list.iter()
        .map(|item| {
            let fields = item
                .as_object()
                .ok_or_else(|| bad(format!("Each of '{property}' must be an object with 'targetType' and 'id'.")))?;
            for (name, value) in fields {
                match name.as_str() {
                    "targetType" | "id" => (),
                    "@odata.type" => check_same(value, name, TARGET_TYPES)?,
                    other => extra_ok(other, value)?,
                }
            }
            let target_type = match fields.get("targetType") {
                Some(value) => value
                    .as_str()
                    .and_then(TargetType::parse)
                    .ok_or_else(|| bad(format!("targetType {value} in '{property}' must be 'user' or 'group'.")))?,
                None => TargetType::Group,
            };
            let id = fields.get("id").and_then(Value::as_str).ok_or_else(|| {
                bad(format!("Each of '{property}' needs an 'id' (a user or group id, or 'all_users')."))
            })?;
            Target::checked(target_type, id).map_err(bad)
        })
        .collect()
}

/// A method target may say `isRegistrationRequired: false` (Keyward never forces a method on a
/// user; the registration campaign asks instead).
fn method_target_field(name: &str, value: &Value) -> Result<(), AppError> {
    match (name, value) {
        ("isRegistrationRequired", Value::Bool(false)) => Ok(()),
        ("isRegistrationRequired", _) => Err(bad(
            "isRegistrationRequired must be false: Keyward does not force a method on users; use the registration \
             campaign (registrationEnforcement) to ask them to register."
                .into(),
        )),
        (other, _) => Err(bad(format!("Property '{other}' does not exist on a method target."))),
    }
}

fn no_extra(kind: &'static str) -> impl Fn(&str, &Value) -> Result<(), AppError> {
    move |name, _| Err(bad(format!("Property '{name}' does not exist on {kind}.")))
}

fn int_field(value: &Value, name: &str) -> Result<i64, AppError> {
    value.as_i64().ok_or_else(|| bad(format!("Property '{name}' must be an integer.")))
}

fn bool_field(value: &Value, name: &str) -> Result<bool, AppError> {
    value.as_bool().ok_or_else(|| bad(format!("Property '{name}' must be true or false.")))
}

fn state_field(value: &Value) -> Result<bool, AppError> {
    match value.as_str() {
        Some("enabled") => Ok(true),
        Some("disabled") => Ok(false),
        _ => Err(bad("Property 'state' must be 'enabled' or 'disabled'.".into())),
    }
}

/// Graph's `fido2KeyRestrictions`, over `old`: `isEnforced`, `enforcementType` (`allow` or
/// `block`), `aaGuids` (GUIDs; kept in lower case).
fn key_restrictions(value: &Value, old: &KeyRestrictions) -> Result<KeyRestrictions, AppError> {
    let Some(fields) = value.as_object() else {
        return Err(bad("keyRestrictions must be an object.".into()));
    };
    let mut keys = old.clone();
    for (name, value) in fields {
        match name.as_str() {
            "@odata.type" => check_same(value, "@odata.type", &["#microsoft.graph.fido2KeyRestrictions"])?,
            "isEnforced" => keys.is_enforced = bool_field(value, "keyRestrictions.isEnforced")?,
            "enforcementType" => {
                keys.allow = match value.as_str() {
                    Some("allow") => true,
                    Some("block") => false,
                    _ => return Err(bad("keyRestrictions.enforcementType must be 'allow' or 'block'.".into())),
                }
            }
            "aaGuids" => {
                let list = value.as_array().ok_or_else(|| bad("keyRestrictions.aaGuids must be an array.".into()))?;
                let mut aaguids = Vec::with_capacity(list.len());
                for it in list {
                    let guid = it
                        .as_str()
                        .and_then(|text| uuid::Uuid::parse_str(text).ok())
                        .ok_or_else(|| bad(format!("keyRestrictions.aaGuids holds {it}, which is not a GUID.")))?;
                    let text = guid.hyphenated().to_string();
                    if !aaguids.contains(&text) {
                        aaguids.push(text);
                    }
                }
                keys.aaguids = aaguids;
            }
            other => return Err(bad(format!("Property '{other}' does not exist on fido2KeyRestrictions."))),
        }
    }
    if keys.allow != old.allow && !fields.contains_key("aaGuids") && !old.aaguids.is_empty() {
        // Flipping the type alone would turn a block list into the only models allowed (or the
        // reverse): the list must be sent with it.
        return Err(bad(
            "Changing keyRestrictions.enforcementType needs the aaGuids of the new list in the same request.".into(),
        ));
    }
    Ok(keys)
}

/// Applies a PATCH of one method configuration.
fn apply_config(method: Method, patch: &Map<String, Value>, policies: &mut Policies) -> Result<(), AppError> {
    let type_name = &method.odata_type()[1..];
    if let Some(value) = patch.get("@odata.type") {
        check_same(value, "@odata.type", &[method.odata_type()])?;
    }
    if let Some(value) = patch.get("id") {
        check_same(value, "id", &[method.id()])?;
    }
    let fields = patch.iter().filter(|(name, _)| *name != "@odata.type" && *name != "id");
    if let Some(reason) = method.unavailable() {
        for (name, value) in fields {
            match (name.as_str(), value.as_str()) {
                ("state", Some("disabled")) => (),
                _ => {
                    return Err(bad(format!(
                        "The {} configuration cannot be changed: {reason}, so it stays disabled.",
                        method.id()
                    )));
                }
            }
        }
        return Ok(());
    }
    let (mut enabled, mut include, mut exclude) = (None, None, None);
    let tap = &mut policies.tap;
    for (name, value) in fields {
        match (method, name.as_str()) {
            (_, "state") => enabled = Some(state_field(value)?),
            (_, "includeTargets") => include = Some(parse_targets(value, name, &method_target_field)?),
            (_, "excludeTargets") => exclude = Some(parse_targets(value, name, &no_extra("an exclude target"))?),
            (Method::TemporaryAccessPass, "defaultLifetimeInMinutes") => {
                tap.default_lifetime_minutes = int_field(value, name)?;
            }
            (Method::TemporaryAccessPass, "defaultLength") => tap.default_length = int_field(value, name)?,
            (Method::TemporaryAccessPass, "minimumLifetimeInMinutes") => {
                tap.minimum_lifetime_minutes = int_field(value, name)?;
            }
            (Method::TemporaryAccessPass, "maximumLifetimeInMinutes") => {
                tap.maximum_lifetime_minutes = int_field(value, name)?;
            }
            (Method::TemporaryAccessPass, "isUsableOnce") => tap.is_usable_once = bool_field(value, name)?,
            (Method::Fido2, "isSelfServiceRegistrationAllowed") => {
                policies.methods.fido2_registration = bool_field(value, name)?;
            }
            (Method::Fido2, "isAttestationEnforced") => {
                policies.methods.fido2_attestation = bool_field(value, name)?;
            }
            (Method::Fido2, "keyRestrictions") => {
                policies.methods.fido2_keys = key_restrictions(value, &policies.methods.fido2_keys)?;
            }
            (Method::Email, "allowExternalIdToUseEmailOtp") => match value.as_str() {
                Some("disabled" | "default") => (),
                _ => {
                    return Err(bad(
                        "allowExternalIdToUseEmailOtp can only be 'disabled' (or 'default'): Keyward has no external \
                         (B2B) users to send one-time codes to."
                            .into(),
                    ));
                }
            },
            (_, other) => {
                return Err(bad(format!("Property '{other}' does not exist on type '{type_name}'.")));
            }
        }
    }
    let methods = &mut policies.methods;
    let (config_enabled, targets) = match method {
        Method::TemporaryAccessPass => (&mut policies.tap.is_enabled, &mut methods.tap_targets),
        Method::SoftwareOath => (&mut methods.software_oath.is_enabled, &mut methods.software_oath.targets),
        Method::Fido2 => (&mut methods.fido2.is_enabled, &mut methods.fido2.targets),
        _ => (&mut methods.email.is_enabled, &mut methods.email.targets),
    };
    if let Some(enabled) = enabled {
        *config_enabled = enabled;
    }
    if let Some(include) = include {
        targets.include = include;
    }
    if let Some(exclude) = exclude {
        targets.exclude = exclude;
    }
    Ok(())
}

/// `GET …/authenticationMethodConfigurations/{id}`.
async fn get_config(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let method = Method::find(&id)?;
    let policies = ctx.state.app.policies(&ctx.caller, PolicyObject::Methods).await?;
    Ok(entity(
        format!(
            "{}/$metadata#policies/authenticationMethodsPolicy/authenticationMethodConfigurations/$entity",
            ctx.base()
        ),
        config_json(method, &policies),
        StatusCode::OK,
    ))
}

/// `GET …/authenticationMethodConfigurations`.
async fn list_configs(ctx: GraphCtx) -> Result<Response, GraphError> {
    let policies = ctx.state.app.policies(&ctx.caller, PolicyObject::Methods).await?;
    Ok(entity(
        format!("{}/$metadata#policies/authenticationMethodsPolicy/authenticationMethodConfigurations", ctx.base()),
        json!({"value": METHODS.iter().map(|it| config_json(*it, &policies)).collect::<Vec<_>>()}),
        StatusCode::OK,
    ))
}

/// `PATCH …/authenticationMethodConfigurations/{id}` (204).
async fn patch_config(ctx: GraphCtx, Path(id): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let method = Method::find(&id)?;
    let patch = body_object(&body)?.clone();
    ctx.state
        .app
        .update_policies(&ctx.caller, PolicyObject::Methods, |policies| apply_config(method, &patch, policies))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE …/authenticationMethodConfigurations/{id}` (204): back to Keyward's defaults (on, for
/// every user; the pass's default lifetimes and length).
async fn delete_config(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let method = Method::find(&id)?;
    ctx.state
        .app
        .update_policies(&ctx.caller, PolicyObject::Methods, |policies| {
            let methods = &mut policies.methods;
            match method {
                Method::TemporaryAccessPass => {
                    policies.tap = TapPolicy::default();
                    methods.tap_targets = Targets::everyone();
                }
                Method::SoftwareOath => methods.software_oath = MethodConfig::everyone(),
                Method::Email => methods.email = MethodConfig::everyone(),
                Method::Fido2 => {
                    let defaults = MethodsPolicy::default();
                    (methods.fido2, methods.fido2_registration) = (defaults.fido2, defaults.fido2_registration);
                    methods.fido2_keys = defaults.fido2_keys;
                    methods.fido2_attestation = defaults.fido2_attestation;
                }
                Method::Sms | Method::Voice => (),
            }
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Applies a PATCH of the policy itself: the registration campaign and the migration state.
fn apply_policy(version: Version, patch: &Map<String, Value>, policies: &mut Policies) -> Result<(), AppError> {
    for (name, value) in patch {
        match name.as_str() {
            "@odata.type" => check_same(value, name, &["#microsoft.graph.authenticationMethodsPolicy"])?,
            "id" => check_same(value, name, &["authenticationMethodsPolicy"])?,
            "policyMigrationState" => match value.as_str() {
                Some("migrationComplete") => (),
                _ => {
                    return Err(bad(
                        "policyMigrationState can only be 'migrationComplete': Keyward has no legacy MFA and SSPR \
                         policies, so this policy alone governs methods."
                            .into(),
                    ));
                }
            },
            "registrationEnforcement" => {
                let enforcement = body_object(value)?;
                for (name, value) in enforcement {
                    if name == "@odata.type" {
                        check_same(value, name, &["#microsoft.graph.registrationEnforcement"])?;
                        continue;
                    }
                    if name != "authenticationMethodsRegistrationCampaign" {
                        return Err(bad(format!("Property '{name}' does not exist on registrationEnforcement.")));
                    }
                    apply_campaign(version, body_object(value)?, policies)?;
                }
            }
            "authenticationMethodConfigurations" => {
                return Err(bad(format!(
                    "Update each method configuration at its own address ({CONFIGURATIONS}/{{id}})."
                )));
            }
            other => {
                return Err(bad(format!(
                    "Property '{other}' of authenticationMethodsPolicy is read-only or not supported by Keyward; \
                     registrationEnforcement and policyMigrationState can be changed."
                )));
            }
        }
    }
    Ok(())
}

fn apply_campaign(version: Version, patch: &Map<String, Value>, policies: &mut Policies) -> Result<(), AppError> {
    let campaign = &mut policies.methods.campaign;
    for (name, value) in patch {
        match name.as_str() {
            "@odata.type" => check_same(value, name, &["#microsoft.graph.authenticationMethodsRegistrationCampaign"])?,
            "state" => {
                campaign.state = value
                    .as_str()
                    .and_then(CampaignState::parse)
                    .ok_or_else(|| bad("The campaign's 'state' must be 'default', 'enabled' or 'disabled'.".into()))?;
            }
            "snoozeDurationInDays" => campaign.snooze_days = int_field(value, name)?,
            "enforceRegistrationAfterAllowedSnoozes" if version == Version::Beta => {
                campaign.enforce_after_snoozes = bool_field(value, name)?;
            }
            "includeTargets" => {
                campaign.targets.include = parse_targets(value, name, &|name, value| match (name, value.as_str()) {
                    ("targetedAuthenticationMethod", Some("microsoftAuthenticator")) => Ok(()),
                    ("targetedAuthenticationMethod", _) => Err(bad(
                        "targetedAuthenticationMethod must be 'microsoftAuthenticator': the campaign asks users to \
                         set up an authenticator app, the method Keyward has."
                            .into(),
                    )),
                    (other, _) => Err(bad(format!("Property '{other}' does not exist on a campaign target."))),
                })?;
            }
            "excludeTargets" => {
                campaign.targets.exclude = parse_targets(value, name, &no_extra("an exclude target"))?;
            }
            other => {
                return Err(bad(format!(
                    "Property '{other}' does not exist on authenticationMethodsRegistrationCampaign{}.",
                    if other == "enforceRegistrationAfterAllowedSnoozes" {
                        " in v1.0 (it is a beta property)"
                    } else {
                        ""
                    }
                )));
            }
        }
    }
    Ok(())
}

/// `PATCH /policies/authenticationMethodsPolicy` (200 with the policy).
async fn patch_policy(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let patch = body_object(&body)?.clone();
    let version = ctx.version;
    let policies = ctx
        .state
        .app
        .update_policies(&ctx.caller, PolicyObject::Methods, |policies| apply_policy(version, &patch, policies))
        .await?;
    Ok(policy_entity(&ctx, &policies, StatusCode::OK))
}

/// `GET /policies/identitySecurityDefaultsEnforcementPolicy`: on when Keyward requires MFA of
/// every user.
async fn get_security_defaults(ctx: GraphCtx) -> Result<Response, GraphError> {
    let policies = ctx.state.app.policies(&ctx.caller, PolicyObject::SecurityDefaults).await?;
    Ok(entity(
        format!("{}/$metadata#policies/identitySecurityDefaultsEnforcementPolicy/$entity", ctx.base()),
        json!({
            "id": SECURITY_DEFAULTS_ID,
            "displayName": "Security Defaults",
            "description": "Security defaults is a set of basic identity security mechanisms recommended by \
                            Microsoft. When enabled, these recommendations will be automatically enforced in your \
                            organization. Administrators and users will be better protected from common identity \
                            related attacks.",
            "isEnabled": policies.sign_in.mfa_for_everyone,
        }),
        StatusCode::OK,
    ))
}

/// `PATCH /policies/identitySecurityDefaultsEnforcementPolicy` (`isEnabled`, 204).
async fn patch_security_defaults(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let patch = body_object(&body)?.clone();
    ctx.state
        .app
        .update_policies(&ctx.caller, PolicyObject::SecurityDefaults, |policies| {
            for (name, value) in &patch {
                match name.as_str() {
                    "@odata.type" => {
                        check_same(value, name, &["#microsoft.graph.identitySecurityDefaultsEnforcementPolicy"])?;
                    }
                    "id" => check_same(value, name, &[SECURITY_DEFAULTS_ID])?,
                    "isEnabled" => policies.sign_in.mfa_for_everyone = bool_field(value, name)?,
                    other => {
                        return Err(bad(format!(
                            "Property '{other}' of identitySecurityDefaultsEnforcementPolicy is read-only; only \
                             isEnabled can be changed."
                        )));
                    }
                }
            }
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const ROOT: &str = "/policies/authenticationMethodsPolicy";
    const CONFIG: &str = "/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/{id}";
    const DEFAULTS: &str = "/policies/identitySecurityDefaultsEnforcementPolicy";
    const DEFAULTS_UPDATE: &str = "microsoft.directory/conditionalAccessPolicies/tenantDefault/update";
    api.route(
        ROOT,
        get(get_policy),
        Op::get("policies", "Get the authentication methods policy", POLICY_ALL, "AuthenticationMethodsPolicy"),
    )
    .route(
        ROOT,
        patch(patch_policy),
        Op::patch(
            "policies",
            "Update the registration campaign (registrationEnforcement); answers 200 with the policy",
            POLICY_ALL,
            "AuthenticationMethodsPolicy",
        )
        .with_status(200, "AuthenticationMethodsPolicy"),
    )
    .route(
        CONFIGURATIONS,
        get(list_configs),
        Op::get(
            "policies",
            "List the method configurations",
            POLICY_ALL,
            "AuthenticationMethodConfigurationCollection",
        ),
    )
    .route(
        CONFIG,
        get(get_config),
        Op::get(
            "policies",
            "Get a method configuration (TemporaryAccessPass, SoftwareOath, Email, Sms, Voice, Fido2)",
            POLICY_ALL,
            "AuthenticationMethodConfiguration",
        )
        .with_id(),
    )
    .route(
        CONFIG,
        patch(patch_config),
        Op::patch(
            "policies",
            "Update a method configuration: state, includeTargets, excludeTargets and the method's settings",
            POLICY_ALL,
            "AuthenticationMethodConfiguration",
        )
        .with_id(),
    )
    .route(
        CONFIG,
        delete(delete_config),
        Op::delete("policies", "Revert a method configuration to its defaults", POLICY_ALL).with_id(),
    )
    .route(
        DEFAULTS,
        get(get_security_defaults),
        Op::get("policies", "Get security defaults (MFA for every user)", DEFAULTS_UPDATE, "SecurityDefaultsPolicy"),
    )
    .route(
        DEFAULTS,
        patch(patch_security_defaults),
        Op::patch(
            "policies",
            "Turn security defaults on or off (isEnabled)",
            DEFAULTS_UPDATE,
            "SecurityDefaultsPolicy",
        ),
    )
}
