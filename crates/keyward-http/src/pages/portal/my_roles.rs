//! `/{tenant}/admin/my-roles`: the signed-in user's just-in-time roles. Activate a role one is
//! eligible for (with a justification and a duration), deactivate it, withdraw a request waiting
//! for approval, and, for approvers, the requests waiting for their decision. Each form goes
//! through the same use case as Graph's `roleAssignmentScheduleRequests` and approvals.

use super::*;
use keyward_app::{CurrentUser, ScheduleRequestInput};
use keyward_core::directory::ScheduleKind;
use keyward_core::pim::{Expiration, ScheduleInfo};

/// The durations the activation form offers, in hours; the role's settings decide, and refuse
/// a longer one with the longest allowed.
const HOURS: [u32; 8] = [1, 2, 3, 4, 6, 8, 12, 24];

/// One row: the role's id and name, the scope as stored and as shown, and when it ends.
#[derive(Debug)]
struct Held {
    role_id: String,
    role: String,
    scope: String,
    scope_name: String,
    ends: String,
    is_activated: bool,
}

/// A request waiting for approval, as its requester or an approver sees it.
#[derive(Debug)]
struct Waiting {
    id: String,
    role: String,
    scope_name: String,
    requester: String,
    justification: String,
    duration: String,
    asked: String,
}

#[derive(Debug, Template)]
#[template(path = "portal/my_roles.html")]
struct MyRolesPage {
    title: &'static str,
    tenant: String,
    header: Header,
    csrf: String,
    notice: Option<&'static str>,
    /// Activation needs MFA within the last 10 minutes and this session's is older: where to
    /// sign in again.
    reauthenticate: Option<String>,
    active: Vec<Held>,
    eligible: Vec<Held>,
    hours: &'static [u32],
    mine: Vec<Waiting>,
    to_decide: Vec<Waiting>,
}

use super::roles::shown_time as shown;

/// `GET /{tenant}/admin/my-roles`.
pub(in crate::pages) async fn my_roles(
    State(state): State<AppState>,
    Admin { caller, csrf }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let notice = match params.get("done").map(String::as_str) {
        Some("activated") => Some("Done: the role is active."),
        Some("pending") => Some("Done: the activation waits for an approver."),
        Some("deactivated") => Some("Done: the role is no longer active."),
        Some("canceled") => Some("Done: the request was withdrawn."),
        Some("approved") => Some("Done: approved; the role is active for the requester."),
        Some("denied") => Some("Done: denied."),
        _ => None,
    };
    match page(&state, &caller, csrf, notice).await {
        Ok(page) => html(StatusCode::OK, &page),
        Err(err) => failure(err),
    }
}

async fn page(
    state: &AppState,
    caller: &Caller,
    csrf: String,
    notice: Option<&'static str>,
) -> Result<MyRolesPage, AppError> {
    let app = &state.app;
    // A guest may not read role definitions: the page then names roles by id.
    let roles = app.list_role_definitions(caller).await.unwrap_or_default();
    let role_name = |id: &str| {
        roles
            .iter()
            .find(|it| it.id().eq_ignore_ascii_case(id))
            .map_or_else(|| id.to_owned(), |it| it.display_name().to_owned())
    };
    let units = super::roles::scopes(state, caller).await;
    let held = |role_id: String, scope: String, end: Option<time::OffsetDateTime>, is_activated: bool| Held {
        role: role_name(&role_id),
        scope_name: super::roles::scope_name(&scope, &units),
        ends: end.map_or_else(|| "Permanent".to_owned(), shown),
        is_activated,
        role_id,
        scope,
    };
    let now = app.now();
    let mut active: Vec<Held> = app
        .list_assignment_schedules(caller, true)
        .await?
        .into_iter()
        .filter(|it| it.window().holds_at(now))
        .map(|it| held(it.role_definition_id, it.directory_scope_id, it.end, it.activated_using.is_some()))
        .collect();
    active.sort_by(|a, b| a.role.cmp(&b.role));
    let mut eligible: Vec<Held> = app
        .list_eligibility_schedules(caller, true)
        .await?
        .into_iter()
        .filter(|it| it.window().holds_at(now))
        .map(|it| held(it.role_definition_id, it.directory_scope_id, it.end, false))
        .collect();
    eligible.sort_by(|a, b| (&a.role, &a.scope).cmp(&(&b.role, &b.scope)));
    eligible.dedup_by(|a, b| a.role_id == b.role_id && a.scope == b.scope);
    let waiting = |it: keyward_core::directory::RoleScheduleRequest, requester: String| Waiting {
        role: role_name(&it.role_definition_id),
        scope_name: super::roles::scope_name(&it.directory_scope_id, &units),
        requester,
        justification: it.justification.unwrap_or_default(),
        duration: match it.schedule.expiration {
            Expiration::AfterDuration(duration) => keyward_core::pim::format_duration(duration),
            Expiration::AfterDateTime(end) => format!("until {}", shown(end)),
            _ => "the longest allowed".to_owned(),
        },
        asked: shown(it.created),
        id: it.id,
    };
    let mine = app
        .list_schedule_requests(caller, ScheduleKind::Assignment, Some(CurrentUser::Principal))
        .await?
        .into_iter()
        .filter(|it| it.status == "PendingApproval")
        .map(|it| waiting(it, String::new()))
        .collect();
    let mut to_decide = Vec::new();
    for it in app.list_schedule_requests(caller, ScheduleKind::Assignment, Some(CurrentUser::Approver)).await? {
        let requester = match app.get_directory_object(caller, it.principal_id.as_str()).await {
            Ok(object) => super::picker::Row::of(&object).name,
            Err(_) => it.principal_id.to_string(),
        };
        to_decide.push(waiting(it, requester));
    }
    let recent_mfa = caller.authentication.as_ref().is_some_and(|(at, amr)| {
        amr.iter().any(|it| it == "mfa") && now - *at <= keyward_core::pim::ACTIVATION_MFA_WINDOW
    });
    let reauthenticate = (!recent_mfa && !eligible.is_empty()).then(|| {
        let back = format!("/{}/admin/my-roles", caller.tenant.id);
        format!("/{}/login?prompt=login&return_to={}", caller.tenant.id, url_encode(&back))
    });
    Ok(MyRolesPage {
        title: "My roles",
        tenant: caller.tenant.id.to_string(),
        header: Header::of(caller),
        csrf,
        notice,
        reauthenticate,
        active,
        eligible,
        hours: &HOURS,
        mine,
        to_decide,
    })
}

/// `POST /{tenant}/admin/my-roles`: `action` is `activate` (`role`, `scope`, `hours`,
/// `justification`, optionally `ticket`), `deactivate` (`role`, `scope`), `cancel` (`request`),
/// or `approve` / `deny` (`request`, `justification`).
pub(in crate::pages) async fn my_roles_action(State(state): State<AppState>, form: AdminForm) -> Response {
    let caller = &form.caller;
    let back = |done: &str| see_other(&format!("/{}/admin/my-roles?done={done}", caller.tenant.id));
    let optional = |name: &str| Some(form.field(name).trim().to_owned()).filter(|it| !it.is_empty());
    let own = |action: &str, schedule: ScheduleInfo| ScheduleRequestInput {
        action: action.to_owned(),
        principal_id: caller.id().to_string(),
        role_definition_id: form.field("role").to_owned(),
        directory_scope_id: match form.field("scope") {
            "" => "/".to_owned(),
            other => other.to_owned(),
        },
        justification: optional("justification"),
        schedule,
        ticket_number: optional("ticket"),
        ticket_system: None,
        is_validation_only: false,
    };
    let result = match form.field("action") {
        "activate" => {
            let hours = match form.field("hours").parse::<u32>() {
                Ok(hours) if HOURS.contains(&hours) => hours,
                _ => return failure(AppError::BadRequest("Choose a duration from the list.".into())),
            };
            let schedule = ScheduleInfo {
                start: None,
                expiration: Expiration::AfterDuration(time::Duration::hours(i64::from(hours))),
            };
            state
                .app
                .request_role_assignment(caller, own("selfActivate", schedule))
                .await
                .map(|it| if it.status == "PendingApproval" { "pending" } else { "activated" })
        }
        "deactivate" => state
            .app
            .request_role_assignment(caller, own("selfDeactivate", ScheduleInfo::default()))
            .await
            .map(|_| "deactivated"),
        "cancel" => state
            .app
            .cancel_schedule_request(caller, ScheduleKind::Assignment, form.field("request"))
            .await
            .map(|()| "canceled"),
        decision @ ("approve" | "deny") => state
            .app
            .review_activation(caller, form.field("request"), decision == "approve", optional("justification"))
            .await
            .map(|()| if decision == "approve" { "approved" } else { "denied" }),
        _ => Err(AppError::BadRequest("Unknown action: use the forms on My roles.".into())),
    };
    match result {
        Ok(done) => back(done),
        Err(AppError::Conflict(message)) => failure(AppError::BadRequest(message)),
        Err(err) => failure(err),
    }
}
