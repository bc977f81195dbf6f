//! The Graph-compatible API through HTTP, on both backends.

use crate::security::{sessions, until_sessions};
use base64::Engine;
use keyward_testkit::{ADMIN_UPN, Backend, DOMAIN, TestApp, assert_graph_error, id_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn count_users(app: &TestApp) -> u64 {
    let reply = app
        .send(Method::GET, "/v1.0/users/$count", Some(&app.admin_token), None, &[("ConsistencyLevel", "eventual")])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.text.trim().parse().expect("count")
}

async fn authentication_is_required(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let missing = app.send(Method::GET, "/v1.0/users", None, None, &[]).await;
    assert_graph_error(&missing, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    assert!(missing.headers.contains_key("www-authenticate"));
    let garbage = app.as_user("not.a.token").get("/v1.0/me").await;
    assert_graph_error(&garbage, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    let mut forged = app.admin_token.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let forged = app.as_user(&forged).get("/v1.0/me").await;
    assert_graph_error(&forged, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");

    let me = app.get("/v1.0/me").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.body["userPrincipalName"], ADMIN_UPN);
    assert_eq!(me.body["@odata.context"], format!("{}/v1.0/$metadata#users/$entity", app.base_url));
    // A node remembers the tokens it verified (by a hash of the whole token): another payload
    // under a signature it has seen is still refused, and the token itself still works.
    let parts: Vec<&str> = app.admin_token.split('.').collect();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(parts[1]).expect("base64")).expect("JSON");
    claims["exp"] = json!(claims["exp"].as_i64().expect("exp") + 86_400);
    let payload = engine.encode(serde_json::to_vec(&claims).expect("JSON"));
    let swapped = format!("{}.{payload}.{}", parts[0], parts[2]);
    let swapped = app.as_user(&swapped).get("/v1.0/me").await;
    assert_graph_error(&swapped, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    assert_eq!(app.get("/v1.0/me").await.status, StatusCode::OK);

    app.clock.advance(time::Duration::hours(2));
    let expired = app.get("/v1.0/me").await;
    assert_graph_error(&expired, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    assert!(expired.body["error"]["message"].as_str().is_some_and(|it| it.contains("expired")));
}

async fn users_crud_is_audited_and_secrets_never_leak(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client_request_id = "7b0c7e9e-2b5e-4a8c-9c0b-3f0a1d2e4b5c";
    let created = app
        .send(
            Method::POST,
            "/v1.0/users",
            Some(&app.admin_token),
            Some(&json!({
                "accountEnabled": true,
                "displayName": "Adele Vance",
                "mailNickname": "adele",
                "userPrincipalName": format!("Adele.Vance@{DOMAIN}"),
                "jobTitle": "Retail Manager",
                "otherMails": ["adele@backup.test"],
                "passwordProfile": {"password": "Tq7-harbour-Lantern-92!", "forceChangePasswordNextSignIn": true},
            })),
            &[("client-request-id", client_request_id)],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(!created.text.contains("Lantern"), "the password is never returned");
    assert_eq!(created.headers["client-request-id"], client_request_id);
    let id = created.body["id"].as_str().expect("id").to_owned();

    let by_upn = app.get(&format!("/v1.0/users/adele.vance@{DOMAIN}")).await;
    assert_eq!(by_upn.body["id"], id.as_str(), "lookup by UPN is case-insensitive: {}", by_upn.text);
    let selected =
        app.get(&format!("/v1.0/users/{id}?$select=displayName,signInSessionsValidFromDateTime,otherMails")).await;
    assert_eq!(selected.body["otherMails"], json!(["adele@backup.test"]));
    assert!(selected.body["signInSessionsValidFromDateTime"].is_string(), "{}", selected.text);
    assert!(selected.body.get("userPrincipalName").is_none());
    assert_eq!(
        selected.body["@odata.context"],
        format!(
            "{}/v1.0/$metadata#users(displayName,signInSessionsValidFromDateTime,otherMails)/$entity",
            app.base_url
        )
    );
    let v1 = app.get(&format!("/v1.0/users/{id}")).await;
    assert!(
        v1.body.get("accountEnabled").is_none() && v1.body.get("signInSessionsValidFromDateTime").is_none(),
        "{}",
        v1.text
    );
    let beta = app.get(&format!("/beta/users/{id}")).await;
    assert_eq!(beta.body["accountEnabled"], true, "beta returns more by default: {}", beta.text);
    assert!(beta.body.get("signInSessionsValidFromDateTime").is_none());

    let records = app.audit_for(&id).await;
    let [add] = records.as_slice() else { panic!("one record, got {records:?}") };
    assert_eq!(
        (add.activity_display_name.as_str(), add.category.as_str(), add.logged_by_service.as_str()),
        ("Add user", "UserManagement", "Core Directory")
    );
    assert_eq!(add.correlation_id, client_request_id);
    assert!(
        matches!(&add.initiated_by, keyward_core::audit::Initiator::User { user_principal_name, .. } if user_principal_name == ADMIN_UPN)
    );
    let props = &add.target_resources[0].modified_properties;
    assert!(
        props.iter().any(|it| it.name == "DisplayName" && it.new_value.as_deref() == Some(r#"["Adele Vance"]"#)),
        "{props:?}"
    );

    let patched = app.patch(&format!("/v1.0/users/{id}"), &json!({"jobTitle": "Store Manager", "department": null, "passwordProfile": {"password": "Another-Secret-Value-7"}})).await;
    assert_eq!(patched.status, StatusCode::NO_CONTENT, "{}", patched.text);
    assert_eq!(app.get(&format!("/v1.0/users/{id}")).await.body["jobTitle"], "Store Manager");
    let records = app.audit_for(&id).await;
    let update = &records[0];
    assert_eq!(update.activity_display_name, "Update user");
    let props = &update.target_resources[0].modified_properties;
    let job = props.iter().find(|it| it.name == "JobTitle").expect("JobTitle changed");
    assert_eq!(
        (job.old_value.as_deref(), job.new_value.as_deref()),
        (Some(r#"["Retail Manager"]"#), Some(r#"["Store Manager"]"#))
    );
    assert!(props.iter().any(|it| it.name == "Included Updated Properties"));
    let stored = format!("{records:?}");
    assert!(!stored.contains("Another-Secret") && !stored.contains("Lantern"), "no secret in audit values");

    let deleted = app.delete(&format!("/v1.0/users/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_graph_error(&app.get(&format!("/v1.0/users/{id}")).await, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    assert_eq!(app.audit_for(&id).await[0].activity_display_name, "Delete user");
}

async fn bad_input_gets_graph_errors_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("existing", "Existing User").await;
    let before = count_users(&app).await;
    let valid = |upn: &str, password: &str| {
        json!({"accountEnabled": true, "displayName": "X", "mailNickname": "x", "userPrincipalName": upn,
               "passwordProfile": {"password": password}})
    };
    let cases = [
        (valid(&format!("EXISTING@{DOMAIN}"), "Tq7-harbour-Lantern-92!"), "already exists"),
        (valid("someone@fabrikam.test", "Tq7-harbour-Lantern-92!"), "verified domain"),
        (valid(&format!("weak@{DOMAIN}"), "Password1"), "password"),
        (valid("not-an-upn", "Tq7-harbour-Lantern-92!"), "userPrincipalName"),
        (json!({"displayName": "Only a name"}), "userPrincipalName"),
        (json!({"accountEnabled": "yes"}), "accountEnabled"),
        (json!({"favouriteColour": "red"}), "favouriteColour"),
        (json!([1, 2]), "JSON object"),
    ];
    for (body, needle) in cases {
        let reply = app.post("/v1.0/users", &body).await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
        assert!(
            reply.body["error"]["message"].as_str().is_some_and(|it| it.contains(needle)),
            "{needle}: {}",
            reply.text
        );
    }
    let raw = app
        .client
        .post(format!("{}/v1.0/users", app.base_url))
        .bearer_auth(&app.admin_token)
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    // A body is read only when declared JSON, as Graph reads it: a valid body without
    // Content-Type, or with another type, is refused before it is looked at.
    let body = serde_json::to_vec(&valid(&format!("typed@{DOMAIN}"), "Tq7-harbour-Lantern-92!")).expect("json");
    let send = |content_type: Option<&'static str>, path: String, body: Vec<u8>| {
        let mut request = app.client.post(format!("{}{path}", app.base_url)).bearer_auth(&app.admin_token).body(body);
        if let Some(value) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, value);
        }
        async move {
            let response = request.send().await.expect("send");
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for (content_type, needle) in
        [(None, "must contain the Content-Type header"), (Some("text/plain"), "JSON Content-Type")]
    {
        let (status, reply) = send(content_type, "/v1.0/users".into(), body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert!(reply["error"]["message"].as_str().is_some_and(|it| it.contains(needle)), "{reply}");
    }
    assert_eq!(count_users(&app).await, before, "refused requests created nothing");
    // An action's optional body is checked the same way when there is one; none needs no type.
    let revoke = format!("/v1.0/users/existing@{DOMAIN}/revokeSignInSessions");
    let (status, reply) = send(None, revoke.clone(), b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let (status, reply) = send(None, revoke, Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, reply) = send(Some("application/json; charset=utf-8"), "/v1.0/users".into(), body).await;
    assert_eq!(status, StatusCode::CREATED, "parameters of the type are fine: {reply}");
    // Methods and actions refuse what their type does not declare, as Graph does.
    let existing = format!("existing@{DOMAIN}");
    for (path, body, needle) in [
        (
            format!("/v1.0/users/{existing}/authentication/emailMethods"),
            json!({"emailAddress": "x@example.com", "bogus": 1}),
            "bogus",
        ),
        (format!("/v1.0/users/{existing}/authentication/emailMethods"), json!({"emailAddress": 123}), "string"),
        (
            format!("/v1.0/users/{existing}/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword"),
            json!({"newPassword": "Str0ng!Passw0rd-xyz", "extra": 1}),
            "extra",
        ),
    ] {
        let reply = app.post(&path, &body).await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
        assert!(reply.text.contains(needle), "{needle}: {}", reply.text);
    }
    let emails = app.get(&format!("/v1.0/users/{existing}/authentication/emailMethods")).await;
    assert_eq!(emails.body["value"], json!([]), "{}", emails.text);
    let anonymous_put = app.send(Method::PUT, "/v1.0/users", None, Some(&json!({})), &[]).await;
    assert_graph_error(&anonymous_put, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");

    assert_graph_error(
        &app.get("/v1.0/users/00000000-0000-0000-0000-000000000000").await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    assert_graph_error(&app.get("/v1.0/users?$top=1000").await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_graph_error(&app.get("/v1.0/users?$skip=10").await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_graph_error(&app.get("/v1.0/users?$skiptoken=garbage").await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_graph_error(
        &app.get("/v1.0/users?$filter=startswith(displayName,").await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    assert_graph_error(
        &app.get("/v1.0/users?$filter=nosuch eq 'a'").await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    assert_graph_error(
        &app.get("/v1.0/users?$filter=endswith(mail,'x')").await,
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
    );
    assert_graph_error(
        &app.get("/v1.0/users?$search=\"displayName:a\"").await,
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
    );
    assert_graph_error(&app.get("/v1.0/users?$select=nosuch").await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_graph_error(&app.get("/v1.0/users/$count").await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_graph_error(&app.get("/v1.0/nosuchthing").await, StatusCode::BAD_REQUEST, "BadRequest");
    let nul = app
        .post(
            "/v1.0/users",
            &valid(&format!("nul@{DOMAIN}"), "Tq7-harbour-Lantern-92!")
                .as_object()
                .map(|it| {
                    let mut it = it.clone();
                    it.insert("displayName".into(), json!("Evil\u{0}Name"));
                    Value::Object(it)
                })
                .expect("object"),
        )
        .await;
    assert_graph_error(&nul, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_graph_error(
        &app.get("/v1.0/users?$filter=displayName eq 'a%00b'").await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    // A NUL character anywhere else the request reaches the database (a sign-in name in the
    // path, an alternate key, a page token's decoded key) is a bad request, not a server error;
    // so is a $search of too many clauses (SQLite's expression depth) or too many bytes.
    let nul_token =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("1\n00000000-0000-0000-0000-000000000001\n\u{0}");
    for path in [
        "/v1.0/users/a%00b@contoso.test".to_owned(),
        "/v1.0/servicePrincipals(appId='a%00')".to_owned(),
        format!("/v1.0/users?$orderby=displayName&$skiptoken={nul_token}"),
    ] {
        let reply = app.get(&path).await;
        assert!(reply.status.is_client_error() || reply.status.is_success(), "{path}: {} {}", reply.status, reply.text);
    }
    // Times at the end of what a time can hold (a bound one microsecond further, the same
    // instant in UTC) are refused, not a server error.
    for filter in ["activityDateTime gt 9999-12-31T23:59:59.999999Z", "activityDateTime ge 9999-12-31T23:00:00-05:00"] {
        let reply = app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter={filter}")).await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
        let sign_ins =
            app.get(&format!("/v1.0/auditLogs/signIns?$filter={}", filter.replace("activity", "created"))).await;
        assert_graph_error(&sign_ins, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    let made = rcgen::generate_simple_self_signed(vec!["far.contoso.test".to_owned()]).expect("certificate");
    let der = base64::engine::general_purpose::STANDARD.encode(made.cert.der());
    let certificate = json!({"keyCredentials": [{"type": "AsymmetricX509Cert", "usage": "Verify",
        "key": der, "startDateTime": "9999-12-31T00:00:00Z"}]});
    let created = app.post("/v1.0/applications", &json!({"displayName": "Far future"})).await;
    let far =
        app.patch(&format!("/v1.0/applications/{}", created.body["id"].as_str().expect("id")), &certificate).await;
    assert_graph_error(&far, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let many = ["\"mail:q\""; 11].join(" OR ");
    let reply = app
        .send(
            Method::GET,
            &format!("/v1.0/users?$search={many}"),
            Some(&app.admin_token),
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_graph_error(&app.get("/v1.0/groups/not-a-guid").await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_graph_error(
        &app.get("/v1.0/groups?$filter=startswith(mail,'x')").await,
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
    );
    let anonymous = app.send(Method::GET, "/v1.0/nosuchthing", None, None, &[]).await;
    assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    let wrong_method = app.send(Method::PUT, "/v1.0/users", Some(&app.admin_token), Some(&json!({})), &[]).await;
    assert_graph_error(&wrong_method, StatusCode::METHOD_NOT_ALLOWED, "Request_BadRequest");
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "G", "mailEnabled": false, "mailNickname": "g", "securityEnabled": true}),
        )
        .await;
    let gid = group.body["id"].as_str().expect("group id");
    let changed = app.patch(&format!("/v1.0/groups/{gid}"), &json!({"isAssignableToRole": true})).await;
    assert_graph_error(&changed, StatusCode::BAD_REQUEST, "Request_BadRequest");
}

async fn plain_users_read_but_cannot_write(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("plain", "Plain User").await;
    let token = app.token_for(&format!("plain@{DOMAIN}")).await;
    let read = app.as_user(&token).get("/v1.0/users").await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    let before = count_users(&app).await;
    let write = app
        .as_user(&token)
        .post(
            "/v1.0/users",
            &json!({"accountEnabled": true, "displayName": "Y", "mailNickname": "y",
            "userPrincipalName": format!("y@{DOMAIN}"), "passwordProfile": {"password": "Tq7-harbour-Lantern-92!"}}),
        )
        .await;
    assert_graph_error(&write, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert_eq!(
        write.body["error"]["message"],
        "Insufficient privileges to complete the operation. None of the caller's roles grants \
         'microsoft.directory/users/create'; built-in roles that do: User Administrator, Global Administrator. \
         (rule: no-role-grants-action)"
    );
    let admin_id = app.get("/v1.0/me").await.body["id"].as_str().expect("id").to_owned();
    let disable =
        app.as_user(&token).patch(&format!("/v1.0/users/{admin_id}"), &json!({"accountEnabled": false})).await;
    assert_graph_error(&disable, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert_eq!(count_users(&app).await, before);
}

async fn listing_filters_pages_and_counts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for n in 1..=25 {
        app.create_user(&format!("pager{n:02}"), &format!("Pager {n:02}")).await;
    }
    let mut seen = Vec::new();
    let mut url = "/v1.0/users?$top=10&$filter=startswith(displayName,'Pager')".to_owned();
    let mut n_pages = 0;
    loop {
        let page = app.get(&url).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        n_pages += 1;
        seen.extend(
            page.body["value"]
                .as_array()
                .expect("value")
                .iter()
                .map(|it| it["displayName"].as_str().expect("name").to_owned()),
        );
        match page.body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&app.base_url) && next.contains("$skiptoken="), "{next}");
                assert!(next.contains("filter="), "the filter survives paging: {next}");
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(n_pages, 3);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25);

    let counted = app
        .send(
            Method::GET,
            "/v1.0/users?$count=true&$filter=startswith(displayName,'Pager 1')",
            Some(&app.admin_token),
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(counted.body["@odata.count"], 10, "{}", counted.text);
    let ignored = app.get("/v1.0/users?$count=true").await;
    assert!(ignored.body.get("@odata.count").is_none(), "$count without the header is ignored, as in Graph");
    let searched = app
        .send(
            Method::GET,
            "/v1.0/users?$search=\"displayName:ager 2\"",
            Some(&app.admin_token),
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(searched.body["value"].as_array().map(Vec::len), Some(6), "{}", searched.text);
    let ordered = app.get("/v1.0/users?$orderby=displayName desc&$top=2&$select=displayName").await;
    let names: Vec<&str> =
        ordered.body["value"].as_array().expect("value").iter().filter_map(|it| it["displayName"].as_str()).collect();
    assert_eq!(names, ["Pager 25", "Pager 24"]);
    assert_eq!(ordered.body["@odata.context"], format!("{}/v1.0/$metadata#users(displayName)", app.base_url));
    let upn = app.get(&format!("/v1.0/users?$filter=userPrincipalName eq 'PAGER07@{DOMAIN}'")).await;
    assert_eq!(upn.body["value"][0]["displayName"], "Pager 07");
    let neg = app
        .send(
            Method::GET,
            "/v1.0/users?$count=true&$filter=not(startswith(displayName,'Pager'))",
            Some(&app.admin_token),
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(neg.body["@odata.count"], 1, "only the admin: {}", neg.text);
}

async fn groups_members_and_owners(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let adele = app.create_user("adele", "Adele Vance").await;
    let megan = app.create_user("megan", "Megan Bowen").await;
    let (adele_id, megan_id) = (adele["id"].as_str().expect("id"), megan["id"].as_str().expect("id"));
    let created = app.post("/v1.0/groups", &json!({"displayName": "Sales", "mailEnabled": false, "mailNickname": "sales", "securityEnabled": true, "description": "Sales team"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["isAssignableToRole"], false);
    let gid = created.body["id"].as_str().expect("id").to_owned();
    let reference = |id: &str| json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}")});
    for id in [adele_id, megan_id] {
        let added = app.post(&format!("/v1.0/groups/{gid}/members/$ref"), &reference(id)).await;
        assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    }
    let again = app.post(&format!("/v1.0/groups/{gid}/members/$ref"), &reference(adele_id)).await;
    assert_graph_error(&again, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let missing =
        app.post(&format!("/v1.0/groups/{gid}/members/$ref"), &reference("00000000-0000-0000-0000-000000000000")).await;
    assert_graph_error(&missing, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    let members = app.get(&format!("/v1.0/groups/{gid}/members")).await;
    let types: Vec<&str> =
        members.body["value"].as_array().expect("value").iter().filter_map(|it| it["@odata.type"].as_str()).collect();
    assert_eq!(types, ["#microsoft.graph.user", "#microsoft.graph.user"], "{}", members.text);
    let filtered_members = app.get(&format!("/v1.0/groups/{gid}/members?$filter=startswith(displayName,'A')")).await;
    assert_graph_error(&filtered_members, StatusCode::BAD_REQUEST, "Request_UnsupportedQuery");
    let group_count = app
        .send(Method::GET, "/v1.0/groups/$count", Some(&app.admin_token), None, &[("ConsistencyLevel", "eventual")])
        .await;
    assert_eq!(group_count.text.trim(), "1", "{}", group_count.text);
    let paged = app.get(&format!("/v1.0/groups/{gid}/members?$top=1")).await;
    let next = paged.body["@odata.nextLink"].as_str().expect("next page").to_owned();
    assert_eq!(app.get(&next).await.body["value"].as_array().map(Vec::len), Some(1));
    let member_of = app.get(&format!("/v1.0/users/{adele_id}/memberOf")).await;
    assert_eq!(member_of.body["value"][0]["id"], gid.as_str());
    assert_eq!(member_of.body["value"][0]["@odata.type"], "#microsoft.graph.group");

    let owner = app.post(&format!("/v1.0/groups/{gid}/owners/$ref"), &reference(megan_id)).await;
    assert_eq!(owner.status, StatusCode::NO_CONTENT, "{}", owner.text);
    assert_eq!(app.get(&format!("/v1.0/groups/{gid}/owners")).await.body["value"][0]["id"], megan_id);
    // A service principal may own a group too (an application that manages it); a group may not.
    let registered = app.post("/v1.0/applications", &json!({"displayName": "Group manager"})).await;
    let app_id = registered.body["appId"].as_str().expect("appId");
    let principal = app.get(&format!("/v1.0/servicePrincipals(appId='{app_id}')")).await;
    let principal_id = principal.body["id"].as_str().expect("principal").to_owned();
    let by_app = app.post(&format!("/v1.0/groups/{gid}/owners/$ref"), &reference(&principal_id)).await;
    assert_eq!(by_app.status, StatusCode::NO_CONTENT, "{}", by_app.text);
    let owners = app.get(&format!("/v1.0/groups/{gid}/owners")).await;
    let kinds: Vec<&str> =
        owners.body["value"].as_array().expect("value").iter().filter_map(|it| it["@odata.type"].as_str()).collect();
    assert!(
        kinds.contains(&"#microsoft.graph.servicePrincipal") && kinds.contains(&"#microsoft.graph.user"),
        "{}",
        owners.text
    );
    let other = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Other", "mailEnabled": false, "mailNickname": "other", "securityEnabled": true}),
        )
        .await;
    let refused =
        app.post(&format!("/v1.0/groups/{gid}/owners/$ref"), &reference(other.body["id"].as_str().expect("id"))).await;
    assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let removed = app.delete(&format!("/v1.0/groups/{gid}/owners/{principal_id}/$ref")).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    // $expand returns the relationship inline, on lists and single objects.
    let expanded = app.get(&format!("/v1.0/users?$filter=id eq '{adele_id}'&$expand=memberOf")).await;
    assert_eq!(expanded.body["value"][0]["memberOf"][0]["id"], gid.as_str(), "{}", expanded.text);
    assert_eq!(expanded.body["value"][0]["memberOf"][0]["@odata.type"], "#microsoft.graph.group");
    let me = app.get("/v1.0/me?$expand=memberOf").await;
    // The administrator is a member of the Global Administrator directory role, as in Graph.
    assert_eq!(me.body["memberOf"][0]["@odata.type"], "#microsoft.graph.directoryRole", "{}", me.text);
    assert_eq!(me.body["memberOf"][0]["roleTemplateId"], keyward_core::authz::roles::GLOBAL_ADMINISTRATOR);
    let group = app.get(&format!("/beta/groups/{gid}?$expand=members($select=displayName)")).await;
    let mut names: Vec<Value> = group.body["members"].as_array().expect("members").clone();
    names.sort_by_key(|it| it["displayName"].as_str().map(str::to_owned));
    assert_eq!(
        names,
        vec![
            json!({"@odata.type": "#microsoft.graph.user", "id": adele_id, "displayName": "Adele Vance"}),
            json!({"@odata.type": "#microsoft.graph.user", "id": megan_id, "displayName": "Megan Bowen"}),
        ],
        "{}",
        group.text
    );
    let owners = app.get(&format!("/v1.0/groups?$filter=id eq '{gid}'&$expand=owners&$select=id")).await;
    assert_eq!(
        owners.body["value"][0]["owners"][0]["userPrincipalName"], megan["userPrincipalName"],
        "{}",
        owners.text
    );
    for bad in ["/v1.0/users?$expand=ownedObjects", "/v1.0/groups?$expand=members($select=nope)"] {
        assert_graph_error(&app.get(bad).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    assert_graph_error(
        &app.get("/v1.0/groups?$expand=members,owners").await,
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
    );
    // Expanding reads the relationship with its own permission: a plain user may not read groups' members.
    let plain = app.create_user("plain", "Plain User").await;
    let token = app.token_for(plain["userPrincipalName"].as_str().expect("upn")).await;
    let denied = app.as_user(&token).get(&format!("/v1.0/groups/{gid}?$expand=members")).await;
    let listed = app.as_user(&token).get(&format!("/v1.0/groups/{gid}/members")).await;
    assert_eq!(denied.status, listed.status, "the same answer as the relationship itself: {}", denied.text);

    let removed = app.delete(&format!("/v1.0/groups/{gid}/members/{adele_id}/$ref")).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_graph_error(
        &app.delete(&format!("/v1.0/groups/{gid}/members/{adele_id}/$ref")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );

    let activities: Vec<String> = app.audit_for(&gid).await.iter().map(|it| it.activity_display_name.clone()).collect();
    assert_eq!(
        activities,
        [
            "Remove member from group",
            "Remove owner from group",
            "Add owner to group",
            "Add owner to group",
            "Add member to group",
            "Add member to group",
            "Add group"
        ]
    );
    let adele_records = app.audit_for(adele_id).await;
    let add_member = adele_records
        .iter()
        .find(|it| it.activity_display_name == "Add member to group")
        .expect("recorded on the member too");
    assert_eq!(add_member.category, "GroupManagement");
    assert!(
        add_member.target_resources[0]
            .modified_properties
            .iter()
            .any(|it| it.name == "Group.DisplayName" && it.new_value.as_deref() == Some("\"Sales\""))
    );

    let rag = app.post("/v1.0/groups", &json!({"displayName": "Tier 0", "mailEnabled": false, "mailNickname": "tier0", "securityEnabled": true, "isAssignableToRole": true})).await;
    assert_eq!(rag.body["isAssignableToRole"], true, "{}", rag.text);
    let nested = app
        .post(&format!("/v1.0/groups/{}/members/$ref", rag.body["id"].as_str().expect("id")), &reference(&gid))
        .await;
    assert_graph_error(&nested, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let filtered = app.get("/v1.0/groups?$filter=isAssignableToRole eq true").await;
    assert_eq!(filtered.body["value"].as_array().map(Vec::len), Some(1));
    let renamed = app.patch(&format!("/v1.0/groups/{gid}"), &json!({"displayName": "Sales EMEA"})).await;
    assert_eq!(renamed.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/v1.0/groups/{gid}")).await.body["displayName"], "Sales EMEA");
    assert_eq!(app.delete(&format!("/v1.0/groups/{gid}")).await.status, StatusCode::NO_CONTENT);
    assert_graph_error(
        &app.get(&format!("/v1.0/groups/{gid}")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    assert!(
        app.get(&format!("/v1.0/users/{adele_id}/memberOf")).await.body["value"].as_array().is_some_and(Vec::is_empty)
    );
}

async fn organization_health_metrics_openapi_and_keys(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let org = app.get("/v1.0/organization").await;
    assert_eq!(org.body["value"][0]["verifiedDomains"][0]["name"], DOMAIN, "{}", org.text);
    let health = app.send(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!((health.status, health.body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let metrics = app.send(Method::GET, "/metrics", None, None, &[]).await;
    let tenant = org.body["value"][0]["id"].as_str().expect("id").to_owned();
    let by_id = app.get(&format!("/v1.0/organization/{tenant}")).await;
    assert_eq!((by_id.status, by_id.body["id"].as_str()), (StatusCode::OK, Some(tenant.as_str())), "{}", by_id.text);
    assert_graph_error(
        &app.get("/v1.0/organization/00000000-0000-0000-0000-000000000001").await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    let domains = app.get("/v1.0/domains").await;
    assert_eq!(domains.body["value"][0]["id"], DOMAIN, "{}", domains.text);
    assert_eq!(domains.body["value"][0]["isDefault"], true, "{}", domains.text);
    let one = app.get(&format!("/v1.0/domains/{}", DOMAIN.to_uppercase())).await;
    assert_eq!((one.status, one.body["isVerified"].clone()), (StatusCode::OK, json!(true)), "{}", one.text);
    assert_graph_error(
        &app.get("/v1.0/domains/nowhere.example").await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    // Members and guests read the organization and its domains (Entra's default permissions, the
    // guests' restricted ones included); anonymous callers do not.
    app.create_user("member", "Member").await;
    app.create_guest("guest", "Guest").await;
    for upn in [format!("member@{DOMAIN}"), format!("guest@{DOMAIN}")] {
        let token = app.token_for(&upn).await;
        let as_them = app.as_user(&token);
        let org = as_them.get(&format!("/v1.0/organization/{tenant}")).await;
        assert_eq!(org.status, StatusCode::OK, "{upn}: {}", org.text);
        let domains = as_them.get("/v1.0/domains").await;
        assert_eq!(domains.body["value"][0]["id"], DOMAIN, "{upn}: {}", domains.text);
    }
    for path in ["/v1.0/domains".to_owned(), format!("/v1.0/organization/{tenant}")] {
        let anonymous = app.send(Method::GET, &path, None, None, &[]).await;
        assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    }
    assert!(
        metrics
            .text
            .contains("keyward_http_requests_total{method=\"GET\",route=\"/v1.0/organization\",status=\"200\"} 1"),
        "{}",
        metrics.text
    );
    let spec = app.send(Method::GET, "/openapi.json", None, None, &[]).await;
    assert_eq!(spec.body["openapi"], "3.1.0");
    for path in [
        "/v1.0/users",
        "/beta/users/{id}",
        "/v1.0/groups/{id}/members/$ref",
        "/v1.0/users/{id}/memberOf",
        "/healthz",
        "/{tenant}/discovery/v2.0/keys",
    ] {
        assert!(spec.body["paths"].get(path).is_some(), "{path} documented");
    }
    let docs = app.send(Method::GET, "/docs", None, None, &[]).await;
    assert!(
        docs.text.contains("/openapi.json") && !docs.text.contains("https://") && !docs.text.contains("http://"),
        "the viewer loads nothing from elsewhere"
    );

    // Rotation: the old key keeps verifying until retired.
    let tenant = org.body["value"][0]["id"].as_str().expect("tenant").to_owned();
    let old_token = app.admin_token.clone();
    let first = app.send(Method::GET, &format!("/{tenant}/discovery/v2.0/keys"), None, None, &[]).await;
    let old_kid = first.body["keys"][0]["kid"].as_str().expect("kid").to_owned();
    assert_eq!(first.body["keys"][0]["kty"], "EC");
    // Rotate and retire on another node: this node follows without a restart.
    let other = app.second_node().await;
    let new_kid = other.rotate_signing_key().await.expect("rotate");
    let by_domain = app.send(Method::GET, &format!("/{DOMAIN}/discovery/v2.0/keys"), None, None, &[]).await;
    assert_eq!(by_domain.body["keys"].as_array().map(Vec::len), Some(2), "{}", by_domain.text);
    assert_eq!(app.as_user(&old_token).get("/v1.0/me").await.status, StatusCode::OK);
    let new_token = other.issue_access_token_for_upn(ADMIN_UPN).await.expect("token");
    let header = {
        use base64::Engine;
        let header = new_token.split('.').next().expect("header");
        String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).expect("base64"))
            .expect("utf-8")
    };
    assert!(header.contains(&format!("\"kid\":\"{new_kid}\"")), "new tokens are signed with the new key: {header}");
    assert_eq!(app.as_user(&new_token).get("/v1.0/me").await.status, StatusCode::OK);
    other.retire_signing_key(&old_kid).await.expect("retire");
    assert!(other.retire_signing_key(&new_kid).await.is_err(), "the last key cannot be retired");
    let refused = app.as_user(&old_token).get("/v1.0/me").await;
    assert_graph_error(&refused, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    assert_eq!(app.as_user(&new_token).get("/v1.0/me").await.status, StatusCode::OK);
    let unknown = app.send(Method::GET, "/fabrikam.test/discovery/v2.0/keys", None, None, &[]).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
}

async fn disabled_users_lose_api_access(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.create_user("leaver", "Leaver").await;
    let token = app.token_for(&format!("leaver@{DOMAIN}")).await;
    assert_eq!(app.as_user(&token).get("/v1.0/me").await.status, StatusCode::OK);
    let disabled = app
        .patch(&format!("/v1.0/users/{}", user["id"].as_str().expect("id")), &json!({"accountEnabled": false}))
        .await;
    assert_eq!(disabled.status, StatusCode::NO_CONTENT);
    let refused = app.as_user(&token).get("/v1.0/me").await;
    assert_graph_error(&refused, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    let record = &app.audit_for(user["id"].as_str().expect("id")).await[0];
    let enabled = record.target_resources[0]
        .modified_properties
        .iter()
        .find(|it| it.name == "AccountEnabled")
        .expect("AccountEnabled");
    assert_eq!((enabled.old_value.as_deref(), enabled.new_value.as_deref()), (Some("[true]"), Some("[false]")));
}

async fn roles_follow_entras_who_may_act_on_whom(backend: Backend) {
    use keyward_core::authz::roles;
    let app = TestApp::spawn(backend).await;
    let admin_id = app.get("/v1.0/me").await.body["id"].as_str().expect("id").to_owned();
    let plain = app.create_user("plain", "Plain User").await;
    let helper = app.create_user("helper", "Help Desk").await;
    let second_global = app.create_user("second.global", "Second Global").await;
    let user_admin = app.create_user("user.admin", "User Admin").await;
    let member = app.create_user("rag.member", "Rag Member").await;
    let executive = app.create_user("executive", "Executive").await;
    let id_of = |it: &serde_json::Value| it["id"].as_str().expect("id").to_owned();
    app.assign_role(&id_of(&user_admin), roles::USER_ADMINISTRATOR, "/").await;
    app.assign_role(&id_of(&helper), roles::HELPDESK_ADMINISTRATOR, "/").await;
    app.assign_role(&id_of(&second_global), roles::GLOBAL_ADMINISTRATOR, "/").await;

    // A User Administrator disables a plain user but not a Global Administrator.
    let token = app.token_for(&format!("user.admin@{DOMAIN}")).await;
    let body = json!({"accountEnabled": false});
    let ok = app.as_user(&token).patch(&format!("/v1.0/users/{}", id_of(&plain)), &body).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.text);
    let refused = app.as_user(&token).patch(&format!("/v1.0/users/{}", id_of(&second_global)), &body).await;
    assert_graph_error(&refused, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert_eq!(
        app.get(&format!("/beta/users/{}", id_of(&second_global))).await.body["accountEnabled"],
        true,
        "nothing changed"
    );

    // A Helpdesk Administrator holds no delete action at all.
    let helpdesk = app.token_for(&format!("helper@{DOMAIN}")).await;
    let delete = app.as_user(&helpdesk).delete(&format!("/v1.0/users/{}", id_of(&plain))).await;
    assert_graph_error(&delete, StatusCode::FORBIDDEN, "Authorization_RequestDenied");

    // Restricted-management units: even a Global Administrator is refused, with Entra's message.
    app.create_unit("Executives", true, &[&id_of(&executive)]).await;
    let blocked = app.patch(&format!("/v1.0/users/{}", id_of(&executive)), &json!({"jobTitle": "CEO"})).await;
    assert_graph_error(&blocked, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert!(
        blocked.body["error"]["message"]
            .as_str()
            .is_some_and(|it| it.contains("restricted management administrative unit")),
        "{}",
        blocked.text
    );

    // The last enabled Global Administrator cannot be disabled; with two, one can.
    let second_token = app.token_for(&format!("second.global@{DOMAIN}")).await;
    let first = app.as_user(&second_token).patch(&format!("/v1.0/users/{admin_id}"), &body).await;
    assert_eq!(
        first.status,
        StatusCode::NO_CONTENT,
        "two Global Administrators: one may disable the other: {}",
        first.text
    );
    let last = app.as_user(&second_token).patch(&format!("/v1.0/users/{}", id_of(&second_global)), &body).await;
    assert_graph_error(&last, StatusCode::FORBIDDEN, "Authorization_RequestDenied");

    // A role held through a role-assignable group counts on the next request.
    let member_token = app.token_for(&format!("rag.member@{DOMAIN}")).await;
    let create = json!({"accountEnabled": true, "displayName": "Z", "mailNickname": "z", "userPrincipalName": format!("z@{DOMAIN}"),
        "passwordProfile": {"password": "Tq7-harbour-Lantern-92!"}});
    let before = app.as_user(&member_token).post("/v1.0/users", &create).await;
    assert_graph_error(&before, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let group = app
        .as_user(&second_token)
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Admins", "mailEnabled": false,
        "mailNickname": "admins", "securityEnabled": true, "isAssignableToRole": true}),
        )
        .await;
    let gid = id_of(&group.body);
    app.assign_role(&gid, roles::USER_ADMINISTRATOR, "/").await;
    let reference =
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", id_of(&member))});
    let added = app.as_user(&second_token).post(&format!("/v1.0/groups/{gid}/members/$ref"), &reference).await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    let after = app.as_user(&member_token).post("/v1.0/users", &create).await;
    assert_eq!(after.status, StatusCode::CREATED, "the same token works once the role arrives: {}", after.text);
}

async fn concurrent_first_starts_create_one_tenant(backend: Backend) {
    let (url, _dir) = keyward_testkit::fresh_url(backend);
    let clock = std::sync::Arc::new(keyward_app::ManualClock::new(time::OffsetDateTime::now_utc()));
    let first = keyward_testkit::node(&url, clock.clone(), "http://127.0.0.1:1").await;
    let second = keyward_testkit::node(&url, clock.clone(), "http://127.0.0.1:1").await;
    let request =
        || keyward_app::BootstrapRequest { admin_upn: None, admin_password: None, tenant_domain: "race.test".into() };
    let (a, b) = tokio::join!(first.bootstrap(request()), second.bootstrap(request()));
    let outcomes = [a.expect("first node starts"), b.expect("second node starts")];
    let n_created = outcomes.iter().filter(|it| matches!(it, keyward_app::BootstrapOutcome::Created { .. })).count();
    assert_eq!(n_created, 1, "{outcomes:?}");
    let ids: Vec<String> = outcomes
        .iter()
        .map(|it| match it {
            keyward_app::BootstrapOutcome::Created { tenant_id, .. }
            | keyward_app::BootstrapOutcome::Existing { tenant_id } => tenant_id.to_string(),
        })
        .collect();
    assert_eq!(ids[0], ids[1], "both nodes serve the same tenant");
    assert!(
        !format!("{outcomes:?}").contains("temporary_access_pass: Some((\""),
        "Debug never shows the pass: {outcomes:?}"
    );
}

/// `/openapi.json` tells the truth: every documented operation is routed (no 405, no "resource
/// not found for the segment"), beta-only operations are documented under `/beta` alone and
/// refused under `/v1.0`, and operation ids are unique. (Every routed Graph operation is
/// documented by construction: `Api::route` registers both.)
async fn openapi_documents_exactly_what_is_routed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc = app.get("/openapi.json").await.body;
    let paths = doc["paths"].as_object().expect("paths");
    let mut ids = std::collections::HashSet::new();
    let mut checked = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            let id = operation["operationId"].as_str().unwrap_or_default().to_owned();
            if path.starts_with("/v1.0") || path.starts_with("/beta") {
                assert!(!id.is_empty(), "{method} {path} has no operationId");
                assert!(ids.insert(id.clone()), "operationId {id} appears twice");
            }
            if !(path.starts_with("/v1.0") || path.starts_with("/beta")) {
                continue;
            }
            let concrete = path
                .replace("{tenant}", DOMAIN)
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        "00000000-0000-4000-8000-00000000f00d".to_owned()
                    } else {
                        segment.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let body =
                (method == reqwest::Method::POST || method == reqwest::Method::PATCH || method == reqwest::Method::PUT)
                    .then(|| json!({}));
            // A fresh token each time: an operation may revoke the administrator's sessions.
            let token = app.token_for(keyward_testkit::ADMIN_UPN).await;
            let reply = app.send(method.clone(), &concrete, Some(&token), body.as_ref(), &[]).await;
            assert_ne!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {concrete}: {}", reply.text);
            assert!(
                !reply.text.contains("Resource not found for the segment"),
                "documented but not routed: {method} {concrete}: {}",
                reply.text
            );
            assert!(reply.status.as_u16() < 500, "{method} {concrete}: {}", reply.text);
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked}");
    // Per-user MFA is beta only: documented there, refused under /v1.0.
    assert!(paths.contains_key("/beta/users/{id}/authentication/requirements"));
    assert!(!paths.contains_key("/v1.0/users/{id}/authentication/requirements"));
    let v1 = app.get(&format!("/v1.0/users/{}/authentication/requirements", keyward_testkit::ADMIN_UPN)).await;
    assert_eq!(v1.status, StatusCode::BAD_REQUEST, "{}", v1.text);
}

/// Graph's URLs are case-insensitive: documented paths in other casings reach the same
/// handler (fixed segments, versions, actions, `$ref`, the pass policy's configuration id), while
/// ids and sign-in names stay as sent and unknown segments are still refused with their spelling.
async fn paths_match_without_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app.create_user("casey", "Casey Case").await;
    let casey = created["id"].as_str().expect("id").to_owned();
    for path in [
        "/v1.0/auditLogs/directoryaudits".to_owned(),
        "/V1.0/USERS".to_owned(),
        "/Beta/Users?$top=1".to_owned(),
        format!("/v1.0/users/casey@{}/authentication/METHODS", DOMAIN.to_uppercase()),
        format!("/beta/users/{casey}/Authentication/Requirements"),
        "/v1.0/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/temporaryAccessPass".to_owned(),
        "/v1.0/ROLEMANAGEMENT/directory/roleDefinitions".to_owned(),
        "/v1.0/reports/authenticationmethods/usersregisteredbymethod(includedUserTypes='all',includedUserRoles='all')"
            .to_owned(),
    ] {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
    }
    let user = app.get(&format!("/v1.0/USERS/{}", casey.to_uppercase())).await;
    assert_eq!(user.body["id"], casey.as_str(), "{}", user.text);
    // `$count` reached its handler, which wants `ConsistencyLevel: eventual`, as Graph does.
    let count = app.get("/v1.0/users/$COUNT").await;
    assert!(count.text.contains("$count is not currently supported."), "{}", count.text);
    // An action in another case acts (and is audited) as the documented one.
    let revoked = app.post(&format!("/v1.0/Users/{casey}/revokesigninsessions"), &json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    let audits = app.audit_for(&casey).await;
    assert!(
        audits.iter().any(|it| it.activity_display_name == "Update StsRefreshTokenValidFrom Timestamp"),
        "{audits:?}"
    );
    // A segment no route has is refused, in the spelling it was sent.
    let unknown = app.get("/v1.0/Users/NoSuchThing/Gadgets").await;
    assert_graph_error(&unknown, StatusCode::BAD_REQUEST, "BadRequest");
    assert!(unknown.text.contains("'Gadgets'"), "{}", unknown.text);
    // The versions alone are unknown segments too, after authentication, in either version's
    // spelling; `/beta` in any case reaches beta's handlers (its `$select`-free user shape).
    for path in ["/v1.0", "/v1.0/", "/BETA", "/beta/"] {
        let anonymous = app.send(Method::GET, path, None, None, &[]).await;
        assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
        let reply = app.get(path).await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "BadRequest");
        let segment = path.trim_matches('/');
        assert!(reply.text.contains(&format!("'{segment}'")), "{path}: {}", reply.text);
    }
    let beta = app.get(&format!("/BETA/users/{casey}")).await;
    let v1 = app.get(&format!("/v1.0/users/{casey}")).await;
    assert!(beta.body.as_object().map(|it| it.len()) > v1.body.as_object().map(|it| it.len()), "{}", beta.text);
    assert!(beta.body["@odata.context"].as_str().is_some_and(|it| it.contains("/beta/")), "{}", beta.text);
    // A method a Graph path does not take is Graph's 405 (after authentication); elsewhere a
    // plain one.
    let put = app.send(Method::PUT, "/v1.0/AUDITLOGS/directoryAudits", Some(&app.admin_token), None, &[]).await;
    assert_graph_error(&put, StatusCode::METHOD_NOT_ALLOWED, "Request_BadRequest");
    assert!(put.text.contains("'PUT'"), "{}", put.text);
    let anonymous = app.send(Method::PUT, "/beta/auditLogs/directoryAudits", None, None, &[]).await;
    assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    let health = app.send(Method::POST, "/healthz", None, None, &[]).await;
    assert_eq!(health.status, StatusCode::METHOD_NOT_ALLOWED, "{}", health.text);
    assert!(!health.text.contains("Request_BadRequest"), "{}", health.text);
}

/// `$filter` on service principals and applications, as scripts find an application's principal:
/// `appId eq`, `displayName` equality and prefix, `servicePrincipalNames/any`; paged with `$top`;
/// unsupported clauses and unknown properties refused, never ignored.
async fn service_principals_and_applications_filter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut app_ids = Vec::new();
    for name in ["Payroll sync", "Payroll export", "Backup agent"] {
        let created = app.post("/v1.0/applications", &json!({"displayName": name})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        app_ids.push(created.body["appId"].as_str().expect("appId").to_owned());
    }
    let names = |reply: &keyward_testkit::Reply| -> Vec<String> {
        let mut names: Vec<String> = reply.body["value"]
            .as_array()
            .map(|it| it.iter().filter_map(|it| it["displayName"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        names.sort();
        names
    };
    let payroll_sync = &app_ids[0];
    for resource in ["servicePrincipals", "applications"] {
        let by_app_id = app.get(&format!("/v1.0/{resource}?$filter=appId eq '{payroll_sync}'")).await;
        assert_eq!(by_app_id.status, StatusCode::OK, "{}", by_app_id.text);
        assert_eq!(names(&by_app_id), ["Payroll sync"], "{resource}: {}", by_app_id.text);
        let by_name = app.get(&format!("/v1.0/{resource}?$filter=displayName eq 'backup AGENT'")).await;
        assert_eq!(names(&by_name), ["Backup agent"], "{resource}: {}", by_name.text);
        let prefix = app.get(&format!("/v1.0/{resource}?$filter=startswith(displayName,'Payroll')")).await;
        assert_eq!(names(&prefix), ["Payroll export", "Payroll sync"], "{resource}: {}", prefix.text);
        let none = app.get(&format!("/v1.0/{resource}?$filter=appId eq '00000000-0000-4000-8000-00000000dead'")).await;
        assert_eq!(none.body["value"], json!([]), "{resource}: {}", none.text);
        // Paged: one match per page, then a last page without a next link.
        let first = app.get(&format!("/v1.0/{resource}?$filter=startswith(displayName,'Payroll')&$top=1")).await;
        assert_eq!(first.body["value"].as_array().map(Vec::len), Some(1), "{}", first.text);
        let next = first.body["@odata.nextLink"].as_str().expect("a next link").to_owned();
        let path = next.split("/v1.0").nth(1).expect("path");
        let second = app.get(&format!("/v1.0{path}")).await;
        let mut both = names(&first);
        both.extend(names(&second));
        both.sort();
        assert_eq!(both, ["Payroll export", "Payroll sync"], "{}", second.text);
        let unsupported = app.get(&format!("/v1.0/{resource}?$filter=endswith(displayName,'sync')")).await;
        assert_eq!(unsupported.status, StatusCode::BAD_REQUEST, "{}", unsupported.text);
        let unknown = app.get(&format!("/v1.0/{resource}?$filter=colour eq 'blue'")).await;
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text);
    }
    let by_name =
        app.get(&format!("/v1.0/servicePrincipals?$filter=servicePrincipalNames/any(n:n eq '{payroll_sync}')")).await;
    assert_eq!(names(&by_name), ["Payroll sync"], "{}", by_name.text);
    assert_eq!(by_name.body["value"][0]["servicePrincipalNames"], json!([payroll_sync]));
    let enabled =
        app.get("/v1.0/servicePrincipals?$filter=accountEnabled eq true and startswith(displayName,'Back')").await;
    assert_eq!(names(&enabled), ["Backup agent"], "{}", enabled.text);
    // `$select` on both, lists and single objects (also by alternate key); an unknown name is 400.
    for resource in ["servicePrincipals", "applications"] {
        let listed = app.get(&format!("/v1.0/{resource}?$select=appId,displayName")).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
        let first = listed.body["value"][0].as_object().expect("an object");
        let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["appId", "displayName"], "{}", listed.text);
        assert!(listed.body["@odata.context"].as_str().is_some_and(|it| it.ends_with("(appId,displayName)")));
        let bad = app.get(&format!("/v1.0/{resource}?$select=colour")).await;
        assert_graph_error(&bad, StatusCode::BAD_REQUEST, "Request_BadRequest");
        let app_id = listed.body["value"][0]["appId"].as_str().expect("appId");
        let one = app.get(&format!("/v1.0/{resource}(appId='{app_id}')?$select=displayName")).await;
        assert_eq!(one.status, StatusCode::OK, "{}", one.text);
        assert_eq!(
            one.body.as_object().map(|it| it.keys().filter(|key| !key.starts_with('@')).count()),
            Some(1),
            "{}",
            one.text
        );
        assert!(one.body["displayName"].is_string(), "{}", one.text);
    }
    let registered = app.get("/v1.0/applications?$select=id").await;
    let id = registered.body["value"][0]["id"].as_str().expect("id");
    let secrets = app.get(&format!("/v1.0/applications/{id}?$select=passwordCredentials,web")).await;
    assert_eq!(secrets.status, StatusCode::OK, "{}", secrets.text);
    assert!(secrets.body["passwordCredentials"].is_array() && secrets.body["web"].is_object(), "{}", secrets.text);
    assert!(secrets.body.get("displayName").is_none(), "{}", secrets.text);
    // Without a token, nothing at all, whatever is selected.
    for path in ["/v1.0/applications?$select=id", "/v1.0/servicePrincipals?$select=appId"] {
        let anonymous = app.send(Method::GET, path, None, None, &[]).await;
        assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    }
}

/// JSON batching: each inner request goes through the router as if sent alone (authorised,
/// audited), in order; `dependsOn` on a failed request answers 424; Graph's limits are enforced.
async fn json_batching(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let upn = format!("batchy@{DOMAIN}");
    let batch = json!({"requests": [
        {"id": "1", "method": "POST", "url": "/users", "headers": {"Content-Type": "application/json"},
         "body": {"accountEnabled": true, "displayName": "Batchy", "mailNickname": "batchy", "userPrincipalName": upn,
                  "passwordProfile": {"password": "Tq7-harbour-Lantern-92!"}}},
        {"id": "2", "method": "GET", "url": format!("users/{upn}?$select=displayName"), "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": "/users/nobody@nowhere.test"},
        {"id": "4", "method": "GET", "url": "/groups", "dependsOn": ["3"]},
        {"id": "5", "method": "delete", "url": "/users/nobody@nowhere.test/NoSuchThing"},
    ]});
    let reply = app.post("/v1.0/$batch", &batch).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let by_id = |id: &str| {
        reply.body["responses"].as_array().and_then(|it| it.iter().find(|r| r["id"] == id)).cloned().unwrap_or_default()
    };
    assert_eq!(by_id("1")["status"], 201, "{}", reply.text);
    assert_eq!(by_id("1")["headers"]["Content-Type"].as_str().map(|it| it.starts_with("application/json")), Some(true));
    let created = by_id("1")["body"]["id"].as_str().expect("the new user's id").to_owned();
    assert_eq!(by_id("2")["status"], 200);
    assert_eq!(by_id("2")["body"]["displayName"], "Batchy");
    assert_eq!(by_id("3")["status"], 404);
    assert_eq!(by_id("3")["body"]["error"]["code"], "Request_ResourceNotFound", "Graph's own error: {}", reply.text);
    assert_eq!(by_id("4")["status"], 424);
    assert_eq!(by_id("4")["body"]["error"]["code"], "FailedDependency");
    assert_eq!(by_id("5")["status"], 400);
    let records = app.audit_for(&created).await;
    assert!(records.iter().any(|it| it.activity_display_name == "Add user"), "audited as if alone: {records:?}");
    // A replayed batch runs again, request by request: the user exists, so the creation is refused
    // and nothing is made twice.
    let replay = app.post("/v1.0/$batch", &batch).await;
    assert_eq!(replay.body["responses"][0]["status"], 400, "{}", replay.text);
    let adds = app.audit_for(&created).await.iter().filter(|it| it.activity_display_name == "Add user").count();
    assert_eq!(adds, 1);

    // Each inner request is authorised on its own: a plain user's batch cannot create users.
    let token = app.token_for(&upn).await;
    let plain = app
        .as_user(&token)
        .post(
            "/beta/$batch",
            &json!({"requests": [
                {"id": "a", "method": "GET", "url": "/me"},
                {"id": "b", "method": "POST", "url": "/groups", "body": {"displayName": "Nope", "mailEnabled": false,
                 "mailNickname": "nope", "securityEnabled": true}},
            ]}),
        )
        .await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.text);
    assert_eq!(plain.body["responses"][0]["status"], 200);
    assert_eq!(plain.body["responses"][1]["status"], 403, "{}", plain.text);

    // Graph's limits and malformed batches: the whole batch is refused, nothing runs.
    let many: Vec<Value> = (0..21).map(|n| json!({"id": n.to_string(), "method": "GET", "url": "/me"})).collect();
    for (body, why) in [
        (json!({"requests": many}), "exceeds the limit of 20"),
        (json!({"requests": [{"id": "1", "method": "POST", "url": "/$batch", "body": {"requests": []}}]}), "nested"),
        (
            json!({"requests": [{"id": "1", "method": "GET", "url": "/me"}, {"id": "1", "method": "GET", "url": "/me"}]}),
            "used twice",
        ),
        (
            json!({"requests": [{"id": "a", "method": "GET", "url": "/me"}, {"id": "A", "method": "GET", "url": "/me"}]}),
            "used twice",
        ),
        (json!({"requests": [{"id": "1", "method": "GET", "url": "/me", "dependsOn": ["9"]}]}), "depends on '9'"),
        (json!({"requests": [{"id": "1", "method": "GET", "url": "https://evil.example/v1.0/users"}]}), "relative"),
        (
            json!({"requests": [{"id": "1", "method": "POST", "url": "/users", "body": {"displayName": "Ghost"}}]})
                .pointer("/nope")
                .cloned()
                .unwrap_or(json!({})),
            "requests",
        ),
    ] {
        let refused = app.post("/v1.0/$batch", &body).await;
        assert_graph_error(&refused, StatusCode::BAD_REQUEST, "BadRequest");
        assert!(refused.text.contains(why), "{why}: {}", refused.text);
    }
    let anonymous = app.send(Method::POST, "/v1.0/$batch", None, Some(&batch), &[]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

/// Delta queries, as sync tools use them: an initial round in pages, then each change once
/// (created, changed, deleted as `@removed`), only the selected properties, tracked ids, and
/// Graph's refusals.
async fn delta_rounds_for_users_and_groups(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let adele = id_of(&app.create_user("adele", "Adele Vance").await);
    let megan = id_of(&app.create_user("megan", "Megan Bowen").await);
    let small_pages = [("Prefer", "odata.maxpagesize=2")];
    let get = |path: String| {
        let app = &app;
        async move {
            let reply = app.send(Method::GET, &path, Some(&app.admin_token), None, &small_pages).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
            reply
        }
    };
    let relative = |link: &str| link.strip_prefix(app.base_url.as_str()).expect("a link to this server").to_owned();

    // The initial round: every user, in pages, then the delta link.
    let mut seen = Vec::new();
    let mut page = get("/v1.0/users/delta?$select=displayName,jobTitle".to_owned()).await;
    assert!(
        page.body["@odata.context"].as_str().expect("context").ends_with("$metadata#users(id,displayName,jobTitle)")
    );
    let delta_link = loop {
        assert!(page.body["value"].as_array().expect("value").len() <= 2, "{}", page.text);
        for it in page.body["value"].as_array().expect("value") {
            assert_eq!(keys_of(it), vec!["displayName", "id", "jobTitle"], "only the selected properties");
            seen.push(id_of(it));
        }
        if let Some(next) = page.body["@odata.nextLink"].as_str() {
            assert!(page.body.get("@odata.deltaLink").is_none(), "one link per page");
            page = get(relative(next)).await;
        } else {
            break page.body["@odata.deltaLink"].as_str().expect("the round ends with a delta link").to_owned();
        }
    };
    let listed = app.get("/v1.0/users?$select=id&$top=999").await;
    let mut all: Vec<String> = listed.body["value"].as_array().expect("value").iter().map(id_of).collect();
    all.sort();
    seen.sort();
    assert_eq!(seen, all, "the initial round lists every user once");

    // Changes: each changed object once, a deleted one as @removed.
    assert_eq!(
        app.patch(&format!("/v1.0/users/{adele}"), &json!({"jobTitle": "Lead"})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.patch(&format!("/v1.0/users/{adele}"), &json!({"jobTitle": "Head"})).await.status,
        StatusCode::NO_CONTENT
    );
    let casey = id_of(&app.create_user("casey", "Casey Case").await);
    assert_eq!(app.delete(&format!("/v1.0/users/{megan}")).await.status, StatusCode::NO_CONTENT);
    let changes = get(relative(&delta_link)).await;
    let items = changes.body["value"].as_array().expect("value");
    assert_eq!(items.len(), 3, "{}", changes.text);
    let by_id = |id: &str| items.iter().find(|it| it["id"] == id).unwrap_or_else(|| panic!("{id} in {}", changes.text));
    assert_eq!(by_id(&adele)["jobTitle"], "Head");
    assert_eq!(by_id(&casey)["displayName"], "Casey Case");
    // A deleted user can still be restored: Graph's "changed"; removed for good: "deleted".
    assert_eq!(by_id(&megan), &json!({"id": megan, "@removed": {"reason": "changed"}}));
    let next_round = changes.body["@odata.deltaLink"].as_str().expect("delta link").to_owned();
    let quiet = get(relative(&next_round)).await;
    assert_eq!(quiet.body["value"], json!([]), "nothing changed since: {}", quiet.text);
    let after_quiet = quiet.body["@odata.deltaLink"].as_str().expect("delta link").to_owned();
    assert_eq!(app.delete(&format!("/v1.0/directory/deletedItems/{megan}")).await.status, StatusCode::NO_CONTENT);
    let purged = get(relative(&after_quiet)).await;
    assert_eq!(purged.body["value"], json!([{"id": megan, "@removed": {"reason": "deleted"}}]), "{}", purged.text);

    // Sync from now, and a round that tracks chosen ids only.
    let latest = get("/v1.0/users/delta?$deltatoken=latest".to_owned()).await;
    assert_eq!(latest.body["value"], json!([]));
    let from_now = latest.body["@odata.deltaLink"].as_str().expect("delta link").to_owned();
    let tracked = get(format!("/v1.0/users/delta?$filter=id eq '{casey}'")).await;
    assert_eq!(tracked.body["value"].as_array().map(Vec::len), Some(1), "{}", tracked.text);
    let tracked_round = tracked.body["@odata.deltaLink"].as_str().expect("delta link").to_owned();
    assert_eq!(
        app.patch(&format!("/v1.0/users/{adele}"), &json!({"jobTitle": "Chief"})).await.status,
        StatusCode::NO_CONTENT
    );
    let since = get(relative(&from_now)).await;
    assert_eq!(since.body["value"][0]["id"], adele.as_str(), "{}", since.text);
    assert_eq!(get(relative(&tracked_round)).await.body["value"], json!([]), "adele is not tracked there");

    // Groups: created, then changed by a new member.
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Sales", "mailEnabled": false, "mailNickname": "sales", "securityEnabled": true}),
        )
        .await;
    let gid = id_of(&group.body);
    let first = get("/v1.0/groups/delta".to_owned()).await;
    assert_eq!(first.body["value"][0]["id"], gid.as_str(), "{}", first.text);
    let group_round = first.body["@odata.deltaLink"].as_str().expect("delta link").to_owned();
    let reference = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{casey}")});
    assert_eq!(app.post(&format!("/v1.0/groups/{gid}/members/$ref"), &reference).await.status, StatusCode::NO_CONTENT);
    let changed = get(relative(&group_round)).await;
    assert_eq!(changed.body["value"][0]["displayName"], "Sales", "{}", changed.text);

    // Refusals: options delta does not take, tokens of another collection or mangled, a changed
    // $select, $deltatoken elsewhere; and a token too old to continue from.
    assert_graph_error(&app.get("/v1.0/users/delta?$top=5").await, StatusCode::BAD_REQUEST, "Request_UnsupportedQuery");
    assert_graph_error(
        &app.get("/v1.0/users/delta?$filter=displayName eq 'x'").await,
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
    );
    assert_graph_error(
        &app.get("/v1.0/users/delta?$deltatoken=garbage").await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    let users_token = next_round.split("$deltatoken=").nth(1).expect("token");
    assert_graph_error(
        &app.get(&format!("/v1.0/groups/delta?$deltatoken={users_token}")).await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    assert_graph_error(
        &app.get(&format!("{}&$select=surname", relative(&next_round))).await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    assert_graph_error(&app.get("/v1.0/users?$deltatoken=latest").await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_graph_error(
        &app.get("/v1.0/users/delta?$select=signInActivity").await,
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
    );
    // A token is MACed: one changed to read from the start of the log (or to live longer) is refused.
    let (body, mac) = users_token.rsplit_once('.').expect("body.mac");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).expect("base64url");
    let mut state: Value = serde_json::from_slice(&json).expect("JSON");
    state["i"] = json!(0);
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&state).expect("JSON"));
    let replayed = app.get(&format!("/v1.0/users/delta?$deltatoken={forged}.{mac}")).await;
    assert_graph_error(&replayed, StatusCode::BAD_REQUEST, "Request_BadRequest");
    app.clock.advance(time::Duration::days(8));
    let token = app.token_for(ADMIN_UPN).await;
    let expired = app.as_user(&token).get(&relative(&next_round)).await;
    assert_graph_error(&expired, StatusCode::GONE, "syncStateNotFound");
    assert_eq!(app.as_user(&token).get("/v1.0/users/delta").await.status, StatusCode::OK, "a new round starts");
    for path in ["/v1.0/Users/Delta", "/beta/groups/delta()", "/v1.0/groups/delta?$select=members"] {
        let reply = app.as_user(&token).get(path).await;
        let expected = if path.contains("members") { StatusCode::BAD_REQUEST } else { StatusCode::OK };
        assert_eq!(reply.status, expected, "{path}: {}", reply.text);
    }
}

/// The keys of a JSON object, sorted.
fn keys_of(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().expect("an object").keys().cloned().collect();
    keys.sort();
    keys
}

/// PostgreSQL: connections the database server dropped (a restart, an administrator, an idle
/// timeout) are replaced. A read every request makes (the caller, a user) that finds its
/// connection dropped runs again on a new one, so even right after every connection ended the
/// request succeeds; the pool checks a connection when it is taken only after it sat unused for a
/// while (half a second), not before every statement, so the rest waits that long. Requests
/// beyond the readers' eight wait for one rather than opening more connections.
async fn connections_the_database_dropped_are_replaced(backend: Backend) {
    use sqlx::Connection;
    if backend == Backend::Sqlite {
        return;
    }
    // Signing keys read once a minute, as in production (tests read them on every request, on
    // the pool), so the request right after the connections ended makes only the two reads.
    let app =
        TestApp::spawn_configured(backend, |config| config.key_cache_ttl = std::time::Duration::from_secs(60)).await;
    let admin_path = format!("/v1.0/users/{ADMIN_UPN}");
    for _ in 0..3 {
        let me = app.get("/v1.0/me").await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    }
    // One connection of the test's own, so counting Keyward's leaves out just that one.
    let mut admin = sqlx::PgConnection::connect(&app.database_url).await.expect("open PostgreSQL");
    assert_eq!(app.get(&admin_path).await.status, StatusCode::OK);
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .expect("end Keyward's connections");
    assert!(!ended.is_empty() && ended.iter().all(|it| *it), "Keyward had connections to end: {ended:?}");
    for _ in 0..2 {
        let reply = app.get(&admin_path).await;
        assert_eq!(reply.status, StatusCode::OK, "right after the connections ended: {}", reply.text);
        assert_eq!(reply.body["userPrincipalName"], ADMIN_UPN);
    }
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    for path in ["/v1.0/me", "/v1.0/users", admin_path.as_str(), "/v1.0/users?$top=1", "/v1.0/organization"] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path} after the connections ended: {}", reply.text);
    }

    // While a lock holds every read of users back, exactly eight reads wait for it on their own
    // connections; the other requests wait for one of those, and all finish once it is released.
    let mut locker = sqlx::PgConnection::connect(&app.database_url).await.expect("open PostgreSQL");
    let mut lock = locker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.expect("lock users");
    let held: Vec<_> =
        (0..12).map(|_| app.send_in_background(Method::GET, &admin_path, &app.admin_token, Value::Null)).collect();
    const WAITING: &str = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                           AND backend_type = 'client backend' AND wait_event_type = 'Lock'";
    until_sessions(&mut admin, WAITING, |waiting| waiting >= 8, "eight reads waiting for the lock").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sessions(&mut admin, WAITING).await, 8, "reads waiting for the lock, each on a connection of its own");
    lock.rollback().await.expect("release the lock");
    locker.close().await.expect("close the lock's connection");
    for request in held {
        let reply = request.await.expect("request task");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }

    // Many requests at once wait for a connection rather than opening one each: the pool's 16
    // and the readers' 8 at most.
    let many: Vec<_> =
        (0..64).map(|_| app.send_in_background(Method::GET, &admin_path, &app.admin_token, Value::Null)).collect();
    for request in many {
        let reply = request.await.expect("request task");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    let open = sessions(
        &mut admin,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
    .await;
    assert!(open <= 24, "Keyward held {open} connections");
    admin.close().await.expect("close");
    let created = app
        .post(
            "/v1.0/users",
            &json!({
                "accountEnabled": true, "displayName": "After Restart", "mailNickname": "after",
                "userPrincipalName": format!("after.restart@{DOMAIN}"),
                "passwordProfile": {"password": "Tq7-harbour-Lantern-92!"}
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
}

/// PostgreSQL: a read whose request went away halfway through its statement (here, while it
/// waited for a lock) does not cost its connection: the reader is checked in the background once
/// the statement's answer arrives and handed back, so the next read runs on the same server
/// process instead of opening a new one.
async fn a_read_cancelled_halfway_keeps_its_connection(backend: Backend) {
    use keyward_core::ids::ObjectId;
    use sqlx::Connection;
    if backend == Backend::Sqlite {
        return;
    }
    let app = TestApp::spawn(backend).await;
    let me = app.get("/v1.0/me").await;
    let admin = ObjectId::parse(me.body["id"].as_str().expect("id")).expect("an object id");
    let organization = app.get("/v1.0/organization").await;
    let tenant = ObjectId::parse(organization.body["value"][0]["id"].as_str().expect("id")).expect("an object id");
    // A store of its own, so its connections are the only new ones.
    let store = keyward_store::open(&app.database_url).await.expect("open the store");
    let now = time::OffsetDateTime::now_utc();
    let found = store.get_user_and_roles(&tenant, &admin, now).await.expect("read");
    assert!(found.is_some(), "the administrator is found");

    let mut watcher = sqlx::PgConnection::connect(&app.database_url).await.expect("open PostgreSQL");
    let mut locker = sqlx::PgConnection::connect(&app.database_url).await.expect("open PostgreSQL");
    let mut lock = locker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.expect("lock users");
    let reading = {
        let store = std::sync::Arc::clone(&store);
        let (tenant, admin) = (tenant.clone(), admin.clone());
        tokio::spawn(async move { store.get_user_and_roles(&tenant, &admin, now).await })
    };
    crate::security::until_a_session_waits_for_a_lock(&app).await;
    let since: String =
        sqlx::query_scalar("SELECT now()::text").fetch_one(&mut watcher).await.expect("the server's time");
    reading.abort();
    assert!(reading.await.is_err_and(|it| it.is_cancelled()), "the read was cancelled halfway");
    lock.rollback().await.expect("release the lock");
    // The reader's check reads the cancelled statement's answer first, then hands it back: once
    // every other session of the database is idle, only the client's side of that is left.
    until_sessions(
        &mut watcher,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND state <> 'idle'",
        |busy| busy == 0,
        "end of the cancelled statement",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for _ in 0..3 {
        let found = store.get_user_and_roles(&tenant, &admin, time::OffsetDateTime::now_utc()).await.expect("read");
        assert_eq!(found.map(|(user, _)| user.id.clone()), Some(admin.clone()));
    }
    let opened: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND backend_type = 'client backend' AND backend_start > $1::timestamptz",
    )
    .bind(&since)
    .fetch_one(&mut watcher)
    .await
    .expect("pg_stat_activity");
    assert_eq!(opened, 0, "connections opened since the read was cancelled: one replaced its connection");
    store.close().await;
    locker.close().await.expect("close");
    watcher.close().await.expect("close");
}

/// `GET /oauth2PermissionGrants` filters in the database and pages (an application that users
/// consent to one by one has a grant per user): every grant once, in pages of `$top`, the filter
/// kept across pages; values compared without regard to case; two values for one property match
/// nothing; bad paging options are refused and change nothing; anonymous callers are refused.
async fn permission_grants_are_filtered_and_paged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = |name: &'static str| {
        let app = &app;
        async move {
            let created = app.post("/v1.0/applications", &json!({"displayName": name})).await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
            let app_id = created.body["appId"].as_str().expect("appId").to_owned();
            let principal = app.get(&format!("/v1.0/servicePrincipals(appId='{app_id}')")).await;
            assert_eq!(principal.status, StatusCode::OK, "{}", principal.text);
            id_of(&principal.body)
        }
    };
    let (busy, quiet) = (client("Busy").await, client("Quiet").await);
    let graph = "00000003-0000-0000-c000-000000000000";
    let grants = "/v1.0/oauth2PermissionGrants";
    let grant = |client: &str, user: Option<&str>| {
        let mut body =
            json!({"clientId": client, "consentType": "AllPrincipals", "resourceId": graph, "scope": "openid"});
        if let Some(user) = user {
            body["consentType"] = json!("Principal");
            body["principalId"] = json!(user);
        }
        body
    };
    let mut users = Vec::new();
    let mut busy_grants = Vec::new();
    for n in 0..5 {
        let user = id_of(&app.create_user(&format!("consenter{n}"), &format!("Consenter {n}")).await);
        let made = app.post(grants, &grant(&busy, Some(&user))).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        busy_grants.push(id_of(&made.body));
        users.push(user);
    }
    let made = app.post(grants, &grant(&busy, None)).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    busy_grants.push(id_of(&made.body));
    let made = app.post(grants, &grant(&quiet, Some(&users[0]))).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let quiet_grant = id_of(&made.body);
    busy_grants.sort();

    // One client's grants, two a page, the client's id in capitals: each once.
    let mut url = format!("{grants}?$filter=clientId eq '{}'&$top=2", busy.to_uppercase());
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let page = app.get(&url).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let values = page.body["value"].as_array().expect("value");
        assert!(values.len() <= 2, "{}", page.text);
        assert!(values.iter().all(|it| it["clientId"] == json!(busy)), "{}", page.text);
        seen.extend(values.iter().map(id_of));
        pages += 1;
        match page.body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.contains("$skiptoken=") && next.contains("filter="), "{next}");
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    seen.sort();
    assert_eq!(seen, busy_grants, "each grant once");

    // What an SDK asks to find one user's consent: one grant.
    let one = app
        .get(&format!("{grants}?$filter=clientId eq '{busy}' and principalId eq '{}'", users[2].to_uppercase()))
        .await;
    assert_eq!(one.body["value"].as_array().map(Vec::len), Some(1), "{}", one.text);
    assert_eq!(one.body["value"][0]["principalId"], json!(users[2]));
    let mine = app.get(&format!("{grants}?$filter=principalId eq '{}'", users[0])).await;
    let mut found: Vec<String> = mine.body["value"].as_array().expect("value").iter().map(id_of).collect();
    found.sort();
    assert_eq!(found.len(), 2, "one grant from each client: {}", mine.text);
    assert!(found.contains(&quiet_grant), "{}", mine.text);
    let everyone = app.get(&format!("{grants}?$filter=consentType eq 'allprincipals'")).await;
    assert_eq!(everyone.body["value"].as_array().map(Vec::len), Some(1), "{}", everyone.text);
    assert_eq!(everyone.body["value"][0]["consentType"], "AllPrincipals");
    let resource = app.get(&format!("{grants}?$filter=resourceId eq '{}'&$top=999", graph.to_uppercase())).await;
    assert_eq!(resource.body["value"].as_array().map(Vec::len), Some(7), "{}", resource.text);
    assert!(resource.body.get("@odata.nextLink").is_none(), "{}", resource.text);
    let all = app.get(grants).await;
    assert_eq!(all.body["value"].as_array().map(Vec::len), Some(7), "{}", all.text);
    let apart =
        app.get(&format!("{grants}?$filter=principalId eq '{}' and principalId eq '{}'", users[0], users[1])).await;
    assert_eq!((apart.status, apart.body["value"].clone()), (StatusCode::OK, json!([])), "{}", apart.text);
    let nobody = app.get(&format!("{grants}?$filter=consentType eq 'Everyone'")).await;
    assert_eq!(nobody.body["value"], json!([]), "{}", nobody.text);

    // Bad paging options: Graph's errors, nothing listed.
    assert_graph_error(&app.get(&format!("{grants}?$top=0")).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_graph_error(&app.get(&format!("{grants}?$top=1000")).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let forged = app.get(&format!("{grants}?$skiptoken=not-a-token")).await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "{}", forged.text);
    let ordered = app.get(&format!("{grants}?$orderby=id")).await;
    assert_eq!(ordered.status, StatusCode::BAD_REQUEST, "an option not honoured is refused: {}", ordered.text);
    let after = app.get(grants).await;
    assert_eq!(after.body["value"].as_array().map(Vec::len), Some(7));

    // Who may list: nobody without a token; a member without a role, as Entra's default user
    // permissions let members read service principals and their grants, with the same pages.
    let anonymous = app.send(Method::GET, grants, None, None, &[]).await;
    assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    let member = app.token_for(&format!("consenter1@{DOMAIN}")).await;
    let paged = app.as_user(&member).get(&format!("{grants}?$top=5")).await;
    assert_eq!(paged.status, StatusCode::OK, "{}", paged.text);
    assert_eq!(paged.body["value"].as_array().map(Vec::len), Some(5), "{}", paged.text);
    let next = paged.body["@odata.nextLink"].as_str().expect("a second page").to_owned();
    let rest = app.as_user(&member).get(&next).await;
    assert_eq!(rest.body["value"].as_array().map(Vec::len), Some(2), "{}", rest.text);
}

/// A user's JSON is written once while the user is unchanged (`rendered_users`), and every change
/// counts at the next read: made on this node or on another, read by id, by user principal name
/// and as `/me`, in each version's own shape.
async fn a_users_json_follows_every_change(backend: Backend) {
    let spawned = TestApp::spawn(backend).await;
    let app = &spawned;
    let (_other, other_url) = app.second_server(|_| {}).await;
    let created = app.create_user("nestor.wilke", "Nestor Wilke").await;
    let id = id_of(&created);
    let upn = format!("nestor.wilke@{DOMAIN}");
    let read = |path: String| async move {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        reply.body
    };
    let names = |name: &'static str| {
        let (id, upn) = (id.clone(), upn.clone());
        async move {
            for _ in 0..3 {
                for path in [format!("/v1.0/users/{id}"), format!("/v1.0/users/{upn}"), format!("/beta/users/{id}")] {
                    let body = read(path.clone()).await;
                    assert_eq!(body["displayName"], name, "{path}: {body}");
                    let version = if path.starts_with("/beta") { "beta" } else { "v1.0" };
                    assert_eq!(body["@odata.context"], format!("{}/{version}/$metadata#users/$entity", app.base_url));
                    // beta's default shape has more than v1.0's, each kept on its own.
                    assert_eq!(body.get("accountEnabled").is_some(), version == "beta", "{path}: {body}");
                }
            }
        }
    };
    names("Nestor Wilke").await;

    // Changed on this node.
    let renamed = app.patch(&format!("/v1.0/users/{id}"), &json!({"displayName": "Nestor W."})).await;
    assert_eq!(renamed.status, StatusCode::NO_CONTENT, "{}", renamed.text);
    names("Nestor W.").await;

    // Changed on another node on the same database.
    let reply = app
        .client
        .patch(format!("{other_url}/v1.0/users/{id}"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"displayName": "Nestor Wilke-Vance", "jobTitle": "Auditor"}))
        .send()
        .await
        .expect("PATCH on the other node");
    assert_eq!(reply.status(), StatusCode::NO_CONTENT);
    names("Nestor Wilke-Vance").await;
    assert_eq!(read(format!("/v1.0/users/{id}")).await["jobTitle"], "Auditor");

    // `/me`, read again and again, follows a change to the caller too.
    for _ in 0..3 {
        assert_eq!(read("/v1.0/me".into()).await["userPrincipalName"], ADMIN_UPN);
    }
    let admin = read("/v1.0/me".into()).await;
    let admin_id = id_of(&admin);
    let renamed = app.patch(&format!("/v1.0/users/{admin_id}"), &json!({"jobTitle": "Keeper of keys"})).await;
    assert_eq!(renamed.status, StatusCode::NO_CONTENT, "{}", renamed.text);
    assert_eq!(read("/v1.0/me".into()).await["jobTitle"], "Keeper of keys");
    assert_eq!(read("/beta/me".into()).await["jobTitle"], "Keeper of keys");

    // Deleted: not found at once, however often it was read before.
    let deleted = app.delete(&format!("/v1.0/users/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let gone = app.get(&format!("/v1.0/users/{id}")).await;
    assert_graph_error(&gone, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
}

keyward_testkit::on_both_backends!(
    a_users_json_follows_every_change,
    delta_rounds_for_users_and_groups,
    permission_grants_are_filtered_and_paged,
    json_batching,
    service_principals_and_applications_filter,
    paths_match_without_case,
    openapi_documents_exactly_what_is_routed,
    roles_follow_entras_who_may_act_on_whom,
    concurrent_first_starts_create_one_tenant,
    authentication_is_required,
    users_crud_is_audited_and_secrets_never_leak,
    bad_input_gets_graph_errors_and_changes_nothing,
    plain_users_read_but_cannot_write,
    listing_filters_pages_and_counts,
    groups_members_and_owners,
    organization_health_metrics_openapi_and_keys,
    disabled_users_lose_api_access,
    connections_the_database_dropped_are_replaced,
    a_read_cancelled_halfway_keeps_its_connection,
);
