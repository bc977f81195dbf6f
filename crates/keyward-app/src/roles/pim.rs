//! Just-in-time roles (Privileged Identity Management): requests on eligibility and assignment
//! schedules, activation, approval, each role's settings, and recording what ended.
//!
//! Whether an activation counts is decided by every read (the store judges each assignment's
//! window against the transaction's time), so nothing here has to run for an activation to stop
//! counting; [`App::end_lapsed_roles`] only removes what ended and records it.

use time::{Duration, OffsetDateTime};

use crate::audited::audit_id;
use crate::directory::{object_target, resolve_object};
use crate::facts::{RoleChange, check_global_administrator_change};
use crate::{App, AppError, Caller, commit_audited, new_id};
use keyward_core::audit::{Activity, AuditContext, AuditRecord, Initiator, PimActivity, TargetResource};
use keyward_core::authz::{Scope, Target, actions};
use keyward_core::directory::{DirectoryObject, Review, Tenant, canonical_scope};
use keyward_core::ids::ObjectId;
use keyward_core::pim::{self, ActivationProof, RoleSettings, RuleChange, ScheduleInfo, Window};

/// The request actions that only take away (the others grant, or prolong a grant, and need the
/// role enabled and assignable at the scope).
const TAKING_AWAY: [&str; 2] = ["adminRemove", "selfDeactivate"];
use keyward_store::{RoleAssignment, RoleEligibility, RoleScheduleRequest, ScheduleKind, Tx};

use super::{RoleDef, unit_target};

/// Entra's Privileged Identity Management application (`MS-PIM`): the initiator of what PIM
/// records by itself, such as an activation's end.
const PIM_APP_ID: &str = "01fc33a7-78ba-4d2f-a4b7-768e336e890e";

/// How long an activation waits for an approver before it expires.
pub const APPROVAL_TIMEOUT: Duration = Duration::hours(24);

/// A request on a schedule, as the client sent it.
#[derive(Debug, Clone, Default)]
pub struct ScheduleRequestInput {
    pub action: String,
    pub principal_id: String,
    pub role_definition_id: String,
    pub directory_scope_id: String,
    pub justification: Option<String>,
    pub schedule: ScheduleInfo,
    pub ticket_number: Option<String>,
    pub ticket_system: Option<String>,
    pub is_validation_only: bool,
}

/// `filterByCurrentUser(on=…)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentUser {
    /// Requests, schedules and instances of the signed-in user.
    Principal,
    /// Requests the signed-in user may approve, still waiting.
    Approver,
}

/// An activation request that needs approval, as its approver sees it.
#[derive(Debug, Clone)]
pub struct Approval {
    pub request: RoleScheduleRequest,
    /// The signed-in user may decide on it.
    pub assigned_to_me: bool,
    /// `InProgress`, `Completed` or `Expired`.
    pub status: &'static str,
}

/// A role's settings and when they last changed (`None`: Entra's defaults).
#[derive(Debug, Clone)]
pub struct RolePolicy {
    pub role: RoleDef,
    pub settings: RoleSettings,
    pub modified: Option<(OffsetDateTime, ObjectId)>,
}

fn rejected(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::Rejected { code, message: message.into() }
}

fn policy_failed(rules: &[pim::PolicyRule]) -> AppError {
    rejected("RoleAssignmentRequestPolicyValidationFailed", pim::policy_failure_message(rules))
}

/// The token permission a request kind's reads and writes need.
fn scope_actions(kind: ScheduleKind) -> (&'static str, &'static str) {
    match kind {
        ScheduleKind::Assignment => (actions::PIM_ASSIGNMENTS_READ, actions::PIM_ASSIGNMENTS_WRITE),
        ScheduleKind::Eligibility => (actions::PIM_ELIGIBILITY_READ, actions::PIM_ELIGIBILITY_WRITE),
    }
}

fn same_role(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether a pending approval has waited too long at `now`.
fn has_expired(request: &RoleScheduleRequest, now: OffsetDateTime) -> bool {
    request.status == "PendingApproval" && request.created + APPROVAL_TIMEOUT <= now
}

/// PIM's tenant-wide reads (requests carry justifications and tickets) need a directory role
/// that reads role assignments, not only a member's default permissions.
fn require_role_reader(caller: &Caller, scope_action: &'static str) -> Result<(), AppError> {
    crate::require_scoped(caller, actions::ROLE_ASSIGNMENTS_READ, scope_action, Target::Tenant)?;
    // Tenant-wide: a role scoped to an administrative unit does not read the tenant's requests.
    if caller.actor.roles.iter().any(|it| it.scope == Scope::Tenant && it.grants(actions::ROLE_ASSIGNMENTS_READ)) {
        Ok(())
    } else {
        let rule = keyward_core::authz::rules::NO_ROLE_GRANTS_ACTION;
        Err(AppError::Forbidden {
            rule,
            message: keyward_core::authz::denial_message(rule, actions::ROLE_ASSIGNMENTS_READ),
        })
    }
}

impl App {
    async fn settings_of(&self, tx: &mut dyn Tx, tenant: &ObjectId, role: &str) -> Result<RoleSettings, AppError> {
        Ok(tx.get_role_settings(tenant, role).await?.map(|(it, _, _)| it).unwrap_or_default())
    }

    /// [`Self::role_and_scope`] of a request's role and scope, granting for the actions that do.
    async fn request_role(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        input: &ScheduleRequestInput,
    ) -> Result<(RoleDef, String, Vec<TargetResource>), AppError> {
        let granting = !TAKING_AWAY.contains(&input.action.as_str());
        self.role_and_scope(tx, caller, (&input.role_definition_id, &input.directory_scope_id), granting).await
    }

    /// The role, the canonical scope and its unit, as a request names them. `granting` (a new assignment, eligibility or activation,
    /// or one made longer): the role must be enabled and assignable at the scope. A removal or
    /// deactivation is not refused for what changed in the role since: a custom role narrowed
    /// to tenant-wide permissions must not leave an eligibility that can be neither used nor
    /// removed.
    async fn role_and_scope(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        (role, scope): (&str, &str),
        granting: bool,
    ) -> Result<(RoleDef, String, Vec<TargetResource>), AppError> {
        let role = self.find_role(tx, caller, role).await?.ok_or_else(|| AppError::NotFound(role.to_owned()))?;
        if granting {
            super::require_enabled(&role)?;
        }
        let scope = canonical_scope(scope);
        let mut extra = Vec::new();
        if scope != "/" {
            let unit = scope.strip_prefix("/administrativeUnits/").and_then(ObjectId::parse).ok_or_else(|| {
                AppError::BadRequest(format!(
                    "Invalid directoryScopeId '{scope}': use '/' or '/administrativeUnits/{{id}}'."
                ))
            })?;
            let unit = tx
                .get_administrative_unit(&caller.tenant.id, &unit)
                .await?
                .ok_or_else(|| AppError::NotFound(unit.to_string()))?;
            if granting && !role.is_au_scopable() {
                return Err(AppError::BadRequest(format!(
                    "The role '{}' cannot be assigned at an administrative unit scope; use '/'.",
                    role.display_name()
                )));
            }
            extra.push(unit_target(&unit));
        }
        Ok((role, scope, extra))
    }

    /// The caller's PIM records of `activities`, each with the request's details.
    fn pim_records<const N: usize>(
        &self,
        caller: &Caller,
        activities: [PimActivity; N],
        targets: &[TargetResource],
        request: &RoleScheduleRequest,
    ) -> Vec<AuditRecord> {
        activities.into_iter().map(|it| self.pim_record(caller, it, targets.to_vec(), request)).collect()
    }

    /// A PIM record of the caller's with the request's details (`additionalDetails`).
    fn pim_record(
        &self,
        caller: &Caller,
        activity: PimActivity,
        targets: Vec<TargetResource>,
        request: &RoleScheduleRequest,
    ) -> AuditRecord {
        let mut record = caller.succeeded(request.created, Activity::Pim(activity), targets);
        record.additional_details = request_details(request);
        record
    }

    /// `POST /roleManagement/directory/roleEligibilityScheduleRequests`: an administrator makes a
    /// principal eligible, changes an eligibility's schedule, or removes it.
    pub async fn request_role_eligibility(
        &self,
        caller: &Caller,
        input: ScheduleRequestInput,
    ) -> Result<RoleScheduleRequest, AppError> {
        let now = self.now();
        let permanent =
            !matches!(input.schedule.expiration, pim::Expiration::AfterDateTime(_) | pim::Expiration::AfterDuration(_));
        let activity = match input.action.as_str() {
            "adminAssign" => PimActivity::EligibleAddRequested { permanent },
            "adminUpdate" | "adminExtend" | "adminRenew" => PimActivity::EligibleUpdateRequested,
            "adminRemove" => PimActivity::EligibleRemoveRequested { permanent },
            other => {
                return Err(AppError::BadRequest(format!(
                    "'{other}' is not an action on eligibility: use adminAssign, adminUpdate, adminExtend, adminRenew or adminRemove."
                )));
            }
        };
        // Only those who manage role assignments tenant-wide (Privileged Role Administrator,
        // Global Administrator) manage eligibility, at any scope.
        let write = actions::PIM_ELIGIBILITY_WRITE;
        if let Err(err) = crate::require_scoped(caller, actions::ROLE_ASSIGNMENTS_WRITE, write, Target::Tenant) {
            return Err(self.refused(None, caller, Activity::Pim(activity), Vec::new(), err).await);
        }
        let mut tx = self.write().await?;
        tx.lock_role_changes(&caller.tenant.id).await?;
        let mut records = self.lapsed_records(&mut *tx, &caller.tenant).await?;
        let (role, scope, mut targets) = self.request_role(&mut *tx, caller, &input).await?;
        let principal = resolve_object(&mut *tx, &caller.tenant, &input.principal_id).await?;
        match &principal {
            DirectoryObject::User(_) => (),
            DirectoryObject::Group(group) if group.is_assignable_to_role => (),
            DirectoryObject::Group(_) => {
                return Err(AppError::BadRequest(
                    "Only role-assignable groups (isAssignableToRole true) can be made eligible for roles.".into(),
                ));
            }
            _ => {
                return Err(AppError::BadRequest(
                    "Only users and role-assignable groups can be eligible; service principals can hold active assignments only."
                        .into(),
                ));
            }
        }
        targets.insert(0, object_target(&principal));
        targets.insert(0, role.target()?);
        let settings = self.settings_of(&mut *tx, &caller.tenant.id, &role.id()).await?;
        let existing = tx
            .list_eligibilities(&caller.tenant.id, Some(principal.id()))
            .await?
            .into_iter()
            .find(|it| same_role(&it.role_definition_id, &role.id()) && it.directory_scope_id == scope);
        let mut request = new_request(caller, ScheduleKind::Eligibility, &input, principal.id(), &role, &scope, now);
        match input.action.as_str() {
            "adminAssign" => {
                if existing.is_some() {
                    return Err(rejected(
                        "RoleAssignmentExists",
                        "The principal is already eligible for this role at this scope: change the schedule with adminUpdate or adminExtend.",
                    ));
                }
                let window =
                    pim::decide_eligibility(&settings, &input.schedule, now).map_err(|it| policy_failed(&it))?;
                let eligibility = RoleEligibility {
                    id: new_id().to_string(),
                    tenant_id: caller.tenant.id.clone(),
                    principal_id: principal.id().clone(),
                    role_definition_id: role.id().to_lowercase(),
                    directory_scope_id: scope.clone(),
                    start: window.start,
                    end: window.end,
                    created_using: Some(request.id.clone()),
                    created: now,
                    modified: now,
                };
                if settle(&mut request, &eligibility.id, "Provisioned", input.is_validation_only) {
                    return Ok(request);
                }
                tx.insert_eligibility(&eligibility).await?;
                let permanent = window.end.is_none();
                records.extend(self.pim_records(
                    caller,
                    [PimActivity::EligibleAddRequested { permanent }, PimActivity::EligibleAddCompleted { permanent }],
                    &targets,
                    &request,
                ));
            }
            "adminRemove" => {
                let existing = existing.ok_or_else(|| {
                    rejected("RoleAssignmentDoesNotExist", "The principal is not eligible for this role at this scope.")
                })?;
                if settle(&mut request, &existing.id, "Revoked", input.is_validation_only) {
                    return Ok(request);
                }
                tx.delete_eligibility(&caller.tenant.id, &existing.id).await?;
                let permanent = existing.end.is_none();
                records.extend(self.end_activations_of(&mut *tx, caller, &existing, None).await?);
                records.extend(self.pim_records(
                    caller,
                    [
                        PimActivity::EligibleRemoveRequested { permanent },
                        PimActivity::EligibleRemoveCompleted { permanent },
                    ],
                    &targets,
                    &request,
                ));
            }
            _ => {
                let mut existing = existing.ok_or_else(|| {
                    rejected(
                        "RoleAssignmentDoesNotExist",
                        "The principal is not eligible for this role at this scope: use adminAssign.",
                    )
                })?;
                let mut window =
                    pim::decide_eligibility(&settings, &input.schedule, now).map_err(|it| policy_failed(&it))?;
                // Without a start in the future the eligibility keeps its own, so an activation
                // made from it goes on (only its end is cut to the new end).
                if input.schedule.start.is_none_or(|start| start <= now) {
                    window.start = existing.start.min(window.start);
                }
                if settle(&mut request, &existing.id, "Provisioned", input.is_validation_only) {
                    return Ok(request);
                }
                existing.start = window.start;
                existing.end = window.end;
                existing.modified = now;
                tx.update_eligibility(&existing).await?;
                records.extend(self.end_activations_of(&mut *tx, caller, &existing, Some(window)).await?);
                records.push(self.pim_record(caller, PimActivity::EligibleUpdateRequested, targets, &request));
            }
        }
        request.completed = Some(now);
        tx.insert_schedule_request(&request).await?;
        commit_audited(tx, records).await?;
        Ok(request)
    }

    /// Cuts the activations made from an eligibility to its new window, or ends them when it is
    /// removed (`None`), so an activation never outlives its eligibility.
    async fn end_activations_of(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        eligibility: &RoleEligibility,
        window: Option<Window>,
    ) -> Result<Vec<AuditRecord>, AppError> {
        let mut records = Vec::new();
        for activation in tx.list_role_assignment_schedules(&caller.tenant.id, None).await? {
            if activation.activated_using.as_deref() != Some(eligibility.id.as_str()) {
                continue;
            }
            match window.and_then(|window| pim::clamp_to(activation.window(), &window)) {
                Some(cut) if cut.start == activation.window().start => {
                    tx.set_role_assignment_window(&caller.tenant.id, &activation.id, None, cut.end).await?;
                }
                _ => {
                    tx.delete_role_assignment(&caller.tenant.id, &activation.id).await?;
                    let targets = self
                        .role_targets(tx, &caller.tenant, &activation.role_definition_id, &activation.principal_id)
                        .await?;
                    records.push(caller.succeeded(
                        self.now(),
                        Activity::Pim(PimActivity::MemberRemoveCompleted { permanent: false }),
                        targets.clone(),
                    ));
                    let removed = role_removed(&activation.directory_scope_id);
                    records.push(caller.succeeded(self.now(), removed, targets));
                }
            }
        }
        Ok(records)
    }

    /// The audit targets of a role held, asked for or ended by a principal: the role and the
    /// principal, each if it still exists.
    async fn role_targets(
        &self,
        tx: &mut dyn Tx,
        tenant: &Tenant,
        role_definition_id: &str,
        principal_id: &ObjectId,
    ) -> Result<Vec<TargetResource>, AppError> {
        let mut targets = Vec::new();
        if let Some(role) = super::role_in(tx, &tenant.id, role_definition_id).await? {
            targets.push(role.target()?);
        }
        if let Ok(principal) = resolve_object(tx, tenant, principal_id.as_str()).await {
            targets.push(object_target(&principal));
        }
        Ok(targets)
    }

    /// `POST /roleManagement/directory/roleAssignmentScheduleRequests`: a user activates or
    /// deactivates a role they are eligible for; an administrator assigns (permanently or for a
    /// time), changes or removes an active assignment.
    pub async fn request_role_assignment(
        &self,
        caller: &Caller,
        input: ScheduleRequestInput,
    ) -> Result<RoleScheduleRequest, AppError> {
        match input.action.as_str() {
            "selfActivate" | "selfDeactivate" | "selfExtend" => self.self_request(caller, input).await,
            "adminAssign" | "adminRemove" | "adminUpdate" | "adminExtend" | "adminRenew" => {
                self.admin_assignment_request(caller, input).await
            }
            "selfRenew" => Err(AppError::BadRequest(
                "Keyward does not renew ended assignments: activate the role again (selfActivate), or ask an administrator for a new assignment."
                    .into(),
            )),
            other => Err(AppError::BadRequest(format!(
                "'{other}' is not an action on role assignments: use selfActivate, selfDeactivate, adminAssign, adminUpdate, adminExtend or adminRemove."
            ))),
        }
    }

    async fn self_request(
        &self,
        caller: &Caller,
        input: ScheduleRequestInput,
    ) -> Result<RoleScheduleRequest, AppError> {
        let now = self.now();
        let user = caller.user().ok_or_else(|| {
            AppError::BadRequest(format!("{} is for a signed-in user: use a delegated token.", input.action))
        })?;
        let activity = match input.action.as_str() {
            "selfActivate" => PimActivity::ActivationRequested,
            "selfExtend" => PimActivity::MemberUpdateRequested,
            _ => PimActivity::DeactivationRequested,
        };
        // A token for an application that may not manage roles cannot activate the user's.
        let refusal = match crate::require_scope(caller, actions::PIM_ASSIGNMENTS_WRITE, true) {
            Err(err) => Some(err),
            Ok(()) if ObjectId::parse(&input.principal_id).as_ref() != Some(&user.id) => Some(AppError::Forbidden {
                rule: "pim-self-only",
                message: format!("A {} request must name the signed-in user as principalId.", input.action),
            }),
            Ok(()) => None,
        };
        if let Some(err) = refusal {
            return Err(self
                .refused(None, caller, Activity::Pim(activity), vec![TargetResource::user(user)], err)
                .await);
        }
        let mut tx = self.write().await?;
        tx.lock_role_changes(&caller.tenant.id).await?;
        let mut records = self.lapsed_records(&mut *tx, &caller.tenant).await?;
        let (role, scope, mut targets) = self.request_role(&mut *tx, caller, &input).await?;
        targets.insert(0, TargetResource::user(user));
        targets.insert(0, role.target()?);
        let mut request = new_request(caller, ScheduleKind::Assignment, &input, &user.id, &role, &scope, now);
        let held: Vec<RoleAssignment> = tx
            .list_role_assignment_schedules(&caller.tenant.id, Some(&user.id))
            .await?
            .into_iter()
            .filter(|it| same_role(&it.role_definition_id, &role.id()) && it.directory_scope_id == scope)
            .collect();
        if input.action == "selfDeactivate" {
            let activation = held.into_iter().find(|it| it.activated_using.is_some()).ok_or_else(|| {
                rejected(
                    "RoleAssignmentDoesNotExist",
                    "You have no activation of this role at this scope to deactivate.",
                )
            })?;
            if settle(&mut request, &activation.id, "Revoked", input.is_validation_only) {
                return Ok(request);
            }
            tx.delete_role_assignment(&caller.tenant.id, &activation.id).await?;
            records.extend(self.pim_records(
                caller,
                [PimActivity::DeactivationRequested, PimActivity::DeactivationCompleted],
                &targets,
                &request,
            ));
            records.push(caller.succeeded(now, role_removed(&scope), targets));
        } else {
            // selfExtend: a later end for the activation running now, decided as an activation.
            let extending = input.action == "selfExtend";
            let running = held.iter().find(|it| it.activated_using.is_some()).cloned();
            if extending && running.is_none() {
                return Err(rejected(
                    "RoleAssignmentDoesNotExist",
                    "You have no activation of this role at this scope to extend: activate it (selfActivate).",
                ));
            }
            if let Some(it) = held.first().filter(|_| !extending) {
                let until = it.end.map_or_else(|| "permanently".to_owned(), |end| format!("until {end}"));
                return Err(rejected(
                    "RoleAssignmentExists",
                    format!(
                        "You already hold this role at this scope ({until}): deactivate it first or wait for it to end."
                    ),
                ));
            }
            let pending =
                tx.list_schedule_requests(&caller.tenant.id, ScheduleKind::Assignment, Some(&user.id), true).await?;
            if pending.iter().any(|it| {
                it.status == "PendingApproval"
                    && !has_expired(it, now)
                    && same_role(&it.role_definition_id, &role.id())
                    && it.directory_scope_id == scope
            }) {
                return Err(rejected(
                    "PendingRoleAssignmentRequest",
                    "An activation of this role at this scope is already waiting for approval: cancel it or wait for the decision.",
                ));
            }
            let settings = self.settings_of(&mut *tx, &caller.tenant.id, &role.id()).await?;
            let eligibilities: Vec<RoleEligibility> = tx
                .list_eligibilities_for(&caller.tenant.id, &user.id)
                .await?
                .into_iter()
                .filter(|it| same_role(&it.role_definition_id, &role.id()) && it.directory_scope_id == scope)
                // An extension stays on the eligibility the activation was made from.
                .filter(|it| {
                    !extending
                        || running.as_ref().and_then(|run| run.activated_using.as_deref()) == Some(it.id.as_str())
                })
                .collect();
            let windows: Vec<Window> = eligibilities.iter().map(RoleEligibility::window).collect();
            // An extension runs from now: a later start would let the window leave the role's
            // longest activation behind while the running activation stretched to its end.
            let schedule = if extending { ScheduleInfo { start: None, ..input.schedule } } else { input.schedule };
            let mfa_at =
                caller.authentication.as_ref().filter(|(_, amr)| amr.iter().any(|it| it == "mfa")).map(|(at, _)| *at);
            let proof = ActivationProof {
                justification: input.justification.as_deref(),
                has_ticket: input.ticket_number.as_deref().is_some_and(|it| !it.trim().is_empty()),
                mfa_at,
            };
            let (window, index) = match pim::decide_activation(&settings, &windows, &schedule, &proof, now) {
                Ok(decided) => decided,
                Err(rules) => {
                    let err = policy_failed(&rules);
                    if !input.is_validation_only {
                        let mut record = caller.audit(now).failure(
                            audit_id(&caller.meta.correlation_id),
                            Activity::Pim(activity),
                            targets,
                            &err.to_string(),
                        );
                        record.additional_details = request_details(&request);
                        records.push(record);
                        commit_audited(tx, records).await?;
                    }
                    return Err(err);
                }
            };
            if extending && settings.approval_required {
                let err = AppError::Forbidden {
                    rule: "pim-extension-needs-approval",
                    message: "This role's activations need approval, so they are not extended: deactivate it and \
                              activate it again for an approver to decide."
                        .into(),
                };
                drop(tx);
                return Err(self.refused(None, caller, Activity::Pim(activity), targets, err).await);
            }
            if input.is_validation_only {
                request.status = if settings.approval_required { "PendingApproval" } else { "Granted" }.into();
                return Ok(request);
            }
            if let Some(running) = running.filter(|_| extending) {
                // Never shorter than it was; never past the eligibility (the decision's window).
                let end = window.end.max(running.end);
                settle(&mut request, &running.id, "Provisioned", false);
                tx.set_role_assignment_window(&caller.tenant.id, &running.id, None, end).await?;
                records.push(self.pim_record(caller, PimActivity::MemberUpdateRequested, targets, &request));
                request.completed = Some(now);
                tx.insert_schedule_request(&request).await?;
                commit_audited(tx, records).await?;
                return Ok(request);
            }
            records.push(self.pim_record(caller, PimActivity::ActivationRequested, targets.clone(), &request));
            if settings.approval_required {
                request.status = "PendingApproval".into();
                records.push(self.pim_record(caller, PimActivity::ActivationApprovalRequested, targets, &request));
                tx.insert_schedule_request(&request).await?;
                commit_audited(tx, records).await?;
                return Ok(request);
            }
            let activation = activation(&request, &eligibilities[index], window);
            super::insert_assignment(&mut *tx, &activation).await?;
            request.target_schedule_id = Some(activation.id.clone());
            request.status = "Provisioned".into();
            records.push(self.pim_record(caller, PimActivity::ActivationCompleted, targets.clone(), &request));
            records.push(caller.succeeded(now, role_added(&scope), targets));
        }
        request.completed = Some(now);
        tx.insert_schedule_request(&request).await?;
        commit_audited(tx, records).await?;
        Ok(request)
    }

    async fn admin_assignment_request(
        &self,
        caller: &Caller,
        input: ScheduleRequestInput,
    ) -> Result<RoleScheduleRequest, AppError> {
        let now = self.now();
        let permanent =
            !matches!(input.schedule.expiration, pim::Expiration::AfterDateTime(_) | pim::Expiration::AfterDuration(_));
        let activity = match input.action.as_str() {
            "adminAssign" => PimActivity::MemberAddRequested { permanent },
            "adminRemove" => PimActivity::MemberRemoveRequested { permanent },
            _ => PimActivity::MemberUpdateRequested,
        };
        let write = actions::PIM_ASSIGNMENTS_WRITE;
        if let Err(err) = crate::require_scoped(caller, actions::ROLE_ASSIGNMENTS_WRITE, write, Target::Tenant) {
            return Err(self.refused(None, caller, Activity::Pim(activity), Vec::new(), err).await);
        }
        let mut tx = self.write().await?;
        tx.lock_role_changes(&caller.tenant.id).await?;
        let mut records = self.lapsed_records(&mut *tx, &caller.tenant).await?;
        let (role, scope, mut targets) = self.request_role(&mut *tx, caller, &input).await?;
        let principal = resolve_object(&mut *tx, &caller.tenant, &input.principal_id).await?;
        if let DirectoryObject::Group(group) = &principal
            && !group.is_assignable_to_role
        {
            return Err(AppError::BadRequest(
                "Only role-assignable groups (isAssignableToRole true) can be assigned roles.".into(),
            ));
        }
        targets.insert(0, object_target(&principal));
        targets.insert(0, role.target()?);
        let mut request = new_request(caller, ScheduleKind::Assignment, &input, principal.id(), &role, &scope, now);
        let existing = tx
            .list_role_assignment_schedules(&caller.tenant.id, Some(principal.id()))
            .await?
            .into_iter()
            .find(|it| same_role(&it.role_definition_id, &role.id()) && it.directory_scope_id == scope);
        let settings = self.settings_of(&mut *tx, &caller.tenant.id, &role.id()).await?;
        match input.action.as_str() {
            "adminAssign" => {
                if existing.is_some() {
                    return Err(rejected(
                        "RoleAssignmentExists",
                        "The principal already holds this role at this scope: change it with adminUpdate or remove it first.",
                    ));
                }
                let window =
                    pim::decide_admin_assignment(&settings, &input.schedule, input.justification.as_deref(), now)
                        .map_err(|it| policy_failed(&it))?;
                let assignment = RoleAssignment {
                    id: new_id().to_string(),
                    tenant_id: caller.tenant.id.clone(),
                    principal_id: principal.id().clone(),
                    role_definition_id: role.id().to_lowercase(),
                    directory_scope_id: scope.clone(),
                    created: now,
                    start: Some(window.start),
                    end: window.end,
                    activated_using: None,
                };
                if settle(&mut request, &assignment.id, "Provisioned", input.is_validation_only) {
                    return Ok(request);
                }
                super::insert_assignment(&mut *tx, &assignment).await?;
                let permanent = window.end.is_none();
                records.extend(self.pim_records(
                    caller,
                    [PimActivity::MemberAddRequested { permanent }, PimActivity::MemberAddCompleted { permanent }],
                    &targets,
                    &request,
                ));
                records.push(caller.succeeded(now, role_added(&scope), targets));
            }
            "adminRemove" => {
                let existing = existing.ok_or_else(|| {
                    rejected("RoleAssignmentDoesNotExist", "The principal does not hold this role at this scope.")
                })?;
                check_global_administrator_change(
                    &mut *tx,
                    &caller.tenant,
                    &caller.actor.id,
                    &RoleChange::RemoveAssignment(&existing.id),
                )
                .await?;
                if settle(&mut request, &existing.id, "Revoked", input.is_validation_only) {
                    return Ok(request);
                }
                tx.delete_role_assignment(&caller.tenant.id, &existing.id).await?;
                let permanent = existing.end.is_none();
                records.extend(self.pim_records(
                    caller,
                    [
                        PimActivity::MemberRemoveRequested { permanent },
                        PimActivity::MemberRemoveCompleted { permanent },
                    ],
                    &targets,
                    &request,
                ));
                records.push(caller.succeeded(now, role_removed(&scope), targets));
            }
            _ => {
                let existing = existing.filter(|it| it.activated_using.is_none()).ok_or_else(|| {
                    rejected(
                        "RoleAssignmentDoesNotExist",
                        "The principal holds no assignment of this role at this scope to change: use adminAssign.",
                    )
                })?;
                let window =
                    pim::decide_admin_assignment(&settings, &input.schedule, input.justification.as_deref(), now)
                        .map_err(|it| policy_failed(&it))?;
                // A start in the future is kept (the assignment pauses until then, and the
                // maximum counts from it); otherwise the assignment keeps its own start.
                let later_start = input.schedule.start.filter(|start| *start > now).map(|_| window.start);
                // An end before the start it keeps (one still to come) would make an assignment
                // that never counts.
                if let (Some(end), Some(start)) = (window.end, later_start.or(existing.start))
                    && end <= start
                {
                    return Err(AppError::BadRequest(
                        "The new end is not after the assignment's start: give a startDateTime, or a later end.".into(),
                    ));
                }
                if existing.end.is_none() && window.end.is_some() || later_start.is_some() {
                    // A permanent assignment made time-bound, or paused until a later start: the
                    // last permanent Global Administrator stays permanent and current.
                    check_global_administrator_change(
                        &mut *tx,
                        &caller.tenant,
                        &caller.actor.id,
                        &RoleChange::RemoveAssignment(&existing.id),
                    )
                    .await?;
                }
                if settle(&mut request, &existing.id, "Provisioned", input.is_validation_only) {
                    return Ok(request);
                }
                tx.set_role_assignment_window(&caller.tenant.id, &existing.id, later_start, window.end).await?;
                records.push(self.pim_record(caller, PimActivity::MemberUpdateRequested, targets, &request));
            }
        }
        request.completed = Some(now);
        tx.insert_schedule_request(&request).await?;
        commit_audited(tx, records).await?;
        Ok(request)
    }

    /// `POST …/roleAssignmentScheduleRequests/{id}/cancel`: the requester withdraws an activation
    /// that waits for approval.
    pub async fn cancel_schedule_request(&self, caller: &Caller, kind: ScheduleKind, id: &str) -> Result<(), AppError> {
        let now = self.now();
        crate::require_scope(caller, scope_actions(kind).1, true)?;
        let mut tx = self.write().await?;
        // Serialised with approvals: a canceled request is never approved after all.
        tx.lock_role_changes(&caller.tenant.id).await?;
        let mut request = tx
            .get_schedule_request(&caller.tenant.id, kind, id)
            .await?
            .ok_or_else(|| AppError::NotFound(id.to_owned()))?;
        let is_own = request.created_by == *caller.id();
        let write = scope_actions(kind).1;
        if !is_own && crate::require_scoped(caller, actions::ROLE_ASSIGNMENTS_WRITE, write, Target::Tenant).is_err() {
            return Err(AppError::NotFound(id.to_owned()));
        }
        if request.status != "PendingApproval" || has_expired(&request, now) {
            return Err(rejected(
                "RequestNotCancelable",
                format!("Only a request waiting for approval can be canceled; this one is {}.", request.status),
            ));
        }
        request.status = "Canceled".into();
        request.completed = Some(now);
        tx.update_schedule_request(&request).await.map_err(decided_meanwhile)?;
        let targets = self.request_targets(&mut *tx, caller, &request).await?;
        let mut record = caller.succeeded(now, Activity::Pim(PimActivity::ActivationCanceled), targets);
        record.additional_details = request_details(&request);
        commit_audited(tx, [record]).await
    }

    async fn request_targets(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        request: &RoleScheduleRequest,
    ) -> Result<Vec<TargetResource>, AppError> {
        self.role_targets(tx, &caller.tenant, &request.role_definition_id, &request.principal_id).await
    }

    /// `GET …/roleAssignmentScheduleRequests` and `…/roleEligibilityScheduleRequests`, newest
    /// first, optionally only the signed-in user's (`filterByCurrentUser`).
    pub async fn list_schedule_requests(
        &self,
        caller: &Caller,
        kind: ScheduleKind,
        on: Option<CurrentUser>,
    ) -> Result<Vec<RoleScheduleRequest>, AppError> {
        let now = self.now();
        let mut tx = self.read().await?;
        match on {
            None => {
                require_role_reader(caller, scope_actions(kind).0)?;
                Ok(tx
                    .list_schedule_requests(&caller.tenant.id, kind, None, false)
                    .await?
                    .into_iter()
                    .map(|it| as_seen(it, now))
                    .collect())
            }
            Some(CurrentUser::Principal) => {
                let user = caller.delegated_user()?;
                crate::require_scope(caller, scope_actions(kind).0, true)?;
                Ok(tx
                    .list_schedule_requests(&caller.tenant.id, kind, Some(&user.id), false)
                    .await?
                    .into_iter()
                    .map(|it| as_seen(it, now))
                    .collect())
            }
            Some(CurrentUser::Approver) => {
                caller.delegated_user()?;
                crate::require_scope(caller, scope_actions(kind).0, true)?;
                let mut res = Vec::new();
                for it in tx.list_schedule_requests(&caller.tenant.id, kind, None, true).await? {
                    if it.status == "PendingApproval"
                        && !has_expired(&it, now)
                        && self.may_approve(&mut *tx, caller, &it).await?
                    {
                        res.push(it);
                    }
                }
                Ok(res)
            }
        }
    }

    /// `GET …/{id}` of a request: administrators who read role assignments, or its requester.
    pub async fn get_schedule_request(
        &self,
        caller: &Caller,
        kind: ScheduleKind,
        id: &str,
    ) -> Result<RoleScheduleRequest, AppError> {
        let mut tx = self.read().await?;
        let request = tx
            .get_schedule_request(&caller.tenant.id, kind, id)
            .await?
            .ok_or_else(|| AppError::NotFound(id.to_owned()))?;
        if request.principal_id != *caller.id() && request.created_by != *caller.id() {
            require_role_reader(caller, scope_actions(kind).0)?;
        } else {
            crate::require_scope(caller, scope_actions(kind).0, true)?;
        }
        Ok(as_seen(request, self.now()))
    }

    /// `GET …/roleEligibilitySchedules` (and instances): every eligibility that has not ended, or
    /// the signed-in user's (directly and through groups).
    pub async fn list_eligibility_schedules(
        &self,
        caller: &Caller,
        mine: bool,
    ) -> Result<Vec<RoleEligibility>, AppError> {
        let mut tx = self.read().await?;
        if mine {
            let user = caller.delegated_user()?;
            crate::require_scope(caller, actions::PIM_ELIGIBILITY_READ, true)?;
            return Ok(tx.list_eligibilities_for(&caller.tenant.id, &user.id).await?);
        }
        require_role_reader(caller, actions::PIM_ELIGIBILITY_READ)?;
        Ok(tx.list_eligibilities(&caller.tenant.id, None).await?)
    }

    /// `GET …/roleAssignmentSchedules` (and instances): every assignment that has not ended,
    /// permanent, time-bound and activated, or the signed-in user's own.
    pub async fn list_assignment_schedules(
        &self,
        caller: &Caller,
        mine: bool,
    ) -> Result<Vec<RoleAssignment>, AppError> {
        let mut tx = self.read().await?;
        let principal = if mine {
            crate::require_scope(caller, actions::PIM_ASSIGNMENTS_READ, true)?;
            Some(caller.delegated_user()?.id.clone())
        } else {
            require_role_reader(caller, actions::PIM_ASSIGNMENTS_READ)?;
            None
        };
        let mut res = tx.list_role_assignment_schedules(&caller.tenant.id, principal.as_ref()).await?;
        // An activation whose eligibility no longer holds is over, whatever its end says.
        let current: std::collections::HashSet<String> = match &principal {
            Some(user) => {
                tx.list_role_assignments_for(&caller.tenant.id, user).await?.into_iter().map(|it| it.id).collect()
            }
            None => {
                let all = keyward_store::AssignmentFilter::default();
                tx.list_role_assignments(&caller.tenant.id, &all, None, keyward_store::ALL_ROWS)
                    .await?
                    .into_iter()
                    .map(|it| it.id)
                    .collect()
            }
        };
        let now = self.now();
        res.retain(|it| it.activated_using.is_none() || current.contains(&it.id) || it.window().start > now);
        Ok(res)
    }

    /// Whether the caller may decide on an activation request: never its requester; the role's
    /// approvers, or when it names none, those who manage role assignments.
    async fn may_approve(
        &self,
        tx: &mut dyn Tx,
        caller: &Caller,
        request: &RoleScheduleRequest,
    ) -> Result<bool, AppError> {
        if request.principal_id == *caller.id() || request.created_by == *caller.id() || caller.user().is_none() {
            return Ok(false);
        }
        let settings = self.settings_of(tx, &caller.tenant.id, &request.role_definition_id).await?;
        Ok(if settings.approvers.is_empty() {
            let write = actions::PIM_ASSIGNMENTS_WRITE;
            crate::require_scoped(caller, actions::ROLE_ASSIGNMENTS_WRITE, write, Target::Tenant).is_ok()
        } else {
            settings.approvers.contains(caller.id())
        })
    }

    /// `GET /roleManagement/directory/roleAssignmentApprovals/{id}`: the requester, an approver
    /// or an administrator who reads role assignments.
    pub async fn get_approval(&self, caller: &Caller, id: &str) -> Result<Approval, AppError> {
        let now = self.now();
        let mut tx = self.read().await?;
        let request = tx
            .get_schedule_request(&caller.tenant.id, ScheduleKind::Assignment, id)
            .await?
            // Only requests that needed approval: waiting, decided, or expired without a decision.
            .filter(|it| {
                it.status == "PendingApproval"
                    || it.review.is_some()
                    || it.status == "Canceled" && it.action == "selfActivate" && it.target_schedule_id.is_none()
            })
            .ok_or_else(|| AppError::NotFound(id.to_owned()))?;
        let may_approve = self.may_approve(&mut *tx, caller, &request).await?;
        if !may_approve && request.created_by != *caller.id() {
            require_role_reader(caller, actions::PIM_ASSIGNMENTS_READ)
                .map_err(|_| AppError::NotFound(id.to_owned()))?;
        }
        let status = if has_expired(&request, now) {
            "Expired"
        } else if request.status == "PendingApproval" {
            "InProgress"
        } else {
            "Completed"
        };
        // Assigned to the caller only while there is something to decide.
        let assigned_to_me = may_approve && status == "InProgress";
        Ok(Approval { request: as_seen(request, now), assigned_to_me, status })
    }

    /// `PATCH /roleManagement/directory/roleAssignmentApprovals/{id}/steps/{id}`: an approver
    /// approves (the activation starts now) or denies a waiting activation.
    pub async fn review_activation(
        &self,
        caller: &Caller,
        id: &str,
        approve: bool,
        justification: Option<String>,
    ) -> Result<(), AppError> {
        let now = self.now();
        let activity = if approve { PimActivity::ActivationApproved } else { PimActivity::ActivationDenied };
        if let Err(err) = crate::require_scope(caller, actions::PIM_ASSIGNMENTS_WRITE, false) {
            return Err(self.refused(None, caller, Activity::Pim(activity), Vec::new(), err).await);
        }
        let mut tx = self.write().await?;
        tx.lock_role_changes(&caller.tenant.id).await?;
        // Read before the upkeep below, which would show an expired request as canceled.
        let Some(mut request) = tx.get_schedule_request(&caller.tenant.id, ScheduleKind::Assignment, id).await? else {
            return Err(AppError::NotFound(id.to_owned()));
        };
        let mut records = self.lapsed_records(&mut *tx, &caller.tenant).await?;
        let targets = self.request_targets(&mut *tx, caller, &request).await?;
        if request.principal_id == *caller.id() || request.created_by == *caller.id() {
            let err = AppError::Forbidden {
                rule: "pim-no-self-approval",
                message: "You cannot approve or deny your own request: another approver must decide.".into(),
            };
            drop(tx);
            return Err(self.refused(None, caller, Activity::Pim(activity), targets, err).await);
        }
        if !self.may_approve(&mut *tx, caller, &request).await? {
            let err = AppError::Forbidden {
                rule: "pim-approver",
                message: "You are not an approver of this role's activations.".into(),
            };
            drop(tx);
            return Err(self.refused(None, caller, Activity::Pim(activity), targets, err).await);
        }
        if request.status != "PendingApproval" {
            return Err(AppError::Conflict(format!("The request was already decided: it is {}.", request.status)));
        }
        if has_expired(&request, now) {
            return Err(rejected(
                "RequestExpired",
                "Nobody decided within 24 hours, so the request expired: the requester must ask again.",
            ));
        }
        if justification.as_deref().is_none_or(|it| it.trim().is_empty()) {
            return Err(AppError::BadRequest("A justification is required to approve or deny.".into()));
        }
        request.review = Some(Review { approved: approve, by: caller.id().clone(), at: now, justification });
        request.completed = Some(now);
        let mut record = caller.succeeded(now, Activity::Pim(activity), targets.clone());
        record.additional_details = request_details(&request);
        records.push(record);
        if approve {
            // Decided again now: the eligibility must still cover the activation, which starts when
            // the requester asked it to, or at the approval if that time has passed. The
            // requester's MFA and justification were checked when they asked.
            let settings = RoleSettings {
                activation_requires_mfa: false,
                activation_requires_ticket: false,
                ..self.settings_of(&mut *tx, &caller.tenant.id, &request.role_definition_id).await?
            };
            let eligibilities: Vec<RoleEligibility> = tx
                .list_eligibilities_for(&caller.tenant.id, &request.principal_id)
                .await?
                .into_iter()
                .filter(|it| {
                    same_role(&it.role_definition_id, &request.role_definition_id)
                        && it.directory_scope_id == request.directory_scope_id
                })
                .collect();
            let windows: Vec<Window> = eligibilities.iter().map(RoleEligibility::window).collect();
            let schedule =
                ScheduleInfo { start: request.schedule.start.filter(|start| *start > now), ..request.schedule };
            let proof =
                ActivationProof { justification: request.justification.as_deref(), ..ActivationProof::default() };
            match pim::decide_activation(&settings, &windows, &schedule, &proof, now) {
                Ok((window, index)) => {
                    // The role as it is now: disabled or narrowed since the request, it is not
                    // granted.
                    self.role_and_scope(
                        &mut *tx,
                        caller,
                        (&request.role_definition_id, &request.directory_scope_id),
                        true,
                    )
                    .await?;
                    let held =
                        tx.list_role_assignment_schedules(&caller.tenant.id, Some(&request.principal_id)).await?;
                    if held.iter().any(|it| {
                        same_role(&it.role_definition_id, &request.role_definition_id)
                            && it.directory_scope_id == request.directory_scope_id
                    }) {
                        return Err(rejected(
                            "RoleAssignmentExists",
                            "The requester holds this role at this scope already (assigned meanwhile): nothing to approve.",
                        ));
                    }
                    let activation = activation(&request, &eligibilities[index], window);
                    super::insert_assignment(&mut *tx, &activation).await?;
                    request.target_schedule_id = Some(activation.id.clone());
                    request.status = "Provisioned".into();
                    let mut done =
                        caller.succeeded(now, Activity::Pim(PimActivity::ActivationCompleted), targets.clone());
                    done.additional_details = request_details(&request);
                    records.push(done);
                    records.push(caller.succeeded(now, role_added(&request.directory_scope_id), targets));
                }
                Err(rules) => {
                    request.status = "Failed".into();
                    tx.update_schedule_request(&request).await.map_err(decided_meanwhile)?;
                    commit_audited(tx, records).await?;
                    return Err(policy_failed(&rules));
                }
            }
        } else {
            request.status = "Denied".into();
        }
        tx.update_schedule_request(&request).await.map_err(decided_meanwhile)?;
        commit_audited(tx, records).await
    }

    /// `GET /policies/roleManagementPolicies`: every role's settings.
    pub async fn list_role_policies(&self, caller: &Caller) -> Result<Vec<RolePolicy>, AppError> {
        require_role_reader(caller, actions::PIM_POLICIES_READ)?;
        let mut tx = self.read().await?;
        let changed = tx.list_role_settings(&caller.tenant.id).await?;
        let mut roles: Vec<RoleDef> = keyward_core::authz::BUILT_IN_ROLES.iter().map(RoleDef::BuiltIn).collect();
        roles.extend(tx.list_custom_roles(&caller.tenant.id).await?.into_iter().map(RoleDef::Custom));
        Ok(roles
            .into_iter()
            .map(|role| {
                let found = changed.iter().find(|(id, ..)| same_role(id, &role.id()));
                RolePolicy {
                    settings: found.map(|(_, it, ..)| it.clone()).unwrap_or_default(),
                    modified: found.map(|(_, _, at, by)| (*at, by.clone())),
                    role,
                }
            })
            .collect())
    }

    /// Whether the caller may change a role's settings; a refusal is recorded. A write that
    /// changes nothing is refused to whoever may not change them, as Graph refuses it.
    pub async fn may_update_role_policy(&self, caller: &Caller) -> Result<(), AppError> {
        let write = actions::PIM_POLICIES_WRITE;
        if let Err(err) = crate::require_scoped(caller, actions::ROLE_ASSIGNMENTS_WRITE, write, Target::Tenant) {
            let activity = Activity::Pim(PimActivity::RoleSettingUpdated);
            return Err(self.refused(None, caller, activity, Vec::new(), err).await);
        }
        Ok(())
    }

    /// `PATCH /policies/roleManagementPolicies/{id}/rules/{ruleId}`: changes one rule of a role's
    /// settings. Approvers must be users of the tenant.
    pub async fn update_role_policy(
        &self,
        caller: &Caller,
        role: &str,
        change: RuleChange,
    ) -> Result<RolePolicy, AppError> {
        let now = self.now();
        let activity = Activity::Pim(PimActivity::RoleSettingUpdated);
        self.may_update_role_policy(caller).await?;
        let mut tx = self.write().await?;
        // Read and written under the tenant's role lock: concurrent changes never undo each other.
        tx.lock_role_changes(&caller.tenant.id).await?;
        let role = self.find_role(&mut *tx, caller, role).await?.ok_or_else(|| AppError::NotFound(role.to_owned()))?;
        if let RuleChange::Approval { approvers: Some(approvers), .. } = &change {
            let found = tx.get_users(&caller.tenant.id, approvers).await?;
            if let Some(missing) = approvers.iter().find(|id| !found.iter().any(|it| it.id == **id)) {
                return Err(AppError::BadRequest(format!("The approver '{missing}' is not a user of this tenant.")));
            }
        }
        let before = self.settings_of(&mut *tx, &caller.tenant.id, &role.id()).await?;
        let mut settings = before.clone();
        settings.apply(change.clone()).map_err(AppError::BadRequest)?;
        tx.put_role_settings(&caller.tenant.id, &role.id(), &settings, now, caller.id()).await?;
        let target = role.target()?.with_changes(vec![keyward_core::directory::PropertyChange::new(
            rule_name(&change),
            rule_value(&before, &change),
            rule_value(&settings, &change),
        )]);
        commit_audited(tx, [caller.succeeded(now, activity, vec![target])]).await?;
        Ok(RolePolicy { role, settings, modified: Some((now, caller.id().clone())) })
    }

    /// Removes the assignments and eligibilities that ended, and expires approvals nobody decided
    /// on, recording each (initiated by `MS-PIM`), in every tenant. Authorization never waits for
    /// this: it only tidies up and writes the records. Returns how many it ended.
    pub async fn end_lapsed_roles(&self) -> Result<usize, AppError> {
        let mut ended = 0;
        let tenants = self.read().await?.list_tenants().await?;
        for tenant in tenants {
            let mut tx = self.write().await?;
            tx.lock_role_changes(&tenant.id).await?;
            let records = self.lapsed_records(&mut *tx, &tenant).await?;
            ended += records.len();
            commit_audited(tx, records).await?;
        }
        Ok(ended)
    }

    /// Runs [`App::end_lapsed_roles`] now and then every `every`, logging failures, until the
    /// returned task is aborted: an ended activation is recorded within a minute of its end even
    /// when nobody makes a PIM request.
    pub fn spawn_pim_upkeep(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let app = self.clone();
        crate::spawn_every(every, move || {
            let app = app.clone();
            async move {
                match app.end_lapsed_roles().await {
                    Ok(0) => (),
                    Ok(n) => tracing::info!(records = n, "recorded ended role activations and eligibilities"),
                    Err(err) => tracing::warn!(error = %err, "recording ended role activations failed; it retries"),
                }
            }
        })
    }

    /// Removes what ended in `tenant` and returns the records of it, for the caller's transaction.
    pub(crate) async fn lapsed_records(&self, tx: &mut dyn Tx, tenant: &Tenant) -> Result<Vec<AuditRecord>, AppError> {
        let now = self.now();
        let context = AuditContext {
            tenant_id: tenant.id.clone(),
            correlation_id: new_id().to_string(),
            at: now,
            initiated_by: Initiator::App {
                app_id: PIM_APP_ID.to_owned(),
                display_name: "MS-PIM".to_owned(),
                service_principal_id: None,
            },
        };
        let mut records = Vec::new();
        let mut record = |activity: Activity, targets: Vec<TargetResource>, details: Vec<(String, String)>| {
            let mut it = context.success(audit_id(&context.correlation_id), activity, targets);
            it.additional_details = details;
            records.push(it);
        };
        for it in tx.take_ended_role_assignments(&tenant.id).await? {
            let targets = self.role_targets(tx, tenant, &it.role_definition_id, &it.principal_id).await?;
            let activity = if it.activated_using.is_some() {
                PimActivity::ActivationExpired
            } else {
                PimActivity::MemberRemoveCompleted { permanent: false }
            };
            let details = vec![("RoleAssignmentId".to_owned(), it.id.clone())];
            record(Activity::Pim(activity), targets.clone(), details.clone());
            record(role_removed(&it.directory_scope_id), targets, details);
        }
        for it in tx.take_ended_eligibilities(&tenant.id).await? {
            let targets = self.role_targets(tx, tenant, &it.role_definition_id, &it.principal_id).await?;
            record(
                Activity::Pim(PimActivity::EligibleRemoveCompleted { permanent: false }),
                targets,
                vec![("RoleEligibilityScheduleId".into(), it.id.clone())],
            );
        }
        for mut it in tx.list_schedule_requests(&tenant.id, ScheduleKind::Assignment, None, true).await? {
            if has_expired(&it, now) {
                it.status = "Canceled".into();
                it.completed = Some(now);
                match tx.update_schedule_request(&it).await {
                    Ok(()) => (),
                    // Decided meanwhile by an approver.
                    Err(keyward_store::StoreError::NotFound) => continue,
                    Err(err) => return Err(err.into()),
                }
                let targets = self.role_targets(tx, tenant, &it.role_definition_id, &it.principal_id).await?;
                record(Activity::Pim(PimActivity::RequestExpired), targets, request_details(&it));
            }
        }
        Ok(records)
    }
}

/// Marks the request as decided on the schedule `target` with `status`; true when it only
/// validates, so the caller answers without changing anything.
fn settle(request: &mut RoleScheduleRequest, target: &str, status: &str, validation_only: bool) -> bool {
    request.target_schedule_id = Some(target.to_owned());
    request.status = status.to_owned();
    validation_only
}

/// Core Directory's record of a role given at `scope` (tenant-wide or over a unit).
fn role_added(scope: &str) -> Activity {
    if scope == "/" { Activity::AddMemberToRole } else { Activity::AddScopedMemberToRole }
}

/// Core Directory's record of a role taken away at `scope`.
fn role_removed(scope: &str) -> Activity {
    if scope == "/" { Activity::RemoveMemberFromRole } else { Activity::RemoveScopedMemberFromRole }
}

/// A request that left `PendingApproval` in another transaction first.
fn decided_meanwhile(err: keyward_store::StoreError) -> AppError {
    match err {
        keyward_store::StoreError::NotFound => AppError::Conflict("The request was decided meanwhile.".into()),
        other => other.into(),
    }
}

/// A request as recorded, before it is decided.
fn new_request(
    caller: &Caller,
    kind: ScheduleKind,
    input: &ScheduleRequestInput,
    principal: &ObjectId,
    role: &RoleDef,
    scope: &str,
    now: OffsetDateTime,
) -> RoleScheduleRequest {
    RoleScheduleRequest {
        id: new_id().to_string(),
        tenant_id: caller.tenant.id.clone(),
        kind,
        action: input.action.clone(),
        principal_id: principal.clone(),
        role_definition_id: role.id().to_lowercase(),
        directory_scope_id: scope.to_owned(),
        justification: input.justification.clone(),
        status: "Granted".into(),
        schedule: input.schedule,
        ticket_number: input.ticket_number.clone(),
        ticket_system: input.ticket_system.clone(),
        target_schedule_id: None,
        created_by: caller.id().clone(),
        created: now,
        completed: None,
        review: None,
    }
}

/// The activation a request makes from an eligibility, for `window`.
fn activation(request: &RoleScheduleRequest, eligibility: &RoleEligibility, window: Window) -> RoleAssignment {
    RoleAssignment {
        id: new_id().to_string(),
        tenant_id: request.tenant_id.clone(),
        principal_id: request.principal_id.clone(),
        role_definition_id: request.role_definition_id.clone(),
        directory_scope_id: request.directory_scope_id.clone(),
        created: window.start,
        start: Some(window.start),
        end: window.end,
        activated_using: Some(eligibility.id.clone()),
    }
}

/// A waiting request past its approval time shows as canceled, before the maintenance records it.
fn as_seen(mut request: RoleScheduleRequest, now: OffsetDateTime) -> RoleScheduleRequest {
    if has_expired(&request, now) {
        request.status = "Canceled".into();
    }
    request
}

/// `additionalDetails` of a PIM record: the request, its justification and ticket.
fn request_details(request: &RoleScheduleRequest) -> Vec<(String, String)> {
    let mut res = vec![
        ("RequestId".to_owned(), request.id.clone()),
        ("RoleDefinitionOriginId".to_owned(), request.role_definition_id.clone()),
        ("DirectoryScopeId".to_owned(), request.directory_scope_id.clone()),
    ];
    if let Some(justification) = &request.justification {
        res.push(("Justification".to_owned(), justification.clone()));
    }
    if let Some(ticket) = &request.ticket_number {
        res.push(("TicketNumber".to_owned(), ticket.clone()));
    }
    res
}

fn rule_name(change: &RuleChange) -> &'static str {
    match change {
        RuleChange::ActivationExpiration { .. } => "Expiration_EndUser_Assignment",
        RuleChange::ActivationEnablement { .. } => "Enablement_EndUser_Assignment",
        RuleChange::Approval { .. } => "Approval_EndUser_Assignment",
        RuleChange::EligibilityExpiration { .. } => "Expiration_Admin_Eligibility",
        RuleChange::AssignmentExpiration { .. } => "Expiration_Admin_Assignment",
        RuleChange::AssignmentEnablement { .. } => "Enablement_Admin_Assignment",
    }
}

/// The part of `settings` a rule change touches, as the audit record shows it.
fn rule_value(settings: &RoleSettings, change: &RuleChange) -> String {
    let duration = pim::format_duration;
    match change {
        RuleChange::ActivationExpiration { .. } => {
            format!("{{\"maximumDuration\":\"{}\"}}", duration(settings.activation_maximum))
        }
        RuleChange::ActivationEnablement { .. } => {
            let mut rules = Vec::new();
            for (on, name) in [
                (settings.activation_requires_mfa, "\"MultiFactorAuthentication\""),
                (settings.activation_requires_justification, "\"Justification\""),
                (settings.activation_requires_ticket, "\"Ticketing\""),
            ] {
                if on {
                    rules.push(name);
                }
            }
            format!("{{\"enabledRules\":[{}]}}", rules.join(","))
        }
        RuleChange::Approval { .. } => {
            let approvers: Vec<String> = settings.approvers.iter().map(|it| format!("\"{it}\"")).collect();
            format!(
                "{{\"isApprovalRequired\":{},\"primaryApprovers\":[{}]}}",
                settings.approval_required,
                approvers.join(",")
            )
        }
        RuleChange::EligibilityExpiration { .. } => format!(
            "{{\"isExpirationRequired\":{},\"maximumDuration\":\"{}\"}}",
            settings.eligibility_expiration_required,
            duration(settings.eligibility_maximum)
        ),
        RuleChange::AssignmentExpiration { .. } => format!(
            "{{\"isExpirationRequired\":{},\"maximumDuration\":\"{}\"}}",
            settings.assignment_expiration_required,
            duration(settings.assignment_maximum)
        ),
        RuleChange::AssignmentEnablement { .. } => format!(
            "{{\"enabledRules\":[{}]}}",
            if settings.assignment_requires_justification { "\"Justification\"" } else { "" }
        ),
    }
}
