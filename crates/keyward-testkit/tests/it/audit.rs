//! The audit log query API through HTTP, on both backends.

use keyward_core::authz::roles;
use keyward_testkit::{ADMIN_UPN, Backend, DOMAIN, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn ids(reply: &Value) -> Vec<String> {
    reply["value"].as_array().expect("value").iter().filter_map(|it| it["id"].as_str().map(str::to_owned)).collect()
}

/// The ids on every page from `first`, following `@odata.nextLink`.
async fn every_page(app: &TestApp, first: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut url = first.to_owned();
    loop {
        let page = app.get(&url).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        seen.extend(ids(&page.body));
        match page.body["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return seen,
        }
    }
}

/// Pages through `query` `top` records at a time, newest first and oldest first, expecting `whole`
/// (newest first) in order, each record once.
async fn assert_pages_both_ways(app: &TestApp, query: &str, top: usize, whole: &[String], what: &str) {
    let mut oldest_first = whole.to_vec();
    oldest_first.reverse();
    for (order, expected) in [("", whole), ("&$orderby=activityDateTime asc", &oldest_first[..])] {
        let seen = every_page(app, &format!("{query}{order}&$top={top}")).await;
        assert_eq!(seen, expected, "paging {what}{order}");
    }
}

async fn audit_log_filters_and_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin_id = app.get("/v1.0/me").await.body["id"].as_str().expect("id").to_owned();
    let correlation = "5f0e3c1a-7d2b-4e8f-9a6c-1b2c3d4e5f60";
    let adele = app
        .send(Method::POST, "/v1.0/users", Some(&app.admin_token), Some(&json!({"accountEnabled": true, "displayName": "Adele Vance",
            "mailNickname": "adele", "userPrincipalName": format!("adele@{DOMAIN}"), "passwordProfile": {"password": "Tq7-harbour-Lantern-92!"}})),
            &[("client-request-id", correlation)])
        .await
        .body;
    let adele_id = adele["id"].as_str().expect("id").to_owned();
    app.clock.advance(time::Duration::minutes(10));
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Sales", "mailEnabled": false, "mailNickname": "sales", "securityEnabled": true}),
        )
        .await
        .body;
    let reference = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{adele_id}")});
    app.post(&format!("/v1.0/groups/{}/members/$ref", group["id"].as_str().expect("id")), &reference).await;
    app.patch(&format!("/v1.0/users/{adele_id}"), &json!({"jobTitle": "Manager"})).await;
    let plain = app.create_user("plain", "Plain User").await;
    let plain_token = app.token_for(&format!("plain@{DOMAIN}")).await;
    let refused =
        app.as_user(&plain_token).patch(&format!("/v1.0/users/{adele_id}"), &json!({"jobTitle": "CEO"})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let all = app.get("/v1.0/auditLogs/directoryAudits").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(all.body["@odata.context"], format!("{}/v1.0/$metadata#auditLogs/directoryAudits", app.base_url));
    let newest = &all.body["value"][0];
    assert_eq!(newest["activityDisplayName"], "Update user");
    assert_eq!(newest["result"], "failure", "the refused attempt is the newest record");
    assert_eq!(
        newest["resultReason"],
        "Insufficient privileges to complete the operation. None of the caller's roles grants \
         'microsoft.directory/users/basic/update'; built-in roles that do: Authentication Administrator, \
         Privileged Authentication Administrator, User Administrator, Global Administrator. (rule: \
         no-role-grants-action)",
        "the audit record names the rule"
    );
    assert_eq!(newest["initiatedBy"]["user"]["userPrincipalName"], format!("plain@{DOMAIN}"));
    assert!(newest["initiatedBy"]["app"].is_null());
    let times: Vec<&str> =
        all.body["value"].as_array().expect("value").iter().filter_map(|it| it["activityDateTime"].as_str()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");

    let cases: Vec<(String, Vec<&str>)> = vec![
        ("activityDisplayName eq 'Add user'".into(), vec!["Add user", "Add user", "Add user"]),
        ("startswith(activityDisplayName,'add member')".into(), vec!["Add member to group", "Add member to role"]),
        ("category eq 'GroupManagement'".into(), vec!["Add member to group", "Add group"]),
        (format!("correlationId eq '{correlation}'"), vec!["Add user"]),
        ("result eq 'failure'".into(), vec!["Update user"]),
        (
            format!("targetResources/any(t: t/id eq '{adele_id}') and result eq 'success'"),
            vec!["Update user", "Add member to group", "Add user"],
        ),
        (
            format!("targetResources/any(t: t/userPrincipalName eq 'ADELE@{DOMAIN}')"),
            vec!["Update user", "Update user", "Add member to group", "Add user"],
        ),
        (
            format!(
                "initiatedBy/user/userPrincipalName eq '{}' and activityDisplayName eq 'Add user'",
                ADMIN_UPN.to_uppercase()
            ),
            vec!["Add user", "Add user"],
        ),
        (
            format!("initiatedBy/user/id eq '{admin_id}' and category eq 'UserManagement'"),
            vec!["Add user", "Update user", "Add user"],
        ),
        (format!("initiatedBy/user/id eq '{admin_id}' and correlationId eq '{correlation}'"), vec!["Add user"]),
        ("initiatedBy/app/appId eq 'keyward'".into(), vec!["Add member to role", "Add user"]),
        ("loggedByService eq 'Core Directory' and category eq 'RoleManagement'".into(), vec!["Add member to role"]),
        // In any case, as the other text filters.
        ("loggedByService eq 'core directory' and category eq 'ROLEMANAGEMENT'".into(), vec!["Add member to role"]),
    ];
    for (filter, expected) in cases {
        let reply = app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter={filter}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{filter}: {}", reply.text);
        let mut got = reply.activities();
        let mut want = expected;
        got.sort();
        want.sort();
        assert_eq!(got, want, "{filter}");
    }

    // Time windows: Adele was created ten minutes before everything that followed.
    let first = app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter=correlationId eq '{correlation}'")).await;
    let created_id = first.body["value"][0]["id"].as_str().expect("id").to_owned();
    let created_at = first.body["value"][0]["activityDateTime"].as_str().expect("time").to_owned();
    let later = app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter=activityDateTime gt {created_at}")).await;
    assert!(!ids(&later.body).contains(&created_id) && later.activities().contains(&"Add group"), "{}", later.text);
    let until = app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter=activityDateTime le {created_at}")).await;
    assert!(ids(&until.body).contains(&created_id) && !until.activities().contains(&"Add group"), "{}", until.text);

    // Paging and order.
    let total = ids(&all.body);
    let seen = every_page(&app, "/v1.0/auditLogs/directoryAudits?$top=2").await;
    assert_eq!(seen, total, "paging visits every record once, in order");
    let ascending = app.get("/v1.0/auditLogs/directoryAudits?$orderby=activityDateTime asc").await;
    let mut reversed = total.clone();
    reversed.reverse();
    assert_eq!(ids(&ascending.body), reversed);

    // A target's records page in the same order, both ways (driven from the target index, which
    // is ordered by time), and a time window applies to them.
    let by_target = format!("/v1.0/auditLogs/directoryAudits?$filter=targetResources/any(t: t/id eq '{adele_id}')");
    let whole = ids(&app.get(&by_target).await.body);
    assert!(whole.len() >= 4 && whole.contains(&created_id), "{whole:?}");
    assert_pages_both_ways(&app, &by_target, 1, &whole, "a target's records").await;
    let window = app.get(&format!("{by_target} and activityDateTime gt {created_at}")).await;
    let after_creation: Vec<String> = whole.iter().filter(|it| **it != created_id).cloned().collect();
    assert_eq!(ids(&window.body), after_creation, "{}", window.text);

    // An initiator's records (on SQLite read from the initiator's own copies) are exactly what the
    // whole log shows for that initiator, field for field, and page the same way both ways.
    let by_initiator = format!("/v1.0/auditLogs/directoryAudits?$filter=initiatedBy/user/id eq '{admin_id}'");
    let initiated = app.get(&by_initiator).await;
    let expected: Vec<&serde_json::Value> = all.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter(|it| it["initiatedBy"]["user"]["id"] == admin_id.as_str())
        .collect();
    let got: Vec<&serde_json::Value> = initiated.body["value"].as_array().expect("value").iter().collect();
    assert!(expected.len() >= 5, "{}", all.text);
    assert_eq!(got, expected, "{}", initiated.text);
    let whole = ids(&initiated.body);
    assert_pages_both_ways(&app, &by_initiator, 2, &whole, "an initiator's records").await;
    let window = app.get(&format!("{by_initiator} and activityDateTime gt {created_at}")).await;
    let after_creation: Vec<String> = expected
        .iter()
        .filter(|it| it["activityDateTime"].as_str().expect("time") > created_at.as_str())
        .map(|it| it["id"].as_str().expect("id").to_owned())
        .collect();
    assert!(!after_creation.is_empty() && after_creation.len() < whole.len(), "{whole:?}");
    assert_eq!(ids(&window.body), after_creation, "{}", window.text);

    let one = app.get(&format!("/v1.0/auditLogs/directoryAudits/{}", total[0])).await;
    assert_eq!(one.body["id"], total[0].as_str(), "{}", one.text);
    assert_eq!(app.get("/v1.0/auditLogs/directoryAudits/Directory_nope").await.status, StatusCode::NOT_FOUND);
    let bad = app.get("/v1.0/auditLogs/directoryAudits?$filter=resultReason eq 'x'").await;
    assert_eq!(
        (bad.status, bad.body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Request_UnsupportedQuery")),
        "{}",
        bad.text
    );

    // Readable by the roles that hold auditLogs/allProperties/read only.
    let denied = app.as_user(&plain_token).get("/v1.0/auditLogs/directoryAudits").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    app.assign_role(plain["id"].as_str().expect("id"), roles::REPORTS_READER, "/").await;
    let allowed = app.as_user(&plain_token).get("/v1.0/auditLogs/directoryAudits?$top=1").await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.text);
    let update = app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter=targetResources/any(t: t/id eq '{adele_id}') and activityDisplayName eq 'Update user' and result eq 'success'")).await;
    let props = &update.body["value"][0]["targetResources"][0]["modifiedProperties"];
    let job = props.as_array().expect("props").iter().find(|it| it["displayName"] == "JobTitle").expect("JobTitle");
    assert_eq!((job["oldValue"].as_str(), job["newValue"].as_str()), (Some("[]"), Some("[\"Manager\"]")));
    let included = props
        .as_array()
        .expect("props")
        .iter()
        .find(|it| it["displayName"] == "Included Updated Properties")
        .expect("included");
    assert!(included["oldValue"].is_null());
}

keyward_testkit::on_both_backends!(audit_log_filters_and_pages);
