//! The conformance story: one scenario through the store traits, run on both backends.

use keyward_core::audit::{Activity, AuditContext, AuditRecord, Initiator, TargetResource};
use keyward_core::audit_query::AuditFilter;
use keyward_core::directory::{Domain, Group, ObjectKind, Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_core::query::{GROUP, RawQuery, USER, plan};
use keyward_store::{MemberRef, RoleAssignment, StoreError, TemporaryAccessPass};
use keyward_testkit::{Backend, fresh_store};
use time::OffsetDateTime;

fn id(n: u32) -> ObjectId {
    ObjectId::parse(&format!("00000000-0000-4000-8000-{n:012}")).expect("guid")
}

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).expect("time")
}

fn user(tenant: &Tenant, n: u32, name: &str) -> User {
    let alias = name.to_lowercase().replace(' ', ".");
    User {
        id: id(n),
        tenant_id: tenant.id.clone(),
        user_principal_name: format!("{alias}@contoso.test"),
        display_name: name.to_owned(),
        given_name: name.split(' ').next().map(str::to_owned),
        surname: None,
        mail: Some(format!("{alias}@contoso.test")),
        mail_nickname: alias,
        other_mails: vec![format!("{n}@backup.test"), "Shared@Backup.test".into()],
        mobile_phone: None,
        business_phones: vec!["+1 555 0100".into()],
        job_title: if n.is_multiple_of(2) { Some("Engineer".into()) } else { None },
        department: None,
        account_enabled: !n.is_multiple_of(3),
        usage_location: Some("US".into()),
        created: at(i64::from(n)),
        sign_in_sessions_valid_from: at(0),
        force_change_password_next_sign_in: false,
        // Stored with a password hash, so its change time is the creation's.
        last_password_change: Some(at(i64::from(n))),
        manager: None,
        profile: keyward_core::profile::Profile::new_member(),
    }
}

/// A tenant's newest audit records (those naming `target`, if given), as the API reads them.
async fn newest_audit(
    store: &std::sync::Arc<dyn keyward_store::Store>,
    tenant: &ObjectId,
    target: Option<&ObjectId>,
) -> Vec<AuditRecord> {
    let filter = AuditFilter { target_id: target.map(ToString::to_string), ..AuditFilter::default() };
    let page = store.query_audit(tenant, &filter, None, false, 10).await.expect("audit");
    page.into_iter().map(|(_, record)| record).collect()
}

fn query(filter: Option<&str>, orderby: Option<&str>, top: usize) -> keyward_core::query::Plan {
    let raw = RawQuery {
        filter: filter.map(str::to_owned),
        orderby: orderby.map(str::to_owned),
        top: Some(top.to_string()),
        count: Some("true".into()),
        is_eventual: true,
        ..RawQuery::default()
    };
    plan(&USER, &raw).expect("valid plan")
}

async fn story(backend: Backend) {
    let (store, _dir) = fresh_store(backend).await;
    assert_eq!(
        store.backend(),
        match backend {
            Backend::Sqlite => keyward_store::Backend::Sqlite,
            Backend::Postgres => keyward_store::Backend::Postgres,
        }
    );
    let latest = i64::try_from(keyward_store::MIGRATIONS_SQLITE.len()).expect("count");
    assert_eq!(store.schema_version().await.expect("version"), latest);

    // A tenant and 25 users.
    let tenant = Tenant {
        id: id(999_999),
        display_name: "Contoso".into(),
        created: at(0),
        domains: vec![Domain { name: "contoso.test".into(), is_default: true, is_initial: true }],
    };
    let mut tx = store.write().await.expect("tx");
    tx.insert_tenant(&tenant).await.expect("tenant");
    for n in 1..=25 {
        tx.insert_user(&user(&tenant, n, &format!("User {n:02}")), Some("$argon2id$hash")).await.expect("user");
    }
    tx.commit().await.expect("commit");

    let mut tx = store.write().await.expect("tx");
    assert_eq!(tx.get_tenant(&tenant.id).await.expect("get"), Some(tenant.clone()));
    let found = tx.find_user_by_upn(&tenant.id, "USER.07@Contoso.Test").await.expect("find").expect("user 7");
    assert_eq!(found, user(&tenant, 7, "User 07"), "round trip keeps every property, in order");
    let duplicate = User { id: id(500), ..user(&tenant, 7, "User 07") };
    assert!(matches!(tx.insert_user(&duplicate, None).await, Err(StoreError::Conflict { .. })));
    drop(tx);

    // Filters, counts and keyset paging.
    let mut tx = store.read().await.expect("tx");
    let page = tx
        .list_users(&tenant.id, &query(Some("startswith(displayName,'user 1')"), None, 100), None)
        .await
        .expect("list");
    assert_eq!(page.count, Some(10));
    let names: Vec<&str> = page.items.iter().map(|it| it.display_name.as_str()).collect();
    assert_eq!(names.len(), 10);
    assert!(names.iter().all(|it| it.starts_with("User 1")), "{names:?}");
    for (filter, expected) in [
        ("otherMails/any(x:x eq 'shared@backup.test')", 25),
        ("otherMails/any(x:startswith(x,'2'))", 7),
        ("accountEnabled eq false", 8),
        ("jobTitle eq null", 13),
        ("jobTitle ne 'engineer'", 13),
        ("not(jobTitle eq 'engineer')", 13),
        ("endswith(mail,'.07@contoso.test')", 1),
        ("userPrincipalName in ('user.01@contoso.test','USER.02@contoso.test')", 2),
        ("createdDateTime ge 2023-11-14T22:13:30Z and createdDateTime le 2023-11-14T22:13:35Z", 6),
        ("not(startswith(displayName,'User 0'))", 16),
    ] {
        let page = tx.list_users(&tenant.id, &query(Some(filter), None, 100), None).await.expect(filter);
        assert_eq!((filter, page.count, page.items.len()), (filter, Some(expected), expected as usize));
    }
    for orderby in [None, Some("displayName desc"), Some("createdDateTime")] {
        let mut seen = Vec::new();
        let mut after = None;
        let mut n_pages = 0;
        loop {
            let page = tx.list_users(&tenant.id, &query(None, orderby, 10), after.as_ref()).await.expect("page");
            n_pages += 1;
            seen.extend(page.items.iter().map(|it| it.display_name.clone()));
            match page.next {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
        assert_eq!(n_pages, 3, "{orderby:?}");
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 25, "every user exactly once for {orderby:?}");
        if orderby == Some("displayName desc") {
            assert_eq!(seen.first().map(String::as_str), Some("User 25"));
            assert_eq!(seen.last().map(String::as_str), Some("User 01"));
        }
    }
    drop(tx);

    // A transaction dropped without commit leaves nothing behind: neither the change nor its audit.
    let admin = Initiator::User {
        id: id(1),
        display_name: "User 01".into(),
        user_principal_name: "user.01@contoso.test".into(),
        ip_address: Some("127.0.0.1".into()),
    };
    let audit =
        AuditContext { tenant_id: tenant.id.clone(), correlation_id: "c-1".into(), at: at(100), initiated_by: admin };
    let ghost = user(&tenant, 77, "Ghost User");
    let mut tx = store.write().await.expect("tx");
    tx.insert_user(&ghost, None).await.expect("insert");
    tx.insert_audit(&audit.success("a-ghost".into(), Activity::AddUser, vec![TargetResource::user(&ghost)]))
        .await
        .expect("audit");
    drop(tx);
    let mut tx = store.read().await.expect("tx");
    assert_eq!(tx.get_user(&tenant.id, &ghost.id).await.expect("get"), None);
    drop(tx);
    assert!(newest_audit(&store, &tenant.id, Some(&ghost.id)).await.is_empty());

    // Update, delete, passwords, audit.
    let mut tx = store.write().await.expect("tx");
    let mut seven = user(&tenant, 7, "User 07");
    seven.display_name = "Seven".into();
    seven.other_mails = vec!["only@backup.test".into()];
    tx.update_user(&seven).await.expect("update");
    seven.last_password_change = Some(at(70));
    tx.set_password_hash(&seven.id, "$argon2id$new", at(70)).await.expect("password");
    tx.delete_user(&tenant.id, &id(8)).await.expect("delete");
    assert_eq!(tx.delete_user(&tenant.id, &id(8)).await, Err(StoreError::NotFound));
    let record = audit.success("a-1".into(), Activity::UpdateUser, vec![TargetResource::user(&seven)]);
    tx.insert_audit(&record).await.expect("audit");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("tx");
    assert_eq!(tx.get_user(&tenant.id, &seven.id).await.expect("get"), Some(seven.clone()));
    assert_eq!(tx.get_password_hash(&seven.id).await.expect("hash").as_deref(), Some("$argon2id$new"));
    assert_eq!(tx.get_user(&tenant.id, &id(8)).await.expect("get"), None);
    let mut batch = tx.get_users(&tenant.id, &[id(7), id(8), id(9)]).await.expect("batch");
    batch.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(batch, vec![seven.clone(), user(&tenant, 9, "User 09")], "deleted ids are skipped, values loaded");
    drop(tx);
    assert_eq!(newest_audit(&store, &tenant.id, Some(&seven.id)).await, vec![record.clone()]);
    assert_eq!(newest_audit(&store, &tenant.id, None).await, vec![record]);

    // Groups, members, owners, role assignments through a group.
    let group = Group {
        id: id(2000),
        tenant_id: tenant.id.clone(),
        display_name: "Helpdesk".into(),
        description: None,
        mail_nickname: "helpdesk".into(),
        mail_enabled: false,
        security_enabled: true,
        is_assignable_to_role: true,
        group_types: Vec::new(),
        created: at(5),
    };
    let mut tx = store.write().await.expect("tx");
    tx.insert_group(&group).await.expect("group");
    for n in 1..=5 {
        tx.insert_member(&group.id, &MemberRef { kind: ObjectKind::User, id: id(n) }).await.expect("member");
    }
    tx.commit().await.expect("commit");
    // A failed statement ends the transaction's usefulness (PostgreSQL aborts it), so callers
    // abandon a transaction after any error; the conflict is checked in its own transaction.
    let mut tx = store.write().await.expect("tx");
    assert!(matches!(
        tx.insert_member(&group.id, &MemberRef { kind: ObjectKind::User, id: id(1) }).await,
        Err(StoreError::Conflict { .. })
    ));
    drop(tx);
    let mut tx = store.write().await.expect("tx");
    tx.insert_owner(&group.id, &MemberRef { kind: ObjectKind::User, id: id(9) }).await.expect("owner");
    let assignment = RoleAssignment {
        id: "ra-1".into(),
        tenant_id: tenant.id.clone(),
        principal_id: group.id.clone(),
        role_definition_id: "729827e3-9c14-49f7-bb1b-9608f156bbb8".into(),
        directory_scope_id: "/".into(),
        created: at(6),
        start: None,
        end: None,
        activated_using: None,
    };
    tx.insert_role_assignment(&assignment).await.expect("assignment");
    tx.commit().await.expect("commit");
    let mut tx = store.write().await.expect("tx");
    let first = tx.list_members(&group.id, None, 3).await.expect("members");
    let rest = tx.list_members(&group.id, Some(first[2].id.as_str()), 3).await.expect("members");
    assert_eq!((first.len(), rest.len()), (3, 2));
    assert!(tx.is_member(&group.id, &id(2)).await.expect("is member"));
    assert!(tx.is_owner(&group.id, &id(9)).await.expect("is owner"));
    assert_eq!(tx.list_member_of(&id(2), None, 10).await.expect("memberOf"), vec![group.id.clone()]);
    assert_eq!(tx.list_role_assignments_for(&tenant.id, &id(2)).await.expect("roles"), vec![assignment.clone()]);
    assert!(tx.list_role_assignments_for(&tenant.id, &id(6)).await.expect("roles").is_empty());
    tx.delete_member(&group.id, &id(2)).await.expect("remove");
    assert_eq!(tx.delete_member(&group.id, &id(2)).await, Err(StoreError::NotFound));
    assert!(
        tx.list_role_assignments_for(&tenant.id, &id(2)).await.expect("roles").is_empty(),
        "roles through a group end with membership"
    );
    let groups = tx
        .list_groups(
            &tenant.id,
            &plan(&GROUP, &RawQuery { filter: Some("isAssignableToRole eq true".into()), ..RawQuery::default() })
                .expect("plan"),
            None,
        )
        .await
        .expect("groups");
    assert_eq!(groups.items, vec![group.clone()]);
    assert_eq!(tx.get_groups(&tenant.id, &[group.id.clone(), id(1)]).await.expect("batch"), vec![group.clone()]);

    // Temporary Access Passes: one per user, a new one replaces the old.
    let pass = |n: u32, digest: u8| TemporaryAccessPass {
        id: id(3000 + n),
        user_id: id(1),
        pass_sha256: vec![digest; 32],
        created: at(0),
        start: at(0),
        lifetime_minutes: 60,
        is_usable_once: true,
        used_at: None,
        ends_at_registration: n == 2,
    };
    tx.put_temporary_access_pass(&pass(1, 1)).await.expect("tap");
    tx.put_temporary_access_pass(&pass(2, 2)).await.expect("tap");
    assert_eq!(tx.get_temporary_access_pass(&id(1)).await.expect("tap"), Some(pass(2, 2)));

    // Signing keys.
    let key = keyward_store::SigningKey {
        kid: "k1".into(),
        algorithm: "ES256".into(),
        sealed_private_key: vec![1, 2, 3],
        public_key: vec![4; 65],
        created: at(0),
        activated: Some(at(0)),
        retired: None,
    };
    tx.insert_signing_key(&key).await.expect("key");
    tx.retire_signing_key("k1", at(9)).await.expect("retire");
    assert_eq!(tx.retire_signing_key("k1", at(10)).await, Err(StoreError::NotFound));
    let keys = tx.list_signing_keys().await.expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].retired, Some(at(9)));
    tx.commit().await.expect("commit");
    store.close().await;
}

/// Every foreign key whose rows are deleted with their parent (`ON DELETE CASCADE`) has an index
/// leading with it. Without one, the database reads the whole child table to find the rows to
/// delete: every session and refresh token in the database for each user deleted.
async fn every_cascading_foreign_key_is_indexed(backend: Backend) {
    use sqlx::Connection;
    let (url, _dir) = keyward_testkit::fresh_url(backend);
    keyward_store::open(&url).await.expect("migrated").close().await;
    // Each cascading key as `table.column`, and whether an index (or the primary key) leads with it.
    let keys: Vec<(String, bool)> = match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open SQLite");
            sqlx::query_as(concat!(
                "SELECT m.name || '.' || f.\"from\", EXISTS (SELECT 1 FROM pragma_index_list(m.name) l, ",
                "pragma_index_info(l.name) i WHERE l.partial = 0 AND i.seqno = 0 AND i.name = f.\"from\") ",
                "OR EXISTS (SELECT 1 FROM pragma_table_info(m.name) c WHERE c.pk = 1 AND c.name = f.\"from\") ",
                "FROM sqlite_schema m, pragma_foreign_key_list(m.name) f ",
                "WHERE m.type = 'table' AND f.on_delete = 'CASCADE'"
            ))
            .fetch_all(&mut conn)
            .await
            .expect("SQLite's foreign keys")
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("open PostgreSQL");
            sqlx::query_as(concat!(
                "SELECT c.conrelid::regclass::text || '.' || a.attname, EXISTS (SELECT 1 FROM pg_index i ",
                "WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1] AND i.indpred IS NULL) ",
                "FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] ",
                "WHERE c.contype = 'f' AND c.confdeltype = 'c'"
            ))
            .fetch_all(&mut conn)
            .await
            .expect("PostgreSQL's foreign keys")
        }
    };
    // The query finds the keys it is meant to (a query that found none would prove nothing).
    assert!(keys.iter().any(|(key, _)| key == "refresh_tokens.user_id"), "cascading keys found: {keys:?}");
    assert!(keys.len() >= 20, "cascading keys found: {keys:?}");
    let unindexed: Vec<&str> = keys.iter().filter(|(_, indexed)| !indexed).map(|(key, _)| key.as_str()).collect();
    assert!(unindexed.is_empty(), "foreign keys deleted with their parent but not indexed: {unindexed:?}");
}

keyward_testkit::on_both_backends!(story, every_cascading_foreign_key_is_indexed);
