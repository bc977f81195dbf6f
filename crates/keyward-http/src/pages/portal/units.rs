//! Administrative units: each unit with its restricted-management flag, members and the roles
//! scoped to it.

use keyward_core::directory::AdministrativeUnit;

use super::*;

/// Units one page lists, and members one unit page lists.
const UNIT_PAGE_SIZE: usize = 100;

#[derive(Debug, Template)]
#[template(path = "portal/units.html")]
struct UnitsPage {
    title: &'static str,
    tenant: String,
    header: Header,
    units: Vec<AdministrativeUnit>,
    next: Option<String>,
}

#[derive(Debug, Template)]
#[template(path = "portal/unit.html")]
struct UnitPage {
    title: String,
    tenant: String,
    header: Header,
    unit: AdministrativeUnit,
    /// (name, type) of each member (the first page), or why they are not shown.
    members: Result<Vec<(String, &'static str)>, String>,
    /// (role, principal) of each assignment scoped to the unit, or why they are not shown.
    scoped: Result<Vec<(String, String)>, String>,
}

fn object_row(object: &DirectoryObject) -> (String, &'static str) {
    match object {
        DirectoryObject::User(user) => (format!("{} ({})", user.display_name, user.user_principal_name), "User"),
        DirectoryObject::Group(group) => (group.display_name.clone(), "Group"),
        DirectoryObject::ServicePrincipal(principal) => (principal.display_name.clone(), "Service principal"),
    }
}

/// `GET /{tenant}/admin/units`: every administrative unit, paged.
pub(in crate::pages) async fn units(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let page = match state.app.list_units(&caller, UNIT_PAGE_SIZE, params.get("skiptoken").map(String::as_str)).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let tenant = caller.tenant.id.to_string();
    let next = page.skiptoken.map(|token| format!("/{tenant}/admin/units?skiptoken={}", url_encode(&token)));
    let page =
        UnitsPage { title: "Administrative units", tenant, header: Header::of(&caller), units: page.items, next };
    html(StatusCode::OK, &page)
}

/// `GET /{tenant}/admin/units/{id}`: a unit, its members and the roles scoped to it.
pub(in crate::pages) async fn unit(
    State(state): State<AppState>,
    Admin { caller, .. }: Admin,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let unit = match state.app.get_unit(&caller, &id).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let key = unit.id.to_string();
    let members = match state.app.list_unit_members(&caller, &key, UNIT_PAGE_SIZE, None).await {
        Ok(page) => Ok(page.items.iter().map(object_row).collect()),
        Err(AppError::Forbidden { .. }) => Err("Your roles do not let you read this unit's members.".to_owned()),
        Err(err) => return failure(err),
    };
    let scoped = match state.app.list_scoped_role_members(&caller, &key).await {
        Ok(rows) => Ok(rows
            .iter()
            .map(|(assignment, principal)| {
                let role = authz::built_in_role(&assignment.role_definition_id)
                    .map_or_else(|| "Custom role".to_owned(), |it| it.display_name.to_owned());
                let who = principal.as_ref().map_or_else(|| assignment.principal_id.to_string(), |it| object_row(it).0);
                (role, who)
            })
            .collect()),
        Err(AppError::Forbidden { .. }) => Err("Your roles do not let you read scoped role assignments.".to_owned()),
        Err(err) => return failure(err),
    };
    let page = UnitPage {
        title: unit.display_name.clone(),
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        unit,
        members,
        scoped,
    };
    html(StatusCode::OK, &page)
}
