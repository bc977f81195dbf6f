//! Caller verification (issue 22, item 1): with `keywardServiceDeskPolicy.callerVerificationEnabled`,
//! a pass or a password reset (and any method change on a privileged user) needs the agent to hold
//! a confirmed verification of the user: the user types the agent's code on their "Verify a
//! service-desk call" page after signing in with a second factor, or their manager vouches for a
//! user who holds no factor. Bound to the agent and the user, it counts for 15 minutes.

use keyward_core::authz::roles;
use keyward_testkit::browser::Browser;
use keyward_testkit::{Backend, DOMAIN, TestApp, assert_graph_error};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::portal::{csrf_of, sign_in, user};

const POLICY: &str = "/v1.0/policies/keywardServiceDeskPolicy";
const VERIFY: &str = "/beta/keyward/callerVerifications";

fn tap(user: &str) -> String {
    format!("/v1.0/users/{user}/authentication/temporaryAccessPassMethods")
}

async fn activities(app: &TestApp, user: &str, activity: &str) -> usize {
    app.audit_for(user).await.iter().filter(|it| it.activity_display_name == activity).count()
}

async fn the_caller_proves_it_is_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let desk_id = user(&app, "desk", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let desk = app.token_for(&format!("desk@{DOMAIN}")).await;
    // desk2 and the manager have `TestApp::create_user`'s password, for tokens from a sign-in with MFA.
    let desk2_id = app.create_user("desk2", "desk2 Tester").await["id"].as_str().expect("id").to_owned();
    app.assign_role(&desk2_id, roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, "/").await;
    let desk2 = app.token_for(&format!("desk2@{DOMAIN}")).await;
    user(&app, "helper", Some(roles::HELPDESK_ADMINISTRATOR)).await;
    let helper = app.token_for(&format!("helper@{DOMAIN}")).await;
    let adele = user(&app, "adele", None).await;
    let boss = user(&app, "boss", Some(roles::SECURITY_ADMINISTRATOR)).await;
    let manager = app.create_user("manager", "manager Tester").await["id"].as_str().expect("id").to_owned();
    let carol = user(&app, "carol", None).await;
    user(&app, "bystander", None).await;
    for who in [&boss, &carol] {
        let set = app
            .send(
                Method::PUT,
                &format!("/v1.0/users/{who}/manager/$ref"),
                Some(&app.admin_token),
                Some(&json!({"@odata.id": format!("{}/v1.0/users/{manager}", app.base_url)})),
                &[],
            )
            .await;
        assert_eq!(set.status, StatusCode::NO_CONTENT, "{}", set.text);
    }
    // Adele and the manager must use MFA, so their first sign-in registers an authenticator app.
    for who in [&adele, &manager] {
        let enforce = app
            .patch(&format!("/beta/users/{who}/authentication/requirements"), &json!({"perUserMfaState": "enforced"}))
            .await;
        assert_eq!(enforce.status, StatusCode::NO_CONTENT, "{}", enforce.text);
    }
    // Adele registers her authenticator app before any call (a factor added during the call
    // does not count).
    let mut browser = Browser::new(&app.base_url);
    sign_in(&app, &mut browser, "adele").await;
    app.clock.advance(time::Duration::seconds(1));

    // Off by default: a pass is made at once.
    let policy = app.get(POLICY).await.body;
    assert_eq!(policy["callerVerificationEnabled"], false);
    assert_eq!(policy["callerVerificationOperations"].as_array().map(Vec::len), Some(4), "{policy}");
    assert_eq!(app.as_user(&desk).post(&tap(&adele), &json!({})).await.status, StatusCode::CREATED);
    assert_graph_error(
        &app.patch(POLICY, &json!({"callerVerificationEnabled": "yes"})).await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    let on = app.patch(POLICY, &json!({"callerVerificationEnabled": true})).await;
    assert_eq!(on.status, StatusCode::NO_CONTENT, "{}", on.text);

    // On: a pass, a password reset and an MFA reset need a verified caller; other changes to an
    // ordinary user do not.
    let refused = app.as_user(&desk).post(&tap(&adele), &json!({})).await;
    assert_graph_error(&refused, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert!(refused.text.contains("Verify the caller first"), "{}", refused.text);
    let reset =
        format!("/v1.0/users/{adele}/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword");
    assert_graph_error(
        &app.as_user(&desk).post(&reset, &json!({})).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );
    let patch_password = json!({"passwordProfile": {"password": "Wq3-violet-Harbour-77!"}});
    let patched = app.as_user(&desk).patch(&format!("/v1.0/users/{adele}"), &patch_password).await;
    assert_graph_error(&patched, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let rereg = format!("/v1.0/users/{adele}/authentication/requireMfaReregistration");
    assert_graph_error(
        &app.as_user(&desk).post(&rereg, &json!({})).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );
    let revoke = format!("/v1.0/users/{adele}/authentication/revokeMfaSessions");
    assert_eq!(app.as_user(&desk).post(&revoke, &json!({})).await.status, StatusCode::NO_CONTENT);
    // Every method change on a privileged user needs one.
    let boss_rereg = format!("/v1.0/users/{boss}/authentication/requireMfaReregistration");
    assert_graph_error(
        &app.as_user(&desk).post(&boss_rereg, &json!({})).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );

    // Starting one: the agent gets the code; bad requests and outsiders change nothing.
    for bad in [json!({}), json!({"userId": 5}), json!({"userId": adele, "note": "x"})] {
        assert_graph_error(&app.as_user(&desk).post(VERIFY, &bad).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    assert_graph_error(
        &app.as_user(&desk).post(VERIFY, &json!({"userId": desk_id})).await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    let anonymous = app.send(Method::POST, VERIFY, None, Some(&json!({"userId": adele})), &[]).await;
    assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    let lower = app.as_user(&helper).post(VERIFY, &json!({"userId": boss})).await;
    assert_graph_error(&lower, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let started = app.as_user(&desk).post(VERIFY, &json!({"userId": format!("adele@{DOMAIN}")})).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
    assert_eq!(started.headers.get("cache-control").and_then(|it| it.to_str().ok()), Some("no-store"));
    let id = started.body["id"].as_str().expect("id").to_owned();
    let code = started.body["code"].as_str().expect("code").to_owned();
    assert_eq!((code.len(), &started.body["status"]), (7, &json!("pending")), "{}", started.text);
    let read = app.as_user(&desk).get(&format!("{VERIFY}/{id}")).await;
    assert!(read.body.get("code").is_none(), "the code is shown once: {}", read.text);
    assert_graph_error(
        &app.as_user(&helper).get(&format!("{VERIFY}/{id}")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );

    // The portal's "Verify caller" gives the agent a code too.
    let mut portal = Browser::new(&app.base_url);
    sign_in(&app, &mut portal, "desk").await;
    let user_page = portal.get(&format!("/{DOMAIN}/admin/users/{adele}")).await;
    let confirm = super::portal::confirm_page(&mut portal, &user_page, "verify_caller").await;
    let shown = portal
        .post_form(
            &format!("/{DOMAIN}/admin/users/{adele}"),
            &[("csrf".to_owned(), csrf_of(&confirm)), ("action".to_owned(), "verify_caller".to_owned())],
        )
        .await;
    assert_eq!(shown.title(), "Verify caller", "{}", shown.text());
    let portal_code = shown.by_id("secret").expect("the code");
    assert!(portal_code.len() == 7 && portal_code.chars().filter(char::is_ascii_digit).count() == 6, "{portal_code}");
    assert!(shown.by_id("what").is_some_and(|it| it.contains("/verify-call")), "{}", shown.text());

    // Adele, signed in with her second factor, types the code: a wrong one first.
    let page = browser.get(&format!("/{DOMAIN}/verify-call")).await;
    assert_eq!(page.title(), "Verify a service-desk call", "{}", page.text());
    assert!(page.text().contains("desk Tester"), "the agent's name is shown: {}", page.text());
    assert!(!page.html.contains(&code), "the page never shows the code: the agent reads it out");
    let answer = |code: &str, answer: &str| {
        vec![
            ("csrf".to_owned(), csrf_of(&page)),
            ("verification".to_owned(), id.clone()),
            ("code".to_owned(), code.to_owned()),
            ("answer".to_owned(), answer.to_owned()),
        ]
    };
    let forged = browser
        .post_form(
            &format!("/{DOMAIN}/verify-call"),
            &[("verification".to_owned(), id.clone()), ("code".to_owned(), code.clone())],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "no CSRF token: {}", forged.text());
    let wrong = browser.post_form(&format!("/{DOMAIN}/verify-call"), &answer("000 000", "confirm")).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.text());
    assert_eq!(app.as_user(&desk).get(&format!("{VERIFY}/{id}")).await.body["status"], "pending");
    let right = browser.post_form(&format!("/{DOMAIN}/verify-call"), &answer(&code, "confirm")).await;
    assert!(right.by_id("notice").is_some_and(|it| it.contains("confirmed")), "{}", right.text());
    let verified = app.as_user(&desk).get(&format!("{VERIFY}/{id}")).await;
    assert_eq!((&verified.body["status"], &verified.body["method"]), (&json!("verified"), &json!("user")));
    assert_eq!(activities(&app, &adele, "Caller verified").await, 1);
    assert_eq!(activities(&app, &adele, "Caller verification failed").await, 1, "the wrong code is on record");
    let again = browser.post_form(&format!("/{DOMAIN}/verify-call"), &answer(&code, "confirm")).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "once: {}", again.text());

    // "This is not my call": the verification fails and is recorded.
    let other = app.as_user(&desk2).post(VERIFY, &json!({"userId": adele})).await;
    let other_id = other.body["id"].as_str().expect("id").to_owned();
    let page = browser.get(&format!("/{DOMAIN}/verify-call")).await;
    let denied = browser
        .post_form(
            &format!("/{DOMAIN}/verify-call"),
            &[
                ("csrf".to_owned(), csrf_of(&page)),
                ("verification".to_owned(), other_id.clone()),
                ("code".to_owned(), String::new()),
                ("answer".to_owned(), "deny".to_owned()),
            ],
        )
        .await;
    assert!(denied.by_id("notice").is_some_and(|it| it.contains("not your call")), "{}", denied.text());
    assert_eq!(app.as_user(&desk2).get(&format!("{VERIFY}/{other_id}")).await.body["status"], "failed");

    // Now the agent may act, and only that agent, and only for 15 minutes.
    assert_eq!(app.as_user(&desk).post(&tap(&adele), &json!({})).await.status, StatusCode::CREATED);
    assert_eq!(app.as_user(&desk).post(&reset, &json!({})).await.status, StatusCode::ACCEPTED);
    assert_graph_error(
        &app.as_user(&desk2).post(&tap(&adele), &json!({})).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );
    app.clock.advance(time::Duration::minutes(16));
    let desk = app.token_for(&format!("desk@{DOMAIN}")).await;
    assert_graph_error(
        &app.as_user(&desk).post(&tap(&adele), &json!({})).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );

    // A user who holds no factor: their manager vouches (a person fresh from MFA), never the
    // agent, nobody unrelated; not when the agent could have made them the manager.
    let helper_start = app.as_user(&helper).post(VERIFY, &json!({"userId": carol})).await;
    assert_eq!(helper_start.status, StatusCode::CREATED, "{}", helper_start.text);
    let carol_verification = helper_start.body["id"].as_str().expect("id").to_owned();
    let attest = format!("{VERIFY}/{carol_verification}/attest");
    assert_graph_error(
        &app.as_user(&helper).post(&attest, &json!({})).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );
    let stranger = app.token_for(&format!("bystander@{DOMAIN}")).await;
    assert_graph_error(
        &app.as_user(&stranger).post(&attest, &json!({})).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    let password_only = app.token_for(&format!("manager@{DOMAIN}")).await;
    let stale = app.as_user(&password_only).post(&attest, &json!({})).await;
    assert_graph_error(&stale, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let manager_token = super::methods::token_with_mfa(&app, &format!("manager@{DOMAIN}")).await;
    let vouched = app.as_user(&manager_token).post(&attest, &json!({})).await;
    assert_eq!(vouched.status, StatusCode::OK, "{}", vouched.text);
    assert_eq!((&vouched.body["status"], &vouched.body["method"]), (&json!("verified"), &json!("manager")));
    let record = app.audit_for(&carol).await.into_iter().find(|it| it.activity_display_name == "Caller verified");
    assert!(record.is_some_and(|it| it.additional_details.iter().any(|(k, v)| k == "Method" && v == "manager")));
    let new_password = json!({"passwordProfile": {"password": "Zk5-amber-Willow-31!"}});
    let reset = app.as_user(&helper).patch(&format!("/v1.0/users/{carol}"), &new_password).await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT, "{}", reset.text);
    // An agent who may change the user's manager could have arranged the manager: not counted.
    let by_desk = app.as_user(&desk).post(VERIFY, &json!({"userId": carol})).await;
    let by_desk = by_desk.body["id"].as_str().expect("id").to_owned();
    let refused = app.as_user(&manager_token).post(&format!("{VERIFY}/{by_desk}/attest"), &json!({})).await;
    assert_graph_error(&refused, StatusCode::NOT_FOUND, "Request_ResourceNotFound");

    // A privileged user: only another administrator vouches, never their manager.
    let for_boss = app.as_user(&desk).post(VERIFY, &json!({"userId": boss})).await;
    let boss_verification = for_boss.body["id"].as_str().expect("id").to_owned();
    let attest = format!("{VERIFY}/{boss_verification}/attest");
    let by_manager = app.as_user(&manager_token).post(&attest, &json!({})).await;
    assert_graph_error(&by_manager, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    let admin_token = super::methods::token_with_mfa(&app, &format!("desk2@{DOMAIN}")).await;
    let vouched = app.as_user(&admin_token).post(&attest, &json!({})).await;
    assert_eq!(vouched.body["method"], "administrator", "{}", vouched.text);
    assert_eq!(app.as_user(&desk).post(&boss_rereg, &json!({})).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.as_user(&desk).post(&tap(&boss), &json!({})).await.status, StatusCode::CREATED);

    // The tenant chooses what is covered: here passes only, so re-registration goes through.
    for bad in
        [json!({"callerVerificationOperations": ["everything"]}), json!({"callerVerificationOperations": "mfaResets"})]
    {
        assert_graph_error(&app.patch(POLICY, &bad).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    let narrowed = app.patch(POLICY, &json!({"callerVerificationOperations": ["temporaryAccessPasses"]})).await;
    assert_eq!(narrowed.status, StatusCode::NO_CONTENT, "{}", narrowed.text);
    assert_eq!(app.get(POLICY).await.body["callerVerificationOperations"], json!(["temporaryAccessPasses"]));
    let rereg = format!("/v1.0/users/{carol}/authentication/requireMfaReregistration");
    assert_eq!(app.as_user(&desk2).post(&rereg, &json!({})).await.status, StatusCode::NO_CONTENT);
    assert_graph_error(
        &app.as_user(&desk2).post(&tap(&carol), &json!({})).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );
}

keyward_testkit::on_both_backends!(the_caller_proves_it_is_them);
