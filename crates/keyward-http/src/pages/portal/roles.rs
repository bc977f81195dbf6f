//! Roles with their descriptions, and who holds each one at which scope.

use super::*;

#[derive(Debug, Template)]
#[template(path = "portal/roles.html")]
struct RolesPage {
    title: &'static str,
    tenant: String,
    header: Header,
    /// Each role: id, name, privileged, description.
    roles: Vec<(String, String, bool, String)>,
}

#[derive(Debug, Template)]
#[template(path = "portal/role.html")]
struct RolePage {
    title: String,
    tenant: String,
    header: Header,
    description: String,
    privileged: bool,
    /// Each assignment: principal, its type, scope; or why they are not shown.
    assignments: Result<Vec<(String, &'static str, String)>, String>,
}

fn role_description(role: &keyward_app::RoleDef) -> String {
    match role {
        keyward_app::RoleDef::BuiltIn(it) => it.description.to_owned(),
        keyward_app::RoleDef::Custom(it) => it.description.clone().unwrap_or_default(),
    }
}

/// `GET /{tenant}/admin/roles`: every role, built-in and custom, with its description and a
/// privileged badge.
pub(in crate::pages) async fn roles(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let (caller, _) = match administrator(&state, &tenant, &headers, peer, "/admin/roles").await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let all = match state.app.list_role_definitions(&caller).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let mut roles: Vec<_> = all
        .iter()
        .map(|it| (it.id(), it.display_name().to_owned(), it.is_privileged(), role_description(it)))
        .collect();
    roles.sort_by(|a, b| a.1.cmp(&b.1));
    let page = RolesPage {
        title: "Roles and administrators",
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        roles,
    };
    html(StatusCode::OK, &page)
}

/// `GET /{tenant}/admin/roles/{id}`: a role and who holds it, at which scope.
pub(in crate::pages) async fn role(
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let return_to = format!("/admin/roles/{}", url_encode(&id));
    let (caller, _) = match administrator(&state, &tenant, &headers, peer, &return_to).await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let role = match state.app.get_role_definition(&caller, &id).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let filter = AssignmentFilter { role_definition_id: Some(role.id()), ..AssignmentFilter::default() };
    let assignments = match state.app.list_role_assignments(&caller, &filter, 100, None).await {
        Ok(page) => {
            let mut rows = Vec::with_capacity(page.items.len());
            for assignment in &page.items {
                let (name, kind) =
                    match state.app.get_directory_object(&caller, &assignment.principal_id.to_string()).await {
                        Ok(DirectoryObject::User(user)) => {
                            (format!("{} ({})", user.display_name, user.user_principal_name), "User")
                        }
                        Ok(DirectoryObject::Group(group)) => (group.display_name, "Group"),
                        Ok(DirectoryObject::ServicePrincipal(principal)) => {
                            (principal.display_name, "Service principal")
                        }
                        Err(_) => (assignment.principal_id.to_string(), "-"),
                    };
                let scope = match assignment.directory_scope_id.as_str() {
                    "/" => "Directory".to_owned(),
                    other => format!("Administrative unit {}", other.trim_start_matches("/administrativeUnits/")),
                };
                rows.push((name, kind, scope));
            }
            Ok(rows)
        }
        Err(AppError::Forbidden { .. }) => Err("Your roles do not let you read role assignments.".to_owned()),
        Err(err) => return failure(err),
    };
    let page = RolePage {
        title: role.display_name().to_owned(),
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        description: role_description(&role),
        privileged: role.is_privileged(),
        assignments,
    };
    html(StatusCode::OK, &page)
}
