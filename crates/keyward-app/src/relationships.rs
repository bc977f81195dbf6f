//! A user's relationships beyond group membership: what the user is a member of (groups,
//! directory roles, administrative units), directly and through nesting, the manager and direct
//! reports, and Graph's member-group functions on users and groups.

use std::collections::BTreeSet;

use keyward_core::audit::{Activity, TargetResource};
use keyward_core::authz::{self, Target, actions};
use keyward_core::directory::{self, DirectoryObject, Membership, ObjectKind, PropertyChange, User};
use keyward_core::ids::ObjectId;
use keyward_core::json;
use keyward_store::{AssignmentFilter, MemberRef, Tx};

use crate::commit_audited;
use crate::directory::{
    ObjectPage, Relation, decode_id_skiptoken, id_skiptoken, page_of_refs, page_size, resolve_group, resolve_object,
    resolve_user,
};
use crate::facts::{group_for_read, user_facts, user_for_read};
use crate::{App, AppError, Caller, require};

/// A page of what a user is a member of, and the `$skiptoken` of the next page.
#[derive(Debug, Clone)]
pub struct MembershipPage {
    pub items: Vec<Membership>,
    pub skiptoken: Option<String>,
}

/// The objects a user's relationships name beyond memberships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserObjects {
    /// `directReports`: the users whose manager the user is.
    DirectReports,
    /// `ownedObjects`: the groups the user owns.
    OwnedObjects,
}

/// A relationship collection, for `$count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Related {
    /// A group's `members` or `owners`.
    Group(Relation),
    /// A group's `transitiveMembers`.
    TransitiveMembers,
    /// What a user or group (the kind) is a member of: `memberOf`, or `transitiveMemberOf` (`true`).
    MemberOf(ObjectKind, bool),
    /// A user's `directReports` or `ownedObjects`.
    User(UserObjects),
}

/// How many objects the transitive reads and the member-group functions follow at most (Graph's
/// `getMemberGroups` stops at 11,000 and says to use `transitiveMemberOf` beyond).
const TRANSITIVE_LIMIT: usize = 11_000;

/// The groups `start` belongs to, directly and through nesting, nearest first.
pub(crate) async fn transitive_groups(tx: &mut dyn Tx, start: &ObjectId) -> Result<Vec<ObjectId>, AppError> {
    let mut seen = BTreeSet::from([start.clone()]);
    let mut found = Vec::new();
    let mut frontier = vec![start.clone()];
    while let Some(next) = frontier.pop() {
        for group in tx.list_member_of(&next, None, TRANSITIVE_LIMIT).await? {
            if found.len() >= TRANSITIVE_LIMIT {
                return Err(AppError::BadRequest(format!(
                    "The object is a member of more than {TRANSITIVE_LIMIT} groups; page through transitiveMemberOf instead."
                )));
            }
            if seen.insert(group.clone()) {
                found.push(group.clone());
                frontier.push(group);
            }
        }
    }
    Ok(found)
}

/// The members of `group` and of its member groups, each once, ordered by id.
pub(crate) async fn transitive_member_refs(tx: &mut dyn Tx, group: &ObjectId) -> Result<Vec<MemberRef>, AppError> {
    let mut found: Vec<MemberRef> = Vec::new();
    let mut seen = BTreeSet::from([group.clone()]);
    let mut frontier = vec![group.clone()];
    while let Some(next) = frontier.pop() {
        for member in tx.list_members(&next, None, TRANSITIVE_LIMIT).await? {
            if !seen.insert(member.id.clone()) {
                continue;
            }
            if member.kind == ObjectKind::Group {
                frontier.push(member.id.clone());
            }
            found.push(member);
            if found.len() > TRANSITIVE_LIMIT {
                return Err(AppError::BadRequest(format!(
                    "The group has more than {TRANSITIVE_LIMIT} members through nesting; page through each group's members instead."
                )));
            }
        }
    }
    found.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    Ok(found)
}

/// The built-in roles assigned to any of `principals` itself at the tenant's scope: Graph's
/// directory roles they are members of (one query).
async fn directory_roles_of(
    tx: &mut dyn Tx,
    tenant: &ObjectId,
    principals: &[ObjectId],
) -> Result<Vec<&'static authz::RoleDefinition>, AppError> {
    let filter = AssignmentFilter { principal_id: Some(principals.to_vec()), ..AssignmentFilter::default() };
    let assignments = tx.list_role_assignments(tenant, &filter, None, keyward_store::ALL_ROWS).await?;
    let mut roles: Vec<_> = assignments
        .iter()
        .filter(|it| it.directory_scope_id == "/")
        .filter_map(|it| authz::built_in_role(&it.role_definition_id))
        .collect();
    roles.sort_by_key(|it| it.id);
    roles.dedup();
    Ok(roles)
}

/// The administrative units `member` belongs to.
async fn units_of(
    tx: &mut dyn Tx,
    tenant: &ObjectId,
    member: &ObjectId,
) -> Result<Vec<directory::AdministrativeUnit>, AppError> {
    let mut res = Vec::new();
    for (id, _) in tx.list_units_of(member).await? {
        if let Some(unit) = tx.get_administrative_unit(tenant, &id).await? {
            res.push(unit);
        }
    }
    Ok(res)
}

/// Everything `start` is a member of, directly (`transitive` false) or through nesting: groups,
/// the directory roles held by the object or by one of those groups, and administrative units.
async fn memberships(
    tx: &mut dyn Tx,
    tenant: &ObjectId,
    start: &ObjectId,
    transitive: bool,
) -> Result<Vec<Membership>, AppError> {
    let group_ids = if transitive {
        transitive_groups(tx, start).await?
    } else {
        tx.list_member_of(start, None, TRANSITIVE_LIMIT).await?
    };
    let mut holders = vec![start.clone()];
    if transitive {
        holders.extend(group_ids.iter().cloned());
    }
    let roles = directory_roles_of(tx, tenant, &holders).await?;
    let mut units = Vec::new();
    for holder in &holders {
        units.extend(units_of(tx, tenant, holder).await?);
    }
    let groups = tx.get_groups(tenant, &group_ids).await?;
    let mut res: Vec<Membership> = groups.into_iter().map(Membership::Group).collect();
    res.extend(roles.into_iter().map(Membership::Role));
    res.extend(units.into_iter().map(Membership::Unit));
    res.sort_by_key(Membership::id);
    res.dedup_by(|a, b| a.id() == b.id());
    Ok(res)
}

/// The id of the user or group (`kind`) `key` names, once the caller may read what it is a member of.
async fn member_of_subject(
    tx: &mut dyn Tx,
    caller: &Caller,
    kind: ObjectKind,
    key: &str,
) -> Result<ObjectId, AppError> {
    if kind == ObjectKind::Group {
        let group = resolve_group(tx, &caller.tenant, key).await?;
        require(caller, actions::GROUPS_READ, Target::Group(&group_for_read(&group)))?;
        Ok(group.id)
    } else {
        let user = resolve_user(tx, &caller.tenant, key).await?;
        require(caller, actions::USERS_MEMBER_OF_READ, Target::User(&user_for_read(&user)))?;
        Ok(user.id)
    }
}

/// A membership's Graph type name.
fn membership_type(membership: &Membership) -> &'static str {
    match membership {
        Membership::Group(_) => "group",
        Membership::Role(_) => "directoryRole",
        Membership::Unit(_) => "administrativeUnit",
    }
}

/// One page of an id-ordered list, from the id after `after`, with one more looked at to tell
/// whether more follow.
fn page_by_id(items: Vec<Membership>, after: Option<&str>, top: usize) -> MembershipPage {
    let mut items: Vec<Membership> =
        items.into_iter().filter(|it| after.is_none_or(|after| it.id().as_str() > after)).collect();
    let has_more = items.len() > top;
    items.truncate(top);
    let skiptoken = if has_more { items.last().map(|it| id_skiptoken(&it.id())) } else { None };
    MembershipPage { items, skiptoken }
}

impl App {
    /// `$count` of a relationship collection: how many objects it holds, only those of the Graph
    /// type `cast` (`user`, `group`, `servicePrincipal`, `directoryRole`, `administrativeUnit`)
    /// when given. Needs what reading the collection needs.
    pub async fn count_related(
        &self,
        caller: &Caller,
        related: Related,
        key: &str,
        cast: Option<&str>,
    ) -> Result<u64, AppError> {
        let mut tx = self.read().await?;
        let kinds: Vec<&'static str> = match related {
            Related::Group(relation) => {
                let group = resolve_group(&mut *tx, &caller.tenant, key).await?;
                require(caller, relation.read_action(), Target::Group(&group_for_read(&group)))?;
                let refs = match relation {
                    Relation::Members => tx.list_members(&group.id, None, keyward_store::ALL_ROWS).await?,
                    Relation::Owners => tx.list_owners(&group.id, None, keyward_store::ALL_ROWS).await?,
                };
                refs.iter().map(|it| it.kind.as_str()).collect()
            }
            Related::TransitiveMembers => {
                let group = resolve_group(&mut *tx, &caller.tenant, key).await?;
                require(caller, actions::GROUPS_MEMBERS_READ, Target::Group(&group_for_read(&group)))?;
                transitive_member_refs(&mut *tx, &group.id).await?.iter().map(|it| it.kind.as_str()).collect()
            }
            Related::MemberOf(kind, transitive) => {
                let id = member_of_subject(&mut *tx, caller, kind, key).await?;
                memberships(&mut *tx, &caller.tenant.id, &id, transitive).await?.iter().map(membership_type).collect()
            }
            Related::User(which) => {
                let user = resolve_user(&mut *tx, &caller.tenant, key).await?;
                require(caller, actions::USERS_READ, Target::User(&user_for_read(&user)))?;
                let all = keyward_store::ALL_ROWS;
                match which {
                    UserObjects::DirectReports => {
                        let found = tx.list_direct_reports(&caller.tenant.id, &user.id, None, all).await?;
                        vec![ObjectKind::User.as_str(); found.len()]
                    }
                    UserObjects::OwnedObjects => {
                        require(caller, actions::GROUPS_READ, Target::Tenant)?;
                        vec![ObjectKind::Group.as_str(); tx.list_owned_groups(&user.id, None, all).await?.len()]
                    }
                }
            }
        };
        let counted = kinds.iter().filter(|it| cast.is_none_or(|cast| cast == **it)).count();
        Ok(u64::try_from(counted).unwrap_or(u64::MAX))
    }

    /// `GET /users/{id}/memberOf` and `GET /groups/{id}/memberOf` (`kind` says which; `transitive`
    /// false): the groups the user or group is a direct member of, the directory roles assigned to
    /// it at the tenant's scope, and its administrative units; `transitiveMemberOf` (`transitive`
    /// true) adds groups through nesting and the roles they hold. Ordered by id and paged
    /// (`microsoft.directory/users/memberOf/read` on a user, `groups/standard/read` on a group).
    pub async fn member_of(
        &self,
        caller: &Caller,
        kind: ObjectKind,
        key: &str,
        transitive: bool,
        top: Option<&str>,
        skiptoken: Option<&str>,
    ) -> Result<MembershipPage, AppError> {
        let top = page_size(top)?;
        let after = decode_id_skiptoken(skiptoken)?;
        let mut tx = self.read().await?;
        let id = member_of_subject(&mut *tx, caller, kind, key).await?;
        let all = memberships(&mut *tx, &caller.tenant.id, &id, transitive).await?;
        Ok(page_by_id(all, after.as_deref(), top))
    }

    /// `GET /groups/{id}/transitiveMembers`: the members, and the members of member groups,
    /// each once, ordered by id and paged (`microsoft.directory/groups/members/read`).
    pub async fn transitive_members(
        &self,
        caller: &Caller,
        key: &str,
        top: Option<&str>,
        skiptoken: Option<&str>,
    ) -> Result<ObjectPage, AppError> {
        let top = page_size(top)?;
        let after = decode_id_skiptoken(skiptoken)?;
        let mut tx = self.read().await?;
        let group = resolve_group(&mut *tx, &caller.tenant, key).await?;
        require(caller, actions::GROUPS_MEMBERS_READ, Target::Group(&group_for_read(&group)))?;
        let mut found = transitive_member_refs(&mut *tx, &group.id).await?;
        found.retain(|it| after.as_deref().is_none_or(|after| it.id.as_str() > after));
        found.truncate(top + 1);
        page_of_refs(&mut *tx, &caller.tenant, found, top).await
    }

    /// `GET /users/{id}/manager`: the user's manager (`microsoft.directory/users/standard/read`
    /// on the user); `404` for a user without one, as Graph answers.
    pub async fn manager(&self, caller: &Caller, key: &str) -> Result<User, AppError> {
        let mut tx = self.read().await?;
        let user = resolve_user(&mut *tx, &caller.tenant, key).await?;
        require(caller, actions::USERS_READ, Target::User(&user_for_read(&user)))?;
        let Some(manager) = &user.manager else { return Err(AppError::NotFound("manager".into())) };
        tx.get_user(&caller.tenant.id, manager).await?.ok_or_else(|| AppError::NotFound("manager".into()))
    }

    /// `GET /users/{id}/directReports` (the users whose manager the user is) or
    /// `…/ownedObjects` (the groups the user owns; Keyward's applications have no owners), by id
    /// and paged. Both need `users/standard/read` on the user, owned groups `groups/standard/read`.
    pub async fn user_objects(
        &self,
        caller: &Caller,
        key: &str,
        which: UserObjects,
        top: Option<&str>,
        skiptoken: Option<&str>,
    ) -> Result<ObjectPage, AppError> {
        let top = page_size(top)?;
        let after = decode_id_skiptoken(skiptoken)?;
        let mut tx = self.read().await?;
        let user = resolve_user(&mut *tx, &caller.tenant, key).await?;
        require(caller, actions::USERS_READ, Target::User(&user_for_read(&user)))?;
        let (kind, ids) = match which {
            UserObjects::DirectReports => (
                ObjectKind::User,
                tx.list_direct_reports(&caller.tenant.id, &user.id, after.as_deref(), top + 1).await?,
            ),
            UserObjects::OwnedObjects => {
                require(caller, actions::GROUPS_READ, Target::Tenant)?;
                (ObjectKind::Group, tx.list_owned_groups(&user.id, after.as_deref(), top + 1).await?)
            }
        };
        let refs = ids.into_iter().map(|id| MemberRef { kind, id }).collect();
        page_of_refs(&mut *tx, &caller.tenant, refs, top).await
    }

    /// `PUT /users/{id}/manager/$ref` (a user of the tenant, not the user nor one of the users
    /// the user manages up the line) and `DELETE …/manager/$ref` (`manager` `None`; `404` when
    /// the user has none). Needs `microsoft.directory/users/manager/update` on the user; recorded
    /// as Entra's `Set user manager`, naming the user and the manager.
    pub async fn set_manager(&self, caller: &Caller, key: &str, manager: Option<&str>) -> Result<(), AppError> {
        let now = self.now();
        let mut tx = self.write().await?;
        // Manager changes in a tenant are serialised (PostgreSQL; SQLite's write transaction is
        // already alone), so two concurrent changes cannot each pass the loop check.
        tx.lock_role_changes(&caller.tenant.id).await?;
        let user = resolve_user(&mut *tx, &caller.tenant, key).await?;
        let facts = user_facts(&mut *tx, &caller.tenant, &user).await?;
        let activity = Activity::SetUserManager;
        if let Err(err) = require(caller, actions::USERS_MANAGER_UPDATE, Target::User(&facts)) {
            return Err(self.refused(Some(tx), caller, activity, vec![TargetResource::user(&user)], err).await);
        }
        let old = match &user.manager {
            Some(id) => tx.get_user(&caller.tenant.id, id).await?,
            None => None,
        };
        let new = match manager {
            Some(manager_key) => {
                let found = match resolve_object(&mut *tx, &caller.tenant, manager_key).await? {
                    DirectoryObject::User(found) => found,
                    _ => {
                        return Err(AppError::BadRequest(
                            "A manager must be a user: reference /users/{id} or /directoryObjects/{id} of a user."
                                .into(),
                        ));
                    }
                };
                let mut chain = Vec::new();
                let mut next = found.manager.clone();
                while let Some(id) = next {
                    if chain.contains(&id) || chain.len() > 1_000 {
                        break;
                    }
                    next = tx.get_user(&caller.tenant.id, &id).await?.and_then(|it| it.manager);
                    chain.push(id);
                }
                directory::check_manager(&user.id, &found.id, &chain)
                    .map_err(|err| AppError::BadRequest(err.to_string()))?;
                Some(found)
            }
            None if user.manager.is_none() => return Err(AppError::NotFound("manager".into())),
            None => None,
        };
        if old.as_ref().map(|it| &it.id) == new.as_ref().map(|it| &it.id) {
            return Ok(());
        }
        tx.set_manager(&caller.tenant.id, &user.id, new.as_ref().map(|it| &it.id)).await?;
        let name = |it: &Option<User>| json::string_array(it.as_ref().map(|it| it.user_principal_name.as_str()));
        let change = PropertyChange::new("Manager", name(&old), name(&new));
        let mut targets = vec![TargetResource::user(&user).with_changes(vec![change])];
        targets.extend(new.as_ref().or(old.as_ref()).map(TargetResource::user));
        commit_audited(tx, [caller.succeeded(now, activity, targets)]).await?;
        Ok(())
    }

    /// The subject of a member-group function (a user by id or sign-in name, or a group), with
    /// the read permission its memberships need.
    async fn member_subject(&self, tx: &mut dyn Tx, caller: &Caller, key: &str) -> Result<ObjectId, AppError> {
        let object = match ObjectId::parse(key) {
            Some(_) => resolve_object(tx, &caller.tenant, key).await?,
            None => DirectoryObject::User(resolve_user(tx, &caller.tenant, key).await?),
        };
        match object {
            DirectoryObject::User(user) => {
                require(caller, actions::USERS_MEMBER_OF_READ, Target::User(&user_for_read(&user)))?;
                Ok(user.id)
            }
            DirectoryObject::Group(group) => {
                require(caller, actions::GROUPS_READ, Target::Group(&group_for_read(&group)))?;
                Ok(group.id)
            }
            DirectoryObject::ServicePrincipal(_) => Err(AppError::NotFound(key.to_owned())),
        }
    }

    /// `getMemberGroups` (`objects` false: groups only) and `getMemberObjects` (`objects` true:
    /// also directory roles and administrative units) on a user or group, security groups only
    /// with `securityEnabledOnly`: the ids of what it is a member of through nesting.
    pub async fn member_ids(
        &self,
        caller: &Caller,
        key: &str,
        objects: bool,
        security_enabled_only: bool,
    ) -> Result<Vec<String>, AppError> {
        let mut tx = self.read().await?;
        let id = self.member_subject(&mut *tx, caller, key).await?;
        let all = memberships(&mut *tx, &caller.tenant.id, &id, true).await?;
        Ok(all
            .into_iter()
            .filter(|it| match it {
                Membership::Group(group) => !security_enabled_only || group.security_enabled,
                // `securityEnabledOnly`: security groups only, for getMemberObjects too.
                Membership::Role(_) | Membership::Unit(_) => objects && !security_enabled_only,
            })
            .map(|it| it.id())
            .collect())
    }

    /// `checkMemberGroups` / `checkMemberObjects`: which of `ids` (20 at most) the user or group
    /// is a member of through nesting, in the order given.
    pub async fn check_member_ids(
        &self,
        caller: &Caller,
        key: &str,
        ids: &[String],
        objects: bool,
    ) -> Result<Vec<String>, AppError> {
        if ids.len() > 20 {
            return Err(AppError::BadRequest(
                "At most 20 ids may be checked at once; split the list into several requests.".into(),
            ));
        }
        let member_of = self.member_ids(caller, key, objects, false).await?;
        Ok(ids.iter().filter(|it| member_of.iter().any(|m| m.eq_ignore_ascii_case(it))).cloned().collect())
    }
}
