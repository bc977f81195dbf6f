//! Administration around sign-in: the sign-in log, the Temporary Access Pass and sign-in policies,
//! and the service-desk operations the sign-in honours (revoke sessions, revoke MFA sessions,
//! require MFA re-registration). Their Graph routes for users belong to the authentication-methods
//! API; the operations and their rules live here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::agent_limits::{self, AgentAction};
use keyward_core::dual_control::Operation;

use crate::dual_control::{Gate, Kept};
use keyward_core::audit::{Activity, AuditRecord, TargetResource};
use keyward_core::auth_methods::TapRequest;
use keyward_core::authz::{Target, actions};
use keyward_core::caller_verification::Change as VerifiedChange;
use keyward_core::directory::PropertyChange;
use keyward_core::directory::User;
use keyward_core::ids::ObjectId;
use keyward_core::json;
use keyward_core::signin::{PerUserMfaState, SignInActivity, SignInRecord};
use keyward_core::signin_query::SignInQuery;
use keyward_store::{SignInCursor, Tx, UserSignInState};
use std::collections::HashMap;

use crate::auth_methods::TapView;
use crate::commit_audited;
use crate::directory::resolve_user;
use crate::facts::user_facts;
use crate::methods_policy::ORGANIZATION_READ_ALL;
use crate::{App, AppError, Caller, audit_id, require, require_scope, rfc3339};

/// Reading the sign-in log.
pub(crate) const SIGN_IN_REPORTS_READ: &str = "microsoft.directory/signInReports/allProperties/read";
/// A page of sign-ins.
#[derive(Debug, Clone)]
pub struct SignInPage {
    pub items: Vec<SignInRecord>,
    pub skiptoken: Option<String>,
}

fn encode(cursor: &SignInCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", cursor.created, cursor.seq))
}

fn decode(token: &str) -> Result<SignInCursor, AppError> {
    let bad = || AppError::BadRequest("The $skiptoken is invalid; use the @odata.nextLink as given.".into());
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (created, seq) = text.split_once('|').ok_or_else(bad)?;
    Ok(SignInCursor { created: created.to_owned(), seq: seq.parse().map_err(|_| bad())? })
}

/// Entra's `StrongAuthenticationRequirement` audit value (Entra's "Update user" audit record for MFA): `[]` when per-user MFA
/// is disabled and no remembered-device cut-off exists; otherwise one relying party `*` with the
/// state (Keyward writes the state's name, since Entra's numeric mapping is unconfirmed) and
/// `RememberDevicesNotIssuedBefore`.
pub(crate) fn strong_authentication_requirement(state: &UserSignInState) -> String {
    if state.per_user_mfa == PerUserMfaState::Disabled && state.remembered_devices_not_before.is_none() {
        return "[]".into();
    }
    let cut = state.remembered_devices_not_before.map(rfc3339);
    let state_name = match state.per_user_mfa {
        PerUserMfaState::Disabled => "Disabled",
        PerUserMfaState::Enabled => "Enabled",
        PerUserMfaState::Enforced => "Enforced",
    };
    format!(
        "[{{\"RelyingParty\":\"*\",\"State\":\"{state_name}\",\"RememberDevicesNotIssuedBefore\":{}}}]",
        cut.map_or_else(|| "null".to_owned(), |it| format!("\"{it}\""))
    )
}

impl App {
    /// `GET /auditLogs/signIns`.
    pub async fn list_sign_ins(&self, caller: &Caller, query: &SignInQuery) -> Result<SignInPage, AppError> {
        require(caller, SIGN_IN_REPORTS_READ, Target::Tenant)?;
        let after = query.skiptoken.as_deref().map(decode).transpose()?;
        let mut tx = self.read().await?;
        let mut rows = tx.query_sign_ins(&caller.tenant.id, &query.filter, after.as_ref(), query.top + 1).await?;
        let has_more = rows.len() > query.top;
        rows.truncate(query.top);
        let skiptoken = if has_more { rows.last().map(|(cursor, _)| encode(cursor)) } else { None };
        Ok(SignInPage { items: rows.into_iter().map(|(_, record)| record).collect(), skiptoken })
    }

    /// The `signInActivity` of those of `users` who ever signed in: read with the sign-in log's
    /// permission (Entra's `AuditLog.Read.All`), for users the caller may already see.
    pub async fn sign_in_activity(
        &self,
        caller: &Caller,
        users: &[ObjectId],
    ) -> Result<HashMap<ObjectId, SignInActivity>, AppError> {
        require(caller, SIGN_IN_REPORTS_READ, Target::Tenant)?;
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(self.read().await?.sign_in_activity(users).await?.into_iter().collect())
    }

    /// `GET /auditLogs/signIns/{id}`.
    pub async fn get_sign_in(&self, caller: &Caller, id: &str) -> Result<SignInRecord, AppError> {
        require(caller, SIGN_IN_REPORTS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        tx.get_sign_in(&caller.tenant.id, id).await?.ok_or_else(|| AppError::NotFound(id.to_owned()))
    }

    /// Resolves the target user of a service-desk operation and checks `action` on it; a refusal
    /// is recorded as a failed `activity` and the transaction is dropped.
    pub(crate) async fn authorized_target(
        &self,
        tx: Box<dyn Tx>,
        caller: &Caller,
        key: &str,
        action: &'static str,
        activity: Activity,
    ) -> Result<(Box<dyn Tx>, User), AppError> {
        let mut tx = tx;
        // Read locked, as it may be written back whole.
        let user = crate::directory::resolve_user_for_update(&mut *tx, &caller.tenant, key).await?;
        let facts = user_facts(&mut *tx, &caller.tenant, &user).await?;
        match require(caller, action, Target::User(&facts)) {
            Ok(()) => Ok((tx, user)),
            Err(err) => Err(self.refused(Some(tx), caller, activity, vec![TargetResource::user(&user)], err).await),
        }
    }

    /// Writes one `Update user` record with `change` (and Entra's "Included Updated Properties")
    /// and commits.
    pub(crate) async fn commit_user_update(
        &self,
        tx: Box<dyn Tx>,
        caller: &Caller,
        user: &User,
        change: PropertyChange,
    ) -> Result<(), AppError> {
        commit_audited(tx, [user_update_record(caller, self.now(), user, change)]).await?;
        Ok(())
    }

    /// `POST /users/{id}/revokeSignInSessions`: every session and refresh token issued before now
    /// stops counting. Audited as `Update StsRefreshTokenValidFrom Timestamp`.
    pub async fn revoke_sign_in_sessions(&self, caller: &Caller, key: &str) -> Result<(), AppError> {
        // `/users/{own id or name}` is `/me`: one's own sessions need no role.
        if caller.user().is_some_and(|me| {
            key.eq_ignore_ascii_case(me.id.as_str()) || key.eq_ignore_ascii_case(&me.user_principal_name)
        }) {
            return self.revoke_own_sign_in_sessions(caller).await;
        }
        let tx = self.write().await?;
        let (mut tx, mut user) = self
            .authorized_target(
                tx,
                caller,
                key,
                actions::USERS_INVALIDATE_REFRESH_TOKENS,
                Activity::UpdateStsRefreshTokenValidFrom,
            )
            .await?;
        // The cut-off once the user's row is held: a sign-in that finished before it is ended
        // by it, wherever this transaction waited (see `end_sessions`).
        let now = self.now();
        let target = end_sessions(&mut *tx, &mut user, now).await?;
        let record = caller.succeeded(now, Activity::UpdateStsRefreshTokenValidFrom, vec![target]);
        commit_audited(tx, [record]).await?;
        Ok(())
    }

    /// `POST /me/revokeSignInSessions`: the signed-in user ends every session and refresh token of
    /// theirs (the one the request came with too), as the account page's "Sign out everywhere";
    /// no role needed, the token's scope must cover it. Audited as the user's own
    /// `Update StsRefreshTokenValidFrom Timestamp`.
    pub async fn revoke_own_sign_in_sessions(&self, caller: &Caller) -> Result<(), AppError> {
        let user = caller.delegated_user()?;
        require_scope(caller, actions::USERS_INVALIDATE_REFRESH_TOKENS, true)?;
        let mut tx = self.write().await?;
        let mut fresh = tx
            .get_user_for_update(&caller.tenant.id, &user.id)
            .await?
            .ok_or_else(|| AppError::NotFound(user.id.to_string()))?;
        let now = self.now();
        let target = end_sessions(&mut *tx, &mut fresh, now).await?;
        commit_audited(tx, [caller.succeeded(now, Activity::UpdateStsRefreshTokenValidFrom, vec![target])]).await?;
        Ok(())
    }

    /// "Revoke MFA sessions": remembered devices issued before now stop skipping MFA. Audited as
    /// `Update user` with `StrongAuthenticationRequirement` (its `RememberDevicesNotIssuedBefore`).
    pub async fn revoke_mfa_sessions(&self, caller: &Caller, key: &str) -> Result<(), AppError> {
        let tx = self.write().await?;
        let (mut tx, user) =
            self.authorized_target(tx, caller, key, actions::USERS_AUTH_METHODS_UPDATE, Activity::UpdateUser).await?;
        let now = self.now();
        let change = forget_mfa_devices(&mut *tx, &user, now).await?;
        self.commit_user_update(tx, caller, &user, change).await
    }

    /// "Require re-register MFA": deletes the user's software OATH methods (and phone methods once
    /// they exist), so the next sign-in that needs MFA shows the registration interrupt. Audited
    /// as `Update user` with `StrongAuthenticationMethod`.
    pub async fn require_mfa_reregistration(&self, caller: &Caller, key: &str) -> Result<(), AppError> {
        let tx = self.write().await?;
        let (tx, user) =
            self.authorized_target(tx, caller, key, actions::USERS_AUTH_METHODS_DELETE, Activity::UpdateUser).await?;
        // On one's own account this is self-service: it needs recent MFA, as every change to one's
        // own security info does (a stolen session must not be able to reset someone's MFA).
        if user.id == *caller.id()
            && let Err(err) = crate::auth_methods::require_recent_mfa(caller, self.now())
        {
            return Err(self
                .refused(Some(tx), caller, Activity::UpdateUser, vec![TargetResource::user(&user)], err)
                .await);
        }
        let now = self.now();
        let verified = VerifiedChange::MfaReset;
        let mut tx = self.verified_or_refused(tx, caller, &user, verified, Activity::UpdateUser).await?;
        let op = Operation::RequireReregistration;
        if let Gate::Hold(when) = self.dual_control_gate(&mut *tx, caller, &user, &op, now).await? {
            return Err(self.hold(tx, caller, &user, op, Kept::Nothing, when).await);
        }
        if let Err(err) = charge_agent(&mut *tx, caller, &user, AgentAction::MfaReset, now).await {
            return Err(self
                .refused(Some(tx), caller, Activity::UpdateUser, vec![TargetResource::user(&user)], err)
                .await);
        }
        let change = remove_mfa_methods(&mut *tx, &user).await?;
        self.commit_user_update(tx, caller, &user, change).await
    }

    /// `POST /users/{id}/authentication/resetMfa` (Keyward's action): the service desk's "Reset
    /// MFA" as one change: require re-registration, revoke MFA sessions, revoke sign-in sessions
    /// and, with `pass`, create a Temporary Access Pass, in one transaction. It needs every
    /// permission its steps need on the target and is never for one's own account; a refusal or a
    /// failing step (an invalid pass) changes nothing. Each step is audited as it is alone, under
    /// the request's one correlation id. Returns the pass, shown only here.
    pub async fn reset_mfa(
        &self,
        caller: &Caller,
        key: &str,
        pass: Option<TapRequest>,
    ) -> Result<Option<TapView>, AppError> {
        let mut tx = self.write().await?;
        let mut user = crate::directory::resolve_user_for_update(&mut *tx, &caller.tenant, key).await?;
        let now = self.now();
        let facts = user_facts(&mut *tx, &caller.tenant, &user).await?;
        let mut decision = may_reset_mfa(caller, &user, &facts, pass.is_some());
        if decision.is_ok() {
            let change = if pass.is_some() { VerifiedChange::TemporaryAccessPass } else { VerifiedChange::MfaReset };
            decision = self.require_verified_caller(&mut *tx, caller, &user, change, now).await;
        }
        if decision.is_ok() {
            let op = Operation::ResetMfa { pass };
            if let Gate::Hold(when) = self.dual_control_gate(&mut *tx, caller, &user, &op, now).await? {
                let kept = match pass {
                    Some(request) => self.held_pass(&mut *tx, caller, request, now).await?,
                    None => Kept::Nothing,
                };
                return Err(self.hold(tx, caller, &user, op, kept, when).await);
            }
            decision = charge_agent(&mut *tx, caller, &user, AgentAction::MfaReset, now).await;
        }
        if decision.is_ok() && pass.is_some() {
            decision = charge_agent(&mut *tx, caller, &user, AgentAction::TemporaryAccessPass, now).await;
        }
        if let Err(err) = decision {
            return Err(self
                .refused(Some(tx), caller, Activity::UpdateUser, vec![TargetResource::user(&user)], err)
                .await);
        }
        // The sign-in state before the methods: a code being entered holds the state and then
        // writes its method's row, so the opposite order could deadlock with it.
        let devices = forget_mfa_devices(&mut *tx, &user, now).await?;
        let methods = remove_mfa_methods(&mut *tx, &user).await?;
        let sessions = end_sessions(&mut *tx, &mut user, now).await?;
        let mut records = vec![
            user_update_record(caller, now, &user, methods),
            user_update_record(caller, now, &user, devices),
            caller.succeeded(now, Activity::UpdateStsRefreshTokenValidFrom, vec![sessions]),
        ];
        // The pass last: if it cannot be made, the steps before are rolled back with it.
        let view = match pass {
            Some(request) => {
                let (view, record) = self.put_tap(&mut *tx, caller, &user, request, now).await?;
                records.push(record);
                Some(view)
            }
            None => None,
        };
        commit_audited(tx, records).await?;
        Ok(view)
    }

    /// `GET /beta/users/{id}/authentication/requirements`: the per-user MFA state. Readable by
    /// the user, by whoever may change it, and by Global Reader.
    pub async fn mfa_requirements(&self, caller: &Caller, key: &str) -> Result<PerUserMfaState, AppError> {
        let mut tx = self.read().await?;
        let user = resolve_user(&mut *tx, &caller.tenant, key).await?;
        may_read_mfa_state(&mut *tx, caller, &user).await?;
        Ok(tx.user_sign_in_state(&user.id).await?.per_user_mfa)
    }

    /// The per-user MFA state of each of `users` (a page of a list), by the same rules as
    /// [`App::mfa_requirements`], read in one transaction: `None` for a user the caller may not
    /// read it of. A caller who reads it tenant-wide (Global Reader and above) needs no per-user
    /// facts.
    pub async fn mfa_requirements_of(
        &self,
        caller: &Caller,
        users: &[User],
    ) -> Result<Vec<Option<PerUserMfaState>>, AppError> {
        let mut tx = self.read().await?;
        let mut res = Vec::with_capacity(users.len());
        for user in users {
            let allowed = match may_read_mfa_state(&mut *tx, caller, user).await {
                Ok(()) => true,
                Err(AppError::Forbidden { .. }) => false,
                Err(err) => return Err(err),
            };
            res.push(if allowed { Some(tx.user_sign_in_state(&user.id).await?.per_user_mfa) } else { None });
        }
        Ok(res)
    }

    /// `PATCH /beta/users/{id}/authentication/requirements`: sets the per-user MFA state, under its
    /// own permission (never the authentication-methods ones). Audited as `Update user` with
    /// `StrongAuthenticationRequirement`, plus `Enable Strong Authentication` or `Disable Strong
    /// Authentication` when MFA turns on or off, all with the request's correlation id.
    pub async fn set_mfa_requirements(&self, caller: &Caller, key: &str, new: PerUserMfaState) -> Result<(), AppError> {
        let tx = self.write().await?;
        let action = actions::USERS_STRONG_AUTHENTICATION_UPDATE;
        let (mut tx, user) = self.authorized_target(tx, caller, key, action, Activity::UpdateUser).await?;
        let mut state = tx.lock_user_sign_in_state(&user.id).await?;
        let old = state.per_user_mfa;
        if old == new {
            return Ok(());
        }
        let old_value = strong_authentication_requirement(&state);
        state.per_user_mfa = new;
        tx.set_user_sign_in_state(&user.id, &state).await?;
        let toggled = match (old, new) {
            (PerUserMfaState::Disabled, _) => Some(Activity::EnableStrongAuthentication),
            (_, PerUserMfaState::Disabled) => Some(Activity::DisableStrongAuthentication),
            _ => None,
        };
        let toggled = toggled.map(|activity| {
            caller.audit(self.now()).success(
                audit_id(&caller.meta.correlation_id),
                activity,
                vec![TargetResource::user(&user)],
            )
        });
        let change = PropertyChange {
            name: "StrongAuthenticationRequirement".into(),
            old_value: Some(old_value),
            new_value: Some(strong_authentication_requirement(&state)),
        };
        let update = user_update_record(caller, self.now(), &user, change);
        commit_audited(tx, toggled.into_iter().chain([update])).await?;
        Ok(())
    }

    /// Deletes sign-in log entries and notifications older than each tenant's log retention (the
    /// audit retention, 30 days unless set; a setting changed outside Keyward stops this, as it
    /// stops audit retention). Run hourly with the audit retention.
    pub async fn apply_sign_in_retention(&self) -> Result<u64, AppError> {
        let now = self.now();
        let tenants = self.read().await?.list_tenants().await?;
        let mut removed = 0;
        for tenant in tenants {
            let mut tx = self.write_long().await?;
            let (days, mac) = tx.audit_retention(tenant.id.as_str()).await?;
            let days = self.trusted_retention(tenant.id.as_str(), days, &mac)?;
            removed += tx.delete_sign_ins_before(&tenant.id, now - time::Duration::days(days)).await?;
            // The notification outbox keeps what it sent (names, addresses) as long as the logs.
            // Pending messages stay, and a sent one at least as long as its link works.
            let cutoff = (now - time::Duration::days(days)).min(now - keyward_core::notify::LINK_LIFETIME);
            tx.delete_messages_before(&tenant.id, cutoff).await?;
            tx.delete_bulk_jobs_before(&tenant.id, cutoff).await?;
            tx.commit().await?;
        }
        Ok(removed)
    }

    /// Deletes expired browser sessions and WebAuthn challenges (run with the hourly
    /// maintenance).
    pub async fn delete_expired_sessions(&self) -> Result<u64, AppError> {
        let now = self.now();
        let mut tx = self.write_long().await?;
        let n = tx.delete_expired_browser_sessions(now).await? + tx.delete_expired_webauthn_challenges(now).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// The per-user MFA state (for tests and the per-user MFA API).
    pub async fn per_user_mfa_state(&self, user: &ObjectId) -> Result<keyward_core::signin::PerUserMfaState, AppError> {
        Ok(self.read().await?.user_sign_in_state(user).await?.per_user_mfa)
    }
}

/// Ends every session and token of `user` issued before `now` (`signInSessionsValidFromDateTime`)
/// and returns the audit target with Entra's `StsRefreshTokensValidFrom` change: what
/// Whether `caller` may read `user`'s per-user MFA state: their own, a tenant-wide reader's
/// (Global Reader and above, without looking at the user), or whoever may change it.
async fn may_read_mfa_state(tx: &mut dyn Tx, caller: &Caller, user: &User) -> Result<(), AppError> {
    if user.id == *caller.id() || require(caller, ORGANIZATION_READ_ALL, Target::Tenant).is_ok() {
        return Ok(());
    }
    let facts = user_facts(tx, &caller.tenant, user).await?;
    require(caller, actions::USERS_STRONG_AUTHENTICATION_UPDATE, Target::User(&facts))
        .or_else(|_| require(caller, ORGANIZATION_READ_ALL, Target::Tenant))
}

/// Whether `caller` may reset `user`'s MFA in one step ([`App::reset_mfa`]): every permission
/// its steps need (`with_pass`: the pass's too), never on one's own account.
pub(crate) fn may_reset_mfa(
    caller: &Caller,
    user: &User,
    facts: &keyward_core::authz::UserFacts,
    with_pass: bool,
) -> Result<(), AppError> {
    if user.id == *caller.id() {
        let rule = keyward_core::authz::rules::NOT_ON_ONESELF;
        return Err(AppError::Forbidden { rule, message: keyward_core::authz::denial_message(rule, "resetMfa") });
    }
    let mut needed = vec![
        actions::USERS_AUTH_METHODS_DELETE,
        actions::USERS_AUTH_METHODS_UPDATE,
        actions::USERS_INVALIDATE_REFRESH_TOKENS,
    ];
    if with_pass {
        needed.push(actions::USERS_AUTH_METHODS_CREATE);
    }
    needed.into_iter().try_for_each(|action| require(caller, action, Target::User(facts)))
}

/// An `Update user` record with `change` (and Entra's "Included Updated Properties").
fn user_update_record(caller: &Caller, now: time::OffsetDateTime, user: &User, change: PropertyChange) -> AuditRecord {
    let included = keyward_core::directory::included_updated_properties(std::slice::from_ref(&change));
    caller.succeeded(now, Activity::UpdateUser, vec![TargetResource::user(user).with_changes(vec![change, included])])
}

/// Remembered devices issued before `now` stop skipping MFA ("Revoke MFA sessions"); the
/// `StrongAuthenticationRequirement` change.
pub(crate) async fn forget_mfa_devices(
    tx: &mut dyn Tx,
    user: &User,
    now: time::OffsetDateTime,
) -> Result<PropertyChange, AppError> {
    let mut state = tx.lock_user_sign_in_state(&user.id).await?;
    let old_value = strong_authentication_requirement(&state);
    state.remembered_devices_not_before = Some(now);
    tx.set_user_sign_in_state(&user.id, &state).await?;
    tx.delete_remembered_devices(&user.id).await?;
    Ok(PropertyChange {
        name: "StrongAuthenticationRequirement".into(),
        old_value: Some(old_value),
        new_value: Some(strong_authentication_requirement(&state)),
    })
}

/// Deletes the user's authenticator-app and phone methods ("Require re-register MFA"; Entra
/// deletes phone numbers too; passkeys, email and the password stay); the
/// `StrongAuthenticationMethod` change.
/// Counts one `action` by the caller on `user` against the tenant's per-agent limit, in the
/// action's transaction (so a rolled-back action is not counted); refused past the cap. One's own
/// account is not counted. When the tenant sets no cap for `action`, it costs one read.
pub(crate) async fn charge_agent(
    tx: &mut dyn Tx,
    caller: &Caller,
    user: &User,
    action: AgentAction,
    now: time::OffsetDateTime,
) -> Result<(), AppError> {
    if user.id == *caller.id() {
        return Ok(());
    }
    let tenant = &caller.tenant.id;
    let limits = tx.agent_limits(tenant).await?;
    if limits.cap(action).is_none() {
        return Ok(());
    }
    let agent = caller.id().as_str();
    let done = tx.count_agent_actions(tenant, agent, action.as_str(), now - time::Duration::hours(1)).await?;
    agent_limits::check(&limits, action, done)
        .map_err(|message| AppError::Forbidden { rule: agent_limits::RULE, message })?;
    tx.record_agent_action(tenant, agent, action.as_str(), now).await?;
    Ok(())
}

async fn remove_mfa_methods(tx: &mut dyn Tx, user: &User) -> Result<PropertyChange, AppError> {
    // Each kind deleted in one statement that says what it deleted (no list read first).
    let apps = tx.delete_software_oath_methods(&user.id, None).await?;
    let phones = tx.delete_phone_methods(&user.id).await?;
    let mut old: Vec<String> = (0..apps).map(|_| "{\"MethodType\":\"PhoneAppOTP\"}".to_owned()).collect();
    old.extend(phones.iter().map(|kind| {
        let method = match kind.as_str() {
            "mobile" => "OneWaySMS",
            "alternateMobile" => "TwoWayVoiceAlternateMobile",
            _ => "TwoWayVoiceOffice",
        };
        format!("{{\"MethodType\":\"{method}\"}}")
    }));
    Ok(PropertyChange {
        name: "StrongAuthenticationMethod".into(),
        old_value: Some(format!("[{}]", old.join(","))),
        new_value: Some("[]".into()),
    })
}

/// `revokeSignInSessions` and the account page's "Sign out everywhere" both do. `now`, the
/// cut-off, is read after `user`'s row was read for update: a sign-in finishing meanwhile, whose
/// last step reads that row for update too, either committed first, with an earlier time this
/// cut-off ends, or waits for this change and sees the cut-off.
pub(crate) async fn end_sessions(
    tx: &mut dyn Tx,
    user: &mut User,
    now: time::OffsetDateTime,
) -> Result<TargetResource, AppError> {
    let old = user.sign_in_sessions_valid_from;
    user.sign_in_sessions_valid_from = now;
    tx.update_user(user).await?;
    let change = PropertyChange {
        name: "StsRefreshTokensValidFrom".into(),
        old_value: Some(json::string_array([rfc3339(old).as_str()])),
        new_value: Some(json::string_array([rfc3339(now).as_str()])),
    };
    Ok(TargetResource::user(user).with_changes(vec![change]))
}
