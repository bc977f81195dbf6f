//! Groups, and a group's members, owners and role-assignable flag; members and owners are added
//! (search and pick) and removed (after a confirmation) through the same use cases as Graph's
//! `members/$ref` and `owners/$ref`.

use super::picker::{self, Candidate, Offer, Row};
use super::*;

#[derive(Debug, Template)]
#[template(path = "portal/groups.html")]
struct GroupsPage<'a> {
    title: &'static str,
    tenant: String,
    header: Header,
    search: &'a str,
    groups: Vec<Group>,
    next: Option<String>,
}

#[derive(Debug, Template)]
#[template(path = "portal/group.html")]
struct GroupPage {
    title: String,
    tenant: String,
    header: Header,
    group: Group,
    /// Each member and owner (the first 100), or why they are not shown.
    members: Result<Vec<Row>, String>,
    owners: Result<Vec<Row>, String>,
    csrf: String,
    notice: Option<&'static str>,
    /// The picker: this page's address, the search, and what it found.
    picker_path: String,
    find: String,
    candidates: Vec<Candidate>,
}

/// `GET /{tenant}/admin/groups?search=…`: groups whose display name starts with the search.
pub(in crate::pages) async fn groups(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let search = picker::search_of(&params, "search");
    let raw = QueryOptions {
        filter: (!search.is_empty()).then(|| format!("startswith(displayName,'{}')", search.replace('\'', "''"))),
        top: Some(PAGE_SIZE.to_string()),
        skiptoken: params.get("skiptoken").cloned(),
        ..QueryOptions::default()
    };
    let page = match state.app.list_groups(&caller, &raw).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let tenant = caller.tenant.id.to_string();
    let next = page
        .skiptoken
        .map(|token| format!("/{tenant}/admin/groups?search={}&skiptoken={}", url_encode(&search), url_encode(&token)));
    let page =
        GroupsPage { title: "Groups", header: Header::of(&caller), tenant, search: &search, groups: page.items, next };
    html(StatusCode::OK, &page)
}

/// Members or owners as the group page lists them.
async fn relation_rows(
    state: &AppState,
    caller: &Caller,
    relation: Relation,
    key: &str,
) -> Result<Result<Vec<Row>, String>, AppError> {
    match state.app.list_group_relation(caller, relation, key, Some("100"), None).await {
        Ok(page) => Ok(Ok(page.items.iter().map(Row::of).collect())),
        Err(AppError::Forbidden { .. }) => Ok(Err("Your roles do not let you read this.".to_owned())),
        Err(err) => Err(err),
    }
}

/// `GET /{tenant}/admin/groups/{id}?find=…`: a group, its members and owners, and the picker
/// that adds more.
pub(in crate::pages) async fn group(
    State(state): State<AppState>,
    Admin { caller, csrf }: Admin,
    Path((_, key)): Path<(String, String)>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let group = match state.app.get_group(&caller, &key).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let id = group.id.to_string();
    let members = match relation_rows(&state, &caller, Relation::Members, &id).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let owners = match relation_rows(&state, &caller, Relation::Owners, &id).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let find = picker::find_of(&params);
    let candidates = match picker::candidates(&state, &caller, &find, Offer::UsersAndGroups).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let notice = match params.get("done").map(String::as_str) {
        Some("remove") => Some("Done: removed."),
        _ => None,
    };
    let tenant = caller.tenant.id.to_string();
    let page = GroupPage {
        title: group.display_name.clone(),
        picker_path: format!("/{tenant}/admin/groups/{id}"),
        tenant,
        header: Header::of(&caller),
        group,
        members,
        owners,
        csrf,
        notice,
        find,
        candidates,
    };
    html(StatusCode::OK, &page)
}

/// `members` or `owners` from a form or query.
fn relation_of(text: &str) -> Result<Relation, AppError> {
    match text {
        "members" => Ok(Relation::Members),
        "owners" => Ok(Relation::Owners),
        _ => Err(AppError::BadRequest("Unknown list: use the forms on the group's page.".into())),
    }
}

/// `GET /{tenant}/admin/groups/{id}/remove?relation=members|owners&object=…`: what removing a
/// member or owner does, and the form that does it.
pub(in crate::pages) async fn group_remove_confirm(
    State(state): State<AppState>,
    Admin { caller, csrf }: Admin,
    Path((_, key)): Path<(String, String)>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let relation = match relation_of(field("relation")) {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let group = match state.app.get_group(&caller, &key).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let object = match state.app.get_directory_object(&caller, field("object")).await {
        Ok(it) => Row::of(&it),
        Err(err) => return failure(err),
    };
    let what = match relation {
        Relation::Members => format!(
            "Removes {} from the members of {}: they lose at once what the group gives them (its roles and \
             access), on every node. Recorded in the audit log.",
            object.name, group.display_name
        ),
        Relation::Owners => format!(
            "Removes {} from the owners of {}: they can no longer manage the group. Recorded in the audit log.",
            object.name, group.display_name
        ),
    };
    let back = format!("/{}/admin/groups/{}", caller.tenant.id, group.id);
    let hidden = vec![("relation", field("relation").to_owned()), ("object", object.id)];
    let title = format!("Remove from {}", group.display_name);
    picker::confirm_removal(&caller, csrf, title, what, back, hidden, "Remove")
}

/// `POST /{tenant}/admin/groups/{id}`: `action=add_members` or `add_owners` adds each object
/// picked (at most 20), each decided and audited on its own; `action=remove` removes one member
/// or owner (`relation`, `object`).
pub(in crate::pages) async fn group_action(
    State(state): State<AppState>,
    Path((_, key)): Path<(String, String)>,
    form: AdminForm,
) -> Response {
    let caller = &form.caller;
    let group = match state.app.get_group(caller, &key).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let id = group.id.to_string();
    let back = format!("/{}/admin/groups/{id}", caller.tenant.id);
    let relation = match form.field("action") {
        "add_members" => Relation::Members,
        "add_owners" => Relation::Owners,
        "remove" => {
            let relation = match relation_of(form.field("relation")) {
                Ok(it) => it,
                Err(err) => return failure(err),
            };
            return match state.app.remove_from_group(caller, relation, &id, form.field("object")).await {
                Ok(()) => see_other(&format!("{back}?done=remove")),
                Err(err) => failure(err),
            };
        }
        _ => return failure(AppError::BadRequest("Unknown action: use the forms on the group's page.".into())),
    };
    let app = &state.app;
    let add = |object_id: String| -> picker::Act<'_> {
        let id = id.clone();
        Box::pin(async move { app.add_to_group(caller, relation, &id, &object_id).await })
    };
    let (title, verb) = match relation {
        Relation::Members => (format!("Add members: {}", group.display_name), "added as members"),
        Relation::Owners => (format!("Add owners: {}", group.display_name), "added as owners"),
    };
    picker::act_on_each(&state, &form, add, title, verb, (back, "Back to the group")).await
}
