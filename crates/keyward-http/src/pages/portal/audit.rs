//! The audit log with its filters, and its download as CSV or JSONL.

use keyward_core::audit::CATEGORIES;

use super::*;

/// Audit records per page, and at most in one download.
const AUDIT_PAGE_SIZE: usize = 50;
const AUDIT_EXPORT_LIMIT: usize = 10_000;

/// The audit page's filters, as the form sends them back.
#[derive(Debug, Default)]
struct AuditForm {
    from: String,
    until: String,
    activity: String,
    initiator: String,
    target: String,
    category: String,
    result: String,
}

#[derive(Debug, Template)]
#[template(path = "portal/audit.html")]
struct AuditPage {
    title: &'static str,
    tenant: String,
    header: Header,
    form: AuditForm,
    categories: &'static [&'static str],
    /// Each record: its id, and time, activity, category, initiator, targets, result.
    rows: Vec<(String, AuditRow)>,
    next: Option<String>,
    /// The page's address with its filters, to which `format=` is added for a download.
    download: String,
    export_limit: usize,
}

/// A record as the page and the CSV show it: time, activity, category, initiator, targets, result.
type AuditRow = (String, String, String, String, String, &'static str);

/// The store filter of the audit page's form; a `400` message when a field is unusable.
fn audit_filter(params: &HashMap<String, String>) -> Result<(AuditForm, AuditFilter), AppError> {
    let text = |name: &str| -> String {
        params
            .get(name)
            .map(|it| it.trim().chars().filter(|c| !c.is_control()).take(MAX_SEARCH).collect())
            .unwrap_or_default()
    };
    let form = AuditForm {
        from: text("from"),
        until: text("until"),
        activity: text("activity"),
        initiator: text("initiator"),
        target: text("target"),
        category: text("category"),
        result: text("result"),
    };
    let (from, until) = date_range(&form.from, &form.until)?;
    let mut filter = AuditFilter { from, until, ..AuditFilter::default() };
    if !form.activity.is_empty() {
        filter.activity = Some(TextMatch::StartsWith(form.activity.to_lowercase()));
    }
    if !form.initiator.is_empty() {
        filter.initiator_upn = Some(TextMatch::StartsWith(form.initiator.to_lowercase()));
    }
    if !form.target.is_empty() {
        filter.target_upn = Some(form.target.to_lowercase());
    }
    if !form.category.is_empty() {
        let known = CATEGORIES.iter().find(|it| it.eq_ignore_ascii_case(&form.category));
        let known = known.ok_or_else(|| AppError::BadRequest("Choose a category from the list.".into()))?;
        filter.category = Some((*known).to_owned());
    }
    match form.result.as_str() {
        "" => (),
        "success" | "failure" => filter.result = Some(form.result.clone()),
        _ => return Err(AppError::BadRequest("The result is success or failure.".into())),
    }
    Ok((form, filter))
}

/// One record as the page and the CSV show it.
fn audit_row(record: &AuditRecord) -> AuditRow {
    let targets = record
        .target_resources
        .iter()
        .map(|it| {
            it.user_principal_name.clone().or_else(|| it.display_name.clone()).unwrap_or_else(|| it.id.to_string())
        })
        .collect::<Vec<_>>()
        .join(", ");
    (
        keyward_app::rfc3339(record.activity_date_time),
        record.activity_display_name.clone(),
        record.category.clone(),
        initiator(record),
        targets,
        if record.result == AuditResult::Success { "success" } else { "failure" },
    )
}

/// A CSV cell: quoted, quotes doubled, and a leading `=`, `+`, `-`, `@` neutralised so a
/// spreadsheet does not run it as a formula.
fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// `GET /{tenant}/admin/audit`: the audit log with filters, paged newest first; with
/// `format=csv` or `format=jsonl`, the filtered records as a download (Graph's `directoryAudit`
/// shape in JSON lines).
pub(in crate::pages) async fn audit(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let (form, filter) = match audit_filter(&params) {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let tenant = caller.tenant.id.to_string();
    let query_string = format!(
        "from={}&until={}&activity={}&initiator={}&target={}&category={}&result={}",
        url_encode(&form.from),
        url_encode(&form.until),
        url_encode(&form.activity),
        url_encode(&form.initiator),
        url_encode(&form.target),
        url_encode(&form.category),
        url_encode(&form.result)
    );
    let format = params.get("format").map(String::as_str);
    if let Some(format @ ("csv" | "jsonl")) = format {
        let mut records = Vec::new();
        let mut skiptoken: Option<String> = None;
        loop {
            let query = AuditQuery {
                filter: filter.clone(),
                select: None,
                top: 999,
                is_ascending: false,
                skiptoken: skiptoken.clone(),
            };
            let page = match state.app.list_audit(&caller, &query).await {
                Ok(it) => it,
                Err(err) => return failure(err),
            };
            records.extend(page.items);
            skiptoken = page.skiptoken;
            if skiptoken.is_none() || records.len() >= AUDIT_EXPORT_LIMIT {
                break;
            }
        }
        records.truncate(AUDIT_EXPORT_LIMIT);
        let (body, content_type, name) = if format == "csv" {
            let mut body = String::from(
                "activityDateTime,activityDisplayName,category,initiatedBy,targets,result,correlationId,id\n",
            );
            for record in &records {
                let (at, activity, category, by, targets, result) = audit_row(record);
                let cells = [
                    at,
                    activity,
                    category,
                    by,
                    targets,
                    result.to_owned(),
                    record.correlation_id.clone(),
                    record.id.clone(),
                ];
                body.push_str(&cells.iter().map(|it| csv_cell(it)).collect::<Vec<_>>().join(","));
                body.push('\n');
            }
            (body, "text/csv; charset=utf-8", "audit.csv")
        } else {
            let body: String = records.iter().map(|it| format!("{}\n", crate::directory_audit(it))).collect();
            (body, "application/x-ndjson", "audit.jsonl")
        };
        let mut response = (StatusCode::OK, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
        return response;
    }
    let query = AuditQuery {
        filter,
        select: None,
        top: AUDIT_PAGE_SIZE,
        is_ascending: false,
        skiptoken: params.get("skiptoken").cloned(),
    };
    let page = match state.app.list_audit(&caller, &query).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let base = format!("/{tenant}/admin/audit?{query_string}");
    let next = page.skiptoken.map(|token| format!("{base}&skiptoken={}", url_encode(&token)));
    let rows = page.items.iter().map(|it| (it.id.clone(), audit_row(it))).collect();
    let page = AuditPage {
        title: "Audit logs",
        header: Header::of(&caller),
        tenant,
        form,
        categories: &CATEGORIES,
        rows,
        next,
        download: base,
        export_limit: AUDIT_EXPORT_LIMIT,
    };
    html(StatusCode::OK, &page)
}

/// A changed property: its name, old value, new value.
type Change = (String, String, String);

#[derive(Debug, Template)]
#[template(path = "portal/audit_record.html")]
struct AuditRecordPage {
    title: String,
    tenant: String,
    header: Header,
    row: AuditRow,
    record: AuditRecord,
    /// Each target: its name, type, and each changed property.
    targets: Vec<(String, &'static str, Vec<Change>)>,
}

/// `GET /{tenant}/admin/audit/{id}`: one record in full, each changed property as old → new.
pub(in crate::pages) async fn audit_record(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let record = match state.app.get_audit(&caller, &id).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let shown = |value: &Option<String>| value.clone().unwrap_or_else(|| "(none)".to_owned());
    let targets = record
        .target_resources
        .iter()
        .map(|it| {
            let name =
                it.user_principal_name.clone().or_else(|| it.display_name.clone()).unwrap_or_else(|| it.id.to_string());
            let changes = it
                .modified_properties
                .iter()
                .map(|change| (change.name.clone(), shown(&change.old_value), shown(&change.new_value)))
                .collect();
            (name, it.kind, changes)
        })
        .collect();
    let page = AuditRecordPage {
        title: record.activity_display_name.clone(),
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        row: audit_row(&record),
        record,
        targets,
    };
    html(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(csv_cell("plain"), "\"plain\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("@sum"), "\"'@sum\"");
        assert_eq!(csv_cell("-1"), "\"'-1\"");
    }

    #[test]
    fn audit_filters_come_from_the_form_and_bad_dates_are_refused() {
        let params: HashMap<String, String> = [
            ("from", "2026-12-01"),
            ("until", "2026-12-01"),
            ("activity", "Add "),
            ("initiator", "Desk@"),
            ("result", "failure"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        let (_, filter) = audit_filter(&params).expect("a usable form");
        assert_eq!(filter.activity, Some(TextMatch::StartsWith("add".into())));
        assert_eq!(filter.initiator_upn, Some(TextMatch::StartsWith("desk@".into())));
        assert_eq!(filter.result.as_deref(), Some("failure"));
        let (from, until) = (filter.from.expect("from"), filter.until.expect("until"));
        assert_eq!((until - from).whole_seconds(), 86_399, "the until day is inclusive");
        let bad: HashMap<String, String> = [("from".to_owned(), "yesterday".to_owned())].into_iter().collect();
        assert!(matches!(audit_filter(&bad), Err(AppError::BadRequest(_))));
        let odd: HashMap<String, String> = [("result".to_owned(), "maybe".to_owned())].into_iter().collect();
        assert!(matches!(audit_filter(&odd), Err(AppError::BadRequest(_))));
    }
}
