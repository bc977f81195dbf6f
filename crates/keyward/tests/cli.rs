//! The `keyward` binary as an operator meets it: help, first start, demo data, tokens, logs,
//! graceful shutdown and clear errors.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod remote;

const BIN: &str = env!("CARGO_BIN_EXE_keyward");

struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let path = std::env::temp_dir().join(format!("keyward-cli-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("scratch dir");
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn keyward(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("KEYWARD_DATA_DIR", dir.join("data"));
    cmd.stdin(Stdio::null());
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Server {
    child: Child,
    port: u16,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Server {
    fn start(dir: &Path, name: &str, configure: impl FnOnce(&mut Command)) -> Server {
        Server::start_at(dir, name, free_port(), configure)
    }

    fn start_at(dir: &Path, name: &str, port: u16, configure: impl FnOnce(&mut Command)) -> Server {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let mut cmd = keyward(dir);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        configure(&mut cmd);
        let child = cmd.spawn().expect("spawn keyward serve");
        let server = Server { child, port, stdout, stderr };
        server.wait_ready();
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits for the line the server prints once start-up (bootstrap, demo data) is done.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.stdout().contains("Keyward is listening") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("keyward serve did not start within 60 s; stderr:\n{}", self.stderr());
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends SIGTERM; the exit code and the whole log. Read only once the server has ended: its
    /// lines wait about 20 ms in memory before they are written, and a server that stops writes
    /// what is waiting.
    fn terminate_with_log(self) -> (Option<i32>, String) {
        let log = self.stderr.clone();
        let code = self.terminate();
        (code, std::fs::read_to_string(&log).expect("log"))
    }

    /// Sends SIGTERM and returns the exit code.
    fn terminate(mut self) -> Option<i32> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("keyward serve did not stop within 15 s of SIGTERM; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn help_lists_every_flag_and_environment_variable() {
    let scratch = Scratch::new();
    let output = keyward(&scratch.0).args(["serve", "--help"]).output().expect("help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--listen",
        "KEYWARD_LISTEN",
        "--data-dir",
        "KEYWARD_DATA_DIR",
        "--database-url",
        "KEYWARD_DATABASE_URL",
        "--public-url",
        "KEYWARD_PUBLIC_URL",
        "--tls-cert",
        "KEYWARD_TLS_CERT",
        "--tls-key",
        "KEYWARD_TLS_KEY",
        "--fido-roots",
        "KEYWARD_FIDO_ROOTS",
        "--demo",
        "--log-format",
        "KEYWARD_BOOTSTRAP_ADMIN_UPN",
        "KEYWARD_BOOTSTRAP_ADMIN_PASSWORD",
        "KEYWARD_TENANT_DOMAIN",
        "127.0.0.1:8080",
        "./keyward-data",
    ] {
        assert!(help.contains(needle), "serve --help lacks {needle}:\n{help}");
    }
    let top = keyward(&scratch.0).arg("--help").output().expect("help");
    let top = String::from_utf8_lossy(&top.stdout);
    for command in ["serve", "token", "keys", "audit", "admin"] {
        assert!(top.contains(command), "{top}");
    }
    let recover = keyward(&scratch.0).args(["admin", "recover", "--help"]).output().expect("help");
    let recover = String::from_utf8_lossy(&recover.stdout);
    assert!(recover.contains("--upn") && recover.contains("Example:"), "{recover}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_prints_a_one_time_pass_and_later_starts_do_not() {
    let scratch = Scratch::new();
    let server = Server::start(&scratch.0, "first", |cmd| {
        cmd.env("KEYWARD_TENANT_DOMAIN", "example.test");
    });
    let out = server.stdout();
    assert!(out.contains("One-time Temporary Access Pass for admin@example.test: "), "{out}");
    let health = reqwest::get(server.url("/healthz")).await.expect("healthz");
    assert_eq!(health.status(), 200);
    let (code, log) = server.terminate_with_log();
    assert_eq!(code, Some(0), "graceful shutdown exits 0");
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes in a log that is not a terminal");
    assert!(scratch.0.join("data/keyward.db").exists() && scratch.0.join("data/keyward.key").exists());

    let again = Server::start(&scratch.0, "second", |cmd| {
        cmd.env("KEYWARD_TENANT_DOMAIN", "example.test");
    });
    assert!(!again.stdout().contains("Temporary Access Pass"), "{}", again.stdout());
    assert_eq!(again.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_data_tokens_and_json_logs() {
    let scratch = Scratch::new();
    let server = Server::start(&scratch.0, "demo", |cmd| {
        cmd.args(["--demo", "--log-format", "json"])
            .env("KEYWARD_BOOTSTRAP_ADMIN_UPN", "root@fabrikam.test")
            .env("KEYWARD_BOOTSTRAP_ADMIN_PASSWORD", "Harbour-Lantern-92!");
    });
    let out = server.stdout();
    assert!(out.contains("Created tenant") && out.contains("root@fabrikam.test"), "{out}");
    assert!(!out.contains("Temporary Access Pass"), "a password was given, so no pass: {out}");
    for upn in [
        "grace.global@fabrikam.test",
        "pat.privileged@fabrikam.test",
        "alex.auth@fabrikam.test",
        "adele.vance@fabrikam.test",
    ] {
        assert!(out.contains(upn), "{upn} missing from:\n{out}");
    }
    assert!(!out.contains("Harbour-Lantern"), "the bootstrap password is never printed");

    let token = keyward(&scratch.0)
        .args(["token", "--upn", "grace.global@fabrikam.test", "--public-url", &server.url("")])
        .output()
        .expect("token");
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    assert!(token.stderr.is_empty(), "keyward token prints only the token: {}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).expect("utf-8").trim().to_owned();
    assert_eq!(token.split('.').count(), 3);
    // The address the server prints leads to the sign-in page.
    assert!(
        out.contains(&format!("sign in at {}/ (or {}/fabrikam.test/login)", server.url(""), server.url(""))),
        "{out}"
    );
    let home = reqwest::get(server.url("/")).await.expect("home");
    assert_eq!(home.status(), 200);
    assert!(home.text().await.expect("page").contains("Sign-in name (user principal name"));
    let users: serde_json::Value = reqwest::Client::new()
        .get(server.url("/v1.0/users?$filter=startswith(displayName,'Adele')"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("users")
        .json()
        .await
        .expect("json");
    assert_eq!(users["value"][0]["userPrincipalName"], "adele.vance@fabrikam.test", "{users}");
    // The demo gives users methods to re-register: Adele a phone, Megan an authenticator app.
    assert!(out.contains("phone +1 4255550100") && out.contains("authenticator app, secret "), "{out}");
    let methods: serde_json::Value = reqwest::Client::new()
        .get(server.url("/v1.0/users/megan.bowen@fabrikam.test/authentication/methods"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("methods")
        .json()
        .await
        .expect("json");
    assert!(methods.to_string().contains("softwareOathAuthenticationMethod"), "{methods}");

    // An operator recovers a Global Administrator with a fresh pass.
    let recovered =
        keyward(&scratch.0).args(["admin", "recover", "--upn", "grace.global@fabrikam.test"]).output().expect("run");
    assert!(recovered.status.success(), "{}", String::from_utf8_lossy(&recovered.stderr));
    let said = String::from_utf8_lossy(&recovered.stdout);
    assert!(said.contains("Temporary Access Pass for grace.global@fabrikam.test: "), "{said}");
    let refused =
        keyward(&scratch.0).args(["admin", "recover", "--upn", "adele.vance@fabrikam.test"]).output().expect("run");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not an enabled Global Administrator"));

    let (code, err) = server.terminate_with_log();
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = err.lines().filter(|it| !it.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        assert!(parsed["level"].is_string() && parsed["timestamp"].is_string(), "{line}");
    }
    // Every request is there, the last one too, and the log's last line is the shutdown's.
    assert!(err.contains(r#""path":"/v1.0/users/megan.bowen@fabrikam.test/authentication/methods""#), "{err}");
    assert!(lines.last().is_some_and(|it| it.contains(r#""message":"stopped""#)), "{err}");
    assert!(!err.contains(&token), "tokens never reach the log");
    // Starting the demo again on the same data says how to start over.
    let again = Server::start(&scratch.0, "demo-again", |cmd| {
        cmd.args(["--demo"]);
    });
    let out = again.stdout();
    assert!(out.contains("Demo data already present") && out.contains("To start over"), "{out}");
    assert_eq!(again.terminate(), Some(0));
}

#[test]
fn bad_configuration_fails_with_a_message_that_says_what_to_do() {
    let scratch = Scratch::new();
    // Port 0: these servers must fail before serving, and need no port another test could want.
    let listen = "127.0.0.1:0".to_owned();
    let weak = keyward(&scratch.0)
        .args(["serve", "--listen", &listen])
        .env("KEYWARD_BOOTSTRAP_ADMIN_UPN", "root@fabrikam.test")
        .env("KEYWARD_BOOTSTRAP_ADMIN_PASSWORD", "password")
        .output()
        .expect("run");
    assert!(!weak.status.success());
    let message = String::from_utf8_lossy(&weak.stderr);
    assert!(message.contains("KEYWARD_BOOTSTRAP_ADMIN_PASSWORD is refused"), "{message}");
    // What the server logged before it failed is written, and before the failure's message.
    let (logged, failed) = (message.find("opening the database"), message.find("error:"));
    assert!(logged.is_some() && logged < failed, "{message}");

    let tls = keyward(&scratch.0)
        .args([
            "serve",
            "--listen",
            &listen,
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ])
        .output()
        .expect("run");
    assert!(!tls.status.success());
    assert!(
        String::from_utf8_lossy(&tls.stderr).contains("/nonexistent/cert.pem"),
        "{}",
        String::from_utf8_lossy(&tls.stderr)
    );

    // FIDO attestation roots that are missing or not certificates stop the start, saying why.
    let not_pem = scratch.0.join("roots.pem");
    std::fs::write(&not_pem, "these are not certificates").expect("write");
    for (path, says) in
        [("/nonexistent/roots.pem", "cannot read"), (not_pem.to_str().expect("path"), "no PEM certificate")]
    {
        let roots =
            keyward(&scratch.0).args(["serve", "--listen", &listen, "--fido-roots", path]).output().expect("run");
        assert!(!roots.status.success());
        let message = String::from_utf8_lossy(&roots.stderr);
        assert!(message.contains(says) && message.contains("--fido-roots"), "{message}");
    }

    // Commands other than serve never create a database or a key: in a folder without the
    // server's data they fail, naming the path they looked at and how to point them at the server's.
    for args in [&["token", "--upn", "a@b.c"][..], &["keys", "list"][..], &["keys", "rotate"][..]] {
        let empty = Scratch::new();
        let refused = keyward(&empty.0).args(args).output().expect("run");
        assert!(!refused.status.success(), "{args:?}");
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(message.contains("there is no Keyward database at") && message.contains("--data-dir"), "{message}");
        assert!(message.contains(&empty.0.join("data").join("keyward.db").display().to_string()), "{message}");
        assert_eq!(std::fs::read_dir(&empty.0).expect("dir").count(), 0, "{args:?} created files");
    }

    let url =
        keyward(&scratch.0).args(["token", "--upn", "a@b.c", "--database-url", "mysql://x"]).output().expect("run");
    assert!(!url.status.success());
    assert!(
        String::from_utf8_lossy(&url.stderr).contains("sqlite://PATH or postgres://"),
        "{}",
        String::from_utf8_lossy(&url.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_and_export() {
    let scratch = Scratch::new();
    let missing = keyward(&scratch.0).args(["audit", "verify"]).output().expect("verify");
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("no Keyward database") && err.contains("--data-dir"), "{err}");
    assert!(!scratch.0.join("data").join("keyward.db").exists(), "verify never creates a database");

    let server = Server::start(&scratch.0, "audit", |cmd| {
        cmd.args(["--demo"]).env("KEYWARD_BOOTSTRAP_ADMIN_PASSWORD", "Harbour-Lantern-92!");
    });
    assert_eq!(server.terminate(), Some(0));

    let verified = keyward(&scratch.0).args(["audit", "verify"]).output().expect("verify");
    let out = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(verified.status.success(), "{out}{}", String::from_utf8_lossy(&verified.stderr));
    assert!(out.contains("chain intact"), "{out}");
    let records: usize = out
        .split(" records, chain intact")
        .next()
        .and_then(|it| it.rsplit(' ').next())
        .and_then(|it| it.parse().ok())
        .unwrap_or_else(|| panic!("no record count in {out}"));
    assert!(records > 5, "demo data writes audited changes: {out}");

    let export = keyward(&scratch.0).args(["audit", "export"]).output().expect("export");
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(export.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), records, "the export holds every record");
    let times: Vec<&str> = lines.iter().map(|it| it["activityDateTime"].as_str().expect("time")).collect();
    assert!(times.windows(2).all(|it| it[0] <= it[1]), "oldest first");
    assert!(
        lines.iter().any(|it| it["activityDisplayName"] == "Add user" && it["targetResources"][0]["id"].is_string())
    );
    assert!(!lines.iter().any(|it| it.to_string().contains("Harbour-Lantern")), "no secret reaches the export");

    let csv_path = scratch.0.join("audit.csv");
    let csv = keyward(&scratch.0)
        .args(["audit", "export", "--format", "csv", "--since", "2000-01-01", "--output"])
        .arg(&csv_path)
        .output()
        .expect("csv export");
    assert!(csv.status.success(), "{}", String::from_utf8_lossy(&csv.stderr));
    assert!(String::from_utf8_lossy(&csv.stdout).contains(&format!("Exported {records} records")));
    let text = std::fs::read_to_string(&csv_path).expect("csv file");
    assert!(text.starts_with("id,activityDateTime,category,activityDisplayName,"), "{text}");
    assert_eq!(text.lines().filter(|it| it.starts_with("Directory_")).count(), records, "{text}");
    let nothing = keyward(&scratch.0).args(["audit", "export", "--until", "2000-01-01"]).output().expect("export");
    assert!(nothing.status.success() && nothing.stdout.is_empty(), "no record is that old");
    let bad = keyward(&scratch.0).args(["audit", "export", "--since", "yesterday"]).output().expect("export");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));

    let run = |args: &[&str]| keyward(&scratch.0).args(args).output().expect("keyward audit retention");
    let shown = run(&["audit", "retention"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("kept 30 days"), "{shown:?}");
    let set = run(&["audit", "retention", "--days", "45", "--apply"]);
    let out = String::from_utf8_lossy(&set.stdout);
    assert!(set.status.success() && out.contains("kept 45 days") && out.contains("Removed 0 records"), "{set:?}");
    let bad = run(&["audit", "retention", "--days", "0"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("between 1 and 3650"), "{bad:?}");
    assert!(String::from_utf8_lossy(&run(&["audit", "retention"]).stdout).contains("kept 45 days"));

    // Someone with write access to the database rewrites a record: verify names it and fails.
    let url = format!("sqlite://{}", scratch.0.join("data").join("keyward.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open the database");
    let victim: String =
        sqlx::query_scalar("SELECT id FROM audit_records WHERE chain_index = 2").fetch_one(&pool).await.expect("id");
    sqlx::query("UPDATE audit_records SET record = REPLACE(record, 'success', 'failure') WHERE chain_index = 2")
        .execute(&pool)
        .await
        .expect("tamper");
    pool.close().await;
    let tampered = keyward(&scratch.0).args(["audit", "verify"]).output().expect("verify");
    assert_eq!(tampered.status.code(), Some(1));
    let out = String::from_utf8_lossy(&tampered.stdout);
    assert!(out.contains("TAMPERED") && out.contains(&victim) && out.contains("was changed"), "{out}");
    assert!(String::from_utf8_lossy(&tampered.stderr).contains("altered outside Keyward"));
}

/// What one attempted create ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The server answered 2xx: the change and its audit record must be there.
    Committed,
    /// The server died before answering: both or neither may be there, never one of them.
    Unknown,
}

/// Creates users one after another until a request fails (the server was killed).
async fn write_until_killed(base: String, token: String, prefix: String) -> Vec<(String, Outcome)> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let mut attempts = Vec::new();
    for n in 0.. {
        let upn = format!("{prefix}{n}@crash.test");
        let body = serde_json::json!({"accountEnabled": true, "displayName": format!("Crash {prefix}{n}"),
            "mailNickname": format!("{prefix}{n}"), "userPrincipalName": upn,
            "passwordProfile": {"password": "Tq7-harbour-Lantern-92!"}});
        match client.post(format!("{base}/v1.0/users")).bearer_auth(&token).json(&body).send().await {
            Ok(reply) if reply.status().as_u16() == 201 => attempts.push((upn, Outcome::Committed)),
            Ok(reply) => panic!("create answered {} before the kill: {:?}", reply.status(), reply.text().await),
            Err(_) => {
                attempts.push((upn, Outcome::Unknown));
                return attempts;
            }
        }
    }
    attempts
}

/// Every page of a collection.
async fn collect_all(client: &reqwest::Client, token: &str, first: String) -> Vec<serde_json::Value> {
    let mut items = Vec::new();
    let mut next = Some(first);
    while let Some(url) = next {
        let page: serde_json::Value =
            client.get(url).bearer_auth(token).send().await.expect("page").json().await.expect("json");
        items.extend(page["value"].as_array().expect("value").iter().cloned());
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
    }
    items
}

fn start_on(scratch: &Path, url: &str, name: &str, port: u16) -> Server {
    Server::start_at(scratch, name, port, |cmd| {
        cmd.env("KEYWARD_DATABASE_URL", url)
            .env("KEYWARD_BOOTSTRAP_ADMIN_UPN", "admin@crash.test")
            .env("KEYWARD_BOOTSTRAP_ADMIN_PASSWORD", "Harbour-Lantern-92!");
    })
}

/// SIGKILL during a stream of audited writes, again and again: every acknowledged change has its
/// audit record, no record exists without its change, and the hash chain verifies.
async fn crash_during_audited_writes(backend: keyward_testkit::Backend) {
    let scratch = Scratch::new();
    let (url, _db_dir) = keyward_testkit::fresh_url(backend);
    let mut attempts: Vec<(String, Outcome)> = Vec::new();
    let mut token = String::new();
    // One port throughout: the token's issuer is the server's URL.
    let port = free_port();
    for round in 0..4_u64 {
        let server = start_on(&scratch.0, &url, &format!("crash{round}"), port);
        if token.is_empty() {
            let minted = keyward(&scratch.0)
                .env("KEYWARD_DATABASE_URL", &url)
                .args([
                    "token",
                    "--upn",
                    "admin@crash.test",
                    "--lifetime-minutes",
                    "60",
                    "--public-url",
                    &server.url(""),
                ])
                .output()
                .expect("token");
            assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
            token = String::from_utf8(minted.stdout).expect("utf-8").trim().to_owned();
        }
        // Two writers race for the tenant's chain head; the kill lands at a different point each round.
        let writers: Vec<_> = ["a", "b"]
            .iter()
            .map(|writer| tokio::spawn(write_until_killed(server.url(""), token.clone(), format!("r{round}{writer}"))))
            .collect();
        tokio::time::sleep(Duration::from_millis(700 + 350 * round)).await;
        let mut server = server;
        server.child.kill().expect("SIGKILL");
        let _ = server.child.wait();
        for writer in writers {
            attempts.extend(writer.await.expect("writer"));
        }
    }
    let committed = attempts.iter().filter(|(_, outcome)| *outcome == Outcome::Committed).count();
    assert!(committed >= 8, "the writers got writes through between kills: {attempts:?}");

    let server = start_on(&scratch.0, &url, "after", port);
    let client = reqwest::Client::new();
    let users: std::collections::HashSet<String> =
        collect_all(&client, &token, server.url("/v1.0/users?$select=userPrincipalName&$top=999"))
            .await
            .iter()
            .filter_map(|it| it["userPrincipalName"].as_str().map(str::to_owned))
            .collect();
    let audited: std::collections::HashSet<String> = collect_all(
        &client,
        &token,
        server.url("/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Add user'&$top=999"),
    )
    .await
    .iter()
    .filter_map(|it| it["targetResources"][0]["userPrincipalName"].as_str().map(str::to_owned))
    .collect();
    for (upn, outcome) in &attempts {
        let (has_user, has_record) = (users.contains(upn), audited.contains(upn));
        assert_eq!(has_user, has_record, "{upn}: a change and its audit record commit together ({outcome:?})");
        if *outcome == Outcome::Committed {
            assert!(has_user, "{upn} was acknowledged with 201 but is missing after the crash");
        }
    }
    assert_eq!(server.terminate(), Some(0));

    let verified =
        keyward(&scratch.0).env("KEYWARD_DATABASE_URL", &url).args(["audit", "verify"]).output().expect("verify");
    let out = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && out.contains("chain intact"),
        "{out}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

keyward_testkit::on_both_backends!(crash_during_audited_writes);
