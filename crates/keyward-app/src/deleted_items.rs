//! The deleted items (`/directory/deletedItems`): a deleted user is kept 30 days, listed, read,
//! restored or removed for good. Deleting ends the user's group memberships, role assignments
//! and sessions (`App::delete_user`); a restore brings back the account, its profile, password,
//! authentication methods and sign-in state (per-user MFA), so the MFA that protected it protects
//! it again, but no role, membership or session: the user holds no role and signs in again.

use keyward_core::audit::{Activity, TargetResource};
use keyward_core::authz::{Target, actions};
use keyward_core::directory::User;
use keyward_store::{StoreError, Tx};
use time::{Duration, OffsetDateTime};

use crate::commit_audited;
use crate::directory::{decode_id_skiptoken, id_skiptoken, page_size, parse_object_id};
use crate::facts::{user_facts, user_for_read};
use crate::{App, AppError, Caller, require};

/// How long a deleted user can be restored, as in Entra.
pub(crate) const RETENTION: Duration = Duration::days(30);

/// A deleted user and when it was deleted.
#[derive(Debug, Clone)]
pub struct DeletedUser {
    pub user: User,
    pub deleted: OffsetDateTime,
}

/// A page of deleted users.
#[derive(Debug, Clone)]
pub struct DeletedPage {
    pub items: Vec<DeletedUser>,
    pub skiptoken: Option<String>,
}

impl App {
    /// `GET /directory/deletedItems/microsoft.graph.user`: users deleted in the last 30 days, by
    /// id and paged (`microsoft.directory/users/standard/read`).
    pub async fn list_deleted_users(
        &self,
        caller: &Caller,
        top: Option<&str>,
        skiptoken: Option<&str>,
    ) -> Result<DeletedPage, AppError> {
        let top = page_size(top)?;
        let after = decode_id_skiptoken(skiptoken)?;
        require(caller, actions::USERS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        let since = self.now() - RETENTION;
        let mut rows = tx.list_deleted_users(&caller.tenant.id, since, after.as_deref(), top + 1).await?;
        let has_more = rows.len() > top;
        rows.truncate(top);
        let skiptoken = if has_more { rows.last().map(|(it, _)| id_skiptoken(it.id.as_str())) } else { None };
        let items = rows.into_iter().map(|(user, deleted)| DeletedUser { user, deleted }).collect();
        Ok(DeletedPage { items, skiptoken })
    }

    /// `GET /directory/deletedItems/microsoft.graph.group`: none, as groups are deleted for good
    /// (`microsoft.directory/groups/standard/read`).
    pub fn list_deleted_groups(&self, caller: &Caller) -> Result<Vec<keyward_core::directory::Group>, AppError> {
        require(caller, actions::GROUPS_READ, Target::Tenant)?;
        Ok(Vec::new())
    }

    /// A deleted user about to be restored or removed for good, in a write transaction, once the
    /// caller may take `action` on it (Entra's sensitive-action table); a refusal is recorded as
    /// `activity`.
    async fn deleted_user_for(
        &self,
        caller: &Caller,
        key: &str,
        action: &'static str,
        activity: Activity,
        now: OffsetDateTime,
    ) -> Result<(Box<dyn Tx>, User), AppError> {
        let id = parse_object_id(key)?;
        let mut tx = self.write().await?;
        let found = tx.get_deleted_user(&caller.tenant.id, &id, now - RETENTION).await?;
        let (user, _) = found.ok_or_else(|| AppError::NotFound(key.to_owned()))?;
        let facts = user_facts(&mut *tx, &caller.tenant, &user).await?;
        if let Err(err) = require(caller, action, Target::User(&facts)) {
            let targets = vec![TargetResource::user(&user)];
            return Err(self.refused(Some(tx), caller, activity, targets, err).await);
        }
        Ok((tx, user))
    }

    /// `GET /directory/deletedItems/{id}`.
    pub async fn get_deleted_user(&self, caller: &Caller, key: &str) -> Result<DeletedUser, AppError> {
        let id = parse_object_id(key)?;
        let mut tx = self.read().await?;
        let found = tx.get_deleted_user(&caller.tenant.id, &id, self.now() - RETENTION).await?;
        let (user, deleted) = found.ok_or_else(|| AppError::NotFound(key.to_owned()))?;
        require(caller, actions::USERS_READ, Target::User(&user_for_read(&user)))?;
        Ok(DeletedUser { user, deleted })
    }

    /// `POST /directory/deletedItems/{id}/restore`: `microsoft.directory/users/restore` on the user
    /// (Entra's "who can perform sensitive actions" table); `400` when another user has taken its
    /// user principal name meanwhile. Earlier sessions and tokens stay ended. `Restore user`.
    pub async fn restore_deleted_user(&self, caller: &Caller, key: &str) -> Result<User, AppError> {
        let now = self.now();
        let (mut tx, user) =
            self.deleted_user_for(caller, key, actions::USERS_RESTORE, Activity::RestoreUser, now).await?;
        let id = user.id.clone();
        tx.restore_user(&caller.tenant.id, &id).await.map_err(|err| match err {
            StoreError::Conflict { .. } => AppError::BadRequest(format!(
                "Another object with the same value for property userPrincipalName ('{}') already exists. Rename or delete it, then restore.",
                user.user_principal_name
            )),
            other => other.into(),
        })?;
        // Tokens issued before the deletion stay invalid.
        let mut restored =
            tx.get_user(&caller.tenant.id, &id).await?.ok_or_else(|| AppError::NotFound(key.to_owned()))?;
        restored.sign_in_sessions_valid_from = now;
        tx.update_user(&restored).await?;
        commit_audited(tx, [caller.succeeded(now, Activity::RestoreUser, vec![TargetResource::user(&restored)])])
            .await?;
        Ok(restored)
    }

    /// `DELETE /directory/deletedItems/{id}`: removes a deleted user for good
    /// (`microsoft.directory/users/delete` on the user). `Hard Delete user`.
    pub async fn purge_deleted_user(&self, caller: &Caller, key: &str) -> Result<(), AppError> {
        let now = self.now();
        let (mut tx, user) =
            self.deleted_user_for(caller, key, actions::USERS_DELETE, Activity::HardDeleteUser, now).await?;
        tx.purge_deleted_user(&caller.tenant.id, &user.id).await?;
        commit_audited(tx, [caller.succeeded(now, Activity::HardDeleteUser, vec![TargetResource::user(&user)])])
            .await?;
        Ok(())
    }

    /// Removes for good the users deleted more than 30 days ago, in every tenant (the hourly
    /// maintenance; reads never show them anyway). Returns how many.
    pub async fn purge_expired_deleted_users(&self) -> Result<u64, AppError> {
        let tenants = self.read().await?.audit_chain_tenants().await?;
        let cutoff = self.now() - RETENTION;
        let mut removed = 0;
        for (tenant, _) in tenants {
            let Some(tenant) = keyward_core::ids::ObjectId::parse(&tenant) else { continue };
            let mut tx = self.write().await?;
            removed += tx.purge_deleted_users_before(&tenant, cutoff).await?;
            tx.commit().await?;
        }
        Ok(removed)
    }
}
