//! The service desk's operations on a user's authentication methods (Graph's
//! `/users/{id}/authentication/…`): listing methods, the password method and `resetPassword`,
//! software OATH methods, and Temporary Access Passes. Each is authorised by the core with
//! Entra's actions and target rules and audited with Entra's strings; a refusal is recorded as a
//! failure. Secrets (passes, passwords, TOTP seeds) never reach reads or audit values.

use keyward_core::agent_limits::AgentAction;
use keyward_core::audit::{Activity, AuditRecord, TargetResource};
use keyward_core::auth_methods::{
    EMAIL_METHOD_ID, PhoneType, TapRequest, check_phone_add, check_phone_delete, mask_email_address, mask_phone_number,
    plan_tap, validate_phone_number,
};
use keyward_core::authz::{Target, actions};
use keyward_core::directory::{PropertyChange, User};
use keyward_core::ids::ObjectId;
use keyward_core::secret::Secret;
use keyward_core::signin::{self, SecondaryMethod, SignInPreferences, TapUsability};
use keyward_core::{json, password};
use keyward_store::{TemporaryAccessPass, Tx};
use time::{Duration, OffsetDateTime};

use crate::commit_audited;
use crate::directory::resolve_user;
use crate::dual_control::{Gate, Kept};
use crate::facts::user_facts;
use crate::methods_policy::{pass_enabled_for, user_methods};
use crate::setup::{PASSWORD_ALPHABET, TAP_ALPHABET, random_string};
use crate::{App, AppError, Caller, new_id, require, require_scope, rfc3339};
use keyward_core::caller_verification::Change as VerifiedChange;
use keyward_core::dual_control::{MethodKind, Operation};

/// A Temporary Access Pass as Graph shows it; `pass` only in the creation response.
#[derive(Debug, Clone)]
pub struct TapView {
    pub id: ObjectId,
    pub created: OffsetDateTime,
    pub start: OffsetDateTime,
    pub lifetime_minutes: i64,
    pub is_usable_once: bool,
    pub usability: TapUsability,
    pub pass: Option<Secret>,
}

/// A software OATH (authenticator app) method; its secret is never shown.
#[derive(Debug, Clone)]
pub struct OathView {
    pub id: ObjectId,
    pub created: OffsetDateTime,
}

/// A phone method (its number masked for `restrictedRead` holders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneView {
    pub phone_type: PhoneType,
    pub number: String,
}

/// One of a user's authentication methods.
#[derive(Debug, Clone)]
pub enum AuthMethod {
    Password { created: Option<OffsetDateTime> },
    Phone(PhoneView),
    Email { address: String },
    SoftwareOath(OathView),
    TemporaryAccessPass(TapView),
    Passkey(crate::passkeys::PasskeyView),
}

/// The outcome of `resetPassword`: the operation id and, when Keyward chose the password, the
/// password (shown once).
#[derive(Debug, Clone)]
pub struct PasswordReset {
    pub operation_id: ObjectId,
    pub generated: Option<Secret>,
}

/// Whose methods a change is about: a user an administrator names, or the caller's own (`/me`,
/// self-service, which needs MFA within the last ten minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who<'a> {
    User(&'a str),
    Me,
}

/// The kind of change to a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Register,
    Update,
    Delete,
}

impl Change {
    fn action(self) -> &'static str {
        match self {
            Change::Register => actions::USERS_AUTH_METHODS_CREATE,
            Change::Update => actions::USERS_AUTH_METHODS_UPDATE,
            Change::Delete => actions::USERS_AUTH_METHODS_DELETE,
        }
    }

    fn activity(self, who: Who<'_>) -> Activity {
        match (self, who) {
            (Change::Register, Who::User(_)) => Activity::AdminRegisteredSecurityInfo,
            (Change::Update, Who::User(_)) => Activity::AdminUpdatedSecurityInfo,
            (Change::Delete, Who::User(_)) => Activity::AdminDeletedSecurityInfo,
            (Change::Register, Who::Me) => Activity::UserRegisteredSecurityInfo,
            (Change::Update, Who::Me) => Activity::UserUpdatedSecurityInfo,
            (Change::Delete, Who::Me) => Activity::UserDeletedSecurityInfo,
        }
    }

    /// Entra's `resultReason` ("Admin registered … method for user"; the user's own changes
    /// read "User registered … method").
    pub(crate) fn reason(self, who: Who<'_>, method: &str) -> String {
        let verb = match self {
            Change::Register => "registered",
            Change::Update => "updated",
            Change::Delete => "deleted",
        };
        match who {
            Who::User(_) => format!("Admin {verb} {method} method for user"),
            Who::Me => format!("User {verb} {method} method"),
        }
    }
}

/// A fresh pass of the policy's length.
fn new_pass(policy: &keyward_core::signin::TapPolicy) -> Result<Secret, AppError> {
    let length = usize::try_from(policy.default_length).unwrap_or(8);
    Ok(Secret::new(random_string(TAP_ALPHABET, length)?))
}

/// A password Keyward chooses for a user: 16 random characters that meet the password policy
/// (which also refuses parts of the user's `names`).
pub(crate) fn generate_password(names: &[&str]) -> Result<Secret, AppError> {
    loop {
        let candidate = Secret::new(random_string(PASSWORD_ALPHABET, 16)?);
        if password::check(candidate.expose(), names).is_ok() {
            return Ok(candidate);
        }
    }
}

/// How recent a sign-in with MFA self-service changes need (Entra's registration interrupt: users with a method
/// must do MFA before changing their security info).
const RECENT_MFA: Duration = Duration::minutes(10);

/// Changes to one's own security info need MFA within [`RECENT_MFA`], whatever one's roles.
pub(crate) fn require_recent_mfa(caller: &Caller, now: OffsetDateTime) -> Result<(), AppError> {
    if caller.has_mfa_within(now, RECENT_MFA) {
        return Ok(());
    }
    Err(AppError::Forbidden {
        rule: "recent-mfa",
        message: "Changing your security info needs multi-factor authentication within the last 10 minutes. Sign \
                  in again with your second factor."
            .into(),
    })
}

/// The user's phone methods, masked if asked.
async fn phones(tx: &mut dyn Tx, user: &User, masked: bool) -> Result<Vec<PhoneView>, AppError> {
    let mut res: Vec<PhoneView> = tx
        .list_phone_methods(&user.id)
        .await?
        .into_iter()
        .filter_map(|(kind, number)| {
            let phone_type = PhoneType::parse(&kind)?;
            Some(PhoneView { phone_type, number: if masked { mask_phone_number(&number) } else { number } })
        })
        .collect();
    res.sort_by_key(|it| it.phone_type);
    Ok(res)
}

impl App {
    /// Writes the audit record of a change to a user's methods (with Entra's `resultReason`) and
    /// commits the change with it.
    pub(crate) async fn commit_method_change(
        &self,
        tx: Box<dyn Tx>,
        caller: &Caller,
        user: &User,
        activity: Activity,
        reason: &str,
    ) -> Result<(), AppError> {
        let mut record = caller.succeeded(self.now(), activity, vec![TargetResource::user(user)]);
        record.result_reason = reason.to_owned();
        commit_audited(tx, [record]).await?;
        Ok(())
    }

    /// Opens the write transaction of a change to `who`'s methods and checks it: an
    /// administrator needs the change's action on the target (never on oneself for a
    /// registration); a user changing their own methods needs MFA within the last ten minutes.
    pub(crate) async fn change_target(
        &self,
        caller: &Caller,
        who: Who<'_>,
        change: Change,
    ) -> Result<(Box<dyn Tx>, User, Activity, Who<'static>), AppError> {
        // A user naming their own account through `/users/{id}` is doing self-service: the same
        // rules as `/me` (an administrator role does not skip the recent-MFA check).
        let who = match who {
            Who::User(key) if caller.user().is_some() => {
                let mut tx = self.read().await?;
                let target = resolve_user(&mut *tx, &caller.tenant, key).await?;
                if target.id == *caller.id() { Who::Me } else { who }
            }
            other => other,
        };
        let activity = change.activity(who);
        let tx = self.write().await?;
        match who {
            Who::User(key) => {
                let (tx, user) = self.authorized_target(tx, caller, key, change.action(), activity).await?;
                let tx =
                    self.verified_or_refused(tx, caller, &user, VerifiedChange::OtherMethodChange, activity).await?;
                // Only the variant matters from here on (for the audit wording).
                Ok((tx, user, activity, Who::User("")))
            }
            Who::Me => {
                let user = caller.delegated_user()?;
                if let Err(err) = require_scope(caller, change.action(), true) {
                    return Err(self.refused(Some(tx), caller, activity, vec![TargetResource::user(user)], err).await);
                }
                if let Err(err) = require_recent_mfa(caller, self.now()) {
                    return Err(self.refused(Some(tx), caller, activity, vec![TargetResource::user(user)], err).await);
                }
                // Read for update, as another's account is: a change of the same methods by an
                // administrator at the same moment waits for this one, and its checks (the
                // mobile phone an alternate needs, one phone of each type) see it. The role-change
                // lock first, shared, as `resolve_user_for_update` takes it: one lock order.
                let mut tx = tx;
                tx.share_role_changes(&caller.tenant.id).await?;
                let fresh = tx
                    .get_user_for_update(&caller.tenant.id, &user.id)
                    .await?
                    .ok_or_else(|| AppError::NotFound(user.id.to_string()))?;
                Ok((tx, fresh, activity, Who::Me))
            }
        }
    }

    /// Loads the target for a read of its methods: oneself always; others need `standard/read`
    /// or `standard/restrictedRead`.
    pub(crate) async fn methods_target(&self, tx: &mut dyn Tx, caller: &Caller, key: &str) -> Result<User, AppError> {
        Ok(self.methods_target_masked(tx, caller, key).await?.0)
    }

    /// Like `methods_target`, also saying whether the caller reads with `restrictedRead` only
    /// (phone numbers are then masked).
    async fn methods_target_masked(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        key: &str,
    ) -> Result<(User, bool), AppError> {
        let user = resolve_user(tx, &caller.tenant, key).await?;
        if user.id == *caller.id() {
            require_scope(caller, actions::USERS_AUTH_METHODS_READ, true)?;
            return Ok((user, false));
        }
        let facts = user_facts(tx, &caller.tenant, &user).await?;
        if require(caller, actions::USERS_AUTH_METHODS_READ, Target::User(&facts)).is_ok() {
            return Ok((user, false));
        }
        require(caller, actions::USERS_AUTH_METHODS_RESTRICTED_READ, Target::User(&facts))?;
        Ok((user, true))
    }

    fn tap_view(&self, pass: &TemporaryAccessPass, policy_enabled: bool, secret: Option<Secret>) -> TapView {
        TapView {
            id: pass.id.clone(),
            created: pass.created,
            start: pass.start,
            lifetime_minutes: pass.lifetime_minutes,
            is_usable_once: pass.is_usable_once,
            usability: signin::tap_usability(
                policy_enabled,
                pass.start,
                pass.lifetime_minutes,
                pass.is_usable_once,
                pass.used_at.is_some(),
                self.now(),
            ),
            pass: secret,
        }
    }

    /// `GET /users/{id}/authentication/methods`.
    pub async fn list_auth_methods(&self, caller: &Caller, key: &str) -> Result<Vec<AuthMethod>, AppError> {
        let mut tx = self.read().await?;
        let (user, masked) = self.methods_target_masked(&mut *tx, caller, key).await?;
        let mut res = Vec::new();
        if tx.get_password_hash(&user.id).await?.is_some() {
            res.push(AuthMethod::Password { created: None });
        }
        for phone in phones(&mut *tx, &user, masked).await? {
            res.push(AuthMethod::Phone(phone));
        }
        if let Some(address) = tx.get_email_method(&user.id).await? {
            let address = if masked { mask_email_address(&address) } else { address };
            res.push(AuthMethod::Email { address });
        }
        for method in tx.list_software_oath_methods(&user.id).await? {
            res.push(AuthMethod::SoftwareOath(OathView { id: method.id, created: method.created }));
        }
        for method in tx.list_fido2_methods(&user.id).await? {
            res.push(AuthMethod::Passkey(crate::passkeys::PasskeyView::of(&method)));
        }
        let (_, policy) = tx.sign_in_policy(&caller.tenant.id).await?;
        if let Some(pass) = tx.get_temporary_access_pass(&user.id).await? {
            let enabled = pass_enabled_for(&mut *tx, &caller.tenant.id, &user.id, &policy).await?;
            res.push(AuthMethod::TemporaryAccessPass(self.tap_view(&pass, enabled, None)));
        }
        Ok(res)
    }

    /// `GET …/phoneMethods`.
    pub async fn list_phones(&self, caller: &Caller, key: &str) -> Result<Vec<PhoneView>, AppError> {
        let mut tx = self.read().await?;
        let (user, masked) = self.methods_target_masked(&mut *tx, caller, key).await?;
        phones(&mut *tx, &user, masked).await
    }

    /// `POST …/phoneMethods` (create, one per type) and `PATCH …/phoneMethods/{id}` (update the
    /// number of an existing type; `is_update`).
    pub async fn put_phone(
        &self,
        caller: &Caller,
        who: Who<'_>,
        phone_type: PhoneType,
        number: &str,
        is_update: bool,
    ) -> Result<PhoneView, AppError> {
        validate_phone_number(number).map_err(AppError::BadRequest)?;
        let now = self.now();
        let change = if is_update { Change::Update } else { Change::Register };
        let (mut tx, user, activity, who) = self.change_target(caller, who, change).await?;
        let existing: Vec<PhoneType> =
            phones(&mut *tx, &user, false).await?.into_iter().map(|it| it.phone_type).collect();
        if is_update {
            if !existing.contains(&phone_type) {
                return Err(AppError::NotFound(phone_type.id().to_owned()));
            }
        } else {
            check_phone_add(&existing, phone_type).map_err(AppError::BadRequest)?;
        }
        tx.put_phone_method(&user.id, phone_type.as_str(), number, now).await?;
        self.commit_method_change(tx, caller, &user, activity, &change.reason(who, "phone")).await?;
        Ok(PhoneView { phone_type, number: number.to_owned() })
    }

    /// Whether the caller may change `key`'s phone methods (SMS sign-in's switches): the check of
    /// a number change, with nothing written.
    pub async fn check_phone_update(&self, caller: &Caller, key: &str) -> Result<(), AppError> {
        let (tx, _, _, _) = self.change_target(caller, Who::User(key), Change::Update).await?;
        drop(tx);
        Ok(())
    }

    /// `DELETE …/phoneMethods/{id}`.
    pub async fn delete_phone(&self, caller: &Caller, who: Who<'_>, phone_type: PhoneType) -> Result<(), AppError> {
        let (mut tx, user, activity, who) = self.change_target(caller, who, Change::Delete).await?;
        let existing: Vec<PhoneType> =
            phones(&mut *tx, &user, false).await?.into_iter().map(|it| it.phone_type).collect();
        if !existing.contains(&phone_type) {
            return Err(AppError::NotFound(phone_type.id().to_owned()));
        }
        check_phone_delete(&existing, phone_type).map_err(AppError::BadRequest)?;
        // As in Graph, the phone of the user's default MFA method stays until the default changes.
        let left: Vec<&str> = existing.iter().filter(|it| **it != phone_type).map(|it| it.as_str()).collect();
        if let Some(preferred) = tx.user_sign_in_state(&user.id).await?.preferences.preferred
            && !matches!(preferred, SecondaryMethod::Oath | SecondaryMethod::Push)
            && preferred.check_registered(false, &left).is_err()
        {
            return Err(AppError::BadRequest(format!(
                "This phone is the user's default sign-in method ('{}'): change the default \
                 (signInPreferences) before deleting it.",
                preferred.as_str()
            )));
        }
        let op = Operation::DeleteMethod { kind: MethodKind::Phone, id: phone_type.id().to_owned() };
        if let Gate::Hold(when) = self.dual_control_gate(&mut *tx, caller, &user, &op, self.now()).await? {
            return Err(self.hold(tx, caller, &user, op, Kept::Nothing, when).await);
        }
        tx.delete_phone_method(&user.id, phone_type.as_str()).await?;
        self.commit_method_change(tx, caller, &user, activity, &Change::Delete.reason(who, "phone")).await
    }

    /// `GET /beta/users/{id}/authentication/signInPreferences`: read like the user's methods.
    pub async fn sign_in_preferences(&self, caller: &Caller, key: &str) -> Result<SignInPreferences, AppError> {
        let mut tx = self.read().await?;
        let user = self.methods_target(&mut *tx, caller, key).await?;
        let mut preferences = tx.user_sign_in_state(&user.id).await?.preferences;
        // A default whose method is gone since (an app deleted, "Require re-register MFA") is no
        // default: shown as none, as the sign-in does not offer it.
        if let Some(method) = preferences.preferred {
            let has_app = !tx.list_software_oath_methods(&user.id).await?.is_empty();
            let phones = tx.list_phone_methods(&user.id).await?;
            let types: Vec<&str> = phones.iter().map(|(phone_type, _)| phone_type.as_str()).collect();
            if method.check_registered(has_app, &types).is_err() {
                preferences.preferred = None;
            }
        }
        Ok(preferences)
    }

    /// `PATCH /beta/users/{id}/authentication/signInPreferences`: changed like a method (an
    /// administrator's update action on the target, or oneself with MFA in the last ten
    /// minutes) and audited as an update of security info. `preferred` is `Some(None)` to clear
    /// the preferred method; a preferred method must be registered.
    pub async fn set_sign_in_preferences(
        &self,
        caller: &Caller,
        who: Who<'_>,
        preferred: Option<Option<SecondaryMethod>>,
        is_system_preferred: Option<bool>,
    ) -> Result<SignInPreferences, AppError> {
        let (mut tx, user, activity, who) = self.change_target(caller, who, Change::Update).await?;
        let mut state = tx.lock_user_sign_in_state(&user.id).await?;
        if let Some(Some(method)) = preferred {
            let has_app = !tx.list_software_oath_methods(&user.id).await?.is_empty();
            let phones = tx.list_phone_methods(&user.id).await?;
            let types: Vec<&str> = phones.iter().map(|(phone_type, _)| phone_type.as_str()).collect();
            method.check_registered(has_app, &types).map_err(AppError::BadRequest)?;
        }
        if let Some(preferred) = preferred {
            state.preferences.preferred = preferred;
        }
        if let Some(is_system_preferred) = is_system_preferred {
            state.preferences.is_system_preferred = is_system_preferred;
        }
        tx.set_user_sign_in_state(&user.id, &state).await?;
        self.commit_method_change(tx, caller, &user, activity, &Change::Update.reason(who, "default sign-in")).await?;
        Ok(state.preferences)
    }

    /// `GET …/emailMethods`.
    pub async fn get_email(&self, caller: &Caller, key: &str) -> Result<Option<String>, AppError> {
        let mut tx = self.read().await?;
        let (user, masked) = self.methods_target_masked(&mut *tx, caller, key).await?;
        let address = tx.get_email_method(&user.id).await?;
        Ok(address.map(|it| if masked { mask_email_address(&it) } else { it }))
    }

    /// `POST …/emailMethods` (one per user) and `PATCH …/emailMethods/{id}`.
    pub async fn put_email(
        &self,
        caller: &Caller,
        who: Who<'_>,
        address: &str,
        is_update: bool,
    ) -> Result<(), AppError> {
        let valid = address.len() <= 256
            && address.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
            && !address.chars().any(|it| it.is_whitespace() || it.is_control());
        if !valid {
            return Err(AppError::BadRequest(format!("'{address}' is not a valid email address.")));
        }
        let now = self.now();
        let change = if is_update { Change::Update } else { Change::Register };
        let (mut tx, user, activity, who) = self.change_target(caller, who, change).await?;
        if !is_update {
            let policy = tx.methods_policy(&caller.tenant.id).await?;
            if !user_methods(&mut *tx, &user.id, &policy).await?.email {
                return Err(AppError::BadRequest(
                    "The authentication methods policy does not let this user register an email method (the Email \
                     configuration is disabled or its targets leave the user out)."
                        .into(),
                ));
            }
        }
        let exists = tx.get_email_method(&user.id).await?.is_some();
        match (is_update, exists) {
            (false, true) => {
                return Err(AppError::BadRequest("The user already has an email method; update it instead.".into()));
            }
            (true, false) => return Err(AppError::NotFound(EMAIL_METHOD_ID.to_owned())),
            _ => (),
        }
        tx.put_email_method(&user.id, address, now).await?;
        self.commit_method_change(tx, caller, &user, activity, &change.reason(who, "email")).await
    }

    /// `DELETE …/emailMethods/{id}`.
    pub async fn delete_email(&self, caller: &Caller, who: Who<'_>) -> Result<(), AppError> {
        let (mut tx, user, activity, who) = self.change_target(caller, who, Change::Delete).await?;
        if tx.get_email_method(&user.id).await?.is_none() {
            return Err(AppError::NotFound(EMAIL_METHOD_ID.to_owned()));
        }
        let op = Operation::DeleteMethod { kind: MethodKind::Email, id: EMAIL_METHOD_ID.to_owned() };
        if let Gate::Hold(when) = self.dual_control_gate(&mut *tx, caller, &user, &op, self.now()).await? {
            return Err(self.hold(tx, caller, &user, op, Kept::Nothing, when).await);
        }
        if !tx.delete_email_method(&user.id).await? {
            return Err(AppError::NotFound(EMAIL_METHOD_ID.to_owned()));
        }
        self.commit_method_change(tx, caller, &user, activity, &Change::Delete.reason(who, "email")).await
    }

    /// Checks a delete of a method type Keyward never stores (passkeys and the like): the caller
    /// must be allowed to delete the target's methods; the method itself never exists.
    pub async fn check_method_delete(&self, caller: &Caller, key: &str) -> Result<(), AppError> {
        let (tx, _, _, _) = self.change_target(caller, Who::User(key), Change::Delete).await?;
        drop(tx);
        Ok(())
    }

    /// `GET …/softwareOathMethods`.
    pub async fn list_software_oath(&self, caller: &Caller, key: &str) -> Result<Vec<OathView>, AppError> {
        let mut tx = self.read().await?;
        let user = self.methods_target(&mut *tx, caller, key).await?;
        let methods = tx.list_software_oath_methods(&user.id).await?;
        Ok(methods.into_iter().map(|it| OathView { id: it.id, created: it.created }).collect())
    }

    /// `DELETE …/softwareOathMethods/{id}`: `authenticationMethods/delete` on the target.
    pub async fn delete_software_oath(&self, caller: &Caller, who: Who<'_>, id: &str) -> Result<(), AppError> {
        let method_id = ObjectId::parse(id).ok_or_else(|| AppError::NotFound(id.to_owned()))?;
        let (mut tx, user, activity, who) = self.change_target(caller, who, Change::Delete).await?;
        if !tx.list_software_oath_methods(&user.id).await?.iter().any(|it| it.id == method_id) {
            return Err(AppError::NotFound(id.to_owned()));
        }
        let op = Operation::DeleteMethod { kind: MethodKind::SoftwareOath, id: method_id.to_string() };
        if let Gate::Hold(when) = self.dual_control_gate(&mut *tx, caller, &user, &op, self.now()).await? {
            return Err(self.hold(tx, caller, &user, op, Kept::Nothing, when).await);
        }
        tx.delete_software_oath_methods(&user.id, Some(&method_id)).await.map_err(|err| match err {
            keyward_store::StoreError::NotFound => AppError::NotFound(id.to_owned()),
            other => other.into(),
        })?;
        self.commit_method_change(tx, caller, &user, activity, &Change::Delete.reason(who, "Software OATH token")).await
    }

    /// `GET …/temporaryAccessPassMethods` (the pass itself is never shown).
    pub async fn list_taps(&self, caller: &Caller, key: &str) -> Result<Vec<TapView>, AppError> {
        let mut tx = self.read().await?;
        let user = self.methods_target(&mut *tx, caller, key).await?;
        let (_, policy) = tx.sign_in_policy(&caller.tenant.id).await?;
        let pass = tx.get_temporary_access_pass(&user.id).await?;
        let enabled = pass_enabled_for(&mut *tx, &caller.tenant.id, &user.id, &policy).await?;
        Ok(pass.iter().map(|it| self.tap_view(it, enabled, None)).collect())
    }

    /// `POST …/temporaryAccessPassMethods`: a new pass (replacing the user's previous one),
    /// shown only in this response. Not for oneself; `authenticationMethods/create` on the target.
    pub async fn create_tap(&self, caller: &Caller, key: &str, request: TapRequest) -> Result<TapView, AppError> {
        let now = self.now();
        let tx = self.write().await?;
        let activity = Activity::AdminRegisteredSecurityInfo;
        let (tx, user) = self.authorized_target(tx, caller, key, actions::USERS_AUTH_METHODS_CREATE, activity).await?;
        let mut tx = self.verified_or_refused(tx, caller, &user, VerifiedChange::TemporaryAccessPass, activity).await?;
        let op = Operation::CreatePass(request);
        if let Gate::Hold(when) = self.dual_control_gate(&mut *tx, caller, &user, &op, now).await? {
            let kept = self.held_pass(&mut *tx, caller, request, now).await?;
            return Err(self.hold(tx, caller, &user, op, kept, when).await);
        }
        let charged =
            crate::signin_admin::charge_agent(&mut *tx, caller, &user, AgentAction::TemporaryAccessPass, now).await;
        if let Err(err) = charged {
            return Err(self.refused(Some(tx), caller, activity, vec![TargetResource::user(&user)], err).await);
        }
        let (view, record) = self.put_tap(&mut *tx, caller, &user, request, now).await?;
        commit_audited(tx, [record]).await?;
        Ok(view)
    }

    /// Creates `user`'s new Temporary Access Pass in `tx` (replacing the previous one), once the
    /// caller may: the pass, shown only in the view, and its `Admin registered security info` record.
    pub(crate) async fn put_tap(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        user: &User,
        request: TapRequest,
        now: OffsetDateTime,
    ) -> Result<(TapView, AuditRecord), AppError> {
        let (_, policy) = tx.sign_in_policy(&caller.tenant.id).await?;
        // Approved after dual control held it: the pass chosen when it was asked for, starting
        // now if the start asked for has passed meanwhile.
        let approved = caller.approval.as_ref().and_then(|it| it.secret_hash()).map(crate::dual_control::unhex);
        let request = match approved {
            Some(_) => TapRequest { start: request.start.filter(|it| *it > now), ..request },
            None => request,
        };
        let plan = plan_tap(&policy, request, now).map_err(AppError::BadRequest)?;
        // Created for anyone, as Entra: a user the policy leaves out cannot sign in with it.
        let enabled = pass_enabled_for(tx, &caller.tenant.id, &user.id, &policy).await?;
        let (secret, pass_sha256) = match approved {
            Some(Some(hash)) => (None, hash),
            Some(None) => return Err(AppError::Unexpected(anyhow::anyhow!("a held pass's hash is unreadable"))),
            None => {
                let secret = new_pass(&policy)?;
                let hash = self.inner.keys.pass_hash(secret.expose())?;
                (Some(secret), hash)
            }
        };
        let pass = TemporaryAccessPass {
            id: new_id(),
            user_id: user.id.clone(),
            pass_sha256,
            created: now,
            start: plan.start,
            lifetime_minutes: plan.lifetime_minutes,
            is_usable_once: plan.is_usable_once,
            used_at: None,
            ends_at_registration: false,
        };
        tx.put_temporary_access_pass(&pass).await?;
        let text = |value: String| Some(json::string(&value));
        let change = |name: &str, value: String| PropertyChange {
            name: format!("TemporaryAccessPass.{name}"),
            old_value: text(String::new()),
            new_value: text(value),
        };
        let changes = vec![
            change("Id", pass.id.to_string()),
            change("StartDateTime", rfc3339(pass.start)),
            change("EndDateTime", rfc3339(pass.start + Duration::minutes(pass.lifetime_minutes))),
            change("AccessPassUsage", if pass.is_usable_once { "Once".into() } else { "Multiple".into() }),
        ];
        let activity = Activity::AdminRegisteredSecurityInfo;
        let mut record = caller.succeeded(now, activity, vec![TargetResource::user(user).with_changes(changes)]);
        record.result_reason = "Admin registered temporary access pass method for user".into();
        Ok((self.tap_view(&pass, enabled, secret), record))
    }

    /// A pass for a change dual control holds: checked against the policy now, chosen now (shown
    /// to the requester once), kept as its hash until the approval.
    pub(crate) async fn held_pass(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        request: TapRequest,
        now: OffsetDateTime,
    ) -> Result<Kept, AppError> {
        let (_, policy) = tx.sign_in_policy(&caller.tenant.id).await?;
        plan_tap(&policy, request, now).map_err(AppError::BadRequest)?;
        let secret = new_pass(&policy)?;
        let hash = self.inner.keys.pass_hash(secret.expose())?;
        Ok(Kept::Pass(secret, hash))
    }

    /// `DELETE …/temporaryAccessPassMethods/{id}`.
    pub async fn delete_tap(&self, caller: &Caller, key: &str, id: &str) -> Result<(), AppError> {
        let pass_id = ObjectId::parse(id).ok_or_else(|| AppError::NotFound(id.to_owned()))?;
        let tx = self.write().await?;
        let activity = Activity::AdminDeletedSecurityInfo;
        let (tx, user) = self.authorized_target(tx, caller, key, actions::USERS_AUTH_METHODS_DELETE, activity).await?;
        let mut tx = self.verified_or_refused(tx, caller, &user, VerifiedChange::OtherMethodChange, activity).await?;
        if tx.get_temporary_access_pass(&user.id).await?.is_none_or(|it| it.id != pass_id) {
            return Err(AppError::NotFound(id.to_owned()));
        }
        let op = Operation::DeleteMethod { kind: MethodKind::TemporaryAccessPass, id: pass_id.to_string() };
        if let Gate::Hold(when) = self.dual_control_gate(&mut *tx, caller, &user, &op, self.now()).await? {
            return Err(self.hold(tx, caller, &user, op, Kept::Nothing, when).await);
        }
        if !tx.delete_temporary_access_pass(&user.id, Some(&pass_id)).await? {
            return Err(AppError::NotFound(id.to_owned()));
        }
        self.commit_method_change(tx, caller, &user, activity, "Admin deleted temporary access pass method for user")
            .await
    }

    /// `POST …/methods/28c10230-…/resetPassword`: sets `new_password` (checked against the
    /// policy) or a generated one (returned once), and the user must change it at next sign-in.
    /// Needs `users/password/update` and `authenticationMethods/basic/update` on the target; never
    /// on one's own account. Audited as `Reset password (by admin)`.
    pub async fn reset_password(
        &self,
        caller: &Caller,
        key: &str,
        new_password: Option<Secret>,
    ) -> Result<PasswordReset, AppError> {
        // Decide first, hash outside the write transaction (Argon2 takes tens of milliseconds).
        let mut tx = self.read().await?;
        let user = resolve_user(&mut *tx, &caller.tenant, key).await?;
        let facts = user_facts(&mut *tx, &caller.tenant, &user).await?;
        let decision = require(caller, actions::USERS_PASSWORD_UPDATE, Target::User(&facts))
            .and_then(|()| require(caller, actions::USERS_AUTH_METHODS_UPDATE, Target::User(&facts)));
        if let Err(err) = decision {
            return Err(self
                .refused(Some(tx), caller, Activity::ResetPasswordByAdmin, vec![TargetResource::user(&user)], err)
                .await);
        }
        drop(tx);
        let alias = user.user_principal_name.split('@').next().unwrap_or_default().to_owned();
        // Approved after dual control held it: the password chosen when it was asked for.
        let approved = caller.approval.as_ref().and_then(|it| it.secret_hash()).map(str::to_owned);
        let (generated, hash) = match (approved, new_password) {
            (Some(hash), _) => (None, hash),
            (None, Some(password)) => {
                password::check(password.expose(), &[&user.display_name, &alias])
                    .map_err(|err| AppError::BadRequest(format!("The password does not meet the policy: {err}.")))?;
                (None, self.inner.hasher.hash(password.expose()).await?)
            }
            (None, None) => {
                let chosen = generate_password(&[&user.display_name, &alias])?;
                let hash = self.inner.hasher.hash(chosen.expose()).await?;
                (Some(chosen), hash)
            }
        };
        // Both actions again on the write transaction's facts (the target may have changed while
        // the password was hashed), with role changes (a disable included) held off from before
        // the user is read until commit (`user_facts`).
        let mut tx = self.write().await?;
        let activity = Activity::ResetPasswordByAdmin;
        let mut user = crate::directory::resolve_user_for_update(&mut *tx, &caller.tenant, key).await?;
        // The sessions' cut-off once the user's row is held (see `signin_admin::end_sessions`).
        let now = self.now();
        let facts = user_facts(&mut *tx, &caller.tenant, &user).await?;
        let decision = require(caller, actions::USERS_PASSWORD_UPDATE, Target::User(&facts))
            .and_then(|()| require(caller, actions::USERS_AUTH_METHODS_UPDATE, Target::User(&facts)));
        if let Err(err) = decision {
            return Err(self.refused(Some(tx), caller, activity, vec![TargetResource::user(&user)], err).await);
        }
        let mut tx = self.verified_or_refused(tx, caller, &user, VerifiedChange::PasswordReset, activity).await?;
        let op = Operation::ResetPassword;
        if let Gate::Hold(when) = self.dual_control_gate(&mut *tx, caller, &user, &op, now).await? {
            return Err(self.hold(tx, caller, &user, op, Kept::Password(generated, hash), when).await);
        }
        let charged = crate::signin_admin::charge_agent(&mut *tx, caller, &user, AgentAction::PasswordReset, now).await;
        if let Err(err) = charged {
            return Err(self.refused(Some(tx), caller, activity, vec![TargetResource::user(&user)], err).await);
        }
        tx.set_password_hash(&user.id, &hash, now).await?;
        user.force_change_password_next_sign_in = true;
        // As in Entra, a reset ends the sessions and refresh tokens issued with the old password.
        user.sign_in_sessions_valid_from = now;
        tx.update_user(&user).await?;
        let operation_id = new_id();
        tx.insert_reset_operation(&caller.tenant.id, &user.id, &operation_id, "succeeded", now).await?;
        let change = PropertyChange {
            name: "PasswordProfile.ForceChangePasswordNextSignIn".into(),
            old_value: None,
            new_value: Some("[true]".into()),
        };
        let mut record = caller.succeeded(now, activity, vec![TargetResource::user(&user).with_changes(vec![change])]);
        record.result_reason = "Successfully completed reset.".into();
        commit_audited(tx, [record]).await?;
        Ok(PasswordReset { operation_id, generated })
    }

    /// `GET …/authentication/operations/{id}`: a password reset's status.
    pub async fn reset_operation(
        &self,
        caller: &Caller,
        key: &str,
        id: &str,
    ) -> Result<(String, OffsetDateTime), AppError> {
        let operation = ObjectId::parse(id).ok_or_else(|| AppError::NotFound(id.to_owned()))?;
        let mut tx = self.read().await?;
        let user = self.methods_target(&mut *tx, caller, key).await?;
        tx.get_reset_operation(&user.id, &operation).await?.ok_or_else(|| AppError::NotFound(id.to_owned()))
    }
}
