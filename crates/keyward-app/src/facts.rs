//! Loading what the decision function needs to know about a target, inside the use case's
//! transaction, so the decision and the change see the same data.

use keyward_core::authz::{ApplicationFacts, GroupFacts, UnitMembership, UserFacts, roles};
use keyward_core::directory::{Group, Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_store::{AssignmentFilter, Tx};

use crate::AppError;

/// Only the identity: enough for reads, which the rules do not restrict by target.
pub(crate) fn user_for_read(user: &User) -> UserFacts {
    UserFacts { id: Some(user.id.clone()), ..UserFacts::default() }
}

/// Only the identity of a group, for reads.
pub(crate) fn group_for_read(group: &Group) -> GroupFacts {
    GroupFacts { id: Some(group.id.clone()), is_assignable_to_role: group.is_assignable_to_role, units: Vec::new() }
}

/// Everything the rules weigh about a target user: roles (held, or eligible for), role-assignable
/// groups, units, and whether the user is the last enabled Global Administrator.
///
/// Takes the tenant's role-change lock first, shared (PostgreSQL; SQLite writers are serial
/// anyway). The changes that decide who is privileged or who may act on whom take it exclusive:
/// role assignments and eligibilities, role definitions, role-assignable groups' members (and
/// restoring such a group), administrative units' members, consent, and disabling or deleting a
/// user, a service principal or an application. So a target cannot be promoted (nor the second-to-last Global
/// Administrator removed) between this decision and its transaction's commit, while decisions run
/// side by side. A change takes the exclusive lock before anything it decides on (asking for it
/// after the shared one could deadlock); a write use case that writes the user back takes the
/// shared lock before reading the user, so a disable cannot commit in between.
pub(crate) async fn user_facts(tx: &mut dyn Tx, tenant: &Tenant, user: &User) -> Result<UserFacts, AppError> {
    tx.share_role_changes(&tenant.id).await?;
    // A role scheduled to start later protects the user as one held now: whoever took over the
    // account before it starts would hold it when it does.
    let assignments = tx.list_unended_role_assignments_for(&tenant.id, &user.id).await?;
    // A user eligible for a role is protected as if they held it: whoever could take over the
    // account could activate the role (its MFA included, with a Temporary Access Pass).
    let eligibilities = tx.list_eligibilities_for(&tenant.id, &user.id).await?;
    let held = assignments
        .iter()
        .map(|it| (&it.role_definition_id, &it.directory_scope_id))
        .chain(eligibilities.iter().map(|it| (&it.role_definition_id, &it.directory_scope_id)));
    let scoped_units: Vec<ObjectId> = held
        .clone()
        .filter_map(|(_, scope)| scope.strip_prefix("/administrativeUnits/").and_then(ObjectId::parse))
        .collect();
    let restricted = if scoped_units.is_empty() { Vec::new() } else { tx.list_restricted_units(&tenant.id).await? };
    let mut role_ids: Vec<String> = held.map(|(role, _)| role.to_lowercase()).collect();
    role_ids.sort();
    role_ids.dedup();
    let is_tenant_global_admin = |it: &keyward_store::RoleAssignment| {
        it.directory_scope_id == "/" && it.role_definition_id.eq_ignore_ascii_case(roles::GLOBAL_ADMINISTRATOR)
    };
    // Held now, not only scheduled (read again only for a Global Administrator, which is rare).
    let holds_global_admin = assignments.iter().any(is_tenant_global_admin)
        && tx.list_role_assignments_for(&tenant.id, &user.id).await?.iter().any(is_tenant_global_admin);
    let is_last_active_global_administrator = holds_global_admin
        && user.account_enabled
        && administrators_after(tx, tenant, &RoleChange::RemoveUser(&user.id)).await?.is_empty();
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

/// Whether a service principal is privileged: it holds a directory role, or one is scheduled for
/// it (at any scope, directly or through a group), so its credentials are that role's credentials.
pub(crate) async fn service_principal_facts(
    tx: &mut dyn Tx,
    tenant: &Tenant,
    principal: &ObjectId,
) -> Result<ApplicationFacts, AppError> {
    // Promotions take this lock exclusive (see `user_facts`).
    tx.share_role_changes(&tenant.id).await?;
    // A role scheduled to start later counts: a credential added before it starts would hold it.
    Ok(ApplicationFacts {
        is_privileged: !tx.list_unended_role_assignments_for(&tenant.id, principal).await?.is_empty(),
    })
}

/// [`service_principal_facts`] for an application registration (by its `appId`); an application
/// without a service principal holds no role.
pub(crate) async fn application_facts(
    tx: &mut dyn Tx,
    tenant: &Tenant,
    app_id: &str,
) -> Result<ApplicationFacts, AppError> {
    match tx.find_service_principal(&tenant.id, app_id).await? {
        Some(principal) => service_principal_facts(tx, tenant, &principal.id).await,
        None => Ok(ApplicationFacts::default()),
    }
}

/// A change that may take Global Administrator away from someone.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RoleChange<'a> {
    None,
    RemoveAssignment(&'a str),
    RemoveMember {
        group: &'a ObjectId,
        member: &'a ObjectId,
    },
    DeleteGroup(&'a ObjectId),
    /// Deleting or disabling the user.
    RemoveUser(&'a ObjectId),
}

/// The enabled users who would hold Global Administrator tenant-wide and permanently after `change`, directly or
/// through a role-assignable group. Takes the tenant's role-change lock first, exclusive, so two concurrent
/// changes cannot both see a second administrator that the other removes.
pub(crate) async fn global_administrators(
    tx: &mut dyn Tx,
    tenant: &Tenant,
    change: &RoleChange<'_>,
) -> Result<Vec<ObjectId>, AppError> {
    tx.lock_role_changes(&tenant.id).await?;
    administrators_after(tx, tenant, change).await
}

/// [`global_administrators`] under whichever role-change lock the transaction holds: a decision
/// (shared) or a change (exclusive).
async fn administrators_after(
    tx: &mut dyn Tx,
    tenant: &Tenant,
    change: &RoleChange<'_>,
) -> Result<Vec<ObjectId>, AppError> {
    let filter = AssignmentFilter {
        role_definition_id: Some(vec![roles::GLOBAL_ADMINISTRATOR.to_owned()]),
        directory_scope_id: Some(vec!["/".to_owned()]),
        ..AssignmentFilter::default()
    };
    let assignments = tx.list_role_assignments(&tenant.id, &filter, None, keyward_store::ALL_ROWS).await?;
    let mut candidates: Vec<ObjectId> = Vec::new();
    for assignment in &assignments {
        // Only permanent assignments count: an activation or a time-bound assignment ends by
        // itself, so it never stands between the tenant and having no Global Administrator.
        if assignment.end.is_some() {
            continue;
        }
        if matches!(change, RoleChange::RemoveAssignment(id) if *id == assignment.id)
            || matches!(change, RoleChange::DeleteGroup(group) if **group == assignment.principal_id)
        {
            continue;
        }
        match tx.get_group(&tenant.id, &assignment.principal_id).await? {
            Some(group) if group.is_assignable_to_role => {
                for member in tx.list_members(&group.id, None, keyward_store::ALL_ROWS).await? {
                    let is_removed = matches!(change, RoleChange::RemoveMember { group: g, member: m } if **g == group.id && **m == member.id);
                    if !is_removed {
                        candidates.push(member.id);
                    }
                }
            }
            Some(_) => (),
            None => candidates.push(assignment.principal_id.clone()),
        }
    }
    candidates.sort();
    candidates.dedup();
    let users = tx.get_users(&tenant.id, &candidates).await?;
    let mut res: Vec<ObjectId> = users
        .into_iter()
        .filter(|it| it.account_enabled && !matches!(change, RoleChange::RemoveUser(id) if **id == it.id))
        .map(|it| it.id)
        .collect();
    res.sort();
    Ok(res)
}

/// Checks a change against the rules that protect Global Administrators.
pub(crate) async fn check_global_administrator_change(
    tx: &mut dyn Tx,
    tenant: &Tenant,
    actor: &ObjectId,
    change: &RoleChange<'_>,
) -> Result<(), AppError> {
    let before = global_administrators(tx, tenant, &RoleChange::None).await?;
    let after = global_administrators(tx, tenant, change).await?;
    keyward_core::authz::check_global_administrators(actor, &before, &after).map_err(|rule| AppError::Forbidden {
        rule,
        message: keyward_core::authz::denial_message(rule, keyward_core::authz::actions::ROLE_ASSIGNMENTS_WRITE),
    })
}
