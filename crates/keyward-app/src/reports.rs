//! The authentication methods registration report: Graph's
//! `/reports/authenticationMethods/userRegistrationDetails`, `usersRegisteredByMethod(…)` and
//! `usersRegisteredByFeature(…)`, and the portal's activity page drawn from them.

use std::collections::HashMap;

use keyward_core::audit::Activity;
use keyward_core::audit_query::{AuditFilter, TextMatch};
use keyward_core::authz::{self, Decision, Target, UserFacts, actions, roles, rules};
use keyward_core::ids::ObjectId;
use keyward_core::registration::{
    DayActivity, Flag, IncludedRoles, IncludedTypes, RegisteredMethods, RegistrationCounts, RegistrationFilter,
    RegistrationOrder, RegistrationQuery, SummaryScope, daily_activity,
};
use keyward_store::Cursor;
use time::OffsetDateTime;

use crate::directory::{decode_cursor, encode_cursor};
use crate::{App, AppError, Caller, ItemPage, Principal, require, require_scope};

/// One enabled user's registration details.
#[derive(Debug, Clone)]
pub struct RegistrationDetail {
    pub id: String,
    pub user_principal_name: String,
    pub user_display_name: String,
    pub methods: RegisteredMethods,
    /// When Keyward computed it (the report is live).
    pub last_updated: OffsetDateTime,
}

/// Whose rows a reader of the report sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reach {
    Everyone,
    /// Users without a directory role only: a reader through authentication-method reads that
    /// Entra's target rules stop at administrators (an Authentication Administrator).
    NonAdmins,
}

/// Who may read the report: a token permitting `AuditLog.Read.All` (as Graph requires), and a
/// role that reads the audit log (Reports Reader, Security Reader, Security Administrator,
/// Global Reader, Global Administrator: Entra's list), who see everyone; or a role that reads
/// authentication methods tenant-wide (Authentication and Privileged Authentication
/// Administrator), who see the users whose methods they may read: a Privileged Authentication
/// Administrator everyone, an Authentication Administrator the users without an admin role.
fn report_reach(caller: &Caller) -> Result<Reach, AppError> {
    require_scope(caller, actions::AUDIT_LOGS_READ, false)?;
    let decide = |action, target| match &caller.principal {
        Principal::User(_) => authz::authorize(&caller.actor, action, target),
        Principal::App(_) => authz::authorize_app(&caller.actor, action, target),
    };
    let rule = match decide(actions::AUDIT_LOGS_READ, Target::Tenant) {
        Decision::Allow { .. } => return Ok(Reach::Everyone),
        Decision::Deny { rule } => rule,
    };
    let method_reads = [actions::USERS_AUTH_METHODS_READ, actions::USERS_AUTH_METHODS_RESTRICTED_READ];
    if !method_reads.iter().any(|action| decide(action, Target::Tenant).is_allowed()) {
        tracing::info!(rule, caller = %caller.id(), "registration report refused");
        return Err(AppError::Forbidden { rule, message: authz::denial_message(rule, actions::AUDIT_LOGS_READ) });
    }
    // A Global Administrator stands for every administrator: whoever may read their methods
    // may read anyone's.
    let top = UserFacts { role_ids: vec![roles::GLOBAL_ADMINISTRATOR.to_owned()], ..UserFacts::default() };
    if method_reads.iter().any(|action| decide(action, Target::User(&top)).is_allowed()) {
        Ok(Reach::Everyone)
    } else {
        Ok(Reach::NonAdmins)
    }
}

/// Audit records read per series of the daily activity (resets, registrations, refusals).
pub const ACTIVITY_LIMIT: usize = 10_000;

impl App {
    /// The service desk's activity on the last `days` UTC days (today included): password resets,
    /// passes created and refused actions per day, from the audit log; and whether a series had
    /// more than [`ACTIVITY_LIMIT`] records, so that its oldest days are undercounted.
    pub async fn daily_activity(&self, caller: &Caller, days: u16) -> Result<(Vec<DayActivity>, bool), AppError> {
        require(caller, actions::AUDIT_LOGS_READ, Target::Tenant)?;
        let today = self.now().date();
        let first = today.saturating_sub(time::Duration::days(i64::from(days.max(1)) - 1));
        let from = Some(first.midnight().assume_utc());
        let series = [
            AuditFilter {
                activity: Some(TextMatch::Equals(Activity::ResetPasswordByAdmin.display_name().to_lowercase())),
                ..AuditFilter::default()
            },
            AuditFilter {
                activity: Some(TextMatch::Equals(Activity::AdminRegisteredSecurityInfo.display_name().to_lowercase())),
                ..AuditFilter::default()
            },
            AuditFilter { result: Some("failure".into()), ..AuditFilter::default() },
        ];
        let (mut records, mut is_cut) = (Vec::new(), false);
        for filter in series {
            let filter = AuditFilter { from, ..filter };
            let rows =
                self.inner.store.query_audit(&caller.tenant.id, &filter, None, false, ACTIVITY_LIMIT + 1).await?;
            is_cut |= rows.len() > ACTIVITY_LIMIT;
            records.extend(rows.into_iter().take(ACTIVITY_LIMIT).map(|(_, record)| record));
        }
        // The filters compare lowercased activity names. A refused reset is in two series; count
        // it once.
        records.sort_by(|a, b| a.id.cmp(&b.id));
        records.dedup_by(|a, b| a.id == b.id);
        Ok((daily_activity(&records, first, days), is_cut))
    }

    /// `GET /reports/authenticationMethods/userRegistrationDetails`.
    pub async fn registration_details(
        &self,
        caller: &Caller,
        query: &RegistrationQuery,
    ) -> Result<ItemPage<RegistrationDetail>, AppError> {
        let mut filter = query.filter.clone();
        if report_reach(caller)? == Reach::NonAdmins {
            match filter.flags.iter().find(|(flag, _)| *flag == Flag::IsAdmin) {
                Some((_, true)) => return Ok(ItemPage { items: Vec::new(), skiptoken: None }),
                Some((_, false)) => (),
                None => filter.flags.push((Flag::IsAdmin, false)),
            }
            // Members and owners of a role-assignable group are protected as administrators.
            filter.flags.push((Flag::InRoleAssignableGroup, false));
        }
        let after = query.skiptoken.as_deref().map(decode_cursor).transpose()?;
        let mut tx = self.read().await?;
        let mut rows = tx
            .registration_details(
                &caller.tenant.id,
                &filter,
                query.order,
                query.descending,
                after.as_ref(),
                query.top + 1,
            )
            .await?;
        drop(tx);
        let has_more = rows.len() > query.top;
        rows.truncate(query.top);
        let skiptoken = has_more.then(|| rows.last()).flatten().map(|it| {
            let key = match query.order {
                RegistrationOrder::UserPrincipalName => &it.user_principal_name,
                RegistrationOrder::UserDisplayName => &it.display_name,
            };
            encode_cursor(&Cursor { sort_key: key.to_lowercase(), id: it.id.to_string() })
        });
        let last_updated = self.now();
        let items = rows
            .into_iter()
            .map(|it| RegistrationDetail {
                id: it.id.to_string(),
                user_principal_name: it.user_principal_name,
                user_display_name: it.display_name,
                methods: it.methods,
                last_updated,
            })
            .collect();
        Ok(ItemPage { items, skiptoken })
    }

    /// `GET /reports/authenticationMethods/userRegistrationDetails/{id}`: an enabled user's
    /// details (`NotFound` for a disabled or unknown user, as Entra leaves disabled users out).
    pub async fn registration_detail(&self, caller: &Caller, id: &str) -> Result<RegistrationDetail, AppError> {
        let not_found = || AppError::NotFound(id.to_owned());
        let id = ObjectId::parse(id).ok_or_else(not_found)?;
        let query = RegistrationQuery {
            filter: RegistrationFilter { id: Some(id.to_string()), ..Default::default() },
            order: RegistrationOrder::UserPrincipalName,
            descending: false,
            top: 1,
            skiptoken: None,
        };
        self.registration_details(caller, &query).await?.items.pop().ok_or_else(not_found)
    }

    /// `usersRegisteredByMethod(…)` and `usersRegisteredByFeature(…)`: the counts over the users
    /// `scope` includes. A reader who sees users without an admin role only gets their counts for
    /// `all` (and `user`), and is refused the administrators' counts.
    pub async fn registration_counts(
        &self,
        caller: &Caller,
        scope: &SummaryScope,
    ) -> Result<RegistrationCounts, AppError> {
        let scope = match (report_reach(caller)?, scope.roles) {
            (Reach::Everyone, _) => *scope,
            (Reach::NonAdmins, IncludedRoles::All | IncludedRoles::User | IncludedRoles::Reachable) => {
                SummaryScope { roles: IncludedRoles::Reachable, types: scope.types }
            }
            (Reach::NonAdmins, _) => {
                return Err(AppError::Forbidden {
                    rule: rules::PASSWORD_RESET_MATRIX,
                    message: format!(
                        "{} Your roles read the authentication methods of users without an administrator role \
                         only, so the counts of administrators are not shown (rule: who-can-reset-passwords).",
                        authz::INSUFFICIENT_PRIVILEGES
                    ),
                });
            }
        };
        let mut tx = self.read().await?;
        Ok(tx.registration_counts(&caller.tenant.id, &scope).await?)
    }

    /// The methods activity page's registration figures: the counts of the users the caller's
    /// report reaches, and of administrators for a reader who sees them. Counting reads every
    /// user with a method, so the figures are kept per tenant and reach (on each node) and
    /// counted again only when they may be out of date: when the tenant's audit log moved on
    /// (every change of a method, a user or a role is audited) and the figures are a minute old,
    /// and at least every ten minutes. A change therefore shows at once on a quiet tenant and
    /// within a minute on a busy one, and counting costs at most one page view a minute.
    pub async fn registration_overview(&self, caller: &Caller) -> Result<RegistrationOverview, AppError> {
        let reach = report_reach(caller)?;
        let now = self.now();
        let key = (caller.tenant.id.clone(), reach);
        let mut tx = self.read().await?;
        let head = tx.audit_chain_head(caller.tenant.id.as_str()).await?.map(|it| it.index);
        let cached = self.inner.overviews.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).cloned();
        if let Some((seen, overview)) = cached {
            let age = now - overview.as_of;
            let is_current = seen == head || age < OVERVIEW_FRESH;
            if age >= time::Duration::ZERO && age < OVERVIEW_MAX_AGE && is_current {
                return Ok(overview);
            }
        }
        let scope = |roles| SummaryScope { roles, types: IncludedTypes::All };
        let overview = match reach {
            Reach::Everyone => RegistrationOverview {
                all: tx.registration_counts(&caller.tenant.id, &scope(IncludedRoles::All)).await?,
                admins: Some(tx.registration_counts(&caller.tenant.id, &scope(IncludedRoles::Admin)).await?),
                as_of: now,
            },
            Reach::NonAdmins => RegistrationOverview {
                all: tx.registration_counts(&caller.tenant.id, &scope(IncludedRoles::Reachable)).await?,
                admins: None,
                as_of: now,
            },
        };
        drop(tx);
        self.inner
            .overviews
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (head, overview.clone()));
        Ok(overview)
    }
}

/// How long [`App::registration_overview`]'s figures stand after the audit log moved on.
const OVERVIEW_FRESH: time::Duration = time::Duration::minutes(1);

/// How long they stand at most (changes that write no audit record, such as a restore).
const OVERVIEW_MAX_AGE: time::Duration = time::Duration::minutes(10);

/// The registration figures of the methods activity page (see [`App::registration_overview`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationOverview {
    /// Every user the reader's report reaches (users without an admin role, for an
    /// Authentication Administrator).
    pub all: RegistrationCounts,
    /// Administrators, for a reader who sees them.
    pub admins: Option<RegistrationCounts>,
    /// When the figures were counted.
    pub as_of: OffsetDateTime,
}

/// The figures kept per tenant and reach, with the audit log's head when they were counted.
pub(crate) type Overviews = std::sync::Mutex<HashMap<(ObjectId, Reach), (Option<u64>, RegistrationOverview)>>;
