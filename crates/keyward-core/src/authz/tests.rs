//! The decision function against Entra's who-may-act-on-whom tables, cell by cell, plus the cross-cutting rules and a
//! property test over random directories.

use proptest::prelude::*;

use super::roles::*;
use super::*;

fn id(n: u8) -> ObjectId {
    ObjectId::parse(&format!("00000000-0000-4000-8000-0000000000{n:02x}")).expect("guid")
}

fn actor_with(role: &str, scope: Scope) -> Actor {
    Actor { id: id(1), roles: vec![ActiveRole::built_in(role, scope)], is_guest: false }
}

/// A target row of the matrices.
#[derive(Debug, Clone, Copy)]
enum Row {
    Role(&'static str),
    NoRole,
    RoleAssignableGroupMember,
    RoleScopedToRestrictedUnit,
}

fn facts(row: Row) -> UserFacts {
    let mut res = UserFacts { id: Some(id(2)), ..UserFacts::default() };
    match row {
        Row::Role(role) => res.role_ids = vec![role.to_owned()],
        Row::NoRole => (),
        Row::RoleAssignableGroupMember => res.is_role_assignable_group_member_or_owner = true,
        Row::RoleScopedToRestrictedUnit => {
            res.role_ids = vec![HELPDESK_ADMINISTRATOR.to_owned()];
            res.has_role_scoped_to_restricted_unit = true;
        }
    }
    res
}

const Y: bool = true;
const N: bool = false;

/// Entra's "Who can reset passwords" table (Microsoft Learn, "Privileged roles and permissions in Microsoft Entra ID"), verbatim. Columns: PwA, HDA, AA, UA, PAA, GA.
const PASSWORD_TABLE: &[(&str, Row, [bool; 6])] = &[
    ("Auth Admin", Row::Role(AUTHENTICATION_ADMINISTRATOR), [N, N, Y, N, Y, Y]),
    ("Directory Readers", Row::Role(DIRECTORY_READERS), [Y, Y, Y, Y, Y, Y]),
    ("Global Admin", Row::Role(GLOBAL_ADMINISTRATOR), [N, N, N, N, Y, Y]),
    ("Groups Admin", Row::Role(GROUPS_ADMINISTRATOR), [N, N, N, Y, Y, Y]),
    ("Guest Inviter", Row::Role(GUEST_INVITER), [Y, Y, Y, Y, Y, Y]),
    ("Helpdesk Admin", Row::Role(HELPDESK_ADMINISTRATOR), [N, Y, N, Y, Y, Y]),
    ("Message Center Reader", Row::Role(MESSAGE_CENTER_READER), [N, Y, Y, Y, Y, Y]),
    ("Password Admin", Row::Role(PASSWORD_ADMINISTRATOR), [Y, Y, Y, Y, Y, Y]),
    ("Privileged Auth Admin", Row::Role(PRIVILEGED_AUTHENTICATION_ADMINISTRATOR), [N, N, N, N, Y, Y]),
    ("Privileged Role Admin", Row::Role(PRIVILEGED_ROLE_ADMINISTRATOR), [N, N, N, N, Y, Y]),
    ("Reports Reader", Row::Role(REPORTS_READER), [N, Y, Y, Y, Y, Y]),
    ("User (no admin role)", Row::NoRole, [Y, Y, Y, Y, Y, Y]),
    ("User (no role, but member/owner of a role-assignable group)", Row::RoleAssignableGroupMember, [N, N, N, N, Y, Y]),
    ("User with a role scoped to a restricted-management AU", Row::RoleScopedToRestrictedUnit, [N, N, N, N, Y, Y]),
    ("User Admin", Row::Role(USER_ADMINISTRATOR), [N, N, N, Y, Y, Y]),
    ("User Experience Success Manager", Row::Role(USER_EXPERIENCE_SUCCESS_MANAGER), [N, Y, Y, Y, Y, Y]),
    ("Usage Summary Reports Reader", Row::Role(USAGE_SUMMARY_REPORTS_READER), [N, Y, Y, Y, Y, Y]),
    ("All other built-in and custom roles (Security Reader)", Row::Role(SECURITY_READER), [N, N, N, N, Y, Y]),
    (
        "All other built-in and custom roles (a custom role)",
        Row::Role("6b3f8f6e-0000-4000-8000-00000000c0de"),
        [N, N, N, N, Y, Y],
    ),
];

const PASSWORD_COLUMNS: [&str; 6] = [
    PASSWORD_ADMINISTRATOR,
    HELPDESK_ADMINISTRATOR,
    AUTHENTICATION_ADMINISTRATOR,
    USER_ADMINISTRATOR,
    PRIVILEGED_AUTHENTICATION_ADMINISTRATOR,
    GLOBAL_ADMINISTRATOR,
];

/// Entra's "Who can perform sensitive actions" table (same page), verbatim. Columns: AA, UA, PAA, GA.
const SENSITIVE_TABLE: &[(&str, Row, [bool; 4])] = &[
    ("Auth Admin", Row::Role(AUTHENTICATION_ADMINISTRATOR), [Y, N, Y, Y]),
    ("Directory Readers", Row::Role(DIRECTORY_READERS), [Y, Y, Y, Y]),
    ("Global Admin", Row::Role(GLOBAL_ADMINISTRATOR), [N, N, Y, Y]),
    ("Groups Admin", Row::Role(GROUPS_ADMINISTRATOR), [N, Y, Y, Y]),
    ("Guest Inviter", Row::Role(GUEST_INVITER), [Y, Y, Y, Y]),
    ("Helpdesk Admin", Row::Role(HELPDESK_ADMINISTRATOR), [N, Y, Y, Y]),
    ("Message Center Reader", Row::Role(MESSAGE_CENTER_READER), [Y, Y, Y, Y]),
    ("Password Admin", Row::Role(PASSWORD_ADMINISTRATOR), [Y, Y, Y, Y]),
    ("Privileged Auth Admin", Row::Role(PRIVILEGED_AUTHENTICATION_ADMINISTRATOR), [N, N, Y, Y]),
    ("Privileged Role Admin", Row::Role(PRIVILEGED_ROLE_ADMINISTRATOR), [N, N, Y, Y]),
    ("Reports Reader", Row::Role(REPORTS_READER), [Y, Y, Y, Y]),
    ("User (no admin role)", Row::NoRole, [Y, Y, Y, Y]),
    ("User (no role, RAG member/owner)", Row::RoleAssignableGroupMember, [N, N, Y, Y]),
    ("User with role scoped to RMAU", Row::RoleScopedToRestrictedUnit, [N, N, Y, Y]),
    ("User Admin", Row::Role(USER_ADMINISTRATOR), [N, Y, Y, Y]),
    ("User Experience Success Manager", Row::Role(USER_EXPERIENCE_SUCCESS_MANAGER), [Y, Y, Y, Y]),
    ("Usage Summary Reports Reader", Row::Role(USAGE_SUMMARY_REPORTS_READER), [Y, Y, Y, Y]),
    ("All other built-in and custom roles (Security Reader)", Row::Role(SECURITY_READER), [N, N, Y, Y]),
];

const SENSITIVE_COLUMNS: [&str; 4] =
    [AUTHENTICATION_ADMINISTRATOR, USER_ADMINISTRATOR, PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, GLOBAL_ADMINISTRATOR];

#[test]
fn every_cell_of_who_can_reset_passwords() {
    for action in [actions::USERS_PASSWORD_UPDATE, actions::USERS_INVALIDATE_REFRESH_TOKENS] {
        for (label, row, expected) in PASSWORD_TABLE {
            for (column, is_allowed) in PASSWORD_COLUMNS.iter().zip(expected) {
                if action == actions::USERS_INVALIDATE_REFRESH_TOKENS && *column == PASSWORD_ADMINISTRATOR {
                    // Password Administrator holds only password/update.
                    continue;
                }
                let decision = authorize(&actor_with(column, Scope::Tenant), action, Target::User(&facts(*row)));
                let role = built_in_role(column).map_or("?", |it| it.display_name);
                assert_eq!(decision.is_allowed(), *is_allowed, "{role} -> {label}: {action}: {decision:?}");
                if !is_allowed {
                    assert_eq!(decision, Decision::Deny { rule: rules::PASSWORD_RESET_MATRIX });
                }
            }
        }
    }
    // Authentication Administrators read and change authentication methods by the same table.
    for action in [
        actions::USERS_AUTH_METHODS_CREATE,
        actions::USERS_AUTH_METHODS_DELETE,
        actions::USERS_AUTH_METHODS_RESTRICTED_READ,
    ] {
        for (label, row, expected) in PASSWORD_TABLE {
            let decision =
                authorize(&actor_with(AUTHENTICATION_ADMINISTRATOR, Scope::Tenant), action, Target::User(&facts(*row)));
            assert_eq!(decision.is_allowed(), expected[2], "Authentication Administrator -> {label}: {action}");
        }
    }
}

#[test]
fn every_cell_of_who_can_perform_sensitive_actions() {
    for action in actions::SENSITIVE_CLASS {
        for (label, row, expected) in SENSITIVE_TABLE {
            for (column, is_allowed) in SENSITIVE_COLUMNS.iter().zip(expected) {
                let decision = authorize(&actor_with(column, Scope::Tenant), action, Target::User(&facts(*row)));
                let role = built_in_role(column).map_or("?", |it| it.display_name);
                assert_eq!(decision.is_allowed(), *is_allowed, "{role} -> {label}: {action}: {decision:?}");
            }
        }
    }
}

#[test]
fn multi_role_targets_need_every_role_in_reach() {
    let mut target = facts(Row::Role(PASSWORD_ADMINISTRATOR));
    let helpdesk = actor_with(HELPDESK_ADMINISTRATOR, Scope::Tenant);
    assert!(authorize(&helpdesk, actions::USERS_PASSWORD_UPDATE, Target::User(&target)).is_allowed());
    target.role_ids.push(SECURITY_READER.to_owned());
    assert_eq!(
        authorize(&helpdesk, actions::USERS_PASSWORD_UPDATE, Target::User(&target)),
        Decision::Deny { rule: rules::PASSWORD_RESET_MATRIX }
    );
}

#[test]
fn roles_without_the_action_are_refused_whatever_the_target() {
    let target = facts(Row::NoRole);
    for role in [
        GLOBAL_READER,
        SECURITY_READER,
        REPORTS_READER,
        AUTHENTICATION_POLICY_ADMINISTRATOR,
        PRIVILEGED_ROLE_ADMINISTRATOR,
    ] {
        let decision =
            authorize(&actor_with(role, Scope::Tenant), actions::USERS_PASSWORD_UPDATE, Target::User(&target));
        assert_eq!(decision, Decision::Deny { rule: rules::NO_ROLE_GRANTS_ACTION }, "{role}");
    }
    // Per-user MFA is its own permission: authentication administrators do not hold it.
    for (role, expected) in [
        (AUTHENTICATION_POLICY_ADMINISTRATOR, true),
        (GLOBAL_ADMINISTRATOR, true),
        (AUTHENTICATION_ADMINISTRATOR, false),
        (PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, false),
    ] {
        let decision = authorize(
            &actor_with(role, Scope::Tenant),
            actions::USERS_STRONG_AUTHENTICATION_UPDATE,
            Target::User(&target),
        );
        assert_eq!(decision.is_allowed(), expected, "{role}");
    }
    // Global Reader reads authentication methods without personal data only.
    let reader = actor_with(GLOBAL_READER, Scope::Tenant);
    assert!(authorize(&reader, actions::USERS_AUTH_METHODS_RESTRICTED_READ, Target::User(&target)).is_allowed());
    assert!(!authorize(&reader, actions::USERS_AUTH_METHODS_READ, Target::User(&target)).is_allowed());
}

#[test]
fn administrative_unit_scope_reaches_only_non_admin_members_of_the_unit() {
    let unit = id(50);
    let scoped = actor_with(AUTHENTICATION_ADMINISTRATOR, Scope::AdministrativeUnit(unit.clone()));
    let member = UserFacts { units: vec![UnitMembership { id: unit, is_restricted: false }], ..facts(Row::NoRole) };
    let outsider = facts(Row::NoRole);
    let admin_member = UserFacts { units: member.units.clone(), ..facts(Row::Role(PASSWORD_ADMINISTRATOR)) };
    let action = actions::USERS_AUTH_METHODS_DELETE;
    assert!(authorize(&scoped, action, Target::User(&member)).is_allowed());
    assert_eq!(
        authorize(&scoped, action, Target::User(&outsider)),
        Decision::Deny { rule: rules::ADMINISTRATIVE_UNIT_SCOPE }
    );
    assert_eq!(
        authorize(&scoped, action, Target::User(&admin_member)),
        Decision::Deny { rule: rules::ADMINISTRATIVE_UNIT_ADMIN_TARGET },
        "tenant-wide an Authentication Administrator reaches a Password Administrator; AU-scoped it does not"
    );
    assert!(
        authorize(&actor_with(AUTHENTICATION_ADMINISTRATOR, Scope::Tenant), action, Target::User(&admin_member))
            .is_allowed()
    );
    assert_eq!(
        authorize(&scoped, actions::USERS_CREATE, Target::Tenant),
        Decision::Deny { rule: rules::NO_ROLE_GRANTS_ACTION }
    );
}

#[test]
fn restricted_management_units_refuse_even_tenant_wide_global_administrators() {
    let unit = id(60);
    let member =
        UserFacts { units: vec![UnitMembership { id: unit.clone(), is_restricted: true }], ..facts(Row::NoRole) };
    let global = actor_with(GLOBAL_ADMINISTRATOR, Scope::Tenant);
    for action in [actions::USERS_PASSWORD_UPDATE, actions::USERS_BASIC_UPDATE, actions::USERS_DELETE] {
        let decision = authorize(&global, action, Target::User(&member));
        assert_eq!(decision, Decision::Deny { rule: rules::RESTRICTED_MANAGEMENT_UNIT }, "{action}");
    }
    assert_eq!(
        denial_message(rules::RESTRICTED_MANAGEMENT_UNIT, actions::USERS_DELETE),
        "This user is a member of a restricted management administrative unit. Management rights are limited to administrators scoped on that administrative unit."
    );
    assert!(authorize(&global, actions::USERS_READ, Target::User(&member)).is_allowed(), "reads are not restricted");
    let scoped = actor_with(HELPDESK_ADMINISTRATOR, Scope::AdministrativeUnit(unit));
    assert!(authorize(&scoped, actions::USERS_PASSWORD_UPDATE, Target::User(&member)).is_allowed());
    let elsewhere = actor_with(HELPDESK_ADMINISTRATOR, Scope::AdministrativeUnit(id(61)));
    assert_eq!(
        authorize(&elsewhere, actions::USERS_PASSWORD_UPDATE, Target::User(&member)),
        Decision::Deny { rule: rules::RESTRICTED_MANAGEMENT_UNIT }
    );
}

#[test]
fn custom_roles_act_only_on_non_admins_outside_role_assignable_groups() {
    let custom = Actor {
        id: id(1),
        roles: vec![ActiveRole {
            role_definition_id: "6b3f8f6e-0000-4000-8000-00000000c0de".into(),
            scope: Scope::Tenant,
            custom_actions: Some(vec![
                actions::USERS_STRONG_AUTHENTICATION_UPDATE.into(),
                actions::USERS_AUTH_METHODS_DELETE.into(),
            ]),
        }],
        is_guest: false,
    };
    for action in [actions::USERS_STRONG_AUTHENTICATION_UPDATE, actions::USERS_AUTH_METHODS_DELETE] {
        assert!(authorize(&custom, action, Target::User(&facts(Row::NoRole))).is_allowed(), "{action}");
        for row in [Row::Role(DIRECTORY_READERS), Row::RoleAssignableGroupMember, Row::Role(GLOBAL_ADMINISTRATOR)] {
            assert_eq!(
                authorize(&custom, action, Target::User(&facts(row))),
                Decision::Deny { rule: rules::CUSTOM_ROLE_TARGET },
                "{row:?}"
            );
        }
    }
    assert_eq!(
        authorize(&custom, actions::USERS_PASSWORD_UPDATE, Target::User(&facts(Row::NoRole))),
        Decision::Deny { rule: rules::NO_ROLE_GRANTS_ACTION }
    );
    let rag = GroupFacts { id: Some(id(70)), is_assignable_to_role: true, units: Vec::new() };
    let custom_groups = Actor {
        roles: vec![ActiveRole {
            custom_actions: Some(vec![actions::GROUPS_MEMBERS_UPDATE.into()]),
            ..custom.roles[0].clone()
        }],
        ..custom
    };
    assert_eq!(
        authorize(&custom_groups, actions::GROUPS_MEMBERS_UPDATE, Target::Group(&rag)),
        Decision::Deny { rule: rules::CUSTOM_ROLE_TARGET }
    );
}

#[test]
fn nobody_resets_their_own_password_or_removes_the_last_global_administrator() {
    let global = actor_with(GLOBAL_ADMINISTRATOR, Scope::Tenant);
    let me =
        UserFacts { id: Some(global.id.clone()), role_ids: vec![GLOBAL_ADMINISTRATOR.into()], ..UserFacts::default() };
    for action in actions::NOT_ON_ONESELF {
        assert_eq!(authorize(&global, action, Target::User(&me)), Decision::Deny { rule: rules::NOT_ON_ONESELF });
    }
    let last = UserFacts { id: Some(id(9)), is_last_active_global_administrator: true, ..me };
    for action in [actions::USERS_DISABLE, actions::USERS_DELETE] {
        assert_eq!(
            authorize(&global, action, Target::User(&last)),
            Decision::Deny { rule: rules::LAST_GLOBAL_ADMINISTRATOR }
        );
    }
    let (me, other, third) = (global.id, id(9), id(10));
    assert_eq!(
        check_global_administrators(&me, &[me.clone(), other.clone()], std::slice::from_ref(&other)),
        Err(rules::NOT_ON_ONESELF)
    );
    assert_eq!(
        check_global_administrators(&me, std::slice::from_ref(&other), &[]),
        Err(rules::LAST_GLOBAL_ADMINISTRATOR)
    );
    assert_eq!(
        check_global_administrators(&me, &[me.clone(), other.clone(), third.clone()], &[me.clone(), third]),
        Ok(())
    );
    assert_eq!(
        check_global_administrators(&me, &[me.clone(), other.clone()], &[me.clone(), other]),
        Ok(()),
        "unchanged holders"
    );
}

#[test]
fn patterns_cover_actions_by_entity() {
    let cases = [
        ("microsoft.directory/users/allProperties/allTasks", actions::USERS_DELETE, true),
        ("microsoft.directory/users/allProperties/allTasks", actions::GROUPS_DELETE, false),
        ("microsoft.directory/users/allProperties/allTasks", actions::USERS_AUTH_METHODS_DELETE, false),
        ("microsoft.directory/users/allProperties/read", actions::USERS_READ, true),
        ("microsoft.directory/users/allProperties/read", actions::USERS_AUTH_METHODS_READ, false),
        ("microsoft.directory/users/allProperties/read", actions::USERS_CREATE, false),
        ("microsoft.directory/groups/allProperties/allTasks", actions::ROLE_ASSIGNABLE_GROUPS_CREATE, false),
        (actions::USERS_READ, actions::USERS_READ, true),
        ("microsoft.directory/users", actions::USERS_READ, false),
    ];
    for (pattern, action, expected) in cases {
        assert_eq!(grants(pattern, action), expected, "{pattern} vs {action}");
    }
}

#[test]
fn plain_users_may_only_read() {
    let user = Actor { id: id(1), roles: Vec::new(), is_guest: false };
    let target = facts(Row::NoRole);
    for action in [actions::USERS_CREATE, actions::USERS_DELETE, actions::GROUPS_MEMBERS_UPDATE] {
        assert_eq!(
            authorize(&user, action, Target::User(&target)),
            Decision::Deny { rule: rules::NO_ROLE_GRANTS_ACTION }
        );
    }
    assert_eq!(
        authorize(&user, actions::USERS_READ, Target::Tenant),
        Decision::Allow { rule: rules::DEFAULT_USER_PERMISSIONS }
    );
}

fn any_role() -> impl Strategy<Value = &'static str> {
    prop::sample::select(BUILT_IN_ROLES.iter().map(|it| it.id).collect::<Vec<_>>())
}

fn any_action() -> impl Strategy<Value = &'static str> {
    prop::sample::select(RESOURCE_ACTIONS.iter().map(|it| it.name).collect::<Vec<_>>())
}

fn any_scope() -> impl Strategy<Value = Scope> {
    prop_oneof![Just(Scope::Tenant), (0_u8..3).prop_map(|n| Scope::AdministrativeUnit(id(100 + n)))]
}

fn any_assignment() -> impl Strategy<Value = ActiveRole> {
    prop_oneof![
        (any_role(), any_scope()).prop_map(|(role, scope)| ActiveRole::built_in(role, scope)),
        (prop::collection::vec(any_action(), 0..4), any_scope()).prop_map(|(actions, scope)| ActiveRole {
            role_definition_id: "6b3f8f6e-0000-4000-8000-00000000c0de".into(),
            scope,
            custom_actions: Some(actions.into_iter().map(str::to_owned).collect()),
        }),
    ]
}

fn any_user() -> impl Strategy<Value = UserFacts> {
    (
        prop::collection::vec(any_role(), 0..3),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec((0_u8..3, any::<bool>()), 0..3),
        any::<bool>(),
    )
        .prop_map(|(roles, scoped_to_restricted, in_rag, units, is_self)| UserFacts {
            id: Some(if is_self { id(1) } else { id(2) }),
            role_ids: roles.into_iter().map(str::to_owned).collect(),
            has_role_scoped_to_restricted_unit: scoped_to_restricted,
            is_role_assignable_group_member_or_owner: in_rag,
            units: units
                .into_iter()
                .map(|(n, is_restricted)| UnitMembership { id: id(100 + n), is_restricted })
                .collect(),
            is_last_active_global_administrator: false,
        })
}

proptest! {
    /// No actor is ever allowed an action that none of its in-scope roles grants, and no target
    /// outside a rule's reach is ever allowed.
    #[test]
    fn allowed_only_through_a_granting_in_scope_assignment(
        assignments in prop::collection::vec(any_assignment(), 0..4),
        action in any_action(),
        user in any_user(),
    ) {
        let actor = Actor { id: id(1), roles: assignments, is_guest: false };
        let decision = authorize(&actor, action, Target::User(&user));
        if decision == (Decision::Allow { rule: rules::ROLE_GRANTS_ACTION }) {
            let in_scope = |it: &&ActiveRole| match &it.scope {
                Scope::Tenant => true,
                Scope::AdministrativeUnit(unit) => user.units.iter().any(|member_of| &member_of.id == unit),
            };
            let granting: Vec<&ActiveRole> = actor.roles.iter().filter(|it| it.grants(action)).filter(in_scope).collect();
            prop_assert!(!granting.is_empty(), "allowed without an in-scope granting role");
            let is_write = !is_read(action);
            if is_write && user.units.iter().any(|it| it.is_restricted) {
                prop_assert!(granting.iter().any(|it| matches!(&it.scope, Scope::AdministrativeUnit(unit) if user.units.iter().any(|u| u.is_restricted && &u.id == unit))));
            }
            if is_write && (user.is_admin() || user.is_role_assignable_group_member_or_owner) {
                prop_assert!(granting.iter().any(|it| it.custom_actions.is_none()), "a custom role reached an admin");
            }
            if actions::PASSWORD_RESET_CLASS.contains(&action) && (user.is_role_assignable_group_member_or_owner || user.has_role_scoped_to_restricted_unit) {
                // Read-only roles (Global Reader) have no column in the table: their restricted
                // read reaches everyone, by design.
                let has_column = |it: &&&ActiveRole| {
                    matrix::PASSWORD_RESET.iter().any(|row| row.actor_role.eq_ignore_ascii_case(&it.role_definition_id))
                };
                let reaches_or_reads = granting.iter().any(|it| {
                    matches!(matrix::reach(matrix::PASSWORD_RESET, &it.role_definition_id), matrix::Reach::Everyone)
                        || (!is_write && it.custom_actions.is_none() && !has_column(&it))
                });
                prop_assert!(reaches_or_reads, "a role without Everyone reach acted on a protected user");
            }
            if user.id.as_ref() == Some(&actor.id) {
                prop_assert!(!actions::NOT_ON_ONESELF.contains(&action));
            }
        } else if decision == (Decision::Allow { rule: rules::DEFAULT_USER_PERMISSIONS }) {
            prop_assert!(DEFAULT_USER_PERMISSIONS.contains(&action));
        }
    }
}

proptest! {
    /// An actor that `may_allow_any` rules out is denied the action on every target, whoever
    /// the target is: refusing before looking the target up tells nothing about it.
    #[test]
    fn may_allow_any_false_means_denied_everywhere(
        assignments in prop::collection::vec(any_assignment(), 0..3),
        is_guest in any::<bool>(),
        action in any_action(),
        user in any_user(),
        group_units in prop::collection::vec((0_u8..3, any::<bool>()), 0..3),
        is_assignable_to_role in any::<bool>(),
        is_privileged in any::<bool>(),
    ) {
        let actor = Actor { id: id(1), roles: assignments, is_guest };
        let group = GroupFacts {
            is_assignable_to_role,
            units: group_units.into_iter().map(|(n, is_restricted)| UnitMembership { id: id(100 + n), is_restricted }).collect(),
            ..GroupFacts::default()
        };
        let app = ApplicationFacts { is_privileged };
        let targets = [Target::Tenant, Target::User(&user), Target::Group(&group), Target::Application(&app)];
        let allowed = targets.iter().any(|target| {
            authorize(&actor, action, *target).is_allowed() || authorize_app(&actor, action, *target).is_allowed()
        });
        if allowed {
            prop_assert!(may_allow_any(&actor, &[action]), "allowed somewhere, yet ruled out");
        }
    }
}

#[test]
fn may_allow_any_rules_out_only_callers_no_role_could_help() {
    let restore = [actions::USERS_RESTORE, actions::GROUPS_RESTORE, actions::APPLICATIONS_DELETE];
    let member = Actor { id: id(1), roles: Vec::new(), is_guest: false };
    let guest = Actor { is_guest: true, ..member.clone() };
    assert!(!may_allow_any(&member, &restore));
    assert!(!may_allow_any(&guest, &restore));
    // Reads a member or a guest makes without a role are not ruled out.
    assert!(may_allow_any(&member, &[actions::GROUPS_READ]));
    assert!(!may_allow_any(&guest, &[actions::GROUPS_READ]));
    assert!(may_allow_any(&guest, &[actions::USERS_READ]));
    // A role scoped to an administrative unit may still restore the unit's users.
    let scoped = actor_with(USER_ADMINISTRATOR, Scope::AdministrativeUnit(id(100)));
    assert!(may_allow_any(&scoped, &restore));
    assert!(may_allow_any(&actor_with(GROUPS_ADMINISTRATOR, Scope::Tenant), &restore));
    assert!(!may_allow_any(&actor_with(HELPDESK_ADMINISTRATOR, Scope::Tenant), &restore));
    // A custom role with the action counts; one without it does not.
    let custom = |actions: &[&str]| Actor {
        roles: vec![ActiveRole {
            role_definition_id: "6b3f8f6e-0000-4000-8000-00000000c0de".into(),
            scope: Scope::Tenant,
            custom_actions: Some(actions.iter().map(|it| (*it).to_owned()).collect()),
        }],
        ..member.clone()
    };
    assert!(may_allow_any(&custom(&[actions::APPLICATIONS_DELETE]), &restore));
    assert!(!may_allow_any(&custom(&[actions::APPLICATIONS_READ]), &restore));
}

#[test]
fn sensitive_contact_properties_follow_the_sensitive_action_table() {
    let action = actions::USERS_CONTACT_INFO_UPDATE;
    let aa = actor_with(AUTHENTICATION_ADMINISTRATOR, Scope::Tenant);
    assert!(authorize(&aa, action, Target::User(&facts(Row::NoRole))).is_allowed());
    for row in [Row::Role(GLOBAL_ADMINISTRATOR), Row::RoleAssignableGroupMember, Row::Role(HELPDESK_ADMINISTRATOR)] {
        assert_eq!(
            authorize(&aa, action, Target::User(&facts(row))),
            Decision::Deny { rule: rules::SENSITIVE_ACTION_MATRIX },
            "{row:?}"
        );
    }
    let helpdesk = actor_with(HELPDESK_ADMINISTRATOR, Scope::Tenant);
    assert_eq!(
        authorize(&helpdesk, action, Target::User(&facts(Row::NoRole))),
        Decision::Deny { rule: rules::NO_ROLE_GRANTS_ACTION }
    );
}

#[test]
fn reading_authentication_methods() {
    let reader = actor_with(GLOBAL_READER, Scope::Tenant);
    let global = facts(Row::Role(GLOBAL_ADMINISTRATOR));
    assert!(
        authorize(&reader, actions::USERS_AUTH_METHODS_RESTRICTED_READ, Target::User(&global)).is_allowed(),
        "Global Reader reads everyone's, restricted"
    );
    let paa = actor_with(PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, Scope::Tenant);
    assert!(
        authorize(&paa, actions::USERS_AUTH_METHODS_RESTRICTED_READ, Target::User(&global)).is_allowed(),
        "full read includes restricted read"
    );
    let unit = id(80);
    let scoped = actor_with(AUTHENTICATION_ADMINISTRATOR, Scope::AdministrativeUnit(unit.clone()));
    let admin_member = UserFacts {
        units: vec![UnitMembership { id: unit, is_restricted: false }],
        ..facts(Row::Role(PASSWORD_ADMINISTRATOR))
    };
    assert_eq!(
        authorize(&scoped, actions::USERS_AUTH_METHODS_RESTRICTED_READ, Target::User(&admin_member)),
        Decision::Deny { rule: rules::ADMINISTRATIVE_UNIT_ADMIN_TARGET },
        "unit-scoped roles read only non-admin members' methods"
    );
}

#[test]
fn applications_act_only_through_their_roles() {
    let app = ObjectId::from_bytes([7; 16]);
    let no_roles = Actor { id: app.clone(), roles: Vec::new(), is_guest: false };
    assert!(matches!(authorize_app(&no_roles, actions::USERS_READ, Target::Tenant), Decision::Deny { .. }));
    assert!(matches!(authorize(&no_roles, actions::USERS_READ, Target::Tenant), Decision::Allow { .. }));
    let admin = Actor {
        id: app,
        roles: vec![ActiveRole {
            role_definition_id: roles::USER_ADMINISTRATOR.into(),
            scope: Scope::Tenant,
            custom_actions: None,
        }],
        is_guest: false,
    };
    assert!(matches!(authorize_app(&admin, actions::USERS_READ, Target::Tenant), Decision::Allow { .. }));
    assert!(matches!(authorize_app(&admin, actions::USERS_CREATE, Target::Tenant), Decision::Allow { .. }));
    assert!(matches!(authorize_app(&admin, actions::AUDIT_LOGS_READ, Target::Tenant), Decision::Deny { .. }));
}

#[test]
fn applications_whose_principal_holds_a_role_are_changed_only_by_the_top_roles() {
    let custom = Actor {
        id: id(1),
        roles: vec![ActiveRole {
            role_definition_id: "6b3f8f6e-0000-4000-8000-00000000a990".into(),
            scope: Scope::Tenant,
            custom_actions: Some(vec![
                actions::APPLICATIONS_CREDENTIALS_UPDATE.into(),
                actions::APPLICATIONS_UPDATE.into(),
                actions::APPLICATIONS_DELETE.into(),
                actions::APPLICATIONS_READ.into(),
            ]),
        }],
        is_guest: false,
    };
    let privileged = ApplicationFacts { is_privileged: true };
    let plain = ApplicationFacts { is_privileged: false };
    for action in [actions::APPLICATIONS_CREDENTIALS_UPDATE, actions::APPLICATIONS_UPDATE, actions::APPLICATIONS_DELETE]
    {
        assert!(authorize(&custom, action, Target::Application(&plain)).is_allowed(), "{action}");
        assert_eq!(
            authorize(&custom, action, Target::Application(&privileged)),
            Decision::Deny { rule: rules::PRIVILEGED_APPLICATION },
            "{action}"
        );
        // Global Administrator holds the action; Privileged Role Administrator, the other role
        // the rule lets through, holds no application-management action in Entra's catalogue.
        let top = actor_with(GLOBAL_ADMINISTRATOR, Scope::Tenant);
        assert!(authorize(&top, action, Target::Application(&privileged)).is_allowed(), "{action}");
    }
    // Reading is not changing.
    assert!(authorize(&custom, actions::APPLICATIONS_READ, Target::Application(&privileged)).is_allowed());
}

#[test]
fn a_refusal_names_the_roles_that_would_allow_it() {
    let message = denial_message(rules::NO_ROLE_GRANTS_ACTION, actions::USERS_AUTH_METHODS_DELETE);
    assert!(message.contains("built-in roles that do: Authentication Administrator"), "{message}");
    assert!(message.contains("Privileged Authentication Administrator"), "{message}");
    assert!(!message.contains("Helpdesk Administrator"), "Helpdesk does not manage methods: {message}");
    assert!(!message.contains("Partner Tier"), "roles marked 'Do not use' are never suggested: {message}");
    // Narrowest first: reading users is suggested from Directory Readers, not Global Administrator.
    let reads = denial_message(rules::NO_ROLE_GRANTS_ACTION, actions::USERS_READ);
    let position = |name: &str| reads.find(name).unwrap_or_else(|| panic!("{name} missing: {reads}"));
    assert!(position("Directory Readers") < position("Global Administrator"), "{reads}");
    assert_eq!(
        denial_message(rules::NO_ROLE_GRANTS_ACTION, "nobody/grants/this"),
        format!(
            "{INSUFFICIENT_PRIVILEGES} None of the caller's roles grants 'nobody/grants/this'. (rule: {})",
            rules::NO_ROLE_GRANTS_ACTION
        )
    );
}
