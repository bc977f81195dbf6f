//! Caller verification (`keyward_core::caller_verification`): an agent starts one for a user and
//! reads its code out; the user, signed in with a factor they still hold (MFA in the last ten
//! minutes), types it on the "Verify a service-desk call" page; or their manager or another
//! administrator vouches for them. With the tenant's policy on, a pass, a password reset, and any
//! method change on a privileged user need the agent to hold a confirmed verification of that
//! user ([`App::require_verified_caller`], asked by each of those use cases once authorised).

use keyward_core::audit::{Activity, TargetResource};
use keyward_core::authz::{Target, actions};
use keyward_core::caller_verification::{self, Change, Status};
use keyward_core::directory::User;
use keyward_core::ids::ObjectId;
use keyward_core::secret::constant_time_eq;
use keyward_store::{CallerVerification, Tx};
use time::OffsetDateTime;

use crate::directory::resolve_user;
use crate::facts::user_facts;
use crate::setup::random_string;
use crate::{App, AppError, Caller, commit_audited, require, sha256};

/// A verification as the agent, the user or an auditor sees it.
#[derive(Debug, Clone)]
pub struct VerificationView {
    pub id: ObjectId,
    pub agent_id: ObjectId,
    pub agent_name: String,
    pub user_id: ObjectId,
    pub status: Status,
    /// `user`, `manager` or `administrator`, once confirmed.
    pub method: Option<String>,
    pub created: OffsetDateTime,
    /// Until when it waits (pending) or counts (verified).
    pub expires: OffsetDateTime,
    /// The code to read out: only in the answer that started it, to the agent.
    pub code: Option<String>,
}

fn no_prior_factor() -> AppError {
    AppError::Forbidden {
        rule: caller_verification::RULE,
        message: "Confirming a service-desk call needs a sign-in with an authenticator app or a passkey you had \
                  before the call (not a Temporary Access Pass, a remembered device or a method added since): if \
                  you have none, ask the agent to have your manager or another administrator vouch for you."
            .into(),
    }
}

/// Who may start a verification of a user: whoever may change their methods or password.
const AGENT_ACTIONS: [&str; 4] = [
    actions::USERS_AUTH_METHODS_CREATE,
    actions::USERS_AUTH_METHODS_DELETE,
    actions::USERS_AUTH_METHODS_UPDATE,
    actions::USERS_PASSWORD_UPDATE,
];

fn view(it: &CallerVerification, agent_name: String, now: OffsetDateTime, code: Option<String>) -> VerificationView {
    let stored = Status::parse(&it.status).unwrap_or(Status::Failed);
    let expires = match it.verified_at {
        Some(at) => at + caller_verification::VERIFIED_LIFETIME,
        None => it.created_at + caller_verification::PENDING_LIFETIME,
    };
    VerificationView {
        id: it.id.clone(),
        agent_id: it.agent_id.clone(),
        agent_name,
        user_id: it.user_id.clone(),
        status: Status::at(stored, it.created_at, it.verified_at, now),
        method: it.method.clone(),
        created: it.created_at,
        expires,
        code,
    }
}

async fn name_of(tx: &mut dyn Tx, tenant: &ObjectId, id: &ObjectId) -> Result<String, AppError> {
    Ok(match tx.get_user(tenant, id).await? {
        Some(user) => format!("{} ({})", user.display_name, user.user_principal_name),
        None => match tx.get_service_principal(tenant, id).await? {
            Some(app) => app.display_name,
            None => id.to_string(),
        },
    })
}

impl App {
    /// The user signed in on this browser (the sign-in pages' session), as a caller: `Err` with
    /// the tenant's id when nobody is.
    pub async fn browser_caller(
        &self,
        tenant_key: &str,
        cookie: Option<&str>,
        meta: crate::RequestMeta,
    ) -> Result<Result<Caller, ObjectId>, AppError> {
        let tenant = self.find_tenant(tenant_key).await?.ok_or_else(|| AppError::NotFound(tenant_key.to_owned()))?;
        let Some(cookie) = cookie else { return Ok(Err(tenant.id)) };
        let Some((user, session)) = self.signed_in_session(&tenant, cookie).await? else { return Ok(Err(tenant.id)) };
        let mut tx = self.read().await?;
        let actor = crate::tokens::load_user_actor(&mut *tx, &tenant, &user).await?;
        let authentication = session.mfa_at.or(session.authenticated_at).map(|at| (at, session.methods.values()));
        Ok(Ok(Caller {
            tenant,
            principal: crate::Principal::User(std::sync::Arc::new(user)),
            actor,
            meta,
            scopes: None,
            authentication,
            approval: None,
        }))
    }

    /// `POST /beta/keyward/callerVerifications`: the agent starts a verification of `user_key`
    /// and gets the code to read out (shown only here). Needs a permission to change the user's
    /// methods or password; never for oneself.
    pub async fn start_caller_verification(
        &self,
        caller: &Caller,
        user_key: &str,
    ) -> Result<VerificationView, AppError> {
        let now = self.now();
        let mut tx = self.write().await?;
        let user = resolve_user(&mut *tx, &caller.tenant, user_key).await?;
        if user.id == *caller.id() {
            return Err(AppError::BadRequest("You cannot verify yourself as a caller.".into()));
        }
        let facts = user_facts(&mut *tx, &caller.tenant, &user).await?;
        if let Some(err) = AGENT_ACTIONS
            .iter()
            .map(|action| require(caller, action, Target::User(&facts)))
            .find_map(|it| it.err())
            .filter(|_| AGENT_ACTIONS.iter().all(|action| require(caller, action, Target::User(&facts)).is_err()))
        {
            return Err(err);
        }
        let code = random_string(b"0123456789", caller_verification::CODE_DIGITS)?;
        let verification = CallerVerification {
            id: ObjectId::from_bytes(*uuid::Uuid::now_v7().as_bytes()),
            tenant_id: caller.tenant.id.clone(),
            agent_id: caller.id().clone(),
            user_id: user.id.clone(),
            code_sha256: sha256(code.as_bytes()),
            status: Status::Pending.as_str().into(),
            method: None,
            attested_by: None,
            attempts: 0,
            created_at: now,
            verified_at: None,
        };
        tx.insert_caller_verification(&verification).await?;
        let agent = name_of(&mut *tx, &caller.tenant.id, caller.id()).await?;
        tx.commit().await?;
        Ok(view(&verification, agent, now, Some(caller_verification::display_code(&code))))
    }

    /// `GET /beta/keyward/callerVerifications/{id}`: for its agent, its user and readers of the
    /// audit log.
    pub async fn get_caller_verification(&self, caller: &Caller, id: &str) -> Result<VerificationView, AppError> {
        let mut tx = self.read().await?;
        let it = self.visible_verification(&mut *tx, caller, id).await?;
        let agent = name_of(&mut *tx, &caller.tenant.id, &it.agent_id).await?;
        Ok(view(&it, agent, self.now(), None))
    }

    async fn visible_verification(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        id: &str,
    ) -> Result<CallerVerification, AppError> {
        let not_found = || AppError::NotFound(id.to_owned());
        let key = ObjectId::parse(id).ok_or_else(not_found)?;
        let it = tx.get_caller_verification(&caller.tenant.id, &key).await?.ok_or_else(not_found)?;
        let visible = it.agent_id == *caller.id()
            || it.user_id == *caller.id()
            || require(caller, actions::AUDIT_LOGS_READ, Target::Tenant).is_ok();
        if visible { Ok(it) } else { Err(not_found()) }
    }

    /// The verifications waiting for the signed-in user (the "Verify a service-desk call" page).
    pub async fn pending_caller_verifications(&self, caller: &Caller) -> Result<Vec<VerificationView>, AppError> {
        let now = self.now();
        let mut tx = self.read().await?;
        let since = now - caller_verification::PENDING_LIFETIME;
        let mut res = Vec::new();
        for it in tx.list_caller_verifications(&caller.tenant.id, caller.id(), since).await? {
            let agent = name_of(&mut *tx, &caller.tenant.id, &it.agent_id).await?;
            let shown = view(&it, agent, now, None);
            if shown.status == Status::Pending {
                res.push(shown);
            }
        }
        Ok(res)
    }

    /// The user answers a verification: with the code the agent read out (`accept`), or "this is
    /// not my call". Needs MFA within the last ten minutes. Three wrong codes fail it. Audited as
    /// `Caller verified` or `Caller verification failed`.
    pub async fn answer_caller_verification(
        &self,
        caller: &Caller,
        id: &str,
        code: &str,
        accept: bool,
    ) -> Result<Status, AppError> {
        let now = self.now();
        crate::auth_methods::require_recent_mfa(caller, now).map_err(|_| AppError::Forbidden {
            rule: caller_verification::RULE,
            message: "Confirming a service-desk call needs a sign-in with your second factor in the last 10 minutes: \
                      sign in again, then confirm."
                .into(),
        })?;
        let mut tx = self.write().await?;
        let mut it = self.visible_verification(&mut *tx, caller, id).await?;
        if it.user_id != *caller.id() {
            return Err(AppError::NotFound(id.to_owned()));
        }
        let user = caller.delegated_user()?.clone();
        // A factor the user held before the call: not a Temporary Access Pass (which an agent
        // hands out), not a remembered device, not a method registered since the verification
        // started (a caller who only knows the password could register one at the interrupt).
        if accept {
            let amr = caller.authentication.as_ref().map(|(_, amr)| amr.clone()).unwrap_or_default();
            let strong = amr.iter().any(|it| matches!(it.as_str(), "otp" | "fido" | "hwk" | "swk"));
            let before = |created: OffsetDateTime| created <= it.created_at;
            let held_before = tx.list_software_oath_methods(&user.id).await?.iter().any(|it| before(it.created))
                || tx.list_fido2_methods(&user.id).await?.iter().any(|it| before(it.created));
            if !held_before {
                return Err(no_prior_factor());
            }
            if !strong || amr.iter().any(|it| it == "tap") {
                return Err(no_prior_factor());
            }
        }
        let stored = Status::parse(&it.status).unwrap_or(Status::Failed);
        if Status::at(stored, it.created_at, it.verified_at, now) != Status::Pending {
            return Err(AppError::Rejected {
                code: "VerificationNotPending",
                message: "This verification was already answered or has expired: ask the service desk to start a new \
                          one."
                    .into(),
            });
        }
        let previous_attempts = it.attempts;
        let typed = caller_verification::normalise_code(code);
        let matches = accept && constant_time_eq(&sha256(typed.as_bytes()), &it.code_sha256);
        let (activity, reason) = if matches {
            it.status = Status::Verified.as_str().into();
            it.method = Some("user".into());
            it.verified_at = Some(now);
            (Activity::CallerVerified, "The user confirmed the call with the agent's code")
        } else if !accept {
            it.status = Status::Failed.as_str().into();
            (Activity::CallerVerificationFailed, "The user said it was not their call")
        } else {
            it.attempts += 1;
            if it.attempts >= caller_verification::MAX_ATTEMPTS {
                it.status = Status::Failed.as_str().into();
            }
            (Activity::CallerVerificationFailed, "The user typed a code that does not match")
        };
        if !tx.update_caller_verification(&it, previous_attempts, now - caller_verification::PENDING_LIFETIME).await? {
            return Err(AppError::Conflict("The verification was answered meanwhile.".into()));
        }
        let mut record = caller.succeeded(now, activity, vec![TargetResource::user(&user)]);
        record.result_reason = reason.into();
        record.additional_details = vec![
            ("CallerVerificationId".into(), it.id.to_string()),
            ("AgentId".into(), it.agent_id.to_string()),
            ("Method".into(), "user".into()),
        ];
        commit_audited(tx, [record]).await?;
        Ok(Status::parse(&it.status).unwrap_or(Status::Failed))
    }

    /// `POST /beta/keyward/callerVerifications/{id}/attest`: the user's manager, or an
    /// administrator who may change the user's methods, vouches for a user who holds no factor.
    /// A person (not an application), never the agent nor the user. Audited as `Caller verified`.
    pub async fn attest_caller(&self, caller: &Caller, id: &str) -> Result<VerificationView, AppError> {
        let now = self.now();
        let mut tx = self.write().await?;
        let not_found = || AppError::NotFound(id.to_owned());
        let key = ObjectId::parse(id).ok_or_else(not_found)?;
        let mut it = tx.get_caller_verification(&caller.tenant.id, &key).await?.ok_or_else(not_found)?;
        let previous_attempts = it.attempts;
        let user =
            tx.get_user(&caller.tenant.id, &it.user_id).await?.ok_or_else(|| AppError::NotFound(id.to_owned()))?;
        if *caller.id() == it.agent_id || *caller.id() == it.user_id {
            let err = AppError::Forbidden {
                rule: caller_verification::RULE,
                message: "Neither the agent nor the user can vouch for the caller: their manager or another \
                          administrator must."
                    .into(),
            };
            return Err(self
                .refused(Some(tx), caller, Activity::CallerVerified, vec![TargetResource::user(&user)], err)
                .await);
        }
        let facts = user_facts(&mut *tx, &caller.tenant, &user).await?;
        let is_administrator = require(caller, actions::USERS_AUTH_METHODS_CREATE, Target::User(&facts)).is_ok();
        // A manager vouches only for an ordinary user, and only when the agent could not have
        // made them the manager first: otherwise an administrator must vouch.
        let is_manager = user.manager.as_ref() == Some(caller.id())
            && !crate::dual_control::is_privileged_target(&mut *tx, &caller.tenant, &user).await?
            && !self.agent_may_set_manager(&mut *tx, caller, &it.agent_id, &user).await?;
        if !is_manager && !is_administrator {
            return Err(AppError::NotFound(id.to_owned()));
        }
        let fresh = caller.has_mfa_within(now, time::Duration::hours(1));
        if caller.user().is_none() || !fresh || *caller.id() == it.agent_id || *caller.id() == it.user_id {
            let err = AppError::Forbidden {
                rule: caller_verification::RULE,
                message: "Only a person other than the agent and the user (their manager, or another administrator), \
                          signed in with multi-factor authentication within the last hour, can vouch for the caller."
                    .into(),
            };
            return Err(self
                .refused(Some(tx), caller, Activity::CallerVerified, vec![TargetResource::user(&user)], err)
                .await);
        }
        let stored = Status::parse(&it.status).unwrap_or(Status::Failed);
        if Status::at(stored, it.created_at, it.verified_at, now) != Status::Pending {
            return Err(AppError::Rejected {
                code: "VerificationNotPending",
                message: "This verification was already answered or has expired: the agent must start a new one."
                    .into(),
            });
        }
        let method = if is_manager { "manager" } else { "administrator" };
        it.status = Status::Verified.as_str().into();
        it.method = Some(method.into());
        it.attested_by = Some(caller.id().clone());
        it.verified_at = Some(now);
        if !tx.update_caller_verification(&it, previous_attempts, now - caller_verification::PENDING_LIFETIME).await? {
            return Err(AppError::Conflict("The verification was answered meanwhile.".into()));
        }
        let mut record = caller.succeeded(now, Activity::CallerVerified, vec![TargetResource::user(&user)]);
        record.result_reason = format!("The user's {method} vouched for the caller");
        record.additional_details = vec![
            ("CallerVerificationId".into(), it.id.to_string()),
            ("AgentId".into(), it.agent_id.to_string()),
            ("Method".into(), method.into()),
        ];
        let agent = name_of(&mut *tx, &caller.tenant.id, &it.agent_id).await?;
        commit_audited(tx, [record]).await?;
        Ok(view(&it, agent, now, None))
    }

    /// Whether the agent of a verification may change `user`'s manager (and so could have made an
    /// accomplice the manager who vouches).
    async fn agent_may_set_manager(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        agent: &ObjectId,
        user: &User,
    ) -> Result<bool, AppError> {
        let is_app = tx.get_user(&caller.tenant.id, agent).await?.is_none();
        let stored = crate::dual_control::StoredCaller { id: agent, is_app, scopes: None, ip_address: None };
        let Ok(agent) = stored.load(tx, &caller.tenant, &caller.meta.correlation_id).await else { return Ok(false) };
        let facts = user_facts(tx, &caller.tenant, user).await?;
        Ok(require(&agent, actions::USERS_MANAGER_UPDATE, Target::User(&facts)).is_ok())
    }

    /// [`App::require_verified_caller`] in a change's transaction: the transaction back, or the
    /// refusal recorded as a failure of `activity`.
    pub(crate) async fn verified_or_refused(
        &self,
        mut tx: Box<dyn Tx>,
        caller: &Caller,
        user: &User,
        change: Change,
        activity: Activity,
    ) -> Result<Box<dyn Tx>, AppError> {
        match self.require_verified_caller(&mut *tx, caller, user, change, self.now()).await {
            Ok(()) => Ok(tx),
            Err(err) => Err(self.refused(Some(tx), caller, activity, vec![TargetResource::user(user)], err).await),
        }
    }

    /// Refuses `change` to `user` by `caller` when the policy wants a verified caller and the agent
    /// holds no confirmed verification of that user from the last minutes. Never for one's own
    /// account, nor for a change dual control approved (the verification was asked for when it
    /// was requested).
    pub(crate) async fn require_verified_caller(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        user: &User,
        change: Change,
        now: OffsetDateTime,
    ) -> Result<(), AppError> {
        if caller.approval.is_some() || user.id == *caller.id() {
            return Ok(());
        }
        let tenant = &caller.tenant.id;
        let policy = tx.caller_verification_policy(tenant).await?;
        if !policy.requires(change, true) {
            return Ok(());
        }
        let privileged = match change {
            Change::OtherMethodChange => crate::dual_control::is_privileged_target(tx, &caller.tenant, user).await?,
            _ => false,
        };
        if !policy.requires(change, privileged) {
            return Ok(());
        }
        let since = now - caller_verification::VERIFIED_LIFETIME;
        if tx.has_verified_caller(tenant, caller.id(), &user.id, since).await? {
            return Ok(());
        }
        Err(AppError::Forbidden {
            rule: caller_verification::RULE,
            message: format!(
                "Verify the caller first: start a verification of {} (POST /beta/keyward/callerVerifications), read its \
                 code to them, and let them confirm it on their Verify a \
                 service-desk call page (or have their manager vouch for them). It then counts for {} minutes.",
                user.user_principal_name,
                caller_verification::VERIFIED_LIFETIME.whole_minutes()
            ),
        })
    }
}
