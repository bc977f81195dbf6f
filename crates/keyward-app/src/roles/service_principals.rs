//! Service principals.

use crate::commit_audited;
use crate::{App, AppError, Caller, new_id, require};
use keyward_core::audit::{Activity, TargetResource};
use keyward_core::authz::{Target, actions};
use keyward_core::directory::{self, PropertyChange, ServicePrincipal, ServicePrincipalDraft};
use keyward_core::ids::ObjectId;
use keyward_core::json;
use keyward_core::odata::Expr;
use keyward_core::odata::eval::{Value as Field, matches};
use keyward_store::StoreError;

use super::{ItemPage, page};

/// Rows read from the store at a time when a list is filtered in memory.
pub(crate) const FILTER_BATCH: usize = 500;
/// Rows one filtered page reads at most before it answers with what matched and a next link.
const FILTER_SCAN: usize = 10_000;

/// A page of a list filtered in memory, gathered from the store's pages by id: `top` matches, or
/// fewer with a next page when [`FILTER_SCAN`] rows were read first.
pub(crate) struct FilteredScan<T> {
    pub(crate) items: Vec<T>,
    /// The id of the last row read: the next batch starts after it.
    pub(crate) after: Option<String>,
    top: usize,
    scanned: usize,
}

impl<T> FilteredScan<T> {
    pub(crate) fn new(top: usize, after: Option<String>) -> FilteredScan<T> {
        FilteredScan { items: Vec::new(), after, top, scanned: 0 }
    }

    /// Takes one batch of [`FILTER_BATCH`] rows read after `after`. `Some(next)` when the page is
    /// complete, `next` being where the following page starts (`None`: there is none); `None`
    /// when another batch is needed.
    pub(crate) fn take(
        &mut self,
        rows: Vec<T>,
        id: impl Fn(&T) -> String,
        is_match: impl Fn(&T) -> bool,
    ) -> Option<Option<String>> {
        let is_last = rows.len() < FILTER_BATCH;
        for row in rows {
            self.scanned += 1;
            self.after = Some(id(&row));
            if is_match(&row) {
                self.items.push(row);
                if self.items.len() == self.top {
                    // Whether more match is found on the next page.
                    return Some(self.after.clone());
                }
            }
        }
        if is_last {
            return Some(None);
        }
        (self.scanned >= FILTER_SCAN).then(|| self.after.clone())
    }
}

/// A service principal's properties as `$filter` sees them (`servicePrincipalNames` holds its
/// application id, as Entra's does, and no identifier URIs: Keyward applications have none).
fn service_principal_fields<'a>(it: &'a ServicePrincipal) -> impl Fn(&str) -> Option<Field<'a>> + 'a {
    move |name| match name {
        "id" => Some(Field::Str(it.id.as_str())),
        "appId" => Some(Field::Str(&it.app_id)),
        "displayName" => Some(Field::Str(&it.display_name)),
        "accountEnabled" => Some(Field::Bool(it.account_enabled)),
        "servicePrincipalNames" => Some(Field::Strs(vec![it.app_id.as_str()])),
        "servicePrincipalType" => Some(Field::Str("Application")),
        _ => None,
    }
}

impl App {
    /// `GET /servicePrincipals`, with a `$filter` checked against `keyward_core::query::SERVICE_PRINCIPAL`
    /// (`appId`, `displayName`, `servicePrincipalNames/any(…)`, …). A tenant has few service
    /// principals, so the filter is evaluated in memory over the store's pages by id: a page holds
    /// `top` matches, or fewer with a next link when [`FILTER_SCAN`] rows were read first.
    pub async fn list_service_principals(
        &self,
        caller: &Caller,
        filter: Option<&Expr>,
        top: usize,
        skiptoken: Option<&str>,
    ) -> Result<ItemPage<ServicePrincipal>, AppError> {
        require(caller, actions::SERVICE_PRINCIPALS_READ, Target::Tenant)?;
        let after = crate::directory::decode_id_skiptoken(skiptoken)?;
        let mut tx = self.read().await?;
        let Some(filter) = filter else {
            let items = tx.list_service_principals(&caller.tenant.id, after.as_deref(), top + 1).await?;
            return Ok(page(items, top, |it| it.id.to_string()));
        };
        let mut scan = FilteredScan::new(top, after);
        let next = loop {
            let rows = tx.list_service_principals(&caller.tenant.id, scan.after.as_deref(), FILTER_BATCH).await?;
            let row_id = |it: &ServicePrincipal| it.id.to_string();
            if let Some(next) = scan.take(rows, row_id, |it| matches(filter, &service_principal_fields(it))) {
                break next;
            }
        };
        Ok(ItemPage { items: scan.items, skiptoken: next.map(|it| crate::directory::id_skiptoken(&it)) })
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

    /// `PATCH /servicePrincipals/{id}`: its display name, and whether the application may sign in
    /// in this tenant (`accountEnabled`). A disabled principal gets no token from the next grant
    /// on, on every node, and the app-only tokens it holds stop working at their next request.
    /// A principal that holds a role is changed only by the roles that could assign it.
    pub async fn update_service_principal(
        &self,
        caller: &Caller,
        key: &str,
        draft: ServicePrincipalDraft,
    ) -> Result<(), AppError> {
        let id =
            ObjectId::parse(key).ok_or_else(|| AppError::BadRequest(format!("Invalid object identifier '{key}'.")))?;
        let display_name = draft.display_name().map_err(|err| AppError::BadRequest(err.to_string()))?;
        // What the request states is decided, changed or not, as Entra does.
        let mut needed = Vec::new();
        if display_name.is_some() {
            needed.push(actions::SERVICE_PRINCIPALS_UPDATE);
        }
        match draft.account_enabled {
            Some(true) => needed.push(actions::SERVICE_PRINCIPALS_ENABLE),
            Some(false) => needed.push(actions::SERVICE_PRINCIPALS_DISABLE),
            None => (),
        }
        if needed.is_empty() {
            return Err(AppError::BadRequest(
                "State 'accountEnabled' or 'displayName': they are what Keyward updates on a service principal.".into(),
            ));
        }
        // A caller who may do none of it is refused before the principal is looked up.
        for action in &needed {
            self.require_recorded(caller, action, Target::Tenant, Activity::UpdateServicePrincipal, Vec::new).await?;
        }
        let now = self.now();
        let mut tx = self.write().await?;
        // The role-change lock first, as every decision about a principal takes it (`facts`);
        // exclusive when it is enabled or disabled, as for a user: enabling a principal that
        // holds a role gives that role back its power.
        if draft.account_enabled.is_some() {
            tx.lock_role_changes(&caller.tenant.id).await?;
        } else {
            tx.share_role_changes(&caller.tenant.id).await?;
        }
        let mut principal = tx
            .get_service_principal_for_update(&caller.tenant.id, &id)
            .await?
            .ok_or_else(|| AppError::NotFound(key.to_owned()))?;
        let facts = crate::facts::service_principal_facts(&mut *tx, &caller.tenant, &principal.id).await?;
        for action in needed {
            if let Err(err) = require(caller, action, Target::Application(&facts)) {
                let targets = vec![TargetResource::service_principal(&principal)];
                return Err(self.refused(Some(tx), caller, Activity::UpdateServicePrincipal, targets, err).await);
            }
        }
        for (name, value) in &draft.stated_ids {
            let own = if *name == "id" { principal.id.as_str() } else { principal.app_id.as_str() };
            if !value.eq_ignore_ascii_case(own) {
                return Err(AppError::BadRequest(format!("Property '{name}' is read-only and cannot be set.")));
            }
        }
        let mut changes = Vec::new();
        if let Some(name) = display_name.filter(|it| *it != principal.display_name) {
            changes.push(PropertyChange {
                name: "DisplayName".into(),
                old_value: Some(json::string_array([principal.display_name.as_str()])),
                new_value: Some(json::string_array([name.as_str()])),
            });
            principal.display_name = name;
        }
        if let Some(flag) = draft.account_enabled.filter(|it| *it != principal.account_enabled) {
            changes.push(PropertyChange {
                name: "AccountEnabled".into(),
                old_value: Some(format!("[{}]", principal.account_enabled)),
                new_value: Some(format!("[{flag}]")),
            });
            principal.account_enabled = flag;
        }
        if changes.is_empty() {
            tx.commit().await?;
            return Ok(());
        }
        tx.update_service_principal(&principal).await?;
        let targets = vec![TargetResource::service_principal(&principal).with_changes(changes)];
        commit_audited(tx, [caller.succeeded(now, Activity::UpdateServicePrincipal, targets)]).await?;
        Ok(())
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
        // Its consent grants go with it, one per user who consented: a long write.
        let mut tx = self.write_long().await?;
        // Its role assignments end with it: a demotion (see `facts::user_facts`).
        tx.lock_role_changes(&caller.tenant.id).await?;
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
