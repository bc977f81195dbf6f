//! Administrative units: each unit with its restricted-management flag, members and the roles
//! scoped to it; members are added (search and pick) and removed (after a confirmation) through
//! the same use cases as Graph's `administrativeUnits/{id}/members/$ref`.

use keyward_core::directory::AdministrativeUnit;

use super::picker::{self, Candidate, Offer, Row};
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
    /// Each member (the first page), or why they are not shown.
    members: Result<Vec<Row>, String>,
    /// (role, principal) of each assignment scoped to the unit, or why they are not shown.
    scoped: Result<Vec<(String, String)>, String>,
    csrf: String,
    notice: Option<&'static str>,
    /// The picker: this page's address, the search, and what it found.
    picker_path: String,
    find: String,
    candidates: Vec<Candidate>,
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

/// `GET /{tenant}/admin/units/{id}?find=…`: a unit, its members, the roles scoped to it, and
/// the picker that adds members.
pub(in crate::pages) async fn unit(
    State(state): State<AppState>,
    Admin { caller, csrf }: Admin,
    Path((_, id)): Path<(String, String)>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let unit = match state.app.get_unit(&caller, &id).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let key = unit.id.to_string();
    let members = match state.app.list_unit_members(&caller, &key, UNIT_PAGE_SIZE, None).await {
        Ok(page) => Ok(page.items.iter().map(Row::of).collect()),
        Err(AppError::Forbidden { .. }) => Err("Your roles do not let you read this unit's members.".to_owned()),
        Err(err) => return failure(err),
    };
    let scoped = match state.app.list_scoped_role_members(&caller, &key).await {
        Ok(rows) => Ok(rows
            .iter()
            .map(|(assignment, principal)| {
                let role = authz::built_in_role(&assignment.role_definition_id)
                    .map_or_else(|| "Custom role".to_owned(), |it| it.display_name.to_owned());
                let who = principal.as_ref().map_or_else(|| assignment.principal_id.to_string(), |it| Row::of(it).name);
                (role, who)
            })
            .collect()),
        Err(AppError::Forbidden { .. }) => Err("Your roles do not let you read scoped role assignments.".to_owned()),
        Err(err) => return failure(err),
    };
    let find = picker::find_of(&params);
    let candidates = match picker::candidates(&state, &caller, &find, Offer::UsersAndGroups).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let notice = (params.get("done").map(String::as_str) == Some("remove")).then_some("Done: removed.");
    let tenant = caller.tenant.id.to_string();
    let page = UnitPage {
        title: unit.display_name.clone(),
        picker_path: format!("/{tenant}/admin/units/{key}"),
        tenant,
        header: Header::of(&caller),
        unit,
        members,
        scoped,
        csrf,
        notice,
        find,
        candidates,
    };
    html(StatusCode::OK, &page)
}

/// `GET /{tenant}/admin/units/{id}/remove?object=…`: what removing a member does, and the form
/// that does it.
pub(in crate::pages) async fn unit_remove_confirm(
    State(state): State<AppState>,
    Admin { caller, csrf }: Admin,
    Path((_, key)): Path<(String, String)>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
) -> Response {
    let unit = match state.app.get_unit(&caller, &key).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let object_key = params.get("object").map(String::as_str).unwrap_or_default();
    let object = match state.app.get_directory_object(&caller, object_key).await {
        Ok(it) => Row::of(&it),
        Err(err) => return failure(err),
    };
    let what = format!(
        "Removes {} from {}: administrators scoped to the unit can no longer manage them{}. Recorded in the audit \
         log.",
        object.name,
        unit.display_name,
        if unit.is_member_management_restricted {
            ", and the unit's restricted management no longer protects them"
        } else {
            ""
        }
    );
    let back = format!("/{}/admin/units/{}", caller.tenant.id, unit.id);
    let title = format!("Remove from {}", unit.display_name);
    picker::confirm_removal(&caller, csrf, title, what, back, vec![("object", object.id)], "Remove")
}

/// `POST /{tenant}/admin/units/{id}`: `action=add_members` adds each user or group picked (at
/// most 20), each decided and audited on its own; `action=remove` removes one member (`object`).
pub(in crate::pages) async fn unit_action(
    State(state): State<AppState>,
    Path((_, key)): Path<(String, String)>,
    form: AdminForm,
) -> Response {
    let caller = &form.caller;
    let unit = match state.app.get_unit(caller, &key).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let id = unit.id.to_string();
    let back = format!("/{}/admin/units/{id}", caller.tenant.id);
    match form.field("action") {
        "remove" => match state.app.remove_unit_member(caller, &id, form.field("object")).await {
            Ok(()) => see_other(&format!("{back}?done=remove")),
            Err(err) => failure(err),
        },
        "add_members" => {
            let app = &state.app;
            let add = |object_id: String| -> picker::Act<'_> {
                let id = id.clone();
                Box::pin(async move { app.add_unit_member(caller, &id, &object_id).await })
            };
            let title = format!("Add members: {}", unit.display_name);
            picker::act_on_each(&state, &form, add, title, "added", (back, "Back to the unit")).await
        }
        _ => failure(AppError::BadRequest("Unknown action: use the forms on the unit's page.".into())),
    }
}
