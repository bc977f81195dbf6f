//! Access tokens for Keyward's API: issuing (the same code the OpenID Connect endpoints and the
//! test kit use) and authenticating a bearer token into a [`Caller`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyward_core::authz::custom::CustomRole;
use keyward_core::authz::{ActiveRole, Actor, Scope};
use keyward_core::directory::{RoleAssignment, ServicePrincipal, Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_core::oauth::{CAE_CAPABILITY, revocation_claims};
use keyward_store::Tx;
use serde::{Deserialize, Serialize};

use crate::keys::{PublicJwk, VerifyError};
use crate::{App, AppError, Caller, Principal, RequestMeta};

/// The audience of tokens for Keyward's Graph-compatible API, as Entra names Graph.
pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";

/// Claims of an access token for the Keyward API (Entra v2.0 access-token shape). Delegated
/// tokens (`idtyp` `user`) carry `scp` and the user's names; app-only tokens (`idtyp` `app`)
/// carry `roles` and name the service principal in `oid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub sub: String,
    pub oid: String,
    pub tid: String,
    pub ver: String,
    pub idtyp: String,
    /// The client the token was issued to.
    pub appid: String,
    pub azp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    pub wids: Vec<String>,
    pub uti: String,
    /// When the user authenticated (unix time), for tokens from the sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Keyward: tokens obtained with a Temporary Access Pass end with it (unix time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xms_tap_exp: Option<i64>,
    /// Keyward: the issue time in microseconds since the epoch, so that a revocation in the same
    /// second as the issue still tells the tokens issued before it from those issued after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kw_iat_us: Option<i64>,
    /// Keyward: `auth_time` in microseconds. A revocation ends the tokens of every sign-in before
    /// it, including one issued from such a sign-in's grant after the revocation committed (the
    /// grant was checked just before), so the API compares this, not only the issue time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kw_auth_us: Option<i64>,
    /// The client capabilities the token request declared (`cp1`: continuous access evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xms_cc: Option<Vec<String>>,
}

/// Whether `iss` is the issuer of `tenant`'s tokens at `public_url` (`{public_url}/{tenant}/v2.0`,
/// [`App::issuer`]), compared without writing it out: every request's token is checked.
fn is_issuer_of(public_url: &str, iss: &str, tenant: &ObjectId) -> bool {
    iss.strip_prefix(public_url)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.strip_prefix(tenant.as_str()))
        == Some("/v2.0")
}

/// Whether a delegated token belongs to the time before `cut_off` (the user's
/// `signInSessionsValidFrom`): issued before it, or issued from a sign-in before it. The second
/// covers a token exchange whose grant check read the user just before a revocation committed
/// and that signed just after: its issue time follows the cut-off, its sign-in does not.
/// Compared in microseconds; a token without its precise times counts as issued at the start of
/// its second.
fn predates_cut_off(claims: &AccessClaims, cut_off: time::OffsetDateTime) -> bool {
    let issued_us = claims.kw_iat_us.unwrap_or(claims.iat.saturating_mul(1_000_000));
    let started_us = claims.kw_auth_us.map_or(issued_us, |it| it.min(issued_us));
    started_us < micros(cut_off)
}

/// Microseconds since the epoch.
fn micros(at: time::OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

const CLOCK_SKEW: i64 = 300;

/// An access token whose signature this node verified, parsed.
#[derive(Debug)]
pub(crate) struct VerifiedToken {
    /// The key that signed it: the token counts only while that key still verifies.
    kid: String,
    claims: AccessClaims,
    /// `scp` split (empty without it).
    scopes: Arc<[String]>,
}

/// Access tokens this node has verified, each by its signature and held whole: the same bytes
/// presented again skip the ES256 check, the base64 and the JSON (together about a sixth of an
/// API read's time). A token is found by its signature (a few dozen bytes to hash) and then
/// compared whole with the one kept, so a token with any byte changed, its signature included, is
/// verified anew. Keyed by the SHA-256 of the whole token instead, hashing a delegated token
/// with every permission (about 3 kB) took 1.5 µs a request, 2.6% of an API read.
///
/// The whole-token comparison need not take constant time: it runs only for a presented token
/// whose signature is a remembered token's, and whoever holds that signature holds the token's
/// one secret part (the header and claims are plain base64), so its timing tells them nothing
/// they do not have. The lookup by signature hashes with the map's random keys.
#[derive(Debug, Default)]
pub(crate) struct VerifiedTokens(Mutex<HashMap<Box<str>, Remembered>>);

/// A verified token, whole, and what it verified as.
type Remembered = (Box<str>, Arc<VerifiedToken>);

/// How many verified tokens a node remembers before it starts over (each a token, its claims and
/// its permissions, typically a few kilobytes, more for a token with every permission: tens of
/// megabytes at worst).
const VERIFIED_CAPACITY: usize = 10_000;

/// A compact JWS's signature: what follows its last dot.
fn signature_of(token: &str) -> &str {
    token.rsplit('.').next().unwrap_or(token)
}

impl VerifiedTokens {
    /// What `token` verified as, if this very token (every byte of it) was verified before.
    fn get(&self, token: &str) -> Option<Arc<VerifiedToken>> {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(signature_of(token)).filter(|(kept, _)| **kept == *token).map(|(_, verified)| verified.clone())
    }

    fn insert(&self, token: &str, verified: Arc<VerifiedToken>) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= VERIFIED_CAPACITY {
            map.clear();
        }
        map.insert(signature_of(token).into(), (token.into(), verified));
    }
}

/// What a delegated access token says about its grant.
#[derive(Debug, Clone)]
pub(crate) struct UserAccess<'a> {
    pub client_id: &'a str,
    pub scp: &'a [String],
    pub amr: &'a [String],
    pub pass_expires_at: Option<time::OffsetDateTime>,
    pub auth_time: Option<time::OffsetDateTime>,
    /// The client declared `cp1`: the token carries `xms_cc` and gets claims challenges.
    pub is_cae_capable: bool,
}

impl App {
    /// The issuer of tokens for a tenant: `{public-url}/{tenant-id}/v2.0`.
    pub fn issuer(&self, tenant: &ObjectId) -> String {
        format!("{}/{}/v2.0", self.inner.config.public_url, tenant)
    }

    /// Issues a delegated access token for `user` with every API permission (the `keyward token`
    /// command and the test kit), signed with the active key.
    pub async fn issue_access_token(&self, tenant: &Tenant, user: &User) -> Result<String, AppError> {
        let scopes: Vec<String> = keyward_core::oauth::API_PERMISSIONS.iter().map(|it| (*it).to_owned()).collect();
        let access = UserAccess {
            client_id: keyward_core::oauth::FIRST_PARTY_CLIENT_ID,
            scp: &scopes,
            amr: &["pwd".to_owned()],
            pass_expires_at: None,
            auth_time: None,
            is_cae_capable: false,
        };
        let wids = self.tenant_wide_role_ids(tenant, &user.id).await?;
        self.sign_user_access_token_with(tenant, user, wids, &access).await
    }

    /// Signs a delegated access token whose `wids` are the tenant-wide roles among `roles`: the
    /// role assignments that apply to the user now, read with the user
    /// (`Store::get_user_and_roles`, the same assignments `tenant_wide_role_ids` reads).
    pub(crate) async fn sign_user_access_token_holding(
        &self,
        tenant: &Tenant,
        user: &User,
        roles: &[RoleAssignment],
        access: &UserAccess<'_>,
    ) -> Result<String, AppError> {
        self.sign_user_access_token_with(tenant, user, tenant_wide(roles.iter()), access).await
    }

    /// Signs a delegated access token with these `wids`.
    async fn sign_user_access_token_with(
        &self,
        tenant: &Tenant,
        user: &User,
        wids: Vec<String>,
        access: &UserAccess<'_>,
    ) -> Result<String, AppError> {
        self.refresh_keys_if_stale().await?;
        let issued = self.now();
        let now = issued.unix_timestamp();
        let mut exp = now + self.inner.config.access_token_lifetime.whole_seconds();
        if let Some(end) = access.pass_expires_at {
            exp = exp.min(end.unix_timestamp());
        }
        let claims = AccessClaims {
            aud: GRAPH_AUDIENCE.into(),
            iss: self.issuer(&tenant.id),
            iat: now,
            nbf: now,
            exp,
            sub: user.id.to_string(),
            oid: user.id.to_string(),
            tid: tenant.id.to_string(),
            ver: "2.0".into(),
            idtyp: "user".into(),
            appid: access.client_id.to_owned(),
            azp: access.client_id.to_owned(),
            name: Some(user.display_name.clone()),
            preferred_username: Some(user.user_principal_name.clone()),
            scp: Some(access.scp.join(" ")),
            roles: None,
            amr: Some(access.amr.to_vec()),
            wids,
            uti: uuid::Uuid::new_v4().simple().to_string(),
            auth_time: access.auth_time.map(|it| it.unix_timestamp()),
            xms_tap_exp: access.pass_expires_at.map(|it| it.unix_timestamp()),
            kw_iat_us: Some(micros(issued)),
            kw_auth_us: access.auth_time.map(micros),
            xms_cc: access.is_cae_capable.then(|| vec![CAE_CAPABILITY.to_owned()]),
        };
        let json = serde_json::to_vec(&claims).map_err(|err| AppError::Unexpected(err.into()))?;
        self.inner.keys.sign(&json)
    }

    /// Signs an app-only access token for a service principal (client credentials).
    pub(crate) async fn sign_app_access_token(
        &self,
        tenant: &Tenant,
        principal: &ServicePrincipal,
        roles: &[RoleAssignment],
    ) -> Result<String, AppError> {
        self.refresh_keys_if_stale().await?;
        let wids = tenant_wide(roles.iter());
        let now = self.now().unix_timestamp();
        let claims = AccessClaims {
            aud: GRAPH_AUDIENCE.into(),
            iss: self.issuer(&tenant.id),
            iat: now,
            nbf: now,
            exp: now + self.inner.config.access_token_lifetime.whole_seconds(),
            sub: principal.id.to_string(),
            oid: principal.id.to_string(),
            tid: tenant.id.to_string(),
            ver: "2.0".into(),
            idtyp: "app".into(),
            appid: principal.app_id.clone(),
            azp: principal.app_id.clone(),
            name: None,
            preferred_username: None,
            scp: None,
            roles: None,
            amr: None,
            wids,
            uti: uuid::Uuid::new_v4().simple().to_string(),
            auth_time: None,
            xms_tap_exp: None,
            kw_iat_us: None,
            kw_auth_us: None,
            xms_cc: None,
        };
        let json = serde_json::to_vec(&claims).map_err(|err| AppError::Unexpected(err.into()))?;
        self.inner.keys.sign(&json)
    }

    /// The template ids of the principal's tenant-wide roles (`wids`).
    async fn tenant_wide_role_ids(&self, tenant: &Tenant, principal: &ObjectId) -> Result<Vec<String>, AppError> {
        let mut tx = self.read_short().await?;
        let roles = tx.list_role_assignments_for(&tenant.id, principal).await?;
        drop(tx);
        Ok(tenant_wide(roles.iter()))
    }

    /// Issues an access token for the user with this UPN in the first tenant (the `keyward token`
    /// command and the test kit).
    pub async fn issue_access_token_for_upn(&self, upn: &str) -> Result<String, AppError> {
        let mut tx = self.read().await?;
        let tenant = first_tenant(&mut *tx).await?;
        let user = tx.find_user_by_upn(&tenant.id, upn).await?.ok_or_else(|| AppError::NotFound(upn.to_owned()))?;
        drop(tx);
        self.issue_access_token(&tenant, &user).await
    }

    /// Authenticates a bearer token: signature by a published key, issuer, audience and lifetime,
    /// then loads the user and their role assignments as of now (a role change counts on the next
    /// request, on every node).
    pub async fn authenticate(&self, bearer: Option<&str>, meta: RequestMeta) -> Result<Caller, AppError> {
        Ok(self.authenticate_reading(bearer, meta, None).await?.0)
    }

    /// [`App::authenticate`], and the user `key` (object id or user principal name) read with the
    /// caller (`Store::get_user_and_roles_and_user`), for [`App::get_found_user`]. Nothing of
    /// the other user is looked at, and nothing more is read for them, before the caller is
    /// authenticated and authorised.
    pub async fn authenticate_and_find_user(
        &self,
        bearer: Option<&str>,
        meta: RequestMeta,
        key: &str,
    ) -> Result<(Caller, FoundUser), AppError> {
        self.authenticate_reading(bearer, meta, Some(key)).await
    }

    async fn authenticate_reading(
        &self,
        bearer: Option<&str>,
        meta: RequestMeta,
        also: Option<&str>,
    ) -> Result<(Caller, FoundUser), AppError> {
        let token = bearer
            .map(str::trim)
            .filter(|it| !it.is_empty())
            .ok_or(AppError::Unauthenticated("Access token is empty."))?;
        // Another node may have retired a key: look again at most every few seconds.
        self.refresh_keys_if_stale().await?;
        let verified = self.verified_token(token).await?;
        let claims = &verified.claims;
        // One time for the whole check (the clock is read once).
        let now_at = self.now();
        let now = now_at.unix_timestamp();
        if claims.exp + CLOCK_SKEW < now {
            return Err(AppError::Unauthenticated("Lifetime validation failed, the token is expired."));
        }
        if claims.nbf - CLOCK_SKEW > now {
            return Err(AppError::Unauthenticated("Lifetime validation failed, the token is not yet valid."));
        }
        if claims.aud != GRAPH_AUDIENCE && claims.aud != self.inner.config.public_url {
            return Err(AppError::Unauthenticated("Access token validation failure. Invalid audience."));
        }
        let invalid = || AppError::Unauthenticated("Access token validation failure.");
        let tenant_id = ObjectId::parse(&claims.tid).ok_or_else(invalid)?;
        if !is_issuer_of(&self.inner.config.public_url, &claims.iss, &tenant_id) {
            return Err(AppError::Unauthenticated("Access token validation failure. Invalid issuer."));
        }
        if claims.xms_tap_exp.is_some_and(|end| end <= now) {
            return Err(AppError::Unauthenticated("Lifetime validation failed, the token is expired."));
        }
        let principal_id = ObjectId::parse(&claims.oid).ok_or_else(invalid)?;
        let tenant = self.tenant_by_id(&tenant_id).await?.ok_or_else(invalid)?;
        let (principal, scopes, actor, found) = match claims.idtyp.as_str() {
            "app" => {
                let mut tx = self.read_short().await?;
                let app = tx.get_service_principal(&tenant.id, &principal_id).await?.ok_or_else(invalid)?;
                if !app.account_enabled {
                    return Err(AppError::Unauthenticated("The service principal is disabled."));
                }
                let actor = load_actor(&mut *tx, &tenant, &app.id).await?;
                (Principal::App(app), None, actor, FoundUser(None))
            }
            _ => {
                // The user and their roles in one statement: the read every request makes.
                let store = &self.inner.store;
                let ((user, assignments), found) = match also {
                    Some(key) => {
                        let (caller, other) = store
                            .get_user_and_roles_and_user(&tenant.id, &principal_id, now_at, key)
                            .await?
                            .ok_or_else(invalid)?;
                        (caller, FoundUser(other))
                    }
                    None => (
                        store.get_user_and_roles(&tenant.id, &principal_id, now_at).await?.ok_or_else(invalid)?,
                        FoundUser(None),
                    ),
                };
                // A client that declared `cp1` gets a claims challenge where others get a plain 401.
                let is_cae_capable = claims
                    .xms_cc
                    .as_ref()
                    .is_some_and(|it| it.iter().any(|capability| capability.eq_ignore_ascii_case(CAE_CAPABILITY)));
                let refused = |message: &'static str, not_before: time::OffsetDateTime| {
                    if is_cae_capable {
                        AppError::ClaimsChallenge {
                            message,
                            claims: revocation_claims(not_before.unix_timestamp()),
                            authorization_uri: format!(
                                "{}/{}/oauth2/v2.0/authorize",
                                self.inner.config.public_url, tenant.id
                            ),
                        }
                    } else {
                        AppError::Unauthenticated(message)
                    }
                };
                if !user.account_enabled {
                    return Err(refused("The user account is disabled.", now_at));
                }
                // Revoked sessions end the access tokens issued before too (Keyward checks this
                // on every request; Entra waits for expiry unless continuous access evaluation applies).
                if predates_cut_off(claims, user.sign_in_sessions_valid_from) {
                    return Err(refused(
                        "The access token was revoked: sign in again.",
                        user.sign_in_sessions_valid_from,
                    ));
                }
                // A token obtained with a Temporary Access Pass ends when the pass is deleted.
                if let Some(end) = claims.xms_tap_exp {
                    let pass = self.read_short().await?.get_temporary_access_pass(&user.id).await?;
                    let held = pass.is_some_and(|it| {
                        (it.start + time::Duration::minutes(it.lifetime_minutes)).unix_timestamp() == end
                    });
                    if !held {
                        return Err(refused("The access token was revoked: sign in again.", now_at));
                    }
                }
                let scopes = verified.scopes.clone();
                let custom_roles = if needs_custom_roles(&assignments) {
                    self.read_short().await?.list_custom_roles(&tenant.id).await?
                } else {
                    Vec::new()
                };
                let actor = Actor { is_guest: user.is_guest(), ..actor_from(&user.id, assignments, &custom_roles) };
                (Principal::User(user), Some(scopes), actor, found)
            }
        };
        let authentication = claims
            .auth_time
            .and_then(|it| time::OffsetDateTime::from_unix_timestamp(it).ok())
            .map(|at| (at, claims.amr.clone().unwrap_or_default()));
        Ok((Caller { tenant, principal, actor, meta, scopes, authentication, approval: None }, found))
    }

    /// `token`'s claims if its signature verifies, from this node's memory of tokens it verified
    /// before as long as the key that signed them still verifies. Everything else about the
    /// token (lifetime, audience, issuer, revocation, the user) is checked by the caller on every
    /// request.
    async fn verified_token(&self, token: &str) -> Result<Arc<VerifiedToken>, AppError> {
        if let Some(seen) = self.inner.verified_tokens.get(token)
            && self.inner.keys.verifies(&seen.kid)
        {
            return Ok(seen);
        }
        let invalid = || AppError::Unauthenticated("Access token validation failure.");
        let (kid, claims_json) = match self.inner.keys.verify_signed(token) {
            Ok(it) => it,
            Err(VerifyError::UnknownKey) => {
                // Another node may have rotated keys since this node last loaded them.
                self.reload_keys_if_older_than(Duration::from_secs(1)).await?;
                self.inner.keys.verify_signed(token).map_err(|_| invalid())?
            }
            Err(VerifyError::Malformed) => return Err(AppError::Unauthenticated("IDX14100: JWT is not well formed.")),
            Err(VerifyError::BadSignature) => return Err(invalid()),
        };
        let mut claims: AccessClaims = serde_json::from_slice(&claims_json).map_err(|_| invalid())?;
        // Kept split only (`authenticate` reads `scopes`, not `scp`).
        let scopes = claims.scp.take().unwrap_or_default().split_whitespace().map(str::to_owned).collect();
        let verified = Arc::new(VerifiedToken { kid, claims, scopes });
        self.inner.verified_tokens.insert(token, verified.clone());
        Ok(verified)
    }

    /// The published signing keys.
    pub async fn public_keys(&self) -> Result<Vec<PublicJwk>, AppError> {
        self.refresh_keys_if_stale().await?;
        Ok(self.inner.keys.public_keys())
    }

    pub(crate) async fn reload_keys(&self) -> Result<(), AppError> {
        let mut tx = self.read().await?;
        let keys = tx.list_signing_keys().await?;
        drop(tx);
        self.inner.keys.load(&keys)
    }

    async fn reload_keys_if_older_than(&self, age: Duration) -> Result<(), AppError> {
        if self.inner.keys.is_stale(age) {
            self.reload_keys().await?;
        }
        Ok(())
    }

    /// Reloads the signing keys when the cache is older than the configured time-to-live, so a
    /// rotation or retirement on another node shows here within that time.
    async fn refresh_keys_if_stale(&self) -> Result<(), AppError> {
        self.reload_keys_if_older_than(self.inner.config.key_cache_ttl).await
    }
}

/// The user [`App::authenticate_and_find_user`] read with its caller (`None` inside if there is
/// none), or nothing if it was not read then (for an application's token, a user with
/// multi-valued properties, or on SQLite when its pool answered): [`App::get_found_user`] reads
/// them then.
#[derive(Debug, Default)]
pub struct FoundUser(pub(crate) Option<Option<std::sync::Arc<User>>>);

/// The actor for a user: every role assignment that applies now.
pub(crate) async fn load_actor(tx: &mut dyn Tx, tenant: &Tenant, principal: &ObjectId) -> Result<Actor, AppError> {
    let assignments = tx.list_role_assignments_for(&tenant.id, principal).await?;
    let custom_roles =
        if needs_custom_roles(&assignments) { tx.list_custom_roles(&tenant.id).await? } else { Vec::new() };
    Ok(actor_from(principal, assignments, &custom_roles))
}

/// Whether any of `assignments` is of a custom role (whose actions must be read).
fn needs_custom_roles(assignments: &[RoleAssignment]) -> bool {
    assignments.iter().any(|it| keyward_core::authz::built_in_role(&it.role_definition_id).is_none())
}

/// The actor holding `assignments`, with the tenant's `custom_roles` (needed when any is custom).
fn actor_from(principal: &ObjectId, assignments: Vec<RoleAssignment>, custom_roles: &[CustomRole]) -> Actor {
    let roles = assignments
        .into_iter()
        .filter_map(|it| {
            let scope = match it.directory_scope_id.as_str() {
                "/" => Scope::Tenant,
                other => Scope::AdministrativeUnit(ObjectId::parse(other.strip_prefix("/administrativeUnits/")?)?),
            };
            let custom_actions = match keyward_core::authz::built_in_role(&it.role_definition_id) {
                Some(_) => None,
                // A disabled or deleted custom role grants nothing.
                None => Some(
                    custom_roles
                        .iter()
                        .find(|role| role.is_enabled && role.id.as_str().eq_ignore_ascii_case(&it.role_definition_id))
                        .map(|role| role.allowed_resource_actions.clone())
                        .unwrap_or_default(),
                ),
            };
            Some(ActiveRole { role_definition_id: it.role_definition_id, scope, custom_actions })
        })
        .collect();
    Actor { id: principal.clone(), roles, is_guest: false }
}

/// [`load_actor`] for a signed-in user: a guest acts with a guest's default permissions.
pub(crate) async fn load_user_actor(tx: &mut dyn Tx, tenant: &Tenant, user: &User) -> Result<Actor, AppError> {
    let actor = load_actor(tx, tenant, &user.id).await?;
    Ok(Actor { is_guest: user.is_guest(), ..actor })
}

/// The first tenant (Keyward serves one tenant per deployment today).
pub(crate) async fn first_tenant(tx: &mut dyn Tx) -> Result<Tenant, AppError> {
    tx.list_tenants()
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| AppError::BadRequest("No tenant exists yet: start `keyward serve` once to create it.".into()))
}

impl App {
    /// Finds a tenant by id or verified domain.
    pub async fn find_tenant(&self, key: &str) -> Result<Option<Tenant>, AppError> {
        let matches = |it: &Tenant| it.id.as_str().eq_ignore_ascii_case(key) || it.has_domain(key);
        // Kept tenants first (see `Inner::tenants`); a key they do not know reads them all again.
        let kept =
            self.inner.tenants.read().unwrap_or_else(|it| it.into_inner()).values().find(|it| matches(it)).cloned();
        if kept.is_some() {
            return Ok(kept);
        }
        let tenants = self.read().await?.list_tenants().await?;
        let found = tenants.iter().find(|it| matches(it)).cloned();
        // Only a tenant that was missing takes the write lock: keys that match no tenant (anyone
        // can send them) leave the requests that read the kept tenants alone.
        if let Some(tenant) = &found {
            self.inner.tenants.write().unwrap_or_else(|it| it.into_inner()).insert(tenant.id.clone(), tenant.clone());
        }
        Ok(found)
    }

    /// The tenant this server was started with (the first one), if it exists.
    pub async fn home_tenant(&self) -> Result<Option<Tenant>, AppError> {
        Ok(self.read().await?.list_tenants().await?.into_iter().next())
    }
}

impl App {
    /// The same application issuing tokens with another lifetime (the `keyward token` command).
    pub fn with_token_lifetime(self, lifetime: time::Duration) -> App {
        let inner = &self.inner;
        let mut config = inner.config.clone();
        config.access_token_lifetime = lifetime;
        App::assemble(
            inner.store.clone(),
            inner.clock.clone(),
            inner.hasher.clone(),
            inner.keys.clone(),
            config,
            inner.node_lease.clone(),
        )
    }
}

/// The template ids of the tenant-wide roles among `roles` (`wids`), sorted, once each.
fn tenant_wide<'a>(roles: impl Iterator<Item = &'a RoleAssignment>) -> Vec<String> {
    let mut wids: Vec<String> =
        roles.filter(|it| it.directory_scope_id == "/").map(|it| it.role_definition_id.clone()).collect();
    wids.sort();
    wids.dedup();
    wids
}

#[cfg(test)]
mod tests {
    use super::{AccessClaims, is_issuer_of, micros, predates_cut_off};
    use keyward_core::ids::ObjectId;

    #[test]
    fn the_issuer_is_compared_as_written_out() {
        let tenant = ObjectId::parse("0b3e97e3-5a55-4aa3-bd42-3fcc22705eae").expect("id");
        let other = ObjectId::parse("1b3e97e3-5a55-4aa3-bd42-3fcc22705eae").expect("id");
        let url = "https://id.contoso.test";
        let issuer = format!("{url}/{tenant}/v2.0");
        assert!(is_issuer_of(url, &issuer, &tenant));
        for wrong in [
            format!("{url}/{other}/v2.0"),
            format!("{url}/{tenant}/v2.0/"),
            format!("{url}/{tenant}"),
            format!("{url}{tenant}/v2.0"),
            format!("https://evil.test/{tenant}/v2.0"),
            format!("{url}.evil/{tenant}/v2.0"),
            format!("{url}/{}/v2.0", tenant.as_str().to_uppercase()),
            String::new(),
        ] {
            assert!(!is_issuer_of(url, &wrong, &tenant), "{wrong}");
        }
    }

    fn claims(iat_us: Option<i64>, auth_us: Option<i64>) -> AccessClaims {
        AccessClaims {
            aud: super::GRAPH_AUDIENCE.into(),
            iss: String::new(),
            iat: 1_800_000_000,
            nbf: 1_800_000_000,
            exp: 1_800_003_600,
            sub: String::new(),
            oid: String::new(),
            tid: String::new(),
            ver: "2.0".into(),
            idtyp: "user".into(),
            appid: String::new(),
            azp: String::new(),
            name: None,
            preferred_username: None,
            scp: None,
            roles: None,
            amr: None,
            wids: Vec::new(),
            uti: String::new(),
            auth_time: auth_us.map(|it| it / 1_000_000),
            xms_tap_exp: None,
            kw_iat_us: iat_us,
            kw_auth_us: auth_us,
            xms_cc: None,
        }
    }

    fn at(us: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).expect("time")
    }

    #[test]
    fn a_token_predates_a_cut_off_by_its_issue_or_its_sign_in() {
        let second = 1_800_000_000 * 1_000_000;
        let (signed_in, cut_off, issued) = (second + 100_000, second + 400_000, second + 700_000);
        // Signed in and issued after the cut-off: it holds.
        assert!(!predates_cut_off(&claims(Some(issued), Some(cut_off)), at(cut_off)));
        assert!(!predates_cut_off(&claims(Some(issued), Some(cut_off + 1)), at(cut_off)));
        // Issued before the cut-off, in the same second.
        assert!(predates_cut_off(&claims(Some(signed_in), Some(signed_in)), at(cut_off)));
        // Issued after the cut-off from a sign-in before it (a grant checked just before the
        // revocation committed): refused.
        assert!(predates_cut_off(&claims(Some(issued), Some(signed_in)), at(cut_off)));
        assert!(predates_cut_off(&claims(Some(issued), Some(cut_off - 1)), at(cut_off)));
        // Without the sign-in's time, the issue time decides.
        assert!(!predates_cut_off(&claims(Some(issued), None), at(cut_off)));
        assert!(predates_cut_off(&claims(Some(cut_off - 1), None), at(cut_off)));
        // Without precise times, the token counts from the start of its second.
        assert!(predates_cut_off(&claims(None, None), at(cut_off)));
        assert!(!predates_cut_off(&claims(None, None), at(second)));
        // A sign-in time after the issue time (not issued so) does not make a token newer.
        assert!(predates_cut_off(&claims(Some(signed_in), Some(issued)), at(cut_off)));
        assert_eq!(micros(at(cut_off)), cut_off);
        // A sign-in a fraction of a microsecond after the cut-off (an in-memory time, nanoseconds)
        // is not before it.
        let just_after = micros(at(cut_off) + time::Duration::nanoseconds(500));
        assert!(!predates_cut_off(&claims(Some(issued), Some(just_after)), at(cut_off)));
    }
}
