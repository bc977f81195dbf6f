//! Search and pick directory objects for a form (role assignments, group and unit members): a
//! search box (a GET form, live with the script) whose results are checkboxes inside the page's
//! post form, and the result page of a form that acts on several objects, each decided and
//! audited on its own.

use super::*;

/// Candidates one search shows of each kind.
const PICKS: usize = 10;

/// The most objects one form acts on.
pub(super) const MAX_PICKED: usize = 20;

/// What a picker offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Offer {
    /// Users and groups (group and unit members).
    UsersAndGroups,
    /// Users and role-assignable groups (role assignments: only those groups may hold a role).
    UsersAndAssignableGroups,
}

/// One object a search found: its id, name, and what it is (with the sign-in name of a user).
#[derive(Debug)]
pub(super) struct Candidate {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) detail: String,
}

/// The search a picker shows (`find` in the page's query), cleaned as every search is.
pub(super) fn find_of(params: &HashMap<String, String>) -> String {
    search_of(params, "find")
}

/// A search box's text from the query (`name`): trimmed, without control characters, at most
/// [`MAX_SEARCH`] characters.
pub(super) fn search_of(params: &HashMap<String, String>, name: &str) -> String {
    params
        .get(name)
        .map(String::as_str)
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|it| !it.is_control())
        .take(MAX_SEARCH)
        .collect()
}

/// The users and groups whose names start with `find` (none for an empty search). A kind the
/// caller may not list is left out.
pub(super) async fn candidates(
    state: &AppState,
    caller: &Caller,
    find: &str,
    offer: Offer,
) -> Result<Vec<Candidate>, AppError> {
    if find.is_empty() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    match state.app.portal_users(caller, find, PICKS, None).await {
        Ok((users, _)) => found.extend(users.into_iter().map(|it| Candidate {
            id: it.id.to_string(),
            name: it.display_name,
            detail: format!("user, {}", it.user_principal_name),
        })),
        Err(AppError::Forbidden { .. }) => (),
        Err(err) => return Err(err),
    }
    let mut filter = format!("startswith(displayName,'{}')", find.replace('\'', "''"));
    if offer == Offer::UsersAndAssignableGroups {
        filter.push_str(" and isAssignableToRole eq true");
    }
    let raw = QueryOptions { filter: Some(filter), top: Some(PICKS.to_string()), ..QueryOptions::default() };
    match state.app.list_groups(caller, &raw).await {
        Ok(page) => found.extend(page.items.into_iter().map(|it| Candidate {
            id: it.id.to_string(),
            detail: if it.is_assignable_to_role { "role-assignable group".to_owned() } else { "group".to_owned() },
            name: it.display_name,
        })),
        Err(AppError::Forbidden { .. }) => (),
        Err(err) => return Err(err),
    }
    Ok(found)
}

/// The objects a posted form names: the picked checkboxes (`principal`, object ids), then the
/// lines of an optional free-text field (`principals`: sign-in names or object ids), without
/// repeats; refused when none or more than [`MAX_PICKED`].
pub(super) fn picked(form: &AdminForm) -> Result<Vec<String>, AppError> {
    let mut names: Vec<String> = Vec::new();
    let typed = form.field("principals").lines();
    for name in form.all("principal").chain(typed).map(str::trim).filter(|it| !it.is_empty()) {
        if !names.iter().any(|it| it.eq_ignore_ascii_case(name)) {
            names.push(name.chars().take(MAX_SEARCH).collect());
        }
    }
    if names.is_empty() || names.len() > MAX_PICKED {
        return Err(AppError::BadRequest(format!(
            "Pick between 1 and {MAX_PICKED} users or groups: search, tick the ones you want, then press the button."
        )));
    }
    Ok(names)
}

/// What [`act_on_each`] does to one object (a boxed future, so handlers stay `Send`).
pub(super) type Act<'a> = std::pin::Pin<Box<dyn Future<Output = Result<(), AppError>> + Send + 'a>>;

/// Acts on each object the form picked (see [`picked`]), one at a time, each decided (and
/// audited) by `act` on its own, and answers with the result page: what was done (`verb`: "added",
/// "assigned") and what was refused, with a link `back`.
pub(super) async fn act_on_each<'a>(
    state: &AppState,
    form: &AdminForm,
    act: impl Fn(String) -> Act<'a>,
    title: String,
    verb: &'static str,
    back: (String, &'static str),
) -> Response {
    let names = match picked(form) {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let mut outcomes = Outcomes::default();
    for name in names {
        match resolve(state, &form.caller, &name).await {
            Ok((object_id, label)) => outcomes.record(label, act(object_id).await),
            Err(err) => outcomes.record(name, Err(err)),
        }
    }
    let caller = &form.caller;
    let page =
        ResultPage { title, tenant: caller.tenant.id.to_string(), header: Header::of(caller), verb, outcomes, back };
    html(StatusCode::OK, &page)
}

/// A user (by sign-in name or id) or any directory object (by id): its id and how the result
/// page names it.
pub(super) async fn resolve(state: &AppState, caller: &Caller, name: &str) -> Result<(String, String), AppError> {
    let object = if name.contains('@') {
        DirectoryObject::User(state.app.get_user(caller, name).await?)
    } else {
        state.app.get_directory_object(caller, name).await?
    };
    let row = Row::of(&object);
    Ok((row.id, row.name))
}

/// What a form that acts on several objects did: each done, and each refused with why.
#[derive(Debug, Default)]
pub(super) struct Outcomes {
    pub(super) done: Vec<String>,
    pub(super) refused: Vec<(String, String)>,
}

impl Outcomes {
    /// Records the outcome of acting on `name`; an unexpected failure is logged and reported
    /// without stopping the others (each committed on its own).
    pub(super) fn record(&mut self, name: String, outcome: Result<(), AppError>) {
        match outcome {
            Ok(()) => self.done.push(name),
            Err(AppError::NotFound(_)) => self.refused.push((name, "No such user or group.".to_owned())),
            Err(
                AppError::Forbidden { message, .. }
                | AppError::BadRequest(message)
                | AppError::Conflict(message)
                | AppError::Rejected { message, .. },
            ) => {
                self.refused.push((name, message));
            }
            Err(err) => {
                tracing::error!(error = ?err, "a portal action on one of several objects failed");
                self.refused.push((name, "Something went wrong on our side; try this one again.".to_owned()));
            }
        }
    }
}

/// The result page of a form that acted on several objects.
#[derive(Debug, Template)]
#[template(path = "portal/result.html")]
struct ResultPage {
    title: String,
    tenant: String,
    header: Header,
    /// "assigned", "added": what the done ones had done to them.
    verb: &'static str,
    outcomes: Outcomes,
    /// Where "Back" goes, and its label.
    back: (String, &'static str),
}

/// A member, owner or holder as a page lists it: id, name, and type.
#[derive(Debug)]
pub(super) struct Row {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) kind: &'static str,
}

impl Row {
    pub(super) fn of(object: &DirectoryObject) -> Row {
        let (name, kind) = match object {
            DirectoryObject::User(user) => (format!("{} ({})", user.display_name, user.user_principal_name), "user"),
            DirectoryObject::Group(group) => (group.display_name.clone(), "group"),
            DirectoryObject::ServicePrincipal(principal) => (principal.display_name.clone(), "service principal"),
        };
        Row { id: object.id().to_string(), name, kind }
    }
}

/// "Remove …?": what removing a member (or owner, or a role) does, and the form that does it.
#[derive(Debug, Template)]
#[template(path = "portal/remove_confirm.html")]
struct RemoveConfirmPage {
    title: String,
    tenant: String,
    header: Header,
    what: String,
    /// The page the form posts to (with `action=remove` and `hidden`), and Cancel goes back to.
    back: String,
    hidden: Vec<(&'static str, String)>,
    button: &'static str,
    csrf: String,
}

/// The confirmation page of a removal: `what` it does, and a form posting `action=remove` with
/// `hidden` to `back` (the page Cancel returns to) under `button`.
pub(super) fn confirm_removal(
    caller: &Caller,
    csrf: String,
    title: String,
    what: String,
    back: String,
    hidden: Vec<(&'static str, String)>,
    button: &'static str,
) -> Response {
    let tenant = caller.tenant.id.to_string();
    let page = RemoveConfirmPage { title, tenant, header: Header::of(caller), what, back, hidden, button, csrf };
    html(StatusCode::OK, &page)
}
