//! Keyward's use cases: each loads what it needs, asks the core to decide, persists, and writes
//! its audit record, all in one transaction.
//!
//! Invariant: this is the only layer that opens transactions; a change and its audit record
//! commit together or not at all.
#![forbid(unsafe_code)]

mod audit_log;
pub mod clock;
mod directory;
pub mod error;
mod facts;
pub mod keys;
pub mod password;
mod roles;
mod setup;
mod signin;
mod signin_admin;
mod tokens;

use std::sync::Arc;

use keyward_core::audit::{AuditContext, Initiator};
use keyward_core::authz::{self, Actor, Decision, Target};
use keyward_core::directory::{Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_store::{Store, Tx};

pub use crate::audit_log::ChainReport;
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::directory::{GroupPage, ObjectPage, Relation, UserPage};
pub use crate::error::AppError;
pub use crate::keys::{KeyRing, PublicJwk};
pub use crate::password::{HashParams, PasswordHasher};
pub use crate::roles::{ItemPage, Memberships, RoleDef};
pub use crate::setup::{BootstrapOutcome, BootstrapRequest, DemoAccount};
pub use crate::signin::{PORTAL_APP_ID, PORTAL_APP_NAME, SignInForm, SignInPage, SignInView, Stage, csrf_token};
pub use crate::signin_admin::SignInPage as SignInLogPage;
pub use crate::tokens::AccessClaims;

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
}

impl AppConfig {
    /// The production settings for a public URL: one-hour tokens, a five-second key cache.
    pub fn new(public_url: String) -> AppConfig {
        AppConfig {
            public_url,
            access_token_lifetime: time::Duration::hours(1),
            key_cache_ttl: std::time::Duration::from_secs(5),
        }
    }
}

/// What the transport knows about a request: its correlation id and the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    pub correlation_id: String,
    pub ip_address: Option<String>,
}

/// An authenticated caller: the tenant, the signed-in user and their active roles.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Tenant,
    pub user: User,
    pub actor: Actor,
    pub meta: RequestMeta,
}

impl Caller {
    fn audit(&self, at: time::OffsetDateTime) -> AuditContext {
        AuditContext {
            tenant_id: self.tenant.id.clone(),
            correlation_id: self.meta.correlation_id.clone(),
            at,
            initiated_by: Initiator::User {
                id: self.user.id.clone(),
                display_name: self.user.display_name.clone(),
                user_principal_name: self.user.user_principal_name.clone(),
                ip_address: self.meta.ip_address.clone(),
            },
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
        let app = App { inner: Arc::new(Inner { store, clock, hasher, keys: Arc::new(keys), config }) };
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
        App { inner: Arc::new(Inner { store, clock, hasher, keys: Arc::new(keys), config }) }
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

    /// Checks that the database answers.
    pub async fn health(&self) -> Result<i64, AppError> {
        Ok(self.inner.store.schema_version().await?)
    }

    async fn read(&self) -> Result<Box<dyn Tx>, AppError> {
        Ok(self.inner.store.read().await?)
    }

    async fn write(&self) -> Result<Box<dyn Tx>, AppError> {
        Ok(self.inner.store.write().await?)
    }
}

/// Asks the core whether the caller may do `action` to `target`; refuses with the rule otherwise.
fn require(caller: &Caller, action: &'static str, target: Target<'_>) -> Result<(), AppError> {
    match authz::authorize(&caller.actor, action, target) {
        Decision::Allow { .. } => Ok(()),
        Decision::Deny { rule } => {
            tracing::info!(action, rule, caller = %caller.user.id, "authorization denied");
            Err(AppError::Forbidden { rule, message: authz::denial_message(rule) })
        }
    }
}

/// A fresh random object id.
fn new_id() -> ObjectId {
    ObjectId::from_bytes(*uuid::Uuid::new_v4().as_bytes())
}

/// A fresh audit record id in Entra's `Directory_<correlation>_<random>` form.
fn audit_id(correlation_id: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("Directory_{correlation_id}_{}", &random[..12])
}
