//! Telling users (and administrators) what happened: the outbox, its sender, and the "This
//! wasn't me" link.
//!
//! Every audited change stages its messages in its own transaction ([`stage`], called by
//! `audited::commit_audited`), so a change that rolls back sends nothing and one that commits is
//! never without its message. The sender ([`App::deliver_notifications`], every few seconds on
//! each node when an SMTP relay is configured) claims due messages under a lease, draws each
//! user message's single-use link token (only its SHA-256 is kept), sends through the relay, and
//! records the outcome; a failure is tried again later ([`notify::retry_at`]) until
//! [`notify::GIVE_UP_AFTER`]. Delivery is at least once: a node that dies between the relay's
//! acceptance and the record of it leaves the message to be sent again when its lease ends.

use keyward_core::audit::{Activity, AuditContext, AuditRecord, Initiator, TargetResource};
use keyward_core::authz::{Target, actions, catalog};
use keyward_core::directory::{AssignmentFilter, ObjectKind, Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_core::notify::{self, Kind, Message, State};
use keyward_store::{OutboxMessage, Tx};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use time::OffsetDateTime;

use crate::audited::{audit_id, commit_audited};
use crate::{App, AppError, Caller, RequestMeta, require};

/// How many messages one round of the sender sends at most.
const ROUND: usize = 50;

/// The roles whose holders are told about reports and agents at their limit.
const ALERTED_ROLES: [&str; 2] =
    [catalog::roles::GLOBAL_ADMINISTRATOR, catalog::roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR];

/// Writes the messages the audit records of one change call for into the outbox, in the
/// change's transaction: to each user the change is about, at their `mail` (kept as
/// `noAddress` when they have none).
pub(crate) async fn stage(tx: &mut dyn Tx, records: &[AuditRecord]) -> Result<(), AppError> {
    for notice in notify::notices(records) {
        let Some(user) = tx.get_user(&notice.tenant_id, &notice.user_id).await? else { continue };
        let Some(tenant_name) = tx.tenant_display_name(&notice.tenant_id).await? else { continue };
        let message = notify::security_message(&tenant_name, &user.display_name, &user.user_principal_name, &notice);
        let tenant = &notice.tenant_id;
        // The old address too when the change replaced it: an agent who first points the user's
        // mail at themselves does not silence the warning.
        let mut recipients: Vec<String> = user.mail.iter().cloned().collect();
        if let Some(old) = notice.previous_mail.filter(|old| !recipients.iter().any(|it| it.eq_ignore_ascii_case(old)))
        {
            recipients.push(old);
        }
        if recipients.is_empty() {
            let message = message.clone();
            insert(tx, tenant, Kind::SecurityInfoChanged, &user, None, message, &notice.correlation_id, notice.at)
                .await?;
        }
        for recipient in recipients {
            let (kind, message) = (Kind::SecurityInfoChanged, message.clone());
            insert(tx, tenant, kind, &user, Some(recipient), message, &notice.correlation_id, notice.at).await?;
        }
    }
    Ok(())
}

/// Writes `message` to each Global Administrator and Privileged Authentication Administrator of
/// the tenant (assigned to them directly, tenant-wide) that has a mail address; how many.
pub(crate) async fn stage_for_administrators(
    tx: &mut dyn Tx,
    tenant: &Tenant,
    kind: Kind,
    message: &Message,
    correlation_id: &str,
    at: OffsetDateTime,
    except: &ObjectId,
) -> Result<usize, AppError> {
    tx.set_now(at);
    let filter = AssignmentFilter {
        role_definition_id: Some(ALERTED_ROLES.iter().map(|it| (*it).to_owned()).collect()),
        directory_scope_id: Some(vec!["/".into()]),
        ..AssignmentFilter::default()
    };
    let assignments = tx.list_role_assignments(&tenant.id, &filter, None, keyward_store::ALL_ROWS).await?;
    // The holders: users assigned the role, and the members of role-assignable groups assigned
    // it (such a group holds no groups, so its direct members are everyone who holds the role
    // through it). A principal with no members is taken as a user; one that is not (an empty
    // group, a service principal) is not found as a user below.
    let mut holders: Vec<ObjectId> = Vec::new();
    for assignment in assignments {
        let members = tx.list_members(&assignment.principal_id, None, keyward_store::ALL_ROWS).await?;
        if members.is_empty() {
            holders.push(assignment.principal_id);
        } else {
            holders.extend(members.into_iter().filter(|it| it.kind == ObjectKind::User).map(|it| it.id));
        }
    }
    let mut told: Vec<ObjectId> = Vec::new();
    let mut sent = 0;
    for holder in holders {
        // The one who caused the message (the reporting user, the requester) is not told.
        if told.contains(&holder) || holder == *except {
            continue;
        }
        told.push(holder.clone());
        let Some(admin) = tx.get_user(&tenant.id, &holder).await? else { continue };
        let Some(address) = admin.mail.clone().filter(|_| admin.account_enabled) else { continue };
        insert(tx, &tenant.id, kind, &admin, Some(address), message.clone(), correlation_id, at).await?;
        sent += 1;
    }
    if sent == 0 {
        tracing::warn!(tenant = %tenant.id, kind = kind.as_str(), "no administrator with a mail address to tell");
    }
    Ok(sent)
}

#[allow(clippy::too_many_arguments)]
async fn insert(
    tx: &mut dyn Tx,
    tenant: &ObjectId,
    kind: Kind,
    about: &User,
    recipient: Option<String>,
    message: Message,
    correlation_id: &str,
    at: OffsetDateTime,
) -> Result<(), AppError> {
    let state = if recipient.is_some() { State::Pending } else { State::NoAddress };
    tx.insert_message(&OutboxMessage {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant.clone(),
        kind: kind.as_str().into(),
        user_id: about.id.clone(),
        recipient,
        subject: message.subject,
        body: message.body,
        correlation_id: correlation_id.to_owned(),
        created_at: at,
        state: state.as_str().into(),
        attempts: 0,
        next_attempt_at: (state == State::Pending).then_some(at),
        last_error: None,
        sent_at: None,
        reported_at: None,
    })
    .await?;
    Ok(())
}

/// The SMTP relay messages go through (`KEYWARD_SMTP_URL`).
#[derive(Clone)]
pub struct SmtpRelay {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpRelay {
    // The URL may hold the relay's password: never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpRelay").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl SmtpRelay {
    /// A relay from its URL: `smtps://[user:password@]host[:465]` (TLS from the first byte),
    /// `smtp://[user:password@]host[:587]?tls=required` (STARTTLS, refused without it), or
    /// `smtp://host[:25]` (no TLS, for a relay on the same host only). `ca_pem` adds a root
    /// certificate the relay's certificate may chain to (`KEYWARD_SMTP_CA_FILE`); `from` is the
    /// sender's address.
    pub fn new(url: &str, from: &str, ca_pem: Option<&[u8]>) -> Result<SmtpRelay, String> {
        let from: Mailbox =
            from.parse().map_err(|err| format!("KEYWARD_SMTP_FROM '{from}' is not an address: {err}"))?;
        let authority = url.split_once("://").map_or("", |it| it.1).split(['/', '?']).next().unwrap_or_default();
        let encrypted = url.starts_with("smtps://") || url.contains("tls=required");
        if authority.contains('@') && !encrypted {
            return Err("KEYWARD_SMTP_URL gives a password without TLS: use smtps:// or add ?tls=required, so the \
                        password is never sent in the clear"
                .into());
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|err| {
                format!("KEYWARD_SMTP_URL is not an SMTP URL (smtps://host or smtp://host:587?tls=required): {err}")
            })?
            .timeout(Some(std::time::Duration::from_secs(30)));
        if let Some(pem) = ca_pem {
            let host = url.split_once("://").map_or("", |it| it.1);
            let host = host.rsplit_once('@').map_or(host, |it| it.1);
            let host = host.split(['/', '?', ':']).next().unwrap_or_default();
            let certificate = Certificate::from_pem(pem)
                .map_err(|err| format!("KEYWARD_SMTP_CA_FILE holds no certificate: {err}"))?;
            let parameters = TlsParameters::builder(host.to_owned())
                .add_root_certificate(certificate)
                .build_rustls()
                .map_err(|err| format!("the relay's TLS settings: {err}"))?;
            let tls = if url.starts_with("smtps:") {
                Tls::Wrapper(parameters)
            } else if url.contains("tls=opportunistic") {
                Tls::Opportunistic(parameters)
            } else {
                Tls::Required(parameters)
            };
            builder = builder.tls(tls);
        }
        Ok(SmtpRelay { transport: builder.build(), from })
    }

    /// Sends one message; `Err` with whether trying again is pointless (the address is not one)
    /// and what went wrong. The relay's refusals are tried again until the message is given up:
    /// a `5xx` on authentication or a quota is the relay's fault, not the message's.
    async fn send(&self, message: &OutboxMessage, to: &str, body: String) -> Result<(), (bool, String)> {
        let to: Mailbox = to.parse().map_err(|err| (true, format!("'{to}' is not a mail address: {err}")))?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone())
            .message_id(Some(format!("<{}@keyward>", message.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|err| (true, format!("the message could not be built: {err}")))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(err) => Err((false, relay_error(&err))),
        }
    }
}

/// A relay error with its causes, on one line.
fn relay_error(err: &lettre::transport::smtp::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(500).collect()
}

/// A page of the outbox.
#[derive(Debug, Clone)]
pub struct NotificationPage {
    pub items: Vec<OutboxMessage>,
    pub skiptoken: Option<String>,
}

/// What one round of the sender did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    pub sent: usize,
    /// Failed this time, to be tried again.
    pub retrying: usize,
    /// Given up.
    pub failed: usize,
}

/// The outcome of a "This wasn't me" link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// Done: the user's name, and how many administrators are told.
    Done { display_name: String, administrators_told: usize },
    /// The link is unknown, used, or expired.
    Unusable,
}

impl App {
    /// `GET /beta/keyward/notifications`: the tenant's outbox, newest first, for whoever may read
    /// the audit log; `$filter=state eq '…'`, `$top`, paged. Bodies keep the placeholder where
    /// the link goes: the link itself is never stored.
    pub async fn list_notifications(
        &self,
        caller: &Caller,
        filter: Option<&str>,
        top: Option<&str>,
        skiptoken: Option<&str>,
    ) -> Result<NotificationPage, AppError> {
        // Who may not read the outbox learns nothing, not even whether their query was valid.
        require(caller, actions::AUDIT_LOGS_READ, Target::Tenant)?;
        let state = filter.map(notify::parse_state_filter).transpose().map_err(AppError::BadRequest)?;
        let top = crate::directory::page_size(top)?;
        let before = crate::directory::decode_id_skiptoken(skiptoken)?;
        let mut tx = self.read().await?;
        let mut items =
            tx.list_messages(&caller.tenant.id, state.map(State::as_str), before.as_deref(), top + 1).await?;
        let skiptoken = (items.len() > top).then(|| {
            items.truncate(top);
            crate::directory::id_skiptoken(&items[top - 1].id)
        });
        Ok(NotificationPage { items, skiptoken })
    }

    /// `GET /beta/keyward/notifications/{id}`.
    pub async fn get_notification(&self, caller: &Caller, id: &str) -> Result<OutboxMessage, AppError> {
        require(caller, actions::AUDIT_LOGS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        tx.get_message(&caller.tenant.id, id).await?.ok_or_else(|| AppError::NotFound(id.to_owned()))
    }

    /// One round of the sender: takes the due messages one at a time (each under a lease of its
    /// own, longer than one send can take), sends each through `relay`, and records the outcome.
    pub async fn deliver_notifications(&self, relay: &SmtpRelay) -> Result<Delivered, AppError> {
        let mut res = Delivered::default();
        for _ in 0..ROUND {
            let lease = uuid::Uuid::new_v4().to_string();
            let mut tx = self.write().await?;
            let Some(mut message) = tx.claim_messages(self.now(), &lease, 1).await?.pop() else { break };
            // A message whose user is gone (deleted since) is not sent: its link could not work.
            if tx.get_user(&message.tenant_id, &message.user_id).await?.is_none() {
                message.state = State::Failed.as_str().into();
                message.next_attempt_at = None;
                message.last_error = Some("the user no longer exists".into());
                tx.finish_message(&message, &lease).await?;
                tx.commit().await?;
                res.failed += 1;
                continue;
            }
            // A fresh token for each attempt: only the latest one sent works.
            let link = if message.kind == Kind::SecurityInfoChanged.as_str() {
                let token = crate::random_token()?;
                tx.set_message_link(&message.id, &lease, &crate::sha256(token.as_bytes())).await?;
                Some(format!("{}/{}/report-activity?token={token}", self.config().public_url, message.tenant_id))
            } else {
                None
            };
            tx.commit().await?;
            let body = match &link {
                Some(link) => message.body.replace(notify::LINK_PLACEHOLDER, link),
                None => message.body.clone(),
            };
            let to = message.recipient.clone().unwrap_or_default();
            // lettre bounds only the connect: a relay that stalls later must not hold the sender
            // (or outlive the lease).
            let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), relay.send(&message, &to, body))
                .await
                .unwrap_or_else(|_| Err((false, "the relay did not answer within 60 seconds".into())));
            let done = self.now();
            message.attempts += 1;
            match outcome {
                Ok(()) => {
                    message.state = State::Sent.as_str().into();
                    message.sent_at = Some(done);
                    message.next_attempt_at = None;
                    message.last_error = None;
                    res.sent += 1;
                }
                Err((permanent, error)) => {
                    tracing::warn!(message = %message.id, attempts = message.attempts, %error, "a notification was not delivered");
                    message.last_error = Some(error);
                    if permanent || done - message.created_at >= notify::GIVE_UP_AFTER {
                        message.state = State::Failed.as_str().into();
                        message.next_attempt_at = None;
                        res.failed += 1;
                    } else {
                        let attempts = u32::try_from(message.attempts).unwrap_or(u32::MAX);
                        message.next_attempt_at = Some(notify::retry_at(attempts, done));
                        res.retrying += 1;
                    }
                }
            }
            // A failure to record the outcome leaves the message to its lease: it is sent again
            // when the lease ends, and the round goes on with the next one.
            let recorded = async {
                let mut tx = self.write().await?;
                let held = tx.finish_message(&message, &lease).await?;
                tx.commit().await?;
                Ok::<bool, AppError>(held)
            };
            match recorded.await {
                Ok(true) => (),
                Ok(false) => tracing::warn!(message = %message.id, "a notification's lease ended while it was sent"),
                Err(err) => {
                    tracing::error!(message = %message.id, error = %err, "a notification's delivery was not recorded")
                }
            }
        }
        Ok(res)
    }

    /// Runs the sender every `every` until the handle is aborted.
    pub fn spawn_notification_sender(
        &self,
        relay: SmtpRelay,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let app = self.clone();
        crate::spawn_every(every, move || {
            let app = app.clone();
            let relay = relay.clone();
            async move {
                if let Err(err) = app.deliver_notifications(&relay).await {
                    tracing::error!(error = %err, "the notification sender failed");
                }
            }
        })
    }

    /// "This wasn't me" (`POST /{tenant}/report-activity`): with a link's token, once, within
    /// [`notify::LINK_LIFETIME`] of the message: ends every session of the user, deletes their
    /// Temporary Access Pass, marks the message, tells the administrators, and records `User
    /// reported suspicious activity`, all in one transaction.
    pub async fn report_suspicious_activity(
        &self,
        tenant_key: &str,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<Reported, AppError> {
        let Some(tenant) = self.find_tenant(tenant_key).await? else { return Ok(Reported::Unusable) };
        if token.is_empty() || token.len() > 100 {
            return Ok(Reported::Unusable);
        }
        let now = self.now();
        let mut tx = self.write().await?;
        let Some(message) = tx.spend_message_link(&crate::sha256(token.as_bytes()), now).await? else {
            return Ok(Reported::Unusable);
        };
        if message.tenant_id != tenant.id {
            return Ok(Reported::Unusable);
        }
        let Some(mut user) = tx.get_user_for_update(&tenant.id, &message.user_id).await? else {
            return Ok(Reported::Unusable);
        };
        // The cut-off once the user's row is held (see `signin_admin::end_sessions`).
        let now = self.now();
        let sessions = crate::signin_admin::end_sessions(&mut *tx, &mut user, now).await?;
        let devices = crate::signin_admin::forget_mfa_devices(&mut *tx, &user, now).await?;
        let pass_removed = tx.delete_temporary_access_pass(&user.id, None).await?;
        let context = AuditContext {
            tenant_id: tenant.id.clone(),
            correlation_id: meta.correlation_id.clone(),
            at: now,
            initiated_by: Initiator::User {
                id: user.id.clone(),
                display_name: user.display_name.clone(),
                user_principal_name: user.user_principal_name.clone(),
                ip_address: meta.ip_address.clone(),
            },
        };
        let mut report = context.success(
            audit_id(&context.correlation_id),
            Activity::UserReportedSuspiciousActivity,
            vec![TargetResource::user(&user)],
        );
        report.result_reason = "User reported that a change to their security info was not them".into();
        report.additional_details = vec![
            ("ReportedNotification".into(), message.id.clone()),
            ("ReportedCorrelationId".into(), message.correlation_id.clone()),
            ("TemporaryAccessPassRemoved".into(), pass_removed.to_string()),
        ];
        let mut records = vec![
            report,
            context.success(
                audit_id(&context.correlation_id),
                Activity::UpdateStsRefreshTokenValidFrom,
                vec![sessions],
            ),
            context.success(
                audit_id(&context.correlation_id),
                Activity::UpdateUser,
                vec![TargetResource::user(&user).with_changes(vec![devices])],
            ),
        ];
        if pass_removed {
            let mut removed = context.success(
                audit_id(&context.correlation_id),
                Activity::UserDeletedSecurityInfo,
                vec![TargetResource::user(&user)],
            );
            removed.result_reason = "User deleted temporary access pass method".into();
            records.push(removed);
        }
        let alert = notify::suspicious_activity_message(
            &tenant.display_name,
            &user.display_name,
            &user.user_principal_name,
            now,
        );
        let administrators_told = stage_for_administrators(
            &mut *tx,
            &tenant,
            Kind::SuspiciousActivityReported,
            &alert,
            &meta.correlation_id,
            now,
            &user.id,
        )
        .await?;
        commit_audited(tx, records).await?;
        Ok(Reported::Done { display_name: user.display_name, administrators_told })
    }

    /// Tells the administrators that `caller` reached a per-agent limit (`refusal`), in the
    /// refusal's transaction: once an hour per agent, so an agent hammering at the limit does not
    /// flood their mailboxes.
    pub(crate) async fn alert_agent_limit(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        refusal: &str,
        now: OffsetDateTime,
    ) -> Result<(), AppError> {
        const ALERTED: &str = "limitAlerted";
        let tenant = &caller.tenant;
        let agent = caller.id().as_str();
        if tx.count_agent_actions(&tenant.id, agent, ALERTED, now - time::Duration::hours(1)).await? > 0 {
            return Ok(());
        }
        tx.record_agent_action(&tenant.id, agent, ALERTED, now).await?;
        let name = match &caller.principal {
            crate::Principal::User(user) => format!("{} ({})", user.display_name, user.user_principal_name),
            crate::Principal::App(app) => format!("the application {}", app.display_name),
        };
        let message = notify::agent_limit_message(&tenant.display_name, &name, refusal, now);
        let correlation_id = &caller.meta.correlation_id;
        stage_for_administrators(tx, tenant, Kind::AgentLimitReached, &message, correlation_id, now, caller.id())
            .await?;
        Ok(())
    }
}
