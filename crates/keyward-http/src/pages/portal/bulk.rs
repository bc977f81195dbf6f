//! Bulk operations: one change for the users of a group, an administrative unit, a `$filter` or a
//! CSV, with a dry run first; a real run goes on in the background, and its page shows how far it
//! is and each user's outcome (`keyward_app::bulk`).

use keyward_app::bulk::{BulkRequest, ItemView, JobView, Source};
use keyward_core::bulk::{ItemState, Operation};

use super::*;

/// Users a page lists.
const RESULTS_PAGE: &str = "200";

#[derive(Debug, Template)]
#[template(path = "portal/bulk.html")]
struct BulkPage {
    title: &'static str,
    tenant: String,
    header: Header,
    csrf: String,
    /// The form as it was sent (to run for real what was dry-run): field and value.
    form: Vec<(String, String)>,
    error: Option<String>,
    job: Option<Shown>,
    /// Each user: key, result, detail.
    rows: Vec<(String, &'static str, String)>,
}

/// The job shown: its summary line, whether it still runs, its id (`None`: a dry run).
#[derive(Debug)]
struct Shown {
    summary: String,
    running: bool,
    id: Option<String>,
}

fn summary(job: &JobView) -> String {
    let parts: Vec<String> = ItemState::ALL
        .iter()
        .zip(job.counts)
        .filter(|(_, n)| *n > 0)
        .map(|(state, n)| format!("{n} {}", label(*state)))
        .collect();
    format!(
        "{} for {}: {}.",
        job.operation.name(),
        job.source,
        if parts.is_empty() { "nobody".into() } else { parts.join(", ") }
    )
}

fn label(state: ItemState) -> &'static str {
    match state {
        ItemState::Pending => "pending",
        ItemState::WouldChange => "would change",
        ItemState::Done => "done",
        ItemState::Already => "already so",
        ItemState::Refused => "refused",
        ItemState::Held => "held for approval",
        ItemState::Failed => "failed",
    }
}

fn rows(items: &[ItemView]) -> Vec<(String, &'static str, String)> {
    items.iter().map(|it| (it.user_key.clone(), label(it.state), it.detail.clone().unwrap_or_default())).collect()
}

fn page(caller: &Caller, csrf: String) -> BulkPage {
    BulkPage {
        title: "Bulk operations",
        tenant: caller.tenant.id.to_string(),
        header: Header::of(caller),
        csrf,
        form: Vec::new(),
        error: None,
        job: None,
        rows: Vec::new(),
    }
}

/// `GET /{tenant}/admin/bulk` (`?job=…`: a started one, how far it is).
pub(in crate::pages) async fn bulk(
    State(state): State<AppState>,
    Admin { caller, csrf }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let mut shown = page(&caller, csrf);
    if let Some(id) = params.get("job") {
        let job = match state.app.get_bulk(&caller, id).await {
            Ok(it) => it,
            Err(err) => return failure(err),
        };
        let items = match state.app.list_bulk_results(&caller, id, Some(RESULTS_PAGE), None).await {
            Ok((items, _)) => items,
            Err(err) => return failure(err),
        };
        shown.job = Some(Shown { summary: summary(&job), running: job.status == "running", id: Some(id.clone()) });
        shown.rows = rows(&items);
    }
    html(StatusCode::OK, &shown)
}

/// The request the form describes.
fn request_of(form: &AdminForm) -> Result<BulkRequest, AppError> {
    let text = |name: &str| Some(form.field(name).trim()).filter(|it| !it.is_empty());
    let name = form.field("operation");
    let state = (name == "setPerUserMfa").then(|| form.field("state"));
    let is_role = name.ends_with("Role");
    let operation = Operation::parse(name, state, text("role").filter(|_| is_role), text("scope").filter(|_| is_role))
        .map_err(AppError::BadRequest)?;
    let source = match form.field("source") {
        "group" => Source::Group(form.field("group").trim().to_owned()),
        "unit" => Source::Unit(form.field("unit").trim().to_owned()),
        "filter" => Source::Filter(form.field("filter").trim().to_owned()),
        "csv" => Source::Users(keyward_core::bulk::csv_users(form.field("csv")).map_err(AppError::BadRequest)?),
        _ => return Err(AppError::BadRequest("Choose where the users come from.".into())),
    };
    Ok(BulkRequest { operation, source, dry_run: form.field("run") != "real" })
}

/// `POST /{tenant}/admin/bulk`: a dry run shows each user's outcome (and offers the real run with
/// the same form); a real run starts and shows its page.
pub(in crate::pages) async fn bulk_start(State(state): State<AppState>, form: AdminForm) -> Response {
    let caller = form.caller.clone();
    let mut shown = page(&caller, form.csrf.clone());
    shown.form = form.fields.iter().filter(|(name, _)| !matches!(name.as_str(), "csrf" | "run")).cloned().collect();
    let started = match request_of(&form) {
        Ok(request) => state.app.start_bulk(&caller, request).await,
        Err(err) => Err(err),
    };
    match started {
        Ok(started) => match started.job.id.clone() {
            Some(id) => {
                state.app.spawn_bulk(caller.tenant.clone(), id.clone());
                see_other(&format!("/{}/admin/bulk?job={id}", caller.tenant.id))
            }
            None => {
                shown.job = Some(Shown { summary: summary(&started.job), running: false, id: None });
                shown.rows = rows(&started.items);
                html(StatusCode::OK, &shown)
            }
        },
        Err(err) => match form_error(err) {
            Ok((status, message)) => {
                shown.error = Some(message);
                html(status, &shown)
            }
            Err(AppError::NotFound(_)) => {
                shown.error = Some("The group, unit or role named does not exist.".into());
                html(StatusCode::NOT_FOUND, &shown)
            }
            Err(other) => failure(other),
        },
    }
}
