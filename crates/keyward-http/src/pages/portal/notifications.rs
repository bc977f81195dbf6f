//! The notification outbox: what was (or will be) e-mailed to users about changes to their
//! security info and to administrators, with each message's delivery state.

use super::*;

/// Messages per page.
const PAGE_SIZE: &str = "50";

#[derive(Debug, Template)]
#[template(path = "portal/notifications.html")]
struct NotificationsPage {
    title: &'static str,
    tenant: String,
    header: Header,
    /// The filter's choices: value, label, whether chosen.
    states: Vec<(&'static str, &'static str, bool)>,
    /// Each message: created, kind, recipient, subject, state and attempts, last error.
    rows: Vec<(String, &'static str, String, String, String, String)>,
    next: Option<String>,
}

/// `GET /{tenant}/admin/notifications?state=…`: newest first, paged; for whoever may read the
/// audit log.
pub(in crate::pages) async fn notifications(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let shown = params.get("state").map(String::as_str).unwrap_or_default();
    let filter = (!shown.is_empty()).then(|| format!("state eq '{}'", shown.replace('\'', "")));
    let skiptoken = params.get("skiptoken").map(String::as_str);
    let page = match state.app.list_notifications(&caller, filter.as_deref(), Some(PAGE_SIZE), skiptoken).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let tenant = caller.tenant.id.to_string();
    let next = page.skiptoken.map(|token| {
        format!("/{tenant}/admin/notifications?state={}&skiptoken={}", url_encode(shown), url_encode(&token))
    });
    let rows = page
        .items
        .iter()
        .map(|it| {
            let kind = match it.kind.as_str() {
                "securityInfoChanged" => "Security info changed",
                "suspiciousActivityReported" => "\"This wasn't me\" report",
                "agentLimitReached" => "Agent at the hourly limit",
                "approvalRequested" => "Approval requested",
                _ => "Other",
            };
            let state = match it.attempts {
                0 => it.state.clone(),
                1 => format!("{} (1 attempt)", it.state),
                n => format!("{} ({n} attempts)", it.state),
            };
            (
                keyward_app::rfc3339(it.created_at),
                kind,
                it.recipient.clone().unwrap_or_else(|| "no address".into()),
                it.subject.clone(),
                state,
                it.last_error.clone().unwrap_or_default(),
            )
        })
        .collect();
    let page = NotificationsPage {
        title: "Notifications",
        tenant,
        header: Header::of(&caller),
        states: [("pending", "Pending"), ("sent", "Sent"), ("failed", "Failed"), ("noAddress", "No address")]
            .into_iter()
            .map(|(value, label)| (value, label, value == shown))
            .collect(),
        rows,
        next,
    };
    html(StatusCode::OK, &page)
}
