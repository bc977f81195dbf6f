//! Approvals: the service desk's changes dual control holds for a second administrator
//! (`keywardServiceDeskPolicy.dualControlEnabled`), to approve or deny with a justification, and
//! the recent ones with their outcome.

use keyward_app::dual_control::{Party, RequestView};
use keyward_core::dual_control::Status;

use super::*;

/// Requests the page lists.
const PAGE_SIZE: &str = "50";

/// One request as a row.
#[derive(Debug)]
struct Row {
    id: String,
    what: String,
    target: String,
    requester: String,
    asked: String,
    expires: String,
    status: &'static str,
    outcome: String,
    can_decide: bool,
}

#[derive(Debug, Template)]
#[template(path = "portal/approvals.html")]
struct ApprovalsPage {
    title: &'static str,
    tenant: String,
    header: Header,
    csrf: String,
    notice: Option<&'static str>,
    to_decide: Vec<Row>,
    others: Vec<Row>,
    next: Option<String>,
}

fn name(party: &Party) -> String {
    match (&party.display_name, &party.user_principal_name) {
        (Some(name), Some(upn)) => format!("{name} ({upn})"),
        (Some(name), None) => name.clone(),
        _ => party.id.to_string(),
    }
}

fn row(it: &RequestView) -> Row {
    let status = match it.status {
        Status::PendingApproval => "Waiting",
        Status::Completed => "Approved and done",
        Status::Denied => "Denied",
        Status::Failed => "Approved, but failed",
        Status::Expired => "Expired",
    };
    let outcome = match (&it.decided_by, &it.decision_note) {
        (Some(by), Some(note)) => format!("{}: {note}", name(by)),
        (Some(by), None) => name(by),
        _ => String::new(),
    };
    Row {
        id: it.id.to_string(),
        what: it.operation.describe(),
        target: name(&it.target),
        requester: name(&it.requester),
        asked: keyward_app::rfc3339(it.created),
        expires: keyward_app::rfc3339(it.expires),
        status,
        outcome,
        can_decide: it.can_decide,
    }
}

/// `GET /{tenant}/admin/approvals`: the requests the caller may decide first, then the others
/// they may see (their own, or all for readers of the audit log), newest first.
pub(in crate::pages) async fn approvals(
    State(state): State<AppState>,
    Admin { caller, csrf }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let notice = match params.get("done").map(String::as_str) {
        Some("approved") => Some("Done: approved; the change ran as the requester."),
        Some("denied") => Some("Done: denied; nothing changed."),
        _ => None,
    };
    let skiptoken = params.get("skiptoken").map(String::as_str);
    let (items, skiptoken) =
        match state.app.list_service_desk_requests(&caller, false, Some(PAGE_SIZE), skiptoken).await {
            Ok(it) => it,
            Err(err) => return failure(err),
        };
    let tenant = caller.tenant.id.to_string();
    let next = skiptoken.map(|token| format!("/{tenant}/admin/approvals?skiptoken={}", url_encode(&token)));
    let (to_decide, others): (Vec<Row>, Vec<Row>) = items.iter().map(row).partition(|it| it.can_decide);
    let page = ApprovalsPage {
        title: "Approvals",
        tenant,
        header: Header::of(&caller),
        csrf,
        notice,
        to_decide,
        others,
        next,
    };
    html(StatusCode::OK, &page)
}

/// `POST /{tenant}/admin/approvals` with `csrf`, `request`, `action` (`approve` or `deny`) and
/// `justification`.
pub(in crate::pages) async fn approvals_action(State(state): State<AppState>, form: AdminForm) -> Response {
    let caller = &form.caller;
    let approve = match form.field("action") {
        "approve" => true,
        "deny" => false,
        _ => return failure(AppError::BadRequest("Unknown action: use Approve or Deny.".into())),
    };
    let justification = Some(form.field("justification").trim().to_owned()).filter(|it| !it.is_empty());
    match state.app.decide_service_desk_request(caller, form.field("request"), approve, justification).await {
        Ok(_) => {
            let done = if approve { "approved" } else { "denied" };
            see_other(&format!("/{}/admin/approvals?done={done}", caller.tenant.id))
        }
        Err(AppError::Conflict(message)) => failure(AppError::BadRequest(message)),
        Err(err) => failure(err),
    }
}
