//! The sign-in log with its filters, and one sign-in in full.

use keyward_core::signin::SignInRecord;

use super::*;

/// Sign-ins per page.
const SIGN_IN_PAGE_SIZE: usize = 50;

/// The page's filters, as the form sends them back.
#[derive(Debug, Default)]
struct SignInForm {
    from: String,
    until: String,
    user: String,
    app: String,
    result: String,
    code: String,
}

#[derive(Debug, Template)]
#[template(path = "portal/sign_ins.html")]
struct SignInsPage {
    title: &'static str,
    tenant: String,
    header: Header,
    form: SignInForm,
    /// Each sign-in: id, time, user, application, result, IP address.
    rows: Vec<(String, String, String, String, String, String)>,
    next: Option<String>,
}

#[derive(Debug, Template)]
#[template(path = "portal/sign_in.html")]
struct SignInDetailPage {
    title: &'static str,
    tenant: String,
    header: Header,
    record: SignInRecord,
    created: String,
    /// `Success`, or the error code and reason.
    result: String,
    /// Each step: time, method, succeeded, detail.
    steps: Vec<(String, String, &'static str, String)>,
}

/// The store filter of the form; a `400` message when a field is unusable.
fn sign_in_filter(params: &HashMap<String, String>) -> Result<(SignInForm, SignInFilter), AppError> {
    let text = |name: &str| -> String {
        params
            .get(name)
            .map(|it| it.trim().chars().filter(|c| !c.is_control()).take(MAX_SEARCH).collect())
            .unwrap_or_default()
    };
    let form = SignInForm {
        from: text("from"),
        until: text("until"),
        user: text("user"),
        app: text("app"),
        result: text("result"),
        code: text("code"),
    };
    let (from, until) = date_range(&form.from, &form.until)?;
    let mut filter = SignInFilter { from, until, ..SignInFilter::default() };
    if !form.user.is_empty() {
        filter.user_principal_name = Some(TextMatch::StartsWith(form.user.to_lowercase()));
    }
    if !form.app.is_empty() {
        filter.app_id = Some(form.app.to_lowercase());
    }
    filter.is_success = match form.result.as_str() {
        "" => None,
        "success" => Some(true),
        "failure" => Some(false),
        _ => return Err(AppError::BadRequest("The result is success or failure.".into())),
    };
    if !form.code.is_empty() {
        let code = form.code.parse::<i64>().map_err(|_| {
            AppError::BadRequest("The error code is a number, like 50126 (wrong password) or 50053 (locked).".into())
        })?;
        filter.error_code = Some(code);
    }
    Ok((form, filter))
}

/// `GET /{tenant}/admin/sign-ins`: the sign-in log with filters, newest first, paged.
pub(in crate::pages) async fn sign_ins(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let (form, filter) = match sign_in_filter(&params) {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let query =
        SignInQuery { filter, select: None, top: SIGN_IN_PAGE_SIZE, skiptoken: params.get("skiptoken").cloned() };
    let page = match state.app.list_sign_ins(&caller, &query).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let tenant = caller.tenant.id.to_string();
    let next = page.skiptoken.map(|token| {
        format!(
            "/{tenant}/admin/sign-ins?from={}&until={}&user={}&app={}&result={}&code={}&skiptoken={}",
            url_encode(&form.from),
            url_encode(&form.until),
            url_encode(&form.user),
            url_encode(&form.app),
            url_encode(&form.result),
            url_encode(&form.code),
            url_encode(&token)
        )
    });
    let rows = page
        .items
        .iter()
        .map(|it| {
            let result = if it.error_code == 0 { "Success".to_owned() } else { format!("Failure ({})", it.error_code) };
            (
                it.id.clone(),
                keyward_app::rfc3339(it.created),
                it.user_principal_name.clone(),
                it.app_display_name.clone(),
                result,
                it.ip_address.clone().unwrap_or_default(),
            )
        })
        .collect();
    let page = SignInsPage { title: "Sign-in logs", tenant, header: Header::of(&caller), form, rows, next };
    html(StatusCode::OK, &page)
}

/// `GET /{tenant}/admin/sign-ins/{id}`: one sign-in with its authentication steps.
pub(in crate::pages) async fn sign_in(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let record = match state.app.get_sign_in(&caller, &id).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let result = match (record.error_code, &record.failure_reason) {
        (0, _) => "Success".to_owned(),
        (code, Some(reason)) => format!("Failure {code}: {reason}"),
        (code, None) => format!("Failure {code}"),
    };
    let steps = record
        .details
        .iter()
        .map(|it| {
            let outcome = if it.succeeded { "succeeded" } else { "failed" };
            (keyward_app::rfc3339(it.at), it.method.clone(), outcome, it.result_detail.clone())
        })
        .collect();
    let page = SignInDetailPage {
        title: "Sign-in",
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        created: keyward_app::rfc3339(record.created),
        record,
        result,
        steps,
    };
    html(StatusCode::OK, &page)
}
