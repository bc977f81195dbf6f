//! First start (bootstrap), demo data, and signing-key rotation.

use aws_lc_rs::digest;
use keyward_core::audit::{Activity, AuditContext, Initiator, TargetResource, user_creation_properties};
use keyward_core::authz::roles;
use keyward_core::directory::{self, Domain, Group, GroupDraft, ObjectKind, Tenant, User, UserDraft};
use keyward_core::ids::ObjectId;
use keyward_core::password;
use keyward_store::{AdministrativeUnit, MemberRef, RoleAssignment, SigningKey, TemporaryAccessPass, Tx};
use time::{Duration, OffsetDateTime};

use crate::tokens::first_tenant;
use crate::{App, AppError, audit_id, new_id};

/// What the first start needs to know.
#[derive(Debug, Clone)]
pub struct BootstrapRequest {
    /// `KEYWARD_BOOTSTRAP_ADMIN_UPN`: the first Global Administrator; its domain becomes the tenant's.
    pub admin_upn: Option<String>,
    /// `KEYWARD_BOOTSTRAP_ADMIN_PASSWORD`.
    pub admin_password: Option<String>,
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
        temporary_access_pass: Option<(String, OffsetDateTime)>,
    },
}

/// A demo account and its generated password, printed once by `keyward serve --demo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoAccount {
    pub user_principal_name: String,
    pub password: String,
    pub role: &'static str,
}

const BOOTSTRAP_TAP_MINUTES: i64 = 480;
const TAP_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789+-=#%";
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

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
        let mut tx = self.write().await?;
        if tx.list_signing_keys().await?.iter().all(|it| it.retired.is_some()) {
            tx.insert_signing_key(&self.inner.keys.generate(now)?).await?;
        }
        if let Some(tenant) = tx.list_tenants().await?.into_iter().next() {
            tx.commit().await?;
            self.reload_keys().await?;
            return Ok(BootstrapOutcome::Existing { tenant_id: tenant.id });
        }
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
        tx.insert_tenant(&tenant).await?;
        let (password, tap) = match &request.admin_password {
            Some(it) => {
                password::check(it, &["Global Administrator", alias]).map_err(|err| {
                    AppError::BadRequest(format!(
                        "KEYWARD_BOOTSTRAP_ADMIN_PASSWORD is refused: {err}. Choose a longer, less common password."
                    ))
                })?;
                (Some(it.clone()), None)
            }
            None => (None, Some(random_string(TAP_ALPHABET, 16)?)),
        };
        let draft = UserDraft {
            user_principal_name: Some(admin_upn.clone()),
            display_name: Some("Global Administrator".into()),
            mail_nickname: Some(alias.to_owned()),
            account_enabled: Some(true),
            password: Some(String::new()),
            force_change_password_next_sign_in: Some(false),
            ..UserDraft::default()
        };
        let user = directory::new_user(&tenant, new_id(), draft, now)
            .map_err(|err| {
                AppError::BadRequest(format!("KEYWARD_BOOTSTRAP_ADMIN_UPN '{admin_upn}' is refused: {err}"))
            })?
            .user;
        let hash = match &password {
            Some(it) => Some(self.inner.hasher.hash(it).await?),
            None => None,
        };
        tx.insert_user(&user, hash.as_deref()).await?;
        assign(&mut *tx, &tenant, &user.id, roles::GLOBAL_ADMINISTRATOR, "/", now).await?;
        let correlation_id = new_id().to_string();
        let audit = system_audit(&tenant.id, now, &correlation_id);
        let record = audit.success(
            audit_id(&correlation_id),
            Activity::AddUser,
            vec![TargetResource::user(&user).with_changes(user_creation_properties(&user))],
        );
        tx.insert_audit(&record).await?;
        let temporary_access_pass = match tap {
            Some(pass) => {
                let expires = now + Duration::minutes(BOOTSTRAP_TAP_MINUTES);
                tx.put_temporary_access_pass(&TemporaryAccessPass {
                    id: new_id(),
                    user_id: user.id.clone(),
                    pass_sha256: digest::digest(&digest::SHA256, pass.as_bytes()).as_ref().to_vec(),
                    created: now,
                    start: now,
                    lifetime_minutes: BOOTSTRAP_TAP_MINUTES,
                    is_usable_once: true,
                    used_at: None,
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

    /// Seeds the demo tenant: a Global Administrator, a Privileged Authentication Administrator, an
    /// Authentication Administrator scoped to an administrative unit, a Helpdesk Administrator through
    /// a role-assignable group, and regular users. Returns the accounts with fresh passwords, or
    /// nothing when the demo data already exists.
    pub async fn seed_demo(&self) -> Result<Vec<DemoAccount>, AppError> {
        let now = self.now();
        let mut tx = self.write().await?;
        let tenant = first_tenant(&mut *tx).await?;
        let Some(domain) = tenant.domains.iter().find(|it| it.is_default).map(|it| it.name.clone()) else {
            return Err(AppError::BadRequest("the tenant has no default domain".into()));
        };
        if tx.find_user_by_upn(&tenant.id, &format!("adele.vance@{domain}")).await?.is_some() {
            return Ok(Vec::new());
        }
        let correlation_id = new_id().to_string();
        let audit = system_audit(&tenant.id, now, &correlation_id);
        let people = [
            ("grace.global", "Grace Global", "Global Administrator", "IT"),
            ("pat.privileged", "Pat Privileged", "Privileged Authentication Administrator", "Service Desk"),
            ("alex.auth", "Alex Auth", "Authentication Administrator (Sales unit)", "Service Desk"),
            ("hana.helpdesk", "Hana Helpdesk", "Helpdesk Administrator (through Helpdesk Team)", "Service Desk"),
            ("adele.vance", "Adele Vance", "user", "Sales"),
            ("megan.bowen", "Megan Bowen", "user", "Sales"),
            ("lee.gu", "Lee Gu", "user", "Engineering"),
        ];
        let mut accounts = Vec::new();
        let mut users: Vec<User> = Vec::new();
        for (alias, name, role, department) in people {
            let password = random_string(PASSWORD_ALPHABET, 16)?;
            let (given, surname) = name.split_once(' ').unwrap_or((name, ""));
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
                job_title: Some(if role == "user" {
                    "Employee".into()
                } else {
                    role.split(" (").next().unwrap_or(role).into()
                }),
                ..UserDraft::default()
            };
            let user = directory::new_user(&tenant, new_id(), draft, now)
                .map_err(|err| AppError::Unexpected(anyhow::anyhow!("demo user: {err}")))?
                .user;
            let hash = self.inner.hasher.hash(&password).await?;
            tx.insert_user(&user, Some(&hash)).await?;
            let record = audit.success(
                audit_id(&correlation_id),
                Activity::AddUser,
                vec![TargetResource::user(&user).with_changes(user_creation_properties(&user))],
            );
            tx.insert_audit(&record).await?;
            accounts.push(DemoAccount { user_principal_name: user.user_principal_name.clone(), password, role });
            users.push(user);
        }
        let [grace, pat, alex, hana, adele, megan, _lee] = users.as_slice() else {
            return Err(AppError::Unexpected(anyhow::anyhow!("demo users")));
        };
        assign(&mut *tx, &tenant, &grace.id, roles::GLOBAL_ADMINISTRATOR, "/", now).await?;
        assign(&mut *tx, &tenant, &pat.id, roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, "/", now).await?;

        let unit = AdministrativeUnit {
            id: new_id(),
            tenant_id: tenant.id.clone(),
            display_name: "Sales".into(),
            description: Some("Sales department; Alex Auth manages its members' authentication methods".into()),
            is_member_management_restricted: false,
            created: now,
        };
        tx.insert_administrative_unit(&unit).await?;
        for member in [adele, megan] {
            tx.insert_administrative_unit_member(
                &unit.id,
                &MemberRef { kind: ObjectKind::User, id: member.id.clone() },
            )
            .await?;
        }
        let scope = format!("/administrativeUnits/{}", unit.id);
        assign(&mut *tx, &tenant, &alex.id, roles::AUTHENTICATION_ADMINISTRATOR, &scope, now).await?;

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
        tx.insert_member(&group.id, &MemberRef { kind: ObjectKind::User, id: hana.id.clone() }).await?;
        tx.insert_owner(&group.id, &MemberRef { kind: ObjectKind::User, id: grace.id.clone() }).await?;
        assign(&mut *tx, &tenant, &group.id, roles::HELPDESK_ADMINISTRATOR, "/", now).await?;
        let record = audit.success(audit_id(&correlation_id), Activity::AddGroup, vec![TargetResource::group(&group)]);
        tx.insert_audit(&record).await?;
        tx.commit().await?;
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
    /// The active key cannot be retired until another key has been activated.
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

async fn assign(
    tx: &mut dyn Tx,
    tenant: &Tenant,
    principal: &ObjectId,
    role: &str,
    scope: &str,
    now: OffsetDateTime,
) -> Result<(), AppError> {
    tx.insert_role_assignment(&RoleAssignment {
        id: new_id().to_string(),
        tenant_id: tenant.id.clone(),
        principal_id: principal.clone(),
        role_definition_id: role.to_owned(),
        directory_scope_id: scope.to_owned(),
        created: now,
    })
    .await?;
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
