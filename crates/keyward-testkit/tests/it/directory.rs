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

keyward_testkit::on_both_backends!(user_profile_properties);
