//! The sign-in pages, driven only through their HTML forms by a test user agent that fills
//! inputs by `autocomplete` token, on both backends; every case checks its sign-in log entry.

use keyward_core::totp;
use keyward_testkit::browser::{Browser, Page};
use keyward_testkit::{ADMIN_PASSWORD, ADMIN_UPN, Backend, DOMAIN, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;

const PASSWORD: &str = "Tq7-harbour-Lantern-92!";

fn login_path() -> String {
    format!("/{DOMAIN}/login")
}

/// Username, then password (or pass): the page that follows.
async fn first_factor(browser: &mut Browser, upn: &str, secret: &str) -> Page {
    let page = browser.get(&login_path()).await;
    assert_eq!(page.title(), "Sign in", "{}", page.text());
    let page = browser.submit(&page, "username", &[("username", upn)], &[]).await;
    assert_eq!(page.title(), "Enter password", "{}", page.text());
    browser.submit(&page, "password", &[("current-password", secret)], &[]).await
}

/// The current code for the secret shown on a registration page.
fn code_now(app: &TestApp, secret_b32: &str) -> String {
    let secret = totp::base32_decode(secret_b32).expect("base32 secret");
    totp::code_at_step(&secret, totp::step_at(app.app.now().unix_timestamp()))
}

/// From the "More information required" page through TOTP registration; returns the account
/// page and the secret.
async fn register_totp(app: &TestApp, browser: &mut Browser, page: Page) -> (Page, String) {
    assert_eq!(page.title(), "More information required", "{}", page.text());
    assert!(page.text().contains("Your organization needs more information to keep your account secure"));
    let page = browser.submit(&page, "more_info", &[], &[]).await;
    assert_eq!(page.title(), "Set up your authenticator app", "{}", page.text());
    let secret = page.by_id("secret").expect("secret shown as text");
    let uri = page.by_id("otpauth").expect("otpauth URI shown");
    assert!(uri.starts_with("otpauth://totp/Keyward:") && uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(page.html.contains("<svg") && page.html.contains("id=\"qr\""), "QR code as inline SVG");
    let wrong = browser.submit(&page, "register_totp", &[("one-time-code", "000000")], &[]).await;
    assert_eq!(wrong.title(), "Set up your authenticator app");
    assert!(wrong.text().contains("That code didn't work"), "{}", wrong.text());
    let code = code_now(app, &secret);
    let page = browser.submit(&wrong, "register_totp", &[("one-time-code", &code)], &[]).await;
    assert_eq!(page.title(), "My account", "{}", page.text());
    (page, secret)
}

/// A new user `alias` who registered an authenticator app at their first sign-in (MFA must be
/// required), signed out: their id, user name, browser and the app's secret.
async fn with_authenticator_app(app: &TestApp, alias: &str) -> (String, String, Browser, String) {
    let id = create_user(app, alias, false).await;
    let upn = format!("{alias}@{DOMAIN}");
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    let (account, secret) = register_totp(app, &mut browser, page).await;
    sign_out(&mut browser, &account).await;
    (id, upn, browser, secret)
}

async fn sign_out(browser: &mut Browser, page: &Page) {
    let out = browser.submit(page, "signout", &[], &[]).await;
    assert_eq!(out.title(), "Sign in");
    assert!(out.text().contains("You signed out."));
}

/// The sign-in log entries of a user, oldest first, as `(errorCode, entry)`.
async fn sign_ins(app: &TestApp, upn: &str) -> Vec<(i64, Value)> {
    let log = app.sign_in_log(upn).await;
    log.into_iter().map(|it| (it["status"]["errorCode"].as_i64().expect("errorCode"), it)).collect()
}

fn codes(entries: &[(i64, Value)]) -> Vec<i64> {
    entries.iter().map(|(code, _)| *code).collect()
}

async fn create_user(app: &TestApp, alias: &str, force_change: bool) -> String {
    let reply = app
        .post(
            "/v1.0/users",
            &json!({
                "accountEnabled": true, "displayName": format!("{alias} Test"), "mailNickname": alias,
                "userPrincipalName": format!("{alias}@{DOMAIN}"),
                "passwordProfile": {"password": PASSWORD, "forceChangePasswordNextSignIn": force_change},
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.body["id"].as_str().expect("id").to_owned()
}

async fn first_sign_in_with_the_bootstrap_pass(backend: Backend) {
    let (app, pass) = TestApp::spawn_with_bootstrap_pass(backend).await;
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(&login_path()).await;
    let session_cookie = page.set_cookies.first().expect("session cookie").clone();
    assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"), "{session_cookie}");
    let page = browser.submit(&page, "username", &[("username", ADMIN_UPN)], &[]).await;
    let page = browser.submit(&page, "password", &[("current-password", &pass)], &[]).await;
    // The Global Administrator must use MFA and has no method: the interrupt cannot be skipped.
    assert_eq!(page.title(), "More information required", "{}", page.text());
    let again = browser.get(&login_path()).await;
    assert_eq!(again.title(), "More information required", "reloading does not skip the interrupt");
    // Abandoned there: the first administrator's pass stays usable until a method is registered,
    // so the sign-in can be resumed from another browser.
    let mut browser = Browser::new(&app.base_url);
    let resumed = first_factor(&mut browser, ADMIN_UPN, &pass).await;
    assert_eq!(resumed.title(), "More information required", "{}", resumed.text());
    let (account, _) = register_totp(&app, &mut browser, resumed).await;
    assert!(account.text().contains("Signed in as"), "{}", account.text());
    assert!(account.text().contains("Authenticator app"), "{}", account.text());
    let log = sign_ins(&app, ADMIN_UPN).await;
    assert_eq!(codes(&log), vec![50079, 50079, 0], "{log:?}");
    // A user's entries get time-ordered ids (UUID version 7), as applications' do (`oidc`).
    let ids: Vec<&str> = log.iter().map(|(_, it)| it["id"].as_str().expect("id")).collect();
    assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok_and(|it| it.get_version_num() == 7)), "{ids:?}");
    assert_eq!(log[2].1["authenticationDetails"][0]["authenticationMethod"], "Temporary Access Pass");
    assert_eq!(log[2].1["authenticationRequirement"], "multiFactorAuthentication");
    assert_eq!(log[2].1["mfaDetail"], json!({"authMethod": "Temporary Access Pass", "authDetail": null}));
    assert_eq!(log[2].1["userType"], "member");
    let audit =
        app.get("/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'User registered security info'").await;
    assert_eq!(audit.body["value"].as_array().map(Vec::len), Some(1), "{}", audit.text);
    assert!(!audit.text.contains(&pass), "the pass never reaches the audit log");

    // With a method registered, the pass is spent.
    let mut other = Browser::new(&app.base_url);
    let refused = first_factor(&mut other, ADMIN_UPN, &pass).await;
    assert_eq!(refused.title(), "Enter password");
    assert!(refused.text().contains("Your account or password is incorrect"), "{}", refused.text());

    // A session obtained with a pass ends when the pass does (480 minutes for the bootstrap pass).
    app.clock.advance(Duration::minutes(481));
    let ended = browser.get(&login_path()).await;
    assert_eq!(ended.title(), "Sign in");
    assert!(ended.text().contains("Your session has ended"), "{}", ended.text());
    assert_eq!(codes(&sign_ins(&app, ADMIN_UPN).await), vec![50079, 50079, 0, 50126, 50173]);

    // An operator with the server's data issues a fresh pass for a Global Administrator (here the
    // administrator lost the phone too): it signs in, and the audit log says who issued it.
    let (recovery, _) = app.app.recover_global_administrator(ADMIN_UPN).await.expect("recover");
    let mut rescued = Browser::new(&app.base_url);
    let page = first_factor(&mut rescued, ADMIN_UPN, recovery.expose()).await;
    assert_eq!(page.title(), "My account", "a pass counts as MFA: {}", page.text());
    let token = app.token_for(ADMIN_UPN).await;
    let path = "/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Admin registered security info'";
    let audit = app.send(reqwest::Method::GET, path, Some(&token), None, &[]).await;
    let records = audit.body["value"].as_array().expect("value");
    assert_eq!(records.len(), 1, "{}", audit.text);
    assert_eq!(records[0]["initiatedBy"]["app"]["displayName"], "Keyward operator", "{}", audit.text);
    assert!(!audit.text.contains(recovery.expose()), "the pass never reaches the audit log");
    // Only for Global Administrators.
    let regular = json!({"accountEnabled": true, "displayName": "Regular", "mailNickname": "regular",
        "userPrincipalName": format!("regular@{DOMAIN}"), "passwordProfile": {"password": PASSWORD}});
    let created = app.send(reqwest::Method::POST, "/v1.0/users", Some(&token), Some(&regular), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let refused = app.app.recover_global_administrator(&format!("regular@{DOMAIN}")).await;
    assert!(refused.is_err_and(|err| err.to_string().contains("not an enabled Global Administrator")));
    assert!(app.app.recover_global_administrator("nobody@nowhere.test").await.is_err());
}

async fn password_and_totp_with_replay_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, ADMIN_UPN, ADMIN_PASSWORD).await;
    let (account, secret) = register_totp(&app, &mut browser, page).await;
    sign_out(&mut browser, &account).await;
    // The registration is told to the user (kept as `noAddress`: the administrator has no mail).
    let outbox = app.get("/beta/keyward/notifications").await;
    let told = outbox.body["value"].as_array().expect("the outbox").clone();
    assert_eq!(told.len(), 1, "{}", outbox.text);
    assert!(told[0]["body"].as_str().expect("body").contains("You registered a new sign-in method."), "{told:?}");
    assert_eq!(told[0]["state"], "noAddress");

    // The code used to register is spent: the same time step is refused.
    let page = first_factor(&mut browser, ADMIN_UPN, ADMIN_PASSWORD).await;
    assert_eq!(page.title(), "Enter code", "{}", page.text());
    assert!(page.html.contains("autocomplete=\"one-time-code\""));
    let replayed = browser.submit(&page, "mfa", &[("one-time-code", &code_now(&app, &secret))], &[]).await;
    assert_eq!(replayed.title(), "Enter code");
    assert!(replayed.text().contains("already used"), "{}", replayed.text());
    app.clock.advance(Duration::seconds(30));
    let code = code_now(&app, &secret);
    let account = browser.submit(&replayed, "mfa", &[("one-time-code", &code)], &[]).await;
    assert_eq!(account.title(), "My account", "{}", account.text());
    sign_out(&mut browser, &account).await;

    // Replaying a code that worked is refused too.
    let page = first_factor(&mut browser, ADMIN_UPN, ADMIN_PASSWORD).await;
    let replayed = browser.submit(&page, "mfa", &[("one-time-code", &code)], &[]).await;
    assert!(replayed.text().contains("already used"), "{}", replayed.text());
    let log = sign_ins(&app, ADMIN_UPN).await;
    assert_eq!(codes(&log), vec![50079, 0, 50076, 500121, 0, 50076, 500121], "{log:?}");
    let success = &log[4].1;
    assert_eq!(success["authenticationDetails"][1]["authenticationMethod"], "Software OATH token");
    assert_eq!(success["appDisplayName"], "Keyward My Account");
    assert!(success["ipAddress"].as_str().is_some_and(|it| it == "127.0.0.1"), "{success}");
    assert!(success["correlationId"].as_str().is_some_and(|it| !it.is_empty()));
}

async fn lockout_and_its_expiry(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.lock_out_after_three_failures().await;
    let mut browser = Browser::new(&app.base_url);
    let mut page = first_factor(&mut browser, ADMIN_UPN, "wrong-password-1").await;
    for attempt in 2..=3 {
        assert!(page.text().contains("Your account or password is incorrect"), "{}", page.text());
        page =
            browser.submit(&page, "password", &[("current-password", &format!("wrong-password-{attempt}"))], &[]).await;
    }
    // The third failure locked the account; the right password now gets the lockout message.
    let locked = browser.submit(&page, "password", &[("current-password", ADMIN_PASSWORD)], &[]).await;
    assert!(locked.text().contains("temporarily locked"), "{}", locked.text());
    assert!(locked.text().contains("Try again after"), "{}", locked.text());
    // Another node on the same database sees the lockout: the counters live in the database.
    let other_node = app.second_node().await;
    let meta = || keyward_app::RequestMeta {
        correlation_id: uuid::Uuid::new_v4().to_string(),
        ip_address: None,
        user_agent: None,
    };
    let view = other_node.sign_in_view(DOMAIN, None, None, meta()).await.expect("view");
    let cookie = view.set_session.clone().expect("cookie");
    let form = |step: &str, fill: keyward_app::SignInForm| keyward_app::SignInForm {
        step: step.into(),
        csrf: keyward_app::csrf_token(&cookie),
        ..fill
    };
    let username = form("username", keyward_app::SignInForm { username: Some(ADMIN_UPN.into()), ..Default::default() });
    other_node.sign_in_submit(DOMAIN, Some(&cookie), None, username, meta()).await.expect("username");
    let password = form(
        "password",
        keyward_app::SignInForm {
            password: Some(keyward_core::secret::Secret::new(ADMIN_PASSWORD)),
            ..Default::default()
        },
    );
    let view = other_node.sign_in_submit(DOMAIN, Some(&cookie), None, password, meta()).await.expect("password");
    match view.page {
        Some(keyward_app::SignInPage::Password { error: Some(error), .. }) => {
            assert!(error.contains("temporarily locked"), "{error}")
        }
        other => panic!("the second node let a locked account in: {other:?}"),
    }
    app.clock.advance(Duration::seconds(61));
    let page = browser.submit(&locked, "password", &[("current-password", ADMIN_PASSWORD)], &[]).await;
    assert_eq!(page.title(), "My account", "{}", page.text());
    let admin_log = sign_ins(&app, ADMIN_UPN).await;
    assert_eq!(codes(&admin_log), vec![50126, 50126, 50126, 50053, 50053, 0]);
    // A known user's failed sign-ins name the user, as Entra's log does.
    assert_eq!(admin_log[0].1["userDisplayName"], "Global Administrator", "{}", admin_log[0].1);
    assert!(admin_log[0].1["userId"].is_string(), "{}", admin_log[0].1);

    // An unknown account gets the same message as a wrong password and is logged without a user id.
    let mut other = Browser::new(&app.base_url);
    let unknown = first_factor(&mut other, &format!("nobody@{DOMAIN}"), "whatever-1").await;
    assert!(unknown.text().contains("Your account or password is incorrect"));
    let log = sign_ins(&app, &format!("nobody@{DOMAIN}")).await;
    assert_eq!(codes(&log), vec![50034], "logged as Entra logs an unknown account (the page says no more)");
    assert!(log[0].1["userId"].is_null());
    assert_eq!(log[0].1["status"]["failureReason"], "The user account does not exist in the tenant directory.");
}

async fn remembered_device_until_mfa_sessions_are_revoked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.set_security_defaults(true).await;
    app.set_sign_in_policy(&json!({"rememberMfaOnDeviceDays": 14})).await;
    let (adele, upn, mut browser, secret) = with_authenticator_app(&app, "adele").await;

    app.clock.advance(Duration::seconds(30));
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    assert!(page.text().contains("Don't ask again for 14 days"), "{}", page.text());
    let account =
        browser.submit(&page, "mfa", &[("one-time-code", &code_now(&app, &secret))], &[("remember", "on")]).await;
    assert_eq!(account.title(), "My account");
    let device_cookie = account.set_cookies.iter().find(|it| it.starts_with("keyward-device=")).expect("device cookie");
    assert!(device_cookie.contains("Max-Age=1209600") && device_cookie.contains("HttpOnly"), "{device_cookie}");
    sign_out(&mut browser, &account).await;

    // The remembered device skips the code.
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    assert_eq!(page.title(), "My account", "{}", page.text());
    sign_out(&mut browser, &page).await;
    let log = sign_ins(&app, &upn).await;
    assert_eq!(
        log.last().map(|it| it.1["authenticationDetails"][1]["authenticationMethod"].clone()),
        Some(json!("Previously satisfied"))
    );

    // Another user on the same browser gets no benefit from Adele's device.
    create_user(&app, "megan", false).await;
    let megan_page = first_factor(&mut browser, &format!("megan@{DOMAIN}"), PASSWORD).await;
    assert_eq!(megan_page.title(), "More information required", "{}", megan_page.text());
    browser.cookies.retain(|name, _| name != "keyward-session");

    // Revoke MFA sessions: the device no longer counts.
    let reply = app.post(&format!("/v1.0/users/{adele}/authentication/revokeMfaSessions"), &json!({})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    app.clock.advance(Duration::seconds(30));
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    assert_eq!(page.title(), "Enter code", "{}", page.text());
    let audit =
        app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter=targetResources/any(t:t/id eq '{adele}')")).await;
    assert!(
        audit.text.contains("StrongAuthenticationRequirement") && audit.text.contains("RememberDevicesNotIssuedBefore"),
        "{}",
        audit.text
    );
    assert!(!audit.text.contains(&secret), "TOTP secrets never reach the audit log");
}

async fn reregistration_interrupt_and_revoked_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.set_security_defaults(true).await;
    let adele = create_user(&app, "adele", false).await;
    let upn = format!("adele@{DOMAIN}");
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    let (account, _) = register_totp(&app, &mut browser, page).await;

    // A session issued before revokeSignInSessions is refused.
    app.clock.advance(Duration::seconds(1));
    let reply = app.post(&format!("/v1.0/users/{adele}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["value"], json!(true));
    assert!(reply.body["@odata.context"].as_str().is_some_and(|it| it.ends_with("$metadata#Edm.Boolean")));
    app.clock.advance(Duration::seconds(1));
    let ended = browser.get(&login_path()).await;
    assert_eq!(ended.title(), "Sign in");
    assert!(ended.text().contains("Your session has ended"), "{}", ended.text());
    // A form from the revoked session does nothing either.
    let stale = browser.submit(&account, "add_totp", &[], &[]).await;
    assert_ne!(stale.title(), "Set up your authenticator app");

    // Require re-registration: the next sign-in shows the interrupt, which cannot be skipped.
    let reply = app.post(&format!("/v1.0/users/{adele}/authentication/requireMfaReregistration"), &json!({})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    assert_eq!(page.title(), "More information required", "{}", page.text());
    let reload = browser.get(&format!("{}?return_to=/{DOMAIN}/login", login_path())).await;
    assert_eq!(reload.title(), "More information required");
    // Posting another step's form is ignored: the interrupt is shown again.
    let csrf = page.form("more_info").expect("form").inputs.iter().find(|it| it.0 == "csrf").expect("csrf").1.clone();
    let action = page.form("more_info").expect("form").action;
    let forged = browser
        .post_form(&action, &[("csrf".into(), csrf), ("step".into(), "mfa".into()), ("code".into(), "123456".into())])
        .await;
    assert_eq!(forged.title(), "More information required", "{}", forged.text());
    // And a form without the session's CSRF token is refused.
    let no_csrf = browser.post_form(&action, &[("step".into(), "more_info".into())]).await;
    assert_eq!(no_csrf.status, StatusCode::BAD_REQUEST);
    let (account, _) = register_totp(&app, &mut browser, reload).await;
    assert!(account.text().contains("Signed in as"));
    let log = sign_ins(&app, &upn).await;
    assert_eq!(codes(&log), vec![50079, 0, 50173, 50079, 0], "{log:?}");

    let audit = app
        .get(&format!(
            "/v1.0/auditLogs/directoryAudits?$filter=targetResources/any(t:t/id eq '{adele}') and activityDisplayName eq 'Update StsRefreshTokenValidFrom Timestamp'"
        ))
        .await;
    assert_eq!(audit.body["value"].as_array().map(Vec::len), Some(1), "{}", audit.text);
    let audit = app
        .get(&format!("/v1.0/auditLogs/directoryAudits?$filter=targetResources/any(t:t/id eq '{adele}') and activityDisplayName eq 'Update user'"))
        .await;
    assert!(audit.text.contains("StrongAuthenticationMethod"), "{}", audit.text);
}

async fn forced_password_change_disabled_accounts_and_log_filters(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let lee = create_user(&app, "lee", true).await;
    let upn = format!("lee@{DOMAIN}");
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    assert_eq!(page.title(), "Update your password", "{}", page.text());
    assert!(page.html.contains("autocomplete=\"new-password\""));
    let weak = browser
        .submit(&page, "change_password", &[("current-password", PASSWORD), ("new-password", "password1")], &[])
        .await;
    assert_eq!(weak.title(), "Update your password");
    assert!(weak.text().contains("too common") || weak.text().contains("must"), "{}", weak.text());
    let new_password = "Orchard-Velvet-Compass-31";
    let done = browser
        .submit(&weak, "change_password", &[("current-password", PASSWORD), ("new-password", new_password)], &[])
        .await;
    assert_eq!(done.title(), "My account", "{}", done.text());
    sign_out(&mut browser, &done).await;
    let again = first_factor(&mut browser, &upn, new_password).await;
    assert_eq!(again.title(), "My account", "the new password works and is not asked to change again");

    let before = app.token_for(&upn).await;
    app.clock.advance(Duration::seconds(1));
    let reply = app.patch(&format!("/v1.0/users/{lee}"), &json!({"accountEnabled": false})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    app.clock.advance(Duration::seconds(1));
    let mut other = Browser::new(&app.base_url);
    let disabled = first_factor(&mut other, &upn, new_password).await;
    assert!(disabled.text().contains("disabled"), "{}", disabled.text());
    // Enabling the account again does not bring back what was issued before it was disabled.
    let reply = app.patch(&format!("/v1.0/users/{lee}"), &json!({"accountEnabled": true})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let ended = browser.get(&login_path()).await;
    assert!(
        ended.text().contains("Your session has ended"),
        "disabling the account ended its sessions: {}",
        ended.text()
    );
    assert_eq!(app.as_user(&before).get("/v1.0/me").await.status, StatusCode::UNAUTHORIZED);
    let reply = app.patch(&format!("/v1.0/users/{lee}"), &json!({"accountEnabled": false})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(codes(&sign_ins(&app, &upn).await), vec![50055, 0, 0, 50057, 50173], "the old session, ended");

    // $filter on userId, status/errorCode and createdDateTime.
    let filtered =
        app.get(&format!("/v1.0/auditLogs/signIns?$filter=userId eq '{lee}' and status/errorCode eq 0")).await;
    assert_eq!(filtered.body["value"].as_array().map(Vec::len), Some(2), "{}", filtered.text);
    let future =
        (app.app.now() + Duration::days(1)).format(&time::format_description::well_known::Rfc3339).expect("time");
    let none = app.get(&format!("/v1.0/auditLogs/signIns?$filter=createdDateTime ge {future}")).await;
    assert_eq!(none.body["value"].as_array().map(Vec::len), Some(0), "{}", none.text);
    let paged = app.get("/v1.0/auditLogs/signIns?$top=2").await;
    assert_eq!(paged.body["value"].as_array().map(Vec::len), Some(2));
    let next = paged.body["@odata.nextLink"].as_str().expect("nextLink").to_owned();
    let second = app.get(&next).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_ne!(second.body["value"][0]["id"], paged.body["value"][0]["id"]);
    let bad = app.get("/v1.0/auditLogs/signIns?$filter=location/city eq 'Oslo'").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"]["code"], "Request_UnsupportedQuery");
    // Only report readers may read it.
    let token = app.token_for(&upn).await;
    let reply = app
        .send(
            reqwest::Method::PATCH,
            &format!("/v1.0/users/{lee}"),
            Some(&app.admin_token),
            Some(&json!({"accountEnabled": true})),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let denied = app.send(reqwest::Method::GET, "/v1.0/auditLogs/signIns", Some(&token), None, &[]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.text);
}

async fn temporary_access_pass_policy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let path = "/v1.0/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/TemporaryAccessPass";
    let reply = app.get(path).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["@odata.type"], "#microsoft.graph.temporaryAccessPassAuthenticationMethodConfiguration");
    assert_eq!(reply.body["id"], "TemporaryAccessPass");
    assert_eq!(reply.body["state"], "enabled");
    for (key, value) in [
        ("defaultLifetimeInMinutes", json!(60)),
        ("defaultLength", json!(8)),
        ("minimumLifetimeInMinutes", json!(60)),
        ("maximumLifetimeInMinutes", json!(480)),
        ("isUsableOnce", json!(false)),
    ] {
        assert_eq!(reply.body[key], value, "{key}");
    }
    for bad in [
        json!({"minimumLifetimeInMinutes": 5}),
        json!({"maximumLifetimeInMinutes": 50000}),
        json!({"defaultLifetimeInMinutes": 600}),
        json!({"defaultLength": 49}),
        json!({"state": "maybe"}),
        json!({"colour": "blue"}),
    ] {
        let reply = app.patch(path, &bad).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {}", reply.text);
        assert_eq!(reply.body["error"]["code"], "Request_BadRequest");
    }
    assert_eq!(app.get(path).await.body["maximumLifetimeInMinutes"], json!(480), "refused patches change nothing");
    let reply =
        app.patch(path, &json!({"maximumLifetimeInMinutes": 1440, "defaultLength": 12, "isUsableOnce": true})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let reply = app.get(path).await;
    assert_eq!(
        (reply.body["maximumLifetimeInMinutes"].clone(), reply.body["defaultLength"].clone()),
        (json!(1440), json!(12))
    );
    let audit = app
        .get("/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Authentication Methods Policy Update'")
        .await;
    assert_eq!(audit.body["value"].as_array().map(Vec::len), Some(1), "{}", audit.text);
    // The record names what changed, and only that: no other setting of the tenant's.
    let changed: Vec<&str> = audit.body["value"][0]["targetResources"][0]["modifiedProperties"]
        .as_array()
        .expect("modifiedProperties")
        .iter()
        .filter_map(|it| it["displayName"].as_str())
        .collect();
    assert!(changed.iter().all(|it| it.starts_with("TemporaryAccessPass.")), "{}", audit.text);
    assert_eq!(changed.len(), 3, "{}", audit.text);
    assert!(!audit.text.contains("lockout"), "the sign-in policy's settings stay out: {}", audit.text);
    create_user(&app, "adele", false).await;
    let token = app.token_for(&format!("adele@{DOMAIN}")).await;
    let denied = app.send(reqwest::Method::PATCH, path, Some(&token), Some(&json!({"defaultLength": 10})), &[]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.text);
}

async fn per_user_mfa_and_the_code_attempt_limit(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let adele = create_user(&app, "adele", false).await;
    let upn = format!("adele@{DOMAIN}");
    let path = format!("/beta/users/{adele}/authentication/requirements");
    let reply = app.get(&path).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["perUserMfaState"], "disabled");
    assert_eq!(reply.body["@odata.type"], "#microsoft.graph.strongAuthenticationRequirements");
    assert_eq!(
        app.get(&format!("/v1.0/users/{adele}/authentication/requirements")).await.status,
        StatusCode::BAD_REQUEST
    );
    let bad = app.patch(&path, &json!({"perUserMfaState": "sometimes"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);

    // Authentication Administrators manage methods, never per-user MFA.
    let helpdesk = create_user(&app, "helpdesk", false).await;
    app.assign_role(&helpdesk, keyward_core::authz::roles::AUTHENTICATION_ADMINISTRATOR, "/").await;
    let token = app.token_for(&format!("helpdesk@{DOMAIN}")).await;
    let body = json!({"perUserMfaState": "enabled"});
    let denied = app.send(reqwest::Method::PATCH, &path, Some(&token), Some(&body), &[]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.text);
    assert_eq!(denied.body["error"]["code"], "Authorization_RequestDenied");

    let correlation = "0d6c1f4e-2b7a-4c59-8e3d-5a4b3c2d1e0f";
    let reply = app
        .send(reqwest::Method::PATCH, &path, Some(&app.admin_token), Some(&body), &[("client-request-id", correlation)])
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let audit = app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter=correlationId eq '{correlation}'")).await;
    let activities = audit.activities();
    assert!(
        activities.contains(&"Enable Strong Authentication") && activities.contains(&"Update user"),
        "{activities:?}"
    );
    assert!(audit.text.contains("StrongAuthenticationRequirement"), "{}", audit.text);

    // Per-user MFA enabled and no method: the interrupt; registering moves enabled to enforced.
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    let (account, secret) = register_totp(&app, &mut browser, page).await;
    assert_eq!(app.get(&path).await.body["perUserMfaState"], "enforced");
    sign_out(&mut browser, &account).await;

    // Five wrong codes lock the code step; even the right code waits for the lockout to pass.
    app.clock.advance(Duration::seconds(30));
    let mut page = first_factor(&mut browser, &upn, PASSWORD).await;
    for _ in 0..5 {
        page = browser.submit(&page, "mfa", &[("one-time-code", "999999")], &[]).await;
        assert_eq!(page.title(), "Enter code");
    }
    let locked = browser.submit(&page, "mfa", &[("one-time-code", &code_now(&app, &secret))], &[]).await;
    assert!(locked.text().contains("Too many wrong codes"), "{}", locked.text());
    app.clock.advance(Duration::seconds(61));
    let account = browser.submit(&locked, "mfa", &[("one-time-code", &code_now(&app, &secret))], &[]).await;
    assert_eq!(account.title(), "My account", "{}", account.text());
    let log = codes(&sign_ins(&app, &upn).await);
    assert_eq!(log, vec![50079, 0, 50076, 500121, 500121, 500121, 500121, 500121, 500121, 0]);
}

/// An account disabled, or its sessions revoked, while the user types the code: the right code
/// gives no session and no remembered device, the log says why, and the next sign-in works once
/// the account is enabled again.
async fn an_account_changed_while_the_code_is_typed_is_not_signed_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.set_security_defaults(true).await;
    app.set_sign_in_policy(&json!({"rememberMfaOnDeviceDays": 14})).await;
    let (adele, upn, mut browser, secret) = with_authenticator_app(&app, "adele").await;
    let remember = [("remember", "on")];
    let is_device = |cookie: &String| cookie.starts_with("keyward-device=");

    // Disabled between the password and the code.
    app.clock.advance(Duration::seconds(30));
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    assert_eq!(page.title(), "Enter code", "{}", page.text());
    let reply = app.patch(&format!("/v1.0/users/{adele}"), &json!({"accountEnabled": false})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let ended = browser.submit(&page, "mfa", &[("one-time-code", &code_now(&app, &secret))], &remember).await;
    assert_eq!(ended.title(), "Sign in", "{}", ended.text());
    assert!(ended.text().contains("Your session has ended"), "{}", ended.text());
    assert!(!ended.set_cookies.iter().any(is_device), "no device remembered: {:?}", ended.set_cookies);
    // A kept session would be found ended here, with the same message.
    let again = browser.get(&login_path()).await;
    assert_eq!(again.title(), "Sign in", "{}", again.text());
    assert!(!again.text().contains("Your session has ended"), "the session was kept: {}", again.text());

    // Sessions revoked between the password and the code.
    let reply = app.patch(&format!("/v1.0/users/{adele}"), &json!({"accountEnabled": true})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    app.clock.advance(Duration::seconds(30));
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    assert_eq!(page.title(), "Enter code", "{}", page.text());
    app.clock.advance(Duration::seconds(1));
    let reply = app.post(&format!("/v1.0/users/{adele}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let ended = browser.submit(&page, "mfa", &[("one-time-code", &code_now(&app, &secret))], &remember).await;
    assert_eq!(ended.title(), "Sign in", "{}", ended.text());
    assert!(ended.text().contains("Your session has ended"), "{}", ended.text());
    assert!(!ended.set_cookies.iter().any(is_device), "no device remembered: {:?}", ended.set_cookies);

    // Nothing changed meanwhile: the code signs in, and the device is remembered.
    app.clock.advance(Duration::seconds(30));
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    let account = browser.submit(&page, "mfa", &[("one-time-code", &code_now(&app, &secret))], &remember).await;
    assert_eq!(account.title(), "My account", "{}", account.text());
    assert!(account.set_cookies.iter().any(is_device), "{:?}", account.set_cookies);
    let log = codes(&sign_ins(&app, &upn).await);
    assert_eq!(log, vec![50079, 0, 50076, 50057, 50076, 50173, 50076, 0], "{log:?}");
}

/// How many times `id` was recorded registering a method.
async fn registrations(app: &TestApp, id: &str) -> usize {
    let audit = app.audit_for(id).await;
    audit.iter().filter(|it| it.activity_display_name == "User registered security info").count()
}

/// The authenticator app's registration page, reached after the password.
async fn registration_page(browser: &mut Browser, upn: &str) -> Page {
    let page = first_factor(browser, upn, PASSWORD).await;
    assert_eq!(page.title(), "More information required", "{}", page.text());
    let setup = browser.submit(&page, "more_info", &[], &[]).await;
    assert_eq!(setup.title(), "Set up your authenticator app", "{}", setup.text());
    setup
}

/// Submits the registration page `setup` with a right code and checks that the sign-in ended
/// with no app added for `id`.
async fn refused_registration(app: &TestApp, browser: &mut Browser, setup: &Page, id: &str) {
    let secret = setup.by_id("secret").expect("secret");
    let ended = browser.submit(setup, "register_totp", &[("one-time-code", &code_now(app, &secret))], &[]).await;
    assert_eq!(ended.title(), "Sign in", "{}", ended.text());
    assert!(ended.text().contains("Your session has ended"), "{}", ended.text());
    let listed = app.get(&format!("/v1.0/users/{id}/authentication/softwareOathMethods")).await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(0), "an app was added: {}", listed.text);
    assert_eq!(registrations(app, id).await, 0, "a registration was recorded");
}

async fn an_account_changed_while_a_method_is_registered_gets_none(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.set_security_defaults(true).await;
    let adele = create_user(&app, "adele", false).await;
    let upn = format!("adele@{DOMAIN}");
    let mut browser = Browser::new(&app.base_url);

    // Disabled while the registration page was open: no app is added, the sign-in ends.
    let setup = registration_page(&mut browser, &upn).await;
    let reply = app.patch(&format!("/v1.0/users/{adele}"), &json!({"accountEnabled": false})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    refused_registration(&app, &mut browser, &setup, &adele).await;

    // Sessions revoked while the page was open: likewise.
    let reply = app.patch(&format!("/v1.0/users/{adele}"), &json!({"accountEnabled": true})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    app.clock.advance(Duration::seconds(30));
    let setup = registration_page(&mut browser, &upn).await;
    app.clock.advance(Duration::seconds(1));
    let reply = app.post(&format!("/v1.0/users/{adele}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    refused_registration(&app, &mut browser, &setup, &adele).await;

    // Nothing changed meanwhile: the app is added and the user signed in.
    app.clock.advance(Duration::seconds(30));
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    let (account, _) = register_totp(&app, &mut browser, page).await;
    assert_eq!(account.title(), "My account", "{}", account.text());
    let listed = app.get(&format!("/v1.0/users/{adele}/authentication/softwareOathMethods")).await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1), "{}", listed.text);
    assert_eq!(registrations(&app, &adele).await, 1);
    let log = codes(&sign_ins(&app, &upn).await);
    assert!(log.contains(&50057) && log.contains(&50173) && log.last() == Some(&0), "{log:?}");
}

async fn account_steps_are_guarded(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.set_sign_in_policy(&json!({"lockoutThreshold": 3})).await;
    let adele = create_user(&app, "adele", false).await;
    let mut browser = Browser::new(&app.base_url);

    // The name is echoed as typed, so the page does not tell whether the account exists.
    let page = browser.get(&login_path()).await;
    let page = browser.submit(&page, "username", &[("username", "ADELE@Contoso.Test")], &[]).await;
    assert!(page.text().contains("ADELE@Contoso.Test"), "{}", page.text());
    let flow_cookie = browser.cookies.get("keyward-session").cloned().expect("flow cookie");

    // Signing in replaces the cookie: one planted before sign-in is worth nothing after it.
    let account = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    assert_eq!(account.title(), "My account", "{}", account.text());
    let session_cookie = browser.cookies.get("keyward-session").cloned().expect("session cookie");
    assert_ne!(session_cookie, flow_cookie);
    let mut planted = Browser::new(&app.base_url);
    planted.cookies.insert("keyward-session".into(), flow_cookie);
    assert_eq!(planted.get(&login_path()).await.title(), "Sign in");

    // Wrong current passwords on the account page count toward smart lockout.
    let change = browser.submit(&account, "change_password", &[], &[]).await;
    assert_eq!(change.title(), "Update your password");
    let mut page = change.clone();
    for attempt in 0..4 {
        let guess = format!("Guess-{attempt}-Harbour-Lantern");
        page = browser
            .submit(
                &page,
                "change_password",
                &[("current-password", &guess), ("new-password", "Orchard-Velvet-31!")],
                &[],
            )
            .await;
    }
    assert!(page.text().contains("temporarily locked"), "{}", page.text());
    // Cancel goes back to the account page.
    let back = browser.submit(&page, "cancel", &[], &[]).await;
    assert_eq!(back.title(), "My account", "{}", back.text());
    let log = codes(&sign_ins(&app, &format!("adele@{DOMAIN}")).await);
    assert_eq!(log, vec![0, 50126, 50126, 50126, 50053]);

    // A step started from the account page dies with the session.
    app.clock.advance(Duration::minutes(11));
    let setup = browser.submit(&back, "add_totp", &[], &[]).await;
    assert_eq!(setup.title(), "My account", "a sign-in older than 10 minutes may not add a method");
    assert!(setup.text().contains("within the last 10 minutes"), "{}", setup.text());
    let fresh_browser = &mut Browser::new(&app.base_url);
    let account = first_factor(fresh_browser, &format!("adele@{DOMAIN}"), PASSWORD).await;
    let setup = fresh_browser.submit(&account, "add_totp", &[], &[]).await;
    assert_eq!(setup.title(), "Set up your authenticator app", "{}", setup.text());
    app.clock.advance(Duration::seconds(1));
    let reply = app.post(&format!("/v1.0/users/{adele}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(reply.status, StatusCode::OK);
    app.clock.advance(Duration::seconds(1));
    let secret = setup.by_id("secret").expect("secret");
    let refused =
        fresh_browser.submit(&setup, "register_totp", &[("one-time-code", &code_now(&app, &secret))], &[]).await;
    assert_eq!(refused.title(), "Sign in", "{}", refused.text());
    assert!(refused.text().contains("Your session has ended"), "{}", refused.text());
    // A registration page left open past the ten minutes of recent proof cannot add the app.
    let late_browser = &mut Browser::new(&app.base_url);
    let account = first_factor(late_browser, &format!("adele@{DOMAIN}"), PASSWORD).await;
    let setup = late_browser.submit(&account, "add_totp", &[], &[]).await;
    assert_eq!(setup.title(), "Set up your authenticator app", "{}", setup.text());
    app.clock.advance(Duration::minutes(11));
    let secret = setup.by_id("secret").expect("secret");
    let late = late_browser.submit(&setup, "register_totp", &[("one-time-code", &code_now(&app, &secret))], &[]).await;
    assert_eq!(late.title(), "My account", "{}", late.text());
    assert!(late.text().contains("within the last 10 minutes"), "{}", late.text());
    let audit = app
        .get(&format!(
            "/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'User registered security info' and targetResources/any(t:t/id eq '{adele}')"
        ))
        .await;
    assert_eq!(audit.body["value"].as_array().map(Vec::len), Some(0), "no method was added by the revoked session");
}

/// A user's own password change ends their other sessions but not the one that made it, on a
/// clock that moves between two readings in one request, as a real one does: the forced change
/// at sign-in completes the sign-in, and the change on the account page keeps its page signed in.
async fn an_own_password_change_keeps_its_own_session_on_a_moving_clock(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    create_user(&app, "rowan", true).await;
    let upn = format!("rowan@{DOMAIN}");
    app.clock.tick(Duration::milliseconds(1));
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    assert_eq!(page.title(), "Update your password", "{}", page.text());
    app.clock.advance(Duration::seconds(5));
    let changed = "Orchard-Velvet-Compass-31";
    let done = browser
        .submit(&page, "change_password", &[("current-password", PASSWORD), ("new-password", changed)], &[])
        .await;
    assert_eq!(done.title(), "My account", "the forced change completes the sign-in: {}", done.text());
    assert_eq!(browser.get(&login_path()).await.title(), "My account", "and the session it made holds");

    // Another browser signed in before the next change is signed out by it; the one that made
    // the change is not.
    let mut other = Browser::new(&app.base_url);
    assert_eq!(first_factor(&mut other, &upn, changed).await.title(), "My account");
    app.clock.advance(Duration::seconds(5));
    let form = browser.submit(&done, "change_password", &[], &[]).await;
    assert_eq!(form.title(), "Update your password", "{}", form.text());
    let again = "Granite-Harbour-Lantern-58";
    let account =
        browser.submit(&form, "change_password", &[("current-password", changed), ("new-password", again)], &[]).await;
    assert_eq!(account.title(), "My account", "{}", account.text());
    assert!(account.text().contains("Your password was changed."), "{}", account.text());
    app.clock.advance(Duration::seconds(1));
    let still = browser.get(&login_path()).await;
    assert_eq!(still.title(), "My account", "the page's own session continues: {}", still.text());
    let ended = other.get(&login_path()).await;
    assert!(ended.text().contains("Your session has ended"), "the other session ends: {}", ended.text());
    // The session the change kept goes on from the cut-off itself: the access token of a code it
    // gets (signed in at the cut-off, to the microsecond) is accepted by the API.
    let redirected =
        browser.get(&keyward_testkit::cli_flow::authorize_path("openid https://graph.microsoft.com/.default")).await;
    assert!(redirected.path.contains('?'), "a redirect with a code: {} {}", redirected.title(), redirected.text());
    let tokens = app
        .redeem_code(&redirected.path, keyward_testkit::cli_flow::REDIRECT, keyward_testkit::cli_flow::VERIFIER)
        .await;
    let token = tokens["access_token"].as_str().unwrap_or_else(|| panic!("tokens: {tokens}"));
    let me = app.send(reqwest::Method::GET, "/v1.0/me", Some(token), None, &[]).await;
    assert_eq!(me.status, StatusCode::OK, "a token of the session the change kept: {}", me.text);

    // An administrator's revocation while the forced change's page is open ends that sign-in:
    // the change does not carry it past the revocation, and nothing is changed.
    // The current password typed into that change was right: it does not count toward smart
    // lockout (three failures lock here; two wrong guesses come before it).
    app.lock_out_after_three_failures().await;
    let sky = create_user(&app, "sky", true).await;
    let sky_upn = format!("sky@{DOMAIN}");
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, &sky_upn, PASSWORD).await;
    assert_eq!(page.title(), "Update your password", "{}", page.text());
    let mut guesser = Browser::new(&app.base_url);
    let guess = first_factor(&mut guesser, &sky_upn, "Wrong-guess-Harbour-1").await;
    let guess = guesser.submit(&guess, "password", &[("current-password", "Wrong-guess-Harbour-2")], &[]).await;
    assert!(guess.text().contains("Your account or password is incorrect"), "{}", guess.text());
    app.clock.advance(Duration::seconds(1));
    let reply = app.post(&format!("/v1.0/users/{sky}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    app.clock.advance(Duration::seconds(1));
    let refused = browser
        .submit(&page, "change_password", &[("current-password", PASSWORD), ("new-password", changed)], &[])
        .await;
    assert!(refused.text().contains("Your session has ended"), "{}", refused.text());
    let mut again = Browser::new(&app.base_url);
    let page = first_factor(&mut again, &sky_upn, PASSWORD).await;
    assert_eq!(page.title(), "Update your password", "the password is unchanged: {}", page.text());
}

/// A sign-in that finishes while `revokeSignInSessions` is in flight is ended by it: the
/// revocation holds the user's row from before it reads its cut-off until it commits, and the
/// sign-in's last step reads that row for update, so it waits and then sees the cut-off
/// (PostgreSQL; on SQLite writers take turns for the whole transaction, so nothing finishes in
/// between). The revocation is held at the audit chain head, which it takes last.
async fn a_sign_in_finished_while_a_revocation_is_in_flight_is_ended_by_it(backend: Backend) {
    use sqlx::Connection;
    if backend == Backend::Sqlite {
        return;
    }
    let app = TestApp::spawn(backend).await;
    let lee = create_user(&app, "lee", false).await;
    let upn = format!("lee@{DOMAIN}");
    let tenant = app.app.find_tenant(DOMAIN).await.expect("tenant").expect("tenant").id;
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(&login_path()).await;
    let page = browser.submit(&page, "username", &[("username", &upn)], &[]).await;
    assert_eq!(page.title(), "Enter password", "{}", page.text());

    let mut other = sqlx::PgConnection::connect(&app.database_url).await.expect("open PostgreSQL");
    let mut held = other.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM audit_chain_heads WHERE tenant_id = $1 FOR UPDATE")
        .bind(tenant.as_str())
        .execute(&mut *held)
        .await
        .expect("hold the audit chain head");
    app.clock.advance(Duration::seconds(1));
    let revoking = {
        let (client, url, token) = (
            app.client.clone(),
            format!("{}/v1.0/users/{lee}/revokeSignInSessions", app.base_url),
            app.admin_token.clone(),
        );
        tokio::spawn(async move {
            client.post(url).bearer_auth(token).json(&json!({})).send().await.expect("send").status()
        })
    };
    crate::security::until_a_session_waits_for_a_lock(&app).await;
    app.clock.advance(Duration::seconds(5));
    app.clock.tick(Duration::milliseconds(1));
    let signing_in = {
        let (mut browser, page) = (browser.clone(), page.clone());
        tokio::spawn(
            async move { browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await.text() },
        )
    };
    // Until the sign-in waits beside the revocation (or, wrongly, finishes without waiting).
    let mut watcher = sqlx::PgConnection::connect(&app.database_url).await.expect("open PostgreSQL");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("count");
        if waiting >= 2 || signing_in.is_finished() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the sign-in neither waited nor finished within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    held.rollback().await.expect("rollback");
    assert_eq!(revoking.await.expect("task"), StatusCode::OK, "the revocation completes once the head is free");
    let answer = signing_in.await.expect("task");
    assert!(answer.contains("Your session has ended"), "the sign-in survived the revocation: {answer}");
    other.close().await.expect("close");
    watcher.close().await.expect("close");
}

/// A sign-in's start only moves forward: a save from a page loaded before a password change
/// moved it (another tab of the same session) keeps the later start.
async fn a_sign_ins_start_only_moves_forward(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let now = app.app.now();
    let now = now.replace_microsecond(now.microsecond()).expect("stored in microseconds");
    let mut session = keyward_store::BrowserSession {
        id_sha256: vec![7; 32],
        tenant_id: app.tenant_id().await,
        user_id: None,
        stage: keyward_core::signin::Stage::Password,
        username: None,
        return_to: String::new(),
        created: now,
        expires_at: now + Duration::minutes(30),
        authenticated_at: None,
        mfa_at: None,
        methods: keyward_core::signin::Amr::default(),
        pass_expires_at: None,
        pending_secret: None,
        correlation_id: "tabs".into(),
        portal_seen_at: None,
    };
    let store = app.app.store();
    let save = |session: keyward_store::BrowserSession| async move {
        let mut tx = store.write().await.expect("tx");
        tx.update_browser_session(&session).await.expect("save");
        tx.commit().await.expect("commit");
    };
    let mut tx = store.write().await.expect("tx");
    tx.insert_browser_session(&session).await.expect("insert");
    tx.commit().await.expect("commit");
    let stale = session.clone();
    session.created = now + Duration::seconds(5);
    save(session.clone()).await;
    save(stale).await;
    let read = store.read().await.expect("tx").get_browser_session(&session.id_sha256).await.expect("read");
    assert_eq!(read.map(|it| it.created), Some(session.created), "the stale tab moved the start back");
}

/// A Temporary Access Pass for `id` from the administrator: (its id, the pass).
async fn pass_for(app: &TestApp, id: &str) -> (String, String) {
    let path = format!("/v1.0/users/{id}/authentication/temporaryAccessPassMethods");
    let reply = app.post(&path, &json!({"isUsableOnce": false})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let pass = reply.body["temporaryAccessPass"].as_str().expect("pass").to_owned();
    (reply.body["id"].as_str().expect("id").to_owned(), pass)
}

/// A password alone adds no method beside one the user has but cannot sign in with here (a
/// phone): the registration interrupt sends them for a Temporary Access Pass, with which it
/// registers; a pass deleted while its registration page is open adds nothing.
async fn a_password_alone_adds_no_method_beside_a_phone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.set_security_defaults(true).await;
    let adele = create_user(&app, "adele", false).await;
    let upn = format!("adele@{DOMAIN}");
    let phone = json!({"phoneNumber": "+1 2065550100", "phoneType": "mobile"});
    let added = app.post(&format!("/v1.0/users/{adele}/authentication/phoneMethods"), &phone).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let apps = async || {
        let listed = app.get(&format!("/v1.0/users/{adele}/authentication/softwareOathMethods")).await;
        listed.body["value"].as_array().map(Vec::len).expect("value")
    };

    // The password is right, but it registers nothing: the page says to get a pass.
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, &upn, PASSWORD).await;
    assert_eq!(page.title(), "Enter password", "{}", page.text());
    assert!(page.text().contains("ask your administrator for a Temporary Access Pass"), "{}", page.text());
    // Nor does a form for the interrupt's step sent anyway.
    let form = page.form("password").expect("the password form");
    let csrf = form.inputs.iter().find(|it| it.0 == "csrf").expect("csrf").1.clone();
    let forged = browser.post_form(&form.action, &[("csrf".into(), csrf), ("step".into(), "more_info".into())]).await;
    assert_eq!(forged.title(), "Enter password", "{}", forged.text());
    assert_eq!(apps().await, 0);

    // With a pass: the interrupt. The pass deleted while the app's page is open adds no app.
    let (pass_id, pass) = pass_for(&app, &adele).await;
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, &upn, &pass).await;
    assert_eq!(page.title(), "More information required", "{}", page.text());
    let setup = browser.submit(&page, "more_info", &[], &[]).await;
    assert_eq!(setup.title(), "Set up your authenticator app", "{}", setup.text());
    let path = format!("/v1.0/users/{adele}/authentication/temporaryAccessPassMethods/{pass_id}");
    assert_eq!(app.delete(&path).await.status, StatusCode::NO_CONTENT);
    let secret = setup.by_id("secret").expect("secret");
    let refused = browser.submit(&setup, "register_totp", &[("one-time-code", &code_now(&app, &secret))], &[]).await;
    assert!(refused.text().contains("Temporary Access Pass has expired or was deleted"), "{}", refused.text());
    assert_eq!(apps().await, 0);
    assert_eq!(registrations(&app, &adele).await, 0);

    // A new pass registers the app, for as long as the pass lasts (an hour here), not only in
    // the ten minutes a signed-in session's MFA counts for.
    app.clock.advance(Duration::seconds(30));
    let (_, pass) = pass_for(&app, &adele).await;
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, &upn, &pass).await;
    app.clock.advance(Duration::minutes(15));
    let (account, _) = register_totp(&app, &mut browser, page).await;
    assert_eq!(account.title(), "My account", "{}", account.text());
    assert_eq!(apps().await, 1);
    let log = codes(&sign_ins(&app, &upn).await);
    assert_eq!(log.first(), Some(&50079), "{log:?}");
    assert_eq!(log.last(), Some(&0), "{log:?}");

    // An e-mail address is no second factor (re-registration keeps it): beside one, the
    // interrupt registers after the password, as after "Require re-register MFA".
    let bea = create_user(&app, "bea", false).await;
    let email = json!({"emailAddress": "bea@elsewhere.example"});
    let added = app.post(&format!("/v1.0/users/{bea}/authentication/emailMethods"), &email).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let mut browser = Browser::new(&app.base_url);
    let page = first_factor(&mut browser, &format!("bea@{DOMAIN}"), PASSWORD).await;
    let (account, _) = register_totp(&app, &mut browser, page).await;
    assert_eq!(account.title(), "My account", "{}", account.text());
}

/// A pass is stored as a MAC under the server's key, not as a plain hash that whoever reads the
/// database could reverse by trying every 8-character pass; a pass an earlier version stored as
/// its plain SHA-256 still signs in until it expires.
async fn a_stored_pass_cannot_be_tried_offline(backend: Backend) {
    use aws_lc_rs::digest::{SHA256, digest};
    let app = TestApp::spawn(backend).await;
    let adele = create_user(&app, "adele", false).await;
    let upn = format!("adele@{DOMAIN}");
    let (_, pass) = pass_for(&app, &adele).await;
    let id = keyward_core::ids::ObjectId::parse(&adele).expect("id");
    let read = async || {
        let mut tx = app.app.store().read().await.expect("read");
        tx.get_temporary_access_pass(&id).await.expect("pass").expect("stored")
    };
    let stored = read().await;
    assert_ne!(stored.pass_sha256, digest(&SHA256, pass.as_bytes()).as_ref(), "a plain hash");
    let mut browser = Browser::new(&app.base_url);
    assert_eq!(first_factor(&mut browser, &upn, &pass).await.title(), "My account");

    // As an earlier version stored it.
    let legacy = "Legacy-Pass-42";
    let old = keyward_store::TemporaryAccessPass {
        pass_sha256: digest(&SHA256, legacy.as_bytes()).as_ref().to_vec(),
        id: keyward_core::ids::ObjectId::parse("5f0f8c4e-1d2b-4c3a-9e8f-7a6b5c4d3e2f").expect("id"),
        ..stored
    };
    let mut tx = app.app.store().write().await.expect("write");
    tx.put_temporary_access_pass(&old).await.expect("put");
    tx.commit().await.expect("commit");
    let mut browser = Browser::new(&app.base_url);
    assert_eq!(first_factor(&mut browser, &upn, legacy).await.title(), "My account");
    let mut browser = Browser::new(&app.base_url);
    let wrong = first_factor(&mut browser, &upn, "Legacy-Pass-43").await;
    assert_eq!(wrong.title(), "Enter password", "{}", wrong.text());
}

keyward_testkit::on_both_backends!(
    account_steps_are_guarded,
    a_stored_pass_cannot_be_tried_offline,
    a_password_alone_adds_no_method_beside_a_phone,
    a_sign_ins_start_only_moves_forward,
    a_sign_in_finished_while_a_revocation_is_in_flight_is_ended_by_it,
    an_own_password_change_keeps_its_own_session_on_a_moving_clock,
    an_account_changed_while_the_code_is_typed_is_not_signed_in,
    an_account_changed_while_a_method_is_registered_gets_none,
    per_user_mfa_and_the_code_attempt_limit,
    first_sign_in_with_the_bootstrap_pass,
    password_and_totp_with_replay_refused,
    lockout_and_its_expiry,
    remembered_device_until_mfa_sessions_are_revoked,
    reregistration_interrupt_and_revoked_sessions,
    forced_password_change_disabled_accounts_and_log_filters,
    temporary_access_pass_policy,
);
