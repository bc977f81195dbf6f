//! Roles with their descriptions, and who holds each one at which scope.

use super::picker::{self, Candidate, Offer};
use super::*;

#[derive(Debug, Template)]
#[template(path = "portal/roles.html")]
struct RolesPage {
    title: &'static str,
    tenant: String,
    header: Header,
    /// Each role: id, name, privileged, description, custom.
    roles: Vec<(String, String, bool, String, bool)>,
    notice: Option<&'static str>,
}

/// An assignment on a role's page: its id, principal, the principal's type, scope, how long it holds.
type AssignmentRow = (String, String, &'static str, String, String);
/// An eligibility on a role's page: principal, scope as shown, scope, until, principal id.
type EligibleRow = (String, String, String, String, String);

#[derive(Debug, Template)]
#[template(path = "portal/role.html")]
struct RolePage {
    title: String,
    tenant: String,
    header: Header,
    description: String,
    privileged: bool,
    is_custom: bool,
    /// Each assignment: its id, principal, the principal's type, scope, and how long it holds
    /// (`Permanent`, `Activated until …`, `Until …`); or why they are not shown.
    assignments: Result<Vec<AssignmentRow>, String>,
    /// Who may activate the role (principal, scope as shown, scope, until), or why not shown.
    eligible: Result<Vec<EligibleRow>, String>,
    /// The next page of assignments, if any.
    next: Option<String>,
    /// The scopes an assignment may have: `/` and each administrative unit, with their names.
    scopes: Vec<(String, String)>,
    role_id: String,
    csrf: String,
    notice: Option<String>,
    /// The picker: this page's address, the search, and what it found.
    picker_path: String,
    find: String,
    candidates: Vec<Candidate>,
}

#[derive(Debug, Template)]
#[template(path = "portal/role_confirm.html")]
struct RoleConfirmPage {
    title: String,
    tenant: String,
    header: Header,
    role_id: String,
    assignment: String,
    principal: String,
    scope: String,
    csrf: String,
}

fn role_description(role: &keyward_app::RoleDef) -> String {
    match role {
        keyward_app::RoleDef::BuiltIn(it) => it.description.to_owned(),
        keyward_app::RoleDef::Custom(it) => it.description.clone().unwrap_or_default(),
    }
}

/// `GET /{tenant}/admin/roles`: every role, built-in and custom, with its description and a
/// privileged badge.
pub(in crate::pages) async fn roles(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let all = match state.app.list_role_definitions(&caller).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let mut roles: Vec<_> = all
        .iter()
        .map(|it| {
            let is_custom = matches!(it, keyward_app::RoleDef::Custom(_));
            (it.id(), it.display_name().to_owned(), it.is_privileged(), role_description(it), is_custom)
        })
        .collect();
    roles.sort_by(|a, b| a.1.cmp(&b.1));
    let page = RolesPage {
        title: "Roles and administrators",
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        roles,
        notice: (params.get("done").map(String::as_str) == Some("deleted")).then_some("Done: the role was deleted."),
    };
    html(StatusCode::OK, &page)
}

/// `GET /{tenant}/admin/roles/{id}`: a role and who holds it, at which scope.
pub(in crate::pages) async fn role(
    State(state): State<AppState>,
    Admin { caller, csrf }: Admin,
    Path((_, id)): Path<(String, String)>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let notice = match params.get("done").map(String::as_str) {
        Some("remove") => Some("Done: the assignment was removed.".to_owned()),
        Some("remove_eligible") => {
            Some("Done: the eligibility was removed, with any activation made from it.".to_owned())
        }
        Some("created") => Some("Done: the role was created. Add its assignments below.".to_owned()),
        Some("saved") => Some("Done: the role was saved.".to_owned()),
        _ => None,
    };
    let skiptoken = params.get("skiptoken").map(String::as_str);
    role_page(&state, &caller, &id, csrf, notice, &picker::find_of(&params), skiptoken).await
}

/// Assignments one page of a role lists.
const ASSIGNMENT_ROWS: usize = 50;

/// How a page names an assignment's principal (its id if it no longer exists).
async fn principal_name(state: &AppState, caller: &Caller, id: &str) -> String {
    match state.app.get_directory_object(caller, id).await {
        Ok(object) => picker::Row::of(&object).name,
        Err(_) => id.to_owned(),
    }
}

/// The scopes a role may be held at, with their names: `/` and the administrative units the
/// caller may list (the first 100).
pub(super) async fn scopes(state: &AppState, caller: &Caller) -> Vec<(String, String)> {
    let mut units = vec![("/".to_owned(), "Directory".to_owned())];
    if let Ok(page) = state.app.list_units(caller, 100, None).await {
        units.extend(page.items.iter().map(|it| (format!("/administrativeUnits/{}", it.id), it.display_name.clone())));
    }
    units
}

/// A time as the portal's role pages show it.
pub(super) fn shown_time(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    at.format(&format).unwrap_or_default()
}

/// A scope as the page shows it.
pub(super) fn scope_name(scope: &str, units: &[(String, String)]) -> String {
    match scope {
        "/" => "Directory".to_owned(),
        other => units.iter().find(|(id, _)| id == other).map_or_else(
            || format!("Administrative unit {}", other.trim_start_matches("/administrativeUnits/")),
            |(_, name)| name.clone(),
        ),
    }
}

async fn role_page(
    state: &AppState,
    caller: &Caller,
    id: &str,
    csrf: String,
    notice: Option<String>,
    find: &str,
    skiptoken: Option<&str>,
) -> Response {
    let role = match state.app.get_role_definition(caller, id).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let candidates = match picker::candidates(state, caller, find, Offer::UsersAndAssignableGroups).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let units = scopes(state, caller).await;
    let filter = AssignmentFilter { role_definition_id: Some(vec![role.id()]), ..AssignmentFilter::default() };
    let listed = state.app.list_role_assignments_with_principals(caller, &filter, ASSIGNMENT_ROWS, skiptoken).await;
    let (assignments, next) = match listed {
        Ok(page) => {
            let rows = page
                .items
                .iter()
                .map(|(assignment, principal)| {
                    let (name, kind) = principal.as_ref().map_or_else(
                        || (assignment.principal_id.to_string(), "-"),
                        |it| {
                            let row = picker::Row::of(it);
                            (row.name, row.kind)
                        },
                    );
                    let holds = match (assignment.end, &assignment.activated_using) {
                        (None, _) => "Permanent".to_owned(),
                        (Some(end), Some(_)) => format!("Activated until {}", shown_time(end)),
                        (Some(end), None) => format!("Until {}", shown_time(end)),
                    };
                    (assignment.id.clone(), name, kind, scope_name(&assignment.directory_scope_id, &units), holds)
                })
                .collect();
            let next = page.skiptoken.map(|token| {
                format!("/{}/admin/roles/{}?skiptoken={}", caller.tenant.id, role.id(), url_encode(&token))
            });
            (Ok(rows), next)
        }
        Err(AppError::Forbidden { .. }) => (Err("Your roles do not let you read role assignments.".to_owned()), None),
        Err(err) => return failure(err),
    };
    let eligible = match state.app.list_eligibility_schedules(caller, false).await {
        Ok(items) => {
            let mut rows = Vec::new();
            for it in items.iter().filter(|it| it.role_definition_id.eq_ignore_ascii_case(&role.id())) {
                rows.push((
                    principal_name(state, caller, it.principal_id.as_str()).await,
                    scope_name(&it.directory_scope_id, &units),
                    it.directory_scope_id.clone(),
                    it.end.map_or_else(|| "Permanent".to_owned(), shown_time),
                    it.principal_id.to_string(),
                ));
            }
            Ok(rows)
        }
        Err(AppError::Forbidden { .. }) => Err("Your roles do not let you read eligibility.".to_owned()),
        Err(err) => return failure(err),
    };
    let page = RolePage {
        title: role.display_name().to_owned(),
        tenant: caller.tenant.id.to_string(),
        header: Header::of(caller),
        description: role_description(&role),
        privileged: role.is_privileged(),
        is_custom: matches!(role, keyward_app::RoleDef::Custom(_)),
        assignments,
        eligible,
        next,
        scopes: units,
        picker_path: format!("/{}/admin/roles/{}", caller.tenant.id, role.id()),
        role_id: role.id(),
        csrf,
        notice,
        find: find.to_owned(),
        candidates,
    };
    html(StatusCode::OK, &page)
}

/// `GET /{tenant}/admin/roles/{id}/remove?assignment=…`: what removing an assignment does, and
/// the form that does it.
pub(in crate::pages) async fn role_remove_confirm(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    Admin { caller, csrf }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let key = params.get("assignment").map(String::as_str).unwrap_or_default();
    let assignment = match state.app.get_role_assignment(&caller, key).await {
        Ok(it) if it.role_definition_id.eq_ignore_ascii_case(&id) => it,
        Ok(_) => return failure(AppError::NotFound(key.to_owned())),
        Err(err) => return failure(err),
    };
    let role = match state.app.get_role_definition(&caller, &assignment.role_definition_id).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let principal = principal_name(&state, &caller, &assignment.principal_id.to_string()).await;
    let page = RoleConfirmPage {
        title: format!("Remove {}", role.display_name()),
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        role_id: role.id(),
        assignment: assignment.id,
        principal,
        scope: scope_name(&assignment.directory_scope_id, &[]),
        csrf,
    };
    html(StatusCode::OK, &page)
}

/// `POST /{tenant}/admin/roles/{id}`: `action=add` assigns the role to each principal picked
/// (`principal`, object ids) or typed (`principals`, sign-in names or object ids, one per line),
/// at most 20, at the chosen scope, each decided and audited on its own as
/// `POST /roleManagement/directory/roleAssignments`; `action=remove` removes one assignment.
pub(in crate::pages) async fn role_action(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    form: AdminForm,
) -> Response {
    let caller = &form.caller;
    let role = match state.app.get_role_definition(caller, &id).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    match form.field("action") {
        "remove" => {
            let assignment = form.field("assignment");
            // Only an assignment of this page's role (the use case decides and audits the removal).
            match state.app.get_role_assignment(caller, assignment).await {
                Ok(found) if found.role_definition_id.eq_ignore_ascii_case(&role.id()) => (),
                Ok(_) => return failure(AppError::NotFound(assignment.to_owned())),
                Err(err) => return failure(err),
            }
            match state.app.delete_role_assignment(caller, assignment).await {
                Ok(()) => see_other(&format!("/{}/admin/roles/{}?done=remove", caller.tenant.id, role.id())),
                Err(err) => failure(err),
            }
        }
        "eligible" => {
            let scope = match form.field("scope") {
                "" => "/".to_owned(),
                other => other.to_owned(),
            };
            let expiration = match form.field("days") {
                "" | "permanent" => keyward_core::pim::Expiration::NoExpiration,
                days => match days.parse::<i64>() {
                    Ok(days) if [30, 90, 180, 365].contains(&days) => {
                        keyward_core::pim::Expiration::AfterDuration(time::Duration::days(days))
                    }
                    _ => return failure(AppError::BadRequest("Choose how long from the list.".into())),
                },
            };
            let justification = Some(form.field("justification").trim().to_owned()).filter(|it| !it.is_empty());
            let (app, role_id) = (&state.app, role.id());
            let make_eligible = |principal_id: String| -> picker::Act<'_> {
                let input = keyward_app::ScheduleRequestInput {
                    action: "adminAssign".into(),
                    principal_id,
                    role_definition_id: role_id.clone(),
                    directory_scope_id: scope.clone(),
                    justification: justification.clone(),
                    schedule: keyward_core::pim::ScheduleInfo { start: None, expiration },
                    ..keyward_app::ScheduleRequestInput::default()
                };
                Box::pin(async move { app.request_role_eligibility(caller, input).await.map(|_| ()) })
            };
            let title = format!("Make eligible: {}", role.display_name());
            let back = (format!("/{}/admin/roles/{}", caller.tenant.id, role.id()), "Back to the role");
            picker::act_on_each(&state, &form, make_eligible, title, "made eligible", back).await
        }
        "remove_eligible" => {
            let input = keyward_app::ScheduleRequestInput {
                action: "adminRemove".into(),
                principal_id: form.field("principal").to_owned(),
                role_definition_id: role.id(),
                directory_scope_id: form.field("scope").to_owned(),
                justification: Some("Removed in the admin portal".into()),
                ..keyward_app::ScheduleRequestInput::default()
            };
            match state.app.request_role_eligibility(caller, input).await {
                Ok(_) => see_other(&format!("/{}/admin/roles/{}?done=remove_eligible", caller.tenant.id, role.id())),
                Err(err) => failure(err),
            }
        }
        "add" => {
            let scope = match form.field("scope") {
                "" => "/",
                other => other,
            };
            let (app, role_id) = (&state.app, role.id());
            let assign = |principal_id: String| -> picker::Act<'_> {
                let role_id = role_id.clone();
                Box::pin(
                    async move { app.create_role_assignment(caller, &principal_id, &role_id, scope).await.map(|_| ()) },
                )
            };
            let title = format!("Add assignments: {}", role.display_name());
            let back = (format!("/{}/admin/roles/{}", caller.tenant.id, role.id()), "Back to the role");
            picker::act_on_each(&state, &form, assign, title, "assigned", back).await
        }
        _ => failure(AppError::BadRequest("Unknown action: use the forms on the role's page.".into())),
    }
}
