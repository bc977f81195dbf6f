//! App registrations (Graph's `/applications`): create (with the application's service
//! principal), read, update redirect URIs, delete, and client secrets (`addPassword`, returned
//! once, `removePassword`). Every change is authorised and audited like any other.

use keyward_core::audit::{Activity, TargetResource};
use keyward_core::authz::{Target, actions};
use keyward_core::directory::{PropertyChange, ServicePrincipal};
use keyward_core::ids::ObjectId;
use keyward_core::odata::Expr;
use keyward_core::odata::eval::{Value as Field, matches};
use keyward_core::secret::Secret;
use keyward_core::{json, oauth};
use keyward_store::{AppCredential, Application};
use time::{Duration, OffsetDateTime};

use crate::commit_audited;
use crate::facts::application_facts;
use crate::roles::service_principals::{FILTER_BATCH, FilteredScan};
use crate::setup::random_string;
use crate::{App, AppError, Caller, new_id, require, sha256};

/// What a client may set on an application.
#[derive(Debug, Clone, Default)]
pub struct ApplicationDraft {
    pub display_name: Option<String>,
    pub is_fallback_public_client: Option<bool>,
    pub public_redirect_uris: Option<Vec<String>>,
    pub web_redirect_uris: Option<Vec<String>>,
    /// `keyCredentials`: replaces every certificate of the application.
    pub key_credentials: Option<Vec<KeyCredentialDraft>>,
    /// `id` and `appId` as the body stated them (scripts write back what they read): read-only,
    /// so a value other than the application's own is refused, never ignored.
    pub stated_ids: Vec<(&'static str, String)>,
}

/// A certificate for `private_key_jwt` (Graph's `keyCredential` of type `AsymmetricX509Cert`).
#[derive(Debug, Clone)]
pub struct KeyCredentialDraft {
    pub der: Vec<u8>,
    pub display_name: Option<String>,
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
}

/// An application with its credentials (secrets are never included, only their hints).
#[derive(Debug, Clone)]
pub struct ApplicationView {
    pub application: Application,
    pub credentials: Vec<AppCredential>,
}

/// A new client secret, shown once.
#[derive(Debug, Clone)]
pub struct NewPassword {
    pub credential: AppCredential,
    pub secret: Secret,
}

const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~._-";
/// Entra's default and longest secret lifetimes.
const DEFAULT_SECRET_LIFETIME: Duration = Duration::days(730);
const MAX_SECRET_LIFETIME: Duration = Duration::days(3650);

pub(crate) fn app_target(app: &Application) -> TargetResource {
    TargetResource {
        id: app.id.clone(),
        display_name: Some(app.display_name.clone()),
        kind: "Application",
        user_principal_name: None,
        modified_properties: Vec::new(),
    }
}

fn validate(draft: &ApplicationDraft) -> Result<(), AppError> {
    if let Some(name) = &draft.display_name
        && (name.trim().is_empty() || name.len() > 256 || name.chars().any(char::is_control))
    {
        return Err(AppError::BadRequest(
            "displayName must have 1 to 256 characters and no control characters.".into(),
        ));
    }
    for (uris, is_public) in [(&draft.public_redirect_uris, true), (&draft.web_redirect_uris, false)] {
        if let Some(uris) = uris {
            if uris.len() > 256 {
                return Err(AppError::BadRequest("An application may have at most 256 redirect URIs.".into()));
            }
            for uri in uris {
                oauth::validate_redirect_uri(uri, is_public).map_err(AppError::BadRequest)?;
            }
        }
    }
    Ok(())
}

/// The credentials for `keyCredentials`: each must be a certificate; valid for a year unless
/// the request says otherwise.
fn certificate_credentials(
    application: &ObjectId,
    drafts: &[KeyCredentialDraft],
    now: OffsetDateTime,
) -> Result<Vec<AppCredential>, AppError> {
    drafts
        .iter()
        .map(|draft| {
            if !crate::client_assertion::is_certificate(&draft.der) {
                return Err(AppError::BadRequest(
                    "keyCredentials[].key must be a base64-encoded X.509 certificate (DER).".into(),
                ));
            }
            let start = draft.start.unwrap_or(now);
            let end = match draft.end {
                Some(end) => end,
                None => start.checked_add(Duration::days(365)).ok_or_else(|| {
                    AppError::BadRequest("keyCredentials[].startDateTime is too far in the future.".into())
                })?,
            };
            if end <= start {
                return Err(AppError::BadRequest("keyCredentials[].endDateTime must be after startDateTime.".into()));
            }
            Ok(AppCredential {
                key_id: new_id(),
                application_id: application.clone(),
                display_name: draft.display_name.clone(),
                secret: None,
                certificate: Some((draft.der.clone(), crate::client_assertion::thumbprint(&draft.der))),
                start,
                end,
            })
        })
        .collect()
}

/// The longest `uniqueName` Keyward takes (Graph documents none).
const UNIQUE_NAME_MAX: usize = 256;

/// A `uniqueName` is 1 to 256 characters, without control, invisible or direction-changing
/// characters or surrounding spaces.
fn check_unique_name(name: &str) -> Result<(), AppError> {
    // Invisible and direction-changing characters would let two names look alike.
    let is_hidden = |it: char| {
        it.is_control()
            || matches!(
                it,
                '\u{00AD}'
                    | '\u{034F}'
                    | '\u{061C}'
                    | '\u{180E}'
                    | '\u{200B}'..='\u{200F}'
                    | '\u{202A}'..='\u{202E}'
                    | '\u{2060}'..='\u{206F}'
                    | '\u{FE00}'..='\u{FE0F}'
                    | '\u{FEFF}'
                    | '\u{E0000}'..='\u{E007F}'
            )
    };
    let is_valid = !name.is_empty()
        && name.chars().count() <= UNIQUE_NAME_MAX
        && name.trim() == name
        && !name.chars().any(is_hidden);
    if is_valid {
        Ok(())
    } else {
        Err(AppError::BadRequest(format!(
            "Invalid value specified for property 'uniqueName' of resource 'Application': 1 to {UNIQUE_NAME_MAX} characters, no control characters or surrounding spaces."
        )))
    }
}

fn parse_app_id(key: &str) -> Result<ObjectId, AppError> {
    crate::directory::parse_object_id(key)
}

impl App {
    /// `GET /applications`: a page ordered by id.
    pub async fn list_applications(
        &self,
        caller: &Caller,
        filter: Option<&Expr>,
        after: Option<&str>,
        top: usize,
    ) -> Result<(Vec<ApplicationView>, Option<String>), AppError> {
        require(caller, actions::APPLICATIONS_READ, Target::Tenant)?;
        // The token is the last id of the previous page.
        if after.is_some_and(|it| !keyward_core::ids::is_guid(it)) {
            return Err(crate::directory::invalid_skiptoken());
        }
        let mut tx = self.read().await?;
        let (apps, next) = match filter {
            None => {
                let mut apps = tx.list_applications(&caller.tenant.id, after, top + 1).await?;
                let next = if apps.len() > top {
                    apps.truncate(top);
                    apps.last().map(|it| it.id.to_string())
                } else {
                    None
                };
                (apps, next)
            }
            // A tenant has few applications: the filter (`appId`, `displayName`, checked against
            // `keyward_core::query::APPLICATION`) is evaluated in memory, as for service
            // principals.
            Some(filter) => {
                let mut scan = FilteredScan::new(top, after.map(str::to_owned));
                let next = loop {
                    let rows = tx.list_applications(&caller.tenant.id, scan.after.as_deref(), FILTER_BATCH).await?;
                    let row_id = |it: &Application| it.id.to_string();
                    if let Some(next) = scan.take(rows, row_id, |it| matches(filter, &application_fields(it))) {
                        break next;
                    }
                };
                (scan.items, next)
            }
        };
        let mut res = Vec::with_capacity(apps.len());
        for application in apps {
            let credentials = tx.list_app_credentials(&application.id).await?;
            res.push(ApplicationView { application, credentials });
        }
        Ok((res, next))
    }

    /// `GET /applications/{id}`.
    pub async fn get_application(&self, caller: &Caller, key: &str) -> Result<ApplicationView, AppError> {
        require(caller, actions::APPLICATIONS_READ, Target::Tenant)?;
        let id = parse_app_id(key)?;
        let mut tx = self.read().await?;
        let application =
            tx.get_application(&caller.tenant.id, &id).await?.ok_or_else(|| AppError::NotFound(key.to_owned()))?;
        let credentials = tx.list_app_credentials(&application.id).await?;
        Ok(ApplicationView { application, credentials })
    }

    /// The object id of the application whose `appId` is `app_id` (Graph's alternate key
    /// `/applications(appId='…')`), for callers who may read applications.
    pub async fn application_by_app_id(&self, caller: &Caller, app_id: &str) -> Result<String, AppError> {
        require(caller, actions::APPLICATIONS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        let found = tx.find_application(&caller.tenant.id, &app_id.to_ascii_lowercase()).await?;
        found.map(|it| it.id.to_string()).ok_or_else(|| AppError::NotFound(format!("appId='{app_id}'")))
    }

    /// The object id of the service principal of the application `app_id`
    /// (`/servicePrincipals(appId='…')`).
    pub async fn service_principal_by_app_id(&self, caller: &Caller, app_id: &str) -> Result<String, AppError> {
        require(caller, actions::SERVICE_PRINCIPALS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        let found = tx.find_service_principal(&caller.tenant.id, &app_id.to_ascii_lowercase()).await?;
        found.map(|it| it.id.to_string()).ok_or_else(|| AppError::NotFound(format!("appId='{app_id}'")))
    }

    /// The object id of the application whose `uniqueName` is `name`, without case
    /// (`/applications(uniqueName='…')`), for callers who may read applications.
    pub async fn application_by_unique_name(&self, caller: &Caller, name: &str) -> Result<String, AppError> {
        require(caller, actions::APPLICATIONS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        let found = tx.find_application_by_unique_name(&caller.tenant.id, name).await?;
        found.map(|it| it.id.to_string()).ok_or_else(|| AppError::NotFound(format!("uniqueName='{name}'")))
    }

    /// `PATCH /applications(uniqueName='…')`: updates the application with that `uniqueName`, or,
    /// when there is none and `create_if_missing` (`Prefer: create-if-missing`), creates it under
    /// that name as `POST /applications` does and returns it. Two upserts of one new name create
    /// one application: the loser of the race updates the winner's.
    pub async fn upsert_application(
        &self,
        caller: &Caller,
        name: &str,
        draft: ApplicationDraft,
        create_if_missing: bool,
    ) -> Result<Option<ApplicationView>, AppError> {
        check_unique_name(name)?;
        for _ in 0..2 {
            match self.application_by_unique_name(caller, name).await {
                Ok(id) => return self.update_application(caller, &id, draft).await.map(|()| None),
                Err(AppError::NotFound(_)) if create_if_missing => {
                    match self.register_application(caller, draft.clone(), Some(name.to_owned())).await {
                        Err(AppError::Conflict(_)) => continue,
                        created => return created.map(Some),
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Err(AppError::Conflict(format!("The application uniqueName='{name}' is being changed concurrently; retry.")))
    }

    /// `POST /applications`: registers an application and creates its service principal (so it
    /// can hold directory roles and use the client-credentials grant). Audited as `Add
    /// application` and `Add service principal`.
    pub async fn create_application(
        &self,
        caller: &Caller,
        draft: ApplicationDraft,
    ) -> Result<ApplicationView, AppError> {
        self.register_application(caller, draft, None).await
    }

    /// Registers an application, under `unique_name` when an upsert creates it (`Conflict` when
    /// another has that name).
    async fn register_application(
        &self,
        caller: &Caller,
        draft: ApplicationDraft,
        unique_name: Option<String>,
    ) -> Result<ApplicationView, AppError> {
        let display_name = draft
            .display_name
            .clone()
            .ok_or_else(|| AppError::BadRequest("Property 'displayName' is required.".into()))?;
        validate(&draft)?;
        if let Some((name, _)) = draft.stated_ids.first() {
            return Err(AppError::BadRequest(format!(
                "Property '{name}' is read-only: Keyward assigns it when the application is created."
            )));
        }
        let now = self.now();
        let application = Application {
            id: new_id(),
            tenant_id: caller.tenant.id.clone(),
            app_id: uuid::Uuid::new_v4().to_string(),
            display_name: display_name.trim().to_owned(),
            is_fallback_public_client: draft.is_fallback_public_client.unwrap_or(false),
            public_redirect_uris: draft.public_redirect_uris.unwrap_or_default(),
            web_redirect_uris: draft.web_redirect_uris.unwrap_or_default(),
            created: now,
            unique_name,
        };
        // Certificates given at creation are the new application's first credentials.
        let certificates = match &draft.key_credentials {
            Some(drafts) => certificate_credentials(&application.id, drafts, now)?,
            None => Vec::new(),
        };
        let mut tx = self.write().await?;
        let refusal = require(caller, actions::APPLICATIONS_CREATE, Target::Tenant)
            .and_then(|()| require(caller, actions::SERVICE_PRINCIPALS_CREATE, Target::Tenant));
        if let Err(err) = refusal {
            return Err(self
                .refused(Some(tx), caller, Activity::AddApplication, vec![app_target(&application)], err)
                .await);
        }
        tx.insert_application(&application).await.map_err(|err| match err {
            keyward_store::StoreError::Conflict { .. } => AppError::Conflict(format!(
                "Another application has the uniqueName '{}'.",
                application.unique_name.as_deref().unwrap_or_default()
            )),
            other => other.into(),
        })?;
        let principal = ServicePrincipal {
            id: new_id(),
            tenant_id: caller.tenant.id.clone(),
            app_id: application.app_id.clone(),
            display_name: application.display_name.clone(),
            account_enabled: true,
            created: now,
        };
        tx.insert_service_principal(&principal).await?;
        let mut changes = vec![PropertyChange {
            name: "AppId".into(),
            old_value: None,
            new_value: Some(json::string_array([application.app_id.as_str()])),
        }];
        for credential in &certificates {
            tx.insert_app_credential(credential).await?;
        }
        if !certificates.is_empty() {
            let thumbprints = certificates.iter().filter_map(|it| it.certificate.as_ref().map(|(_, it)| it.as_str()));
            changes.push(PropertyChange {
                name: "KeyDescription".into(),
                old_value: None,
                new_value: Some(json::string_array(thumbprints)),
            });
        }
        if let Some(name) = &application.unique_name {
            changes.push(PropertyChange {
                name: "UniqueName".into(),
                old_value: None,
                new_value: Some(json::string_array([name.as_str()])),
            });
        }
        commit_audited(
            tx,
            [
                caller.succeeded(
                    now,
                    Activity::AddApplication,
                    vec![app_target(&application).with_changes(changes.clone())],
                ),
                caller.succeeded(
                    now,
                    Activity::AddServicePrincipal,
                    vec![TargetResource::service_principal(&principal).with_changes(changes)],
                ),
            ],
        )
        .await?;
        Ok(ApplicationView { application, credentials: certificates })
    }

    /// `PATCH /applications/{id}`.
    pub async fn update_application(
        &self,
        caller: &Caller,
        key: &str,
        draft: ApplicationDraft,
    ) -> Result<(), AppError> {
        validate(&draft)?;
        let id = parse_app_id(key)?;
        let now = self.now();
        let mut tx = self.write().await?;
        // Read with its row locked, as the change writes the application back whole (a
        // concurrent change is not undone); after the role-change lock the decision takes
        // (`application_facts`), which comes first.
        tx.share_role_changes(&caller.tenant.id).await?;
        let mut application = tx
            .get_application_for_update(&caller.tenant.id, &id)
            .await?
            .ok_or_else(|| AppError::NotFound(key.to_owned()))?;
        let facts = application_facts(&mut *tx, &caller.tenant, &application.app_id).await?;
        if let Err(err) = require(caller, actions::APPLICATIONS_UPDATE, Target::Application(&facts)) {
            return Err(self
                .refused(Some(tx), caller, Activity::UpdateApplication, vec![app_target(&application)], err)
                .await);
        }
        for (name, value) in &draft.stated_ids {
            let own = if *name == "id" { application.id.as_str() } else { application.app_id.as_str() };
            if !value.eq_ignore_ascii_case(own) {
                return Err(AppError::BadRequest(format!("Property '{name}' is read-only and cannot be changed.")));
            }
        }
        let mut changes = Vec::new();
        let mut change = |name: &str, old: String, new: String| {
            if old != new {
                changes.push(PropertyChange { name: name.into(), old_value: Some(old), new_value: Some(new) });
            }
        };
        if let Some(name) = draft.display_name {
            change(
                "DisplayName",
                json::string_array([application.display_name.as_str()]),
                json::string_array([name.trim()]),
            );
            application.display_name = name.trim().to_owned();
        }
        if let Some(flag) = draft.is_fallback_public_client {
            change(
                "IsFallbackPublicClient",
                format!("[{}]", application.is_fallback_public_client),
                format!("[{flag}]"),
            );
            application.is_fallback_public_client = flag;
        }
        if let Some(uris) = draft.public_redirect_uris {
            let old = json::string_array(application.public_redirect_uris.iter().map(String::as_str));
            change("PublicClient", old, json::string_array(uris.iter().map(String::as_str)));
            application.public_redirect_uris = uris;
        }
        if let Some(uris) = draft.web_redirect_uris {
            let old = json::string_array(application.web_redirect_uris.iter().map(String::as_str));
            change("AppAddress", old, json::string_array(uris.iter().map(String::as_str)));
            application.web_redirect_uris = uris;
        }
        if let Some(drafts) = &draft.key_credentials {
            if let Err(err) = require(caller, actions::APPLICATIONS_CREDENTIALS_UPDATE, Target::Application(&facts)) {
                let target = vec![app_target(&application)];
                return Err(self.refused(Some(tx), caller, Activity::UpdateApplicationCredentials, target, err).await);
            }
            let fresh = certificate_credentials(&application.id, drafts, now)?;
            let old: Vec<AppCredential> = tx
                .list_app_credentials(&application.id)
                .await?
                .into_iter()
                .filter(|it| it.certificate.is_some())
                .collect();
            for credential in &old {
                tx.delete_app_credential(&application.id, &credential.key_id).await?;
            }
            for credential in &fresh {
                tx.insert_app_credential(credential).await?;
            }
            let describe = |list: &[AppCredential]| {
                json::string_array(
                    list.iter().filter_map(|it| it.certificate.as_ref().map(|(_, thumb)| thumb.as_str())),
                )
            };
            let change = PropertyChange {
                name: "KeyDescription".into(),
                old_value: Some(describe(&old)),
                new_value: Some(describe(&fresh)),
            };
            tx.defer_audit(caller.succeeded(
                now,
                Activity::UpdateApplicationCredentials,
                vec![app_target(&application).with_changes(vec![change])],
            ));
        }
        if changes.is_empty() {
            tx.commit().await?;
            return Ok(());
        }
        tx.update_application(&application).await?;
        commit_audited(
            tx,
            [caller.succeeded(now, Activity::UpdateApplication, vec![app_target(&application).with_changes(changes)])],
        )
        .await?;
        Ok(())
    }

    /// `DELETE /applications/{id}`: the registration and its credentials move to the deleted
    /// items for 30 days; its service principal is deleted for good with its role assignments and
    /// consent grants, and the refresh tokens issued to it are revoked.
    pub async fn delete_application(&self, caller: &Caller, key: &str) -> Result<(), AppError> {
        let id = parse_app_id(key)?;
        let now = self.now();
        // Its service principal's consent grants go with it, one per user who consented: a long
        // write.
        let mut tx = self.write_long().await?;
        // Its service principal's role assignments end with it: a demotion (see `facts::user_facts`).
        tx.lock_role_changes(&caller.tenant.id).await?;
        let application =
            tx.get_application(&caller.tenant.id, &id).await?.ok_or_else(|| AppError::NotFound(key.to_owned()))?;
        let facts = application_facts(&mut *tx, &caller.tenant, &application.app_id).await?;
        if let Err(err) = require(caller, actions::APPLICATIONS_DELETE, Target::Application(&facts)) {
            return Err(self
                .refused(Some(tx), caller, Activity::DeleteApplication, vec![app_target(&application)], err)
                .await);
        }
        let principal = tx.find_service_principal(&caller.tenant.id, &application.app_id).await?;
        if let Some(principal) = principal {
            // Its role assignments end with it, recorded as deleting the principal records them.
            self.end_principal(&mut *tx, caller, TargetResource::service_principal(&principal), &principal.id).await?;
            tx.delete_service_principal(&caller.tenant.id, &principal.id).await?;
            tx.defer_audit(caller.succeeded(
                now,
                Activity::RemoveServicePrincipal,
                vec![TargetResource::service_principal(&principal)],
            ));
        }
        // Kept 30 days in the deleted items with its credentials, as in Entra; the refresh tokens
        // issued to it end now, so a restore revives no session.
        tx.soft_delete_application(&caller.tenant.id, &application.id, now).await?;
        tx.revoke_client_tokens(&caller.tenant.id, &application.app_id, now).await?;
        commit_audited(tx, [caller.succeeded(now, Activity::DeleteApplication, vec![app_target(&application)])])
            .await?;
        Ok(())
    }

    /// `POST /applications/{id}/addPassword`: a new client secret, returned only here.
    pub async fn add_application_password(
        &self,
        caller: &Caller,
        key: &str,
        display_name: Option<String>,
        end: Option<OffsetDateTime>,
    ) -> Result<NewPassword, AppError> {
        let id = parse_app_id(key)?;
        let now = self.now();
        let end = end.unwrap_or(now + DEFAULT_SECRET_LIFETIME);
        if end <= now || end > now + MAX_SECRET_LIFETIME {
            return Err(AppError::BadRequest("endDateTime must be in the future and at most ten years away.".into()));
        }
        if display_name.as_ref().is_some_and(|it| it.len() > 256 || it.chars().any(char::is_control)) {
            return Err(AppError::BadRequest(
                "displayName must have at most 256 characters and no control characters.".into(),
            ));
        }
        let secret = Secret::new(random_string(SECRET_ALPHABET, 40)?);
        let credential = AppCredential {
            key_id: new_id(),
            application_id: id.clone(),
            display_name,
            secret: Some((sha256(secret.expose().as_bytes()), secret.expose()[..3].to_owned())),
            certificate: None,
            start: now,
            end,
        };
        let mut tx = self.write().await?;
        let application =
            tx.get_application(&caller.tenant.id, &id).await?.ok_or_else(|| AppError::NotFound(key.to_owned()))?;
        let facts = application_facts(&mut *tx, &caller.tenant, &application.app_id).await?;
        if let Err(err) = require(caller, actions::APPLICATIONS_CREDENTIALS_UPDATE, Target::Application(&facts)) {
            let target = vec![app_target(&application)];
            return Err(self.refused(Some(tx), caller, Activity::UpdateApplicationCredentials, target, err).await);
        }
        tx.insert_app_credential(&credential).await?;
        let change = PropertyChange {
            name: "KeyDescription".into(),
            old_value: Some("[]".into()),
            new_value: Some(json::string_array([format!(
                "[KeyIdentifier={}, KeyType=Password, KeyUsage=Verify, DisplayName={}]",
                credential.key_id,
                credential.display_name.as_deref().unwrap_or("")
            )
            .as_str()])),
        };
        commit_audited(
            tx,
            [caller.succeeded(
                now,
                Activity::UpdateApplicationCredentials,
                vec![app_target(&application).with_changes(vec![change])],
            )],
        )
        .await?;
        Ok(NewPassword { credential, secret })
    }

    /// `POST /applications/{id}/removePassword`.
    pub async fn remove_application_password(&self, caller: &Caller, key: &str, key_id: &str) -> Result<(), AppError> {
        let id = parse_app_id(key)?;
        let key_id =
            ObjectId::parse(key_id).ok_or_else(|| AppError::BadRequest(format!("Invalid keyId '{key_id}'.")))?;
        let now = self.now();
        let mut tx = self.write().await?;
        let application =
            tx.get_application(&caller.tenant.id, &id).await?.ok_or_else(|| AppError::NotFound(key.to_owned()))?;
        let facts = application_facts(&mut *tx, &caller.tenant, &application.app_id).await?;
        if let Err(err) = require(caller, actions::APPLICATIONS_CREDENTIALS_UPDATE, Target::Application(&facts)) {
            let target = vec![app_target(&application)];
            return Err(self.refused(Some(tx), caller, Activity::UpdateApplicationCredentials, target, err).await);
        }
        tx.delete_app_credential(&application.id, &key_id).await.map_err(|err| match err {
            keyward_store::StoreError::NotFound => AppError::NotFound(key_id.to_string()),
            other => other.into(),
        })?;
        let change = PropertyChange {
            name: "KeyDescription".into(),
            old_value: Some(json::string_array([format!("[KeyIdentifier={key_id}, KeyType=Password]").as_str()])),
            new_value: Some("[]".into()),
        };
        commit_audited(
            tx,
            [caller.succeeded(
                now,
                Activity::UpdateApplicationCredentials,
                vec![app_target(&application).with_changes(vec![change])],
            )],
        )
        .await?;
        Ok(())
    }
}

/// An application's properties as `$filter` sees them.
fn application_fields<'a>(it: &'a Application) -> impl Fn(&str) -> Option<Field<'a>> + 'a {
    move |name| match name {
        "id" => Some(Field::Str(it.id.as_str())),
        "appId" => Some(Field::Str(&it.app_id)),
        "displayName" => Some(Field::Str(&it.display_name)),
        "uniqueName" => Some(it.unique_name.as_deref().map_or(Field::Null, Field::Str)),
        _ => None,
    }
}
