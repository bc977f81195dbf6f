//! Bulk operations run by the server (issue 22, item 5): a dry run reports who would be changed,
//! who is already in the target state and who would be refused and why, and changes nothing; a
//! real run changes each user once through the same use case as Graph (audited per user, plus a
//! summary record); a run cut short on one node is finished by another, no user done twice, none
//! skipped.

use keyward_core::authz::roles;
use keyward_testkit::{Backend, DOMAIN, TestApp, assert_graph_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const BULK: &str = "/beta/keyward/bulkOperations";

async fn person(app: &TestApp, alias: &str, role: Option<&str>, with_phone: bool) -> String {
    let user = app.create_user(alias, &format!("{alias} Test")).await;
    let id = user["id"].as_str().expect("id").to_owned();
    if let Some(role) = role {
        app.assign_role(&id, role, "/").await;
    }
    if with_phone {
        let phone = json!({"phoneNumber": "+1 2065550100", "phoneType": "mobile"});
        let added = app.post(&format!("/v1.0/users/{id}/authentication/phoneMethods"), &phone).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    }
    id
}

/// A Privileged Authentication Administrator (id and authenticated caller), four users with a
/// phone, and a request to require their re-registration.
async fn desk_and_four_users(
    app: &TestApp,
) -> (String, keyward_app::Caller, Vec<String>, keyward_app::bulk::BulkRequest) {
    let desk_id = person(app, "desk", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR), false).await;
    let desk = app.token_for(&format!("desk@{DOMAIN}")).await;
    let meta = keyward_app::RequestMeta { correlation_id: "bulk-desk".into(), ip_address: None, user_agent: None };
    let desk = app.app.authenticate(Some(&desk), meta).await.expect("desk");
    let mut users = Vec::new();
    for n in 0..4 {
        users.push(person(app, &format!("s{n}"), None, true).await);
    }
    let request = keyward_app::bulk::BulkRequest {
        operation: keyward_core::bulk::Operation::RequireReregistration,
        source: keyward_app::bulk::Source::Users(users.clone()),
        dry_run: false,
    };
    (desk_id, desk, users, request)
}

fn results(body: &Value) -> Vec<(String, String)> {
    body["results"]
        .as_array()
        .or_else(|| body["value"].as_array())
        .expect("results")
        .iter()
        .map(|it| {
            (it["user"].as_str().unwrap_or_default().to_owned(), it["result"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// How many `Update user` records changed `user`'s MFA methods.
async fn reregistrations(app: &TestApp, user: &str) -> usize {
    app.audit_for(user)
        .await
        .iter()
        .filter(|it| {
            it.activity_display_name == "Update user"
                && it.target_resources.iter().any(|target| {
                    target.modified_properties.iter().any(|change| change.name == "StrongAuthenticationMethod")
                })
        })
        .count()
}

async fn bulk_dry_run_then_the_real_run(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let desk_id = person(&app, "desk", Some(roles::AUTHENTICATION_ADMINISTRATOR), false).await;
    let desk = app.token_for(&format!("desk@{DOMAIN}")).await;
    let quiet = person(&app, "u0", None, false).await;
    let mut phoned = Vec::new();
    for n in 1..5 {
        phoned.push(person(&app, &format!("u{n}"), None, true).await);
    }
    let boss = person(&app, "boss", Some(roles::SECURITY_ADMINISTRATOR), true).await;
    // A group with u0…u3 and the boss, and a nested group with u4.
    let bind = |ids: &[&String]| -> Vec<String> {
        ids.iter().map(|id| format!("{}/v1.0/directoryObjects/{id}", app.base_url)).collect()
    };
    let inner = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Nested", "mailEnabled": false, "mailNickname": "nested", "securityEnabled": true,
                    "members@odata.bind": bind(&[&phoned[3]])}),
        )
        .await;
    let inner_id = inner.body["id"].as_str().expect("group").to_owned();
    let members = bind(&[&quiet, &phoned[0], &phoned[1], &phoned[2], &boss, &inner_id]);
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Sales", "mailEnabled": false, "mailNickname": "sales", "securityEnabled": true,
                    "members@odata.bind": members}),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let group_id = group.body["id"].as_str().expect("group").to_owned();

    // Bad requests change nothing and say what to fix.
    for bad in [
        json!({"operation": "deleteEveryone", "users": {"groupId": group_id}}),
        json!({"operation": "requireMfaReregistration"}),
        json!({"operation": "requireMfaReregistration", "users": {"groupId": group_id, "filter": "x"}}),
        json!({"operation": "requireMfaReregistration", "users": {"csv": "name\nx\n"}}),
        json!({"operation": "setPerUserMfa", "users": {"ids": ["u0@contoso.test"]}}),
        json!({"operation": "requireMfaReregistration", "users": {"ids": []}}),
        json!({"operation": "requireMfaReregistration", "users": {"ids": [1]}}),
        json!({"operation": "requireMfaReregistration", "users": {"groupId": group_id}, "dryRun": "yes"}),
        json!({"operation": "requireMfaReregistration", "users": {"groupId": group_id}, "colour": "blue"}),
    ] {
        let reply = app.as_user(&desk).post(BULK, &bad).await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    let nowhere =
        json!({"operation": "requireMfaReregistration", "users": {"groupId": "00000000-0000-0000-0000-0000000000aa"}});
    assert_graph_error(
        &app.as_user(&desk).post(BULK, &nowhere).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    let anonymous = app.send(Method::POST, BULK, None, Some(&nowhere), &[]).await;
    assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");

    // The dry run: who would change, who is already done, who would be refused and why.
    let records_before =
        app.get("/v1.0/auditLogs/directoryAudits?$top=999").await.body["value"].as_array().map(Vec::len);
    let ask = json!({"operation": "requireMfaReregistration", "users": {"groupId": group_id}, "dryRun": true});
    let dry = app.as_user(&desk).post(BULK, &ask).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.text);
    assert_eq!((&dry.body["status"], &dry.body["id"]), (&json!("dryRun"), &Value::Null));
    let outcomes = results(&dry.body);
    let of = |id: &str| outcomes.iter().find(|(user, _)| user == id).map(|(_, it)| it.clone()).unwrap_or_default();
    assert_eq!(of(&quiet), "already", "{}", dry.text);
    for id in &phoned {
        assert_eq!(of(id), "wouldChange", "nested members too: {}", dry.text);
    }
    assert_eq!(of(&boss), "refused", "{}", dry.text);
    let refusal = dry.body["results"].as_array().expect("results").iter().find(|it| it["user"] == boss.as_str());
    assert!(
        refusal.and_then(|it| it["detail"].as_str()).is_some_and(|it| it.contains("Insufficient privileges")),
        "{}",
        dry.text
    );
    assert_eq!(dry.body["summary"]["wouldChange"], 4, "{}", dry.text);
    let records_after =
        app.get("/v1.0/auditLogs/directoryAudits?$top=999").await.body["value"].as_array().map(Vec::len);
    assert_eq!(records_before, records_after, "a dry run writes no audit record");
    let phones = app.get(&format!("/v1.0/users/{}/authentication/phoneMethods", phoned[0])).await;
    assert_eq!(phones.body["value"].as_array().map(Vec::len), Some(1), "a dry run changes nothing");
    // A user the caller may not change shows nothing of their state: a Security Administrator
    // with no method is refused, not reported as already done.
    let bare = person(&app, "bare", Some(roles::SECURITY_ADMINISTRATOR), false).await;
    let probe = json!({"operation": "requireMfaReregistration", "users": {"ids": [bare]}, "dryRun": true});
    let probed = app.as_user(&desk).post(BULK, &probe).await;
    assert_eq!(results(&probed.body), vec![(bare.clone(), "refused".to_owned())], "{}", probed.text);

    // The real run: 202, done in the background, each user once, audited per user and in sum.
    let ask = json!({"operation": "requireMfaReregistration", "users": {"groupId": group_id}});
    let started = app.as_user(&desk).post(BULK, &ask).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text);
    let location = started.headers.get("location").and_then(|it| it.to_str().ok()).expect("Location").to_owned();
    let id = started.body["id"].as_str().expect("id").to_owned();
    assert_eq!(location, format!("{}{BULK}/{id}", app.base_url));
    let mut job = Value::Null;
    for _ in 0..100 {
        job = app.as_user(&desk).get(&format!("{BULK}/{id}")).await.body;
        if job["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        (&job["summary"]["done"], &job["summary"]["already"], &job["summary"]["refused"], &job["summary"]["pending"]),
        (&json!(4), &json!(1), &json!(1), &json!(0)),
        "{job}"
    );
    for user in &phoned {
        assert_eq!(reregistrations(&app, user).await, 1, "each user once");
    }
    assert_eq!(reregistrations(&app, &boss).await, 0, "the refused one unchanged");
    let boss_phones = app.get(&format!("/v1.0/users/{boss}/authentication/phoneMethods")).await;
    assert_eq!(boss_phones.body["value"].as_array().map(Vec::len), Some(1));
    let refused =
        app.audit_for(&boss).await.into_iter().find(|it| it.result == keyward_core::audit::AuditResult::Failure);
    assert!(refused.is_some(), "the refusal is audited as it is alone");
    let summary =
        app.get("/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Complete bulk operation'").await;
    let summary = &summary.body["value"][0];
    assert_eq!(summary["initiatedBy"]["user"]["id"], desk_id.as_str(), "{summary}");
    let details = summary["additionalDetails"].to_string();
    assert!(details.contains(&id) && details.contains("Count.done") && details.contains("group 'Sales'"), "{details}");
    // Per-user results, paged; for the caller and audit readers only.
    let page = app.as_user(&desk).get(&format!("{BULK}/{id}/results?$top=4")).await;
    assert_eq!(page.body["value"].as_array().map(Vec::len), Some(4), "{}", page.text);
    let next = page.body["@odata.nextLink"].as_str().expect("next page").to_owned();
    let rest = app.as_user(&desk).get(&next).await;
    assert_eq!(rest.body["value"].as_array().map(Vec::len), Some(2), "{}", rest.text);
    let (_, other) = (
        person(&app, "other", Some(roles::HELPDESK_ADMINISTRATOR), false).await,
        app.token_for(&format!("other@{DOMAIN}")).await,
    );
    assert_graph_error(
        &app.as_user(&other).get(&format!("{BULK}/{id}")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    assert_eq!(app.get(&format!("{BULK}/{id}")).await.status, StatusCode::OK, "a Global Administrator reads it");

    // Other sources and operations: a $filter, a CSV (an unknown user fails, the rest goes on),
    // roles assigned and removed.
    let filtered = app
        .post(
            BULK,
            &json!({"operation": "setPerUserMfa", "perUserMfaState": "enforced",
                            "users": {"filter": "startswith(displayName,'u')"}, "dryRun": true}),
        )
        .await;
    assert_eq!(filtered.body["summary"]["wouldChange"], 5, "{}", filtered.text);
    let csv = format!("userPrincipalName,note\nu1@{DOMAIN},first\nnobody@{DOMAIN},x\n");
    let role = roles::HELPDESK_ADMINISTRATOR;
    let assign = json!({"operation": "assignRole", "roleDefinitionId": role, "users": {"csv": csv}});
    let started = app.post(BULK, &assign).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text);
    let id = started.body["id"].as_str().expect("id").to_owned();
    let mut job = Value::Null;
    for _ in 0..100 {
        job = app.get(&format!("{BULK}/{id}")).await.body;
        if job["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!((&job["summary"]["done"], &job["summary"]["failed"]), (&json!(1), &json!(1)), "{job}");
    let held = app
        .get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{}'", phoned[0]))
        .await;
    assert_eq!(held.body["value"].as_array().map(Vec::len), Some(1), "{}", held.text);
    let again = app
        .post(
            BULK,
            &json!({"operation": "assignRole", "roleDefinitionId": role, "users": {"csv": csv}, "dryRun": true}),
        )
        .await;
    assert_eq!(again.body["summary"]["already"], 1, "{}", again.text);
    let remove = app.post(BULK, &json!({"operation": "removeRole", "roleDefinitionId": role, "users": {"ids": [phoned[0]]}, "dryRun": true})).await;
    assert_eq!(remove.body["summary"]["wouldChange"], 1, "{}", remove.text);
}

/// A run cut short (its node stopped after two users) is taken over by another node once the
/// lease lapses: every user is changed exactly once.
async fn a_bulk_run_cut_short_is_finished_by_another_node(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut users = Vec::new();
    for n in 0..6 {
        users.push(person(&app, &format!("r{n}"), None, true).await);
    }
    let meta = keyward_app::RequestMeta { correlation_id: "bulk-test".into(), ip_address: None, user_agent: None };
    let caller = app.app.authenticate(Some(&app.admin_token), meta).await.expect("caller");
    let request = keyward_app::bulk::BulkRequest {
        operation: keyward_core::bulk::Operation::RequireReregistration,
        source: keyward_app::bulk::Source::Users(users.clone()),
        dry_run: false,
    };
    let started = app.app.start_bulk(&caller, request).await.expect("started");
    let job = started.job.id.clone().expect("a real run has an id");
    assert!(!app.app.run_bulk(&caller.tenant, &job, Some(2)).await.expect("two users"), "cut short");
    let view = app.app.get_bulk(&caller, job.as_str()).await.expect("job");
    assert_eq!((view.status, view.counts[2], view.counts[0]), ("running", 2, 4), "two done, four pending");

    // The first node is gone. Another waits for its lease to lapse, then finishes the job.
    let other = app.second_node().await;
    assert!(!other.resume_bulk_jobs().await.expect("look"), "the lease still holds");
    app.clock.advance(time::Duration::minutes(3));
    assert!(other.resume_bulk_jobs().await.expect("take over"), "taken over");
    let view = other.get_bulk(&caller, job.as_str()).await.expect("job");
    assert_eq!((view.status, view.counts[2], view.counts[0]), ("completed", 6, 0));
    for user in &users {
        assert_eq!(reregistrations(&app, user).await, 1, "no user twice, none skipped");
    }
    // The first node, coming back, finds nothing left to do; nobody takes the job again.
    assert!(app.app.run_bulk(&caller.tenant, &job, None).await.expect("complete"), "complete already");
    assert!(!other.resume_bulk_jobs().await.expect("nothing left"));
    for user in &users {
        assert_eq!(reregistrations(&app, user).await, 1, "still once each");
    }

    // A caller whose sessions are revoked mid-run: what is left fails, nothing more changes.
    let (desk_id, desk, more, request) = desk_and_four_users(&app).await;
    let job = app.app.start_bulk(&desk, request).await.expect("started").job.id.expect("id");
    assert!(!app.app.run_bulk(&desk.tenant, &job, Some(1)).await.expect("one user"));
    app.clock.advance(time::Duration::seconds(1));
    let revoked = app.post(&format!("/v1.0/users/{desk_id}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    // At once, within the lease's quarter: the caller is loaded again for each user.
    assert!(app.app.run_bulk(&desk.tenant, &job, None).await.expect("the rest"), "completed");
    let view = app.app.get_bulk(&caller, job.as_str()).await.expect("job");
    assert_eq!((view.counts[2], view.counts[6]), (1, 3), "one done, three failed");
    let changed: usize = {
        let mut n = 0;
        for user in &more {
            n += reregistrations(&app, user).await;
        }
        n
    };
    assert_eq!(changed, 1, "nothing changed after the revocation");
    let (items, _) = app.app.list_bulk_results(&caller, job.as_str(), None, None).await.expect("results");
    assert!(items[1].detail.as_deref().is_some_and(|it| it.contains("revoked")), "{items:?}");
}

/// The portal's Bulk operations page: a dry run from a CSV, then the same run for real, followed
/// to its end on the job's page.
async fn bulk_operations_in_the_portal(backend: Backend) {
    use super::portal::{csrf_of, sign_in, user};
    use keyward_testkit::browser::Browser;
    let app = TestApp::spawn(backend).await;
    user(&app, "chief", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let mut targets = Vec::new();
    for n in 0..2 {
        targets.push(person(&app, &format!("p{n}"), None, true).await);
    }
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "chief").await;
    let page = browser.get(&format!("/{DOMAIN}/admin/bulk")).await;
    assert_eq!(page.title(), "Bulk operations", "{}", page.text());
    let csv = format!("userPrincipalName\np0@{DOMAIN}\np1@{DOMAIN}\nghost@{DOMAIN}\n");
    let fields = vec![
        ("csrf".to_owned(), csrf_of(&page)),
        ("operation".to_owned(), "requireMfaReregistration".to_owned()),
        ("source".to_owned(), "csv".to_owned()),
        ("csv".to_owned(), csv),
    ];
    let dry = browser.post_form(&format!("/{DOMAIN}/admin/bulk"), &fields).await;
    assert!(
        dry.by_id("summary").is_some_and(|it| it.contains("2 would change") && it.contains("1 failed")),
        "{}",
        dry.text()
    );
    assert_eq!(reregistrations(&app, &targets[0]).await, 0, "a dry run changes nothing");
    let bad = browser
        .post_form(
            &format!("/{DOMAIN}/admin/bulk"),
            &[
                ("csrf".to_owned(), csrf_of(&page)),
                ("operation".to_owned(), "nothing".to_owned()),
                ("source".to_owned(), "csv".to_owned()),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
    // "Run it for real" posts the same form.
    let form = dry
        .forms()
        .into_iter()
        .find(|it| it.inputs.iter().any(|(name, value, ..)| name == "run" && value == "real"))
        .expect("the real run's form");
    let fields: Vec<(String, String)> =
        form.inputs.iter().map(|(name, value, ..)| (name.clone(), value.clone())).collect();
    let mut job = browser.post_form(&format!("/{DOMAIN}/admin/bulk"), &fields).await;
    for _ in 0..50 {
        if job.by_id("summary").is_some_and(|it| it.contains("2 done")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        job = browser.get(&job.path).await;
    }
    assert!(job.by_id("summary").is_some_and(|it| it.contains("2 done") && it.contains("1 failed")), "{}", job.text());
    for target in &targets {
        assert_eq!(reregistrations(&app, target).await, 1);
    }
}

/// A caller whose sessions are revoked while their bulk run is under way changes no user after
/// the revocation, however recently the run loaded them: the run loads its caller again for
/// each user. PostgreSQL, where the run can be held at a user's row while the revocation
/// commits (SQLite's writers take turns).
async fn a_caller_revoked_during_a_bulk_run_changes_no_one_after(backend: Backend) {
    if backend == Backend::Sqlite {
        return;
    }
    let app = TestApp::spawn(backend).await;
    let (desk_id, desk, users, request) = desk_and_four_users(&app).await;
    // Hold the second user's row: the run does the first, then waits there.
    let held = crate::security::HeldRow::user(&app, &users[1]).await;
    let job = app.app.start_bulk(&desk, request).await.expect("started").job.id.expect("id");
    let running = {
        let (node, tenant, job) = (app.app.clone(), desk.tenant.clone(), job.clone());
        tokio::spawn(async move { node.run_bulk(&tenant, &job, None).await })
    };
    crate::security::until_a_session_waits_for_a_lock(&app).await;
    app.clock.advance(time::Duration::seconds(1));
    let revoked = app.post(&format!("/v1.0/users/{desk_id}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    held.release().await;
    running.await.expect("task").expect("run");
    let mut changed = 0;
    for user in &users {
        changed += reregistrations(&app, user).await;
    }
    assert_eq!(changed, 2, "the user in hand when the sessions were revoked is the last one changed");
}

/// Bulk runs started at the same moment are counted one after another against the limit of two
/// running a caller: two start, the others are refused. PostgreSQL, where the runs can be held
/// at a user's row so that they stay running (SQLite's writers take turns).
async fn bulk_runs_started_at_once_meet_the_limit(backend: Backend) {
    if backend == Backend::Sqlite {
        return;
    }
    let app = TestApp::spawn(backend).await;
    let target = person(&app, "t0", None, true).await;
    let held = crate::security::HeldRow::user(&app, &target).await;
    let ask = json!({"operation": "requireMfaReregistration", "users": {"ids": [target]}});
    let started: Vec<_> =
        (0..6).map(|_| app.send_in_background(Method::POST, BULK, &app.admin_token, ask.clone())).collect();
    let mut accepted = 0;
    for reply in started {
        let reply = reply.await.expect("task");
        if reply.status == StatusCode::ACCEPTED {
            accepted += 1;
        } else {
            assert_graph_error(&reply, StatusCode::BAD_REQUEST, "TooManyBulkOperations");
        }
    }
    assert_eq!(accepted, 2, "runs started at once past the limit of two a caller");
    held.release().await;
}

keyward_testkit::on_both_backends!(
    bulk_dry_run_then_the_real_run,
    bulk_runs_started_at_once_meet_the_limit,
    a_caller_revoked_during_a_bulk_run_changes_no_one_after,
    a_bulk_run_cut_short_is_finished_by_another_node,
    bulk_operations_in_the_portal
);
