//! First start (bootstrap), demo data, and signing-key rotation.

use keyward_core::audit::{
    Activity, AuditContext, Initiator, TargetResource, group_creation_properties, group_reference_properties,
    user_creation_properties,
};
use keyward_core::authz::roles;
use keyward_core::directory::{self, Domain, Group, GroupDraft, ObjectKind, PropertyChange, Tenant, User, UserDraft};
use keyward_core::ids::ObjectId;
use keyward_core::secret::Secret;
use keyward_core::{json, password};
use keyward_store::{AdministrativeUnit, MemberRef, RoleAssignment, SigningKey, StoreError, TemporaryAccessPass, Tx};
use time::{Duration, OffsetDateTime};

use crate::commit_audited;
use crate::tokens::first_tenant;
use crate::{App, AppError, audit_id, new_id};

/// What the first start needs to know.
#[derive(Debug, Clone)]
pub struct BootstrapRequest {
    /// `KEYWARD_BOOTSTRAP_ADMIN_UPN`: the first Global Administrator; its domain becomes the tenant's.
    pub admin_upn: Option<String>,
    /// `KEYWARD_BOOTSTRAP_ADMIN_PASSWORD`.
    pub admin_password: Option<Secret>,
    /// `KEYWARD_TENANT_DOMAIN`, used when no admin UPN is given.
    pub tenant_domain: String,
}

/// What the first start did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// The database already held a tenant; nothing was created.
    Existing { tenant_id: ObjectId },
    /// A tenant and its first Global Administrator were created.
    Created {
        tenant_id: ObjectId,
        admin_upn: String,
        /// The one-time Temporary Access Pass and its expiry, when no password was given. Shown once.
        temporary_access_pass: Option<(Secret, OffsetDateTime)>,
    },
}

/// A demo account and its generated password, printed once by `keyward serve --demo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoAccount {
    pub user_principal_name: String,
    pub password: Secret,
    pub role: &'static str,
    /// What else the account has, for the console (a phone, an authenticator app's secret).
    pub methods: Option<String>,
}

const BOOTSTRAP_TAP_MINUTES: i64 = 480;
pub(crate) const TAP_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789+-=#%";
pub(crate) const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A random string over `alphabet`, without modulo bias.
pub(crate) fn random_string(alphabet: &[u8], len: usize) -> Result<String, AppError> {
    let limit = 256 - (256 % alphabet.len());
    let mut res = String::with_capacity(len);
    while res.len() < len {
        let mut buf = [0_u8; 32];
        aws_lc_rs::rand::fill(&mut buf)
            .map_err(|_| AppError::Unexpected(anyhow::anyhow!("random generator failed")))?;
        for b in buf {
            if usize::from(b) < limit && res.len() < len {
                res.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
            }
        }
    }
    Ok(res)
}

fn system_audit(tenant: &ObjectId, at: OffsetDateTime, correlation_id: &str) -> AuditContext {
    AuditContext {
        tenant_id: tenant.clone(),
        correlation_id: correlation_id.to_owned(),
        at,
        initiated_by: Initiator::App {
            app_id: "keyward".into(),
            display_name: "Keyward setup".into(),
            service_principal_id: None,
        },
    }
}

/// Who a command run with access to the server's data (`keyward admin recover`, `keyward audit
/// retention`) acts as in the audit log: "Keyward operator".
pub(crate) fn operator_audit(tenant: &ObjectId, at: OffsetDateTime) -> AuditContext {
    AuditContext {
        tenant_id: tenant.clone(),
        correlation_id: new_id().to_string(),
        at,
        initiated_by: Initiator::App {
            app_id: "keyward-operator".into(),
            display_name: "Keyward operator".into(),
            service_principal_id: None,
        },
    }
}

fn tenant_name(domain: &str) -> String {
    let label = domain.split('.').next().unwrap_or(domain);
    let mut chars = label.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "Keyward".into(),
    }
}

impl App {
    /// Creates the tenant and its first Global Administrator on an empty database, and makes sure a
    /// signing key exists. Safe to call on every start.
    pub async fn bootstrap(&self, request: BootstrapRequest) -> Result<BootstrapOutcome, AppError> {
        let now = self.now();
        if let Some(tenant_id) = self.ensure_signing_key_and_find_tenant(now).await? {
            return Ok(BootstrapOutcome::Existing { tenant_id });
        }
        // Validate and hash before the write transaction: Argon2 takes tens of milliseconds.
        let admin_upn = match &request.admin_upn {
            Some(upn) => upn.trim().to_owned(),
            None => format!("admin@{}", request.tenant_domain.trim().to_lowercase()),
        };
        let Some((alias, domain)) = admin_upn.split_once('@') else {
            return Err(AppError::BadRequest(format!(
                "KEYWARD_BOOTSTRAP_ADMIN_UPN '{admin_upn}' is not a user principal name; use the form admin@example.com"
            )));
        };
        let tenant = Tenant {
            id: new_id(),
            display_name: tenant_name(domain),
            created: now,
            domains: vec![Domain { name: domain.to_lowercase(), is_default: true, is_initial: true }],
        };
        let draft = UserDraft {
            user_principal_name: Some(admin_upn.clone()),
            display_name: Some("Global Administrator".into()),
            mail_nickname: Some(alias.to_owned()),
            account_enabled: Some(true),
            password: Some(Secret::default()),
            force_change_password_next_sign_in: Some(false),
            ..UserDraft::default()
        };
        let user = directory::new_user(&tenant, new_id(), draft, now)
            .map_err(|err| {
                AppError::BadRequest(format!("KEYWARD_BOOTSTRAP_ADMIN_UPN '{admin_upn}' is refused: {err}"))
            })?
            .user;
        let (hash, tap) = match &request.admin_password {
            Some(it) => {
                password::check(it.expose(), &["Global Administrator", alias]).map_err(|err| {
                    AppError::BadRequest(format!(
                        "KEYWARD_BOOTSTRAP_ADMIN_PASSWORD is refused: {err}. Choose a longer, less common password."
                    ))
                })?;
                (Some(self.inner.hasher.hash(it.expose()).await?), None)
            }
            None => (None, Some(Secret::new(random_string(TAP_ALPHABET, 16)?))),
        };

        let mut tx = self.write().await?;
        if let Some(existing) = tx.list_tenants().await?.into_iter().next() {
            return Ok(BootstrapOutcome::Existing { tenant_id: existing.id });
        }
        match tx.insert_tenant(&tenant).await {
            // Another node created the tenant between our read and our write.
            Err(StoreError::Conflict { .. }) => {
                drop(tx);
                let tenant_id = self.ensure_signing_key_and_find_tenant(now).await?;
                return tenant_id.map(|tenant_id| BootstrapOutcome::Existing { tenant_id }).ok_or_else(|| {
                    AppError::Unexpected(anyhow::anyhow!("the tenant's domain is taken but no tenant exists"))
                });
            }
            other => other?,
        }
        tx.insert_user(&user, hash.as_deref()).await?;
        let correlation_id = new_id().to_string();
        let audit = system_audit(&tenant.id, now, &correlation_id);
        let record = audit.success(
            audit_id(&correlation_id),
            Activity::AddUser,
            vec![TargetResource::user(&user).with_changes(user_creation_properties(&user))],
        );
        tx.insert_audit(&record).await?;
        assign(&mut *tx, &audit, &TargetResource::user(&user), roles::GLOBAL_ADMINISTRATOR, "/", now).await?;
        let temporary_access_pass = match tap {
            Some(pass) => {
                let expires = now + Duration::minutes(BOOTSTRAP_TAP_MINUTES);
                tx.put_temporary_access_pass(&TemporaryAccessPass {
                    id: new_id(),
                    user_id: user.id.clone(),
                    pass_sha256: self.inner.keys.pass_hash(pass.expose())?,
                    created: now,
                    start: now,
                    lifetime_minutes: BOOTSTRAP_TAP_MINUTES,
                    // Usable from any browser until the administrator has registered a method,
                    // so an abandoned first sign-in can be resumed.
                    is_usable_once: false,
                    used_at: None,
                    ends_at_registration: true,
                })
                .await?;
                Some((pass, expires))
            }
            None => None,
        };
        tx.commit().await?;
        self.reload_keys().await?;
        Ok(BootstrapOutcome::Created {
            tenant_id: tenant.id,
            admin_upn: user.user_principal_name,
            temporary_access_pass,
        })
    }

    /// `keyward admin recover`: a fresh Temporary Access Pass for a Global Administrator, for an
    /// operator with access to the server's data (the database and the key-encryption key) when
    /// no administrator can sign in. The pass lasts an hour and stays usable until the holder
    /// registers a method; the account's lockout counters are cleared. Audited as `Admin
    /// registered security info` initiated by "Keyward operator".
    pub async fn recover_global_administrator(&self, upn: &str) -> Result<(Secret, OffsetDateTime), AppError> {
        let now = self.now();
        let pass = Secret::new(random_string(TAP_ALPHABET, 16)?);
        let mut tx = self.write().await?;
        let tenant = first_tenant(&mut *tx).await?;
        let user = tx.find_user_by_upn(&tenant.id, upn.trim()).await?.ok_or_else(|| {
            AppError::BadRequest(format!(
                "There is no user '{upn}' in this database. Give a Global Administrator's user principal name."
            ))
        })?;
        let admins = crate::facts::global_administrators(&mut *tx, &tenant, &crate::facts::RoleChange::None).await?;
        if !admins.contains(&user.id) {
            return Err(AppError::BadRequest(format!(
                "'{upn}' is not an enabled Global Administrator; recovery issues passes only to them. Enabled \
                 Global Administrators: {}.",
                tx.get_users(&tenant.id, &admins)
                    .await?
                    .iter()
                    .map(|it| it.user_principal_name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut state = tx.lock_user_sign_in_state(&user.id).await?;
        state.password = keyward_core::signin::Lockout::default();
        state.code = keyward_core::signin::Lockout::default();
        tx.set_user_sign_in_state(&user.id, &state).await?;
        let lifetime = 60;
        let record = TemporaryAccessPass {
            id: new_id(),
            user_id: user.id.clone(),
            pass_sha256: self.inner.keys.pass_hash(pass.expose())?,
            created: now,
            start: now,
            lifetime_minutes: lifetime,
            is_usable_once: false,
            used_at: None,
            ends_at_registration: true,
        };
        tx.put_temporary_access_pass(&record).await?;
        let audit = operator_audit(&tenant.id, now);
        let mut entry = audit.success(
            audit_id(&audit.correlation_id),
            Activity::AdminRegisteredSecurityInfo,
            vec![TargetResource::user(&user)],
        );
        entry.result_reason = "Admin registered temporary access pass method for user".into();
        entry
            .additional_details
            .push(("Recovery".into(), "Issued by `keyward admin recover` with access to the server's data".into()));
        commit_audited(tx, [entry]).await?;
        Ok((pass, now + Duration::minutes(lifetime)))
    }

    /// Makes sure an unretired signing key exists and returns the tenant, if one exists.
    async fn ensure_signing_key_and_find_tenant(&self, now: OffsetDateTime) -> Result<Option<ObjectId>, AppError> {
        let mut tx = self.write().await?;
        if tx.list_signing_keys().await?.iter().all(|it| it.retired.is_some()) {
            tx.insert_signing_key(&self.inner.keys.generate(now)?).await?;
        }
        let tenant = tx.list_tenants().await?.into_iter().next().map(|it| it.id);
        tx.commit().await?;
        self.reload_keys().await?;
        Ok(tenant)
    }

    /// Seeds the demo tenant: a Global Administrator, a Privileged Authentication Administrator, an
    /// Authentication Administrator scoped to an administrative unit, a Helpdesk Administrator through
    /// a role-assignable group, and regular users. Returns the accounts with fresh passwords, or
    /// nothing when the demo data already exists.
    pub async fn seed_demo(&self) -> Result<Vec<DemoAccount>, AppError> {
        let now = self.now();
        let mut tx = self.read().await?;
        let tenant = first_tenant(&mut *tx).await?;
        let Some(domain) = tenant.domains.iter().find(|it| it.is_default).map(|it| it.name.clone()) else {
            return Err(AppError::BadRequest("the tenant has no default domain".into()));
        };
        if tx.find_user_by_upn(&tenant.id, &format!("adele.vance@{domain}")).await?.is_some() {
            return Ok(Vec::new());
        }
        drop(tx);
        let people = [
            ("grace.global", "Grace Global", "Global Administrator", "IT"),
            ("pat.privileged", "Pat Privileged", "Privileged Authentication Administrator", "Service Desk"),
            ("alex.auth", "Alex Auth", "Authentication Administrator (Sales unit)", "Service Desk"),
            ("hana.helpdesk", "Hana Helpdesk", "Helpdesk Administrator (through Helpdesk Team)", "Service Desk"),
            ("adele.vance", "Adele Vance", "user", "Sales"),
            ("megan.bowen", "Megan Bowen", "user", "Sales"),
            ("lee.gu", "Lee Gu", "user", "Engineering"),
        ];
        // Users and password hashes first: Argon2 stays outside the write transaction.
        let mut accounts = Vec::new();
        let mut users: Vec<(User, String)> = Vec::new();
        for (alias, name, role, department) in people {
            let password = Secret::new(random_string(PASSWORD_ALPHABET, 16)?);
            let (given, surname) = name.split_once(' ').unwrap_or((name, ""));
            let job_title = if role == "user" { "Employee" } else { role.split(" (").next().unwrap_or(role) };
            let draft = UserDraft {
                user_principal_name: Some(format!("{alias}@{domain}")),
                display_name: Some(name.into()),
                mail_nickname: Some(alias.into()),
                account_enabled: Some(true),
                password: Some(password.clone()),
                force_change_password_next_sign_in: Some(false),
                given_name: Some(given.into()),
                surname: Some(surname.into()),
                mail: Some(format!("{alias}@{domain}")),
                department: Some(department.into()),
                job_title: Some(job_title.into()),
                ..UserDraft::default()
            };
            let user = directory::new_user(&tenant, new_id(), draft, now)
                .map_err(|err| AppError::Unexpected(anyhow::anyhow!("demo user: {err}")))?
                .user;
            let hash = self.inner.hasher.hash(password.expose()).await?;
            accounts.push(DemoAccount {
                user_principal_name: user.user_principal_name.clone(),
                password,
                role,
                methods: None,
            });
            users.push((user, hash));
        }
        let [grace, pat, alex, hana, adele, megan, _lee] = users.iter().map(|it| &it.0).collect::<Vec<_>>()[..] else {
            return Err(AppError::Unexpected(anyhow::anyhow!("demo users")));
        };
        let correlation_id = new_id().to_string();
        let audit = system_audit(&tenant.id, now, &correlation_id);
        let mut tx = self.write().await?;
        for (user, hash) in &users {
            tx.insert_user(user, Some(hash)).await?;
            let targets = vec![TargetResource::user(user).with_changes(user_creation_properties(user))];
            tx.insert_audit(&audit.success(audit_id(&correlation_id), Activity::AddUser, targets)).await?;
        }
        assign(&mut *tx, &audit, &TargetResource::user(grace), roles::GLOBAL_ADMINISTRATOR, "/", now).await?;
        assign(&mut *tx, &audit, &TargetResource::user(pat), roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, "/", now)
            .await?;

        let unit = AdministrativeUnit {
            id: new_id(),
            tenant_id: tenant.id.clone(),
            display_name: "Sales".into(),
            description: Some("Sales department; Alex Auth manages its members' authentication methods".into()),
            is_member_management_restricted: false,
            created: now,
        };
        tx.insert_administrative_unit(&unit).await?;
        let unit_target = TargetResource {
            id: unit.id.clone(),
            display_name: Some(unit.display_name.clone()),
            kind: "Other",
            user_principal_name: None,
            modified_properties: Vec::new(),
        };
        tx.insert_audit(&audit.success(
            audit_id(&correlation_id),
            Activity::AddAdministrativeUnit,
            vec![unit_target.clone()],
        ))
        .await?;
        for member in [adele, megan] {
            tx.insert_administrative_unit_member(
                &unit.id,
                &MemberRef { kind: ObjectKind::User, id: member.id.clone() },
            )
            .await?;
            let targets = vec![TargetResource::user(member), unit_target.clone()];
            tx.insert_audit(&audit.success(
                audit_id(&correlation_id),
                Activity::AddMemberToAdministrativeUnit,
                targets,
            ))
            .await?;
        }
        let scope = format!("/administrativeUnits/{}", unit.id);
        assign(&mut *tx, &audit, &TargetResource::user(alex), roles::AUTHENTICATION_ADMINISTRATOR, &scope, now).await?;

        let draft = GroupDraft {
            display_name: Some("Helpdesk Team".into()),
            description: Some("Role-assignable group holding Helpdesk Administrator".into()),
            mail_nickname: Some("helpdesk-team".into()),
            mail_enabled: Some(false),
            security_enabled: Some(true),
            is_assignable_to_role: Some(true),
            group_types: Vec::new(),
        };
        let group: Group = directory::new_group(&tenant, new_id(), draft, now)
            .map_err(|err| AppError::Unexpected(anyhow::anyhow!("demo group: {err}")))?;
        tx.insert_group(&group).await?;
        let targets = vec![TargetResource::group(&group).with_changes(group_creation_properties(&group))];
        tx.insert_audit(&audit.success(audit_id(&correlation_id), Activity::AddGroup, targets)).await?;
        tx.insert_member(&group.id, &MemberRef { kind: ObjectKind::User, id: hana.id.clone() }).await?;
        let targets = vec![
            TargetResource::user(hana).with_changes(group_reference_properties(&group, true)),
            TargetResource::group(&group),
        ];
        tx.insert_audit(&audit.success(audit_id(&correlation_id), Activity::AddMemberToGroup, targets)).await?;
        tx.insert_owner(&group.id, &MemberRef { kind: ObjectKind::User, id: grace.id.clone() }).await?;
        let targets = vec![
            TargetResource::user(grace).with_changes(group_reference_properties(&group, true)),
            TargetResource::group(&group),
        ];
        tx.insert_audit(&audit.success(audit_id(&correlation_id), Activity::AddOwnerToGroup, targets)).await?;
        assign(&mut *tx, &audit, &TargetResource::group(&group), roles::HELPDESK_ADMINISTRATOR, "/", now).await?;

        // Methods to re-register: Adele has a phone, Megan an authenticator app.
        let phone = "+1 4255550100";
        tx.put_phone_method(&adele.id, "mobile", phone, now).await?;
        let mut secret = [0_u8; keyward_core::totp::SECRET_LEN];
        aws_lc_rs::rand::fill(&mut secret)
            .map_err(|_| AppError::Unexpected(anyhow::anyhow!("random generator failed")))?;
        tx.insert_software_oath_method(&keyward_store::SoftwareOathMethod {
            id: new_id(),
            user_id: megan.id.clone(),
            sealed_secret: self.inner.keys.seal_secret(megan.id.as_str().as_bytes(), &secret)?,
            created: now,
            last_used_step: 0,
        })
        .await?;
        for (user, method) in [(adele, "Phone"), (megan, "Authenticator app")] {
            let mut record = audit.success(
                audit_id(&correlation_id),
                Activity::AdminRegisteredSecurityInfo,
                vec![TargetResource::user(user)],
            );
            record.result_reason = format!("Admin registered {method} method for user");
            tx.insert_audit(&record).await?;
        }
        tx.commit().await?;
        for account in &mut accounts {
            if account.user_principal_name == adele.user_principal_name {
                account.methods = Some(format!("phone {phone}"));
            } else if account.user_principal_name == megan.user_principal_name {
                account.methods =
                    Some(format!("authenticator app, secret {}", keyward_core::totp::base32_encode(&secret)));
            }
        }
        Ok(accounts)
    }

    /// Generates and activates a new signing key; older keys keep verifying until retired.
    pub async fn rotate_signing_key(&self) -> Result<String, AppError> {
        let mut tx = self.write().await?;
        // Keys sign in creation order, so the new key must be strictly the newest, even when the
        // clock has not moved since the last rotation.
        let newest = tx.list_signing_keys().await?.iter().map(|it| it.created).max();
        let created = match newest {
            Some(at) => std::cmp::max(self.now(), at + Duration::microseconds(1)),
            None => self.now(),
        };
        let key = self.inner.keys.generate(created)?;
        tx.insert_signing_key(&key).await?;
        tx.commit().await?;
        self.reload_keys().await?;
        Ok(key.kid)
    }

    /// Retires a signing key: it disappears from the JWKS and its tokens stop verifying.
    /// The last unretired key cannot be retired; when the newest key is retired, the next newest signs.
    pub async fn retire_signing_key(&self, kid: &str) -> Result<(), AppError> {
        let now = self.now();
        let mut tx = self.write().await?;
        let keys = tx.list_signing_keys().await?;
        let live: Vec<&SigningKey> = keys.iter().filter(|it| it.retired.is_none()).collect();
        if !live.iter().any(|it| it.kid == kid) {
            return Err(AppError::NotFound(kid.to_owned()));
        }
        if live.len() == 1 {
            return Err(AppError::BadRequest(format!(
                "Key '{kid}' is the only active signing key; run `keyward keys rotate` first, then retire it."
            )));
        }
        tx.retire_signing_key(kid, now).await?;
        tx.commit().await?;
        self.reload_keys().await
    }

    /// Every signing key (without private material), oldest first.
    pub async fn list_signing_keys(&self) -> Result<Vec<SigningKey>, AppError> {
        let mut tx = self.read().await?;
        let mut keys = tx.list_signing_keys().await?;
        for key in &mut keys {
            key.sealed_private_key.clear();
        }
        Ok(keys)
    }
}

/// Assigns a role and writes Entra's "Add member to role" (or "Add scoped member to role") record.
async fn assign(
    tx: &mut dyn Tx,
    audit: &AuditContext,
    principal: &TargetResource,
    role: &str,
    scope: &str,
    now: OffsetDateTime,
) -> Result<(), AppError> {
    crate::roles::insert_assignment(
        tx,
        &RoleAssignment {
            id: new_id().to_string(),
            tenant_id: audit.tenant_id.clone(),
            principal_id: principal.id.clone(),
            role_definition_id: role.to_owned(),
            directory_scope_id: scope.to_owned(),
            created: now,
            start: None,
            end: None,
            activated_using: None,
        },
    )
    .await?;
    let role_name = keyward_core::authz::built_in_role(role).map_or(role, |it| it.display_name);
    let role_id =
        ObjectId::parse(role).ok_or_else(|| AppError::Unexpected(anyhow::anyhow!("role id {role} is not a GUID")))?;
    let changes = vec![
        PropertyChange { name: "Role.DisplayName".into(), old_value: None, new_value: Some(json::string(role_name)) },
        PropertyChange { name: "Role.TemplateId".into(), old_value: None, new_value: Some(json::string(role)) },
        PropertyChange { name: "DirectoryScopeId".into(), old_value: None, new_value: Some(json::string(scope)) },
    ];
    let role_target = TargetResource {
        id: role_id,
        display_name: Some(role_name.to_owned()),
        kind: "Role",
        user_principal_name: None,
        modified_properties: changes,
    };
    let activity = if scope == "/" { Activity::AddMemberToRole } else { Activity::AddScopedMemberToRole };
    let record = audit.success(audit_id(&audit.correlation_id), activity, vec![role_target, principal.clone()]);
    tx.insert_audit(&record).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_strings_use_only_the_alphabet() {
        let value = super::random_string(b"ab", 64).expect("random");
        assert_eq!(value.len(), 64);
        assert!(value.chars().all(|c| c == 'a' || c == 'b'));
        assert!(value.contains('a') && value.contains('b'));
    }
}
