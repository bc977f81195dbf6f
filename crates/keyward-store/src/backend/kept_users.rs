//! The callers and users a direct-read connection has read (SQLite only), kept for as long as
//! nothing has committed to the database since: each `GET /users/{id}` (and every other request,
//! for its caller) reads them again only after a change.
//!
//! SQLite's `PRAGMA data_version` answers, on one connection, a higher number after any other
//! connection, in this process or another, has committed to the database (never a lower one:
//! other reads on the same connection cannot bring an old number back); the direct-read
//! connections are `query_only`, so there are no commits of their own, which it would not count.
//! The reads that use the entries (`DirectReads::user_and_roles`, `find_user`,
//! `user_and_roles_and_user`, all through `DirectReads::run_kept`) each ask it first: on its own
//! when everything they need is kept (then nothing else is read), and otherwise again in the read
//! transaction that reads what is not. Each entry is kept with the version its read transaction
//! saw, and a version read that differs empties the connection's entries before anything is
//! read from them. An entry is used only where the version just read is the one it was read
//! under: no commit came between, so what the statements would read is what the entry holds. A
//! role change, a revocation, a disabled account or a lockout therefore counts at the next
//! request, as when every request read them.
//!
//! Time changes a caller too: a role assignment, or the eligibility it was activated from, starts
//! or ends at a set time. A caller's entry holds only from the time it was read until the next
//! such time (`CLIENT_CHANGES_AT`, as the token endpoint's kept clients do). That time costs a
//! statement, so a caller is kept from their second read under one version on.
//!
//! Any commit empties every connection's entries, so the entries help where reads outnumber
//! writes (a tenant's scripts and portals reading, an SDK's calls), not while writes are steady.
//! Only found users are kept, at most `CAPACITY` of each kind a connection (past it the kind
//! starts again empty): a caller asking for ids that do not exist fills nothing.
//!
//! A kept user is shared, not copied: the entry and every request that read it hold one
//! `Arc<User>` (copying a user, about thirty strings, cost a request two copies and their drops).

use std::collections::HashMap;
use std::sync::Arc;

use keyward_core::directory::User;
use keyward_core::fnv::Fnv;
use keyward_core::ids::ObjectId;
use time::OffsetDateTime;

use super::UserRolesValues;

/// Entries of each kind kept at most a connection.
const CAPACITY: usize = 256;

/// A caller read once under the version, or kept with their roles as read (`C`) and when that
/// holds.
enum Caller<C> {
    Seen,
    Kept {
        tenant: ObjectId,
        /// The time it was read for.
        from: OffsetDateTime,
        /// When a role window of theirs next opens or closes (`None`: never).
        until: Option<OffsetDateTime>,
        found: C,
    },
}

/// A user as read (`U`), and how they were asked for.
struct Found<U> {
    tenant: ObjectId,
    by_id: bool,
    found: U,
}

/// One connection's kept reads, all read under `version`: callers with their roles (`C`), and
/// users with whether they have multi-valued properties (`U`, those not kept).
///
/// Both maps hash with FNV (`keyward_core::fnv`): only callers and users found in the directory
/// are kept, at most `CAPACITY` of each, so a request cannot fill them with keys of its choosing.
pub(crate) struct KeptUsers<C = UserRolesValues, U = (Arc<User>, bool)> {
    version: Option<i64>,
    /// By user id (the tenant compared on use).
    callers: HashMap<ObjectId, Caller<C>, Fnv>,
    /// By key: an id, or a lower-case user principal name (the tenant and the kind compared on
    /// use).
    users: HashMap<String, Found<U>, Fnv>,
}

impl<C, U> Default for KeptUsers<C, U> {
    fn default() -> Self {
        KeptUsers { version: None, callers: HashMap::default(), users: HashMap::default() }
    }
}

impl<C: Clone, U: Clone> KeptUsers<C, U> {
    /// Starts a use of the entries: `version` is the database's data version just read (in the
    /// read transaction, if one is under way). Entries read under another version are dropped.
    pub(super) fn at(&mut self, version: i64) {
        if self.version != Some(version) {
            self.callers.clear();
            self.users.clear();
            self.version = Some(version);
        }
    }

    /// The caller kept for `id` if they still hold at `now`.
    pub(super) fn caller(&self, tenant: &ObjectId, id: &ObjectId, now: OffsetDateTime) -> Option<C> {
        let Some(Caller::Kept { tenant: of, from, until, found }) = self.callers.get(id) else { return None };
        let holds = of == tenant && *from <= now && until.is_none_or(|until| now < until);
        holds.then(|| found.clone())
    }

    /// Whether the caller `id` is worth keeping: read before under this version. Keeping one
    /// costs a statement (when their roles next change); where commits come between a caller's
    /// requests, nothing kept would be used, so a caller is kept from their second read on. The
    /// first read is noted.
    pub(super) fn worth_keeping(&mut self, id: &ObjectId) -> bool {
        if self.callers.contains_key(id) {
            return true;
        }
        make_room(&mut self.callers, id);
        self.callers.insert(id.clone(), Caller::Seen);
        false
    }

    /// Keeps `found`, read at `from`, until `until`.
    pub(super) fn keep_caller(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
        from: OffsetDateTime,
        until: Option<OffsetDateTime>,
        found: &C,
    ) {
        make_room(&mut self.callers, id);
        let caller = Caller::Kept { tenant: tenant.clone(), from, until, found: found.clone() };
        self.callers.insert(id.clone(), caller);
    }

    /// The user kept for `key`.
    pub(super) fn user(&self, tenant: &ObjectId, key: &str, by_id: bool) -> Option<U> {
        let kept = self.users.get(key).filter(|it| it.tenant == *tenant && it.by_id == by_id)?;
        Some(kept.found.clone())
    }

    /// Keeps `found` for `key`.
    pub(super) fn keep_user(&mut self, tenant: &ObjectId, key: &str, by_id: bool, found: &U) {
        make_room(&mut self.users, key);
        self.users.insert(key.to_owned(), Found { tenant: tenant.clone(), by_id, found: found.clone() });
    }
}

/// Empties `map` if it is full and `key` would be a new entry: a kind past `CAPACITY` starts
/// again empty.
fn make_room<K, Q, V>(map: &mut HashMap<K, V, Fnv>, key: &Q)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if map.len() >= CAPACITY && !map.contains_key(key) {
        map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes([n; 16])
    }

    type Kept = KeptUsers<&'static str, &'static str>;

    #[test]
    fn entries_hold_only_under_the_version_they_were_read_under() {
        let (tenant, ada) = (id(1), id(2));
        let now = OffsetDateTime::now_utc();
        let mut kept = Kept::default();
        kept.at(7);
        kept.keep_caller(&tenant, &ada, now, None, &"Ada and her roles");
        kept.keep_user(&tenant, ada.as_str(), true, &"Ada");
        kept.at(7);
        assert_eq!(kept.caller(&tenant, &ada, now), Some("Ada and her roles"));
        assert_eq!(kept.user(&tenant, ada.as_str(), true), Some("Ada"));
        assert_eq!(kept.user(&tenant, ada.as_str(), false), None, "kept by id, not by name");
        assert_eq!(kept.caller(&id(3), &ada, now), None, "another tenant's");
        assert_eq!(kept.user(&id(3), ada.as_str(), true), None, "another tenant's");
        kept.at(8);
        assert_eq!(kept.caller(&tenant, &ada, now), None, "a commit came between");
        assert_eq!(kept.user(&tenant, ada.as_str(), true), None);
        // Back to the first number: the entries are gone all the same.
        kept.at(7);
        assert_eq!(kept.caller(&tenant, &ada, now), None);
    }

    #[test]
    fn a_caller_holds_from_the_time_read_until_their_roles_next_change() {
        let (tenant, ada) = (id(1), id(2));
        let now = OffsetDateTime::now_utc();
        let until = now + time::Duration::minutes(5);
        let mut kept = Kept::default();
        kept.at(1);
        kept.keep_caller(&tenant, &ada, now, Some(until), &"Ada");
        assert!(kept.caller(&tenant, &ada, now).is_some());
        assert!(kept.caller(&tenant, &ada, until - time::Duration::milliseconds(1)).is_some());
        assert_eq!(kept.caller(&tenant, &ada, until), None, "a role window opens or closes");
        assert_eq!(kept.caller(&tenant, &ada, now - time::Duration::seconds(1)), None, "a clock set back");
    }

    #[test]
    fn a_caller_is_worth_keeping_from_their_second_read_under_a_version() {
        let ada = id(2);
        let mut kept = Kept::default();
        kept.at(1);
        assert!(!kept.worth_keeping(&ada), "a first read");
        assert!(kept.worth_keeping(&ada), "a second read with no commit between");
        kept.at(2);
        assert!(!kept.worth_keeping(&ada), "a commit came between");
    }

    #[test]
    fn each_kind_is_bounded() {
        let tenant = id(1);
        let now = OffsetDateTime::now_utc();
        let mut kept = Kept::default();
        kept.at(1);
        let ids: Vec<ObjectId> = (0..=CAPACITY).map(|n| ObjectId::from_bytes((n as u128).to_be_bytes())).collect();
        for each in &ids {
            kept.keep_caller(&tenant, each, now, None, &"caller");
            kept.keep_user(&tenant, each.as_str(), true, &"user");
        }
        assert!(kept.callers.len() <= CAPACITY && kept.users.len() <= CAPACITY);
        assert!(kept.caller(&tenant, &ids[CAPACITY], now).is_some(), "the newest is kept");
        assert!(kept.user(&tenant, ids[CAPACITY].as_str(), true).is_some(), "the newest is kept");
    }
}
