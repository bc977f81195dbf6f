//! Test harness: a Keyward app on a random port over a fresh SQLite file or a fresh PostgreSQL
//! database, a controllable clock, and typed HTTP helpers.
//!
//! PostgreSQL: when `KEYWARD_TEST_POSTGRES_URL` names a server (a URL whose database part is
//! replaced per test), it is used, and a watchdog drops the test process's databases once the
//! process has exited; otherwise the harness starts a throwaway cluster from the
//! installed binaries (`/usr/lib/postgresql/*/bin`) once per test process, as the `postgres` user
//! when running as root, and a watchdog stops it when the test process exits.
#![forbid(unsafe_code)]

pub mod browser;
pub mod smtp;

/// The public client `keyward-cli`'s code flow as the tests run it: a fixed PKCE pair and
/// redirect address, and the authorization request for a scope.
pub mod cli_flow {
    use super::DOMAIN;

    pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    /// `VERIFIER`'s S256 challenge.
    pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    pub const REDIRECT: &str = "http://localhost:43210/";

    /// `/{DOMAIN}/oauth2/v2.0/authorize` for `keyward-cli` with `scope`, PKCE and the redirect.
    pub fn authorize_path(scope: &str) -> String {
        format!(
            "/{DOMAIN}/oauth2/v2.0/authorize?client_id=keyward-cli&response_type=code&redirect_uri={}&scope={}\
             &code_challenge={CHALLENGE}&code_challenge_method=S256",
            keyward_app::url_encode(REDIRECT),
            keyward_app::url_encode(scope),
        )
    }
}
mod postgres;

use std::path::PathBuf;
use std::sync::Arc;

use keyward_app::{
    App, AppConfig, BootstrapOutcome, BootstrapRequest, HashParams, KeyRing, ManualClock, PasswordHasher,
};
use keyward_store::Store;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use time::OffsetDateTime;

pub use crate::postgres::fresh_database_url;

/// Defines the tests `on_sqlite::NAME` and `on_postgres::NAME` from one `async fn NAME(backend:
/// Backend)` per name, so every scenario runs on both databases.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Which database a test runs on (the store's own enum).
pub use keyward_store::Backend;

/// The tenant domain and first administrator every test app starts with.
pub const DOMAIN: &str = "contoso.test";
pub const ADMIN_UPN: &str = "admin@contoso.test";
pub const ADMIN_PASSWORD: &str = "Harbour-Lantern-92!";

/// A JSON object's `id`.
pub fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap_or_else(|| panic!("no id in {value}")).to_owned()
}

/// Asserts a Graph error: its status and code, and Graph's whole envelope (a message, and the
/// inner error's date, request id and client request id).
pub fn assert_graph_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], code, "{}", reply.text);
    let inner = &reply.body["error"]["innerError"];
    assert!(inner["date"].as_str().is_some_and(|it| it.len() == 19), "{}", reply.text);
    assert!(inner["request-id"].as_str().is_some_and(keyward_core::ids::is_guid), "{}", reply.text);
    assert!(inner["client-request-id"].is_string(), "{}", reply.text);
    assert!(reply.body["error"]["message"].as_str().is_some_and(|it| !it.is_empty()), "{}", reply.text);
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh, migrated store on `backend`, with the directory that holds it (SQLite).
pub async fn fresh_store(backend: Backend) -> (Arc<dyn Store>, TempDir) {
    let (url, dir) = fresh_url(backend);
    let store = keyward_store::open(&url).await.unwrap_or_else(|err| panic!("cannot open {backend:?} store: {err}"));
    (store, dir)
}

/// The URL of a fresh, empty database on `backend`, with the directory that holds it (SQLite).
pub fn fresh_url(backend: Backend) -> (String, TempDir) {
    let dir = TempDir::new("keyward-test");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("keyward.db").display()),
        Backend::Postgres => fresh_database_url(),
    };
    (url, dir)
}

/// The key-encryption key every test app uses.
pub const MASTER_KEY: [u8; 32] = [0x42; 32];

/// An app (no HTTP server) over the database at `url`, as another node would run it.
pub async fn node(url: &str, clock: Arc<ManualClock>, public_url: &str) -> App {
    node_with(url, clock, public_url, |_| ()).await
}

/// Like [`node`], with the configuration adjusted by `configure` (say, the password grant on).
pub async fn node_with(
    url: &str,
    clock: Arc<ManualClock>,
    public_url: &str,
    configure: impl FnOnce(&mut AppConfig),
) -> App {
    let store = keyward_store::open(url).await.unwrap_or_else(|err| panic!("cannot open {url}: {err}"));
    let hasher = PasswordHasher::new(HashParams::OWASP, 2).expect("hasher");
    let keys = KeyRing::new(&MASTER_KEY).expect("keys");
    let mut config = AppConfig::new(public_url.to_owned());
    // Tests check cross-node effects at once instead of waiting for the cache to age.
    config.key_cache_ttl = std::time::Duration::ZERO;
    configure(&mut config);
    App::new(store, clock, hasher, keys, config).await.expect("app")
}

/// Redeems the code in `redirected` (the redirect an authorization ended with) for the public
/// client `keyward-cli` at the node `base`: the token endpoint's JSON answer.
pub async fn redeem_code(
    client: &reqwest::Client,
    base: &str,
    redirected: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Value {
    let query = redirected.split_once('?').unwrap_or_else(|| panic!("a redirect with a code, not {redirected}")).1;
    let code = form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "code").expect("code").1.into_owned();
    let fields = [
        ("grant_type", "authorization_code"),
        ("client_id", "keyward-cli"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    post_form(client, base, &format!("/{DOMAIN}/oauth2/v2.0/token"), &fields).await
}

/// Posts `fields` as a form to `path` on the node `base` (the token endpoint, say): the JSON
/// answer.
pub async fn post_form(client: &reqwest::Client, base: &str, path: &str, fields: &[(&str, &str)]) -> Value {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    let response = client
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("form request");
    response.json().await.expect("json")
}

/// Serves `app`'s router on `listener` in a task of its own (it drains for at most a second).
fn serve_in_background(app: &App, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    let router = keyward_http::router(app.clone());
    let mut config = keyward_http::ServeConfig::new(listener, None);
    config.drain_timeout = std::time::Duration::from_secs(1);
    tokio::spawn(async move {
        let _ = keyward_http::serve(router, config, std::future::pending()).await;
    })
}

/// A running Keyward on a random port.
#[derive(Debug)]
pub struct TestApp {
    pub app: App,
    pub base_url: String,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    pub admin_token: String,
    pub backend: Backend,
    /// The database URL, for starting another node on the same data.
    pub database_url: String,
    _dir: TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A response read whole: status, headers, JSON body (or `Null`).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

/// Sends `request` and reads its whole answer.
async fn reply_of(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, headers, text, body }
}

impl Reply {
    /// The `activityDisplayName` of each entry of a directory-audit list, in order.
    pub fn activities(&self) -> Vec<&str> {
        self.body["value"]
            .as_array()
            .expect("value")
            .iter()
            .filter_map(|it| it["activityDisplayName"].as_str())
            .collect()
    }
}

/// Requests sent with one user's (or application's) token: `app.as_user(&token).patch(…)`.
#[derive(Debug, Clone, Copy)]
pub struct AsUser<'a> {
    app: &'a TestApp,
    token: &'a str,
}

impl AsUser<'_> {
    pub async fn get(&self, path: &str) -> Reply {
        self.app.send(Method::GET, path, Some(self.token), None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.app.send(Method::POST, path, Some(self.token), Some(body), &[]).await
    }

    /// `POST` without a body: a Graph action that takes no parameters.
    pub async fn action(&self, path: &str) -> Reply {
        self.app.send(Method::POST, path, Some(self.token), None, &[]).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.app.send(Method::PATCH, path, Some(self.token), Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.app.send(Method::DELETE, path, Some(self.token), None, &[]).await
    }
}

impl TestApp {
    /// Starts an app on `backend` with a bootstrapped tenant whose Global Administrator is
    /// [`ADMIN_UPN`], and a clock standing at the current time.
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, Some(ADMIN_PASSWORD)).await.0
    }

    /// Starts an app whose first start got no bootstrap password: the Global Administrator
    /// [`ADMIN_UPN`] gets a one-time Temporary Access Pass instead, returned here.
    pub async fn spawn_with_bootstrap_pass(backend: Backend) -> (TestApp, String) {
        let (app, outcome) = TestApp::spawn_with(backend, None).await;
        match outcome {
            BootstrapOutcome::Created { temporary_access_pass: Some((pass, _)), .. } => (app, pass.expose().to_owned()),
            other => panic!("expected a bootstrap pass, got {other:?}"),
        }
    }

    /// Starts an app like [`TestApp::spawn`] with its configuration adjusted by `configure`
    /// (say, low abuse limits).
    pub async fn spawn_configured(backend: Backend, configure: impl FnOnce(&mut AppConfig)) -> TestApp {
        TestApp::spawn_full(backend, Some(ADMIN_PASSWORD), configure).await.0
    }

    async fn spawn_with(backend: Backend, admin_password: Option<&str>) -> (TestApp, BootstrapOutcome) {
        TestApp::spawn_full(backend, admin_password, |_| ()).await
    }

    async fn spawn_full(
        backend: Backend,
        admin_password: Option<&str>,
        configure: impl FnOnce(&mut AppConfig),
    ) -> (TestApp, BootstrapOutcome) {
        let (url, dir) = fresh_url(backend);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let base_url = format!("http://127.0.0.1:{port}");
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let app = node_with(&url, clock.clone(), &base_url, configure).await;
        let outcome = app
            .bootstrap(BootstrapRequest {
                admin_upn: Some(ADMIN_UPN.into()),
                admin_password: admin_password.map(keyward_core::secret::Secret::new),
                tenant_domain: DOMAIN.into(),
            })
            .await
            .expect("bootstrap");
        assert!(matches!(outcome, BootstrapOutcome::Created { .. }), "{outcome:?}");
        let outcome_copy = outcome.clone();
        let admin_token = app.issue_access_token_for_upn(ADMIN_UPN).await.expect("token");
        let server = serve_in_background(&app, listener);
        let test_app = TestApp {
            app,
            base_url,
            clock,
            client: reqwest::Client::new(),
            admin_token,
            backend,
            database_url: url,
            _dir: dir,
            server,
        };
        (test_app, outcome_copy)
    }

    /// Another node on the same database (no HTTP server of its own).
    pub async fn second_node(&self) -> App {
        node(&self.database_url, self.clock.clone(), &self.base_url).await
    }

    /// Another node on the same database with an HTTP server of its own on a random port (the
    /// same public URL, as behind a load balancer; `configure` as for [`TestApp::spawn_configured`]):
    /// the node and its server's base URL. The server stops when this process ends.
    pub async fn second_server(&self, configure: impl FnOnce(&mut AppConfig)) -> (App, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let app = node_with(&self.database_url, self.clock.clone(), &self.base_url, configure).await;
        serve_in_background(&app, listener);
        (app, base_url)
    }

    /// Assigns a role straight in the database, as the role-assignment use cases do (with the
    /// activation of a built-in role at the tenant's scope), without their decision or audit.
    pub async fn assign_role(&self, principal_id: &str, role: &str, scope: &str) {
        let store = keyward_store::open(&self.database_url).await.expect("store");
        let tenant = self.tenant_id().await;
        let mut tx = store.write().await.expect("tx");
        tx.insert_role_assignment(&keyward_store::RoleAssignment {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: tenant.clone(),
            principal_id: keyward_core::ids::ObjectId::parse(principal_id).expect("principal id"),
            role_definition_id: role.to_owned(),
            directory_scope_id: scope.to_owned(),
            created: self.app.now(),
            start: None,
            end: None,
            activated_using: None,
        })
        .await
        .expect("assignment");
        // As every assignment the product makes: a built-in role at the tenant's scope is then
        // activated for the older directory-role API.
        if scope == "/" && keyward_core::authz::built_in_role(role).is_some() {
            tx.activate_directory_role(&tenant, role, self.app.now()).await.expect("activation");
        }
        tx.commit().await.expect("commit");
        store.close().await;
    }

    /// Creates a role-assignable security group through the API, with these members added by
    /// `$ref`, and returns its id.
    pub async fn create_role_assignable_group(&self, name: &str, members: &[&str]) -> String {
        let nickname: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
        let created = self
            .post(
                "/v1.0/groups",
                &serde_json::json!({"displayName": name, "mailEnabled": false, "mailNickname": nickname,
                    "securityEnabled": true, "isAssignableToRole": true}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.body["id"].as_str().expect("group id").to_owned();
        for member in members {
            let reference =
                serde_json::json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{member}")});
            let added = self.post(&format!("/v1.0/groups/{id}/members/$ref"), &reference).await;
            assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
        }
        id
    }

    /// Creates an administrative unit with these user members straight in the database.
    pub async fn create_unit(&self, name: &str, is_restricted: bool, members: &[&str]) -> String {
        let store = keyward_store::open(&self.database_url).await.expect("store");
        let tenant = self.tenant_id().await;
        let id = keyward_core::ids::ObjectId::from_bytes(*uuid::Uuid::new_v4().as_bytes());
        let mut tx = store.write().await.expect("tx");
        tx.insert_administrative_unit(&keyward_store::AdministrativeUnit {
            id: id.clone(),
            tenant_id: tenant,
            display_name: name.to_owned(),
            description: None,
            is_member_management_restricted: is_restricted,
            created: self.app.now(),
        })
        .await
        .expect("unit");
        for member in members {
            let member = keyward_core::ids::ObjectId::parse(member).expect("member id");
            let reference = keyward_store::MemberRef { kind: keyward_core::directory::ObjectKind::User, id: member };
            tx.insert_administrative_unit_member(&id, &reference).await.expect("unit member");
        }
        tx.commit().await.expect("commit");
        store.close().await;
        id.to_string()
    }

    /// The test tenant's id.
    pub async fn tenant_id(&self) -> keyward_core::ids::ObjectId {
        self.app.find_tenant(DOMAIN).await.expect("tenant lookup").expect("the test tenant").id
    }

    /// Writes a second tenant, `other.test`, with `id`, straight into the store (in `tx`).
    pub async fn add_tenant(&self, tx: &mut dyn keyward_store::Tx, id: &keyward_core::ids::ObjectId) {
        use keyward_core::directory::{Domain, Tenant};
        tx.insert_tenant(&Tenant {
            id: id.clone(),
            display_name: "Other".into(),
            created: self.app.now(),
            domains: vec![Domain { name: "other.test".into(), is_default: true, is_initial: true }],
        })
        .await
        .expect("second tenant");
    }

    /// Redeems the authorization code in `redirected` (the address the sign-in pages sent the
    /// browser to) at the token endpoint, as the public client `keyward-cli` with the PKCE
    /// `verifier`: the token response.
    pub async fn redeem_code(&self, redirected: &str, redirect_uri: &str, verifier: &str) -> Value {
        redeem_code(&self.client, &self.base_url, redirected, redirect_uri, verifier).await
    }

    /// Posts `fields` as a form to `path` (the token endpoint, say): the JSON answer.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Value {
        post_form(&self.client, &self.base_url, path, fields).await
    }

    /// An access token for `upn`, issued by the app's own issuing code.
    pub async fn token_for(&self, upn: &str) -> String {
        self.app.issue_access_token_for_upn(upn).await.unwrap_or_else(|err| panic!("token for {upn}: {err}"))
    }

    /// Sends a request; `token` `None` sends no Authorization header.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base_url) };
        let mut request = self.client.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        reply_of(request).await
    }

    /// Sends a request as the holder of `token` in a task of its own, so the test can hold it in
    /// flight (waiting for a lock) while it does something else; the task answers with the reply.
    pub fn send_in_background(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> tokio::task::JoinHandle<Reply> {
        let request = self.client.request(method, format!("{}{path}", self.base_url)).bearer_auth(token).json(&body);
        tokio::spawn(reply_of(request))
    }

    /// Requests as the holder of `token` (the methods above send the Global Administrator's).
    pub fn as_user<'a>(&'a self, token: &'a str) -> AsUser<'a> {
        AsUser { app: self, token }
    }

    /// The audit records whose targets include `target` (an object id), newest first, as the
    /// Global Administrator reads them.
    pub async fn audit_for(&self, target: &str) -> Vec<keyward_core::audit::AuditRecord> {
        let meta = keyward_app::RequestMeta { correlation_id: "test".into(), ip_address: None, user_agent: None };
        let caller = self.app.authenticate(Some(&self.admin_token), meta).await.expect("the admin token is accepted");
        let target = keyward_core::ids::ObjectId::parse(target).unwrap_or_else(|| panic!("'{target}' is no object id"));
        self.app.audit_for_target(&caller, &target, 50).await.expect("audit records")
    }

    /// A user's sign-in log entries (`/beta`, every property), oldest first, read with a fresh
    /// administrator token (tests move the clock past the first one's lifetime).
    pub async fn sign_in_log(&self, upn: &str) -> Vec<Value> {
        let token = self.token_for(ADMIN_UPN).await;
        let path = format!("/beta/auditLogs/signIns?$filter=userPrincipalName eq '{upn}'&$top=999");
        let reply = self.as_user(&token).get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let mut entries = reply.body["value"].as_array().expect("a sign-in page").clone();
        entries.reverse();
        entries
    }

    /// Changes the tenant's sign-in policy (`PATCH /policies/keywardSignInPolicy`).
    pub async fn set_sign_in_policy(&self, body: &Value) {
        let reply = self.patch("/v1.0/policies/keywardSignInPolicy", body).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    }

    /// Turns security defaults (MFA for every user) on or off
    /// (`PATCH /policies/identitySecurityDefaultsEnforcementPolicy`).
    pub async fn set_security_defaults(&self, is_enabled: bool) {
        let body = serde_json::json!({"isEnabled": is_enabled});
        let reply = self.patch("/v1.0/policies/identitySecurityDefaultsEnforcementPolicy", &body).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    }

    /// A policy that locks an account after three wrong passwords, for a minute, and asks no MFA
    /// of administrators (so a test signs them in with a password alone).
    pub async fn lock_out_after_three_failures(&self) {
        self.set_sign_in_policy(&serde_json::json!({
            "lockoutThreshold": 3,
            "lockoutDurationInSeconds": 60,
            "requireMfaForPrivilegedRoles": false
        }))
        .await;
    }

    /// `GET` as the Global Administrator.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, Some(&self.admin_token), None, &[]).await
    }

    /// `POST` JSON as the Global Administrator.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some(&self.admin_token), Some(body), &[]).await
    }

    /// `PATCH` JSON as the Global Administrator.
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PATCH, path, Some(&self.admin_token), Some(body), &[]).await
    }

    /// `DELETE` as the Global Administrator.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, Some(&self.admin_token), None, &[]).await
    }

    /// Creates a user through the API and returns its JSON.
    pub async fn create_user(&self, alias: &str, display_name: &str) -> Value {
        self.create_user_with(alias, display_name, serde_json::json!({})).await
    }

    /// Creates a guest (`userType` `Guest`) through the API and returns its JSON.
    pub async fn create_guest(&self, alias: &str, display_name: &str) -> Value {
        self.create_user_with(alias, display_name, serde_json::json!({"userType": "Guest"})).await
    }

    /// Creates a user through the API with `extra` properties besides the usual ones.
    async fn create_user_with(&self, alias: &str, display_name: &str, extra: Value) -> Value {
        let mut body = serde_json::json!({
            "accountEnabled": true,
            "displayName": display_name,
            "mailNickname": alias,
            "userPrincipalName": format!("{alias}@{DOMAIN}"),
            "passwordProfile": {"password": "Tq7-harbour-Lantern-92!", "forceChangePasswordNextSignIn": false},
        });
        if let (Some(fields), Value::Object(more)) = (body.as_object_mut(), extra) {
            fields.extend(more);
        }
        let reply = self.post("/v1.0/users", &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.body
    }
}

/// The benchmarks' user number `n`: `bench{n}@contoso.test`, "Bench {n}", enabled, created at
/// `now`, nothing else set.
pub fn bench_user(
    id: keyward_core::ids::ObjectId,
    tenant: &keyward_core::ids::ObjectId,
    n: u64,
    now: time::OffsetDateTime,
) -> keyward_core::directory::User {
    keyward_core::directory::User {
        id,
        tenant_id: tenant.clone(),
        user_principal_name: format!("bench{n}@{DOMAIN}"),
        display_name: format!("Bench {n}"),
        given_name: None,
        surname: None,
        mail: None,
        mail_nickname: format!("bench{n}"),
        other_mails: Vec::new(),
        mobile_phone: None,
        business_phones: Vec::new(),
        job_title: None,
        department: None,
        account_enabled: true,
        usage_location: None,
        created: now,
        sign_in_sessions_valid_from: now,
        force_change_password_next_sign_in: false,
        last_password_change: None,
        manager: None,
        profile: keyward_core::profile::Profile::new_member(),
    }
}
