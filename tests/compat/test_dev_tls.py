"""The MSAL example of docs/guide/oidc.md ("MSAL on a laptop"), as written, against `keyward serve --demo --dev-tls`.

The server makes its own self-signed certificate for localhost; the client trusts it the way the
server's console says (REQUESTS_CA_BUNDLE), and a demo user completes the device-code sign-in
through the pages.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import msal

from keyward_harness import free_port, resolve_binary
from signin_pages import parse, submit


def test_msal_device_code_against_dev_tls(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    stdout_path = tmp_path / "stdout.log"
    env = {"PATH": os.environ.get("PATH", ""), "KEYWARD_LOG": "warn"}
    with open(stdout_path, "w") as stdout, open(tmp_path / "stderr.log", "w") as stderr:
        process = subprocess.Popen(
            [str(resolve_binary()), "serve", "--demo", "--dev-tls", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while "Keyward is listening" not in stdout_path.read_text():
            assert process.poll() is None, (tmp_path / "stderr.log").read_text()
            assert time.monotonic() < deadline, stdout_path.read_text()
            time.sleep(0.1)
        console = stdout_path.read_text()
        cert = data_dir / "dev-tls-cert.pem"
        assert f"REQUESTS_CA_BUNDLE={cert.resolve()}" in console, console
        assert f"https://localhost:{port}" in console, console
        password = re.search(r"adele\.vance@keyward\.test\s+(\S+)", console).group(1)

        # As docs/guide/oidc.md says: trust the certificate, then run the example unchanged.
        os.environ["REQUESTS_CA_BUNDLE"] = str(cert)
        try:
            app = msal.PublicClientApplication(
                "keyward-cli", authority=f"https://localhost:{port}/keyward.test", instance_discovery=False
            )
            flow = app.initiate_device_flow(scopes=["User.Read"])
            assert "user_code" in flow, flow
            result: dict = {}
            poller = threading.Thread(target=lambda: result.update(app.acquire_token_by_device_flow(flow)), daemon=True)
            poller.start()
            trust = ssl.create_default_context(cafile=str(cert))
            with httpx.Client(base_url=f"https://localhost:{port}", verify=trust, follow_redirects=True, trust_env=False) as client:
                page = parse(client.get(flow["verification_uri"]))
                assert page.title == "Sign in", page.html
                page = submit(client, page, "username", {"username": "adele.vance@keyward.test"})
                page = submit(client, page, "password", {"current-password": password})
                assert page.title == "Enter code", page.html
                page = submit(client, page, "device_code", {}, {"user_code": flow["user_code"]})
                page = submit(client, page, "device_confirm", {})
                assert page.title == "You're signed in", page.html
            poller.join(timeout=120)
            assert "access_token" in result, result
            assert result["id_token_claims"]["preferred_username"] == "adele.vance@keyward.test"
        finally:
            del os.environ["REQUESTS_CA_BUNDLE"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
