//! Telling users what happens to their account (issue 22, item 4): a change to a user's
//! security info by someone else writes a message to the outbox in the change's transaction; a
//! refused or rolled-back change writes none; the sender delivers each message once through a
//! real SMTP server (aiosmtpd), holds messages while the relay is down and delivers them when it
//! is back; "This wasn't me" works once and tells the administrators; an agent at their limit is
//! reported to the administrators once an hour.

use keyward_app::SmtpRelay;
use keyward_core::authz::roles;
use keyward_testkit::smtp::{SmtpServer, free_port};
use keyward_testkit::{ADMIN_UPN, Backend, DOMAIN, TestApp, assert_graph_error};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;

const OUTBOX: &str = "/beta/keyward/notifications";

/// A user with a mail address at `alias@mail.test` (or none), `role` tenant-wide, and a token.
async fn person(app: &TestApp, alias: &str, with_mail: bool, role: Option<&str>) -> (String, String) {
    let user = app.create_user(alias, &format!("{alias} Test")).await;
    let id = user["id"].as_str().expect("id").to_owned();
    if with_mail {
        let set = app.patch(&format!("/v1.0/users/{id}"), &json!({"mail": format!("{alias}@mail.test")})).await;
        assert_eq!(set.status, StatusCode::NO_CONTENT, "{}", set.text);
    }
    if let Some(role) = role {
        app.assign_role(&id, role, "/").await;
    }
    let token = app.token_for(&format!("{alias}@{DOMAIN}")).await;
    (id, token)
}

/// The administrator's mail set, so reports reach them.
async fn admin_with_mail(app: &TestApp) -> String {
    let admin = app.get(&format!("/v1.0/users/{ADMIN_UPN}")).await;
    let id = admin.body["id"].as_str().expect("admin id").to_owned();
    let set = app.patch(&format!("/v1.0/users/{id}"), &json!({"mail": "admin@mail.test"})).await;
    assert_eq!(set.status, StatusCode::NO_CONTENT, "{}", set.text);
    id
}

fn relay(port: u16) -> SmtpRelay {
    SmtpRelay::new(&format!("smtp://127.0.0.1:{port}"), "Keyward <no-reply@keyward.test>", None).expect("relay")
}

/// The outbox's messages about `user` (newest first).
async fn outbox_for(app: &TestApp, user: &str) -> Vec<Value> {
    let list = app.get(&format!("{OUTBOX}?$top=999")).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    list.body["value"].as_array().expect("value").iter().filter(|it| it["userId"] == user).cloned().collect()
}

/// A raw message's text with quoted-printable soft breaks and `=3D` undone.
fn decoded(raw: &str) -> String {
    raw.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=")
}

/// The "This wasn't me" token in a received message.
fn link_token(message: &str, base: &str) -> String {
    let text = decoded(message);
    let start = text.find(&format!("{base}/")).unwrap_or_else(|| panic!("no link in {text}"));
    let link = &text[start..];
    let token = link.split("report-activity?token=").nth(1).unwrap_or_else(|| panic!("no token in {link}"));
    token.chars().take_while(|it| it.is_ascii_alphanumeric() || *it == '-' || *it == '_').collect()
}

async fn security_changes_reach_the_user_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = admin_with_mail(&app).await;
    let (adele, _) = person(&app, "adele", true, None).await;
    let (nomail, _) = person(&app, "nomail", false, None).await;
    let (_, desk) = person(&app, "desk", true, Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let (global, _) = person(&app, "global", true, Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let (_, helpdesk) = person(&app, "helper", true, Some(roles::HELPDESK_ADMINISTRATOR)).await;
    // One who holds Privileged Authentication Administrator through a role-assignable group.
    let (tier, _) = person(&app, "tier", true, None).await;
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Tier 0", "mailEnabled": false, "mailNickname": "tier0", "securityEnabled": true,
                "isAssignableToRole": true,
                "members@odata.bind": [format!("https://graph.microsoft.com/v1.0/users/{tier}")]}),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    app.assign_role(group.body["id"].as_str().expect("id"), roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, "/").await;

    // Changes that fail or are refused write nothing: a one-step reset whose pass is invalid
    // (rolled back after its first steps), and a reset the desk may not do.
    let reset = |user: &str| format!("/v1.0/users/{user}/authentication/resetMfa");
    let failed =
        app.as_user(&desk).post(&reset(&adele), &json!({"temporaryAccessPass": {"lifetimeInMinutes": 100000}})).await;
    assert_graph_error(&failed, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let refused = app.as_user(&helpdesk).post(&reset(&global), &json!({})).await;
    assert_graph_error(&refused, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert!(outbox_for(&app, &adele).await.is_empty());
    assert!(outbox_for(&app, &global).await.is_empty());

    // The one-step reset by the desk: one message with each step, for Adele's mail.
    let done = app.as_user(&desk).post(&reset(&adele), &json!({"temporaryAccessPass": {}})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    let messages = outbox_for(&app, &adele).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let message = &messages[0];
    assert_eq!(message["state"], "pending");
    assert_eq!(message["kind"], "securityInfoChanged");
    assert_eq!(message["recipient"], "adele@mail.test");
    let body = message["body"].as_str().expect("body");
    for line in ["desk Test, an administrator of", "Temporary Access Pass was created", "signed out of every session"] {
        assert!(body.contains(line), "{line} in {body}");
    }
    assert!(body.contains("{this-wasnt-me-link}"), "the link is made when sent: {body}");
    // The outbox is for those who may read the audit log.
    assert_graph_error(&app.as_user(&helpdesk).get(OUTBOX).await, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let anonymous = app.send(reqwest::Method::GET, OUTBOX, None, None, &[]).await;
    assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    for bad in ["?$filter=state eq 'lost'", "?$filter=kind eq 'x'", "?$top=0", "?$skiptoken=%%"] {
        let reply = app.get(&format!("{OUTBOX}{bad}")).await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    let pending = app.get(&format!("{OUTBOX}?$filter=state eq 'pending'")).await;
    assert_eq!(pending.body["value"].as_array().expect("value").len(), 1, "{}", pending.text);

    // A user without an address: kept, visible, never sent.
    let password =
        format!("/v1.0/users/{nomail}/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword");
    let reset_password = app.as_user(&desk).post(&password, &json!({})).await;
    assert_eq!(reset_password.status, StatusCode::ACCEPTED, "{}", reset_password.text);
    let kept = outbox_for(&app, &nomail).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!((kept[0]["state"].as_str(), kept[0]["recipient"].as_str()), (Some("noAddress"), None));
    assert!(kept[0]["body"].as_str().expect("body").contains("Your password was reset."));

    // Delivered once, however often the sender runs.
    let server = SmtpServer::start(free_port()).await;
    let relay = relay(server.port);
    let round = app.app.deliver_notifications(&relay).await.expect("delivery");
    assert_eq!((round.sent, round.retrying, round.failed), (1, 0, 0));
    let again = app.app.deliver_notifications(&relay).await.expect("delivery");
    assert_eq!(again.sent, 0);
    let received = server.messages();
    assert_eq!(received.len(), 1);
    assert!(received[0].contains("To: adele@mail.test"), "{}", received[0]);
    assert!(decoded(&received[0]).contains("Temporary Access Pass was created"), "{}", received[0]);
    let sent = app.get(&format!("{OUTBOX}/{}", message["id"].as_str().expect("id"))).await;
    assert_eq!((sent.body["state"].as_str(), sent.body["attempts"].as_i64()), (Some("sent"), Some(1)), "{}", sent.text);
    assert!(!sent.text.contains("report-activity?token"), "the link is never stored: {}", sent.text);

    // "This wasn't me": the link shows a page and changes nothing; its button acts, once.
    let token = link_token(&received[0], &app.base_url);
    let tenant_path = received[0]
        .split(&format!("{}/", app.base_url))
        .nth(1)
        .expect("link")
        .split('/')
        .next()
        .expect("tenant")
        .to_owned();
    let page_path = format!("/{tenant_path}/report-activity");
    let page = app.client.get(format!("{}{page_path}?token={token}", app.base_url)).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("text").contains("This wasn't me"));
    let methods = |user: String| {
        let app = &app;
        async move { app.get(&format!("/v1.0/users/{user}/authentication/methods")).await.text }
    };
    assert!(methods(adele.clone()).await.contains("temporaryAccessPass"), "opening the link changed nothing");
    let post = |token: String| {
        let app = &app;
        let page_path = page_path.clone();
        async move {
            app.client
                .post(format!("{}{page_path}", app.base_url))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form_urlencoded::Serializer::new(String::new()).append_pair("token", &token).finish())
                .send()
                .await
                .expect("post")
        }
    };
    let forged = post("A".repeat(43)).await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    // The same link sent twice at once: one report.
    let (reported, raced) = tokio::join!(post(token.clone()), post(token.clone()));
    let mut statuses = [reported.status(), raced.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_REQUEST]);
    let reported = if reported.status() == StatusCode::OK { reported } else { raced };
    let thanks = reported.text().await.expect("text");
    assert!(thanks.contains("your administrators have been told"), "{thanks}");
    assert!(!methods(adele.clone()).await.contains("temporaryAccessPass"), "the pass is gone");
    let used = post(token).await;
    assert_eq!(used.status(), StatusCode::BAD_REQUEST, "a link works once");
    let records = app.audit_for(&adele).await;
    let report = records.iter().filter(|it| it.activity_display_name == "User reported suspicious activity").count();
    assert_eq!(report, 1);
    // Her sessions end as by "Sign out everywhere": recorded as her own change.
    let by_her = |it: &&keyward_core::audit::AuditRecord| matches!(&it.initiated_by, keyward_core::audit::Initiator::User { id, .. } if id.as_str() == adele);
    let ended = records
        .iter()
        .filter(by_her)
        .filter(|it| it.activity_display_name == "Update StsRefreshTokenValidFrom Timestamp");
    assert_eq!(ended.count(), 1);
    let marked = app.get(&format!("{OUTBOX}/{}", message["id"].as_str().expect("id"))).await;
    assert!(marked.body["reportedDateTime"].is_string(), "{}", marked.text);
    // The administrators are told (each Global and Privileged Authentication Administrator with
    // an address); the report itself sends Adele nothing more.
    let alerts: Vec<Value> = app.get(&format!("{OUTBOX}?$top=999")).await.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter(|it| it["kind"] == "suspiciousActivityReported")
        .cloned()
        .collect();
    let told: Vec<&str> = alerts.iter().filter_map(|it| it["recipient"].as_str()).collect();
    for address in ["admin@mail.test", "global@mail.test", "desk@mail.test", "tier@mail.test"] {
        assert!(told.contains(&address), "{address} in {told:?}");
    }
    assert!(!told.contains(&"helper@mail.test"), "a Helpdesk Administrator is not told");
    assert_eq!(outbox_for(&app, &adele).await.len(), 1);
    let _ = admin;
    let round = app.app.deliver_notifications(&relay).await.expect("delivery");
    assert_eq!(round.sent, alerts.len());
    assert_eq!(server.messages().len(), 1 + alerts.len());
}

async fn a_relay_down_holds_messages_until_it_is_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (adele, _) = person(&app, "adele", true, None).await;
    let (bram, _) = person(&app, "bram", true, None).await;
    let port = free_port();
    let relay = relay(port);
    for user in [&adele, &bram] {
        let revoke = app.post(&format!("/v1.0/users/{user}/revokeSignInSessions"), &json!({})).await;
        assert_eq!(revoke.status, StatusCode::OK, "{}", revoke.text);
    }
    let down = app.app.deliver_notifications(&relay).await.expect("delivery");
    assert_eq!((down.sent, down.retrying), (0, 2));
    let waiting = &outbox_for(&app, &adele).await[0];
    assert_eq!((waiting["state"].as_str(), waiting["attempts"].as_i64()), (Some("pending"), Some(1)));
    assert!(waiting["lastError"].as_str().is_some_and(|it| !it.is_empty()), "{waiting}");
    // Not due yet: nothing is tried before the back-off.
    assert_eq!(app.app.deliver_notifications(&relay).await.expect("delivery"), keyward_app::Delivered::default());

    let server = SmtpServer::start(port).await;
    app.clock.advance(Duration::minutes(1));
    // Two nodes sending at once share the work: each message goes out once.
    let other = app.second_node().await;
    let (first, second) = tokio::join!(app.app.deliver_notifications(&relay), other.deliver_notifications(&relay));
    assert_eq!(first.expect("first").sent + second.expect("second").sent, 2);
    let received = server.messages();
    assert_eq!(received.len(), 2, "each message once");
    for user in [&adele, &bram] {
        let message = &outbox_for(&app, user).await[0];
        assert_eq!((message["state"].as_str(), message["attempts"].as_i64()), (Some("sent"), Some(2)), "{message}");
    }
    // Given up after three days of failures.
    server.stop().await;
    let revoke = app.post(&format!("/v1.0/users/{adele}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(revoke.status, StatusCode::OK, "{}", revoke.text);
    assert_eq!(app.app.deliver_notifications(&relay).await.expect("delivery").retrying, 1);
    app.clock.advance(Duration::days(3));
    assert_eq!(app.app.deliver_notifications(&relay).await.expect("delivery").failed, 1);
    let admin = app.token_for(ADMIN_UPN).await;
    let failed = app.as_user(&admin).get(&format!("{OUTBOX}?$filter=state eq 'failed'")).await;
    assert_eq!(failed.body["value"].as_array().expect("value").len(), 1, "{}", failed.text);
    // A message for a user deleted since is not sent.
    let revoke = app.as_user(&admin).post(&format!("/v1.0/users/{bram}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(revoke.status, StatusCode::OK, "{}", revoke.text);
    let deleted = app.as_user(&admin).delete(&format!("/v1.0/users/{bram}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let round = app.app.deliver_notifications(&relay).await.expect("delivery");
    assert_eq!((round.sent, round.failed), (0, 1));
    let gone = app.as_user(&admin).get(&format!("{OUTBOX}?$filter=state eq 'failed'")).await;
    assert!(gone.text.contains("the user no longer exists"), "{}", gone.text);
    // The outbox is kept as long as the logs (30 days by default).
    app.clock.advance(Duration::days(31));
    app.app.apply_sign_in_retention().await.expect("retention");
    let admin = app.token_for(ADMIN_UPN).await;
    let kept = app.as_user(&admin).get(OUTBOX).await;
    assert_eq!(kept.body["value"].as_array().expect("value").len(), 0, "{}", kept.text);
}

async fn an_agent_at_the_limit_is_reported_once_an_hour(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    admin_with_mail(&app).await;
    let (_, desk) = person(&app, "desk", true, Some(roles::AUTHENTICATION_ADMINISTRATOR)).await;
    let mut targets = Vec::new();
    for n in 0..4 {
        targets.push(person(&app, &format!("t{n}"), true, None).await.0);
    }
    let policy = "/v1.0/policies/keywardServiceDeskPolicy";
    let set = app.patch(policy, &json!({"temporaryAccessPassesPerAgentPerHour": 1})).await;
    assert_eq!(set.status, StatusCode::NO_CONTENT, "{}", set.text);
    let tap = |target: &str| format!("/v1.0/users/{target}/authentication/temporaryAccessPassMethods");
    let alerts = || async {
        let admin = app.token_for(ADMIN_UPN).await;
        let list = app.as_user(&admin).get(&format!("{OUTBOX}?$top=999")).await;
        list.body["value"].as_array().expect("value").iter().filter(|it| it["kind"] == "agentLimitReached").count()
    };
    let first = app.as_user(&desk).post(&tap(&targets[0]), &json!({})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(alerts().await, 0);
    for target in &targets[1..3] {
        let over = app.as_user(&desk).post(&tap(target), &json!({})).await;
        assert_graph_error(&over, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    }
    assert_eq!(alerts().await, 1, "one alert for the administrator, not one per refusal");
    let list = app.get(&format!("{OUTBOX}?$top=999")).await;
    let alert =
        list.body["value"].as_array().expect("value").iter().find(|it| it["kind"] == "agentLimitReached").cloned();
    let alert = alert.expect("alert");
    assert_eq!(alert["recipient"], "admin@mail.test");
    assert!(alert["body"].as_str().expect("body").contains("desk Test"), "{alert}");
    // The next hour, a new alert.
    app.clock.advance(Duration::minutes(61));
    let desk = app.token_for(&format!("desk@{DOMAIN}")).await;
    let ok = app.as_user(&desk).post(&tap(&targets[3]), &json!({})).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let over = app.as_user(&desk).post(&tap(&targets[1]), &json!({})).await;
    assert_graph_error(&over, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert_eq!(alerts().await, 2);
}

/// A password set with `PATCH /users/{id}` is a reset like any other; a `mail` replaced by
/// someone else is told at the old address too, so an agent cannot point a user's warnings at
/// themselves first; a relay password is never sent without TLS.
async fn password_patches_and_mail_changes_are_told_at_the_old_address(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (cara, _) = person(&app, "cara", true, None).await;
    let patch = app
        .patch(
            &format!("/v1.0/users/{cara}"),
            &json!({"passwordProfile": {"password": "Vq8-granite-Harbour-31!", "forceChangePasswordNextSignIn": true}}),
        )
        .await;
    assert_eq!(patch.status, StatusCode::NO_CONTENT, "{}", patch.text);
    let told = outbox_for(&app, &cara).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0]["body"].as_str().expect("body").contains("Your password was reset."), "{}", told[0]);
    // The attacker's two steps in one request: a new mail and a new password.
    let redirect = app
        .patch(
            &format!("/v1.0/users/{cara}"),
            &json!({"mail": "attacker@evil.test",
                    "passwordProfile": {"password": "Wr9-copper-Lantern-47!", "forceChangePasswordNextSignIn": false}}),
        )
        .await;
    assert_eq!(redirect.status, StatusCode::NO_CONTENT, "{}", redirect.text);
    let told = outbox_for(&app, &cara).await;
    let mut recipients: Vec<&str> = told[..2].iter().filter_map(|it| it["recipient"].as_str()).collect();
    recipients.sort_unstable();
    assert_eq!(recipients, ["attacker@evil.test", "cara@mail.test"], "{told:?}");
    for message in &told[..2] {
        let body = message["body"].as_str().expect("body");
        assert!(body.contains("e-mail address of your account was changed") && body.contains("password was reset"));
    }
    // A profile change that is not security info tells nobody.
    let renamed = app.patch(&format!("/v1.0/users/{cara}"), &json!({"jobTitle": "Pilot"})).await;
    assert_eq!(renamed.status, StatusCode::NO_CONTENT, "{}", renamed.text);
    assert_eq!(outbox_for(&app, &cara).await.len(), 3);
    let clear = SmtpRelay::new("smtp://user:secret@127.0.0.1:25", "Keyward <no-reply@keyward.test>", None);
    assert!(clear.is_err_and(|err| err.contains("without TLS") && !err.contains("secret")));
    assert!(SmtpRelay::new("smtp://user:secret@127.0.0.1:587?tls=required", "k@keyward.test", None).is_ok());
}

/// A certificate authority and a certificate for `localhost` it signed, as PEM files in `dir`:
/// (CA, certificate, key).
fn relay_certificate(dir: &std::path::Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Contoso Mail CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("key")).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let certificate = params.signed_by(&key, &ca).expect("certificate");
    let (cert_path, key_path) = (dir.join("relay.pem"), dir.join("relay.key"));
    std::fs::write(&cert_path, certificate.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    (ca.pem(), cert_path, key_path)
}

/// The relay is reached over TLS: with `?tls=required` and the relay's CA
/// (`KEYWARD_SMTP_CA_FILE`) the message goes out; a certificate Keyward cannot trust, or a
/// relay that requires STARTTLS reached without it, leaves the message waiting with the error.
async fn the_relay_is_reached_over_tls(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (adele, _) = person(&app, "adele", true, None).await;
    let revoke = app.post(&format!("/v1.0/users/{adele}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(revoke.status, StatusCode::OK, "{}", revoke.text);
    let dir = keyward_testkit::TempDir::new("keyward-relay-tls");
    let (ca, cert, key) = relay_certificate(dir.path());
    let server = SmtpServer::start_tls(free_port(), &cert, &key).await;
    let url = format!("smtp://localhost:{}?tls=required", server.port);
    let from = "Keyward <no-reply@keyward.test>";

    let untrusted = SmtpRelay::new(&url, from, None).expect("relay");
    assert_eq!(app.app.deliver_notifications(&untrusted).await.expect("delivery").retrying, 1);
    let error = outbox_for(&app, &adele).await[0]["lastError"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("certificate") || error.contains("tls"), "{error}");
    app.clock.advance(Duration::minutes(1));
    let plain = SmtpRelay::new(&format!("smtp://localhost:{}", server.port), from, None).expect("relay");
    assert_eq!(app.app.deliver_notifications(&plain).await.expect("delivery").retrying, 1);
    assert!(server.messages().is_empty(), "nothing went out without TLS");

    app.clock.advance(Duration::minutes(1));
    let trusted = SmtpRelay::new(&url, from, Some(ca.as_bytes())).expect("relay");
    assert_eq!(app.app.deliver_notifications(&trusted).await.expect("delivery").sent, 1);
    assert_eq!(server.messages().len(), 1);
}

keyward_testkit::on_both_backends!(
    the_relay_is_reached_over_tls,
    password_patches_and_mail_changes_are_told_at_the_old_address,
    security_changes_reach_the_user_once,
    a_relay_down_holds_messages_until_it_is_back,
    an_agent_at_the_limit_is_reported_once_an_hour,
);
