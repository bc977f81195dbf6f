//! The authentication methods policy and security defaults over Graph: their shapes, who may
//! read and change them, input refused rather than dropped, and the policy honoured where it
//! matters: a pass or an authenticator app a user's targets leave out does not sign in, a method
//! the policy turns off cannot be registered, and the registration campaign asks users without
//! an authenticator app to set one up, skippable three times.

use keyward_core::authz::roles;
use keyward_testkit::browser::{Browser, Page};
use keyward_testkit::{ADMIN_UPN, Backend, DOMAIN, TestApp, assert_graph_error};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;

/// The password `TestApp::create_user` gives.
const PASSWORD: &str = "Tq7-harbour-Lantern-92!";
const POLICY: &str = "/v1.0/policies/authenticationMethodsPolicy";
const CONFIGS: &str = "/v1.0/policies/authenticationMethodsPolicy/authenticationMethodConfigurations";
const DEFAULTS: &str = "/v1.0/policies/identitySecurityDefaultsEnforcementPolicy";

/// A user with the testkit's password (`PASSWORD`), and `role` tenant-wide.
async fn create_user(app: &TestApp, alias: &str, role: Option<&str>) -> String {
    let user = app.create_user(alias, &format!("{alias} Test")).await;
    let id = user["id"].as_str().expect("id").to_owned();
    if let Some(role) = role {
        app.assign_role(&id, role, "/").await;
    }
    id
}

async fn create_group(app: &TestApp, name: &str, members: &[&str]) -> String {
    let body = json!({"displayName": name, "mailEnabled": false, "mailNickname": name, "securityEnabled": true});
    let group = app.post("/v1.0/groups", &body).await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let id = group.body["id"].as_str().expect("group id").to_owned();
    for member in members {
        let reference = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{member}")});
        let added = app.post(&format!("/v1.0/groups/{id}/members/$ref"), &reference).await;
        assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    }
    id
}

/// Username, then password (or pass): the page that follows.
async fn first_factor(browser: &mut Browser, alias: &str, secret: &str) -> Page {
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    let page = browser.submit(&page, "username", &[("username", &format!("{alias}@{DOMAIN}"))], &[]).await;
    assert_eq!(page.title(), "Enter password", "{}", page.text());
    browser.submit(&page, "password", &[("current-password", secret)], &[]).await
}

async fn new_pass(app: &TestApp, user: &str) -> String {
    let reply = app.post(&format!("/v1.0/users/{user}/authentication/temporaryAccessPassMethods"), &json!({})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.body["temporaryAccessPass"].as_str().expect("the pass").to_owned()
}

fn campaign(body: Value) -> Value {
    json!({"registrationEnforcement": {"authenticationMethodsRegistrationCampaign": body}})
}

async fn methods_policy_over_graph(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let policy = app.get(POLICY).await;
    assert_eq!(policy.status, StatusCode::OK, "{}", policy.text);
    assert_eq!(policy.body["id"], "authenticationMethodsPolicy");
    assert_eq!(policy.body["policyMigrationState"], "migrationComplete");
    assert_eq!(policy.body["lastModifiedDateTime"], Value::Null, "never changed");
    let ids: Vec<&str> = policy.body["authenticationMethodConfigurations"]
        .as_array()
        .expect("expanded")
        .iter()
        .map(|it| it["id"].as_str().expect("id"))
        .collect();
    for id in ["TemporaryAccessPass", "SoftwareOath", "Email", "Sms", "Voice", "Fido2"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    let campaign_json = &policy.body["registrationEnforcement"]["authenticationMethodsRegistrationCampaign"];
    assert_eq!(campaign_json["state"], "default");
    assert_eq!(campaign_json["snoozeDurationInDays"], 1);
    assert_eq!(campaign_json["includeTargets"][0]["targetedAuthenticationMethod"], "microsoftAuthenticator");
    assert!(campaign_json.get("enforceRegistrationAfterAllowedSnoozes").is_none(), "a beta property");
    let beta = app.get("/beta/policies/authenticationMethodsPolicy").await;
    assert_eq!(
        beta.body["registrationEnforcement"]["authenticationMethodsRegistrationCampaign"]["enforceRegistrationAfterAllowedSnoozes"],
        true
    );

    // Configurations by id in any case; Sms, Voice and Fido2 listed off.
    let oath = app.get(&format!("{CONFIGS}/softwareoath")).await;
    assert_eq!(oath.status, StatusCode::OK, "{}", oath.text);
    assert_eq!(oath.body["@odata.type"], "#microsoft.graph.softwareOathAuthenticationMethodConfiguration");
    assert_eq!(
        oath.body["includeTargets"],
        json!([{"targetType": "group", "id": "all_users", "isRegistrationRequired": false}])
    );
    assert_eq!(app.get(&format!("{CONFIGS}/SMS")).await.body["state"], "disabled");
    assert_graph_error(
        &app.get(&format!("{CONFIGS}/x509Certificate")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );

    // Changes: the campaign answers 200 with the policy; each refusal changes nothing.
    let pilot = create_group(&app, "pilot", &[]).await;
    let before = app.get(POLICY).await.body;
    let refused = [
        (POLICY, campaign(json!({"snoozeDurationInDays": 15}))),
        (POLICY, campaign(json!({"state": "sometimes"}))),
        (
            POLICY,
            campaign(
                json!({"includeTargets": [{"id": "all_users", "targetType": "group", "targetedAuthenticationMethod": "fido2"}]}),
            ),
        ),
        (POLICY, campaign(json!({"enforceRegistrationAfterAllowedSnoozes": false}))),
        (
            POLICY,
            campaign(
                json!({"excludeTargets": [{"id": "00000000-0000-0000-0000-00000000abcd", "targetType": "group"}]}),
            ),
        ),
        (POLICY, json!({"policyMigrationState": "preMigration"})),
        (POLICY, json!({"displayName": "Mine"})),
        (POLICY, json!({"id": "another"})),
        (POLICY, json!({"@odata.type": "#microsoft.graph.user"})),
        (POLICY, campaign(json!({"excludeTargets": [{"@odata.type": "#microsoft.graph.user", "id": "all_users"}]}))),
        (POLICY, campaign(json!({"excludeTargets": [{"targetType": 7, "id": "all_users"}]}))),
        (POLICY, json!({"authenticationMethodConfigurations": []})),
    ];
    for (path, body) in &refused {
        let reply = app.patch(path, body).await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    let config_refusals = [
        (
            "TemporaryAccessPass",
            json!({"includeTargets": [{"id": pilot, "targetType": "group", "isRegistrationRequired": true}]}),
        ),
        ("TemporaryAccessPass", json!({"includeTargets": [{"id": "pilot", "targetType": "group"}]})),
        ("TemporaryAccessPass", json!({"includeTargets": [{"id": pilot, "targetType": "device"}]})),
        ("TemporaryAccessPass", json!({"excludeTargets": [{"id": pilot, "targetType": "group", "colour": "blue"}]})),
        ("TemporaryAccessPass", json!({"@odata.type": "#microsoft.graph.emailAuthenticationMethodConfiguration"})),
        ("SoftwareOath", json!({"defaultLength": 10})),
        ("Email", json!({"allowExternalIdToUseEmailOtp": "enabled"})),
        ("Sms", json!({"state": "enabled"})),
        ("Voice", json!({"isOfficePhoneAllowed": true})),
        ("Fido2", json!({"isAttestationEnforced": true})),
        ("Fido2", json!({"keyRestrictions": {"isEnforced": true, "enforcementType": "allow", "aaGuids": []}})),
        ("Fido2", json!({"keyRestrictions": {"isEnforced": false, "enforcementType": "block", "aaGuids": ["x"]}})),
        ("Fido2", json!({"passkeyProfiles": []})),
    ];
    for (id, body) in &config_refusals {
        let reply = app.patch(&format!("{CONFIGS}/{id}"), body).await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    assert_eq!(app.get(POLICY).await.body, before, "refused changes change nothing");
    assert_eq!(
        app.patch(&format!("{CONFIGS}/sms"), &json!({"state": "disabled"})).await.status,
        StatusCode::NO_CONTENT
    );

    let changed = app
        .patch(
            POLICY,
            &campaign(json!({"state": "enabled", "snoozeDurationInDays": 0, "excludeTargets": [{"id": pilot, "targetType": "group"}]})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let campaign_json = &changed.body["registrationEnforcement"]["authenticationMethodsRegistrationCampaign"];
    assert_eq!(
        (campaign_json["state"].clone(), campaign_json["snoozeDurationInDays"].clone()),
        (json!("enabled"), json!(0))
    );
    assert_eq!(campaign_json["excludeTargets"], json!([{"targetType": "group", "id": pilot}]));
    assert!(changed.body["lastModifiedDateTime"].is_string(), "{}", changed.text);
    let beta = app
        .patch(
            "/beta/policies/authenticationMethodsPolicy",
            &campaign(json!({"enforceRegistrationAfterAllowedSnoozes": false})),
        )
        .await;
    assert_eq!(beta.status, StatusCode::OK, "{}", beta.text);

    // Two administrators changing different parts at once both keep their change.
    let (oath_path, email_path) = (format!("{CONFIGS}/SoftwareOath"), format!("{CONFIGS}/Email"));
    let oath_body = json!({"excludeTargets": [{"id": pilot, "targetType": "group"}]});
    let email_body = json!({"state": "disabled"});
    let (oath, email) = tokio::join!(app.patch(&oath_path, &oath_body), app.patch(&email_path, &email_body));
    assert_eq!((oath.status, email.status), (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT));
    assert_eq!(app.get(&oath_path).await.body["excludeTargets"][0]["id"], pilot.as_str());
    assert_eq!(app.get(&email_path).await.body["state"], "disabled");

    // The pass's targets are kept now (they used to be dropped), and DELETE reverts them.
    let tap = format!("{CONFIGS}/temporaryAccessPass");
    let targets = json!({"includeTargets": [{"id": pilot, "targetType": "group", "isRegistrationRequired": false}]});
    assert_eq!(app.patch(&tap, &targets).await.status, StatusCode::NO_CONTENT);
    let read = app.get(&tap).await;
    assert_eq!(
        read.body["includeTargets"],
        json!([{"targetType": "group", "id": pilot, "isRegistrationRequired": false}])
    );
    assert_eq!(app.delete(&tap).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&tap).await.body["includeTargets"][0]["id"], "all_users");

    // Security defaults are "MFA for every user"; Keyward's sign-in policy no longer carries it.
    assert_eq!(app.get(DEFAULTS).await.body["isEnabled"], false);
    app.set_security_defaults(true).await;
    let defaults = app.get(DEFAULTS).await;
    assert_eq!(
        (defaults.body["isEnabled"].clone(), defaults.body["displayName"].clone()),
        (json!(true), json!("Security Defaults"))
    );
    for body in [json!({"displayName": "x"}), json!({"id": "x"}), json!({"@odata.type": "#microsoft.graph.user"})] {
        assert_graph_error(&app.patch(DEFAULTS, &body).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    let moved = app.patch("/v1.0/policies/keywardSignInPolicy", &json!({"requireMfaForAllUsers": false})).await;
    assert_graph_error(&moved, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(moved.text.contains("identitySecurityDefaultsEnforcementPolicy"), "{}", moved.text);
    assert!(app.get("/v1.0/policies/keywardSignInPolicy").await.body.get("requireMfaForAllUsers").is_none());

    // Who may: Global Reader reads; the Authentication Policy Administrator changes the methods
    // policy but not security defaults; the Security Administrator the reverse; a user neither.
    for (alias, role) in [
        ("reader", roles::GLOBAL_READER),
        ("apa", roles::AUTHENTICATION_POLICY_ADMINISTRATOR),
        ("secadmin", roles::SECURITY_ADMINISTRATOR),
    ] {
        create_user(&app, alias, Some(role)).await;
    }
    create_user(&app, "plain", None).await;
    let token = |alias: &str| {
        let app = &app;
        let upn = format!("{alias}@{DOMAIN}");
        async move { app.token_for(&upn).await }
    };
    let (reader, apa, secadmin, plain) =
        (token("reader").await, token("apa").await, token("secadmin").await, token("plain").await);
    let off = json!({"isEnabled": false});
    let snooze = campaign(json!({"snoozeDurationInDays": 3}));
    assert_eq!(app.as_user(&reader).get(POLICY).await.status, StatusCode::OK);
    assert_eq!(app.as_user(&reader).get(DEFAULTS).await.status, StatusCode::OK);
    assert_eq!(app.as_user(&reader).patch(POLICY, &snooze).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.as_user(&plain).get(POLICY).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.as_user(&plain).get(DEFAULTS).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.as_user(&apa).patch(DEFAULTS, &off).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.as_user(&secadmin).patch(POLICY, &snooze).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.as_user(&secadmin).get(DEFAULTS).await.status, StatusCode::OK);
    assert_eq!(app.as_user(&apa).patch(POLICY, &snooze).await.status, StatusCode::OK);
    assert_eq!(app.as_user(&secadmin).patch(DEFAULTS, &off).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(DEFAULTS).await.body["isEnabled"], false);

    // Audited: each change once, each refusal as a failure.
    let audit =
        app.get("/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Update security defaults'").await;
    let records = audit.body["value"].as_array().expect("records");
    let results: Vec<&str> = records.iter().map(|it| it["result"].as_str().expect("result")).collect();
    assert_eq!(results, vec!["success", "failure", "success"], "{}", audit.text);
    assert_eq!(records[0]["category"], "Policy");
    assert_eq!(records[0]["loggedByService"], "Conditional Access");
    assert_eq!(records[0]["targetResources"][0]["modifiedProperties"][0]["newValue"], "false");
}

async fn targets_are_honoured_at_sign_in_and_registration(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let adele = create_user(&app, "adele", None).await;
    let megan = create_user(&app, "megan", None).await;
    let pilot = create_group(&app, "pilot", &[&adele]).await;
    let (adele_pass, megan_pass) = (new_pass(&app, &adele).await, new_pass(&app, &megan).await);

    // The pass: only the pilot group may sign in with one; it is still created for anyone.
    let tap = format!("{CONFIGS}/TemporaryAccessPass");
    let reply = app.patch(&tap, &json!({"includeTargets": [{"id": pilot, "targetType": "group"}]})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let listed = app.get(&format!("/v1.0/users/{megan}/authentication/temporaryAccessPassMethods")).await;
    assert_eq!(listed.body["value"][0]["methodUsabilityReason"], "DisabledByPolicy", "{}", listed.text);
    assert_eq!(listed.body["value"][0]["isUsable"], false);
    let megan_pass_again = new_pass(&app, &megan).await;
    let refused = first_factor(&mut Browser::new(&app.base_url), "megan", &megan_pass_again).await;
    assert_eq!(refused.title(), "Enter password", "{}", refused.text());
    assert!(refused.text().contains("Your account or password is incorrect"), "{}", refused.text());
    assert_ne!(megan_pass, megan_pass_again);
    let signed_in = first_factor(&mut Browser::new(&app.base_url), "adele", &adele_pass).await;
    assert_eq!(signed_in.title(), "My account", "{}", signed_in.text());
    let listed = app.get(&format!("/v1.0/users/{adele}/authentication/temporaryAccessPassMethods")).await;
    assert_eq!(listed.body["value"][0]["methodUsabilityReason"], "EnabledByPolicy", "{}", listed.text);

    // The authenticator app: excluded users may neither register one nor, when MFA is required,
    // sign in (they are told to ask their administrator, and the attempt is logged).
    let oath = format!("{CONFIGS}/SoftwareOath");
    let reply = app.patch(&oath, &json!({"excludeTargets": [{"id": megan, "targetType": "user"}]})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    app.set_security_defaults(true).await;
    let blocked = first_factor(&mut Browser::new(&app.base_url), "megan", PASSWORD).await;
    assert_eq!(blocked.title(), "Enter password", "{}", blocked.text());
    assert!(blocked.text().contains("no method you can set up is turned on"), "{}", blocked.text());
    let log = app.sign_in_log(&format!("megan@{DOMAIN}")).await;
    let last = log.last().expect("logged");
    assert_eq!(last["status"]["errorCode"], 50079, "{last}");
    // A pass is strong on its own: with nothing to register, it still signs in (so an operator's
    // recovery pass works whatever the policy says).
    assert_eq!(app.delete(&tap).await.status, StatusCode::NO_CONTENT);
    let with_pass = first_factor(&mut Browser::new(&app.base_url), "megan", &megan_pass_again).await;
    assert_eq!(with_pass.title(), "My account", "{}", with_pass.text());
    let mut browser = Browser::new(&app.base_url);
    let interrupted = first_factor(&mut browser, "adele", PASSWORD).await;
    assert_eq!(interrupted.title(), "More information required", "{}", interrupted.text());
    // The app is turned off for her while the registration page is open: its code is refused.
    let page = browser.submit(&interrupted, "more_info", &[], &[]).await;
    assert_eq!(page.title(), "Set up your authenticator app", "{}", page.text());
    let both = json!({"excludeTargets": [{"id": megan, "targetType": "user"}, {"id": adele, "targetType": "user"}]});
    assert_eq!(app.patch(&oath, &both).await.status, StatusCode::NO_CONTENT);
    let secret = keyward_core::totp::base32_decode(&page.by_id("secret").expect("secret")).expect("base32");
    let code = keyward_core::totp::code_at_step(&secret, keyward_core::totp::step_at(app.app.now().unix_timestamp()));
    let refused = browser.submit(&page, "register_totp", &[("one-time-code", &code)], &[]).await;
    assert!(refused.text().contains("no method you can set up is turned on"), "{}", refused.text());
    let methods = app.get(&format!("/v1.0/users/{adele}/authentication/softwareOathMethods")).await;
    assert_eq!(methods.body["value"], json!([]), "nothing registered");

    // Email: off, so none can be registered (and one already there stays readable).
    let email = format!("/v1.0/users/{adele}/authentication/emailMethods");
    assert_eq!(
        app.patch(&format!("{CONFIGS}/Email"), &json!({"state": "disabled"})).await.status,
        StatusCode::NO_CONTENT
    );
    let refused = app.post(&email, &json!({"emailAddress": "adele@example.com"})).await;
    assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(refused.text.contains("methods policy"), "{}", refused.text);
    assert_eq!(
        app.patch(&format!("{CONFIGS}/Email"), &json!({"state": "enabled"})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.post(&email, &json!({"emailAddress": "adele@example.com"})).await.status, StatusCode::CREATED);
}

async fn registration_campaign_nudges_and_counts_skips(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    create_user(&app, "adele", None).await;
    let megan = create_user(&app, "megan", None).await;
    let body = campaign(
        json!({"state": "enabled", "snoozeDurationInDays": 1, "excludeTargets": [{"id": megan, "targetType": "user"}]}),
    );
    assert_eq!(app.patch(POLICY, &body).await.status, StatusCode::OK);

    // Excluded: straight in.
    let page = first_factor(&mut Browser::new(&app.base_url), "megan", PASSWORD).await;
    assert_eq!(page.title(), "My account", "{}", page.text());

    // Targeted and without an authenticator app: asked, and "Not now" signs in.
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, "adele", PASSWORD).await;
    assert_eq!(page.title(), "Keep your account secure", "{}", page.text());
    assert!(page.text().contains("asked again in 1 day"), "{}", page.text());
    let page = browser.submit(&page, "campaign", &[], &[("skip", "yes")]).await;
    assert_eq!(page.title(), "My account", "{}", page.text());
    let log = app.sign_in_log(&format!("adele@{DOMAIN}")).await;
    assert_eq!(log.last().expect("logged")["status"]["errorCode"], 0);

    // Snoozed for a day, then asked again; after three skips it can no longer be skipped.
    let page = first_factor(&mut Browser::new(&app.base_url), "adele", PASSWORD).await;
    assert_eq!(page.title(), "My account", "snoozed: {}", page.text());
    for _ in 0..2 {
        app.clock.advance(Duration::days(1));
        let mut browser = Browser::new(&app.base_url);
        let page = first_factor(&mut browser, "adele", PASSWORD).await;
        assert_eq!(page.title(), "Keep your account secure", "{}", page.text());
        let page = browser.submit(&page, "campaign", &[], &[("skip", "yes")]).await;
        assert_eq!(page.title(), "My account", "{}", page.text());
    }
    app.clock.advance(Duration::days(1));
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, "adele", PASSWORD).await;
    assert_eq!(page.title(), "Keep your account secure", "{}", page.text());
    assert!(!page.text().contains("Not now"), "no skip left: {}", page.text());
    // A forged skip is refused.
    let forged = browser.submit(&page, "campaign", &[], &[("skip", "yes")]).await;
    assert_eq!(forged.title(), "Keep your account secure", "{}", forged.text());
    assert!(forged.text().contains("requires you to set up an authenticator app now"), "{}", forged.text());
    let page = browser.submit(&forged, "campaign", &[], &[]).await;
    assert_eq!(page.title(), "Set up your authenticator app", "{}", page.text());

    // A campaign that does not enforce registration keeps offering "Not now" (beta's setting).
    // Days have passed: the administrator signs in again.
    let admin = app.token_for(ADMIN_UPN).await;
    let admin = app.as_user(&admin);
    let forever = campaign(json!({"enforceRegistrationAfterAllowedSnoozes": false}));
    assert_eq!(admin.patch("/beta/policies/authenticationMethodsPolicy", &forever).await.status, StatusCode::OK);
    let page = first_factor(&mut Browser::new(&app.base_url), "adele", PASSWORD).await;
    assert_eq!(page.title(), "Keep your account secure", "{}", page.text());
    assert!(page.text().contains("Not now"), "{}", page.text());

    // Off again: no prompt.
    assert_eq!(admin.patch(POLICY, &campaign(json!({"state": "disabled"}))).await.status, StatusCode::OK);
    let page = first_factor(&mut Browser::new(&app.base_url), "adele", PASSWORD).await;
    assert_eq!(page.title(), "My account", "{}", page.text());
}

keyward_testkit::on_both_backends!(
    methods_policy_over_graph,
    targets_are_honoured_at_sign_in_and_registration,
    registration_campaign_nudges_and_counts_skips,
);
