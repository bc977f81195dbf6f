//! Keyward's use cases: each loads what it needs, asks the core to decide, persists, and writes
//! its audit record, all in one transaction.
//!
//! Invariant: this is the only layer that opens transactions; a change and its audit record
//! commit together or not at all.
#![forbid(unsafe_code)]

mod applications;
mod audit_log;
mod audited;
mod auth_methods;
pub mod bulk;
pub mod caller_verification;
mod client_assertion;
pub mod clock;
mod consent;
mod deleted_items;
mod delta;
mod directory;
pub mod dual_control;
pub mod error;
mod facts;
pub mod keys;
mod limits;
mod methods_policy;
mod notifications;
mod oidc;
mod passkeys;
pub mod password;
mod portal;
mod relationships;
mod reports;
mod roles;
mod setup;
mod sign_in_log;
mod signin;
mod signin_admin;
mod tokens;

use crate::audited::{audit_id, commit_audited};
use std::sync::Arc;

use keyward_core::audit::{AuditContext, Initiator};
use keyward_core::authz::{self, Actor, Decision, Target};
use keyward_core::directory::{ServicePrincipal, Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_store::{Store, Tx};

pub use crate::applications::{ApplicationDraft, ApplicationView, KeyCredentialDraft, NewPassword};
pub use crate::audit_log::ChainReport;
pub use crate::auth_methods::{AuthMethod, OathView, PasswordReset, PhoneView, TapView, Who};
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::consent::{ConsentRequest, PermissionGrantDraft};
pub use crate::deleted_items::{Deleted, DeletedGroup, DeletedItem, DeletedPage, DeletedUser, Restored};
pub use crate::delta::{DeltaItem, DeltaNext, DeltaPage, DeltaResource};
pub use crate::directory::{GroupPage, ObjectPage, Relation, UserPage};
pub use crate::error::AppError;
pub use crate::keys::{KeyRing, PublicJwk};
pub use crate::limits::{Limits, Surface};
pub use crate::methods_policy::{Policies, PolicyObject};
pub use crate::notifications::{Delivered, NotificationPage, Reported, SmtpRelay};
pub use crate::oidc::{
    AuthorizeOutcome, AuthorizeRequest, ClientAuth, DeviceAuthorization, OAuthError, ResponseMode, TokenResponse,
    url_encode,
};
pub use crate::passkeys::{CreationOptions, NewPasskey, PasskeyView, read_fido_roots};
pub use crate::password::{HashParams, PasswordHasher};
pub use crate::portal::{MAX_SEARCH, PORTAL_ACTIONS, PortalAccess};
pub use crate::relationships::{MembershipPage, Related, UserObjects};
pub use crate::reports::{RegistrationDetail, RegistrationOverview};
pub use crate::roles::{APPROVAL_TIMEOUT, Approval, CurrentUser, ItemPage, RoleDef, RolePolicy, ScheduleRequestInput};
pub use crate::setup::{BootstrapOutcome, BootstrapRequest, DemoAccount};
pub use crate::signin::{
    PORTAL_APP_ID, PORTAL_APP_NAME, PasskeyRequest, SignInForm, SignInPage, SignInView, csrf_token,
};
pub use crate::signin_admin::SignInPage as SignInLogPage;
pub use crate::tokens::{AccessClaims, FoundUser};
pub use keyward_core::signin::Stage;
pub use keyward_store::OutboxMessage;

/// Settings the use cases need.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The external base URL, without a trailing slash.
    pub public_url: String,
    /// Lifetime of access tokens.
    pub access_token_lifetime: time::Duration,
    /// How long a node trusts its cached signing keys before reading them again: a key retired on
    /// another node stops verifying here within this time.
    pub key_cache_ttl: std::time::Duration,
    /// `KEYWARD_ALLOW_PASSWORD_GRANT`: whether the resource-owner password grant is on.
    pub allow_password_grant: bool,
    /// Abuse limits (rate limits, the hasher's queue).
    pub limits: Limits,
    /// `KEYWARD_PORTAL_IDLE_MINUTES`: how long an admin portal session may go unused before the
    /// administrator signs in again.
    pub portal_idle_timeout: time::Duration,
    /// `KEYWARD_FIDO_ROOTS`: the FIDO attestation roots (DER) a passkey's attestation must chain
    /// to while the methods policy enforces attestation.
    pub fido_attestation_roots: Vec<Vec<u8>>,
}

impl AppConfig {
    /// The production settings for a public URL: one-hour tokens, a five-second key cache.
    pub fn new(public_url: String) -> AppConfig {
        AppConfig {
            public_url,
            access_token_lifetime: time::Duration::hours(1),
            key_cache_ttl: std::time::Duration::from_secs(5),
            allow_password_grant: false,
            limits: Limits::default(),
            portal_idle_timeout: time::Duration::minutes(60),
            fido_attestation_roots: Vec::new(),
        }
    }
}

/// What the transport knows about a request: its correlation id and the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    pub correlation_id: String,
    pub ip_address: Option<String>,
    /// The client's `User-Agent`, cut to [`keyward_core::signin::USER_AGENT_MAX`] characters.
    pub user_agent: Option<String>,
}

/// Who is calling: a signed-in user (a delegated token) or an application acting as itself (an
/// app-only token from the client-credentials grant).
#[derive(Debug, Clone)]
pub enum Principal {
    /// Shared with the store's kept callers (see `Store::get_user_and_roles`): no copy a request.
    User(Arc<User>),
    App(ServicePrincipal),
}

/// An authenticated caller: the tenant, the principal, its active roles, and, for delegated
/// tokens, the permissions the token carries (both the token and the roles must allow an action).
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Tenant,
    pub principal: Principal,
    pub actor: Actor,
    pub meta: RequestMeta,
    /// The token's delegated permissions (`scp`); `None` for app-only tokens, which act with the
    /// service principal's directory roles alone.
    pub scopes: Option<Arc<[String]>>,
    /// For delegated tokens from the sign-in: when the user authenticated, and with what (`amr`).
    pub authentication: Option<(time::OffsetDateTime, Vec<String>)>,
    /// Set when a change held by dual control runs on its approval: the request and who
    /// approved it (`None` for every ordinary request).
    pub approval: Option<Box<dual_control::Approval>>,
}

impl Caller {
    /// The signed-in user, for delegated tokens.
    pub fn user(&self) -> Option<&User> {
        self.shared_user().map(|it| &**it)
    }

    /// [`Caller::user`] as shared with the store's kept callers.
    pub fn shared_user(&self) -> Option<&Arc<User>> {
        match &self.principal {
            Principal::User(user) => Some(user),
            Principal::App(_) => None,
        }
    }

    /// The signed-in user, or Graph's answer to `/me` with an app-only token.
    pub fn delegated_user(&self) -> Result<&Arc<User>, AppError> {
        self.shared_user()
            .ok_or_else(|| AppError::BadRequest("/me request is only valid with delegated authentication flow.".into()))
    }

    /// Whether the caller authenticated with MFA (`amr` has `mfa`) within `window` of `now`.
    pub fn has_mfa_within(&self, now: time::OffsetDateTime, window: time::Duration) -> bool {
        self.authentication.as_ref().is_some_and(|(at, amr)| amr.iter().any(|it| it == "mfa") && now - *at <= window)
    }

    /// The object id of the user or service principal.
    pub fn id(&self) -> &ObjectId {
        match &self.principal {
            Principal::User(user) => &user.id,
            Principal::App(app) => &app.id,
        }
    }

    /// The caller's successful `activity` on `targets` at `at`, as an audit record.
    pub(crate) fn succeeded(
        &self,
        at: time::OffsetDateTime,
        activity: keyward_core::audit::Activity,
        targets: Vec<keyward_core::audit::TargetResource>,
    ) -> keyward_core::audit::AuditRecord {
        let mut record = self.audit(at).success(audit_id(&self.meta.correlation_id), activity, targets);
        if let Some(approval) = &self.approval {
            record.additional_details.extend(approval.details());
        }
        record
    }

    fn audit(&self, at: time::OffsetDateTime) -> AuditContext {
        let initiated_by = match &self.principal {
            Principal::User(user) => Initiator::User {
                id: user.id.clone(),
                display_name: user.display_name.clone(),
                user_principal_name: user.user_principal_name.clone(),
                ip_address: self.meta.ip_address.clone(),
            },
            Principal::App(app) => Initiator::App {
                app_id: app.app_id.clone(),
                display_name: app.display_name.clone(),
                service_principal_id: Some(app.id.clone()),
            },
        };
        AuditContext {
            tenant_id: self.tenant.id.clone(),
            correlation_id: self.meta.correlation_id.clone(),
            at,
            initiated_by,
        }
    }
}

/// The application: shared, cheap to clone.
#[derive(Debug, Clone)]
pub struct App {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    hasher: PasswordHasher,
    keys: Arc<KeyRing>,
    config: AppConfig,
    limiter: limits::RateLimiter,
    /// The methods activity page's registration figures (`reports`).
    overviews: reports::Overviews,
    /// This node's lease id on the bulk operations it runs (`bulk`).
    node_lease: String,
    /// Tenants by id (also found by domain, `App::find_tenant`), as read once: a tenant and its domains are written only when the tenant is
    /// created (`TenantStore::insert_tenant`), so a copy never goes stale. Saves every request
    /// two statements. Should tenants or domains ever change, this needs a version check. Only
    /// tenants that exist are kept, so FNV (`keyward_core::fnv`) hashes their ids.
    tenants: std::sync::RwLock<std::collections::HashMap<keyward_core::ids::ObjectId, Tenant, keyward_core::fnv::Fnv>>,
    /// The sign-in log entries written alone, committed together (`sign_in_log`).
    sign_in_log: sign_in_log::SignInLog,
    /// Access tokens this node has verified (`tokens`).
    verified_tokens: tokens::VerifiedTokens,
}

impl App {
    /// Assembles the application and loads the signing keys (creating none: see [`App::bootstrap`]).
    pub async fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        hasher: PasswordHasher,
        keys: KeyRing,
        config: AppConfig,
    ) -> Result<App, AppError> {
        let hasher = hasher.with_queue_limit(config.limits.hash_queue);
        let app = App::without_signing_keys(store, clock, hasher, keys, config);
        app.reload_keys().await?;
        Ok(app)
    }

    /// An app for maintenance commands that never sign or verify tokens (`keyward audit …`): it
    /// does not load the signing keys. `keys` is [`KeyRing::without_master_key`] when the
    /// key-encryption key is not at hand (retention checkpoints then cannot be checked).
    pub fn without_signing_keys(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        hasher: PasswordHasher,
        keys: KeyRing,
        config: AppConfig,
    ) -> App {
        App::assemble(store, clock, hasher, Arc::new(keys), config, uuid::Uuid::new_v4().to_string())
    }

    /// An app over these parts, with its own node caches (rate limiter, figures, tenants, sign-in
    /// log writer, verified tokens) starting empty.
    fn assemble(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        hasher: PasswordHasher,
        keys: Arc<KeyRing>,
        config: AppConfig,
        node_lease: String,
    ) -> App {
        App {
            inner: Arc::new(Inner {
                store,
                clock,
                hasher,
                keys,
                config,
                limiter: limits::RateLimiter::default(),
                overviews: reports::Overviews::default(),
                node_lease,
                tenants: Default::default(),
                sign_in_log: Default::default(),
                verified_tokens: Default::default(),
            }),
        }
    }

    /// The store, for shutdown and health checks.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &AppConfig {
        &self.inner.config
    }

    /// Now, by the app's clock.
    pub fn now(&self) -> time::OffsetDateTime {
        self.inner.clock.now()
    }

    /// Counts a request from `address` (and against `account`, when known) to `surface` on this
    /// node; `Err(TooManyRequests)` past the configured limits.
    pub fn throttle(&self, surface: Surface, address: Option<&str>, account: Option<&str>) -> Result<(), AppError> {
        let limits = self.inner.config.limits;
        let now = self.now();
        if let Some(address) = address {
            self.inner.limiter.check(surface, address, limits.per_address, now)?;
        }
        if let Some(account) = account {
            // One budget per account across surfaces: guesses by page, grant or device page add up.
            let key = format!("account:{}", account.to_lowercase());
            self.inner.limiter.check(Surface::SignInPages, &key, limits.per_account, now)?;
        }
        Ok(())
    }

    /// How many passwords this node has verified since it started (`/metrics`).
    pub fn password_verifications(&self) -> u64 {
        self.inner.hasher.verifications()
    }

    /// Checks that the database answers.
    pub async fn health(&self) -> Result<i64, AppError> {
        Ok(self.inner.store.schema_version().await?)
    }

    /// The tenant with this id (see `Inner::tenants`).
    pub(crate) async fn tenant_by_id(&self, id: &keyward_core::ids::ObjectId) -> Result<Option<Tenant>, AppError> {
        if let Some(tenant) = self.inner.tenants.read().unwrap_or_else(|it| it.into_inner()).get(id) {
            return Ok(Some(tenant.clone()));
        }
        let Some(tenant) = self.read().await?.get_tenant(id).await? else { return Ok(None) };
        self.inner.tenants.write().unwrap_or_else(|it| it.into_inner()).insert(id.clone(), tenant.clone());
        Ok(Some(tenant))
    }

    /// A read transaction that judges role windows by this application's clock.
    async fn read(&self) -> Result<Box<dyn Tx>, AppError> {
        let mut tx = self.inner.store.read().await?;
        tx.set_now(self.now());
        Ok(tx)
    }

    /// A read transaction for a few point reads (`Store::read_short`: on SQLite on this thread),
    /// judging role windows by this application's clock. The sign-in and token paths use it;
    /// anything that lists, counts or pages uses `read`.
    async fn read_short(&self) -> Result<Box<dyn Tx>, AppError> {
        let mut tx = self.inner.store.read_short().await?;
        tx.set_now(self.now());
        Ok(tx)
    }

    /// A write transaction that judges role windows by this application's clock.
    async fn write(&self) -> Result<Box<dyn Tx>, AppError> {
        let mut tx = self.inner.store.write().await?;
        tx.set_now(self.now());
        Ok(tx)
    }

    /// A write transaction whose statements may run long (`Store::write_long`): the
    /// maintenance's deletes, deleting or restoring an object with many rows, a bulk job's rows.
    async fn write_long(&self) -> Result<Box<dyn Tx>, AppError> {
        let mut tx = self.inner.store.write_long().await?;
        tx.set_now(self.now());
        Ok(tx)
    }
}

/// Runs `work` now and then every `every` (a late run delays the next), on a task of its own,
/// until the returned handle is aborted: the server's maintenance loops.
pub(crate) fn spawn_every<F, Fut>(every: std::time::Duration, mut work: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            work().await;
        }
    })
}

/// Asks the core whether the caller may do `action` to `target`; refuses with the rule otherwise.
/// A delegated token must carry a permission that covers the action, and the user's roles must
/// allow it on the target.
fn require(caller: &Caller, action: &'static str, target: Target<'_>) -> Result<(), AppError> {
    require_scoped(caller, action, action, target)
}

/// [`require`] where the token's permissions are judged for `scope_action` (just-in-time roles
/// have permissions of their own) and the roles for `action`.
fn require_scoped(
    caller: &Caller,
    action: &'static str,
    scope_action: &'static str,
    target: Target<'_>,
) -> Result<(), AppError> {
    let on_self = matches!(target, Target::User(facts) if facts.id.as_ref() == Some(caller.id()));
    require_scope(caller, scope_action, on_self)?;
    let decision = match &caller.principal {
        Principal::User(_) => authz::authorize(&caller.actor, action, target),
        Principal::App(_) => authz::authorize_app(&caller.actor, action, target),
    };
    match decision {
        Decision::Allow { .. } => Ok(()),
        Decision::Deny { rule } => {
            tracing::info!(action, rule, caller = %caller.id(), "authorization denied");
            Err(AppError::Forbidden { rule, message: authz::denial_message(rule, action) })
        }
    }
}

/// The token half of a decision: a delegated token must carry a permission that covers `action`
/// (on oneself when `on_self`). Used alone for a user's changes to their own security info,
/// which no role governs.
fn require_scope(caller: &Caller, action: &'static str, on_self: bool) -> Result<(), AppError> {
    if let Some(scopes) = &caller.scopes
        && !keyward_core::oauth::scope_permits(scopes, action, on_self)
    {
        tracing::info!(action, caller = %caller.id(), "the token's scopes do not cover the action");
        return Err(AppError::Forbidden {
            rule: "token_scope",
            message: format!(
                "{} The access token's permissions (scp) do not cover '{action}'; ask for a permission that \
                 does (rule: token-scope).",
                authz::INSUFFICIENT_PRIVILEGES
            ),
        });
    }
    Ok(())
}

/// The SHA-256 of `bytes`: how passes, codes, tokens, cookies and client secrets are stored.
pub(crate) fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref().to_vec()
}

/// A fresh random token (256 bits, base64url): cookies, codes, refresh and device codes.
pub(crate) fn random_token() -> Result<String, AppError> {
    use base64::Engine;
    let mut bytes = [0_u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| AppError::Unexpected(anyhow::anyhow!("random generator failed")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A time as RFC 3339 text, as Graph writes times and audit values carry them.
pub fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A fresh random object id.
fn new_id() -> ObjectId {
    ObjectId::from_bytes(*uuid::Uuid::new_v4().as_bytes())
}
