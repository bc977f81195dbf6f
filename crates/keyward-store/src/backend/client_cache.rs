//! The clients this node has read for the token endpoint (`Store::find_client`), each kept with
//! the version its tenant's clients had when it was read (`client_versions`, schema 33).
//!
//! Triggers give a tenant's clients a new version (a random number) in the same transaction as
//! any change to what a client is made of: its application, credentials, service principal, role
//! assignments and eligibilities, a service principal's group memberships, a group's
//! role-assignability. `find_client` still reads the version at every call (one point read instead
//! of four), so a removed secret, a deleted principal or a removed role stops counting at the next
//! request on every node, as when every grant read the whole client. The version is read before
//! the client is: a change that commits between the two is then kept under the older version and
//! read again at the next call, never missed. (`Store::kept_client` skips that read; its caller
//! checks the version in a write transaction before acting, see `SignInStore::client_version`.)
//!
//! Time changes a client too: a role assignment or the eligibility it was activated from starts
//! or ends at a set time. An entry holds only from the time it was read until the next such
//! time (`CLIENT_CHANGES_AT`).

use std::collections::HashMap;
use std::sync::Mutex;

use keyward_core::ids::ObjectId;
use time::OffsetDateTime;

use crate::ClientRecord;

/// The version of tenant `$1`'s clients; no row: version 0 (no change since schema 33).
pub(super) const CLIENT_VERSION: &str = "SELECT version FROM client_versions WHERE tenant_id = $1";

/// The first time after `$4` at which one of principal `$2`'s role assignments (directly or
/// through a role-assignable group, `$3` = true) or an eligibility one was activated from starts
/// or ends: until then, the assignments that apply stay those that apply at `$4`. `NULL`: none.
/// `a` is materialized: inlined into each branch of `times`, SQLite took the `t > $4` of the
/// branch of end times into it and walked every assignment of the tenant ending after `$4`.
pub(super) const CLIENT_CHANGES_AT: &str = concat!(
    "WITH a AS MATERIALIZED (SELECT start_at, end_at, activated_using FROM role_assignments WHERE tenant_id = $1 AND ",
    principal_or_its_groups!("2", "3"),
    "), ",
    "e AS (SELECT start_at, end_at FROM role_eligibilities WHERE id IN (SELECT activated_using FROM a)) ",
    "SELECT MIN(t) FROM (SELECT start_at AS t FROM a UNION ALL SELECT end_at FROM a UNION ALL ",
    "SELECT start_at FROM e UNION ALL SELECT end_at FROM e) times WHERE t > $4"
);

/// Entries kept at most: past it the cache starts again empty. Only registered applications are
/// kept (an unknown `client_id` is not), so a caller cannot fill it with made-up ids.
const CAPACITY: usize = 4096;

/// A client as read, and when it holds.
struct Entry {
    version: i64,
    /// The time it was read for.
    from: OffsetDateTime,
    /// When a role window next opens or closes (`None`: never).
    until: Option<OffsetDateTime>,
    record: ClientRecord,
}

/// This node's clients by tenant and lower-case `appId`.
#[derive(Default)]
pub(crate) struct ClientCache {
    entries: Mutex<HashMap<(ObjectId, String), Entry>>,
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.entries.lock().map_or(0, |it| it.len());
        f.debug_struct("ClientCache").field("kept", &kept).finish()
    }
}

impl ClientCache {
    /// The client kept for `app_id`, if it was read under version `version` and still holds at
    /// `now`.
    pub(super) fn get(
        &self,
        tenant: &ObjectId,
        app_id: &str,
        version: i64,
        now: OffsetDateTime,
    ) -> Option<ClientRecord> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries.get(&(tenant.clone(), app_id.to_owned()))?;
        let holds = entry.version == version && entry.from <= now && entry.until.is_none_or(|until| now < until);
        holds.then(|| entry.record.clone())
    }

    /// The client kept for `app_id` if it holds at `now`, whatever the version is now, and the
    /// version it was read under.
    pub(super) fn get_unchecked(
        &self,
        tenant: &ObjectId,
        app_id: &str,
        now: OffsetDateTime,
    ) -> Option<(ClientRecord, i64)> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries.get(&(tenant.clone(), app_id.to_owned()))?;
        let holds = entry.from <= now && entry.until.is_none_or(|until| now < until);
        holds.then(|| (entry.record.clone(), entry.version))
    }

    /// Keeps `record`, read after its tenant's version was read as `version`, for `now` until
    /// `until`.
    pub(super) fn put(
        &self,
        tenant: &ObjectId,
        app_id: &str,
        version: i64,
        now: OffsetDateTime,
        until: Option<OffsetDateTime>,
        record: ClientRecord,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (tenant.clone(), app_id.to_owned());
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, Entry { version, from: now, until, record });
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::Application;

    fn record(name: &str) -> ClientRecord {
        let tenant = ObjectId::parse("00000000-0000-4000-8000-000000000001").expect("id");
        ClientRecord {
            application: Application {
                id: ObjectId::parse("00000000-0000-4000-8000-000000000002").expect("id"),
                tenant_id: tenant,
                app_id: "00000000-0000-4000-8000-000000000003".to_owned(),
                display_name: name.to_owned(),
                is_fallback_public_client: false,
                public_redirect_uris: Vec::new(),
                web_redirect_uris: Vec::new(),
                created: OffsetDateTime::UNIX_EPOCH,
                unique_name: None,
            },
            service_principal: None,
            credentials: Vec::new(),
            principal_roles: Vec::new(),
        }
    }

    #[test]
    fn an_entry_holds_for_its_version_and_its_time_window_only() {
        let cache = ClientCache::default();
        let tenant = ObjectId::parse("00000000-0000-4000-8000-000000000001").expect("id");
        let other = ObjectId::parse("00000000-0000-4000-8000-000000000009").expect("id");
        let at = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let until = at + Duration::hours(1);
        assert_eq!(cache.get(&tenant, "app", 7, at), None, "nothing kept yet");
        cache.put(&tenant, "app", 7, at, Some(until), record("Robot"));
        assert_eq!(cache.get(&tenant, "app", 7, at).map(|it| it.application.display_name), Some("Robot".to_owned()));
        assert!(cache.get(&tenant, "app", 7, until - Duration::seconds(1)).is_some(), "inside its window");
        assert_eq!(cache.get(&tenant, "app", 8, at), None, "a new version: read again");
        assert_eq!(cache.get(&tenant, "app", 7, until), None, "a role window opens or closes then");
        assert_eq!(cache.get(&tenant, "app", 7, at - Duration::seconds(1)), None, "before it was read");
        assert_eq!(cache.get(&other, "app", 7, at), None, "another tenant's application");
        assert_eq!(cache.get(&tenant, "other", 7, at), None, "another application");

        cache.put(&tenant, "app", 8, at, None, record("Robot 2"));
        let later = at + Duration::days(3650);
        assert_eq!(
            cache.get(&tenant, "app", 8, later).map(|it| it.application.display_name),
            Some("Robot 2".to_owned())
        );
    }

    #[test]
    fn a_full_cache_starts_again_rather_than_growing() {
        let cache = ClientCache::default();
        let tenant = ObjectId::parse("00000000-0000-4000-8000-000000000001").expect("id");
        let at = OffsetDateTime::UNIX_EPOCH;
        for n in 0..CAPACITY {
            cache.put(&tenant, &format!("app-{n}"), 1, at, None, record("Robot"));
        }
        assert!(cache.get(&tenant, "app-0", 1, at).is_some());
        cache.put(&tenant, "app-0", 2, at, None, record("Robot"));
        assert_eq!(cache.entries.lock().expect("lock").len(), CAPACITY, "a kept client replaced in place");
        cache.put(&tenant, "one-more", 1, at, None, record("Robot"));
        let entries = cache.entries.lock().expect("lock");
        assert_eq!(entries.len(), 1, "emptied when full, then the new entry kept");
    }
}
