//! The authentication-method API through HTTP on both backends: the seed's service-desk story
//! (a Privileged Authentication Administrator acting on a Global Administrator, an
//! Authentication Administrator refused there but allowed on a regular user), Temporary Access
//! Passes, resetPassword, software OATH methods, and their audit records.

use keyward_core::authz::roles;
use keyward_testkit::browser::Browser;
use keyward_testkit::{Backend, DOMAIN, TestApp, assert_graph_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "Tq7-harbour-Lantern-92!";

/// Authenticator secrets registered by [`token_with_mfa_scope`], by server and UPN (tests run
/// at once in one process, each with its own server).
static SECRETS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>> =
    std::sync::LazyLock::new(Default::default);

pub(crate) async fn user(app: &TestApp, alias: &str, role: Option<&str>) -> (String, String) {
    let body = app.create_user(alias, &format!("{alias} Desk")).await;
    let id = body["id"].as_str().expect("id").to_owned();
    if let Some(role) = role {
        app.assign_role(&id, role, "/").await;
    }
    (id, app.token_for(&format!("{alias}@{DOMAIN}")).await)
}

/// An access token from the OpenID Connect provider, after signing in through the pages with a
/// password and a newly registered authenticator app (the user holds a privileged role, so MFA
/// is required): the way the seed's service desk signs in.
pub(crate) async fn token_with_mfa(app: &TestApp, upn: &str) -> String {
    token_with_mfa_scope(app, upn, "openid https://graph.microsoft.com/.default").await
}

/// Like [`token_with_mfa`] with another scope; registers the authenticator at the first sign-in
/// and uses it after.
pub(crate) async fn token_with_mfa_scope(app: &TestApp, upn: &str, scope: &str) -> String {
    use keyward_testkit::cli_flow::{REDIRECT, VERIFIER, authorize_path};
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(&authorize_path(scope)).await;
    let page = browser.submit(&page, "username", &[("username", upn)], &[]).await;
    let page = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    let done = if page.title() == "More information required" {
        let page = browser.submit(&page, "more_info", &[], &[]).await;
        let secret = keyward_core::totp::base32_decode(&page.by_id("secret").expect("secret")).expect("base32");
        SECRETS.lock().expect("secrets").insert(format!("{}|{upn}", app.base_url), secret.clone());
        let code =
            keyward_core::totp::code_at_step(&secret, keyward_core::totp::step_at(app.app.now().unix_timestamp()));
        browser.submit(&page, "register_totp", &[("one-time-code", &code)], &[]).await
    } else {
        assert_eq!(page.title(), "Enter code", "{}", page.text());
        let secret = SECRETS
            .lock()
            .expect("secrets")
            .get(&format!("{}|{upn}", app.base_url))
            .cloned()
            .expect("registered before");
        // The next time step: the one at registration is spent.
        let code =
            keyward_core::totp::code_at_step(&secret, keyward_core::totp::step_at(app.app.now().unix_timestamp()) + 1);
        browser.submit(&page, "mfa", &[("one-time-code", &code)], &[]).await
    };
    assert!(done.path.contains('?'), "a redirect with a code, not '{}': {}", done.title(), done.text());
    let tokens = app.redeem_code(&done.path, REDIRECT, VERIFIER).await;
    tokens["access_token"].as_str().expect("access token").to_owned()
}

async fn service_desk_story(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, _) = user(&app, "desk", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    // The service desk signs in with MFA through the OpenID Connect provider.
    let desk = token_with_mfa(&app, &format!("desk@{DOMAIN}")).await;
    let amr = {
        use base64::Engine;
        let payload = desk.split('.').nth(1).expect("payload");
        let claims: Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("b64"))
                .expect("json");
        claims["amr"].clone()
    };
    assert!(amr.as_array().is_some_and(|it| it.contains(&json!("mfa"))), "{amr}");
    let (_, helpdesk) = user(&app, "helpdesk", Some(roles::AUTHENTICATION_ADMINISTRATOR)).await;
    let (grace, _) = user(&app, "grace", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let (adele, adele_token) = user(&app, "adele", None).await;

    // Find the Global Administrator by name, as the seed's service desk does.
    let found = app.as_user(&desk).get("/v1.0/users?$filter=startswith(displayName,'grace')").await;
    assert_eq!(found.body["value"][0]["id"], json!(grace), "{}", found.text);

    // A pass for a Global Administrator: the Privileged Authentication Administrator may.
    let taps = |id: &str| format!("/v1.0/users/{id}/authentication/temporaryAccessPassMethods");
    let created =
        app.as_user(&desk).post(&taps(&grace), &json!({"lifetimeInMinutes": 120, "isUsableOnce": true})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["@odata.type"], "#microsoft.graph.temporaryAccessPassAuthenticationMethod");
    let pass = created.body["temporaryAccessPass"].as_str().expect("the pass, once").to_owned();
    assert_eq!(pass.len(), 8);
    assert_eq!(
        (created.body["isUsable"].clone(), created.body["methodUsabilityReason"].clone()),
        (json!(true), json!("EnabledByPolicy"))
    );
    assert_eq!(created.body["lifetimeInMinutes"], json!(120));
    let listed = app.as_user(&desk).get(&taps(&grace)).await;
    assert_eq!(listed.body["value"][0]["temporaryAccessPass"], Value::Null, "never shown again");
    assert!(!listed.text.contains(&pass));
    // A new pass replaces the old one.
    let second = app.as_user(&desk).post(&taps(&grace), &json!({})).await;
    assert_eq!(second.status, StatusCode::CREATED);
    let listed = app.as_user(&desk).get(&taps(&grace)).await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed.body["value"][0]["id"], second.body["id"]);

    // The Authentication Administrator is refused for the Global Administrator, allowed for Adele.
    let refused = app.as_user(&helpdesk).post(&taps(&grace), &json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(refused.body["error"]["code"], "Authorization_RequestDenied");
    let allowed = app.as_user(&helpdesk).post(&taps(&adele), &json!({})).await;
    assert_eq!(allowed.status, StatusCode::CREATED, "{}", allowed.text);
    let reregister = |id: &str| format!("/v1.0/users/{id}/authentication/requireMfaReregistration");
    assert_eq!(app.as_user(&helpdesk).action(&reregister(&grace)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.as_user(&helpdesk).action(&reregister(&adele)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.as_user(&desk).action(&reregister(&grace)).await.status, StatusCode::NO_CONTENT);
    let revoke = format!("/v1.0/users/{grace}/authentication/revokeMfaSessions");
    assert_eq!(app.as_user(&desk).action(&revoke).await.status, StatusCode::NO_CONTENT);
    // Not for oneself, and not beyond the policy.
    let desk_id = app.as_user(&desk).get("/v1.0/me").await.body["id"].as_str().expect("id").to_owned();
    assert_eq!(app.as_user(&desk).post(&taps(&desk_id), &json!({})).await.status, StatusCode::FORBIDDEN);
    let too_long = app.as_user(&desk).post(&taps(&adele), &json!({"lifetimeInMinutes": 481})).await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST, "{}", too_long.text);
    // Adele may not read another user's methods; a Global Reader may.
    assert_eq!(
        app.as_user(&adele_token).get(&format!("/v1.0/users/{grace}/authentication/methods")).await.status,
        StatusCode::FORBIDDEN
    );
    let (_, reader) = user(&app, "reader", Some(roles::GLOBAL_READER)).await;
    let methods = app.as_user(&reader).get(&format!("/v1.0/users/{adele}/authentication/methods")).await;
    assert_eq!(methods.status, StatusCode::OK, "{}", methods.text);
    let types: Vec<&str> =
        methods.body["value"].as_array().expect("value").iter().filter_map(|it| it["@odata.type"].as_str()).collect();
    assert_eq!(
        types,
        ["#microsoft.graph.passwordAuthenticationMethod", "#microsoft.graph.temporaryAccessPassAuthenticationMethod"]
    );
    let mine = app.as_user(&adele_token).get("/v1.0/me/authentication/methods").await;
    assert_eq!(mine.status, StatusCode::OK, "oneself: {}", mine.text);

    // The pass signs Grace in (and counts as MFA).
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    let page = browser.submit(&page, "username", &[("username", &format!("grace@{DOMAIN}"))], &[]).await;
    let page = browser
        .submit(
            &page,
            "password",
            &[("current-password", second.body["temporaryAccessPass"].as_str().expect("pass"))],
            &[],
        )
        .await;
    assert_eq!(
        page.title(),
        "More information required",
        "a Global Administrator without a method registers one: {}",
        page.text()
    );
    // Deleting a pass; a second delete is 404.
    let tap_id = second.body["id"].as_str().expect("id");
    assert_eq!(app.as_user(&desk).delete(&format!("{}/{tap_id}", taps(&grace))).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.as_user(&desk).delete(&format!("{}/{tap_id}", taps(&grace))).await.status, StatusCode::NOT_FOUND);

    // The audit trail: who did what to whom, with Entra's strings, and never the pass.
    let audit = app
        .get(&format!("/v1.0/auditLogs/directoryAudits?$filter=targetResources/any(t:t/id eq '{grace}')&$top=50"))
        .await;
    assert!(!audit.text.contains(&pass));
    let records = audit.body["value"].as_array().expect("value");
    let find = |activity: &str, result: &str| {
        records.iter().find(|it| it["activityDisplayName"] == json!(activity) && it["result"] == json!(result)).cloned()
    };
    let registered = find("Admin registered security info", "success").expect("registered");
    assert_eq!(registered["loggedByService"], "Authentication Methods");
    assert_eq!(registered["category"], "UserManagement");
    assert_eq!(registered["resultReason"], "Admin registered temporary access pass method for user");
    assert_eq!(registered["initiatedBy"]["user"]["userPrincipalName"], json!(format!("desk@{DOMAIN}")));
    let names: Vec<&str> = registered["targetResources"][0]["modifiedProperties"]
        .as_array()
        .expect("props")
        .iter()
        .filter_map(|it| it["displayName"].as_str())
        .collect();
    assert!(names.contains(&"TemporaryAccessPass.AccessPassUsage"), "{names:?}");
    assert!(find("Admin registered security info", "failure").is_some(), "the refused attempt is recorded");
    assert!(find("Admin deleted security info", "success").is_some());
    let update = records
        .iter()
        .find(|it| {
            it["activityDisplayName"] == json!("Update user") && it.to_string().contains("StrongAuthenticationMethod")
        })
        .expect("re-registration record");
    assert_eq!(update["initiatedBy"]["user"]["userPrincipalName"], json!(format!("desk@{DOMAIN}")));
}

async fn reset_password_and_oath_methods(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (desk_id, desk) = user(&app, "desk", Some(roles::AUTHENTICATION_ADMINISTRATOR)).await;
    let (adele, _) = user(&app, "adele", None).await;
    let reset = |id: &str| {
        format!("/v1.0/users/{id}/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword")
    };

    let adele_token = app.token_for(&format!("adele@{DOMAIN}")).await;
    app.clock.advance(time::Duration::seconds(1));
    let generated = app.as_user(&desk).post(&reset(&adele), &json!({})).await;
    assert_eq!(generated.status, StatusCode::ACCEPTED, "{}", generated.text);
    let new_password = generated.body["newPassword"].as_str().expect("generated password").to_owned();
    let location = generated.headers.get("location").and_then(|it| it.to_str().ok()).expect("Location").to_owned();
    assert!(location.contains(&format!("/users/{adele}/authentication/operations/")), "{location}");
    app.clock.advance(time::Duration::seconds(1));
    assert_eq!(
        app.as_user(&adele_token).get("/v1.0/me").await.status,
        StatusCode::UNAUTHORIZED,
        "a reset ends the old tokens"
    );
    let operation = app.as_user(&desk).get(&location).await;
    assert_eq!(operation.body["status"], "succeeded", "{}", operation.text);
    // The user signs in with it and must change it.
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    let page = browser.submit(&page, "username", &[("username", &format!("adele@{DOMAIN}"))], &[]).await;
    let page = browser.submit(&page, "password", &[("current-password", &new_password)], &[]).await;
    assert_eq!(page.title(), "Update your password", "{}", page.text());

    let chosen = app.as_user(&desk).post(&reset(&adele), &json!({"newPassword": "Orchard-Velvet-Compass-31"})).await;
    assert_eq!(chosen.status, StatusCode::ACCEPTED);
    assert!(chosen.body.get("newPassword").is_none(), "{}", chosen.text);
    let weak = app.as_user(&desk).post(&reset(&adele), &json!({"newPassword": "password"})).await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.as_user(&desk).post(&reset(&desk_id), &json!({})).await.status,
        StatusCode::FORBIDDEN,
        "not on one's own account"
    );
    let passwords = app.as_user(&desk).get(&format!("/v1.0/users/{adele}/authentication/passwordMethods")).await;
    assert_eq!(passwords.body["value"][0]["id"], "28c10230-6103-485e-b985-444c60001490");
    assert_eq!(passwords.body["value"][0]["password"], Value::Null);
    let audit = app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter=targetResources/any(t:t/id eq '{adele}') and activityDisplayName eq 'Reset password (by admin)'")).await;
    assert_eq!(audit.body["value"].as_array().map(Vec::len), Some(2), "{}", audit.text);
    assert!(!audit.text.contains(&new_password));

    // Software OATH methods: list, get, delete (an authenticator registered through the pages).
    app.set_security_defaults(true).await;
    let (megan, _) = user(&app, "megan", None).await;
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    let page = browser.submit(&page, "username", &[("username", &format!("megan@{DOMAIN}"))], &[]).await;
    let page = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    let page = browser.submit(&page, "more_info", &[], &[]).await;
    let secret = keyward_core::totp::base32_decode(&page.by_id("secret").expect("secret")).expect("base32");
    let code = keyward_core::totp::code_at_step(&secret, keyward_core::totp::step_at(app.app.now().unix_timestamp()));
    let page = browser.submit(&page, "register_totp", &[("one-time-code", &code)], &[]).await;
    assert_eq!(page.title(), "My account");
    let oath = format!("/v1.0/users/{megan}/authentication/softwareOathMethods");
    let listed = app.as_user(&desk).get(&oath).await;
    assert_eq!(listed.body["value"][0]["@odata.type"], "#microsoft.graph.softwareOathAuthenticationMethod");
    assert_eq!(listed.body["value"][0]["secretKey"], Value::Null);
    let id = listed.body["value"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(app.as_user(&desk).get(&format!("{oath}/{id}")).await.status, StatusCode::OK);
    assert_eq!(app.as_user(&desk).delete(&format!("{oath}/{id}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.as_user(&desk).get(&oath).await.body["value"].as_array().map(Vec::len), Some(0));
}

async fn phone_and_email_methods(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, desk) = user(&app, "desk", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let (_, helpdesk) = user(&app, "helpdesk", Some(roles::AUTHENTICATION_ADMINISTRATOR)).await;
    let (adele, _) = user(&app, "adele", None).await;
    let phones = format!("/v1.0/users/{adele}/authentication/phoneMethods");
    const MOBILE: &str = "3179e48a-750b-4051-897c-87b9720928f7";
    const ALTERNATE: &str = "b6332ec1-7057-4abe-9331-3d72feddfe41";

    let alternate_first = app
        .as_user(&desk)
        .post(&phones, &json!({"phoneNumber": "+1 2065555566", "phoneType": "alternateMobile"}))
        .await;
    assert_eq!(alternate_first.status, StatusCode::BAD_REQUEST, "an alternate mobile needs a mobile");
    let bad_number =
        app.as_user(&desk).post(&phones, &json!({"phoneNumber": "206-555-5555", "phoneType": "mobile"})).await;
    assert_eq!(bad_number.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_number.body["error"]["message"].as_str().is_some_and(|it| it.contains("+{country code}")),
        "{}",
        bad_number.text
    );
    let mobile =
        app.as_user(&desk).post(&phones, &json!({"phoneNumber": "+1 2065555512", "phoneType": "mobile"})).await;
    assert_eq!(mobile.status, StatusCode::CREATED, "{}", mobile.text);
    assert_eq!((mobile.body["id"].clone(), mobile.body["phoneType"].clone()), (json!(MOBILE), json!("mobile")));
    let again = app.as_user(&desk).post(&phones, &json!({"phoneNumber": "+1 2065555599", "phoneType": "mobile"})).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "one phone per type");
    let alternate = app
        .as_user(&desk)
        .post(&phones, &json!({"phoneNumber": "+44 2071234567", "phoneType": "alternateMobile"}))
        .await;
    assert_eq!(alternate.status, StatusCode::CREATED);
    assert_eq!(alternate.body["id"], json!(ALTERNATE));
    // The Privileged Authentication Administrator reads the numbers; the Authentication
    // Administrator (restrictedRead) sees them masked.
    let full = app.as_user(&desk).get(&phones).await;
    assert_eq!(full.body["value"][0]["phoneNumber"], "+1 2065555512", "{}", full.text);
    let masked = app.as_user(&helpdesk).get(&phones).await;
    assert_eq!(masked.body["value"][0]["phoneNumber"], "+1 XXXXXXXX12", "{}", masked.text);
    assert!(!masked.text.contains("2065555512"));
    let changed =
        app.as_user(&desk).patch(&format!("{phones}/{MOBILE}"), &json!({"phoneNumber": "+1 4255550100"})).await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text);
    let retype = app
        .as_user(&desk)
        .patch(&format!("{phones}/{MOBILE}"), &json!({"phoneType": "office", "phoneNumber": "+1 4255550100"}))
        .await;
    assert_eq!(retype.status, StatusCode::BAD_REQUEST, "phoneType cannot change");
    assert_eq!(
        app.as_user(&desk).delete(&format!("{phones}/{MOBILE}")).await.status,
        StatusCode::BAD_REQUEST,
        "not the mobile while an alternate exists"
    );

    let emails = format!("/v1.0/users/{adele}/authentication/emailMethods");
    let email = app.as_user(&desk).post(&emails, &json!({"emailAddress": "adele@home.example"})).await;
    assert_eq!(email.status, StatusCode::CREATED, "{}", email.text);
    assert_eq!(email.body["id"], "3ddfcfc8-9383-446f-83cc-3ab9be4be18f");
    assert_eq!(
        app.as_user(&desk).post(&emails, &json!({"emailAddress": "b@home.example"})).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.as_user(&desk).post(&emails, &json!({"emailAddress": "not an address"})).await.status,
        StatusCode::BAD_REQUEST
    );

    let all = app.as_user(&desk).get(&format!("/v1.0/users/{adele}/authentication/methods")).await;
    let types: Vec<&str> =
        all.body["value"].as_array().expect("value").iter().filter_map(|it| it["@odata.type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "#microsoft.graph.passwordAuthenticationMethod",
            "#microsoft.graph.phoneAuthenticationMethod",
            "#microsoft.graph.phoneAuthenticationMethod",
            "#microsoft.graph.emailAuthenticationMethod"
        ]
    );
    let fido = app.as_user(&desk).get(&format!("/v1.0/users/{adele}/authentication/fido2Methods")).await;
    assert_eq!(fido.body["value"], json!([]));

    // Re-registration deletes the phones; the email method and the password stay.
    let reply =
        app.as_user(&desk).action(&format!("/v1.0/users/{adele}/authentication/requireMfaReregistration")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(app.as_user(&desk).get(&phones).await.body["value"], json!([]));
    assert_eq!(app.as_user(&desk).get(&emails).await.body["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        app.as_user(&desk).delete(&format!("{emails}/3ddfcfc8-9383-446f-83cc-3ab9be4be18f")).await.status,
        StatusCode::NO_CONTENT
    );
    let audit = app
        .get(&format!("/v1.0/auditLogs/directoryAudits?$filter=targetResources/any(t:t/id eq '{adele}')&$top=50"))
        .await;
    for reason in [
        "Admin registered phone method for user",
        "Admin updated phone method for user",
        "Admin registered email method for user",
        "Admin deleted email method for user",
    ] {
        assert!(audit.text.contains(reason), "{reason}");
    }
    assert!(
        !audit.text.contains("2065555512") && !audit.text.contains("adele@home.example"),
        "no numbers or addresses in audit values"
    );
    // The re-registration record names each phone it deleted, in type order.
    let removed = audit.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .flat_map(|it| it["targetResources"][0]["modifiedProperties"].as_array().cloned().unwrap_or_default())
        .find(|it| it["displayName"] == "StrongAuthenticationMethod")
        .expect("re-registration record");
    assert_eq!(
        (removed["oldValue"].as_str(), removed["newValue"].as_str()),
        (Some(r#"[{"MethodType":"TwoWayVoiceAlternateMobile"},{"MethodType":"OneWaySMS"}]"#), Some("[]")),
        "{removed}"
    );
}

async fn self_service_needs_recent_mfa(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.set_security_defaults(true).await;
    let (_, script_token) = user(&app, "selfie", None).await;
    let fresh = token_with_mfa(&app, &format!("selfie@{DOMAIN}")).await;
    let phones = "/v1.0/me/authentication/phoneMethods";
    let body = json!({"phoneNumber": "+1 2065550123", "phoneType": "mobile"});
    // A token without a recent MFA sign-in (here one from `keyward token`) may read, not change.
    assert_eq!(app.as_user(&script_token).get(phones).await.status, StatusCode::OK);
    let refused = app.as_user(&script_token).post(phones, &body.clone()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(refused.body["error"]["message"].as_str().is_some_and(|it| it.contains("10 minutes")), "{}", refused.text);
    let added = app.as_user(&fresh).post(phones, &body.clone()).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    // A token without a security-info permission (only User.Read) may not change it, even right
    // after an MFA sign-in.
    let narrow = token_with_mfa_scope(&app, &format!("selfie@{DOMAIN}"), "openid User.Read").await;
    let denied =
        app.as_user(&narrow).post(phones, &json!({"phoneNumber": "+1 2065550199", "phoneType": "office"})).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.text);
    let mine = app.as_user(&fresh).get("/v1.0/me/authentication/softwareOathMethods").await;
    let oath_id = mine.body["value"][0]["id"].as_str().expect("the authenticator registered at sign-in").to_owned();
    // Eleven minutes later the same token may no longer change security info.
    app.clock.advance(time::Duration::minutes(11));
    let late = app.as_user(&fresh).delete(&format!("/v1.0/me/authentication/softwareOathMethods/{oath_id}")).await;
    assert_eq!(late.status, StatusCode::FORBIDDEN, "{}", late.text);
    let audit =
        app.get("/v1.0/auditLogs/directoryAudits?$filter=startswith(activityDisplayName,'User ')&$top=50").await;
    let records = audit.body["value"].as_array().expect("value");
    let registered = records
        .iter()
        .find(|it| {
            it["activityDisplayName"] == json!("User registered security info")
                && it["resultReason"] == json!("User registered phone method")
        })
        .expect("self-service record");
    assert_eq!(registered["initiatedBy"]["user"]["userPrincipalName"], json!(format!("selfie@{DOMAIN}")));
    let failures = records.iter().filter(|it| it["result"] == json!("failure")).count();
    assert_eq!(failures, 3, "every refusal is recorded: {}", audit.text);
}

/// Beta's signInPreferences: an administrator's read and change by the method rules, a
/// preferred method that must be registered, the user's own change with recent MFA, audited.
async fn sign_in_preferences(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.set_security_defaults(true).await;
    let (adele, script_token) = user(&app, "adele", None).await;
    // Her authenticator app, registered at her first sign-in while she has no other method (with
    // a phone, a password alone would register nothing).
    token_with_mfa(&app, &format!("adele@{DOMAIN}")).await;
    let path = format!("/beta/users/{adele}/authentication/signInPreferences");
    let initial = app.get(&path).await;
    assert_eq!(initial.status, StatusCode::OK, "{}", initial.text);
    assert_eq!(
        (
            initial.body["userPreferredMethodForSecondaryAuthentication"].clone(),
            initial.body["isSystemPreferredAuthenticationMethodEnabled"].clone()
        ),
        (Value::Null, json!(false))
    );
    assert_graph_error(
        &app.get(&format!("/v1.0/users/{adele}/authentication/signInPreferences")).await,
        StatusCode::BAD_REQUEST,
        "BadRequest",
    );
    // Only a registered method may be preferred.
    let unregistered = app.patch(&path, &json!({"userPreferredMethodForSecondaryAuthentication": "sms"})).await;
    assert_graph_error(&unregistered, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(unregistered.text.contains("mobile phone"), "{}", unregistered.text);
    let phone = app
        .post(
            &format!("/v1.0/users/{adele}/authentication/phoneMethods"),
            &json!({"phoneNumber": "+1 2065550123", "phoneType": "mobile"}),
        )
        .await;
    assert_eq!(phone.status, StatusCode::CREATED, "{}", phone.text);
    let set = app.patch(&path, &json!({"userPreferredMethodForSecondaryAuthentication": "SMS", "isSystemPreferredAuthenticationMethodEnabled": true})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.body["userPreferredMethodForSecondaryAuthentication"], "sms");
    assert_eq!(app.get(&path).await.body["isSystemPreferredAuthenticationMethodEnabled"], true);
    for bad in [
        json!({"userPreferredMethodForSecondaryAuthentication": "carrierPigeon"}),
        json!({"isSystemPreferredAuthenticationMethodEnabled": "yes"}),
        json!({"color": "red"}),
        json!({"userPreferredMethodForSecondaryAuthentication": "push"}),
    ] {
        assert_graph_error(&app.patch(&path, &bad).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    assert_eq!(
        app.get(&path).await.body["userPreferredMethodForSecondaryAuthentication"],
        "sms",
        "refusals change nothing"
    );
    // The phone of the default method stays until the default changes, as in Graph.
    let mobile = format!("/v1.0/users/{adele}/authentication/phoneMethods/3179e48a-750b-4051-897c-87b9720928f7");
    let kept = app.delete(&mobile).await;
    assert_graph_error(&kept, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(kept.text.contains("default"), "{}", kept.text);
    assert_eq!(app.get(&mobile).await.status, StatusCode::OK, "the phone is still there");
    // A plain user may not read or change another's; an Authentication Administrator may not
    // change a Global Administrator's.
    let (_, other) = user(&app, "other", None).await;
    assert_graph_error(&app.as_user(&other).get(&path).await, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let (_, desk) = user(&app, "desk", Some(keyward_core::authz::roles::AUTHENTICATION_ADMINISTRATOR)).await;
    let admin = app.get("/v1.0/me").await.body["id"].as_str().expect("id").to_owned();
    let on_admin = app
        .as_user(&desk)
        .patch(
            &format!("/beta/users/{admin}/authentication/signInPreferences"),
            &json!({"isSystemPreferredAuthenticationMethodEnabled": true}),
        )
        .await;
    assert_graph_error(&on_admin, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let cleared =
        app.as_user(&desk).patch(&path, &json!({"userPreferredMethodForSecondaryAuthentication": null})).await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert_eq!(cleared.body["userPreferredMethodForSecondaryAuthentication"], Value::Null);
    // The user's own: readable with any token, changed only after a recent MFA sign-in.
    let mine = "/beta/me/authentication/signInPreferences";
    assert_eq!(app.as_user(&script_token).get(mine).await.status, StatusCode::OK);
    let stale =
        app.as_user(&script_token).patch(mine, &json!({"userPreferredMethodForSecondaryAuthentication": "oath"})).await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN, "{}", stale.text);
    let fresh = token_with_mfa(&app, &format!("adele@{DOMAIN}")).await;
    let own = app.as_user(&fresh).patch(mine, &json!({"userPreferredMethodForSecondaryAuthentication": "oath"})).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(own.body["userPreferredMethodForSecondaryAuthentication"], "oath");
    let reasons: Vec<String> = app
        .audit_for(&adele)
        .await
        .iter()
        .map(|it| format!("{}|{}", it.activity_display_name, it.result_reason))
        .collect();
    assert!(
        reasons.contains(&"Admin updated security info|Admin updated default sign-in method for user".to_owned()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"User updated security info|User updated default sign-in method".to_owned()),
        "{reasons:?}"
    );
    // A default whose method went another way (the app deleted) reads as none.
    let oath = app.patch(&path, &json!({"userPreferredMethodForSecondaryAuthentication": "oath"})).await;
    assert_eq!(oath.status, StatusCode::OK, "{}", oath.text);
    let apps = app.get(&format!("/v1.0/users/{adele}/authentication/softwareOathMethods")).await;
    let app_id = apps.body["value"][0]["id"].as_str().expect("her app").to_owned();
    let deleted = app.delete(&format!("/v1.0/users/{adele}/authentication/softwareOathMethods/{app_id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(app.get(&path).await.body["userPreferredMethodForSecondaryAuthentication"], Value::Null);
}

/// Graph's authentication-method endpoints row by row: every collection answers on /v1.0 and /beta with its context, an
/// unknown item is Graph's 404, and a caller without a role is refused.
async fn every_collection_of_the_methods_api(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, desk) = user(&app, "desk", Some(roles::AUTHENTICATION_ADMINISTRATOR)).await;
    let (adele, adele_token) = user(&app, "adele", None).await;
    let (megan, _) = user(&app, "megan", None).await;
    let missing = "00000000-0000-4000-8000-000000000000";
    for version in ["v1.0", "beta"] {
        for segment in [
            "methods",
            "passwordMethods",
            "phoneMethods",
            "emailMethods",
            "fido2Methods",
            "softwareOathMethods",
            "microsoftAuthenticatorMethods",
            "temporaryAccessPassMethods",
            "windowsHelloForBusinessMethods",
            "platformCredentialMethods",
        ] {
            let path = format!("/{version}/users/{adele}/authentication/{segment}");
            let listed = app.as_user(&desk).get(&path).await;
            assert_eq!(listed.status, StatusCode::OK, "{path}: {}", listed.text);
            assert!(
                listed.body["@odata.context"]
                    .as_str()
                    .is_some_and(|it| it.ends_with(&format!("/authentication/{segment}"))),
                "{path}: {}",
                listed.text
            );
            assert!(listed.body["value"].is_array());
            let denied =
                app.as_user(&adele_token).get(&format!("/{version}/users/{megan}/authentication/{segment}")).await;
            assert_eq!(denied.status, StatusCode::FORBIDDEN, "{path}");
            if segment != "methods" {
                let item = app.as_user(&desk).get(&format!("{path}/{missing}")).await;
                assert_eq!(item.status, StatusCode::NOT_FOUND, "{path}/{{id}}: {}", item.text);
                assert_eq!(item.body["error"]["code"], "Request_ResourceNotFound");
            }
        }
    }
    let operation = app.as_user(&desk).get(&format!("/v1.0/users/{adele}/authentication/operations/{missing}")).await;
    assert_eq!(operation.status, StatusCode::NOT_FOUND);
    // Deleting a method of a type Keyward does not store is still a delete: refused without the
    // permission, a 404 with it.
    let (_, reader) = user(&app, "reader", Some(roles::GLOBAL_READER)).await;
    let fido = format!("/v1.0/users/{adele}/authentication/fido2Methods/{missing}");
    assert_eq!(app.as_user(&reader).delete(&fido).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.as_user(&desk).delete(&fido).await.status, StatusCode::NOT_FOUND);
    // An administrator changing their own methods through /users/{own id} is doing self-service:
    // without a recent MFA sign-in it is refused.
    let desk_id = app.as_user(&desk).get("/v1.0/me").await.body["id"].as_str().expect("id").to_owned();
    let own = app
        .as_user(&desk)
        .post(
            &format!("/v1.0/users/{desk_id}/authentication/emailMethods"),
            &json!({"emailAddress": "desk@home.example"}),
        )
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.text);
    assert!(own.text.contains("10 minutes"), "{}", own.text);
}

/// Refusals say why: the message (and the audit record's resultReason) names the rule, after
/// Entra's own words.
async fn refusals_say_why(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (desk_id, desk) = user(&app, "helpdesk", Some(roles::AUTHENTICATION_ADMINISTRATOR)).await;
    let (grace, _) = user(&app, "grace", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let taps = |id: &str| format!("/v1.0/users/{id}/authentication/temporaryAccessPassMethods");
    let tiering = app.as_user(&desk).post(&taps(&grace), &json!({})).await;
    assert_eq!(tiering.status, StatusCode::FORBIDDEN, "{}", tiering.text);
    let message = tiering.body["error"]["message"].as_str().expect("message");
    assert!(message.starts_with("Insufficient privileges to complete the operation."), "{message}");
    assert!(
        message.contains("an Authentication Administrator cannot act on a user who holds an admin role"),
        "{message}"
    );
    assert!(message.ends_with("(rule: who-can-reset-passwords)"), "{message}");
    let own = app.as_user(&desk).post(&taps(&desk_id), &json!({})).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.text);
    let message = own.body["error"]["message"].as_str().expect("message");
    assert!(message.contains("creates a Temporary Access Pass for themselves"), "{message}");
    assert!(message.ends_with("(rule: no-admin-action-on-oneself)"), "{message}");
    let audit = app
        .get(&format!(
            "/v1.0/auditLogs/directoryAudits?$filter=initiatedBy/user/id eq '{desk_id}' and result eq 'failure'"
        ))
        .await;
    let reasons: Vec<&str> =
        audit.body["value"].as_array().expect("value").iter().filter_map(|it| it["resultReason"].as_str()).collect();
    assert_eq!(reasons.len(), 2, "{}", audit.text);
    assert!(reasons.iter().any(|it| it.ends_with("(rule: who-can-reset-passwords)")), "{reasons:?}");
    assert!(reasons.iter().any(|it| it.ends_with("(rule: no-admin-action-on-oneself)")), "{reasons:?}");
}

/// One method by id under `authentication/methods/{id}` (any type) and in its own collection on
/// `/me`, and `/me/revokeSignInSessions`, which ends the caller's own sessions and tokens with no
/// role, audited as their own change.
async fn single_methods_and_own_sessions_on_me(backend: Backend) {
    use keyward_core::auth_methods::{EMAIL_METHOD_ID, PASSWORD_METHOD_ID};
    const MOBILE: &str = "3179e48a-750b-4051-897c-87b9720928f7";
    let app = TestApp::spawn(backend).await;
    let (uma, uma_token) = user(&app, "uma", None).await;
    let (_, other_token) = user(&app, "otto", None).await;
    let phone = app
        .post(
            &format!("/v1.0/users/{uma}/authentication/phoneMethods"),
            &json!({"phoneNumber": "+1 2065550161", "phoneType": "mobile"}),
        )
        .await;
    assert_eq!(phone.status, StatusCode::CREATED, "{}", phone.text);

    let by_admin = app.get(&format!("/v1.0/users/{uma}/authentication/methods/{MOBILE}")).await;
    assert_eq!(by_admin.status, StatusCode::OK, "{}", by_admin.text);
    assert_eq!(by_admin.body["@odata.type"], "#microsoft.graph.phoneAuthenticationMethod");
    assert_eq!(by_admin.body["phoneNumber"], "+1 2065550161");
    let password = app.get(&format!("/beta/users/{uma}/authentication/methods/{PASSWORD_METHOD_ID}")).await;
    assert_eq!(password.body["@odata.type"], "#microsoft.graph.passwordAuthenticationMethod", "{}", password.text);
    let missing = app.get(&format!("/v1.0/users/{uma}/authentication/methods/{EMAIL_METHOD_ID}")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    let stranger = app.as_user(&other_token).get(&format!("/v1.0/users/{uma}/authentication/methods/{MOBILE}")).await;
    assert_eq!(stranger.status, StatusCode::FORBIDDEN, "another user may not read them: {}", stranger.text);

    let me = app.as_user(&uma_token);
    for (path, expected) in [
        (format!("/v1.0/me/authentication/methods/{MOBILE}"), StatusCode::OK),
        (format!("/v1.0/me/authentication/phoneMethods/{MOBILE}"), StatusCode::OK),
        (format!("/v1.0/me/authentication/passwordMethods/{PASSWORD_METHOD_ID}"), StatusCode::OK),
        ("/v1.0/me/authentication/temporaryAccessPassMethods".to_owned(), StatusCode::OK),
        ("/v1.0/me/authentication/microsoftAuthenticatorMethods".to_owned(), StatusCode::OK),
        ("/v1.0/me/authentication/windowsHelloForBusinessMethods".to_owned(), StatusCode::OK),
        ("/v1.0/me/authentication/platformCredentialMethods".to_owned(), StatusCode::OK),
        (format!("/v1.0/me/authentication/emailMethods/{EMAIL_METHOD_ID}"), StatusCode::NOT_FOUND),
        (
            "/v1.0/me/authentication/softwareOathMethods/00000000-0000-4000-8000-000000000001".to_owned(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let reply = me.get(&path).await;
        assert_eq!(reply.status, expected, "{path}: {}", reply.text);
    }
    let passwords = me.get("/v1.0/me/authentication/passwordMethods").await;
    assert_eq!(passwords.body["value"].as_array().map(Vec::len), Some(1), "{}", passwords.text);
    assert_eq!(passwords.body["value"][0]["id"], PASSWORD_METHOD_ID);

    // Ending one's own sessions needs no role; the token used for it stops working too (tokens
    // issued at the cut-off's very second still count, so the test clock moves on first).
    app.clock.advance(time::Duration::seconds(1));
    let revoked = me.post("/v1.0/me/revokeSignInSessions", &json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(revoked.body["value"], true);
    assert_eq!(me.get("/v1.0/me").await.status, StatusCode::UNAUTHORIZED);
    let records = app.audit_for(&uma).await;
    let record = records
        .iter()
        .find(|it| it.activity_display_name == "Update StsRefreshTokenValidFrom Timestamp")
        .unwrap_or_else(|| panic!("audited: {records:?}"));
    assert!(
        matches!(&record.initiated_by, keyward_core::audit::Initiator::User { id, .. } if id.as_str() == uma),
        "initiated by the user: {record:?}"
    );
    let unknown_body = app.as_user(&other_token).post("/v1.0/me/revokeSignInSessions", &json!({"x": 1})).await;
    assert_eq!(
        unknown_body.status,
        StatusCode::BAD_REQUEST,
        "a body with parameters is refused: {}",
        unknown_body.text
    );
    // `/users/{own id}` is `/me`: one's own sessions need no role; another's still do.
    let other = app.as_user(&other_token);
    let other_id = other.get("/v1.0/me").await.body["id"].as_str().expect("id").to_owned();
    let someone_else = other.post(&format!("/v1.0/users/{uma}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(someone_else.status, StatusCode::FORBIDDEN, "{}", someone_else.text);
    app.clock.advance(time::Duration::seconds(1));
    let own = other.post(&format!("/v1.0/users/{other_id}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(other.get("/v1.0/me").await.status, StatusCode::UNAUTHORIZED);
    // Beta's older name for it, which the beta PowerShell module still calls.
    let v1 = app.post(&format!("/v1.0/users/{uma}/invalidateAllRefreshTokens"), &json!({})).await;
    assert_graph_error(&v1, StatusCode::BAD_REQUEST, "BadRequest");
    let beta = app.post(&format!("/beta/users/{uma}/invalidateAllRefreshTokens"), &json!({})).await;
    assert_eq!((beta.status, beta.body["value"].clone()), (StatusCode::OK, json!(true)), "{}", beta.text);
    // `PATCH /me` updates the signed-in user as `PATCH /users/{own id}` does.
    let renamed = app.patch("/v1.0/me", &json!({"jobTitle": "Chief of Staff"})).await;
    assert_eq!(renamed.status, StatusCode::NO_CONTENT, "{}", renamed.text);
    assert_eq!(app.get("/v1.0/me").await.body["jobTitle"], "Chief of Staff");
    // A user without a role is decided as `PATCH /users/{own id}` decides them: the same answer
    // by either path, and nothing changed when it is a refusal.
    let pat = app.create_user("pat", "Pat").await;
    let pat_id = pat["id"].as_str().expect("id").to_owned();
    let pat_token = app.token_for(&format!("pat@{DOMAIN}")).await;
    let as_pat = app.as_user(&pat_token);
    let by_me = as_pat.patch("/v1.0/me", &json!({"jobTitle": "Self-promoted"})).await;
    let by_id = as_pat.patch(&format!("/v1.0/users/{pat_id}"), &json!({"jobTitle": "Self-promoted"})).await;
    assert_eq!(by_me.status, by_id.status, "{} / {}", by_me.text, by_id.text);
    assert_graph_error(&by_me, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert_eq!(app.get(&format!("/v1.0/users/{pat_id}?$select=jobTitle")).await.body["jobTitle"], Value::Null);
}

/// `POST /me/changePassword`: any user, with the current password (a wrong one counts toward
/// smart lockout and changes nothing), a new one that meets the policy; the change ends the
/// user's sessions and tokens and is audited as their own.
async fn own_password_change(backend: Backend) {
    const NEW: &str = "Quartz-meadow-Lantern-47!";
    let app = TestApp::spawn(backend).await;
    let (vera, token) = user(&app, "vera", None).await;
    let me = app.as_user(&token);
    let change = |current: &str, new: &str| json!({"currentPassword": current, "newPassword": new});
    for (body, why) in [
        (change("not-it-at-all-1!", NEW), "Invalid currentPassword"),
        (change(PASSWORD, "short"), "password"),
        (change(PASSWORD, PASSWORD), "must differ"),
        (json!({"newPassword": NEW}), "Both currentPassword and newPassword are required"),
        (json!({"currentPassword": PASSWORD, "newPassword": NEW, "extra": 1}), "does not exist"),
    ] {
        let reply = me.post("/v1.0/me/changePassword", &body).await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
        assert!(reply.text.contains(why), "{why}: {}", reply.text);
        assert!(!reply.text.contains(NEW) && !reply.text.contains(PASSWORD), "no password echoed: {}", reply.text);
    }
    assert_eq!(me.get("/v1.0/me").await.status, StatusCode::OK, "nothing changed yet");
    for path in ["/v1.0/me/changePassword", "/v1.0/me/revokeSignInSessions"] {
        let anonymous = app.send(reqwest::Method::POST, path, None, Some(&change(PASSWORD, NEW)), &[]).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{path}: {}", anonymous.text);
    }

    app.clock.advance(time::Duration::seconds(1));
    let changed = me.post("/v1.0/me/changePassword", &change(PASSWORD, NEW)).await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text);
    assert_eq!(me.get("/v1.0/me").await.status, StatusCode::UNAUTHORIZED, "the change ends the user's tokens");
    // The new password signs in; the old one does not.
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    let page = browser.submit(&page, "username", &[("username", &format!("vera@{DOMAIN}"))], &[]).await;
    let old = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    assert_ne!(old.title(), "My account", "{}", old.text());
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    let page = browser.submit(&page, "username", &[("username", &format!("vera@{DOMAIN}"))], &[]).await;
    let new = browser.submit(&page, "password", &[("current-password", NEW)], &[]).await;
    assert_eq!(new.title(), "My account", "{}", new.text());
    let records = app.audit_for(&vera).await;
    assert!(records.iter().any(|it| it.activity_display_name == "Change password (self-service)"), "{records:?}");
    let serialized = serde_json::to_string(
        &app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter=targetResources/any(t:t/id eq '{vera}')"))
            .await
            .body,
    )
    .expect("json");
    assert!(!serialized.contains(NEW) && !serialized.contains(PASSWORD), "no password in the audit log");
}

/// Policy reads and writes want Graph's Policy.* permissions in the token, whatever the role:
/// `User.Read` does not read the methods policy, `Policy.Read.All` reads security defaults for a
/// Security Administrator, and `Directory.ReadWrite.All` changes neither policy.
async fn policies_want_policy_permissions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let methods_policy = "/v1.0/policies/authenticationMethodsPolicy";
    let defaults = "/v1.0/policies/identitySecurityDefaultsEnforcementPolicy";
    user(&app, "reader", Some(roles::GLOBAL_READER)).await;
    user(&app, "secadmin", Some(roles::SECURITY_ADMINISTRATOR)).await;
    let upn = |alias: &str| format!("{alias}@{DOMAIN}");
    let reader = token_with_mfa_scope(&app, &upn("reader"), "openid User.Read").await;
    assert_graph_error(
        &app.as_user(&reader).get(methods_policy).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );
    app.clock.advance(time::Duration::seconds(30)); // a fresh authenticator code
    let reader = token_with_mfa_scope(&app, &upn("reader"), "openid Policy.Read.All").await;
    assert_eq!(app.as_user(&reader).get(methods_policy).await.status, StatusCode::OK);
    let secadmin = token_with_mfa_scope(&app, &upn("secadmin"), "openid Policy.Read.All").await;
    assert_eq!(app.as_user(&secadmin).get(defaults).await.status, StatusCode::OK);
    let on = json!({"isEnabled": true});
    assert_eq!(app.as_user(&secadmin).patch(defaults, &on).await.status, StatusCode::FORBIDDEN, "a read permission");
    app.clock.advance(time::Duration::seconds(30)); // a fresh authenticator code
    let directory = token_with_mfa_scope(&app, &upn("secadmin"), "openid Directory.ReadWrite.All").await;
    assert_eq!(app.as_user(&directory).patch(defaults, &on).await.status, StatusCode::FORBIDDEN);
    app.clock.advance(time::Duration::seconds(30)); // a fresh authenticator code
    let write = token_with_mfa_scope(&app, &upn("secadmin"), "openid Policy.ReadWrite.ConditionalAccess").await;
    assert_eq!(app.as_user(&write).patch(defaults, &on).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(defaults).await.body["isEnabled"], true);
}

/// Granting roles wants `RoleManagement.ReadWrite.Directory` in the token, as Graph does:
/// `Directory.ReadWrite.All` reads roles but neither assigns one nor adds a member to a
/// role-assignable group, whatever the caller's own roles.
async fn role_writes_want_role_management(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "roles", Some(roles::PRIVILEGED_ROLE_ADMINISTRATOR)).await;
    let (target, _) = user(&app, "target", None).await;
    let upn = format!("roles@{DOMAIN}");
    let assignments = "/v1.0/roleManagement/directory/roleAssignments";
    let grant =
        json!({"principalId": target, "roleDefinitionId": roles::GLOBAL_ADMINISTRATOR, "directoryScopeId": "/"});
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Tier 0", "mailEnabled": false, "mailNickname": "tier0", "securityEnabled": true,
                    "isAssignableToRole": true}),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let members = format!("/v1.0/groups/{}/members/$ref", group.body["id"].as_str().expect("id"));
    let member = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{target}")});

    let directory = token_with_mfa_scope(&app, &upn, "openid Directory.ReadWrite.All").await;
    assert_eq!(app.as_user(&directory).get(assignments).await.status, StatusCode::OK, "reading is the directory's");
    let refused = app.as_user(&directory).post(assignments, &grant).await;
    assert_graph_error(&refused, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert_eq!(app.as_user(&directory).post(&members, &member).await.status, StatusCode::FORBIDDEN);
    let held = app.get(&format!("{assignments}?$filter=principalId eq '{target}'")).await;
    assert_eq!(held.body["value"].as_array().map(Vec::len), Some(0), "{}", held.text);

    // Nor does it give an application role management through a grant (Directory.ReadWrite.All
    // manages grants, as in Graph), though it grants other permissions.
    let created = app.post("/v1.0/applications", &json!({"displayName": "Climber"})).await;
    let app_id = created.body["appId"].as_str().expect("appId").to_owned();
    let principal = app.get(&format!("/v1.0/servicePrincipals(appId='{app_id}')")).await;
    assert_eq!(principal.status, StatusCode::OK, "{}", principal.text);
    let grant_for = |scope: &str| {
        json!({"clientId": principal.body["id"], "consentType": "AllPrincipals",
               "resourceId": "00000003-0000-0000-c000-000000000000", "scope": scope})
    };
    let grants = "/v1.0/oauth2PermissionGrants";
    let climb = app.as_user(&directory).post(grants, &grant_for("User.Read RoleManagement.ReadWrite.Directory")).await;
    assert_graph_error(&climb, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let granted = app.as_user(&directory).post(grants, &grant_for("User.Read")).await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);
    let widen = format!("{grants}/{}", granted.body["id"].as_str().expect("id"));
    let widened = app.as_user(&directory).patch(&widen, &json!({"scope": "RoleManagement.ReadWrite.Directory"})).await;
    assert_graph_error(&widened, StatusCode::FORBIDDEN, "Authorization_RequestDenied");

    // Graph's least permissions for each: role management for the assignment, and with
    // GroupMember.ReadWrite.All for a role-assignable group's members.
    app.clock.advance(time::Duration::seconds(30)); // a fresh authenticator code
    let scope = "openid RoleManagement.ReadWrite.Directory GroupMember.ReadWrite.All";
    let granting = token_with_mfa_scope(&app, &upn, scope).await;
    assert_eq!(app.as_user(&granting).post(assignments, &grant).await.status, StatusCode::CREATED);
    assert_eq!(app.as_user(&granting).post(&members, &member).await.status, StatusCode::NO_CONTENT);
}

/// The one-step MFA reset (issue: service-desk safety): re-registration, MFA sessions, sign-in
/// sessions and an optional pass in one transaction, audited per step under one correlation id;
/// all or nothing when a step fails, refused as a whole without every permission, never on
/// oneself.
async fn one_step_mfa_reset(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, desk) = user(&app, "desk", Some(roles::AUTHENTICATION_ADMINISTRATOR)).await;
    let (_, passwords) = user(&app, "passwords", Some(roles::PASSWORD_ADMINISTRATOR)).await;
    let (adele, adele_token) = user(&app, "adele", None).await;
    let reset = format!("/v1.0/users/{adele}/authentication/resetMfa");
    let phones = format!("/v1.0/users/{adele}/authentication/phoneMethods");
    let add_phone = || async {
        let added =
            app.as_user(&desk).post(&phones, &json!({"phoneNumber": "+1 2065555512", "phoneType": "mobile"})).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    };
    add_phone().await;
    app.clock.advance(time::Duration::seconds(2));

    // A step that fails (a pass the policy refuses, made last) leaves everything as it was.
    let failed = app.as_user(&desk).post(&reset, &json!({"temporaryAccessPass": {"lifetimeInMinutes": 100000}})).await;
    assert_graph_error(&failed, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_eq!(app.as_user(&desk).get(&phones).await.body["value"].as_array().map(Vec::len), Some(1), "phone kept");
    assert_eq!(app.as_user(&adele_token).get("/v1.0/me").await.status, StatusCode::OK, "sessions kept");
    assert!(
        app.audit_for(&adele)
            .await
            .iter()
            .all(|it| it.activity_display_name != "Update StsRefreshTokenValidFrom Timestamp")
    );

    // Refused as a whole without one of the permissions (a Password Administrator cannot manage
    // methods), and on one's own account; the refusal is recorded.
    let denied = app.as_user(&passwords).post(&reset, &json!({})).await;
    assert_graph_error(&denied, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert_eq!(app.as_user(&desk).get(&phones).await.body["value"].as_array().map(Vec::len), Some(1));
    let own = app.as_user(&desk).post("/v1.0/me/authentication/resetMfa", &json!({})).await;
    assert!(own.status == StatusCode::NOT_FOUND || own.status == StatusCode::BAD_REQUEST, "no /me form: {}", own.text);
    let desk_id = app.get(&format!("/v1.0/users/desk@{DOMAIN}")).await.body["id"].as_str().expect("id").to_owned();
    let oneself = app.as_user(&desk).post(&format!("/v1.0/users/{desk_id}/authentication/resetMfa"), &json!({})).await;
    assert_graph_error(&oneself, StatusCode::FORBIDDEN, "Authorization_RequestDenied");

    // The whole reset, with a pass.
    let done = app
        .as_user(&desk)
        .post(&reset, &json!({"temporaryAccessPass": {"lifetimeInMinutes": 60, "isUsableOnce": true}}))
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.headers["cache-control"], "no-store");
    let pass = done.body["temporaryAccessPass"]["temporaryAccessPass"].as_str().expect("the pass, once");
    assert!(pass.len() >= 8, "{pass}");
    assert_eq!(done.body["temporaryAccessPass"]["isUsableOnce"], true);
    assert_eq!(app.as_user(&desk).get(&phones).await.body["value"], json!([]), "re-registration required");
    assert_graph_error(
        &app.as_user(&adele_token).get("/v1.0/me").await,
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
    );
    let listed =
        app.as_user(&desk).get(&format!("/v1.0/users/{adele}/authentication/temporaryAccessPassMethods")).await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1), "{}", listed.text);
    assert!(!listed.text.contains(pass), "the pass is shown once");
    let records = app.audit_for(&adele).await;
    let correlation = records
        .iter()
        .find(|it| it.activity_display_name == "Update StsRefreshTokenValidFrom Timestamp")
        .expect("sessions revoked")
        .correlation_id
        .clone();
    let mut steps: Vec<String> = records
        .iter()
        .filter(|it| it.correlation_id == correlation)
        .map(|it| it.activity_display_name.clone())
        .collect();
    steps.sort();
    assert_eq!(
        steps,
        ["Admin registered security info", "Update StsRefreshTokenValidFrom Timestamp", "Update user", "Update user"],
        "one record per step, one correlation id"
    );
    assert!(records.iter().all(|it| !format!("{it:?}").contains(pass)), "the pass never reaches the audit log");

    // Without a pass: no pass made, the rest done again.
    add_phone().await;
    let again = app.as_user(&desk).post(&reset, &json!({})).await;
    assert_eq!(
        (again.status, again.body["temporaryAccessPass"].clone()),
        (StatusCode::OK, Value::Null),
        "{}",
        again.text
    );
    assert_eq!(app.as_user(&desk).get(&phones).await.body["value"], json!([]));
    let unknown = app.as_user(&desk).post(&reset, &json!({"alsoDeleteUser": true})).await;
    assert_graph_error(&unknown, StatusCode::BAD_REQUEST, "Request_BadRequest");
}

/// Per-agent limits (`keywardServiceDeskPolicy`): a service-desk account past its hourly cap is
/// refused and the refusal audited; caps are per agent and per kind, count only committed
/// actions, hold under concurrency, and free up after an hour.
async fn per_agent_limits(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, desk) = user(&app, "desk", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let (_, other_desk) = user(&app, "desk2", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let mut targets = Vec::new();
    for n in 0..10 {
        targets.push(user(&app, &format!("t{n}"), None).await.0);
    }
    let policy = "/v1.0/policies/keywardServiceDeskPolicy";
    let unset = app.get(policy).await;
    assert_eq!(unset.status, StatusCode::OK, "{}", unset.text);
    assert!(unset.body["temporaryAccessPassesPerAgentPerHour"].is_null(), "no limits by default: {}", unset.text);

    // Setting the limits needs the methods policy's permission; bad values change nothing.
    let refused = app.as_user(&desk).patch(policy, &json!({"temporaryAccessPassesPerAgentPerHour": 100})).await;
    assert_graph_error(&refused, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    for bad in [
        json!({"temporaryAccessPassesPerAgentPerHour": 0}),
        json!({"temporaryAccessPassesPerAgentPerHour": "2"}),
        json!({"mfaResetsPerAgentPerHour": 10001}),
        json!({"resetsPerDay": 2}),
        json!([]),
    ] {
        let reply = app.patch(policy, &bad).await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    assert!(app.get(policy).await.body["temporaryAccessPassesPerAgentPerHour"].is_null());
    // Anonymous callers get nothing; a Helpdesk Administrator may not even read the limits.
    for method in [reqwest::Method::GET, reqwest::Method::PATCH] {
        let anonymous = app.send(method, policy, None, Some(&json!({"mfaResetsPerAgentPerHour": 1})), &[]).await;
        assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    }
    let (_, helpdesk) = user(&app, "helper", Some(roles::HELPDESK_ADMINISTRATOR)).await;
    assert_graph_error(&app.as_user(&helpdesk).get(policy).await, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    // Two administrators changing different limits at once both keep their change.
    let (passes, resets) = (json!({"temporaryAccessPassesPerAgentPerHour": 2}), json!({"mfaResetsPerAgentPerHour": 1}));
    let (first, second) = tokio::join!(app.patch(policy, &passes), app.patch(policy, &resets));
    assert_eq!((first.status, second.status), (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT), "{}", second.text);
    let expected = |body: &Value| {
        json!({"@odata.context": body["@odata.context"], "temporaryAccessPassesPerAgentPerHour": 2,
               "passwordResetsPerAgentPerHour": null, "mfaResetsPerAgentPerHour": 1,
               "dualControlEnabled": false, "dualControlGroupId": null, "dualControlRequestLifetimeInMinutes": 60,
               "callerVerificationEnabled": false,
               "callerVerificationOperations": ["temporaryAccessPasses", "passwordResets", "mfaResets",
                                                "privilegedUserMethodChanges"]})
    };
    let now_set = app.get(policy).await.body;
    assert_eq!(now_set, expected(&now_set));
    let set =
        app.patch(policy, &json!({"temporaryAccessPassesPerAgentPerHour": 2, "mfaResetsPerAgentPerHour": 1})).await;
    assert_eq!(set.status, StatusCode::NO_CONTENT, "the same change again is accepted: {}", set.text);
    let again = app.get(policy).await.body;
    assert_eq!(again, expected(&again));

    // MFA resets: one an hour. A one-step reset that fails after being counted (a pass the policy
    // refuses) rolls its counts back with it: the MFA reset's and the pass's.
    let reset_mfa = |target: &str| format!("/v1.0/users/{target}/authentication/resetMfa");
    for _ in 0..2 {
        let failed = app
            .as_user(&desk)
            .post(&reset_mfa(&targets[4]), &json!({"temporaryAccessPass": {"lifetimeInMinutes": 100000}}))
            .await;
        assert_graph_error(&failed, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    let require = app
        .as_user(&desk)
        .post(&format!("/v1.0/users/{}/authentication/requireMfaReregistration", targets[4]), &json!({}))
        .await;
    assert_eq!(require.status, StatusCode::NO_CONTENT, "{}", require.text);
    let over = app.as_user(&desk).post(&reset_mfa(&targets[5]), &json!({})).await;
    assert_graph_error(&over, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert!(over.text.contains("MFA resets"), "{}", over.text);

    let tap = |target: &str| format!("/v1.0/users/{target}/authentication/temporaryAccessPassMethods");
    for target in &targets[..2] {
        let created = app.as_user(&desk).post(&tap(target), &json!({})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    }
    let third = app.as_user(&desk).post(&tap(&targets[2]), &json!({})).await;
    assert_graph_error(&third, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let message = third.body["error"]["message"].as_str().expect("message");
    assert!(message.contains("limit of 2 Temporary Access Passes per administrator per hour"), "{message}");
    assert!(message.contains("keywardServiceDeskPolicy.temporaryAccessPassesPerAgentPerHour"), "{message}");
    let record = app.audit_for(&targets[2]).await.into_iter().find(|it| it.result_reason.contains("limit of 2"));
    assert!(record.is_some(), "the refusal is audited");
    let methods = app.get(&format!("/v1.0/users/{}/authentication/methods", targets[2])).await;
    assert!(!methods.text.contains("temporaryAccessPass"), "no pass was made: {}", methods.text);
    // Per agent: another administrator is not held back; other kinds have their own caps.
    let others = app.as_user(&other_desk).post(&tap(&targets[2]), &json!({})).await;
    assert_eq!(others.status, StatusCode::CREATED, "{}", others.text);
    let reset = app
        .as_user(&desk)
        .post(
            &format!(
                "/v1.0/users/{}/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword",
                targets[3]
            ),
            &json!({}),
        )
        .await;
    assert_eq!(reset.status, StatusCode::ACCEPTED, "password resets have no cap here: {}", reset.text);

    // An hour later the caps are free again.
    app.clock.advance(time::Duration::minutes(61));
    let later = app.as_user(&desk).post(&reset_mfa(&targets[5]), &json!({})).await;
    assert_eq!(later.status, StatusCode::OK, "{}", later.text);

    // Concurrent passes by one agent cannot pass the cap together.
    let mut tasks = tokio::task::JoinSet::new();
    for target in &targets[6..10] {
        let (client, url, token) = (app.client.clone(), format!("{}{}", app.base_url, tap(target)), desk.clone());
        tasks.spawn(async move {
            client.post(url).bearer_auth(token).json(&json!({})).send().await.expect("request").status()
        });
    }
    let statuses = tasks.join_all().await;
    let created = statuses.iter().filter(|it| **it == StatusCode::CREATED).count();
    let refused = statuses.iter().filter(|it| **it == StatusCode::FORBIDDEN).count();
    assert_eq!((created, refused), (2, 2), "{statuses:?}");

    // The count and the action are one step: a second transaction counting the same agent's
    // actions waits for the first to end (PostgreSQL: the agent's lock; SQLite: one writer), so
    // it sees the first's action and two at the cap cannot both pass.
    let organization = app.get("/v1.0/organization").await.body;
    let tenant = keyward_core::ids::ObjectId::parse(organization["value"][0]["id"].as_str().expect("tenant"))
        .expect("tenant id");
    let store = app.app.store().clone();
    let since = app.app.now() - time::Duration::hours(1);
    let mut first = store.write().await.expect("first");
    assert_eq!(first.count_agent_actions(&tenant, "agent-x", "mfaReset", since).await.expect("count"), 0);
    first.record_agent_action(&tenant, "agent-x", "mfaReset", app.app.now()).await.expect("record");
    let second = {
        let (store, tenant) = (store.clone(), tenant.clone());
        tokio::spawn(async move {
            let mut second = store.write().await.expect("second");
            let seen = second.count_agent_actions(&tenant, "agent-x", "mfaReset", since).await.expect("count");
            second.commit().await.expect("commit");
            seen
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second count waits for the first transaction");
    first.commit().await.expect("commit");
    assert_eq!(second.await.expect("join"), 1, "and then sees its action");
}

/// A user adding a phone to their own account reads the account for update, as an
/// administrator's change does: an administrator's removal of the mobile phone in flight is
/// waited for, and the alternate mobile, which needs a mobile, is then refused. PostgreSQL,
/// where the removal can be held open (SQLite's writers take turns).
async fn an_own_phone_added_beside_an_administrators_change_waits_for_it(backend: Backend) {
    if backend == Backend::Sqlite {
        return;
    }
    let app = TestApp::spawn(backend).await;
    app.set_security_defaults(true).await;
    let (id, _) = user(&app, "selfie", None).await;
    let fresh = token_with_mfa(&app, &format!("selfie@{DOMAIN}")).await;
    let phones = "/v1.0/me/authentication/phoneMethods";
    let mobile =
        app.as_user(&fresh).post(phones, &json!({"phoneNumber": "+1 2065550123", "phoneType": "mobile"})).await;
    assert_eq!(mobile.status, StatusCode::CREATED, "{}", mobile.text);

    // The administrator's removal of the mobile, in flight: the user's row read for update.
    let mut removal = crate::security::HeldRow::user(&app, &id).await;
    let adding = app.send_in_background(
        Method::POST,
        phones,
        &fresh,
        json!({"phoneNumber": "+1 2065550124", "phoneType": "alternateMobile"}),
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!adding.is_finished(), "the user's change must wait for the administrator's in flight");
    sqlx::query("DELETE FROM phone_methods WHERE user_id = $1 AND phone_type = 'mobile'")
        .bind(&id)
        .execute(removal.connection())
        .await
        .expect("remove the mobile");
    removal.commit().await;
    let added = adding.await.expect("task");
    assert_eq!(added.status, StatusCode::BAD_REQUEST, "an alternate mobile without a mobile: {}", added.text);
    let listed = app.get(&format!("/v1.0/users/{id}/authentication/phoneMethods")).await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(0), "{}", listed.text);
}

keyward_testkit::on_both_backends!(
    per_agent_limits,
    an_own_phone_added_beside_an_administrators_change_waits_for_it,
    policies_want_policy_permissions,
    role_writes_want_role_management,
    sign_in_preferences,
    own_password_change,
    single_methods_and_own_sessions_on_me,
    refusals_say_why,
    every_collection_of_the_methods_api,
    service_desk_story,
    reset_password_and_oath_methods,
    phone_and_email_methods,
    self_service_needs_recent_mfa,
    one_step_mfa_reset,
);
