"""Harness for the Microsoft Graph SDK compatibility test (used by conftest.py).

Starts one real Keyward server (the binary named by $KEYWARD_BIN) over HTTPS
with a freshly generated self-signed certificate, mints an admin token with
`keyward token`, and builds `msgraph.GraphServiceClient` instances pointed at
it, wired the way a Graph SDK user targeting a non-Microsoft host would.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, TypeVar

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import GraphClientFactory

REPO_ROOT = Path(__file__).resolve().parents[2]

ADMIN_UPN = "admin@contoso.test"
ADMIN_PASSWORD = "Compat-Test-Passw0rd!"
DOMAIN = "contoso.test"

READY_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 10.0
SCENARIO_TIMEOUT_S = 300.0

T = TypeVar("T")


# --------------------------------------------------------------------------
# Server handle
# --------------------------------------------------------------------------


@dataclass
class KeywardServer:
    binary: Path
    port: int
    data_dir: Path
    cert_path: Path
    key_path: Path
    stdout_path: Path
    stderr_path: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None
    token: str = ""
    # Ids of every user the tests created successfully, so that listing
    # tests can assert the exact set of users in the directory.
    created_user_ids: set[str] = field(default_factory=set)
    # Every Graph response the harness's clients received: (method, url, status, body text), for
    # the model-fidelity check (model_fidelity.py) when the module's server stops.
    graph_responses: list[tuple[str, str, int, str]] = field(default_factory=list)

    def record(self, response: httpx.Response) -> None:
        """Keeps a Graph JSON response for the model-fidelity check."""
        path = response.request.url.path
        if (path.startswith("/v1.0/") or path.startswith("/beta/")) and "json" in response.headers.get("content-type", ""):
            self.graph_responses.append((response.request.method, str(response.request.url), response.status_code, response.text))

    @property
    def public_url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def base_url(self) -> str:
        """Graph API root, what an SDK user sets as the adapter's base_url."""
        return f"{self.public_url}/v1.0"

    def directory_object_url(self, object_id: str) -> str:
        return f"{self.base_url}/directoryObjects/{object_id}"

    def ssl_context(self) -> ssl.SSLContext:
        """Client TLS context trusting only the test's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.cert_path))

    def logs(self, limit: int = 6000) -> str:
        parts = []
        for label, path in (("stderr", self.stderr_path), ("stdout", self.stdout_path)):
            try:
                text = path.read_text(errors="replace")
            except OSError as exc:
                text = f"<unreadable: {exc}>"
            if len(text) > limit:
                text = "...<truncated>...\n" + text[-limit:]
            parts.append(f"----- keyward {label} ({path}) -----\n{text}")
        return "\n".join(parts)

    def raw_http(self) -> httpx.Client:
        """A plain (non-SDK) HTTP client with the admin token, for wire-level checks."""
        def keep(response: httpx.Response) -> None:
            response.read()
            self.record(response)

        return httpx.Client(
            verify=self.ssl_context(),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30.0,
            trust_env=False,
            event_hooks={"response": [keep]},
        )

    def token_for(self, alias: str) -> str:
        """An access token for `alias@DOMAIN` from `keyward token` (every API permission in `scp`)."""
        result = subprocess.run(
            [str(self.binary), "token", "--data-dir", str(self.data_dir), "--upn", f"{alias}@{DOMAIN}", "--public-url", self.public_url],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout.strip()

    def create_user(self, alias: str, display_name: str, password: str) -> str:
        """Creates `alias@DOMAIN` with a known password (no change asked at sign-in): its id."""
        with self.raw_http() as http:
            reply = http.post(
                f"{self.base_url}/users",
                json={
                    "accountEnabled": True,
                    "displayName": display_name,
                    "mailNickname": alias,
                    "userPrincipalName": f"{alias}@{DOMAIN}",
                    "passwordProfile": {"password": password, "forceChangePasswordNextSignIn": False},
                },
            )
            assert reply.status_code == 201, reply.text
            return reply.json()["id"]


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def run(coro: Awaitable[T], timeout: float = SCENARIO_TIMEOUT_S) -> T:
    """Run one async scenario from a sync test, with an overall time bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_self_signed_cert(cert_path: Path, key_path: Path) -> None:
    """Self-signed EC P-256 cert for localhost/127.0.0.1, usable as its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # PKCS#8 ("BEGIN PRIVATE KEY"), the form every Rust TLS stack accepts.
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)


def resolve_binary() -> Path:
    raw = os.environ.get("KEYWARD_BIN", "").strip()
    if not raw:
        pytest.fail(
            "KEYWARD_BIN is not set. Build the server first with "
            "`cargo build -p keyward`, then run e.g. "
            "`KEYWARD_BIN=target/debug/keyward python -m pytest tests/compat -q` "
            "from the repository root.",
            pytrace=False,
        )
    candidates = [Path(raw)]
    if not Path(raw).is_absolute():
        candidates.append(REPO_ROOT / raw)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.resolve()
    pytest.fail(
        f"KEYWARD_BIN={raw!r} is not an executable file (looked at: "
        f"{', '.join(str(c) for c in candidates)}). Build it with `cargo build -p keyward`.",
        pytrace=False,
    )
    raise AssertionError("unreachable")


def fail_with_logs(server: KeywardServer, message: str) -> None:
    pytest.fail(f"{message}\n{server.logs()}", pytrace=False)


def stop_server(server: KeywardServer) -> int | None:
    """SIGTERM the server and wait; returns its exit code, None if it had to be killed."""
    proc = server.process
    if proc is None:
        return None
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def wait_until_ready(server: KeywardServer) -> None:
    assert server.process is not None
    url = f"{server.public_url}/healthz"
    deadline = time.monotonic() + READY_TIMEOUT_S
    last_problem = "no attempt made"
    with httpx.Client(verify=server.ssl_context(), timeout=2.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            code = server.process.poll()
            if code is not None:
                fail_with_logs(
                    server, f"keyward serve exited early with code {code} before becoming ready"
                )
            try:
                response = http.get(url)
                if response.status_code == 200:
                    return
                last_problem = f"GET /healthz returned {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last_problem = f"GET /healthz failed: {exc!r}"
            time.sleep(0.2)
    stop_server(server)
    fail_with_logs(
        server,
        f"keyward serve did not become ready within {READY_TIMEOUT_S:.0f}s "
        f"({last_problem})",
    )


def mint_token(server: KeywardServer) -> str:
    cmd = [
        str(server.binary),
        "token",
        "--data-dir",
        str(server.data_dir),
        "--upn",
        ADMIN_UPN,
        # The token's issuer must match the server's, which derives from its public URL.
        "--public-url",
        server.public_url,
    ]
    try:
        result = subprocess.run(
            cmd,
            env=server.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        fail_with_logs(server, f"`{' '.join(cmd)}` did not finish within 60s")
        raise
    if result.returncode != 0:
        fail_with_logs(
            server,
            f"`{' '.join(cmd)}` exited with {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}",
        )
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if len(lines) != 1 or lines[0].count(".") != 2:
        fail_with_logs(
            server,
            "`keyward token` must print exactly one line holding a JWT "
            f"(header.payload.signature); got stdout={result.stdout!r} stderr={result.stderr!r}",
        )
    return lines[0]


# --------------------------------------------------------------------------
# Graph SDK wiring
# --------------------------------------------------------------------------


class StaticAccessTokenProvider(AccessTokenProvider):
    """Hands the SDK a pre-minted bearer token, only for the allowed hosts."""

    def __init__(self, token: str, allowed_hosts: list[str]) -> None:
        self._token = token
        self._validator = AllowedHostsValidator(allowed_hosts)

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] = {}
    ) -> str:
        if not uri.lower().startswith("https://"):
            return ""
        if not self._validator.is_url_host_valid(uri):
            return ""
        return self._token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._validator


@asynccontextmanager
async def graph_client(server: KeywardServer, token: str | None = None) -> AsyncIterator[GraphServiceClient]:
    """A GraphServiceClient talking to Keyward (with the admin token, or `token`). Create one per event loop."""
    async def keep(response: httpx.Response) -> None:
        await response.aread()
        server.record(response)

    http_client = httpx.AsyncClient(
        verify=server.ssl_context(),
        # Same as the SDK's default client (KiotaClientFactory.get_default_client),
        # with a shorter timeout so a hung server fails the test in bounded time.
        http2=True,
        timeout=httpx.Timeout(60.0, connect=10.0),
        trust_env=False,
        event_hooks={"response": [keep]},
    )
    http_client = GraphClientFactory.create_with_default_middleware(client=http_client)
    auth_provider = BaseBearerTokenAuthenticationProvider(
        StaticAccessTokenProvider(token or server.token, ["localhost"])
    )
    adapter = GraphRequestAdapter(auth_provider, http_client)
    adapter.base_url = server.base_url
    client = GraphServiceClient(request_adapter=adapter)
    try:
        yield client
    finally:
        await http_client.aclose()
