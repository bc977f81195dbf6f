//! Groups, and a group's members, owners and role-assignable flag.

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
    /// (name, type) of each member and owner, or why they are not shown.
    members: Result<Vec<(String, &'static str)>, String>,
    owners: Result<Vec<(String, &'static str)>, String>,
}

/// `GET /{tenant}/admin/groups?search=…`: groups whose display name starts with the search.
pub(in crate::pages) async fn groups(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let search: String = params
        .get("search")
        .map(String::as_str)
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|it| !it.is_control())
        .take(MAX_SEARCH)
        .collect();
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
) -> Result<Result<Vec<(String, &'static str)>, String>, AppError> {
    match state.app.list_group_relation(caller, relation, key, Some("100"), None).await {
        Ok(page) => Ok(Ok(page
            .items
            .iter()
            .map(|it| match it {
                DirectoryObject::User(user) => {
                    (format!("{} ({})", user.display_name, user.user_principal_name), "user")
                }
                DirectoryObject::Group(group) => (group.display_name.clone(), "group"),
                DirectoryObject::ServicePrincipal(principal) => (principal.display_name.clone(), "service principal"),
            })
            .collect())),
        Err(AppError::Forbidden { .. }) => Ok(Err("Your roles do not let you read this.".to_owned())),
        Err(err) => Err(err),
    }
}

/// `GET /{tenant}/admin/groups/{id}`: a group, its members and owners.
pub(in crate::pages) async fn group(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    Path((_, key)): Path<(String, String)>,
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
    let page = GroupPage {
        title: group.display_name.clone(),
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        group,
        members,
        owners,
    };
    html(StatusCode::OK, &page)
}
