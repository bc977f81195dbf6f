//! Dual control (issue 22, item 2): with `keywardServiceDeskPolicy.dualControlEnabled`, a pass,
//! a password reset, re-registration, the one-step MFA reset or a method deletion for a
//! privileged user (or a member of the chosen group) is held as a request; another administrator
//! who could make the change approves it (never the requester, never the target) and it runs then,
//! as the requester, with both names in its audit records; a denial, an expiry or a requester who
//! lost their account runs nothing.

use keyward_core::audit::{AuditResult, Initiator};
use keyward_core::authz::roles;
use keyward_testkit::browser::Browser;
use keyward_testkit::{Backend, DOMAIN, TestApp, assert_graph_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const POLICY: &str = "/v1.0/policies/keywardServiceDeskPolicy";
const REQUESTS: &str = "/beta/keyward/serviceDeskRequests";
/// The password `TestApp::create_user` gives everyone.
const PASSWORD: &str = "Tq7-harbour-Lantern-92!";

/// A user with `role` tenant-wide (if any): their id and a token.
async fn person(app: &TestApp, alias: &str, role: Option<&str>) -> (String, String) {
    let user = app.create_user(alias, &format!("{alias} Test")).await;
    let id = user["id"].as_str().expect("id").to_owned();
    if let Some(role) = role {
        app.assign_role(&id, role, "/").await;
    }
    (id, app.token_for(&format!("{alias}@{DOMAIN}")).await)
}

/// Dual control on, two Privileged Authentication Administrators (the first's id and token;
/// `desk2` approves) and a third, privileged, as the target: its id.
async fn two_desks_and_a_privileged_target(app: &TestApp) -> (String, String, String) {
    let (desk_id, desk) = person(app, "desk", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    person(app, "desk2", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let (boss_id, _) = person(app, "boss", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let on = app.patch(POLICY, &json!({"dualControlEnabled": true})).await;
    assert_eq!(on.status, StatusCode::NO_CONTENT, "{}", on.text);
    (desk_id, desk, boss_id)
}

fn tap(user: &str) -> String {
    format!("/v1.0/users/{user}/authentication/temporaryAccessPassMethods")
}

/// The request a `202` names: its path under `/beta`, checked against the absolute `Location`.
fn held(reply: &keyward_testkit::Reply, base_url: &str) -> String {
    assert_eq!(reply.status, StatusCode::ACCEPTED, "held: {}", reply.text);
    assert_eq!(reply.body["status"], "pendingApproval", "{}", reply.text);
    let id = reply.body["id"].as_str().expect("request id");
    let location = reply.headers.get("location").and_then(|it| it.to_str().ok()).expect("Location");
    assert_eq!(location, format!("{base_url}{REQUESTS}/{id}"), "an absolute Location");
    assert_eq!(reply.headers.get("cache-control").and_then(|it| it.to_str().ok()), Some("no-store"));
    format!("{REQUESTS}/{id}")
}

/// Signs `alias` in with `secret` on the pages: the title of the page it lands on.
async fn sign_in_title(app: &TestApp, alias: &str, secret: &str) -> String {
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    let page = browser.submit(&page, "username", &[("username", &format!("{alias}@{DOMAIN}"))], &[]).await;
    let page = browser.submit(&page, "password", &[("current-password", secret)], &[]).await;
    page.title()
}

fn detail<'a>(record: &'a keyward_core::audit::AuditRecord, name: &str) -> Option<&'a str> {
    record.additional_details.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

fn initiator_id(record: &keyward_core::audit::AuditRecord) -> String {
    match &record.initiated_by {
        Initiator::User { id, .. } => id.to_string(),
        other => panic!("a user initiated it: {other:?}"),
    }
}

async fn dual_control_holds_privileged_targets_for_a_second_administrator(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (desk_id, desk) = person(&app, "desk", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let (desk2_id, desk2) = person(&app, "desk2", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    person(&app, "desk3", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let (boss_id, boss) = person(&app, "boss", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let (_, helpdesk) = person(&app, "helper", Some(roles::HELPDESK_ADMINISTRATOR)).await;
    let (plain_id, _) = person(&app, "plain", None).await;

    // Off by default; bounds, unknown groups and a lower administrator change nothing.
    let policy = app.get(POLICY).await;
    assert_eq!(
        (&policy.body["dualControlEnabled"], &policy.body["dualControlGroupId"]),
        (&json!(false), &Value::Null),
        "{}",
        policy.text
    );
    assert_eq!(policy.body["dualControlRequestLifetimeInMinutes"], 60);
    let nowhere = "00000000-0000-0000-0000-000000000001";
    for bad in [
        json!({"dualControlRequestLifetimeInMinutes": 4}),
        json!({"dualControlRequestLifetimeInMinutes": 10081}),
        json!({"dualControlEnabled": "yes"}),
        json!({"dualControlGroupId": "staff"}),
        json!({"dualControlGroupId": nowhere}),
    ] {
        assert_graph_error(&app.patch(POLICY, &bad).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    let refused = app.as_user(&desk).patch(POLICY, &json!({"dualControlEnabled": true})).await;
    assert_graph_error(&refused, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let first = app.as_user(&desk).post(&tap(&boss_id), &json!({})).await;
    assert_eq!(first.status, StatusCode::CREATED, "off: the pass is made at once: {}", first.text);
    let on = app.patch(POLICY, &json!({"dualControlEnabled": true, "dualControlRequestLifetimeInMinutes": 30})).await;
    assert_eq!(on.status, StatusCode::NO_CONTENT, "{}", on.text);

    // The administrators who could approve hear of each request (the requester does not).
    for (id, address) in [(&desk_id, "desk@mail.test"), (&desk2_id, "desk2@mail.test")] {
        let set = app.patch(&format!("/v1.0/users/{id}"), &json!({"mail": address})).await;
        assert_eq!(set.status, StatusCode::NO_CONTENT, "{}", set.text);
    }

    // A user without a privileged role is not held.
    let plain = app.as_user(&desk).post(&tap(&plain_id), &json!({})).await;
    assert_eq!(plain.status, StatusCode::CREATED, "{}", plain.text);

    // A pass for a privileged user is held: shown once now, working only once approved.
    let asked = app.as_user(&desk).post(&tap(&boss_id), &json!({"isUsableOnce": true})).await;
    let request = held(&asked, &app.base_url);
    assert_eq!(asked.body["operation"], "createTemporaryAccessPass");
    assert_eq!(asked.body["requestedBy"]["id"], desk_id.as_str());
    assert_eq!(asked.body["target"]["id"], boss_id.as_str());
    let pass = asked.body["pendingTemporaryAccessPass"].as_str().expect("the pass, once").to_owned();
    let before = app.get(&tap(&boss_id)).await;
    let passes = before.body["value"].as_array().expect("passes");
    assert!(passes.iter().all(|it| it["isUsableOnce"] == false), "the held pass is not made yet: {}", before.text);
    let refused_title = sign_in_title(&app, "boss", &pass).await;
    assert_eq!(refused_title, "Enter password", "a pass not yet approved is refused");
    let held_record = app.audit_for(&boss_id).await.into_iter().find(|it| {
        it.activity_display_name == "Request approval of a service desk change"
            && detail(it, "ServiceDeskRequestId") == Some(&request[REQUESTS.len() + 1..])
    });
    assert!(held_record.is_some(), "the hold is audited");
    let outbox = app.get("/beta/keyward/notifications").await;
    let told: Vec<&str> = outbox.body["value"]
        .as_array()
        .expect("outbox")
        .iter()
        .filter(|it| it["kind"] == "approvalRequested")
        .filter_map(|it| it["recipient"].as_str())
        .collect();
    assert_eq!(told, ["desk2@mail.test"], "{}", outbox.text);
    let message = outbox.body["value"].as_array().expect("outbox").iter().find(|it| it["kind"] == "approvalRequested");
    let body = message.and_then(|it| it["body"].as_str()).unwrap_or_default();
    assert!(body.contains("/admin/approvals") && body.contains("boss Test"), "{body}");
    assert!(!body.contains(&pass), "the pass never goes into a message");
    let read = app.as_user(&desk).get(&request).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert!(read.body.get("pendingTemporaryAccessPass").is_none(), "a read never shows the pass: {}", read.text);
    assert!(!read.text.contains(&pass), "{}", read.text);
    assert_eq!(read.body["canBeDecidedByMe"], false, "the requester cannot decide");
    assert_eq!(app.as_user(&desk2).get(&request).await.body["canBeDecidedByMe"], true);
    // Who may not see it: an administrator who could not make the change; nobody anonymous.
    assert_graph_error(&app.as_user(&helpdesk).get(&request).await, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    let anonymous = app.send(Method::GET, &request, None, None, &[]).await;
    assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    let pending = app.as_user(&desk2).get(&format!("{REQUESTS}?$filter=status eq 'pendingApproval'")).await;
    assert_eq!(pending.body["value"].as_array().map(Vec::len), Some(1), "{}", pending.text);
    let bad_filter = app.as_user(&desk2).get(&format!("{REQUESTS}?$filter=status eq 'nope'")).await;
    assert_graph_error(&bad_filter, StatusCode::BAD_REQUEST, "Request_BadRequest");

    // Nobody decides on their own request or account; a lower administrator may not; a decision
    // needs a justification; none of it changes anything.
    let approve = format!("{request}/approve");
    let reason = json!({"justification": "Called back on the number on file"});
    for (token, why) in [(&desk, "the requester"), (&boss, "the target")] {
        let reply = app.as_user(token).post(&approve, &reason).await;
        assert_graph_error(&reply, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
        assert!(!reply.text.contains(&pass), "{why}: {}", reply.text);
    }
    // Someone no party to it who may not decide learns nothing of it.
    let outsider = app.as_user(&helpdesk).post(&approve, &reason).await;
    assert_graph_error(&outsider, StatusCode::NOT_FOUND, "Request_ResourceNotFound");
    // An approval needs a person fresh from MFA: a token from a password alone is refused.
    let stale = app.as_user(&desk2).post(&approve, &reason).await;
    assert_graph_error(&stale, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert!(stale.text.contains("multi-factor authentication within the last hour"), "{}", stale.text);
    let desk2 = super::methods::token_with_mfa(&app, &format!("desk2@{DOMAIN}")).await;
    let desk3 = super::methods::token_with_mfa(&app, &format!("desk3@{DOMAIN}")).await;
    let self_refusal = app
        .audit_for(&boss_id)
        .await
        .into_iter()
        .find(|it| it.activity_display_name == "Approve service desk change" && it.result == AuditResult::Failure);
    assert!(self_refusal.is_some(), "refused approvals are audited");
    for body in [json!({}), json!({"justification": "  "}), json!({"justification": 5}), json!({"reason": "x"})] {
        assert_graph_error(
            &app.as_user(&desk2).post(&approve, &body).await,
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
        );
    }
    assert_eq!(app.as_user(&desk2).get(&request).await.body["status"], "pendingApproval");

    // Approved: the change runs as the requester, the pass works, both names are on record.
    let approved = app.as_user(&desk2).post(&approve, &reason).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    assert_eq!(approved.body["status"], "completed");
    assert_eq!(approved.body["decidedBy"]["userPrincipalName"], format!("desk2@{DOMAIN}"));
    assert!(!approved.text.contains(&pass), "the approver never sees the pass: {}", approved.text);
    let after = app.get(&tap(&boss_id)).await;
    assert!(after.body["value"].as_array().is_some_and(|it| it.iter().any(|it| it["isUsableOnce"] == true)));
    let signed_title = sign_in_title(&app, "boss", &pass).await;
    assert_ne!(signed_title, refused_title, "the same pass: refused before approval, accepted after");
    let records = app.audit_for(&boss_id).await;
    let change = records
        .iter()
        .find(|it| it.activity_display_name == "Admin registered security info" && detail(it, "ApprovedBy").is_some())
        .expect("the change's record");
    assert_eq!(initiator_id(change), desk_id, "initiated by the requester");
    assert_eq!(detail(change, "ApprovedBy"), Some(format!("desk2@{DOMAIN}").as_str()));
    let approval = records
        .iter()
        .find(|it| it.activity_display_name == "Approve service desk change" && it.result == AuditResult::Success)
        .expect("the approval's record");
    assert_eq!(approval.correlation_id, change.correlation_id, "one correlation id");
    assert_eq!(detail(approval, "RequestedById"), Some(desk_id.as_str()));
    let again = app.as_user(&desk3).post(&approve, &reason).await;
    assert_graph_error(&again, StatusCode::CONFLICT, "Request_MultipleObjectsWithSameKeyValue");

    // Denied: a password reset held with its generated password, which never takes effect.
    let reset =
        format!("/v1.0/users/{boss_id}/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword");
    let asked = app.as_user(&desk).post(&reset, &json!({})).await;
    let request = held(&asked, &app.base_url);
    let password = asked.body["pendingPassword"].as_str().expect("the generated password, once").to_owned();
    let denied = app.as_user(&desk2).post(&format!("{request}/deny"), &json!({"justification": "Not verified"})).await;
    assert_eq!(denied.status, StatusCode::OK, "{}", denied.text);
    assert_eq!((&denied.body["status"], &denied.body["decisionNote"]), (&json!("denied"), &json!("Not verified")));
    assert_eq!(sign_in_title(&app, "boss", &password).await, refused_title, "the denied password never works");
    assert_ne!(sign_in_title(&app, "boss", PASSWORD).await, refused_title, "the old one still does");
    let late = app.as_user(&desk3).post(&format!("{request}/approve"), &reason).await;
    assert_graph_error(&late, StatusCode::CONFLICT, "Request_MultipleObjectsWithSameKeyValue");

    // A password set by PATCH is held like a reset (alone); a passkey cannot be provisioned.
    let patch_password =
        json!({"passwordProfile": {"password": "Hv8-quiet-Orchard-41!", "forceChangePasswordNextSignIn": false}});
    let patched = app.as_user(&desk).patch(&format!("/v1.0/users/{boss_id}"), &patch_password).await;
    held(&patched, &app.base_url);
    assert!(patched.body.get("pendingPassword").is_none(), "the requester chose it: {}", patched.text);
    let mixed = json!({"displayName": "Boss", "passwordProfile": {"password": "Hv8-quiet-Orchard-41!"}});
    let mixed = app.as_user(&desk).patch(&format!("/v1.0/users/{boss_id}"), &mixed).await;
    assert_graph_error(&mixed, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_eq!(sign_in_title(&app, "boss", "Hv8-quiet-Orchard-41!").await, refused_title, "not before approval");
    let options =
        app.as_user(&desk).get(&format!("/v1.0/users/{boss_id}/authentication/fido2Methods/creationOptions")).await;
    assert_graph_error(&options, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert!(options.text.contains("Temporary Access Pass"), "{}", options.text);

    // Expired: nobody decided within the policy's 30 minutes.
    let rereg = format!("/v1.0/users/{boss_id}/authentication/requireMfaReregistration");
    let asked = app.as_user(&desk).post(&rereg, &json!({})).await;
    let request = held(&asked, &app.base_url);
    app.clock.advance(time::Duration::minutes(31));
    let (desk2, desk3) = (
        super::methods::token_with_mfa(&app, &format!("desk2@{DOMAIN}")).await,
        super::methods::token_with_mfa(&app, &format!("desk3@{DOMAIN}")).await,
    );
    let desk = app.token_for(&format!("desk@{DOMAIN}")).await;
    assert_eq!(app.as_user(&desk2).get(&request).await.body["status"], "expired");
    let expired = app.as_user(&desk2).post(&format!("{request}/approve"), &reason).await;
    assert_graph_error(&expired, StatusCode::BAD_REQUEST, "RequestExpired");

    // Two approvers at once: the change runs once.
    let reset_mfa = format!("/v1.0/users/{boss_id}/authentication/resetMfa");
    let asked = app.as_user(&desk).post(&reset_mfa, &json!({})).await;
    let request = held(&asked, &app.base_url);
    let approve = format!("{request}/approve");
    let (as_desk2, as_desk3) = (app.as_user(&desk2), app.as_user(&desk3));
    let (one, two) = tokio::join!(as_desk2.post(&approve, &reason), as_desk3.post(&approve, &reason));
    let mut statuses = [one.status, two.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "{} / {}", one.text, two.text);
    let ran = app
        .audit_for(&boss_id)
        .await
        .into_iter()
        .filter(|it| it.activity_display_name == "Update StsRefreshTokenValidFrom Timestamp")
        .filter(|it| detail(it, "ServiceDeskRequestId") == Some(&request[REQUESTS.len() + 1..]))
        .count();
    assert_eq!(ran, 1, "the reset ran once");

    // A requester whose account is disabled before the approval: the request fails, nothing runs.
    let asked = app.as_user(&desk).post(&tap(&boss_id), &json!({})).await;
    let request = held(&asked, &app.base_url);
    let pass = asked.body["pendingTemporaryAccessPass"].as_str().expect("pass").to_owned();
    let disabled = app.patch(&format!("/v1.0/users/{desk_id}"), &json!({"accountEnabled": false})).await;
    assert_eq!(disabled.status, StatusCode::NO_CONTENT, "{}", disabled.text);
    let failed = app.as_user(&desk2).post(&format!("{request}/approve"), &reason).await;
    assert_graph_error(&failed, StatusCode::BAD_REQUEST, "ServiceDeskChangeFailed");
    assert_eq!(app.as_user(&desk2).get(&request).await.body["status"], "failed");
    assert_eq!(sign_in_title(&app, "boss", &pass).await, refused_title, "the failed request's pass never works");

    // A requester whose sessions were revoked after asking (a stolen account's answer): failed.
    let enabled = app.patch(&format!("/v1.0/users/{desk_id}"), &json!({"accountEnabled": true})).await;
    assert_eq!(enabled.status, StatusCode::NO_CONTENT, "{}", enabled.text);
    let desk = app.token_for(&format!("desk@{DOMAIN}")).await;
    let asked = app.as_user(&desk).post(&rereg, &json!({})).await;
    let request = held(&asked, &app.base_url);
    app.clock.advance(time::Duration::seconds(1));
    let revoked = app.post(&format!("/v1.0/users/{desk_id}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    let failed = app.as_user(&desk2).post(&format!("{request}/approve"), &reason).await;
    assert_graph_error(&failed, StatusCode::BAD_REQUEST, "ServiceDeskChangeFailed");
    assert!(failed.text.contains("sessions were revoked"), "{}", failed.text);

    // The policy's group: its members are held too, privileged or not.
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Executives", "mailEnabled": false, "mailNickname": "execs",
                    "securityEnabled": true,
                    "members@odata.bind": [format!("{}/v1.0/directoryObjects/{plain_id}", app.base_url)]}),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let group_id = group.body["id"].as_str().expect("group id");
    let set = app.patch(POLICY, &json!({"dualControlGroupId": group_id})).await;
    assert_eq!(set.status, StatusCode::NO_CONTENT, "{}", set.text);
    let asked = app.as_user(&desk2).post(&tap(&plain_id), &json!({})).await;
    held(&asked, &app.base_url);
    let oath =
        app.as_user(&desk2).delete(&format!("{}/{}", tap(&plain_id), "00000000-0000-0000-0000-0000000000aa")).await;
    assert_graph_error(&oath, StatusCode::NOT_FOUND, "Request_ResourceNotFound");

    // One requester may have 20 requests waiting, no more.
    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(app.as_user(&desk2).post(&tap(&plain_id), &json!({})).await.status);
    }
    assert_eq!(answers.iter().filter(|it| **it == StatusCode::ACCEPTED).count(), 19, "{answers:?}");
    let over = app.as_user(&desk2).post(&tap(&plain_id), &json!({})).await;
    assert_graph_error(&over, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert!(over.text.contains("20 requests waiting"), "{}", over.text);

    // Off again: nothing is held.
    let off = app.patch(POLICY, &json!({"dualControlEnabled": false})).await;
    assert_eq!(off.status, StatusCode::NO_CONTENT, "{}", off.text);
    let direct = app.as_user(&desk2).post(&tap(&boss_id), &json!({})).await;
    assert_eq!(direct.status, StatusCode::CREATED, "{}", direct.text);
}

/// The portal: an agent's pass for a privileged user is "Sent for approval" (shown once, working
/// once approved); another administrator approves it on the Approvals page with a justification;
/// the requester cannot decide there.
async fn the_portal_sends_for_approval_and_approves(backend: Backend) {
    use super::portal::{confirm_page, csrf_of, sign_in, user};
    let app = TestApp::spawn(backend).await;
    user(&app, "agent", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    user(&app, "approver", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let boss = user(&app, "chief", Some(roles::SECURITY_ADMINISTRATOR)).await;
    let on = app.patch(POLICY, &json!({"dualControlEnabled": true})).await;
    assert_eq!(on.status, StatusCode::NO_CONTENT, "{}", on.text);

    let mut agent = Browser::new(&app.base_url);
    sign_in(&app, &mut agent, "agent").await;
    let user_path = format!("/{DOMAIN}/admin/users/{boss}");
    let page = agent.get(&user_path).await;
    let confirm = confirm_page(&mut agent, &page, "create_tap").await;
    let fields = [
        ("csrf".to_owned(), csrf_of(&confirm)),
        ("action".to_owned(), "create_tap".to_owned()),
        ("lifetime".to_owned(), "60".to_owned()),
    ];
    let shown = agent.post_form(&user_path, &fields).await;
    assert_eq!(
        (shown.status, shown.title()),
        (StatusCode::ACCEPTED, "Sent for approval".to_owned()),
        "{}",
        shown.text()
    );
    let pass = shown.by_id("secret").expect("the pass, once");
    assert!(shown.by_id("what").is_some_and(|it| it.contains("works only once it is approved")), "{}", shown.text());
    // The requester's own Approvals page offers nothing to decide.
    let own = agent.get(&format!("/{DOMAIN}/admin/approvals")).await;
    assert!(own.by_id("nothing-to-decide").is_some(), "{}", own.text());
    assert!(own.html.contains("Create a Temporary Access Pass"), "their request is listed: {}", own.text());
    let forged = [
        ("csrf".to_owned(), csrf_of(&confirm)),
        ("request".to_owned(), app.get(REQUESTS).await.body["value"][0]["id"].as_str().expect("id").to_owned()),
        ("action".to_owned(), "approve".to_owned()),
        ("justification".to_owned(), "Me".to_owned()),
    ];
    let refused = agent.post_form(&format!("/{DOMAIN}/admin/approvals"), &forged).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());

    let mut approver = Browser::new(&app.base_url);
    sign_in(&app, &mut approver, "approver").await;
    let queue = approver.get(&format!("/{DOMAIN}/admin/approvals")).await;
    assert_eq!(queue.title(), "Approvals", "{}", queue.text());
    let start = queue.html.find("id=\"to-decide\"").unwrap_or_else(|| panic!("a request to decide:\n{}", queue.text()));
    let table = &queue.html[start..];
    assert!(table.contains("chief Tester") && table.contains("agent Tester"), "{table}");
    assert!(!queue.html.contains(&pass), "the approver never sees the pass");
    let form = queue
        .forms()
        .into_iter()
        .find(|it| it.inputs.iter().any(|(name, ..)| name == "request"))
        .expect("the decision form");
    let mut fields: Vec<(String, String)> = form
        .inputs
        .iter()
        .filter(|(name, ..)| name == "csrf" || name == "request")
        .map(|(name, value, ..)| (name.clone(), value.clone()))
        .collect();
    fields.push(("action".to_owned(), "approve".to_owned()));
    let blank = approver.post_form(&format!("/{DOMAIN}/admin/approvals"), &fields).await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST, "a justification is required: {}", blank.text());
    fields.push(("justification".to_owned(), "Verified by a call back".to_owned()));
    let done = approver.post_form(&format!("/{DOMAIN}/admin/approvals"), &fields).await;
    assert!(done.by_id("notice").is_some_and(|it| it.contains("approved")), "{}", done.text());
    assert!(done.by_id("nothing-to-decide").is_some(), "{}", done.text());
    assert!(done.html.contains("Approved and done"), "{}", done.text());
    assert_ne!(sign_in_title(&app, "chief", &pass).await, "Enter password", "the pass works once approved");
}

/// One administrator has at most 20 requests waiting, even when they ask for many at once: the
/// count and the new request are one step (PostgreSQL: the requester's lock; SQLite: one writer),
/// so concurrent requests count each other.
async fn concurrent_requests_of_one_administrator_stop_at_the_cap(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, desk) = person(&app, "desk", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    person(&app, "desk2", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let mut targets = Vec::new();
    for n in 0..24 {
        let user = app.create_user(&format!("boss{n}"), &format!("Boss {n}")).await;
        let id = user["id"].as_str().expect("id").to_owned();
        app.assign_role(&id, roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR, "/").await;
        targets.push(id);
    }
    let on = app.patch(POLICY, &json!({"dualControlEnabled": true})).await;
    assert_eq!(on.status, StatusCode::NO_CONTENT, "{}", on.text);
    let mut tasks = tokio::task::JoinSet::new();
    for target in &targets {
        let (client, url, token) = (app.client.clone(), format!("{}{}", app.base_url, tap(target)), desk.clone());
        tasks.spawn(async move {
            client.post(url).bearer_auth(token).json(&json!({})).send().await.expect("request").status()
        });
    }
    let statuses = tasks.join_all().await;
    let held = statuses.iter().filter(|it| **it == StatusCode::ACCEPTED).count();
    let refused = statuses.iter().filter(|it| **it == StatusCode::FORBIDDEN).count();
    assert_eq!((held, refused), (20, 4), "{statuses:?}");
    let waiting = app.get(&format!("{REQUESTS}?$top=100")).await;
    let count = waiting.body["value"].as_array().map(Vec::len);
    assert_eq!(count, Some(20), "{}", waiting.text);
}

/// A transaction reads the tenant's three service-desk policies in one statement and keeps them:
/// what it writes through its own setters it reads back, another tenant's are its own, and rows
/// committed for each policy decode as they were written.
async fn the_service_desk_policies_read_together_are_the_ones_written(backend: Backend) {
    use keyward_core::agent_limits::AgentLimits;
    use keyward_core::caller_verification::{Covered, Policy};
    use keyward_core::dual_control::DualControl;
    use keyward_core::ids::ObjectId;

    let app = TestApp::spawn(backend).await;
    let store = app.app.store();
    let tenant = app.tenant_id().await;
    let other = ObjectId::parse("0c5e9a1b-3d4f-4a6b-8c7d-9e0f1a2b3c4d").expect("id");
    let mut tx = store.write().await.expect("tx");
    app.add_tenant(&mut *tx, &other).await;
    assert_eq!(tx.caller_verification_policy(&tenant).await.expect("read"), Policy::default());
    assert_eq!(tx.dual_control_policy(&tenant).await.expect("read"), DualControl::default());
    assert_eq!(tx.agent_limits(&tenant).await.expect("read"), AgentLimits::default());

    let verification = Policy { is_enabled: true, covered: vec![Covered::PasswordResets, Covered::AllMethodChanges] };
    let group = ObjectId::parse("1d6f0b2c-4e5a-4b7c-9d8e-0f1a2b3c4d5e").expect("id");
    let dual = DualControl { is_enabled: true, group_id: Some(group), request_minutes: 45 };
    let limits = AgentLimits { passes_per_hour: Some(3), password_resets_per_hour: None, mfa_resets_per_hour: Some(7) };
    tx.set_caller_verification_policy(&tenant, &verification).await.expect("set");
    assert_eq!(tx.caller_verification_policy(&tenant).await.expect("read"), verification, "read back at once");
    tx.set_dual_control_policy(&tenant, &dual).await.expect("set");
    assert_eq!(tx.dual_control_policy(&tenant).await.expect("read"), dual, "read back at once");
    tx.set_agent_limits(&tenant, &limits).await.expect("set");
    assert_eq!(tx.agent_limits(&tenant).await.expect("read"), limits, "read back at once");
    assert_eq!(tx.agent_limits(&other).await.expect("read"), AgentLimits::default(), "another tenant's own");
    assert_eq!(tx.dual_control_policy(&other).await.expect("read"), DualControl::default());
    assert_eq!(tx.agent_limits(&tenant).await.expect("read"), limits, "and back to the first tenant");
    // The other tenant with a row for one policy only: the other two are their defaults.
    tx.set_agent_limits(&other, &AgentLimits { mfa_resets_per_hour: Some(2), ..AgentLimits::default() })
        .await
        .expect("set");
    tx.commit().await.expect("commit");
    let mut tx = store.read().await.expect("tx");
    assert_eq!(tx.caller_verification_policy(&other).await.expect("read"), Policy::default());
    assert_eq!(tx.dual_control_policy(&other).await.expect("read"), DualControl::default());
    assert_eq!(tx.agent_limits(&other).await.expect("read").mfa_resets_per_hour, Some(2));
    drop(tx);

    let mut tx = store.read().await.expect("tx");
    assert_eq!(tx.agent_limits(&tenant).await.expect("read"), limits);
    assert_eq!(tx.caller_verification_policy(&tenant).await.expect("read"), verification);
    assert_eq!(tx.dual_control_policy(&tenant).await.expect("read"), dual);
    let unknown = ObjectId::parse("2e7a1c3d-5f6b-4c8d-8e9f-1a2b3c4d5e6f").expect("id");
    assert_eq!(tx.dual_control_policy(&unknown).await.expect("read"), DualControl::default(), "no such tenant");
}

/// An approved change takes the tenant's audit chain head last, as every other audited write
/// does: while it waits for a lock the change itself needs (the requester's per-agent count,
/// held here by another transaction), the tenant's other audited writes go on, and once it runs
/// its approval record is written with its own, chained. (Before, the approval's record took the
/// head first: every audited write of the tenant waited behind it, and a write that held the
/// agent's lock and wanted the head deadlocked with it.) PostgreSQL: SQLite's writers are serial.
async fn an_approved_change_takes_the_audit_chain_head_last(backend: Backend) {
    use keyward_core::agent_limits::{AgentAction, AgentLimits};
    use keyward_core::ids::ObjectId;
    use std::time::Duration;
    if backend == Backend::Sqlite {
        return;
    }
    let app = TestApp::spawn(backend).await;
    let (desk_id, desk, boss_id) = two_desks_and_a_privileged_target(&app).await;
    let tenant = app.tenant_id().await;
    let store = app.app.store();
    let mut tx = store.write().await.expect("tx");
    let limits = AgentLimits { passes_per_hour: Some(10), ..AgentLimits::default() };
    tx.set_agent_limits(&tenant, &limits).await.expect("limits");
    tx.commit().await.expect("commit");
    let request = held(&app.as_user(&desk).post(&tap(&boss_id), &json!({})).await, &app.base_url);
    let desk2 = super::methods::token_with_mfa(&app, &format!("desk2@{DOMAIN}")).await;

    // Another transaction holds the requester's per-agent count, as a pass of theirs would.
    let mut agent = store.write().await.expect("tx");
    let action = AgentAction::TemporaryAccessPass.as_str();
    agent.count_agent_actions(&tenant, &desk_id, action, app.app.now()).await.expect("agent lock");
    let body = json!({"justification": "Called back on the number on file"});
    let approval = app.send_in_background(Method::POST, &format!("{request}/approve"), &desk2, body);
    super::security::until_a_session_waits_for_a_lock(&app).await;
    assert!(!approval.is_finished(), "the approved change waits for the requester's count");
    let other = tokio::time::timeout(Duration::from_secs(10), app.create_user("carol", "Carol Lane"))
        .await
        .expect("an unrelated audited write must not wait for the approval in flight");
    let carol = ObjectId::parse(other["id"].as_str().expect("id")).expect("id");
    agent.commit().await.expect("commit");
    let reply = approval.await.expect("task");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let records = app.audit_for(&boss_id).await;
    let approved = records
        .iter()
        .find(|it| it.activity_display_name == "Approve service desk change" && it.result == AuditResult::Success)
        .expect("the approval's record");
    let change = records
        .iter()
        .find(|it| it.activity_display_name == "Admin registered security info" && detail(it, "ApprovedBy").is_some())
        .expect("the change's record");
    assert_eq!(approved.correlation_id, change.correlation_id);
    assert!(app.audit_for(carol.as_str()).await.iter().any(|it| it.activity_display_name == "Add user"));
    let reports = app.app.verify_audit_chains(&mut |_, _| {}).await.expect("verification runs");
    assert!(reports.iter().all(|it| it.outcome.is_ok()), "{reports:?}");
}

/// A requester disabled after the approval first looked at them, while the approved change
/// waits for its target, does not get the change: the change's own transaction loads the
/// requester again. PostgreSQL, where the change can be held at the target's row (SQLite's
/// writers take turns).
async fn a_requester_disabled_while_the_approved_change_waits_does_not_get_it(backend: Backend) {
    use sqlx::Connection;
    if backend == Backend::Sqlite {
        return;
    }
    let app = TestApp::spawn(backend).await;
    let (desk_id, desk, boss_id) = two_desks_and_a_privileged_target(&app).await;
    let request = held(&app.as_user(&desk).post(&tap(&boss_id), &json!({})).await, &app.base_url);
    let desk2 = super::methods::token_with_mfa(&app, &format!("desk2@{DOMAIN}")).await;

    // The target's row held: the approval decides, then its change waits there.
    let target = super::security::HeldRow::user(&app, &boss_id).await;
    let body = json!({"justification": "Called back on the number on file"});
    let approval = app.send_in_background(Method::POST, &format!("{request}/approve"), &desk2, body);
    super::security::until_a_session_waits_for_a_lock(&app).await;
    let mut disabling = sqlx::PgConnection::connect(&app.database_url).await.expect("open PostgreSQL");
    sqlx::query("UPDATE users SET account_enabled = false WHERE id = $1")
        .bind(&desk_id)
        .execute(&mut disabling)
        .await
        .expect("disable the requester");
    target.release().await;
    let reply = approval.await.expect("task");
    assert_ne!(reply.status, StatusCode::OK, "the disabled requester's change ran: {}", reply.text);
    let after = app.get(&request).await;
    assert_eq!(after.body["status"], "failed", "{}", after.text);
    let passes = app.get(&tap(&boss_id)).await;
    assert_eq!(passes.body["value"].as_array().map(Vec::len), Some(0), "{}", passes.text);
    disabling.close().await.expect("close");
}

keyward_testkit::on_both_backends!(
    an_approved_change_takes_the_audit_chain_head_last,
    a_requester_disabled_while_the_approved_change_waits_does_not_get_it,
    the_service_desk_policies_read_together_are_the_ones_written,
    dual_control_holds_privileged_targets_for_a_second_administrator,
    the_portal_sends_for_approval_and_approves,
    concurrent_requests_of_one_administrator_stop_at_the_cap
);
