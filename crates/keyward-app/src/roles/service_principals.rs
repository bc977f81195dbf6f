//! Service principals.

use crate::commit_audited;
use crate::{App, AppError, Caller, new_id, require};
use keyward_core::audit::{Activity, TargetResource};
use keyward_core::authz::{Target, actions};
use keyward_core::directory::{self, PropertyChange, ServicePrincipal};
use keyward_core::ids::ObjectId;
use keyward_core::json;
use keyward_store::StoreError;

use super::{ItemPage, page};

impl App {
    /// `GET /servicePrincipals`.
    pub async fn list_service_principals(
        &self,
        caller: &Caller,
        top: usize,
        skiptoken: Option<&str>,
    ) -> Result<ItemPage<ServicePrincipal>, AppError> {
        require(caller, actions::SERVICE_PRINCIPALS_READ, Target::Tenant)?;
        let after = crate::directory::decode_id_skiptoken(skiptoken)?;
        let mut tx = self.read().await?;
        let items = tx.list_service_principals(&caller.tenant.id, after.as_deref(), top + 1).await?;
        Ok(page(items, top, |it| it.id.to_string()))
    }

    /// `GET /servicePrincipals/{id}`.
    pub async fn get_service_principal(&self, caller: &Caller, key: &str) -> Result<ServicePrincipal, AppError> {
        require(caller, actions::SERVICE_PRINCIPALS_READ, Target::Tenant)?;
        let id =
            ObjectId::parse(key).ok_or_else(|| AppError::BadRequest(format!("Invalid object identifier '{key}'.")))?;
        let mut tx = self.read().await?;
        tx.get_service_principal(&caller.tenant.id, &id).await?.ok_or_else(|| AppError::NotFound(key.to_owned()))
    }

    /// `POST /servicePrincipals`: an application's identity in this tenant (one per appId).
    pub async fn create_service_principal(
        &self,
        caller: &Caller,
        app_id: Option<String>,
        display_name: Option<String>,
        account_enabled: Option<bool>,
    ) -> Result<ServicePrincipal, AppError> {
        self.require_recorded(
            caller,
            actions::SERVICE_PRINCIPALS_CREATE,
            Target::Tenant,
            Activity::AddServicePrincipal,
            Vec::new,
        )
        .await?;
        let now = self.now();
        let principal =
            directory::new_service_principal(&caller.tenant, new_id(), app_id, display_name, account_enabled, now)
                .map_err(|err| AppError::BadRequest(err.to_string()))?;
        let mut tx = self.write().await?;
        tx.insert_service_principal(&principal).await.map_err(|err| match err {
            StoreError::Conflict { .. } => AppError::BadRequest(format!(
                "A service principal for appId '{}' already exists in this tenant.",
                principal.app_id
            )),
            other => other.into(),
        })?;
        let changes = vec![PropertyChange {
            name: "AppId".into(),
            old_value: None,
            new_value: Some(json::string_array([principal.app_id.as_str()])),
        }];
        let targets = vec![TargetResource::service_principal(&principal).with_changes(changes)];
        commit_audited(tx, [caller.succeeded(now, Activity::AddServicePrincipal, targets)]).await?;
        Ok(principal)
    }

    /// `DELETE /servicePrincipals/{id}`: also ends its role assignments and memberships.
    pub async fn delete_service_principal(&self, caller: &Caller, key: &str) -> Result<(), AppError> {
        self.require_recorded(
            caller,
            actions::SERVICE_PRINCIPALS_DELETE,
            Target::Tenant,
            Activity::RemoveServicePrincipal,
            Vec::new,
        )
        .await?;
        let id =
            ObjectId::parse(key).ok_or_else(|| AppError::BadRequest(format!("Invalid object identifier '{key}'.")))?;
        let now = self.now();
        let mut tx = self.write().await?;
        let principal = tx
            .get_service_principal(&caller.tenant.id, &id)
            .await?
            .ok_or_else(|| AppError::NotFound(key.to_owned()))?;
        // A principal that holds a role is deleted only by the roles that could assign it.
        let facts = crate::facts::service_principal_facts(&mut *tx, &caller.tenant, &principal.id).await?;
        if let Err(err) = require(caller, actions::SERVICE_PRINCIPALS_DELETE, Target::Application(&facts)) {
            let targets = vec![TargetResource::service_principal(&principal)];
            return Err(self.refused(Some(tx), caller, Activity::RemoveServicePrincipal, targets, err).await);
        }
        self.end_principal(&mut *tx, caller, TargetResource::service_principal(&principal), &principal.id).await?;
        tx.delete_service_principal(&caller.tenant.id, &principal.id).await?;
        let targets = vec![TargetResource::service_principal(&principal)];
        commit_audited(tx, [caller.succeeded(now, Activity::RemoveServicePrincipal, targets)]).await?;
        Ok(())
    }
}
