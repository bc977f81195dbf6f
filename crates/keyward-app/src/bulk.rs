//! Bulk operations run by the server (`keyward_core::bulk`): one service-desk change for the
//! users of a group, an administrative unit, a `$filter` or a list (a CSV).
//!
//! A dry run reads only: each user would be changed, is already in the target state, would be
//! held by dual control, or would be refused, and why. A real run writes the job and its users,
//! then changes each user through the same use case as Graph (its rules, its audit record), as
//! the caller. The use case's transaction also marks the user's item done (`commit_audited` takes
//! it from a task-local), so a crash loses nothing and repeats nothing: a node whose lease on the
//! job lapsed is replaced by another, which does the items still pending. A summary record
//! (`Complete bulk operation`) is written when the last item is done.

use std::cell::RefCell;

use keyward_core::audit::{Activity, AuditRecord, AuditResult};
use keyward_core::authz::{Target, actions};
use keyward_core::bulk::{self, ItemState, Operation};
use keyward_core::directory::User;
use keyward_core::ids::ObjectId;
use keyward_core::query::RawQuery;
use keyward_store::{BulkItem, BulkJob, Tx};
use time::{Duration, OffsetDateTime};

use crate::directory::resolve_user;
use crate::dual_control::StoredCaller;
use crate::facts::user_facts;
use crate::{App, AppError, Caller, require};

/// How long a node holds a running job before another may take it over.
const LEASE: Duration = Duration::minutes(2);
/// Items read at a time.
const BATCH: usize = 20;
/// Users planned per read transaction (facts take the tenant's role-change lock, shared: role
/// changes wait for the chunk).
const PLAN_CHUNK: usize = 50;
/// Running jobs at once, per caller and per tenant.
const RUNNING_PER_CALLER: i64 = 2;
const RUNNING_PER_TENANT: i64 = 10;
/// The detail of an item another node finished first (see `finish_item_in`).
const DONE_ELSEWHERE: &str = "This user of the bulk operation was done by another node.";

/// Where a bulk operation's users come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The group's members, directly and through nested groups (users only).
    Group(String),
    /// The administrative unit's user members.
    Unit(String),
    /// The users a `$filter` on `/users` selects.
    Filter(String),
    /// Users by user principal name or id (a CSV's column, or a list).
    Users(Vec<String>),
}

/// A bulk operation as asked.
#[derive(Debug, Clone)]
pub struct BulkRequest {
    pub operation: Operation,
    pub source: Source,
    pub dry_run: bool,
}

/// One user's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemView {
    pub position: i64,
    pub user_key: String,
    pub user_id: Option<ObjectId>,
    pub state: ItemState,
    pub detail: Option<String>,
}

/// A bulk operation and how far it is.
#[derive(Debug, Clone)]
pub struct JobView {
    /// `None` for a dry run, which is not kept.
    pub id: Option<ObjectId>,
    pub operation: Operation,
    pub source: String,
    /// `dryRun`, `running` or `completed`.
    pub status: &'static str,
    pub created: OffsetDateTime,
    pub finished: Option<OffsetDateTime>,
    /// Users in each state, in `ItemState::ALL`'s order.
    pub counts: [usize; 7],
}

/// A started bulk operation: the job and its first items (a dry run: all of them).
#[derive(Debug, Clone)]
pub struct Started {
    pub job: JobView,
    pub items: Vec<ItemView>,
}

/// The item a use case running inside a bulk operation is for.
#[derive(Debug, Clone)]
struct ItemRef {
    job: ObjectId,
    position: i64,
}

tokio::task_local! {
    static ITEM: RefCell<Option<ItemRef>>;
}

/// The bulk item of the change being committed, if this change runs for one; taken once.
fn take_item() -> Option<ItemRef> {
    ITEM.try_with(|it| it.borrow_mut().take()).ok().flatten()
}

/// Marks the bulk item this change runs for (if any) with `state`, in the change's transaction:
/// done, from `commit_audited` when every record of the change is a success; held, from dual
/// control's hold. Refused when another node finished the item first, which rolls the change back.
pub(crate) async fn finish_item_in(
    tx: &mut dyn Tx,
    records: &[AuditRecord],
    state: ItemState,
    detail: Option<&str>,
) -> Result<(), AppError> {
    if records.is_empty() || records.iter().any(|it| it.result != AuditResult::Success) {
        return Ok(());
    }
    let Some(item) = take_item() else { return Ok(()) };
    if !tx.finish_bulk_item(&item.job, item.position, state.as_str(), detail).await? {
        return Err(AppError::Conflict(DONE_ELSEWHERE.into()));
    }
    Ok(())
}

fn operation_of(job: &BulkJob) -> Result<Operation, AppError> {
    Operation::parse(&job.operation, job.per_user_mfa_state.as_deref(), job.role_id.as_deref(), job.scope.as_deref())
        .map_err(|err| AppError::Unexpected(anyhow::anyhow!("bulk job {} is unreadable: {err}", job.id)))
}

fn view_of(job: &BulkJob, counts: &[(String, i64)]) -> Result<JobView, AppError> {
    let mut res = [0; 7];
    for (state, count) in counts {
        if let Some(at) = ItemState::ALL.iter().position(|it| it.as_str() == state) {
            res[at] = usize::try_from(*count).unwrap_or(0);
        }
    }
    Ok(JobView {
        id: Some(job.id.clone()),
        operation: operation_of(job)?,
        source: job.source.clone(),
        status: if job.status == "completed" { "completed" } else { "running" },
        created: job.created_at,
        finished: job.finished_at,
        counts: res,
    })
}

impl App {
    /// `POST /beta/keyward/bulkOperations`: plans `request`'s users; a dry run answers with the
    /// plan and writes nothing; a real run writes the job (held by this node) and answers with
    /// it. Start the run with [`App::spawn_bulk`].
    pub async fn start_bulk(&self, caller: &Caller, request: BulkRequest) -> Result<Started, AppError> {
        require(caller, actions::USERS_READ, Target::Tenant)?;
        // Nothing to plan for a caller none of whose roles grants the change anywhere.
        let action = operation_action(&request.operation);
        if !caller.actor.roles.iter().any(|it| it.grants(action)) {
            return Err(AppError::Forbidden {
                rule: keyward_core::authz::rules::NO_ROLE_GRANTS_ACTION,
                message: keyward_core::authz::denial_message(keyward_core::authz::rules::NO_ROLE_GRANTS_ACTION, action),
            });
        }
        self.check_role_and_scope(caller, &request.operation).await?;
        let now = self.now();
        let (keys, source) = self.bulk_users(caller, &request.source).await?;
        let source: String = source.chars().take(200).collect();
        if keys.is_empty() {
            return Err(AppError::BadRequest(format!("{source} names no user: nothing to do.")));
        }
        if keys.len() > bulk::MAX_USERS {
            return Err(AppError::BadRequest(format!(
                "{source} names {} users; one bulk operation takes at most {}: split it.",
                keys.len(),
                bulk::MAX_USERS
            )));
        }
        let mut items = Vec::with_capacity(keys.len());
        let mut seen: std::collections::HashSet<ObjectId> = std::collections::HashSet::new();
        for (chunk, keys) in keys.chunks(PLAN_CHUNK).enumerate() {
            let mut tx = self.read().await?;
            for (at, key) in keys.iter().enumerate() {
                let position = i64::try_from(chunk * PLAN_CHUNK + at).unwrap_or(i64::MAX);
                let key: String = key.chars().take(256).collect();
                let (user_id, state, detail) = match resolve_user(&mut *tx, &caller.tenant, &key).await {
                    Ok(user) if seen.contains(&user.id) => {
                        (Some(user.id), ItemState::Already, Some("named more than once: done once".to_owned()))
                    }
                    Ok(user) => {
                        seen.insert(user.id.clone());
                        let (state, detail) =
                            self.plan_item(&mut *tx, caller, &request.operation, &user, request.dry_run, now).await?;
                        (Some(user.id), state, detail)
                    }
                    Err(AppError::NotFound(_)) => {
                        let shown: String = key.chars().take(100).collect();
                        (None, ItemState::Failed, Some(format!("there is no user '{shown}'")))
                    }
                    Err(err) => return Err(err),
                };
                items.push(ItemView { position, user_key: key, user_id, state, detail });
            }
        }
        if request.dry_run {
            let counts = bulk::count(items.iter().map(|it| it.state));
            let job = JobView {
                id: None,
                operation: request.operation,
                source,
                status: "dryRun",
                created: now,
                finished: None,
                counts,
            };
            return Ok(Started { job, items });
        }
        // A real run decides each change when it makes it (and records refusals then): every
        // user not already in the target state (or unknown, or the caller) is pending.
        for item in &mut items {
            if matches!(item.state, ItemState::WouldChange | ItemState::Held | ItemState::Refused)
                && item.user_id.as_ref() != Some(caller.id())
            {
                item.state = ItemState::Pending;
                item.detail = None;
            }
        }
        let job = BulkJob {
            id: ObjectId::from_bytes(*uuid::Uuid::now_v7().as_bytes()),
            tenant_id: caller.tenant.id.clone(),
            caller_id: caller.id().clone(),
            caller_is_app: caller.user().is_none(),
            caller_scopes: caller.scopes.as_ref().map(|it| it.join(" ")),
            caller_ip: caller.meta.ip_address.clone(),
            operation: request.operation.name().to_owned(),
            per_user_mfa_state: match &request.operation {
                Operation::SetPerUserMfa(state) => Some(state.as_str().to_owned()),
                _ => None,
            },
            role_id: match &request.operation {
                Operation::AssignRole { role, .. } | Operation::RemoveRole { role, .. } => Some(role.clone()),
                _ => None,
            },
            scope: match &request.operation {
                Operation::AssignRole { scope, .. } | Operation::RemoveRole { scope, .. } => Some(scope.clone()),
                _ => None,
            },
            source,
            status: "running".into(),
            created_at: now,
            finished_at: None,
            correlation_id: caller.meta.correlation_id.clone(),
        };
        let rows: Vec<BulkItem> = items
            .iter()
            .map(|it| BulkItem {
                position: it.position,
                user_key: it.user_key.clone(),
                user_id: it.user_id.clone(),
                state: it.state.as_str().to_owned(),
                detail: it.detail.clone(),
            })
            .collect();
        // Long: a job's items, up to 10,000 rows.
        let mut tx = self.write_long().await?;
        let (mine, all) = (
            tx.count_running_bulk_jobs(&caller.tenant.id, Some(caller.id())).await?,
            tx.count_running_bulk_jobs(&caller.tenant.id, None).await?,
        );
        if mine >= RUNNING_PER_CALLER || all >= RUNNING_PER_TENANT {
            return Err(AppError::Rejected {
                code: "TooManyBulkOperations",
                message: format!(
                    "{} bulk operations are running ({mine} of them yours; at most {RUNNING_PER_CALLER} per \
                     administrator and {RUNNING_PER_TENANT} per tenant): wait until one completes.",
                    all
                ),
            });
        }
        tx.insert_bulk_job(&job, &rows, &self.inner.node_lease, now + LEASE).await?;
        tx.commit().await?;
        let counts = bulk::count(items.iter().map(|it| it.state));
        items.truncate(100);
        Ok(Started { job: JobView { status: "running", counts, ..view_of(&job, &[])? }, items })
    }

    /// Runs a started job in the background on this node.
    pub fn spawn_bulk(&self, tenant: keyward_core::directory::Tenant, job: ObjectId) {
        let app = self.clone();
        tokio::spawn(async move {
            if let Err(err) = app.run_bulk(&tenant, &job, None).await {
                tracing::warn!(job = %job, error = %err, "a bulk operation stopped; another round goes on with it");
            }
        });
    }

    /// Does `job`'s pending items under this node's lease, at most `budget` of them (`None`:
    /// all), as the caller who started it, re-loaded as they are now before each item: a caller
    /// disabled, deleted or whose sessions were revoked since fails what is
    /// left. Completes the job when none is left: `Ok(true)`. `Ok(false)`: stopped before the end
    /// (the budget, or another node holds the job now).
    pub async fn run_bulk(
        &self,
        tenant: &keyward_core::directory::Tenant,
        job_id: &ObjectId,
        budget: Option<usize>,
    ) -> Result<bool, AppError> {
        let job = self
            .read()
            .await?
            .get_bulk_job(&tenant.id, job_id)
            .await?
            .ok_or_else(|| AppError::NotFound(job_id.to_string()))?;
        let operation = operation_of(&job)?;
        let mut left = budget.unwrap_or(usize::MAX);
        let mut after: Option<i64> = None;
        let mut renewed: Option<OffsetDateTime> = None;
        // One pass in order: an item done is no longer pending, so nothing is looked at twice.
        loop {
            let items = self.read().await?.list_bulk_items(job_id, after, BATCH).await?;
            let Some(last) = items.last() else { break };
            after = Some(last.position);
            for item in items.into_iter().filter(|it| it.state == ItemState::Pending.as_str()) {
                if left == 0 {
                    return Ok(false);
                }
                left -= 1;
                // The lease, renewed at a quarter of its length.
                let now = self.now();
                if renewed.is_none_or(|at| now - at >= LEASE / 4) {
                    let mut tx = self.write().await?;
                    if !tx.renew_bulk_job(job_id, &self.inner.node_lease, now + LEASE).await? {
                        return Ok(false);
                    }
                    tx.commit().await?;
                    renewed = Some(now);
                }
                // The caller as they are now, for each user, as each request of theirs is
                // authenticated anew: a role removed, an account disabled or sessions revoked
                // count from the next user on.
                let caller = match self.job_caller(tenant, &job).await {
                    Ok(caller) => caller,
                    Err(AppError::Forbidden { message, .. }) => {
                        self.abandon_bulk(&job, &message).await?;
                        return Ok(true);
                    }
                    Err(err) => return Err(err),
                };
                self.run_item(&job, &caller, &operation, &item).await?;
            }
        }
        self.complete_bulk(&job).await
    }

    /// The caller who started `job`, as they are now: refused when their account no longer
    /// exists, is disabled, or their sessions were revoked after they started it.
    async fn job_caller(&self, tenant: &keyward_core::directory::Tenant, job: &BulkJob) -> Result<Caller, AppError> {
        let stored = StoredCaller {
            id: &job.caller_id,
            is_app: job.caller_is_app,
            scopes: job.caller_scopes.as_deref(),
            ip_address: job.caller_ip.as_deref(),
        };
        let mut tx = self.read().await?;
        let caller = stored.load(&mut *tx, tenant, &job.correlation_id).await?;
        if caller.user().is_some_and(|it| it.sign_in_sessions_valid_from > job.created_at) {
            return Err(AppError::Forbidden {
                rule: "stored-caller",
                message: "The sessions of the administrator who started it were revoked since.".into(),
            });
        }
        Ok(caller)
    }

    /// Fails every user still pending (the caller who started the job is gone) and completes it.
    async fn abandon_bulk(&self, job: &BulkJob, why: &str) -> Result<(), AppError> {
        // Long: every pending item of the job.
        let mut tx = self.write_long().await?;
        tx.finish_pending_bulk_items(&job.id, ItemState::Failed.as_str(), why).await?;
        tx.commit().await?;
        self.complete_bulk(job).await?;
        Ok(())
    }

    /// Changes one user as the job's caller; the use case's own transaction marks the item.
    async fn run_item(
        &self,
        job: &BulkJob,
        caller: &Caller,
        operation: &Operation,
        item: &BulkItem,
    ) -> Result<(), AppError> {
        let Some(user) = item.user_id.as_ref().map(ObjectId::to_string) else {
            return self.finish_item(job, item, ItemState::Failed, "the user does not exist").await;
        };
        let key = user.as_str();
        let scope = RefCell::new(Some(ItemRef { job: job.id.clone(), position: item.position }));
        let done = ITEM
            .scope(scope, async {
                match operation {
                    Operation::RequireReregistration => self.require_mfa_reregistration(caller, key).await,
                    Operation::RevokeMfaSessions => self.revoke_mfa_sessions(caller, key).await,
                    Operation::SetPerUserMfa(state) => self.set_mfa_requirements(caller, key, *state).await,
                    Operation::AssignRole { role, scope } => {
                        self.create_role_assignment(caller, key, role, scope).await.map(drop)
                    }
                    Operation::RemoveRole { role, scope } => {
                        match self.direct_assignment(caller, key, role, scope).await? {
                            Some(id) => self.delete_role_assignment(caller, &id).await,
                            None => Ok(()),
                        }
                    }
                }
            })
            .await;
        let (state, detail) = match done {
            // Marked done by the change's transaction; still pending: nothing needed changing.
            Ok(()) => (ItemState::Already, "already in the target state".to_owned()),
            Err(AppError::HeldForApproval(held)) => {
                (ItemState::Held, format!("held for approval: request {}", held.request.id))
            }
            Err(err @ (AppError::Unexpected(_) | AppError::Overloaded { .. } | AppError::TooManyRequests { .. })) => {
                // Left pending: this round stops, the next one (this node's or another's) goes on.
                return Err(err);
            }
            Err(AppError::Conflict(message)) if message == DONE_ELSEWHERE => return Ok(()),
            // A limit that frees up with time (the agent's hourly cap, the waiting requests):
            // the user stays pending and this round stops; a later one goes on.
            Err(err @ AppError::Forbidden { rule, .. })
                if rule == keyward_core::agent_limits::RULE || rule == "dual-control-pending-limit" =>
            {
                return Err(err);
            }
            Err(AppError::Forbidden { message, .. }) => (ItemState::Refused, message),
            // Assigned by someone else meanwhile.
            Err(AppError::BadRequest(message)) if message.starts_with("A conflicting object") => {
                (ItemState::Already, "already in the target state".to_owned())
            }
            Err(err) => (ItemState::Failed, err.to_string()),
        };
        self.finish_item(job, item, state, &detail).await
    }

    async fn finish_item(
        &self,
        job: &BulkJob,
        item: &BulkItem,
        state: ItemState,
        detail: &str,
    ) -> Result<(), AppError> {
        let mut tx = self.write().await?;
        // `false`: the change's own transaction marked it (done, or held) already.
        tx.finish_bulk_item(&job.id, item.position, state.as_str(), Some(detail)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The direct assignment of `role` at `scope` to user `key`, if any.
    async fn direct_assignment(
        &self,
        caller: &Caller,
        key: &str,
        role: &str,
        scope: &str,
    ) -> Result<Option<String>, AppError> {
        let mut tx = self.read().await?;
        let user = resolve_user(&mut *tx, &caller.tenant, key).await?;
        let held = tx.list_role_assignments_for(&caller.tenant.id, &user.id).await?;
        Ok(held.into_iter().find(|it| assigned_directly(it, &user.id, role, scope)).map(|it| it.id))
    }

    /// Completes a job once, with its summary record, initiated by the caller who started it:
    /// `Ok(false)` while users are pending.
    async fn complete_bulk(&self, job: &BulkJob) -> Result<bool, AppError> {
        let now = self.now();
        let mut tx = self.write().await?;
        let counts = tx.count_bulk_items(&job.id).await?;
        if counts.iter().any(|(state, n)| state == ItemState::Pending.as_str() && *n > 0) {
            return Ok(false);
        }
        if !tx.complete_bulk_job(&job.id, now).await? {
            return Ok(true);
        }
        let initiated_by = match tx.get_user(&job.tenant_id, &job.caller_id).await? {
            Some(user) => keyward_core::audit::Initiator::User {
                id: user.id.clone(),
                display_name: user.display_name.clone(),
                user_principal_name: user.user_principal_name,
                ip_address: job.caller_ip.clone(),
            },
            None => match tx.get_service_principal(&job.tenant_id, &job.caller_id).await? {
                Some(app) => keyward_core::audit::Initiator::App {
                    app_id: app.app_id.clone(),
                    display_name: app.display_name.clone(),
                    service_principal_id: Some(app.id),
                },
                None => keyward_core::audit::Initiator::User {
                    id: job.caller_id.clone(),
                    display_name: String::new(),
                    user_principal_name: String::new(),
                    ip_address: job.caller_ip.clone(),
                },
            },
        };
        let context = keyward_core::audit::AuditContext {
            tenant_id: job.tenant_id.clone(),
            correlation_id: job.correlation_id.clone(),
            at: now,
            initiated_by,
        };
        let mut record =
            context.success(crate::audit_id(&job.correlation_id), Activity::CompleteBulkOperation, Vec::new());
        record.result_reason = format!("{} for {}", job.operation, job.source);
        record.additional_details = vec![
            ("BulkOperationId".into(), job.id.to_string()),
            ("Operation".into(), job.operation.clone()),
            ("Source".into(), job.source.clone()),
        ];
        let mut counts = counts;
        counts.sort();
        record
            .additional_details
            .extend(counts.into_iter().map(|(state, n)| (format!("Count.{state}"), n.to_string())));
        // Not `commit_audited`: the summary is no user's item.
        crate::audited::record_all(&mut *tx, &[record]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Takes over a running job whose node went away (its lease lapsed) and finishes it, as the
    /// caller who started it; `Ok(false)` when none waits.
    pub async fn resume_bulk_jobs(&self) -> Result<bool, AppError> {
        let now = self.now();
        let mut tx = self.write().await?;
        let Some(job) = tx.claim_bulk_job(now, &self.inner.node_lease, now + LEASE).await? else {
            return Ok(false);
        };
        tx.commit().await?;
        let tenant = self.read().await?.get_tenant(&job.tenant_id).await?;
        let tenant =
            tenant.ok_or_else(|| AppError::Unexpected(anyhow::anyhow!("bulk job {} has no tenant", job.id)))?;
        tracing::info!(job = %job.id, "going on with a bulk operation another node left");
        self.run_bulk(&tenant, &job.id, None).await?;
        Ok(true)
    }

    /// Every `every`, goes on with bulk operations whose node went away.
    pub fn spawn_bulk_upkeep(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let app = self.clone();
        crate::spawn_every(every, move || {
            let app = app.clone();
            async move {
                if let Err(err) = app.resume_bulk_jobs().await {
                    tracing::warn!(error = %err, "going on with a bulk operation failed; it retries");
                }
            }
        })
    }

    /// `GET /beta/keyward/bulkOperations/{id}`: for whoever started it and readers of the audit log.
    pub async fn get_bulk(&self, caller: &Caller, id: &str) -> Result<JobView, AppError> {
        let mut tx = self.read().await?;
        let job = self.visible_job(&mut *tx, caller, id).await?;
        let counts = tx.count_bulk_items(&job.id).await?;
        view_of(&job, &counts)
    }

    /// `GET /beta/keyward/bulkOperations/{id}/results`: the users in order, `top` after `skiptoken`.
    pub async fn list_bulk_results(
        &self,
        caller: &Caller,
        id: &str,
        top: Option<&str>,
        skiptoken: Option<&str>,
    ) -> Result<(Vec<ItemView>, Option<String>), AppError> {
        let top = crate::directory::page_size(top)?;
        let after = match skiptoken {
            None => None,
            Some(token) => {
                Some(token.parse::<i64>().map_err(|_| AppError::BadRequest("The $skiptoken is not valid.".into()))?)
            }
        };
        let mut tx = self.read().await?;
        let job = self.visible_job(&mut *tx, caller, id).await?;
        let mut items = tx.list_bulk_items(&job.id, after, top + 1).await?;
        let next = (items.len() > top).then(|| {
            items.truncate(top);
            items[top - 1].position.to_string()
        });
        let items = items
            .into_iter()
            .map(|it| ItemView {
                position: it.position,
                state: ItemState::parse(&it.state).unwrap_or(ItemState::Failed),
                user_key: it.user_key,
                user_id: it.user_id,
                detail: it.detail,
            })
            .collect();
        Ok((items, next))
    }

    async fn visible_job(&self, tx: &mut dyn Tx, caller: &Caller, id: &str) -> Result<BulkJob, AppError> {
        let not_found = || AppError::NotFound(id.to_owned());
        let job_id = ObjectId::parse(id).ok_or_else(not_found)?;
        let job = tx.get_bulk_job(&caller.tenant.id, &job_id).await?.ok_or_else(not_found)?;
        if job.caller_id != *caller.id() && require(caller, actions::AUDIT_LOGS_READ, Target::Tenant).is_err() {
            return Err(not_found());
        }
        Ok(job)
    }

    /// The users `source` names, as keys, and how to name the source in records.
    async fn bulk_users(&self, caller: &Caller, source: &Source) -> Result<(Vec<String>, String), AppError> {
        let mut tx = self.read().await?;
        Ok(match source {
            Source::Users(keys) => (keys.clone(), format!("a list of {} users", keys.len())),
            Source::Group(id) => {
                let group_id = ObjectId::parse(id).ok_or_else(|| AppError::NotFound(id.clone()))?;
                let group =
                    tx.get_group(&caller.tenant.id, &group_id).await?.ok_or_else(|| AppError::NotFound(id.clone()))?;
                let facts = crate::facts::group_for_read(&group);
                require(caller, actions::GROUPS_MEMBERS_READ, Target::Group(&facts))?;
                let members = crate::relationships::transitive_member_refs(&mut *tx, &group.id).await?;
                let users = members
                    .into_iter()
                    .filter(|it| it.kind == keyward_core::directory::ObjectKind::User)
                    .map(|it| it.id.to_string())
                    .collect();
                (users, format!("group '{}'", group.display_name))
            }
            Source::Unit(id) => {
                require(caller, actions::UNITS_READ, Target::Tenant)?;
                let unit_id = ObjectId::parse(id).ok_or_else(|| AppError::NotFound(id.clone()))?;
                let unit = tx
                    .get_administrative_unit(&caller.tenant.id, &unit_id)
                    .await?
                    .ok_or_else(|| AppError::NotFound(id.clone()))?;
                let members = tx.list_unit_members(&unit.id, None, keyward_store::ALL_ROWS).await?;
                let users = members
                    .into_iter()
                    .filter(|it| it.kind == keyward_core::directory::ObjectKind::User)
                    .map(|it| it.id.to_string())
                    .collect();
                (users, format!("administrative unit '{}'", unit.display_name))
            }
            Source::Filter(filter) => {
                drop(tx);
                let mut users = Vec::new();
                let mut skiptoken = None;
                loop {
                    let raw = RawQuery {
                        filter: Some(filter.clone()),
                        top: Some("999".into()),
                        skiptoken: skiptoken.clone(),
                        ..RawQuery::default()
                    };
                    let page = self.list_users(caller, &raw).await?;
                    users.extend(page.items.iter().map(|it| it.id.to_string()));
                    if users.len() > bulk::MAX_USERS || page.skiptoken.is_none() {
                        break;
                    }
                    skiptoken = page.skiptoken;
                }
                (users, format!("users where {filter}"))
            }
        })
    }

    /// What would become of `user`: its state, and why. Only a dry run (`full`) decides the
    /// rules too (a real run decides them when it makes each change, and records refusals then).
    async fn plan_item(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        operation: &Operation,
        user: &User,
        full: bool,
        now: OffsetDateTime,
    ) -> Result<(ItemState, Option<String>), AppError> {
        if user.id == *caller.id() {
            return Ok((ItemState::Refused, Some("a bulk operation does not change your own account".into())));
        }
        // Whether the caller may act on the user comes first: a user they may not change shows
        // nothing of their state (whether they have methods, their per-user MFA). A real run
        // decides, and records, the refusal when it reaches the user.
        let facts = user_facts(tx, &caller.tenant, user).await?;
        let target = match operation {
            Operation::AssignRole { .. } | Operation::RemoveRole { .. } => Target::Tenant,
            _ => Target::User(&facts),
        };
        if let Err(err) = require(caller, operation_action(operation), target) {
            return Ok(if full { (ItemState::Refused, Some(err.to_string())) } else { (ItemState::Pending, None) });
        }
        let already = match operation {
            Operation::RequireReregistration => {
                tx.list_software_oath_methods(&user.id).await?.is_empty()
                    && tx.list_phone_methods(&user.id).await?.is_empty()
            }
            Operation::RevokeMfaSessions => false,
            Operation::SetPerUserMfa(state) => tx.user_sign_in_state(&user.id).await?.per_user_mfa == *state,
            Operation::AssignRole { role, scope } | Operation::RemoveRole { role, scope } => {
                let held = tx
                    .list_role_assignments_for(&caller.tenant.id, &user.id)
                    .await?
                    .iter()
                    .any(|it| assigned_directly(it, &user.id, role, scope));
                held == matches!(operation, Operation::AssignRole { .. })
            }
        };
        if already {
            return Ok((ItemState::Already, Some("already in the target state".into())));
        }
        if !full {
            return Ok((ItemState::Pending, None));
        }
        if matches!(operation, Operation::RequireReregistration)
            && let crate::dual_control::Gate::Hold(_) = self
                .dual_control_gate(tx, caller, user, &keyward_core::dual_control::Operation::RequireReregistration, now)
                .await?
        {
            return Ok((ItemState::Held, Some("would be held for a second administrator's approval".into())));
        }
        Ok((ItemState::WouldChange, None))
    }

    /// The role exists, and the scope is the directory or a unit the role may be scoped to.
    async fn check_role_and_scope(&self, caller: &Caller, operation: &Operation) -> Result<(), AppError> {
        let (Operation::AssignRole { role, scope } | Operation::RemoveRole { role, scope }) = operation else {
            return Ok(());
        };
        let mut tx = self.read().await?;
        let found = crate::roles::role_in(&mut *tx, &caller.tenant.id, role).await?;
        let found = found.ok_or_else(|| AppError::NotFound(role.clone()))?;
        if scope == "/" {
            return Ok(());
        }
        let unit = scope.strip_prefix("/administrativeUnits/").and_then(ObjectId::parse).ok_or_else(|| {
            AppError::BadRequest(format!(
                "Invalid directoryScopeId '{scope}': use '/' or '/administrativeUnits/{{id}}'."
            ))
        })?;
        tx.get_administrative_unit(&caller.tenant.id, &unit)
            .await?
            .ok_or_else(|| AppError::NotFound(unit.to_string()))?;
        if !found.is_au_scopable() {
            return Err(AppError::BadRequest(format!(
                "The role '{}' cannot be assigned at an administrative unit scope; assign it at '/'.",
                found.display_name()
            )));
        }
        Ok(())
    }
}

/// Whether `it` gives `role` at `scope` to `user` directly (not through a group, not an activation).
fn assigned_directly(it: &keyward_store::RoleAssignment, user: &ObjectId, role: &str, scope: &str) -> bool {
    it.principal_id == *user
        && it.role_definition_id.eq_ignore_ascii_case(role)
        && it.directory_scope_id.eq_ignore_ascii_case(scope)
        && it.activated_using.is_none()
}

/// The permission a bulk operation's change needs (on each user, or on the tenant for roles).
fn operation_action(operation: &Operation) -> &'static str {
    match operation {
        Operation::RequireReregistration => actions::USERS_AUTH_METHODS_DELETE,
        Operation::RevokeMfaSessions => actions::USERS_AUTH_METHODS_UPDATE,
        Operation::SetPerUserMfa(_) => actions::USERS_STRONG_AUTHENTICATION_UPDATE,
        Operation::AssignRole { scope, .. } | Operation::RemoveRole { scope, .. } if scope != "/" => {
            actions::SCOPED_ROLE_MEMBERSHIPS_WRITE
        }
        Operation::AssignRole { .. } | Operation::RemoveRole { .. } => actions::ROLE_ASSIGNMENTS_WRITE,
    }
}
