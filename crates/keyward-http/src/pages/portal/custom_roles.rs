//! Custom roles: create and edit one (name, description, enabled, and its permissions picked
//! from the actions a custom role may hold), and delete one nobody holds, through the same use
//! cases as Graph's `roleManagement/directory/roleDefinitions`.

use keyward_core::authz::catalog::{RESOURCE_ACTIONS, is_custom_role_action};
use keyward_core::authz::custom::CustomRoleDraft;

use super::picker;
use super::*;

/// The form's fields, as typed.
#[derive(Debug, Default)]
struct RoleFields {
    display_name: String,
    description: String,
    is_enabled: bool,
    actions: Vec<String>,
}

/// One action a custom role may hold, as the picker shows it.
#[derive(Debug)]
struct Permission {
    name: &'static str,
    /// The checkbox's element id.
    element: String,
    description: &'static str,
    is_privileged: bool,
    is_ticked: bool,
}

/// One resource's permissions in the picker: the resource (`users`, `groups`, …) and its actions.
type PermissionGroup = (String, Vec<Permission>);

#[derive(Debug, Template)]
#[template(path = "portal/role_form.html")]
struct RoleForm {
    title: String,
    tenant: String,
    header: Header,
    /// The role being edited; `None` on the new-role form.
    role_id: Option<String>,
    fields: RoleFields,
    permissions: Vec<PermissionGroup>,
    /// The role's fields as the edit page first showed them (form-encoded), so a save changes
    /// only what the administrator changed; empty on the new-role form.
    shown: String,
    csrf: String,
    error: Option<String>,
}

/// The actions a custom role may hold, by resource, with the ones in `ticked` ticked.
fn permission_groups(ticked: &[String]) -> Vec<PermissionGroup> {
    let mut groups: Vec<PermissionGroup> = Vec::new();
    for action in RESOURCE_ACTIONS.iter().filter(|it| is_custom_role_action(it.name)) {
        let resource = action.name.split('/').nth(1).unwrap_or_default().to_owned();
        let row = Permission {
            name: action.name,
            element: format!("perm-{}", action.name.replace(['/', '.'], "-")),
            description: action.description,
            is_privileged: action.is_privileged,
            is_ticked: ticked.iter().any(|it| it.eq_ignore_ascii_case(action.name)),
        };
        match groups.iter_mut().find(|(name, _)| *name == resource) {
            Some((_, rows)) => rows.push(row),
            None => groups.push((resource, vec![row])),
        }
    }
    groups
}

/// `fields` as a form sends them.
fn encode(fields: &RoleFields) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("display_name", &fields.display_name);
    form.append_pair("description", &fields.description);
    form.append_pair("is_enabled", if fields.is_enabled { "true" } else { "" });
    for action in &fields.actions {
        form.append_pair("permission", action);
    }
    form.finish()
}

fn form_page(
    caller: &Caller,
    csrf: String,
    role_id: Option<String>,
    fields: RoleFields,
    shown: String,
    error: Option<(StatusCode, String)>,
) -> Response {
    let title = match &role_id {
        Some(_) => format!("Edit {}", fields.display_name),
        None => "New custom role".to_owned(),
    };
    let (status, error) = error.map_or((StatusCode::OK, None), |(status, text)| (status, Some(text)));
    let page = RoleForm {
        title,
        tenant: caller.tenant.id.to_string(),
        header: Header::of(caller),
        role_id,
        permissions: permission_groups(&fields.actions),
        fields,
        shown,
        csrf,
        error,
    };
    html(status, &page)
}

/// The fields of a posted form (cleaned for showing again), or of what [`encode`] wrote.
fn fields_of(pairs: &[(String, String)]) -> RoleFields {
    let all = |name: &'static str| pairs.iter().filter(move |(key, _)| key == name).map(|(_, value)| value.as_str());
    let field = |name: &'static str| all(name).next().unwrap_or_default();
    let clean = |text: &str, limit: usize| -> String {
        text.trim().chars().filter(|it| !it.is_control() || *it == '\n').take(limit).collect()
    };
    RoleFields {
        display_name: clean(field("display_name"), 256),
        description: clean(field("description"), 1024),
        is_enabled: field("is_enabled") == "true",
        actions: all("permission").map(str::to_owned).collect(),
    }
}

/// The draft `fields` make: every field, or with `shown` (what the edit page showed) only those
/// changed on the page, so a page opened before another administrator disabled the role or
/// took a permission off it does not put them back.
fn draft_of(fields: &RoleFields, shown: Option<&RoleFields>) -> CustomRoleDraft {
    let set = |actions: &[String]| -> std::collections::BTreeSet<String> {
        actions.iter().map(|it| it.to_ascii_lowercase()).collect()
    };
    let changed = |same: fn(&RoleFields, &RoleFields) -> bool| shown.is_none_or(|shown| !same(fields, shown));
    CustomRoleDraft {
        display_name: changed(|a, b| a.display_name == b.display_name).then(|| fields.display_name.clone()),
        description: changed(|a, b| a.description == b.description)
            .then(|| (!fields.description.is_empty()).then(|| fields.description.clone())),
        is_enabled: changed(|a, b| a.is_enabled == b.is_enabled).then_some(fields.is_enabled),
        allowed_resource_actions: shown
            .is_none_or(|shown| set(&fields.actions) != set(&shown.actions))
            .then(|| fields.actions.clone()),
        ..CustomRoleDraft::default()
    }
}

/// `GET /{tenant}/admin/roles/new`: the new-role form.
pub(in crate::pages) async fn new_role(Admin { caller, csrf }: Admin) -> Response {
    form_page(&caller, csrf, None, RoleFields { is_enabled: true, ..RoleFields::default() }, String::new(), None)
}

/// `POST /{tenant}/admin/roles/new`: creates the role (`POST /roleDefinitions`) and opens its page.
pub(in crate::pages) async fn create_role(State(state): State<AppState>, form: AdminForm) -> Response {
    let fields = fields_of(&form.fields);
    let AdminForm { caller, csrf, .. } = form;
    match state.app.create_role_definition(&caller, draft_of(&fields, None)).await {
        Ok(role) => see_other(&format!("/{}/admin/roles/{}?done=created", caller.tenant.id, role.id)),
        Err(err) => match form_error(err) {
            Ok(error) => form_page(&caller, csrf, None, fields, String::new(), Some(error)),
            Err(err) => failure(err),
        },
    }
}

/// A custom role by id, or the page that says why there is none to edit.
async fn custom_role(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<keyward_core::authz::custom::CustomRole, Response> {
    match state.app.get_role_definition(caller, id).await {
        Ok(keyward_app::RoleDef::Custom(role)) => Ok(role),
        Ok(keyward_app::RoleDef::BuiltIn(_)) => {
            Err(failure(AppError::BadRequest("Built-in roles cannot be changed; create a custom role instead.".into())))
        }
        Err(err) => Err(failure(err)),
    }
}

/// `GET /{tenant}/admin/roles/{id}/edit`: the form of a custom role.
pub(in crate::pages) async fn edit_role(
    State(state): State<AppState>,
    Admin { caller, csrf }: Admin,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let role = match custom_role(&state, &caller, &id).await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let fields = RoleFields {
        display_name: role.display_name,
        description: role.description.unwrap_or_default(),
        is_enabled: role.is_enabled,
        actions: role.allowed_resource_actions,
    };
    let shown = encode(&fields);
    form_page(&caller, csrf, Some(role.id.to_string()), fields, shown, None)
}

/// `POST /{tenant}/admin/roles/{id}/edit`: `action=save` saves the form
/// (`PATCH /roleDefinitions/{id}`); `action=delete` shows what deleting does, and its
/// confirmation (`action=remove`) deletes the role (`DELETE /roleDefinitions/{id}`, refused while
/// anyone holds it).
pub(in crate::pages) async fn save_role(
    State(state): State<AppState>,
    Path((_, id)): Path<(String, String)>,
    form: AdminForm,
) -> Response {
    let role = match custom_role(&state, &form.caller, &id).await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let tenant = form.caller.tenant.id.to_string();
    let edit = format!("/{tenant}/admin/roles/{}/edit", role.id);
    match form.field("action") {
        // "Delete this role" asks first; the confirmation posts `remove`.
        "delete" => {
            let what = format!(
                "Deletes the custom role {} for good. Refused while anyone holds it: remove its assignments first. \
                 Recorded in the audit log.",
                role.display_name
            );
            let title = format!("Delete {}", role.display_name);
            return picker::confirm_removal(
                &form.caller,
                form.csrf.clone(),
                title,
                what,
                edit,
                Vec::new(),
                "Delete role",
            );
        }
        "remove" => {
            return match state.app.delete_role_definition(&form.caller, &role.id.to_string()).await {
                Ok(()) => see_other(&format!("/{tenant}/admin/roles?done=deleted")),
                Err(err) => failure(err),
            };
        }
        "save" => (),
        _ => return failure(AppError::BadRequest("Unknown action: use the forms on the role's page.".into())),
    }
    let fields = fields_of(&form.fields);
    // What the page showed (kept across a refused save, so the next save compares with it too).
    let shown_text = form.field("shown").to_owned();
    let shown = (!shown_text.is_empty())
        .then(|| fields_of(&form_urlencoded::parse(shown_text.as_bytes()).into_owned().collect::<Vec<_>>()));
    let AdminForm { caller, csrf, .. } = form;
    match state.app.update_role_definition(&caller, &role.id.to_string(), draft_of(&fields, shown.as_ref())).await {
        Ok(()) => see_other(&format!("/{tenant}/admin/roles/{}?done=saved", role.id)),
        Err(err) => match form_error(err) {
            Ok(error) => form_page(&caller, csrf, Some(role.id.to_string()), fields, shown_text, Some(error)),
            Err(err) => failure(err),
        },
    }
}
