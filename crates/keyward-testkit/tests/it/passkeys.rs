//! Passkeys through Graph's provisioning API. The browser and the authenticator are 1Password's
//! passkey-rs (a WebAuthn client and a software CTAP2 authenticator), independent of Keyward's
//! verifier: they read Keyward's creation options as WebAuthn's and make the credential Keyward
//! must accept, and a tampered or replayed one it must refuse.

use keyward_core::authz::roles;
use keyward_testkit::{Backend, DOMAIN, TestApp, assert_graph_error};
use passkey_authenticator::{Authenticator, MemoryStore, UiHint, UserCheck, UserValidationMethod};
use passkey_client::{Client, DefaultClientData};
use passkey_types::ctap2::{Aaguid, Ctap2Error};
use passkey_types::{Passkey, webauthn};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A user who is present and verified (a PIN or biometric) whenever asked.
struct VerifiedUser;

#[async_trait::async_trait]
impl UserValidationMethod for VerifiedUser {
    type PasskeyItem = Passkey;

    async fn check_user<'a>(
        &self,
        _hint: UiHint<'a, Passkey>,
        presence: bool,
        verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck { presence, verification })
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }
}

type Device = Client<MemoryStore, VerifiedUser, passkey_crypto::AvailableBackend, public_suffix::PublicSuffixList, ()>;

const AAGUID: [u8; 16] = [0x11; 16];

/// A security key with its own credential store.
fn security_key() -> Device {
    let authenticator =
        Authenticator::new(Aaguid(AAGUID), MemoryStore::new(), VerifiedUser, passkey_crypto::AvailableBackend);
    Client::new(authenticator).allows_insecure_localhost(true)
}

/// A server whose public URL names `localhost` (a WebAuthn relying party cannot be an address).
async fn spawn(backend: Backend) -> TestApp {
    TestApp::spawn_configured(backend, |config| config.public_url = config.public_url.replace("127.0.0.1", "localhost"))
        .await
}

fn origin(app: &TestApp) -> String {
    app.base_url.replace("127.0.0.1", "localhost")
}

/// Makes a passkey from Keyward's `creationOptions` as a browser would and returns the body of
/// `POST …/fido2Methods`.
async fn make(device: &mut Device, options: &Value, origin: &str, name: &str) -> Result<Value, String> {
    let public_key: webauthn::PublicKeyCredentialCreationOptions =
        serde_json::from_value(options["publicKey"].clone()).map_err(|err| format!("options: {err}"))?;
    let origin = url::Url::parse(origin).expect("origin");
    let created = device
        .register(&origin, webauthn::CredentialCreationOptions { public_key }, DefaultClientData)
        .await
        .map_err(|err| format!("{err:?}"))?;
    let created = serde_json::to_value(&created).expect("json");
    Ok(json!({
        "@odata.type": "#microsoft.graph.fido2AuthenticationMethod",
        "displayName": name,
        "publicKeyCredential": {
            "id": created["id"],
            "response": {
                "clientDataJSON": created["response"]["clientDataJSON"],
                "attestationObject": created["response"]["attestationObject"],
            },
            "clientExtensionResults": {},
        },
    }))
}

fn b64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).expect("Base64URL")
}

fn unb64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn user(app: &TestApp, alias: &str, role: Option<&str>) -> String {
    let body = app.create_user(alias, &format!("{alias} Keys")).await;
    let id = body["id"].as_str().expect("id").to_owned();
    if let Some(role) = role {
        app.assign_role(&id, role, "/").await;
    }
    id
}

async fn provisioning_through_graph(backend: Backend) {
    let app = spawn(backend).await;
    let adele = user(&app, "adele", None).await;
    let options_path = format!("/v1.0/users/{adele}/authentication/fido2Methods/creationOptions");
    let collection = format!("/v1.0/users/{adele}/authentication/fido2Methods");

    // Passkeys are off until an administrator turns them on.
    let fido2 = "/v1.0/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/fido2";
    assert_eq!(app.get(fido2).await.body["state"], "disabled");
    assert_graph_error(&app.get(&options_path).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_eq!(app.patch(fido2, &json!({"state": "enabled"})).await.status, StatusCode::NO_CONTENT);

    // Options in Graph's shape (the SDK calls them as a function, `creationOptions()`).
    let options = app.get(&format!("{options_path}()")).await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.text);
    let public_key = &options.body["publicKey"];
    assert_eq!(public_key["rp"]["id"], "localhost");
    assert_eq!(public_key["user"]["name"], format!("adele@{DOMAIN}"));
    assert_eq!(b64(public_key["challenge"].as_str().expect("challenge")).len(), 32);
    assert_eq!(public_key["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(public_key["excludeCredentials"], json!([]));
    assert!(options.body["challengeTimeoutDateTime"].is_string());

    // Registered; new options name it in excludeCredentials, so the key is not registered twice.
    let mut key = security_key();
    let body = make(&mut key, &options.body, &origin(&app), "Adele's key").await.expect("made");
    let created = app.post(&collection, &body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["displayName"], "Adele's key");
    assert_eq!(created.body["aaGuid"], "11111111-1111-1111-1111-111111111111");
    assert_eq!(created.body["attestationLevel"], "notAttested");
    assert!(matches!(created.body["passkeyType"].as_str(), Some("deviceBound" | "synced")), "{}", created.text);
    let id = created.body["id"].as_str().expect("id").to_owned();
    // A replay of the same response: its challenge is spent.
    let replay = app.post(&collection, &body).await;
    assert_graph_error(&replay, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(replay.text.contains("challenge"), "{}", replay.text);
    let again = app.get(&options_path).await;
    let excluded = &again.body["publicKey"]["excludeCredentials"];
    assert_eq!(excluded[0]["id"], body["publicKeyCredential"]["id"], "{}", again.text);

    // Tampered responses are refused and change nothing: another origin, another challenge.
    let fresh = app.get(&options_path).await;
    let good = make(&mut security_key(), &fresh.body, &origin(&app), "other").await.expect("made");
    let client_data = b64(good["publicKeyCredential"]["response"]["clientDataJSON"].as_str().expect("cdj"));
    let mut parsed: Value = serde_json::from_slice(&client_data).expect("client data");
    for (field, value, says) in
        [("origin", json!("https://evil.test"), "origin"), ("challenge", json!(unb64(&[7; 32])), "challenge")]
    {
        let mut forged = parsed.clone();
        forged[field] = value;
        let mut body = good.clone();
        body["publicKeyCredential"]["response"]["clientDataJSON"] = json!(unb64(forged.to_string().as_bytes()));
        let refused = app.post(&collection, &body).await;
        assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
        assert!(refused.text.contains(says), "{}", refused.text);
    }
    parsed["type"] = json!("webauthn.get");
    let mut wrong_type = good.clone();
    wrong_type["publicKeyCredential"]["response"]["clientDataJSON"] = json!(unb64(parsed.to_string().as_bytes()));
    assert_graph_error(&app.post(&collection, &wrong_type).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let garbage =
        json!({"publicKeyCredential": {"id": "x", "response": {"clientDataJSON": "%%", "attestationObject": ""}}});
    assert_graph_error(&app.post(&collection, &garbage).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_graph_error(
        &app.post(&collection, &json!({"displayName": "x"})).await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    let mut huge = good.clone();
    huge["publicKeyCredential"]["response"]["attestationObject"] = json!("A".repeat(70_000));
    let refused = app.post(&collection, &huge).await;
    assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(refused.text.contains("too long"), "{}", refused.text);

    // Listed with the user's methods; read and deleted like any method.
    let listed = app.get(&collection).await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1), "{}", listed.text);
    let methods = app.get(&format!("/v1.0/users/{adele}/authentication/methods")).await;
    assert!(methods.text.contains("#microsoft.graph.fido2AuthenticationMethod"), "{}", methods.text);
    assert!(!methods.text.contains("publicKeyCredential"), "the key material is never read back");
    assert_eq!(app.get(&format!("{collection}/{id}")).await.status, StatusCode::OK);

    // Who may: not a user for someone else; not an Authentication Administrator for an
    // administrator; not oneself without recent MFA.
    user(&app, "helpdesk", Some(roles::AUTHENTICATION_ADMINISTRATOR)).await;
    let grace = user(&app, "grace", Some(roles::GLOBAL_ADMINISTRATOR)).await;
    let helpdesk = app.token_for(&format!("helpdesk@{DOMAIN}")).await;
    let adele_token = app.token_for(&format!("adele@{DOMAIN}")).await;
    let grace_options = format!("/v1.0/users/{grace}/authentication/fido2Methods/creationOptions");
    assert_eq!(app.as_user(&helpdesk).get(&grace_options).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.as_user(&helpdesk).get(&options_path).await.status, StatusCode::OK);
    let other = format!("/v1.0/users/{grace}/authentication/fido2Methods/creationOptions");
    assert_eq!(app.as_user(&adele_token).get(&other).await.status, StatusCode::FORBIDDEN);
    let mine = app.as_user(&adele_token).get("/v1.0/me/authentication/fido2Methods/creationOptions").await;
    assert_eq!(mine.status, StatusCode::FORBIDDEN, "{}", mine.text);

    // The methods policy: registration off, then passkeys off for her.
    assert_eq!(
        app.patch(fido2, &json!({"isSelfServiceRegistrationAllowed": false})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_graph_error(&app.get(&options_path).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let targets =
        json!({"isSelfServiceRegistrationAllowed": true, "excludeTargets": [{"id": adele, "targetType": "user"}]});
    assert_eq!(app.patch(fido2, &targets).await.status, StatusCode::NO_CONTENT);
    assert_graph_error(&app.get(&options_path).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_eq!(app.delete(fido2).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(fido2).await.body["state"], "disabled", "back to the default");

    // Deleted, and audited both ways with Entra's wording.
    assert_eq!(app.delete(&format!("{collection}/{id}")).await.status, StatusCode::NO_CONTENT);
    assert_graph_error(
        &app.delete(&format!("{collection}/{id}")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    assert_eq!(app.get(&collection).await.body["value"], json!([]));
    let records = app.audit_for(&adele).await;
    let reasons: Vec<&str> = records.iter().map(|it| it.result_reason.as_str()).collect();
    assert!(reasons.iter().any(|it| it.starts_with("Admin registered Passkey")), "{reasons:?}");
    assert!(reasons.iter().any(|it| it.starts_with("Admin deleted Passkey")), "{reasons:?}");
    let activities: Vec<&str> = records.iter().map(|it| it.activity_display_name.as_str()).collect();
    assert!(activities.contains(&"Get passkey creation options"), "{activities:?}");
    let all = format!("{records:?}");
    assert!(
        !all.contains(body["publicKeyCredential"]["id"].as_str().expect("id")),
        "no credential ids in the audit log"
    );
}

keyward_testkit::on_both_backends!(provisioning_through_graph);
