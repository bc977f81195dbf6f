//! Attacks that must not work: each test is the attack, on both backends, and what stops it.

use keyward_app::{App, RequestMeta, SignInForm, SignInPage, SignInView, csrf_token};
use keyward_core::secret::Secret;
use keyward_testkit::{ADMIN_PASSWORD, ADMIN_UPN, Backend, DOMAIN, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn meta() -> RequestMeta {
    RequestMeta {
        correlation_id: uuid::Uuid::new_v4().to_string(),
        ip_address: Some("203.0.113.7".into()),
        user_agent: None,
    }
}

/// A sign-in session on `node` that has passed the user-name step for `upn`: its cookie.
async fn session_at_password_step(node: &App, upn: &str) -> String {
    let view = node.sign_in_view(DOMAIN, None, None, meta()).await.expect("view");
    let cookie = view.set_session.expect("session cookie");
    let form = SignInForm {
        step: "username".into(),
        csrf: csrf_token(&cookie),
        username: Some(upn.into()),
        ..SignInForm::default()
    };
    node.sign_in_submit(DOMAIN, Some(&cookie), None, form, meta()).await.expect("username");
    cookie
}

async fn submit_password(node: App, cookie: String, password: String) -> SignInView {
    let form = SignInForm {
        step: "password".into(),
        csrf: csrf_token(&cookie),
        password: Some(Secret::new(password)),
        ..SignInForm::default()
    };
    node.sign_in_submit(DOMAIN, Some(&cookie), None, form, meta()).await.expect("password")
}

/// The error a password page shows, or what else the submission led to.
fn answer(view: &SignInView) -> String {
    match &view.page {
        Some(SignInPage::Password { error: Some(error), .. }) => error.clone(),
        other => format!("not refused: {other:?} redirect {:?}", view.redirect),
    }
}

/// A user's sign-in log as its error codes, newest first.
async fn sign_in_codes(app: &TestApp, upn: &str) -> Vec<i64> {
    let log = app.sign_in_log(upn).await;
    log.iter().rev().map(|it| it["status"]["errorCode"].as_i64().expect("errorCode")).collect()
}

/// Thirty wrong passwords sent at once on one sign-in session, through two nodes: the lockout
/// threshold (3) bounds how many reach the hasher; the right password then gets the answer a
/// wrong one gets at the same time, and no session; every attempt is in the sign-in log.
async fn parallel_guesses_cannot_outrun_the_lockout(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.lock_out_after_three_failures().await;
    let other = app.second_node().await;
    let cookie = session_at_password_step(&app.app, ADMIN_UPN).await;
    let before = app.app.password_verifications() + other.password_verifications();
    let mut guesses = tokio::task::JoinSet::new();
    for attempt in 0..30 {
        let node = if attempt % 2 == 0 { app.app.clone() } else { other.clone() };
        guesses.spawn(submit_password(node, cookie.clone(), format!("wrong-guess-{attempt}")));
    }
    let mut answers = Vec::new();
    while let Some(view) = guesses.join_next().await {
        answers.push(answer(&view.expect("task")));
    }
    let checked = app.app.password_verifications() + other.password_verifications() - before;
    assert!(checked <= 3, "{checked} guesses reached the hasher with a threshold of 3");
    assert!(answers.iter().all(|it| it.contains("incorrect") || it.contains("temporarily locked")), "{answers:?}");

    // Now the right password, together with more wrong ones: every answer is the same, and
    // none of them is checked.
    let mut attempts = tokio::task::JoinSet::new();
    for attempt in 0..4 {
        let password = if attempt == 3 { ADMIN_PASSWORD.to_owned() } else { format!("late-guess-{attempt}") };
        attempts.spawn(submit_password(other.clone(), cookie.clone(), password));
    }
    let mut late = Vec::new();
    while let Some(view) = attempts.join_next().await {
        let view = view.expect("task");
        assert!(view.set_session.is_none() && view.redirect.is_none(), "no session comes of a locked account");
        late.push(answer(&view));
    }
    assert!(late.iter().all(|it| *it == late[0] && it.contains("temporarily locked")), "{late:?}");
    assert_eq!(app.app.password_verifications() + other.password_verifications() - before, checked);
    let tenant = app.app.find_tenant(DOMAIN).await.expect("tenant").expect("tenant");
    assert!(!app.app.signed_in(&tenant, &cookie).await.expect("session"), "the session is not signed in");

    // Every attempt is logged: wrong ones as 50126, refused ones as locked (50053).
    let log = sign_in_codes(&app, ADMIN_UPN).await;
    assert_eq!(log.len(), 34, "{log:?}");
    assert_eq!(log.iter().filter(|it| **it == 50126).count() as u64, checked, "{log:?}");
    assert!(log.iter().all(|it| *it == 50126 || *it == 50053), "{log:?}");

    // After the lockout the right password works again.
    app.clock.advance(time::Duration::seconds(61));
    let view = submit_password(app.app.clone(), cookie, ADMIN_PASSWORD.into()).await;
    assert!(view.redirect.is_some() || matches!(view.page, Some(SignInPage::Account { .. })), "{:?}", view.page);
}

/// The resource-owner password grant is a password check like the sign-in pages: counted
/// before the hash, and a locked account gets no token even with the right password.
async fn password_grant_while_locked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.lock_out_after_three_failures().await;
    let node = keyward_testkit::node_with(&app.database_url, app.clock.clone(), &app.base_url, |config| {
        config.allow_password_grant = true;
    })
    .await;
    let grant = |password: &str| {
        [
            ("grant_type", "password"),
            ("client_id", "keyward-cli"),
            ("username", ADMIN_UPN),
            ("password", password),
            ("scope", "openid"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect::<std::collections::HashMap<_, _>>()
    };
    let codes = |result: Result<keyward_app::TokenResponse, keyward_app::OAuthError>| match result {
        Ok(_) => panic!("a token was issued"),
        Err(err) => (err.error, err.codes),
    };
    let auth = keyward_app::ClientAuth::default;
    let before = node.password_verifications();
    for attempt in 0..3 {
        let wrong = node.token(DOMAIN, &grant(&format!("wrong-{attempt}")), auth(), &meta()).await;
        assert_eq!(codes(wrong), ("invalid_grant", vec![50126]));
    }
    let right = node.token(DOMAIN, &grant(ADMIN_PASSWORD), auth(), &meta()).await;
    assert_eq!(codes(right), ("invalid_grant", vec![50053]), "a locked account gets no token");
    assert_eq!(node.password_verifications() - before, 3, "the locked attempt is not checked");
    // The right password did not lift the lock.
    let wrong = node.token(DOMAIN, &grant("wrong-again"), auth(), &meta()).await;
    assert_eq!(codes(wrong), ("invalid_grant", vec![50053]));
    app.clock.advance(time::Duration::seconds(61));
    let right = node.token(DOMAIN, &grant(ADMIN_PASSWORD), auth(), &meta()).await;
    assert!(right.is_ok_and(|it| it.id_token.is_some()));
}

/// The service principal of an application created through the API, by `appId`.
pub(crate) async fn principal_of(app: &TestApp, app_id: &str) -> String {
    let principals = app.get("/v1.0/servicePrincipals?$top=999").await;
    principals.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|it| it["appId"] == json!(app_id))
        .and_then(|it| it["id"].as_str())
        .expect("service principal")
        .to_owned()
}

/// A custom role holding `applications/credentials/update` cannot add a secret to an application
/// whose service principal holds a directory role (and then act as it); it still manages
/// applications whose principal holds none. Deleting a privileged application records the end
/// of its principal's role assignments.
async fn applications_cannot_be_used_to_climb(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let role = app
        .post(
            "/v1.0/roleManagement/directory/roleDefinitions",
            &json!({"displayName": "App credential manager", "isEnabled": true,
                "rolePermissions": [{"allowedResourceActions": [
                    "microsoft.directory/applications/credentials/update",
                    "microsoft.directory/applications/basic/update",
                    "microsoft.directory/applications/delete",
                    "microsoft.directory/applications/standard/read"]}]}),
        )
        .await;
    assert_eq!(role.status, StatusCode::CREATED, "{}", role.text);
    let agent = app.create_user("appmgr", "App Manager").await;
    let agent_id = agent["id"].as_str().expect("id");
    app.assign_role(agent_id, role.body["id"].as_str().expect("role id"), "/").await;
    let token = app.token_for(&format!("appmgr@{DOMAIN}")).await;

    let mut ids = Vec::new();
    for name in ["Payroll sync", "Tenant automation"] {
        let created = app.post("/v1.0/applications", &json!({"displayName": name})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        ids.push((
            created.body["id"].as_str().expect("id").to_owned(),
            created.body["appId"].as_str().expect("appId").to_owned(),
        ));
    }
    let (plain, _) = &ids[0];
    let (privileged, privileged_app_id) = &ids[1];
    let principal = principal_of(&app, privileged_app_id).await;
    app.assign_role(&principal, keyward_core::authz::roles::GLOBAL_ADMINISTRATOR, "/").await;

    let path = format!("/v1.0/applications/{plain}/addPassword");
    let ok = app.send(reqwest::Method::POST, &path, Some(&token), Some(&json!({})), &[]).await;
    assert_eq!(ok.status, StatusCode::OK, "an application whose principal holds no role: {}", ok.text);
    for (method, path, body) in [
        (reqwest::Method::POST, format!("/v1.0/applications/{privileged}/addPassword"), Some(json!({}))),
        (
            reqwest::Method::PATCH,
            format!("/v1.0/applications/{privileged}"),
            Some(json!({"web": {"redirectUris": ["https://attacker.example/callback"]}})),
        ),
        (reqwest::Method::DELETE, format!("/v1.0/applications/{privileged}"), None),
    ] {
        let refused = app.send(method.clone(), &path, Some(&token), body.as_ref(), &[]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{method} {path}: {}", refused.text);
        assert_eq!(refused.body["error"]["code"], "Authorization_RequestDenied");
        assert!(refused.body["error"]["message"].as_str().is_some_and(|it| it.contains("holds a directory role")));
    }
    let audit = app
        .get(&format!(
            "/v1.0/auditLogs/directoryAudits?$filter=initiatedBy/user/id eq '{agent_id}' and result eq 'failure'"
        ))
        .await;
    let refusals = audit.body["value"].as_array().expect("value");
    assert_eq!(refusals.len(), 3, "{}", audit.text);
    assert!(refusals.iter().all(|it| it["targetResources"][0]["id"] == json!(privileged)), "{}", audit.text);
    // The application kept no new secret and its redirect URIs.
    let current = app.get(&format!("/v1.0/applications/{privileged}")).await;
    assert_eq!(current.body["passwordCredentials"], json!([]), "{}", current.text);

    // The Global Administrator may delete it; the principal's role assignment is recorded as ended.
    let deleted = app.delete(&format!("/v1.0/applications/{privileged}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let audit = app
        .get(&format!(
            "/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Remove member from role' and targetResources/any(t:t/id eq '{principal}')"
        ))
        .await;
    assert_eq!(audit.body["value"].as_array().map(Vec::len), Some(1), "{}", audit.text);

    // A role scheduled to start later protects as one held now: a secret added to its
    // application, or a password set for its user, before it starts would hold it when it does.
    let tomorrow =
        (app.app.now() + time::Duration::days(1)).format(&time::format_description::well_known::Rfc3339).expect("time");
    let schedule = |principal: &str| {
        json!({"action": "adminAssign", "principalId": principal, "directoryScopeId": "/",
            "roleDefinitionId": keyward_core::authz::roles::GLOBAL_ADMINISTRATOR, "justification": "night shift",
            "scheduleInfo": {"startDateTime": tomorrow, "expiration": {"type": "afterDuration", "duration": "P30D"}}})
    };
    let requests = "/v1.0/roleManagement/directory/roleAssignmentScheduleRequests";
    let created = app.post("/v1.0/applications", &json!({"displayName": "Night batch"})).await;
    let (later, later_app_id) =
        (created.body["id"].as_str().expect("id"), created.body["appId"].as_str().expect("appId"));
    let made = app.post(requests, &schedule(&principal_of(&app, later_app_id).await)).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let path = format!("/v1.0/applications/{later}/addPassword");
    let refused = app.send(reqwest::Method::POST, &path, Some(&token), Some(&json!({})), &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "a role scheduled for its principal: {}", refused.text);
    let night = app.create_user("night", "Night Admin").await["id"].as_str().expect("id").to_owned();
    let made = app.post(requests, &schedule(&night)).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let desk = app.create_user("helpdesk", "Help Desk").await["id"].as_str().expect("id").to_owned();
    app.assign_role(&desk, keyward_core::authz::roles::HELPDESK_ADMINISTRATOR, "/").await;
    let desk = app.token_for(&format!("helpdesk@{DOMAIN}")).await;
    let reset = app
        .as_user(&desk)
        .patch(&format!("/v1.0/users/{night}"), &json!({"passwordProfile": {"password": "Orchard-Velvet-Compass-31"}}))
        .await;
    assert_eq!(reset.status, StatusCode::FORBIDDEN, "a Global Administrator from tomorrow: {}", reset.text);
}

/// `PATCH /servicePrincipals/{id}`: each stated property needs its own action (`…/disable`,
/// `…/enable`, `…/basic/update`); a principal that holds a directory role is changed only by the
/// roles that could assign it; bad input changes nothing; each change is audited.
async fn service_principals_are_disabled_only_by_who_may(backend: Backend) {
    let spawned = TestApp::spawn(backend).await;
    let app = &spawned;
    let role = app
        .post(
            "/v1.0/roleManagement/directory/roleDefinitions",
            &json!({"displayName": "App gatekeeper", "isEnabled": true,
                "rolePermissions": [{"allowedResourceActions": [
                    "microsoft.directory/servicePrincipals/disable",
                    "microsoft.directory/servicePrincipals/enable",
                    "microsoft.directory/servicePrincipals/standard/read"]}]}),
        )
        .await;
    assert_eq!(role.status, StatusCode::CREATED, "{}", role.text);
    let agent = app.create_user("gatekeeper", "Gate Keeper").await;
    let agent_id = agent["id"].as_str().expect("id").to_owned();
    app.assign_role(&agent_id, role.body["id"].as_str().expect("role id"), "/").await;
    let token = app.token_for(&format!("gatekeeper@{DOMAIN}")).await;
    let mut principals = Vec::new();
    for name in ["Payroll sync", "Tenant automation"] {
        let created = app.post("/v1.0/applications", &json!({"displayName": name})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        principals.push(principal_of(app, created.body["appId"].as_str().expect("appId")).await);
    }
    let (plain, privileged) = (principals[0].clone(), principals[1].clone());
    app.assign_role(&privileged, keyward_core::authz::roles::GLOBAL_ADMINISTRATOR, "/").await;
    let state = |id: String| async move {
        let shown = app.get(&format!("/v1.0/servicePrincipals/{id}")).await;
        (shown.body["accountEnabled"].clone(), shown.body["displayName"].clone())
    };
    let send = |token: Option<String>, id: &str, body: Value| {
        let path = format!("/v1.0/servicePrincipals/{id}");
        async move { app.send(reqwest::Method::PATCH, &path, token.as_deref(), Some(&body), &[]).await }
    };

    // The gatekeeper turns a plain principal off and on; renaming it needs basic/update.
    let off = send(Some(token.clone()), &plain, json!({"accountEnabled": false})).await;
    assert_eq!(off.status, StatusCode::NO_CONTENT, "{}", off.text);
    assert_eq!(state(plain.clone()).await, (json!(false), json!("Payroll sync")));
    let on = send(Some(token.clone()), &plain, json!({"accountEnabled": true})).await;
    assert_eq!(on.status, StatusCode::NO_CONTENT, "{}", on.text);
    let renamed = send(Some(token.clone()), &plain, json!({"displayName": "Renamed"})).await;
    assert_eq!(renamed.status, StatusCode::FORBIDDEN, "{}", renamed.text);
    // A principal holding Global Administrator is not the gatekeeper's to turn off.
    let refused = send(Some(token.clone()), &privileged, json!({"accountEnabled": false})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(refused.body["error"]["message"].as_str().is_some_and(|it| it.contains("holds a directory role")));
    assert_eq!(state(privileged.clone()).await, (json!(true), json!("Tenant automation")));
    // Nobody signed in, and a Helpdesk Administrator, may do neither.
    let anonymous = send(None, &plain, json!({"accountEnabled": false})).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{}", anonymous.text);
    let desk = app.create_user("desk", "Help Desk").await["id"].as_str().expect("id").to_owned();
    app.assign_role(&desk, keyward_core::authz::roles::HELPDESK_ADMINISTRATOR, "/").await;
    let desk = app.token_for(&format!("desk@{DOMAIN}")).await;
    let denied = send(Some(desk.clone()), &plain, json!({"accountEnabled": false})).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.text);
    // Refused before the principal is looked up: a 403 whether it exists or not.
    let unknown = send(Some(desk), "00000000-0000-0000-0000-0000000000aa", json!({"accountEnabled": false})).await;
    assert_eq!(unknown.status, StatusCode::FORBIDDEN, "{}", unknown.text);

    // Bad input: a clear 400 (or 404) in Graph's envelope, and nothing changed.
    let admin = Some(app.admin_token.clone());
    for (id, body, status) in [
        (plain.as_str(), json!({"accountEnabled": "no"}), StatusCode::BAD_REQUEST),
        (plain.as_str(), json!({"accountEnabled": false, "tags": ["x"]}), StatusCode::BAD_REQUEST),
        (
            plain.as_str(),
            json!({"accountEnabled": false, "appId": "00000000-0000-0000-0000-000000000001"}),
            StatusCode::BAD_REQUEST,
        ),
        (plain.as_str(), json!({"displayName": "   "}), StatusCode::BAD_REQUEST),
        (plain.as_str(), json!({"displayName": "x".repeat(257)}), StatusCode::BAD_REQUEST),
        (plain.as_str(), json!(["accountEnabled"]), StatusCode::BAD_REQUEST),
        (plain.as_str(), json!({}), StatusCode::BAD_REQUEST),
        (plain.as_str(), json!({"id": plain}), StatusCode::BAD_REQUEST),
        (plain.as_str(), json!({"displayName": "Payroll\nsync"}), StatusCode::BAD_REQUEST),
        (
            plain.as_str(),
            json!({"@odata.type": "#microsoft.graph.user", "accountEnabled": false}),
            StatusCode::BAD_REQUEST,
        ),
        ("not-an-id", json!({"accountEnabled": false}), StatusCode::BAD_REQUEST),
        ("00000000-0000-0000-0000-0000000000aa", json!({"accountEnabled": false}), StatusCode::NOT_FOUND),
    ] {
        let reply = send(admin.clone(), id, body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.text);
        assert!(reply.body["error"]["message"].is_string(), "{body}: {}", reply.text);
    }
    assert_eq!(state(plain.clone()).await, (json!(true), json!("Payroll sync")));

    // The Global Administrator may do both at once, by appId too; one audit record says what changed.
    let app_id = app.get(&format!("/v1.0/servicePrincipals/{privileged}")).await.body["appId"]
        .as_str()
        .expect("appId")
        .to_owned();
    let both = app
        .patch(
            &format!("/v1.0/servicePrincipals(appId='{app_id}')"),
            &json!({"accountEnabled": false, "displayName": "Tenant automation (paused)", "id": privileged}),
        )
        .await;
    assert_eq!(both.status, StatusCode::NO_CONTENT, "{}", both.text);
    assert_eq!(state(privileged.clone()).await, (json!(false), json!("Tenant automation (paused)")));
    let audit = app
        .get(&format!(
            "/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Update service principal' and targetResources/any(t:t/id eq '{privileged}')"
        ))
        .await;
    let records = audit.body["value"].as_array().expect("value");
    let succeeded: Vec<_> = records.iter().filter(|it| it["result"] == "success").collect();
    assert_eq!(succeeded.len(), 1, "{}", audit.text);
    let changed = &succeeded[0]["targetResources"][0]["modifiedProperties"];
    assert_eq!(
        changed,
        &json!([
            {"displayName": "DisplayName", "oldValue": "[\"Tenant automation\"]", "newValue": "[\"Tenant automation (paused)\"]"},
            {"displayName": "AccountEnabled", "oldValue": "[true]", "newValue": "[false]"}
        ]),
        "{}",
        audit.text
    );
    assert_eq!(
        records.iter().filter(|it| it["result"] == "failure").count(),
        1,
        "the gatekeeper's refusal: {}",
        audit.text
    );
    // A PATCH that changes nothing records nothing.
    let same = app.patch(&format!("/v1.0/servicePrincipals/{privileged}"), &json!({"accountEnabled": false})).await;
    assert_eq!(same.status, StatusCode::NO_CONTENT, "{}", same.text);
    let again = app.get(&format!(
        "/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Update service principal' and targetResources/any(t:t/id eq '{privileged}')"
    )).await;
    assert_eq!(again.body["value"].as_array().map(Vec::len), Some(records.len()), "{}", again.text);

    // Two changes at once, each writing the principal back whole: neither is lost, each recorded.
    let path = format!("/v1.0/servicePrincipals/{plain}");
    let (off_body, rename_body) = (json!({"accountEnabled": false}), json!({"displayName": "Payroll sync (night)"}));
    let (off, renamed) = tokio::join!(app.patch(&path, &off_body), app.patch(&path, &rename_body));
    assert_eq!(
        (off.status, renamed.status),
        (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT),
        "{} {}",
        off.text,
        renamed.text
    );
    assert_eq!(state(plain.clone()).await, (json!(false), json!("Payroll sync (night)")));
    let both = app
        .get(&format!(
            "/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Update service principal' and result eq 'success' and targetResources/any(t:t/id eq '{plain}')"
        ))
        .await;
    let changed: Vec<&Value> = both.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .flat_map(|it| it["targetResources"][0]["modifiedProperties"].as_array().expect("properties"))
        .map(|it| &it["displayName"])
        .collect();
    // The gatekeeper's off and on earlier, and these two.
    assert_eq!(changed.len(), 4, "{}", both.text);
    assert!(changed.contains(&&json!("DisplayName")), "{}", both.text);
}

const PASSWORD: &str = "Tq7-harbour-Lantern-92!";
const REDIRECT: &str = "http://localhost:43210/";

fn form(fields: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A node with the password grant on, and a grant's tokens for `upn`.
async fn password_node(app: &TestApp) -> App {
    keyward_testkit::node_with(&app.database_url, app.clock.clone(), &app.base_url, |config| {
        config.allow_password_grant = true;
    })
    .await
}

async fn password_tokens(node: &App, upn: &str) -> keyward_app::TokenResponse {
    let grant = form(&[
        ("grant_type", "password"),
        ("client_id", "keyward-cli"),
        ("username", upn),
        ("password", PASSWORD),
        ("scope", "openid offline_access User.Read"),
    ]);
    node.token(DOMAIN, &grant, keyward_app::ClientAuth::default(), &meta()).await.expect("password grant")
}

/// The password grant's form for a confidential client with its secret.
fn confidential_password_grant(client_id: &str, secret: &str, upn: &str) -> std::collections::HashMap<String, String> {
    form(&[
        ("grant_type", "password"),
        ("client_id", client_id),
        ("client_secret", secret),
        ("username", upn),
        ("password", PASSWORD),
        ("scope", "openid offline_access User.Read"),
    ])
}

async fn refresh(node: &App, refresh_token: &str) -> Result<keyward_app::TokenResponse, keyward_app::OAuthError> {
    let grant = form(&[
        ("grant_type", "refresh_token"),
        ("client_id", "keyward-cli"),
        ("refresh_token", refresh_token),
        ("scope", "openid offline_access User.Read"),
    ]);
    node.token(DOMAIN, &grant, keyward_app::ClientAuth::default(), &meta()).await
}

fn oauth_error(result: Result<keyward_app::TokenResponse, keyward_app::OAuthError>) -> (&'static str, Vec<i64>) {
    match result {
        Ok(_) => panic!("tokens were issued"),
        Err(err) => (err.error, err.codes),
    }
}

/// A user who signed in without MFA and is then made Global Administrator (who must use MFA):
/// the refresh token fails with 50076, and the authorization endpoint does not reuse the session
/// but sends the user to sign in again (or answers `interaction_required` to a silent request).
async fn mfa_holds_on_refresh_and_reauthorization(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let adele = app.create_user("adele", "Adele Vance").await;
    let upn = format!("adele@{DOMAIN}");
    let node = password_node(&app).await;
    let tokens = password_tokens(&node, &upn).await;
    let refresh_token = tokens.refresh_token.clone().expect("refresh token");
    // A browser session signed in with a password alone.
    let authorize = authorize_path("keyward-cli", REDIRECT, "openid", PKCE);
    let mut browser = keyward_testkit::browser::Browser::new(&app.base_url);
    let page = browser.get(&authorize).await;
    let page = browser.submit(&page, "username", &[("username", &upn)], &[]).await;
    let done = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    assert!(done.path.starts_with(REDIRECT) && done.path.contains("code="), "{}", done.path);
    let again = browser.get(&authorize).await;
    assert!(again.path.starts_with(REDIRECT), "the session is reused while MFA is not required: {}", again.path);

    app.assign_role(adele["id"].as_str().expect("id"), keyward_core::authz::roles::GLOBAL_ADMINISTRATOR, "/").await;
    assert_eq!(oauth_error(refresh(&node, &refresh_token).await), ("invalid_grant", vec![50076]));
    let silent = browser.get(&format!("{authorize}&prompt=none")).await;
    assert!(silent.path.contains("error=interaction_required"), "{}", silent.path);
    let step_up = browser.get(&authorize).await;
    assert_eq!(step_up.title(), "Sign in", "no code from a session without MFA: {} {}", step_up.path, step_up.text());
    // Signing in again meets the second factor (here: its registration).
    let page = browser.submit(&step_up, "username", &[("username", &upn)], &[]).await;
    let page = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    assert_eq!(page.title(), "More information required", "{}", page.text());
}

/// A new password set by an administrator's PATCH ends the refresh tokens and access tokens of
/// the old one; deleting a Temporary Access Pass ends the session it opened; a revocation in
/// the same second as a token's issue still refuses the token issued before it.
async fn credential_changes_end_what_the_old_credential_opened(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let adele = app.create_user("adele", "Adele Vance").await;
    let adele_id = adele["id"].as_str().expect("id").to_owned();
    let upn = format!("adele@{DOMAIN}");
    let node = password_node(&app).await;
    let tokens = password_tokens(&node, &upn).await;
    app.clock.advance(time::Duration::milliseconds(300));
    let patched = app
        .patch(
            &format!("/v1.0/users/{adele_id}"),
            &json!({"passwordProfile": {"password": "Orchard-Velvet-31!x", "forceChangePasswordNextSignIn": false}}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::NO_CONTENT, "{}", patched.text);
    assert_eq!(
        oauth_error(refresh(&node, tokens.refresh_token.as_deref().expect("refresh")).await),
        ("invalid_grant", vec![50173])
    );
    let me = app.send(reqwest::Method::GET, "/v1.0/me", Some(&tokens.access_token), None, &[]).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED, "an access token of the old password: {}", me.text);

    // Sub-second cut-off: a token issued 0.3 s before a revocation in the same second is refused,
    // one issued after it works.
    app.clock.advance(time::Duration::seconds(5));
    let second_start = app.app.now().replace_nanosecond(0).expect("whole second");
    app.clock.set(second_start + time::Duration::milliseconds(100));
    let before = app.token_for(&upn).await;
    app.clock.set(second_start + time::Duration::milliseconds(400));
    let revoked = app.post(&format!("/v1.0/users/{adele_id}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    app.clock.set(second_start + time::Duration::milliseconds(700));
    let after = app.token_for(&upn).await;
    let refused = app.send(reqwest::Method::GET, "/v1.0/me", Some(&before), None, &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    let accepted = app.send(reqwest::Method::GET, "/v1.0/me", Some(&after), None, &[]).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);

    // A session opened with a Temporary Access Pass ends when the pass is deleted.
    let taps = format!("/v1.0/users/{adele_id}/authentication/temporaryAccessPassMethods");
    let created = app.post(&taps, &json!({"lifetimeInMinutes": 60})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let pass = created.body["temporaryAccessPass"].as_str().expect("pass").to_owned();
    let mut browser = keyward_testkit::browser::Browser::new(&app.base_url);
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    let page = browser.submit(&page, "username", &[("username", &upn)], &[]).await;
    let page = browser.submit(&page, "password", &[("current-password", &pass)], &[]).await;
    assert_eq!(page.title(), "My account", "{}", page.text());
    assert_eq!(browser.get(&format!("/{DOMAIN}/login")).await.title(), "My account");
    let deleted = app.delete(&format!("{taps}/{}", created.body["id"].as_str().expect("id"))).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let ended = browser.get(&format!("/{DOMAIN}/login")).await;
    assert_eq!(ended.title(), "Sign in", "the pass's session ended: {}", ended.text());
}

/// A token exchange whose grant check read the user just before a revocation committed, and
/// that signed just after it, issues an access token dated after the revocation's cut-off from a
/// sign-in before it. The API refuses it: a revocation ends the tokens of every sign-in before
/// it, whenever they were issued. The state is reached here by writing the cut-off as that
/// revocation would have, a moment before the token's issue, after the exchange.
async fn a_token_issued_across_a_revocation_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let adele = app.create_user("adele", "Adele Vance").await;
    let adele_id = keyward_core::ids::ObjectId::parse(adele["id"].as_str().expect("id")).expect("id");
    let upn = format!("adele@{DOMAIN}");
    let node = password_node(&app).await;
    let signed_in = password_tokens(&node, &upn).await;
    app.clock.advance(time::Duration::seconds(2));
    let cut_off = app.app.now() - time::Duration::seconds(1);
    let cut_off = cut_off.replace_microsecond(cut_off.microsecond()).expect("stored in microseconds");
    let refreshed = refresh(&node, signed_in.refresh_token.as_deref().expect("refresh")).await.expect("refresh");
    let me = app.send(reqwest::Method::GET, "/v1.0/me", Some(&refreshed.access_token), None, &[]).await;
    assert_eq!(me.status, StatusCode::OK, "before the revocation: {}", me.text);

    let tenant = app.app.find_tenant(DOMAIN).await.expect("tenant").expect("tenant").id;
    let store = keyward_store::open(&app.database_url).await.expect("store");
    let mut revoke = store.write().await.expect("tx");
    let mut user = revoke.get_user_for_update(&tenant, &adele_id).await.expect("read").expect("adele");
    user.sign_in_sessions_valid_from = cut_off;
    revoke.update_user(&user).await.expect("revoke");
    revoke.commit().await.expect("commit");

    for (what, token) in
        [("issued before the cut-off", &signed_in.access_token), ("issued after it", &refreshed.access_token)]
    {
        let me = app.send(reqwest::Method::GET, "/v1.0/me", Some(token), None, &[]).await;
        assert_eq!(
            me.status,
            StatusCode::UNAUTHORIZED,
            "a token of a sign-in before the revocation, {what}: {}",
            me.text
        );
    }
    assert_eq!(
        oauth_error(refresh(&node, refreshed.refresh_token.as_deref().expect("refresh")).await),
        ("invalid_grant", vec![50173])
    );
    // A sign-in after the cut-off gets tokens that work.
    let again = password_tokens(&node, &upn).await;
    let me = app.send(reqwest::Method::GET, "/v1.0/me", Some(&again.access_token), None, &[]).await;
    assert_eq!(me.status, StatusCode::OK, "a sign-in after the revocation: {}", me.text);
}

/// `GET path` with `token`.
async fn read_as(app: &TestApp, token: &str, path: String) -> keyward_testkit::Reply {
    app.send(Method::GET, &path, Some(token), None, &[]).await
}

/// `GET path` with `token` three times, each answered `status`: from the second on, a caller
/// answered from what the node kept.
async fn read_kept(app: &TestApp, token: &str, path: String, status: StatusCode) {
    for _ in 0..3 {
        let reply = read_as(app, token, path.clone()).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text);
    }
}

/// Each node keeps the callers and users it read for as long as nothing has committed since
/// (SQLite; a caller from their second read): a change made behind its back (another connection,
/// as another process would) or through its own writer counts at the next request, and so does a
/// role window opening or closing with no change at all. Every change below is made while the
/// caller is kept: each is preceded by reads with no commit between.
async fn kept_reads_follow_every_change(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reader = app.create_user("reader", "Reader").await;
    let reader_id = reader["id"].as_str().expect("id").to_owned();
    let target = app.create_user("target", "Target").await;
    let target_id = target["id"].as_str().expect("id").to_owned();
    let token = app.token_for(&format!("reader@{DOMAIN}")).await;
    let profile = format!("/v1.0/users/{target_id}");
    let methods = format!("/v1.0/users/{target_id}/authentication/methods");
    let read = |path: &String| read_as(&app, &token, path.clone());
    let kept = |path: String, status: StatusCode| read_kept(&app, &token, path, status);

    // Changed by another connection, as another process (a restore, an operator's SQL) would.
    kept(profile.clone(), StatusCode::OK).await;
    let raw = crate::audit_chain::Raw::connect(&app.database_url).await;
    raw.exec(&format!("UPDATE users SET display_name = 'Renamed elsewhere' WHERE id = '{target_id}'")).await;
    let renamed = read(&profile).await;
    assert_eq!(renamed.body["displayName"], "Renamed elsewhere", "{}", renamed.text);
    kept(profile.clone(), StatusCode::OK).await;
    raw.exec(&format!("UPDATE users SET account_enabled = FALSE WHERE id = '{reader_id}'")).await;
    assert_eq!(read(&profile).await.status, StatusCode::UNAUTHORIZED, "a disabled caller");
    raw.exec(&format!("UPDATE users SET account_enabled = TRUE WHERE id = '{reader_id}'")).await;
    kept(profile.clone(), StatusCode::OK).await;

    // A role through a role-assignable group, the membership changed through the server itself.
    let group = app.create_role_assignable_group("Kept Desk", &[]).await;
    app.assign_role(&group, keyward_core::authz::roles::AUTHENTICATION_ADMINISTRATOR, "/").await;
    kept(methods.clone(), StatusCode::FORBIDDEN).await;
    let reference = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{reader_id}")});
    let added = app.post(&format!("/v1.0/groups/{group}/members/$ref"), &reference).await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    kept(methods.clone(), StatusCode::OK).await;
    let removed = app.delete(&format!("/v1.0/groups/{group}/members/{reader_id}/$ref")).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    kept(methods.clone(), StatusCode::FORBIDDEN).await;

    // A role that starts in five minutes and ends ten minutes later: nothing commits between
    // the reads below, only the clock moves.
    let now = app.app.now();
    let store = keyward_store::open(&app.database_url).await.expect("store");
    let mut tx = store.write().await.expect("tx");
    tx.insert_role_assignment(&keyward_store::RoleAssignment {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: app.tenant_id().await,
        principal_id: keyward_core::ids::ObjectId::parse(&reader_id).expect("id"),
        role_definition_id: keyward_core::authz::roles::AUTHENTICATION_ADMINISTRATOR.to_owned(),
        directory_scope_id: "/".to_owned(),
        created: now,
        start: Some(now + time::Duration::minutes(5)),
        end: Some(now + time::Duration::minutes(15)),
        activated_using: None,
    })
    .await
    .expect("assignment");
    tx.commit().await.expect("commit");
    store.close().await;
    kept(methods.clone(), StatusCode::FORBIDDEN).await;
    app.clock.advance(time::Duration::minutes(6));
    kept(methods.clone(), StatusCode::OK).await;
    app.clock.advance(time::Duration::minutes(10));
    kept(methods.clone(), StatusCode::FORBIDDEN).await;

    // A revocation through the server: the kept caller's token stops working.
    kept(profile.clone(), StatusCode::OK).await;
    app.clock.advance(time::Duration::seconds(2));
    let revoked = app.post(&format!("/v1.0/users/{reader_id}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(read(&profile).await.status, StatusCode::UNAUTHORIZED, "a revoked caller");
}

/// Every path that signs a user in writes the sign-in log: the pages (interactive, naming the
/// client whose authorization request led there), the password grant, refresh-token
/// redemptions and device-code completions (non-interactive), each with the real client.
async fn every_sign_in_path_is_logged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("adele", "Adele Vance").await;
    let upn = format!("adele@{DOMAIN}");
    let node = password_node(&app).await;
    let wrong = form(&[
        ("grant_type", "password"),
        ("client_id", "keyward-cli"),
        ("username", upn.as_str()),
        ("password", "not-her-password"),
        ("scope", "openid"),
    ]);
    let _ = node.token(DOMAIN, &wrong, keyward_app::ClientAuth::default(), &meta()).await;
    let tokens = password_tokens(&node, &upn).await;
    refresh(&node, tokens.refresh_token.as_deref().expect("refresh")).await.expect("refresh");
    // The pages, for an authorization request of keyward-cli.
    let authorize = authorize_path("keyward-cli", REDIRECT, "openid", PKCE);
    let mut browser = keyward_testkit::browser::Browser::new(&app.base_url);
    let page = browser.get(&authorize).await;
    let page = browser.submit(&page, "username", &[("username", &upn)], &[]).await;
    let done = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    assert!(done.path.starts_with(REDIRECT), "{}", done.path);
    // A device code approved in the same browser, then redeemed.
    let device = node
        .device_authorization(DOMAIN, &form(&[("client_id", "keyward-cli"), ("scope", "openid offline_access")]))
        .await
        .expect("device code");
    let code_page = browser.get(&format!("/{DOMAIN}/devicelogin")).await;
    let confirm = browser.submit(&code_page, "device_code", &[], &[("user_code", &device.user_code)]).await;
    let approved = browser.submit(&confirm, "device_confirm", &[], &[]).await;
    assert_eq!(approved.title(), "You're signed in", "{}", approved.text());
    let poll = form(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("client_id", "keyward-cli"),
        ("device_code", device.device_code.as_str()),
    ]);
    node.token(DOMAIN, &poll, keyward_app::ClientAuth::default(), &meta()).await.expect("device tokens");

    let log = app.sign_in_log(&upn).await;
    let summary: Vec<(i64, bool, &str, &str)> = log
        .iter()
        .map(|it| {
            (
                it["status"]["errorCode"].as_i64().expect("code"),
                it["isInteractive"].as_bool().expect("isInteractive"),
                it["clientAppUsed"].as_str().expect("clientAppUsed"),
                it["appId"].as_str().expect("appId"),
            )
        })
        .collect();
    let desktop = "Mobile Apps and Desktop clients";
    assert_eq!(
        summary,
        vec![
            (50126, false, desktop, "keyward-cli"),
            (0, false, desktop, "keyward-cli"),
            (0, false, desktop, "keyward-cli"),
            (0, true, "Browser", "keyward-cli"),
            (0, false, desktop, "keyward-cli"),
        ],
        "{log:#?}"
    );
    assert!(log.iter().all(|it| it["appDisplayName"].as_str().is_some_and(|name| !name.is_empty())));
    assert_eq!(log[0]["userDisplayName"], "Adele Vance", "a failed sign-in of a known user names her");
}

/// PKCE parameters for a public client's authorization request (the verifier is RFC 7636's example).
const PKCE: &str = "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";

/// The path of an authorization request for a code.
fn authorize_path(client_id: &str, redirect: &str, scope: &str, extra: &str) -> String {
    format!(
        "/{DOMAIN}/oauth2/v2.0/authorize?client_id={client_id}&response_type=code&redirect_uri={}&scope={}&state=s1{extra}",
        keyward_app::url_encode(redirect),
        keyward_app::url_encode(scope)
    )
}

/// An authorization request of `client_id` for `scope` in `browser`, signing in as `upn` if the
/// browser is not signed in yet: the page or redirect that follows.
async fn authorize_as(
    browser: &mut keyward_testkit::browser::Browser,
    client_id: &str,
    redirect: &str,
    scope: &str,
    upn: &str,
    extra: &str,
) -> keyward_testkit::browser::Page {
    let page = browser.get(&authorize_path(client_id, redirect, scope, extra)).await;
    if page.title() != "Sign in" {
        return page;
    }
    let page = browser.submit(&page, "username", &[("username", upn)], &[]).await;
    browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await
}

/// A newly registered application gets no code for a user until the user consents (or an
/// administrator consented for everyone); permissions beyond the low-risk ones need an
/// administrator; removing the grant stops new tokens; the tenant can turn user consent off.
async fn codes_only_after_consent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("adele", "Adele Vance").await;
    let grace = app.create_user("grace", "Grace Taylor").await;
    let adele_upn = format!("adele@{DOMAIN}");
    let grace_upn = format!("grace@{DOMAIN}");
    let redirect = "https://phish.example/callback";
    let created = app
        .post("/v1.0/applications", &json!({"displayName": "Totally Legit App", "web": {"redirectUris": [redirect]}}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let client_id = created.body["appId"].as_str().expect("appId").to_owned();
    let object_id = created.body["id"].as_str().expect("id").to_owned();
    let secret = app.post(&format!("/v1.0/applications/{object_id}/addPassword"), &json!({})).await.body["secretText"]
        .as_str()
        .expect("secret")
        .to_owned();
    let principal = principal_of(&app, &client_id).await;

    // A permission only an administrator can grant: no page to consent on, no code.
    let mut browser = keyward_testkit::browser::Browser::new(&app.base_url);
    let refused = authorize_as(&mut browser, &client_id, redirect, "openid Directory.Read.All", &adele_upn, "").await;
    assert!(refused.text().contains("AADSTS90094"), "{} {}", refused.path, refused.text());
    assert!(!refused.path.starts_with(redirect));
    // Low-risk permissions: the consent page, and no code until the user accepts.
    let consent = authorize_as(&mut browser, &client_id, redirect, "openid profile User.Read", &adele_upn, "").await;
    assert_eq!(consent.title(), "Permissions requested", "{} {}", consent.path, consent.text());
    assert!(consent.text().contains("Totally Legit App") && consent.text().contains("User.Read"), "{}", consent.text());
    let cancelled = browser.submit(&consent, "consent", &[], &[("decision", "cancel")]).await;
    assert!(
        cancelled.path.starts_with(redirect) && cancelled.path.contains("error=access_denied"),
        "{}",
        cancelled.path
    );
    assert!(!cancelled.path.contains("code="));
    // A forged answer (tampered permission list) is refused.
    let consent = authorize_as(&mut browser, &client_id, redirect, "openid profile User.Read", &adele_upn, "").await;
    let forged = browser
        .submit(&consent, "consent", &[], &[("permissions", "openid profile User.Read Directory.ReadWrite.All")])
        .await;
    assert!(forged.text().contains("expired"), "{}", forged.text());
    let accepted = browser.submit(&consent, "consent", &[], &[]).await;
    assert!(accepted.path.starts_with(redirect) && accepted.path.contains("code="), "{}", accepted.path);
    // Consented once, the next request goes straight through; prompt=consent asks again.
    let again = authorize_as(&mut browser, &client_id, redirect, "openid profile User.Read", &adele_upn, "").await;
    assert!(again.path.contains("code="), "{}", again.path);
    let forced =
        authorize_as(&mut browser, &client_id, redirect, "openid profile User.Read", &adele_upn, "&prompt=consent")
            .await;
    assert_eq!(forced.title(), "Permissions requested");
    let audit =
        app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter=targetResources/any(t:t/id eq '{principal}')")).await;
    let activities = audit.activities();
    assert!(
        activities.contains(&"Consent to application") && activities.contains(&"Add delegated permission grant"),
        "{activities:?}"
    );

    // Grace has not consented: a silent request is answered consent_required.
    let mut other = keyward_testkit::browser::Browser::new(&app.base_url);
    // (signed in through keyward-cli, which needs no consent)
    let _ = authorize_as(&mut other, "keyward-cli", REDIRECT, "openid", &grace_upn, PKCE).await;
    let silent = authorize_as(&mut other, &client_id, redirect, "openid User.Read", &grace_upn, "&prompt=none").await;
    assert!(silent.path.contains("error=consent_required"), "{}", silent.path);

    // Admin consent for everyone, through Graph: the administrator-only permission too.
    let grants = "/v1.0/oauth2PermissionGrants";
    let body = json!({"clientId": principal, "consentType": "AllPrincipals", "resourceId": "00000003-0000-0000-c000-000000000000",
        "scope": "openid offline_access User.Read Directory.Read.All"});
    let adele_token = app.token_for(&adele_upn).await;
    let refused = app.send(reqwest::Method::POST, grants, Some(&adele_token), Some(&body), &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let bad = app.post(grants, &json!({"clientId": principal, "consentType": "AllPrincipals", "resourceId": "00000003-0000-0000-c000-000000000000", "scope": "Mail.Send"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    let granted = app.post(grants, &body).await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);
    let grant_id = granted.body["id"].as_str().expect("id").to_owned();
    assert_eq!(app.post(grants, &body).await.status, StatusCode::CONFLICT);
    // Two administrators granting the same thing at once: one grant, one conflict.
    let for_grace = json!({"clientId": principal, "consentType": "Principal", "principalId": grace["id"],
        "resourceId": "00000003-0000-0000-c000-000000000000",
        "scope": "openid"});
    let (one, two) = tokio::join!(app.post(grants, &for_grace), app.post(grants, &for_grace));
    let mut statuses = [one.status, two.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT], "{} / {}", one.text, two.text);
    let listed =
        app.get(&format!("{grants}?$filter=clientid eq '{principal}' and consentType eq 'AllPrincipals'")).await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1), "{}", listed.text);
    let unsupported = app.get(&format!("{grants}?$filter=scope eq 'x'")).await;
    assert_eq!(unsupported.body["error"]["code"], "Request_UnsupportedQuery", "{}", unsupported.text);
    let code_page =
        authorize_as(&mut other, &client_id, redirect, "openid offline_access Directory.Read.All", &grace_upn, "")
            .await;
    let code = code_page
        .path
        .split("code=")
        .nth(1)
        .and_then(|it| it.split('&').next())
        .expect("a code without asking")
        .to_owned();
    let redeem = |code: &str| {
        form(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("code", code),
            ("redirect_uri", redirect),
        ])
    };
    let tokens =
        app.app.token(DOMAIN, &redeem(&code), keyward_app::ClientAuth::default(), &meta()).await.expect("tokens");
    // The response names the permissions as they were asked for (a client's token cache looks
    // tokens up by those names).
    assert_eq!(tokens.scope, "Directory.Read.All openid offline_access");
    let refresh_token = tokens.refresh_token.expect("refresh token");
    let refresh_for = |scope: &str| {
        form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("refresh_token", &refresh_token),
            ("scope", scope),
        ])
    };
    // A permission nobody granted: refused, and the refresh token is not spent by the refusal.
    let refused =
        app.app.token(DOMAIN, &refresh_for("Group.Read.All"), keyward_app::ClientAuth::default(), &meta()).await;
    assert_eq!(oauth_error(refused), ("invalid_grant", vec![65001]));
    // Granted to the application for everyone, though not in this grant: served, as in Entra.
    let narrower = app
        .app
        .token(
            DOMAIN,
            &refresh_for("https://graph.microsoft.com/User.Read"),
            keyward_app::ClientAuth::default(),
            &meta(),
        )
        .await
        .expect("the same refresh token, after a refusal");
    assert_eq!(narrower.scope, "https://graph.microsoft.com/User.Read offline_access");
    let refresh_token = narrower.refresh_token.expect("rotated");
    // `.default` is what the application holds for the user, not every permission there is:
    // no consent page, and a token for exactly the granted permissions.
    let default_scope = "https://graph.microsoft.com/.default openid offline_access";
    let page = authorize_as(&mut other, &client_id, redirect, default_scope, &grace_upn, "").await;
    let code =
        crate::oidc::query_param(&page.path, "code").unwrap_or_else(|| panic!("a code: {} {}", page.path, page.text()));
    let tokens =
        app.app.token(DOMAIN, &redeem(&code), keyward_app::ClientAuth::default(), &meta()).await.expect("tokens");
    assert_eq!(tokens.scope, "Directory.Read.All User.Read https://graph.microsoft.com/.default openid offline_access");
    let claims = crate::oidc::claims(&tokens.access_token);
    assert_eq!(claims["scp"], "Directory.Read.All User.Read", "{claims}");
    // A client that sends that scope back on refresh (`.default` beside what it stood for) is
    // served, although a request naming both is refused.
    let echoed = form(&[
        ("grant_type", "refresh_token"),
        ("client_id", &client_id),
        ("client_secret", &secret),
        ("refresh_token", tokens.refresh_token.as_deref().expect("refresh token")),
        ("scope", &tokens.scope),
    ]);
    let again = app.app.token(DOMAIN, &echoed, keyward_app::ClientAuth::default(), &meta()).await.expect("echoed");
    assert_eq!(again.scope, tokens.scope);
    // A login_hint naming another account than the signed-in one: no silent code for the wrong user.
    let hinted = |hint: &str| format!("&prompt=none&login_hint={}", keyward_app::url_encode(hint));
    let silent =
        authorize_as(&mut other, &client_id, redirect, "openid User.Read", &grace_upn, &hinted(&adele_upn)).await;
    assert!(silent.path.contains("error=login_required") && !silent.path.contains("code="), "{}", silent.path);
    let same = authorize_as(
        &mut other,
        &client_id,
        redirect,
        "openid User.Read",
        &grace_upn,
        &hinted(&grace_upn.to_uppercase()),
    )
    .await;
    assert!(same.path.contains("code="), "{}", same.path);
    // Interactive: the sign-in page opens; signing in there as another account than the hint
    // names is the user's choice, and the request goes on with it (no loop back to the page).
    let interactive = format!("&login_hint={}", keyward_app::url_encode(&adele_upn));
    let chosen = authorize_as(&mut other, &client_id, redirect, "openid User.Read", &grace_upn, &interactive).await;
    assert!(chosen.path.contains("code="), "{} {}", chosen.path, chosen.text());
    // Removing the grant stops new tokens at once.
    assert_eq!(app.delete(&format!("{grants}/{grant_id}")).await.status, StatusCode::NO_CONTENT);
    let refresh = form(&[
        ("grant_type", "refresh_token"),
        ("client_id", &client_id),
        ("client_secret", &secret),
        ("refresh_token", &refresh_token),
    ]);
    let refused = app.app.token(DOMAIN, &refresh, keyward_app::ClientAuth::default(), &meta()).await;
    assert_eq!(oauth_error(refused), ("invalid_grant", vec![65001]));
    let _ = tokens;
    let removed = app
        .get("/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Remove delegated permission grant'")
        .await;
    assert_eq!(removed.body["value"].as_array().map(Vec::len), Some(1), "{}", removed.text);

    // The tenant turns user consent off: even low-risk permissions need an administrator.
    let policy = "/v1.0/policies/authorizationPolicy";
    assert_eq!(
        app.get(policy).await.body["defaultUserRolePermissions"]["permissionGrantPoliciesAssigned"],
        json!(["ManagePermissionGrantsForSelf.microsoft-user-default-low"])
    );
    let unknown = app.patch(policy, &json!({"defaultUserRolePermissions": {"permissionGrantPoliciesAssigned": ["ManagePermissionGrantsForSelf.custom"]}})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text);
    let off = app.patch(policy, &json!({"defaultUserRolePermissions": {"permissionGrantPoliciesAssigned": []}})).await;
    assert_eq!(off.status, StatusCode::NO_CONTENT, "{}", off.text);
    let blocked = authorize_as(&mut other, &client_id, redirect, "openid email", &grace_upn, "").await;
    assert!(blocked.text().contains("AADSTS90094"), "{}", blocked.text());
    let _ = grace;
}

/// What a sign-in to an application reads of its consent (`.default`, the consent check, a
/// consent extending a grant): the application's grant for everyone and the signing-in user's
/// own, found by the grants' key, never another user's grant or another application's.
async fn a_users_consent_lookup_sees_only_their_grants_and_everyones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut users = Vec::new();
    for (alias, name) in [("adele", "Adele Vance"), ("grace", "Grace Taylor"), ("megan", "Megan Bowen")] {
        let user = app.create_user(alias, name).await;
        users.push(keyward_core::ids::ObjectId::parse(user["id"].as_str().expect("id")).expect("object id"));
    }
    let mut clients = Vec::new();
    for name in ["Expenses", "Travel"] {
        let created = app.post("/v1.0/applications", &json!({"displayName": name})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let principal = principal_of(&app, created.body["appId"].as_str().expect("appId")).await;
        clients.push(keyward_core::ids::ObjectId::parse(&principal).expect("object id"));
    }
    let graph = "00000003-0000-0000-c000-000000000000";
    let grant = |client: usize, user: Option<usize>, scope: &str| {
        let client = clients[client].as_str();
        let body = match user {
            None => json!({"clientId": client, "consentType": "AllPrincipals", "resourceId": graph, "scope": scope}),
            Some(user) => json!({"clientId": client, "consentType": "Principal",
                "principalId": users[user].as_str(), "resourceId": graph, "scope": scope}),
        };
        let app = &app;
        async move {
            let granted = app.post("/v1.0/oauth2PermissionGrants", &body).await;
            assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);
            granted.body["id"].as_str().expect("id").to_owned()
        }
    };
    let everyone = grant(0, None, "openid").await;
    let adele = grant(0, Some(0), "User.Read").await;
    let grace = grant(0, Some(1), "Directory.Read.All").await;
    let adele_travel = grant(1, Some(0), "Group.Read.All").await;
    let tenant = app.app.find_tenant(DOMAIN).await.expect("tenant").expect("tenant");
    let store = app.app.store();
    // Through each kind of transaction: a sign-in reads it in a short read (on SQLite, the
    // request's own connection), a consent in a write, an administrator's listing in a read.
    for kind in ["read", "short read", "write"] {
        let mut tx = match kind {
            "read" => store.read().await,
            "short read" => store.read_short().await,
            _ => store.write().await,
        }
        .expect("transaction");
        let mut found = async |client: usize, user: Option<usize>| {
            let grants = tx
                .permission_grants_for(&tenant.id, &clients[client], user.map(|it| &users[it]))
                .await
                .expect("grants");
            let mut ids = grants.into_iter().map(|it| it.id).collect::<Vec<_>>();
            ids.sort();
            ids
        };
        let sorted = |mut ids: Vec<&String>| {
            ids.sort();
            ids.into_iter().cloned().collect::<Vec<_>>()
        };
        assert_eq!(found(0, Some(0)).await, sorted(vec![&everyone, &adele]), "{kind}");
        assert_eq!(found(0, Some(1)).await, sorted(vec![&everyone, &grace]), "{kind}");
        assert_eq!(found(0, Some(2)).await, vec![everyone.clone()], "{kind}: Megan has no grant of her own");
        assert_eq!(found(0, None).await, vec![everyone.clone()], "{kind}");
        assert_eq!(found(1, Some(0)).await, vec![adele_travel.clone()], "{kind}");
        assert_eq!(found(1, Some(1)).await, Vec::<String>::new(), "{kind}");
        assert_eq!(found(1, None).await, Vec::<String>::new(), "{kind}");
    }
}

/// Consent for every user to `openid offline_access User.Read` by client `principal`.
fn consent_for_all(principal: &str) -> Value {
    json!({"clientId": principal, "consentType": "AllPrincipals",
        "resourceId": "00000003-0000-0000-c000-000000000000", "scope": "openid offline_access User.Read"})
}

/// A registered application with a client secret, its users' consent given by an administrator:
/// its appId, object id, secret and service principal's id.
async fn consented_application(app: &TestApp, name: &str) -> (String, String, String, String) {
    let created = app.post("/v1.0/applications", &json!({"displayName": name})).await;
    let client_id = created.body["appId"].as_str().expect("appId").to_owned();
    let object_id = created.body["id"].as_str().expect("id").to_owned();
    let secret = app.post(&format!("/v1.0/applications/{object_id}/addPassword"), &json!({})).await.body["secretText"]
        .as_str()
        .expect("secret")
        .to_owned();
    let principal = principal_of(app, &client_id).await;
    let granted = app.post("/v1.0/oauth2PermissionGrants", &consent_for_all(&principal)).await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);
    (client_id, object_id, secret, principal)
}

/// RFC 7009 §2.1: a confidential client authenticates to revoke; another client's revocation of
/// a token changes nothing.
async fn revocation_authenticates_confidential_clients(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("adele", "Adele Vance").await;
    let upn = format!("adele@{DOMAIN}");
    let (client_id, _, secret, _) = consented_application(&app, "Daemon with users").await;
    let node = password_node(&app).await;
    let grant = confidential_password_grant(&client_id, &secret, &upn);
    let tokens = node.token(DOMAIN, &grant, keyward_app::ClientAuth::default(), &meta()).await.expect("tokens");
    let refresh_token = tokens.refresh_token.expect("refresh");
    let revoke = format!("{}/{DOMAIN}/oauth2/v2.0/revoke", app.base_url);
    let post = |fields: Vec<(&'static str, String)>| {
        let client = app.client.clone();
        let revoke = revoke.clone();
        async move {
            let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
            let response = client
                .post(revoke)
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("revoke");
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = post(vec![("token", refresh_token.clone()), ("client_id", client_id.clone())]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{body}");
    let (status, _) = post(vec![("token", refresh_token.clone()), ("client_id", "keyward-cli".into())]).await;
    assert_eq!(status, StatusCode::OK, "another client is answered like any unknown token");
    let refresh = |token: &str| {
        form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("refresh_token", token),
        ])
    };
    let rotated = node
        .token(DOMAIN, &refresh(&refresh_token), keyward_app::ClientAuth::default(), &meta())
        .await
        .expect("not revoked by another client")
        .refresh_token
        .expect("rotated");
    let (status, _) =
        post(vec![("token", rotated.clone()), ("client_id", client_id.clone()), ("client_secret", secret.clone())])
            .await;
    assert_eq!(status, StatusCode::OK);
    let refused = node.token(DOMAIN, &refresh(&rotated), keyward_app::ClientAuth::default(), &meta()).await;
    assert_eq!(oauth_error(refused).0, "invalid_grant");
}

/// A promotion and a target-sensitive decision never interleave: while a transaction holding the
/// role-change lock makes Grace a Global Administrator, an Authentication Administrator's pass
/// for her waits and is then refused; and a real role assignment waits while a decision holds
/// the lock. Decisions do not wait for each other: a pass is created while another transaction
/// holds the lock for a decision. (On SQLite writers are serial anyway; on PostgreSQL the
/// advisory lock does it, exclusive for changes and shared for decisions.)
async fn no_promotion_between_decision_and_commit(backend: Backend) {
    use keyward_core::authz::roles;
    let app = TestApp::spawn(backend).await;
    let grace = app.create_user("grace", "Grace Taylor").await;
    let grace_id = grace["id"].as_str().expect("id").to_owned();
    let desk = app.create_user("desk", "Desk Agent").await;
    app.assign_role(desk["id"].as_str().expect("id"), roles::AUTHENTICATION_ADMINISTRATOR, "/").await;
    let desk_token = app.token_for(&format!("desk@{DOMAIN}")).await;
    let tenant = app.app.find_tenant(DOMAIN).await.expect("tenant").expect("tenant").id;
    let store = keyward_store::open(&app.database_url).await.expect("store");

    // A promotion in flight: the pass request waits for it, then sees an administrator.
    let mut promotion = store.write().await.expect("tx");
    promotion.lock_role_changes(&tenant).await.expect("lock");
    promotion
        .insert_role_assignment(&keyward_store::RoleAssignment {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: tenant.clone(),
            principal_id: keyward_core::ids::ObjectId::parse(&grace_id).expect("id"),
            role_definition_id: roles::GLOBAL_ADMINISTRATOR.to_owned(),
            directory_scope_id: "/".into(),
            created: app.app.now(),
            start: None,
            end: None,
            activated_using: None,
        })
        .await
        .expect("assignment");
    let pass_path = format!("/v1.0/users/{grace_id}/authentication/temporaryAccessPassMethods");
    let request = app.send_in_background(Method::POST, &pass_path, &desk_token, json!({}));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!request.is_finished(), "the decision must wait for the promotion in flight");
    promotion.commit().await.expect("commit");
    assert_eq!(request.await.expect("task").status, StatusCode::FORBIDDEN, "decided on the committed promotion");

    // A decision in flight: a real role assignment waits for it.
    let adele = app.create_user("adele", "Adele Vance").await["id"].as_str().expect("id").to_owned();
    let mut decision = store.write().await.expect("tx");
    decision.share_role_changes(&tenant).await.expect("lock");
    let body =
        json!({"principalId": adele, "roleDefinitionId": roles::HELPDESK_ADMINISTRATOR, "directoryScopeId": "/"});
    let assign =
        app.send_in_background(Method::POST, "/v1.0/roleManagement/directory/roleAssignments", &app.admin_token, body);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!assign.is_finished(), "the promotion must wait for the decision in flight");
    decision.commit().await.expect("commit");
    assert_eq!(assign.await.expect("task").status, StatusCode::CREATED);

    // A decision in flight (a read transaction, which holds no SQLite lock): another decision,
    // a pass for Lynne, does not wait for it.
    let lynne = app.create_user("lynne", "Lynne Robbins").await["id"].as_str().expect("id").to_owned();
    let mut decision = store.read().await.expect("tx");
    decision.share_role_changes(&tenant).await.expect("lock");
    let pass = app
        .client
        .post(format!("{}/v1.0/users/{lynne}/authentication/temporaryAccessPassMethods", app.base_url))
        .bearer_auth(&desk_token)
        .json(&json!({}))
        .send();
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), pass)
        .await
        .expect("a decision must not wait for another decision")
        .expect("send")
        .status();
    assert_eq!(status, StatusCode::CREATED);
    decision.commit().await.expect("commit");
    store.close().await;
}

/// A disable in flight is not undone by a service-desk write on the same user that read the user
/// before it committed: the write takes the role-change lock (shared) before reading the user,
/// so it waits for the disable (PostgreSQL: the advisory lock; SQLite: one writer) and writes
/// back the disabled user.
async fn a_disable_in_flight_is_not_undone_by_a_concurrent_write(backend: Backend) {
    use keyward_core::authz::roles;
    let app = TestApp::spawn(backend).await;
    let ruth = app.create_user("ruth", "Ruth Moss").await["id"].as_str().expect("id").to_owned();
    let ruth_id = keyward_core::ids::ObjectId::parse(&ruth).expect("id");
    let desk = app.create_user("desk", "Desk Agent").await;
    app.assign_role(desk["id"].as_str().expect("id"), roles::HELPDESK_ADMINISTRATOR, "/").await;
    let desk_token = app.token_for(&format!("desk@{DOMAIN}")).await;
    let tenant = app.app.find_tenant(DOMAIN).await.expect("tenant").expect("tenant").id;
    let store = keyward_store::open(&app.database_url).await.expect("store");

    let mut disable = store.write().await.expect("tx");
    disable.lock_role_changes(&tenant).await.expect("lock");
    let mut user = disable.get_user(&tenant, &ruth_id).await.expect("read").expect("ruth");
    user.account_enabled = false;
    disable.update_user(&user).await.expect("disable");
    let revoke = {
        let (client, url, token) =
            (app.client.clone(), format!("{}/v1.0/users/{ruth}/revokeSignInSessions", app.base_url), desk_token);
        tokio::spawn(async move { client.post(url).bearer_auth(token).json(&json!({})).send().await.expect("send") })
    };
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!revoke.is_finished(), "the write must wait for the disable in flight");
    disable.commit().await.expect("commit");
    let answer = revoke.await.expect("task");
    assert_eq!(answer.status(), StatusCode::OK);
    let after = app.get(&format!("/v1.0/users/{ruth}?$select=accountEnabled")).await;
    assert_eq!(after.body["accountEnabled"], false, "the disable holds: {}", after.text);

    // Two writes that each write the user back whole: a revocation in flight (the row read
    // locked) is not undone by a rename that read the user before it committed.
    let mut revoke = store.write().await.expect("tx");
    let mut user = revoke.get_user_for_update(&tenant, &ruth_id).await.expect("read").expect("ruth");
    let cut_off = app.app.now() + time::Duration::seconds(30);
    let cut_off = cut_off.replace_microsecond(cut_off.microsecond()).expect("stored in microseconds");
    user.sign_in_sessions_valid_from = cut_off;
    revoke.update_user(&user).await.expect("revoke");
    let rename = app.send_in_background(
        Method::PATCH,
        &format!("/v1.0/users/{ruth}"),
        &app.admin_token,
        json!({"displayName": "Ruth Moss-Hale"}),
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!rename.is_finished(), "the rename must wait for the revocation in flight");
    revoke.commit().await.expect("commit");
    assert_eq!(rename.await.expect("task").status, StatusCode::NO_CONTENT);
    let mut check = store.read().await.expect("tx");
    let user = check.get_user(&tenant, &ruth_id).await.expect("read").expect("ruth");
    assert_eq!(user.display_name, "Ruth Moss-Hale");
    assert_eq!(user.sign_in_sessions_valid_from, cut_off, "the revocation holds");
    drop(check);

    // The user's own sign-in goes as far as its last step beside a write holding the user's row
    // (its new rows reference the user: PostgreSQL `FOR NO KEY UPDATE` lets them be written),
    // and that step, which reads the row for update to see a revocation in flight, waits for
    // the write, then completes (SQLite's open write transaction would hold up any writer).
    if backend == Backend::Postgres {
        let kim = app.create_user("kim", "Kim Abercrombie").await["id"].as_str().expect("id").to_owned();
        let kim = keyward_core::ids::ObjectId::parse(&kim).expect("id");
        let mut held = store.write().await.expect("tx");
        held.get_user_for_update(&tenant, &kim).await.expect("read").expect("kim");
        let mut browser = keyward_testkit::browser::Browser::new(&app.base_url);
        let page = browser.get(&format!("/{DOMAIN}/login")).await;
        let page = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            browser.submit(&page, "username", &[("username", &format!("kim@{DOMAIN}"))], &[]),
        )
        .await
        .expect("the user name step does not wait for a write holding the user's row");
        assert_eq!(page.title(), "Enter password", "{}", page.text());
        let signing_in = tokio::spawn(async move {
            browser.submit(&page, "password", &[("current-password", "Tq7-harbour-Lantern-92!")], &[]).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert!(!signing_in.is_finished(), "the last step waits for the write holding the user's row");
        held.commit().await.expect("commit");
        let page = signing_in.await.expect("task");
        assert_eq!(page.title(), "My account", "{}", page.text());
    }
    store.close().await;
}

/// The number of sign-in session rows in the database.
async fn browser_sessions(url: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM browser_sessions";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("open");
        sqlx::query_scalar(sql).fetch_one(&pool).await.expect("count")
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("open");
        sqlx::query_scalar(sql).fetch_one(&pool).await.expect("count")
    }
}

/// Abuse limits: per-address limits on the sign-in pages, the token and device-code endpoints
/// (429 with Retry-After); a per-account limit on password attempts from anywhere; a full
/// hashing queue answers 503; a burst of sign-in page loads writes nothing; bodies are capped.
async fn abuse_limits(backend: Backend) {
    let app = TestApp::spawn_configured(backend, |config| {
        config.limits = keyward_app::Limits { per_address: 12, per_account: 3, hash_queue: 64 };
    })
    .await;
    app.create_user("adele", "Adele Vance").await;
    let upn = format!("adele@{DOMAIN}");

    // Page loads write nothing until the first form is posted.
    let before = browser_sessions(&app.database_url).await;
    let mut browser = keyward_testkit::browser::Browser::new(&app.base_url);
    let mut page = browser.get(&format!("/{DOMAIN}/login")).await;
    for _ in 0..4 {
        page = browser.get(&format!("/{DOMAIN}/login?return_to=%2Fx")).await;
        assert_eq!(page.title(), "Sign in");
    }
    assert_eq!(browser_sessions(&app.database_url).await, before, "GETs of the sign-in page wrote rows");
    // A form from a page load starts the sign-in (and keeps its return address).
    let page = browser.submit(&page, "username", &[("username", &upn)], &[]).await;
    assert_eq!(page.title(), "Enter password", "{}", page.text());
    assert_eq!(browser_sessions(&app.database_url).await, before + 1);

    // Per account: the fourth attempt in a minute is refused before it is checked, from any
    // address (here: the app directly, without an address).
    let checked = app.app.password_verifications();
    let mut last = page;
    for attempt in 0..3 {
        last = browser.submit(&last, "password", &[("current-password", &format!("guess-{attempt}"))], &[]).await;
        assert_eq!(last.status, StatusCode::OK, "{}", last.text());
    }
    let throttled = browser.submit(&last, "password", &[("current-password", PASSWORD)], &[]).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS, "{}", throttled.text());
    assert_eq!(app.app.password_verifications() - checked, 3);

    // Per address: the sign-in pages (the posts above and the loads count), then 429 with Retry-After.
    let mut response = app.client.get(format!("{}/{DOMAIN}/login", app.base_url)).send().await.expect("get");
    for _ in 0..3 {
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        response = app.client.get(format!("{}/{DOMAIN}/login", app.base_url)).send().await.expect("get");
    }
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"].to_str().expect("text").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    // The token and device-code endpoints count separately, each with its own budget.
    for path in ["token", "devicecode"] {
        let url = format!("{}/{DOMAIN}/oauth2/v2.0/{path}", app.base_url);
        let mut last = StatusCode::OK;
        for _ in 0..13 {
            let response = app
                .client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("client_id=keyward-cli&scope=openid")
                .send()
                .await
                .expect("post");
            last = response.status();
            if last == StatusCode::TOO_MANY_REQUESTS {
                assert!(response.headers().contains_key("retry-after"));
                let body: Value = response.json().await.expect("json");
                assert_eq!(body["error"], "temporarily_unavailable", "{body}");
            }
        }
        assert_eq!(last, StatusCode::TOO_MANY_REQUESTS, "{path}");
    }

    // Bodies are capped per surface, each cap under axum's own default of 2 MB (so the cap
    // refusing them is Keyward's): a 1.5 MiB Graph body.
    let big = json!({"displayName": "x".repeat(3 << 19)});
    let reply = app.post("/v1.0/groups", &big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", &reply.text[..reply.text.len().min(300)]);
    assert_eq!(reply.body["error"]["code"], "RequestEntityTooLarge");
    let other = keyward_testkit::TestApp::spawn(backend).await;
    // Requests over 64 KiB to the endpoints applications call are refused in the token
    // endpoint's own error form (an OAuth library reads `error` from it), with the caller's
    // correlation id; a sign-in form over 16 KiB, posted by a browser, in plain text.
    let oversized = format!("client_id=keyward-cli&x={}", "y".repeat(100 << 10));
    let logged_before = other.get("/beta/auditLogs/signIns?$top=50").await;
    assert_eq!(logged_before.status, StatusCode::OK, "{}", logged_before.text);
    for path in ["oauth2/v2.0/token", "oauth2/v2.0/devicecode", "oauth2/v2.0/revoke"] {
        let correlation = "0b0e5f0e-4d2a-4c3b-9a51-6f1c2d3e4f50";
        let response = other
            .client
            .post(format!("{}/{DOMAIN}/{path}", other.base_url))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("client-request-id", correlation)
            .body(oversized.clone())
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert_eq!(response.headers()["connection"], "close", "{path}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
        let body: Value = response.json().await.expect("an OAuth error in JSON");
        assert_eq!(body["error"], "invalid_request", "{path}: {body}");
        assert_eq!(body["error_description"], "The request body is larger than 65536 bytes.", "{path}: {body}");
        assert_eq!(body["correlation_id"], correlation, "{path}: {body}");
    }
    let response = other
        .client
        .post(format!("{}/oidc/userinfo", other.base_url))
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(oversized)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.expect("an OAuth error in JSON");
    assert_eq!(body["error"], "invalid_request", "{body}");
    let response = other
        .client
        .post(format!("{}/{DOMAIN}/login", other.base_url))
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("username={}", "y".repeat(20 << 10)))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.text().await.expect("text"), "The request body is larger than 16384 bytes.\n");
    // Nothing reached the token endpoint: no sign-in was logged.
    let logged = other.get("/beta/auditLogs/signIns?$top=50").await;
    assert_eq!(logged.body["value"], logged_before.body["value"], "{}", logged.text);
}

/// A full hashing queue answers 503 with Retry-After instead of queueing without end (a node
/// whose queue holds nothing).
async fn a_full_hash_queue_answers_503(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let node = keyward_testkit::node_with(&app.database_url, app.clock.clone(), &app.base_url, |config| {
        config.limits = keyward_app::Limits { hash_queue: 0, ..keyward_app::Limits::default() };
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let config = keyward_http::ServeConfig::new(listener, None);
    let server = tokio::spawn(keyward_http::serve(keyward_http::router(node), config, std::future::pending()));
    let mut browser = keyward_testkit::browser::Browser::new(&base);
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    let page = browser.submit(&page, "username", &[("username", ADMIN_UPN)], &[]).await;
    let busy = browser.submit(&page, "password", &[("current-password", ADMIN_PASSWORD)], &[]).await;
    assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE, "{}", busy.text());
    assert!(busy.text().contains("busy"), "{}", busy.text());
    server.abort();
}

/// Slow-loris: a client that never finishes its headers, or opens a connection and sends
/// nothing, is disconnected after the header-read timeout.
async fn slow_clients_are_disconnected(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn(backend).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    let mut config = keyward_http::ServeConfig::new(listener, None);
    config.header_read_timeout = std::time::Duration::from_millis(500);
    let server =
        tokio::spawn(keyward_http::serve(keyward_http::router(app.app.clone()), config, std::future::pending()));
    for partial in [&b"GET /healthz HTTP/1.1\r\nHost: x\r\n"[..], &b""[..]] {
        let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
        stream.write_all(partial).await.expect("write");
        let mut buffer = [0_u8; 256];
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer)).await;
        let closed = matches!(read, Ok(Ok(0)) | Ok(Err(_)))
            || matches!(read, Ok(Ok(n)) if String::from_utf8_lossy(&buffer[..n]).contains("408"));
        assert!(closed, "the connection stayed open: {read:?}");
    }
    // A keep-alive connection idle after a request is closed too.
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut buffer = vec![0_u8; 4096];
    let n = stream.read(&mut buffer).await.expect("response");
    assert!(
        String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buffer[..n])
    );
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "an idle keep-alive connection stayed open: {read:?}");
    server.abort();
}

/// PostgreSQL: waits (up to 10 s) until some session of the test database waits for a lock,
/// so a test knows a request it started is blocked where it expects rather than not yet
/// there. Panics on time-out.
/// A change to a group or an application writes it back whole; one in flight (its row read
/// locked) is not undone by a concurrent PATCH of another property that read it before it
/// committed (PostgreSQL: the PATCH reads the row locked; SQLite's writers are serial).
async fn a_group_or_application_change_in_flight_is_not_undone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.app.find_tenant(DOMAIN).await.expect("tenant").expect("tenant").id;
    let store = keyward_store::open(&app.database_url).await.expect("store");
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Field staff", "mailEnabled": false, "mailNickname": "field", "securityEnabled": true}),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let group = group.body["id"].as_str().expect("id").to_owned();
    let group_id = keyward_core::ids::ObjectId::parse(&group).expect("id");
    let application = app.post("/v1.0/applications", &json!({"displayName": "Payroll"})).await;
    assert_eq!(application.status, StatusCode::CREATED, "{}", application.text);
    let application = application.body["id"].as_str().expect("id").to_owned();
    let application_id = keyward_core::ids::ObjectId::parse(&application).expect("id");

    let mut held = store.write().await.expect("tx");
    let mut row = held.get_group_for_update(&tenant, &group_id).await.expect("read").expect("group");
    row.description = Some("Staff in the field".into());
    held.update_group(&row).await.expect("describe");
    let rename = app.send_in_background(
        Method::PATCH,
        &format!("/v1.0/groups/{group}"),
        &app.admin_token,
        json!({"displayName": "Field team"}),
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!rename.is_finished(), "the rename must wait for the change in flight");
    held.commit().await.expect("commit");
    assert_eq!(rename.await.expect("task").status, StatusCode::NO_CONTENT);
    let after = app.get(&format!("/v1.0/groups/{group}?$select=displayName,description")).await;
    assert_eq!(after.body["displayName"], "Field team", "{}", after.text);
    assert_eq!(after.body["description"], "Staff in the field", "the change in flight holds: {}", after.text);

    let mut held = store.write().await.expect("tx");
    let mut row = held.get_application_for_update(&tenant, &application_id).await.expect("read").expect("application");
    row.is_fallback_public_client = true;
    held.update_application(&row).await.expect("make public");
    let rename = app.send_in_background(
        Method::PATCH,
        &format!("/v1.0/applications/{application}"),
        &app.admin_token,
        json!({"displayName": "Payroll (EU)"}),
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!rename.is_finished(), "the rename must wait for the change in flight");
    held.commit().await.expect("commit");
    assert_eq!(rename.await.expect("task").status, StatusCode::NO_CONTENT);
    let after = app.get(&format!("/v1.0/applications/{application}")).await;
    assert_eq!(after.body["displayName"], "Payroll (EU)", "{}", after.text);
    assert_eq!(after.body["isFallbackPublicClient"], true, "the change in flight holds: {}", after.text);
    store.close().await;
}

/// PostgreSQL: a change that also records something early (a deleted user's ended role
/// assignments) still takes the tenant's audit chain head last. A concurrent change that holds a
/// row the deletion must change (the user's group membership, as a removal from the group in
/// flight holds it) and then writes its own audit record must not find the head held by the
/// deletion, which waits for that row: the two would wait for each other until PostgreSQL ended
/// one of them (a `500`).
async fn a_change_recording_early_takes_the_audit_chain_head_last(backend: Backend) {
    use keyward_core::authz::roles;
    use sqlx::Connection;
    if backend == Backend::Sqlite {
        // SQLite's writers take turns for the whole transaction: no row is held by another.
        return;
    }
    let app = TestApp::spawn(backend).await;
    let lee = app.create_user("lee", "Lee Gu").await["id"].as_str().expect("id").to_owned();
    app.assign_role(&lee, roles::HELPDESK_ADMINISTRATOR, "/").await;
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Field staff", "mailEnabled": false,
        "mailNickname": "field", "securityEnabled": true}),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let group = group.body["id"].as_str().expect("id").to_owned();
    let added = app
        .post(
            &format!("/v1.0/groups/{group}/members/$ref"),
            &json!({"@odata.id": format!("{}/v1.0/directoryObjects/{lee}", app.base_url)}),
        )
        .await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    let tenant = app.app.find_tenant(DOMAIN).await.expect("tenant").expect("tenant").id;

    let mut other = sqlx::PgConnection::connect(&app.database_url).await.expect("open PostgreSQL");
    let mut removal = other.begin().await.expect("begin");
    sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND member_id = $2")
        .bind(&group)
        .bind(&lee)
        .execute(&mut *removal)
        .await
        .expect("hold the membership");
    let deleting = {
        let (client, url, token) =
            (app.client.clone(), format!("{}/v1.0/users/{lee}", app.base_url), app.admin_token.clone());
        tokio::spawn(async move { client.delete(url).bearer_auth(token).send().await.expect("send").status() })
    };
    until_a_session_waits_for_a_lock(&app).await;
    // The removal's own audit record takes the head next.
    let head = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        sqlx::query("SELECT 1 FROM audit_chain_heads WHERE tenant_id = $1 FOR UPDATE")
            .bind(tenant.as_str())
            .execute(&mut *removal),
    )
    .await;
    assert!(
        matches!(head, Ok(Ok(_))),
        "the deletion held the audit chain head while it waited for the membership: {head:?}"
    );
    removal.rollback().await.expect("rollback");
    assert_eq!(deleting.await.expect("task"), StatusCode::NO_CONTENT, "the deletion completes once the row is free");
    let records = app.audit_for(&lee).await;
    assert!(
        records.iter().any(|it| it.activity_display_name == "Remove member from role"),
        "the ended assignment is recorded: {:?}",
        records.iter().map(|it| &it.activity_display_name).collect::<Vec<_>>()
    );
    other.close().await.expect("close");
}

/// A PostgreSQL transaction of its own holding a user's row as a write in flight does
/// (`FOR NO KEY UPDATE`), until released or committed.
pub(crate) struct HeldRow(sqlx::PgConnection);

impl HeldRow {
    pub(crate) async fn user(app: &TestApp, id: &str) -> HeldRow {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&app.database_url).await.expect("open PostgreSQL");
        sqlx::query("BEGIN").execute(&mut conn).await.expect("begin");
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE")
            .bind(id)
            .execute(&mut conn)
            .await
            .expect("hold the user's row");
        HeldRow(conn)
    }

    /// The holding transaction's connection, for more of its statements.
    pub(crate) fn connection(&mut self) -> &mut sqlx::PgConnection {
        &mut self.0
    }

    /// Ends the transaction without changing anything.
    pub(crate) async fn release(self) {
        self.end("ROLLBACK").await;
    }

    pub(crate) async fn commit(self) {
        self.end("COMMIT").await;
    }

    async fn end(mut self, how: &'static str) {
        use sqlx::Connection;
        sqlx::query(how).execute(&mut self.0).await.expect("end the transaction");
        self.0.close().await.expect("close");
    }
}

pub(crate) async fn until_a_session_waits_for_a_lock(app: &TestApp) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&app.database_url).await.expect("open PostgreSQL");
    until_sessions(
        &mut conn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        |waiting| waiting > 0,
        "a session waiting for a lock",
    )
    .await;
    conn.close().await.expect("close");
}

/// PostgreSQL: the count `count_sql` (a `SELECT count(*)`, over `pg_stat_activity` say) answers
/// on `conn`.
pub(crate) async fn sessions(conn: &mut sqlx::PgConnection, count_sql: &'static str) -> i64 {
    sqlx::query_scalar(count_sql).fetch_one(conn).await.expect("count sessions")
}

/// PostgreSQL: asks [`sessions`] every 20 ms until `done` holds for its answer, for up to 10 s;
/// panics naming what it waited for (`what`) on time-out.
pub(crate) async fn until_sessions(
    conn: &mut sqlx::PgConnection,
    count_sql: &'static str,
    done: impl Fn(i64) -> bool,
    what: &str,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done(sessions(conn, count_sql).await) {
        assert!(std::time::Instant::now() < deadline, "no {what} within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Reset MFA and a code being entered take their locks in one order (the user's sign-in state,
/// then the authenticator app's row): while a sign-in holds Adele's state, a reset waits for it
/// before touching her methods, and the sign-in's write of the code's step goes through. In the
/// opposite order the two would wait for each other (PostgreSQL ends one with a deadlock error).
/// PostgreSQL: SQLite's writers are serial.
async fn reset_mfa_and_a_code_being_entered_take_locks_in_one_order(backend: Backend) {
    use keyward_core::ids::ObjectId;
    use std::time::Duration;
    if backend == Backend::Sqlite {
        return;
    }
    let app = TestApp::spawn(backend).await;
    let adele = app.create_user("adele", "Adele Vance").await;
    let adele = ObjectId::parse(adele["id"].as_str().expect("id")).expect("id");
    let store = app.app.store();
    let method = keyward_store::SoftwareOathMethod {
        id: ObjectId::parse("3c9d0e1f-2a3b-4c5d-8e6f-7a8b9c0d1e2f").expect("id"),
        user_id: adele.clone(),
        sealed_secret: vec![7; 48],
        created: app.app.now(),
        last_used_step: 0,
    };
    let mut tx = store.write().await.expect("tx");
    tx.insert_software_oath_method(&method).await.expect("method");
    tx.commit().await.expect("commit");

    // A sign-in holds Adele's state, as the code entry does before it checks the code.
    let mut sign_in = store.write().await.expect("tx");
    sign_in.lock_user_sign_in_state(&adele).await.expect("state");
    let reset_path = format!("/v1.0/users/{adele}/authentication/resetMfa");
    let reset = app.send_in_background(Method::POST, &reset_path, &app.admin_token, json!({}));
    until_a_session_waits_for_a_lock(&app).await;
    assert!(!reset.is_finished(), "the reset waits for the sign-in holding the state");
    let used = tokio::time::timeout(Duration::from_secs(5), sign_in.use_software_oath_step(&method.id, 42))
        .await
        .expect("the code's step is written while the reset waits")
        .expect("no deadlock");
    assert!(used, "a new step");
    sign_in.commit().await.expect("commit");
    let reply = reset.await.expect("task");
    assert!(reply.status.is_success(), "{}: {}", reply.status, reply.text);
    let left = app.get(&format!("/v1.0/users/{adele}/authentication/softwareOathMethods")).await;
    assert_eq!(left.body["value"], json!([]), "the reset then removed the app: {}", left.text);
}

/// A deleted application is kept 30 days with its credentials and can be restored, as in Entra;
/// nothing it opened comes back with it: its service principal's roles and consent, and the
/// refresh tokens issued to it, are gone for good.
async fn deleted_applications_come_back_without_their_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_user("adele", "Adele Vance").await;
    let upn = format!("adele@{DOMAIN}");
    let (client_id, object_id, secret, principal) = consented_application(&app, "Kept app").await;
    app.assign_role(&principal, keyward_core::authz::roles::DIRECTORY_READERS, "/").await;
    let node = password_node(&app).await;
    let grant = confidential_password_grant(&client_id, &secret, &upn);
    let tokens = node.token(DOMAIN, &grant, keyward_app::ClientAuth::default(), &meta()).await.expect("tokens");
    let refresh_token = tokens.refresh_token.expect("refresh");
    let refresh = form(&[
        ("grant_type", "refresh_token"),
        ("client_id", &client_id),
        ("client_secret", &secret),
        ("refresh_token", &refresh_token),
    ]);

    // A device code started before the deletion (the application made a public client for it).
    let public = json!({"isFallbackPublicClient": true});
    assert_eq!(app.patch(&format!("/v1.0/applications/{object_id}"), &public).await.status, StatusCode::NO_CONTENT);
    let started = app
        .app
        .device_authorization(DOMAIN, &form(&[("client_id", &client_id), ("scope", "openid offline_access User.Read")]))
        .await
        .expect("device code");
    let poll = form(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("client_id", &client_id),
        ("device_code", &started.device_code),
    ]);
    let pending = app.app.token(DOMAIN, &poll, keyward_app::ClientAuth::default(), &meta()).await;
    assert_eq!(oauth_error(pending).0, "authorization_pending");

    let adele = app.token_for(&upn).await;
    let path = format!("/v1.0/applications/{object_id}");
    assert_eq!(app.as_user(&adele).delete(&path).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.delete(&path).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);
    let gone = app.get(&format!("/v1.0/servicePrincipals(appId='{client_id}')")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.text);
    let listed = app.get("/v1.0/directory/deletedItems/microsoft.graph.application").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let kept = &listed.body["value"][0];
    assert_eq!((&kept["id"], &kept["appId"]), (&json!(object_id), &json!(client_id)), "{}", listed.text);
    assert!(kept["deletedDateTime"].is_string() && kept["passwordCredentials"][0]["hint"].is_string(), "{kept}");
    assert_eq!(kept["passwordCredentials"][0]["secretText"], Value::Null, "a secret is never read back");
    let one = app.get(&format!("/v1.0/directory/deletedItems/{object_id}")).await;
    assert_eq!(one.body["@odata.type"], "#microsoft.graph.application", "{}", one.text);
    // A member reads deleted applications as they read live ones, but may not restore one.
    assert_eq!(
        app.as_user(&adele).get(&format!("/v1.0/directory/deletedItems/{object_id}")).await.status,
        StatusCode::OK
    );
    let refused =
        app.as_user(&adele).post(&format!("/v1.0/directory/deletedItems/{object_id}/restore"), &json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(node.token(DOMAIN, &refresh, keyward_app::ClientAuth::default(), &meta()).await.is_err());

    // Restored twice at once: one restore, the other finds nothing left.
    let restore_path = format!("/v1.0/directory/deletedItems/{object_id}/restore");
    let empty = json!({});
    let (one, two) = tokio::join!(app.post(&restore_path, &empty), app.post(&restore_path, &empty));
    let mut statuses = [one.status, two.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::NOT_FOUND], "{} / {}", one.text, two.text);
    let restored = if one.status == StatusCode::OK { one } else { two };
    assert_eq!(restored.body["@odata.type"], "#microsoft.graph.application");
    let back = app.get(&path).await;
    assert_eq!(back.body["passwordCredentials"].as_array().map(Vec::len), Some(1), "{}", back.text);
    assert_eq!(app.get("/v1.0/directory/deletedItems/microsoft.graph.application").await.body["value"], json!([]));
    let activities: Vec<(String, &str)> = app
        .audit_for(&object_id)
        .await
        .iter()
        .map(|it| (it.activity_display_name.clone(), it.result.as_str()))
        .collect();
    let expected = [("Restore application", "success"), ("Restore application", "failure")];
    assert_eq!(activities[..2], expected.map(|(name, result)| (name.to_owned(), result)), "{activities:?}");
    // Its service principal is made anew (as in Entra, a restore does not bring it back): no role,
    // no consent; and the old refresh token stays revoked even once consent is given again.
    let made = app.post("/v1.0/servicePrincipals", &json!({"appId": client_id})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let principal = keyward_testkit::id_of(&made.body);
    let roles =
        app.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{principal}'")).await;
    assert_eq!(roles.body["value"], json!([]), "{}", roles.text);
    assert_eq!(
        app.post("/v1.0/oauth2PermissionGrants", &consent_for_all(&principal)).await.status,
        StatusCode::CREATED
    );
    assert!(node.token(DOMAIN, &refresh, keyward_app::ClientAuth::default(), &meta()).await.is_err());
    // The restored secret works for new grants; the device code started before the deletion is
    // gone with it.
    assert!(node.token(DOMAIN, &grant, keyward_app::ClientAuth::default(), &meta()).await.is_ok());
    let forgotten = app.app.token(DOMAIN, &poll, keyward_app::ClientAuth::default(), &meta()).await;
    assert_eq!(oauth_error(forgotten).0, "invalid_grant");

    // Deleted again. A service principal made for its appId meanwhile and given a role makes the
    // deleted application privileged: one who may delete applications but not assign roles may
    // not bring its credentials back onto that principal.
    assert_eq!(app.delete(&path).await.status, StatusCode::NO_CONTENT);
    let role = app
        .post(
            "/v1.0/roleManagement/directory/roleDefinitions",
            &json!({"displayName": "Application cleaner", "isEnabled": true,
                "rolePermissions": [{"allowedResourceActions": [
                    "microsoft.directory/applications/delete",
                    "microsoft.directory/applications/standard/read"]}]}),
        )
        .await;
    assert_eq!(role.status, StatusCode::CREATED, "{}", role.text);
    let cleaner = app.create_user("cleaner", "Cleaner").await;
    app.assign_role(cleaner["id"].as_str().expect("id"), role.body["id"].as_str().expect("role"), "/").await;
    let cleaner = app.token_for(&format!("cleaner@{DOMAIN}")).await;
    let made = app.post("/v1.0/servicePrincipals", &json!({"appId": client_id})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let holder = keyward_testkit::id_of(&made.body);
    app.assign_role(&holder, keyward_core::authz::roles::DIRECTORY_READERS, "/").await;
    let restore = format!("/v1.0/directory/deletedItems/{object_id}/restore");
    let refused = app.as_user(&cleaner).post(&restore, &json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(refused.text.contains("holds a directory role"), "{}", refused.text);
    // Without the role on that principal, the same administrator may.
    let assignments =
        app.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{holder}'")).await;
    let assignment = assignments.body["value"][0]["id"].as_str().expect("assignment").to_owned();
    assert_eq!(
        app.delete(&format!("/v1.0/roleManagement/directory/roleAssignments/{assignment}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.as_user(&cleaner).post(&restore, &json!({})).await.status, StatusCode::OK);

    // Deleted again and removed for good, twice at once: one removal, the other finds nothing
    // left; gone from the deleted items, audited.
    assert_eq!(app.delete(&path).await.status, StatusCode::NO_CONTENT);
    let purge = format!("/v1.0/directory/deletedItems/{object_id}");
    assert_eq!(app.as_user(&adele).delete(&purge).await.status, StatusCode::FORBIDDEN);
    let (one, two) = tokio::join!(app.delete(&purge), app.delete(&purge));
    let mut statuses = [one.status, two.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND], "{} / {}", one.text, two.text);
    assert_eq!(app.get(&purge).await.status, StatusCode::NOT_FOUND);
    let again = app.post(&format!("{purge}/restore"), &json!({})).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);
    let activities: Vec<(String, &str)> = app
        .audit_for(&object_id)
        .await
        .iter()
        .map(|it| (it.activity_display_name.clone(), it.result.as_str()))
        .collect();
    let hard = |result: &str| {
        activities.iter().filter(|(name, it)| name == "Hard Delete application" && *it == result).count()
    };
    // One removal and the member's refusal; the second of the two at once found nothing to act on.
    assert_eq!((hard("success"), hard("failure")), (1, 1), "{activities:?}");
    assert_eq!(activities[0].0, "Hard Delete application", "{activities:?}");
}

/// A node remembers the access tokens it verified (by their signature, compared whole), so a
/// token presented again skips the signature check. What it remembers must never vouch for other
/// bytes: a remembered token's signature under another payload (the claims of another user, or
/// a role added), or its payload under another signature, is refused as forged, and the token
/// itself still works.
async fn a_remembered_token_vouches_for_no_other_bytes(backend: Backend) {
    use base64::Engine;
    let app = TestApp::spawn(backend).await;
    let adele = app.create_user("adele", "Adele Vance").await;
    let adele_id = adele["id"].as_str().expect("id").to_owned();
    let token = app.token_for(&format!("adele@{DOMAIN}")).await;
    let me = app.send(Method::GET, "/v1.0/me", Some(&token), None, &[]).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.body["id"], adele_id.as_str());

    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).expect("payload")).expect("claims");
    let admin = app.get("/v1.0/me").await.body["id"].as_str().expect("admin id").to_owned();
    claims["oid"] = json!(admin);
    claims["sub"] = json!(admin);
    let as_admin = b64.encode(serde_json::to_vec(&claims).expect("json"));
    let mut with_role: Value = serde_json::from_slice(&b64.decode(parts[1]).expect("payload")).expect("claims");
    with_role["wids"] = json!(["62e90394-69f5-4237-9190-012177145e10"]);
    let with_role = b64.encode(serde_json::to_vec(&with_role).expect("json"));
    let mut other_signature = b64.decode(parts[2]).expect("signature");
    other_signature[10] ^= 1;
    let forged = [
        ("another user's claims under the remembered signature", format!("{}.{as_admin}.{}", parts[0], parts[2])),
        ("a role added under the remembered signature", format!("{}.{with_role}.{}", parts[0], parts[2])),
        (
            "the remembered payload under another signature",
            format!("{}.{}.{}", parts[0], parts[1], b64.encode(&other_signature)),
        ),
        ("a byte appended", format!("{token}A")),
    ];
    for (what, forged) in &forged {
        for _ in 0..2 {
            let reply = app.send(Method::GET, "/v1.0/me", Some(forged), None, &[]).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.text);
            assert_eq!(reply.body["error"]["code"], "InvalidAuthenticationToken", "{what}: {}", reply.text);
        }
    }
    let me = app.send(Method::GET, "/v1.0/me", Some(&token), None, &[]).await;
    assert_eq!(me.body["id"], adele_id.as_str(), "the remembered token itself still works: {}", me.text);
}

keyward_testkit::on_both_backends!(
    a_remembered_token_vouches_for_no_other_bytes,
    deleted_applications_come_back_without_their_sessions,
    reset_mfa_and_a_code_being_entered_take_locks_in_one_order,
    parallel_guesses_cannot_outrun_the_lockout,
    password_grant_while_locked,
    applications_cannot_be_used_to_climb,
    service_principals_are_disabled_only_by_who_may,
    mfa_holds_on_refresh_and_reauthorization,
    credential_changes_end_what_the_old_credential_opened,
    a_token_issued_across_a_revocation_is_refused,
    kept_reads_follow_every_change,
    every_sign_in_path_is_logged,
    codes_only_after_consent,
    a_users_consent_lookup_sees_only_their_grants_and_everyones,
    revocation_authenticates_confidential_clients,
    no_promotion_between_decision_and_commit,
    a_disable_in_flight_is_not_undone_by_a_concurrent_write,
    a_change_recording_early_takes_the_audit_chain_head_last,
    a_group_or_application_change_in_flight_is_not_undone,
    abuse_limits,
    a_full_hash_queue_answers_503,
    slow_clients_are_disconnected,
);
