//! Signing in through the browser pages: username, then password or Temporary Access Pass, then a
//! one-time code (or the registration interrupt), with smart lockout, remembered devices, forced
//! password change, and a sign-in log entry for every attempt.
//!
//! The flow lives in a server-side session row (`browser_sessions`) named by a random cookie; the
//! row stores only a SHA-256 of the cookie. Every decision is the core's (`keyward_core::signin`,
//! `keyward_core::totp`); this module sequences load, decide, persist and log.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::audit::{Activity, AuditContext, AuditRecord, Initiator, TargetResource};
use keyward_core::authz::built_in_role;
use keyward_core::directory::{PropertyChange, Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_core::password;
use keyward_core::secret::Secret;
use keyward_core::secret::constant_time_eq;
use keyward_core::signin::{
    self, AuthenticationDetail, FirstFactor, MfaDone, MfaReason, NextStep, SessionFacts, SignInPolicy, SignInRecord,
    Stage, codes,
};
use keyward_core::signin::{Amr, AuthMethodRef};
use keyward_core::signin_query::SignInFilter;
use keyward_core::totp::{self, CodeError};
use keyward_store::{BrowserSession, SoftwareOathMethod, Tx, UserSignInState};
use time::{Duration, OffsetDateTime};

use crate::auth_methods::Who;
use crate::commit_audited;
use crate::methods_policy::{UserMethods, user_methods};
use crate::passkeys::{CreationOptions, passkey_kind};
use crate::signin_admin::{end_sessions, strong_authentication_requirement};
use crate::tokens::load_user_actor;
use crate::{App, AppError, Caller, Principal, RequestMeta, audit_id, new_id, random_token, rfc3339, sha256};
use keyward_core::auth_methods::PhoneType;
use keyward_core::methods_policy::{Campaign, Nudge, campaign_nudge};

mod passkey;

pub use passkey::PasskeyRequest;

/// The application id the sign-in log names for Keyward's own pages.
pub const PORTAL_APP_ID: &str = "7e1a6c1d-6b3a-4f0e-9a55-6b6579776172";
/// Its display name.
pub const PORTAL_APP_NAME: &str = "Keyward My Account";

/// How long an unfinished sign-in may take.
const FLOW_LIFETIME: Duration = Duration::minutes(30);
/// How long a signed-in browser session lasts (absolute).
const SESSION_LIFETIME: Duration = Duration::hours(12);
/// Adding a method from the account page needs MFA this recent.
const RECENT_MFA: Duration = Duration::minutes(10);

/// Sign-ins the account page lists.
const RECENT_SIGN_INS: usize = 10;

/// A submitted sign-in form. `step` names the page it came from (or an account action:
/// `signout`, `add_totp`, `change_password`).
#[derive(Debug, Default)]
pub struct SignInForm {
    pub step: String,
    pub csrf: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub code: Option<String>,
    pub remember: bool,
    pub new_password: Option<Secret>,
    pub confirm_password: Option<Secret>,
    /// The user-name form of a sign-in that has no session row yet carries where to go after it.
    pub return_to: Option<String>,
    /// The account page's forms: which method (`totp:{id}`, `phone:{type}`, `email`), a phone
    /// type, the number or address typed, and whether a deletion was confirmed.
    pub method: Option<String>,
    pub phone_type: Option<String>,
    pub value: Option<String>,
    pub confirmed: bool,
    /// "Not now" on the registration campaign's prompt.
    pub skip: bool,
    /// A passkey's answer or new credential, as the page's script sends it
    /// (`PublicKeyCredential.toJSON()`).
    pub credential: Option<String>,
}

/// The page to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInPage {
    Username {
        error: Option<String>,
        /// "Sign in with a passkey", when passkeys are on in the tenant.
        passkey: Option<PasskeyRequest>,
    },
    Password {
        username: String,
        error: Option<String>,
        passkey: Option<PasskeyRequest>,
    },
    ChangePassword {
        username: String,
        is_required: bool,
        error: Option<String>,
    },
    Mfa {
        username: String,
        remember_days: i64,
        error: Option<String>,
        /// Whether the authenticator-app code form is shown.
        code: bool,
        /// The user's passkeys, when they may use them.
        passkey: Option<PasskeyRequest>,
        /// Whether the passkey is offered before the code (the user's sign-in preferences).
        passkey_first: bool,
    },
    /// The registration interrupt: which methods the user may set up.
    MoreInfo {
        username: String,
        totp: bool,
        passkey: bool,
        error: Option<String>,
    },
    /// Creating a passkey: the options for `navigator.credentials.create`.
    RegisterPasskey {
        username: String,
        /// `None` when the session may not add a method now (the error says why).
        options: Option<CreationOptions>,
        can_cancel: bool,
        error: Option<String>,
    },
    /// The registration campaign: "set up an authenticator app", with "Not now" while the user
    /// may still skip it (for `snooze_days`).
    Campaign {
        username: String,
        can_skip: bool,
        snooze_days: i64,
        error: Option<String>,
    },
    RegisterTotp {
        username: String,
        secret: String,
        uri: String,
        can_cancel: bool,
        error: Option<String>,
    },
    Account {
        display_name: String,
        user_principal_name: String,
        /// Each method's label and, for those the user may delete here, its form value.
        methods: Vec<(String, Option<String>)>,
        /// Whether "Add a passkey" is offered.
        can_add_passkey: bool,
        /// The user's newest sign-ins: time, application, result, IP address.
        recent: Vec<(String, String, String, String)>,
        notice: Option<String>,
    },
    /// "Delete this method?" on the account page.
    ConfirmDelete {
        label: String,
        method: String,
    },
}

/// How a user's own password change ended (`App::change_password`).
enum PasswordChange {
    Changed(Box<User>),
    /// Smart lockout holds the account until then; the current password was not checked.
    Locked(OffsetDateTime),
    /// The current password is wrong.
    Wrong,
    /// Right, but other attempts locked the account while it was checked.
    LockedWhileChecking,
    /// The session that asked for it was ended (its sessions revoked, the account disabled)
    /// before the change could commit: the sign-in log's code for that.
    Ended(i32),
}

/// What the transport must do: show a page or redirect, and which cookies to set.
#[derive(Debug, Clone)]
pub struct SignInView {
    pub tenant_id: ObjectId,
    pub page: Option<SignInPage>,
    pub redirect: Option<String>,
    /// The CSRF token every form on the page carries.
    pub csrf: String,
    /// A new session cookie value to set.
    pub set_session: Option<String>,
    /// The session ended: clear the cookie.
    pub clear_session: bool,
    /// A remembered-device cookie and its lifetime in days.
    pub set_device: Option<(String, i64)>,
    /// For a sign-in not started yet (no session row): where to go afterwards, carried by the
    /// user-name form (bound to the cookie by its MAC).
    pub pending_return_to: Option<String>,
}

/// The CSRF token of a session: derived from the cookie, so it needs no storage and reveals
/// nothing about the cookie.
pub fn csrf_token(cookie: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(format!("keyward csrf v1:{cookie}").as_bytes()))
}

/// A return address is a path on this site: `/…`, never `//host` or `/\host`, and without any
/// whitespace or control character (browsers drop tabs and line breaks from URLs, so
/// `/\t/evil.example` would become `//evil.example`).
fn safe_return_to(raw: Option<&str>) -> String {
    match raw {
        Some(it)
            if it.starts_with('/')
                && !it.starts_with("//")
                && !it.contains('\\')
                && !it.chars().any(|ch| ch.is_control() || ch.is_whitespace()) =>
        {
            it.to_owned()
        }
        _ => String::new(),
    }
}

fn try_again_after(until: OffsetDateTime) -> String {
    format!("Try again after {}, or ask your administrator to help.", clock(until))
}

/// The time of day a lockout ends, as messages show it (`14:05:09 UTC`).
pub(crate) fn clock(until: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[hour]:[minute]:[second] UTC");
    until.format(&format).unwrap_or_else(|_| until.to_string())
}

fn lockout_message(until: OffsetDateTime) -> String {
    format!("Your account is temporarily locked to prevent unauthorized use. {}", try_again_after(until))
}

const NOTHING_TO_REGISTER: &str = "Your organization requires multi-factor authentication, but no method you can \
                                   set up is turned on for your account. Contact your administrator.";

const WRONG_CREDENTIALS: &str = "Your account or password is incorrect. Check them and try again; if you don't \
                                 remember your password, ask your administrator to reset it.";

/// What a pending sign-in cookie's MAC covers.
fn pending_message(tenant: &ObjectId, random: &str, expires: i64, return_to: &str) -> String {
    format!("keyward sign-in v1:{tenant}:{random}:{expires}:{return_to}")
}

/// The state a submission works on.
struct Flow {
    tenant: Tenant,
    cookie: String,
    session: BrowserSession,
    meta: RequestMeta,
}

impl Flow {
    /// When this session counts from, for the sessions' cut-off: its sign-in once signed in,
    /// else the sign-in's start.
    fn began(&self) -> OffsetDateTime {
        self.session.authenticated_at.unwrap_or(self.session.created)
    }
}

/// Counts a wrong one-time or device code toward the user's code lockout in `state`.
pub(crate) fn count_code_failure(state: &mut UserSignInState, policy: &SignInPolicy, now: OffsetDateTime) {
    state.code = state.code.after_failure(policy.code_attempt_limit, Duration::seconds(policy.lockout_seconds), now);
}

impl App {
    /// `GET` of the sign-in page: continues the session named by `cookie`, or starts a new one.
    /// A signed-in session goes to `return_to` (or the account page); a revoked one is logged
    /// (50173) and the user signs in again.
    pub async fn sign_in_view(
        &self,
        tenant_key: &str,
        cookie: Option<&str>,
        return_to: Option<&str>,
        meta: RequestMeta,
    ) -> Result<SignInView, AppError> {
        let tenant = self.find_tenant(tenant_key).await?.ok_or_else(|| AppError::NotFound(tenant_key.to_owned()))?;
        let now = self.now();
        if let Some(cookie) = cookie {
            let mut tx = self.read_short().await?;
            let session = tx.get_browser_session(&sha256(cookie.as_bytes())).await?;
            drop(tx);
            if let Some(session) = session.filter(|it| it.tenant_id == tenant.id && it.expires_at > now) {
                let mut flow = Flow { tenant, cookie: cookie.to_owned(), session, meta };
                if flow.session.authenticated_at.is_none() {
                    return self.render(&mut flow, None).await;
                }
                // A signed-in session, on the account page or one of its steps: it must still count.
                match self.check_signed_in(&mut flow).await? {
                    Some(_) if flow.session.stage != Stage::Done => {
                        return self.render(&mut flow, None).await;
                    }
                    Some(user) => {
                        let target = safe_return_to(return_to);
                        if !target.is_empty() {
                            return Ok(self.redirect(&flow, target));
                        }
                        return self.account_page(&flow, &user, None).await;
                    }
                    None => return self.session_ended(&flow.tenant).await,
                }
            }
        }
        self.start_flow(&tenant, return_to, None).await
    }

    /// `POST` of a sign-in form.
    pub async fn sign_in_submit(
        &self,
        tenant_key: &str,
        cookie: Option<&str>,
        device_cookie: Option<&str>,
        form: SignInForm,
        meta: RequestMeta,
    ) -> Result<SignInView, AppError> {
        let tenant = self.find_tenant(tenant_key).await?.ok_or_else(|| AppError::NotFound(tenant_key.to_owned()))?;
        let now = self.now();
        let mut session = match cookie {
            Some(cookie) => {
                let mut tx = self.read_short().await?;
                tx.get_browser_session(&sha256(cookie.as_bytes())).await?
            }
            None => None,
        };
        if let (None, Some(cookie), "username" | "passkey") = (&session, cookie, form.step.as_str()) {
            // The first form of a sign-in started by a page load that wrote nothing. The CSRF
            // token is checked before anything is written.
            if constant_time_eq(csrf_token(cookie).as_bytes(), form.csrf.as_bytes()) {
                let return_to = form.return_to.as_deref().unwrap_or_default();
                session = self.materialize_flow(&tenant, cookie, return_to).await?;
            }
        }
        let (Some(cookie), Some(session)) = (cookie, session.filter(|it| it.tenant_id == tenant.id)) else {
            return self
                .start_flow(
                    &tenant,
                    None,
                    Some("Your sign-in page expired or cookies are blocked. Allow cookies and sign in again.".into()),
                )
                .await;
        };
        let expected = csrf_token(cookie);
        if !constant_time_eq(expected.as_bytes(), form.csrf.as_bytes()) {
            return Err(AppError::BadRequest(
                "This form did not come from this sign-in page (the security token does not match). Go back, reload \
                 the page and try again."
                    .into(),
            ));
        }
        if session.expires_at <= now {
            return self
                .start_flow(&tenant, Some(&session.return_to), Some("Your sign-in took too long. Start again.".into()))
                .await;
        }
        let mut flow = Flow { tenant, cookie: cookie.to_owned(), session, meta };
        let stage = flow.session.stage;
        if flow.session.authenticated_at.is_some() {
            // Signed in: every form (the account page and its steps) needs the session to count.
            let Some(user) = self.check_signed_in(&mut flow).await? else {
                return self.session_ended(&flow.tenant).await;
            };
            match form.step.as_str() {
                "signout" => return self.sign_out(&flow).await,
                "signout_everywhere" => return self.sign_out_everywhere(&flow, &user).await,
                "cancel" => {
                    flow.session.stage = Stage::Done;
                    flow.session.pending_secret = None;
                    self.save_session(&flow.session).await?;
                    return self.account_page(&flow, &user, None).await;
                }
                _ if stage == Stage::Done => return self.account_action(&mut flow, &user, &form).await,
                _ => (),
            }
        }
        if form.step == "back" && stage == Stage::RegisterPasskey {
            return self.submit_passkey_registration(&mut flow, &form).await;
        }
        if form.step == "passkey" && flow.session.authenticated_at.is_none() {
            return match stage {
                Stage::Username | Stage::Password | Stage::Mfa => self.submit_passkey(&mut flow, &form).await,
                _ => self.render(&mut flow, None).await,
            };
        }
        if form.step != stage.as_str() {
            // A stale form (back button, second tab): show where the sign-in really stands.
            return self.render(&mut flow, None).await;
        }
        match stage {
            Stage::Username => self.submit_username(&mut flow, &form).await,
            Stage::Password => self.submit_first_factor(&mut flow, &form, device_cookie).await,
            Stage::ChangePassword => self.submit_new_password(&mut flow, &form, device_cookie).await,
            Stage::Mfa => self.submit_code(&mut flow, &form).await,
            Stage::MoreInfo if form.method.as_deref() == Some("passkey") => {
                self.begin_passkey_registration(&mut flow).await
            }
            Stage::MoreInfo => self.begin_totp_registration(&mut flow).await,
            Stage::Campaign => self.submit_campaign(&mut flow, &form).await,
            Stage::RegisterTotp => self.submit_registration(&mut flow, &form).await,
            Stage::RegisterPasskey => self.submit_passkey_registration(&mut flow, &form).await,
            Stage::Done => self.render(&mut flow, None).await,
        }
    }

    /// A new sign-in: a cookie and the user-name page, and nothing written yet. The cookie is
    /// `{random}.{expiry}.{mac}`, the MAC binding it to the tenant, its expiry and the return
    /// address the form carries; the session row is created by the first form post
    /// ([`App::materialize_flow`]), so a flood of page loads writes nothing.
    async fn start_flow(
        &self,
        tenant: &Tenant,
        return_to: Option<&str>,
        error: Option<String>,
    ) -> Result<SignInView, AppError> {
        let expires = (self.now() + FLOW_LIFETIME).unix_timestamp();
        let return_to = safe_return_to(return_to);
        let random = random_token()?;
        let mac =
            self.inner.keys.sign_checkpoint(pending_message(&tenant.id, &random, expires, &return_to).as_bytes())?;
        let cookie = format!("{random}.{expires}.{mac}");
        let passkey = self.passkey_request(&tenant.id, &cookie, None).await?;
        Ok(SignInView {
            tenant_id: tenant.id.clone(),
            page: Some(SignInPage::Username { error, passkey }),
            redirect: None,
            csrf: csrf_token(&cookie),
            set_session: Some(cookie),
            clear_session: false,
            set_device: None,
            pending_return_to: Some(return_to),
        })
    }

    /// The session row of a sign-in whose first form arrives now, if `cookie` is a pending
    /// cookie this server issued for this tenant and `return_to`, and has not expired.
    async fn materialize_flow(
        &self,
        tenant: &Tenant,
        cookie: &str,
        return_to: &str,
    ) -> Result<Option<BrowserSession>, AppError> {
        let now = self.now();
        let mut parts = cookie.splitn(3, '.');
        let (Some(random), Some(expires), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(None);
        };
        let Ok(expires) = expires.parse::<i64>() else { return Ok(None) };
        let message = pending_message(&tenant.id, random, expires, return_to);
        if expires <= now.unix_timestamp() || self.inner.keys.verify_checkpoint(message.as_bytes(), mac) != Some(true) {
            return Ok(None);
        }
        let session = BrowserSession {
            id_sha256: sha256(cookie.as_bytes()),
            tenant_id: tenant.id.clone(),
            user_id: None,
            stage: Stage::Username,
            username: None,
            return_to: return_to.to_owned(),
            created: now,
            expires_at: OffsetDateTime::from_unix_timestamp(expires).unwrap_or(now + FLOW_LIFETIME),
            authenticated_at: None,
            mfa_at: None,
            methods: Amr::default(),
            pass_expires_at: None,
            pending_secret: None,
            correlation_id: uuid::Uuid::new_v4().to_string(),
            portal_seen_at: None,
        };
        let mut tx = self.write().await?;
        match tx.insert_browser_session(&session).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(Some(session))
            }
            // A concurrent first post of the same sign-in created it.
            Err(keyward_store::StoreError::Conflict { .. }) => {
                drop(tx);
                Ok(self.read_short().await?.get_browser_session(&session.id_sha256).await?)
            }
            Err(err) => Err(err.into()),
        }
    }

    fn view(&self, flow: &Flow, page: SignInPage) -> SignInView {
        SignInView {
            tenant_id: flow.tenant.id.clone(),
            page: Some(page),
            redirect: None,
            csrf: csrf_token(&flow.cookie),
            set_session: None,
            clear_session: false,
            set_device: None,
            pending_return_to: None,
        }
    }

    fn redirect(&self, flow: &Flow, target: String) -> SignInView {
        SignInView {
            page: None,
            redirect: Some(target),
            ..self.view(flow, SignInPage::Username { error: None, passkey: None })
        }
    }

    /// The page for the session's stage.
    async fn render(&self, flow: &mut Flow, error: Option<String>) -> Result<SignInView, AppError> {
        let username = flow.session.username.clone().unwrap_or_default();
        let page = match flow.session.stage {
            Stage::Username => SignInPage::Username {
                error,
                passkey: self.passkey_request(&flow.tenant.id, &flow.cookie, None).await?,
            },
            Stage::Password => SignInPage::Password {
                username,
                error,
                passkey: self.passkey_request(&flow.tenant.id, &flow.cookie, None).await?,
            },
            Stage::ChangePassword => {
                SignInPage::ChangePassword { is_required: flow.session.authenticated_at.is_none(), username, error }
            }
            Stage::Mfa => {
                let user = self.flow_user(flow).await?;
                let (policy, _) = self.read_short().await?.sign_in_policy(&flow.tenant.id).await?;
                let facts = self.mfa_facts(&flow.tenant, &user, &policy).await?;
                return self.mfa_page(flow, &policy, facts, error).await;
            }
            Stage::MoreInfo => {
                let user = self.flow_user(flow).await?;
                let methods = self.user_methods(&flow.tenant.id, &user.id).await?;
                SignInPage::MoreInfo {
                    username,
                    totp: methods.software_oath,
                    passkey: methods.fido2_registration,
                    error,
                }
            }
            Stage::RegisterPasskey => self.register_passkey_page(flow, error).await?,
            Stage::Campaign => {
                let user = self.flow_user(flow).await?;
                let (policy, _) = self.read_short().await?.sign_in_policy(&flow.tenant.id).await?;
                let facts = self.mfa_facts(&flow.tenant, &user, &policy).await?;
                let can_skip = !matches!(campaign_nudge_of(&facts, self.now()), Nudge::Register { can_skip: false });
                SignInPage::Campaign { username, can_skip, snooze_days: facts.campaign.snooze_days, error }
            }
            Stage::RegisterTotp => {
                let user = self.flow_user(flow).await?;
                let sealed = flow.session.pending_secret.clone().ok_or_else(|| unexpected("no pending secret"))?;
                let secret = self.inner.keys.open_secret(user.id.as_str().as_bytes(), &sealed)?;
                SignInPage::RegisterTotp {
                    secret: totp::base32_encode(&secret),
                    uri: totp::otpauth_uri("Keyward", &user.user_principal_name, &secret),
                    username,
                    can_cancel: flow.session.authenticated_at.is_some(),
                    error,
                }
            }
            Stage::Done => {
                let user = self.check_signed_in(flow).await?.ok_or_else(|| unexpected("rendering an ended session"))?;
                return self.account_page(flow, &user, error).await;
            }
        };
        Ok(self.view(flow, page))
    }

    /// The code page, from the facts the caller just read (the sign-in policy and the user's
    /// second factors); what it offers is checked again when the form comes back.
    async fn mfa_page(
        &self,
        flow: &Flow,
        policy: &SignInPolicy,
        facts: MfaFacts,
        error: Option<String>,
    ) -> Result<SignInView, AppError> {
        let passkey = self.passkey_request(&flow.tenant.id, &flow.cookie, Some(facts.passkeys)).await?;
        // The code form is offered whenever a passkey is not the only way left.
        let code = facts.has_app || passkey.is_none();
        let passkey_first = facts.state.preferences.passkey_first();
        let page = SignInPage::Mfa {
            username: flow.session.username.clone().unwrap_or_default(),
            remember_days: policy.remember_mfa_days,
            error,
            code,
            passkey,
            passkey_first,
        };
        Ok(self.view(flow, page))
    }

    async fn submit_username(&self, flow: &mut Flow, form: &SignInForm) -> Result<SignInView, AppError> {
        let username = form.username.as_deref().map(str::trim).unwrap_or_default();
        if username.is_empty() || username.len() > 256 {
            return self.render(flow, Some("Enter a valid email address or user name.".into())).await;
        }
        // The lookup and the session's next stage: one transaction.
        let mut tx = self.write().await?;
        let user = tx.find_user_by_upn(&flow.tenant.id, username).await?;
        // Whether the account exists is not shown: an unknown name gets the same password page.
        // The name is shown back as typed, for known and unknown accounts alike.
        flow.session.username = Some(username.to_owned());
        flow.session.user_id = user.map(|it| it.id);
        flow.session.stage = Stage::Password;
        tx.update_browser_session(&flow.session).await?;
        tx.commit().await?;
        self.render(flow, None).await
    }

    async fn submit_first_factor(
        &self,
        flow: &mut Flow,
        form: &SignInForm,
        device_cookie: Option<&str>,
    ) -> Result<SignInView, AppError> {
        let Some(secret) = form.password.as_ref().filter(|it| !it.expose().is_empty()) else {
            return self.render(flow, Some("Enter your password.".into())).await;
        };
        self.throttle(crate::Surface::SignInPages, None, flow.session.username.as_deref())?;
        let now = self.now();
        // The attempt is counted (reserved) before the secret is checked, in the same write
        // transaction that reads what the check needs: parallel attempts cannot outrun the lockout.
        let mut tx = self.write().await?;
        let user = match &flow.session.user_id {
            Some(id) => tx.get_user(&flow.tenant.id, id).await?,
            None => None,
        };
        let (policy, tap_policy) = tx.sign_in_policy(&flow.tenant.id).await?;
        let (reservation, pass, hash) = match &user {
            Some(user) => match reserve_attempt(&mut *tx, &user.id, &policy, now).await? {
                Ok(reservation) => (
                    Some(reservation),
                    tx.get_temporary_access_pass(&user.id).await?,
                    tx.get_password_hash(&user.id).await?,
                ),
                Err(until) => {
                    drop(tx);
                    let failed = detail(now, "Password", false, "Account locked");
                    self.log_sign_in(flow, Some(user), codes::LOCKED, vec![failed]).await?;
                    return self.render(flow, Some(lockout_message(until))).await;
                }
            },
            None => (None, None, None),
        };
        tx.commit().await?;
        let pass_matches =
            pass.as_ref().is_some_and(|it| self.inner.keys.pass_matches(secret.expose(), &it.pass_sha256));
        let (factor, is_ok, method) = if pass_matches {
            let pass = pass.as_ref().ok_or_else(|| unexpected("pass vanished"))?;
            let user = user.as_ref().ok_or_else(|| unexpected("a pass without its user"))?;
            let targeted = self.user_methods(&flow.tenant.id, &user.id).await?.tap;
            let usability = signin::tap_usability(
                // The first administrator's and an operator's recovery pass work even when the
                // tenant turned the method off: they are how an administrator gets in at all.
                (tap_policy.is_enabled && targeted) || pass.ends_at_registration,
                pass.start,
                pass.lifetime_minutes,
                pass.is_usable_once,
                pass.used_at.is_some(),
                now,
            );
            (FirstFactor::TemporaryAccessPass, usability.is_usable(), "Temporary Access Pass")
        } else {
            (FirstFactor::Password, self.inner.hasher.verify(secret.expose(), hash.as_deref()).await?, "Password")
        };
        // A known user's failed sign-in names the user in the log, as Entra's does.
        let known = if is_ok { None } else { user.clone() };
        let (Some(user), Some(reservation)) = (user.filter(|_| is_ok), reservation) else {
            // Already counted by the reservation. The log says whether the account exists (as
            // Entra's does, 50034), the page does not.
            let code = if known.is_some() { codes::INVALID_CREDENTIALS } else { codes::USER_NOT_FOUND };
            self.log_sign_in(
                flow,
                known.as_ref(),
                code,
                vec![detail(now, method, false, "Invalid username or password")],
            )
            .await?;
            return self.render(flow, Some(WRONG_CREDENTIALS.into())).await;
        };
        if !user.account_enabled {
            self.log_sign_in(flow, Some(&user), codes::DISABLED, vec![detail(now, method, true, "Account disabled")])
                .await?;
            return self
                .render(flow, Some("Your account has been disabled. Contact your administrator to enable it.".into()))
                .await;
        }
        let mut tx = self.write().await?;
        if !settle_success(&mut *tx, &user.id, &reservation, now).await? {
            // Locked by a concurrent attempt while this one was checked: answered exactly like a
            // wrong secret checked at the same time, so the answer tells nothing about the secret.
            drop(tx);
            let failed = detail(now, method, false, "Account locked");
            self.log_sign_in(flow, Some(&user), codes::LOCKED, vec![failed]).await?;
            return self.render(flow, Some(WRONG_CREDENTIALS.into())).await;
        }
        if factor == FirstFactor::TemporaryAccessPass {
            let pass = pass.ok_or_else(|| unexpected("pass vanished"))?;
            if pass.is_usable_once && !tx.use_temporary_access_pass(&pass.id, now).await? {
                drop(tx);
                self.log_sign_in(
                    flow,
                    Some(&user),
                    codes::INVALID_CREDENTIALS,
                    vec![detail(now, method, false, "Temporary Access Pass already used")],
                )
                .await?;
                return self.render(flow, Some(WRONG_CREDENTIALS.into())).await;
            }
            flow.session.pass_expires_at = Some(pass.start + Duration::minutes(pass.lifetime_minutes));
            flow.session.methods = Amr::of(&[AuthMethodRef::TemporaryAccessPass, AuthMethodRef::Mfa]);
            flow.session.mfa_at = Some(now);
        } else {
            flow.session.methods = Amr::of(&[AuthMethodRef::Password]);
            flow.session.mfa_at = None;
            flow.session.pass_expires_at = None;
        }
        // The attempt is settled (and a pass spent) before anything else is read: a read that
        // failed, or a client that went away, must not leave a right password counted as wrong.
        tx.commit().await?;
        let result = if factor == FirstFactor::TemporaryAccessPass {
            "Temporary Access Pass validated"
        } else {
            "Correct password"
        };
        let first = detail(now, method, true, result);
        if factor == FirstFactor::Password && user.force_change_password_next_sign_in {
            flow.session.stage = Stage::ChangePassword;
            self.save_session(&flow.session).await?;
            self.log_sign_in(flow, Some(&user), codes::PASSWORD_EXPIRED, vec![first]).await?;
            return self.render(flow, None).await;
        }
        // What decides the second factor, and the remembered device: one snapshot.
        let mut tx = self.read_short().await?;
        let facts = self.usable_facts(mfa_facts_in(&mut *tx, &flow.tenant, &user, &policy).await?);
        let device = remembered_device(&mut *tx, device_cookie).await?;
        drop(tx);
        self.after_first_factor(flow, &user, factor, &policy, facts, device, first).await
    }

    /// What follows a first factor, from the user's second-factor facts and the remembered
    /// device the browser presented, both read by the caller.
    #[allow(clippy::too_many_arguments)]
    async fn after_first_factor(
        &self,
        flow: &mut Flow,
        user: &User,
        factor: FirstFactor,
        policy: &SignInPolicy,
        facts: MfaFacts,
        device: Option<signin::RememberedDevice>,
        first: AuthenticationDetail,
    ) -> Result<SignInView, AppError> {
        let now = self.now();
        let state = &facts.state;
        let remembered = device.is_some_and(|it| {
            signin::device_honoured(&it, &user.id, state.remembered_devices_not_before, policy.remember_mfa_days, now)
        });
        match signin::after_first_factor(factor, facts.requirement, facts.has_method, remembered) {
            NextStep::Done { mfa } => {
                let mut details = vec![first];
                if mfa == MfaDone::ByRememberedDevice {
                    details.push(detail(
                        now,
                        "Previously satisfied",
                        true,
                        "MFA requirement satisfied by remembered device",
                    ));
                    flow.session.methods.push(AuthMethodRef::Mfa);
                    flow.session.mfa_at = Some(now);
                }
                if let Some(view) = self.campaign_interrupt(flow, user, &facts).await? {
                    return Ok(view);
                }
                self.finish(flow, user, details).await
            }
            NextStep::Register if !facts.methods.can_register() && factor == FirstFactor::TemporaryAccessPass => {
                // Nothing the user may register: a pass is strong on its own, so it signs in (the
                // operator's recovery pass must work whatever the policy says).
                self.finish(flow, user, vec![first]).await
            }
            NextStep::Register if !facts.methods.can_register() => {
                // Registration is required, but the methods policy lets this user register nothing.
                let reason =
                    "Registration required, but the authentication methods policy turns every method off for the user";
                self.cannot_register(flow, user, (now, first), reason, NOTHING_TO_REGISTER.into()).await
            }
            NextStep::Challenge => {
                flow.session.stage = Stage::Mfa;
                self.save_session(&flow.session).await?;
                self.log_sign_in(flow, Some(user), codes::MFA_REQUIRED, vec![first]).await?;
                self.mfa_page(flow, policy, facts, None).await
            }
            NextStep::Register => {
                // A password alone registers nothing beside methods the user has but cannot use here.
                if let Err(notice) = self.may_add_method(flow, user).await? {
                    let reason = "Registration required, but the user has methods this sign-in cannot use: a Temporary \
                                  Access Pass is needed";
                    return self.cannot_register(flow, user, (now, first), reason, notice).await;
                }
                flow.session.stage = Stage::MoreInfo;
                self.save_session(&flow.session).await?;
                self.log_sign_in(flow, Some(user), codes::MFA_REGISTRATION_REQUIRED, vec![first]).await?;
                self.render(flow, None).await
            }
        }
    }

    /// A registration the sign-in requires but cannot offer now: logged (`50079`, with `reason`
    /// after the first factor's detail, both at `now`), and the page says `notice`.
    async fn cannot_register(
        &self,
        flow: &mut Flow,
        user: &User,
        (now, first): (OffsetDateTime, AuthenticationDetail),
        reason: &str,
        notice: String,
    ) -> Result<SignInView, AppError> {
        let failed = detail(now, "Software OATH token", false, reason);
        self.log_sign_in(flow, Some(user), codes::MFA_REGISTRATION_REQUIRED, vec![first, failed]).await?;
        self.render(flow, Some(notice)).await
    }

    async fn submit_new_password(
        &self,
        flow: &mut Flow,
        form: &SignInForm,
        device_cookie: Option<&str>,
    ) -> Result<SignInView, AppError> {
        let user = self.flow_user(flow).await?;
        let (Some(current), Some(new), Some(confirm)) = (&form.password, &form.new_password, &form.confirm_password)
        else {
            return self.render(flow, Some("Enter your current password and the new one twice.".into())).await;
        };
        if new.expose() != confirm.expose() {
            return self
                .render(flow, Some("The new passwords don't match. Type the same new password twice.".into()))
                .await;
        }
        if new.expose() == current.expose() {
            return self.render(flow, Some("Choose a new password that differs from the current one.".into())).await;
        }
        let alias = user.user_principal_name.split('@').next().unwrap_or_default();
        if let Err(err) = password::check(new.expose(), &[&user.display_name, alias]) {
            return self.render(flow, Some(format!("{err}."))).await;
        }
        let audit = |fresh: &User, at| {
            let audit = self.self_audit(flow, fresh, at);
            let id = audit_id(&audit.correlation_id);
            audit.success(id, Activity::ChangePasswordSelfService, vec![TargetResource::user(fresh)])
        };
        let now = self.now();
        let wrong = "Your current password is incorrect.";
        let fresh =
            match self.change_password(&flow.tenant.id, &user, current, new, Some(flow.began()), None, audit).await? {
                PasswordChange::Changed(fresh) => *fresh,
                PasswordChange::Ended(code) => {
                    let tx = self.write().await?;
                    return self.end_changed(tx, flow, Some(&user), code).await;
                }
                PasswordChange::Locked(until) => {
                    let failed = detail(now, "Password", false, "Account locked");
                    self.log_sign_in(flow, Some(&user), codes::LOCKED, vec![failed]).await?;
                    return self.render(flow, Some(lockout_message(until))).await;
                }
                PasswordChange::Wrong => {
                    let failed = detail(now, "Password", false, "Invalid current password");
                    self.log_sign_in(flow, Some(&user), codes::INVALID_CREDENTIALS, vec![failed]).await?;
                    return self.render(flow, Some(wrong.into())).await;
                }
                PasswordChange::LockedWhileChecking => {
                    let failed = detail(now, "Password", false, "Account locked");
                    self.log_sign_in(flow, Some(&user), codes::LOCKED, vec![failed]).await?;
                    return self.render(flow, Some(wrong.into())).await;
                }
            };
        // The change ended every session issued before its cut-off, taken after the new password
        // was hashed; the session that made it goes on from the cut-off (a session from its very
        // instant still counts), signed in or still signing in. Typing the current password
        // again is a password sign-in at that instant; the MFA it had keeps its own time.
        let cut_off = fresh.sign_in_sessions_valid_from;
        if flow.session.authenticated_at.is_some() {
            // A signed-in user changed their password from the account page.
            flow.session.authenticated_at = Some(cut_off);
            flow.session.stage = Stage::Done;
            self.save_session(&flow.session).await?;
            return self.account_page(flow, &fresh, Some("Your password was changed.".into())).await;
        }
        // Saved at once: whatever page follows, the sign-in goes on from the cut-off.
        flow.session.created = cut_off;
        self.save_session(&flow.session).await?;
        let mut tx = self.read_short().await?;
        let (policy, _) = tx.sign_in_policy(&flow.tenant.id).await?;
        let facts = self.usable_facts(mfa_facts_in(&mut *tx, &flow.tenant, &fresh, &policy).await?);
        let device = remembered_device(&mut *tx, device_cookie).await?;
        drop(tx);
        let first = detail(now, "Password", true, "Password changed");
        self.after_first_factor(flow, &fresh, FirstFactor::Password, &policy, facts, device, first).await
    }

    /// `POST /me/changePassword`: the signed-in user changes their own password (no role needed;
    /// the token's scope must cover it). The current password is a password attempt like any
    /// other: rate-limited and counted by smart lockout before it is checked. The new one must
    /// meet the policy and differ from it. As on the account page, the change ends every session
    /// and refresh token of the user (the calling token too) and is audited as the user's own
    /// `Change password (self-service)`.
    pub async fn change_own_password(&self, caller: &Caller, current: &Secret, new: &Secret) -> Result<(), AppError> {
        let user = caller.delegated_user()?.clone();
        crate::require_scope(caller, keyward_core::authz::actions::USERS_PASSWORD_UPDATE, true)?;
        if current.expose().is_empty() || new.expose().is_empty() {
            return Err(AppError::BadRequest("Both currentPassword and newPassword are required.".into()));
        }
        if new.expose() == current.expose() {
            return Err(AppError::BadRequest("The new password must differ from the current one.".into()));
        }
        let alias = user.user_principal_name.split('@').next().unwrap_or_default();
        password::check(new.expose(), &[&user.display_name, alias])
            .map_err(|err| AppError::BadRequest(format!("{err}.")))?;
        let audit = |fresh: &User, at| {
            caller.succeeded(at, Activity::ChangePasswordSelfService, vec![TargetResource::user(fresh)])
        };
        let ip = caller.meta.ip_address.as_deref();
        match self.change_password(&caller.tenant.id, &user, current, new, None, ip, audit).await? {
            PasswordChange::Changed(_) => Ok(()),
            PasswordChange::Ended(_) => {
                Err(AppError::BadRequest("The account changed meanwhile: sign in again.".into()))
            }
            PasswordChange::Locked(until) => Err(AppError::BadRequest(lockout_message(until))),
            PasswordChange::Wrong | PasswordChange::LockedWhileChecking => {
                Err(AppError::BadRequest("Invalid currentPassword: the current password is incorrect.".into()))
            }
        }
    }

    /// A user's own password change, after its form was checked: the current password is a
    /// password attempt like any other (rate-limited by address `ip` and user, and counted by
    /// smart lockout before it is checked); the new one is stored, the user's sessions and refresh
    /// tokens issued before now end (a session from the very instant of the cut-off still counts,
    /// so the page's own session continues), and `audit` makes the record committed with it.
    /// `began`: when the page's session began (or signed in); it must still count when the change
    /// commits, and the password checked must still be the stored one.
    #[allow(clippy::too_many_arguments)]
    async fn change_password(
        &self,
        tenant: &ObjectId,
        user: &User,
        current: &Secret,
        new: &Secret,
        began: Option<OffsetDateTime>,
        ip: Option<&str>,
        audit: impl FnOnce(&User, OffsetDateTime) -> AuditRecord,
    ) -> Result<PasswordChange, AppError> {
        self.throttle(crate::Surface::SignInPages, ip, Some(&user.user_principal_name))?;
        let now = self.now();
        let mut tx = self.write().await?;
        let (policy, _) = tx.sign_in_policy(tenant).await?;
        let reservation = match reserve_attempt(&mut *tx, &user.id, &policy, now).await? {
            Ok(reservation) => reservation,
            Err(until) => return Ok(PasswordChange::Locked(until)),
        };
        let hash = tx.get_password_hash(&user.id).await?;
        tx.commit().await?;
        if !self.inner.hasher.verify(current.expose(), hash.as_deref()).await? {
            return Ok(PasswordChange::Wrong);
        }
        let new_hash = self.inner.hasher.hash(new.expose()).await?;
        let mut tx = self.write().await?;
        // The user's row before their sign-in state, in the order of the administrators' changes
        // to both (`signin_admin`): taken the other way round, two such transactions would wait
        // for each other.
        let mut fresh =
            tx.get_user_for_update(tenant, &user.id).await?.ok_or_else(|| AppError::NotFound(user.id.to_string()))?;
        // What was decided before hashing, again on the locked row: a revocation, a disable or an
        // administrator's new password that committed meanwhile wins over this change.
        if let Some(began) = began
            && let Err(end) = signin::account_allows(began, fresh.sign_in_sessions_valid_from, fresh.account_enabled)
        {
            // The password typed was right: it is settled as such (not left counted as a
            // failure), and nothing else changes.
            if settle_success(&mut *tx, &user.id, &reservation, now).await? {
                tx.commit().await?;
            }
            return Ok(PasswordChange::Ended(end.code().unwrap_or(codes::SESSION_REVOKED)));
        }
        if tx.get_password_hash(&user.id).await? != hash {
            return Ok(PasswordChange::Wrong);
        }
        if !settle_success(&mut *tx, &user.id, &reservation, now).await? {
            return Ok(PasswordChange::LockedWhileChecking);
        }
        fresh.force_change_password_next_sign_in = false;
        // The cut-off is taken now, after hashing, so nothing issued while the new password was
        // hashed survives it.
        let now = self.now();
        fresh.sign_in_sessions_valid_from = now;
        tx.update_user(&fresh).await?;
        tx.set_password_hash(&user.id, &new_hash, now).await?;
        let record = audit(&fresh, now);
        commit_audited(tx, [record]).await?;
        Ok(PasswordChange::Changed(Box::new(fresh)))
    }

    async fn submit_code(&self, flow: &mut Flow, form: &SignInForm) -> Result<SignInView, AppError> {
        // The user, what the methods policy lets them use and the sign-in policy: one snapshot.
        let mut tx = self.read_short().await?;
        let user = flow_user_in(&mut *tx, flow).await?;
        self.throttle(crate::Surface::SignInPages, None, Some(&user.user_principal_name))?;
        let methods_policy = tx.methods_policy(&flow.tenant.id).await?;
        let methods = self.usable_methods(&mut *tx, &user.id, &methods_policy).await?;
        let (policy, _) = tx.sign_in_policy(&flow.tenant.id).await?;
        drop(tx);
        let code = form.code.as_deref().unwrap_or_default();
        let now = self.now();
        if !methods.software_oath {
            // Turned off for this user since the code page was shown.
            let failed =
                detail(now, "Software OATH token", false, "Method disabled by the authentication methods policy");
            self.log_sign_in(flow, Some(&user), codes::MFA_FAILED, vec![failed]).await?;
            return self.render(flow, Some(NOTHING_TO_REGISTER.into())).await;
        }
        let mut tx = self.write().await?;
        let mut state = tx.lock_user_sign_in_state(&user.id).await?;
        if let Some(until) = state.code.locked_at(now) {
            drop(tx);
            self.log_sign_in(
                flow,
                Some(&user),
                codes::MFA_FAILED,
                vec![detail(now, "Software OATH token", false, "Too many wrong codes")],
            )
            .await?;
            return self.render(flow, Some(format!("Too many wrong codes. {}", try_again_after(until)))).await;
        }
        let methods = tx.list_software_oath_methods(&user.id).await?;
        let mut outcome = Err(CodeError::Wrong);
        for method in &methods {
            let secret = self.inner.keys.open_secret(user.id.as_str().as_bytes(), &method.sealed_secret)?;
            match totp::verify(&secret, code, now.unix_timestamp(), method.last_used_step) {
                Ok(step) => {
                    // The guarded update refuses a step another node accepted meanwhile.
                    outcome = if tx.use_software_oath_step(&method.id, step).await? {
                        Ok(())
                    } else {
                        Err(CodeError::AlreadyUsed)
                    };
                    break;
                }
                Err(CodeError::AlreadyUsed) => outcome = Err(CodeError::AlreadyUsed),
                Err(CodeError::Wrong) => (),
            }
        }
        match outcome {
            Ok(()) => {
                state.code = state.code.after_success(now);
                tx.set_user_sign_in_state(&user.id, &state).await?;
                tx.commit().await?;
                flow.session.methods.push(AuthMethodRef::Otp);
                flow.session.methods.push(AuthMethodRef::Mfa);
                flow.session.mfa_at = Some(now);
                let details = vec![
                    detail(now, "Password", true, "Correct password"),
                    detail(now, "Software OATH token", true, "MFA successfully completed"),
                ];
                let mut view = self.finish(flow, &user, details).await?;
                // The device is remembered only for a sign-in that finished (not for an account
                // disabled or signed out everywhere while the code was typed).
                if form.remember && policy.remember_mfa_days > 0 && flow.session.stage == Stage::Done {
                    let value = random_token()?;
                    let device = signin::RememberedDevice {
                        user_id: user.id.clone(),
                        issued_at: now,
                        expires_at: now + Duration::days(policy.remember_mfa_days),
                    };
                    let mut tx = self.write().await?;
                    tx.insert_remembered_device(&sha256(value.as_bytes()), &device).await?;
                    tx.commit().await?;
                    view.set_device = Some((value, policy.remember_mfa_days));
                }
                Ok(view)
            }
            Err(err) => {
                count_code_failure(&mut state, &policy, now);
                tx.set_user_sign_in_state(&user.id, &state).await?;
                tx.commit().await?;
                let (reason, message) = match err {
                    CodeError::AlreadyUsed => (
                        "Code already used",
                        "That code was already used. Wait for the next code in your authenticator app and enter it.",
                    ),
                    CodeError::Wrong => (
                        "Invalid verification code",
                        "That code didn't work. Check the code in your authenticator app and try again.",
                    ),
                };
                self.log_sign_in(
                    flow,
                    Some(&user),
                    codes::MFA_FAILED,
                    vec![detail(now, "Software OATH token", false, reason)],
                )
                .await?;
                self.render(flow, Some(message.into())).await
            }
        }
    }

    /// The registration campaign's prompt, when it asks this user now (Entra's nudge after a
    /// sign-in): the sign-in finishes after "Not now" or once the app is registered.
    async fn campaign_interrupt(
        &self,
        flow: &mut Flow,
        user: &User,
        facts: &MfaFacts,
    ) -> Result<Option<SignInView>, AppError> {
        if campaign_nudge_of(facts, self.now()) == Nudge::None {
            return Ok(None);
        }
        // Not after a password alone beside a phone (Entra nudges after MFA).
        if self.may_add_method(flow, user).await?.is_err() {
            return Ok(None);
        }
        flow.session.stage = Stage::Campaign;
        self.save_session(&flow.session).await?;
        Ok(Some(self.render(flow, None).await?))
    }

    /// "Set up now" starts the registration; "Not now" counts a skip (refused once the campaign
    /// allows no more) and finishes the sign-in.
    async fn submit_campaign(&self, flow: &mut Flow, form: &SignInForm) -> Result<SignInView, AppError> {
        if !form.skip {
            return self.begin_totp_registration(flow).await;
        }
        let user = self.flow_user(flow).await?;
        let now = self.now();
        let (policy, _) = self.read_short().await?.sign_in_policy(&flow.tenant.id).await?;
        let facts = self.mfa_facts(&flow.tenant, &user, &policy).await?;
        let is_pass = flow.session.methods.contains(AuthMethodRef::TemporaryAccessPass);
        if facts.requirement.is_some() && flow.session.mfa_at.is_none() {
            // MFA became required while the prompt was shown: the sign-in goes on to it.
            let factor = if is_pass { FirstFactor::TemporaryAccessPass } else { FirstFactor::Password };
            let first = detail(now, "Password", true, "Correct password");
            return self.after_first_factor(flow, &user, factor, &policy, facts, None, first).await;
        }
        // The skip is decided on the counters read under the row lock, so parallel clicks
        // cannot skip more often than the campaign allows.
        let mut tx = self.write().await?;
        let mut state = tx.lock_user_sign_in_state(&user.id).await?;
        let locked = MfaFacts { state: state.clone(), ..facts.clone() };
        match campaign_nudge_of(&locked, now) {
            Nudge::Register { can_skip: false } => {
                drop(tx);
                return self
                    .render(flow, Some("Your organization requires you to set up an authenticator app now.".into()))
                    .await;
            }
            // Snoozed meanwhile (a second tab): no skip is spent.
            Nudge::None => drop(tx),
            Nudge::Register { can_skip: true } => {
                state.campaign = state.campaign.after_skip(&facts.campaign, now);
                tx.set_user_sign_in_state(&user.id, &state).await?;
                tx.commit().await?;
            }
        }
        let details = if is_pass {
            vec![detail(now, "Temporary Access Pass", true, "Temporary Access Pass validated")]
        } else {
            let mut details = vec![detail(now, "Password", true, "Correct password")];
            if flow.session.mfa_at.is_some() {
                details.push(detail(
                    now,
                    "Previously satisfied",
                    true,
                    "MFA requirement satisfied by remembered device",
                ));
            }
            details
        };
        self.finish(flow, &user, details).await
    }

    async fn begin_totp_registration(&self, flow: &mut Flow) -> Result<SignInView, AppError> {
        let user = self.flow_user(flow).await?;
        // The account page checked already; the interrupt and the campaign's prompt check here.
        if flow.session.authenticated_at.is_none()
            && let Err(notice) = self.may_add_method(flow, &user).await?
        {
            return self.refuse_registration(flow, &user, notice).await;
        }
        if !self.user_methods(&flow.tenant.id, &user.id).await?.software_oath {
            if flow.session.authenticated_at.is_some() {
                let notice =
                    "Your organization's authentication methods policy does not let you add an authenticator app.";
                return self.account_page(flow, &user, Some(notice.into())).await;
            }
            return self.render(flow, Some(NOTHING_TO_REGISTER.into())).await;
        }
        let mut secret = [0_u8; totp::SECRET_LEN];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| unexpected("random generator failed"))?;
        flow.session.pending_secret = Some(self.inner.keys.seal_secret(user.id.as_str().as_bytes(), &secret)?);
        flow.session.stage = Stage::RegisterTotp;
        self.save_session(&flow.session).await?;
        self.render(flow, None).await
    }

    /// A registration the flow may not make (`may_add_method`'s answer): back to the account
    /// page when signed in, otherwise to the first factor, where a Temporary Access Pass can be
    /// entered, with what to do.
    async fn refuse_registration(&self, flow: &mut Flow, user: &User, notice: String) -> Result<SignInView, AppError> {
        flow.session.pending_secret = None;
        if flow.session.authenticated_at.is_some() {
            flow.session.stage = Stage::Done;
            self.save_session(&flow.session).await?;
            return self.account_page(flow, user, Some(notice)).await;
        }
        // Back to the first factor with nothing of the one that led here (a pass's MFA).
        flow.session.stage = Stage::Password;
        flow.session.methods = Amr::default();
        flow.session.mfa_at = None;
        flow.session.pass_expires_at = None;
        self.save_session(&flow.session).await?;
        self.render(flow, Some(notice)).await
    }

    async fn submit_registration(&self, flow: &mut Flow, form: &SignInForm) -> Result<SignInView, AppError> {
        let user = self.flow_user(flow).await?;
        let now = self.now();
        // A session left on this page must still have a recent proof to add the app.
        if let Err(notice) = self.may_add_method(flow, &user).await? {
            return self.refuse_registration(flow, &user, notice).await;
        }
        if !self.user_methods(&flow.tenant.id, &user.id).await?.software_oath {
            // Turned off for this user since the registration page was shown.
            flow.session.pending_secret = None;
            flow.session.stage = if flow.session.authenticated_at.is_some() { Stage::Done } else { Stage::Password };
            self.save_session(&flow.session).await?;
            if flow.session.authenticated_at.is_some() {
                let notice =
                    "Your organization's authentication methods policy does not let you add an authenticator app.";
                return self.account_page(flow, &user, Some(notice.into())).await;
            }
            return self.render(flow, Some(NOTHING_TO_REGISTER.into())).await;
        }
        let sealed = flow.session.pending_secret.clone().ok_or_else(|| unexpected("no pending secret"))?;
        let secret = self.inner.keys.open_secret(user.id.as_str().as_bytes(), &sealed)?;
        let code = form.code.as_deref().unwrap_or_default();
        let Ok(step) = totp::verify(&secret, code, now.unix_timestamp(), 0) else {
            return self
                .render(
                    flow,
                    Some(
                        "That code didn't work. Check that your app's clock is right and enter the code it shows now."
                            .into(),
                    ),
                )
                .await;
        };
        let method = SoftwareOathMethod {
            id: new_id(),
            user_id: user.id.clone(),
            sealed_secret: self.inner.keys.seal_secret(user.id.as_str().as_bytes(), &secret)?,
            created: now,
            last_used_step: step,
        };
        let mut tx = self.write().await?;
        // Disabled, deleted or its sessions revoked since the page was shown: no method is added
        // (read for update: a revocation or a disable in flight holds the row, and is waited for).
        let fresh = tx.get_user_for_update(&flow.tenant.id, &user.id).await?;
        if let Some(code) = account_changed(fresh.as_ref(), flow) {
            return self.end_changed(tx, flow, fresh.as_ref(), code).await;
        }
        if !tx.take_pending_secret(&flow.session.id_sha256).await? {
            // A second submission of the same registration: the first one saved the method and
            // moved the session on; show where it stands now.
            drop(tx);
            if let Some(session) = self.read_short().await?.get_browser_session(&flow.session.id_sha256).await? {
                flow.session = session;
            }
            return self.render(flow, None).await;
        }
        tx.insert_software_oath_method(&method).await?;
        self.record_registration(&mut *tx, flow, &user, "User registered software OATH token").await?;
        tx.commit().await?;
        flow.session.pending_secret = None;
        let amr = [AuthMethodRef::Otp, AuthMethodRef::Mfa];
        self.registered(flow, &user, &amr, "Software OATH token", "Your authenticator app is registered.".into()).await
    }

    /// Where a registration on the pages leads: the account page (`notice`), or the end of the
    /// sign-in it interrupted. Registering counts as the session's MFA (`amr`) only when it had
    /// none: a session with MFA keeps its time, so adding method after method cannot keep a
    /// stolen session's MFA recent.
    async fn registered(
        &self,
        flow: &mut Flow,
        user: &User,
        amr: &[AuthMethodRef],
        method: &str,
        notice: String,
    ) -> Result<SignInView, AppError> {
        let now = self.now();
        if flow.session.mfa_at.is_none() {
            for it in amr {
                flow.session.methods.push(*it);
            }
            flow.session.mfa_at = Some(now);
        }
        if flow.session.authenticated_at.is_some() {
            flow.session.stage = Stage::Done;
            self.save_session(&flow.session).await?;
            return self.account_page(flow, user, Some(notice)).await;
        }
        let first_method = if flow.session.methods.contains(AuthMethodRef::TemporaryAccessPass) {
            "Temporary Access Pass"
        } else {
            "Password"
        };
        let details = vec![
            detail(now, first_method, true, "Correct credentials"),
            detail(now, method, true, "MFA registration completed"),
        ];
        self.finish(flow, user, details).await
    }

    /// What a method registered by the user on the pages changes besides the method: a first
    /// administrator's (or an operator's recovery) pass has done its job, per-user MFA moves from
    /// enabled to enforced, and the user's own `User registered security info` (and, when per-user
    /// MFA moved, `Update user`) is recorded with `reason`.
    async fn record_registration(
        &self,
        tx: &mut dyn Tx,
        flow: &Flow,
        user: &User,
        reason: &str,
    ) -> Result<(), AppError> {
        let now = self.now();
        // The sign-in state first, then the pass: the order every path that touches both takes
        // (reset MFA with a pass, a sign-in with a pass).
        let mut state = tx.lock_user_sign_in_state(&user.id).await?;
        // A first administrator's (or an operator's recovery) pass has done its job now.
        tx.spend_registration_pass(&user.id, now).await?;
        let old = state.per_user_mfa;
        let old_requirement = strong_authentication_requirement(&state);
        state.per_user_mfa = old.after_registration();
        tx.set_user_sign_in_state(&user.id, &state).await?;
        let audit = self.self_audit(flow, user, now);
        let mut record = audit.success(
            audit_id(&audit.correlation_id),
            Activity::UserRegisteredSecurityInfo,
            vec![TargetResource::user(user)],
        );
        record.result_reason = reason.to_owned();
        crate::audited::record_all(tx, std::slice::from_ref(&record)).await?;
        if old != state.per_user_mfa {
            let change = PropertyChange {
                name: "StrongAuthenticationRequirement".into(),
                old_value: Some(old_requirement),
                new_value: Some(strong_authentication_requirement(&state)),
            };
            let record = audit.success(
                audit_id(&audit.correlation_id),
                Activity::UpdateUser,
                vec![TargetResource::user(user).with_changes(vec![change])],
            );
            tx.insert_audit(&record).await?;
        }
        Ok(())
    }

    /// Why the user must use MFA (if at all), whether they have a method, and their sign-in state.
    pub(crate) async fn mfa_facts(
        &self,
        tenant: &Tenant,
        user: &User,
        policy: &SignInPolicy,
    ) -> Result<MfaFacts, AppError> {
        let facts = mfa_facts_in(&mut *self.read_short().await?, tenant, user, policy).await?;
        Ok(self.usable_facts(facts))
    }

    /// `facts` as this server can act on them: passkeys cannot be used or made without a host
    /// name in the public URL.
    fn usable_facts(&self, mut facts: MfaFacts) -> MfaFacts {
        if self.relying_party().is_err() {
            facts.methods = facts.methods.without_passkeys();
            facts.passkeys.clear();
            facts.has_method = facts.has_app;
        }
        facts
    }

    /// Completes a sign-in: checks the account once more (it may have been disabled or its
    /// sessions revoked while the user typed a code), gives the session a fresh cookie (so a
    /// cookie planted before sign-in is worth nothing after it), logs the success, and sends the
    /// user back where they came from.
    async fn finish(
        &self,
        flow: &mut Flow,
        user: &User,
        details: Vec<AuthenticationDetail>,
    ) -> Result<SignInView, AppError> {
        let now = self.now();
        let client = self.flow_client(flow).await?;
        // The account's check, the session's new cookie and the sign-in's log entry: one
        // transaction, with the user's row read for update (on PostgreSQL; SQLite's writers take
        // turns). A disable or revocation holds that row from before it reads its cut-off until
        // it commits, so this sign-in either waits for it and sees it here, or commits first
        // with a time before the cut-off, which ends the session at its next use. The wait is an
        // administrator's one change; this transaction takes no other lock before the row.
        let mut tx = self.write().await?;
        let fresh = tx.get_user_for_update(&flow.tenant.id, &user.id).await?;
        if let Some(code) = account_changed(fresh.as_ref(), flow) {
            return self.end_changed(tx, flow, fresh.as_ref(), code).await;
        }
        let (policy, _) = tx.sign_in_policy(&flow.tenant.id).await?;
        let requirement = mfa_requirement_in(&mut *tx, &flow.tenant, user, &policy).await?;
        let cookie = random_token()?;
        let old_id = std::mem::replace(&mut flow.session.id_sha256, sha256(cookie.as_bytes()));
        flow.cookie = cookie.clone();
        flow.session.stage = Stage::Done;
        flow.session.authenticated_at = Some(now);
        flow.session.expires_at = now + SESSION_LIFETIME;
        let mut record = self.sign_in_record(flow, Some(user), codes::SUCCESS, details);
        (record.app_id, record.app_display_name) = client;
        record.is_multi_factor = requirement.is_some();
        record.requirement_policies = requirement.map(|it| it.detail().to_owned()).into_iter().collect();
        tx.rekey_browser_session(&old_id, &flow.session.id_sha256).await?;
        tx.update_browser_session(&flow.session).await?;
        tx.insert_sign_in(&record).await?;
        tx.commit().await?;
        let mut view = if flow.session.return_to.is_empty() {
            self.account_page(flow, user, None).await?
        } else {
            self.redirect(flow, flow.session.return_to.clone())
        };
        view.set_session = Some(cookie);
        Ok(view)
    }

    /// Ends a sign-in (or a signed-in session) whose account changed while it went on (see
    /// [`account_changed`]): deletes the session in `tx`, which has written nothing else, logs
    /// `code`, and shows the sign-in page.
    async fn end_changed(
        &self,
        mut tx: Box<dyn Tx>,
        flow: &Flow,
        fresh: Option<&User>,
        code: i32,
    ) -> Result<SignInView, AppError> {
        tx.delete_browser_session(&flow.session.id_sha256).await?;
        tx.commit().await?;
        let failed = detail(self.now(), "Previously satisfied", false, "The account changed during sign-in");
        self.log_sign_in(flow, fresh, code, vec![failed]).await?;
        self.session_ended(&flow.tenant).await
    }

    /// The signed-in user if the session still counts; otherwise logs why (50173 for a revoked
    /// session) and deletes it.
    async fn check_signed_in(&self, flow: &mut Flow) -> Result<Option<User>, AppError> {
        let now = self.now();
        let mut tx = self.read_short().await?;
        let user = match &flow.session.user_id {
            Some(id) => tx.get_user(&flow.tenant.id, id).await?,
            None => None,
        };
        drop(tx);
        let facts = SessionFacts {
            authenticated_at: flow.began(),
            expires_at: flow.session.expires_at,
            pass_expires_at: flow.session.pass_expires_at,
        };
        let mut verdict = match &user {
            Some(user) => signin::session_valid(&facts, user.sign_in_sessions_valid_from, user.account_enabled, now),
            None => Err(signin::SessionEnd::Disabled),
        };
        // A session opened with a Temporary Access Pass ends when the pass is deleted.
        if let (Ok(()), Some(user)) = (&verdict, &user)
            && !self.pass_still_held(&user.id, flow.session.pass_expires_at).await?
        {
            verdict = Err(signin::SessionEnd::PassExpired);
        }
        match verdict {
            Ok(()) => Ok(user),
            Err(end) => {
                if let (Some(code), Some(user)) = (end.code(), &user) {
                    let reason = match end {
                        signin::SessionEnd::PassExpired => {
                            "Session ended: the Temporary Access Pass expired or was deleted"
                        }
                        signin::SessionEnd::Disabled => "Session ended: the account is disabled",
                        _ => "Session revoked",
                    };
                    self.log_sign_in(flow, Some(user), code, vec![detail(now, "Previously satisfied", false, reason)])
                        .await?;
                }
                let mut tx = self.write().await?;
                tx.delete_browser_session(&flow.session.id_sha256).await?;
                tx.commit().await?;
                Ok(None)
            }
        }
    }

    async fn account_page(&self, flow: &Flow, user: &User, notice: Option<String>) -> Result<SignInView, AppError> {
        let mut tx = self.read_short().await?;
        let methods = account_methods(&mut *tx, user).await?;
        let policy = tx.methods_policy(&flow.tenant.id).await?;
        let can_add_passkey = self.usable_methods(&mut *tx, &user.id, &policy).await?.fido2_registration;
        let filter = SignInFilter { user_id: Some(user.id.to_string()), ..SignInFilter::default() };
        let recent = tx.query_sign_ins(&flow.tenant.id, &filter, None, RECENT_SIGN_INS).await?;
        drop(tx);
        let recent = recent
            .into_iter()
            .map(|(_, it)| {
                let result = match (it.error_code, it.failure_reason) {
                    (0, _) => "Success".to_owned(),
                    (_, Some(reason)) => format!("Failed: {reason}"),
                    (code, None) => format!("Failed ({code})"),
                };
                (rfc3339(it.created), it.app_display_name, result, it.ip_address.unwrap_or_default())
            })
            .collect();
        Ok(self.view(
            flow,
            SignInPage::Account {
                display_name: user.display_name.clone(),
                user_principal_name: user.user_principal_name.clone(),
                methods,
                can_add_passkey,
                recent,
                notice,
            },
        ))
    }

    /// Actions on the account page of a signed-in session (already checked to count).
    async fn account_action(&self, flow: &mut Flow, user: &User, form: &SignInForm) -> Result<SignInView, AppError> {
        match form.step.as_str() {
            "change_password" => {
                flow.session.stage = Stage::ChangePassword;
                self.save_session(&flow.session).await?;
                self.render(flow, None).await
            }
            "add_totp" | "add_passkey" => {
                if let Err(notice) = self.may_add_method(flow, user).await? {
                    return self.account_page(flow, user, Some(notice)).await;
                }
                if form.step == "add_passkey" {
                    return self.begin_passkey_registration(flow).await;
                }
                self.begin_totp_registration(flow).await
            }
            "add_phone" | "add_email" | "delete_method" => {
                let notice = match self.account_method_change(flow, user, form).await? {
                    Ok(Some(done)) => done,
                    Ok(None) => {
                        // A deletion not confirmed yet: say exactly what will go.
                        let method = form.method.clone().unwrap_or_default();
                        let label = self.account_method_label(user, &method).await?;
                        let Some(label) = label else {
                            return self.account_page(flow, user, Some("That method no longer exists.".into())).await;
                        };
                        return Ok(self.view(flow, SignInPage::ConfirmDelete { label, method }));
                    }
                    Err(refusal) => refusal,
                };
                self.account_page(flow, user, Some(notice)).await
            }
            _ => self.account_page(flow, user, None).await,
        }
    }

    /// Adds a phone or an e-mail address, or deletes a method, through the same use cases as
    /// `/me/authentication/…` (and so under the same rules: MFA within the last 10 minutes, and
    /// audited as the user's own change). `Ok(Ok(Some(text)))` is done, `Ok(Ok(None))` a deletion
    /// waiting for its confirmation, `Ok(Err(text))` refused with the reason to show.
    async fn account_method_change(
        &self,
        flow: &Flow,
        user: &User,
        form: &SignInForm,
    ) -> Result<Result<Option<String>, String>, AppError> {
        let caller = self.session_caller(flow, user).await?;
        let value = form.value.as_deref().map(str::trim).unwrap_or_default();
        let result = match form.step.as_str() {
            "add_phone" => {
                let Some(phone_type) = form.phone_type.as_deref().and_then(PhoneType::parse) else {
                    return Ok(Err("Choose which phone this is: mobile, alternate mobile or office.".into()));
                };
                let exists = self
                    .read_short()
                    .await?
                    .list_phone_methods(&user.id)
                    .await?
                    .iter()
                    .any(|(kind, _)| PhoneType::parse(kind) == Some(phone_type));
                self.put_phone(&caller, Who::Me, phone_type, value, exists)
                    .await
                    .map(|_| format!("Saved your {} number.", phone_label(phone_type).to_lowercase()))
            }
            "add_email" => {
                let exists = self.read_short().await?.get_email_method(&user.id).await?.is_some();
                self.put_email(&caller, Who::Me, value, exists).await.map(|()| "Saved your email address.".to_owned())
            }
            _ => {
                let method = form.method.as_deref().unwrap_or_default();
                if !form.confirmed {
                    return Ok(Ok(None));
                }
                let done = match method.split_once(':') {
                    Some(("totp", id)) => self.delete_software_oath(&caller, Who::Me, id).await,
                    Some(("passkey", id)) => self.delete_passkey(&caller, Who::Me, id).await,
                    Some(("phone", kind)) => match PhoneType::parse(kind) {
                        Some(phone_type) => self.delete_phone(&caller, Who::Me, phone_type).await,
                        None => Err(AppError::NotFound(kind.to_owned())),
                    },
                    None if method == "email" => self.delete_email(&caller, Who::Me).await,
                    _ => Err(AppError::NotFound(method.to_owned())),
                };
                done.map(|()| "Deleted.".to_owned())
            }
        };
        match result {
            Ok(done) => Ok(Ok(Some(done))),
            Err(AppError::Forbidden { rule: "recent-mfa", .. }) => Ok(Err(
                "Changing your security info needs a sign-in with your authenticator app within the last 10 minutes. \
                 Sign out, sign in again with your code, and try again."
                    .into(),
            )),
            Err(AppError::Forbidden { message, .. } | AppError::BadRequest(message)) => Ok(Err(message)),
            Err(AppError::NotFound(_)) => Ok(Err("That method no longer exists.".into())),
            Err(other) => Err(other),
        }
    }

    /// The label of one of the user's methods as the account page shows it, if it exists.
    async fn account_method_label(&self, user: &User, method: &str) -> Result<Option<String>, AppError> {
        let methods = account_methods(&mut *self.read_short().await?, user).await?;
        Ok(methods.into_iter().find(|(_, key)| key.as_deref() == Some(method)).map(|(label, _)| label))
    }

    /// The signed-in user of a browser session as a caller of the app's use cases, with the
    /// session's sign-in time and methods (MFA recency counts from the second factor).
    async fn session_caller(&self, flow: &Flow, user: &User) -> Result<Caller, AppError> {
        let mut tx = self.read_short().await?;
        let actor = load_user_actor(&mut *tx, &flow.tenant, user).await?;
        drop(tx);
        let session = &flow.session;
        let authentication = session.mfa_at.or(session.authenticated_at).map(|at| (at, session.methods.values()));
        Ok(Caller {
            tenant: flow.tenant.clone(),
            principal: Principal::User(std::sync::Arc::new(user.clone())),
            actor,
            meta: flow.meta.clone(),
            scopes: None,
            authentication,
            approval: None,
        })
    }

    async fn sign_out(&self, flow: &Flow) -> Result<SignInView, AppError> {
        let mut tx = self.write().await?;
        tx.delete_browser_session(&flow.session.id_sha256).await?;
        tx.commit().await?;
        self.start_flow(&flow.tenant, None, Some("You signed out.".into())).await
    }

    /// "Sign out everywhere" on the account page: every session and refresh token of the user
    /// ends, this one included (as `POST /me/revokeSignInSessions`), audited as the user's own
    /// `Update StsRefreshTokenValidFrom Timestamp`.
    async fn sign_out_everywhere(&self, flow: &Flow, user: &User) -> Result<SignInView, AppError> {
        let mut tx = self.write().await?;
        let mut fresh = tx
            .get_user_for_update(&flow.tenant.id, &user.id)
            .await?
            .ok_or_else(|| AppError::BadRequest("The account no longer exists.".into()))?;
        let now = self.now();
        let target = end_sessions(&mut *tx, &mut fresh, now).await?;
        tx.delete_browser_session(&flow.session.id_sha256).await?;
        let audit = self.self_audit(flow, &fresh, now);
        let record =
            audit.success(audit_id(&audit.correlation_id), Activity::UpdateStsRefreshTokenValidFrom, vec![target]);
        commit_audited(tx, [record]).await?;
        self.start_flow(
            &flow.tenant,
            None,
            Some("You signed out everywhere: every session and app must sign in again.".into()),
        )
        .await
    }

    async fn session_ended(&self, tenant: &Tenant) -> Result<SignInView, AppError> {
        self.start_flow(tenant, None, Some("Your session has ended. Sign in again.".into())).await
    }

    async fn flow_user(&self, flow: &Flow) -> Result<User, AppError> {
        flow_user_in(&mut *self.read_short().await?, flow).await
    }

    async fn save_session(&self, session: &BrowserSession) -> Result<(), AppError> {
        let mut tx = self.write().await?;
        tx.update_browser_session(session).await?;
        tx.commit().await?;
        Ok(())
    }

    fn self_audit(&self, flow: &Flow, user: &User, at: OffsetDateTime) -> AuditContext {
        AuditContext {
            tenant_id: flow.tenant.id.clone(),
            correlation_id: flow.session.correlation_id.clone(),
            at,
            initiated_by: Initiator::User {
                id: user.id.clone(),
                display_name: user.display_name.clone(),
                user_principal_name: user.user_principal_name.clone(),
                ip_address: flow.meta.ip_address.clone(),
            },
        }
    }

    fn sign_in_record(
        &self,
        flow: &Flow,
        user: Option<&User>,
        code: i32,
        details: Vec<AuthenticationDetail>,
    ) -> SignInRecord {
        SignInRecord {
            id: crate::sign_in_log::entry_id(),
            tenant_id: flow.tenant.id.clone(),
            created: self.now(),
            user_id: user.map(|it| it.id.clone()).or_else(|| flow.session.user_id.clone()),
            user_principal_name: user
                .map(|it| it.user_principal_name.clone())
                .or_else(|| flow.session.username.clone())
                .unwrap_or_default(),
            user_display_name: user.map(|it| it.display_name.clone()),
            app_id: PORTAL_APP_ID.into(),
            app_display_name: PORTAL_APP_NAME.into(),
            ip_address: flow.meta.ip_address.clone(),
            correlation_id: flow.session.correlation_id.clone(),
            error_code: code,
            failure_reason: signin::failure_reason(code).map(str::to_owned),
            is_multi_factor: false,
            requirement_policies: Vec::new(),
            details,
            client_app_used: signin::CLIENT_APP_BROWSER.into(),
            is_interactive: true,
            service_principal_id: None,
            protocol: "none".into(),
            client_credential: "none".into(),
            incoming_token: "none".into(),
            user_agent: flow.meta.user_agent.clone(),
        }
    }

    /// The client a sign-in on the pages is for: the one whose authorization request sent the
    /// user here, or Keyward's own pages.
    async fn flow_client(&self, flow: &Flow) -> Result<(String, String), AppError> {
        let client_id = flow.session.return_to.split_once("/oauth2/v2.0/authorize?").and_then(|(_, query)| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "client_id")
                .map(|(_, it)| it.into_owned())
        });
        if let Some(client_id) = client_id
            && let Some(client) = self.client(&flow.tenant, &client_id).await?
        {
            return Ok((client.client_id, client.display_name));
        }
        Ok((PORTAL_APP_ID.into(), PORTAL_APP_NAME.into()))
    }

    async fn log_sign_in(
        &self,
        flow: &Flow,
        user: Option<&User>,
        code: i32,
        details: Vec<AuthenticationDetail>,
    ) -> Result<(), AppError> {
        let mut record = self.sign_in_record(flow, user, code, details);
        (record.app_id, record.app_display_name) = self.flow_client(flow).await?;
        self.write_sign_in(record).await
    }
}

fn detail(at: OffsetDateTime, method: &str, succeeded: bool, result: &str) -> AuthenticationDetail {
    AuthenticationDetail { at, method: method.into(), succeeded, result_detail: result.into() }
}

fn unexpected(what: &str) -> AppError {
    AppError::Unexpected(anyhow::anyhow!("{what}"))
}

/// Reserves a password (or pass) attempt for `user` inside `tx`, under the row lock of the
/// user's sign-in state ([`signin::Lockout::reserve`]): `Err(until)` while the account is locked.
pub(crate) async fn reserve_attempt(
    tx: &mut dyn Tx,
    user: &ObjectId,
    policy: &SignInPolicy,
    now: OffsetDateTime,
) -> Result<Result<signin::Reservation, OffsetDateTime>, AppError> {
    let mut state = tx.lock_user_sign_in_state(user).await?;
    let reservation =
        match state.password.reserve(policy.lockout_threshold, Duration::seconds(policy.lockout_seconds), now) {
            Ok(reservation) => reservation,
            Err(until) => return Ok(Err(until)),
        };
    state.password = reservation.after;
    tx.set_user_sign_in_state(user, &state).await?;
    Ok(Ok(reservation))
}

/// Counts a reserved attempt whose secret proved right as a success, inside `tx`; `false` when
/// another attempt locked the account meanwhile ([`signin::Reservation::succeed`]).
pub(crate) async fn settle_success(
    tx: &mut dyn Tx,
    user: &ObjectId,
    reservation: &signin::Reservation,
    now: OffsetDateTime,
) -> Result<bool, AppError> {
    let mut state = tx.lock_user_sign_in_state(user).await?;
    let Some(password) = reservation.succeed(state.password, now) else { return Ok(false) };
    state.password = password;
    tx.set_user_sign_in_state(user, &state).await?;
    Ok(true)
}

/// The user this sign-in is for, read in `tx`.
/// Why a sign-in (or a signed-in session) must end now that `fresh` is its account as read in
/// the transaction about to act on it: the account deleted (`None`) or disabled, or its sessions
/// revoked since the sign-in began (or, once signed in, since it signed in). `None`: it goes on.
fn account_changed(fresh: Option<&User>, flow: &Flow) -> Option<i32> {
    let Some(user) = fresh else { return Some(codes::DISABLED) };
    signin::account_allows(flow.began(), user.sign_in_sessions_valid_from, user.account_enabled)
        .err()
        .and_then(|it| it.code())
}

async fn flow_user_in(tx: &mut dyn Tx, flow: &Flow) -> Result<User, AppError> {
    let id = flow.session.user_id.as_ref().ok_or_else(|| unexpected("no user in this sign-in"))?;
    tx.get_user(&flow.tenant.id, id).await?.ok_or_else(|| AppError::BadRequest("The account no longer exists.".into()))
}

/// The remembered device the browser's cookie names, if any.
async fn remembered_device(
    tx: &mut dyn Tx,
    cookie: Option<&str>,
) -> Result<Option<signin::RememberedDevice>, AppError> {
    match cookie {
        Some(value) => Ok(tx.get_remembered_device(&sha256(value.as_bytes())).await?),
        None => Ok(None),
    }
}

/// What the registration campaign asks of the user described by `facts` at `now`.
fn campaign_nudge_of(facts: &MfaFacts, now: OffsetDateTime) -> Nudge {
    campaign_nudge(
        &facts.campaign,
        facts.methods.campaign,
        facts.has_method,
        facts.methods.software_oath,
        facts.state.campaign,
        now,
    )
}

/// What decides a user's second factor at sign-in.
#[derive(Debug, Clone)]
pub(crate) struct MfaFacts {
    /// Why the user must use MFA, if they must.
    pub requirement: Option<MfaReason>,
    /// Whether the user has an authenticator app or a passkey the methods policy lets them use.
    pub has_method: bool,
    /// Whether they have an authenticator app they may use.
    pub has_app: bool,
    /// The credential ids (Base64URL) of the passkeys they may sign in with.
    pub passkeys: Vec<String>,
    /// What the methods policy lets the user register and use.
    pub methods: UserMethods,
    /// The registration campaign.
    pub campaign: Campaign,
    pub state: UserSignInState,
}

/// [`App::mfa_facts`] inside a caller's transaction.
pub(crate) async fn mfa_facts_in(
    tx: &mut dyn Tx,
    tenant: &Tenant,
    user: &User,
    policy: &SignInPolicy,
) -> Result<MfaFacts, AppError> {
    let state = tx.user_sign_in_state(&user.id).await?;
    let is_privileged = holds_privileged_role_in(tx, tenant, user).await?;
    let methods_policy = tx.methods_policy(&tenant.id).await?;
    let methods = user_methods(tx, &user.id, &methods_policy).await?;
    let has_app = methods.software_oath && !tx.list_software_oath_methods(&user.id).await?.is_empty();
    // A passkey of a model the policy now blocks does not count.
    let passkeys = if methods.fido2 {
        let keys = &methods_policy.fido2_keys;
        let list = tx.list_fido2_methods(&user.id).await?;
        list.iter().filter(|it| keys.permits(&it.aaguid)).map(|it| URL_SAFE_NO_PAD.encode(&it.credential_id)).collect()
    } else {
        Vec::new()
    };
    Ok(MfaFacts {
        requirement: signin::mfa_requirement(policy, state.per_user_mfa, is_privileged),
        has_method: has_app || !passkeys.is_empty(),
        has_app,
        passkeys,
        methods,
        campaign: methods_policy.campaign,
        state,
    })
}

/// Why `user` must use MFA, if they must: [`MfaFacts::requirement`] alone.
pub(crate) async fn mfa_requirement_in(
    tx: &mut dyn Tx,
    tenant: &Tenant,
    user: &User,
    policy: &SignInPolicy,
) -> Result<Option<MfaReason>, AppError> {
    let state = tx.user_sign_in_state(&user.id).await?;
    let is_privileged = holds_privileged_role_in(tx, tenant, user).await?;
    Ok(signin::mfa_requirement(policy, state.per_user_mfa, is_privileged))
}

/// Whether `user` holds or may activate a privileged role: an eligible user signs in with MFA,
/// which the activation asks for.
async fn holds_privileged_role_in(tx: &mut dyn Tx, tenant: &Tenant, user: &User) -> Result<bool, AppError> {
    let mut role_ids: Vec<String> =
        tx.list_role_assignments_for(&tenant.id, &user.id).await?.into_iter().map(|it| it.role_definition_id).collect();
    role_ids.extend(tx.list_eligibilities_for(&tenant.id, &user.id).await?.into_iter().map(|it| it.role_definition_id));
    let needs_custom = role_ids.iter().any(|it| built_in_role(it).is_none());
    let custom_roles = if needs_custom { tx.list_custom_roles(&tenant.id).await? } else { Vec::new() };
    Ok(signin::holds_privileged_role(role_ids.iter().map(String::as_str), &custom_roles))
}

/// The user's methods as the account page lists them: each label, and for those the user may
/// delete there, the form value that names it (`totp:{id}`, `phone:{type}`, `email`).
async fn account_methods(tx: &mut dyn Tx, user: &User) -> Result<Vec<(String, Option<String>)>, AppError> {
    let mut methods = Vec::new();
    if tx.get_password_hash(&user.id).await?.is_some() {
        methods.push(("Password".to_owned(), None));
    }
    for method in tx.list_software_oath_methods(&user.id).await? {
        methods.push((totp_label(&method), Some(format!("totp:{}", method.id))));
    }
    for method in tx.list_fido2_methods(&user.id).await? {
        let label = format!("{}: {}", passkey_kind(&method), method.display_name);
        methods.push((label, Some(format!("passkey:{}", method.id))));
    }
    for (kind, number) in tx.list_phone_methods(&user.id).await? {
        methods.push((format!("{}: {number}", phone_kind_label(&kind)), Some(format!("phone:{kind}"))));
    }
    if let Some(address) = tx.get_email_method(&user.id).await? {
        methods.push((format!("Email: {address}"), Some("email".to_owned())));
    }
    Ok(methods)
}

/// "Authenticator app (added 2026-12-02)".
fn totp_label(method: &SoftwareOathMethod) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    format!("Authenticator app (added {})", method.created.format(&format).unwrap_or_default())
}

/// How the account page names a phone type.
fn phone_label(phone_type: PhoneType) -> &'static str {
    match phone_type {
        PhoneType::Mobile => "Mobile phone",
        PhoneType::AlternateMobile => "Alternate mobile phone",
        PhoneType::Office => "Office phone",
    }
}

/// The label of a stored phone type (`mobile` → "Mobile phone").
fn phone_kind_label(kind: &str) -> String {
    PhoneType::parse(kind).map_or_else(|| kind.to_owned(), |it| phone_label(it).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_addresses_stay_on_this_site() {
        assert_eq!(safe_return_to(Some("/t/oauth2/v2.0/authorize?x=1")), "/t/oauth2/v2.0/authorize?x=1");
        for bad in [
            "//evil.example/x",
            "/\\evil.example",
            "/\t/evil.example",
            "/ /evil.example",
            "/\u{0b}/evil.example",
            "https://evil.example/",
            "",
            "/a\r\nSet-Cookie: x",
        ] {
            assert_eq!(safe_return_to(Some(bad)), "", "{bad}");
        }
        assert_eq!(safe_return_to(None), "");
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_hide_the_cookie() {
        let a = csrf_token("cookie-a");
        assert_ne!(a, csrf_token("cookie-b"));
        assert_eq!(a, csrf_token("cookie-a"));
        assert!(!a.contains("cookie-a"));
    }
}
