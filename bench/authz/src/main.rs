//! Keyward's decision function against cedar-policy, on the same model, in one run.
//!
//! Model: every built-in role of Keyward's catalog, 50 administrative units, 50,000 users holding
//! two role assignments each (100,000 assignments; administrative-unit-scopable roles are scoped
//! to a unit four times in five), and target users who hold no role and belong to one unit, so
//! that Entra's target matrices allow every reachable target and both engines must answer the same
//! question: does an assignment of the principal grant the action at a scope that contains the
//! target? Requests use write actions only (reads are allowed to every member by default).
//!
//! Run: `cargo run --release --manifest-path bench/authz/Cargo.toml`

use std::collections::HashSet;
use std::hint::black_box;
use std::str::FromStr;
use std::time::Instant;

use cedar_policy::{Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityUid, PolicySet, Request};
use keyward_core::authz::{self, ActiveRole, Actor, BUILT_IN_ROLES, RESOURCE_ACTIONS, Scope, Target, UnitMembership, UserFacts};
use keyward_core::ids::ObjectId;

const N_USERS: usize = 50_000;
const ASSIGNMENTS_PER_USER: usize = 2;
const N_UNITS: usize = 50;
const N_TARGETS: usize = 10_000;
const N_REQUESTS: usize = 20_000;
const N_CEDAR_REQUESTS: usize = 2_000;

/// A small deterministic generator, so every run measures the same directory.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next()).unwrap_or(0) % n
    }
}

fn guid(kind: u8, n: usize) -> ObjectId {
    ObjectId::parse(&format!("{kind:08x}-0000-4000-8000-{n:012x}")).expect("guid")
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    let mut rng = Lcg(7);
    let units: Vec<ObjectId> = (0..N_UNITS).map(|n| guid(2, n)).collect();
    let write_actions: Vec<&str> =
        RESOURCE_ACTIONS.iter().map(|it| it.name).filter(|it| !authz::DEFAULT_USER_PERMISSIONS.iter().any(|p| authz::grants(p, it))).collect();

    // The directory: assignments indexed by principal, as Keyward's store serves them.
    let actors: Vec<Actor> = (0..N_USERS)
        .map(|n| {
            let roles = (0..ASSIGNMENTS_PER_USER)
                .map(|_| {
                    let role = &BUILT_IN_ROLES[rng.below(BUILT_IN_ROLES.len())];
                    let scope = if role.is_au_scopable && rng.below(5) != 0 {
                        Scope::AdministrativeUnit(units[rng.below(N_UNITS)].clone())
                    } else {
                        Scope::Tenant
                    };
                    ActiveRole::built_in(role.id, scope)
                })
                .collect();
            Actor { id: guid(1, n), roles, is_guest: false }
        })
        .collect();
    let targets: Vec<UserFacts> = (0..N_TARGETS)
        .map(|n| UserFacts {
            id: Some(guid(3, n)),
            units: vec![UnitMembership { id: units[rng.below(N_UNITS)].clone(), is_restricted: false }],
            ..UserFacts::default()
        })
        .collect();
    let requests: Vec<(usize, &str, usize)> =
        (0..N_REQUESTS).map(|_| (rng.below(N_USERS), write_actions[rng.below(write_actions.len())], rng.below(N_TARGETS))).collect();

    // Keyward.
    for (principal, action, target) in requests.iter().take(1_000) {
        black_box(authz::authorize(&actors[*principal], action, Target::User(&targets[*target])));
    }
    let mut keyward_ns = Vec::with_capacity(N_REQUESTS);
    let mut keyward_allowed = Vec::with_capacity(N_REQUESTS);
    for (principal, action, target) in &requests {
        let started = Instant::now();
        let decision = authz::authorize(black_box(&actors[*principal]), black_box(action), Target::User(black_box(&targets[*target])));
        keyward_ns.push(started.elapsed().as_nanos());
        keyward_allowed.push(decision.is_allowed());
    }

    // Cedar: roles and (role, unit) pairs as principal groups, units as resource groups.
    let uid = |text: String| EntityUid::from_str(&text).expect("uid");
    let quoted = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
    let mut policies = String::new();
    for role in BUILT_IN_ROLES {
        let actions: Vec<String> = RESOURCE_ACTIONS
            .iter()
            .filter(|action| role.allowed_resource_actions.iter().any(|pattern| authz::grants(pattern, action.name)))
            .map(|action| format!("Action::\"{}\"", quoted(action.name)))
            .collect();
        if actions.is_empty() {
            continue;
        }
        let actions = actions.join(", ");
        policies.push_str(&format!("permit(principal in Role::\"{}\", action in [{actions}], resource);\n", role.id));
        if role.is_au_scopable {
            for unit in &units {
                policies.push_str(&format!(
                    "permit(principal in ScopedRole::\"{}@{unit}\", action in [{actions}], resource in Unit::\"{unit}\");\n",
                    role.id
                ));
            }
        }
    }
    let policy_set = PolicySet::from_str(&policies).expect("policies");
    let n_policies = policy_set.policies().count();
    let mut entities: Vec<Entity> = Vec::with_capacity(N_USERS + N_TARGETS);
    for actor in &actors {
        let parents: HashSet<EntityUid> = actor
            .roles
            .iter()
            .map(|it| match &it.scope {
                Scope::Tenant => uid(format!("Role::\"{}\"", it.role_definition_id)),
                Scope::AdministrativeUnit(unit) => uid(format!("ScopedRole::\"{}@{unit}\"", it.role_definition_id)),
            })
            .collect();
        entities.push(Entity::new_no_attrs(uid(format!("User::\"{}\"", actor.id)), parents));
    }
    for target in &targets {
        let parents: HashSet<EntityUid> = target.units.iter().map(|it| uid(format!("Unit::\"{}\"", it.id))).collect();
        let id = target.id.as_ref().expect("target id");
        entities.push(Entity::new_no_attrs(uid(format!("User::\"{id}\"")), parents));
    }
    let entities = Entities::from_entities(entities, None).expect("entities");
    let cedar_requests: Vec<Request> = requests
        .iter()
        .take(N_CEDAR_REQUESTS)
        .map(|(principal, action, target)| {
            Request::new(
                uid(format!("User::\"{}\"", actors[*principal].id)),
                uid(format!("Action::\"{}\"", quoted(action))),
                uid(format!("User::\"{}\"", targets[*target].id.as_ref().expect("id"))),
                Context::empty(),
                None,
            )
            .expect("request")
        })
        .collect();
    let authorizer = Authorizer::new();
    for request in cedar_requests.iter().take(100) {
        black_box(authorizer.is_authorized(request, &policy_set, &entities));
    }
    let mut cedar_ns = Vec::with_capacity(N_CEDAR_REQUESTS);
    let mut n_disagreements = 0;
    for (idx, request) in cedar_requests.iter().enumerate() {
        let started = Instant::now();
        let response = authorizer.is_authorized(black_box(request), &policy_set, &entities);
        cedar_ns.push(started.elapsed().as_nanos());
        if (response.decision() == CedarDecision::Allow) != keyward_allowed[idx] {
            n_disagreements += 1;
        }
    }

    keyward_ns.sort_unstable();
    cedar_ns.sort_unstable();
    let (k50, k99) = (percentile(&keyward_ns, 0.50), percentile(&keyward_ns, 0.99));
    let (c50, c99) = (percentile(&cedar_ns, 0.50), percentile(&cedar_ns, 0.99));
    let n_allowed = keyward_allowed.iter().filter(|it| **it).count();
    println!("directory: {N_USERS} principals, {} role assignments, {N_UNITS} administrative units, {} built-in roles", N_USERS * ASSIGNMENTS_PER_USER, BUILT_IN_ROLES.len());
    println!("requests: {N_REQUESTS} Keyward ({n_allowed} allowed), {N_CEDAR_REQUESTS} cedar-policy; {n_policies} cedar policies");
    println!("keyward      p50 {:>8.3} us   p99 {:>8.3} us", k50 as f64 / 1000.0, k99 as f64 / 1000.0);
    println!("cedar-policy p50 {:>8.3} us   p99 {:>8.3} us", c50 as f64 / 1000.0, c99 as f64 / 1000.0);
    println!("ratio (cedar p50 / keyward p50): {:.0}x", c50 as f64 / k50.max(1) as f64);
    println!("decisions that differ between the engines: {n_disagreements} of {N_CEDAR_REQUESTS}");
    if n_disagreements > 0 {
        std::process::exit(1);
    }
}
