//! The deleted items (`/directory/deletedItems`): a deleted user, group or application is kept 30 days, listed,
//! read, restored or removed for good.
//!
//! Deleting a user ends its group memberships, role assignments and sessions (`App::delete_user`);
//! a restore brings back the account, its profile, password, authentication methods, sign-in
//! state (per-user MFA) and administrative units, so the MFA that protected it protects it again,
//! but no role, group membership or session: the user holds no role and signs in again.
//!
//! Every group is kept when deleted: Microsoft 365 and security groups alike, as Microsoft Graph's
//! v1.0 documentation of group deletion says (distribution groups, which Entra deletes for good,
//! cannot be created through Graph). Deleting a group ends its own memberships and its role
//! assignments (`App::delete_group`); a restore brings back the group with those of its members,
//! owners and administrative units that still exist, but no role assignment or membership of
//! another group: restoring never grants a role.
//!
//! An application registration is kept with its credentials; its service principal is deleted for
//! good with it (with its role assignments and consent grants), and the refresh tokens issued to
//! it are revoked (`App::delete_application`). A restore brings back the registration and its
//! secrets and certificates, as in Entra, where restoring an application does not restore its
//! service principal either: `POST /servicePrincipals` with its `appId` makes a new one, which
//! holds no role and no consent.
//!
//! Restoring and removing for good are decided on the units the object was in when deleted, so an
//! object of a restricted management unit stays under that unit's administrators.

use keyward_core::audit::{Activity, TargetResource};
use keyward_core::authz::{self, GroupFacts, Target, UnitMembership, UserFacts, actions, roles};
use keyward_core::directory::{Group, User};
use keyward_core::ids::ObjectId;
use keyward_store::{StoreError, Tx};
use time::{Duration, OffsetDateTime};

use crate::applications::{ApplicationView, app_target};
use crate::commit_audited;
use crate::directory::{decode_id_skiptoken, id_skiptoken, page_size, parse_object_id};
use crate::facts::{application_facts, group_for_read};
use crate::{App, AppError, Caller, require, require_scope};

/// How long a deleted user, group or application can be restored, as in Entra.
pub(crate) const RETENTION: Duration = Duration::days(30);

/// A deleted object and when it was deleted.
#[derive(Debug, Clone)]
pub struct Deleted<T> {
    pub object: T,
    pub deleted: OffsetDateTime,
}

/// A deleted user and when it was deleted.
pub type DeletedUser = Deleted<User>;
/// A deleted group and when it was deleted.
pub type DeletedGroup = Deleted<Group>;
/// A deleted application (with its credentials) and when it was deleted.
pub type DeletedApplication = Deleted<ApplicationView>;

/// A page of deleted objects.
#[derive(Debug, Clone)]
pub struct DeletedPage<T> {
    pub items: Vec<Deleted<T>>,
    pub skiptoken: Option<String>,
}

/// One deleted item, a user or a group.
#[derive(Debug, Clone)]
pub enum DeletedItem {
    User(Box<DeletedUser>),
    Group(DeletedGroup),
    Application(Box<DeletedApplication>),
}

impl DeletedItem {
    /// The activity and target a refused restore (`restore`) or removal for good of this item is
    /// recorded under.
    fn refusal_subject(&self, restore: bool) -> (Activity, TargetResource) {
        match self {
            DeletedItem::User(it) => (
                if restore { Activity::RestoreUser } else { Activity::HardDeleteUser },
                TargetResource::user(&it.object),
            ),
            DeletedItem::Group(it) => (
                if restore { Activity::RestoreGroup } else { Activity::HardDeleteGroup },
                TargetResource::group(&it.object),
            ),
            DeletedItem::Application(it) => (
                if restore { Activity::RestoreApplication } else { Activity::HardDeleteApplication },
                app_target(&it.object.application),
            ),
        }
    }
}

/// A restored user, group or application.
#[derive(Debug, Clone)]
pub enum Restored {
    User(Box<User>),
    Group(Group),
    Application(Box<ApplicationView>),
}

/// The administrative units a deleted user or group was a member of (that still exist): a
/// restricted management unit's object stays under that unit's administrators once deleted.
async fn deleted_units(tx: &mut dyn Tx, id: &ObjectId) -> Result<Vec<UnitMembership>, AppError> {
    let units = tx.list_deleted_units_of(id).await?;
    Ok(units.into_iter().map(|(id, is_restricted)| UnitMembership { id, is_restricted }).collect())
}

/// The page of `top` rows (read as `top + 1`, to know whether more follow) and its skiptoken.
fn page_of<T>(mut rows: Vec<(T, OffsetDateTime)>, top: usize, id: fn(&T) -> &str) -> DeletedPage<T> {
    let has_more = rows.len() > top;
    rows.truncate(top);
    let skiptoken = if has_more { rows.last().map(|(it, _)| id_skiptoken(id(it))) } else { None };
    let items = rows.into_iter().map(|(object, deleted)| Deleted { object, deleted }).collect();
    DeletedPage { items, skiptoken }
}

impl App {
    /// `GET /directory/deletedItems/microsoft.graph.user`: users deleted in the last 30 days, by
    /// id and paged (`microsoft.directory/users/standard/read`).
    pub async fn list_deleted_users(
        &self,
        caller: &Caller,
        top: Option<&str>,
        skiptoken: Option<&str>,
    ) -> Result<DeletedPage<User>, AppError> {
        let top = page_size(top)?;
        let after = decode_id_skiptoken(skiptoken)?;
        require(caller, actions::USERS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        let since = self.now() - RETENTION;
        let rows = tx.list_deleted_users(&caller.tenant.id, since, after.as_deref(), top + 1).await?;
        Ok(page_of(rows, top, |it| it.id.as_str()))
    }

    /// `GET /directory/deletedItems/microsoft.graph.group`: groups deleted in the last 30 days, by
    /// id and paged (`microsoft.directory/groups/standard/read`).
    pub async fn list_deleted_groups(
        &self,
        caller: &Caller,
        top: Option<&str>,
        skiptoken: Option<&str>,
    ) -> Result<DeletedPage<Group>, AppError> {
        let top = page_size(top)?;
        let after = decode_id_skiptoken(skiptoken)?;
        require(caller, actions::GROUPS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        let since = self.now() - RETENTION;
        let rows = tx.list_deleted_groups(&caller.tenant.id, since, after.as_deref(), top + 1).await?;
        Ok(page_of(rows, top, |it| it.id.as_str()))
    }

    /// `GET /directory/deletedItems/microsoft.graph.application`: applications deleted in the
    /// last 30 days, by id and paged (`microsoft.directory/applications/standard/read`), each
    /// with its credentials (their hints, never a secret).
    pub async fn list_deleted_applications(
        &self,
        caller: &Caller,
        top: Option<&str>,
        skiptoken: Option<&str>,
    ) -> Result<DeletedPage<ApplicationView>, AppError> {
        let top = page_size(top)?;
        let after = decode_id_skiptoken(skiptoken)?;
        require(caller, actions::APPLICATIONS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        let since = self.now() - RETENTION;
        let rows = tx.list_deleted_applications(&caller.tenant.id, since, after.as_deref(), top + 1).await?;
        let mut views = Vec::with_capacity(rows.len());
        for (application, deleted) in rows {
            let credentials = tx.list_deleted_app_credentials(&application.id).await?;
            views.push((ApplicationView { application, credentials }, deleted));
        }
        Ok(page_of(views, top, |it| it.application.id.as_str()))
    }

    /// The deleted user, group or application `key` names, if any (deleted in the last 30 days).
    async fn find_deleted(&self, tx: &mut dyn Tx, caller: &Caller, key: &str) -> Result<DeletedItem, AppError> {
        let id = parse_object_id(key)?;
        let since = self.now() - RETENTION;
        if let Some((object, deleted)) = tx.get_deleted_user(&caller.tenant.id, &id, since).await? {
            return Ok(DeletedItem::User(Box::new(Deleted { object, deleted })));
        }
        if let Some((object, deleted)) = tx.get_deleted_group(&caller.tenant.id, &id, since).await? {
            return Ok(DeletedItem::Group(Deleted { object, deleted }));
        }
        match tx.get_deleted_application(&caller.tenant.id, &id, since).await? {
            Some((application, deleted)) => {
                let credentials = tx.list_deleted_app_credentials(&application.id).await?;
                let object = ApplicationView { application, credentials };
                Ok(DeletedItem::Application(Box::new(Deleted { object, deleted })))
            }
            None => Err(AppError::NotFound(key.to_owned())),
        }
    }

    /// `GET /directory/deletedItems/{id}`: a deleted user, group or application, to those who may
    /// read it.
    pub async fn get_deleted_item(&self, caller: &Caller, key: &str) -> Result<DeletedItem, AppError> {
        // A caller who may read no kind of deleted item (a guest) is refused before anything is
        // looked up, so that an id it tries is not answered 403 when it names a deleted item and
        // 404 when it does not.
        let may_read = |action| require(caller, action, Target::Tenant);
        if let Err(err) = may_read(actions::USERS_READ)
            && may_read(actions::GROUPS_READ).is_err()
            && may_read(actions::APPLICATIONS_READ).is_err()
        {
            return Err(err);
        }
        let mut tx = self.read().await?;
        let found = self.find_deleted(&mut *tx, caller, key).await?;
        // Reading the deleted items takes what listing them takes (a guest names no deleted user).
        match &found {
            DeletedItem::User(_) => require(caller, actions::USERS_READ, Target::Tenant)?,
            DeletedItem::Group(_) => require(caller, actions::GROUPS_READ, Target::Tenant)?,
            DeletedItem::Application(_) => require(caller, actions::APPLICATIONS_READ, Target::Tenant)?,
        }
        Ok(found)
    }

    /// A deleted item about to be restored (`restore`) or removed for good, in a write transaction,
    /// once the caller may do so; a refusal is recorded. A user is decided under Entra's
    /// sensitive-action table, a group on the group; both with the administrative units they were
    /// in when deleted (unit-scoped roles and restricted management units apply).
    async fn deleted_item_for(
        &self,
        caller: &Caller,
        key: &str,
        restore: bool,
    ) -> Result<(Box<dyn Tx>, DeletedItem), AppError> {
        self.refuse_before_lookup(caller, key, restore).await?;
        // Long: a group's members are copied back or removed with it.
        let mut tx = self.write_long().await?;
        // A concurrent restore or permanent delete of the item finishes first; this one then
        // finds nothing left.
        tx.lock_deleted_item(&caller.tenant.id, &parse_object_id(key)?).await?;
        let found = self.find_deleted(&mut *tx, caller, key).await?;
        let decision = match &found {
            DeletedItem::User(it) => {
                // Decided as acting on the user was when it was deleted: its roles ended then.
                let held = tx.deleted_user_held_roles(&caller.tenant.id, &it.object.id).await?;
                let held = held.unwrap_or_else(|| keyward_store::HeldRoles {
                    // Deleted before Keyward kept what it held: as for a Global Administrator.
                    role_ids: vec![roles::GLOBAL_ADMINISTRATOR.to_owned()],
                    ..keyward_store::HeldRoles::default()
                });
                let facts = UserFacts {
                    id: Some(it.object.id.clone()),
                    role_ids: held.role_ids,
                    has_role_scoped_to_restricted_unit: held.has_role_scoped_to_restricted_unit,
                    is_role_assignable_group_member_or_owner: held.is_role_assignable_group_member_or_owner,
                    units: deleted_units(&mut *tx, &it.object.id).await?,
                    is_last_active_global_administrator: false,
                };
                let action = if restore { actions::USERS_RESTORE } else { actions::USERS_DELETE };
                require(caller, action, Target::User(&facts))
            }
            DeletedItem::Group(it) => {
                if it.object.is_assignable_to_role {
                    // Its members come back to a role-assignable group: a promotion, serialised
                    // with the others (see `facts::user_facts`).
                    tx.lock_role_changes(&caller.tenant.id).await?;
                }
                let action = match (restore, it.object.is_assignable_to_role) {
                    (true, true) => actions::ROLE_ASSIGNABLE_GROUPS_RESTORE,
                    (true, false) => actions::GROUPS_RESTORE,
                    (false, true) => actions::ROLE_ASSIGNABLE_GROUPS_DELETE,
                    (false, false) => actions::GROUPS_DELETE,
                };
                let facts =
                    GroupFacts { units: deleted_units(&mut *tx, &it.object.id).await?, ..group_for_read(&it.object) };
                require(caller, action, Target::Group(&facts))
            }
            DeletedItem::Application(it) => {
                // Those who may delete an application may restore it or remove it for good. Its
                // service principal went with it; should one have been made for its appId since
                // (and given a role), what that one holds decides, as for a live application: the
                // restored credentials would be that principal's. The roles are read under the
                // shared role-change lock, so none is granted between the decision and the commit.
                tx.share_role_changes(&caller.tenant.id).await?;
                let facts = application_facts(&mut *tx, &caller.tenant, &it.object.application.app_id).await?;
                require(caller, actions::APPLICATIONS_DELETE, Target::Application(&facts))
            }
        };
        if let Err(err) = decision {
            let (activity, target) = found.refusal_subject(restore);
            return Err(self.refused(Some(tx), caller, activity, vec![target], err).await);
        }
        Ok((tx, found))
    }

    /// Refuses a caller whom no deleted item could allow to be restored (`restore`) or removed
    /// for good: one for whom no restore (remove) action of any kind of item (users, groups,
    /// role-assignable groups, applications) is both covered by its token's permissions and
    /// granted by a role it holds at some scope (a guest, a member without a role). The refusal
    /// is decided before the item is looked up, so it is the same 403, in the same words, for an
    /// id that names a deleted item and for one that names nothing. A caller with such a role,
    /// tenant-wide or scoped to an administrative unit, is decided on the item as before.
    ///
    /// The refusal of an id that names a deleted item is audited with the item as its target, as
    /// a refusal decided on the item is; an id that names nothing has no target to record.
    async fn refuse_before_lookup(&self, caller: &Caller, key: &str, restore: bool) -> Result<(), AppError> {
        let candidates: &[&'static str] = if restore {
            &[
                actions::USERS_RESTORE,
                actions::GROUPS_RESTORE,
                actions::ROLE_ASSIGNABLE_GROUPS_RESTORE,
                actions::APPLICATIONS_DELETE,
            ]
        } else {
            &[
                actions::USERS_DELETE,
                actions::GROUPS_DELETE,
                actions::ROLE_ASSIGNABLE_GROUPS_DELETE,
                actions::APPLICATIONS_DELETE,
            ]
        };
        let covered: Vec<&str> =
            candidates.iter().copied().filter(|action| require_scope(caller, action, false).is_ok()).collect();
        if covered.iter().any(|action| authz::may_allow_any(&caller.actor, &[action])) {
            return Ok(());
        }
        let err = match require_scope(caller, candidates[0], false) {
            // The token covers none of them: the token's refusal, as `require` gives it.
            Err(err) if covered.is_empty() => err,
            _ => {
                let rule = if caller.actor.is_guest {
                    authz::rules::GUEST_USER_PERMISSIONS
                } else {
                    authz::rules::NO_ROLE_GRANTS_ACTION
                };
                let what = if restore { "restoring a deleted item" } else { "removing a deleted item for good" };
                let names = candidates.iter().map(|it| format!("'{it}'")).collect::<Vec<_>>().join(", ");
                tracing::info!(rule, caller = %caller.id(), restore, "authorization denied before the deleted item was looked up");
                AppError::Forbidden {
                    rule,
                    message: format!(
                        "{} None of the caller's roles grants {what} (together with the token's permissions): {names}. \
                         (rule: {rule})",
                        authz::INSUFFICIENT_PRIVILEGES
                    ),
                }
            }
        };
        let found = async {
            let mut tx = self.read().await?;
            self.find_deleted(&mut *tx, caller, key).await
        };
        let (activity, target) = match found.await {
            Ok(found) => found.refusal_subject(restore),
            Err(AppError::NotFound(_) | AppError::BadRequest(_)) => return Err(err),
            Err(lookup) => {
                tracing::error!(error = %lookup, "cannot look up a deleted item to record a refusal");
                return Err(err);
            }
        };
        Err(self.refused(None, caller, activity, vec![target], err).await)
    }

    /// `POST /directory/deletedItems/{id}/restore`. A user needs `microsoft.directory/users/restore`
    /// on it (Entra's "who can perform sensitive actions" table) and is refused with `400` when
    /// another user has taken its user principal name meanwhile; its earlier sessions and tokens
    /// stay ended. A group needs `microsoft.directory/groups/restore` (role-assignable groups:
    /// `groupsAssignableToRoles/restore`). An application needs `microsoft.directory/applications/delete`,
    /// decided as for a live one, and is refused with `400` when its `uniqueName` was taken
    /// meanwhile. `Restore user` / `Restore group` / `Restore application`.
    pub async fn restore_deleted_item(&self, caller: &Caller, key: &str) -> Result<Restored, AppError> {
        let now = self.now();
        let (mut tx, found) = self.deleted_item_for(caller, key, true).await?;
        let (restored, record) = match found {
            DeletedItem::User(found) => {
                let user = found.object;
                tx.restore_user(&caller.tenant.id, &user.id).await.map_err(|err| match err {
                    StoreError::Conflict { .. } => AppError::BadRequest(format!(
                        "Another object with the same value for property userPrincipalName ('{}') already exists. Rename or delete it, then restore.",
                        user.user_principal_name
                    )),
                    other => other.into(),
                })?;
                // Tokens issued before the deletion stay invalid.
                let mut restored = tx
                    .get_user(&caller.tenant.id, &user.id)
                    .await?
                    .ok_or_else(|| AppError::NotFound(key.to_owned()))?;
                restored.sign_in_sessions_valid_from = now;
                tx.update_user(&restored).await?;
                let record = caller.succeeded(now, Activity::RestoreUser, vec![TargetResource::user(&restored)]);
                (Restored::User(Box::new(restored)), record)
            }
            DeletedItem::Group(Deleted { object: group, .. }) => {
                tx.restore_group(&caller.tenant.id, &group.id).await?;
                let record = caller.succeeded(now, Activity::RestoreGroup, vec![TargetResource::group(&group)]);
                (Restored::Group(group), record)
            }
            DeletedItem::Application(found) => {
                let view = found.object;
                let application = &view.application;
                tx.restore_application(&caller.tenant.id, &application.id).await.map_err(|err| match err {
                    StoreError::Conflict { .. } => AppError::BadRequest(format!(
                        "Another application has taken this application's uniqueName ('{}'). Rename or delete it, then restore.",
                        application.unique_name.as_deref().unwrap_or_default()
                    )),
                    other => other.into(),
                })?;
                let record = caller.succeeded(now, Activity::RestoreApplication, vec![app_target(application)]);
                (Restored::Application(Box::new(view)), record)
            }
        };
        commit_audited(tx, [record]).await?;
        Ok(restored)
    }

    /// `DELETE /directory/deletedItems/{id}`: removes a deleted user (`microsoft.directory/users/delete`
    /// on it), group (`groups/delete`, or `groupsAssignableToRoles/delete`) or application
    /// (`applications/delete`) for good. `Hard Delete user` / `… group` / `… application`.
    pub async fn purge_deleted_item(&self, caller: &Caller, key: &str) -> Result<(), AppError> {
        let now = self.now();
        let (mut tx, found) = self.deleted_item_for(caller, key, false).await?;
        let record = match found {
            DeletedItem::User(found) => {
                let user = found.object;
                tx.purge_deleted_user(&caller.tenant.id, &user.id).await?;
                caller.succeeded(now, Activity::HardDeleteUser, vec![TargetResource::user(&user)])
            }
            DeletedItem::Group(Deleted { object: group, .. }) => {
                tx.purge_deleted_group(&caller.tenant.id, &group.id).await?;
                caller.succeeded(now, Activity::HardDeleteGroup, vec![TargetResource::group(&group)])
            }
            DeletedItem::Application(found) => {
                let application = &found.object.application;
                tx.purge_deleted_application(&caller.tenant.id, &application.id).await?;
                caller.succeeded(now, Activity::HardDeleteApplication, vec![app_target(application)])
            }
        };
        commit_audited(tx, [record]).await?;
        Ok(())
    }

    /// Removes for good the users, groups and applications deleted more than 30 days ago, in every tenant (the
    /// hourly maintenance; reads never show them anyway). Returns how many.
    pub async fn purge_expired_deleted_items(&self) -> Result<u64, AppError> {
        let tenants = self.read().await?.audit_chain_tenants().await?;
        let cutoff = self.now() - RETENTION;
        let mut removed = 0;
        for (tenant, _) in tenants {
            let Some(tenant) = keyward_core::ids::ObjectId::parse(&tenant) else { continue };
            let mut tx = self.write_long().await?;
            removed += tx.purge_deleted_users_before(&tenant, cutoff).await?;
            removed += tx.purge_deleted_groups_before(&tenant, cutoff).await?;
            removed += tx.purge_deleted_applications_before(&tenant, cutoff).await?;
            tx.commit().await?;
        }
        Ok(removed)
    }
}
