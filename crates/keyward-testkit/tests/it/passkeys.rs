//! Passkeys through Graph's provisioning API. The browser and the authenticator are 1Password's
//! passkey-rs (a WebAuthn client and a software CTAP2 authenticator), independent of Keyward's
//! verifier: they read Keyward's creation options as WebAuthn's and make the credential Keyward
//! must accept, and a tampered or replayed one it must refuse.

use keyward_core::authz::roles;
use keyward_testkit::browser::{Browser, Page};
use keyward_testkit::{Backend, DOMAIN, TestApp, assert_graph_error};
use passkey_authenticator::{
    Authenticator, CredentialStore, MemoryStore, StoreInfo, UiHint, UserCheck, UserValidationMethod,
};
use passkey_client::{Client, DefaultClientData};
use passkey_types::ctap2::make_credential::{Options, PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity};
use passkey_types::ctap2::{Aaguid, Ctap2Error, StatusCode as CtapStatus};
use passkey_types::webauthn::PublicKeyCredentialDescriptor;
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

/// An authenticator's credentials: passkey-rs's memory store, which also offers every
/// credential when the relying party names none (a discoverable credential, as platform
/// authenticators and security keys with room keep them).
#[derive(Clone, Default)]
struct Keyring(MemoryStore);

#[async_trait::async_trait]
impl CredentialStore for Keyring {
    type PasskeyItem = Passkey;

    async fn find_credentials(
        &self,
        ids: Option<&[PublicKeyCredentialDescriptor]>,
        rp_id: &str,
        user_handle: Option<&[u8]>,
    ) -> Result<Vec<Passkey>, CtapStatus> {
        match ids {
            Some(list) if !list.is_empty() => self.0.find_credentials(ids, rp_id, user_handle).await,
            _ if self.0.is_empty() => Err(Ctap2Error::NoCredentials.into()),
            _ => Ok(self.0.values().cloned().collect()),
        }
    }

    async fn save_credential(
        &mut self,
        cred: Passkey,
        user: PublicKeyCredentialUserEntity,
        rp: PublicKeyCredentialRpEntity,
        options: Options,
    ) -> Result<(), CtapStatus> {
        self.0.save_credential(cred, user, rp, options).await
    }

    async fn update_credential(&mut self, cred: &Passkey) -> Result<(), CtapStatus> {
        self.0.update_credential(cred).await
    }

    async fn get_info(&self) -> StoreInfo {
        self.0.get_info().await
    }
}

type Device = Client<Keyring, VerifiedUser, passkey_crypto::AvailableBackend, public_suffix::PublicSuffixList, ()>;

const AAGUID: [u8; 16] = [0x11; 16];

/// A security key with its own credential store.
fn security_key() -> Device {
    let authenticator =
        Authenticator::new(Aaguid(AAGUID), Keyring::default(), VerifiedUser, passkey_crypto::AvailableBackend);
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
    // Beta's function with an argument: a longer challenge, within Graph's bounds; not on v1.0.
    let call = |version: &str, minutes: &str| {
        format!(
            "/{version}/users/{adele}/authentication/fido2Methods/creationOptions(challengeTimeoutInMinutes={minutes})"
        )
    };
    let longer = app.get(&call("beta", "60")).await;
    assert_eq!(longer.status, StatusCode::OK, "{}", longer.text);
    let until = time::OffsetDateTime::parse(
        longer.body["challengeTimeoutDateTime"].as_str().expect("time"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    assert_eq!((until - app.app.now()).whole_minutes(), 60, "{}", longer.text);
    for refused in [call("v1.0", "60"), call("beta", "4"), call("beta", "43201"), call("beta", "soon")] {
        assert_graph_error(&app.get(&refused).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }

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

    // The registration report counts it: passwordless and MFA capable, by its kind.
    let details = "/v1.0/reports/authenticationMethods/userRegistrationDetails";
    let row = app.get(&format!("{details}/{adele}")).await;
    assert_eq!(row.status, StatusCode::OK, "{}", row.text);
    assert_eq!(
        (row.body["isPasswordlessCapable"].as_bool(), row.body["isMfaCapable"].as_bool()),
        (Some(true), Some(true))
    );
    let kind = if created.body["passkeyType"] == "synced" { "passKeySynced" } else { "passKeyDeviceBound" };
    assert_eq!(row.body["methodsRegistered"], json!([kind]), "{}", row.text);
    let filtered = app
        .get(&format!("{details}?$filter=methodsRegistered/any(m:m eq '{kind}') and isPasswordlessCapable eq true"))
        .await;
    let ids: Vec<&str> =
        filtered.body["value"].as_array().expect("rows").iter().filter_map(|it| it["id"].as_str()).collect();
    assert_eq!(ids, vec![adele.as_str()], "{}", filtered.text);
    let by_method = app.get("/v1.0/reports/authenticationMethods/usersRegisteredByMethod()").await;
    let counts = by_method.body["userRegistrationMethodCounts"].as_array().expect("counts").clone();
    assert!(counts.iter().any(|it| it["authenticationMethod"] == kind && it["userCount"] == 1), "{}", by_method.text);
    let by_feature = app.get("/v1.0/reports/authenticationMethods/usersRegisteredByFeature()").await;
    assert!(
        by_feature.body["userRegistrationFeatureCounts"]
            .as_array()
            .expect("counts")
            .iter()
            .any(|it| it["feature"] == "passwordlessCapable" && it["userCount"] == 1),
        "{}",
        by_feature.text
    );

    // Key restrictions: a blocked model is not registered; an allow list naming it is; nonsense
    // is refused and changes nothing.
    let aaguid = "11111111-1111-1111-1111-111111111111";
    let block = json!({"keyRestrictions": {"isEnforced": true, "enforcementType": "block", "aaGuids": [aaguid.to_uppercase()]}});
    assert_eq!(app.patch(fido2, &block).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(fido2).await.body["keyRestrictions"]["aaGuids"], json!([aaguid]));
    let fresh = app.get(&options_path).await;
    let blocked = make(&mut security_key(), &fresh.body, &origin(&app), "blocked").await.expect("made");
    let refused = app.post(&collection, &blocked).await;
    assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(refused.text.contains("authenticator model"), "{}", refused.text);
    for nonsense in [
        json!({"keyRestrictions": {"isEnforced": true, "enforcementType": "allow", "aaGuids": []}}),
        json!({"keyRestrictions": {"aaGuids": ["not-a-guid"]}}),
        json!({"keyRestrictions": {"enforcementType": "maybe"}}),
        json!({"keyRestrictions": {"colour": "blue"}}),
        json!({"keyRestrictions": [aaguid]}),
        json!({"keyRestrictions": {"enforcementType": "allow"}}),
    ] {
        assert_graph_error(&app.patch(fido2, &nonsense).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    assert_eq!(app.get(fido2).await.body["keyRestrictions"]["enforcementType"], "block", "unchanged");
    let allow = json!({"keyRestrictions": {"isEnforced": true, "enforcementType": "allow", "aaGuids": [aaguid]}});
    assert_eq!(app.patch(fido2, &allow).await.status, StatusCode::NO_CONTENT);
    let fresh = app.get(&options_path).await;
    let allowed = make(&mut security_key(), &fresh.body, &origin(&app), "allowed").await.expect("made");
    let second = app.post(&collection, &allowed).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    let second_id = second.body["id"].as_str().expect("id");
    assert_eq!(app.delete(&format!("{collection}/{second_id}")).await.status, StatusCode::NO_CONTENT);
    let off = json!({"keyRestrictions": {"isEnforced": false, "enforcementType": "block", "aaGuids": []}});
    assert_eq!(app.patch(fido2, &off).await.status, StatusCode::NO_CONTENT);

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
    if created.body["passkeyType"] == "deviceBound" {
        // The Device Registration Service's records, besides the Authentication Methods service's.
        let device: Vec<_> =
            records.iter().filter(|it| it.logged_by_service == "Device Registration Service").collect();
        let names: Vec<&str> = device.iter().map(|it| it.activity_display_name.as_str()).collect();
        assert!(names.contains(&"Add Passkey (device-bound)"), "{names:?}");
        assert!(names.contains(&"Delete Passkey (device-bound)"), "{names:?}");
    }
    let all = format!("{records:?}");
    assert!(
        !all.contains(body["publicKeyCredential"]["id"].as_str().expect("id")),
        "no credential ids in the audit log"
    );
}

/// Reads the WebAuthn options a page's passkey form carries (`data-options`).
fn page_options(page: &Page, step: &str) -> Value {
    let form = page.form(step).unwrap_or_else(|| panic!("no '{step}' form on '{}': {}", page.title(), page.text()));
    serde_json::from_str(&form.attr("data-options").expect("data-options")).expect("options JSON")
}

/// What the page's script does with `navigator.credentials.get`: the assertion as JSON.
async fn assert_with(device: &mut Device, options: &Value, origin: &str) -> Result<String, String> {
    let public_key: webauthn::PublicKeyCredentialRequestOptions =
        serde_json::from_value(options.clone()).map_err(|err| format!("options: {err}"))?;
    let origin = url::Url::parse(origin).expect("origin");
    let answer = device
        .authenticate(&origin, webauthn::CredentialRequestOptions { public_key }, DefaultClientData)
        .await
        .map_err(|err| format!("{err:?}"))?;
    Ok(serde_json::to_string(&answer).expect("json"))
}

/// What the page's script does with `navigator.credentials.create`.
async fn create_with(device: &mut Device, options: &Value, origin: &str) -> String {
    let public_key: webauthn::PublicKeyCredentialCreationOptions =
        serde_json::from_value(options.clone()).expect("creation options");
    let origin = url::Url::parse(origin).expect("origin");
    let created = device
        .register(&origin, webauthn::CredentialCreationOptions { public_key }, DefaultClientData)
        .await
        .expect("created");
    serde_json::to_string(&created).expect("json")
}

/// A security key that counts its signatures, and a copy of it (a cloned authenticator).
fn counting_key() -> Device {
    let mut key = security_key();
    key.authenticator_mut().set_make_credentials_with_signature_counter(true);
    key
}

fn copy_of(key: &Device) -> Device {
    let authenticator = Authenticator::new(
        Aaguid(AAGUID),
        key.authenticator().store().clone(),
        VerifiedUser,
        passkey_crypto::AvailableBackend,
    );
    Client::new(authenticator).allows_insecure_localhost(true)
}

fn last_detail(entries: &[Value]) -> (i64, String, String) {
    let last = entries.last().expect("a sign-in");
    let details = last["authenticationDetails"].as_array().expect("details");
    let step = details.last().expect("a step");
    (
        last["status"]["errorCode"].as_i64().expect("code"),
        step["authenticationMethod"].as_str().unwrap_or_default().to_owned(),
        step["authenticationStepResultDetail"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The registration interrupt after a Temporary Access Pass creates a passkey; the passkey then
/// signs in alone (no user name: a discoverable credential), and as the second factor after a
/// password; replays, another origin, a copied authenticator and the policy are refused.
async fn passkeys_on_the_pages(backend: Backend) {
    let app = spawn(backend).await;
    let origin = origin(&app);
    let fido2 = "/v1.0/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/fido2";
    // Passkeys off: the first page offers none.
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    assert!(page.form("passkey").is_none(), "{}", page.html);
    assert_eq!(app.patch(fido2, &json!({"state": "enabled"})).await.status, StatusCode::NO_CONTENT);
    app.set_security_defaults(true).await;
    let adele = user(&app, "adele", None).await;
    let upn = format!("adele@{DOMAIN}");
    let pass = app.post(&format!("/v1.0/users/{adele}/authentication/temporaryAccessPassMethods"), &json!({})).await;
    let pass = pass.body["temporaryAccessPass"].as_str().expect("a pass").to_owned();

    // A pass leads to the interrupt, which offers a passkey; the page creates one.
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    assert!(page.html.contains("/assets/passkey.js"), "the page loads the passkey script");
    let page = browser.submit(&page, "username", &[("username", &upn)], &[]).await;
    let page = browser.submit(&page, "password", &[("current-password", &pass)], &[]).await;
    assert_eq!(page.title(), "More information required", "{}", page.text());
    let page = browser.submit(&page, "more_info", &[], &[("method", "passkey")]).await;
    assert_eq!(page.title(), "Create a passkey", "{}", page.text());
    let options = page_options(&page, "register_passkey");
    assert_eq!(options["authenticatorSelection"]["residentKey"], "preferred");
    assert_eq!(options["authenticatorSelection"]["userVerification"], "required");
    let mut key = counting_key();
    // passkey-rs makes a discoverable credential only when one is required; a platform
    // authenticator (or a security key with room) makes one when it is preferred.
    let mut discoverable = options.clone();
    discoverable["authenticatorSelection"]["residentKey"] = json!("required");
    let created = create_with(&mut key, &discoverable, &origin).await;
    let page =
        browser.submit(&page, "register_passkey", &[], &[("credential", &created), ("value", "Adele's key")]).await;
    assert!(page.text().contains("Signed in as"), "{}", page.text());
    assert!(page.text().contains("Adele's key"), "the account page lists it: {}", page.text());
    let registered = app.audit_for(&adele).await;
    assert!(
        registered.iter().any(|it| it.activity_display_name == "User registered security info"
            && it.result_reason.starts_with("User registered Passkey")),
        "{registered:?}"
    );
    // The same authenticator cannot be registered twice: the next options exclude it.
    let page = browser.submit(&page, "add_passkey", &[], &[]).await;
    let again = page_options(&page, "register_passkey");
    assert_eq!(again["excludeCredentials"].as_array().map(Vec::len), Some(1), "{again}");
    // Left open past the ten minutes of recent MFA, the page cannot add one.
    app.clock.advance(time::Duration::minutes(11));
    let mut late_key = counting_key();
    let mut late_options = again.clone();
    late_options["authenticatorSelection"]["residentKey"] = json!("required");
    let late = create_with(&mut late_key, &late_options, &origin).await;
    let page = browser.submit(&page, "register_passkey", &[], &[("credential", &late), ("value", "Late")]).await;
    assert!(page.text().contains("To add a method"), "{}", page.text());
    assert!(!page.text().contains("Late"), "{}", page.text());

    // Passwordless: the first page's options name no credential; the passkey picks the account.
    let mut fresh = Browser::new(&app.base_url);
    let page = fresh.get(&format!("/{DOMAIN}/login")).await;
    let options = page_options(&page, "passkey");
    assert_eq!(options["allowCredentials"], json!([]));
    assert_eq!(options["rpId"], "localhost");
    let copy = copy_of(&key);
    let answer = assert_with(&mut key, &options, &origin).await.expect("asserted");
    let mut replayer = Browser::new(&app.base_url);
    replayer.cookies = fresh.cookies.clone();
    app.clock.advance(time::Duration::seconds(1));
    let signed_in = fresh.submit(&page, "passkey", &[], &[("credential", &answer)]).await;
    assert!(signed_in.text().contains("Signed in as"), "{}", signed_in.text());
    let (code, method, result) = last_detail(&app.sign_in_log(&upn).await);
    assert_eq!((code, result.as_str()), (0, "MFA successfully completed"));
    assert!(method.starts_with("Passkey ("), "Entra's 'Passkey (device-bound)' or '(synced)': {method}");
    // Signed in with the passkey (MFA just now), she adds a second one from the account page,
    // then deletes it there.
    let creating = fresh.submit(&signed_in, "add_passkey", &[], &[]).await;
    assert_eq!(creating.title(), "Create a passkey", "{}", creating.text());
    let mut second_options = page_options(&creating, "register_passkey");
    second_options["authenticatorSelection"]["residentKey"] = json!("required");
    let second_key_answer = create_with(&mut counting_key(), &second_options, &origin).await;
    let registered = fresh
        .submit(&creating, "register_passkey", &[], &[("credential", &second_key_answer), ("value", "Second key")])
        .await;
    assert!(registered.text().contains("Your passkey 'Second key' is registered"), "{}", registered.text());
    let listed = app.get(&format!("/v1.0/users/{adele}/authentication/fido2Methods")).await;
    let second_id = listed.body["value"]
        .as_array()
        .expect("passkeys")
        .iter()
        .find(|it| it["displayName"] == "Second key")
        .and_then(|it| it["id"].as_str())
        .expect("listed through Graph")
        .to_owned();
    let form = registered.form("delete_method").expect("a delete form");
    let csrf = form.inputs.iter().find(|(name, ..)| name == "csrf").expect("csrf").1.clone();
    let fields = |confirmed: bool| {
        let mut fields = vec![
            ("csrf".to_owned(), csrf.clone()),
            ("step".to_owned(), "delete_method".to_owned()),
            ("method".to_owned(), format!("passkey:{second_id}")),
        ];
        if confirmed {
            fields.push(("confirmed".to_owned(), "yes".to_owned()));
        }
        fields
    };
    let confirm = fresh.post_form(&form.action, &fields(false)).await;
    assert!(confirm.text().contains("Second key"), "asks first: {}", confirm.text());
    let deleted = fresh.post_form(&form.action, &fields(true)).await;
    assert!(deleted.text().contains("Deleted"), "{}", deleted.text());
    let listed = app.get(&format!("/v1.0/users/{adele}/authentication/fido2Methods")).await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1), "{}", listed.text);

    // The same answer again, from the same page: its challenge is spent.
    let replay = replayer.submit(&page, "passkey", &[], &[("credential", &answer)]).await;
    assert!(!replay.text().contains("Signed in as"), "a replay signed in");
    assert!(replay.text().contains("expired or was already used"), "{}", replay.text());
    // A made-up registration naming that sign-in challenge (through Graph) is refused and
    // leaves it spent.
    let answered: Value = serde_json::from_str(&answer).expect("answer");
    let client_data: Value =
        serde_json::from_slice(&b64(answered["response"]["clientDataJSON"].as_str().expect("cdj"))).expect("cdj");
    let fake = json!({"type": "webauthn.create", "challenge": client_data["challenge"], "origin": origin});
    let body = json!({"publicKeyCredential": {"id": "AAAA", "response": {
        "clientDataJSON": unb64(fake.to_string().as_bytes()), "attestationObject": "oA"}}});
    let registration = app.post(&format!("/v1.0/users/{adele}/authentication/fido2Methods"), &body).await;
    assert_eq!(registration.status, StatusCode::BAD_REQUEST, "{}", registration.text);
    let replay = replayer.submit(&page, "passkey", &[], &[("credential", &answer)]).await;
    assert!(replay.text().contains("expired or was already used"), "{}", replay.text());
    // Without the user handle, a sign-in that names no user cannot know whose passkey it is.
    let mut nameless = Browser::new(&app.base_url);
    let page = nameless.get(&format!("/{DOMAIN}/login")).await;
    let mut answer: Value =
        serde_json::from_str(&assert_with(&mut key, &page_options(&page, "passkey"), &origin).await.expect("asserted"))
            .expect("answer");
    answer["response"]["userHandle"] = Value::Null;
    let refused = nameless.submit(&page, "passkey", &[], &[("credential", &answer.to_string())]).await;
    assert!(refused.text().contains("didn't work"), "{}", refused.text());
    assert!(!refused.text().contains("Signed in as"));

    // An answer made for another origin (a phishing site) is refused.
    let mut phished = Browser::new(&app.base_url);
    let page = phished.get(&format!("/{DOMAIN}/login")).await;
    let options = page_options(&page, "passkey");
    let evil = assert_with(&mut security_key(), &options, "http://evil.localhost:1").await;
    if let Ok(evil) = evil {
        let refused = phished.submit(&page, "passkey", &[], &[("credential", &evil)]).await;
        assert!(!refused.text().contains("Signed in as"), "another origin signed in");
    }
    let mut forged: Value =
        serde_json::from_str(&assert_with(&mut key, &options, &origin).await.expect("a")).expect("j");
    let mut client_data: Value =
        serde_json::from_slice(&b64(forged["response"]["clientDataJSON"].as_str().expect("cdj"))).expect("cdj");
    client_data["origin"] = json!("https://evil.test");
    forged["response"]["clientDataJSON"] = json!(unb64(client_data.to_string().as_bytes()));
    app.clock.advance(time::Duration::seconds(1));
    let refused = phished.submit(&page, "passkey", &[], &[("credential", &forged.to_string())]).await;
    assert!(!refused.text().contains("Signed in as"), "a forged origin signed in");
    // Nobody is named before the signature is checked (credential ids are not secret).
    let (code, _, _) = last_detail(&app.sign_in_log(&upn).await);
    assert_eq!(code, 0, "the forged attempt is not written into her log");

    // A copy of the authenticator answers with a counter that does not move on: refused, audited.
    let mut copy = copy;
    let mut cloned = Browser::new(&app.base_url);
    let page = cloned.get(&format!("/{DOMAIN}/login")).await;
    let answer = assert_with(&mut copy, &page_options(&page, "passkey"), &origin).await.expect("asserted");
    let refused = cloned.submit(&page, "passkey", &[], &[("credential", &answer)]).await;
    assert!(refused.text().contains("may have been copied"), "{}", refused.text());
    assert!(
        app.audit_for(&adele).await.iter().any(|it| it.activity_display_name == "Passkey possibly cloned"),
        "the clone is audited"
    );

    // A model the policy blocks no longer signs in; unblocked, it does again.
    let block = json!({"keyRestrictions": {"isEnforced": true, "enforcementType": "block", "aaGuids": ["11111111-1111-1111-1111-111111111111"]}});
    assert_eq!(app.patch(fido2, &block).await.status, StatusCode::NO_CONTENT);
    let mut blocked = Browser::new(&app.base_url);
    let page = blocked.get(&format!("/{DOMAIN}/login")).await;
    let answer = assert_with(&mut key, &page_options(&page, "passkey"), &origin).await.expect("asserted");
    let refused = blocked.submit(&page, "passkey", &[], &[("credential", &answer)]).await;
    assert!(refused.text().contains("no longer allows this kind of passkey"), "{}", refused.text());
    // Her only passkey is of the blocked model: a password alone registers nothing beside it (who
    // has her password could plant their own); she is sent for a Temporary Access Pass.
    let mut interrupted = Browser::new(&app.base_url);
    let page = interrupted.get(&format!("/{DOMAIN}/login")).await;
    let page = interrupted.submit(&page, "username", &[("username", &upn)], &[]).await;
    let page = interrupted.submit(&page, "password", &[("current-password", "Tq7-harbour-Lantern-92!")], &[]).await;
    assert_eq!(page.title(), "Enter password", "{}", page.text());
    assert!(page.text().contains("ask your administrator for a Temporary Access Pass"), "{}", page.text());
    let off = json!({"keyRestrictions": {"isEnforced": false, "enforcementType": "block", "aaGuids": []}});
    assert_eq!(app.patch(fido2, &off).await.status, StatusCode::NO_CONTENT);

    // Second factor: a password, then the passkey (the page's options name her passkeys only).
    let mut second = Browser::new(&app.base_url);
    let page = second.get(&format!("/{DOMAIN}/login")).await;
    let page = second.submit(&page, "username", &[("username", &upn)], &[]).await;
    let page = second.submit(&page, "password", &[("current-password", "Tq7-harbour-Lantern-92!")], &[]).await;
    assert_eq!(page.title(), "Enter code", "{}", page.text());
    assert!(page.form("mfa").is_none(), "no authenticator app: the code form is not offered");
    let options = page_options(&page, "passkey");
    assert_eq!(options["allowCredentials"].as_array().map(Vec::len), Some(1), "{options}");
    let answer = assert_with(&mut key, &options, &origin).await.expect("asserted");
    app.clock.advance(time::Duration::seconds(1));
    let done = second.submit(&page, "passkey", &[], &[("credential", &answer)]).await;
    assert!(done.text().contains("Signed in as"), "{}", done.text());
    let (code, method, _) = last_detail(&app.sign_in_log(&upn).await);
    assert_eq!(code, 0);
    assert!(method.starts_with("Passkey ("), "{method}");

    // Through the OpenID Connect provider, as an administrator (MFA required for the role): the
    // passkey alone signs in, and the token's amr says so (fido, the key's kind, mfa).
    app.assign_role(&adele, roles::AUTHENTICATION_ADMINISTRATOR, "/").await;
    use keyward_testkit::cli_flow::{REDIRECT, VERIFIER, authorize_path};
    let mut oidc = Browser::new(&app.base_url);
    let page = oidc.get(&authorize_path("openid https://graph.microsoft.com/.default")).await;
    let answer = assert_with(&mut key, &page_options(&page, "passkey"), &origin).await.expect("asserted");
    let done = oidc.submit(&page, "passkey", &[], &[("credential", &answer)]).await;
    assert!(done.path.contains('?'), "a code, not {}", done.text());
    let tokens = app.redeem_code(&done.path, REDIRECT, VERIFIER).await;
    let access = tokens["access_token"].as_str().unwrap_or_else(|| panic!("{tokens}"));
    let claims: Value = serde_json::from_slice(&b64(access.split('.').nth(1).expect("payload"))).expect("claims");
    let amr: Vec<&str> = claims["amr"].as_array().expect("amr").iter().filter_map(Value::as_str).collect();
    assert!(amr.contains(&"fido") && amr.contains(&"mfa"), "{amr:?}");
    assert!(amr.contains(&"hwk") != amr.contains(&"swk"), "the key's kind: {amr:?}");
    assert!(!amr.contains(&"pwd"), "no password was used: {amr:?}");
    // An administrator's passkey session may act: Graph accepts the token.
    assert_eq!(app.as_user(access).get("/v1.0/me").await.status, StatusCode::OK);

    // A ceremony started on one node finishes on another (the challenge is the database's).
    let other = keyward_testkit::node(&app.database_url, app.clock.clone(), &origin).await;
    let mut third = Browser::new(&app.base_url);
    let page = third.get(&format!("/{DOMAIN}/login")).await;
    let answer = assert_with(&mut key, &page_options(&page, "passkey"), &origin).await.expect("asserted");
    let cookie = third.cookies.get("keyward-session").cloned().expect("a session cookie");
    let form = keyward_app::SignInForm {
        step: "passkey".into(),
        csrf: keyward_app::csrf_token(&cookie),
        credential: Some(answer),
        ..Default::default()
    };
    let meta = keyward_app::RequestMeta { correlation_id: "node-b".into(), ip_address: None, user_agent: None };
    let view = other.sign_in_submit(DOMAIN, Some(&cookie), None, form, meta).await.expect("submitted");
    assert!(
        view.redirect.is_some() || matches!(view.page, Some(keyward_app::SignInPage::Account { .. })),
        "{:?}",
        view.page
    );

    // "Require re-register MFA" keeps passkeys, as Entra's does: she still signs in with hers.
    // Once an administrator deletes it, her next sign-in is the registration interrupt.
    let admin = app.token_for(keyward_testkit::ADMIN_UPN).await;
    let reregister =
        app.as_user(&admin).action(&format!("/v1.0/users/{adele}/authentication/requireMfaReregistration")).await;
    assert_eq!(reregister.status, StatusCode::NO_CONTENT, "{}", reregister.text);
    let listed = app.get(&format!("/v1.0/users/{adele}/authentication/fido2Methods")).await;
    let passkey_id = listed.body["value"][0]["id"].as_str().expect("kept").to_owned();
    let mut kept = Browser::new(&app.base_url);
    let page = kept.get(&format!("/{DOMAIN}/login")).await;
    let page = kept.submit(&page, "username", &[("username", &upn)], &[]).await;
    let page = kept.submit(&page, "password", &[("current-password", "Tq7-harbour-Lantern-92!")], &[]).await;
    assert_eq!(page.title(), "Enter code", "{}", page.text());
    let (kept_page, kept_options) = (page.clone(), page_options(&page, "passkey"));
    let deleted = app.delete(&format!("/v1.0/users/{adele}/authentication/fido2Methods/{passkey_id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let mut after = Browser::new(&app.base_url);
    let page = after.get(&format!("/{DOMAIN}/login")).await;
    let page = after.submit(&page, "username", &[("username", &upn)], &[]).await;
    let page = after.submit(&page, "password", &[("current-password", "Tq7-harbour-Lantern-92!")], &[]).await;
    assert_eq!(page.title(), "More information required", "{}", page.text());
    // The code page shown before the deletion: an answer from the deleted passkey is refused.
    let answer = assert_with(&mut key, &kept_options, &origin).await.expect("asserted");
    let refused = kept.submit(&kept_page, "passkey", &[], &[("credential", &answer)]).await;
    assert!(refused.text().contains("isn't registered"), "{}", refused.text());

    // The policy: passkeys turned off for her stop signing in (a new passkey, made while they
    // were on, is refused once she is left out).
    let page = after.submit(&page, "more_info", &[], &[("method", "passkey")]).await;
    assert_eq!(page.title(), "Create a passkey", "{}", page.text());
    let page = after.submit(&page, "back", &[], &[]).await;
    assert_eq!(page.title(), "More information required", "'Choose another method': {}", page.text());
    let mut page = after.submit(&page, "more_info", &[], &[("method", "passkey")]).await;
    assert_eq!(page.title(), "Create a passkey", "{}", page.text());
    let mut options = page_options(&page, "register_passkey");
    options["authenticatorSelection"]["residentKey"] = json!("required");
    let mut newer = counting_key();
    let created = create_with(&mut newer, &options, &origin).await;
    page = after.submit(&page, "register_passkey", &[], &[("credential", &created), ("value", "Newer")]).await;
    assert!(page.text().contains("Signed in as"), "{}", page.text());
    let exclude = json!({"excludeTargets": [{"id": adele, "targetType": "user"}]});
    assert_eq!(app.patch(fido2, &exclude).await.status, StatusCode::NO_CONTENT);
    let mut late = Browser::new(&app.base_url);
    let page = late.get(&format!("/{DOMAIN}/login")).await;
    let answer = assert_with(&mut newer, &page_options(&page, "passkey"), &origin).await.expect("asserted");
    let refused = late.submit(&page, "passkey", &[], &[("credential", &answer)]).await;
    assert!(refused.text().contains("doesn't let you sign in with a passkey"), "{}", refused.text());
}

/// CBOR, as much as an attestation object needs.
fn cbor_head(major: u8, len: usize) -> Vec<u8> {
    let major = major << 5;
    match len {
        0..=23 => vec![major | len as u8],
        24..=255 => vec![major | 24, len as u8],
        _ => {
            let mut out = vec![major | 25];
            out.extend((len as u16).to_be_bytes());
            out
        }
    }
}

fn cbor_text(text: &str) -> Vec<u8> {
    [cbor_head(3, text.len()), text.as_bytes().to_vec()].concat()
}

fn cbor_bytes(bytes: &[u8]) -> Vec<u8> {
    [cbor_head(2, bytes.len()), bytes.to_vec()].concat()
}

/// A security key from a certified maker, made by hand: a maker's root, an attestation
/// certificate naming the model's AAGUID, and `packed` attestation with the certificate.
struct AttestingKey {
    root_der: Vec<u8>,
    leaf_der: Vec<u8>,
    leaf_key: aws_lc_rs::signature::EcdsaKeyPair,
    aaguid: [u8; 16],
}

/// How an attestation certificate is made: as FIDO's rules ask, or without the OU
/// `Authenticator Attestation`, as a TLS server certificate, or without the AAGUID extension.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Fido,
    NoOu,
    TlsServer,
    NoAaguid,
}

fn attesting_key(aaguid: [u8; 16]) -> AttestingKey {
    attesting_keys(aaguid, &[Leaf::Fido]).pop().expect("one")
}

/// A maker's root and one attesting key per kind of leaf, all issued by that root.
fn attesting_keys(aaguid: [u8; 16], leaves: &[Leaf]) -> Vec<AttestingKey> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut root_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    root_params.distinguished_name.push(rcgen::DnType::CommonName, "Contoso Keys Attestation Root");
    let root =
        rcgen::CertifiedIssuer::self_signed(root_params, rcgen::KeyPair::generate().expect("key")).expect("root");
    leaves
        .iter()
        .map(|kind| {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("pkcs8");
            let leaf_key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("leaf key");
            let rc_leaf_key = rcgen::KeyPair::try_from(pkcs8.as_ref()).expect("rcgen key");
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.distinguished_name.push(rcgen::DnType::CountryName, "SE");
            params.distinguished_name.push(rcgen::DnType::OrganizationName, "Contoso Keys");
            params.distinguished_name.push(rcgen::DnType::CommonName, "Contoso Key Attestation");
            if *kind != Leaf::NoOu {
                params.distinguished_name.push(rcgen::DnType::OrganizationalUnitName, "Authenticator Attestation");
            }
            if *kind == Leaf::TlsServer {
                params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            }
            if *kind != Leaf::NoAaguid {
                // id-fido-gen-ce-aaguid: an OCTET STRING holding the AAGUID.
                let value = [vec![0x04, 0x10], aaguid.to_vec()].concat();
                params
                    .custom_extensions
                    .push(rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 45724, 1, 1, 4], value));
            }
            let leaf = params.signed_by(&rc_leaf_key, &root).expect("leaf");
            AttestingKey { root_der: root.der().to_vec(), leaf_der: leaf.der().to_vec(), leaf_key, aaguid }
        })
        .collect()
}

impl AttestingKey {
    /// The `POST …/fido2Methods` body for Keyward's creation options, with `packed` attestation.
    fn make(&self, options: &Value, origin: &str, rp_id: &str) -> Value {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("pkcs8");
        let credential = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("key");
        let point = credential.public_key().as_ref().to_vec();
        let mut cose = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20];
        cose.extend(&point[1..33]);
        cose.extend([0x22, 0x58, 0x20]);
        cose.extend(&point[33..65]);
        let credential_id: Vec<u8> =
            (0..32).map(|it| it as u8 ^ self.aaguid[0]).chain(point[1..9].iter().copied()).collect();
        let mut auth_data = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, rp_id.as_bytes()).as_ref().to_vec();
        auth_data.push(0x45);
        auth_data.extend(0_u32.to_be_bytes());
        auth_data.extend(self.aaguid);
        auth_data.extend((credential_id.len() as u16).to_be_bytes());
        auth_data.extend(&credential_id);
        auth_data.extend(&cose);
        let client_data = json!({
            "type": "webauthn.create",
            "challenge": options["publicKey"]["challenge"],
            "origin": origin,
            "crossOrigin": false,
        })
        .to_string();
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, client_data.as_bytes());
        let signed = [auth_data.as_slice(), hash.as_ref()].concat();
        let sig = self.leaf_key.sign(&rng, &signed).expect("signed");
        let statement = [
            cbor_head(5, 3),
            cbor_text("alg"),
            vec![0x26],
            cbor_text("sig"),
            cbor_bytes(sig.as_ref()),
            cbor_text("x5c"),
            cbor_head(4, 1),
            cbor_bytes(&self.leaf_der),
        ]
        .concat();
        let object = [
            cbor_head(5, 3),
            cbor_text("fmt"),
            cbor_text("packed"),
            cbor_text("attStmt"),
            statement,
            cbor_text("authData"),
            cbor_bytes(&auth_data),
        ]
        .concat();
        json!({
            "displayName": "Contoso key",
            "publicKeyCredential": {
                "id": unb64(&credential_id),
                "response": {"clientDataJSON": unb64(client_data.as_bytes()), "attestationObject": unb64(&object)},
            },
        })
    }
}

/// Attestation enforced: only a passkey whose attestation chains to a root the administrator
/// gave Keyward registers (as `attested`); one without attestation, or from an unknown maker, or
/// naming another model than its certificate, does not. Without roots it cannot be turned on.
async fn attestation_is_checked_against_the_administrators_roots(backend: Backend) {
    let aaguid = [0x5a; 16];
    let mut keys = attesting_keys(aaguid, &[Leaf::Fido, Leaf::NoOu, Leaf::TlsServer, Leaf::NoAaguid]).into_iter();
    let maker = keys.next().expect("the maker's key");
    let not_for_attestation: Vec<AttestingKey> = keys.collect();
    // The roots as an administrator gives them (`--fido-roots`): a PEM bundle.
    let encoded = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&maker.root_der)
    };
    let lines: Vec<&str> = encoded.as_bytes().chunks(64).map(|it| std::str::from_utf8(it).expect("ascii")).collect();
    let pem =
        format!("# the maker's root\n-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"));
    let roots = keyward_app::read_fido_roots(&pem).expect("a usable bundle");
    assert_eq!(roots, vec![maker.root_der.clone()]);
    assert!(keyward_app::read_fido_roots(&pem.replace("MII", "!!!")).is_err(), "not Base64");
    let app = TestApp::spawn_configured(backend, |config| {
        config.public_url = config.public_url.replace("127.0.0.1", "localhost");
        config.fido_attestation_roots = roots;
    })
    .await;
    let origin = origin(&app);
    let fido2 = "/v1.0/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/fido2";
    let adele = user(&app, "adele", None).await;
    let options_path = format!("/v1.0/users/{adele}/authentication/fido2Methods/creationOptions");
    let collection = format!("/v1.0/users/{adele}/authentication/fido2Methods");
    let on = json!({"state": "enabled", "isAttestationEnforced": true});
    assert_eq!(app.patch(fido2, &on).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(fido2).await.body["isAttestationEnforced"], true);
    let options = app.get(&options_path).await;
    assert_eq!(options.body["publicKey"]["attestation"], "direct", "{}", options.text);

    // The maker's key registers, attested.
    let created = app.post(&collection, &maker.make(&options.body, &origin, "localhost")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["attestationLevel"], "attested");
    assert_eq!(created.body["aaGuid"], "5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a5a");

    // No attestation (passkey-rs sends none), an unknown maker, a certificate for another model.
    let options = app.get(&options_path).await;
    let none = make(&mut security_key(), &options.body, &origin, "none").await.expect("made");
    let refused = app.post(&collection, &none).await;
    assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(refused.text.contains("attested passkey"), "{}", refused.text);
    let stranger = attesting_key(aaguid);
    let options = app.get(&options_path).await;
    let refused = app.post(&collection, &stranger.make(&options.body, &origin, "localhost")).await;
    assert!(refused.text.contains("attested passkey"), "{}", refused.text);
    // Certificates from the trusted root that are not attestation certificates as FIDO's rules
    // ask (a root bundle may hold general-purpose roots): not attested.
    for other in &not_for_attestation {
        assert_eq!(other.root_der, maker.root_der, "issued by the trusted root");
        let options = app.get(&options_path).await;
        let refused = app.post(&collection, &other.make(&options.body, &origin, "localhost")).await;
        assert!(refused.text.contains("attested passkey"), "{}", refused.text);
    }
    let liar = AttestingKey { aaguid: [0x11; 16], ..attesting_key(aaguid) };
    let options = app.get(&options_path).await;
    let refused = app.post(&collection, &liar.make(&options.body, &origin, "localhost")).await;
    assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(refused.text.contains("another authenticator model"), "{}", refused.text);
    assert_eq!(app.get(&collection).await.body["value"].as_array().map(Vec::len), Some(1));
    // The policy's refusals are recorded as failed registrations.
    let failures: Vec<_> = app
        .audit_for(&adele)
        .await
        .into_iter()
        .filter(|it| {
            it.activity_display_name == "Admin registered security info" && it.result_reason.contains("attested")
        })
        .collect();
    assert_eq!(failures.len(), 5, "no attestation, three certificates not made for attestation, an unknown maker");
    // The security key is device-bound: the Device Registration Service records it too.
    let records = app.audit_for(&adele).await;
    assert!(
        records.iter().any(|it| it.activity_display_name == "Add Passkey (device-bound)"
            && it.logged_by_service == "Device Registration Service"),
        "{records:?}"
    );

    // Not enforced, the unknown maker registers, but is not called attested.
    assert_eq!(app.patch(fido2, &json!({"isAttestationEnforced": false})).await.status, StatusCode::NO_CONTENT);
    let options = app.get(&options_path).await;
    assert_eq!(options.body["publicKey"]["attestation"], "none");
    let created = app.post(&collection, &stranger.make(&options.body, &origin, "localhost")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["attestationLevel"], "notAttested");

    // A server without roots refuses to enforce attestation, and says how to give it roots.
    let bare = spawn(backend).await;
    let refused = bare.patch(fido2, &json!({"isAttestationEnforced": true})).await;
    assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(refused.text.contains("--fido-roots"), "{}", refused.text);
}

/// With a passkey and an authenticator app, the second-factor page offers first what the user's
/// sign-in preferences say: the app for a preferred `oath`, the passkey with system-preferred MFA
/// (the strongest method) or without a preference; either one signs in.
/// Passkeys on and MFA required; a new user `alias` signs in with a Temporary Access Pass and
/// chooses a passkey at the interrupt: their id, user name, browser and the "Create a passkey"
/// page.
async fn at_the_passkey_interrupt(app: &TestApp, alias: &str) -> (String, String, Browser, Page) {
    let fido2 = "/v1.0/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/fido2";
    assert_eq!(app.patch(fido2, &json!({"state": "enabled"})).await.status, StatusCode::NO_CONTENT);
    app.set_security_defaults(true).await;
    let id = user(app, alias, None).await;
    let upn = format!("{alias}@{DOMAIN}");
    let pass = app.post(&format!("/v1.0/users/{id}/authentication/temporaryAccessPassMethods"), &json!({})).await;
    let pass = pass.body["temporaryAccessPass"].as_str().expect("a pass").to_owned();
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    let page = browser.submit(&page, "username", &[("username", &upn)], &[]).await;
    let page = browser.submit(&page, "password", &[("current-password", &pass)], &[]).await;
    assert_eq!(page.title(), "More information required", "{}", page.text());
    let page = browser.submit(&page, "more_info", &[], &[("method", "passkey")]).await;
    assert_eq!(page.title(), "Create a passkey", "{}", page.text());
    (id, upn, browser, page)
}

async fn the_second_factor_page_follows_the_sign_in_preferences(backend: Backend) {
    let app = spawn(backend).await;
    let origin = origin(&app);
    // A passkey at the interrupt, then an authenticator app from the account page.
    let (bob, upn, mut browser, page) = at_the_passkey_interrupt(&app, "bob").await;
    let mut key = security_key();
    let created = create_with(&mut key, &page_options(&page, "register_passkey"), &origin).await;
    let page =
        browser.submit(&page, "register_passkey", &[], &[("credential", &created), ("value", "Bob's key")]).await;
    let page = browser.submit(&page, "add_totp", &[], &[]).await;
    let secret = keyward_core::totp::base32_decode(&page.by_id("secret").expect("secret")).expect("base32");
    let step = keyward_core::totp::step_at(app.app.now().unix_timestamp());
    let code = keyward_core::totp::code_at_step(&secret, step);
    let page = browser.submit(&page, "register_totp", &[("one-time-code", &code)], &[]).await;
    assert!(page.text().contains("authenticator app is registered"), "{}", page.text());

    let second_factor_page = || async {
        let mut browser = Browser::new(&app.base_url);
        let page = browser.get(&format!("/{DOMAIN}/login")).await;
        let page = browser.submit(&page, "username", &[("username", &upn)], &[]).await;
        let page = browser.submit(&page, "password", &[("current-password", "Tq7-harbour-Lantern-92!")], &[]).await;
        assert_eq!(page.title(), "Enter code", "{}", page.text());
        let code_at = page.html.find("name=\"step\" value=\"mfa\"").expect("the code form");
        let passkey_at = page.html.find("name=\"step\" value=\"passkey\"").expect("the passkey form");
        (browser, page, passkey_at < code_at)
    };
    let (_, _, passkey_first) = second_factor_page().await;
    assert!(passkey_first, "no preference: the strongest method first");
    let preferences = format!("/beta/users/{bob}/authentication/signInPreferences");
    let set = app.patch(&preferences, &json!({"userPreferredMethodForSecondaryAuthentication": "oath"})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    let (mut browser, page, passkey_first) = second_factor_page().await;
    assert!(!passkey_first, "a preferred authenticator app comes first");
    assert!(page.text().contains("Enter the code displayed in your authenticator app, or use your passkey"));
    // Either way both work: here the app's next code.
    let code = keyward_core::totp::code_at_step(&secret, step + 1);
    let done = browser.submit(&page, "mfa", &[("one-time-code", &code)], &[]).await;
    assert!(done.text().contains("Signed in as"), "{}", done.text());
    let set = app.patch(&preferences, &json!({"isSystemPreferredAuthenticationMethodEnabled": true})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    let (mut browser, page, passkey_first) = second_factor_page().await;
    assert!(passkey_first, "system-preferred MFA asks for the strongest method");
    let answer = assert_with(&mut key, &page_options(&page, "passkey"), &origin).await.expect("asserted");
    let done = browser.submit(&page, "passkey", &[], &[("credential", &answer)]).await;
    assert!(done.text().contains("Signed in as"), "{}", done.text());
}

async fn a_passkey_is_not_added_to_an_account_disabled_meanwhile(backend: Backend) {
    let app = spawn(backend).await;
    let origin = origin(&app);
    let (adele, upn, mut browser, page) = at_the_passkey_interrupt(&app, "adele").await;
    let mut options = page_options(&page, "register_passkey");
    options["authenticatorSelection"]["residentKey"] = json!("required");
    let created = create_with(&mut counting_key(), &options, &origin).await;

    // Disabled while the browser made the passkey.
    let reply = app.patch(&format!("/v1.0/users/{adele}"), &json!({"accountEnabled": false})).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let ended =
        browser.submit(&page, "register_passkey", &[], &[("credential", &created), ("value", "Late key")]).await;
    assert_eq!(ended.title(), "Sign in", "{}", ended.text());
    assert!(ended.text().contains("Your session has ended"), "{}", ended.text());
    let listed = app.get(&format!("/v1.0/users/{adele}/authentication/fido2Methods")).await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(0), "a passkey was added: {}", listed.text);
    let audit = app.audit_for(&adele).await;
    assert!(
        !audit.iter().any(|it| it.activity_display_name == "User registered security info"),
        "a registration was recorded"
    );
    let log = app.sign_in_log(&upn).await;
    assert_eq!(log.last().map(|it| it["status"]["errorCode"].clone()), Some(json!(50057)), "{log:?}");
}

keyward_testkit::on_both_backends!(
    provisioning_through_graph,
    passkeys_on_the_pages,
    attestation_is_checked_against_the_administrators_roots,
    the_second_factor_page_follows_the_sign_in_preferences,
    a_passkey_is_not_added_to_an_account_disabled_meanwhile
);
