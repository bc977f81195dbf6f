//! The JSON of users the store keeps, written once per user and API version and then sent as
//! written: `GET /users/{id}` without `$select` or `$expand`, the API read most clients make.
//!
//! On SQLite each direct-read connection keeps the users it read until anything commits
//! (`keyward_store`'s `kept_users`), and every request that reads such a user gets the same
//! `Arc<User>`; a commit drops the kept entries, and the next read makes a new `Arc`. A user in an
//! `Arc` never changes, and neither does its JSON for one API version: an entity's JSON depends
//! only on the user, the version and the configured public URL (its `@odata.context`). So the JSON
//! is kept by the `Arc`'s allocation, with a weak reference that holds that allocation (its address
//! cannot be reused while the entry exists) and tells whether the user is still alive. A changed
//! user is a new `Arc`, never found here: what is sent is what writing the user would send.
//!
//! Only a user someone besides the request holds (the store's kept entries) is kept: on
//! PostgreSQL, or on a pool read, every request reads a fresh `Arc` that dies with the request,
//! which would only fill the map. The caller says how many references the request itself holds
//! (`/me` two: the caller's and the one it was handed). At most [`CAPACITY`] entries, a kilobyte
//! or two each for most users (tens of kilobytes for one with every property at its longest);
//! past it the entries whose users are gone are dropped, and if that frees nothing the map
//! starts again empty.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use axum::body::Bytes;
use keyward_core::directory::User;

use crate::context::Version;

/// Users kept at most.
const CAPACITY: usize = 512;

/// The JSON of kept users, by their `Arc`'s address and the API version.
#[derive(Debug, Default)]
pub struct RenderedUsers {
    entries: Mutex<Entries>,
}

/// By the user's `Arc` address and the version: the user, weakly, and its JSON.
type Entries = HashMap<(usize, Version), (Weak<User>, Bytes)>;

impl RenderedUsers {
    /// `user`'s JSON for `version`: as written before for this same `Arc`, or written now by
    /// `write` (and kept if someone besides the request, which holds `held_here` references to
    /// it, holds the user). `None`: `write` failed.
    pub fn get_or_write(
        &self,
        user: &Arc<User>,
        held_here: usize,
        version: Version,
        write: impl FnOnce(&User) -> Option<Vec<u8>>,
    ) -> Option<Bytes> {
        // Only the store's kept entries make a user outlive its request (see the module's doc).
        if Arc::strong_count(user) <= held_here {
            return write(user).map(Bytes::from);
        }
        let key = (Arc::as_ptr(user) as usize, version);
        // An entry's weak reference holds its user's allocation: while it exists, no other user
        // can be at that address.
        if let Some((_, json)) = self.lock().get(&key) {
            return Some(json.clone());
        }
        let json = Bytes::from(write(user)?);
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.retain(|_, (kept, _)| kept.strong_count() > 0);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, (Arc::downgrade(user), json.clone()));
        Some(json)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use keyward_core::directory::{Domain, Tenant, UserDraft, new_user};
    use keyward_core::ids::ObjectId;
    use keyward_core::secret::Secret;
    use time::OffsetDateTime;

    use super::*;

    fn user(name: &str) -> Arc<User> {
        let tenant = Tenant {
            id: ObjectId::parse("00000000-0000-0000-0000-0000000000aa").expect("guid"),
            display_name: "Contoso".into(),
            created: OffsetDateTime::UNIX_EPOCH,
            domains: vec![Domain { name: "contoso.test".into(), is_default: true, is_initial: true }],
        };
        let draft = UserDraft {
            user_principal_name: Some("adele@contoso.test".into()),
            display_name: Some(name.into()),
            mail_nickname: Some("adele".into()),
            account_enabled: Some(true),
            password: Some(Secret::new("correct horse battery")),
            ..UserDraft::default()
        };
        let id = ObjectId::parse("00000000-0000-0000-0000-000000000001").expect("guid");
        Arc::new(new_user(&tenant, id, draft, OffsetDateTime::UNIX_EPOCH).expect("valid").user)
    }

    /// Writes `user` through `rendered`, counting the writes in `writes`.
    fn json(rendered: &RenderedUsers, user: &Arc<User>, version: Version, writes: &Cell<u32>) -> String {
        let bytes = rendered.get_or_write(user, 1, version, |user| {
            writes.set(writes.get() + 1);
            Some(format!("{}:{}", version.segment(), user.display_name).into_bytes())
        });
        String::from_utf8(bytes.expect("written").to_vec()).expect("UTF-8")
    }

    #[test]
    fn a_kept_user_is_written_once_per_version() {
        let rendered = RenderedUsers::default();
        let writes = Cell::new(0);
        let kept = user("Adele Vance");
        let request = Arc::clone(&kept);
        assert_eq!(json(&rendered, &request, Version::V1, &writes), "v1.0:Adele Vance");
        assert_eq!(json(&rendered, &request, Version::V1, &writes), "v1.0:Adele Vance");
        assert_eq!(writes.get(), 1);
        assert_eq!(json(&rendered, &request, Version::Beta, &writes), "beta:Adele Vance");
        assert_eq!(writes.get(), 2, "each version written on its own");
    }

    #[test]
    fn a_changed_user_is_a_new_arc_and_written_again() {
        let rendered = RenderedUsers::default();
        let writes = Cell::new(0);
        let before = user("Adele Vance");
        let _kept_before = Arc::clone(&before);
        assert_eq!(json(&rendered, &before, Version::V1, &writes), "v1.0:Adele Vance");
        let after = user("Adele V.");
        let _kept_after = Arc::clone(&after);
        assert_eq!(json(&rendered, &after, Version::V1, &writes), "v1.0:Adele V.");
        assert_eq!(json(&rendered, &before, Version::V1, &writes), "v1.0:Adele Vance");
        assert_eq!(writes.get(), 2);
    }

    #[test]
    fn a_user_nobody_else_holds_is_not_kept() {
        let rendered = RenderedUsers::default();
        let writes = Cell::new(0);
        for _ in 0..3 {
            let fresh = user("Adele Vance");
            assert_eq!(json(&rendered, &fresh, Version::V1, &writes), "v1.0:Adele Vance");
        }
        assert_eq!(writes.get(), 3);
        assert!(rendered.lock().is_empty());
    }

    #[test]
    fn a_user_dropped_since_is_never_confused_with_a_new_one() {
        let rendered = RenderedUsers::default();
        let writes = Cell::new(0);
        for round in 0..(CAPACITY * 2) {
            let name = format!("User {round}");
            let kept = user(&name);
            let request = Arc::clone(&kept);
            assert_eq!(json(&rendered, &request, Version::V1, &writes), format!("v1.0:{name}"));
            // Both gone: the allocation may be reused for the next user once the entry is.
        }
        assert_eq!(writes.get(), u32::try_from(CAPACITY * 2).expect("small"));
        assert!(rendered.lock().len() <= CAPACITY, "bounded: {}", rendered.lock().len());
    }

    #[test]
    fn references_the_request_holds_do_not_count() {
        let rendered = RenderedUsers::default();
        let caller = user("Adele Vance");
        let handed = Arc::clone(&caller);
        // `/me`: the caller and the copy it was handed, nothing else.
        assert!(rendered.get_or_write(&handed, 2, Version::V1, |_| Some(b"{}".to_vec())).is_some());
        assert!(rendered.lock().is_empty());
        let _kept_by_the_store = Arc::clone(&caller);
        assert!(rendered.get_or_write(&handed, 2, Version::V1, |_| Some(b"{}".to_vec())).is_some());
        assert_eq!(rendered.lock().len(), 1);
    }

    #[test]
    fn a_failed_write_is_not_kept() {
        let rendered = RenderedUsers::default();
        let kept = user("Adele Vance");
        let request = Arc::clone(&kept);
        assert!(rendered.get_or_write(&request, 1, Version::V1, |_| None).is_none());
        let writes = Cell::new(0);
        assert_eq!(json(&rendered, &request, Version::V1, &writes), "v1.0:Adele Vance");
        assert_eq!(writes.get(), 1);
    }
}
