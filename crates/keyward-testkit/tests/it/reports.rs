//! The registration report (`/reports/authenticationMethods/…`) over HTTP on both backends: each
//! user's details, the documented filters, sorting and paging, the summaries by method and by
//! feature, and who may read them.

use std::collections::BTreeSet;

use keyward_core::authz::roles;
use keyward_core::ids::ObjectId;
use keyward_testkit::{Backend, DOMAIN, TestApp, assert_graph_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DETAILS: &str = "/v1.0/reports/authenticationMethods/userRegistrationDetails";

async fn user(app: &TestApp, alias: &str, role: Option<&str>) -> (String, String) {
    let body = app.create_user(alias, &format!("{alias} Report")).await;
    let id = body["id"].as_str().expect("id").to_owned();
    if let Some(role) = role {
        app.assign_role(&id, role, "/").await;
    }
    (id, app.token_for(&format!("{alias}@{DOMAIN}")).await)
}

/// Registers an authenticator app for `user` straight in the database (the registration pages
/// are tested in `signin`; the report only reads that the method exists).
async fn add_authenticator(app: &TestApp, user: &str) {
    let store = keyward_store::open(&app.database_url).await.expect("store");
    let mut tx = store.write().await.expect("tx");
    tx.insert_software_oath_method(&keyward_store::SoftwareOathMethod {
        id: ObjectId::parse(&uuid::Uuid::new_v4().to_string()).expect("id"),
        user_id: ObjectId::parse(user).expect("user id"),
        sealed_secret: vec![0; 48],
        created: app.app.now(),
        last_used_step: 0,
    })
    .await
    .expect("method");
    tx.commit().await.expect("commit");
}

async fn add_mobile_phone(app: &TestApp, user: &str) {
    let phone = app
        .post(
            &format!("/v1.0/users/{user}/authentication/phoneMethods"),
            &json!({"phoneNumber": "+1 2065555555", "phoneType": "mobile"}),
        )
        .await;
    assert_eq!(phone.status, StatusCode::CREATED, "{}", phone.text);
}

fn upns(reply: &keyward_testkit::Reply) -> BTreeSet<String> {
    let values = reply.body["value"].as_array().unwrap_or_else(|| panic!("a collection: {}", reply.text));
    values
        .iter()
        .map(|it| it["userPrincipalName"].as_str().expect("upn").split('@').next().expect("alias").to_owned())
        .collect()
}

/// The id of the row whose user principal name starts with `alias@`.
fn find_id(reply: &keyward_testkit::Reply, alias: &str) -> String {
    let rows = reply.body["value"].as_array().expect("value");
    let row = rows
        .iter()
        .find(|it| it["userPrincipalName"].as_str().is_some_and(|upn| upn.starts_with(&format!("{alias}@"))));
    row.and_then(|it| it["id"].as_str()).expect("listed").to_owned()
}

fn set(aliases: &[&str]) -> BTreeSet<String> {
    aliases.iter().map(|it| (*it).to_owned()).collect()
}

async fn registration_details(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (adele, _) = user(&app, "adele", None).await;
    let (megan, _) = user(&app, "megan", None).await;
    let (gone, _) = user(&app, "gone", None).await;
    let (_, desk) = user(&app, "desk", Some(roles::AUTHENTICATION_ADMINISTRATOR)).await;
    let (_, reader) = user(&app, "reader", Some(roles::REPORTS_READER)).await;
    let (_, nobody) = user(&app, "nobody", None).await;
    add_mobile_phone(&app, &adele).await;
    let email = app
        .post(
            &format!("/v1.0/users/{megan}/authentication/emailMethods"),
            &json!({"emailAddress": "megan@example.org"}),
        )
        .await;
    assert_eq!(email.status, StatusCode::CREATED, "{}", email.text);
    add_authenticator(&app, &megan).await;
    let disabled = app.patch(&format!("/v1.0/users/{gone}"), &json!({"accountEnabled": false})).await;
    assert_eq!(disabled.status, StatusCode::NO_CONTENT, "{}", disabled.text);

    // Every enabled user, in Graph's shape; the disabled one is left out, as in Entra.
    let all = app.get(DETAILS).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(upns(&all), set(&["admin", "adele", "desk", "megan", "nobody", "reader"]));
    let find = |id: &str| {
        all.body["value"].as_array().expect("value").iter().find(|it| it["id"] == id).cloned().expect("listed")
    };
    let adele_row = find(&adele);
    assert_eq!(adele_row["methodsRegistered"], json!(["mobilePhone"]));
    assert_eq!(adele_row["isMfaRegistered"], true);
    assert_eq!(adele_row["isMfaCapable"], false, "Keyward sends no texts, so a phone alone is not enough");
    assert_eq!(adele_row["isSsprRegistered"], true);
    assert_eq!(adele_row["isAdmin"], false);
    assert_eq!(adele_row["userType"], "member");
    assert_eq!(adele_row["userPreferredMethodForSecondaryAuthentication"], "none");
    let megan_row = find(&megan);
    assert_eq!(megan_row["methodsRegistered"], json!(["softwareOneTimePasscode", "email"]));
    assert_eq!(megan_row["isMfaCapable"], true);
    assert_eq!(megan_row["userPreferredMethodForSecondaryAuthentication"], "oath");
    assert!(megan_row["lastUpdatedDateTime"].as_str().is_some_and(|it| it.ends_with('Z')));
    assert_eq!(
        all.body["@odata.context"]
            .as_str()
            .map(|it| it.ends_with("#reports/authenticationMethods/userRegistrationDetails")),
        Some(true)
    );

    // The documented filters.
    for (filter, expected) in [
        ("isMfaRegistered eq true", vec!["adele", "megan"]),
        ("isMfaCapable eq true", vec!["megan"]),
        ("isMfaRegistered eq false and isAdmin eq false", vec!["nobody"]),
        ("isAdmin eq true", vec!["admin", "desk", "reader"]),
        ("methodsRegistered/any(m:m eq 'email')", vec!["megan"]),
        ("methodsRegistered/any(m:m eq 'fido2')", vec![]),
        ("startswith(userPrincipalName,'AD')", vec!["adele", "admin"]),
        ("userDisplayName eq 'megan report'", vec!["megan"]),
        ("userType eq 'guest'", vec![]),
        ("isPasswordlessCapable eq true", vec![]),
    ] {
        let reply = app.get(&format!("{DETAILS}?$filter={}", keyward_app::url_encode(filter))).await;
        assert_eq!(reply.status, StatusCode::OK, "{filter}: {}", reply.text);
        assert_eq!(upns(&reply), set(&expected), "{filter}");
    }
    for bad in
        ["isAdmin eq true or isMfaCapable eq true", "lastUpdatedDateTime ge 2026-01-01T00:00:00Z", "isAdmin eq 'yes'"]
    {
        let reply = app.get(&format!("{DETAILS}?$filter={}", keyward_app::url_encode(bad))).await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_UnsupportedQuery");
    }
    assert_graph_error(
        &app.get(&format!("{DETAILS}?$orderby=isAdmin")).await,
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
    );

    // Sorted by display name, descending, two at a time: every user once, in order.
    let mut next = Some(format!("{DETAILS}?$orderby=userDisplayName%20desc&$top=2"));
    let mut names = Vec::new();
    while let Some(link) = next {
        let page = app.get(link.trim_start_matches(&app.base_url)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.body["value"].as_array().expect("value").len() <= 2);
        names.extend(
            page.body["value"]
                .as_array()
                .expect("value")
                .iter()
                .map(|it| it["userDisplayName"].as_str().expect("name").to_lowercase()),
        );
        next = page.body["@odata.nextLink"].as_str().map(str::to_owned);
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 6, "{names:?}");

    // One user; a disabled or unknown one is not found.
    let single = app.get(&format!("{DETAILS}/{megan}")).await;
    assert_eq!(single.status, StatusCode::OK, "{}", single.text);
    assert_eq!(single.body["userPrincipalName"], format!("megan@{DOMAIN}"));
    assert_graph_error(&app.get(&format!("{DETAILS}/{gone}")).await, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    assert_graph_error(
        &app.get(&format!("{DETAILS}/not-an-id")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );

    // Who may read it: report readers and the authentication administrators; not a user without
    // a role, nor an Authentication Administrator scoped to an administrative unit.
    assert_eq!(app.as_user(&reader).get(DETAILS).await.status, StatusCode::OK);
    // An Authentication Administrator reads the methods of users without an admin role only, so
    // the report shows them those users alone, and nothing for `isAdmin eq true`.
    let desk_view = app.as_user(&desk).get(DETAILS).await;
    assert_eq!(desk_view.status, StatusCode::OK, "{}", desk_view.text);
    assert_eq!(upns(&desk_view), set(&["adele", "megan", "nobody"]));
    let desk_admins = app.as_user(&desk).get(&format!("{DETAILS}?$filter=isAdmin%20eq%20true")).await;
    assert_eq!(upns(&desk_admins), set(&[]));
    let desk_admin_row = app.as_user(&desk).get(&format!("{DETAILS}/{}", find_id(&all, "reader"))).await;
    assert_graph_error(&desk_admin_row, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    // A member of a role-assignable group is protected as an administrator, whether or not the
    // group holds a role: out of the Authentication Administrator's report as out of their reach.
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Tier 0", "mailEnabled": false, "mailNickname": "tier0", "securityEnabled": true,
                "isAssignableToRole": true, "members@odata.bind": [format!("{}/v1.0/users/{megan}", app.base_url)]}),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let desk_view = app.as_user(&desk).get(DETAILS).await;
    assert_eq!(upns(&desk_view), set(&["adele", "nobody"]), "{}", desk_view.text);
    let megan_row = app.as_user(&desk).get(&format!("{DETAILS}/{megan}")).await;
    assert_graph_error(&megan_row, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    let methods = app.as_user(&desk).get(&format!("/v1.0/users/{megan}/authentication/methods")).await;
    assert_eq!(methods.status, StatusCode::FORBIDDEN, "the same reach as the methods: {}", methods.text);
    assert_eq!(upns(&app.as_user(&reader).get(DETAILS).await).len(), 6, "a report reader still sees everyone");
    let removed = app.delete(&format!("/v1.0/groups/{}", group.body["id"].as_str().expect("id"))).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    assert_graph_error(&app.as_user(&nobody).get(DETAILS).await, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let (scoped_id, scoped) = user(&app, "scoped", None).await;
    let unit = app.create_unit("Reports unit", false, &[&adele]).await;
    app.assign_role(&scoped_id, roles::AUTHENTICATION_ADMINISTRATOR, &format!("/administrativeUnits/{unit}")).await;
    let summary = "/v1.0/reports/authenticationMethods/usersRegisteredByFeature()";
    for path in [DETAILS, summary] {
        assert_graph_error(&app.as_user(&scoped).get(path).await, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
        assert_graph_error(&app.as_user(&nobody).get(path).await, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    }
}

fn count(body: &Value, list: &str, key: &str, name: &str) -> i64 {
    body[list]
        .as_array()
        .expect("counts")
        .iter()
        .find(|it| it[key] == name)
        .and_then(|it| it["userCount"].as_i64())
        .unwrap_or(-1)
}

async fn registration_summaries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (adele, _) = user(&app, "adele", None).await;
    let (megan, _) = user(&app, "megan", None).await;
    let (_, desk) = user(&app, "desk", Some(roles::AUTHENTICATION_ADMINISTRATOR)).await;
    user(&app, "reader", Some(roles::REPORTS_READER)).await;
    add_mobile_phone(&app, &adele).await;
    add_authenticator(&app, &megan).await;

    let base = "/v1.0/reports/authenticationMethods";
    let by_method =
        app.get(&format!("{base}/usersRegisteredByMethod(includedUserTypes='all',includedUserRoles='all')")).await;
    assert_eq!(by_method.status, StatusCode::OK, "{}", by_method.text);
    assert_eq!(by_method.body["@odata.type"], "#microsoft.graph.userRegistrationMethodSummary");
    assert_eq!(
        (by_method.body["userTypes"].as_str(), by_method.body["userRoles"].as_str()),
        (Some("all"), Some("all"))
    );
    let methods = "userRegistrationMethodCounts";
    assert_eq!(count(&by_method.body, methods, "authenticationMethod", "password"), 5);
    assert_eq!(count(&by_method.body, methods, "authenticationMethod", "mobilePhone"), 1);
    assert_eq!(count(&by_method.body, methods, "authenticationMethod", "softwareOneTimePasscode"), 1);
    assert_eq!(count(&by_method.body, methods, "authenticationMethod", "email"), 0);

    let features = "userRegistrationFeatureCounts";
    for (roles_param, total, mfa_capable) in [("all", 5, 1), ("admin", 3, 0), ("user", 2, 1), ("privilegedAdmin", 2, 0)]
    {
        let reply = app
            .get(&format!(
                "/beta/reports/authenticationMethods/usersRegisteredByFeature(includedUserRoles='{roles_param}')"
            ))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body["@odata.type"], "#microsoft.graph.userRegistrationFeatureSummary");
        assert_eq!(reply.body["totalUserCount"], total, "{roles_param}: {}", reply.text);
        assert_eq!(reply.body["userRoles"], roles_param);
        assert_eq!(count(&reply.body, features, "feature", "mfaCapable"), mfa_capable, "{roles_param}");
        assert_eq!(count(&reply.body, features, "feature", "passwordlessCapable"), 0);
    }
    // An Authentication Administrator's counts cover users without an admin role; the
    // administrators' counts are refused.
    let desk_all = app.as_user(&desk).get(&format!("{base}/usersRegisteredByFeature(includedUserRoles='all')")).await;
    assert_eq!(desk_all.body["totalUserCount"], 2, "{}", desk_all.text);
    // A member of a role-assignable group (holding no role through it) is protected as an
    // administrator: out of the Authentication Administrator's counts, in a report reader's.
    let group = app
        .post(
            "/v1.0/groups",
            &serde_json::json!({"displayName": "Tier 0", "mailEnabled": false, "mailNickname": "tier0",
                "securityEnabled": true, "isAssignableToRole": true,
                "members@odata.bind": [format!("{}/v1.0/users/{megan}", app.base_url)]}),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let desk_all = app.as_user(&desk).get(&format!("{base}/usersRegisteredByFeature(includedUserRoles='all')")).await;
    assert_eq!(desk_all.body["totalUserCount"], 1, "{}", desk_all.text);
    let users = app.get(&format!("{base}/usersRegisteredByFeature(includedUserRoles='user')")).await;
    assert_eq!(users.body["totalUserCount"], 2, "Graph's 'user' still counts her: {}", users.text);
    assert_eq!(
        app.delete(&format!("/v1.0/groups/{}", group.body["id"].as_str().expect("id"))).await.status,
        StatusCode::NO_CONTENT
    );
    let desk_admins =
        app.as_user(&desk).get(&format!("{base}/usersRegisteredByFeature(includedUserRoles='admin')")).await;
    assert_graph_error(&desk_admins, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let guests = app.get(&format!("{base}/usersRegisteredByFeature(includedUserTypes='guest')")).await;
    assert_eq!(guests.body["totalUserCount"], 0, "{}", guests.text);
    // A guest counts among the guests (with their methods), not among the members.
    let total = |body: &Value| count(body, methods, "authenticationMethod", "password");
    let members = app.get(&format!("{base}/usersRegisteredByMethod(includedUserTypes='member')")).await;
    let became = app.patch(&format!("/v1.0/users/{adele}"), &serde_json::json!({"userType": "Guest"})).await;
    assert_eq!(became.status, StatusCode::NO_CONTENT, "{}", became.text);
    let guests = app.get(&format!("{base}/usersRegisteredByMethod(includedUserTypes='guest')")).await;
    assert_eq!(total(&guests.body), 1, "{}", guests.text);
    assert_eq!(count(&guests.body, methods, "authenticationMethod", "mobilePhone"), 1, "{}", guests.text);
    let guest_admins =
        app.get(&format!("{base}/usersRegisteredByMethod(includedUserTypes='guest',includedUserRoles='admin')")).await;
    assert_eq!(total(&guest_admins.body), 0, "{}", guest_admins.text);
    let fewer = app.get(&format!("{base}/usersRegisteredByMethod(includedUserTypes='member')")).await;
    assert_eq!(total(&fewer.body), total(&members.body) - 1, "{}", fewer.text);
    let listed = app.get(&format!("{DETAILS}?$filter=userType%20eq%20'guest'")).await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1), "{}", listed.text);
    assert_eq!(listed.body["value"][0]["userType"], "guest");

    // A disabled user's methods count nowhere; a role held through a group makes its members
    // administrators, with their methods.
    let (gone, _) = user(&app, "gone", None).await;
    add_mobile_phone(&app, &gone).await;
    add_authenticator(&app, &gone).await;
    let disabled = app.patch(&format!("/v1.0/users/{gone}"), &json!({"accountEnabled": false})).await;
    assert_eq!(disabled.status, StatusCode::NO_CONTENT, "{}", disabled.text);
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Report desk", "mailEnabled": false, "mailNickname": "reportdesk",
                    "securityEnabled": true, "isAssignableToRole": true}),
        )
        .await;
    let group = group.body["id"].as_str().expect("group id").to_owned();
    app.assign_role(&group, roles::HELPDESK_ADMINISTRATOR, "/").await;
    let joined = app
        .post(
            &format!("/v1.0/groups/{group}/members/$ref"),
            &json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{megan}")}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::NO_CONTENT, "{}", joined.text);
    for (roles_param, total, mfa_capable, mobile) in
        [("all", 5, 1, 1), ("admin", 4, 1, 0), ("user", 1, 0, 1), ("privilegedAdmin", 3, 1, 0)]
    {
        let path = format!("{base}/usersRegisteredByFeature(includedUserRoles='{roles_param}')");
        let features_reply = app.get(&path).await;
        assert_eq!(features_reply.body["totalUserCount"], total, "{roles_param}: {}", features_reply.text);
        assert_eq!(count(&features_reply.body, features, "feature", "mfaCapable"), mfa_capable, "{roles_param}");
        let path = format!("{base}/usersRegisteredByMethod(includedUserRoles='{roles_param}')");
        let methods_reply = app.get(&path).await;
        assert_eq!(count(&methods_reply.body, methods, "authenticationMethod", "mobilePhone"), mobile, "{roles_param}");
        assert_eq!(count(&methods_reply.body, methods, "authenticationMethod", "password"), total, "{roles_param}");
    }
    assert_graph_error(
        &app.get(&format!("{base}/usersRegisteredByMethod(includedUserRoles='root')")).await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    assert_graph_error(
        &app.get(&format!("{base}/usersRegisteredByColour()")).await,
        StatusCode::BAD_REQUEST,
        "BadRequest",
    );
}

keyward_testkit::on_both_backends!(registration_details, registration_summaries);
