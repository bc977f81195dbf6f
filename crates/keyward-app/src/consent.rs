//! Consent: delegated permission grants (Graph's `oAuth2PermissionGrant`), the decision the
//! consent page records, and the tenant's user-consent setting (`authorizationPolicy`). The rules
//! (what is missing, what a user may consent to) are `keyward_core::consent`'s.

use keyward_core::audit::{Activity, TargetResource};
use keyward_core::authz::{Target, actions};
use keyward_core::consent::{self, GRAPH_RESOURCE_ID, GrantFilter, GrantProperty, UserConsent};
use keyward_core::directory::{PropertyChange, ServicePrincipal, Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_core::json;
use keyward_core::oauth::Scopes;
use keyward_store::{PermissionGrant, Tx};
use time::{Duration, OffsetDateTime};

use crate::commit_audited;
use crate::oidc::Client;
use crate::roles::ItemPage;
use crate::{App, AppError, Caller, new_id, require};

/// Grants are managed with this action (Global Administrator, Privileged Role Administrator,
/// User Administrator hold it); holders may also consent to any permission for themselves or the
/// whole organization on the consent page.
const MANAGE_GRANTS: &str = "microsoft.directory/oAuth2PermissionGrants/allProperties/allTasks";

/// Whether the caller's token may grant `scope` to an application: granting the permission that
/// grants roles needs it in the granting token too, or a token with `Directory.ReadWrite.All`
/// (which manages grants, as in Graph) could give its own application the role management it
/// lacks. A browser session's consent (no token) is decided by the roles alone.
fn may_grant(caller: &Caller, scope: &str) -> Result<(), AppError> {
    if scope.split_whitespace().any(|it| it.eq_ignore_ascii_case("RoleManagement.ReadWrite.Directory")) {
        crate::require_scope(caller, keyward_core::authz::actions::ROLE_ASSIGNMENTS_WRITE, false)?;
    }
    Ok(())
}

/// How long a consent page may be answered.
const CONSENT_PAGE_LIFETIME: Duration = Duration::minutes(10);

/// What the authorization endpoint does about consent.
#[derive(Debug, Clone)]
pub(crate) enum ConsentCheck {
    /// Every requested permission is granted.
    Granted,
    /// The user may grant what is missing: show the consent page.
    Ask(ConsentRequest),
    /// Only an administrator can grant what is missing.
    AdminRequired,
}

/// The consent page: the application, the permissions it asks for, and a token binding the
/// answer to this user, client, permission list and return address.
#[derive(Debug, Clone)]
pub struct ConsentRequest {
    pub client_id: String,
    pub client_name: String,
    /// Each permission asked for, with what it allows.
    pub permissions: Vec<(String, &'static str)>,
    /// Whether the user may also consent for everyone in the organization.
    pub may_consent_for_organization: bool,
    /// The authorization request to continue with.
    pub return_to: String,
    /// The signed answer token (expiry and MAC).
    pub token: String,
}

/// A draft `oAuth2PermissionGrant` from Graph.
#[derive(Debug, Clone, Default)]
pub struct PermissionGrantDraft {
    pub client_id: Option<String>,
    pub consent_type: Option<String>,
    pub principal_id: Option<String>,
    pub resource_id: Option<String>,
    pub scope: Option<String>,
}

fn consent_message(
    tenant: &ObjectId,
    client_id: &str,
    user: &ObjectId,
    permissions: &str,
    return_to: &str,
    at: i64,
) -> String {
    format!("keyward consent v1:{tenant}:{client_id}:{user}:{permissions}:{return_to}:{at}")
}

fn grant_target(grant: &PermissionGrant, client: Option<&ServicePrincipal>) -> TargetResource {
    let text = |value: &str| Some(json::string(value));
    let changes = vec![
        PropertyChange {
            name: "DelegatedPermissionGrant.Scope".into(),
            old_value: None,
            new_value: text(&grant.scope),
        },
        PropertyChange {
            name: "DelegatedPermissionGrant.ConsentType".into(),
            old_value: None,
            new_value: text(&grant.consent_type),
        },
        PropertyChange {
            name: "DelegatedPermissionGrant.PrincipalId".into(),
            old_value: None,
            new_value: text(grant.principal_id.as_ref().map_or("", |it| it.as_str())),
        },
        PropertyChange {
            name: "DelegatedPermissionGrant.ResourceId".into(),
            old_value: None,
            new_value: text(&grant.resource_id),
        },
        PropertyChange { name: "DelegatedPermissionGrant.Id".into(), old_value: None, new_value: text(&grant.id) },
    ];
    let mut target = match client {
        Some(principal) => TargetResource::service_principal(principal),
        None => TargetResource::bare(grant.client_id.clone(), "ServicePrincipal"),
    };
    target.modified_properties = changes;
    target
}

/// The scope strings of the grants that let `client` act for `user`.
async fn granted_scopes(
    tx: &mut dyn Tx,
    tenant: &Tenant,
    client: &ObjectId,
    user: &ObjectId,
) -> Result<Vec<String>, AppError> {
    Ok(tx.permission_grants_for(&tenant.id, client, Some(user)).await?.into_iter().map(|it| it.scope).collect())
}

/// The grant of `consent_type` for `client` (and `principal`) on Graph: the one a consent
/// extends and a new grant may not repeat.
async fn grant_of(
    tx: &mut dyn Tx,
    tenant: &ObjectId,
    client: &ObjectId,
    consent_type: &str,
    principal: Option<&ObjectId>,
) -> Result<Option<PermissionGrant>, AppError> {
    Ok(tx.permission_grants_for(tenant, client, principal).await?.into_iter().find(|it| {
        it.consent_type == consent_type && it.principal_id.as_ref() == principal && it.resource_id == GRAPH_RESOURCE_ID
    }))
}

impl App {
    /// `scopes` with `.default` resolved for this client and user: every API permission for the
    /// pre-consented first-party client; for a registered application, the permissions granted
    /// to it for the user or for everyone (Entra's "statically configured" permissions; with
    /// none granted yet, `User.Read`, which a new registration asks for in Entra).
    pub(crate) async fn resolve_default(
        &self,
        tenant: &Tenant,
        client: &Client,
        user: &User,
        scopes: &Scopes,
    ) -> Result<Scopes, AppError> {
        let mut res = scopes.clone();
        if res.default.is_none() || res.is_resolved {
            return Ok(res);
        }
        match &client.service_principal {
            None => res.resolve_default(keyward_core::oauth::API_PERMISSIONS.iter().copied()),
            Some(principal) => {
                let granted = granted_scopes(&mut *self.read_short().await?, tenant, &principal.id, &user.id).await?;
                res.resolve_default(granted.iter().flat_map(|it| it.split_whitespace()));
                if res.api.is_empty() {
                    res.resolve_default(["User.Read"]);
                }
            }
        }
        Ok(res)
    }

    /// The permissions of `scopes` that no grant covers for this client and user; empty for the
    /// pre-consented first-party client.
    pub(crate) async fn missing_consent(
        &self,
        tenant: &Tenant,
        client: &Client,
        user: &User,
        scopes: &Scopes,
    ) -> Result<Vec<String>, AppError> {
        let Some(principal) = &client.service_principal else { return Ok(Vec::new()) };
        let scopes = &self.resolve_default(tenant, client, user, scopes).await?;
        let requested = consent::requested(scopes);
        let granted = granted_scopes(&mut *self.read_short().await?, tenant, &principal.id, &user.id).await?;
        let granted: Vec<&str> = granted.iter().map(String::as_str).collect();
        Ok(consent::missing(&requested, &granted).into_iter().map(str::to_owned).collect())
    }

    /// What the authorization endpoint does about consent for `user` and `client`: nothing, ask
    /// (all requested permissions when `force`, as `prompt=consent` asks), or refuse.
    pub(crate) async fn consent_check(
        &self,
        tenant: &Tenant,
        client: &Client,
        user: &User,
        scopes: &Scopes,
        force: bool,
        return_to: &str,
    ) -> Result<ConsentCheck, AppError> {
        if client.service_principal.is_none() {
            return Ok(ConsentCheck::Granted);
        }
        let scopes = &self.resolve_default(tenant, client, user, scopes).await?;
        let missing =
            if force { consent::requested(scopes) } else { self.missing_consent(tenant, client, user, scopes).await? };
        if missing.is_empty() {
            return Ok(ConsentCheck::Granted);
        }
        let (setting, is_admin) = self.consent_powers(tenant, user).await?;
        if !is_admin && !missing.iter().all(|it| setting.allows(it)) {
            return Ok(ConsentCheck::AdminRequired);
        }
        let requested = consent::requested(scopes);
        let at = (self.now() + CONSENT_PAGE_LIFETIME).unix_timestamp();
        let permissions = requested.join(" ");
        let mac = self.inner.keys.sign_checkpoint(
            consent_message(&tenant.id, &client.client_id, &user.id, &permissions, return_to, at).as_bytes(),
        )?;
        Ok(ConsentCheck::Ask(ConsentRequest {
            client_id: client.client_id.clone(),
            client_name: client.display_name.clone(),
            permissions: requested.iter().map(|it| (it.clone(), consent::describe(it))).collect(),
            may_consent_for_organization: is_admin,
            return_to: return_to.to_owned(),
            token: format!("{at}.{mac}"),
        }))
    }

    /// What `user` may consent to: the tenant's setting, and whether the user is an administrator
    /// who may grant anything.
    async fn consent_powers(&self, tenant: &Tenant, user: &User) -> Result<(UserConsent, bool), AppError> {
        let mut tx = self.read_short().await?;
        let policies = tx.user_consent_policies(&tenant.id).await?;
        let actor = crate::tokens::load_user_actor(&mut *tx, tenant, user).await?;
        let is_admin = keyward_core::authz::authorize(&actor, MANAGE_GRANTS, Target::Tenant).is_allowed();
        Ok((UserConsent::from_policies(policies.as_deref()), is_admin))
    }

    /// The consent page's answer, for the signed-in user of `session_cookie`: records the
    /// consent (for the user, or with `for_organization` by an administrator, for everyone) and
    /// returns the authorization request to continue with. A refusal continues it too, marked
    /// so that it answers the client `access_denied`.
    #[allow(clippy::too_many_arguments)]
    pub async fn answer_consent(
        &self,
        tenant_key: &str,
        session_cookie: &str,
        client_id: &str,
        permissions: &str,
        return_to: &str,
        token: &str,
        accept: bool,
        for_organization: bool,
        meta: crate::RequestMeta,
    ) -> Result<String, AppError> {
        let tenant = self.find_tenant(tenant_key).await?.ok_or_else(|| AppError::NotFound(tenant_key.to_owned()))?;
        let (user, _) = self
            .signed_in_session(&tenant, session_cookie)
            .await?
            .ok_or(AppError::Unauthenticated("Your session has ended. Sign in again."))?;
        let now = self.now();
        let expired = || {
            AppError::BadRequest("This consent page has expired. Go back to the application and sign in again.".into())
        };
        let (at, mac) = token.split_once('.').ok_or_else(expired)?;
        let at: i64 = at.parse().map_err(|_| expired())?;
        let message = consent_message(&tenant.id, client_id, &user.id, permissions, return_to, at);
        if self.inner.keys.verify_checkpoint(message.as_bytes(), mac) != Some(true) || at < now.unix_timestamp() {
            return Err(expired());
        }
        if !accept {
            return Ok(format!("{return_to}&kw_consent=denied"));
        }
        let client = self.client(&tenant, client_id).await?.ok_or_else(|| AppError::NotFound(client_id.to_owned()))?;
        let principal = client
            .service_principal
            .clone()
            .ok_or_else(|| AppError::BadRequest("This application needs no consent.".into()))?;
        let wanted: Vec<&str> = permissions.split_whitespace().collect();
        let (setting, is_admin) = self.consent_powers(&tenant, &user).await?;
        let for_organization = for_organization && is_admin;
        if !is_admin && !wanted.iter().all(|it| setting.allows(it)) {
            return Err(AppError::Forbidden {
                rule: "user-consent-policy",
                message: "Your organization's policy does not let you consent to these permissions. Ask an administrator to grant them.".into(),
            });
        }
        self.record_consent(&tenant, &user, &principal, &wanted, for_organization, is_admin, meta).await?;
        // Continue the authorization request; a forced prompt has been answered.
        Ok(without_prompt(return_to))
    }

    /// Records `user`'s consent to `permissions` for the client `principal` (for everyone with
    /// `for_organization`), with its audit records, in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn record_consent(
        &self,
        tenant: &Tenant,
        user: &User,
        principal: &ServicePrincipal,
        permissions: &[&str],
        for_organization: bool,
        is_admin: bool,
        meta: crate::RequestMeta,
    ) -> Result<(), AppError> {
        let now = self.now();
        let caller = crate::Caller {
            tenant: tenant.clone(),
            principal: crate::Principal::User(std::sync::Arc::new(user.clone())),
            actor: keyward_core::authz::Actor { id: user.id.clone(), roles: Vec::new(), is_guest: user.is_guest() },
            meta,
            scopes: None,
            authentication: None,
            approval: None,
        };
        let mut tx = self.write().await?;
        let consent_type = if for_organization { "AllPrincipals" } else { "Principal" };
        let principal_id = (!for_organization).then(|| user.id.clone());
        let grant =
            self.upsert_grant(&mut *tx, tenant, &principal.id, consent_type, principal_id, permissions, now).await?;
        let flag = |value: bool| Some(json::string(if value { "True" } else { "False" }));
        let mut consent_target = TargetResource::service_principal(principal);
        consent_target.modified_properties = vec![
            PropertyChange { name: "ConsentContext.IsAdminConsent".into(), old_value: None, new_value: flag(is_admin) },
            PropertyChange { name: "ConsentContext.IsAppOnly".into(), old_value: None, new_value: flag(false) },
            PropertyChange {
                name: "ConsentContext.OnBehalfOfAll".into(),
                old_value: None,
                new_value: flag(for_organization),
            },
            PropertyChange {
                name: "ConsentAction.Permissions".into(),
                old_value: None,
                new_value: Some(json::string(&permissions.join(" "))),
            },
        ];
        commit_audited(
            tx,
            [
                caller.succeeded(now, Activity::ConsentToApplication, vec![consent_target]),
                caller.succeeded(
                    now,
                    Activity::AddDelegatedPermissionGrant,
                    vec![grant_target(&grant, Some(principal))],
                ),
            ],
        )
        .await?;
        Ok(())
    }

    /// The device-code page's consent: the permissions `user` must still grant `client` for
    /// `scopes`, or `Err` when only an administrator could grant them.
    pub(crate) async fn device_consent(
        &self,
        tenant: &Tenant,
        client: &Client,
        user: &User,
        scopes: &Scopes,
    ) -> Result<Vec<String>, AppError> {
        let missing = self.missing_consent(tenant, client, user, scopes).await?;
        if missing.is_empty() {
            return Ok(missing);
        }
        let (setting, is_admin) = self.consent_powers(tenant, user).await?;
        if !is_admin && !missing.iter().all(|it| setting.allows(it)) {
            return Err(AppError::BadRequest(format!(
                "{} needs permission to access resources in your organization that only an admin can grant. Ask an \
                 admin to grant permission to this app before you can use it.",
                client.display_name
            )));
        }
        Ok(missing)
    }

    /// Records the consent a user gave by approving a device code (the confirmation page listed
    /// the permissions).
    pub(crate) async fn consent_by_device_approval(
        &self,
        tenant: &Tenant,
        client: &Client,
        user: &User,
        scopes: &Scopes,
        meta: crate::RequestMeta,
    ) -> Result<(), AppError> {
        let missing = self.device_consent(tenant, client, user, scopes).await?;
        let Some(principal) = &client.service_principal else { return Ok(()) };
        if missing.is_empty() {
            return Ok(());
        }
        let (_, is_admin) = self.consent_powers(tenant, user).await?;
        let wanted: Vec<&str> = missing.iter().map(String::as_str).collect();
        self.record_consent(tenant, user, principal, &wanted, false, is_admin, meta).await
    }

    /// Creates the grant of `consent_type` for the client (and user) or adds `permissions` to it.
    #[allow(clippy::too_many_arguments)]
    async fn upsert_grant(
        &self,
        tx: &mut dyn Tx,
        tenant: &Tenant,
        client: &ObjectId,
        consent_type: &str,
        principal_id: Option<ObjectId>,
        permissions: &[&str],
        now: OffsetDateTime,
    ) -> Result<PermissionGrant, AppError> {
        // Grant changes run one at a time per tenant (PostgreSQL's advisory lock; SQLite writers
        // are serial): two consents at once extend one grant instead of racing to two.
        tx.lock_role_changes(&tenant.id).await?;
        match grant_of(tx, &tenant.id, client, consent_type, principal_id.as_ref()).await? {
            Some(mut grant) => {
                grant.scope = consent::merged(&grant.scope, permissions);
                tx.update_permission_grant_scope(&grant.id, &grant.scope).await?;
                Ok(grant)
            }
            None => {
                let grant = PermissionGrant {
                    id: grant_id(),
                    tenant_id: tenant.id.clone(),
                    client_id: client.clone(),
                    consent_type: consent_type.to_owned(),
                    principal_id,
                    resource_id: GRAPH_RESOURCE_ID.to_owned(),
                    scope: consent::merged("", permissions),
                    created: now,
                };
                tx.insert_permission_grant(&grant).await?;
                Ok(grant)
            }
        }
    }

    /// `GET /oauth2PermissionGrants` (optionally one client's).
    pub async fn list_permission_grants(
        &self,
        caller: &Caller,
        clauses: &[(GrantProperty, String)],
        top: usize,
        skiptoken: Option<&str>,
    ) -> Result<ItemPage<PermissionGrant>, AppError> {
        require(caller, actions::SERVICE_PRINCIPALS_READ, Target::Tenant)?;
        let after = skiptoken.map(after_grant).transpose()?;
        let Some(filter) = GrantFilter::of(clauses) else {
            return Ok(ItemPage { items: Vec::new(), skiptoken: None });
        };
        let items =
            self.read().await?.list_permission_grants(&caller.tenant.id, &filter, after.as_deref(), top + 1).await?;
        Ok(crate::roles::page_with(items, top, |it| grant_skiptoken(&it.id)))
    }

    /// `GET /oauth2PermissionGrants/{id}`.
    pub async fn get_permission_grant(&self, caller: &Caller, id: &str) -> Result<PermissionGrant, AppError> {
        require(caller, actions::SERVICE_PRINCIPALS_READ, Target::Tenant)?;
        self.read()
            .await?
            .get_permission_grant(&caller.tenant.id, id)
            .await?
            .ok_or_else(|| AppError::NotFound(id.to_owned()))
    }

    /// `POST /oauth2PermissionGrants`: audited as `Add delegated permission grant`.
    pub async fn create_permission_grant(
        &self,
        caller: &Caller,
        draft: PermissionGrantDraft,
    ) -> Result<PermissionGrant, AppError> {
        let required = |name: &str| AppError::BadRequest(format!("Property '{name}' is required."));
        let invalid = |name: &str| AppError::BadRequest(format!("Invalid value for property '{name}'."));
        let client_id = draft.client_id.as_deref().ok_or_else(|| required("clientId"))?;
        let client_id = ObjectId::parse(client_id).ok_or_else(|| invalid("clientId"))?;
        let consent_type = draft.consent_type.as_deref().ok_or_else(|| required("consentType"))?;
        let consent_type = match consent_type {
            it if it.eq_ignore_ascii_case("AllPrincipals") => "AllPrincipals",
            it if it.eq_ignore_ascii_case("Principal") => "Principal",
            _ => return Err(invalid("consentType")),
        };
        let principal_id = match (consent_type, draft.principal_id.as_deref()) {
            ("Principal", Some(id)) => Some(ObjectId::parse(id).ok_or_else(|| invalid("principalId"))?),
            ("Principal", None) => return Err(required("principalId")),
            (_, Some(_)) => return Err(invalid("principalId")),
            (_, None) => None,
        };
        let resource_id = draft.resource_id.as_deref().ok_or_else(|| required("resourceId"))?;
        if !resource_id.eq_ignore_ascii_case(GRAPH_RESOURCE_ID) {
            return Err(AppError::BadRequest(format!(
                "Invalid value for property 'resourceId': Keyward's API is the only resource; use '{GRAPH_RESOURCE_ID}'."
            )));
        }
        let scope = draft.scope.unwrap_or_default();
        consent::valid_scope(&scope).map_err(AppError::BadRequest)?;
        let now = self.now();
        let mut tx = self.write().await?;
        let principal =
            tx.get_service_principal(&caller.tenant.id, &client_id).await?.ok_or_else(|| invalid("clientId"))?;
        if let Err(err) = require(caller, MANAGE_GRANTS, Target::Tenant).and_then(|()| may_grant(caller, &scope)) {
            let target = vec![TargetResource::service_principal(&principal)];
            return Err(self.refused(Some(tx), caller, Activity::AddDelegatedPermissionGrant, target, err).await);
        }
        if let Some(user) = &principal_id
            && tx.get_user(&caller.tenant.id, user).await?.is_none()
        {
            return Err(invalid("principalId"));
        }
        tx.lock_role_changes(&caller.tenant.id).await?;
        if grant_of(&mut *tx, &caller.tenant.id, &client_id, consent_type, principal_id.as_ref()).await?.is_some() {
            return Err(AppError::Conflict("Permission entry already exists.".into()));
        }
        let grant = PermissionGrant {
            id: grant_id(),
            tenant_id: caller.tenant.id.clone(),
            client_id,
            consent_type: consent_type.to_owned(),
            principal_id,
            resource_id: GRAPH_RESOURCE_ID.to_owned(),
            scope: consent::merged(&scope, &[]),
            created: now,
        };
        tx.insert_permission_grant(&grant).await?;
        commit_audited(
            tx,
            [caller.succeeded(
                now,
                Activity::AddDelegatedPermissionGrant,
                vec![grant_target(&grant, Some(&principal))],
            )],
        )
        .await?;
        Ok(grant)
    }

    /// `PATCH /oauth2PermissionGrants/{id}`: replaces `scope`; audited as `Add delegated
    /// permission grant` with the old and new scope (as Entra records a grant extended by consent).
    pub async fn update_permission_grant(
        &self,
        caller: &Caller,
        id: &str,
        scope: Option<String>,
    ) -> Result<(), AppError> {
        let scope = scope.ok_or_else(|| AppError::BadRequest("Property 'scope' is required.".into()))?;
        consent::valid_scope(&scope).map_err(AppError::BadRequest)?;
        let now = self.now();
        let (mut tx, grant, principal) =
            self.grant_for_change(caller, id, Activity::AddDelegatedPermissionGrant).await?;
        if let Err(err) = may_grant(caller, &scope) {
            let target = vec![grant_target(&grant, principal.as_ref())];
            return Err(self.refused(Some(tx), caller, Activity::AddDelegatedPermissionGrant, target, err).await);
        }
        let scope = consent::merged(&scope, &[]);
        tx.update_permission_grant_scope(&grant.id, &scope).await?;
        let mut target = grant_target(&PermissionGrant { scope: scope.clone(), ..grant.clone() }, principal.as_ref());
        target.modified_properties[0].old_value = Some(json::string(&grant.scope));
        commit_audited(tx, [caller.succeeded(now, Activity::AddDelegatedPermissionGrant, vec![target])]).await?;
        Ok(())
    }

    /// An existing grant and its client, in a write transaction, for a change by `caller`, who
    /// must manage grants (a refusal is audited as `activity`).
    async fn grant_for_change(
        &self,
        caller: &Caller,
        id: &str,
        activity: Activity,
    ) -> Result<(Box<dyn Tx>, PermissionGrant, Option<ServicePrincipal>), AppError> {
        let mut tx = self.write().await?;
        tx.lock_role_changes(&caller.tenant.id).await?;
        let grant =
            tx.get_permission_grant(&caller.tenant.id, id).await?.ok_or_else(|| AppError::NotFound(id.to_owned()))?;
        let principal = tx.get_service_principal(&caller.tenant.id, &grant.client_id).await?;
        if let Err(err) = require(caller, MANAGE_GRANTS, Target::Tenant) {
            let target = vec![grant_target(&grant, principal.as_ref())];
            return Err(self.refused(Some(tx), caller, activity, target, err).await);
        }
        Ok((tx, grant, principal))
    }

    /// `DELETE /oauth2PermissionGrants/{id}`: no new tokens for its permissions from the next
    /// request; audited as `Remove delegated permission grant`.
    pub async fn delete_permission_grant(&self, caller: &Caller, id: &str) -> Result<(), AppError> {
        let now = self.now();
        let (mut tx, grant, principal) =
            self.grant_for_change(caller, id, Activity::RemoveDelegatedPermissionGrant).await?;
        tx.delete_permission_grant(&caller.tenant.id, &grant.id).await?;
        let mut target = grant_target(&grant, principal.as_ref());
        for change in &mut target.modified_properties {
            change.old_value = change.new_value.take();
        }
        commit_audited(tx, [caller.succeeded(now, Activity::RemoveDelegatedPermissionGrant, vec![target])]).await?;
        Ok(())
    }

    /// `GET /policies/authorizationPolicy`: the permission grant policies users are assigned.
    pub async fn user_consent_policies(&self, caller: &Caller) -> Result<Vec<String>, AppError> {
        require(caller, "microsoft.directory/authorizationPolicy/standard/read", Target::Tenant).or_else(|_| {
            require(caller, "microsoft.directory/authorizationPolicy/allProperties/allTasks", Target::Tenant)
        })?;
        let stored = self.read().await?.user_consent_policies(&caller.tenant.id).await?;
        Ok(stored.unwrap_or_else(|| vec![consent::POLICY_LOW.to_owned()]))
    }

    /// `PATCH /policies/authorizationPolicy` with `permissionGrantPoliciesAssigned`: audited as
    /// `Update authorization policy`. Unknown policy ids are refused, never dropped.
    pub async fn set_user_consent_policies(&self, caller: &Caller, policies: Vec<String>) -> Result<(), AppError> {
        if let Some(unknown) = policies.iter().find(|it| !consent::is_known_policy(it)) {
            return Err(AppError::BadRequest(format!(
                "Invalid value for property 'permissionGrantPoliciesAssigned': '{unknown}' is not a policy Keyward \
                 supports (use '{}' or '{}', or an empty list to turn user consent off).",
                consent::POLICY_LOW,
                consent::POLICY_LEGACY
            )));
        }
        let now = self.now();
        let mut tx = self.write().await?;
        if let Err(err) =
            require(caller, "microsoft.directory/authorizationPolicy/allProperties/allTasks", Target::Tenant)
        {
            return Err(self.refused(Some(tx), caller, Activity::UpdateAuthorizationPolicy, Vec::new(), err).await);
        }
        let old =
            tx.user_consent_policies(&caller.tenant.id).await?.unwrap_or_else(|| vec![consent::POLICY_LOW.to_owned()]);
        tx.set_user_consent_policies(&caller.tenant.id, &policies).await?;
        let target = TargetResource {
            id: caller.tenant.id.clone(),
            display_name: Some("Authorization Policy".into()),
            kind: "Policy",
            user_principal_name: None,
            modified_properties: vec![PropertyChange {
                name: "PermissionGrantPoliciesAssigned".into(),
                old_value: Some(json::string_array(old.iter().map(String::as_str))),
                new_value: Some(json::string_array(policies.iter().map(String::as_str))),
            }],
        };
        commit_audited(tx, [caller.succeeded(now, Activity::UpdateAuthorizationPolicy, vec![target])]).await?;
        Ok(())
    }
}

/// The authorization request with its `prompt` parameter removed, however it was encoded.
fn without_prompt(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else { return path_and_query.to_owned() };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            form_urlencoded::parse(name.as_bytes()).next().is_none_or(|(key, _)| key != "prompt")
        })
        .collect();
    if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
}

/// The `$skiptoken` continuing after grant `id` (a grant's id is not a GUID, as the directory's
/// tokens expect, but URL-safe base64).
fn grant_skiptoken(id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("grant\n{id}"))
}

/// The grant id a `$skiptoken` continues after; anything not made by [`grant_skiptoken`] is refused.
fn after_grant(token: &str) -> Result<String, AppError> {
    use base64::Engine;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    match text.as_deref().and_then(|it| it.strip_prefix("grant\n")) {
        Some(id)
            if (1..=128).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(id.to_owned())
        }
        _ => Err(crate::directory::invalid_skiptoken()),
    }
}

/// A grant id: opaque base64url, as Graph's are.
fn grant_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(new_id().as_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_skiptoken_gives_back_its_grant_and_nothing_else_is_taken() {
        let id = grant_id();
        assert_eq!(after_grant(&grant_skiptoken(&id)).expect("made here"), id);
        use base64::Engine;
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        for forged in ["", "not-a-token", &encode("grant\n"), &encode("grant\nx' OR 1=1"), &encode("1\nabc\n")] {
            assert!(matches!(after_grant(forged), Err(AppError::BadRequest(_))), "{forged}");
        }
    }

    #[test]
    fn an_answered_consent_prompt_is_removed_however_it_was_written() {
        assert_eq!(
            without_prompt("/t/oauth2/v2.0/authorize?a=1&prompt=consent&b=2"),
            "/t/oauth2/v2.0/authorize?a=1&b=2"
        );
        assert_eq!(without_prompt("/t/oauth2/v2.0/authorize?%70rompt=%63onsent&a=1"), "/t/oauth2/v2.0/authorize?a=1");
        assert_eq!(without_prompt("/t/oauth2/v2.0/authorize?prompt=consent"), "/t/oauth2/v2.0/authorize");
        assert_eq!(without_prompt("/t/oauth2/v2.0/authorize?promptly=1"), "/t/oauth2/v2.0/authorize?promptly=1");
    }
}
