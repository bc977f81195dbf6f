//! The tenant's authentication policies, read and changed as one: Keyward's sign-in policy, the
//! Temporary Access Pass settings and the authentication methods policy (targets and the
//! registration campaign), with security defaults (Graph's
//! `identitySecurityDefaultsEnforcementPolicy`) mapped onto "MFA for everyone". Also what the
//! methods policy lets one user register and use.

use keyward_core::agent_limits::AgentLimits;
use keyward_core::audit::{Activity, AuditRecord, TargetResource};
use keyward_core::authz::Target as AuthzTarget;
use keyward_core::directory::PropertyChange;
use keyward_core::ids::ObjectId;
use keyward_core::json;
use keyward_core::methods_policy::{MethodsPolicy, Target, TargetType, Targets};
use keyward_core::signin::{SignInPolicy, TapPolicy};
use keyward_store::Tx;

use crate::commit_audited;
use crate::{App, AppError, Caller, require};

/// Managing the tenant's authentication policies (Authentication Policy Administrator, Global
/// Administrator).
pub(crate) const STRONG_AUTHENTICATION_POLICY: &str = "microsoft.directory/organization/strongAuthentication/allTasks";
/// Reading them too (Global Reader).
pub(crate) const ORGANIZATION_READ_ALL: &str = "microsoft.directory/organization/allProperties/read";
/// Turning security defaults on or off (Security Administrator, Conditional Access
/// Administrator, Global Administrator).
const SECURITY_DEFAULTS_UPDATE: &str = "microsoft.directory/conditionalAccessPolicies/tenantDefault/update";
/// Reading policies (Global Reader, Conditional Access Administrator, Security Reader's
/// equivalent).
const POLICIES_READ: &str = "microsoft.directory/policies/allProperties/read";

/// The tenant's sign-in policies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policies {
    pub sign_in: SignInPolicy,
    pub tap: TapPolicy,
    pub methods: MethodsPolicy,
    /// Per-agent limits (`keywardServiceDeskPolicy`).
    pub agents: AgentLimits,
    /// Dual control (`keywardServiceDeskPolicy` too).
    pub dual_control: keyward_core::dual_control::DualControl,
    /// Caller verification (`keywardServiceDeskPolicy.callerVerificationEnabled`).
    pub caller_verification: keyward_core::caller_verification::Policy,
}

/// Which policy object a caller reads or changes: it decides the permission needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyObject {
    /// The authentication methods policy, its configurations and Keyward's sign-in policy.
    Methods,
    /// Security defaults.
    SecurityDefaults,
}

/// What the methods policy lets one user register and use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserMethods {
    /// Whether the Temporary Access Pass's targets name the user (whether the method is on is
    /// [`TapPolicy::is_enabled`]).
    pub tap: bool,
    pub software_oath: bool,
    pub email: bool,
    /// Sign in with a passkey.
    pub fido2: bool,
    /// Register a passkey (through the pages or Graph): passkeys on for the user and
    /// registration allowed.
    pub fido2_registration: bool,
    /// Whether the registration campaign targets the user.
    pub campaign: bool,
}

impl UserMethods {
    /// Whether the user may register a strong method at the registration interrupt.
    pub(crate) fn can_register(&self) -> bool {
        self.software_oath || self.fido2_registration
    }

    /// These methods without passkeys (when the server has no relying party to offer them for).
    pub(crate) fn without_passkeys(self) -> UserMethods {
        UserMethods { fido2: false, fido2_registration: false, ..self }
    }
}

/// What `policy` lets `user` do; group targets are checked by direct membership, one lookup per
/// group the policy names (none for the default policy).
pub(crate) async fn user_methods(
    tx: &mut dyn Tx,
    user: &ObjectId,
    policy: &MethodsPolicy,
) -> Result<UserMethods, AppError> {
    let mut member_of = Vec::new();
    for group in policy.groups() {
        if let Some(id) = ObjectId::parse(group)
            && tx.is_member(&id, user).await?
        {
            member_of.push(group.to_owned());
        }
    }
    let is_member = |group: &str| member_of.iter().any(|it| it == group);
    let user = user.as_str();
    Ok(UserMethods {
        tap: policy.tap_targets.apply_to(user, is_member),
        software_oath: policy.software_oath.allows(user, is_member),
        email: policy.email.allows(user, is_member),
        fido2: policy.fido2.allows(user, is_member),
        fido2_registration: policy.fido2_registration && policy.fido2.allows(user, is_member),
        campaign: policy.campaign.targets.apply_to(user, is_member),
    })
}

/// Whether the tenant's Temporary Access Pass settings (`tap`) and its targets let `user` sign
/// in with a pass (a pass's `methodUsabilityReason` is `DisabledByPolicy` otherwise).
pub(crate) async fn pass_enabled_for(
    tx: &mut dyn Tx,
    tenant: &ObjectId,
    user: &ObjectId,
    tap: &TapPolicy,
) -> Result<bool, AppError> {
    if !tap.is_enabled {
        return Ok(false);
    }
    let policy = tx.methods_policy(tenant).await?;
    Ok(user_methods(tx, user, &policy).await?.tap)
}

/// A read of a policy: one of `actions` by role (a write action counts: whoever may change a
/// policy may read it), and a delegated token must carry one of `scopes`, Graph's permissions
/// for reading it (a role's write action must not make a read-only token insufficient, nor a
/// `User.Read` token enough).
fn require_read(caller: &Caller, actions: &[&'static str], scopes: &[&str]) -> Result<(), AppError> {
    if let Some(granted) = &caller.scopes
        && !granted.iter().any(|it| scopes.iter().any(|scope| it.eq_ignore_ascii_case(scope)))
    {
        return Err(AppError::Forbidden {
            rule: "token_scope",
            message: format!(
                "{} The access token's permissions (scp) do not include {}; ask for one of them (rule: token-scope).",
                keyward_core::authz::INSUFFICIENT_PRIVILEGES,
                scopes.join(" or ")
            ),
        });
    }
    let by_role = Caller { scopes: None, ..caller.clone() };
    let mut refusal = None;
    for action in actions {
        match require(&by_role, action, AuthzTarget::Tenant) {
            Ok(()) => return Ok(()),
            Err(err) => refusal = Some(err),
        }
    }
    Err(refusal.unwrap_or_else(|| AppError::BadRequest("no permission names this read".into())))
}

fn policy_target(display_name: &str, tenant: &ObjectId) -> TargetResource {
    TargetResource {
        id: tenant.clone(),
        display_name: Some(display_name.into()),
        kind: "Policy",
        user_principal_name: None,
        modified_properties: Vec::new(),
    }
}

/// Targets of `new` that `old` does not have.
fn added<'a>(old: &'a Targets, new: &'a Targets) -> impl Iterator<Item = &'a Target> {
    new.include.iter().chain(&new.exclude).filter(|it| !old.include.contains(it) && !old.exclude.contains(it))
}

impl App {
    /// The tenant's policies: for [`PolicyObject::Methods`] readable by whoever manages them and
    /// by Global Reader; for security defaults also by whoever may turn them on or off and by
    /// policy readers.
    pub async fn policies(&self, caller: &Caller, object: PolicyObject) -> Result<Policies, AppError> {
        match object {
            PolicyObject::Methods => require_read(
                caller,
                &[STRONG_AUTHENTICATION_POLICY, ORGANIZATION_READ_ALL],
                &["Policy.Read.All", "Policy.ReadWrite.AuthenticationMethod"],
            )?,
            PolicyObject::SecurityDefaults => require_read(
                caller,
                &[STRONG_AUTHENTICATION_POLICY, ORGANIZATION_READ_ALL, POLICIES_READ, SECURITY_DEFAULTS_UPDATE],
                &["Policy.Read.All", "Policy.ReadWrite.ConditionalAccess"],
            )?,
        }
        let mut tx = self.read().await?;
        let (sign_in, tap) = tx.sign_in_policy(&caller.tenant.id).await?;
        let methods = tx.methods_policy(&caller.tenant.id).await?;
        let agents = tx.agent_limits(&caller.tenant.id).await?;
        let dual_control = tx.dual_control_policy(&caller.tenant.id).await?;
        let caller_verification = tx.caller_verification_policy(&caller.tenant.id).await?;
        Ok(Policies { sign_in, tap, methods, agents, dual_control, caller_verification })
    }

    /// Changes the tenant's policies: `change` edits the current ones; the result must be within
    /// bounds and name only existing users and groups. Changing `object` needs its permission;
    /// turning "MFA for everyone" (security defaults) on or off also needs security defaults'.
    /// Audited as `Update security defaults` and `Authentication Methods Policy Update`, each
    /// when its part changed, in the transaction that changes it.
    pub async fn update_policies(
        &self,
        caller: &Caller,
        object: PolicyObject,
        change: impl FnOnce(&mut Policies) -> Result<(), AppError>,
    ) -> Result<Policies, AppError> {
        let now = self.now();
        let tenant = caller.tenant.id.clone();
        let tx = self.write().await?;
        let (activity, action, name) = match object {
            PolicyObject::Methods => (
                Activity::AuthenticationMethodsPolicyUpdate,
                STRONG_AUTHENTICATION_POLICY,
                "Authentication methods policy",
            ),
            PolicyObject::SecurityDefaults => {
                (Activity::UpdateSecurityDefaults, SECURITY_DEFAULTS_UPDATE, "Security Defaults")
            }
        };
        if let Err(err) = require(caller, action, AuthzTarget::Tenant) {
            return Err(self.refused(Some(tx), caller, activity, vec![policy_target(name, &tenant)], err).await);
        }
        let mut tx = tx;
        tx.lock_policy_changes(&tenant).await?;
        let (sign_in, tap) = tx.sign_in_policy(&tenant).await?;
        let old = Policies {
            sign_in,
            tap,
            methods: tx.methods_policy(&tenant).await?,
            agents: tx.agent_limits(&tenant).await?,
            dual_control: tx.dual_control_policy(&tenant).await?,
            caller_verification: tx.caller_verification_policy(&tenant).await?,
        };
        let mut new = old.clone();
        change(&mut new)?;
        new.sign_in.validate().map_err(AppError::BadRequest)?;
        new.tap.validate().map_err(AppError::BadRequest)?;
        new.methods.validate().map_err(AppError::BadRequest)?;
        new.dual_control.validate().map_err(AppError::BadRequest)?;
        if let Some(group) = &new.dual_control.group_id
            && old.dual_control.group_id.as_ref() != Some(group)
            && tx.get_group(&tenant, group).await?.is_none()
        {
            return Err(AppError::BadRequest(format!(
                "The group '{group}' named in dualControlGroupId does not exist in this tenant."
            )));
        }
        if new.methods.fido2_attestation
            && !old.methods.fido2_attestation
            && self.config().fido_attestation_roots.is_empty()
        {
            return Err(AppError::BadRequest(
                "isAttestationEnforced needs the FIDO attestation roots to check passkeys against: start the server \
                 with --fido-roots FILE (or KEYWARD_FIDO_ROOTS), a PEM bundle of the roots from the FIDO Metadata \
                 Service, then turn it on."
                    .into(),
            ));
        }
        let defaults_changed = new.sign_in.mfa_for_everyone != old.sign_in.mfa_for_everyone;
        let rest_changed = new.tap != old.tap
            || new.methods != old.methods
            || new.agents != old.agents
            || new.dual_control != old.dual_control
            || new.caller_verification != old.caller_verification
            || SignInPolicy { mfa_for_everyone: old.sign_in.mfa_for_everyone, ..new.sign_in.clone() } != old.sign_in;
        if defaults_changed
            && object != PolicyObject::SecurityDefaults
            && let Err(err) = require(caller, SECURITY_DEFAULTS_UPDATE, AuthzTarget::Tenant)
        {
            let target = policy_target("Security Defaults", &tenant);
            return Err(self.refused(Some(tx), caller, Activity::UpdateSecurityDefaults, vec![target], err).await);
        }
        if rest_changed
            && object != PolicyObject::Methods
            && let Err(err) = require(caller, STRONG_AUTHENTICATION_POLICY, AuthzTarget::Tenant)
        {
            let target = policy_target("Authentication methods policy", &tenant);
            return Err(self
                .refused(Some(tx), caller, Activity::AuthenticationMethodsPolicyUpdate, vec![target], err)
                .await);
        }
        let methods = &new.methods;
        let old_methods = &old.methods;
        let pairs = [
            (&old_methods.tap_targets, &methods.tap_targets),
            (&old_methods.software_oath.targets, &methods.software_oath.targets),
            (&old_methods.email.targets, &methods.email.targets),
            (&old_methods.fido2.targets, &methods.fido2.targets),
            (&old_methods.campaign.targets, &methods.campaign.targets),
        ];
        for target in pairs.iter().flat_map(|(old, new)| added(old, new)) {
            let exists = match (target.target_type, ObjectId::parse(&target.id)) {
                (TargetType::Group, None) => true, // all_users
                (TargetType::Group, Some(id)) => tx.get_group(&tenant, &id).await?.is_some(),
                (TargetType::User, Some(id)) => tx.get_user(&tenant, &id).await?.is_some(),
                (TargetType::User, None) => false,
            };
            if !exists {
                return Err(AppError::BadRequest(format!(
                    "The {} '{}' named as a target does not exist in this tenant.",
                    target.target_type.as_str(),
                    target.id
                )));
            }
        }
        if new == old {
            return Ok(new);
        }
        // The pass's settings are part of the methods policy too, though stored with the sign-in
        // policy: a change to them moves `lastModifiedDateTime` as well.
        if new.methods != old.methods || new.tap != old.tap {
            new.methods.last_modified = Some(now);
            tx.set_methods_policy(&tenant, &new.methods).await?;
        }
        if new.sign_in != old.sign_in || new.tap != old.tap {
            tx.set_sign_in_policy(&tenant, &new.sign_in, &new.tap).await?;
        }
        if new.agents != old.agents {
            tx.set_agent_limits(&tenant, &new.agents).await?;
        }
        if new.dual_control != old.dual_control {
            tx.set_dual_control_policy(&tenant, &new.dual_control).await?;
        }
        if new.caller_verification != old.caller_verification {
            tx.set_caller_verification_policy(&tenant, &new.caller_verification).await?;
        }
        let mut records: Vec<AuditRecord> = Vec::new();
        if defaults_changed {
            let change = PropertyChange {
                name: "IsEnabled".into(),
                old_value: Some(old.sign_in.mfa_for_everyone.to_string()),
                new_value: Some(new.sign_in.mfa_for_everyone.to_string()),
            };
            let target = policy_target("Security Defaults", &tenant).with_changes(vec![change]);
            records.push(caller.succeeded(now, Activity::UpdateSecurityDefaults, vec![target]));
        }
        if rest_changed {
            let mut changes = changed_fields("SignInPolicy", &old.sign_in, &new.sign_in);
            changes.extend(changed_fields("TemporaryAccessPass", &old.tap, &new.tap));
            // Its `lastModifiedDateTime` moves with any change: not a change of its own.
            let before = MethodsPolicy { last_modified: new.methods.last_modified, ..old.methods.clone() };
            changes.extend(changed_fields("AuthenticationMethodsPolicy", &before, &new.methods));
            changes.extend(changed_fields("AgentLimits", &old.agents, &new.agents));
            changes.extend(changed_fields("DualControl", &old.dual_control, &new.dual_control));
            changes.extend(changed_fields("CallerVerification", &old.caller_verification, &new.caller_verification));
            let target = policy_target("Authentication methods policy", &tenant).with_changes(changes);
            records.push(caller.succeeded(now, Activity::AuthenticationMethodsPolicyUpdate, vec![target]));
        }
        for record in &records {
            tx.insert_audit(record).await?;
        }
        commit_audited(tx, []).await?;
        Ok(new)
    }

    /// What the methods policy lets `user` register and use now.
    pub(crate) async fn user_methods(&self, tenant: &ObjectId, user: &ObjectId) -> Result<UserMethods, AppError> {
        let mut tx = self.read().await?;
        let policy = tx.methods_policy(tenant).await?;
        self.usable_methods(&mut *tx, user, &policy).await
    }

    /// What `policy` lets `user` do on this server: passkeys only while the public URL names a
    /// host (a relying party browsers accept).
    pub(crate) async fn usable_methods(
        &self,
        tx: &mut dyn Tx,
        user: &ObjectId,
        policy: &MethodsPolicy,
    ) -> Result<UserMethods, AppError> {
        let methods = user_methods(tx, user, policy).await?;
        Ok(if self.relying_party().is_ok() { methods } else { methods.without_passkeys() })
    }
}

/// The settings that differ between two states of a policy, one modified property each
/// (`Prefix.field`, old and new value): only what changed reaches the audit log, not the rest
/// of the tenant's settings. Fields are read from the policy's `{:#?}` form, where each
/// top-level field starts on a line of its own indented by four spaces.
fn changed_fields<T: std::fmt::Debug + PartialEq>(prefix: &str, old: &T, new: &T) -> Vec<PropertyChange> {
    fn fields(text: &str) -> Vec<(String, String)> {
        let mut res: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            let top = line.strip_prefix("    ").filter(|it| !it.starts_with(' '));
            match (top.and_then(|it| it.split_once(": ")), res.last_mut()) {
                (Some((name, value)), _) => res.push((name.to_owned(), value.to_owned())),
                (None, Some((_, value))) if line.starts_with("     ") || top.is_some() => {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                _ => (),
            }
        }
        for (_, value) in &mut res {
            let trimmed = value.trim_end_matches(',').to_owned();
            *value = trimmed;
        }
        res
    }
    // Numbers, booleans and strings are JSON as they are; anything else is JSON text.
    fn as_json(value: &str) -> String {
        match value {
            "None" => "null".to_owned(),
            _ if serde_json::from_str::<serde_json::Value>(value).is_ok() => value.to_owned(),
            _ => json::string(value),
        }
    }
    if old == new {
        return Vec::new();
    }
    let (before, after) = (fields(&format!("{old:#?}")), fields(&format!("{new:#?}")));
    let mut res: Vec<PropertyChange> = after
        .iter()
        .filter(|(name, value)| before.iter().find(|(it, _)| it == name).is_none_or(|(_, it)| it != value))
        .map(|(name, value)| PropertyChange {
            name: format!("{prefix}.{name}"),
            old_value: before.iter().find(|(it, _)| it == name).map(|(_, it)| as_json(it)),
            new_value: Some(as_json(value)),
        })
        .collect();
    if res.is_empty() {
        // A change the field-by-field reading cannot show: named, never printed whole (a
        // setting added later might hold what the log must not).
        res.push(PropertyChange { name: prefix.to_owned(), old_value: None, new_value: None });
    }
    res
}

#[cfg(test)]
mod audit_tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Inner {
        a: u32,
        b: Vec<&'static str>,
    }

    #[derive(Debug, PartialEq)]
    struct Outer {
        threshold: u32,
        inner: Inner,
        name: Option<&'static str>,
    }

    #[test]
    fn only_changed_fields_are_named() {
        let old = Outer { threshold: 10, inner: Inner { a: 1, b: vec!["x"] }, name: None };
        let new = Outer { threshold: 10, inner: Inner { a: 2, b: vec!["x"] }, name: None };
        let changes = changed_fields("P", &old, &new);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].name, "P.inner");
        let (before, after) =
            (changes[0].old_value.as_deref().expect("old"), changes[0].new_value.as_deref().expect("new"));
        assert!(before.contains("a: 1") && after.contains("a: 2") && !after.contains("threshold"), "{before} {after}");
        let counted = changed_fields(
            "P",
            &Outer { threshold: 11, ..new },
            &Outer { threshold: 12, inner: Inner { a: 2, b: vec!["x"] }, name: None },
        );
        assert_eq!((counted[0].old_value.as_deref(), counted[0].new_value.as_deref()), (Some("11"), Some("12")));
        assert!(changed_fields("P", &old, &old).is_empty());
        let renamed = Outer { name: Some("n"), ..old };
        let changes =
            changed_fields("P", &Outer { threshold: 10, inner: Inner { a: 1, b: vec!["x"] }, name: None }, &renamed);
        assert_eq!(changes.iter().map(|it| it.name.as_str()).collect::<Vec<_>>(), ["P.name"]);
    }
}
