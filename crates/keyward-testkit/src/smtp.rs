//! A real SMTP server for the notification tests: Python's `aiosmtpd` (installed in the test
//! venv by `scripts/test`), run as a child process with its `Mailbox` handler, which keeps each
//! message it accepts as a file in a maildir.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::TempDir;

/// A running `aiosmtpd` on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct SmtpServer {
    pub port: u16,
    child: tokio::process::Child,
    maildir: TempDir,
}

/// The Python with `aiosmtpd`: `KEYWARD_TEST_PYTHON`, else the test venv's
/// (`${KEYWARD_TEST_VENV:-~/.cache/keyward/venv}`).
fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("KEYWARD_TEST_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = std::env::var_os("KEYWARD_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/keyward/venv"));
    venv.join("bin/python")
}

/// A port nothing listens on now (for a relay that is down until a server starts there).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

impl SmtpServer {
    /// Starts a server on `port` and waits until it accepts connections.
    pub async fn start(port: u16) -> SmtpServer {
        SmtpServer::launch(port, None).await
    }

    /// Starts a server on `port` that offers STARTTLS with the certificate and key (PEM files)
    /// and refuses mail without it.
    pub async fn start_tls(port: u16, cert: &std::path::Path, key: &std::path::Path) -> SmtpServer {
        SmtpServer::launch(port, Some((cert, key))).await
    }

    async fn launch(port: u16, tls: Option<(&std::path::Path, &std::path::Path)>) -> SmtpServer {
        let maildir = TempDir::new("keyward-smtp");
        let python = python();
        let mut command = tokio::process::Command::new(&python);
        command.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
        if let Some((cert, key)) = tls {
            command.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
        }
        let child = command
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(Stdio::null())
            // Its log (a refused TLS handshake is logged as an error) goes to a file, shown if it
            // does not start.
            .stderr(
                std::fs::File::create(maildir.path().join("aiosmtpd.log")).map_or_else(|_| Stdio::null(), Stdio::from),
            )
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start aiosmtpd with {}: {err}. Run scripts/test once (it installs the test venv with \
                     aiosmtpd), or set KEYWARD_TEST_PYTHON to a Python that has it",
                    python.display()
                )
            });
        let mut server = SmtpServer { port, child, maildir };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(server.maildir.path().join("aiosmtpd.log")).unwrap_or_default();
                panic!("aiosmtpd exited with {status} (is it installed for {}?): {log}", python.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("aiosmtpd did not listen on port {port} within 10 s");
    }

    /// Every message received so far, as its raw text, in no particular order.
    pub fn messages(&self) -> Vec<String> {
        let dir = self.maildir.path().join("mail/new");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
        entries.filter_map(Result::ok).filter_map(|it| std::fs::read_to_string(it.path()).ok()).collect()
    }

    /// Stops the server (the relay is down from now on).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
