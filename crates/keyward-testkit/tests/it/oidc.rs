//! The OpenID Connect provider through HTTP on both backends: discovery, authorization code with
//! PKCE through the sign-in pages, refresh rotation and reuse detection, revocation by
//! revokeSignInSessions, client credentials for an app whose service principal holds a role,
//! the device-code flow, and the negative cases, each with nothing issued.

use base64::Engine;
use keyward_core::authz::roles;
use keyward_testkit::browser::Browser;
use keyward_testkit::{Backend, DOMAIN, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::Duration;

const PASSWORD: &str = "Tq7-harbour-Lantern-92!";
use keyward_testkit::cli_flow::{CHALLENGE, REDIRECT, VERIFIER};

pub(crate) fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

pub(crate) fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// POSTs a form to the token endpoint (or another provider endpoint).
async fn post_form(
    app: &TestApp,
    path: &str,
    fields: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    let mut request = app
        .client
        .post(format!("{}{path}", app.base_url))
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Redeems a `keyward-cli` code with the right verifier.
async fn redeem(app: &TestApp, code: &str) -> Value {
    let fields = [
        ("grant_type", "authorization_code"),
        ("client_id", "keyward-cli"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let (status, tokens) = post_form(app, &token_path(), &fields, None).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens
}

/// Redeems a `keyward-cli` refresh token, with `extra` fields (a `claims` parameter).
async fn refresh_cli(app: &TestApp, refresh_token: &str, extra: &[(&str, &str)]) -> (StatusCode, Value) {
    let grant = [("grant_type", "refresh_token"), ("client_id", "keyward-cli"), ("refresh_token", refresh_token)];
    post_form(app, &token_path(), &[&grant[..], extra].concat(), None).await
}

fn token_path() -> String {
    format!("/{DOMAIN}/oauth2/v2.0/token")
}

async fn create_user(app: &TestApp, alias: &str) -> String {
    let reply = app
        .post(
            "/v1.0/users",
            &json!({
                "accountEnabled": true, "displayName": format!("{alias} Test"), "mailNickname": alias,
                "userPrincipalName": format!("{alias}@{DOMAIN}"), "mail": format!("{alias}@{DOMAIN}"),
                "passwordProfile": {"password": PASSWORD, "forceChangePasswordNextSignIn": false},
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.body["id"].as_str().expect("id").to_owned()
}

/// Runs the authorization endpoint for `keyward-cli` with PKCE through the sign-in pages and
/// returns the redirect URL with the code.
async fn authorize(app: &TestApp, browser: &mut Browser, upn: &str, extra: &str) -> String {
    let path = format!(
        "/{DOMAIN}/oauth2/v2.0/authorize?client_id=keyward-cli&response_type=code&redirect_uri={}&scope={}\
         &state=st-123&nonce=n-456&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        keyward_app::url_encode(REDIRECT),
        keyward_app::url_encode("openid profile email offline_access https://graph.microsoft.com/.default"),
    );
    let page = browser.get(&path).await;
    if page.status.is_redirection() {
        return page.path;
    }
    assert_eq!(page.title(), "Sign in", "{}", page.text());
    let page = browser.submit(&page, "username", &[("username", upn)], &[]).await;
    let done = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    assert!(done.status.is_redirection(), "expected the redirect to the app, got {}: {}", done.status, done.text());
    let _ = app;
    done.path
}

async fn discovery_and_code_flow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let adele = create_user(&app, "adele").await;
    let upn = format!("adele@{DOMAIN}");
    let tenant_id = app.get("/v1.0/organization").await.body["value"][0]["id"].as_str().expect("tenant").to_owned();

    // Discovery by domain and by tenant id names the same issuer: {public-url}/{tenant-id}/v2.0.
    let issuer = format!("{}/{tenant_id}/v2.0", app.base_url);
    for key in [DOMAIN, tenant_id.as_str()] {
        let reply =
            app.send(Method::GET, &format!("/{key}/v2.0/.well-known/openid-configuration"), None, None, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body["issuer"], json!(issuer));
        assert_eq!(reply.body["token_endpoint"], json!(format!("{}/{tenant_id}/oauth2/v2.0/token", app.base_url)));
        assert_eq!(reply.body["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(reply.body["authorization_response_iss_parameter_supported"], json!(true));
        // What it advertises, it does: the password grant is off here.
        let grants = reply.body["grant_types_supported"].as_array().expect("grants");
        assert!(grants.contains(&json!("refresh_token")) && !grants.contains(&json!("password")), "{}", reply.text);
        assert!(
            reply.body["revocation_endpoint_auth_methods_supported"]
                .as_array()
                .expect("methods")
                .contains(&json!("private_key_jwt"))
        );
    }
    let unknown =
        app.send(Method::GET, "/nowhere.example/v2.0/.well-known/openid-configuration", None, None, &[]).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.body["error_codes"], json!([90002]));

    let mut browser = Browser::new(&app.base_url);
    let redirect = authorize(&app, &mut browser, &upn, "").await;
    assert!(redirect.starts_with(REDIRECT), "{redirect}");
    assert_eq!(query_param(&redirect, "state").as_deref(), Some("st-123"));
    assert_eq!(query_param(&redirect, "iss").as_deref(), Some(issuer.as_str()), "RFC 9207 iss");
    let code = query_param(&redirect, "code").expect("code");

    // Negative cases first: each leaves the code usable.
    let base = [("grant_type", "authorization_code"), ("client_id", "keyward-cli"), ("code", code.as_str())];
    let (status, body) = post_form(
        &app,
        &token_path(),
        &[&base[..], &[("redirect_uri", "http://localhost:1/other"), ("code_verifier", VERIFIER)]].concat(),
        None,
    )
    .await;
    assert_eq!((status, body["error"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_grant")), "{body}");
    assert_eq!(body["error_codes"], json!([50011]));
    assert!(body["access_token"].is_null() && body["trace_id"].is_string() && body["timestamp"].is_string());
    let (status, body) =
        post_form(&app, &token_path(), &[&base[..], &[("redirect_uri", REDIRECT)]].concat(), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "missing verifier: {body}");
    let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj";
    let (status, body) = post_form(
        &app,
        &token_path(),
        &[&base[..], &[("redirect_uri", REDIRECT), ("code_verifier", wrong)]].concat(),
        None,
    )
    .await;
    assert_eq!((status, body["error_codes"].clone()), (StatusCode::BAD_REQUEST, json!([501481])), "{body}");

    // The right request gets every token; MSAL's extras (client_info, claims) are accepted.
    let good = [
        &base[..],
        &[
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_info", "1"),
            ("claims", "{\"access_token\":{\"xms_cc\":{\"values\":[\"CP1\"]}}}"),
        ],
    ]
    .concat();
    let (status, tokens) = post_form(&app, &token_path(), &good, None).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    let id = claims(tokens["id_token"].as_str().expect("id_token"));
    assert_eq!(id["iss"], json!(issuer));
    assert_eq!(id["aud"], "keyward-cli");
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["oid"], json!(adele));
    assert_eq!(id["tid"], json!(tenant_id));
    assert_eq!(id["preferred_username"], json!(upn));
    assert_eq!(id["email"], json!(upn));
    assert_eq!(id["amr"], json!(["pwd"]));
    assert!(id["auth_time"].is_i64() && id["exp"].is_i64() && id["nbf"].is_i64() && id["acr"].is_string());
    let client_info = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tokens["client_info"].as_str().expect("client_info"))
        .expect("b64");
    let client_info: Value = serde_json::from_slice(&client_info).expect("json");
    assert_eq!((client_info["uid"].clone(), client_info["utid"].clone()), (json!(adele), json!(tenant_id)));
    let access = tokens["access_token"].as_str().expect("access_token");
    let access_claims = claims(access);
    assert_eq!(access_claims["aud"], "https://graph.microsoft.com");
    assert_eq!(access_claims["amr"], json!(["pwd"]));
    assert!(access_claims["scp"].as_str().is_some_and(|it| it.contains("User.Read")), "{access_claims}");
    let me = app.as_user(access).get("/v1.0/me").await;
    assert_eq!(me.body["id"], json!(adele), "{}", me.text);
    let userinfo = app.as_user(access).get("/oidc/userinfo").await;
    assert_eq!(userinfo.body["sub"], json!(adele), "{}", userinfo.text);
    assert!(
        userinfo.body.as_object().is_some_and(|it| it.values().all(|value| !value.is_null())),
        "claims without a value are left out: {}",
        userinfo.text
    );

    // The code is good once; a second redemption fails and revokes what the first one got.
    let (status, body) = post_form(&app, &token_path(), &good, None).await;
    assert_eq!((status, body["error_codes"].clone()), (StatusCode::BAD_REQUEST, json!([54005])), "{body}");
    let refresh = tokens["refresh_token"].as_str().expect("refresh_token");
    let (status, body) = refresh_cli(&app, refresh, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a replayed code revokes its refresh tokens: {body}");

    // An expired code: a new sign-in (the session is reused, no pages), then eleven minutes.
    let redirect = authorize(&app, &mut browser, &upn, "").await;
    let code = query_param(&redirect, "code").expect("code");
    app.clock.advance(Duration::minutes(11));
    let (status, body) = post_form(
        &app,
        &token_path(),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "keyward-cli"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
    .await;
    assert_eq!((status, body["error_codes"].clone()), (StatusCode::BAD_REQUEST, json!([70008])), "{body}");

    // Authorization errors that can be sent back go to the redirect URI; others are a page.
    let bad_redirect = browser
        .get(&format!("/{DOMAIN}/oauth2/v2.0/authorize?client_id=keyward-cli&response_type=code&redirect_uri=https%3A%2F%2Fevil.example%2F&code_challenge={CHALLENGE}&code_challenge_method=S256"))
        .await;
    assert_eq!(bad_redirect.status, StatusCode::BAD_REQUEST);
    assert!(bad_redirect.text().contains("AADSTS50011"), "{}", bad_redirect.text());
    let no_pkce = browser
        .get(&format!(
            "/{DOMAIN}/oauth2/v2.0/authorize?client_id=keyward-cli&response_type=code&redirect_uri={}&state=s",
            keyward_app::url_encode(REDIRECT)
        ))
        .await;
    assert!(no_pkce.path.starts_with(REDIRECT), "{}", no_pkce.path);
    assert_eq!(query_param(&no_pkce.path, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query_param(&no_pkce.path, "state").as_deref(), Some("s"));
    assert!(query_param(&no_pkce.path, "code").is_none());

    // prompt=none without a session is login_required; prompt=login asks again.
    let mut fresh = Browser::new(&app.base_url);
    let silent = fresh
        .get(&format!("/{DOMAIN}/oauth2/v2.0/authorize?client_id=keyward-cli&response_type=code&redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256&prompt=none", keyward_app::url_encode(REDIRECT)))
        .await;
    assert_eq!(query_param(&silent.path, "error").as_deref(), Some("login_required"), "{}", silent.path);
    let page = browser
        .get(&format!("/{DOMAIN}/oauth2/v2.0/authorize?client_id=keyward-cli&response_type=code&redirect_uri={}&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256&prompt=login", keyward_app::url_encode(REDIRECT)))
        .await;
    assert_eq!(page.title(), "Sign in", "prompt=login asks for the credentials again: {}", page.text());
    let page = browser.submit(&page, "username", &[("username", &upn)], &[]).await;
    let again = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    assert!(again.path.starts_with(REDIRECT) && query_param(&again.path, "code").is_some(), "{}", again.path);
}

async fn refresh_rotation_and_revocation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let adele = create_user(&app, "adele").await;
    let mut browser = Browser::new(&app.base_url);
    let redirect = authorize(&app, &mut browser, &format!("adele@{DOMAIN}"), "").await;
    let code = query_param(&redirect, "code").expect("code");
    let tokens = redeem(&app, &code).await;
    assert_eq!(claims(tokens["access_token"].as_str().expect("access"))["wids"], json!([]), "{tokens}");
    let first = tokens["refresh_token"].as_str().expect("refresh").to_owned();
    let refresh = |token: String| {
        let app = &app;
        async move { refresh_cli(app, &token, &[]).await }
    };
    // Roles given since the sign-in are in the next token's `wids`: one held directly, one
    // through a role-assignable group.
    app.assign_role(&adele, roles::DIRECTORY_READERS, "/").await;
    let group = app.create_role_assignable_group("Readers", &[&adele]).await;
    app.assign_role(&group, roles::REPORTS_READER, "/").await;
    let (status, second) = refresh(first.clone()).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let mut wids: Vec<String> =
        serde_json::from_value(claims(second["access_token"].as_str().expect("access"))["wids"].clone()).expect("wids");
    wids.sort();
    let mut expected = vec![roles::DIRECTORY_READERS.to_owned(), roles::REPORTS_READER.to_owned()];
    expected.sort();
    assert_eq!(wids, expected, "{second}");
    let second = second["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(second, first);
    // Replaying the rotated token revokes the family: the newest token stops working too.
    let (status, body) = refresh(first).await;
    assert_eq!((status, body["error"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_grant")), "{body}");
    let (status, _) = refresh(second).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the family is revoked");

    // revokeSignInSessions ends refresh tokens issued before it.
    app.clock.advance(Duration::seconds(1));
    let redirect = authorize(&app, &mut browser, &format!("adele@{DOMAIN}"), "").await;
    let code = query_param(&redirect, "code").expect("code");
    let tokens = redeem(&app, &code).await;
    let token = tokens["refresh_token"].as_str().expect("refresh").to_owned();
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    app.clock.advance(Duration::seconds(1));
    let reply = app.post(&format!("/v1.0/users/{adele}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(reply.status, StatusCode::OK);
    app.clock.advance(Duration::seconds(1));
    let (status, body) = refresh(token).await;
    assert_eq!((status, body["error_codes"].clone()), (StatusCode::BAD_REQUEST, json!([50173])), "{body}");
    let me = app.as_user(&access).get("/v1.0/me").await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED, "access tokens issued before the revocation stop too");
}

/// A node grants client credentials on its kept copy of the client, and that answer stands only
/// if the client counter has not moved since: a role given, a secret removed or added, the
/// principal deleted on another node all count at the next grant, and a grant made again on a
/// fresh read is logged once.
async fn client_credentials_on_a_kept_client_follow_changes_made_on_another_node(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_other, other_url) = app.second_server(|_| {}).await;
    let reply = app.post("/v1.0/applications", &json!({"displayName": "Nightly export"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let app_object = reply.body["id"].as_str().expect("id").to_owned();
    let app_id = reply.body["appId"].as_str().expect("appId").to_owned();
    let add_secret = || async {
        let added = app.post(&format!("/v1.0/applications/{app_object}/addPassword"), &json!({})).await;
        assert_eq!(added.status, StatusCode::OK, "{}", added.text);
        (
            added.body["keyId"].as_str().expect("keyId").to_owned(),
            added.body["secretText"].as_str().expect("secret").to_owned(),
        )
    };
    let grant = |secret: String| {
        let (client, base, app_id) = (app.client.clone(), other_url.clone(), app_id.clone());
        async move {
            let fields = [
                ("grant_type", "client_credentials"),
                ("scope", "https://graph.microsoft.com/.default"),
                ("client_id", app_id.as_str()),
                ("client_secret", secret.as_str()),
            ];
            keyward_testkit::post_form(&client, &base, &token_path(), &fields).await
        }
    };
    let (first_key, first) = add_secret().await;
    let granted = grant(first.clone()).await;
    assert_eq!(claims(granted["access_token"].as_str().expect("token"))["wids"], json!([]), "{granted}");
    let again = grant(first.clone()).await;
    assert!(again["access_token"].is_string(), "kept: {again}");

    // A role given on the first node is in the second node's next token.
    let principal = crate::security::principal_of(&app, &app_id).await;
    app.assign_role(&principal, roles::USER_ADMINISTRATOR, "/").await;
    let granted = grant(first.clone()).await;
    let token = granted["access_token"].as_str().expect("token");
    assert_eq!(claims(token)["wids"], json!([roles::USER_ADMINISTRATOR]), "{granted}");

    // A secret removed there no longer works here; one added there works here at once.
    let removed =
        app.post(&format!("/v1.0/applications/{app_object}/removePassword"), &json!({"keyId": first_key})).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    let refused = grant(first.clone()).await;
    assert_eq!(
        (refused["error"].clone(), refused["error_codes"].clone()),
        (json!("invalid_client"), json!([7000215])),
        "{refused}"
    );
    let (_, second) = add_secret().await;
    let granted = grant(second.clone()).await;
    assert!(granted["access_token"].is_string(), "{granted}");

    // Each grant logged once, the ones made again included.
    let logged_codes = || async {
        let filter = format!("signInEventTypes/any(t: t eq 'servicePrincipal') and appId eq '{app_id}'");
        let logged = app.get(&format!("/beta/auditLogs/signIns?$filter={filter}")).await;
        assert_eq!(logged.status, StatusCode::OK, "{}", logged.text);
        let value = logged.body["value"].as_array().expect("value");
        value.iter().rev().map(|it| it["status"]["errorCode"].as_i64().expect("code")).collect::<Vec<_>>()
    };
    assert_eq!(logged_codes().await, [0, 0, 0, 7000215, 0]);

    // The principal disabled there: no token here (Entra's AADSTS7000112), and the token this
    // node issued before stops working at its next request; enabled again, it works at once.
    let held = granted["access_token"].as_str().expect("token").to_owned();
    let read_users = || {
        let (client, url, held) = (app.client.clone(), format!("{other_url}/v1.0/users"), held.clone());
        async move { client.get(url).bearer_auth(held).send().await.expect("users").status() }
    };
    assert_eq!(read_users().await, StatusCode::OK, "a User Administrator's app-only token");
    let path = format!("/v1.0/servicePrincipals/{principal}");
    let disabled = app.patch(&path, &json!({"accountEnabled": false})).await;
    assert_eq!(disabled.status, StatusCode::NO_CONTENT, "{}", disabled.text);
    let refused = grant(second.clone()).await;
    assert_eq!(
        (refused["error"].clone(), refused["error_codes"].clone()),
        (json!("unauthorized_client"), json!([7000112])),
        "{refused}"
    );
    assert!(refused["error_description"].as_str().is_some_and(|it| it.contains("is disabled")), "{refused}");
    assert_eq!(read_users().await, StatusCode::UNAUTHORIZED, "a disabled principal's token");
    let shown = app.get(&format!("/v1.0/servicePrincipals/{principal}")).await;
    assert_eq!(shown.body["accountEnabled"], json!(false), "{}", shown.text);
    let enabled = app.patch(&path, &json!({"accountEnabled": true})).await;
    assert_eq!(enabled.status, StatusCode::NO_CONTENT, "{}", enabled.text);
    let granted = grant(second.clone()).await;
    assert!(granted["access_token"].is_string(), "enabled again: {granted}");
    assert_eq!(read_users().await, StatusCode::OK, "enabled again, the held token works");
    // The disabled application's attempt is in the sign-in log, as in Entra.
    assert_eq!(logged_codes().await, [0, 0, 0, 7000215, 0, 7000112, 0]);

    // The principal deleted there: no token here.
    let deleted = app.delete(&format!("/v1.0/servicePrincipals/{principal}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let refused = grant(second).await;
    assert!(refused["access_token"].is_null() && refused["error"].is_string(), "{refused}");
}

/// Applications' sign-in log entries on PostgreSQL are one statement (`Store::insert_app_sign_ins`):
/// an entry under a version of its tenant's clients is written only while they have it, in a
/// batch with other tenants' entries and entries that need none; a batch with a user's entry is
/// left to a transaction, as SQLite leaves every batch.
async fn application_sign_in_entries_are_written_under_their_client_version(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let store = app.app.store();
    let (tenant, other) = (app.tenant_id().await, keyward_core::ids::ObjectId::from_bytes([42; 16]));
    let (current, other_current) =
        (store.client_version(&tenant).await.expect("version"), store.client_version(&other).await.expect("version"));
    let record = |n: usize, tenant: &keyward_core::ids::ObjectId| {
        keyward_core::signin::SignInRecord::browser(
            format!("app-entry-{n}"),
            tenant.clone(),
            app.app.now(),
            String::new(),
            ("11111111-2222-3333-4444-555555555555", "Nightly export"),
        )
    };
    let records = [record(1, &tenant), record(2, &tenant), record(3, &tenant), record(4, &other), record(5, &other)];
    let versions = [Some(current), Some(current ^ 1), None, Some(other_current), Some(other_current ^ 1)];
    let entries: Vec<_> = records.iter().zip(versions).collect();
    let written = store.insert_app_sign_ins(&entries).await.expect("insert");
    if backend == Backend::Sqlite {
        assert_eq!(written, None, "SQLite writes a batch in a transaction");
        return;
    }
    assert_eq!(written, Some(vec![true, false, true, true, false]));
    let mut tx = store.read().await.expect("read");
    for (n, tenant, expected) in
        [(1, &tenant, true), (2, &tenant, false), (3, &tenant, true), (4, &other, true), (5, &other, false)]
    {
        let found = tx.get_sign_in(tenant, &format!("app-entry-{n}")).await.expect("read");
        assert_eq!(found.is_some(), expected, "entry {n}");
    }
    drop(tx);
    let mut with_user = record(6, &tenant);
    with_user.user_id = Some(keyward_core::ids::ObjectId::from_bytes([43; 16]));
    assert_eq!(store.insert_app_sign_ins(&[(&with_user, None)]).await.expect("insert"), None, "a user's entry");
    // An id written already: the statement fails whole, and the log writer then tries each alone.
    let again = store.insert_app_sign_ins(&[(&records[2], None)]).await;
    assert!(matches!(again, Err(keyward_store::StoreError::Conflict { .. })), "{again:?}");
}

async fn client_credentials_with_a_role(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reply = app.post("/v1.0/applications", &json!({"displayName": "Provisioning job"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let app_object = reply.body["id"].as_str().expect("id").to_owned();
    let app_id = reply.body["appId"].as_str().expect("appId").to_owned();
    let secret = app
        .post(
            &format!("/v1.0/applications/{app_object}/addPassword"),
            &json!({"passwordCredential": {"displayName": "ci"}}),
        )
        .await;
    assert_eq!(secret.status, StatusCode::OK, "{}", secret.text);
    let secret_text = secret.body["secretText"].as_str().expect("secretText").to_owned();
    let listed = app.get(&format!("/v1.0/applications/{app_object}")).await;
    assert!(
        listed.body["passwordCredentials"][0]["secretText"].is_null() && !listed.text.contains(&secret_text),
        "the secret is shown once"
    );

    let scope = [("grant_type", "client_credentials"), ("scope", "https://graph.microsoft.com/.default")];
    let (status, body) = post_form(
        &app,
        &token_path(),
        &[&scope[..], &[("client_id", &app_id), ("client_secret", "wrong")]].concat(),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].clone(), body["error_codes"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_client"), json!([7000215])),
        "{body}"
    );
    let (status, body) = post_form(&app, &token_path(), &scope, Some((&app_id, &secret_text))).await;
    assert_eq!(status, StatusCode::OK, "client_secret_basic: {body}");
    let token = body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(claims(&token)["idtyp"], "app");
    assert!(claims(&token).get("roles").is_none(), "no application permissions, no roles claim, as in Entra");
    // Without a role the app may do nothing.
    let users = app.as_user(&token).get("/v1.0/users").await;
    assert_eq!(users.status, StatusCode::FORBIDDEN, "{}", users.text);
    let principals = app.get("/v1.0/servicePrincipals?$top=999").await;
    let principal = principals.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|it| it["appId"] == json!(app_id))
        .expect("service principal")
        .clone();
    app.assign_role(principal["id"].as_str().expect("id"), roles::USER_ADMINISTRATOR, "/").await;
    let (status, body) = post_form(
        &app,
        &token_path(),
        &[&scope[..], &[("client_id", &app_id), ("client_secret", &secret_text)]].concat(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "client_secret_post: {body}");
    let token = body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(claims(&token)["wids"], json!([roles::USER_ADMINISTRATOR]));
    let users = app.as_user(&token).get("/v1.0/users").await;
    assert_eq!(users.status, StatusCode::OK, "{}", users.text);
    let correlation = "4c3b2a19-0f1e-4d2c-8b7a-6e5d4c3b2a19";
    let created = app
        .send(Method::POST, "/v1.0/users", Some(&token), Some(&json!({"accountEnabled": true, "displayName": "Job User", "mailNickname": "job", "userPrincipalName": format!("job@{DOMAIN}"), "passwordProfile": {"password": PASSWORD}})), &[("client-request-id", correlation)])
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let audit = app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter=correlationId eq '{correlation}'")).await;
    assert_eq!(audit.body["value"][0]["initiatedBy"]["app"]["appId"], json!(app_id), "{}", audit.text);
    assert!(audit.body["value"][0]["initiatedBy"]["user"].is_null());
    let me = app.as_user(&token).get("/v1.0/me").await;
    assert_eq!(me.status, StatusCode::BAD_REQUEST, "app-only tokens have no /me");
    // A removed secret stops working.
    let key_id = secret.body["keyId"].as_str().expect("keyId");
    let removed = app.post(&format!("/v1.0/applications/{app_object}/removePassword"), &json!({"keyId": key_id})).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    let (status, _) = post_form(&app, &token_path(), &scope, Some((&app_id, &secret_text))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The application's own sign-ins: in beta's log with signInEventTypes, never among users'.
    let filter = format!("appId eq '{app_id}'");
    let users_only = app.get(&format!("/beta/auditLogs/signIns?$filter={filter}")).await;
    assert_eq!(users_only.body["value"], json!([]), "{}", users_only.text);
    let path = format!("/beta/auditLogs/signIns?$filter=signInEventTypes/any(t: t eq 'servicePrincipal') and {filter}");
    let logged = app.get(&path).await;
    assert_eq!(logged.status, StatusCode::OK, "{}", logged.text);
    let entries = logged.body["value"].as_array().expect("value");
    let summary: Vec<(i64, &str)> = entries
        .iter()
        .rev()
        .map(|it| {
            (it["status"]["errorCode"].as_i64().expect("code"), it["clientCredentialType"].as_str().expect("type"))
        })
        .collect();
    assert_eq!(
        summary,
        vec![(7000215, "clientSecret"), (0, "clientSecret"), (0, "clientSecret"), (7000215, "clientSecret")],
        "{}",
        logged.text
    );
    // Entry ids are GUIDs that grow with time (UUID version 7): the log's id index is written at
    // its end, not at a random page for every entry.
    let ids: Vec<&str> = entries.iter().map(|it| it["id"].as_str().expect("id")).collect();
    assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok_and(|it| it.get_version_num() == 7)), "{ids:?}");
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "newest first, so ids descending: {ids:?}");
    let entry = &entries[1];
    assert_eq!(entry["signInEventTypes"], json!(["servicePrincipal"]));
    assert_eq!(entry["servicePrincipalId"], principal["id"]);
    assert_eq!(entry["servicePrincipalName"], "Provisioning job");
    assert_eq!((entry["userId"].clone(), entry["isInteractive"].clone()), (Value::Null, json!(false)));
    let v1 = app.get("/v1.0/auditLogs/signIns?$filter=signInEventTypes/any(t: t eq 'servicePrincipal')").await;
    assert_eq!(v1.status, StatusCode::BAD_REQUEST, "signInEventTypes is beta's: {}", v1.text);
    // What the application did is found by its name in the audit log.
    let by_name =
        app.get("/v1.0/auditLogs/directoryAudits?$filter=initiatedBy/app/displayName eq 'provisioning JOB'").await;
    let activities: Vec<&str> = by_name.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|it| it["activityDisplayName"].as_str())
        .collect();
    assert_eq!(activities, vec!["Add user"], "{}", by_name.text);
}

async fn device_code_flow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    create_user(&app, "adele").await;
    let (status, device) = post_form(
        &app,
        &format!("/{DOMAIN}/oauth2/v2.0/devicecode"),
        &[("client_id", "keyward-cli"), ("scope", "openid offline_access User.Read")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{device}");
    for field in ["device_code", "user_code", "verification_uri", "message"] {
        assert!(device[field].is_string(), "{field}: {device}");
    }
    assert!(device["expires_in"].is_i64() && device["interval"].is_i64());
    let device_code = device["device_code"].as_str().expect("device_code").to_owned();
    let poll = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("client_id", "keyward-cli"),
        ("device_code", device_code.as_str()),
    ];
    let (status, body) = post_form(&app, &token_path(), &poll, None).await;
    assert_eq!((status, body["error"].clone()), (StatusCode::BAD_REQUEST, json!("authorization_pending")), "{body}");
    let (_, body) = post_form(&app, &token_path(), &poll, None).await;
    assert_eq!(body["error"], "slow_down", "polling faster than the interval");

    let mut browser = Browser::new(&app.base_url);
    let verification =
        device["verification_uri"].as_str().expect("uri").strip_prefix(&app.base_url).expect("local").to_owned();
    let page = browser.get(&verification).await;
    assert_eq!(page.title(), "Sign in", "the verification page needs a signed-in user");
    let page = browser.submit(&page, "username", &[("username", &format!("adele@{DOMAIN}"))], &[]).await;
    let page = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    assert_eq!(page.title(), "Enter code", "{}", page.text());
    let wrong = browser.submit(&page, "device_code", &[], &[("user_code", "BBBB-BBBB")]).await;
    assert!(wrong.text().contains("not valid"), "{}", wrong.text());
    // Guessing codes meets the code lockout (five wrong codes by default).
    let mut guess = wrong.clone();
    for _ in 0..4 {
        guess = browser.submit(&guess, "device_code", &[], &[("user_code", "CCCC-CCCC")]).await;
    }
    let locked = browser.submit(&guess, "device_code", &[], &[("user_code", "CCCC-CCCC")]).await;
    assert!(locked.text().contains("Too many wrong codes"), "{}", locked.text());
    app.clock.advance(Duration::seconds(61));
    let user_code = device["user_code"].as_str().expect("user_code").to_lowercase();
    let confirm = browser.submit(&wrong, "device_code", &[], &[("user_code", &user_code)]).await;
    assert_eq!(confirm.title(), "Are you trying to sign in?", "{}", confirm.text());
    // Wrong codes forged into the confirmation step count toward the lockout exactly as on the
    // entry step: five more lock the account again, and then even the right code is refused.
    for _ in 0..5 {
        let forged = browser.submit(&confirm, "device_confirm", &[], &[("user_code", "DDDD-DDDD")]).await;
        assert!(forged.text().contains("not valid"), "{}", forged.text());
    }
    let refused = browser.submit(&confirm, "device_confirm", &[], &[("user_code", &user_code)]).await;
    assert!(refused.text().contains("Too many wrong codes"), "{}", refused.text());
    app.clock.advance(Duration::seconds(121));
    let done = browser.submit(&confirm, "device_confirm", &[], &[]).await;
    assert_eq!(done.title(), "You're signed in", "{}", done.text());
    app.clock.advance(Duration::seconds(6));
    let (status, tokens) = post_form(&app, &token_path(), &poll, None).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(
        tokens["access_token"].is_string() && tokens["refresh_token"].is_string() && tokens["id_token"].is_string()
    );
    let (status, body) = post_form(&app, &token_path(), &poll, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a device code is redeemed once: {body}");

    // An expired device code.
    let (_, device) = post_form(
        &app,
        &format!("/{DOMAIN}/oauth2/v2.0/devicecode"),
        &[("client_id", "keyward-cli"), ("scope", "openid")],
        None,
    )
    .await;
    app.clock.advance(Duration::minutes(16));
    let (_, body) = post_form(
        &app,
        &token_path(),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", "keyward-cli"),
            ("device_code", device["device_code"].as_str().expect("code")),
        ],
        None,
    )
    .await;
    assert_eq!(body["error"], "expired_token", "{body}");
    let (_, body) = post_form(
        &app,
        &token_path(),
        &[("grant_type", "password"), ("client_id", "keyward-cli"), ("username", "adele"), ("password", PASSWORD)],
        None,
    )
    .await;
    assert_eq!(body["error"], "unsupported_grant_type", "the password grant is off by default: {body}");
}

async fn provider_edges(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let adele = create_user(&app, "adele").await;
    let upn = format!("adele@{DOMAIN}");
    let mut browser = Browser::new(&app.base_url);
    let redirect = authorize(&app, &mut browser, &upn, "").await;
    let tokens = redeem(&app, &query_param(&redirect, "code").expect("code")).await;

    // A refresh asking for an unknown scope is refused without spending the token.
    let refresh_first = tokens["refresh_token"].as_str().expect("refresh").to_owned();
    let (status, body) = post_form(
        &app,
        &token_path(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "keyward-cli"),
            ("refresh_token", &refresh_first),
            ("scope", "https://management.azure.com/.default"),
        ],
        None,
    )
    .await;
    assert_eq!((status, body["error"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_scope")), "{body}");
    // A request for `.default` combined with a permission named on its own is refused (Entra's
    // AADSTS70011). (A refresh may send back the scope a token response named, which holds both.)
    let mixed = browser
        .get(&format!(
            "/{DOMAIN}/oauth2/v2.0/authorize?client_id=keyward-cli&response_type=code&redirect_uri={}&scope={}&code_challenge={CHALLENGE}&code_challenge_method=S256",
            keyward_app::url_encode(REDIRECT),
            keyward_app::url_encode("openid https://graph.microsoft.com/.default User.Read")
        ))
        .await;
    assert_eq!(query_param(&mixed.path, "error").as_deref(), Some("invalid_scope"), "{}", mixed.path);
    let (status, body) = post_form(
        &app,
        &format!("/{DOMAIN}/oauth2/v2.0/devicecode"),
        &[("client_id", "keyward-cli"), ("scope", "https://graph.microsoft.com/.default User.Read")],
        None,
    )
    .await;
    assert_eq!((status, body["error_codes"].clone()), (StatusCode::BAD_REQUEST, json!([70011])), "{body}");
    let (status, rotated) = refresh_cli(&app, &refresh_first, &[]).await;
    assert_eq!(status, StatusCode::OK, "the token survived the bad request: {rotated}");
    let tokens = rotated;

    // A marker the server did not sign cannot stand in for a fresh sign-in.
    let forged = browser
        .get(&format!("/{DOMAIN}/oauth2/v2.0/authorize?client_id=keyward-cli&response_type=code&redirect_uri={}&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256&prompt=login&kw_after=1", keyward_app::url_encode(REDIRECT)))
        .await;
    assert_eq!(forged.title(), "Sign in", "prompt=login cannot be skipped: {}", forged.path);
    // The device-login page never redirects off the site, whatever the tenant segment says.
    let mut stranger = Browser::new(&app.base_url);
    let odd = stranger.get("/%2Fevil.example/devicelogin").await;
    assert_eq!(odd.status, StatusCode::NOT_FOUND, "{} {}", odd.status, odd.path);
    let mut browser = Browser::new(&app.base_url);
    let redirect = authorize(&app, &mut browser, &upn, "").await;
    let _ = redeem(&app, &query_param(&redirect, "code").expect("code")).await;

    // form_post: a self-posting form to the redirect URI, with the one script allowed by hash.
    let page = browser
        .get(&format!("/{DOMAIN}/oauth2/v2.0/authorize?client_id=keyward-cli&response_type=code&response_mode=form_post&redirect_uri={}&scope=openid&state=fp&code_challenge={CHALLENGE}&code_challenge_method=S256", keyward_app::url_encode(REDIRECT)))
        .await;
    let form = page.forms().into_iter().next().expect("form");
    assert_eq!(form.action, REDIRECT);
    let field = |name: &str| form.inputs.iter().find(|it| it.0 == name).map(|it| it.1.clone());
    assert!(
        field("code").is_some() && field("state").as_deref() == Some("fp") && field("iss").is_some(),
        "{:?}",
        form.inputs
    );

    // max_age: a sign-in older than max_age is asked again, and the id token carries auth_time.
    app.clock.advance(Duration::minutes(2));
    let page = browser
        .get(&format!("/{DOMAIN}/oauth2/v2.0/authorize?client_id=keyward-cli&response_type=code&redirect_uri={}&scope=openid%20offline_access&code_challenge={CHALLENGE}&code_challenge_method=S256&max_age=60&login_hint={}", keyward_app::url_encode(REDIRECT), keyward_app::url_encode(&upn)))
        .await;
    assert_eq!(page.title(), "Sign in", "{}", page.text());
    let hinted =
        page.form("username").expect("form").inputs.into_iter().find(|it| it.0 == "username").expect("input").1;
    assert_eq!(hinted, upn, "login_hint fills the user name");
    let page = browser.submit(&page, "username", &[], &[]).await;
    let done = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    let fresh = redeem(&app, &query_param(&done.path, "code").expect("code")).await;
    assert_eq!(
        claims(fresh["id_token"].as_str().expect("id")).get("auth_time").and_then(Value::as_i64),
        Some(app.app.now().unix_timestamp())
    );

    // A token's scopes limit what even a Global Administrator's token may do.
    let narrow = post_form(
        &app,
        &token_path(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "keyward-cli"),
            ("refresh_token", fresh["refresh_token"].as_str().expect("refresh")),
            ("scope", "openid User.Read"),
        ],
        None,
    )
    .await;
    assert_eq!(narrow.0, StatusCode::OK, "{}", narrow.1);
    let token = narrow.1["access_token"].as_str().expect("token").to_owned();
    assert_eq!(claims(&token)["scp"], "User.Read");
    let me = app.as_user(&token).get("/v1.0/me").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    let patch = app.as_user(&token).patch(&format!("/v1.0/users/{adele}"), &json!({"jobTitle": "x"})).await;
    assert_eq!(patch.status, StatusCode::FORBIDDEN, "User.Read does not allow writes: {}", patch.text);

    // RFC 7009 revocation ends the refresh token's family.
    let refresh = tokens["refresh_token"].as_str().expect("refresh").to_owned();
    let (status, _) = post_form(
        &app,
        &format!("/{DOMAIN}/oauth2/v2.0/revoke"),
        &[("token", &refresh), ("client_id", "keyward-cli")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = refresh_cli(&app, &refresh, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // RP-initiated logout: to a registered URI with state; otherwise a page. The session ends.
    let out = browser
        .get(&format!(
            "/{DOMAIN}/oauth2/v2.0/logout?client_id=keyward-cli&post_logout_redirect_uri={}&state=bye",
            keyward_app::url_encode(REDIRECT)
        ))
        .await;
    assert!(out.path.starts_with(REDIRECT) && out.path.contains("state=bye"), "{}", out.path);
    assert!(!browser.cookies.contains_key("keyward-session"));
    let out = browser
        .get(&format!("/{DOMAIN}/oauth2/v2.0/logout?post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F"))
        .await;
    assert_eq!(out.title(), "You signed out", "an unregistered URI gets no redirect");
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    assert_eq!(page.title(), "Sign in");
    // A client_id that is not the id_token_hint's audience: no client's address is trusted.
    let other = app
        .post(
            "/v1.0/applications",
            &json!({"displayName": "Other", "web": {"redirectUris": ["https://other.example/cb"]}}),
        )
        .await;
    let other_id = other.body["appId"].as_str().expect("appId").to_owned();
    let hint = tokens["id_token"].as_str().expect("id_token");
    let back = keyward_app::url_encode("https://other.example/cb");
    let mixed = browser
        .get(&format!(
            "/{DOMAIN}/oauth2/v2.0/logout?client_id={other_id}&id_token_hint={hint}&post_logout_redirect_uri={back}"
        ))
        .await;
    assert_eq!(mixed.title(), "You signed out", "{}", mixed.path);
    let own = browser
        .get(&format!("/{DOMAIN}/oauth2/v2.0/logout?client_id={other_id}&post_logout_redirect_uri={back}"))
        .await;
    assert!(own.path.starts_with("https://other.example/cb"), "{}", own.path);
    // A parameter sent twice: signed out, and no redirect to either address.
    let twice = browser
        .get(&format!(
            "/{DOMAIN}/oauth2/v2.0/logout?client_id={other_id}&post_logout_redirect_uri={back}&post_logout_redirect_uri={}",
            keyward_app::url_encode("https://other.example/elsewhere")
        ))
        .await;
    assert_eq!(twice.title(), "You signed out", "{}", twice.path);

    // The password grant, when turned on: tokens for a user without MFA, 50076 for one with.
    let with_password = keyward_testkit::node_with(&app.database_url, app.clock.clone(), &app.base_url, |config| {
        config.allow_password_grant = true;
    })
    .await;
    let meta = keyward_app::RequestMeta {
        correlation_id: uuid::Uuid::new_v4().to_string(),
        ip_address: None,
        user_agent: None,
    };
    let grant = |username: &str, password: &str| {
        [
            ("grant_type", "password"),
            ("client_id", "keyward-cli"),
            ("username", username),
            ("password", password),
            ("scope", "openid"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect::<std::collections::HashMap<_, _>>()
    };
    let ok = with_password.token(DOMAIN, &grant(&upn, PASSWORD), keyward_app::ClientAuth::default(), &meta).await;
    assert!(ok.is_ok_and(|it| it.id_token.is_some()));
    let wrong =
        with_password.token(DOMAIN, &grant(&upn, "nope-nope-nope"), keyward_app::ClientAuth::default(), &meta).await;
    assert_eq!(wrong.err().map(|it| it.codes), Some(vec![50126]));
    let admin = with_password
        .token(
            DOMAIN,
            &grant(keyward_testkit::ADMIN_UPN, keyward_testkit::ADMIN_PASSWORD),
            keyward_app::ClientAuth::default(),
            &meta,
        )
        .await;
    assert_eq!(admin.err().map(|it| (it.error, it.codes)), Some(("invalid_grant", vec![50076])));
}

/// The Rust `openidconnect` crate as the relying party: discovery, the JWKS, authorization code
/// with PKCE, and the id token's signature and claims checked by the crate.
async fn openidconnect_relying_party(backend: Backend) {
    use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata};
    use openidconnect::{
        AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl,
        Scope, TokenResponse,
    };

    let app = TestApp::spawn(backend).await;
    let adele = create_user(&app, "adele").await;
    let tenant_id = app.get("/v1.0/organization").await.body["value"][0]["id"].as_str().expect("tenant").to_owned();
    let client = app.client.clone();
    let http = move |request: http::Request<Vec<u8>>| {
        let client = client.clone();
        async move {
            let (parts, body) = request.into_parts();
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(std::io::Error::other)?;
            let mut builder = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let bytes = response.bytes().await.map_err(std::io::Error::other)?;
            builder.body(bytes.to_vec()).map_err(std::io::Error::other)
        }
    };
    let issuer = IssuerUrl::new(format!("{}/{tenant_id}/v2.0", app.base_url)).expect("issuer");
    let metadata = CoreProviderMetadata::discover_async(issuer, &http).await.expect("discovery and JWKS");
    let rp = CoreClient::from_provider_metadata(metadata, ClientId::new("keyward-cli".into()), None)
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).expect("redirect"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(url.as_str().strip_prefix(&app.base_url).expect("local")).await;
    let page = browser.submit(&page, "username", &[("username", &format!("adele@{DOMAIN}"))], &[]).await;
    let done = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    assert_eq!(query_param(&done.path, "state").as_deref(), Some(state.secret().as_str()));
    let code = query_param(&done.path, "code").expect("code");
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("tokens");
    assert!(tokens.refresh_token().is_some());
    let id_token = tokens.id_token().expect("id token");
    let verifier = rp.id_token_verifier().set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let verified = id_token.claims(&verifier, &nonce).expect("signature and claims verify");
    assert_eq!(verified.subject().as_str(), adele);
    assert_eq!(verified.preferred_username().map(|it| it.as_str().to_owned()), Some(format!("adele@{DOMAIN}")));
    // A different nonce is refused by the crate.
    assert!(id_token.claims(&verifier, &Nonce::new("another".into())).is_err());
}

/// A code sent to a web (confidential) redirect URI needs the client's secret even when the
/// application allows public flows (`isFallbackPublicClient`).
async fn web_codes_need_the_secret(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    create_user(&app, "adele").await;
    let web = "https://app.example/callback";
    let created = app
        .post(
            "/v1.0/applications",
            &json!({"displayName": "Web app", "isFallbackPublicClient": true, "web": {"redirectUris": [web]}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let app_id = created.body["appId"].as_str().expect("appId").to_owned();
    let object_id = created.body["id"].as_str().expect("id").to_owned();
    let added = app.post(&format!("/v1.0/applications/{object_id}/addPassword"), &json!({})).await;
    let secret = added.body["secretText"].as_str().expect("secret").to_owned();
    let key_id = added.body["keyId"].as_str().expect("keyId").to_owned();
    // Members read the tenant's application registrations, as in Entra; never a secret.
    let member = app.token_for(&format!("adele@{DOMAIN}")).await;
    let read = app.as_user(&member).get(&format!("/v1.0/applications/{object_id}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert!(!read.text.contains(&secret), "{}", read.text);
    let listed = app.as_user(&member).get("/v1.0/applications").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let renamed =
        app.as_user(&member).patch(&format!("/v1.0/applications/{object_id}"), &json!({"displayName": "Mine"})).await;
    assert_eq!(renamed.status, StatusCode::FORBIDDEN, "reading is not changing: {}", renamed.text);
    let mut browser = Browser::new(&app.base_url);
    let page = browser
        .get(&format!(
            "/{DOMAIN}/oauth2/v2.0/authorize?client_id={app_id}&response_type=code&redirect_uri={}&scope=openid%20offline_access",
            keyward_app::url_encode(web)
        ))
        .await;
    let page = browser.submit(&page, "username", &[("username", &format!("adele@{DOMAIN}"))], &[]).await;
    let consent = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    assert_eq!(consent.title(), "Permissions requested", "a new application asks for consent: {}", consent.text());
    let done = browser.submit(&consent, "consent", &[], &[]).await;
    let code = query_param(&done.path, "code").expect("code");
    let fields = [
        ("grant_type", "authorization_code"),
        ("client_id", app_id.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", web),
    ];
    let (status, body) = post_form(&app, &token_path(), &fields, None).await;
    assert_eq!((status, body["error"].clone()), (StatusCode::UNAUTHORIZED, json!("invalid_client")), "{body}");
    // The error's correlation_id is the client's client-request-id.
    let correlation = "5b7c1f7e-2d3a-4c55-9e1a-0f6a7d2b9c41";
    let wrong = [
        ("grant_type", "client_credentials"),
        ("client_id", app_id.as_str()),
        ("client_secret", "not-the-secret"),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let reply = app
        .client
        .post(format!("{}{}", app.base_url, token_path()))
        .header("client-request-id", correlation)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_urlencoded::Serializer::new(String::new()).extend_pairs(wrong).finish())
        .send()
        .await
        .expect("token request");
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    let refused: Value = reply.json().await.expect("json");
    assert_eq!(refused["correlation_id"], correlation, "{refused}");
    // A verifier for a code requested without a challenge is refused (RFC 9700 section 2.1.1: a
    // code whose challenge was stripped), and the code is not spent by it.
    let with_verifier = [&fields[..], &[("code_verifier", VERIFIER)]].concat();
    let (status, body) = post_form(&app, &token_path(), &with_verifier, Some((&app_id, &secret))).await;
    assert_eq!((status, body["error"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_grant")), "{body}");
    let (status, body) = post_form(&app, &token_path(), &fields, Some((&app_id, &secret))).await;
    assert_eq!(status, StatusCode::OK, "with the secret: {body}");
    // Its refresh tokens are the confidential client's: `isFallbackPublicClient` does not let them
    // be redeemed without the secret, nor does deleting the application's every secret (after a
    // leak, the leaked secret's tokens stop).
    let mut refresh_token = body["refresh_token"].as_str().expect("a refresh token").to_owned();
    let redeem = async |token: &str, secret: Option<&str>| {
        let fields = [("grant_type", "refresh_token"), ("client_id", app_id.as_str()), ("refresh_token", token)];
        post_form(&app, &token_path(), &fields, secret.map(|it| (app_id.as_str(), it))).await
    };
    let (status, body) = redeem(&refresh_token, None).await;
    assert_eq!((status, body["error"].clone()), (StatusCode::UNAUTHORIZED, json!("invalid_client")), "{body}");
    let (status, body) = redeem(&refresh_token, Some(&secret)).await;
    assert_eq!(status, StatusCode::OK, "with the secret: {body}");
    refresh_token = body["refresh_token"].as_str().expect("a rotated refresh token").to_owned();
    let removed = app.post(&format!("/v1.0/applications/{object_id}/removePassword"), &json!({"keyId": key_id})).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    let (status, body) = redeem(&refresh_token, None).await;
    assert_eq!((status, body["error"].clone()), (StatusCode::UNAUTHORIZED, json!("invalid_client")), "{body}");
    // Nor revoked without it: the family is the confidential client's (answered as an unknown
    // token is, so the answer tells nothing about the token).
    let revoke = [("token", refresh_token.as_str()), ("client_id", app_id.as_str())];
    let (status, _) = post_form(&app, &format!("/{DOMAIN}/oauth2/v2.0/revoke"), &revoke, None).await;
    assert_eq!(status, StatusCode::OK);
    let added = app.post(&format!("/v1.0/applications/{object_id}/addPassword"), &json!({})).await;
    let second = added.body["secretText"].as_str().expect("secret").to_owned();
    let (status, body) = redeem(&refresh_token, Some(&second)).await;
    assert_eq!(status, StatusCode::OK, "the family outlived the unauthenticated revocation: {body}");
    refresh_token = body["refresh_token"].as_str().expect("a rotated refresh token").to_owned();
    let second_key = added.body["keyId"].as_str().expect("keyId").to_owned();
    let removed =
        app.post(&format!("/v1.0/applications/{object_id}/removePassword"), &json!({"keyId": second_key})).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    let (status, body) = redeem(&refresh_token, None).await;
    assert_eq!((status, body["error"].clone()), (StatusCode::UNAUTHORIZED, json!("invalid_client")), "{body}");
    // A disabled service principal blocks the application's sign-ins.
    let principals = app.get("/v1.0/servicePrincipals?$top=999").await;
    let principal = principals.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|it| it["appId"] == json!(app_id))
        .expect("sp")
        .clone();
    let removed = app.delete(&format!("/v1.0/servicePrincipals/{}", principal["id"].as_str().expect("id"))).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    let blocked = browser
        .get(&format!(
            "/{DOMAIN}/oauth2/v2.0/authorize?client_id={app_id}&response_type=code&redirect_uri={}&scope=openid",
            keyward_app::url_encode(web)
        ))
        .await;
    assert!(blocked.text().contains("AADSTS700016"), "{}", blocked.text());
}

/// Continuous access evaluation: a client that declares `cp1` gets tokens with `xms_cc` and, once
/// they are revoked, Entra's claims challenge; other clients keep the plain invalid-token answer.
async fn claims_challenge_for_cae_capable_clients(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let adele = create_user(&app, "adele").await;
    let mut browser = Browser::new(&app.base_url);
    let cp1 = r#"{"access_token":{"xms_cc":{"values":["CP1"]}}}"#;
    let mut tokens = Vec::new();
    for claims in [Some(cp1), None] {
        let redirect = authorize(&app, &mut browser, &format!("adele@{DOMAIN}"), "").await;
        let code = query_param(&redirect, "code").expect("code");
        let mut fields = vec![
            ("grant_type", "authorization_code"),
            ("client_id", "keyward-cli"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        fields.extend(claims.map(|it| ("claims", it)));
        let (status, body) = post_form(&app, &token_path(), &fields, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.push(body);
    }
    let capable = tokens[0]["access_token"].as_str().expect("access").to_owned();
    let plain = tokens[1]["access_token"].as_str().expect("access").to_owned();
    assert_eq!(claims(&capable)["xms_cc"], json!(["cp1"]));
    assert!(claims(&plain).get("xms_cc").is_none());
    // A refresh that declares it again keeps it.
    let refresh = tokens[0]["refresh_token"].as_str().expect("refresh");
    let (status, refreshed) = refresh_cli(&app, refresh, &[("claims", cp1)]).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let capable = refreshed["access_token"].as_str().expect("access").to_owned();
    assert_eq!(claims(&capable)["xms_cc"], json!(["cp1"]));
    assert_eq!(app.as_user(&capable).get("/v1.0/me").await.status, StatusCode::OK);

    app.clock.advance(Duration::seconds(1));
    let revoked = app.post(&format!("/v1.0/users/{adele}/revokeSignInSessions"), &json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    let valid_from = app.app.now().unix_timestamp();
    let challenged = app.as_user(&capable).get("/v1.0/me").await;
    keyward_testkit::assert_graph_error(&challenged, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    let header = challenged.headers["www-authenticate"].to_str().expect("ascii").to_owned();
    assert!(header.contains(r#"error="insufficient_claims""#), "{header}");
    let tenant = claims(&capable)["tid"].as_str().expect("tid").to_owned();
    assert!(
        header.contains(&format!(r#"authorization_uri="{}/{tenant}/oauth2/v2.0/authorize""#, app.base_url)),
        "{header}"
    );
    let encoded = header.split("claims=\"").nth(1).and_then(|it| it.split('"').next()).expect("claims");
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64");
    let request: Value = serde_json::from_slice(&decoded).expect("JSON");
    assert_eq!(request["access_token"]["nbf"]["essential"], true);
    let not_before: i64 = request["access_token"]["nbf"]["value"].as_str().expect("value").parse().expect("number");
    assert!((valid_from - 1..=valid_from).contains(&not_before), "{request}");
    // The client that did not declare cp1 gets today's answer.
    let refused = app.as_user(&plain).get("/v1.0/me").await;
    keyward_testkit::assert_graph_error(&refused, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    let header = refused.headers["www-authenticate"].to_str().expect("ascii");
    assert!(header.contains(r#"error="invalid_token""#) && !header.contains("claims="), "{header}");
    // A claims parameter that is not a JSON object is refused.
    let (status, body) = refresh_cli(&app, "x", &[("claims", "cp1")]).await;
    assert_eq!((status, body["error"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_request")), "{body}");
}

const CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().expect("an object").keys().cloned().collect();
    keys.sort();
    keys
}

/// The sign-in log in v1.0's and beta's shapes, its filters, `$select` and `$top`; users'
/// `signInActivity`; the audit log's filters on a record's id and an initiator's name.
async fn sign_in_log_shapes_filters_and_activity(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let adele = create_user(&app, "adele").await;
    let upn = format!("adele@{DOMAIN}");
    let never = create_user(&app, "never").await;

    // An interactive sign-in on the pages from Chrome, then a refresh token redeemed.
    let mut browser = Browser::with_user_agent(&app.base_url, Some(CHROME));
    let redirect = authorize(&app, &mut browser, &upn, "").await;
    let tokens = redeem(&app, &query_param(&redirect, "code").expect("code")).await;
    let signed_in_at = app.app.now();
    app.clock.advance(Duration::minutes(5));
    let refresh = tokens["refresh_token"].as_str().expect("refresh_token");
    let (status, body) = refresh_cli(&app, refresh, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refreshed_at = app.app.now();

    // v1.0: v1.0's properties only, newest first.
    let v1 = app.get(&format!("/v1.0/auditLogs/signIns?$filter=userId eq '{adele}'")).await;
    assert_eq!(v1.status, StatusCode::OK, "{}", v1.text);
    let [refreshed, interactive] = v1.body["value"].as_array().expect("value").as_slice() else {
        panic!("two sign-ins: {}", v1.text)
    };
    assert_eq!(
        keys(interactive),
        keys(&json!({"id":0,"createdDateTime":0,"userDisplayName":0,"userPrincipalName":0,"userId":0,"appId":0,
            "appDisplayName":0,"ipAddress":0,"clientAppUsed":0,"userAgent":0,"correlationId":0,
            "conditionalAccessStatus":0,"appliedConditionalAccessPolicies":0,"isInteractive":0,"deviceDetail":0,
            "location":0,"riskDetail":0,"riskLevelAggregated":0,"riskLevelDuringSignIn":0,"riskState":0,
            "riskEventTypes":0,"riskEventTypes_v2":0,"resourceDisplayName":0,"resourceId":0,"resourceTenantId":0,
            "homeTenantId":0,"servicePrincipalId":0,"servicePrincipalName":0,"status":0})),
        "no beta-only property on v1.0"
    );
    assert_eq!(interactive["deviceDetail"]["browser"], "Chrome 120.0.0.0");
    assert_eq!(interactive["deviceDetail"]["operatingSystem"], "Windows10");
    assert_eq!(interactive["userAgent"], CHROME);
    assert_eq!((interactive["isInteractive"].clone(), refreshed["isInteractive"].clone()), (json!(true), json!(false)));
    assert_eq!(interactive["resourceDisplayName"], "Microsoft Graph");
    assert_eq!(
        (interactive["riskState"].clone(), interactive["conditionalAccessStatus"].clone()),
        (json!("none"), json!("notApplied"))
    );
    assert_eq!(interactive["userPrincipalName"], json!(upn));

    // beta: how each was made.
    let beta = app.get(&format!("/beta/auditLogs/signIns/{}", interactive["id"].as_str().expect("id"))).await;
    assert_eq!(beta.body["signInEventTypes"], json!(["interactiveUser"]), "{}", beta.text);
    assert_eq!(beta.body["authenticationMethodsUsed"], json!(["Password"]));
    assert_eq!(beta.body["authenticationDetails"][0]["authenticationMethod"], "Password");
    assert_eq!(
        (beta.body["authenticationProtocol"].clone(), beta.body["incomingTokenType"].clone()),
        (json!("none"), json!("none"))
    );
    let beta = app.get(&format!("/beta/auditLogs/signIns/{}", refreshed["id"].as_str().expect("id"))).await;
    assert_eq!(beta.body["signInEventTypes"], json!(["nonInteractiveUser"]), "{}", beta.text);
    assert_eq!(beta.body["incomingTokenType"], "refreshToken");
    let v1_one = app.get(&format!("/v1.0/auditLogs/signIns/{}", refreshed["id"].as_str().expect("id"))).await;
    assert!(v1_one.body.get("authenticationDetails").is_none() && v1_one.body.get("signInEventTypes").is_none());

    // Filters: each narrows, and one no record can meet finds nothing.
    let count = |path: String| {
        let app = &app;
        async move {
            let reply = app.get(&path).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
            reply.body["value"].as_array().expect("value").len()
        }
    };
    let mine = format!("userId eq '{adele}'");
    for (filter, expected) in [
        (format!("{mine} and startswith(appDisplayName,'keyward COMMAND')"), 2),
        (format!("{mine} and appDisplayName eq 'Somebody else'"), 0),
        (format!("{mine} and ipAddress eq '127.0.0.1'"), 2),
        (format!("{mine} and startswith(ipAddress,'10.')"), 0),
        (format!("{mine} and clientAppUsed eq 'Browser'"), 1),
        (format!("{mine} and conditionalAccessStatus eq 'notApplied'"), 2),
        (format!("{mine} and conditionalAccessStatus eq 'success'"), 0),
        (format!("{mine} and startswith(userDisplayName,'adele')"), 2),
        (format!("id eq '{}'", refreshed["id"].as_str().expect("id")), 1),
        (format!("correlationId eq '{}'", interactive["correlationId"].as_str().expect("correlation")), 1),
    ] {
        assert_eq!(count(format!("/v1.0/auditLogs/signIns?$filter={filter}")).await, expected, "{filter}");
    }
    let non_interactive =
        format!("/beta/auditLogs/signIns?$filter={mine} and signInEventTypes/any(t: t eq 'nonInteractiveUser')");
    assert_eq!(count(non_interactive).await, 1);
    let both = format!(
        "/beta/auditLogs/signIns?$filter={mine} and signInEventTypes/any(t: t eq 'nonInteractiveUser' or t eq 'interactiveUser')"
    );
    assert_eq!(count(both).await, 2);

    // $select on both logs, and pages of up to 1,000.
    let selected = app.get(&format!("/v1.0/auditLogs/signIns?$filter={mine}&$select=userId,status&$top=1000")).await;
    assert_eq!(selected.status, StatusCode::OK, "{}", selected.text);
    assert_eq!(keys(&selected.body["value"][0]), vec!["id", "status", "userId"]);
    assert!(selected.body["@odata.context"].as_str().expect("context").ends_with("signIns(id,userId,status)"));
    for bad in ["$top=1001", "$select=authenticationDetails", "$select=nothing"] {
        let reply = app.get(&format!("/v1.0/auditLogs/signIns?{bad}")).await;
        keyward_testkit::assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    let audits = app.get("/v1.0/auditLogs/directoryAudits?$select=activityDisplayName&$top=1000").await;
    assert_eq!(audits.status, StatusCode::OK, "{}", audits.text);
    assert_eq!(keys(&audits.body["value"][0]), vec!["activityDisplayName", "id"]);
    let record_id = audits.body["value"][1]["id"].as_str().expect("id").to_owned();
    let by_id = app.get(&format!("/v1.0/auditLogs/directoryAudits?$filter=id eq '{record_id}'")).await;
    assert_eq!(by_id.body["value"].as_array().map(Vec::len), Some(1), "{}", by_id.text);
    assert_eq!(by_id.body["value"][0]["id"], json!(record_id));
    let admin_name = by_id.body["value"][0]["initiatedBy"]["user"]["displayName"].as_str().expect("admin").to_owned();
    let by_name = app
        .get(&format!(
            "/v1.0/auditLogs/directoryAudits?$filter=initiatedBy/user/displayName eq '{}'",
            admin_name.to_uppercase()
        ))
        .await;
    let names: Vec<&Value> = by_name.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|it| &it["initiatedBy"]["user"]["displayName"])
        .collect();
    assert!(names.len() >= 2 && names.iter().all(|it| **it == json!(admin_name)), "{}", by_name.text);
    let nobody =
        app.get("/v1.0/auditLogs/directoryAudits?$filter=initiatedBy/user/displayName eq 'Nobody At All'").await;
    assert_eq!(nobody.body["value"], json!([]));

    // signInActivity: the last interactive, non-interactive and successful sign-ins.
    let activity = app.get(&format!("/v1.0/users/{adele}?$select=displayName,signInActivity")).await;
    assert_eq!(activity.status, StatusCode::OK, "{}", activity.text);
    let rfc = |at: time::OffsetDateTime| {
        at.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")).expect("time")
    };
    let last = &activity.body["signInActivity"];
    assert_eq!(last["lastSignInDateTime"], json!(rfc(signed_in_at)), "{}", activity.text);
    assert_eq!(last["lastSignInRequestId"], interactive["id"]);
    assert_eq!(last["lastNonInteractiveSignInDateTime"], json!(rfc(refreshed_at)));
    assert_eq!(last["lastSuccessfulSignInRequestId"], refreshed["id"]);
    let listed = app.get(&format!("/v1.0/users?$filter=id eq '{never}'&$select=id,signInActivity")).await;
    assert_eq!(listed.body["value"][0]["signInActivity"], Value::Null, "never signed in: {}", listed.text);
    let default = app.get(&format!("/beta/users/{adele}")).await;
    assert!(default.body.get("signInActivity").is_none(), "only on $select");
    let between = |from: time::OffsetDateTime, until: time::OffsetDateTime| {
        format!(
            "/v1.0/users?$filter=signInActivity/lastSignInDateTime ge {} and signInActivity/lastSignInDateTime le {}",
            rfc(from),
            rfc(until)
        )
    };
    let found = app.get(&between(signed_in_at - Duration::minutes(1), signed_in_at + Duration::minutes(1))).await;
    let ids: Vec<&Value> = found.body["value"].as_array().expect("value").iter().map(|it| &it["id"]).collect();
    assert_eq!(ids, vec![&json!(adele)], "{}", found.text);
    let later = app.get(&between(refreshed_at, refreshed_at + Duration::days(1))).await;
    assert_eq!(later.body["value"], json!([]), "the refresh is not an interactive sign-in: {}", later.text);
    // Users who never signed in have no activity to compare: not among those before a date.
    let before = format!(
        "/v1.0/users?$filter=signInActivity/lastSuccessfulSignInDateTime le {}&$top=999",
        rfc(refreshed_at + Duration::minutes(1))
    );
    let before = app.get(&before).await;
    let before_ids: Vec<&Value> = before.body["value"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", before.text))
        .iter()
        .map(|it| &it["id"])
        .collect();
    assert!(before_ids.contains(&&json!(adele)) && !before_ids.contains(&&json!(never)), "{}", before.text);
    let bad = app.get("/v1.0/users?$select=signInActivity/lastSignInDateTime").await;
    keyward_testkit::assert_graph_error(&bad, StatusCode::BAD_REQUEST, "Request_BadRequest");
    // Only readers of the sign-in log see it, themselves included.
    let own = app.as_user(tokens["access_token"].as_str().expect("access"));
    for path in [
        "/v1.0/me?$select=signInActivity".to_owned(),
        format!("/v1.0/users/{adele}?$select=signInActivity"),
        format!("/v1.0/users?$filter=signInActivity/lastSignInDateTime le {}", rfc(refreshed_at)),
    ] {
        let reply = own.get(&path).await;
        keyward_testkit::assert_graph_error(&reply, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    }
    assert_eq!(own.get("/v1.0/me?$select=displayName").await.status, StatusCode::OK);
}

/// A code or refresh token spent twice at the same moment gives tokens once, and the replay
/// revokes what the other spending got, however the two interleave: the replay may finish before
/// the first has stored its refresh token (RFC 6749 section 4.1.2; reuse detection).
async fn a_code_or_refresh_token_spent_twice_at_once_revokes_what_it_granted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    create_user(&app, "adele").await;
    let code_fields = |code: &str| {
        [
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", "keyward-cli".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", VERIFIER.to_owned()),
        ]
    };
    let spend = |fields: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(name, value)| (*name, value.as_str())).collect();
            post_form(app, &token_path(), &fields, None).await
        }
    };
    // Tokens once at most (none when the replay revoked the family before the first spending
    // stored its token); the other is refused as a grant.
    let at_most_one = |answers: [(StatusCode, Value); 2], what: &str| -> Option<String> {
        let winners: Vec<&Value> =
            answers.iter().filter(|(status, _)| *status == StatusCode::OK).map(|(_, body)| body).collect();
        assert!(winners.len() <= 1, "{what} spent twice at once gives tokens once at most: {answers:?}");
        // Refused as spent already (54005) or as revoked by the other's replay (50173).
        for (status, body) in answers.iter().filter(|(status, _)| *status != StatusCode::OK) {
            assert_eq!((*status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")), "{answers:?}");
            assert!(body["error_codes"] == json!([54005]) || body["error_codes"] == json!([50173]), "{answers:?}");
        }
        winners.first().map(|it| it["refresh_token"].as_str().expect("refresh token").to_owned())
    };
    for round in 0..4 {
        let mut browser = Browser::new(&app.base_url);
        let redirect = authorize(&app, &mut browser, &format!("adele@{DOMAIN}"), "").await;
        let code = query_param(&redirect, "code").expect("code");
        let fields = code_fields(&code).to_vec();
        let answers = tokio::join!(spend(fields.clone()), spend(fields));
        if let Some(granted) = at_most_one([answers.0, answers.1], "a code") {
            let (status, body) = refresh_cli(&app, &granted, &[]).await;
            assert_eq!(
                (status, body["error"].clone()),
                (StatusCode::BAD_REQUEST, json!("invalid_grant")),
                "round {round}: the refresh token of a replayed code still works: {body}"
            );
        }

        let fresh = authorize(&app, &mut browser, &format!("adele@{DOMAIN}"), "").await;
        let tokens = redeem(&app, &query_param(&fresh, "code").expect("code")).await;
        let token = tokens["refresh_token"].as_str().expect("refresh token").to_owned();
        let fields = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("client_id", "keyward-cli".to_owned()),
            ("refresh_token", token),
        ];
        let answers = tokio::join!(spend(fields.clone()), spend(fields));
        if let Some(rotated) = at_most_one([answers.0, answers.1], "a refresh token") {
            let (status, body) = refresh_cli(&app, &rotated, &[]).await;
            assert_eq!(
                (status, body["error_codes"].clone()),
                (StatusCode::BAD_REQUEST, json!([50173])),
                "round {round}: the token rotated from a replayed refresh token still works: {body}"
            );
        }
    }
}

/// Wrong device codes sent at once (tabs of one session) count toward the code lockout one by
/// one: no more of them are checked than the limit (five by default) before it holds.
async fn device_code_guesses_sent_at_once_meet_the_lockout(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    create_user(&app, "adele").await;
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(&format!("/{DOMAIN}/devicelogin")).await;
    assert_eq!(page.title(), "Sign in", "{}", page.text());
    let page = browser.submit(&page, "username", &[("username", &format!("adele@{DOMAIN}"))], &[]).await;
    let page = browser.submit(&page, "password", &[("current-password", PASSWORD)], &[]).await;
    assert_eq!(page.title(), "Enter code", "{}", page.text());
    let guesses: Vec<_> = (0..12)
        .map(|n| {
            let (mut tab, page) = (browser.clone(), page.clone());
            tokio::spawn(async move {
                let guess = format!("CCCC-CC{}", ["BC", "BD", "BF", "BG", "BH", "BJ"][n % 6]);
                tab.submit(&page, "device_code", &[], &[("user_code", &guess)]).await.text()
            })
        })
        .collect();
    let mut checked = 0;
    for guess in guesses {
        let text = guess.await.expect("guess");
        if text.contains("not valid") {
            checked += 1;
        } else {
            assert!(text.contains("Too many wrong codes"), "{text}");
        }
    }
    assert_eq!(checked, 5, "wrong codes checked before the lockout held");
}

/// The `kw_after` marker, which lets the sign-in an authorization request sent the user to stand
/// in for the fresh one `prompt=login` asks for, counts only for that request and while a
/// sign-in page lives: one taken from a request without a cookie cannot skip `prompt=login` later
/// in a browser whose session signed in since, nor on another request.
async fn a_sign_in_marker_counts_only_for_its_own_recent_request(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    create_user(&app, "adele").await;
    let upn = format!("adele@{DOMAIN}");
    let url = |state: &str| {
        format!(
            "/{DOMAIN}/oauth2/v2.0/authorize?client_id=keyward-cli&response_type=code&redirect_uri={}&scope=openid\
             &code_challenge={CHALLENGE}&code_challenge_method=S256&prompt=login&state={state}",
            keyward_app::url_encode(REDIRECT)
        )
    };
    // A marker, from a request sent without any session.
    let mut stranger = Browser::new(&app.base_url);
    let login = stranger.get(&url("s1")).await;
    assert_eq!(login.title(), "Sign in", "{}", login.path);
    let back = query_param(&login.path, "return_to").expect("return_to");
    let marker = query_param(&back, "kw_after").expect("kw_after");
    // A browser signs in after the marker was made.
    app.clock.advance(Duration::seconds(5));
    let mut browser = Browser::new(&app.base_url);
    authorize(&app, &mut browser, &upn, "").await;
    let with = |state: &str| format!("{}&kw_after={}", url(state), keyward_app::url_encode(&marker));
    let other = browser.get(&with("s2")).await;
    assert_eq!(other.title(), "Sign in", "a marker made for another request: {}", other.path);
    app.clock.advance(Duration::minutes(31));
    let late = browser.get(&with("s1")).await;
    assert_eq!(late.title(), "Sign in", "a marker older than a sign-in page: {}", late.path);
}

/// RFC 6749 §3.1: no parameter more than once. The token, device-code and revocation endpoints
/// answer a repeated one with `invalid_request` (AADSTS90011, Entra's "Request is ambiguous")
/// without repeating its values and without acting; the authorization endpoint answers on a page
/// when the client or redirect URI is repeated, otherwise back at the redirect URI. A parameter
/// without a value counts as not sent. A body that is not a form carries no parameters, as at
/// Entra: the answer names the grant type it misses, in the OAuth error form.
async fn repeated_parameters_and_bodies_that_are_not_forms(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    create_user(&app, "adele").await;
    let upn = format!("adele@{DOMAIN}");
    let mut browser = Browser::new(&app.base_url);
    let redirect = authorize(&app, &mut browser, &upn, "").await;
    let tokens = redeem(&app, &query_param(&redirect, "code").expect("code")).await;
    let refresh = tokens["refresh_token"].as_str().expect("refresh").to_owned();

    let ambiguous = |status: StatusCode, body: &Value, name: &str| {
        assert_eq!(
            (status, body["error"].clone(), body["error_codes"].clone()),
            (StatusCode::BAD_REQUEST, json!("invalid_request"), json!([90011])),
            "{body}"
        );
        let description = body["error_description"].as_str().expect("description");
        assert!(description.contains(&format!("'{name}'")), "{description}");
    };
    // The refresh token twice: refused, and the token is not spent.
    let (status, body) = post_form(
        &app,
        &token_path(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "keyward-cli"),
            ("refresh_token", &refresh),
            ("refresh_token", "another-token"),
        ],
        None,
    )
    .await;
    ambiguous(status, &body, "refresh_token");
    assert!(!body.to_string().contains("another-token"), "values are not repeated back: {body}");
    // The same name percent-encoded is the same parameter.
    let (status, body) = post_form(
        &app,
        &token_path(),
        &[("grant_type", "refresh_token"), ("client_id", "keyward-cli"), ("refresh_token", &refresh)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the refused requests spent nothing: {body}");
    let refresh = body["refresh_token"].as_str().expect("rotated").to_owned();
    let encoded = format!(
        "grant_type=refresh_token&client_id=keyward-cli&refresh_token={}&grant%5Ftype=client_credentials",
        keyward_app::url_encode(&refresh)
    );
    let response = app
        .client
        .post(format!("{}{}", app.base_url, token_path()))
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encoded)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    ambiguous(status, &body, "grant_type");
    // A secret sent twice is never echoed.
    let (status, body) = post_form(
        &app,
        &token_path(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "keyward-cli"),
            ("client_secret", "first-secret-value"),
            ("client_secret", "second-secret-value"),
        ],
        None,
    )
    .await;
    ambiguous(status, &body, "client_secret");
    assert!(!body.to_string().contains("secret-value"), "{body}");
    // A secret both with HTTP Basic and in the body, the same or not: one method a request
    // (RFC 6749 section 2.3), so neither is taken; each alone still works.
    let created = app.post("/v1.0/applications", &json!({"displayName": "Two-secret daemon"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let app_id = created.body["appId"].as_str().expect("appId").to_owned();
    let added = app
        .post(&format!("/v1.0/applications/{}/addPassword", created.body["id"].as_str().expect("id")), &json!({}))
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    let secret = added.body["secretText"].as_str().expect("secret").to_owned();
    let scope = "https://graph.microsoft.com/.default";
    for body_secret in [secret.as_str(), "a-different-secret-value"] {
        let (status, body) = post_form(
            &app,
            &token_path(),
            &[("grant_type", "client_credentials"), ("scope", scope), ("client_secret", body_secret)],
            Some((&app_id, &secret)),
        )
        .await;
        ambiguous(status, &body, "client_secret");
        let text = body.to_string();
        assert!(
            body.get("access_token").is_none() && !text.contains("secret-value") && !text.contains(&secret),
            "{body}"
        );
    }
    // An empty password with HTTP Basic is no secret: the body's counts.
    let (status, body) = post_form(
        &app,
        &token_path(),
        &[("grant_type", "client_credentials"), ("scope", scope), ("client_secret", &secret)],
        Some((&app_id, "")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "an empty Basic password and the body's secret: {body}");
    let (status, body) = post_form(
        &app,
        &token_path(),
        &[("grant_type", "client_credentials"), ("scope", scope)],
        Some((&app_id, &secret)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "HTTP Basic alone: {body}");
    let (status, body) = post_form(
        &app,
        &token_path(),
        &[("grant_type", "client_credentials"), ("scope", scope), ("client_id", &app_id), ("client_secret", &secret)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the body alone: {body}");
    // A parameter without a value counts as not sent: the refresh goes through.
    let (status, body) = refresh_cli(
        &app,
        &refresh,
        &[("scope", ""), ("scope", "openid offline_access https://graph.microsoft.com/.default")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "an empty value is no second value: {body}");
    let refresh = body["refresh_token"].as_str().expect("rotated").to_owned();
    let (status, body) = post_form(
        &app,
        &format!("/{DOMAIN}/oauth2/v2.0/devicecode"),
        &[("client_id", "keyward-cli"), ("client_id", "keyward-cli"), ("scope", "openid")],
        None,
    )
    .await;
    ambiguous(status, &body, "client_id");
    let (status, body) = post_form(
        &app,
        &format!("/{DOMAIN}/oauth2/v2.0/revoke"),
        &[("client_id", "keyward-cli"), ("token", &refresh), ("token", &refresh)],
        None,
    )
    .await;
    ambiguous(status, &body, "token");
    let (status, body) = refresh_cli(&app, &refresh, &[]).await;
    assert_eq!(status, StatusCode::OK, "the refused revocation revoked nothing: {body}");
    let refresh = body["refresh_token"].as_str().expect("rotated").to_owned();

    // A JSON body, or one without a type, carries no parameters: Entra's AADSTS900144 for the
    // grant type, as JSON.
    for content_type in [Some("application/json"), None] {
        let mut request = app
            .client
            .post(format!("{}{}", app.base_url, token_path()))
            .body(r#"{"grant_type":"client_credentials","client_id":"keyward-cli"}"#);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let media = response.headers().get(reqwest::header::CONTENT_TYPE).cloned();
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(
            (status, body["error"].clone(), body["error_codes"].clone()),
            (StatusCode::BAD_REQUEST, json!("invalid_request"), json!([900144])),
            "{content_type:?}: {body}"
        );
        assert!(body["error_description"].as_str().is_some_and(|it| it.contains("'grant_type'")), "{body}");
        assert!(media.is_some_and(|it| it.to_str().is_ok_and(|it| it.starts_with("application/json"))));
    }
    // The form's type with a charset is still a form.
    let response = app
        .client
        .post(format!("{}{}", app.base_url, token_path()))
        .header(reqwest::header::CONTENT_TYPE, "Application/X-WWW-Form-URLEncoded; charset=UTF-8")
        .body(format!(
            "grant_type=refresh_token&client_id=keyward-cli&refresh_token={}",
            keyward_app::url_encode(&refresh)
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    let refresh = body["refresh_token"].as_str().expect("rotated").to_owned();

    // The authorization endpoint: a repeated redirect URI or client is a page, no redirect.
    let base = format!(
        "/{DOMAIN}/oauth2/v2.0/authorize?client_id=keyward-cli&response_type=code&redirect_uri={}\
         &code_challenge={CHALLENGE}&code_challenge_method=S256",
        keyward_app::url_encode(REDIRECT)
    );
    let mut stranger = Browser::new(&app.base_url);
    for extra in ["&redirect_uri=https%3A%2F%2Fevil.example%2F", "&client_id=keyward-cli"] {
        let page = stranger.get(&format!("{base}{extra}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{extra}: {}", page.path);
        assert!(page.text().contains("AADSTS90011"), "{extra}: {}", page.text());
        assert!(!page.path.starts_with(REDIRECT) && !page.html.contains("evil.example"), "{}", page.path);
    }
    // A repeated client is a page even when another parameter was repeated before it.
    let page = stranger.get(&format!("{base}&prompt=none&prompt=login&client_id=other-client")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.path);
    assert!(page.text().contains("AADSTS90011") && page.text().contains("'client_id'"), "{}", page.text());
    // Any other parameter twice goes back to the client, with no code, even when signed in.
    let back = browser.get(&format!("{base}&state=one&prompt=none&prompt=login")).await;
    assert!(back.path.starts_with(REDIRECT), "{}", back.path);
    assert_eq!(query_param(&back.path, "error").as_deref(), Some("invalid_request"), "{}", back.path);
    assert!(query_param(&back.path, "error_description").is_some_and(|it| it.contains("'prompt'")), "{}", back.path);
    assert_eq!(query_param(&back.path, "state").as_deref(), Some("one"));
    assert!(query_param(&back.path, "code").is_none(), "{}", back.path);
    // The same through the form-posted authorization request.
    let fields = [
        ("client_id", "keyward-cli"),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("nonce", "a"),
        ("nonce", "b"),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()));
    let posted = browser.post_form(&format!("/{DOMAIN}/oauth2/v2.0/authorize"), &fields).await;
    assert!(posted.path.starts_with(REDIRECT), "{}", posted.path);
    assert_eq!(query_param(&posted.path, "error").as_deref(), Some("invalid_request"), "{}", posted.path);
    assert!(query_param(&posted.path, "code").is_none(), "{}", posted.path);

    // Parameters that may repeat (RFC 8707's `resource`) or that nothing reads are not refused:
    // the first value counts.
    let (status, body) = refresh_cli(
        &app,
        &refresh,
        &[("resource", "https://a.example"), ("resource", "https://b.example"), ("x-extra", "1"), ("x-extra", "2")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A marker named in another encoding (`kw%5Fafter`) is dropped with the sign-in's own, not
    // left to make the request ambiguous after the sign-in.
    let mut fresh = Browser::new(&app.base_url);
    let done = authorize(&app, &mut fresh, &upn, "&kw%5Fafter=1").await;
    assert!(done.starts_with(REDIRECT) && query_param(&done, "code").is_some(), "{done}");
}

keyward_testkit::on_both_backends!(
    repeated_parameters_and_bodies_that_are_not_forms,
    claims_challenge_for_cae_capable_clients,
    a_sign_in_marker_counts_only_for_its_own_recent_request,
    device_code_guesses_sent_at_once_meet_the_lockout,
    a_code_or_refresh_token_spent_twice_at_once_revokes_what_it_granted,
    sign_in_log_shapes_filters_and_activity,
    web_codes_need_the_secret,
    openidconnect_relying_party,
    provider_edges,
    discovery_and_code_flow,
    refresh_rotation_and_revocation,
    client_credentials_with_a_role,
    client_credentials_on_a_kept_client_follow_changes_made_on_another_node,
    application_sign_in_entries_are_written_under_their_client_version,
    device_code_flow,
);
