//! Tamper evidence: the audit hash chain, attacked with direct SQL on both backends.

use keyward_app::ChainReport;
use keyward_core::audit_chain::{self, ChainBreak};
use keyward_testkit::{ADMIN_UPN, Backend, DOMAIN, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The first key of a new copy block (a block is never shared by two targets or initiators).
const NEW_BLOCK: &str = "((SELECT (max(key) >> 32) + 1 FROM audit_copies) << 32)";

/// Direct access to the test's database, bypassing Keyward, as an attacker with database access has.
pub(crate) enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    pub(crate) async fn connect(url: &str) -> Raw {
        if url.starts_with("sqlite:") {
            // One connection, so a schema change is seen by the next statement.
            let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(url);
            Raw::Sqlite(pool.await.expect("open SQLite"))
        } else {
            Raw::Postgres(sqlx::PgPool::connect(url).await.expect("open PostgreSQL"))
        }
    }

    pub(crate) async fn exec(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Raw::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
            Raw::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
        .expect("tampering statement runs");
    }

    /// The first column of the first row, as text.
    async fn text(&self, sql: &str) -> String {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Raw::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Raw::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .expect("query runs")
    }

    /// Inserts a target row for the record with sequence number `seq`, with the record's tenant
    /// and (SQLite) a copy of the record under a new key.
    async fn add_target_row(&self, seq: &str, at: &str, target: &str, upn: &str) {
        let (copy_column, copy_key) = match self {
            Raw::Sqlite(_) => {
                self.exec(&format!(
                    "INSERT INTO audit_copies (key, record) SELECT {NEW_BLOCK}, \
                     json_remove(record, '$.tenant_id', '$.activity_date_time') FROM audit_records WHERE seq = {seq}"
                ))
                .await;
                (", copy_key", ", (SELECT max(key) FROM audit_copies)")
            }
            Raw::Postgres(_) => ("", ""),
        };
        self.exec(&format!(
            "INSERT INTO audit_targets (tenant_id, audit_seq, activity_date_time, target_id, target_upn_lc{copy_column}) \
             SELECT tenant_id, {seq}, '{at}', '{target}', '{upn}'{copy_key} FROM audit_records WHERE seq = {seq}"
        ))
        .await;
    }

    /// SQLite: inserts an initiator row for the record with sequence number `seq` from the
    /// record's own columns, pointing at a copy of the record under a new key.
    async fn add_initiator_row(&self, seq: &str) {
        if let Raw::Sqlite(_) = self {
            self.exec(&format!(
                "INSERT INTO audit_copies (key, record) SELECT {NEW_BLOCK}, \
                 json_remove(record, '$.tenant_id', '$.activity_date_time') FROM audit_records WHERE seq = {seq}"
            ))
            .await;
            self.exec(&format!(
                "INSERT INTO audit_initiators (tenant_id, initiator_id, activity_date_time, audit_seq, copy_key) \
                 SELECT tenant_id, initiator_id, activity_date_time, seq, (SELECT max(key) FROM audit_copies) \
                 FROM audit_records WHERE seq = {seq}"
            ))
            .await;
        }
    }

    /// A table's column names, in order, comma-separated.
    async fn columns(&self, table: &str) -> String {
        let sql = match self {
            Raw::Sqlite(_) => format!(
                "SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_table_info('{table}') ORDER BY cid)"
            ),
            Raw::Postgres(_) => format!(
                "SELECT string_agg(column_name::text, ',' ORDER BY ordinal_position) FROM information_schema.columns \
                 WHERE table_name = '{table}' AND table_schema = current_schema()"
            ),
        };
        self.text(&sql).await
    }

    /// A column of the record with chain number `index`.
    async fn column(&self, index: i64, column: &str) -> String {
        self.text(&format!("SELECT {column} FROM audit_records WHERE chain_index = {index}")).await
    }
}

async fn verify(app: &TestApp) -> ChainReport {
    let mut reports = app.app.verify_audit_chains(&mut |_, _| {}).await.expect("verification runs");
    assert_eq!(reports.len(), 1, "one tenant");
    reports.remove(0)
}

/// Applies each `(what, change, expected break, undo)`: the change must break the chain exactly so,
/// and undoing it must restore it.
async fn check_tampering(app: &TestApp, raw: &Raw, cases: Vec<(&str, String, ChainBreak, String)>) {
    for (what, change, expected, undo) in cases {
        raw.exec(&change).await;
        assert_eq!(verify(app).await.outcome, Err(expected), "a change to {what}");
        raw.exec(&undo).await;
        assert_eq!(verify(app).await.outcome, Ok(()), "undoing the change to {what} restores the chain");
    }
}

async fn tampering_is_detected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let raw = Raw::connect(&app.database_url).await;
    // Concurrent audited writes must still form one chain (on PostgreSQL they race for the head).
    let users = create_concurrently(&app, 12).await;
    app.patch(&format!("/v1.0/users/{}", users[0]), &json!({"jobTitle": "Analyst"})).await;

    let intact = verify(&app).await;
    assert_eq!(intact.outcome, Ok(()), "a fresh log verifies");
    let total: i64 = raw.text("SELECT CAST(COUNT(*) AS TEXT) FROM audit_records").await.parse().expect("count");
    assert_eq!(intact.records, u64::try_from(total).expect("count"), "every record is on the chain");
    assert!(total >= 14, "setup records, 12 creates and an update; got {total}");
    assert_eq!(intact.position.index, intact.records);

    let id_of = |index: i64| {
        let raw = &raw;
        async move { raw.column(index, "id").await }
    };

    // Each change to a stored record, or to a row that queries read instead of it, breaks the chain
    // at that record; undoing it restores the chain.
    let result = raw.column(3, "result").await;
    let id_2 = id_of(2).await;
    let cases = vec![
        (
            "an indexed column (hides a failure from `result eq 'failure'` queries)",
            "UPDATE audit_records SET result = 'mangled' WHERE chain_index = 3".to_owned(),
            ChainBreak::Changed { id: id_of(3).await, index: 3 },
            format!("UPDATE audit_records SET result = '{result}' WHERE chain_index = 3"),
        ),
        (
            "the id (GET /directoryAudits/{id} would serve another record)",
            "UPDATE audit_records SET id = 'Directory_swapped' WHERE chain_index = 2".to_owned(),
            ChainBreak::Changed { id: "Directory_swapped".into(), index: 2 },
            format!("UPDATE audit_records SET id = '{id_2}' WHERE chain_index = 2"),
        ),
        (
            "the record itself",
            "UPDATE audit_records SET record = REPLACE(record, 'Chain User', 'Chain Usr') WHERE chain_index = 5"
                .to_owned(),
            ChainBreak::Changed { id: id_of(5).await, index: 5 },
            "UPDATE audit_records SET record = REPLACE(record, 'Chain Usr', 'Chain User') WHERE chain_index = 5"
                .to_owned(),
        ),
    ];
    check_tampering(&app, &raw, cases).await;

    // 1c. A record slipped in below the chain's first number is still read and refused.
    raw.exec(
        "INSERT INTO audit_records (id, tenant_id, activity_date_time, correlation_id, category, activity_display_name, \
         activity_display_name_lc, logged_by_service, result, initiator_id, initiator_upn_lc, initiator_app_id, record, \
         chain_index, prev_hash, hash) SELECT 'below', tenant_id, activity_date_time, correlation_id, category, \
         activity_display_name, activity_display_name_lc, logged_by_service, result, initiator_id, initiator_upn_lc, \
         initiator_app_id, record, 0, prev_hash, hash FROM audit_records WHERE chain_index = 1",
    )
    .await;
    assert!(matches!(
        verify(&app).await.outcome,
        Err(ChainBreak::Changed { index: 0, .. } | ChainBreak::OutOfOrder { index: 0, .. })
    ));
    raw.exec("DELETE FROM audit_records WHERE id = 'below'").await;
    assert_eq!(verify(&app).await.outcome, Ok(()));

    // 3. A target row removed (hides the record from targetResources/any queries).
    let last = total;
    let seq = raw.column(last, "CAST(seq AS TEXT)").await;
    let target = raw.text(&format!("SELECT target_id FROM audit_targets WHERE audit_seq = {seq}")).await;
    let upn = raw.text(&format!("SELECT target_upn_lc FROM audit_targets WHERE audit_seq = {seq}")).await;
    let at = raw.text(&format!("SELECT activity_date_time FROM audit_targets WHERE audit_seq = {seq}")).await;
    let last_id = id_of(last).await;
    raw.exec(&format!("DELETE FROM audit_targets WHERE audit_seq = {seq}")).await;
    assert_eq!(verify(&app).await.outcome, Err(ChainBreak::Changed { id: last_id.clone(), index: last }));
    raw.add_target_row(&seq, &at, &target, &upn).await;
    assert_eq!(verify(&app).await.outcome, Ok(()));

    let changed_last = || ChainBreak::Changed { id: last_id.clone(), index: last };
    check_tampering(
        &app,
        &raw,
        vec![(
            "a target row's time (hides the record from the target's newest records)",
            format!(
                "UPDATE audit_targets SET activity_date_time = '2001-01-01T00:00:00.000000Z' WHERE audit_seq = {seq}"
            ),
            changed_last(),
            format!("UPDATE audit_targets SET activity_date_time = '{at}' WHERE audit_seq = {seq}"),
        )],
    )
    .await;

    // 3c. On SQLite a target row points at a copy of its record, which target queries show:
    // editing or removing the copy is a change to the record.
    if let Raw::Sqlite(_) = raw {
        let copy = format!("(SELECT copy_key FROM audit_targets WHERE audit_seq = {seq})");
        let edit = |from: &str, to: &str| {
            format!("UPDATE audit_copies SET record = REPLACE(record, '{from}', '{to}') WHERE key = {copy}")
        };
        let initiator_copy = format!("(SELECT copy_key FROM audit_initiators WHERE audit_seq = {seq})");
        let row_at =
            raw.text(&format!("SELECT activity_date_time FROM audit_initiators WHERE audit_seq = {seq}")).await;
        check_tampering(
            &app,
            &raw,
            vec![
                (
                    "the copy of the record a target row points at",
                    edit("Chain User", "Chain Usr"),
                    changed_last(),
                    edit("Chain Usr", "Chain User"),
                ),
                (
                    "the initiator row's time",
                    format!(
                        "UPDATE audit_initiators SET activity_date_time = '2001-01-01T00:00:00.000000Z' \
                         WHERE audit_seq = {seq}"
                    ),
                    changed_last(),
                    format!("UPDATE audit_initiators SET activity_date_time = '{row_at}' WHERE audit_seq = {seq}"),
                ),
                (
                    "the copy of the record the initiator row points at",
                    format!(
                        "UPDATE audit_copies SET record = REPLACE(record, '\"success\"', '\"failure\"') \
                         WHERE key = {initiator_copy}"
                    ),
                    changed_last(),
                    format!(
                        "UPDATE audit_copies SET record = REPLACE(record, '\"failure\"', '\"success\"') \
                         WHERE key = {initiator_copy}"
                    ),
                ),
            ],
        )
        .await;
        let kept = raw.text(&format!("SELECT record FROM audit_copies WHERE key = {copy}")).await;
        let key = raw.text(&format!("SELECT CAST(copy_key AS TEXT) FROM audit_targets WHERE audit_seq = {seq}")).await;
        raw.exec(&format!("DELETE FROM audit_copies WHERE key = {key}")).await;
        assert_eq!(verify(&app).await.outcome, Err(changed_last()));
        raw.exec(&format!("INSERT INTO audit_copies (key, record) VALUES ({key}, '{}')", kept.replace('\'', "''")))
            .await;
        assert_eq!(verify(&app).await.outcome, Ok(()));

        // 3d. A target row and a copy slipped into the tenant's log with no record behind them:
        // a query by target would show the copy, so verification must name it.
        raw.exec("PRAGMA foreign_keys = OFF").await;
        raw.exec("INSERT INTO audit_copies (key, record) SELECT max(key) + 1, record FROM audit_copies").await;
        raw.exec(&format!(
            "INSERT INTO audit_targets (tenant_id, audit_seq, activity_date_time, target_id, target_upn_lc, copy_key) \
             SELECT tenant_id, 999999, '{at}', '{target}', '{upn}', (SELECT max(key) FROM audit_copies) \
             FROM audit_records WHERE seq = {seq}"
        ))
        .await;
        assert_eq!(verify(&app).await.outcome, Err(ChainBreak::StrayRow { seq: 999_999 }));
        raw.exec("DELETE FROM audit_targets WHERE audit_seq = 999999").await;
        raw.exec("PRAGMA foreign_keys = ON").await;
        assert_eq!(verify(&app).await.outcome, Ok(()));

        // 3e. The record's initiator row removed, or a row with no record behind it.
        let changed = Err(changed_last());
        let copy = initiator_copy;
        raw.exec(&format!("DELETE FROM audit_initiators WHERE audit_seq = {seq}")).await;
        let copies_left =
            raw.text(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM audit_copies WHERE key = {copy}")).await;
        assert_eq!(copies_left, "0");
        assert_eq!(verify(&app).await.outcome, changed);
        raw.add_initiator_row(&seq).await;
        assert_eq!(verify(&app).await.outcome, Ok(()));
        raw.exec("PRAGMA foreign_keys = OFF").await;
        raw.exec("INSERT INTO audit_copies (key, record) SELECT max(key) + 1, record FROM audit_copies").await;
        raw.exec(&format!(
            "INSERT INTO audit_initiators (tenant_id, initiator_id, activity_date_time, audit_seq, copy_key) \
             SELECT tenant_id, initiator_id, activity_date_time, 999998, (SELECT max(key) FROM audit_copies) \
             FROM audit_records WHERE seq = {seq}"
        ))
        .await;
        assert_eq!(verify(&app).await.outcome, Err(ChainBreak::StrayRow { seq: 999_998 }));
        raw.exec("DELETE FROM audit_initiators WHERE audit_seq = 999998").await;
        raw.exec("PRAGMA foreign_keys = ON").await;
        assert_eq!(verify(&app).await.outcome, Ok(()));
    }

    // 4. A record inserted at the end with a self-consistent hash but linked to a made-up predecessor.
    let forged_prev = audit_chain::ChainPosition { index: u64::try_from(last).expect("n"), hash: [9; 32] };
    let original_id = id_of(last).await;
    let canonical = raw.column(last, "record").await.replace(&original_id, "forged");
    let tenant = raw.column(last, "tenant_id").await;
    let forged = forged_prev.append(&tenant, &canonical);
    raw.exec(&format!(
        "INSERT INTO audit_records (id, tenant_id, activity_date_time, correlation_id, category, activity_display_name, \
         activity_display_name_lc, logged_by_service, result, initiator_id, initiator_upn_lc, initiator_app_id, record, \
         chain_index, prev_hash, hash) SELECT 'forged', tenant_id, activity_date_time, correlation_id, category, \
         activity_display_name, activity_display_name_lc, logged_by_service, result, initiator_id, initiator_upn_lc, \
         initiator_app_id, REPLACE(record, '{original_id}', 'forged'), {}, '{}', '{}' FROM audit_records \
         WHERE chain_index = {last}",
        last + 1,
        audit_chain::to_hex(&forged_prev.hash),
        audit_chain::to_hex(&forged.hash)
    ))
    .await;
    let forged_seq = raw.text("SELECT CAST(seq AS TEXT) FROM audit_records WHERE id = 'forged'").await;
    raw.add_target_row(&forged_seq, &at, &target, &upn).await;
    if let Raw::Sqlite(_) = raw {
        // The database itself gave the record inserted behind Keyward's back its initiator row
        // and copy (as it does for a server of the previous version still running an upgrade).
        let rows = raw
            .text(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM audit_initiators WHERE audit_seq = {forged_seq}"))
            .await;
        assert_eq!(rows, "1");
    }
    assert_eq!(verify(&app).await.outcome, Err(ChainBreak::OutOfOrder { id: "forged".into(), index: last + 1 }));
    raw.exec("DELETE FROM audit_records WHERE id = 'forged'").await;

    // 5. The newest record removed.
    let newest = id_of(last).await;
    raw.exec(&format!("DELETE FROM audit_records WHERE chain_index = {last}")).await;
    assert_eq!(
        verify(&app).await.outcome,
        Err(ChainBreak::Removed { from: u64::try_from(last).expect("n"), missing: 1, before: None }),
        "deleting {newest} is detected"
    );

    // 6. A record in the middle removed: named by the record that follows the gap.
    let follower = id_of(5).await;
    raw.exec("DELETE FROM audit_records WHERE chain_index = 4").await;
    assert_eq!(verify(&app).await.outcome, Err(ChainBreak::Removed { from: 4, missing: 1, before: Some(follower) }));

    // Writes go on after tampering; the log still reports the break.
    app.create_user("after", "After Tamper").await;
    assert!(matches!(verify(&app).await.outcome, Err(ChainBreak::Removed { from: 4, .. })));
}

/// Creates users with concurrent requests, returning their ids.
async fn create_concurrently(app: &TestApp, count: usize) -> Vec<String> {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        let (client, url, token) =
            (app.client.clone(), format!("{}/v1.0/users", app.base_url), app.admin_token.clone());
        tasks.spawn(async move {
            let body = json!({"accountEnabled": true, "displayName": format!("Chain User {n}"), "mailNickname": format!("chain{n}"),
                "userPrincipalName": format!("chain{n}@{DOMAIN}"), "passwordProfile": {"password": "Tq7-harbour-Lantern-92!"}});
            let reply = client.post(url).bearer_auth(token).json(&body).send().await.expect("request");
            assert_eq!(reply.status().as_u16(), 201);
            let created: serde_json::Value = reply.json().await.expect("json");
            created["id"].as_str().expect("id").to_owned()
        });
    }
    tasks.join_all().await
}

async fn count(raw: &Raw) -> u64 {
    raw.text("SELECT CAST(COUNT(*) AS TEXT) FROM audit_records").await.parse().expect("count")
}

async fn retention_cuts_the_chain_and_keeps_it_verifiable(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let raw = Raw::connect(&app.database_url).await;
    let tenant = app.app.list_tenant_ids().await.expect("tenants").remove(0);
    assert_eq!(app.app.audit_retention_days(&tenant).await.expect("days"), 30, "Entra P1's default");
    for alias in ["old1", "old2", "old3"] {
        app.create_user(alias, alias).await;
    }
    let old = count(&raw).await;
    app.clock.advance(time::Duration::days(20));
    app.admin_token = app.token_for(ADMIN_UPN).await;
    for alias in ["mid1", "mid2"] {
        app.create_user(alias, alias).await;
    }
    app.clock.advance(time::Duration::days(15));
    app.admin_token = app.token_for(ADMIN_UPN).await;

    assert_eq!(app.app.apply_audit_retention().await.expect("retention"), old, "records older than 30 days go");
    assert_eq!(app.app.apply_audit_retention().await.expect("retention"), 0, "a second run finds nothing");
    let report = verify(&app).await;
    assert_eq!(report.outcome, Ok(()), "the chain verifies from the signed checkpoint");
    assert_eq!(report.records, 2);
    assert_eq!(report.position.index, old + 2);
    let listed = app.get("/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Add user'").await;
    let names: Vec<&str> = listed.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|it| it["targetResources"][0]["userPrincipalName"].as_str())
        .collect();
    assert_eq!(names, [format!("mid2@{DOMAIN}"), format!("mid1@{DOMAIN}")], "{}", listed.text);

    // The checkpoint cannot be moved to hide a removal: its MAC covers its position.
    raw.exec("UPDATE audit_checkpoints SET chain_index = chain_index + 1").await;
    assert!(matches!(verify(&app).await.outcome, Err(ChainBreak::Checkpoint { .. })));
    assert!(app.app.apply_audit_retention().await.is_err(), "retention refuses to sign over a forged checkpoint");
    raw.exec("UPDATE audit_checkpoints SET chain_index = chain_index - 1").await;
    assert_eq!(verify(&app).await.outcome, Ok(()));

    // A retention shortened by hand is refused, and nothing is removed.
    raw.exec("UPDATE tenants SET audit_retention_days = 1").await;
    let before = count(&raw).await;
    assert!(app.app.apply_audit_retention().await.is_err(), "a retention changed outside Keyward is not obeyed");
    assert_eq!(count(&raw).await, before);
    raw.exec("UPDATE tenants SET audit_retention_days = 30").await;
    // A MAC spoiled in the database: setting the same value again repairs it (and says so).
    raw.exec("UPDATE tenants SET audit_retention_mac = 'forged'").await;
    assert!(app.app.apply_audit_retention().await.is_err());
    app.app.set_audit_retention_days(&tenant, 30).await.expect("set again");
    assert_eq!(app.app.apply_audit_retention().await.expect("repaired"), 0);

    // Bad settings change nothing.
    assert!(app.app.set_audit_retention_days(&tenant, 0).await.is_err());
    assert!(app.app.set_audit_retention_days(&tenant, 100_000).await.is_err());
    assert_eq!(app.app.audit_retention_days(&tenant).await.expect("days"), 30);

    // A shorter retention removes everything older; the change itself is audited, so the chain
    // keeps that one record, still verifies and grows again.
    app.app.set_audit_retention_days(&tenant, 7).await.expect("set");
    assert_eq!(app.app.apply_audit_retention().await.expect("retention"), 2);
    assert_eq!(count(&raw).await, 2, "the repair's record and this change's");
    let listed =
        app.get("/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Update audit log retention'").await;
    let record = &listed.body["value"][0];
    assert_eq!(
        (record["category"].as_str(), record["initiatedBy"]["app"]["displayName"].as_str()),
        (Some("Policy"), Some("Keyward operator")),
        "{}",
        listed.text
    );
    let property = &record["targetResources"][0]["modifiedProperties"][0];
    assert_eq!(
        (property["displayName"].as_str(), property["oldValue"].as_str(), property["newValue"].as_str()),
        (Some("RetentionDays"), Some("30"), Some("7")),
        "{}",
        listed.text
    );
    // Setting the same value again changes nothing and records nothing.
    app.app.set_audit_retention_days(&tenant, 7).await.expect("set again");
    assert_eq!(count(&raw).await, 2);
    assert_eq!(verify(&app).await.outcome, Ok(()));
    app.create_user("new1", "new1").await;
    app.create_user("new2", "new2").await;
    let report = verify(&app).await;
    assert_eq!((report.outcome, report.records), (Ok(()), 4));
    if let Raw::Sqlite(_) = raw {
        // Removed records took their target and initiator rows' copies with them.
        let copies = raw.text("SELECT CAST(COUNT(*) AS TEXT) FROM audit_copies").await;
        let rows = raw
            .text("SELECT CAST((SELECT COUNT(*) FROM audit_targets) + (SELECT COUNT(*) FROM audit_initiators) AS TEXT)")
            .await;
        assert_eq!(copies, rows);
        assert_ne!(rows, "0");
    }

    // Removing the oldest kept record is still a gap after the checkpoint.
    let cut = old + 2;
    let follower = raw.column(i64::try_from(cut + 2).expect("n"), "id").await;
    raw.exec(&format!("DELETE FROM audit_records WHERE chain_index = {}", cut + 1)).await;
    assert_eq!(
        verify(&app).await.outcome,
        Err(ChainBreak::Removed { from: cut + 1, missing: 1, before: Some(follower) })
    );
}

/// The bulk path (several multi-row statements per call) chains and indexes exactly like single inserts.
async fn bulk_inserts_chain_like_single_ones(backend: Backend) {
    use keyward_core::audit::{Activity, AuditContext, Initiator, TargetResource};
    use keyward_core::ids::ObjectId;

    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant_id().await;
    let context = AuditContext {
        tenant_id: tenant,
        correlation_id: "3f1c6a52-1d8e-4b47-9d0e-2a6b7c8d9e01".into(),
        at: app.app.now(),
        initiated_by: Initiator::App {
            app_id: "bulk-loader".into(),
            display_name: "Bulk".into(),
            service_principal_id: None,
        },
    };
    let target_id = ObjectId::parse("6a1f1d0e-7b1c-4c4e-8f51-000000000001").expect("id");
    let records: Vec<_> = (0..95)
        .map(|n| {
            let target = TargetResource {
                id: target_id.clone(),
                display_name: Some(format!("Bulk {n}")),
                kind: "User",
                user_principal_name: Some(format!("bulk@{DOMAIN}")),
                modified_properties: Vec::new(),
            };
            context.success(format!("Directory_bulk_{n:03}"), Activity::UpdateUser, vec![target])
        })
        .collect();
    let mut tx = app.app.store().write().await.expect("tx");
    tx.insert_audits(&records).await.expect("bulk insert");
    tx.commit().await.expect("commit");
    app.create_user("afterbulk", "After Bulk").await;

    let report = verify(&app).await;
    assert_eq!(report.outcome, Ok(()), "bulk records chain like the others");
    let page = app
        .get(&format!("/v1.0/auditLogs/directoryAudits?$filter=targetResources/any(t: t/id eq '{target_id}')&$top=999"))
        .await;
    assert_eq!(page.body["value"].as_array().map(Vec::len), Some(95), "every bulk record is indexed by target");
    let by_app = app.get("/v1.0/auditLogs/directoryAudits?$filter=initiatedBy/app/appId eq 'bulk-loader'&$top=1").await;
    assert_eq!(by_app.body["value"][0]["initiatedBy"]["app"]["appId"], "bulk-loader", "{}", by_app.text);

    // After a bulk load the hourly maintenance gives the planner statistics (on PostgreSQL an
    // ANALYZE of Keyward's tables, without waiting for autovacuum).
    app.app.store().optimize().await.expect("optimize");
    let raw = Raw::connect(&app.database_url).await;
    if let Raw::Postgres(_) = raw {
        let analyzed = raw
            .text(
                "SELECT CAST(COUNT(*) AS TEXT) FROM pg_stat_user_tables \
                 WHERE relname IN ('audit_records', 'audit_targets', 'users') AND last_analyze IS NOT NULL",
            )
            .await;
        assert_eq!(analyzed, "3");
    }
}

/// One change's few records (PostgreSQL writes them, their target rows and the chain head in one
/// statement): a record with two targets, one with none and one with a target without a user
/// principal name chain and are found by each target, as records written one by one are.
async fn a_changes_records_and_targets_are_written_together(backend: Backend) {
    use keyward_core::audit::{Activity, AuditContext, Initiator, TargetResource};
    use keyward_core::ids::ObjectId;

    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant_id().await;
    let context = AuditContext {
        tenant_id: tenant,
        correlation_id: "5d2e7b63-2e9f-4c58-8e1f-3b7c8d9e0f12".into(),
        at: app.app.now(),
        initiated_by: Initiator::App {
            app_id: "together".into(),
            display_name: "Together".into(),
            service_principal_id: None,
        },
    };
    let user = |n: u32, upn: Option<String>| TargetResource {
        id: ObjectId::parse(&format!("7b2e2e1f-8c2d-4d5f-9a62-{n:012}")).expect("id"),
        display_name: Some(format!("Target {n}")),
        kind: if upn.is_some() { "User" } else { "Group" },
        user_principal_name: upn,
        modified_properties: Vec::new(),
    };
    let records = vec![
        context.success(
            "Directory_together_1".into(),
            Activity::UpdateUser,
            vec![user(1, Some(format!("one@{DOMAIN}"))), user(2, Some(format!("two@{DOMAIN}")))],
        ),
        context.success("Directory_together_2".into(), Activity::UpdateUser, Vec::new()),
        context.success("Directory_together_3".into(), Activity::UpdateUser, vec![user(3, None)]),
    ];
    let mut tx = app.app.store().write().await.expect("tx");
    let mut records = records.into_iter();
    // A record deferred is written first with the next ones; deferred in a transaction that rolls
    // back, it is never written; deferred with nothing after it, it is written at the commit.
    tx.defer_audit(records.next().expect("first"));
    tx.insert_audits(&records.collect::<Vec<_>>()).await.expect("insert");
    tx.commit().await.expect("commit");
    let mut tx = app.app.store().write().await.expect("tx");
    tx.defer_audit(context.success("Directory_together_rolled_back".into(), Activity::UpdateUser, Vec::new()));
    tx.rollback().await.expect("rollback");
    let mut tx = app.app.store().write().await.expect("tx");
    tx.defer_audit(context.success("Directory_together_4".into(), Activity::UpdateUser, vec![user(4, None)]));
    tx.commit().await.expect("commit");
    app.create_user("aftertogether", "After Together").await;
    assert_eq!(verify(&app).await.outcome, Ok(()), "the records chain like single ones");

    let ids_for = |filter: String| {
        let app = &app;
        async move {
            let page = app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter={filter}&$top=50")).await;
            let mut ids: Vec<String> = page.body["value"]
                .as_array()
                .expect("value")
                .iter()
                .filter_map(|it| it["id"].as_str().map(str::to_owned))
                .collect();
            ids.sort();
            ids
        }
    };
    for (n, expected) in [(1, "Directory_together_1"), (2, "Directory_together_1"), (3, "Directory_together_3")] {
        let id = format!("7b2e2e1f-8c2d-4d5f-9a62-{n:012}");
        assert_eq!(
            ids_for(format!("targetResources/any(t: t/id eq '{id}')")).await,
            vec![expected.to_owned()],
            "target {n}"
        );
    }
    assert_eq!(
        ids_for(format!("targetResources/any(t: t/userPrincipalName eq 'two@{DOMAIN}')")).await,
        vec!["Directory_together_1".to_owned()]
    );
    assert_eq!(
        ids_for("initiatedBy/app/appId eq 'together'".into()).await,
        ["Directory_together_1", "Directory_together_2", "Directory_together_3", "Directory_together_4"]
            .map(str::to_owned)
            .to_vec()
    );
    let id = "7b2e2e1f-8c2d-4d5f-9a62-000000000004";
    assert_eq!(
        ids_for(format!("targetResources/any(t: t/id eq '{id}')")).await,
        vec!["Directory_together_4".to_owned()]
    );
}

/// One bulk call (several 40-record statements) whose records bring new initiators and new
/// targets in every statement: on SQLite the database's trigger starts initiator blocks while
/// Keyward starts target blocks, and no two copies may share a key or a block.
async fn bulk_inserts_give_initiators_and_targets_blocks_of_their_own(backend: Backend) {
    use keyward_core::audit::{Activity, AuditContext, Initiator, TargetResource};
    use keyward_core::audit_query::AuditFilter;
    use keyward_core::ids::ObjectId;

    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant_id().await;
    let admin = |n: usize| ObjectId::parse(&format!("6a1f1d0e-7b1c-4c4e-8f51-0000000ad{:03}", n / 40)).expect("id");
    let records: Vec<_> = (0..120)
        .map(|n| {
            let context = AuditContext {
                tenant_id: tenant.clone(),
                correlation_id: format!("3f1c6a52-1d8e-4b47-9d0e-{n:012}"),
                at: app.app.now() + std::time::Duration::from_secs(n as u64),
                initiated_by: Initiator::User {
                    id: admin(n),
                    display_name: format!("Admin {}", n / 40),
                    user_principal_name: format!("admin{}@{DOMAIN}", n / 40),
                    ip_address: None,
                },
            };
            let target = TargetResource {
                id: ObjectId::parse(&format!("6a1f1d0e-7b1c-4c4e-8f51-00000000b{n:03}")).expect("id"),
                display_name: Some(format!("Bulk {n}")),
                kind: "User",
                user_principal_name: Some(format!("bulk{n}@{DOMAIN}")),
                modified_properties: Vec::new(),
            };
            context.success(format!("Directory_blocks_{n:03}"), Activity::UpdateUser, vec![target])
        })
        .collect();
    let store = app.app.store();
    let mut tx = store.write().await.expect("tx");
    tx.insert_audits(&records).await.expect("new initiators and targets in every statement");
    tx.commit().await.expect("commit");

    for n in [0, 40, 80] {
        let filter = AuditFilter { initiator_user_id: Some(admin(n).to_string()), ..AuditFilter::default() };
        let page = store.query_audit(&tenant, &filter, None, false, 100).await.expect("page");
        let ids: Vec<String> = page.into_iter().map(|(_, it)| it.id).collect();
        let expected: Vec<String> = (n..n + 40).rev().map(|k| format!("Directory_blocks_{k:03}")).collect();
        assert_eq!(ids, expected, "admin {n}'s records, newest first");
    }
    let raw = Raw::connect(&app.database_url).await;
    if let Raw::Sqlite(_) = raw {
        let shared = raw
            .text(
                "SELECT CAST(COUNT(*) AS TEXT) FROM (SELECT copy_key >> 32 AS block FROM audit_initiators \
                 INTERSECT SELECT copy_key >> 32 FROM audit_targets)",
            )
            .await;
        assert_eq!(shared, "0", "initiators and targets never share a block");
        let copies = raw.text("SELECT CAST(COUNT(*) AS TEXT) FROM audit_copies").await;
        let rows = raw
            .text("SELECT CAST((SELECT COUNT(*) FROM audit_targets) + (SELECT COUNT(*) FROM audit_initiators) AS TEXT)")
            .await;
        assert_eq!(copies, rows, "a copy per row");
    }
    assert_eq!(verify(&app).await.outcome, Ok(()));
}

/// A target id can appear in several tenants' logs (built-in role template ids do): a tenant's
/// query by that target returns its own records only, every one of them, in order and across
/// pages, however the other tenant's records interleave.
async fn a_shared_target_lists_each_tenants_own_records(backend: Backend) {
    use keyward_core::audit::{Activity, AuditContext, Initiator, TargetResource};
    use keyward_core::audit_query::AuditFilter;
    use keyward_core::ids::ObjectId;

    let app = TestApp::spawn(backend).await;
    let store = app.app.store();
    let home = app.tenant_id().await;
    let other = ObjectId::parse("0be9c1a2-0000-4000-8000-0000000000b2").expect("id");
    let mut tx = store.write().await.expect("tx");
    app.add_tenant(&mut *tx, &other).await;
    tx.commit().await.expect("commit");
    // Helpdesk Administrator's template id, a target in every tenant's log.
    let role = "729827e3-9c14-49f7-bb1b-9608f156bbb8";
    let record = |tenant: &ObjectId, n: usize| {
        let context = AuditContext {
            tenant_id: tenant.clone(),
            correlation_id: format!("3f1c6a52-1d8e-4b47-9d0e-{n:012}"),
            at: app.app.now() + std::time::Duration::from_secs(n as u64),
            initiated_by: Initiator::App {
                app_id: "loader".into(),
                display_name: "Loader".into(),
                service_principal_id: None,
            },
        };
        let target = TargetResource {
            id: ObjectId::parse(role).expect("id"),
            display_name: Some("Helpdesk Administrator".into()),
            kind: "Role",
            user_principal_name: None,
            modified_properties: Vec::new(),
        };
        context.success(format!("Directory_shared_{n:03}"), Activity::AddMemberToRole, vec![target])
    };
    // Mostly the other tenant's records, newest among them, so any page of the target's index
    // entries holds some of both.
    for n in 0..40 {
        let mut tx = store.write().await.expect("tx");
        let tenant = if n % 4 == 0 { &home } else { &other };
        tx.insert_audits(&[record(tenant, n)]).await.expect("insert");
        tx.commit().await.expect("commit");
    }
    let filter = AuditFilter { target_id: Some(role.into()), ..AuditFilter::default() };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.query_audit(&home, &filter, after.as_ref(), false, 3).await.expect("page");
        assert!(page.iter().all(|(_, it)| it.tenant_id == home), "only the home tenant's records");
        seen.extend(page.iter().map(|(_, it)| it.id.clone()));
        match page.last() {
            Some((cursor, _)) if page.len() == 3 => after = Some(cursor.clone()),
            _ => break,
        }
    }
    let expected: Vec<String> =
        (0..40).rev().filter(|n| n % 4 == 0).map(|n| format!("Directory_shared_{n:03}")).collect();
    assert_eq!(seen, expected, "all ten, newest first, none twice");
    let others = store.query_audit(&other, &filter, None, true, 100).await.expect("other tenant");
    assert_eq!(others.len(), 30, "the other tenant sees its own thirty");
    assert_eq!(others[0].1.id, "Directory_shared_001", "oldest first when asked");

    // SQLite: each tenant's copies of the target's records take consecutive keys in a block of
    // their own; a target whose block is used up continues in a new one, and nothing is lost.
    let raw = Raw::connect(&app.database_url).await;
    if let Raw::Sqlite(_) = raw {
        let keys = |tenant: &ObjectId| {
            format!(
                "SELECT group_concat(copy_key, ',') FROM (SELECT copy_key FROM audit_targets WHERE tenant_id = '{tenant}' \
                 AND target_id = '{role}' ORDER BY activity_date_time, audit_seq)"
            )
        };
        let parse = |text: String| text.split(',').map(|it| it.parse::<i64>().expect("key")).collect::<Vec<_>>();
        let (home_keys, other_keys) = (parse(raw.text(&keys(&home)).await), parse(raw.text(&keys(&other)).await));
        for run in [&home_keys, &other_keys] {
            assert!(run.windows(2).all(|it| it[1] == it[0] + 1), "consecutive: {run:?}");
        }
        assert_ne!(home_keys[0] >> 32, other_keys[0] >> 32, "a block per tenant's target");
        // Move the home tenant's newest copy to the last key of its block.
        let newest = *home_keys.last().expect("ten");
        let end = ((newest >> 32) << 32) + 0xffff_ffff;
        raw.exec(&format!("UPDATE audit_copies SET key = {end} WHERE key = {newest}")).await;
        raw.exec(&format!("UPDATE audit_targets SET copy_key = {end} WHERE copy_key = {newest}")).await;
        for (tenant, n) in [(&home, 40), (&other, 41), (&home, 44)] {
            let mut tx = store.write().await.expect("tx");
            tx.insert_audits(&[record(tenant, n)]).await.expect("insert after a full block");
            tx.commit().await.expect("commit");
        }
        let home_after = parse(raw.text(&keys(&home)).await);
        let largest = parse(raw.text("SELECT CAST(max(key) AS TEXT) FROM audit_copies").await)[0];
        assert_eq!(&home_after[..10], &[&home_keys[..9], &[end]].concat()[..]);
        assert_eq!(home_after[10] >> 32, (largest >> 32), "a new block, after every other");
        assert_eq!(home_after[11], home_after[10] + 1, "and the target continues in it");
        assert_eq!(*parse(raw.text(&keys(&other)).await).last().expect("31"), other_keys.last().expect("30") + 1);
        let page = store.query_audit(&home, &filter, None, false, 3).await.expect("page");
        let ids: Vec<&str> = page.iter().map(|(_, it)| it.id.as_str()).collect();
        assert_eq!(ids, ["Directory_shared_044", "Directory_shared_040", "Directory_shared_036"]);
        let reports = app.app.verify_audit_chains(&mut |_, _| {}).await.expect("verification runs");
        assert_eq!(reports.len(), 2);
        assert!(reports.iter().all(|it| it.outcome.is_ok()), "both tenants' chains verify");
    }
}

/// Schemas 7 and 8 give each target row its record's time and tenant (and on SQLite a copy of the
/// record), schema 9 gives each record an initiator row with a copy (SQLite): a database written
/// before them keeps every record findable by target and by initiator, in the same order, and its
/// chain still verifies.
async fn target_and_initiator_rows_upgrade_from_schema_6(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let raw = Raw::connect(&app.database_url).await;
    let users = create_concurrently(&app, 3).await;
    for title in ["Analyst", "Lead"] {
        app.patch(&format!("/v1.0/users/{}", users[0]), &json!({"jobTitle": title})).await;
    }
    let by_target = format!("/v1.0/auditLogs/directoryAudits?$filter=targetResources/any(t: t/id eq '{}')", users[0]);
    let before = app.get(&by_target).await.text;
    let admin = raw.text("SELECT initiator_id FROM audit_records WHERE initiator_id IS NOT NULL LIMIT 1").await;
    let by_initiator = format!("/v1.0/auditLogs/directoryAudits?$filter=initiatedBy/user/id eq '{admin}'&$top=3");
    let initiated_before = app.get(&by_initiator).await.text;
    assert!(initiated_before.contains(&admin), "{initiated_before}");
    // An app with a service principal as initiator, additional details and a property without an
    // old value: every shape the upgrade's SQL turns into a copy (verification reads it back).
    {
        use keyward_core::audit::{Activity, AuditContext, Initiator, TargetResource};
        use keyward_core::directory::PropertyChange;
        use keyward_core::ids::ObjectId;
        let tenant = app.tenant_id().await;
        let context = AuditContext {
            tenant_id: tenant,
            correlation_id: "3f1c6a52-1d8e-4b47-9d0e-2a6b7c8d9e09".into(),
            at: app.app.now(),
            initiated_by: Initiator::App {
                app_id: "sync-agent".into(),
                display_name: "Sync \"agent\" \u{e9}".into(),
                service_principal_id: Some(ObjectId::parse("6a1f1d0e-7b1c-4c4e-8f51-0000000000a9").expect("id")),
            },
        };
        let target = TargetResource {
            id: ObjectId::parse(&users[1]).expect("id"),
            display_name: None,
            kind: "User",
            user_principal_name: None,
            modified_properties: vec![PropertyChange {
                name: "Department".into(),
                old_value: None,
                new_value: Some("[\"Ops\"]".into()),
            }],
        };
        let mut record = context.success("Directory_sync_1".into(), Activity::UpdateUser, vec![target]);
        record.additional_details.push(("Sync".into(), "delta\n1".into()));
        let mut tx = app.app.store().write().await.expect("tx");
        tx.insert_audits(&[record]).await.expect("insert");
        tx.commit().await.expect("commit");
    }

    // Sign-ins of users[2]: interactive and failed, then non-interactive and successful.
    let sign_in_ids = ["7d0c1a52-0000-4000-8000-000000000001", "7d0c1a52-0000-4000-8000-000000000002"];
    {
        use keyward_core::ids::ObjectId;
        use keyward_core::signin::SignInRecord;
        let user = ObjectId::parse(&users[2]).expect("id");
        let tenant = app.tenant_id().await;
        let mut tx = app.app.store().write().await.expect("tx");
        let mut records = Vec::new();
        for (n, id) in sign_in_ids.iter().enumerate() {
            records.push(SignInRecord {
                id: (*id).into(),
                tenant_id: tenant.clone(),
                created: app.app.now() + time::Duration::seconds(i64::try_from(n).expect("n")),
                user_id: Some(user.clone()),
                user_principal_name: "someone@example.test".into(),
                user_display_name: None,
                app_id: "app".into(),
                app_display_name: "App".into(),
                ip_address: None,
                correlation_id: "c".into(),
                error_code: if n == 0 { 50126 } else { 0 },
                failure_reason: None,
                is_multi_factor: false,
                requirement_policies: Vec::new(),
                details: Vec::new(),
                client_app_used: "Browser".into(),
                is_interactive: n == 0,
                service_principal_id: None,
                protocol: "none".into(),
                client_credential: "none".into(),
                incoming_token: "none".into(),
                user_agent: None,
            });
        }
        // Both in one statement, as the sign-in log's writer writes a batch.
        tx.insert_sign_ins(&records.iter().collect::<Vec<_>>()).await.expect("insert");
        tx.commit().await.expect("commit");
    }
    // A record leaves out what its row's columns hold; an older Keyward wrote those fields into
    // the record too, and such a record must still read back (below, after the upgrade).
    let stored = raw.text(&format!("SELECT record FROM sign_ins WHERE id = '{}'", sign_in_ids[0])).await;
    for field in ["\"id\"", "\"tenant_id\"", "\"created\"", "\"user_id\"", "\"error_code\""] {
        assert!(!stored.contains(field), "{field} in {stored}");
    }
    // The fields the record now leaves out, added where missing (a record's own keys stay).
    let whole = match raw {
        Raw::Sqlite(_) => {
            "json_insert(record, '$.id', id, '$.tenant_id', tenant_id, '$.created', created_at, \
             '$.user_id', user_id, '$.error_code', error_code, '$.user_display_name', NULL, \
             '$.ip_address', NULL, '$.failure_reason', NULL, '$.requirement_policies', json('[]'), \
             '$.details', json('[]'), '$.protocol', 'none', '$.client_credential', 'none', \
             '$.incoming_token', 'none')"
        }
        Raw::Postgres(_) => {
            "(jsonb_build_object('id', id, 'tenant_id', tenant_id, 'created', created_at, 'user_id', user_id, \
             'error_code', error_code, 'user_display_name', NULL::text, 'ip_address', NULL::text, \
             'failure_reason', NULL::text, 'requirement_policies', '[]'::jsonb, 'details', '[]'::jsonb, \
             'protocol', 'none', 'client_credential', 'none', 'incoming_token', 'none') || record::jsonb)::text"
        }
    };
    raw.exec(&format!("UPDATE sign_ins SET record = {whole}")).await;
    let old = raw.text(&format!("SELECT record FROM sign_ins WHERE id = '{}'", sign_in_ids[0])).await;
    for field in ["\"id\"", "\"error_code\"", "\"user_display_name\"", "\"protocol\"", "\"details\""] {
        assert!(old.contains(field), "written as before, {field} missing: {old}");
    }

    // Put the target rows back in schema 6's shape, as a database written by an older Keyward.
    let downgrade: &[&str] = match raw {
        Raw::Sqlite(_) => &[
            "DROP TRIGGER audit_initiators_follow_records",
            "DROP VIEW audit_record_copies",
            "DROP TABLE audit_initiators",
            "CREATE INDEX audit_records_initiator ON audit_records(tenant_id, initiator_id, activity_date_time, seq)",
            "CREATE TABLE audit_targets_v6 (audit_seq INTEGER NOT NULL REFERENCES audit_records(seq) ON DELETE CASCADE, \
             target_id TEXT NOT NULL, target_upn_lc TEXT, PRIMARY KEY (target_id, audit_seq))",
            "INSERT INTO audit_targets_v6 SELECT audit_seq, target_id, target_upn_lc FROM audit_targets",
            "DROP TABLE audit_targets",
            "DROP TABLE audit_copies",
            "ALTER TABLE audit_targets_v6 RENAME TO audit_targets",
            "CREATE INDEX audit_targets_upn ON audit_targets(target_upn_lc, audit_seq)",
        ],
        Raw::Postgres(_) => &[
            "ALTER TABLE audit_targets DROP CONSTRAINT audit_targets_pkey",
            "ALTER TABLE audit_targets DROP COLUMN activity_date_time",
            "ALTER TABLE audit_targets DROP COLUMN tenant_id",
            // Dropping the columns dropped the index that held them.
            "ALTER TABLE audit_targets ADD PRIMARY KEY (target_id, audit_seq)",
            "CREATE INDEX audit_targets_upn ON audit_targets(target_upn_lc, audit_seq)",
        ],
    };
    for statement in downgrade {
        raw.exec(statement).await;
    }
    // Schema 10's tables did not exist then either.
    for table in ["oauth2_permission_grants", "authorization_policies", "client_assertion_jtis"] {
        raw.exec(&format!("DROP TABLE {table}")).await;
    }
    raw.exec("ALTER TABLE temporary_access_passes DROP COLUMN ends_at_registration").await;
    if matches!(raw, Raw::Sqlite(_)) {
        raw.exec("CREATE INDEX audit_targets_seq ON audit_targets(audit_seq)").await;
    }
    raw.exec("ALTER TABLE browser_sessions DROP COLUMN portal_seen_at").await;
    // Nor schema 12's partial indexes.
    raw.exec("DROP INDEX users_disabled").await;
    raw.exec("DROP INDEX users_enabled_without_password").await;
    // Nor schema 13's sign-in kinds and activity.
    raw.exec("DROP TABLE user_sign_in_activity").await;
    raw.exec("ALTER TABLE sign_ins DROP COLUMN event_type").await;
    raw.exec("ALTER TABLE user_sign_in_state DROP COLUMN preferred_secondary_method").await;
    raw.exec("ALTER TABLE user_sign_in_state DROP COLUMN system_preferred_enabled").await;
    // Nor schema 14's methods policy and campaign snoozes.
    raw.exec("DROP TABLE authentication_methods_policies").await;
    raw.exec("ALTER TABLE user_sign_in_state DROP COLUMN campaign_snoozes").await;
    raw.exec("ALTER TABLE user_sign_in_state DROP COLUMN campaign_snoozed_until").await;
    // Nor schema 15's passkeys.
    raw.exec("DROP TABLE fido2_methods").await;
    raw.exec("DROP TABLE webauthn_challenges").await;
    // Nor schema 38's index of revoked refresh-token families.
    raw.exec("DROP INDEX refresh_tokens_family_revoked").await;
    // Nor schema 33's client versions and the triggers that replace them.
    match raw {
        Raw::Sqlite(_) => {
            let tables = ["applications", "application_credentials", "service_principals", "role_assignments"];
            for table in tables.into_iter().chain(["role_eligibilities", "group_members", "directory_groups"]) {
                for change in ["insert", "update", "delete"] {
                    raw.exec(&format!("DROP TRIGGER {table}_{change}_client_version")).await;
                }
            }
        }
        Raw::Postgres(_) => raw.exec("DROP FUNCTION client_version_moves() CASCADE").await,
    }
    raw.exec("DROP TABLE client_versions").await;
    // Nor schema 32's deleted applications.
    raw.exec("DROP TABLE deleted_application_credentials").await;
    raw.exec("DROP TABLE deleted_applications").await;
    raw.exec("DROP INDEX refresh_tokens_client").await;
    // Nor schema 31's activated directory roles.
    raw.exec("DROP TABLE activated_directory_roles").await;
    // Nor schema 30's record of the client's authentication with a refresh token.
    raw.exec("ALTER TABLE refresh_tokens DROP COLUMN client_authenticated").await;
    // Nor schema 29's indexes of the keys deleted with a user (the grants' go with their table,
    // schema 10's).
    for index in ["browser_sessions_user", "authorization_codes_user", "refresh_tokens_user", "device_codes_user"] {
        raw.exec(&format!("DROP INDEX {index}")).await;
    }
    // Nor schema 28's index of users by tenant and id.
    raw.exec("DROP INDEX users_tenant_id").await;
    // Nor schema 27's caller verification.
    raw.exec("DROP TABLE caller_verifications").await;
    raw.exec("DROP TABLE caller_verification_policy").await;
    // Nor schema 26's bulk operations.
    raw.exec("DROP TABLE bulk_items").await;
    raw.exec("DROP TABLE bulk_jobs").await;
    // Nor schema 25's dual control.
    raw.exec("DROP TABLE service_desk_requests").await;
    raw.exec("DROP TABLE dual_control_policy").await;
    // Nor schema 24's notification outbox.
    raw.exec("DROP TABLE notification_outbox").await;
    // Nor schema 23's just-in-time roles.
    for table in ["role_settings", "role_schedule_requests", "role_eligibilities"] {
        raw.exec(&format!("DROP TABLE {table}")).await;
    }
    raw.exec("DROP INDEX role_assignments_ending").await;
    raw.exec("DROP INDEX role_assignments_activated").await;
    for column in ["start_at", "end_at", "activated_using"] {
        raw.exec(&format!("ALTER TABLE role_assignments DROP COLUMN {column}")).await;
    }
    // Nor schema 22's per-agent limits.
    raw.exec("DROP TABLE agent_actions").await;
    raw.exec("DROP TABLE agent_limits").await;
    // Nor schema 20's deleted unit memberships.
    raw.exec("DROP TABLE deleted_administrative_unit_members").await;
    // Nor schema 19's application uniqueName.
    raw.exec("DROP INDEX applications_unique_name").await;
    raw.exec("ALTER TABLE applications DROP COLUMN unique_name").await;
    raw.exec("ALTER TABLE applications DROP COLUMN unique_name_lc").await;
    // Nor schema 18's deleted groups.
    for table in ["deleted_directory_groups", "deleted_group_members", "deleted_group_owners"] {
        raw.exec(&format!("DROP TABLE {table}")).await;
    }
    // Nor schema 17's deleted items.
    for table in [
        "deleted_items",
        "deleted_users",
        "deleted_user_values",
        "deleted_user_sign_in_state",
        "deleted_software_oath_methods",
        "deleted_phone_methods",
        "deleted_email_methods",
        "deleted_fido2_methods",
    ] {
        raw.exec(&format!("DROP TABLE {table}")).await;
    }
    // Nor schema 16's user profile.
    raw.exec("DROP INDEX users_manager").await;
    raw.exec("DROP INDEX users_employee_id").await;
    let columns = concat!(
        "age_group age_group_lc city city_lc company_name company_name_lc ",
        "consent_provided_for_minor consent_provided_for_minor_lc country country_lc ",
        "creation_type creation_type_lc employee_id employee_id_lc employee_type employee_type_lc ",
        "external_user_state external_user_state_lc fax_number fax_number_lc office_location ",
        "office_location_lc password_policies password_policies_lc postal_code postal_code_lc ",
        "preferred_language preferred_language_lc state state_lc street_address street_address_lc ",
        "user_type user_type_lc employee_hire_date password_changed_at on_premises_sync_enabled ",
        "manager_id ",
    );
    for column in columns.split_whitespace() {
        raw.exec(&format!("ALTER TABLE users DROP COLUMN {column}")).await;
    }
    raw.exec("DELETE FROM schema_migrations WHERE version >= 7").await;

    let store = keyward_store::open(&app.database_url).await.expect("the upgrade applies");
    let latest = i64::try_from(keyward_store::MIGRATIONS_SQLITE.len()).expect("count");
    assert_eq!(store.schema_version().await.expect("version"), latest);
    store.close().await;
    // A deleted object's rows move between a table and its `deleted_` copy with `INSERT … SELECT *`,
    // so the two must have the same columns in the same order once every migration has run.
    for table in [
        "users",
        "user_values",
        "user_sign_in_state",
        "software_oath_methods",
        "phone_methods",
        "email_methods",
        "fido2_methods",
        "directory_groups",
        "group_members",
        "group_owners",
        "administrative_unit_members",
        "applications",
        "application_credentials",
    ] {
        let live = raw.columns(table).await;
        assert!(live.contains("id"), "{table}: {live}");
        assert_eq!(raw.columns(&format!("deleted_{table}")).await, live, "deleted_{table} differs from {table}");
    }
    let untimed = raw
        .text(
            "SELECT CAST(COUNT(*) AS TEXT) FROM audit_targets t JOIN audit_records r ON r.seq = t.audit_seq \
                            WHERE t.activity_date_time <> r.activity_date_time OR t.tenant_id <> r.tenant_id",
        )
        .await;
    assert_eq!(untimed, "0", "every target row carries its record's time and tenant");
    if let Raw::Sqlite(_) = raw {
        let copies = raw
            .text(
                "SELECT CAST(COUNT(*) AS TEXT) FROM audit_targets t JOIN audit_records r ON r.seq = t.audit_seq \
                 JOIN audit_copies c ON c.key = t.copy_key \
                 WHERE c.record = json_remove(r.record, '$.tenant_id', '$.activity_date_time')",
            )
            .await;
        let rows = raw.text("SELECT CAST(COUNT(*) AS TEXT) FROM audit_targets").await;
        assert_eq!(copies, rows, "every target row points at a copy of its record");
        // A target's (an initiator's) copies have consecutive keys, oldest first, in a block of its own.
        let runs_and_owners = |table: &str, column: &str| {
            let raw = &raw;
            let (runs, owners) = (
                format!(
                    "SELECT CAST(COUNT(DISTINCT start) AS TEXT) FROM (SELECT copy_key - row_number() OVER \
                     (PARTITION BY tenant_id, {column} ORDER BY activity_date_time, audit_seq) AS start FROM {table})"
                ),
                format!("SELECT CAST(COUNT(DISTINCT {column}) AS TEXT) FROM {table}"),
            );
            async move { (raw.text(&runs).await, raw.text(&owners).await) }
        };
        let (runs, targets) = runs_and_owners("audit_targets", "target_id").await;
        assert_eq!(runs, targets, "one run of keys per target");

        // Every record with an initiator has one initiator row, with a copy in the positional
        // format (verification, below, reads every copy back and compares it with its record); an
        // initiator's copies have consecutive keys in a block of their own, after the targets' blocks.
        let copies = raw
            .text(
                "SELECT CAST(COUNT(*) AS TEXT) FROM audit_initiators i JOIN audit_records r ON r.seq = i.audit_seq \
                 JOIN audit_copies c ON c.key = i.copy_key WHERE i.tenant_id = r.tenant_id \
                 AND i.initiator_id = r.initiator_id AND i.activity_date_time = r.activity_date_time \
                 AND json_type(c.record) = 'array' AND c.record ->> '$[0]' = r.id",
            )
            .await;
        let initiated =
            raw.text("SELECT CAST(COUNT(*) AS TEXT) FROM audit_records WHERE initiator_id IS NOT NULL").await;
        assert_eq!(copies, initiated, "every record with an initiator has an initiator row and a copy");
        assert_eq!(raw.text("SELECT CAST(COUNT(*) AS TEXT) FROM audit_initiators").await, initiated);
        let (runs, initiators) = runs_and_owners("audit_initiators", "initiator_id").await;
        assert_eq!(runs, initiators, "one run of keys per initiator");
        let overlap = raw
            .text(
                "SELECT CAST(COUNT(*) AS TEXT) FROM audit_initiators WHERE copy_key >> 32 <= \
                 (SELECT max(copy_key >> 32) FROM audit_targets)",
            )
            .await;
        assert_eq!(overlap, "0", "initiators' blocks come after the targets' blocks");
    }
    assert_eq!(app.get(&by_target).await.text, before, "the same records, in the same order");
    assert_eq!(app.get(&by_initiator).await.text, initiated_before, "the same records by initiator, in the same order");
    assert_eq!(verify(&app).await.outcome, Ok(()));
    // The sign-in log's kinds and each user's activity are read from the log already written.
    let activity = app.get(&format!("/v1.0/users/{}?$select=signInActivity", users[2])).await;
    let activity = &activity.body["signInActivity"];
    assert_eq!(activity["lastSignInRequestId"], sign_in_ids[0], "{activity}");
    assert_eq!(activity["lastNonInteractiveSignInRequestId"], sign_in_ids[1]);
    assert_eq!(activity["lastSuccessfulSignInRequestId"], sign_in_ids[1]);
    let non_interactive =
        app.get("/beta/auditLogs/signIns?$filter=signInEventTypes/any(t: t eq 'nonInteractiveUser')").await;
    let ids: Vec<&Value> =
        non_interactive.body["value"].as_array().expect("value").iter().map(|it| &it["id"]).collect();
    assert_eq!(ids, vec![&json!(sign_in_ids[1])], "{}", non_interactive.text);
    // A record written whole, as before, reads back from its columns.
    let failed = app.get(&format!("/v1.0/auditLogs/signIns/{}", sign_in_ids[0])).await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.text);
    assert_eq!(failed.body["id"], sign_in_ids[0]);
    assert_eq!(failed.body["userId"], users[2].as_str());
    assert_eq!(failed.body["status"]["errorCode"], 50126);
    let listed = app.get(&format!("/v1.0/auditLogs/signIns?$filter=userId eq '{}'", users[2])).await;
    let codes: Vec<&Value> =
        listed.body["value"].as_array().expect("value").iter().map(|it| &it["status"]["errorCode"]).collect();
    assert_eq!(codes, vec![&json!(0), &json!(50126)], "{}", listed.text);
}

keyward_testkit::on_both_backends!(
    tampering_is_detected,
    retention_cuts_the_chain_and_keeps_it_verifiable,
    bulk_inserts_chain_like_single_ones,
    a_changes_records_and_targets_are_written_together,
    bulk_inserts_give_initiators_and_targets_blocks_of_their_own,
    a_shared_target_lists_each_tenants_own_records,
    target_and_initiator_rows_upgrade_from_schema_6
);
