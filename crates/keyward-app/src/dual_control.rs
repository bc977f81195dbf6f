//! Dual control (`keyward_core::dual_control`): a covered change to a privileged user becomes a
//! request (`AppError::HeldForApproval`, `202` in the API) instead of running; another
//! administrator who could make the change approves it, and it runs then, as the requester, in
//! the approval's own transaction, with both names in its audit records.
//!
//! Each covered use case asks [`App::dual_control_gate`] once it has authorised its caller, inside
//! its write transaction. On an ordinary request the gate says whether to hold; on the approved
//! run (the caller carries an [`Approval`]) it decides the request (once, across nodes: a guarded
//! update) and records the approval, so the change, the decision and both records commit together.

use keyward_core::audit::{Activity, TargetResource};
use keyward_core::auth_methods::TapRequest;
use keyward_core::authz::{Target, actions, built_in_role};
use keyward_core::directory::User;
use keyward_core::dual_control::{self, MethodKind, Operation, Status};
use keyward_core::ids::ObjectId;
use keyward_core::secret::Secret;
use keyward_store::{ServiceDeskRequest, Tx};
use time::OffsetDateTime;

use crate::auth_methods::Who;
use crate::facts::user_facts;
use crate::notifications::stage_for_administrators;
use crate::tokens::{load_actor, load_user_actor};
use crate::{App, AppError, Caller, Principal, RequestMeta, commit_audited, require};
use keyward_core::notify::{self, Kind};

/// A held change being run on its approval: the request and the approver.
#[derive(Debug, Clone)]
pub struct Approval {
    pub(crate) request: ServiceDeskRequest,
    pub(crate) approver: Caller,
    pub(crate) justification: String,
}

impl Approval {
    /// What the change's audit records carry besides the requester as initiator.
    pub(crate) fn details(&self) -> Vec<(String, String)> {
        vec![
            ("ServiceDeskRequestId".into(), self.request.id.to_string()),
            ("ApprovedBy".into(), party_name(&self.approver)),
            ("ApprovedById".into(), self.approver.id().to_string()),
        ]
    }

    /// The secret chosen when the change was asked for: a pass's SHA-256 or a password's hash.
    pub(crate) fn secret_hash(&self) -> Option<&str> {
        self.request.secret_hash.as_deref()
    }
}

fn party_name(caller: &Caller) -> String {
    match &caller.principal {
        Principal::User(user) => user.user_principal_name.clone(),
        Principal::App(app) => app.display_name.clone(),
    }
}

/// Someone a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub id: ObjectId,
    pub display_name: Option<String>,
    pub user_principal_name: Option<String>,
}

/// A held change as the API and the portal show it (never its secret).
#[derive(Debug, Clone)]
pub struct RequestView {
    pub id: ObjectId,
    pub operation: Operation,
    pub status: Status,
    pub requester: Party,
    pub target: Party,
    pub created: OffsetDateTime,
    pub expires: OffsetDateTime,
    pub decided_by: Option<Party>,
    pub decided: Option<OffsetDateTime>,
    pub decision_note: Option<String>,
    /// Whether the caller reading it may approve or deny it now.
    pub can_decide: bool,
}

/// A change held for approval: the request and, when the change creates one, the pass or the
/// password chosen now, shown to the requester only here and valid only once approved.
#[derive(Debug, Clone)]
pub struct Held {
    pub request: RequestView,
    pub temporary_access_pass: Option<Secret>,
    pub password: Option<Secret>,
}

/// What the gate says to a covered change.
pub(crate) enum Gate {
    Run,
    Hold(When),
}

/// When a held change was asked for, and when its request expires.
pub(crate) struct When {
    now: OffsetDateTime,
    expires: OffsetDateTime,
}

/// What a held change keeps to run later.
pub(crate) enum Kept {
    Nothing,
    Pass(Secret, Vec<u8>),
    Password(Option<Secret>, String),
}

/// The operation a stored request runs.
fn operation_of(request: &ServiceDeskRequest) -> Result<Operation, AppError> {
    let pass = || TapRequest {
        start: request.pass_start,
        lifetime_minutes: request.pass_lifetime_minutes,
        is_usable_once: request.pass_usable_once,
    };
    let corrupt = || AppError::Unexpected(anyhow::anyhow!("service desk request {} is unreadable", request.id));
    Ok(match request.operation.as_str() {
        "createTemporaryAccessPass" => Operation::CreatePass(pass()),
        "resetPassword" => Operation::ResetPassword,
        "requireMfaReregistration" => Operation::RequireReregistration,
        "resetMfa" => Operation::ResetMfa { pass: request.secret_hash.is_some().then(pass) },
        "deleteMethod" => Operation::DeleteMethod {
            kind: request.method_kind.as_deref().and_then(MethodKind::parse).ok_or_else(corrupt)?,
            id: request.method_id.clone().ok_or_else(corrupt)?,
        },
        _ => return Err(corrupt()),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|it| format!("{it:02x}")).collect()
}

/// The SHA-256 a held pass was kept as.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len()).step_by(2).map(|at| text.get(at..at + 2).and_then(|it| u8::from_str_radix(it, 16).ok())).collect()
}

impl App {
    /// Whether a covered change by `caller` to `user` runs now or is held. On an approved run it
    /// decides the request instead, in `tx`: the approver must still be allowed to make the change,
    /// and the request must still wait (not decided meanwhile, not expired).
    pub(crate) async fn dual_control_gate(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        user: &User,
        op: &Operation,
        now: OffsetDateTime,
    ) -> Result<Gate, AppError> {
        if let Some(approval) = &caller.approval {
            self.decide_in(tx, approval, user, op, now).await?;
            return Ok(Gate::Run);
        }
        Ok(match self.covered(tx, caller, user, now).await? {
            Some(when) => Gate::Hold(when),
            None => Gate::Run,
        })
    }

    /// Refuses a change dual control cannot hold (provisioning a passkey for someone else, a
    /// ceremony with the administrator's authenticator) when the policy covers the user.
    pub(crate) async fn refuse_if_covered(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        user: &User,
        now: OffsetDateTime,
    ) -> Result<(), AppError> {
        if self.covered(tx, caller, user, now).await?.is_some() {
            return Err(AppError::Forbidden {
                rule: "dual-control-covered",
                message: "Dual control covers this user, and a passkey made by an administrator cannot wait for a \
                          second one: create a Temporary Access Pass instead (another administrator approves it), \
                          and let the user register their own passkey with it."
                    .into(),
            });
        }
        Ok(())
    }

    /// When the policy holds a change by `caller` to `user`: `Some` with when the request would
    /// expire. Never for one's own account.
    async fn covered(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        user: &User,
        now: OffsetDateTime,
    ) -> Result<Option<When>, AppError> {
        if user.id == *caller.id() {
            return Ok(None);
        }
        let tenant = &caller.tenant;
        let policy = tx.dual_control_policy(&tenant.id).await?;
        if !policy.is_enabled {
            return Ok(None);
        }
        let privileged = is_privileged_target(tx, tenant, user).await?;
        let in_group = match &policy.group_id {
            Some(group) if !privileged => crate::relationships::transitive_groups(tx, &user.id).await?.contains(group),
            _ => false,
        };
        Ok(policy.holds(privileged, in_group).then(|| When { now, expires: dual_control::expires_at(&policy, now) }))
    }

    /// Holds a change: writes the request (with the secret's hash, when it makes one) and its
    /// `Request approval of a service desk change` record, commits, and answers with the request.
    pub(crate) async fn hold(
        &self,
        mut tx: Box<dyn Tx>,
        caller: &Caller,
        user: &User,
        op: Operation,
        kept: Kept,
        when: When,
    ) -> AppError {
        let When { now, expires } = when;
        let pass = op.pass().copied();
        let (method_kind, method_id) = match &op {
            Operation::DeleteMethod { kind, id } => (Some(kind.as_str().to_owned()), Some(id.clone())),
            _ => (None, None),
        };
        let (secret_hash, temporary_access_pass, password) = match kept {
            Kept::Nothing => (None, None, None),
            Kept::Pass(secret, hash) => (Some(hex(&hash)), Some(secret), None),
            Kept::Password(secret, hash) => (Some(hash), None, secret),
        };
        let request = ServiceDeskRequest {
            id: ObjectId::from_bytes(*uuid::Uuid::now_v7().as_bytes()),
            tenant_id: caller.tenant.id.clone(),
            requester_id: caller.id().clone(),
            requester_is_app: caller.user().is_none(),
            requester_scopes: caller.scopes.as_ref().map(|it| it.join(" ")),
            requester_ip: caller.meta.ip_address.clone(),
            target_id: user.id.clone(),
            operation: op.name().to_owned(),
            pass_start: pass.and_then(|it| it.start),
            pass_lifetime_minutes: pass.and_then(|it| it.lifetime_minutes),
            pass_usable_once: pass.and_then(|it| it.is_usable_once),
            method_kind,
            method_id,
            secret_hash,
            justification: None,
            created_at: now,
            expires_at: expires,
            status: Status::PendingApproval.as_str().to_owned(),
            decided_by: None,
            decided_at: None,
            decision_note: None,
            correlation_id: caller.meta.correlation_id.clone(),
        };
        let written = async {
            // One agent cannot bury the approvers under requests.
            let waiting = tx.count_pending_service_desk_requests(&caller.tenant.id, caller.id(), now).await?;
            if waiting >= PENDING_PER_REQUESTER {
                return Err(AppError::Forbidden {
                    rule: "dual-control-pending-limit",
                    message: format!(
                        "You have {waiting} requests waiting for approval, the most one administrator may have: \
                         wait until they are decided or expire."
                    ),
                });
            }
            tx.insert_service_desk_request(&request).await?;
            let mut record =
                caller.succeeded(now, Activity::RequestServiceDeskApproval, vec![TargetResource::user(user)]);
            record.result_reason = format!("{} held for a second administrator's approval", op.describe());
            record.additional_details = vec![
                ("ServiceDeskRequestId".into(), request.id.to_string()),
                ("Operation".into(), op.name().into()),
                ("ExpiresDateTime".into(), crate::rfc3339(request.expires_at)),
            ];
            let message = notify::approval_message(
                &caller.tenant.display_name,
                &party_name(caller),
                &op.describe(),
                &format!("{} ({})", user.display_name, user.user_principal_name),
                request.expires_at,
                &format!("{}/{}/admin/approvals", self.config().public_url, caller.tenant.id),
            );
            let (tenant, correlation_id) = (&caller.tenant, &caller.meta.correlation_id);
            stage_for_administrators(
                &mut *tx,
                tenant,
                Kind::ApprovalRequested,
                &message,
                correlation_id,
                now,
                caller.id(),
            )
            .await?;
            let detail = format!("held for approval: request {}", request.id);
            let held = keyward_core::bulk::ItemState::Held;
            crate::bulk::finish_item_in(&mut *tx, std::slice::from_ref(&record), held, Some(&detail)).await?;
            commit_audited(tx, [record]).await
        };
        if let Err(err) = written.await {
            return err;
        }
        let view = RequestView {
            id: request.id.clone(),
            operation: op,
            status: Status::PendingApproval,
            requester: party_of_caller(caller),
            target: party_of_user(user),
            created: now,
            expires: request.expires_at,
            decided_by: None,
            decided: None,
            decision_note: None,
            can_decide: false,
        };
        AppError::HeldForApproval(Box::new(Held { request: view, temporary_access_pass, password }))
    }

    /// The approved run's part of the gate, in the change's transaction.
    async fn decide_in(
        &self,
        tx: &mut dyn Tx,
        approval: &Approval,
        user: &User,
        op: &Operation,
        now: OffsetDateTime,
    ) -> Result<(), AppError> {
        let request = &approval.request;
        if request.target_id != user.id || request.operation != op.name() {
            return Err(AppError::Conflict("The approved request does not match the change run for it.".into()));
        }
        let approver = &approval.approver;
        let facts = user_facts(tx, &approver.tenant, user).await?;
        if op.actions().into_iter().any(|action| require(approver, action, Target::User(&facts)).is_err()) {
            return Err(AppError::Forbidden {
                rule: dual_control::RULE_APPROVER,
                message: "You may not make this change to the user yourself, so you cannot approve it.".into(),
            });
        }
        // The requester again, in the change's own transaction and after the role-change lock
        // `user_facts` took: disabled, deleted, their sessions revoked or the role the change
        // needs lost since the approval first looked, and it does not run.
        let requester = load_requester(tx, approver, request).await?;
        if op.actions().into_iter().any(|action| require(&requester, action, Target::User(&facts)).is_err()) {
            return Err(AppError::Forbidden {
                rule: "stored-caller",
                message: "The requester may no longer make this change to the user: their request no longer counts."
                    .into(),
            });
        }
        let completed = Status::Completed.as_str();
        let note = Some(approval.justification.as_str());
        if !tx.decide_service_desk_request(&request.tenant_id, &request.id, completed, approver.id(), now, note).await?
        {
            return Err(decided_meanwhile());
        }
        let mut record = approver.succeeded(now, Activity::ApproveServiceDeskChange, vec![TargetResource::user(user)]);
        record.result_reason = format!("{} approved; it ran as the requester", op.describe());
        record.additional_details = vec![
            ("ServiceDeskRequestId".into(), request.id.to_string()),
            ("Operation".into(), op.name().into()),
            ("RequestedById".into(), request.requester_id.to_string()),
            ("Justification".into(), approval.justification.clone()),
        ];
        // The record is written with the change's own records at its commit, not now: writing it
        // takes the tenant's audit chain head, and the change may still take an agent's or a
        // sign-in state's lock, which every other path takes before the head.
        crate::notifications::stage(tx, std::slice::from_ref(&record)).await?;
        tx.defer_audit(record);
        Ok(())
    }

    /// Whether `caller` may decide `request` on `target` (`facts` loaded in `tx`): not its
    /// requester, not its target, and allowed to make the change themselves.
    async fn may_decide(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        request: &ServiceDeskRequest,
        target: &User,
        op: &Operation,
    ) -> Result<Result<(), AppError>, AppError> {
        if let Err(message) = dual_control::check_decider(&request.requester_id, &request.target_id, caller.id()) {
            return Ok(Err(AppError::Forbidden { rule: dual_control::RULE_NO_SELF_APPROVAL, message }));
        }
        let facts = user_facts(tx, &caller.tenant, target).await?;
        for action in op.actions() {
            if require(caller, action, Target::User(&facts)).is_err() {
                return Ok(Err(AppError::Forbidden {
                    rule: dual_control::RULE_APPROVER,
                    message: "You may not make this change to the user yourself, so you cannot approve or deny it."
                        .into(),
                }));
            }
        }
        Ok(Ok(()))
    }

    async fn view_of(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        request: ServiceDeskRequest,
        now: OffsetDateTime,
    ) -> Result<Option<RequestView>, AppError> {
        let op = operation_of(&request)?;
        let target = tx.get_user(&caller.tenant.id, &request.target_id).await?;
        let stored = Status::parse(&request.status).unwrap_or(Status::Failed);
        let status = Status::at(stored, request.expires_at, now);
        let may_decide = match &target {
            Some(user) => self.may_decide(tx, caller, &request, user, &op).await?.is_ok(),
            None => false,
        };
        let can_decide = may_decide && status == Status::PendingApproval;
        // Visible to its requester, to whoever decided it or may decide it, and to readers of the
        // audit log.
        let visible = may_decide
            || request.requester_id == *caller.id()
            || request.decided_by.as_ref() == Some(caller.id())
            || require(caller, actions::AUDIT_LOGS_READ, Target::Tenant).is_ok();
        if !visible {
            return Ok(None);
        }
        let requester = party(tx, &caller.tenant.id, &request.requester_id, request.requester_is_app).await?;
        let decided_by = match &request.decided_by {
            Some(id) => Some(party(tx, &caller.tenant.id, id, false).await?),
            None => None,
        };
        Ok(Some(RequestView {
            id: request.id,
            operation: op,
            status,
            requester,
            target: target.as_ref().map_or_else(
                || Party { id: request.target_id.clone(), display_name: None, user_principal_name: None },
                party_of_user,
            ),
            created: request.created_at,
            expires: request.expires_at,
            decided_by,
            decided: request.decided_at,
            decision_note: request.decision_note,
            can_decide,
        }))
    }

    /// `GET /beta/keyward/serviceDeskRequests`: the requests the caller may see (their own, those
    /// they may decide, or all for readers of the audit log), newest first; `pending` keeps only
    /// those waiting.
    pub async fn list_service_desk_requests(
        &self,
        caller: &Caller,
        pending: bool,
        top: Option<&str>,
        skiptoken: Option<&str>,
    ) -> Result<(Vec<RequestView>, Option<String>), AppError> {
        let top = crate::directory::page_size(top)?;
        let before = crate::directory::decode_id_skiptoken(skiptoken)?
            .map(|it| ObjectId::parse(&it).ok_or_else(|| AppError::BadRequest("The $skiptoken is not valid.".into())))
            .transpose()?;
        if caller.actor.roles.is_empty() {
            return Err(AppError::Forbidden {
                rule: dual_control::RULE_APPROVER,
                message: "Only administrators see the service desk's requests.".into(),
            });
        }
        let now = self.now();
        let mut tx = self.read().await?;
        let mut res = Vec::new();
        let mut before = before;
        // Visibility is decided per request: one page reads at most this many, then says where to
        // go on, so a tenant with many requests cannot make one read long.
        let mut budget: usize = 1_000;
        // Filtered after reading (visibility needs each target's facts): read in batches until
        // the page is full.
        loop {
            let batch = tx.list_service_desk_requests(&caller.tenant.id, before.as_ref(), 200).await?;
            budget = budget.saturating_sub(batch.len());
            let last = batch.last().map(|it| it.id.clone());
            let done = batch.len() < 200;
            for request in batch {
                let id = request.id.clone();
                if let Some(view) = self.view_of(&mut *tx, caller, request, now).await?
                    && (!pending || view.status == Status::PendingApproval)
                {
                    if res.len() == top {
                        let last: &RequestView = &res[top - 1];
                        return Ok((res.clone(), Some(crate::directory::id_skiptoken(last.id.as_str()))));
                    }
                    res.push(view);
                }
                before = Some(id);
            }
            if done || last.is_none() {
                return Ok((res, None));
            }
            if budget == 0 {
                let token = before.as_ref().map(|it| crate::directory::id_skiptoken(it.as_str()));
                return Ok((res, token));
            }
        }
    }

    /// `GET /beta/keyward/serviceDeskRequests/{id}`.
    pub async fn get_service_desk_request(&self, caller: &Caller, id: &str) -> Result<RequestView, AppError> {
        let not_found = || AppError::NotFound(id.to_owned());
        let request_id = ObjectId::parse(id).ok_or_else(not_found)?;
        let mut tx = self.read().await?;
        let request = tx.get_service_desk_request(&caller.tenant.id, &request_id).await?.ok_or_else(not_found)?;
        self.view_of(&mut *tx, caller, request, self.now()).await?.ok_or_else(not_found)
    }

    /// `POST /beta/keyward/serviceDeskRequests/{id}/approve` and `…/deny`: a second administrator
    /// decides, with a justification. An approval runs the change as the requester (whose rights
    /// and limits are checked again now); if it cannot run, the request is marked failed and the
    /// answer says why. Audited as `Approve service desk change` / `Deny service desk change`.
    pub async fn decide_service_desk_request(
        &self,
        caller: &Caller,
        id: &str,
        approve: bool,
        justification: Option<String>,
    ) -> Result<RequestView, AppError> {
        let now = self.now();
        let not_found = || AppError::NotFound(id.to_owned());
        let request_id = ObjectId::parse(id).ok_or_else(not_found)?;
        let activity = if approve { Activity::ApproveServiceDeskChange } else { Activity::DenyServiceDeskChange };
        let mut tx = self.write().await?;
        let request = tx.get_service_desk_request(&caller.tenant.id, &request_id).await?.ok_or_else(not_found)?;
        let op = operation_of(&request)?;
        // Who is no party to the request and may not decide it learns nothing of it: `404`, as
        // for a request that does not exist, and no audit record.
        let is_party = request.requester_id == *caller.id()
            || request.target_id == *caller.id()
            || require(caller, actions::AUDIT_LOGS_READ, Target::Tenant).is_ok();
        let Some(target) = tx.get_user(&caller.tenant.id, &request.target_id).await? else {
            if !is_party {
                return Err(not_found());
            }
            return Err(AppError::Rejected {
                code: "ServiceDeskTargetGone",
                message: "The user this request is about no longer exists: nothing to decide.".into(),
            });
        };
        if let Err(err) = self.may_decide(&mut *tx, caller, &request, &target, &op).await? {
            if !is_party {
                return Err(not_found());
            }
            return Err(self.refused(Some(tx), caller, activity, vec![TargetResource::user(&target)], err).await);
        }
        // An approval is a person's, fresh from MFA: not an application (whose credentials the
        // requester might hold), not a session that has not seen a second factor for an hour.
        if approve && let Err(err) = approver_signed_in_with_mfa(caller, now) {
            return Err(self.refused(Some(tx), caller, activity, vec![TargetResource::user(&target)], err).await);
        }
        let stored = Status::parse(&request.status).unwrap_or(Status::Failed);
        match Status::at(stored, request.expires_at, now) {
            Status::PendingApproval => (),
            Status::Expired => {
                return Err(AppError::Rejected {
                    code: "RequestExpired",
                    message: "Nobody decided in time, so the request expired and nothing ran: the requester must ask \
                              again."
                        .into(),
                });
            }
            other => {
                return Err(AppError::Conflict(format!("The request was already decided: it is {}.", other.as_str())));
            }
        }
        let justification = justification.map(|it| it.trim().to_owned()).filter(|it| !it.is_empty());
        let Some(justification) = justification else {
            return Err(AppError::BadRequest("A justification is required to approve or deny.".into()));
        };
        if justification.chars().count() > 500 {
            return Err(AppError::BadRequest("The justification is longer than 500 characters.".into()));
        }
        if !approve {
            let denied = Status::Denied.as_str();
            let note = Some(justification.as_str());
            if !tx.decide_service_desk_request(&caller.tenant.id, &request.id, denied, caller.id(), now, note).await? {
                return Err(decided_meanwhile());
            }
            let mut record = caller.succeeded(now, activity, vec![TargetResource::user(&target)]);
            record.result_reason = format!("{} denied", op.describe());
            record.additional_details = vec![
                ("ServiceDeskRequestId".into(), request.id.to_string()),
                ("Operation".into(), op.name().into()),
                ("RequestedById".into(), request.requester_id.to_string()),
                ("Justification".into(), justification),
            ];
            commit_audited(tx, [record]).await?;
            return self.get_service_desk_request(caller, id).await;
        }
        // The requester, as they are now: a disabled or deleted requester cannot act.
        let requester = self.requester_caller(&mut *tx, caller, &request, justification).await;
        drop(tx);
        let ran = match requester {
            Ok(requester) => self.run_approved(&requester, &request, op).await,
            Err(err) => Err(err),
        };
        match ran {
            Ok(()) => self.get_service_desk_request(caller, id).await,
            // Nothing ran and the request still stands (decided by someone else, or the approver
            // may not), or the server failed or is busy: the answer says so, the request is not
            // touched, and the approval may be tried again.
            Err(
                err @ (AppError::Conflict(_)
                | AppError::Unexpected(_)
                | AppError::Overloaded { .. }
                | AppError::TooManyRequests { .. }),
            ) => Err(err),
            Err(AppError::Forbidden { rule, message }) if rule == dual_control::RULE_APPROVER => {
                Err(AppError::Forbidden { rule, message })
            }
            Err(err) => {
                let reason = err.to_string();
                let mut tx = self.write().await?;
                let failed = Status::Failed.as_str();
                let marked = tx
                    .decide_service_desk_request(
                        &caller.tenant.id,
                        &request.id,
                        failed,
                        caller.id(),
                        now,
                        Some(&reason),
                    )
                    .await?;
                tx.commit().await?;
                if !marked {
                    return Err(decided_meanwhile());
                }
                Err(AppError::Rejected {
                    code: "ServiceDeskChangeFailed",
                    message: format!(
                        "The change could not run as the requester: {reason} The request is now failed; the \
                         requester must ask again if it is still needed."
                    ),
                })
            }
        }
    }

    /// The requester of `request` as a caller now, carrying the approval.
    async fn requester_caller(
        &self,
        tx: &mut dyn Tx,
        approver: &Caller,
        request: &ServiceDeskRequest,
        justification: String,
    ) -> Result<Caller, AppError> {
        let mut caller = load_requester(tx, approver, request).await?;
        caller.approval =
            Some(Box::new(Approval { request: request.clone(), approver: approver.clone(), justification }));
        Ok(caller)
    }

    async fn run_approved(
        &self,
        requester: &Caller,
        request: &ServiceDeskRequest,
        op: Operation,
    ) -> Result<(), AppError> {
        let target = request.target_id.to_string();
        let key = target.as_str();
        match op {
            Operation::CreatePass(pass) => self.create_tap(requester, key, pass).await.map(drop),
            Operation::ResetPassword => self.reset_password(requester, key, None).await.map(drop),
            Operation::RequireReregistration => self.require_mfa_reregistration(requester, key).await,
            Operation::ResetMfa { pass } => self.reset_mfa(requester, key, pass).await.map(drop),
            Operation::DeleteMethod { kind, id } => match kind {
                MethodKind::SoftwareOath => self.delete_software_oath(requester, Who::User(key), &id).await,
                MethodKind::Phone => {
                    let phone = keyward_core::auth_methods::PhoneType::from_id(&id)
                        .ok_or_else(|| AppError::NotFound(id.clone()))?;
                    self.delete_phone(requester, Who::User(key), phone).await
                }
                MethodKind::Email => self.delete_email(requester, Who::User(key)).await,
                MethodKind::Passkey => self.delete_passkey(requester, Who::User(key), &id).await,
                MethodKind::TemporaryAccessPass => self.delete_tap(requester, key, &id).await,
            },
        }
    }
}

/// The requester of `request` as they are now, under the approval's correlation id (which ties
/// the approval and the change's records together): refused when their account no longer exists,
/// is disabled, or their sessions were revoked (or their password reset) since they asked, the
/// answer to a stolen account, whose requests must not outlive it.
async fn load_requester(tx: &mut dyn Tx, approver: &Caller, request: &ServiceDeskRequest) -> Result<Caller, AppError> {
    let stored = StoredCaller {
        id: &request.requester_id,
        is_app: request.requester_is_app,
        scopes: request.requester_scopes.as_deref(),
        ip_address: request.requester_ip.as_deref(),
    };
    let caller = stored.load(tx, &approver.tenant, &approver.meta.correlation_id).await?;
    if caller.user().is_some_and(|it| it.sign_in_sessions_valid_from > request.created_at) {
        return Err(AppError::Forbidden {
            rule: "stored-caller",
            message: "The requester's sessions were revoked after they asked: their request no longer counts.".into(),
        });
    }
    Ok(caller)
}

/// Whether `user` counts as privileged: holds or may activate a privileged role, or is a member
/// or owner of a role-assignable group (an owner can make themselves a member, and such a group
/// may be given a privileged role at any time).
pub(crate) async fn is_privileged_target(
    tx: &mut dyn Tx,
    tenant: &keyward_core::directory::Tenant,
    user: &User,
) -> Result<bool, AppError> {
    let facts = user_facts(tx, tenant, user).await?;
    let needs_custom = facts.role_ids.iter().any(|it| built_in_role(it).is_none());
    let custom = if needs_custom { tx.list_custom_roles(&tenant.id).await? } else { Vec::new() };
    Ok(facts.is_role_assignable_group_member_or_owner
        || keyward_core::signin::holds_privileged_role(facts.role_ids.iter().map(String::as_str), &custom))
}

/// A caller as a request or a job stored it, to act as them later.
pub(crate) struct StoredCaller<'a> {
    pub(crate) id: &'a ObjectId,
    pub(crate) is_app: bool,
    /// The delegated permissions, space-separated (`None`: app-only or the portal).
    pub(crate) scopes: Option<&'a str>,
    pub(crate) ip_address: Option<&'a str>,
}

impl StoredCaller<'_> {
    /// The caller as they are now (roles, account), under `correlation_id`: refused when their
    /// account no longer exists or is disabled.
    pub(crate) async fn load(
        &self,
        tx: &mut dyn Tx,
        tenant: &keyward_core::directory::Tenant,
        correlation_id: &str,
    ) -> Result<Caller, AppError> {
        let gone = || AppError::Forbidden {
            rule: "stored-caller",
            message: "The account that asked for this no longer exists or is disabled.".into(),
        };
        let (principal, actor) = if self.is_app {
            let app = tx.get_service_principal(&tenant.id, self.id).await?.ok_or_else(gone)?;
            if !app.account_enabled {
                return Err(gone());
            }
            let actor = load_actor(tx, tenant, &app.id).await?;
            (Principal::App(app), actor)
        } else {
            let user = tx.get_user(&tenant.id, self.id).await?.ok_or_else(gone)?;
            if !user.account_enabled {
                return Err(gone());
            }
            let actor = load_user_actor(tx, tenant, &user).await?;
            (Principal::User(std::sync::Arc::new(user)), actor)
        };
        Ok(Caller {
            tenant: tenant.clone(),
            principal,
            actor,
            meta: RequestMeta {
                correlation_id: correlation_id.to_owned(),
                ip_address: self.ip_address.map(str::to_owned),
                user_agent: None,
            },
            scopes: self.scopes.map(|it| it.split(' ').map(str::to_owned).collect()),
            authentication: None,
            approval: None,
        })
    }
}

/// How many requests one requester may have waiting at once.
const PENDING_PER_REQUESTER: i64 = 20;

/// How recent the approver's MFA must be.
const APPROVAL_MFA_WINDOW: time::Duration = time::Duration::hours(1);

fn approver_signed_in_with_mfa(caller: &Caller, now: OffsetDateTime) -> Result<(), AppError> {
    if caller.user().is_some() && caller.has_mfa_within(now, APPROVAL_MFA_WINDOW) {
        return Ok(());
    }
    Err(AppError::Forbidden {
        rule: dual_control::RULE_APPROVER,
        message: "Approving needs a person signed in with multi-factor authentication within the last hour (not an \
                  application): sign in again with your second factor, then approve."
            .into(),
    })
}

fn decided_meanwhile() -> AppError {
    AppError::Conflict("The request was decided meanwhile (or has just expired): nothing ran.".into())
}

fn party_of_user(user: &User) -> Party {
    Party {
        id: user.id.clone(),
        display_name: Some(user.display_name.clone()),
        user_principal_name: Some(user.user_principal_name.clone()),
    }
}

fn party_of_caller(caller: &Caller) -> Party {
    match &caller.principal {
        Principal::User(user) => party_of_user(user),
        Principal::App(app) => {
            Party { id: app.id.clone(), display_name: Some(app.display_name.clone()), user_principal_name: None }
        }
    }
}

async fn party(tx: &mut dyn Tx, tenant: &ObjectId, id: &ObjectId, is_app: bool) -> Result<Party, AppError> {
    if !is_app && let Some(user) = tx.get_user(tenant, id).await? {
        return Ok(party_of_user(&user));
    }
    if let Some(app) = tx.get_service_principal(tenant, id).await? {
        return Ok(Party { id: id.clone(), display_name: Some(app.display_name), user_principal_name: None });
    }
    Ok(Party { id: id.clone(), display_name: None, user_principal_name: None })
}
