//! Directory fidelity through HTTP, on both backends: the user's profile properties as Graph has
//! them, the manager and member-of relationships, and the member-group functions.

use keyward_testkit::{Backend, DOMAIN, TestApp, assert_graph_error, id_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "Tq7-harbour-Lantern-92!";

async fn create(app: &TestApp, alias: &str, extra: Value) -> String {
    let mut body = json!({
        "accountEnabled": true,
        "displayName": alias,
        "mailNickname": alias,
        "userPrincipalName": format!("{alias}@{DOMAIN}"),
        "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": PASSWORD},
    });
    body.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
    let created = app.post("/v1.0/users", &body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    id_of(&created.body)
}

/// The ids of a collection's objects, in order.
fn ids(body: &Value) -> Vec<String> {
    body["value"].as_array().expect("a collection").iter().map(id_of).collect()
}

/// Microsoft's documented create and update bodies, the added properties read back with
/// `$select`, filtered, their limits enforced, and their changes audited under Entra's names.
async fn user_profile_properties(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = create(
        &app,
        "adelev",
        json!({
            "employeeId": "E-1001",
            "employeeType": "Contractor",
            "employeeHireDate": "2024-05-01T08:30:00+02:00",
            "companyName": "Contoso",
            "city": "Oslo",
            "country": "Norway",
            "postalCode": "0150",
            "streetAddress": "Karl Johans gate 1",
            "state": "Oslo",
            "faxNumber": "+47 555 0100",
            "preferredLanguage": "nb-NO",
            "ageGroup": "Adult",
        }),
    )
    .await;
    let guest = create(&app, "guesto", json!({"userType": "Guest", "companyName": "Fabrikam"})).await;

    // Microsoft's update-user example.
    let patched = app
        .patch(
            &format!("/v1.0/users/{id}"),
            &json!({"businessPhones": ["+1 425 555 0109"], "officeLocation": "18/2111"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::NO_CONTENT, "{}", patched.text);

    let select = "employeeId,employeeType,employeeHireDate,companyName,officeLocation,preferredLanguage,city,state,\
                  country,streetAddress,postalCode,faxNumber,userType,identities,otherMails,proxyAddresses,\
                  onPremisesSyncEnabled,creationType,externalUserState,ageGroup,consentProvidedForMinor,\
                  passwordPolicies,lastPasswordChangeDateTime,businessPhones";
    let read = app.get(&format!("/v1.0/users/{id}?$select={select}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    let body = &read.body;
    assert_eq!(body["employeeId"], "E-1001");
    assert_eq!(body["employeeType"], "Contractor");
    assert_eq!(body["employeeHireDate"], "2024-05-01T06:30:00Z");
    assert_eq!(body["companyName"], "Contoso");
    assert_eq!(body["officeLocation"], "18/2111");
    assert_eq!(body["preferredLanguage"], "nb-NO");
    assert_eq!(body["city"], "Oslo");
    assert_eq!(body["userType"], "Member");
    assert_eq!(body["ageGroup"], "Adult");
    assert_eq!(body["businessPhones"], json!(["+1 425 555 0109"]));
    assert_eq!(body["identities"][0]["signInType"], "userPrincipalName");
    assert_eq!(body["identities"][0]["issuerAssignedId"], format!("adelev@{DOMAIN}"));
    assert_eq!(body["proxyAddresses"], json!([]));
    assert_eq!(body["onPremisesSyncEnabled"], Value::Null);
    assert_eq!(body["creationType"], Value::Null);
    assert_eq!(body["consentProvidedForMinor"], Value::Null);
    assert!(body["lastPasswordChangeDateTime"].as_str().is_some_and(|it| it.ends_with('Z')), "{body}");
    assert!(body.get("displayName").is_none(), "only what $select names");

    // v1.0's default set has officeLocation and preferredLanguage, not the others; beta has all.
    let v1 = app.get(&format!("/v1.0/users/{id}")).await;
    assert_eq!(v1.body["officeLocation"], "18/2111");
    assert!(v1.body.get("employeeId").is_none(), "{}", v1.text);
    let beta = app.get(&format!("/beta/users/{id}")).await;
    assert_eq!(beta.body["employeeId"], "E-1001");

    // Filters on the added properties, case-insensitive as Graph's.
    let guests = app.get("/v1.0/users?$filter=userType%20eq%20'guest'&$select=id").await;
    assert_eq!(guests.status, StatusCode::OK, "{}", guests.text);
    assert_eq!(ids(&guests.body), vec![guest.clone()]);
    for filter in [
        "employeeId%20eq%20'e-1001'",
        "startswith(companyName,'cont')",
        "employeeHireDate%20ge%202024-01-01T00:00:00Z",
        "officeLocation%20eq%20'18/2111'",
    ] {
        let found = app.get(&format!("/v1.0/users?$filter={filter}&$select=id")).await;
        assert_eq!(found.status, StatusCode::OK, "{filter}: {}", found.text);
        assert_eq!(ids(&found.body), vec![id.clone()], "{filter}: {}", found.text);
    }
    let synced = app
        .send(
            reqwest::Method::GET,
            "/v1.0/users?$filter=onPremisesSyncEnabled%20eq%20true&$count=true",
            Some(&app.admin_token),
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(synced.status, StatusCode::OK, "{}", synced.text);
    assert_eq!(synced.body["value"], json!([]), "no user is synchronized from on-premises");

    // Graph's limits and formats, each refused with Graph's error and changing nothing.
    for (property, value) in [
        ("jobTitle", json!("x".repeat(129))),
        ("jobTitle", json!("x".repeat(100_000))),
        ("employeeId", json!("12345678901234567")),
        ("companyName", json!("x".repeat(65))),
        ("department", json!("x".repeat(65))),
        ("givenName", json!("x".repeat(65))),
        ("streetAddress", json!("x".repeat(1025))),
        ("preferredLanguage", json!("Norwegian")),
        ("employeeHireDate", json!("last spring")),
        ("userType", json!("Administrator")),
        ("userType", Value::Null),
        ("ageGroup", json!("Teen")),
        ("businessPhones", json!(["+1 425 555 0109", "+1 425 555 0110"])),
    ] {
        let refused = app.patch(&format!("/v1.0/users/{id}"), &json!({ property: value })).await;
        assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
        assert!(refused.text.contains(property), "{property}: {}", refused.text);
    }
    let weaker = app.patch(&format!("/v1.0/users/{id}"), &json!({"passwordPolicies": "DisableStrongPassword"})).await;
    assert_graph_error(&weaker, StatusCode::BAD_REQUEST, "Request_BadRequest");
    for read_only in ["creationType", "externalUserState", "identities", "lastPasswordChangeDateTime", "proxyAddresses"]
    {
        let refused = app.patch(&format!("/v1.0/users/{id}"), &json!({ read_only: "x" })).await;
        assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
        assert!(refused.text.contains("read-only"), "{read_only}: {}", refused.text);
    }
    let unchanged = app.get(&format!("/v1.0/users/{id}?$select=jobTitle,employeeId,userType,passwordPolicies")).await;
    assert_eq!(unchanged.body["jobTitle"], Value::Null);
    assert_eq!(unchanged.body["employeeId"], "E-1001");
    assert_eq!(unchanged.body["userType"], "Member");
    assert_eq!(unchanged.body["passwordPolicies"], Value::Null);

    let cleared = app
        .patch(
            &format!("/v1.0/users/{id}"),
            &json!({"city": null, "passwordPolicies": "DisablePasswordExpiration", "jobTitle": "x".repeat(128)}),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::NO_CONTENT, "{}", cleared.text);
    let after = app.get(&format!("/v1.0/users/{id}?$select=city,passwordPolicies,jobTitle")).await;
    assert_eq!(after.body["city"], Value::Null);
    assert_eq!(after.body["passwordPolicies"], "DisablePasswordExpiration");

    // The audit record names Entra's properties.
    let records = app.audit_for(&id).await;
    let office = records
        .iter()
        .flat_map(|it| it.target_resources[0].modified_properties.clone())
        .find(|it| it.name == "PhysicalDeliveryOfficeName")
        .expect("officeLocation audited as PhysicalDeliveryOfficeName");
    assert_eq!(office.new_value.as_deref(), Some(r#"["18/2111"]"#));
}

fn reference(app: &TestApp, id: &str) -> Value {
    json!({"@odata.id": format!("{}/v1.0/directoryObjects/{id}", app.base_url)})
}

async fn group(app: &TestApp, name: &str) -> String {
    let created = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": name, "mailNickname": name, "mailEnabled": false, "securityEnabled": true}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    id_of(&created.body)
}

async fn add_member(app: &TestApp, group: &str, member: &str) {
    let added = app.post(&format!("/v1.0/groups/{group}/members/$ref"), &reference(app, member)).await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
}

/// Every object of a relationship, following `@odata.nextLink` from pages of `$top=1`.
async fn all_pages(app: &TestApp, token: &str, path: &str) -> Vec<Value> {
    let mut found = Vec::new();
    let mut next = Some(format!("{path}?$top=1"));
    while let Some(link) = next.take() {
        let link = link.strip_prefix(&app.base_url).unwrap_or(&link).to_owned();
        let page = app.as_user(token).get(&link).await;
        assert_eq!(page.status, StatusCode::OK, "{link}: {}", page.text);
        let items = page.body["value"].as_array().expect("a collection").clone();
        assert!(items.len() <= 1, "{link}: $top=1 holds one object");
        found.extend(items);
        next = page.body["@odata.nextLink"].as_str().map(str::to_owned);
    }
    found
}

fn typed_ids(objects: &[Value]) -> Vec<(String, String)> {
    let mut res: Vec<(String, String)> = objects
        .iter()
        .map(|it| (it["@odata.type"].as_str().unwrap_or_default().to_owned(), id_of(it).to_lowercase()))
        .collect();
    res.sort();
    res
}

/// `manager` and `directReports`: set, read, expanded, removed, audited, loops refused, and the
/// link gone with a deleted manager.
async fn manager_and_direct_reports(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let boss = create(&app, "boss", json!({})).await;
    let alice = create(&app, "alice", json!({})).await;
    let bob = create(&app, "bob", json!({})).await;
    let team = group(&app, "team").await;

    // Microsoft's documented body: a users/{id} URL.
    let body = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/users/{boss}")});
    let set = app
        .send(
            reqwest::Method::PUT,
            &format!("/v1.0/users/{alice}/manager/$ref"),
            Some(&app.admin_token),
            Some(&body),
            &[],
        )
        .await;
    assert_eq!(set.status, StatusCode::NO_CONTENT, "{}", set.text);
    let put = |user: String, manager: String| {
        let app = &app;
        async move {
            app.send(
                reqwest::Method::PUT,
                &format!("/v1.0/users/{user}/manager/$ref"),
                Some(&app.admin_token),
                Some(&reference(app, &manager)),
                &[],
            )
            .await
        }
    };
    assert_eq!(put(bob.clone(), boss.clone()).await.status, StatusCode::NO_CONTENT);

    let manager = app.get(&format!("/v1.0/users/{alice}/manager")).await;
    assert_eq!(manager.status, StatusCode::OK, "{}", manager.text);
    assert_eq!(manager.body["id"], boss.as_str());
    assert_eq!(manager.body["@odata.type"], "#microsoft.graph.user");
    let reports = app.get(&format!("/v1.0/users/{boss}/directReports")).await;
    let mut expected = vec![alice.clone(), bob.clone()];
    expected.sort();
    assert_eq!(ids(&reports.body), expected);
    let paged = all_pages(&app, &app.admin_token, &format!("/v1.0/users/{boss}/directReports")).await;
    assert_eq!(paged.iter().map(id_of).collect::<Vec<_>>(), expected);
    let expanded = app.get(&format!("/v1.0/users/{alice}?$expand=manager($select=id,displayName)")).await;
    assert_eq!(expanded.body["manager"]["id"], boss.as_str(), "{}", expanded.text);
    assert_eq!(expanded.body["manager"]["displayName"], "boss");
    assert!(expanded.body["manager"].get("userPrincipalName").is_none(), "{}", expanded.text);
    let listed = app.get(&format!("/v1.0/users?$filter=id%20eq%20'{boss}'&$expand=directReports")).await;
    assert_eq!(ids(&json!({"value": listed.body["value"][0]["directReports"]})), expected, "{}", listed.text);
    let none = app.get(&format!("/v1.0/users/{boss}?$expand=manager")).await;
    assert_eq!(none.status, StatusCode::OK, "{}", none.text);
    assert!(none.body.get("manager").is_none(), "no manager, no property: {}", none.text);
    assert_graph_error(
        &app.get(&format!("/v1.0/users/{boss}/manager")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );

    // The signed-in user's own.
    let alice_token = app.token_for(&format!("alice@{DOMAIN}")).await;
    let mine = app.as_user(&alice_token).get("/v1.0/me/manager").await;
    assert_eq!(mine.body["id"], boss.as_str(), "{}", mine.text);
    let boss_token = app.token_for(&format!("boss@{DOMAIN}")).await;
    assert_eq!(ids(&app.as_user(&boss_token).get("/v1.0/me/directReports").await.body), expected);

    // Loops, oneself, a group and nobody are refused, changing nothing.
    for (user, manager, status) in [
        (boss.clone(), alice.clone(), StatusCode::BAD_REQUEST),
        (alice.clone(), alice.clone(), StatusCode::BAD_REQUEST),
        (alice.clone(), team.clone(), StatusCode::BAD_REQUEST),
        (alice.clone(), "6f1d9c31-1b5e-4b7a-9a49-2b0fe1f3c2d4".to_owned(), StatusCode::NOT_FOUND),
    ] {
        let refused = put(user, manager).await;
        assert_eq!(refused.status, status, "{}", refused.text);
    }
    assert_graph_error(
        &app.get(&format!("/v1.0/users/{boss}/manager")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    // A plain user may read but not set managers.
    let denied = app
        .send(
            reqwest::Method::PUT,
            &format!("/v1.0/users/{bob}/manager/$ref"),
            Some(&alice_token),
            Some(&reference(&app, &alice)),
            &[],
        )
        .await;
    assert_graph_error(&denied, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert_eq!(app.get(&format!("/v1.0/users/{bob}/manager")).await.body["id"], boss.as_str());

    let records = app.audit_for(&alice).await;
    let setting = records.iter().find(|it| it.activity_display_name == "Set user manager").expect("audited");
    assert_eq!(setting.target_resources[1].id.as_str(), boss.as_str());
    assert_eq!(setting.target_resources[0].modified_properties[0].name, "Manager");

    let removed = app.delete(&format!("/v1.0/users/{alice}/manager/$ref")).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    assert_graph_error(
        &app.delete(&format!("/v1.0/users/{alice}/manager/$ref")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    // A deleted manager leaves the reports without one; a report restored after its manager
    // was deleted has none either.
    assert_eq!(app.delete(&format!("/v1.0/users/{bob}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.delete(&format!("/v1.0/users/{boss}")).await.status, StatusCode::NO_CONTENT);
    let restored = app.post(&format!("/v1.0/directory/deletedItems/{bob}/restore"), &json!({})).await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.text);
    assert_graph_error(
        &app.get(&format!("/v1.0/users/{bob}/manager")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
}

/// `memberOf` lists groups, directory roles and administrative units; `transitiveMemberOf`
/// follows nesting; both page, on `/users/{id}` and `/me`; the member-group functions agree; a
/// group's transitive members are every member through nesting.
async fn memberships_and_member_functions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = create(&app, "member", json!({})).await;
    let inner = group(&app, "inner").await;
    let outer = group(&app, "outer").await;
    add_member(&app, &inner, &user).await;
    add_member(&app, &outer, &inner).await;
    app.assign_role(&user, keyward_core::authz::roles::HELPDESK_ADMINISTRATOR, "/").await;
    let unit = app.create_unit("Sales", false, &[&user]).await;
    let token = app.token_for(&format!("member@{DOMAIN}")).await;

    let role = keyward_core::authz::roles::HELPDESK_ADMINISTRATOR.to_owned();
    let direct = vec![
        ("#microsoft.graph.administrativeUnit".to_owned(), unit.to_lowercase()),
        ("#microsoft.graph.directoryRole".to_owned(), role.clone()),
        ("#microsoft.graph.group".to_owned(), inner.clone()),
    ];
    let mut direct_sorted = direct.clone();
    direct_sorted.sort();
    let member_of = app.get(&format!("/v1.0/users/{user}/memberOf")).await;
    assert_eq!(member_of.status, StatusCode::OK, "{}", member_of.text);
    assert_eq!(typed_ids(member_of.body["value"].as_array().expect("list")), direct_sorted);
    let helpdesk =
        member_of.body["value"].as_array().expect("list").iter().find(|it| it["id"] == role.as_str()).cloned();
    assert_eq!(helpdesk.expect("role")["roleTemplateId"], role.as_str());
    assert_eq!(typed_ids(&all_pages(&app, &token, "/v1.0/me/memberOf").await), direct_sorted);

    let mut transitive = direct_sorted.clone();
    transitive.push(("#microsoft.graph.group".to_owned(), outer.clone()));
    transitive.sort();
    assert_eq!(
        typed_ids(&all_pages(&app, &app.admin_token, &format!("/v1.0/users/{user}/transitiveMemberOf")).await),
        transitive
    );
    assert_eq!(typed_ids(&all_pages(&app, &token, "/v1.0/me/transitiveMemberOf").await), transitive);
    let expanded = app.get(&format!("/v1.0/users/{user}?$expand=memberOf($select=id,displayName)")).await;
    assert_eq!(typed_ids(expanded.body["memberOf"].as_array().expect("expanded")), direct_sorted);

    // The administrator's memberOf says they are one.
    let admin = app.get("/v1.0/me/memberOf").await;
    assert!(
        admin.body["value"]
            .as_array()
            .expect("list")
            .iter()
            .any(|it| it["roleTemplateId"] == keyward_core::authz::roles::GLOBAL_ADMINISTRATOR),
        "{}",
        admin.text
    );
    // $select on a relationship keeps the named properties and the type.
    let selected = app.get(&format!("/v1.0/users/{user}/memberOf?$select=displayName")).await;
    assert_eq!(selected.status, StatusCode::OK, "{}", selected.text);
    for item in selected.body["value"].as_array().expect("list") {
        let keys: Vec<&str> = item.as_object().expect("object").keys().map(String::as_str).collect();
        assert!(keys.iter().all(|it| ["@odata.type", "id", "displayName"].contains(it)), "{item}");
        assert!(item["displayName"].is_string(), "{item}");
    }
    assert_graph_error(
        &app.get(&format!("/v1.0/users/{user}/memberOf?$filter=id%20eq%20'{inner}'")).await,
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
    );

    // The member-group functions, on the user, on /me and on a group.
    let call = |path: String, body: Value, token: String| {
        let app = &app;
        async move {
            let reply = app.as_user(&token).post(&path, &body).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
            let mut found: Vec<String> = reply.body["value"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|it| it.as_str().expect("id").to_lowercase())
                .collect();
            found.sort();
            found
        }
    };
    let admin_token = app.admin_token.clone();
    let mut groups = vec![inner.clone(), outer.clone()];
    groups.sort();
    let body = json!({"securityEnabledOnly": false});
    assert_eq!(call(format!("/v1.0/users/{user}/getMemberGroups"), body.clone(), admin_token.clone()).await, groups);
    assert_eq!(
        call("/v1.0/me/getMemberGroups".into(), json!({"securityEnabledOnly": true}), token.clone()).await,
        groups
    );
    let mut objects: Vec<String> = transitive.iter().map(|(_, id)| id.clone()).collect();
    objects.sort();
    assert_eq!(call(format!("/v1.0/users/{user}/getMemberObjects"), body.clone(), admin_token.clone()).await, objects);
    assert_ne!(objects, groups, "the user holds a role or a unit beside the groups");
    // `securityEnabledOnly`: the security groups alone, not the roles and units.
    let security = json!({"securityEnabledOnly": true});
    assert_eq!(call(format!("/v1.0/users/{user}/getMemberObjects"), security, admin_token.clone()).await, groups);
    assert_eq!(
        call(format!("/v1.0/groups/{inner}/getMemberGroups"), body.clone(), admin_token.clone()).await,
        vec![outer.clone()]
    );
    let stranger = "6f1d9c31-1b5e-4b7a-9a49-2b0fe1f3c2d4".to_owned();
    assert_eq!(
        call(
            format!("/v1.0/users/{user}/checkMemberGroups"),
            json!({"groupIds": [outer, stranger]}),
            admin_token.clone()
        )
        .await,
        vec![outer.clone()]
    );
    assert_eq!(
        call(format!("/v1.0/users/{user}/checkMemberObjects"), json!({"ids": [role, unit]}), admin_token.clone())
            .await
            .len(),
        2
    );
    let too_many: Vec<String> = (0..21).map(|_| inner.clone()).collect();
    let refused = app.post(&format!("/v1.0/users/{user}/checkMemberGroups"), &json!({"groupIds": too_many})).await;
    assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let missing = app.post(&format!("/v1.0/users/{user}/getMemberGroups"), &json!({})).await;
    assert_graph_error(&missing, StatusCode::BAD_REQUEST, "Request_BadRequest");

    // Type casts, as Graph and the SDKs (`graph.group`) write them.
    for (path, expected) in [
        (format!("/v1.0/users/{user}/memberOf/microsoft.graph.group"), vec![inner.clone()]),
        (format!("/v1.0/users/{user}/memberOf/graph.directoryRole"), vec![role.clone()]),
        (format!("/v1.0/users/{user}/memberOf/graph.administrativeUnit"), vec![unit.to_lowercase()]),
        (format!("/v1.0/groups/{outer}/transitiveMembers/graph.user"), vec![user.clone()]),
        (format!("/v1.0/groups/{outer}/members/microsoft.graph.group"), vec![inner.clone()]),
        (format!("/v1.0/groups/{outer}/members/graph.user"), vec![]),
    ] {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        let found: Vec<String> = ids(&reply.body).into_iter().map(|it| it.to_lowercase()).collect();
        assert_eq!(found, expected, "{path}");
    }
    let mut nested = groups.clone();
    nested.sort();
    let mine = app.as_user(&token).get("/v1.0/me/transitiveMemberOf/graph.group").await;
    let mut mine = ids(&mine.body);
    mine.sort();
    assert_eq!(mine, nested);
    assert_graph_error(
        &app.get(&format!("/v1.0/users/{user}/memberOf/graph.device")).await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );

    // A group's members through nesting.
    let members = all_pages(&app, &app.admin_token, &format!("/v1.0/groups/{outer}/transitiveMembers")).await;
    let mut expected =
        vec![("#microsoft.graph.group".to_owned(), inner.clone()), ("#microsoft.graph.user".to_owned(), user.clone())];
    expected.sort();
    assert_eq!(typed_ids(&members), expected);
}

/// Alternate keys: applications and service principals by `appId`, directory roles by template id.
async fn alternate_keys(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app.post("/v1.0/applications", &json!({"displayName": "Payroll"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = id_of(&created.body);
    let app_id = created.body["appId"].as_str().expect("appId").to_owned();

    let by_key = app.get(&format!("/v1.0/applications(appId='{app_id}')")).await;
    assert_eq!(by_key.status, StatusCode::OK, "{}", by_key.text);
    assert_eq!(by_key.body["id"], id.as_str());
    let renamed =
        app.patch(&format!("/v1.0/applications(appId='{app_id}')"), &json!({"displayName": "Payroll 2"})).await;
    assert_eq!(renamed.status, StatusCode::NO_CONTENT, "{}", renamed.text);
    assert_eq!(app.get(&format!("/v1.0/applications/{id}")).await.body["displayName"], "Payroll 2");
    // `id` and `appId` are read-only: written back as read they are taken, changed they are
    // refused (never ignored), and a new application cannot choose them.
    let as_read = json!({"id": id.to_uppercase(), "appId": app_id, "displayName": "Payroll 3"});
    assert_eq!(app.patch(&format!("/v1.0/applications/{id}"), &as_read).await.status, StatusCode::NO_CONTENT);
    for changed in [
        json!({"appId": "00000000-0000-4000-8000-0000000000aa", "displayName": "Payroll 4"}),
        json!({"id": "00000000-0000-4000-8000-0000000000aa", "displayName": "Payroll 4"}),
        json!({"appId": 7}),
    ] {
        let refused = app.patch(&format!("/v1.0/applications/{id}"), &changed).await;
        assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    assert_eq!(app.get(&format!("/v1.0/applications/{id}")).await.body["displayName"], "Payroll 3");
    let chosen = app.post("/v1.0/applications", &json!({"displayName": "Mine", "appId": app_id})).await;
    assert_graph_error(&chosen, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let principal = app.get(&format!("/v1.0/servicePrincipals(appId='{app_id}')")).await;
    assert_eq!(principal.status, StatusCode::OK, "{}", principal.text);
    assert_eq!(principal.body["appId"], app_id.as_str());
    // Filtering by appId finds exactly the one.
    let filtered = app.get(&format!("/v1.0/applications?$filter=appId%20eq%20'{app_id}'")).await;
    assert_eq!(ids(&filtered.body), vec![id.clone()]);
    let none = app.get("/v1.0/applications?$filter=appId%20eq%20'00000000-0000-0000-0000-000000000000'").await;
    assert_eq!(ids(&none.body), Vec::<String>::new());

    let role = keyward_core::authz::roles::GLOBAL_ADMINISTRATOR;
    let directory_role = app.get(&format!("/v1.0/directoryRoles(roleTemplateId='{role}')")).await;
    assert_eq!(directory_role.status, StatusCode::OK, "{}", directory_role.text);
    assert_eq!(directory_role.body["roleTemplateId"], role);

    let missing = app.get("/v1.0/applications(appId='6f1d9c31-1b5e-4b7a-9a49-2b0fe1f3c2d4')").await;
    assert_graph_error(&missing, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    let upper = app.get(&format!("/v1.0/applications(appId='{}')", app_id.to_uppercase())).await;
    assert_eq!(upper.body["id"], id.as_str(), "application ids match without case: {}", upper.text);
    let option = app.get(&format!("/v1.0/applications(appId='{app_id}')?$select=id")).await;
    assert_eq!(option.body, json!({"@odata.context": option.body["@odata.context"], "id": id}), "{}", option.text);
    let other = app.get(&format!("/v1.0/applications(appId='{app_id}')?$top=1")).await;
    assert_graph_error(&other, StatusCode::BAD_REQUEST, "Request_UnsupportedQuery");
    let malformed = app.get(&format!("/v1.0/applications(appId={app_id})")).await;
    assert_graph_error(&malformed, StatusCode::BAD_REQUEST, "Request_BadRequest");

    let deleted = app.delete(&format!("/v1.0/applications(appId='{app_id}')")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_graph_error(
        &app.get(&format!("/v1.0/applications/{id}")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
}

/// `members@odata.bind` and `owners@odata.bind` create a group with its members and owners in
/// one step, audited; a wrong reference creates nothing.
async fn group_created_with_members_and_owners(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let adele = create(&app, "adele", json!({})).await;
    let megan = create(&app, "megan", json!({})).await;
    let base = "https://graph.microsoft.com/v1.0";
    let body = |members: Vec<String>| {
        json!({
            "displayName": "Library Assist",
            "mailEnabled": false,
            "mailNickname": "library",
            "securityEnabled": true,
            "owners@odata.bind": [format!("{base}/users/{megan}")],
            "members@odata.bind": members,
        })
    };
    let created = app
        .post("/v1.0/groups", &body(vec![format!("{base}/users/{adele}"), format!("{base}/directoryObjects/{megan}")]))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let group = id_of(&created.body);
    let mut expected = vec![adele.clone(), megan.clone()];
    expected.sort();
    assert_eq!(ids(&app.get(&format!("/v1.0/groups/{group}/members")).await.body), expected);
    assert_eq!(ids(&app.get(&format!("/v1.0/groups/{group}/owners")).await.body), vec![megan.clone()]);
    assert_eq!(ids(&app.get(&format!("/v1.0/users/{megan}/ownedObjects")).await.body), vec![group.clone()]);
    let megan_token = app.token_for(&format!("megan@{DOMAIN}")).await;
    assert_eq!(ids(&app.as_user(&megan_token).get("/v1.0/me/ownedObjects").await.body), vec![group.clone()]);
    assert_eq!(ids(&app.get(&format!("/v1.0/users/{adele}/ownedObjects")).await.body), Vec::<String>::new());
    let activities: Vec<String> =
        app.audit_for(&group).await.iter().map(|it| it.activity_display_name.clone()).collect();
    assert!(activities.iter().any(|it| it == "Add group"), "{activities:?}");
    assert_eq!(activities.iter().filter(|it| *it == "Add member to group").count(), 2, "{activities:?}");
    assert!(activities.iter().any(|it| it == "Add owner to group"), "{activities:?}");

    // A reference to nobody, or a malformed list, creates nothing.
    let before = app.get("/v1.0/groups").await.body["value"].as_array().map(Vec::len);
    let wrong =
        app.post("/v1.0/groups", &body(vec![format!("{base}/users/6f1d9c31-1b5e-4b7a-9a49-2b0fe1f3c2d4")])).await;
    assert_graph_error(&wrong, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    let mut malformed = body(vec![]);
    malformed["members@odata.bind"] = json!("not a list");
    assert_graph_error(&app.post("/v1.0/groups", &malformed).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let too_many: Vec<String> = (0..21).map(|_| format!("{base}/users/{adele}")).collect();
    assert_graph_error(&app.post("/v1.0/groups", &body(too_many)).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_eq!(app.get("/v1.0/groups").await.body["value"].as_array().map(Vec::len), before);

    // PATCH adds several members at once, as Graph documents; a wrong reference adds none.
    let lee = create(&app, "lee", json!({})).await;
    let nestor = create(&app, "nestor", json!({})).await;
    let path = format!("/v1.0/groups/{group}");
    let nobody = format!("{base}/users/6f1d9c31-1b5e-4b7a-9a49-2b0fe1f3c2d4");
    let partly = app.patch(&path, &json!({"members@odata.bind": [format!("{base}/users/{lee}"), nobody]})).await;
    assert_graph_error(&partly, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    assert_eq!(ids(&app.get(&format!("/v1.0/groups/{group}/members")).await.body), expected, "nothing added");
    let added = app
        .patch(
            &path,
            &json!({"description": "Helps at the library", "members@odata.bind": [
                format!("{base}/directoryObjects/{lee}"), format!("{base}/users/{nestor}")]}),
        )
        .await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    let mut everyone = vec![adele.clone(), megan.clone(), lee.clone(), nestor.clone()];
    everyone.sort();
    assert_eq!(ids(&app.get(&format!("/v1.0/groups/{group}/members")).await.body), everyone);
    assert_eq!(app.get(&path).await.body["description"], "Helps at the library");
    let again = app.patch(&path, &json!({"members@odata.bind": [format!("{base}/users/{lee}")]})).await;
    assert_graph_error(&again, StatusCode::BAD_REQUEST, "Request_BadRequest");
    // Kiota's form of removal: the member named by its URL in $id.
    let url = keyward_app::url_encode(&format!("{base}/directoryObjects/{lee}"));
    let removed = app.delete(&format!("/v1.0/groups/{group}/members/$ref?$id={url}")).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    assert!(!ids(&app.get(&format!("/v1.0/groups/{group}/members")).await.body).contains(&lee));
    let unnamed = app.delete(&format!("/v1.0/groups/{group}/members/$ref")).await;
    assert_graph_error(&unnamed, StatusCode::BAD_REQUEST, "Request_BadRequest");
    // getByIds: the objects named, of the types asked; an id naming nothing is left out.
    let nobody_id = "6f1d9c31-1b5e-4b7a-9a49-2b0fe1f3c2d4";
    let by_ids =
        app.post("/v1.0/directoryObjects/getByIds", &json!({"ids": [adele.clone(), group.clone(), nobody_id]})).await;
    assert_eq!(by_ids.status, StatusCode::OK, "{}", by_ids.text);
    let mut found = ids(&by_ids.body);
    found.sort();
    let mut wanted = vec![adele.clone(), group.clone()];
    wanted.sort();
    assert_eq!(found, wanted, "{}", by_ids.text);
    let users_only = app
        .post("/v1.0/directoryObjects/getByIds", &json!({"ids": [adele.clone(), group.clone()], "types": ["user"]}))
        .await;
    assert_eq!(ids(&users_only.body), vec![adele.clone()], "{}", users_only.text);
    assert_eq!(users_only.body["value"][0]["@odata.type"], "#microsoft.graph.user");
    for bad in [json!({"ids": []}), json!({"ids": [adele.clone()], "types": ["device"]}), json!({"ids": "x"})] {
        let reply = app.post("/v1.0/directoryObjects/getByIds", &bad).await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    // Applications and administrative units are directory objects too.
    let registered = app.post("/v1.0/applications", &json!({"displayName": "Library app"})).await;
    let application = id_of(&registered.body);
    let unit = app.post("/v1.0/directory/administrativeUnits", &json!({"displayName": "Library unit"})).await;
    assert_eq!(unit.status, StatusCode::CREATED, "{}", unit.text);
    let unit = id_of(&unit.body);
    for (id, kind) in [(&application, "#microsoft.graph.application"), (&unit, "#microsoft.graph.administrativeUnit")] {
        let one = app.get(&format!("/v1.0/directoryObjects/{id}")).await;
        assert_eq!((one.status, &one.body["@odata.type"]), (StatusCode::OK, &json!(kind)), "{}", one.text);
    }
    let named = json!({"ids": [adele.clone(), application.clone(), unit.clone(), nobody_id]});
    let mut found = ids(&app.post("/v1.0/directoryObjects/getByIds", &named).await.body);
    found.sort();
    let mut wanted = vec![adele.clone(), application.clone(), unit.clone()];
    wanted.sort();
    assert_eq!(found, wanted);
    let apps_only =
        json!({"ids": [adele.clone(), application.clone(), unit.clone()], "types": ["microsoft.graph.application"]});
    assert_eq!(ids(&app.post("/v1.0/directoryObjects/getByIds", &apps_only).await.body), vec![application.clone()]);
    // A member reads what members may read (users, groups, applications, units); a guest only
    // the user it names, and learns nothing of the rest (404, or left out).
    let member_token = app.token_for(&format!("megan@{DOMAIN}")).await;
    let mut seen = ids(&app.as_user(&member_token).post("/v1.0/directoryObjects/getByIds", &named).await.body);
    seen.sort();
    assert_eq!(seen, wanted, "a member");
    let guest = create(&app, "guesty", json!({"userType": "Guest"})).await;
    let guest_token = app.token_for(&format!("guesty@{DOMAIN}")).await;
    let as_guest = app.as_user(&guest_token);
    let by_guest = as_guest
        .post(
            "/v1.0/directoryObjects/getByIds",
            &json!({"ids": [guest.clone(), group.clone(), application.clone(), unit.clone()]}),
        )
        .await;
    assert_eq!(ids(&by_guest.body), vec![guest.clone()], "{}", by_guest.text);
    for id in [&application, &unit] {
        let hidden = as_guest.get(&format!("/v1.0/directoryObjects/{id}")).await;
        assert_graph_error(&hidden, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    }
    // Without a token, nothing at all.
    let anonymous = app.send(reqwest::Method::POST, "/v1.0/directoryObjects/getByIds", None, Some(&named), &[]).await;
    assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    let anonymous =
        app.send(reqwest::Method::GET, &format!("/v1.0/directoryObjects/{application}"), None, None, &[]).await;
    assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    // Adding members takes the member permission: a user without a role cannot.
    let adele_token = app.token_for(&format!("adele@{DOMAIN}")).await;
    let refused =
        app.as_user(&adele_token).patch(&path, &json!({"members@odata.bind": [format!("{base}/users/{adele}")]})).await;
    assert_graph_error(&refused, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    // Nor remove one by URL (Kiota's form), which is decided as the removal by id.
    let megan_url = keyward_app::url_encode(&format!("{base}/directoryObjects/{megan}"));
    let by_url = app.as_user(&adele_token).delete(&format!("/v1.0/groups/{group}/members/$ref?$id={megan_url}")).await;
    assert_graph_error(&by_url, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert!(ids(&app.get(&format!("/v1.0/groups/{group}/members")).await.body).contains(&megan), "still a member");
}

/// Deleting a user keeps it 30 days in the deleted items: listed, read, restored (profile and
/// password back, roles, memberships and earlier tokens not), or removed for good; audited, and
/// refused to those without the permission.
async fn deleted_items_and_restore(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = create(&app, "leaver", json!({"employeeId": "E-7", "otherMails": ["leaver@backup.test"]})).await;
    let team = group(&app, "team").await;
    add_member(&app, &team, &id).await;
    app.assign_role(&id, keyward_core::authz::roles::HELPDESK_ADMINISTRATOR, "/").await;
    let phone = app
        .post(
            &format!("/v1.0/users/{id}/authentication/phoneMethods"),
            &json!({"phoneNumber": "+1 2065550100", "phoneType": "mobile"}),
        )
        .await;
    assert_eq!(phone.status, StatusCode::CREATED, "{}", phone.text);
    let old_token = app.token_for(&format!("leaver@{DOMAIN}")).await;
    create(&app, "plain", json!({})).await;
    let plain_token = app.token_for(&format!("plain@{DOMAIN}")).await;
    app.clock.advance(time::Duration::seconds(5));

    assert_eq!(app.delete(&format!("/v1.0/users/{id}")).await.status, StatusCode::NO_CONTENT);
    assert_graph_error(&app.get(&format!("/v1.0/users/{id}")).await, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    assert_graph_error(
        &app.as_user(&old_token).get("/v1.0/me").await,
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
    );
    let listed = app.get("/v1.0/directory/deletedItems/microsoft.graph.user").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(ids(&listed.body), vec![id.clone()]);
    // The SDKs' spelling of the cast, with $select.
    let short = app.get("/v1.0/directory/deletedItems/graph.user?$select=id,userPrincipalName").await;
    assert_eq!(short.body["value"][0]["userPrincipalName"], format!("leaver@{DOMAIN}"), "{}", short.text);
    assert!(short.body["value"][0].get("displayName").is_none(), "{}", short.text);
    assert!(short.body["value"][0].get("deletedDateTime").is_none(), "not selected: {}", short.text);
    // Microsoft's own example selects `deletedDateTime`, which only deleted items carry.
    let when =
        app.get("/v1.0/directory/deletedItems/microsoft.graph.user?$select=id,displayName,deletedDateTime").await;
    assert_eq!(when.status, StatusCode::OK, "{}", when.text);
    assert!(when.body["value"][0]["deletedDateTime"].as_str().is_some_and(|it| it.ends_with('Z')), "{}", when.text);
    assert!(when.body["value"][0].get("userPrincipalName").is_none(), "{}", when.text);
    assert!(listed.body["value"][0]["deletedDateTime"].as_str().is_some_and(|it| it.ends_with('Z')), "{}", listed.text);
    let item = app.get(&format!("/v1.0/directory/deletedItems/{id}")).await;
    assert_eq!(item.body["userPrincipalName"], format!("leaver@{DOMAIN}"));
    assert_eq!(item.body["@odata.type"], "#microsoft.graph.user");
    let groups = app.get("/v1.0/directory/deletedItems/microsoft.graph.group").await;
    assert_eq!(groups.body["value"], json!([]), "{}", groups.text);
    assert_graph_error(
        &app.get("/v1.0/directory/deletedItems/microsoft.graph.user?$filter=displayName%20eq%20'x'").await,
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
    );

    // The user principal name is free meanwhile; restoring then waits for it.
    let again = create(&app, "leaver", json!({})).await;
    let conflict = app.post(&format!("/v1.0/directory/deletedItems/{id}/restore"), &json!({})).await;
    assert_graph_error(&conflict, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(conflict.text.contains("userPrincipalName"), "{}", conflict.text);
    assert_eq!(app.delete(&format!("/v1.0/users/{again}")).await.status, StatusCode::NO_CONTENT);

    // Only those who may restore users do.
    let denied =
        app.as_user(&plain_token).post(&format!("/v1.0/directory/deletedItems/{id}/restore"), &json!({})).await;
    assert_graph_error(&denied, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let restored = app.post(&format!("/v1.0/directory/deletedItems/{id}/restore"), &json!({})).await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.text);
    assert_eq!(restored.body["id"], id.as_str());
    let back = app.get(&format!("/v1.0/users/{id}?$select=employeeId,otherMails,accountEnabled")).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.text);
    assert_eq!(back.body["employeeId"], "E-7");
    assert_eq!(back.body["otherMails"], json!(["leaver@backup.test"]));
    assert_eq!(app.get(&format!("/v1.0/users/{id}/memberOf")).await.body["value"], json!([]), "no roles or groups");
    // The methods that protected the account protect it again.
    let phones = app.get(&format!("/v1.0/users/{id}/authentication/phoneMethods")).await;
    assert_eq!(phones.body["value"].as_array().map(Vec::len), Some(1), "{}", phones.text);
    assert_graph_error(
        &app.as_user(&old_token).get("/v1.0/me").await,
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
    );
    let signed_in = app.token_for(&format!("leaver@{DOMAIN}")).await;
    assert_eq!(app.as_user(&signed_in).get("/v1.0/me").await.status, StatusCode::OK);
    assert_eq!(
        app.get("/v1.0/directory/deletedItems/microsoft.graph.user").await.body["value"].as_array().map(Vec::len),
        Some(1),
        "the second leaver"
    );
    let activities: Vec<String> = app.audit_for(&id).await.iter().map(|it| it.activity_display_name.clone()).collect();
    assert!(activities.iter().any(|it| it == "Restore user"), "{activities:?}");

    // Removed for good.
    assert_eq!(app.delete(&format!("/v1.0/users/{id}")).await.status, StatusCode::NO_CONTENT);
    let purged = app.delete(&format!("/v1.0/directory/deletedItems/{id}")).await;
    assert_eq!(purged.status, StatusCode::NO_CONTENT, "{}", purged.text);
    assert_graph_error(
        &app.get(&format!("/v1.0/directory/deletedItems/{id}")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    let gone = app.post(&format!("/v1.0/directory/deletedItems/{id}/restore"), &json!({})).await;
    assert_graph_error(&gone, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    let activities: Vec<String> = app.audit_for(&id).await.iter().map(|it| it.activity_display_name.clone()).collect();
    assert!(activities.iter().any(|it| it == "Hard Delete user"), "{activities:?}");

    // After 30 days a deleted user is gone, and the hourly maintenance removes its rows.
    app.clock.advance(time::Duration::days(31));
    assert_eq!(app.app.purge_expired_deleted_items().await.expect("purge"), 1, "the second leaver");
    let expired = app
        .as_user(&app.token_for(keyward_testkit::ADMIN_UPN).await)
        .get("/v1.0/directory/deletedItems/microsoft.graph.user")
        .await;
    assert_eq!(expired.body["value"], json!([]), "{}", expired.text);
    assert_graph_error(
        &app.as_user(&app.token_for(keyward_testkit::ADMIN_UPN).await)
            .post(&format!("/v1.0/directory/deletedItems/{again}/restore"), &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
}

/// Deleting a group keeps it 30 days in the deleted items: listed, read, tracked by delta as
/// restorable, restored with its surviving members and owners but none of its role assignments or
/// its own memberships, or removed for good; each decision under its own permission, audited.
async fn deleted_groups_and_restore(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (member, leaver, owner) = (
        create(&app, "member", json!({})).await,
        create(&app, "leaver", json!({})).await,
        create(&app, "owner", json!({})).await,
    );
    let crew = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Crew", "mailNickname": "crew", "mailEnabled": true,
                    "securityEnabled": false, "groupTypes": ["Unified"]}),
        )
        .await;
    assert_eq!(crew.status, StatusCode::CREATED, "{}", crew.text);
    let crew = id_of(&crew.body);
    let nested = group(&app, "nested").await;
    let parent = group(&app, "parent").await;
    for it in [&member, &leaver, &nested] {
        add_member(&app, &crew, it).await;
    }
    add_member(&app, &parent, &crew).await;
    let owned = app.post(&format!("/v1.0/groups/{crew}/owners/$ref"), &reference(&app, &owner)).await;
    assert_eq!(owned.status, StatusCode::NO_CONTENT, "{}", owned.text);
    let unit = app.create_unit("Crews", false, &[]).await;
    let added =
        app.post(&format!("/v1.0/directory/administrativeUnits/{unit}/members/$ref"), &reference(&app, &crew)).await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    let ops = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Ops", "mailNickname": "ops", "mailEnabled": false,
                    "securityEnabled": true, "isAssignableToRole": true}),
        )
        .await;
    assert_eq!(ops.status, StatusCode::CREATED, "{}", ops.text);
    let ops = id_of(&ops.body);
    add_member(&app, &ops, &member).await;
    app.assign_role(&ops, keyward_core::authz::roles::HELPDESK_ADMINISTRATOR, "/").await;
    let (user_admin, helpdesk) =
        (create(&app, "useradmin", json!({})).await, create(&app, "helpdesk", json!({})).await);
    app.assign_role(&user_admin, keyward_core::authz::roles::USER_ADMINISTRATOR, "/").await;
    app.assign_role(&helpdesk, keyward_core::authz::roles::HELPDESK_ADMINISTRATOR, "/").await;
    let user_admin = app.token_for(&format!("useradmin@{DOMAIN}")).await;
    let helpdesk = app.token_for(&format!("helpdesk@{DOMAIN}")).await;
    // What a group is a member of: groups and units; a role-assignable group's directory roles too.
    let mut crew_of = ids(&app.get(&format!("/v1.0/groups/{crew}/memberOf")).await.body);
    crew_of.sort();
    let mut expected = vec![parent.clone(), unit.clone()];
    expected.sort();
    assert_eq!(crew_of, expected);
    let groups_of = app.get(&format!("/v1.0/groups/{crew}/memberOf/graph.group")).await;
    assert_eq!(ids(&groups_of.body), vec![parent.clone()], "{}", groups_of.text);
    let units_of = app.get(&format!("/v1.0/groups/{crew}/transitiveMemberOf/microsoft.graph.administrativeUnit")).await;
    assert_eq!(ids(&units_of.body), vec![unit.clone()], "{}", units_of.text);
    let ops_of = app.get(&format!("/v1.0/groups/{ops}/transitiveMemberOf?$select=displayName")).await;
    assert_eq!(ops_of.body["value"][0]["@odata.type"], "#microsoft.graph.directoryRole", "{}", ops_of.text);
    assert_eq!(ops_of.body["value"][0]["displayName"], "Helpdesk Administrator", "{}", ops_of.text);
    let mut round = app.get("/v1.0/groups/delta").await;
    while let Some(next) = round.body["@odata.nextLink"].as_str().map(ToOwned::to_owned) {
        round = app.get(&next).await;
    }
    let delta_link = round.body["@odata.deltaLink"].as_str().expect("delta link").to_owned();

    // Deleted: gone from the directory and from its member's groups, kept in the deleted items.
    assert_eq!(app.delete(&format!("/v1.0/groups/{crew}")).await.status, StatusCode::NO_CONTENT);
    assert_graph_error(
        &app.get(&format!("/v1.0/groups/{crew}")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    assert!(!ids(&app.get(&format!("/v1.0/users/{member}/memberOf")).await.body).contains(&crew));
    let listed = app.get("/v1.0/directory/deletedItems/microsoft.graph.group").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(ids(&listed.body), vec![crew.clone()]);
    assert_eq!(listed.body["value"][0]["@odata.type"], "#microsoft.graph.group", "{}", listed.text);
    assert!(listed.body["value"][0]["deletedDateTime"].as_str().is_some_and(|it| it.ends_with('Z')), "{}", listed.text);
    let short = app.get("/v1.0/directory/deletedItems/graph.group?$select=id,displayName").await;
    assert_eq!(short.body["value"][0]["displayName"], "Crew", "{}", short.text);
    assert!(short.body["value"][0].get("mailNickname").is_none(), "{}", short.text);
    let item = app.get(&format!("/v1.0/directory/deletedItems/{crew}")).await;
    assert_eq!(
        (item.body["@odata.type"].as_str(), item.body["groupTypes"].clone()),
        (Some("#microsoft.graph.group"), json!(["Unified"])),
        "{}",
        item.text
    );
    let changes = app.get(&delta_link).await;
    assert!(
        changes.body["value"]
            .as_array()
            .expect("value")
            .contains(&json!({"id": crew, "@removed": {"reason": "changed"}})),
        "{}",
        changes.text
    );

    // Restored by a User Administrator: the members, owners and unit that still exist, not the
    // group's membership of its parent group, which ended with it.
    assert_eq!(app.delete(&format!("/v1.0/users/{leaver}")).await.status, StatusCode::NO_CONTENT);
    for (token, name) in [(&helpdesk, "a Helpdesk Administrator")] {
        let denied = app.as_user(token).post(&format!("/v1.0/directory/deletedItems/{crew}/restore"), &json!({})).await;
        assert_graph_error(&denied, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
        let denied = app.as_user(token).delete(&format!("/v1.0/directory/deletedItems/{crew}")).await;
        assert_graph_error(&denied, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
        assert_eq!(app.get(&format!("/v1.0/directory/deletedItems/{crew}")).await.status, StatusCode::OK, "{name}");
    }
    let restored =
        app.as_user(&user_admin).post(&format!("/v1.0/directory/deletedItems/{crew}/restore"), &json!({})).await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.text);
    assert_eq!(
        (restored.body["id"].as_str(), restored.body["@odata.type"].as_str()),
        (Some(crew.as_str()), Some("#microsoft.graph.group"))
    );
    let mut members = ids(&app.get(&format!("/v1.0/groups/{crew}/members")).await.body);
    members.sort();
    let mut expected = vec![member.clone(), nested.clone()];
    expected.sort();
    assert_eq!(members, expected, "the deleted member stays out");
    assert_eq!(ids(&app.get(&format!("/v1.0/groups/{crew}/owners")).await.body), vec![owner.clone()]);
    assert_eq!(ids(&app.get(&format!("/v1.0/groups/{crew}/memberOf")).await.body), vec![unit.clone()]);
    assert_eq!(ids(&app.get(&format!("/v1.0/groups/{parent}/members")).await.body), Vec::<String>::new());
    let unit_members = app.get(&format!("/v1.0/directory/administrativeUnits/{unit}/members")).await;
    assert!(ids(&unit_members.body).contains(&crew), "{}", unit_members.text);
    assert_eq!(app.get("/v1.0/directory/deletedItems/microsoft.graph.group").await.body["value"], json!([]));
    let activities: Vec<String> =
        app.audit_for(&crew).await.iter().map(|it| it.activity_display_name.clone()).collect();
    assert!(activities.iter().any(|it| it == "Restore group"), "{activities:?}");

    // A role-assignable group: its role ends when it is deleted and does not come back; only
    // those who may restore role-assignable groups restore it, and the refusal is recorded.
    assert_eq!(app.delete(&format!("/v1.0/groups/{ops}")).await.status, StatusCode::NO_CONTENT);
    let denied =
        app.as_user(&user_admin).post(&format!("/v1.0/directory/deletedItems/{ops}/restore"), &json!({})).await;
    assert_graph_error(&denied, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let refusals = app.audit_for(&ops).await;
    assert!(
        refusals
            .iter()
            .any(|it| it.activity_display_name == "Restore group"
                && it.result == keyward_core::audit::AuditResult::Failure),
        "{refusals:?}"
    );
    let restored = app.post(&format!("/v1.0/directory/deletedItems/{ops}/restore"), &json!({})).await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.text);
    assert_eq!(ids(&app.get(&format!("/v1.0/groups/{ops}/members")).await.body), vec![member.clone()]);
    let roles =
        app.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{ops}'")).await;
    assert_eq!(roles.body["value"], json!([]), "{}", roles.text);
    let member_token = app.token_for(&format!("member@{DOMAIN}")).await;
    assert_graph_error(
        &app.as_user(&member_token).get(&format!("/v1.0/users/{owner}/authentication/methods")).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );

    // Removed for good, and expiry.
    assert_eq!(app.delete(&format!("/v1.0/groups/{ops}")).await.status, StatusCode::NO_CONTENT);
    let purged = app.delete(&format!("/v1.0/directory/deletedItems/{ops}")).await;
    assert_eq!(purged.status, StatusCode::NO_CONTENT, "{}", purged.text);
    assert_graph_error(
        &app.get(&format!("/v1.0/directory/deletedItems/{ops}")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    let activities: Vec<String> = app.audit_for(&ops).await.iter().map(|it| it.activity_display_name.clone()).collect();
    assert!(activities.iter().any(|it| it == "Hard Delete group"), "{activities:?}");
    assert_eq!(app.delete(&format!("/v1.0/groups/{nested}")).await.status, StatusCode::NO_CONTENT);
    app.clock.advance(time::Duration::days(31));
    // The leaver and the nested group.
    assert_eq!(app.app.purge_expired_deleted_items().await.expect("purge"), 2);
    let admin = app.token_for(keyward_testkit::ADMIN_UPN).await;
    assert_eq!(
        app.as_user(&admin).get("/v1.0/directory/deletedItems/microsoft.graph.group").await.body["value"],
        json!([])
    );

    // Nobody anonymous reads or changes the deleted items.
    for (method, path) in [
        (reqwest::Method::GET, "/v1.0/directory/deletedItems/microsoft.graph.group".to_owned()),
        (reqwest::Method::GET, format!("/v1.0/directory/deletedItems/{crew}")),
        (reqwest::Method::POST, format!("/v1.0/directory/deletedItems/{crew}/restore")),
        (reqwest::Method::DELETE, format!("/v1.0/directory/deletedItems/{crew}")),
        (reqwest::Method::PUT, format!("/v1.0/users/{member}/manager/$ref")),
        (reqwest::Method::GET, format!("/v1.0/users/{member}/memberOf")),
    ] {
        let reply = app.send(method.clone(), &path, None, Some(&json!({})), &[]).await;
        assert_graph_error(&reply, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    }
}

/// `$count` on relationship collections, as Graph has it with `ConsistencyLevel: eventual`:
/// `$count=true` adds the whole collection's `@odata.count` to a page, and the `$count` segment
/// answers the number as text, after a type cast too; without the header both are refused.
async fn relationship_counts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ada, bob, cy) = (
        create(&app, "ada", json!({})).await,
        create(&app, "bob", json!({})).await,
        create(&app, "cy", json!({})).await,
    );
    let (inner, outer) = (group(&app, "inner").await, group(&app, "outer").await);
    for (into, member) in [(&inner, &ada), (&inner, &bob), (&outer, &inner), (&outer, &cy)] {
        add_member(&app, into, member).await;
    }
    let owned = app.post(&format!("/v1.0/groups/{outer}/owners/$ref"), &reference(&app, &ada)).await;
    assert_eq!(owned.status, StatusCode::NO_CONTENT, "{}", owned.text);
    app.assign_role(&ada, keyward_core::authz::roles::HELPDESK_ADMINISTRATOR, "/").await;
    for report in [&bob, &cy] {
        let body = json!({"@odata.id": format!("{}/v1.0/users/{ada}", app.base_url)});
        assert_eq!(
            app.send(
                reqwest::Method::PUT,
                &format!("/v1.0/users/{report}/manager/$ref"),
                Some(&app.admin_token),
                Some(&body),
                &[]
            )
            .await
            .status,
            StatusCode::NO_CONTENT
        );
    }
    let ada_token = app.token_for(&format!("ada@{DOMAIN}")).await;
    let get = |token: &str, path: String, headers: &'static [(&'static str, &'static str)]| {
        let app = &app;
        let token = token.to_owned();
        async move { app.send(reqwest::Method::GET, &path, Some(&token), None, headers).await }
    };
    const EVENTUAL: &[(&str, &str)] = &[("ConsistencyLevel", "eventual")];

    // A page of one, counting the whole collection.
    let page =
        get(&app.admin_token, format!("/v1.0/groups/{outer}/transitiveMembers?$count=true&$top=1"), EVENTUAL).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(
        (page.body["@odata.count"].as_u64(), page.body["value"].as_array().map(Vec::len)),
        (Some(4), Some(1)),
        "{}",
        page.text
    );
    assert!(page.body["@odata.nextLink"].is_string(), "{}", page.text);
    let users = get(
        &app.admin_token,
        format!("/v1.0/groups/{outer}/transitiveMembers/microsoft.graph.user?$count=true"),
        EVENTUAL,
    )
    .await;
    assert_eq!(users.body["@odata.count"], 3, "{}", users.text);
    let plain = get(&app.admin_token, format!("/v1.0/groups/{outer}/members?$count=false"), EVENTUAL).await;
    assert!(plain.body.get("@odata.count").is_none(), "{}", plain.text);

    // The $count segment, as text.
    for (path, expected) in [
        (format!("/v1.0/groups/{outer}/members/$count"), "2"),
        (format!("/v1.0/groups/{outer}/members/microsoft.graph.group/$count"), "1"),
        (format!("/v1.0/groups/{outer}/members/graph.user/$count"), "1"),
        (format!("/v1.0/groups/{outer}/owners/$count"), "1"),
        (format!("/v1.0/groups/{outer}/transitiveMembers/$count"), "4"),
        (format!("/v1.0/groups/{inner}/memberOf/$count"), "1"),
        (format!("/v1.0/users/{ada}/memberOf/$count"), "2"),
        (format!("/v1.0/users/{ada}/transitiveMemberOf/$count"), "3"),
        (format!("/v1.0/users/{ada}/transitiveMemberOf/microsoft.graph.directoryRole/$count"), "1"),
        (format!("/v1.0/users/{ada}/directReports/$count"), "2"),
        (format!("/v1.0/users/{ada}/ownedObjects/$count"), "1"),
    ] {
        let reply = get(&app.admin_token, path.clone(), EVENTUAL).await;
        assert_eq!((reply.status, reply.text.as_str()), (StatusCode::OK, expected), "{path}");
        assert!(reply.headers["content-type"].to_str().unwrap_or_default().starts_with("text/plain"), "{path}");
    }
    for (path, expected) in [
        ("/v1.0/me/memberOf/$count", "2"),
        ("/v1.0/me/directReports/$count", "2"),
        ("/v1.0/me/memberOf/graph.group/$count", "1"),
    ] {
        let reply = get(&ada_token, path.to_owned(), EVENTUAL).await;
        assert_eq!((reply.status, reply.text.as_str()), (StatusCode::OK, expected), "{path}");
    }

    // Refused: no header, a bad value, a type the collection cannot hold, options on the segment,
    // an unknown object, and nobody anonymous.
    assert_graph_error(
        &get(&app.admin_token, format!("/v1.0/groups/{outer}/members?$count=true"), &[]).await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    assert_graph_error(
        &get(&app.admin_token, format!("/v1.0/groups/{outer}/members/$count"), &[]).await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    assert_graph_error(
        &get(&app.admin_token, format!("/v1.0/groups/{outer}/members?$count=maybe"), EVENTUAL).await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    assert_graph_error(
        &get(&app.admin_token, format!("/v1.0/users/{ada}/memberOf/microsoft.graph.user/$count"), EVENTUAL).await,
        StatusCode::BAD_REQUEST,
        "BadRequest",
    );
    assert_graph_error(
        &get(&app.admin_token, format!("/v1.0/groups/{outer}/members/$count?$filter=id%20eq%20'x'"), EVENTUAL).await,
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
    );
    let unknown = "00000000-0000-0000-0000-0000000000aa";
    assert_graph_error(
        &get(&app.admin_token, format!("/v1.0/groups/{unknown}/members/$count"), EVENTUAL).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    let anonymous =
        app.send(reqwest::Method::GET, &format!("/v1.0/groups/{outer}/members/$count"), None, None, EVENTUAL).await;
    assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
}

/// Graph's upsert under the `uniqueName` alternate key: created once with
/// `Prefer: create-if-missing` (also when two upserts race), updated after, read, filtered and
/// deleted by it; the name is immutable, checked, and the permissions are those of creating and
/// updating applications.
async fn application_unique_name_upsert(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let path = "/v1.0/applications(uniqueName='payroll-sync')";
    let upsert = |body: Value, headers: &'static [(&'static str, &'static str)], token: String| {
        let app = &app;
        async move { app.send(reqwest::Method::PATCH, path, Some(&token), Some(&body), headers).await }
    };
    const CREATE: &[(&str, &str)] = &[("Prefer", "create-if-missing")];
    let admin = app.admin_token.clone();

    // Without the header an upsert of a missing name is a 404.
    assert_graph_error(
        &upsert(json!({"displayName": "Payroll"}), &[], admin.clone()).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    // Two concurrent creates make one application: one 201, the other an update.
    let (first, second) = tokio::join!(
        upsert(json!({"displayName": "Payroll"}), CREATE, admin.clone()),
        upsert(json!({"displayName": "Payroll"}), CREATE, admin.clone())
    );
    let mut statuses = vec![first.status, second.status];
    statuses.sort();
    assert_eq!(statuses, vec![StatusCode::CREATED, StatusCode::NO_CONTENT], "{} / {}", first.text, second.text);
    let created = if first.status == StatusCode::CREATED { first } else { second };
    assert_eq!(created.body["uniqueName"], "payroll-sync", "{}", created.text);
    let id = id_of(&created.body);
    let filtered = app.get("/v1.0/applications?$filter=uniqueName%20eq%20'payroll-sync'").await;
    assert_eq!(ids(&filtered.body), vec![id.clone()], "{}", filtered.text);
    let principal = app
        .get(&format!("/v1.0/servicePrincipals(appId='{}')", created.body["appId"].as_str().unwrap_or_default()))
        .await;
    assert_eq!(principal.status, StatusCode::OK, "the upsert created the service principal too: {}", principal.text);

    // Afterwards an upsert updates (204), with or without the header; reads match without case.
    let renamed = upsert(json!({"displayName": "Payroll 2"}), CREATE, admin.clone()).await;
    assert_eq!(renamed.status, StatusCode::NO_CONTENT, "{}", renamed.text);
    let read = app.get("/v1.0/applications(uniqueName='PAYROLL-SYNC')").await;
    assert_eq!(
        (read.body["id"].as_str(), read.body["displayName"].as_str()),
        (Some(id.as_str()), Some("Payroll 2")),
        "{}",
        read.text
    );
    let listed = app.get(&format!("/v1.0/applications/{id}")).await;
    assert_eq!(listed.body["uniqueName"], "payroll-sync");

    // The name is immutable and checked; a plain POST has none.
    let immutable = upsert(json!({"uniqueName": "other"}), CREATE, admin.clone()).await;
    assert_graph_error(&immutable, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let posted = app.post("/v1.0/applications", &json!({"displayName": "Plain", "uniqueName": "plain"})).await;
    assert_graph_error(&posted, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let long = format!("/v1.0/applications(uniqueName='{}')", "x".repeat(300));
    let too_long =
        app.send(reqwest::Method::PATCH, &long, Some(&admin), Some(&json!({"displayName": "Long"})), CREATE).await;
    assert_graph_error(&too_long, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let plain = app.post("/v1.0/applications", &json!({"displayName": "Plain"})).await;
    assert_eq!(plain.body["uniqueName"], Value::Null, "{}", plain.text);
    // Names that hide characters, and keys with an undoubled quote, are refused.
    for key in ["pay%E2%80%AEroll", "pay%D8%9Croll", "it's", "%20padded"] {
        let reply = app
            .send(
                reqwest::Method::PATCH,
                &format!("/v1.0/applications(uniqueName='{key}')"),
                Some(&admin),
                Some(&json!({"displayName": "X"})),
                CREATE,
            )
            .await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    // A certificate given when the upsert creates the application is kept, not dropped.
    let certificate = rcgen::generate_simple_self_signed(vec!["daemon.contoso.test".to_owned()]).expect("certificate");
    let der = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, certificate.cert.der());
    let body = json!({"displayName": "Daemon", "keyCredentials": [{"type": "AsymmetricX509Cert", "usage": "Verify", "key": der}]});
    let daemon = app
        .send(reqwest::Method::PATCH, "/v1.0/applications(uniqueName='daemon')", Some(&admin), Some(&body), CREATE)
        .await;
    assert_eq!(daemon.status, StatusCode::CREATED, "{}", daemon.text);
    assert_eq!(daemon.body["keyCredentials"].as_array().map(Vec::len), Some(1), "{}", daemon.text);
    let stored = app.get("/v1.0/applications(uniqueName='daemon')").await;
    assert_eq!(stored.body["keyCredentials"][0]["type"], "AsymmetricX509Cert", "{}", stored.text);

    // Those who may not create applications cannot upsert one into being; the refusal is audited.
    let helpdesk = create(&app, "helpdesk", json!({})).await;
    app.assign_role(&helpdesk, keyward_core::authz::roles::HELPDESK_ADMINISTRATOR, "/").await;
    let helpdesk = app.token_for(&format!("helpdesk@{DOMAIN}")).await;
    let denied = app
        .send(
            reqwest::Method::PATCH,
            "/v1.0/applications(uniqueName='sneaky')",
            Some(&helpdesk),
            Some(&json!({"displayName": "Sneaky"})),
            CREATE,
        )
        .await;
    assert_graph_error(&denied, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert_graph_error(
        &app.get("/v1.0/applications(uniqueName='sneaky')").await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    let anonymous = app.send(reqwest::Method::GET, path, None, None, &[]).await;
    assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");

    assert_eq!(app.delete(path).await.status, StatusCode::NO_CONTENT);
    assert_graph_error(
        &app.get(&format!("/v1.0/applications/{id}")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    // The name is free again; the deleted application cannot come back under it meanwhile.
    assert_eq!(upsert(json!({"displayName": "Payroll 3"}), CREATE, admin).await.status, StatusCode::CREATED);
    let taken = app.post(&format!("/v1.0/directory/deletedItems/{id}/restore"), &json!({})).await;
    assert_graph_error(&taken, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(taken.text.contains("uniqueName"), "{}", taken.text);
    let still = app.get(&format!("/v1.0/directory/deletedItems/{id}")).await;
    assert_eq!(still.body["uniqueName"], "payroll-sync", "still kept: {}", still.text);
}

/// Races a careless script or an attacker could start: two managers set at once that would make
/// a loop (one wins, never both), the same deleted user restored twice at once (one restore), a
/// restore racing a permanent delete (one of them), and the roles below the sensitive-action
/// table's restore and delete trying them.
async fn concurrent_directory_changes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ann, ben) = (create(&app, "ann", json!({})).await, create(&app, "ben", json!({})).await);
    let put = |user: String, manager: String| {
        let app = &app;
        async move {
            let path = format!("/v1.0/users/{user}/manager/$ref");
            app.send(reqwest::Method::PUT, &path, Some(&app.admin_token), Some(&reference(app, &manager)), &[]).await
        }
    };
    for _ in 0..3 {
        let (one, two) = tokio::join!(put(ann.clone(), ben.clone()), put(ben.clone(), ann.clone()));
        let statuses = [one.status, two.status];
        assert_eq!(
            statuses.iter().filter(|it| **it == StatusCode::NO_CONTENT).count(),
            1,
            "exactly one of two loop-making changes lands: {} / {}",
            one.text,
            two.text
        );
        let managers = (
            app.get(&format!("/v1.0/users/{ann}/manager")).await.body["id"].clone(),
            app.get(&format!("/v1.0/users/{ben}/manager")).await.body["id"].clone(),
        );
        assert!(managers.0.is_null() || managers.1.is_null(), "no loop: {managers:?}");
        for user in [&ann, &ben] {
            app.delete(&format!("/v1.0/users/{user}/manager/$ref")).await;
        }
    }

    // Twice the same restore at once: one restores, the other finds nothing left to restore.
    let leaver = create(&app, "leaver", json!({})).await;
    assert_eq!(app.delete(&format!("/v1.0/users/{leaver}")).await.status, StatusCode::NO_CONTENT);
    let (restore, item, empty) = (
        format!("/v1.0/directory/deletedItems/{leaver}/restore"),
        format!("/v1.0/directory/deletedItems/{leaver}"),
        json!({}),
    );
    let (one, two) = tokio::join!(app.post(&restore, &empty), app.post(&restore, &empty));
    let mut statuses = vec![one.status, two.status];
    statuses.sort();
    assert_eq!(statuses, vec![StatusCode::OK, StatusCode::NOT_FOUND], "{} / {}", one.text, two.text);
    let restores = app.audit_for(&leaver).await.iter().filter(|it| it.activity_display_name == "Restore user").count();
    assert_eq!(restores, 1);
    // A restore racing a permanent delete: one of them happens, and the user is either back or gone.
    assert_eq!(app.delete(&format!("/v1.0/users/{leaver}")).await.status, StatusCode::NO_CONTENT);
    let (restored, purged) = tokio::join!(app.post(&restore, &empty), app.delete(&item));
    let is_back = app.get(&format!("/v1.0/users/{leaver}")).await.status == StatusCode::OK;
    let in_deleted = app.get(&format!("/v1.0/directory/deletedItems/{leaver}")).await.status == StatusCode::OK;
    assert!(!in_deleted, "the deleted copy is gone either way");
    assert_eq!(
        (restored.status == StatusCode::OK, purged.status == StatusCode::NO_CONTENT),
        (is_back, !is_back),
        "{} / {}",
        restored.text,
        purged.text
    );

    // Two deletions of one object at once: one deletes, the other finds nothing.
    let (twice, team) = (create(&app, "twice", json!({})).await, group(&app, "twice").await);
    for path in [format!("/v1.0/users/{twice}"), format!("/v1.0/groups/{team}")] {
        let (one, two) = tokio::join!(app.delete(&path), app.delete(&path));
        let mut statuses = vec![one.status, two.status];
        statuses.sort();
        assert_eq!(
            statuses,
            vec![StatusCode::NO_CONTENT, StatusCode::NOT_FOUND],
            "{path}: {} / {}",
            one.text,
            two.text
        );
    }

    // A Helpdesk Administrator may neither restore nor remove for good (Entra's sensitive-action
    // table); a User Administrator may, for a user who held no role.
    let other = create(&app, "other", json!({})).await;
    assert_eq!(app.delete(&format!("/v1.0/users/{other}")).await.status, StatusCode::NO_CONTENT);
    let (helpdesk, user_admin) = (create(&app, "hd", json!({})).await, create(&app, "ua", json!({})).await);
    app.assign_role(&helpdesk, keyward_core::authz::roles::HELPDESK_ADMINISTRATOR, "/").await;
    app.assign_role(&user_admin, keyward_core::authz::roles::USER_ADMINISTRATOR, "/").await;
    let helpdesk = app.token_for(&format!("hd@{DOMAIN}")).await;
    let user_admin = app.token_for(&format!("ua@{DOMAIN}")).await;
    let item = format!("/v1.0/directory/deletedItems/{other}");
    assert_graph_error(
        &app.as_user(&helpdesk).post(&format!("{item}/restore"), &json!({})).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );
    assert_graph_error(
        &app.as_user(&helpdesk).delete(&item).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );
    assert_eq!(app.as_user(&helpdesk).get(&item).await.status, StatusCode::OK, "reading is allowed");
    assert_eq!(app.as_user(&user_admin).delete(&item).await.status, StatusCode::NO_CONTENT);
}

/// A guest (`userType` `Guest`) has Entra's limited default access: it reads users it names, its
/// own profile, memberships and security info, and the organization, but lists nothing and reads
/// no groups, roles or applications; a role still grants what it grants, and turning the guest
/// into a member counts from the next request.
async fn guests_have_limited_access(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let guest = create(&app, "visitor", json!({"userType": "Guest"})).await;
    let member = create(&app, "member", json!({})).await;
    let team = group(&app, "team").await;
    add_member(&app, &team, &guest).await;
    let token = app.token_for(&format!("visitor@{DOMAIN}")).await;
    let as_guest = app.as_user(&token);
    for path in [
        "/v1.0/me".to_owned(),
        format!("/v1.0/users/{member}"),
        format!("/v1.0/users/member@{DOMAIN}"),
        "/v1.0/me/memberOf".to_owned(),
        "/v1.0/organization".to_owned(),
        "/v1.0/me/authentication/methods".to_owned(),
    ] {
        let reply = as_guest.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
    }
    assert_eq!(ids(&as_guest.get("/v1.0/me/memberOf").await.body), vec![team.clone()]);
    for path in [
        "/v1.0/users".to_owned(),
        "/v1.0/groups".to_owned(),
        format!("/v1.0/groups/{team}"),
        format!("/v1.0/groups/{team}/members"),
        format!("/v1.0/users/{member}/memberOf"),
        "/v1.0/roleManagement/directory/roleDefinitions".to_owned(),
        "/v1.0/directory/administrativeUnits".to_owned(),
        "/v1.0/servicePrincipals".to_owned(),
        "/v1.0/directoryRoles".to_owned(),
    ] {
        let reply = as_guest.get(&path).await;
        assert_graph_error(&reply, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
        assert!(reply.text.contains("Guests have limited access"), "{path}: {}", reply.text);
    }
    // A deleted item's id is refused as an id that names nothing is: the answer does not tell
    // the guest which ids name deleted users.
    let gone = create(&app, "gone", json!({})).await;
    assert_eq!(app.delete(&format!("/v1.0/users/{gone}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/v1.0/directory/deletedItems/{gone}")).await.status, StatusCode::OK);
    for id in [gone.as_str(), "7e1b6c1c-5d0e-4c4a-9a55-0f1f2e3d4c5b"] {
        let reply = as_guest.get(&format!("/v1.0/directory/deletedItems/{id}")).await;
        assert_graph_error(&reply, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    }
    // Nor by asking to restore it or remove it for good, as a guest or as a member without a role:
    // the same refusal, in the same words, for both ids. Neither is done.
    let plain = app.token_for(&format!("member@{DOMAIN}")).await;
    for (token, who) in [(&token, "guest"), (&plain, "member")] {
        let mut answers = Vec::new();
        for id in [gone.as_str(), "7e1b6c1c-5d0e-4c4a-9a55-0f1f2e3d4c5b"] {
            let item = format!("/v1.0/directory/deletedItems/{id}");
            let restore = app.as_user(token).post(&format!("{item}/restore"), &json!({})).await;
            assert_graph_error(&restore, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
            let purge = app.as_user(token).delete(&item).await;
            assert_graph_error(&purge, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
            answers.push((restore.body["error"]["message"].clone(), purge.body["error"]["message"].clone()));
        }
        assert_eq!(answers[0], answers[1], "{who}");
    }
    assert_eq!(app.get(&format!("/v1.0/directory/deletedItems/{gone}")).await.status, StatusCode::OK, "still deleted");
    // The refusals of the real id are audited with the deleted user as their target: two
    // restores and two removals, by the guest and by the member.
    let mut refused = failures(&app, &gone).await;
    refused.sort();
    assert_eq!(refused, ["Hard Delete user", "Hard Delete user", "Restore user", "Restore user"]);
    // Nor may a guest make itself a member.
    let promoted = as_guest.patch(&format!("/v1.0/users/{guest}"), &json!({"userType": "Member"})).await;
    assert_graph_error(&promoted, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    // A role grants a guest what it grants anyone.
    app.assign_role(&guest, keyward_core::authz::roles::DIRECTORY_READERS, "/").await;
    assert_eq!(as_guest.get("/v1.0/users").await.status, StatusCode::OK);
    assert_eq!(as_guest.get(&format!("/v1.0/groups/{team}")).await.status, StatusCode::OK);
    // A member again from the next request, with the same token.
    let assignments =
        app.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{guest}'")).await;
    let assignment = assignments.body["value"][0]["id"].as_str().expect("assignment").to_owned();
    assert_eq!(
        app.delete(&format!("/v1.0/roleManagement/directory/roleAssignments/{assignment}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(as_guest.get("/v1.0/users").await.status, StatusCode::FORBIDDEN);
    let converted = app.patch(&format!("/v1.0/users/{guest}"), &json!({"userType": "Member"})).await;
    assert_eq!(converted.status, StatusCode::NO_CONTENT, "{}", converted.text);
    assert_eq!(as_guest.get("/v1.0/users").await.status, StatusCode::OK);
    assert_eq!(as_guest.get(&format!("/v1.0/groups/{team}/members")).await.status, StatusCode::OK);
}

/// A deleted member of a restricted management administrative unit stays under that unit's
/// administrators: a tenant-wide User Administrator may neither restore nor remove it, the unit's
/// own User Administrator may, and the restored user is back in the unit.
async fn deleted_items_keep_restricted_units(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let guarded = create(&app, "guarded", json!({})).await;
    let unit = app.create_unit("Executives", true, &[&guarded]).await;
    let (tenant_admin, unit_admin) =
        (create(&app, "tenantua", json!({})).await, create(&app, "unitua", json!({})).await);
    app.assign_role(&tenant_admin, keyward_core::authz::roles::USER_ADMINISTRATOR, "/").await;
    app.assign_role(
        &unit_admin,
        keyward_core::authz::roles::USER_ADMINISTRATOR,
        &format!("/administrativeUnits/{unit}"),
    )
    .await;
    let tenant_admin = app.token_for(&format!("tenantua@{DOMAIN}")).await;
    let unit_admin = app.token_for(&format!("unitua@{DOMAIN}")).await;
    // Only the unit's administrators delete it, as they alone manage it.
    assert_graph_error(
        &app.delete(&format!("/v1.0/users/{guarded}")).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );
    assert_eq!(app.as_user(&unit_admin).delete(&format!("/v1.0/users/{guarded}")).await.status, StatusCode::NO_CONTENT);
    let item = format!("/v1.0/directory/deletedItems/{guarded}");
    for reply in [
        app.as_user(&tenant_admin).post(&format!("{item}/restore"), &json!({})).await,
        app.as_user(&tenant_admin).delete(&item).await,
    ] {
        assert_graph_error(&reply, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
        assert!(reply.text.contains("restricted management administrative unit"), "{}", reply.text);
    }
    let restored = app.as_user(&unit_admin).post(&format!("{item}/restore"), &json!({})).await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.text);
    let members = app.get(&format!("/v1.0/directory/administrativeUnits/{unit}/members")).await;
    assert_eq!(ids(&members.body), vec![guarded.clone()], "{}", members.text);
    // And tenant-wide administrators still cannot manage the restored user.
    let denied = app.as_user(&tenant_admin).patch(&format!("/v1.0/users/{guarded}"), &json!({"jobTitle": "CEO"})).await;
    assert_graph_error(&denied, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
}

/// A deleted administrator's roles end with the deletion, but restoring or removing the account
/// is decided as acting on the administrator was: a User Administrator may not restore a former
/// Global Administrator, a unit's User Administrator may not restore a former Helpdesk
/// Administrator of the unit, a Privileged Authentication Administrator may; guests read no
/// deleted items.
async fn deleted_former_administrators_stay_protected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let chief = create(&app, "chief", json!({})).await;
    app.assign_role(&chief, keyward_core::authz::roles::GLOBAL_ADMINISTRATOR, "/").await;
    let agent = create(&app, "agent", json!({})).await;
    app.assign_role(&agent, keyward_core::authz::roles::HELPDESK_ADMINISTRATOR, "/").await;
    let unit = app.create_unit("Support", false, &[&agent]).await;
    let (ua, unit_ua, paa) = (
        create(&app, "ua", json!({})).await,
        create(&app, "unitua", json!({})).await,
        create(&app, "paa", json!({})).await,
    );
    app.assign_role(&ua, keyward_core::authz::roles::USER_ADMINISTRATOR, "/").await;
    app.assign_role(&unit_ua, keyward_core::authz::roles::USER_ADMINISTRATOR, &format!("/administrativeUnits/{unit}"))
        .await;
    app.assign_role(&paa, keyward_core::authz::roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, "/").await;
    let (ua, unit_ua, paa) = (
        app.token_for(&format!("ua@{DOMAIN}")).await,
        app.token_for(&format!("unitua@{DOMAIN}")).await,
        app.token_for(&format!("paa@{DOMAIN}")).await,
    );
    for id in [&chief, &agent] {
        assert_eq!(app.delete(&format!("/v1.0/users/{id}")).await.status, StatusCode::NO_CONTENT);
    }
    let restore = |id: &str| format!("/v1.0/directory/deletedItems/{id}/restore");
    for (token, id) in [(&ua, &chief), (&unit_ua, &agent)] {
        let denied = app.as_user(token).post(&restore(id), &json!({})).await;
        assert_graph_error(&denied, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
        let purge = app.as_user(token).delete(&format!("/v1.0/directory/deletedItems/{id}")).await;
        assert_graph_error(&purge, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    }
    let back = app.as_user(&paa).post(&restore(&chief), &json!({})).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.text);
    let roles =
        app.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{chief}'")).await;
    assert_eq!(roles.body["value"], json!([]), "restored without the role: {}", roles.text);
    // A tenant-wide User Administrator restores a former Helpdesk Administrator (Entra's table).
    assert_eq!(app.as_user(&ua).post(&restore(&agent), &json!({})).await.status, StatusCode::OK);

    create(&app, "visitor", json!({"userType": "Guest"})).await;
    let leaver = create(&app, "leaver", json!({})).await;
    assert_eq!(app.delete(&format!("/v1.0/users/{leaver}")).await.status, StatusCode::NO_CONTENT);
    let visitor = app.token_for(&format!("visitor@{DOMAIN}")).await;
    let read = app.as_user(&visitor).get(&format!("/v1.0/directory/deletedItems/{leaver}")).await;
    assert_graph_error(&read, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
}

/// Every documented `GET`, under both versions, with every query option: a `200` must show the
/// option applied; otherwise the option is refused with a `4xx`. Never a `200` that ignored it.
async fn every_query_option_is_applied_or_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = id_of(&app.get("/v1.0/me").await.body);
    let team = group(&app, "team").await;
    add_member(&app, &team, &admin).await;
    let application = app.post("/v1.0/applications", &json!({"displayName": "Walker"})).await;
    let application_id = id_of(&application.body);
    let principal = app
        .get(&format!("/v1.0/servicePrincipals(appId='{}')", application.body["appId"].as_str().unwrap_or_default()))
        .await;
    let unit = app.create_unit("Walk", false, &[&admin]).await;
    let audit = id_of(&app.get("/v1.0/auditLogs/directoryAudits?$top=1").await.body["value"][0]);
    let substitutions = [
        ("/groups/{id}", team.clone()),
        ("/applications/{id}", application_id.clone()),
        ("/servicePrincipals/{id}", id_of(&principal.body)),
        ("/directory/administrativeUnits/{id}", unit.clone()),
        ("/directoryRoles/{id}", keyward_core::authz::roles::GLOBAL_ADMINISTRATOR.to_owned()),
        ("/roleManagement/directory/roleDefinitions/{id}", keyward_core::authz::roles::GLOBAL_ADMINISTRATOR.to_owned()),
        ("/auditLogs/directoryAudits/{id}", audit),
        ("{id}", admin.clone()),
    ];
    let nobody = "00000000-0000-4000-8000-00000000f00d";
    let options: [(&str, String); 9] = [
        ("$select", "id".into()),
        ("$top", "1".into()),
        ("$filter", format!("id eq '{nobody}'")),
        ("$search", "\"displayName:zzqq\"".into()),
        ("$expand", "nosuchrelation".into()),
        ("$count", "true".into()),
        ("$skip", "1".into()),
        ("$orderby", "nosuchproperty".into()),
        ("$skiptoken", "garbage".into()),
    ];
    let doc = app.get("/openapi.json").await.body;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if item.get("get").is_none() || !(path.starts_with("/v1.0/") || path.starts_with("/beta/")) {
            continue;
        }
        let version = if path.starts_with("/beta/") { "/beta" } else { "/v1.0" };
        let mut concrete = path.clone();
        for (pattern, value) in &substitutions {
            if concrete.contains(pattern) {
                let id_part = if pattern.starts_with('{') { "{id}".to_owned() } else { pattern.to_string() };
                let with = id_part.replace("{id}", value);
                concrete = concrete.replace(&id_part, &with);
            }
        }
        if concrete.contains('{') {
            continue;
        }
        let plain = app.get(&concrete).await;
        if plain.status != StatusCode::OK || !plain.body.is_object() {
            continue;
        }
        let is_collection = plain.body["value"].is_array();
        for (name, value) in &options {
            let separator = if concrete.contains('?') { '&' } else { '?' };
            let url = format!("{concrete}{separator}{name}={}", keyward_app::url_encode(value));
            let reply = app
                .send(reqwest::Method::GET, &url, Some(&app.admin_token), None, &[("ConsistencyLevel", "eventual")])
                .await;
            assert!(reply.status.as_u16() < 500, "{url}: {}", reply.text);
            checked += 1;
            if reply.status != StatusCode::OK {
                assert!(reply.status.is_client_error(), "{url}: {}", reply.text);
                continue;
            }
            let items: Vec<Value> = if is_collection {
                reply.body["value"].as_array().cloned().unwrap_or_default()
            } else {
                vec![reply.body.clone()]
            };
            let applied = match *name {
                "$select" => items.iter().all(|it| {
                    it.as_object().is_some_and(|map| map.keys().all(|key| key == "id" || key.starts_with('@')))
                }),
                "$top" => is_collection && items.len() <= 1,
                "$filter" | "$search" => is_collection && items.is_empty(),
                "$count" => reply.body.get("@odata.count").is_some(),
                _ => false,
            };
            let text: String = reply.text.chars().take(400).collect();
            assert!(applied, "{name} was ignored by GET {version}…: {url} answered {text}");
        }
    }
    assert!(checked > 400, "{checked} requests");
}

/// Microsoft's documented bodies for the methods Keyward implements are accepted as written:
/// the phone update repeating its `phoneType`, `resetPassword` without a body, and the SMS
/// sign-in switches (refused with the reason, as Keyward sends no texts).
async fn documented_method_bodies(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = create(&app, "phoned", json!({})).await;
    let plain = create(&app, "plain", json!({})).await;
    let plain_token = app.token_for(&format!("plain@{DOMAIN}")).await;
    let phones = format!("/v1.0/users/{user}/authentication/phoneMethods");
    let mobile = "3179e48a-750b-4051-897c-87b9720928f7";
    let added = app.post(&phones, &json!({"phoneNumber": "+1 2065555555", "phoneType": "mobile"})).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let updated =
        app.patch(&format!("{phones}/{mobile}"), &json!({"phoneNumber": "+1 2065555554", "phoneType": "mobile"})).await;
    assert_eq!(updated.status, StatusCode::NO_CONTENT, "{}", updated.text);
    assert_eq!(app.get(&format!("{phones}/{mobile}")).await.body["phoneNumber"], "+1 2065555554");
    let retyped =
        app.patch(&format!("{phones}/{mobile}"), &json!({"phoneNumber": "+1 2065555553", "phoneType": "office"})).await;
    assert_graph_error(&retyped, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_eq!(app.get(&format!("{phones}/{mobile}")).await.body["phoneNumber"], "+1 2065555554", "unchanged");

    let reset = app
        .send(
            reqwest::Method::POST,
            &format!("/v1.0/users/{user}/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword"),
            Some(&app.admin_token),
            None,
            &[],
        )
        .await;
    assert_eq!(reset.status, StatusCode::ACCEPTED, "{}", reset.text);
    assert!(reset.body["newPassword"].as_str().is_some_and(|it| it.len() >= 8), "a generated password");

    let enable = app.post(&format!("{phones}/{mobile}/enableSmsSignIn"), &json!({})).await;
    assert_graph_error(&enable, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(enable.text.contains("text messages"), "{}", enable.text);
    let disable = app.post(&format!("{phones}/{mobile}/disableSmsSignIn"), &json!({})).await;
    assert_eq!(disable.status, StatusCode::NO_CONTENT, "{}", disable.text);
    let denied = app.as_user(&plain_token).post(&format!("{phones}/{mobile}/disableSmsSignIn"), &json!({})).await;
    assert_graph_error(&denied, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let none = app
        .post(&format!("/v1.0/users/{plain}/authentication/phoneMethods/{mobile}/disableSmsSignIn"), &json!({}))
        .await;
    assert_graph_error(&none, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
}

/// Adding members to a role-assignable group with `PATCH … members@odata.bind` while the group is
/// deleted: both take the tenant's role-change lock before the group's row, so they run one after
/// the other (PostgreSQL would otherwise find a deadlock and fail one with 500). Each round
/// either adds the members and then deletes the group, or deletes it and answers the patch 404.
async fn a_group_patched_while_deleted_takes_locks_in_one_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let member = create(&app, "joiner", json!({})).await;
    let base = "https://graph.microsoft.com/v1.0";
    for round in 0..12 {
        let created = app
            .post(
                "/v1.0/groups",
                &json!({"displayName": format!("Tier {round}"), "mailEnabled": false, "mailNickname": format!("tier{round}"),
                    "securityEnabled": true, "isAssignableToRole": true}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let group = id_of(&created.body);
        let path = format!("/v1.0/groups/{group}");
        let body = json!({"description": "busy", "members@odata.bind": [format!("{base}/users/{member}")]});
        let (patched, deleted) = tokio::join!(app.patch(&path, &body), app.delete(&path));
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "round {round}: {}", deleted.text);
        assert!(
            [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND].contains(&patched.status),
            "round {round}: {} {}",
            patched.status,
            patched.text
        );
    }
}

/// The activities of the refusals recorded with `target` among their targets.
async fn failures(app: &TestApp, target: &str) -> Vec<String> {
    let records = app.audit_for(target).await.into_iter();
    records
        .filter(|it| it.result == keyward_core::audit::AuditResult::Failure)
        .map(|it| it.activity_display_name)
        .collect()
}

/// Restoring or removing a deleted item is refused before the lookup only when nothing could
/// allow it: a role that may restore some kind of item is decided on the item (so it reads 404
/// for an id that names nothing), and a token whose permissions cover no restore is refused alike
/// for every id, each refusal of a real item recorded.
async fn deleted_item_refusals_before_and_after_the_lookup(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let gone = create(&app, "gone", json!({})).await;
    let crew = group(&app, "crew").await;
    for path in [format!("/v1.0/users/{gone}"), format!("/v1.0/groups/{crew}")] {
        assert_eq!(app.delete(&path).await.status, StatusCode::NO_CONTENT, "{path}");
    }
    let nothing = "7e1b6c1c-5d0e-4c4a-9a55-0f1f2e3d4c5b";
    let restore = |id: &str| format!("/v1.0/directory/deletedItems/{id}/restore");

    // A Groups Administrator may restore groups, not users: decided on each item.
    let groups_admin = create(&app, "ga", json!({})).await;
    app.assign_role(&groups_admin, keyward_core::authz::roles::GROUPS_ADMINISTRATOR, "/").await;
    let groups_admin = app.token_for(&format!("ga@{DOMAIN}")).await;
    let on_user = app.as_user(&groups_admin).post(&restore(&gone), &json!({})).await;
    assert_graph_error(&on_user, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert!(on_user.text.contains("microsoft.directory/users/restore"), "{}", on_user.text);
    assert_graph_error(
        &app.as_user(&groups_admin).post(&restore(nothing), &json!({})).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    assert_eq!(failures(&app, &gone).await, ["Restore user"]);

    // A Global Administrator whose token carries only User.Read: refused before the lookup, in
    // the token's words, the same for both ids; the real one's refusal recorded.
    let (_, _) = crate::methods::user(&app, "global", Some(keyward_core::authz::roles::GLOBAL_ADMINISTRATOR)).await;
    let narrow = crate::methods::token_with_mfa_scope(&app, &format!("global@{DOMAIN}"), "openid User.Read").await;
    let mut messages = Vec::new();
    for id in [gone.as_str(), nothing] {
        let reply = app.as_user(&narrow).post(&restore(id), &json!({})).await;
        assert_graph_error(&reply, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
        assert!(reply.text.contains("token-scope"), "{}", reply.text);
        messages.push(reply.body["error"]["message"].clone());
    }
    assert_eq!(messages[0], messages[1]);
    // Nor may that token read either id: User.Read reads the signed-in user only.
    for id in [gone.as_str(), nothing] {
        let reply = app.as_user(&narrow).get(&format!("/v1.0/directory/deletedItems/{id}")).await;
        assert_graph_error(&reply, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    }
    let mut recorded = failures(&app, &gone).await;
    recorded.sort();
    assert_eq!(recorded, ["Restore user", "Restore user"]);

    // Both items are still there to restore, by the Groups Administrator and the administrator.
    let group_back = app.as_user(&groups_admin).post(&restore(&crew), &json!({})).await;
    assert_eq!(group_back.status, StatusCode::OK, "{}", group_back.text);
    let user_back = app.post(&restore(&gone), &json!({})).await;
    assert_eq!(user_back.status, StatusCode::OK, "{}", user_back.text);
}

/// `GET /users/{id}` reads the user with its caller (on PostgreSQL in one statement): by id, by
/// user principal name in any case, the caller themself, each with their multi-valued properties
/// (read apart); a user who is not there, or was deleted, is 404; and whatever the other user is
/// (or whatever the key holds), a caller who may no longer act is refused first, as is one whose
/// token names no user.
async fn one_user_read_with_its_caller(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reader = create(&app, "reader", json!({"otherMails": ["reader@backup.test"]})).await;
    let target =
        create(&app, "target", json!({"otherMails": ["target@backup.test"], "businessPhones": ["+1 425 555 0109"]}))
            .await;
    let plain = create(&app, "plain", json!({})).await;
    let leaver = create(&app, "leaver", json!({})).await;
    assert_eq!(app.delete(&format!("/v1.0/users/{leaver}")).await.status, StatusCode::NO_CONTENT);
    let token = app.token_for(&format!("reader@{DOMAIN}")).await;
    let as_reader = app.as_user(&token);
    let select = "?$select=id,userPrincipalName,otherMails,businessPhones";
    for (key, id, mails) in [
        (target.clone(), &target, json!(["target@backup.test"])),
        (format!("TARGET@{}", DOMAIN.to_uppercase()), &target, json!(["target@backup.test"])),
        (reader.clone(), &reader, json!(["reader@backup.test"])),
        (format!("reader@{DOMAIN}"), &reader, json!(["reader@backup.test"])),
        (plain.clone(), &plain, json!([])),
    ] {
        let read = as_reader.get(&format!("/v1.0/users/{key}{select}")).await;
        assert_eq!(read.status, StatusCode::OK, "{key}: {}", read.text);
        assert_eq!(&id_of(&read.body), id, "{key}");
        assert_eq!(read.body["otherMails"], mails, "{key}");
    }
    let phones = as_reader.get(&format!("/v1.0/users/{target}{select}")).await;
    assert_eq!(phones.body["businessPhones"], json!(["+1 425 555 0109"]));
    for missing in [leaver.clone(), "00000000-0000-4000-8000-000000000001".to_owned(), format!("nobody@{DOMAIN}")] {
        let reply = as_reader.get(&format!("/v1.0/users/{missing}")).await;
        assert_graph_error(&reply, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    }
    // A key that does not decode to text is a bad request, once the caller is known.
    assert_eq!(as_reader.get("/v1.0/users/no%FFbody").await.status, StatusCode::BAD_REQUEST);
    // The reader disabled: refused whoever they ask for, there or not.
    let disabled = app.patch(&format!("/v1.0/users/{reader}"), &json!({"accountEnabled": false})).await;
    assert_eq!(disabled.status, StatusCode::NO_CONTENT, "{}", disabled.text);
    // A key no database takes as text (a NUL) is the caller's 401 too, not the key's 400.
    for key in
        [target.clone(), reader.clone(), format!("nobody@{DOMAIN}"), "no%00body".to_owned(), "no%FFbody".to_owned()]
    {
        let reply = as_reader.get(&format!("/v1.0/users/{key}")).await;
        assert_graph_error(&reply, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    }
    // A token whose user was deleted names nobody: 401, even for a user who is there.
    let plain_token = app.token_for(&format!("plain@{DOMAIN}")).await;
    assert_eq!(app.delete(&format!("/v1.0/users/{plain}")).await.status, StatusCode::NO_CONTENT);
    let reply = app.as_user(&plain_token).get(&format!("/v1.0/users/{target}")).await;
    assert_graph_error(&reply, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
}

keyward_testkit::on_both_backends!(
    a_group_patched_while_deleted_takes_locks_in_one_order,
    user_profile_properties,
    manager_and_direct_reports,
    memberships_and_member_functions,
    alternate_keys,
    group_created_with_members_and_owners,
    deleted_items_and_restore,
    deleted_groups_and_restore,
    relationship_counts,
    application_unique_name_upsert,
    concurrent_directory_changes,
    guests_have_limited_access,
    deleted_item_refusals_before_and_after_the_lookup,
    deleted_items_keep_restricted_units,
    deleted_former_administrators_stay_protected,
    every_query_option_is_applied_or_refused,
    documented_method_bodies,
    one_user_read_with_its_caller,
);
