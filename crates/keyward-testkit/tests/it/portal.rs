//! The admin portal through its HTML pages, on both backends: who may open it, the user list and
//! search, and the service desk's actions, which go through the same rules and audit as Graph.

use keyward_core::authz::roles;
use keyward_core::totp;
use keyward_testkit::browser::{Browser, Page};
use keyward_testkit::{ADMIN_UPN, Backend, DOMAIN, TestApp, id_of};
use reqwest::StatusCode;
use serde_json::json;

const PASSWORD: &str = "Portal-harbour-Lantern-92!";

/// A user with `role` (if any) and a known password: their id.
pub(super) async fn user(app: &TestApp, alias: &str, role: Option<&str>) -> String {
    let reply = app
        .post(
            "/v1.0/users",
            &json!({
                "accountEnabled": true,
                "displayName": format!("{alias} Tester"),
                "mailNickname": alias,
                "userPrincipalName": format!("{alias}@{DOMAIN}"),
                "passwordProfile": {"password": PASSWORD, "forceChangePasswordNextSignIn": false},
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = id_of(&reply.body);
    if let Some(role) = role {
        app.assign_role(&id, role, "/").await;
    }
    id
}

/// Signs `alias` in through the pages, registering an authenticator app when asked (role holders
/// must use MFA): the page signed in users land on.
pub(super) async fn sign_in(app: &TestApp, browser: &mut Browser, alias: &str) -> Page {
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    let page = browser.submit(&page, "username", &[("username", &format!("{alias}@{DOMAIN}"))], &[]).await;
    let page = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    if page.title() != "More information required" {
        return page;
    }
    let page = browser.submit(&page, "more_info", &[], &[]).await;
    let secret = totp::base32_decode(&page.by_id("secret").expect("secret")).expect("base32");
    let code = totp::code_at_step(&secret, totp::step_at(app.app.now().unix_timestamp()));
    browser.submit(&page, "register_totp", &[("one-time-code", &code)], &[]).await
}

/// The CSRF token the portal's forms carry.
pub(super) fn csrf_of(page: &Page) -> String {
    page.forms()
        .iter()
        .flat_map(|it| it.inputs.iter())
        .find(|(name, ..)| name == "csrf")
        .map(|(_, value, ..)| value.clone())
        .unwrap_or_else(|| panic!("no csrf on page:\n{}", page.text()))
}

/// The markup of the method list.
fn methods_of(page: &Page) -> String {
    let start = page.html.find("id=\"methods\"").unwrap_or_else(|| panic!("no method list:\n{}", page.text()));
    let end = page.html[start..].find("</ul>").map_or(page.html.len(), |it| start + it);
    page.html[start..end].to_owned()
}

/// The helper's page of a user it may act on (adele's), for a CSRF token of its session.
async fn helper_browser_user_page(app: &TestApp, browser: &mut Browser) -> Page {
    let adele = app.get(&format!("/v1.0/users/adele@{DOMAIN}")).await;
    browser.get(&format!("/{DOMAIN}/admin/users/{}", id_of(&adele.body))).await
}

/// Posts the form of a confirmation page (the one with `action=remove`) as the browser would.
async fn post_confirmation(browser: &mut Browser, page: &Page) -> Page {
    let form = page
        .forms()
        .into_iter()
        .find(|it| it.inputs.iter().any(|(name, value, ..)| name == "action" && value == "remove"))
        .unwrap_or_else(|| panic!("no confirmation form:\n{}", page.text()));
    let fields: Vec<(String, String)> =
        form.inputs.iter().map(|(name, value, ..)| (name.clone(), value.clone())).collect();
    browser.post_form(&form.action, &fields).await
}

/// Opens the confirmation page of `action` from a user's page.
pub(super) async fn confirm_page(browser: &mut Browser, page: &Page, action: &str) -> Page {
    let user_path = page.path.split('?').next().unwrap_or_default().to_owned();
    browser.get(&format!("{user_path}/confirm?action={action}")).await
}

/// Posts `action` with `csrf` to a user's page (what the confirmation page's form does).
async fn post_action(browser: &mut Browser, user_path: &str, action: &str, csrf: &str) -> Page {
    let target = user_path.split('?').next().unwrap_or_default().to_owned();
    browser.post_form(&target, &[("csrf".to_owned(), csrf.to_owned()), ("action".to_owned(), action.to_owned())]).await
}

async fn the_service_desk_works_in_the_portal(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "desk", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let adele = user(&app, "adele", None).await;
    let phone = app
        .post(
            &format!("/v1.0/users/{adele}/authentication/phoneMethods"),
            &json!({"phoneNumber": "+1 2065555555", "phoneType": "mobile"}),
        )
        .await;
    assert_eq!(phone.status, StatusCode::CREATED, "{}", phone.text);
    let email = app
        .post(
            &format!("/v1.0/users/{adele}/authentication/emailMethods"),
            &json!({"emailAddress": "adele@fabrikam.example"}),
        )
        .await;
    assert_eq!(email.status, StatusCode::CREATED, "{}", email.text);

    // Signed out: the portal sends the browser to sign in, and back afterwards.
    let mut browser = Browser::new(&app.base_url);
    let out = browser.get(&format!("/{DOMAIN}/admin/users")).await;
    assert_eq!(out.title(), "Sign in", "{}", out.text());
    assert!(out.html.contains("admin%2Fusers") || out.html.contains("admin/users"), "return_to kept: {}", out.html);

    let account = sign_in(&app, &mut browser, "desk").await;
    assert_eq!(account.title(), "My account", "{}", account.text());
    let users = browser.get(&format!("/{DOMAIN}/admin")).await;
    assert_eq!((users.status, users.title()), (StatusCode::OK, "Users".to_owned()), "{}", users.text());
    let header = users.by_id("signed-in-as").expect("the header names who is signed in");
    assert!(header.contains(&format!("desk@{DOMAIN}")) && header.contains("Privileged Authentication Administrator"));
    assert!(users.text().contains(ADMIN_UPN) && users.text().contains(&format!("adele@{DOMAIN}")));

    // Search by the start of a name, sign-in name or mail; a quote is text, not syntax.
    let found = browser.get(&format!("/{DOMAIN}/admin/users?search=ADELE")).await;
    assert!(found.text().contains(&format!("adele@{DOMAIN}")), "{}", found.text());
    assert!(!found.text().contains(ADMIN_UPN), "{}", found.text());
    let quoted = browser.get(&format!("/{DOMAIN}/admin/users?search=o%27brien")).await;
    assert_eq!(quoted.status, StatusCode::OK, "{}", quoted.text());
    assert!(quoted.by_id("no-users").is_some(), "{}", quoted.text());
    let markup = browser.get(&format!("/{DOMAIN}/admin/users?search=%3Cscript%3E")).await;
    assert!(!markup.html.contains("<script>") && markup.html.contains("&#60;script&#62;"), "escaped");

    // The user's page lists the methods; the actions need the page's CSRF token.
    let page = browser.get(&format!("/{DOMAIN}/admin/users/{adele}")).await;
    assert_eq!(page.title(), "adele Tester", "{}", page.text());
    assert!(methods_of(&page).contains("Phone (mobile)"), "{}", page.text());
    let user_path = page.path.clone();
    let forged = post_action(&mut browser, &user_path, "require_reregistration", "not-the-token").await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "{}", forged.text());
    let still = app.get(&format!("/v1.0/users/{adele}/authentication/phoneMethods")).await;
    assert_eq!(still.body["value"].as_array().map(Vec::len), Some(1), "a forged form changes nothing");
    let confirm = confirm_page(&mut browser, &page, "require_reregistration").await;
    assert_eq!(confirm.title(), "Require re-register MFA", "{}", confirm.text());
    assert!(confirm.by_id("what").is_some_and(|it| it.contains("register again")), "{}", confirm.text());
    assert!(confirm.text().contains(&format!("adele@{DOMAIN}")), "the page names the user");
    let csrf = csrf_of(&confirm);
    let unknown = post_action(&mut browser, &user_path, "delete_everything", &csrf).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text());
    let unknown_confirm = confirm_page(&mut browser, &page, "delete_everything").await;
    assert_eq!(unknown_confirm.status, StatusCode::BAD_REQUEST, "{}", unknown_confirm.text());

    let done = post_action(&mut browser, &user_path, "require_reregistration", &csrf).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert!(done.by_id("notice").is_some_and(|it| it.contains("register")), "{}", done.text());
    assert!(!methods_of(&done).contains("Phone"), "{}", done.text());
    let phones = app.get(&format!("/v1.0/users/{adele}/authentication/phoneMethods")).await;
    assert_eq!(phones.body["value"], json!([]), "the phone is gone through the same use case as Graph's");

    // Delete, next to each method (the e-mail stayed: re-registration keeps it, as in Entra).
    assert!(methods_of(&done).contains("Email: adele@fabrikam.example"), "{}", done.text());
    let delete = browser.get(&format!("{user_path}/confirm?action=delete_method&method=email")).await;
    assert_eq!(delete.title(), "Delete method", "{}", delete.text());
    assert!(delete.by_id("what").is_some_and(|it| it.contains("adele@fabrikam.example")), "{}", delete.text());
    let forged_method = browser.get(&format!("{user_path}/confirm?action=delete_method&method=oath:nope")).await;
    assert_eq!(forged_method.status, StatusCode::BAD_REQUEST, "{}", forged_method.text());
    let fields = [
        ("csrf".to_owned(), csrf_of(&delete)),
        ("action".to_owned(), "delete_method".to_owned()),
        ("method".to_owned(), "email".to_owned()),
    ];
    let deleted = browser.post_form(&user_path, &fields).await;
    assert!(deleted.by_id("notice").is_some_and(|it| it.contains("deleted")), "{}", deleted.text());
    let emails = app.get(&format!("/v1.0/users/{adele}/authentication/emailMethods")).await;
    assert_eq!(emails.body["value"], json!([]), "{}", emails.text);
    let records = app.audit_for(&adele).await;
    assert_eq!(records[0].activity_display_name, "Admin deleted security info", "the e-mail's deletion");
    let record = records.into_iter().find(|it| it.activity_display_name == "Update user").expect("re-registration");
    assert!(format!("{:?}", record.initiated_by).contains(&format!("desk@{DOMAIN}")), "{:?}", record.initiated_by);

    // Passes and passwords are shown once, on the post's answer; the user signs in with them.
    let tap_confirm = confirm_page(&mut browser, &page, "create_tap").await;
    assert!(tap_confirm.html.contains("id=\"lifetime\""), "{}", tap_confirm.text());
    let fields = [
        ("csrf".to_owned(), csrf_of(&tap_confirm)),
        ("action".to_owned(), "create_tap".to_owned()),
        ("lifetime".to_owned(), "60".to_owned()),
        ("once".to_owned(), "true".to_owned()),
    ];
    let shown = browser.post_form(&user_path, &fields).await;
    assert_eq!(shown.title(), "Temporary Access Pass", "{}", shown.text());
    let pass = shown.by_id("secret").expect("the pass is shown");
    assert!(pass.len() >= 8 && shown.by_id("what").is_some_and(|it| it.contains("one sign-in")), "{pass}");
    let mut adele_tap = Browser::new(&app.base_url);
    let start = adele_tap.get(&format!("/{DOMAIN}/login")).await;
    let start = adele_tap.submit(&start, "username", &[("username", &format!("adele@{DOMAIN}"))], &[]).await;
    let signed = adele_tap.submit(&start, "password", &[("current-password", &pass)], &[]).await;
    assert_eq!(signed.title(), "My account", "the pass signs adele in: {}", signed.text());
    let bad_lifetime = browser
        .post_form(
            &user_path,
            &[
                ("csrf".to_owned(), csrf_of(&tap_confirm)),
                ("action".to_owned(), "create_tap".to_owned()),
                ("lifetime".to_owned(), "forever".to_owned()),
            ],
        )
        .await;
    assert_eq!(bad_lifetime.status, StatusCode::BAD_REQUEST, "{}", bad_lifetime.text());

    let reset_confirm = confirm_page(&mut browser, &page, "reset_password").await;
    let reset = post_action(&mut browser, &user_path, "reset_password", &csrf_of(&reset_confirm)).await;
    assert_eq!(reset.title(), "New password", "{}", reset.text());
    let password = reset.by_id("secret").expect("the password is shown");
    let mut adele_new = Browser::new(&app.base_url);
    let start = adele_new.get(&format!("/{DOMAIN}/login")).await;
    let start = adele_new.submit(&start, "username", &[("username", &format!("adele@{DOMAIN}"))], &[]).await;
    let signed = adele_new.submit(&start, "password", &[("current-password", &password)], &[]).await;
    assert_eq!(signed.title(), "Update your password", "a reset password must be changed: {}", signed.text());

    // "Reset MFA" does it all in one step; with a pass, the pass is shown once and signs adele in.
    let phones = format!("/v1.0/users/{adele}/authentication/phoneMethods");
    let again = app.post(&phones, &json!({"phoneNumber": "+1 2065555555", "phoneType": "mobile"})).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    let adele_session = app.token_for(&format!("adele@{DOMAIN}")).await;
    app.clock.advance(time::Duration::seconds(1));
    let reset_mfa_confirm = confirm_page(&mut browser, &page, "reset_mfa").await;
    assert_eq!(reset_mfa_confirm.title(), "Reset MFA", "{}", reset_mfa_confirm.text());
    assert!(reset_mfa_confirm.html.contains("id=\"with_pass\"") && reset_mfa_confirm.html.contains("id=\"lifetime\""));
    let fields = [
        ("csrf".to_owned(), csrf_of(&reset_mfa_confirm)),
        ("action".to_owned(), "reset_mfa".to_owned()),
        ("with_pass".to_owned(), "true".to_owned()),
        ("lifetime".to_owned(), "60".to_owned()),
    ];
    let shown = browser.post_form(&user_path, &fields).await;
    assert_eq!(shown.title(), "Temporary Access Pass", "{}", shown.text());
    assert!(shown.by_id("what").is_some_and(|it| it.contains("MFA was reset")), "{}", shown.text());
    let pass = shown.by_id("secret").expect("the pass is shown");
    assert_eq!(app.get(&phones).await.body["value"], json!([]), "the phone is gone");
    assert_eq!(app.as_user(&adele_session).get("/v1.0/me").await.status, StatusCode::UNAUTHORIZED, "signed out");
    let mut adele_reset = Browser::new(&app.base_url);
    let start = adele_reset.get(&format!("/{DOMAIN}/login")).await;
    let start = adele_reset.submit(&start, "username", &[("username", &format!("adele@{DOMAIN}"))], &[]).await;
    let signed = adele_reset.submit(&start, "password", &[("current-password", &pass)], &[]).await;
    assert_ne!(signed.title(), "Sign in", "the pass signs adele in: {}", signed.text());
    // Without a pass: done, back on the user's page.
    let without = post_action(&mut browser, &user_path, "reset_mfa", &csrf_of(&reset_mfa_confirm)).await;
    assert!(without.by_id("notice").is_some_and(|it| it.contains("MFA was reset")), "{}", without.text());

    // The audit tab follows the rules too: a Privileged Authentication Administrator may not read
    // the audit log; a Global Administrator sees the agent's change on the user's page.
    assert!(done.by_id("audit-hidden").is_some(), "{}", done.text());
    let mut auditor_browser = Browser::new(&app.base_url);
    user(&app, "auditor", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let landing = sign_in(&app, &mut auditor_browser, "auditor").await;
    assert_eq!(landing.title(), "My account", "{}", landing.text());
    let home = auditor_browser.get("/").await;
    assert_eq!(home.title(), "Users", "`/` leads an administrator to the portal: {}", home.text());
    let audited = auditor_browser.get(&format!("/{DOMAIN}/admin/users/{adele}")).await;
    let table = audited.html.split("id=\"audit\"").nth(1).unwrap_or_else(|| panic!("{}", audited.text())).to_owned();
    assert!(table.contains("Update user") && table.contains(&format!("desk@{DOMAIN}")), "{table}");
    assert_eq!(audited.by_id("roles").as_deref(), Some("Roles: none"));
    assert_eq!(audited.by_id("mfa-state").as_deref(), Some("Per-user MFA: disabled"));
    let sign_ins = audited.html.split("id=\"sign-ins\"").nth(1).expect("the sign-in log").to_owned();
    assert!(sign_ins.contains("success"), "adele signed in with the pass: {sign_ins}");
    // The notification outbox: the reset is there, for the auditor; not for the Helpdesk.
    let outbox = auditor_browser.get(&format!("/{DOMAIN}/admin/notifications")).await;
    assert_eq!(outbox.status, StatusCode::OK, "{}", outbox.text());
    let rows = outbox.html.split("id=\"notifications\"").nth(1).expect("the outbox table").to_owned();
    assert!(rows.contains("Security info changed"), "{rows}");
    let pending = auditor_browser.get(&format!("/{DOMAIN}/admin/notifications?state=sent")).await;
    assert!(pending.by_id("no-notifications").is_some(), "nothing was sent without a relay: {}", pending.text());
    let bad = auditor_browser.get(&format!("/{DOMAIN}/admin/notifications?state=lost")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
    let desk_id = id_of(&app.get(&format!("/v1.0/users/desk@{DOMAIN}")).await.body);
    let desk_page = auditor_browser.get(&format!("/{DOMAIN}/admin/users/{desk_id}")).await;
    let roles = desk_page.by_id("roles").unwrap_or_default();
    assert!(roles.contains("Privileged Authentication Administrator"), "{roles}");

    // The same rules as Graph: an Authentication Administrator may not act on a Global Administrator.
    let mut helper_browser = Browser::new(&app.base_url);
    user(&app, "helper", Some(roles::AUTHENTICATION_ADMINISTRATOR)).await;
    sign_in(&app, &mut helper_browser, "helper").await;
    let admin = app.get(&format!("/v1.0/users/{ADMIN_UPN}")).await;
    let admin_id = id_of(&admin.body);
    let page = helper_browser.get(&format!("/{DOMAIN}/admin/users/{admin_id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    // The buttons are disabled with the reason; the confirmation page offers no form either…
    assert!(page.html.contains("id=\"revoke_mfa_sessions\" disabled"), "{}", page.html);
    let why = page.by_id("revoke_mfa_sessions-why").expect("the reason is shown");
    assert!(why.contains("an Authentication Administrator cannot act on a user who"), "{why}");
    let closed = confirm_page(&mut helper_browser, &page, "revoke_mfa_sessions").await;
    assert!(closed.by_id("error").is_some() && !closed.html.contains("id=\"confirm\""), "{}", closed.text());
    // …and the server refuses a forged post regardless, with the refusal in the audit log.
    let adele_page = helper_browser_user_page(&app, &mut helper_browser).await;
    let token_page = confirm_page(&mut helper_browser, &adele_page, "revoke_mfa_sessions").await;
    let refused = post_action(&mut helper_browser, &page.path, "revoke_mfa_sessions", &csrf_of(&token_page)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    assert!(refused.by_id("error").is_some_and(|it| !it.is_empty()), "{}", refused.text());
    let failure = app.audit_for(&admin_id).await.into_iter().next().expect("the refusal is recorded");
    assert!(format!("{:?}", failure.result).to_lowercase().contains("failure"), "{:?}", failure.result);

    // A user without a role gets My Security Info, not the admin portal.
    let mut carol_browser = Browser::new(&app.base_url);
    user(&app, "carol", None).await;
    let account = sign_in(&app, &mut carol_browser, "carol").await;
    assert_eq!(account.title(), "My account", "{}", account.text());
    let home = carol_browser.get("/").await;
    assert_eq!(home.title(), "My account", "`/` leads everyone else to their own security info");
    let closed = carol_browser.get(&format!("/{DOMAIN}/admin/users")).await;
    assert_eq!(closed.status, StatusCode::FORBIDDEN, "{}", closed.text());
    assert!(closed.text().contains("no administrator role"), "{}", closed.text());
}

/// A role holder who signed in without MFA (the tenant asks none of its administrators) cannot
/// open the admin portal.
async fn the_admin_portal_needs_mfa_from_every_role_holder(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.set_sign_in_policy(&json!({"requireMfaForPrivilegedRoles": false})).await;
    user(&app, "nomfa", Some(roles::HELPDESK_ADMINISTRATOR)).await;
    let mut browser = Browser::new(&app.base_url);
    let account = sign_in(&app, &mut browser, "nomfa").await;
    assert_eq!(account.title(), "My account", "signed in with a password alone: {}", account.text());
    let closed = browser.get(&format!("/{DOMAIN}/admin/users")).await;
    assert_eq!(closed.status, StatusCode::FORBIDDEN, "{}", closed.text());
    assert!(closed.text().contains("multi-factor authentication"), "{}", closed.text());
    let post = browser
        .post_form(
            &format!("/{DOMAIN}/admin/users/{}", id_of(&app.get(&format!("/v1.0/users/{ADMIN_UPN}")).await.body)),
            &[("action".to_owned(), "revoke_sessions".to_owned())],
        )
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN, "a post without MFA is refused too: {}", post.text());
}

/// An admin portal session that goes unused longer than the idle timeout (60 minutes by default)
/// needs a fresh sign-in; using the portal keeps it alive.
async fn an_idle_portal_session_signs_in_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "idle", Some(roles::HELPDESK_ADMINISTRATOR)).await;
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "idle").await;
    for _ in 0..3 {
        app.clock.advance(time::Duration::minutes(50));
        let page = browser.get(&format!("/{DOMAIN}/admin/users")).await;
        assert_eq!(page.title(), "Users", "used every 50 minutes, the session stays: {}", page.text());
    }
    // Another site sending the browser to the portal every 50 minutes does not keep it alive.
    app.clock.advance(time::Duration::minutes(50));
    let sent = browser.get_from(&format!("/{DOMAIN}/admin/users"), Some("cross-site")).await;
    assert_eq!(sent.title(), "Users", "{}", sent.text());
    app.clock.advance(time::Duration::minutes(11));
    let idle = browser.get(&format!("/{DOMAIN}/admin/users")).await;
    assert_eq!(idle.title(), "Sign in", "{}", idle.text());
    // The session ended everywhere, not only on the portal: the account page and the
    // authorization endpoint see no signed-in user either.
    let account = browser.get(&format!("/{DOMAIN}/login")).await;
    assert_eq!(account.title(), "Sign in", "{}", account.text());
}

/// "Require re-register MFA" on one's own account is a change to one's own security info: it
/// needs MFA within the last ten minutes, whatever one's roles.
async fn one_s_own_mfa_reset_needs_recent_mfa(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let me = user(&app, "self", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "self").await;
    app.clock.advance(time::Duration::minutes(11));
    let page = browser.get(&format!("/{DOMAIN}/admin/users/{me}")).await;
    assert!(page.html.contains("id=\"require_reregistration\" disabled"), "{}", page.text());
    let why = page.by_id("require_reregistration-why").expect("the reason");
    assert!(why.contains("within the last 10 minutes"), "{why}");
    let confirm = confirm_page(&mut browser, &page, "revoke_sessions").await;
    let refused = post_action(&mut browser, &page.path, "require_reregistration", &csrf_of(&confirm)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    let methods = app.get(&format!("/v1.0/users/{me}/authentication/softwareOathMethods")).await;
    assert_eq!(methods.body["value"].as_array().map(Vec::len), Some(1), "the authenticator app stays");
}

/// The per-user MFA page: 50 users selected, reviewed with their number, and enabled at once;
/// each change goes through Graph's use case, and a role that may not do it is refused per user.
async fn per_user_mfa_in_bulk(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut ids = Vec::new();
    for index in 0..50 {
        ids.push(user(&app, &format!("bulk{index:02}"), None).await);
    }
    user(&app, "chief", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "chief").await;
    let list = browser.get(&format!("/{DOMAIN}/admin/mfa?search=bulk")).await;
    assert_eq!(list.title(), "Per-user MFA", "{}", list.text());
    assert_eq!(list.html.matches("name=\"user\"").count(), 50, "{}", list.text());
    assert_eq!(list.html.matches("<td>disabled</td>").count(), 50);
    let query: String = ids.iter().map(|it| format!("&user={it}")).collect();
    let confirm = browser.get(&format!("/{DOMAIN}/admin/mfa/confirm?state=enabled{query}")).await;
    assert!(confirm.text().contains("Set per-user MFA to enabled for 50 users."), "{}", confirm.text());
    let mut fields = vec![("csrf".to_owned(), csrf_of(&confirm)), ("state".to_owned(), "enabled".to_owned())];
    fields.extend(ids.iter().map(|it| ("user".to_owned(), it.clone())));
    let done = browser.post_form(&format!("/{DOMAIN}/admin/mfa"), &fields).await;
    assert_eq!(done.by_id("summary").as_deref(), Some("50 changed, 0 refused."), "{}", done.text());
    for id in [&ids[0], &ids[49]] {
        let state = app.get(&format!("/beta/users/{id}/authentication/requirements")).await;
        assert_eq!(state.body["perUserMfaState"], "enabled", "{}", state.text);
    }
    let record = app.audit_for(&ids[7]).await.into_iter().next().expect("audited");
    assert!(format!("{:?}", record.initiated_by).contains(&format!("chief@{DOMAIN}")));

    // Nothing selected, an unknown state, a forged token: refused, nothing changes.
    let none = browser.get(&format!("/{DOMAIN}/admin/mfa/confirm?state=enabled")).await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    let odd = browser.get(&format!("/{DOMAIN}/admin/mfa/confirm?state=sometimes&user={}", ids[0])).await;
    assert_eq!(odd.status, StatusCode::BAD_REQUEST);
    let forged = browser
        .post_form(
            &format!("/{DOMAIN}/admin/mfa"),
            &[
                ("csrf".to_owned(), "forged".to_owned()),
                ("state".to_owned(), "disabled".to_owned()),
                ("user".to_owned(), ids[0].clone()),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);

    // A user that cannot be read (a NUL in its id) is listed as refused, and the others are
    // still changed.
    let confirm = browser.get(&format!("/{DOMAIN}/admin/mfa/confirm?state=enforced&user={}", ids[2])).await;
    let fields = [
        ("csrf".to_owned(), csrf_of(&confirm)),
        ("state".to_owned(), "enforced".to_owned()),
        ("user".to_owned(), ids[2].clone()),
        ("user".to_owned(), "bad\0id".to_owned()),
        ("user".to_owned(), ids[3].clone()),
    ];
    let mixed = browser.post_form(&format!("/{DOMAIN}/admin/mfa"), &fields).await;
    assert_eq!(mixed.by_id("summary").as_deref(), Some("2 changed, 1 refused."), "{}", mixed.text());
    for id in [&ids[2], &ids[3]] {
        let state = app.get(&format!("/beta/users/{id}/authentication/requirements")).await;
        assert_eq!(state.body["perUserMfaState"], "enforced", "{}", state.text);
    }

    user(&app, "pauline", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let mut other = Browser::new(&app.base_url);
    sign_in(&app, &mut other, "pauline").await;
    let confirm =
        other.get(&format!("/{DOMAIN}/admin/mfa/confirm?state=disabled&user={}&user={}", ids[0], ids[1])).await;
    let fields = [
        ("csrf".to_owned(), csrf_of(&confirm)),
        ("state".to_owned(), "disabled".to_owned()),
        ("user".to_owned(), ids[0].clone()),
        ("user".to_owned(), ids[1].clone()),
    ];
    let refused = other.post_form(&format!("/{DOMAIN}/admin/mfa"), &fields).await;
    assert_eq!(refused.by_id("summary").as_deref(), Some("0 changed, 2 refused."), "{}", refused.text());
    let state = app.get(&format!("/beta/users/{}/authentication/requirements", ids[0])).await;
    assert_eq!(state.body["perUserMfaState"], "enabled", "unchanged");
}

/// The settings page edits the sign-in and Temporary Access Pass policies through the same use
/// case (bounds, audit) as Graph.
async fn settings_edit_the_policies(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "chief", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "chief").await;
    let page = browser.get(&format!("/{DOMAIN}/admin/settings")).await;
    assert_eq!(page.title(), "Settings", "{}", page.text());
    let form: Vec<(String, String)> = page
        .forms()
        .into_iter()
        .flat_map(|it| it.inputs)
        .filter(|(name, _, _, kind)| !name.is_empty() && kind != "checkbox")
        .map(|(name, value, ..)| (name, value))
        .collect();
    let with = |changes: &[(&str, &str)]| {
        let mut fields: Vec<(String, String)> =
            form.iter().filter(|(name, _)| !changes.iter().any(|(it, _)| it == name)).cloned().collect();
        fields.extend(changes.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())));
        fields
    };
    let edited =
        with(&[("lockout_threshold", "5"), ("mfa_privileged", "true"), ("tap_enabled", "true"), ("tap_max", "600")]);
    let saved = browser.post_form(&format!("/{DOMAIN}/admin/settings"), &edited).await;
    assert_eq!(saved.by_id("notice").as_deref(), Some("Saved."), "{}", saved.text());
    let policy = app.get("/v1.0/policies/keywardSignInPolicy").await;
    assert_eq!(policy.body["lockoutThreshold"], 5, "{}", policy.text);
    // The service desk's limits: empty fields are no limit.
    assert!(page.by_id("limit_passes").is_some(), "{}", page.text());
    let limits = app.get("/v1.0/policies/keywardServiceDeskPolicy").await;
    assert!(limits.body["temporaryAccessPassesPerAgentPerHour"].is_null(), "{}", limits.text);
    let mut limited = edited.clone();
    limited.retain(|(name, _)| name != "limit_passes");
    limited.push(("limit_passes".into(), "12".into()));
    let saved = browser.post_form(&format!("/{DOMAIN}/admin/settings"), &limited).await;
    assert_eq!(saved.by_id("notice").as_deref(), Some("Saved."), "{}", saved.text());
    let limits = app.get("/v1.0/policies/keywardServiceDeskPolicy").await;
    assert_eq!(limits.body["temporaryAccessPassesPerAgentPerHour"], 12, "{}", limits.text);
    assert!(limits.body["mfaResetsPerAgentPerHour"].is_null(), "{}", limits.text);
    let shown = browser.get(&format!("/{DOMAIN}/admin/settings")).await;
    assert!(shown.html.contains(r#"id="limit_passes" name="limit_passes" min="1" max="10000" value="12""#));
    for bad in ["0", "ten"] {
        let mut refused = edited.clone();
        refused.retain(|(name, _)| name != "limit_passes");
        refused.push(("limit_passes".into(), bad.into()));
        let page = browser.post_form(&format!("/{DOMAIN}/admin/settings"), &refused).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}: {}", page.text());
    }
    let kept = app.get("/v1.0/policies/keywardServiceDeskPolicy").await;
    assert_eq!(kept.body["temporaryAccessPassesPerAgentPerHour"], 12, "refused changes change nothing");

    // Security defaults turned on elsewhere after the page was shown: saving the page, with its
    // box still unticked, does not turn them back off.
    app.set_security_defaults(true).await;
    let stale = browser.post_form(&format!("/{DOMAIN}/admin/settings"), &edited).await;
    assert_eq!(stale.by_id("notice").as_deref(), Some("Saved."), "{}", stale.text());
    let defaults = app.get("/v1.0/policies/identitySecurityDefaultsEnforcementPolicy").await;
    assert_eq!(defaults.body["isEnabled"], true, "{}", defaults.text);
    app.set_security_defaults(false).await;
    // Likewise every other field: dual control turned on and the lockout threshold changed
    // elsewhere stay as they were made; the field changed on the page is saved.
    let desk = app.patch("/v1.0/policies/keywardServiceDeskPolicy", &json!({"dualControlEnabled": true})).await;
    assert_eq!(desk.status, StatusCode::NO_CONTENT, "{}", desk.text);
    let threshold = app.patch("/v1.0/policies/keywardSignInPolicy", &json!({"lockoutThreshold": 7})).await;
    assert!(threshold.status.is_success(), "{}", threshold.text);
    let stale = browser.post_form(&format!("/{DOMAIN}/admin/settings"), &with(&[("code_attempts", "4")])).await;
    assert_eq!(stale.by_id("notice").as_deref(), Some("Saved."), "{}", stale.text());
    let desk = app.get("/v1.0/policies/keywardServiceDeskPolicy").await;
    assert_eq!(desk.body["dualControlEnabled"], true, "{}", desk.text);
    assert_eq!(desk.body["temporaryAccessPassesPerAgentPerHour"], 12, "{}", desk.text);
    let policy = app.get("/v1.0/policies/keywardSignInPolicy").await;
    assert_eq!(
        (policy.body["lockoutThreshold"].clone(), policy.body["codeAttemptLimit"].clone()),
        (json!(7), json!(4)),
        "{}",
        policy.text
    );
    let desk = app.patch("/v1.0/policies/keywardServiceDeskPolicy", &json!({"dualControlEnabled": false})).await;
    assert_eq!(desk.status, StatusCode::NO_CONTENT, "{}", desk.text);
    let threshold = app.patch("/v1.0/policies/keywardSignInPolicy", &json!({"lockoutThreshold": 5})).await;
    assert!(threshold.status.is_success(), "{}", threshold.text);
    let tap = app
        .get("/v1.0/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/TemporaryAccessPass")
        .await;
    assert_eq!(tap.body["maximumLifetimeInMinutes"], 600, "{}", tap.text);

    let out_of_bounds = browser
        .post_form(
            &format!("/{DOMAIN}/admin/settings"),
            &with(&[("lockout_threshold", "0"), ("mfa_privileged", "true")]),
        )
        .await;
    assert_eq!(out_of_bounds.status, StatusCode::BAD_REQUEST, "{}", out_of_bounds.text());
    assert!(out_of_bounds.by_id("error").is_some(), "{}", out_of_bounds.text());
    let not_a_number =
        browser.post_form(&format!("/{DOMAIN}/admin/settings"), &with(&[("lockout_seconds", "a minute")])).await;
    assert_eq!(not_a_number.status, StatusCode::BAD_REQUEST, "{}", not_a_number.text());
    let unchanged = app.get("/v1.0/policies/keywardSignInPolicy").await;
    assert_eq!(unchanged.body["lockoutThreshold"], 5, "refused changes change nothing");

    // A Helpdesk Administrator may not change the policies: refused, and the refusal recorded.
    user(&app, "helper", Some(roles::HELPDESK_ADMINISTRATOR)).await;
    let mut helper = Browser::new(&app.base_url);
    sign_in(&app, &mut helper, "helper").await;
    let helper_page = helper.get(&format!("/{DOMAIN}/admin/settings")).await;
    if helper_page.status == StatusCode::OK {
        let mut fields = with(&[("lockout_threshold", "99")]);
        fields.retain(|(name, _)| name != "csrf");
        fields.push(("csrf".to_owned(), csrf_of(&helper_page)));
        let refused = helper.post_form(&format!("/{DOMAIN}/admin/settings"), &fields).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    } else {
        assert_eq!(helper_page.status, StatusCode::FORBIDDEN, "{}", helper_page.text());
    }
    let still = app.get("/v1.0/policies/keywardSignInPolicy").await;
    assert_eq!(still.body["lockoutThreshold"], 5);
}

/// The roles page lists every role with a privileged badge; a role's page lists who holds it.
async fn roles_and_their_holders(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "reader", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    user(&app, "desk", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "reader").await;
    let list = browser.get(&format!("/{DOMAIN}/admin/roles")).await;
    assert_eq!(list.title(), "Roles and administrators", "{}", list.text());
    let row =
        list.html.split("Privileged Authentication Administrator</a>").nth(1).expect("the role is listed").to_owned();
    assert!(row.split("</tr>").next().unwrap_or_default().contains("Privileged</strong>"), "a privileged badge");
    let role = browser.get(&format!("/{DOMAIN}/admin/roles/{}", roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    assert_eq!(role.title(), "Privileged Authentication Administrator", "{}", role.text());
    let table = role.html.split("id=\"assignments\"").nth(1).expect("assignments").to_owned();
    assert!(table.contains(&format!("desk@{DOMAIN}")) && table.contains("Directory"), "{table}");
    let unknown = browser.get(&format!("/{DOMAIN}/admin/roles/not-a-role")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text());
}

/// The audit log page: filters, and downloads of what they select as CSV and JSON lines.
async fn the_audit_log_page_filters_and_downloads(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "chief", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    user(&app, "alpha", None).await;
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "chief").await;
    let page = browser.get(&format!("/{DOMAIN}/admin/audit?activity=add+user&target=alpha%40{DOMAIN}")).await;
    assert_eq!(page.title(), "Audit logs", "{}", page.text());
    let table = page.html.split("id=\"audit\"").nth(1).expect("a table").to_owned();
    assert_eq!(table.matches("<tr><td>").count(), 1, "one record: adding alpha: {table}");
    assert!(table.contains("Add user") && table.contains(&format!("alpha@{DOMAIN}")), "{table}");
    let csv = browser.get(&format!("/{DOMAIN}/admin/audit?activity=add+user&target=alpha%40{DOMAIN}&format=csv")).await;
    let lines: Vec<&str> = csv.html.lines().collect();
    assert_eq!(lines.len(), 2, "{}", csv.html);
    assert!(
        lines[0].starts_with("activityDateTime,activityDisplayName") && lines[1].contains("\"Add user\""),
        "{}",
        csv.html
    );
    let jsonl = browser.get(&format!("/{DOMAIN}/admin/audit?result=success&format=jsonl")).await;
    let records: Vec<serde_json::Value> =
        jsonl.html.lines().map(|it| serde_json::from_str(it).expect("each line is JSON")).collect();
    assert!(records.len() >= 2 && records.iter().all(|it| it["result"] == "success"), "{}", jsonl.html);
    let bad = browser.get(&format!("/{DOMAIN}/admin/audit?from=yesterday")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
    // The last day there is has no day after it: refused, not a failure of the server.
    for page in ["audit", "sign-ins"] {
        let far = browser.get(&format!("/{DOMAIN}/admin/{page}?until=9999-12-31")).await;
        assert_eq!(far.status, StatusCode::BAD_REQUEST, "{}", far.text());
        assert!(far.text().contains("from 1970 to 8999"), "{}", far.text());
    }

    // By category; a category not on the list is refused.
    let roles_only = browser.get(&format!("/{DOMAIN}/admin/audit?category=RoleManagement")).await;
    let table = roles_only.html.split("id=\"audit\"").nth(1).expect("a table").to_owned();
    assert!(!table.contains("Add user") && table.contains("RoleManagement"), "{table}");
    let unknown = browser.get(&format!("/{DOMAIN}/admin/audit?category=%3Cscript%3E")).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text());

    // A record in full: its changed properties as old and new values.
    let alpha = app.get(&format!("/v1.0/users/alpha@{DOMAIN}")).await;
    let changed = app.patch(&format!("/v1.0/users/{}", id_of(&alpha.body)), &json!({"jobTitle": "Cartographer"})).await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text);
    let list = browser.get(&format!("/{DOMAIN}/admin/audit?activity=update+user&target=alpha%40{DOMAIN}")).await;
    let link = list.html.split("href=\"").find(|it| it.contains("/admin/audit/")).expect("a link to the record");
    let link = link.split('"').next().expect("href").to_owned();
    let record = browser.get(&link).await;
    assert_eq!(record.title(), "Update user", "{}", record.text());
    let changes = record.html.split("class=\"changes\"").nth(1).expect("changed properties").to_owned();
    assert!(changes.contains("Cartographer") && changes.contains("→"), "{changes}");
    assert_eq!(record.by_id("result").as_deref(), Some("success"));
    let missing = browser.get(&format!("/{DOMAIN}/admin/audit/not-a-record")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text());
}

/// The sign-in log page filters by result and error code; a sign-in opens with its steps.
async fn the_sign_in_log_page_filters_and_shows_steps(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "chief", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    user(&app, "alpha", None).await;
    let mut wrong = Browser::new(&app.base_url);
    let page = wrong.get(&format!("/{DOMAIN}/login")).await;
    let page = wrong.submit(&page, "username", &[("username", &format!("alpha@{DOMAIN}"))], &[]).await;
    let failed = wrong.submit(&page, "password", &[("current-password", "not-the-password")], &[]).await;
    assert_ne!(failed.title(), "My account");
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "chief").await;

    let all = browser.get(&format!("/{DOMAIN}/admin/sign-ins")).await;
    assert_eq!(all.title(), "Sign-in logs", "{}", all.text());
    let table = all.html.split("id=\"sign-ins\"").nth(1).expect("a table").to_owned();
    assert!(table.contains(&format!("chief@{DOMAIN}")) && table.contains(&format!("alpha@{DOMAIN}")), "{table}");
    let failures = browser.get(&format!("/{DOMAIN}/admin/sign-ins?result=failure")).await;
    let table = failures.html.split("id=\"sign-ins\"").nth(1).expect("a table").to_owned();
    assert!(table.contains("Failure (50126)") && !table.contains(">Success<"), "{table}");
    for query in ["code=50126", "user=ALP"] {
        let page = browser.get(&format!("/{DOMAIN}/admin/sign-ins?{query}")).await;
        let table = page.html.split("id=\"sign-ins\"").nth(1).expect("a table").to_owned();
        assert!(
            table.contains(&format!("alpha@{DOMAIN}")) && !table.contains(&format!("chief@{DOMAIN}")),
            "{query}: {table}"
        );
    }
    let successes = browser.get(&format!("/{DOMAIN}/admin/sign-ins?result=success")).await;
    assert!(!successes.html.contains(&format!("alpha@{DOMAIN}")), "{}", successes.text());
    let bad = browser.get(&format!("/{DOMAIN}/admin/sign-ins?code=fifty")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());

    let failures = browser.get(&format!("/{DOMAIN}/admin/sign-ins?result=failure")).await;
    // Both failures carry the same time (the test clock stands still): open alpha's.
    let row = failures.html.split("<tr>").find(|it| it.contains("Failure (50126)")).expect("alpha's row");
    let link = row.split("href=\"").nth(1).expect("a link");
    let detail = browser.get(link.split('"').next().expect("href")).await;
    assert_eq!(detail.title(), "Sign-in", "{}", detail.text());
    assert!(detail.by_id("result").is_some_and(|it| it.starts_with("Failure 50126")), "{}", detail.text());
    let steps = detail.html.split("id=\"steps\"").nth(1).expect("steps").to_owned();
    assert!(steps.contains("Password") && steps.contains("failed"), "{steps}");

    // A role that does not read the sign-in log is refused the page.
    user(&app, "groupie", Some(roles::GROUPS_ADMINISTRATOR)).await;
    let mut groupie = Browser::new(&app.base_url);
    sign_in(&app, &mut groupie, "groupie").await;
    let refused = groupie.get(&format!("/{DOMAIN}/admin/sign-ins")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
}

/// The groups page lists and searches groups; a group's page shows its members and owners.
async fn groups_and_their_members(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "chief", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let member = user(&app, "member", None).await;
    let group = app.create_role_assignable_group("Service desk", &[&member]).await;
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "chief").await;
    let list = browser.get(&format!("/{DOMAIN}/admin/groups?search=serv")).await;
    assert_eq!(list.title(), "Groups", "{}", list.text());
    assert!(list.text().contains("Service desk") && list.html.contains("badge"), "{}", list.text());
    let none = browser.get(&format!("/{DOMAIN}/admin/groups?search=o%27no")).await;
    assert!(none.by_id("no-groups").is_some(), "{}", none.text());
    let page = browser.get(&format!("/{DOMAIN}/admin/groups/{group}")).await;
    assert_eq!(page.title(), "Service desk", "{}", page.text());
    let members = page.html.split("id=\"members\"").nth(1).expect("members").to_owned();
    assert!(members.contains(&format!("member@{DOMAIN}")), "{members}");
    assert!(page.by_id("assignable").is_some_and(|it| it.starts_with("Role-assignable: yes")));

    // Search and pick: the search lists users and groups as checkboxes in the add form.
    let alpha = user(&app, "alpha", None).await;
    let beta = user(&app, "alphabet", None).await;
    let group_path = format!("/{DOMAIN}/admin/groups/{group}");
    let found = browser.get(&format!("{group_path}?find=alpha")).await;
    let picks = found.html.split("id=\"results\"").nth(1).expect("results").to_owned();
    assert!(picks.contains(&format!("value=\"{alpha}\"")) && picks.contains(&format!("value=\"{beta}\"")), "{picks}");
    assert!(!picks.contains(&format!("value=\"{member}\"")), "only what matches: {picks}");
    let csrf = csrf_of(&found);
    let forged = browser
        .post_form(&group_path, &fields(&[("csrf", "x"), ("action", "add_members"), ("principal", &alpha)]))
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "{}", forged.text());
    let none = browser.post_form(&group_path, &fields(&[("csrf", &csrf), ("action", "add_members")])).await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST, "nothing picked: {}", none.text());
    let result = browser
        .post_form(
            &group_path,
            &fields(&[
                ("csrf", &csrf),
                ("action", "add_members"),
                ("principal", &alpha),
                ("principal", &beta),
                ("principal", &member),
            ]),
        )
        .await;
    assert_eq!(result.by_id("summary").as_deref(), Some("2 added as members, 1 refused."), "{}", result.text());
    assert!(result.text().contains("already exist"), "the member already was one: {}", result.text());
    let count = |relation: &'static str| {
        let (app, group) = (&app, group.clone());
        async move {
            let reply = app.get(&format!("/v1.0/groups/{group}/{relation}")).await;
            reply.body["value"].as_array().map_or(0, Vec::len)
        }
    };
    assert_eq!(count("members").await, 3);
    // Owners are users: a group picked as an owner is refused, the user added.
    let owners = browser
        .post_form(
            &group_path,
            &fields(&[("csrf", &csrf), ("action", "add_owners"), ("principal", &alpha), ("principal", &group)]),
        )
        .await;
    assert_eq!(owners.by_id("summary").as_deref(), Some("1 added as owners, 1 refused."), "{}", owners.text());
    assert_eq!(count("owners").await, 1);

    // Removing asks first, then goes through the use case (audited).
    let page = browser.get(&group_path).await;
    let link = page
        .html
        .split("href=\"")
        .filter_map(|it| it.split('"').next())
        .find(|it| it.contains("relation=members") && it.contains(&alpha))
        .expect("alpha's remove link")
        .replace("&amp;", "&");
    let confirm = browser.get(&link).await;
    assert!(confirm.by_id("what").is_some_and(|it| it.contains("alpha Tester")), "{}", confirm.text());
    assert_eq!(count("members").await, 3, "nothing removed before the confirmation");
    let removed = post_confirmation(&mut browser, &confirm).await;
    assert_eq!(removed.by_id("notice").as_deref(), Some("Done: removed."), "{}", removed.text());
    assert_eq!(count("members").await, 2);
    let again = browser
        .post_form(
            &group_path,
            &fields(&[("csrf", &csrf), ("action", "remove"), ("relation", "members"), ("object", &alpha)]),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "a replay finds nothing: {}", again.text());
    let activities: Vec<String> =
        app.audit_for(&alpha).await.iter().map(|it| it.activity_display_name.clone()).collect();
    for expected in ["Add member to group", "Add owner to group", "Remove member from group"] {
        assert!(activities.iter().any(|it| it == expected), "{expected}: {activities:?}");
    }

    // The same form sent twice at once (a double click, two tabs): one adds, the other is told the
    // member is already there.
    let twice = user(&app, "twice", None).await;
    let mut second = Browser::new(&app.base_url);
    second.cookies = browser.cookies.clone();
    let form = fields(&[("csrf", &csrf), ("action", "add_members"), ("principal", &twice)]);
    let (one, other) = tokio::join!(browser.post_form(&group_path, &form), second.post_form(&group_path, &form));
    let mut summaries = [one.by_id("summary"), other.by_id("summary")];
    summaries.sort();
    assert_eq!(
        summaries,
        [Some("0 added as members, 1 refused.".to_owned()), Some("1 added as members, 0 refused.".to_owned())],
        "{}\n{}",
        one.text(),
        other.text()
    );
    assert_eq!(count("members").await, 3);

    // A Helpdesk Administrator may not change a role-assignable group: refused and recorded.
    user(&app, "desk", Some(roles::HELPDESK_ADMINISTRATOR)).await;
    let mut desk = Browser::new(&app.base_url);
    sign_in(&app, &mut desk, "desk").await;
    let desk_page = desk.get(&group_path).await;
    let refused = desk
        .post_form(
            &group_path,
            &fields(&[("csrf", &csrf_of(&desk_page)), ("action", "add_members"), ("principal", &alpha)]),
        )
        .await;
    assert_eq!(refused.by_id("summary").as_deref(), Some("0 added as members, 1 refused."), "{}", refused.text());
    assert_eq!(count("members").await, 3);
}

/// Every page takes its look from one stylesheet; the Content-Security-Policy allows no inline
/// style or script, and no framing.
async fn pages_have_one_stylesheet_and_no_inline_style(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let css = app.client.get(format!("{}/assets/keyward.css", app.base_url)).send().await.expect("stylesheet");
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert!(css.text().await.expect("css").contains(".portal main"));
    let mut browser = Browser::new(&app.base_url);
    let mut pages = vec![browser.get(&format!("/{DOMAIN}/login")).await];
    user(&app, "styled", Some(roles::HELPDESK_ADMINISTRATOR)).await;
    pages.push(sign_in(&app, &mut browser, "styled").await);
    pages.push(browser.get(&format!("/{DOMAIN}/admin/users")).await);
    for page in pages {
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert!(page.html.contains("href=\"/assets/keyward.css\""), "{}", page.path);
        assert!(!page.html.contains("<style") && !page.html.contains("style="), "{}", page.path);
    }
    let login = app.client.get(format!("{}/{DOMAIN}/login", app.base_url)).send().await.expect("page");
    let policy = login.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(policy.contains("style-src 'self'") && !policy.contains("unsafe-inline"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'") && policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-eval"), "{policy}");
    let script = app.client.get(format!("{}/assets/keyward.js", app.base_url)).send().await.expect("script");
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    // Every response, pages, assets, Graph and errors alike, forbids type sniffing.
    let graph = app.get("/v1.0/me").await;
    let missing = app.client.get(format!("{}/no/such/page", app.base_url)).send().await.expect("404");
    for (what, value) in [
        ("page", login.headers().get("x-content-type-options")),
        ("script", script.headers().get("x-content-type-options")),
        ("graph", graph.headers.get("x-content-type-options")),
        ("not found", missing.headers().get("x-content-type-options")),
    ] {
        assert_eq!(value.and_then(|it| it.to_str().ok()), Some("nosniff"), "{what}");
    }
    assert!(script.text().await.expect("js").contains("data-live"));
}

/// The methods activity page: registration coverage and today's resets, passes and refusals;
/// a role that reads neither the report nor the audit log is told so.
async fn the_methods_activity_report(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "chief", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let chief_id = app.get(&format!("/v1.0/users/chief@{DOMAIN}")).await;
    let chief_id = id_of(&chief_id.body);
    let adele = user(&app, "adele", None).await;
    user(&app, "helper", Some(roles::AUTHENTICATION_ADMINISTRATOR)).await;
    user(&app, "helpdesk", Some(roles::HELPDESK_ADMINISTRATOR)).await;
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "chief").await;
    let reset = app
        .post(
            &format!("/v1.0/users/{adele}/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword"),
            &json!({}),
        )
        .await;
    assert_eq!(reset.status, StatusCode::ACCEPTED, "{}", reset.text);
    let pass = app.post(&format!("/v1.0/users/{adele}/authentication/temporaryAccessPassMethods"), &json!({})).await;
    assert_eq!(pass.status, StatusCode::CREATED, "{}", pass.text);
    let helper = app.token_for(&format!("helper@{DOMAIN}")).await;
    let refused = app
        .as_user(&helper)
        .post(&format!("/v1.0/users/{chief_id}/authentication/temporaryAccessPassMethods"), &json!({}))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);

    let page = browser.get(&format!("/{DOMAIN}/admin/reports")).await;
    assert_eq!(page.title(), "Authentication methods activity", "{}", page.text());
    // admin, chief, adele, helper, helpdesk; of the four role holders only chief (signed in
    // above) has an authenticator app.
    assert!(page.by_id("coverage-summary").is_some_and(|it| it.starts_with("5 enabled users")), "{}", page.text());
    assert_eq!(page.by_id("admins-without-mfa").as_deref(), Some("3"));
    let methods = page.html.split("id=\"methods\"").nth(1).expect("methods table").to_owned();
    assert!(methods.contains("<tr><td>Authenticator app</td><td>1</td><td>20%</td></tr>"), "{methods}");
    assert!(page.html.contains("<svg class=\"chart\" role=\"img\""), "charts are drawn");
    let today = app.app.now().date().to_string();
    let activity = page.html.split("id=\"activity\"").nth(1).expect("activity table").to_owned();
    assert!(activity.contains(&format!("<tr><td>{today}</td><td>1</td><td>1</td><td>1</td></tr>")), "{activity}");
    assert_eq!(activity.matches("<tr><td>").count(), 30, "thirty days");

    // The registration figures are counted again when the audit log moved on and they are a
    // minute old; within the minute the page says when they were counted.
    let mobile_row = |page: &Page| {
        let methods = page.html.split("id=\"methods\"").nth(1).expect("methods table").to_owned();
        methods.split("<tr><td>Mobile phone</td><td>").nth(1).and_then(|it| it.split('<').next()).map(str::to_owned)
    };
    assert_eq!(mobile_row(&page).as_deref(), Some("0"));
    let phone = app
        .post(
            &format!("/v1.0/users/{adele}/authentication/phoneMethods"),
            &json!({"phoneNumber": "+1 2065550199", "phoneType": "mobile"}),
        )
        .await;
    assert_eq!(phone.status, StatusCode::CREATED, "{}", phone.text);
    let soon = browser.get(&format!("/{DOMAIN}/admin/reports")).await;
    assert_eq!(mobile_row(&soon).as_deref(), Some("0"), "within the minute: the figures counted before");
    assert!(soon.by_id("as-of").is_some_and(|it| it.contains("Registration figures as of")), "{}", soon.text());
    app.clock.advance(time::Duration::seconds(61));
    let later = browser.get(&format!("/{DOMAIN}/admin/reports")).await;
    assert_eq!(mobile_row(&later).as_deref(), Some("1"), "{}", later.text());
    // A change that writes no audit record shows within ten minutes.
    let store = keyward_store::open(&app.database_url).await.expect("store");
    let mut tx = store.write().await.expect("tx");
    tx.put_phone_method(
        &keyward_core::ids::ObjectId::parse(&chief_id).expect("id"),
        "mobile",
        "+1 2065550111",
        app.app.now(),
    )
    .await
    .expect("phone");
    tx.commit().await.expect("commit");
    app.clock.advance(time::Duration::seconds(61));
    let quiet = browser.get(&format!("/{DOMAIN}/admin/reports")).await;
    assert_eq!(mobile_row(&quiet).as_deref(), Some("1"), "the audit log did not move");
    app.clock.advance(time::Duration::minutes(10));
    let recounted = browser.get(&format!("/{DOMAIN}/admin/reports")).await;
    assert_eq!(mobile_row(&recounted).as_deref(), Some("2"), "{}", recounted.text());

    // An Authentication Administrator sees the users without an admin role (adele only).
    let mut helper_browser = Browser::new(&app.base_url);
    sign_in(&app, &mut helper_browser, "helper").await;
    let limited = helper_browser.get(&format!("/{DOMAIN}/admin/reports")).await;
    assert!(
        limited
            .by_id("coverage-summary")
            .is_some_and(|it| it.starts_with("1 enabled users without an administrator role")),
        "{}",
        limited.text()
    );
    assert!(limited.by_id("admins-without-mfa").is_none() && limited.by_id("activity-hidden").is_some());

    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "helpdesk").await;
    let hidden = browser.get(&format!("/{DOMAIN}/admin/reports")).await;
    assert_eq!(hidden.status, StatusCode::OK, "{}", hidden.text());
    assert!(
        hidden.by_id("registration-hidden").is_some() && hidden.by_id("activity-hidden").is_some(),
        "{}",
        hidden.text()
    );
    assert!(!hidden.html.contains("id=\"capability\""));
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

/// Users are created (with a password Keyward chooses and shows once, or one typed), edited,
/// disabled, enabled and deleted through the same use cases as Graph; bad input and a forged
/// form change nothing, and an Authentication Administrator cannot disable or delete a Global
/// Administrator.
async fn users_are_created_edited_disabled_and_deleted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let chief = user(&app, "chief", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    user(&app, "helper", Some(roles::AUTHENTICATION_ADMINISTRATOR)).await;
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "chief").await;
    let form = browser.get(&format!("/{DOMAIN}/admin/users/new")).await;
    assert_eq!(form.title(), "New user", "{}", form.text());
    let csrf = csrf_of(&form);
    let new = format!("/{DOMAIN}/admin/users/new");
    let nina_upn = format!("nina@{DOMAIN}");
    let base = [
        ("display_name", "Nina New"),
        ("user_principal_name", nina_upn.as_str()),
        ("force_change", "true"),
        ("account_enabled", "true"),
    ];

    // A forged form (no CSRF token), a weak typed password and a bad sign-in name create nobody.
    let forged = browser.post_form(&new, &fields(&base)).await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "{}", forged.text());
    let weak = browser
        .post_form(&new, &fields(&[base.as_slice(), &[("csrf", &csrf), ("password", "password")]].concat()))
        .await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST, "{}", weak.text());
    assert!(weak.by_id("error").is_some_and(|it| it.contains("password")), "{}", weak.text());
    assert!(weak.html.contains("value=\"Nina New\""), "the form keeps what was typed");
    let bad_upn = browser
        .post_form(
            &new,
            &fields(&[("csrf", &csrf), ("display_name", "Nina New"), ("user_principal_name", "nina@elsewhere.test")]),
        )
        .await;
    assert_eq!(bad_upn.status, StatusCode::BAD_REQUEST, "{}", bad_upn.text());
    let long_title = "x".repeat(300);
    let too_long = browser
        .post_form(&new, &fields(&[base.as_slice(), &[("csrf", &csrf), ("job_title", &long_title)]].concat()))
        .await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST, "{}", too_long.text());
    assert!(too_long.by_id("error").is_some_and(|it| it.contains("'job_title' is too long")), "{}", too_long.text());
    assert!(too_long.html.contains("value=\"Nina New\""), "a field refused by the page keeps the others too");
    assert_eq!(app.get(&format!("/v1.0/users/{nina_upn}")).await.status, StatusCode::NOT_FOUND);

    // Created with a password Keyward chooses, shown once.
    let created =
        browser.post_form(&new, &fields(&[base.as_slice(), &[("csrf", &csrf), ("job_title", "Nurse")]].concat())).await;
    assert_eq!(created.title(), "User created", "{}", created.text());
    let password = created.by_id("secret").expect("the password, once");
    assert!(password.len() >= 16, "{password}");
    let nina = app.get(&format!("/v1.0/users/{nina_upn}?$select=id,jobTitle,accountEnabled")).await;
    assert_eq!(nina.body["jobTitle"], "Nurse", "{}", nina.text);
    let nina = id_of(&nina.body);
    let mut fresh = Browser::new(&app.base_url);
    let page = fresh.get(&format!("/{DOMAIN}/login")).await;
    let page = fresh.submit(&page, "username", &[("username", &nina_upn)], &[]).await;
    let page = fresh.submit(&page, "password", &[("current-password", &password)], &[]).await;
    assert_eq!(page.title(), "Update your password", "the chosen password works once, to change it");
    let duplicate = browser.post_form(&new, &fields(&[base.as_slice(), &[("csrf", &csrf)]].concat())).await;
    assert!(duplicate.status.is_client_error() && duplicate.by_id("error").is_some(), "{}", duplicate.text());

    // Edited: only what changed is saved.
    let user_path = format!("/{DOMAIN}/admin/users/{nina}");
    let edit = browser.get(&format!("{user_path}/edit")).await;
    assert_eq!(edit.title(), "Edit Nina New", "{}", edit.text());
    let saved = browser
        .post_form(
            &format!("{user_path}/edit"),
            &fields(&[
                ("csrf", &csrf),
                ("display_name", "Nina Newer"),
                ("user_principal_name", &nina_upn),
                ("job_title", "Head nurse"),
            ]),
        )
        .await;
    assert_eq!(saved.by_id("notice").as_deref(), Some("Done: the profile was saved."), "{}", saved.text());
    let after = app.get(&format!("/v1.0/users/{nina}?$select=displayName,jobTitle")).await;
    assert_eq!(
        (after.body["displayName"].as_str(), after.body["jobTitle"].as_str()),
        (Some("Nina Newer"), Some("Head nurse"))
    );
    // Her department set by someone else while the page is open: saving the page's other change
    // does not empty it again.
    let open = browser.get(&format!("{user_path}/edit")).await;
    let inputs = open.forms().into_iter().flat_map(|it| it.inputs);
    let shown = inputs.into_iter().find(|it| it.0 == "shown").expect("what the page showed").1;
    let patched = app.patch(&format!("/v1.0/users/{nina}"), &json!({"department": "Cardiology"})).await;
    assert_eq!(patched.status, StatusCode::NO_CONTENT, "{}", patched.text);
    let saved = browser
        .post_form(
            &format!("{user_path}/edit"),
            &fields(&[
                ("csrf", &csrf),
                ("shown", &shown),
                ("display_name", "Nina Newer"),
                ("user_principal_name", &nina_upn),
                ("job_title", "Ward manager"),
                ("department", ""),
            ]),
        )
        .await;
    assert_eq!(saved.by_id("notice").as_deref(), Some("Done: the profile was saved."), "{}", saved.text());
    let after = app.get(&format!("/v1.0/users/{nina}?$select=department,jobTitle")).await;
    assert_eq!(
        (after.body["department"].as_str(), after.body["jobTitle"].as_str()),
        (Some("Cardiology"), Some("Ward manager")),
        "{}",
        after.text
    );

    // Disabled and enabled again, each confirmed.
    let confirm = browser.get(&format!("{user_path}/confirm?action=disable")).await;
    assert!(confirm.by_id("what").is_some_and(|it| it.contains("can no longer sign in")), "{}", confirm.text());
    let disabled = browser.post_form(&user_path, &fields(&[("csrf", &csrf), ("action", "disable")])).await;
    assert_eq!(disabled.by_id("account").as_deref(), Some("Disabled"), "{}", disabled.text());
    assert!(disabled.by_id("enable").is_some() && disabled.by_id("disable").is_none());
    let enabled = browser.post_form(&user_path, &fields(&[("csrf", &csrf), ("action", "enable")])).await;
    assert_eq!(enabled.by_id("account").as_deref(), Some("Enabled"), "{}", enabled.text());

    // An Authentication Administrator may not edit or delete a Global Administrator; a forged
    // delete is refused and recorded.
    let mut helper = Browser::new(&app.base_url);
    sign_in(&app, &mut helper, "helper").await;
    let chief_page = helper.get(&format!("/{DOMAIN}/admin/users/{chief}")).await;
    for action in ["disable", "delete"] {
        assert!(chief_page.html.contains(&format!("id=\"{action}\" disabled")), "{action}: {}", chief_page.text());
    }
    let helper_csrf = csrf_of(&helper.get(&format!("/{DOMAIN}/admin/users/{chief}/edit")).await);
    let forged_delete = helper
        .post_form(&format!("/{DOMAIN}/admin/users/{chief}"), &fields(&[("csrf", &helper_csrf), ("action", "delete")]))
        .await;
    assert_eq!(forged_delete.status, StatusCode::FORBIDDEN, "{}", forged_delete.text());
    assert_eq!(app.get(&format!("/v1.0/users/{chief}")).await.status, StatusCode::OK);
    let refusals = app.audit_for(&chief).await;
    assert!(
        refusals
            .iter()
            .any(|it| it.activity_display_name == "Delete user"
                && it.result == keyward_core::audit::AuditResult::Failure),
        "{refusals:?}"
    );

    // Deleted.
    let deleted = browser.post_form(&user_path, &fields(&[("csrf", &csrf), ("action", "delete")])).await;
    assert_eq!(deleted.by_id("notice").as_deref(), Some("Done: the user was deleted."), "{}", deleted.text());
    assert_eq!(app.get(&format!("/v1.0/users/{nina}")).await.status, StatusCode::NOT_FOUND);
    let activities: Vec<String> =
        app.audit_for(&nina).await.iter().map(|it| it.activity_display_name.clone()).collect();
    for expected in ["Add user", "Update user", "Delete user"] {
        assert!(activities.iter().any(|it| it == expected), "{expected}: {activities:?}");
    }
}

/// My Security Info: the user's methods and newest sign-ins, and "Sign out everywhere", which
/// ends every session and token of the user (this one too) and is audited as their own change.
async fn my_security_info_signs_out_everywhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mina = user(&app, "mina", None).await;
    let phone = app
        .post(
            &format!("/v1.0/users/{mina}/authentication/phoneMethods"),
            &json!({"phoneNumber": "+1 2065550123", "phoneType": "mobile"}),
        )
        .await;
    assert_eq!(phone.status, StatusCode::CREATED, "{}", phone.text);
    let mut wrong = Browser::new(&app.base_url);
    let page = wrong.get(&format!("/{DOMAIN}/login")).await;
    let page = wrong.submit(&page, "username", &[("username", &format!("mina@{DOMAIN}"))], &[]).await;
    wrong.submit(&page, "password", &[("current-password", "not-the-password")], &[]).await;
    let mut other = Browser::new(&app.base_url);
    assert_eq!(sign_in(&app, &mut other, "mina").await.title(), "My account");
    let mut browser = Browser::new(&app.base_url);
    let account = sign_in(&app, &mut browser, "mina").await;
    assert_eq!(account.title(), "My account", "{}", account.text());
    assert!(account.text().contains("Mobile phone: +1 2065550123"), "{}", account.text());
    let recent = account.html.split("id=\"recent-sign-ins\"").nth(1).expect("recent sign-ins").to_owned();
    assert!(recent.contains("Success") && recent.contains("Failed"), "the wrong password shows too: {recent}");
    let token = app.token_for(&format!("mina@{DOMAIN}")).await;
    assert_eq!(app.as_user(&token).get("/v1.0/me").await.status, StatusCode::OK);

    app.clock.advance(time::Duration::seconds(1));
    let out = browser.submit(&account, "signout_everywhere", &[], &[]).await;
    assert!(out.text().contains("You signed out everywhere"), "{}", out.text());
    let elsewhere = other.get(&format!("/{DOMAIN}/login")).await;
    assert_ne!(elsewhere.title(), "My account", "the other browser's session ended too");
    assert_eq!(app.as_user(&token).get("/v1.0/me").await.status, StatusCode::UNAUTHORIZED, "and the tokens");
    let records = app.audit_for(&mina).await;
    let record = records
        .iter()
        .find(|it| it.activity_display_name == "Update StsRefreshTokenValidFrom Timestamp")
        .unwrap_or_else(|| panic!("audited: {records:?}"));
    assert!(
        matches!(&record.initiated_by, keyward_core::audit::Initiator::User { user_principal_name, .. } if user_principal_name == &format!("mina@{DOMAIN}")),
        "{record:?}"
    );
}

/// My Security Info adds and changes phone numbers and the e-mail address and deletes methods,
/// through the same use cases as `/me/authentication/…`: MFA within the last 10 minutes, a
/// confirmation before a deletion, bad input refused with nothing changed, and every change
/// audited as the user's own.
async fn my_security_info_manages_phones_email_and_methods(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let noor = user(&app, "noor", None).await;
    let mut browser = Browser::new(&app.base_url);
    let account = sign_in(&app, &mut browser, "noor").await;
    assert_eq!(account.title(), "My account", "{}", account.text());
    let phone = [("phone_type", "mobile"), ("value", "+1 2065550177")];

    // A password alone is not enough to change security info.
    let refused = browser.submit(&account, "add_phone", &[], &phone).await;
    assert!(refused.text().contains("within the last 10 minutes"), "{}", refused.text());
    assert!(!refused.text().contains("+1 2065550177"), "nothing saved: {}", refused.text());

    // With an authenticator app registered in this session, the session has MFA.
    let setup = browser.submit(&refused, "add_totp", &[], &[]).await;
    let secret = totp::base32_decode(&setup.by_id("secret").expect("secret")).expect("base32");
    let code = totp::code_at_step(&secret, totp::step_at(app.app.now().unix_timestamp()));
    let account = browser.submit(&setup, "register_totp", &[("one-time-code", &code)], &[]).await;
    assert_eq!(account.title(), "My account", "{}", account.text());
    let saved = browser.submit(&account, "add_phone", &[], &phone).await;
    assert!(saved.text().contains("Saved your mobile phone number"), "{}", saved.text());
    assert!(methods_of(&saved).contains("Mobile phone: +1 2065550177"), "{}", methods_of(&saved));
    // The same type again changes the number; a malformed one is refused and changes nothing.
    let changed =
        browser.submit(&saved, "add_phone", &[], &[("phone_type", "mobile"), ("value", "+1 2065550188")]).await;
    assert!(methods_of(&changed).contains("Mobile phone: +1 2065550188"), "{}", methods_of(&changed));
    let bad = browser.submit(&changed, "add_phone", &[], &[("phone_type", "office"), ("value", "call me")]).await;
    assert!(
        bad.text().contains("is not a valid phone number") || bad.text().contains("phone number"),
        "{}",
        bad.text()
    );
    assert!(!methods_of(&bad).contains("Office phone"), "{}", methods_of(&bad));
    let unknown = browser.submit(&bad, "add_phone", &[], &[("phone_type", "pager"), ("value", "+1 2065550100")]).await;
    assert!(unknown.text().contains("Choose which phone"), "{}", unknown.text());
    let email = browser.submit(&unknown, "add_email", &[], &[("value", "noor@example.org")]).await;
    assert!(methods_of(&email).contains("Email: noor@example.org"), "{}", methods_of(&email));
    let phones = app.get(&format!("/v1.0/users/{noor}/authentication/phoneMethods")).await;
    assert_eq!(phones.body["value"][0]["phoneNumber"], "+1 2065550188", "{}", phones.text);

    // Deleting asks first and says what goes; the confirmation deletes it.
    let ask = browser.submit(&email, "delete_method", &[], &[("method", "phone:mobile")]).await;
    assert_eq!(ask.title(), "Delete a method", "{}", ask.text());
    assert!(ask.text().contains("Mobile phone: +1 2065550188"), "{}", ask.text());
    let still = app.get(&format!("/v1.0/users/{noor}/authentication/phoneMethods")).await;
    assert_eq!(still.body["value"].as_array().map(Vec::len), Some(1), "not deleted before the confirmation");
    let deleted = browser.submit(&ask, "delete_method", &[], &[]).await;
    assert!(deleted.text().contains("Deleted."), "{}", deleted.text());
    assert!(!methods_of(&deleted).contains("Mobile phone"), "{}", methods_of(&deleted));
    // A replay of the confirmation finds nothing to delete; a forged form is refused.
    let replay = browser.submit(&ask, "delete_method", &[], &[]).await;
    assert!(replay.text().contains("no longer exists"), "{}", replay.text());
    let csrf = csrf_of(&replay);
    let forged = browser
        .post_form(
            &format!("/{DOMAIN}/login"),
            &fields(&[("csrf", "forged"), ("step", "delete_method"), ("method", "email"), ("confirmed", "yes")]),
        )
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "{}", forged.text());
    assert!(methods_of(&browser.get(&format!("/{DOMAIN}/login")).await).contains("Email: noor@example.org"));
    // The authenticator app goes the same way (its method value names it).
    let app_method = methods_of(&replay)
        .split("value=\"")
        .find_map(|it| it.strip_prefix("totp:").map(|rest| format!("totp:{}", &rest[..rest.find('"').unwrap_or(0)])))
        .expect("the app's delete form");
    let gone = browser
        .post_form(
            &format!("/{DOMAIN}/login"),
            &fields(&[("csrf", &csrf), ("step", "delete_method"), ("method", &app_method), ("confirmed", "yes")]),
        )
        .await;
    assert!(!methods_of(&gone).contains("Authenticator app"), "{}", methods_of(&gone));

    // After ten minutes the session's MFA is too old, and adding another app does not renew it.
    app.clock.advance(time::Duration::minutes(9));
    let setup = browser.submit(&gone, "add_totp", &[], &[]).await;
    let secret = totp::base32_decode(&setup.by_id("secret").expect("secret")).expect("base32");
    let code = totp::code_at_step(&secret, totp::step_at(app.app.now().unix_timestamp()));
    let again = browser.submit(&setup, "register_totp", &[("one-time-code", &code)], &[]).await;
    assert!(methods_of(&again).contains("Authenticator app"), "{}", again.text());
    app.clock.advance(time::Duration::minutes(2));
    let late = browser.submit(&again, "add_email", &[], &[("value", "other@example.org")]).await;
    assert!(late.text().contains("within the last 10 minutes"), "{}", late.text());
    assert!(methods_of(&late).contains("Email: noor@example.org"), "{}", methods_of(&late));

    let activities: Vec<String> =
        app.audit_for(&noor).await.iter().map(|it| it.activity_display_name.clone()).collect();
    for expected in ["User registered security info", "User updated security info", "User deleted security info"] {
        assert!(activities.iter().any(|it| it == expected), "{expected}: {activities:?}");
    }

    // A user whose methods are a phone and an e-mail address (no app to sign in with): a password
    // alone may not add an app (whoever adds one could then change them); a Temporary Access
    // Pass from the service desk is the way.
    let pria = user(&app, "pria", None).await;
    for (path, body) in [
        ("phoneMethods", json!({"phoneNumber": "+1 2065550142", "phoneType": "mobile"})),
        ("emailMethods", json!({"emailAddress": "pria@example.org"})),
    ] {
        let added = app.post(&format!("/v1.0/users/{pria}/authentication/{path}"), &body).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    }
    let mut attacker = Browser::new(&app.base_url);
    let account = sign_in(&app, &mut attacker, "pria").await;
    assert_eq!(account.title(), "My account", "{}", account.text());
    let planted = attacker.submit(&account, "add_totp", &[], &[]).await;
    assert_eq!(planted.title(), "My account", "no registration page: {}", planted.text());
    assert!(planted.text().contains("ask your administrator for a Temporary Access Pass"), "{}", planted.text());
    let taken = attacker.submit(&planted, "add_email", &[], &[("value", "attacker@example.org")]).await;
    assert!(methods_of(&taken).contains("Email: pria@example.org"), "{}", methods_of(&taken));
}

/// Custom roles are created and edited with a permission picker that offers only what a custom
/// role may hold, through the same use cases (rules, Graph's messages, audit) as
/// `roleDefinitions`; a role anybody holds is not deleted; what was typed survives a refusal.
async fn custom_roles_are_created_edited_and_deleted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "chief", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let holder = user(&app, "holder", None).await;
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "chief").await;
    let form = browser.get(&format!("/{DOMAIN}/admin/roles/new")).await;
    assert_eq!(form.title(), "New custom role", "{}", form.text());
    let reset = "microsoft.directory/users/password/update";
    let read = "microsoft.directory/users/authenticationMethods/standard/read";
    let escalation = "microsoft.directory/roleAssignments/allProperties/allTasks";
    assert!(form.html.contains(&format!("value=\"{reset}\"")) && form.html.contains(&format!("value=\"{read}\"")));
    assert!(!form.html.contains(escalation), "a custom role may not hold it, so it is not offered");
    let csrf = csrf_of(&form);
    let new_path = format!("/{DOMAIN}/admin/roles/new");
    let post = |name: &str, permissions: &[&str]| {
        let mut pairs = vec![
            ("csrf".to_owned(), csrf.clone()),
            ("action".to_owned(), "save".to_owned()),
            ("display_name".to_owned(), name.to_owned()),
            ("description".to_owned(), "Resets passwords".to_owned()),
            ("is_enabled".to_owned(), "true".to_owned()),
        ];
        pairs.extend(permissions.iter().map(|it| ("permission".to_owned(), (*it).to_owned())));
        pairs
    };

    // A forged form with an action a custom role may not hold: Graph's message, nothing made,
    // and what was typed is still in the form.
    let refused = browser.post_form(&new_path, &post("Password resetters", &[reset, escalation])).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text());
    assert!(refused.by_id("error").is_some_and(|it| it.contains("is not supported for Custom Role creation")));
    assert!(refused.html.contains("value=\"Password resetters\""), "{}", refused.text());
    assert!(
        refused
            .html
            .contains(&format!("value=\"{reset}\" id=\"perm-microsoft-directory-users-password-update\" checked"))
    );
    let definitions = |name: &'static str| {
        let app = &app;
        async move {
            let reply = app
                .get(&format!("/v1.0/roleManagement/directory/roleDefinitions?$filter=displayName eq '{name}'"))
                .await;
            reply.body["value"].as_array().cloned().unwrap_or_default()
        }
    };
    assert!(definitions("Password resetters").await.is_empty());

    let created = browser.post_form(&new_path, &post("Password resetters", &[reset, read])).await;
    assert_eq!(created.title(), "Password resetters", "{}", created.text());
    assert!(created.by_id("notice").is_some_and(|it| it.starts_with("Done: the role was created")));
    let role = definitions("Password resetters").await;
    let role_id = role[0]["id"].as_str().expect("id").to_owned();
    let actions = &role[0]["rolePermissions"][0]["allowedResourceActions"];
    assert_eq!(actions.as_array().map(Vec::len), Some(2), "{actions}");
    let duplicate = browser.post_form(&new_path, &post("Password resetters", &[read])).await;
    assert_eq!(duplicate.status, StatusCode::BAD_REQUEST, "{}", duplicate.text());

    // Edited: one permission off, renamed; audited with old and new values.
    let edit_path = format!("/{DOMAIN}/admin/roles/{role_id}/edit");
    let edit = browser.get(&edit_path).await;
    assert_eq!(edit.title(), "Edit Password resetters", "{}", edit.text());
    let saved = browser.post_form(&edit_path, &post("Method readers", &[read])).await;
    assert_eq!(saved.by_id("notice").as_deref(), Some("Done: the role was saved."), "{}", saved.text());
    let role = definitions("Method readers").await;
    assert_eq!(role[0]["rolePermissions"][0]["allowedResourceActions"], json!([read]));
    // Disabled, and given a permission, by someone else while the page is open: saving the page's
    // other change keeps both (the page sends what it showed; only what changed on it is saved).
    let open = browser.get(&edit_path).await;
    let inputs = open.forms().into_iter().flat_map(|it| it.inputs);
    let shown = inputs.into_iter().find(|it| it.0 == "shown").expect("what the page showed").1;
    let path = format!("/v1.0/roleManagement/directory/roleDefinitions/{role_id}");
    let patched = app
        .patch(&path, &json!({"isEnabled": false, "rolePermissions": [{"allowedResourceActions": [read, reset]}]}))
        .await;
    assert_eq!(patched.status, StatusCode::NO_CONTENT, "{}", patched.text);
    let mut stale = post("Method readers", &[read]);
    stale.retain(|(name, _)| name != "description");
    stale.push(("description".to_owned(), "Reads methods".to_owned()));
    stale.push(("shown".to_owned(), shown));
    let saved = browser.post_form(&edit_path, &stale).await;
    assert_eq!(saved.by_id("notice").as_deref(), Some("Done: the role was saved."), "{}", saved.text());
    let role = app.get(&path).await;
    assert_eq!(role.body["isEnabled"], false, "{}", role.text);
    assert_eq!(role.body["description"], "Reads methods", "{}", role.text);
    assert_eq!(role.body["rolePermissions"][0]["allowedResourceActions"], json!([read, reset]), "{}", role.text);
    let restored =
        app.patch(&path, &json!({"isEnabled": true, "rolePermissions": [{"allowedResourceActions": [read]}]})).await;
    assert_eq!(restored.status, StatusCode::NO_CONTENT, "{}", restored.text);
    let mut unknown = post("Renamed by accident", &[read]);
    unknown[1].1 = "publish".to_owned();
    let refused_action = browser.post_form(&edit_path, &unknown).await;
    assert_eq!(refused_action.status, StatusCode::BAD_REQUEST, "{}", refused_action.text());
    assert!(definitions("Renamed by accident").await.is_empty(), "an unknown action saves nothing");
    let built_in = browser.get(&format!("/{DOMAIN}/admin/roles/{}/edit", roles::HELPDESK_ADMINISTRATOR)).await;
    assert_eq!(built_in.status, StatusCode::BAD_REQUEST, "{}", built_in.text());

    // Not deleted while held; deleted after a confirmation once nobody holds it.
    app.assign_role(&holder, &role_id, "/").await;
    let ask = browser.post_form(&edit_path, &fields(&[("csrf", &csrf), ("action", "delete")])).await;
    assert!(ask.by_id("what").is_some_and(|it| it.contains("Refused while anyone holds it")), "{}", ask.text());
    let held = post_confirmation(&mut browser, &ask).await;
    assert_eq!(held.status, StatusCode::BAD_REQUEST, "{}", held.text());
    assert_eq!(definitions("Method readers").await.len(), 1);
    let assignments =
        app.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{holder}'")).await;
    let assignment = assignments.body["value"][0]["id"].as_str().expect("assignment").to_owned();
    let removed = app.delete(&format!("/v1.0/roleManagement/directory/roleAssignments/{assignment}")).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let deleted = post_confirmation(&mut browser, &ask).await;
    assert_eq!(deleted.by_id("notice").as_deref(), Some("Done: the role was deleted."), "{}", deleted.text());
    assert!(definitions("Method readers").await.is_empty());

    // A Helpdesk Administrator may not create roles: the form says so, and the refusal is recorded.
    user(&app, "desk", Some(roles::HELPDESK_ADMINISTRATOR)).await;
    let mut desk_browser = Browser::new(&app.base_url);
    sign_in(&app, &mut desk_browser, "desk").await;
    let desk_form = desk_browser.get(&new_path).await;
    let mut pairs = post("Climbers", &[read]);
    pairs[0].1 = csrf_of(&desk_form);
    let climb = desk_browser.post_form(&new_path, &pairs).await;
    assert_eq!(climb.status, StatusCode::FORBIDDEN, "{}", climb.text());
    assert!(definitions("Climbers").await.is_empty());
    let failures = app
        .get("/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Add role definition' and result eq 'failure'")
        .await;
    assert_eq!(failures.body["value"].as_array().map(Vec::len), Some(1), "{}", failures.text);
}

/// A role's page lists its assignments 50 at a time, each with its principal's name, and pages on.
async fn a_role_page_pages_its_assignments(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "chief", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    for n in 0..51 {
        let created = app
            .post(
                "/v1.0/groups",
                &json!({"displayName": format!("Desk team {n:02}"), "mailEnabled": false, "mailNickname": format!("desk{n}"),
                        "securityEnabled": true, "isAssignableToRole": true}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        app.assign_role(&id_of(&created.body), roles::HELPDESK_ADMINISTRATOR, "/").await;
    }
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "chief").await;
    let first = browser.get(&format!("/{DOMAIN}/admin/roles/{}", roles::HELPDESK_ADMINISTRATOR)).await;
    let rows = |page: &Page| page.html.matches("<tr><td>Desk team").count();
    assert_eq!(rows(&first), 50, "{}", first.text());
    let next = first.html.split("id=\"next-page\" href=\"").nth(1).and_then(|it| it.split('"').next()).expect("next");
    let second = browser.get(&next.replace("&amp;", "&")).await;
    assert_eq!(rows(&second), 1, "{}", second.text());
    assert!(second.by_id("next-page").is_none());
    let names: std::collections::HashSet<String> = [&first, &second]
        .iter()
        .flat_map(|page| {
            page.html
                .match_indices("<tr><td>Desk team ")
                .map(|(at, _)| page.html[at + 8..at + 20].to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(names.len(), 51, "each group once: {names:?}");
}

/// Role assignments are added (several principals at once, each decided on its own) and removed
/// from a role's page; a role holder who may not assign roles is refused, and the refusal recorded.
async fn role_assignments_are_added_and_removed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "chief", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let desk = user(&app, "desk", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let first = user(&app, "first", None).await;
    user(&app, "second", None).await;
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "chief").await;
    let role_path = format!("/{DOMAIN}/admin/roles/{}", roles::HELPDESK_ADMINISTRATOR);
    let page = browser.get(&role_path).await;
    assert_eq!(page.title(), "Helpdesk Administrator", "{}", page.text());
    let csrf = csrf_of(&page);
    let forged =
        browser.post_form(&role_path, &fields(&[("action", "add"), ("principals", "first@contoso.test")])).await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);

    // The picker finds users and only role-assignable groups.
    let found = browser.get(&format!("{role_path}?find=fir")).await;
    assert!(found.html.contains(&format!("value=\"{first}\"")), "{}", found.text());
    let principals = format!("second@{DOMAIN}\nnobody@{DOMAIN}");
    let result = browser
        .post_form(
            &role_path,
            &fields(&[
                ("csrf", &csrf),
                ("action", "add"),
                ("principal", &first),
                ("principals", &principals),
                ("scope", "/"),
            ]),
        )
        .await;
    assert_eq!(result.by_id("summary").as_deref(), Some("2 assigned, 1 refused."), "{}", result.text());
    assert!(result.text().contains(&format!("nobody@{DOMAIN}: No such user or group.")), "{}", result.text());
    let held = |id: String| {
        let app = &app;
        async move {
            let reply =
                app.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{id}'")).await;
            reply.body["value"].as_array().map_or(0, Vec::len)
        }
    };
    assert_eq!(held(first.clone()).await, 1);

    // Removed, after a confirmation.
    let page = browser.get(&role_path).await;
    let row =
        page.html.split("<tr>").find(|it| it.contains(&format!("first@{DOMAIN}"))).expect("first's row").to_owned();
    let link =
        row.split("href=\"").nth(1).and_then(|it| it.split('"').next()).expect("remove link").replace("&amp;", "&");
    let confirm = browser.get(&link).await;
    assert!(confirm.text().contains("Removes this role from first Tester"), "{}", confirm.text());
    let assignment = link.split("assignment=").nth(1).expect("assignment id").to_owned();
    // Under another role's page, the same assignment is not found, and stays.
    let elsewhere = format!("/{DOMAIN}/admin/roles/{}", roles::GLOBAL_ADMINISTRATOR);
    let wrong_page = browser.get(&format!("{elsewhere}/remove?assignment={assignment}")).await;
    assert_eq!(wrong_page.status, StatusCode::NOT_FOUND, "{}", wrong_page.text());
    let wrong_post = browser
        .post_form(&elsewhere, &fields(&[("csrf", &csrf), ("action", "remove"), ("assignment", &assignment)]))
        .await;
    assert_eq!(wrong_post.status, StatusCode::NOT_FOUND, "{}", wrong_post.text());
    assert_eq!(held(first.clone()).await, 1);
    let removed = browser
        .post_form(&role_path, &fields(&[("csrf", &csrf), ("action", "remove"), ("assignment", &assignment)]))
        .await;
    assert_eq!(removed.by_id("notice").as_deref(), Some("Done: the assignment was removed."), "{}", removed.text());
    assert_eq!(held(first.clone()).await, 0);

    // A Privileged Authentication Administrator may not make themselves Global Administrator.
    let mut desk_browser = Browser::new(&app.base_url);
    sign_in(&app, &mut desk_browser, "desk").await;
    let global = format!("/{DOMAIN}/admin/roles/{}", roles::GLOBAL_ADMINISTRATOR);
    let desk_csrf = csrf_of(&desk_browser.get(&global).await);
    let climb = desk_browser
        .post_form(
            &global,
            &fields(&[("csrf", &desk_csrf), ("action", "add"), ("principals", &format!("desk@{DOMAIN}"))]),
        )
        .await;
    assert_eq!(climb.by_id("summary").as_deref(), Some("0 assigned, 1 refused."), "{}", climb.text());
    assert_eq!(held(desk.clone()).await, 1, "still only the role desk had");
    let refusals = app.audit_for(&desk).await;
    assert!(
        refusals
            .iter()
            .any(|it| it.result == keyward_core::audit::AuditResult::Failure
                && it.activity_display_name.contains("role")),
        "{refusals:?}"
    );
}

/// The administrative units pages: each unit with its restricted flag, members and scoped roles.
async fn administrative_units_and_their_scoped_roles(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "chief", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let member = user(&app, "member", None).await;
    let helper = user(&app, "helper", None).await;
    let unit = app.create_unit("Research <lab>", true, &[&member]).await;
    app.assign_role(&helper, roles::HELPDESK_ADMINISTRATOR, &format!("/administrativeUnits/{unit}")).await;
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "chief").await;
    let list = browser.get(&format!("/{DOMAIN}/admin/units")).await;
    assert_eq!(list.title(), "Administrative units", "{}", list.text());
    assert!(
        !list.html.contains("Research <lab>") && list.text().contains("Research <lab> Restricted"),
        "escaped, with its flag: {}",
        list.text()
    );
    let page = browser.get(&format!("/{DOMAIN}/admin/units/{unit}")).await;
    assert_eq!(page.title(), "Research <lab>", "{}", page.text());
    assert!(page.by_id("restricted").is_some_and(|it| it.starts_with("Restricted management: yes")));
    assert!(page.text().contains(&format!("Members member Tester (member@{DOMAIN}) (user) Remove")), "{}", page.text());
    let scoped = page.html.split("id=\"scoped\"").nth(1).expect("scoped roles").to_owned();
    assert!(scoped.contains("Helpdesk Administrator") && scoped.contains(&format!("helper@{DOMAIN}")), "{scoped}");
    let missing = browser.get(&format!("/{DOMAIN}/admin/units/00000000-0000-4000-8000-000000000000")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text());

    // Members are picked and added, and removed after a confirmation.
    let newcomer = user(&app, "newcomer", None).await;
    let unit_path = format!("/{DOMAIN}/admin/units/{unit}");
    let found = browser.get(&format!("{unit_path}?find=newc")).await;
    assert!(found.html.contains(&format!("value=\"{newcomer}\"")), "{}", found.text());
    let csrf = csrf_of(&found);
    let added = browser
        .post_form(&unit_path, &fields(&[("csrf", &csrf), ("action", "add_members"), ("principal", &newcomer)]))
        .await;
    assert_eq!(added.by_id("summary").as_deref(), Some("1 added, 0 refused."), "{}", added.text());
    let members = || {
        let (app, unit) = (&app, unit.clone());
        async move {
            let reply = app.get(&format!("/v1.0/directory/administrativeUnits/{unit}/members")).await;
            reply.body["value"].as_array().map_or(0, Vec::len)
        }
    };
    assert_eq!(members().await, 2);
    let confirm = browser.get(&format!("{unit_path}/remove?object={newcomer}")).await;
    assert!(confirm.by_id("what").is_some_and(|it| it.contains("restricted management")), "{}", confirm.text());
    let removed = post_confirmation(&mut browser, &confirm).await;
    assert_eq!(removed.by_id("notice").as_deref(), Some("Done: removed."), "{}", removed.text());
    assert_eq!(members().await, 1);
    let activities: Vec<String> =
        app.audit_for(&newcomer).await.iter().map(|it| it.activity_display_name.clone()).collect();
    assert!(
        activities.iter().any(|it| it == "Add member to restricted management administrative unit"),
        "{activities:?}"
    );

    // The unit-scoped Helpdesk Administrator may not change the unit's members: refused.
    let mut helper_browser = Browser::new(&app.base_url);
    sign_in(&app, &mut helper_browser, "helper").await;
    let helper_page = helper_browser.get(&unit_path).await;
    let refused = helper_browser
        .post_form(
            &unit_path,
            &fields(&[("csrf", &csrf_of(&helper_page)), ("action", "add_members"), ("principal", &newcomer)]),
        )
        .await;
    assert_eq!(refused.by_id("summary").as_deref(), Some("0 added, 1 refused."), "{}", refused.text());
    assert_eq!(members().await, 1);
}

/// Just-in-time roles in the portal: a Global Administrator makes a user eligible on the role's
/// page; the user, let in for it, activates the role on My roles, sees it active and deactivates
/// it; with approval turned on, the activation waits until the approver approves it on theirs.
async fn just_in_time_roles_in_the_portal(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let chief = user(&app, "chief", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let desk = user(&app, "desk", None).await;
    let role = roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR;
    let mut chief_browser = Browser::new(&app.base_url);
    sign_in(&app, &mut chief_browser, "chief").await;
    let role_path = format!("/{DOMAIN}/admin/roles/{role}");
    let page = chief_browser.get(&role_path).await;
    assert_eq!(page.by_id("no-eligible").as_deref(), Some("Nobody is eligible for this role."), "{}", page.text());
    let csrf = csrf_of(&page);
    let made = chief_browser
        .post_form(
            &role_path,
            &fields(&[
                ("csrf", &csrf),
                ("action", "eligible"),
                ("principals", &format!("desk@{DOMAIN}")),
                ("scope", "/"),
                ("days", "30"),
                ("justification", "service-desk rota"),
            ]),
        )
        .await;
    assert_eq!(made.by_id("summary").as_deref(), Some("1 made eligible, 0 refused."), "{}", made.text());
    let page = chief_browser.get(&role_path).await;
    let eligible = page.html.split("id=\"eligible\"").nth(1).expect("eligible table").to_owned();
    assert!(eligible.contains(&format!("desk@{DOMAIN}")), "{}", page.text());

    // The eligible user is let into the portal, lands on My roles and activates the role there.
    let mut desk_browser = Browser::new(&app.base_url);
    sign_in(&app, &mut desk_browser, "desk").await;
    let home = desk_browser.get(&format!("/{DOMAIN}/admin")).await;
    assert_eq!(home.title(), "My roles", "{}", home.text());
    assert!(home.by_id("no-active").is_some(), "{}", home.text());
    assert!(home.by_id("reauthenticate").is_none(), "MFA was just now: {}", home.text());
    let my_roles = format!("/{DOMAIN}/admin/my-roles");
    let desk_csrf = csrf_of(&home);
    let activate = |hours: &str, why: &str| {
        fields(&[
            ("csrf", &desk_csrf),
            ("action", "activate"),
            ("role", role),
            ("scope", "/"),
            ("hours", hours),
            ("justification", why),
        ])
    };
    let silent = desk_browser.post_form(&my_roles, &activate("2", "")).await;
    assert_eq!(silent.status, StatusCode::BAD_REQUEST, "{}", silent.text());
    assert!(silent.text().contains("JustificationRule"), "{}", silent.text());
    let odd = desk_browser.post_form(&my_roles, &activate("5", "INC-1")).await;
    assert_eq!(odd.status, StatusCode::BAD_REQUEST, "{}", odd.text());
    let active = desk_browser.post_form(&my_roles, &activate("2", "INC-1: caller lost their phone")).await;
    assert_eq!(active.by_id("notice").as_deref(), Some("Done: the role is active."), "{}", active.text());
    let table = active.html.split("id=\"active\"").nth(1).expect("active table").to_owned();
    assert!(table.contains("Privileged Authentication Administrator") && table.contains("Activated"), "{table}");
    let held = app
        .get(&format!("/v1.0/roleManagement/directory/transitiveRoleAssignments?$filter=principalId eq '{desk}'"))
        .await;
    assert_eq!(held.body["value"].as_array().map(Vec::len), Some(1), "{}", held.text);
    let page = chief_browser.get(&role_path).await;
    assert!(page.text().contains("Activated until"), "{}", page.text());
    let off = desk_browser
        .post_form(
            &my_roles,
            &fields(&[("csrf", &desk_csrf), ("action", "deactivate"), ("role", role), ("scope", "/")]),
        )
        .await;
    assert_eq!(off.by_id("notice").as_deref(), Some("Done: the role is no longer active."), "{}", off.text());
    let held = app
        .get(&format!("/v1.0/roleManagement/directory/transitiveRoleAssignments?$filter=principalId eq '{desk}'"))
        .await;
    assert_eq!(held.body["value"].as_array().map(Vec::len), Some(0), "{}", held.text);

    // With approval required, the chief approves on their My roles page; the desk cannot.
    let policies =
        app.get(&format!("/v1.0/policies/roleManagementPolicyAssignments?$filter=roleDefinitionId eq '{role}'")).await;
    let policy = policies.body["value"][0]["policyId"].as_str().expect("policy").to_owned();
    let rule = app
        .patch(
            &format!("/v1.0/policies/roleManagementPolicies/{policy}/rules/Approval_EndUser_Assignment"),
            &json!({"setting": {"isApprovalRequired": true, "approvalStages": [{"primaryApprovers": [
                {"@odata.type": "#microsoft.graph.singleUser", "userId": chief}]}]}}),
        )
        .await;
    assert_eq!(rule.status, StatusCode::OK, "{}", rule.text);
    let pending = desk_browser.post_form(&my_roles, &activate("1", "INC-2")).await;
    assert_eq!(
        pending.by_id("notice").as_deref(),
        Some("Done: the activation waits for an approver."),
        "{}",
        pending.text()
    );
    assert!(pending.html.contains("id=\"my-requests\""), "{}", pending.text());
    let queue = chief_browser.get(&my_roles).await;
    let row = queue.html.split("id=\"to-decide\"").nth(1).expect("the approver's queue").to_owned();
    assert!(row.contains("INC-2") && row.contains("desk Tester"), "{row}");
    let request = row
        .split("name=\"request\" value=\"")
        .nth(1)
        .and_then(|it| it.split('"').next())
        .expect("request id")
        .to_owned();
    let own = desk_browser
        .post_form(
            &my_roles,
            &fields(&[("csrf", &desk_csrf), ("action", "approve"), ("request", &request), ("justification", "me")]),
        )
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.text());
    let approved = chief_browser
        .post_form(
            &my_roles,
            &fields(&[
                ("csrf", &csrf_of(&queue)),
                ("action", "approve"),
                ("request", &request),
                ("justification", "called back"),
            ]),
        )
        .await;
    assert_eq!(
        approved.by_id("notice").as_deref(),
        Some("Done: approved; the role is active for the requester."),
        "{}",
        approved.text()
    );
    let held = app
        .get(&format!("/v1.0/roleManagement/directory/transitiveRoleAssignments?$filter=principalId eq '{desk}'"))
        .await;
    assert_eq!(held.body["value"].as_array().map(Vec::len), Some(1), "{}", held.text);

    // Eleven minutes on, activating asks for a new sign-in with MFA; the eligibility is removed.
    app.clock.advance(time::Duration::minutes(11));
    let later = desk_browser.get(&my_roles).await;
    assert!(later.by_id("reauthenticate").is_some(), "{}", later.text());
    let page = chief_browser.get(&role_path).await;
    let removed = chief_browser
        .post_form(
            &role_path,
            &fields(&[("csrf", &csrf_of(&page)), ("action", "remove_eligible"), ("principal", &desk), ("scope", "/")]),
        )
        .await;
    assert!(removed.by_id("notice").is_some_and(|it| it.contains("eligibility was removed")), "{}", removed.text());
    let admin = app.token_for(keyward_testkit::ADMIN_UPN).await;
    let held = app
        .as_user(&admin)
        .get(&format!("/v1.0/roleManagement/directory/transitiveRoleAssignments?$filter=principalId eq '{desk}'"))
        .await;
    assert_eq!(held.body["value"].as_array().map(Vec::len), Some(0), "the activation ended with it: {}", held.text);
}

keyward_testkit::on_both_backends!(
    just_in_time_roles_in_the_portal,
    the_service_desk_works_in_the_portal,
    the_admin_portal_needs_mfa_from_every_role_holder,
    an_idle_portal_session_signs_in_again,
    one_s_own_mfa_reset_needs_recent_mfa,
    per_user_mfa_in_bulk,
    settings_edit_the_policies,
    roles_and_their_holders,
    the_audit_log_page_filters_and_downloads,
    groups_and_their_members,
    pages_have_one_stylesheet_and_no_inline_style,
    the_methods_activity_report,
    users_are_created_edited_disabled_and_deleted,
    the_sign_in_log_page_filters_and_shows_steps,
    my_security_info_signs_out_everywhere,
    my_security_info_manages_phones_email_and_methods,
    role_assignments_are_added_and_removed,
    custom_roles_are_created_edited_and_deleted,
    a_role_page_pages_its_assignments,
    administrative_units_and_their_scoped_roles
);
