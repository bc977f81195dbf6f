//! Loading what the decision function needs to know about a target, inside the use case's
//! transaction, so the decision and the change see the same data.

use keyward_core::authz::{GroupFacts, UnitMembership, UserFacts, roles};
use keyward_core::directory::{Group, Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_store::Tx;

use crate::AppError;

/// Only the identity: enough for reads, which the rules do not restrict by target.
pub(crate) fn user_for_read(user: &User) -> UserFacts {
    UserFacts { id: Some(user.id.clone()), ..UserFacts::default() }
}

/// Only the identity of a group, for reads.
pub(crate) fn group_for_read(group: &Group) -> GroupFacts {
    GroupFacts { id: Some(group.id.clone()), is_assignable_to_role: group.is_assignable_to_role, units: Vec::new() }
}

/// Everything the rules weigh about a target user: roles, role-assignable groups, units, and
/// whether the user is the last enabled Global Administrator.
pub(crate) async fn user_facts(tx: &mut dyn Tx, tenant: &Tenant, user: &User) -> Result<UserFacts, AppError> {
    let assignments = tx.list_role_assignments_for(&tenant.id, &user.id).await?;
    let scoped_units: Vec<ObjectId> = assignments
        .iter()
        .filter_map(|it| it.directory_scope_id.strip_prefix("/administrativeUnits/").and_then(ObjectId::parse))
        .collect();
    let restricted = if scoped_units.is_empty() { Vec::new() } else { tx.list_restricted_units(&tenant.id).await? };
    let mut role_ids: Vec<String> = assignments.iter().map(|it| it.role_definition_id.to_lowercase()).collect();
    role_ids.sort();
    role_ids.dedup();
    let holds_global_admin = assignments.iter().any(|it| {
        it.directory_scope_id == "/" && it.role_definition_id.eq_ignore_ascii_case(roles::GLOBAL_ADMINISTRATOR)
    });
    let is_last_active_global_administrator = holds_global_admin
        && user.account_enabled
        && tx.count_enabled_holders(&tenant.id, roles::GLOBAL_ADMINISTRATOR).await? <= 1;
    let units = tx.list_units_of(&user.id).await?;
    Ok(UserFacts {
        id: Some(user.id.clone()),
        role_ids,
        has_role_scoped_to_restricted_unit: scoped_units.iter().any(|it| restricted.contains(it)),
        is_role_assignable_group_member_or_owner: tx.is_in_role_assignable_group(&user.id).await?,
        units: units.into_iter().map(|(id, is_restricted)| UnitMembership { id, is_restricted }).collect(),
        is_last_active_global_administrator,
    })
}

/// Everything the rules weigh about a target group.
pub(crate) async fn group_facts(tx: &mut dyn Tx, group: &Group) -> Result<GroupFacts, AppError> {
    let units = tx.list_units_of(&group.id).await?;
    Ok(GroupFacts {
        id: Some(group.id.clone()),
        is_assignable_to_role: group.is_assignable_to_role,
        units: units.into_iter().map(|(id, is_restricted)| UnitMembership { id, is_restricted }).collect(),
    })
}
