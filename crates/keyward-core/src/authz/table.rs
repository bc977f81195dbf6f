//! The built-in roles' grants, and the default user permissions, as bit sets over the action
//! catalogue: computed once from the patterns by [`grants`](super::grants), so a decision tests a
//! bit instead of matching every pattern of every role the actor holds.
//!
//! The table only answers what the patterns would: an action the catalogue does not spell exactly
//! as given, or a role id not spelled as the catalogue spells it, is matched against the patterns
//! as before. `table_agrees_with_the_patterns` checks every role against every action, and
//! `decisions_are_the_patterns_decisions_for_any_spelling` checks decisions against the patterns
//! for actions in other letter cases, actions outside the catalogue and role ids in upper case.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use super::catalog::{BUILT_IN_ROLES, RESOURCE_ACTIONS};
use super::{DEFAULT_USER_PERMISSIONS, grants};

const WORDS: usize = RESOURCE_ACTIONS.len().div_ceil(64);

/// A set of the catalogue's actions, by their index in [`RESOURCE_ACTIONS`].
#[derive(Debug, Clone, Copy, Default)]
struct ActionSet([u64; WORDS]);

impl ActionSet {
    fn of(patterns: &[&str]) -> ActionSet {
        let mut set = ActionSet::default();
        for (index, action) in RESOURCE_ACTIONS.iter().enumerate() {
            if patterns.iter().any(|pattern| grants(pattern, action.name)) {
                set.0[index / 64] |= 1 << (index % 64);
            }
        }
        set
    }

    fn contains(&self, index: ActionIndex) -> bool {
        self.0[index.0 / 64] & (1 << (index.0 % 64)) != 0
    }
}

/// An action's position in the catalogue, found once per decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActionIndex(usize);

/// A word-at-a-time multiplicative hash (FxHash's). The keys are the catalogue's own action names
/// and role ids, fixed at start; a lookup with any other string costs its hash and a short probe
/// (strings are compared only where the hash's tag matches). SipHash over an action name (up to
/// 71 bytes) cost as much as the rest of a decision.
#[derive(Default)]
struct WordHash(u64);

impl WordHash {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for WordHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }
}

type Map<V> = HashMap<&'static str, V, BuildHasherDefault<WordHash>>;

struct Table {
    actions: Map<ActionIndex>,
    roles: Map<ActionSet>,
    default_user: ActionSet,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| Table {
        actions: RESOURCE_ACTIONS.iter().enumerate().map(|(index, it)| (it.name, ActionIndex(index))).collect(),
        roles: BUILT_IN_ROLES.iter().map(|role| (role.id, ActionSet::of(role.allowed_resource_actions))).collect(),
        default_user: ActionSet::of(DEFAULT_USER_PERMISSIONS),
    })
}

/// The catalogue's index of `action`, if the catalogue spells it exactly so.
pub(crate) fn action_index(action: &str) -> Option<ActionIndex> {
    table().actions.get(action).copied()
}

/// Whether the built-in role `role_id` grants the action at `index`; `None` when the table cannot
/// say (a role id not spelled as the catalogue spells it), for the caller to match the patterns.
pub(crate) fn built_in_grants(role_id: &str, index: ActionIndex) -> Option<bool> {
    table().roles.get(role_id).map(|set| set.contains(index))
}

/// Whether every member's default permissions grant the action at `index`.
pub(crate) fn default_user_grants(index: ActionIndex) -> bool {
    table().default_user.contains(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{
        ActiveRole, Actor, DEFAULT_USER_PERMISSIONS, Scope, Target, authorize, authorize_app, built_in_role,
    };
    use crate::ids::ObjectId;

    /// What the decision asked before the table: the role's patterns, the role found by its id in
    /// any case.
    fn by_patterns(role_id: &str, action: &str) -> bool {
        built_in_role(role_id).is_some_and(|role| role.allowed_resource_actions.iter().any(|it| grants(it, action)))
    }

    /// Actions the table holds, the same in other letter cases (not in the table), and actions
    /// outside the catalogue that `allProperties` patterns cover (not in the table either).
    fn actions() -> Vec<String> {
        let mut actions: Vec<String> = Vec::new();
        for action in RESOURCE_ACTIONS {
            actions.push(action.name.to_owned());
            actions.push(action.name.to_uppercase());
            actions.push(action.name.replacen("microsoft.directory", "Microsoft.Directory", 1));
        }
        let patterns = BUILT_IN_ROLES.iter().flat_map(|it| it.allowed_resource_actions).chain(DEFAULT_USER_PERMISSIONS);
        for pattern in patterns {
            for (suffix, verb) in [("/allProperties/allTasks", "update"), ("/allProperties/read", "read")] {
                if let Some(entity) = pattern.strip_suffix(suffix) {
                    actions.push(format!("{entity}/notInTheCatalogue/{verb}"));
                    actions.push(format!("{entity}/notInTheCatalogue/read"));
                }
            }
        }
        actions.extend(["".to_owned(), "microsoft.directory/users/password/update/".to_owned()]);
        actions.sort();
        actions.dedup();
        actions
    }

    #[test]
    fn table_agrees_with_the_patterns() {
        for action in RESOURCE_ACTIONS {
            let index = action_index(action.name).expect("every catalogue action is indexed");
            for role in BUILT_IN_ROLES {
                assert_eq!(
                    built_in_grants(role.id, index),
                    Some(by_patterns(role.id, action.name)),
                    "{} / {}",
                    role.display_name,
                    action.name
                );
            }
            let by_patterns = DEFAULT_USER_PERMISSIONS.iter().any(|it| grants(it, action.name));
            assert_eq!(default_user_grants(index), by_patterns, "{}", action.name);
        }
    }

    #[test]
    fn decisions_are_the_patterns_decisions_for_any_spelling() {
        let actions = actions();
        // Some actions must come through the fallback both granted and refused, or this proves little.
        let outside = |it: &String| action_index(it).is_none();
        assert!(
            actions
                .iter()
                .filter(|it| outside(it))
                .any(|it| by_patterns(crate::authz::roles::GLOBAL_ADMINISTRATOR, it))
        );
        assert!(
            actions.iter().filter(|it| outside(it)).any(|it| DEFAULT_USER_PERMISSIONS.iter().any(|p| grants(p, it)))
        );
        let member = |roles| Actor {
            id: ObjectId::parse("00000000-0000-4000-8000-000000000001").expect("id"),
            roles,
            is_guest: false,
        };
        for action in &actions {
            // A member without a role: the default user permissions decide.
            let default = DEFAULT_USER_PERMISSIONS.iter().any(|it| grants(it, action));
            assert_eq!(authorize(&member(Vec::new()), action, Target::Tenant).is_allowed(), default, "{action}");
            assert!(!authorize_app(&member(Vec::new()), action, Target::Tenant).is_allowed(), "{action}");
            for role in BUILT_IN_ROLES {
                for id in [role.id.to_owned(), role.id.to_uppercase()] {
                    let assignment = ActiveRole::built_in(&id, Scope::Tenant);
                    let expected = by_patterns(&id, action);
                    assert_eq!(assignment.grants(action), expected, "{} ({id}) / {action}", role.display_name);
                    // At the tenant, nothing else refuses: the role's grant or the defaults decide.
                    let actor = member(vec![assignment]);
                    assert_eq!(
                        authorize(&actor, action, Target::Tenant).is_allowed(),
                        expected || default,
                        "{} ({id}) / {action}",
                        role.display_name
                    );
                    assert_eq!(authorize_app(&actor, action, Target::Tenant).is_allowed(), expected || default);
                }
            }
        }
    }

    #[test]
    fn unknown_spellings_are_not_in_the_table() {
        assert_eq!(action_index("microsoft.directory/users/password/Update"), None);
        assert_eq!(action_index("microsoft.directory/users/password/update/"), None);
        assert_eq!(action_index(""), None);
        let index = action_index("microsoft.directory/users/password/update").expect("indexed");
        assert_eq!(built_in_grants("not-a-role", index), None);
        assert_eq!(built_in_grants(&crate::authz::roles::HELPDESK_ADMINISTRATOR.to_uppercase(), index), None);
    }
}
