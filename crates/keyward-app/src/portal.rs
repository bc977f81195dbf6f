//! Who may use the admin portal, and as whom. The portal's pages call the same use cases as the
//! API with a `Caller` built from the browser session: the user's own roles decide every action
//! (the portal is a first-party application, so no token scope narrows them), and every change
//! is audited exactly as through Graph.

use keyward_core::directory::{User, UserDraft};
use keyward_core::ids::ObjectId;
use keyward_core::query::{self, OrderBy, RawQuery};
use keyward_core::secret::Secret;

use keyward_core::authz::{Target, actions};

use crate::auth_methods::generate_password;
use crate::directory::resolve_user;
use crate::facts::user_facts;
use crate::tokens::load_user_actor;
use crate::{App, AppError, Caller, Principal, RequestMeta, require};

/// What a browser session may do on the admin portal.
#[derive(Debug)]
pub enum PortalAccess {
    /// No signed-in session: sign in first (at the tenant with this id).
    SignedOut(ObjectId),
    /// The user holds no administrator role and is eligible for none: their own security info is
    /// on the account page.
    NotAnAdministrator(ObjectId),
    /// A role holder signed in without multi-factor authentication: the admin portal needs it
    /// from every role holder, as Entra's admin portals do.
    NeedsMfa(ObjectId),
    /// May use the admin portal, acting as this caller.
    Administrator(Box<Caller>),
}

/// The service desk's actions on a user in the portal, and the resource action each needs (the
/// same as the Graph call behind it).
pub const PORTAL_ACTIONS: [(&str, &str); 11] = [
    // And the other permissions of its steps (`signin_admin::may_reset_mfa`).
    ("reset_mfa", actions::USERS_AUTH_METHODS_DELETE),
    ("require_reregistration", actions::USERS_AUTH_METHODS_DELETE),
    ("revoke_mfa_sessions", actions::USERS_AUTH_METHODS_UPDATE),
    ("revoke_sessions", actions::USERS_INVALIDATE_REFRESH_TOKENS),
    ("reset_password", actions::USERS_PASSWORD_UPDATE),
    ("create_tap", actions::USERS_AUTH_METHODS_CREATE),
    ("edit", actions::USERS_BASIC_UPDATE),
    ("disable", actions::USERS_DISABLE),
    ("enable", actions::USERS_ENABLE),
    ("delete", actions::USERS_DELETE),
    // Or another permission to change the user's methods (`caller_verification`).
    ("verify_caller", actions::USERS_PASSWORD_UPDATE),
];

/// The longest search text the user list takes.
pub const MAX_SEARCH: usize = 120;

impl App {
    /// Creates a user from the portal's form. Without a password in `draft`, Keyward chooses one
    /// that meets the policy, returned once, and the user must change it at the next sign-in.
    pub async fn portal_create_user(
        &self,
        caller: &Caller,
        mut draft: UserDraft,
    ) -> Result<(User, Option<Secret>), AppError> {
        let generated = if draft.password.is_none() {
            let upn = draft.user_principal_name.clone().unwrap_or_default();
            let alias = upn.split('@').next().unwrap_or_default().to_owned();
            let password = generate_password(&[draft.display_name.as_deref().unwrap_or_default(), &alias])?;
            draft.password = Some(password.clone());
            draft.force_change_password_next_sign_in = Some(true);
            Some(password)
        } else {
            None
        };
        let user = self.create_user(caller, draft).await?;
        Ok((user, generated))
    }

    /// The portal access of the browser session named by `cookie` in `tenant_key`. With
    /// `is_portal_request`, an administrator's request counts as portal activity: the session
    /// then ends after `portal_idle_timeout` without any (in `signed_in_session`, for every use of
    /// the session).
    pub async fn portal_access(
        &self,
        tenant_key: &str,
        cookie: Option<&str>,
        meta: RequestMeta,
        is_portal_request: bool,
    ) -> Result<PortalAccess, AppError> {
        let tenant = self.find_tenant(tenant_key).await?.ok_or_else(|| AppError::NotFound(tenant_key.to_owned()))?;
        let Some(cookie) = cookie else { return Ok(PortalAccess::SignedOut(tenant.id)) };
        let Some((user, session)) = self.signed_in_session(&tenant, cookie).await? else {
            return Ok(PortalAccess::SignedOut(tenant.id));
        };
        let mut tx = self.read().await?;
        let actor = load_user_actor(&mut *tx, &tenant, &user).await?;
        // Someone eligible for a role comes in too, to activate it on the My roles page, and a
        // role's named approver, to decide there.
        let is_eligible = actor.roles.is_empty()
            && (!tx.list_eligibilities_for(&tenant.id, &user.id).await?.is_empty()
                || tx.list_role_settings(&tenant.id).await?.iter().any(|(_, it, ..)| it.approvers.contains(&user.id)));
        drop(tx);
        if actor.roles.is_empty() && !is_eligible {
            return Ok(PortalAccess::NotAnAdministrator(tenant.id));
        }
        if !session.methods.is_multi_factor() {
            return Ok(PortalAccess::NeedsMfa(tenant.id));
        }
        if is_portal_request {
            self.record_portal_activity(&session).await?;
        }
        // Recency of MFA counts from the second factor when the session has one.
        let authentication = session.mfa_at.or(session.authenticated_at).map(|at| (at, session.methods.values()));
        Ok(PortalAccess::Administrator(Box::new(Caller {
            tenant,
            principal: Principal::User(std::sync::Arc::new(user)),
            actor,
            meta,
            scopes: None,
            authentication,
            approval: None,
        })))
    }

    /// Marks the session as used on the portal now: at the first portal request, then at most
    /// every minute (or half the idle timeout, if shorter). The store never moves the mark back
    /// (a node whose clock runs ahead delays the timeout by its lead).
    async fn record_portal_activity(&self, session: &keyward_store::BrowserSession) -> Result<(), AppError> {
        let now = self.now();
        let every = std::cmp::min(time::Duration::minutes(1), self.inner.config.portal_idle_timeout / 2);
        let due = session.portal_seen_at.is_none_or(|seen| now - seen >= every);
        if due {
            let mut tx = self.write().await?;
            tx.touch_portal_session(&session.id_sha256, now).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// The portal's user list: users whose display name, user principal name or mail starts with
    /// `search` (case-insensitively; all users without one), a page of `top` after `skiptoken`.
    pub async fn portal_users(
        &self,
        caller: &Caller,
        search: &str,
        top: usize,
        skiptoken: Option<&str>,
    ) -> Result<(Vec<User>, Option<String>), AppError> {
        let search: String = search.trim().chars().filter(|it| !it.is_control()).take(MAX_SEARCH).collect();
        let filter = (!search.is_empty()).then(|| {
            let text = search.replace('\'', "''");
            format!(
                "startswith(displayName,'{text}') or startswith(userPrincipalName,'{text}') or \
                 startswith(mail,'{text}')"
            )
        });
        let raw = RawQuery {
            filter,
            top: Some(top.to_string()),
            skiptoken: skiptoken.map(str::to_owned),
            ..RawQuery::default()
        };
        let mut plan = query::plan(&query::USER, &raw)?;
        // By display name, as an administrator reads the list and as the directory's index on
        // the display name serves it (a page is a seek, whatever the directory's size). Graph
        // would sort a filtered list only as an advanced query, with a count; the portal needs
        // neither the count nor Graph's rule.
        plan.order_by = Some(OrderBy { property: "displayName", is_descending: false });
        let page = self.list_users_planned(caller, plan).await?;
        Ok((page.items, page.skiptoken))
    }

    /// For each portal action on user `key`: `None` when the caller may take it, or why not, so
    /// the page can disable the button and say why. Nothing is recorded; the use case decides
    /// again (and records a refusal) when the form is posted.
    pub async fn portal_user_actions(
        &self,
        caller: &Caller,
        key: &str,
    ) -> Result<Vec<(&'static str, Option<String>)>, AppError> {
        let mut tx = self.read().await?;
        let user = resolve_user(&mut *tx, &caller.tenant, key).await?;
        let facts = user_facts(&mut *tx, &caller.tenant, &user).await?;
        drop(tx);
        Ok(PORTAL_ACTIONS
            .iter()
            .map(|(name, action)| {
                let mut decision = require(caller, action, Target::User(&facts));
                if decision.is_ok() && *name == "require_reregistration" && user.id == *caller.id() {
                    decision = crate::auth_methods::require_recent_mfa(caller, self.now());
                }
                if decision.is_ok() && *name == "reset_mfa" {
                    decision = crate::signin_admin::may_reset_mfa(caller, &user, &facts, false);
                }
                let reason = match decision {
                    Ok(()) => None,
                    Err(AppError::Forbidden { message, .. }) => Some(message),
                    Err(other) => Some(other.to_string()),
                };
                (*name, reason)
            })
            .collect())
    }
}
