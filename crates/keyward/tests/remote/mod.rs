//! The `keyward` binary as an administrator's remote client, end to end against a spawned
//! server: device-code login completed on the verification pages as a user would, bulk role
//! assignment from a CSV, dry runs, refusals, output formats, completions and sign-out.

use std::io::BufRead;
use std::path::Path;
use std::process::{Output, Stdio};

use keyward_testkit::browser::Browser;
use serde_json::Value;

use super::{Scratch, Server, keyward};

/// The demo's printed password of `alias`.
fn demo_password(server: &Server, alias: &str) -> String {
    let out = server.stdout();
    let line = out.lines().find(|it| it.trim_start().starts_with(&format!("{alias}@"))).expect("demo account");
    line.split_whitespace().nth(1).expect("password").to_owned()
}

/// A server with the demo directory, named `name`.
fn demo_server(dir: &Path, name: &str) -> Server {
    Server::start(dir, name, |cmd| {
        cmd.args(["--demo"])
            .env("KEYWARD_BOOTSTRAP_ADMIN_UPN", "root@fabrikam.test")
            .env("KEYWARD_BOOTSTRAP_ADMIN_PASSWORD", "Harbour-Lantern-92!");
    })
}

/// The CLI with its own config directory.
fn cli(dir: &Path) -> std::process::Command {
    let mut cmd = keyward(dir);
    cmd.env("XDG_CONFIG_HOME", dir.join("config"));
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cli(dir).args(args).output().expect("run keyward")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}\nstderr: {}", text(&output.stdout), text(&output.stderr)))
}

/// The lines a child writes, as they come.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    receiver
}

/// `keyward login`, with the browser part done by a test browser signing in as `upn`.
async fn login(dir: &Path, server: &Server, name: &str, upn: &str, password: &str) -> Output {
    login_at(dir, &server.url(""), &[], Browser::new(&server.url("")), name, upn, password).await
}

/// `keyward login --url base EXTRA…`, the verification pages done with `browser`.
async fn login_at(
    dir: &Path,
    base: &str,
    extra: &[&str],
    mut browser: Browser,
    name: &str,
    upn: &str,
    password: &str,
) -> Output {
    let mut child = cli(dir)
        .args(["login", "--url", base, "--name", name, "--no-browser"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn login");
    let receiver = lines_of(child.stderr.take().expect("stderr"));
    let prompt = receiver.recv_timeout(std::time::Duration::from_secs(30)).expect("the login prints the code");
    // "To sign in to URL, open VERIFICATION in a browser and enter the code CODE (valid 15 minutes)."
    let words: Vec<&str> = prompt.split_whitespace().collect();
    let at = |word: &str| words.iter().position(|it| *it == word).unwrap_or_else(|| panic!("'{word}' in: {prompt}"));
    let verification = words[at("open") + 1];
    let code = words[at("code") + 1];
    let path = verification.strip_prefix(base).expect("the verification address is the server's");
    let page = browser.get(path).await;
    let page = browser.submit(&page, "username", &[("username", upn)], &[]).await;
    let mut page = browser.submit(&page, "password", &[("current-password", password)], &[]).await;
    if page.title() == "More information required" {
        // An administrator's first sign-in registers an authenticator app, as a person would.
        let form = browser.submit(&page, "more_info", &[], &[]).await;
        let secret = keyward_core::totp::base32_decode(&form.by_id("secret").expect("secret")).expect("base32");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let code = keyward_core::totp::code_at_step(&secret, keyward_core::totp::step_at(now));
        page = browser.submit(&form, "register_totp", &[("one-time-code", &code)], &[]).await;
    }
    assert_eq!(page.title(), "Enter code", "{}", page.text());
    let page = browser.submit(&page, "device_code", &[], &[("user_code", code)]).await;
    assert_eq!(page.title(), "Are you trying to sign in?", "{}", page.text());
    let page = browser.submit(&page, "device_confirm", &[], &[]).await;
    assert_eq!(page.title(), "You're signed in", "{}", page.text());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("login");
    let rest: Vec<String> = receiver.try_iter().collect();
    Output { stderr: format!("{prompt}\n{}", rest.join("\n")).into_bytes(), ..output }
}

#[tokio::test]
async fn remote_administration_from_the_command_line() {
    let scratch = Scratch::new();
    let dir = scratch.0.as_path();
    let server = demo_server(dir, "remote");

    // Before logging in, every remote command says how to.
    let before = run(dir, &["whoami"]);
    assert_eq!(before.status.code(), Some(3), "{}", text(&before.stderr));
    assert!(text(&before.stderr).contains("keyward login --url"), "{}", text(&before.stderr));

    let grace =
        login(dir, &server, "main", "grace.global@fabrikam.test", &demo_password(&server, "grace.global")).await;
    assert!(grace.status.success(), "{}\n{}", text(&grace.stdout), text(&grace.stderr));
    assert!(text(&grace.stdout).contains("Logged in to") && text(&grace.stdout).contains("grace.global@fabrikam.test"));
    let credentials = dir.join("config/keyward/credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&credentials).expect("credentials").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the token cache is private");
    }

    let whoami = run(dir, &["whoami", "--json"]);
    assert!(whoami.status.success(), "{}", text(&whoami.stderr));
    let me = json_of(&whoami);
    assert_eq!(me["user"], "grace.global@fabrikam.test");
    assert!(me["roles"].to_string().contains("Global Administrator"), "{me}");
    assert!(me["sessionEndsAt"].is_string() && me["tenant"]["name"] == "fabrikam.test", "{me}");

    // An expired access token is renewed silently with the refresh token.
    let mut cache: Value = serde_json::from_str(&std::fs::read_to_string(&credentials).expect("read")).expect("json");
    let old_token = cache["servers"]["main"]["access_token"].clone();
    cache["servers"]["main"]["access_expires_at"] = 0.into();
    std::fs::write(&credentials, cache.to_string()).expect("write");
    let users = run(dir, &["users", "list", "--json"]);
    assert!(users.status.success(), "{}", text(&users.stderr));
    let listed = json_of(&users);
    assert!(listed.to_string().contains("adele.vance@fabrikam.test"), "{listed}");
    let cache: Value = serde_json::from_str(&std::fs::read_to_string(&credentials).expect("read")).expect("json");
    assert_ne!(cache["servers"]["main"]["access_token"], old_token, "the token was refreshed");
    // Commands started at once with an ending token refresh it once between them: the server's
    // refresh-token reuse detection would otherwise end the session.
    let mut cache = cache;
    cache["servers"]["main"]["access_expires_at"] = 0.into();
    std::fs::write(&credentials, cache.to_string()).expect("write");
    let children: Vec<_> = (0..3)
        .map(|_| {
            cli(dir).args(["whoami", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let mut cache: Value = serde_json::from_str(&std::fs::read_to_string(&credentials).expect("read")).expect("json");
    cache["servers"]["main"]["access_expires_at"] = 0.into();
    std::fs::write(&credentials, cache.to_string()).expect("write");
    let after = run(dir, &["whoami", "--json"]);
    assert!(after.status.success(), "the refresh token survives concurrent refreshes: {}", text(&after.stderr));

    // Tables: aligned, no colour and no progress bar when piped.
    let table = run(dir, &["users", "list", "--filter", "startswith(displayName,'Adele')"]);
    let shown = text(&table.stdout);
    assert!(shown.contains("displayName") && shown.contains("Adele Vance"), "{shown}");
    assert!(!shown.contains('\u{1b}'), "no colour when piped: {shown:?}");
    let csv = run(dir, &["users", "list", "--select", "userPrincipalName,department", "--output", "csv"]);
    assert!(text(&csv.stdout).starts_with("userPrincipalName,department\n"), "{}", text(&csv.stdout));

    // A bulk role assignment from a CSV with a bad row and an already-assigned row.
    let file = dir.join("roles.csv");
    std::fs::write(
        &file,
        "userPrincipalName,role,scope\n\
         lee.gu@fabrikam.test,Helpdesk Administrator,\n\
         nobody@fabrikam.test,Helpdesk Administrator,\n\
         pat.privileged@fabrikam.test,Privileged Authentication Administrator,/\n\
         megan.bowen@fabrikam.test,No Such Role,\n\
         adele.vance@fabrikam.test,Authentication Administrator,au:Sales\n",
    )
    .expect("csv");
    let file = file.to_str().expect("path");
    let audit_count = |dir: &Path| {
        let out = run(dir, &["audit", "list", "--top", "999", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        json_of(&out).as_array().expect("records").len()
    };
    let records_before = audit_count(dir);
    let dry = run(dir, &["roles", "assign", "--from-csv", file, "--dry-run"]);
    assert_eq!(dry.status.code(), Some(6), "rows that cannot be done fail a dry run too: {}", text(&dry.stderr));
    let said = text(&dry.stdout);
    assert!(said.contains("would change") && said.contains("assign Helpdesk Administrator"), "{said}");
    assert!(said.contains("already holds Privileged Authentication Administrator"), "{said}");
    assert!(
        said.contains("there is no user 'nobody@fabrikam.test'") && said.contains("there is no role 'No Such Role'"),
        "{said}"
    );
    assert!(
        said.contains("2 would change, 1 already, 0 skipped, 2 failed, of 5 rows (dry run: nothing was changed)"),
        "{said}"
    );
    assert!(!text(&dry.stderr).contains('\r') && !text(&dry.stderr).contains('\u{1b}'), "no progress bar when piped");
    assert_eq!(audit_count(dir), records_before, "a dry run changes nothing and writes no audit record");
    let lee = run(dir, &["roles", "assignments", "--user", "lee.gu@fabrikam.test", "--json"]);
    assert_eq!(json_of(&lee), Value::Array(Vec::new()), "the dry run assigned nothing");

    let unconfirmed = run(dir, &["roles", "assign", "--from-csv", file]);
    assert_eq!(unconfirmed.status.code(), Some(2), "a real bulk run without a terminal needs --yes");
    assert!(text(&unconfirmed.stderr).contains("Add --yes to confirm"), "{}", text(&unconfirmed.stderr));
    let real = run(dir, &["roles", "assign", "--from-csv", file, "--json", "--yes"]);
    assert_eq!(real.status.code(), Some(6), "{}", text(&real.stderr));
    let result = json_of(&real);
    let outcomes: Vec<&str> =
        result["rows"].as_array().expect("rows").iter().map(|it| it["result"].as_str().expect("r")).collect();
    assert_eq!(outcomes, ["done", "failed", "already", "failed", "done"], "{result}");
    assert_eq!(result["summary"]["changed"], 2);
    let lee = json_of(&run(dir, &["roles", "assignments", "--user", "lee.gu@fabrikam.test", "--json"]));
    assert_eq!(lee[0]["roleDisplayName"], "Helpdesk Administrator", "{lee}");
    let adele = json_of(&run(dir, &["roles", "assignments", "--user", "adele.vance@fabrikam.test", "--json"]));
    assert!(adele[0]["directoryScopeId"].as_str().expect("scope").starts_with("/administrativeUnits/"), "{adele}");
    // Running the file again repeats nothing; --continue-from skips the rows before it.
    let again = run(dir, &["roles", "assign", "--from-csv", file, "--continue-from", "3", "--yes"]);
    let said = text(&again.stdout);
    assert!(!said.contains("lee.gu") && said.contains("done by an earlier run of this command"), "{said}");
    assert!(said.contains("0 done, 2 already, 0 skipped, 1 failed, of 3 rows"), "{said}");

    // MFA operations: a pass shown once, per-user MFA with "already", a refused operation.
    let pass = run(dir, &["mfa", "tap", "create", "megan.bowen@fabrikam.test", "--lifetime", "1h", "--once", "--json"]);
    assert!(pass.status.success(), "{}", text(&pass.stderr));
    let pass = json_of(&pass);
    assert_eq!(pass["rows"][0]["temporaryAccessPass"]["lifetimeInMinutes"], 60, "{pass}");
    assert!(pass["rows"][0]["temporaryAccessPass"]["temporaryAccessPass"].as_str().is_some_and(|it| it.len() >= 8));
    let per_user = run(
        dir,
        &[
            "mfa",
            "per-user",
            "set",
            "adele.vance@fabrikam.test",
            "lee.gu@fabrikam.test",
            "--state",
            "enforced",
            "--yes",
        ],
    );
    assert!(per_user.status.success(), "{}{}", text(&per_user.stdout), text(&per_user.stderr));
    let per_user = run(dir, &["mfa", "per-user", "set", "adele.vance@fabrikam.test", "--state", "enforced"]);
    assert!(text(&per_user.stdout).contains("per-user MFA is already enforced"), "{}", text(&per_user.stdout));
    let many = run(dir, &["mfa", "revoke-sessions", "adele.vance@fabrikam.test", "lee.gu@fabrikam.test"]);
    assert_eq!(many.status.code(), Some(2), "a real run on many users without a terminal needs --yes");
    assert!(text(&many.stderr).contains("--yes"), "{}", text(&many.stderr));
    // A run stopped by a failed row and run again does no user twice: the finished rows are remembered.
    let revoke_file = dir.join("revoke.csv");
    std::fs::write(&revoke_file, "upn\nlee.gu@fabrikam.test\nghost@fabrikam.test\n").expect("csv");
    let revoke_file = revoke_file.to_str().expect("path");
    for _ in 0..2 {
        let out = run(dir, &["mfa", "revoke-sessions", "--from-csv", revoke_file, "--yes"]);
        assert_eq!(out.status.code(), Some(6), "{}", text(&out.stdout));
    }
    let said = text(&run(dir, &["mfa", "revoke-sessions", "--from-csv", revoke_file, "--yes"]).stdout);
    assert!(said.contains("done by an earlier run of this command"), "{said}");
    let revocations = json_of(&run(
        dir,
        &[
            "audit",
            "list",
            "--user",
            "lee.gu@fabrikam.test",
            "--activity",
            "Update StsRefreshTokenValidFrom Timestamp",
            "--json",
        ],
    ));
    assert_eq!(revocations.as_array().map(Vec::len), Some(1), "revoked once: {revocations}");
    let methods = run(dir, &["mfa", "methods", "megan.bowen@fabrikam.test"]);
    assert!(
        text(&methods.stdout).contains("temporaryAccessPass") && text(&methods.stdout).contains("softwareOath"),
        "{}",
        text(&methods.stdout)
    );

    // Dual control on: a pass for a privileged user is held, and the row says so (and is
    // remembered, so running it again asks nothing twice).
    let set_dual_control = |on: bool| {
        let cache: Value = serde_json::from_str(&std::fs::read_to_string(&credentials).expect("read")).expect("json");
        let token = cache["servers"]["main"]["access_token"].as_str().expect("token").to_owned();
        let url = server.url("/v1.0/policies/keywardServiceDeskPolicy");
        async move {
            let reply = reqwest::Client::new()
                .patch(url)
                .bearer_auth(token)
                .json(&serde_json::json!({"dualControlEnabled": on}))
                .send()
                .await
                .expect("patch");
            assert_eq!(reply.status(), reqwest::StatusCode::NO_CONTENT);
        }
    };
    set_dual_control(true).await;
    let held = run(dir, &["mfa", "tap", "create", "pat.privileged@fabrikam.test", "--json"]);
    assert!(held.status.success(), "{}", text(&held.stderr));
    let held = json_of(&held);
    assert_eq!(held["rows"][0]["result"], "held for approval", "{held}");
    assert_eq!(held["rows"][0]["serviceDeskRequest"]["status"], "pendingApproval", "{held}");
    assert!(held["rows"][0]["detail"].as_str().is_some_and(|it| it.contains("works once approved")), "{held}");
    assert_eq!((&held["summary"]["held"], &held["summary"]["changed"]), (&Value::from(1), &Value::from(0)));
    set_dual_control(false).await;

    let hana =
        login(dir, &server, "desk", "hana.helpdesk@fabrikam.test", &demo_password(&server, "hana.helpdesk")).await;
    assert!(hana.status.success(), "{}", text(&hana.stderr));
    let refused = run(dir, &["--server", "desk", "mfa", "require-reregistration", "megan.bowen@fabrikam.test"]);
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused.stderr));
    let why = text(&refused.stderr);
    assert!(why.contains("Authentication Administrator") && why.contains("Privileged Role Administrator"), "{why}");
    // The last login is the default from now on; --server picks the other session.
    let megan = json_of(&run(dir, &["--server", "main", "mfa", "methods", "megan.bowen@fabrikam.test", "--json"]));
    assert!(megan.to_string().contains("softwareOath"), "the refused operation changed nothing: {megan}");

    // Logs.
    let audit = json_of(&run(
        dir,
        &[
            "--server",
            "main",
            "audit",
            "list",
            "--user",
            "lee.gu@fabrikam.test",
            "--activity",
            "Add member to role",
            "--json",
        ],
    ));
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");
    assert_eq!(audit[0]["initiatedBy"]["user"]["userPrincipalName"], "grace.global@fabrikam.test");
    let audit_table = text(&run(dir, &["--server", "main", "audit", "list", "--since", "1d", "--top", "5"]).stdout);
    assert!(
        audit_table.contains("activityDisplayName") && audit_table.contains("grace.global@fabrikam.test"),
        "{audit_table}"
    );
    let signins =
        json_of(&run(dir, &["--server", "main", "signins", "list", "--user", "hana.helpdesk@fabrikam.test", "--json"]));
    assert!(!signins.as_array().expect("sign-ins").is_empty(), "{signins}");
    // The notification outbox: the agents' changes above are there, waiting (no relay here).
    let outbox = json_of(&run(dir, &["--server", "main", "notifications", "list", "--state", "pending", "--json"]));
    let kinds: Vec<&str> =
        outbox.as_array().expect("notifications").iter().filter_map(|it| it["kind"].as_str()).collect();
    assert!(kinds.contains(&"securityInfoChanged"), "{outbox}");
    let table = text(&run(dir, &["--server", "main", "notifications", "list", "--top", "3"]).stdout);
    assert!(table.contains("recipient") && table.contains("pending"), "{table}");

    // --follow prints new records as they come, one JSON object per line.
    let mut follow = cli(dir)
        .args(["--server", "main", "audit", "list", "--top", "1", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("follow");
    let lines = lines_of(follow.stdout.take().expect("stdout"));
    let _first = lines.recv_timeout(std::time::Duration::from_secs(20)).expect("the newest record");
    let disabled = run(dir, &["--server", "main", "users", "disable", "megan.bowen@fabrikam.test"]);
    assert!(disabled.status.success(), "{}", text(&disabled.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline && !seen.iter().any(|it: &String| it.contains("megan.bowen")) {
        if let Ok(line) = lines.recv_timeout(std::time::Duration::from_secs(1)) {
            seen.push(line);
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let record: Value =
        serde_json::from_str(seen.iter().find(|it| it.contains("megan.bowen")).expect("followed record"))
            .expect("one JSON object per line");
    assert_eq!(record["activityDisplayName"], "Update user", "{record}");
    assert_eq!(record["targetResources"][0]["modifiedProperties"][0]["displayName"], "AccountEnabled", "{record}");

    // A session the administrator's sessions were revoked from ends: the command says to log in again.
    let revoked = run(dir, &["--server", "main", "mfa", "revoke-sessions", "hana.helpdesk@fabrikam.test"]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    let ended = run(dir, &["--server", "desk", "users", "list"]);
    assert_eq!(ended.status.code(), Some(3), "{}", text(&ended.stderr));
    assert!(text(&ended.stderr).contains("log in again: keyward login --url"), "{}", text(&ended.stderr));

    // Completions for three shells and a manual page.
    for shell in ["bash", "zsh", "fish"] {
        let out = run(dir, &["completions", shell]);
        assert!(out.status.success() && text(&out.stdout).contains("require-reregistration"), "{shell}");
    }
    let man = run(dir, &["man"]);
    assert!(text(&man.stdout).starts_with(".ie") || text(&man.stdout).contains(".TH keyward"), "{}", text(&man.stdout));

    // Logging out revokes the session at the server.
    let cache: Value = serde_json::from_str(&std::fs::read_to_string(&credentials).expect("read")).expect("json");
    let refresh = cache["servers"]["main"]["refresh_token"].as_str().expect("refresh token").to_owned();
    let out = run(dir, &["logout", "--server", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reply = reqwest::Client::new()
        .post(server.url("/fabrikam.test/oauth2/v2.0/token"))
        .form(&[("grant_type", "refresh_token"), ("client_id", "keyward-cli"), ("refresh_token", refresh.as_str())])
        .send()
        .await
        .expect("token");
    assert_eq!(reply.status(), 400, "the refresh token was revoked");
    let after = run(dir, &["--server", "main", "whoami"]);
    assert_eq!(after.status.code(), Some(3));
    assert!(!std::fs::read_to_string(&credentials).expect("read").contains(&refresh));
    assert_eq!(server.terminate(), Some(0));
}

/// Over HTTPS with a self-signed certificate (`keyward serve --dev-tls`): refused until the
/// certificate is given with `--ca-cert`, which the session then remembers.
#[tokio::test]
async fn login_over_https_with_the_servers_own_certificate() {
    let scratch = Scratch::new();
    let dir = scratch.0.as_path();
    let server = Server::start(dir, "tls", |cmd| {
        cmd.args(["--demo", "--dev-tls"])
            .env("KEYWARD_BOOTSTRAP_ADMIN_UPN", "root@fabrikam.test")
            .env("KEYWARD_BOOTSTRAP_ADMIN_PASSWORD", "Harbour-Lantern-92!");
    });
    let base = format!("https://localhost:{}", server.port);
    let untrusted = run(dir, &["login", "--url", &base, "--no-browser"]);
    assert_eq!(untrusted.status.code(), Some(7), "{}", text(&untrusted.stderr));
    assert!(
        text(&untrusted.stderr).contains("--ca-cert"),
        "the error says how to trust it: {}",
        text(&untrusted.stderr)
    );

    let certificate = dir.join("data/dev-tls-cert.pem");
    let pem = std::fs::read(&certificate).expect("the development certificate");
    let certificate = certificate.to_str().expect("path").to_owned();
    let browser = Browser::trusting(&base, &pem);
    let password = demo_password(&server, "pat.privileged");
    let done =
        login_at(dir, &base, &["--ca-cert", &certificate], browser, "tls", "pat.privileged@fabrikam.test", &password)
            .await;
    assert!(done.status.success(), "{}\n{}", text(&done.stdout), text(&done.stderr));
    let whoami = run(dir, &["whoami", "--json"]);
    assert!(whoami.status.success(), "the certificate is remembered: {}", text(&whoami.stderr));
    let me = json_of(&whoami);
    assert_eq!(me["server"], base.as_str());
    assert!(me["roles"].to_string().contains("Privileged Authentication Administrator"), "{me}");
    assert_eq!(server.terminate(), Some(0));
}

/// Just-in-time roles from the command line: an eligible user (made so by the Global
/// Administrator through Graph) logs in with MFA, lists their roles, activates one with a
/// justification, uses it, and deactivates it; with approval required, the approver lists the
/// waiting request and approves it with `keyward roles approve`.
#[tokio::test]
async fn just_in_time_roles_from_the_command_line() {
    let scratch = Scratch::new();
    let dir = scratch.0.as_path();
    let server = demo_server(dir, "pim");
    let grace =
        login(dir, &server, "admin", "grace.global@fabrikam.test", &demo_password(&server, "grace.global")).await;
    assert!(grace.status.success(), "{}", text(&grace.stderr));
    let credentials = dir.join("config/keyward/credentials.json");
    let token = |name: &str| {
        let cache: Value = serde_json::from_str(&std::fs::read_to_string(&credentials).expect("read")).expect("json");
        cache["servers"][name]["access_token"].as_str().expect("token").to_owned()
    };
    let admin = token("admin");
    let http = reqwest::Client::new();
    let graph = |path: &str| server.url(&format!("/v1.0{path}"));
    let lee: Value = http
        .get(graph("/users/lee.gu@fabrikam.test"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let lee_id = lee["id"].as_str().expect("id").to_owned();
    let helpdesk = "729827e3-9c14-49f7-bb1b-9608f156bbb8";
    let made = http
        .post(graph("/roleManagement/directory/roleEligibilityScheduleRequests"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"action": "adminAssign", "principalId": lee_id, "roleDefinitionId": helpdesk,
            "directoryScopeId": "/", "justification": "rota", "scheduleInfo": {"expiration": {"type": "noExpiration"}}}))
        .send()
        .await
        .expect("post");
    assert_eq!(made.status().as_u16(), 201, "{}", made.text().await.unwrap_or_default());

    // Lee logs in (with MFA: she is eligible for a privileged role) and activates the role.
    let lee_login = login(dir, &server, "lee", "lee.gu@fabrikam.test", &demo_password(&server, "lee.gu")).await;
    assert!(lee_login.status.success(), "{}", text(&lee_login.stderr));
    let as_lee = |args: &[&str]| {
        let mut all = vec!["--server", "lee"];
        all.extend_from_slice(args);
        run(dir, &all)
    };
    let mine = as_lee(&["roles", "mine", "--json"]);
    assert!(mine.status.success(), "{}", text(&mine.stderr));
    let listed = json_of(&mine).to_string();
    assert!(listed.contains("Helpdesk Administrator") && listed.contains("eligible"), "{listed}");
    let silent = as_lee(&["roles", "activate", "Helpdesk Administrator", "--justification", " "]);
    assert_eq!(silent.status.code(), Some(1), "{}", text(&silent.stderr));
    assert!(text(&silent.stderr).contains("JustificationRule"), "{}", text(&silent.stderr));
    let too_long = as_lee(&["roles", "activate", "Helpdesk Administrator", "--hours", "25", "--justification", "x"]);
    assert_eq!(too_long.status.code(), Some(2), "a usage error: {}", text(&too_long.stderr));
    let on = as_lee(&["roles", "activate", "Helpdesk Administrator", "--hours", "2", "--justification", "INC-7"]);
    assert!(on.status.success(), "{}", text(&on.stderr));
    assert!(text(&on.stdout).contains("Active for 2 hours"), "{}", text(&on.stdout));
    let mine = json_of(&as_lee(&["roles", "mine", "--json"])).to_string();
    assert!(mine.contains("activated"), "{mine}");
    let whoami = json_of(&as_lee(&["whoami", "--json"]));
    assert!(whoami["roles"].to_string().contains("Helpdesk Administrator"), "{whoami}");
    let off = as_lee(&["roles", "deactivate", "Helpdesk Administrator"]);
    assert!(off.status.success(), "{}", text(&off.stderr));
    let whoami = json_of(&as_lee(&["whoami", "--json"]));
    assert!(!whoami["roles"].to_string().contains("Helpdesk Administrator"), "{whoami}");

    // With approval required (approver: Grace), the activation waits until Grace approves it.
    let policies: Value = http
        .get(graph(&format!("/policies/roleManagementPolicyAssignments?$filter=roleDefinitionId eq '{helpdesk}'")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let policy = policies["value"][0]["policyId"].as_str().expect("policy").to_owned();
    let grace_id = json_of(&run(dir, &["--server", "admin", "whoami", "--json"]))["id"].clone();
    let rule = http
        .patch(graph(&format!("/policies/roleManagementPolicies/{policy}/rules/Approval_EndUser_Assignment")))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"setting": {"isApprovalRequired": true, "approvalStages": [{"primaryApprovers": [
            {"@odata.type": "#microsoft.graph.singleUser", "userId": grace_id}]}]}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(rule.status().as_u16(), 200, "{}", rule.text().await.unwrap_or_default());
    let asked = as_lee(&["roles", "activate", "Helpdesk Administrator", "--justification", "INC-8"]);
    assert!(asked.status.success(), "{}", text(&asked.stderr));
    assert!(text(&asked.stdout).contains("waiting for an approver"), "{}", text(&asked.stdout));
    let pending = run(dir, &["--server", "admin", "roles", "pending", "--json"]);
    assert!(pending.status.success(), "{}", text(&pending.stderr));
    let waiting = json_of(&pending);
    let request = waiting[0]["id"].as_str().expect("a waiting request").to_owned();
    let own = as_lee(&["roles", "approve", &request, "--justification", "me"]);
    assert_eq!(own.status.code(), Some(4), "refused: {}", text(&own.stderr));
    let approved = run(dir, &["--server", "admin", "roles", "approve", &request, "--justification", "called back"]);
    assert!(approved.status.success(), "{}", text(&approved.stderr));
    let whoami = json_of(&as_lee(&["whoami", "--json"]));
    assert!(whoami["roles"].to_string().contains("Helpdesk Administrator"), "{whoami}");
    assert_eq!(server.terminate(), Some(0));
}
