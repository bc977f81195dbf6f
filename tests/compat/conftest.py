"""Fixtures for the Microsoft Graph SDK compatibility test (see keyward_harness.py)."""

from __future__ import annotations

import os
import subprocess
from typing import Iterator

import pytest

import model_fidelity
from keyward_harness import (
    ADMIN_PASSWORD,
    ADMIN_UPN,
    SHUTDOWN_TIMEOUT_S,
    KeywardServer,
    fail_with_logs,
    free_port,
    mint_token,
    resolve_binary,
    stop_server,
    wait_until_ready,
    write_self_signed_cert,
)


# --------------------------------------------------------------------------
# Fixtures and hooks
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyward(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeywardServer]:
    """A server for the test module; a module's `KEYWARD_ENV` dict adds to its environment."""
    binary = resolve_binary()
    work = tmp_path_factory.mktemp("keyward")
    data_dir = work / "data"
    data_dir.mkdir()
    cert_path = work / "cert.pem"
    key_path = work / "key.pem"
    write_self_signed_cert(cert_path, key_path)

    env = dict(os.environ)
    env["KEYWARD_BOOTSTRAP_ADMIN_UPN"] = ADMIN_UPN
    env["KEYWARD_BOOTSTRAP_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    env.update(getattr(request.module, "KEYWARD_ENV", {}))

    server = KeywardServer(
        binary=binary,
        port=free_port(),
        data_dir=data_dir,
        cert_path=cert_path,
        key_path=key_path,
        stdout_path=work / "keyward.stdout.log",
        stderr_path=work / "keyward.stderr.log",
        env=env,
    )
    cmd = [
        str(binary),
        "serve",
        "--listen",
        f"127.0.0.1:{server.port}",
        "--data-dir",
        str(data_dir),
        "--public-url",
        server.public_url,
        "--tls-cert",
        str(cert_path),
        "--tls-key",
        str(key_path),
    ]
    # Output goes to files, not pipes, so a chatty server can never block on a full pipe.
    with open(server.stdout_path, "wb") as out, open(server.stderr_path, "wb") as err:
        server.process = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=work
        )
    try:
        wait_until_ready(server)
        server.token = mint_token(server)
    except BaseException:
        stop_server(server)
        raise

    yield server

    crashed_code = server.process.poll()
    code = stop_server(server)
    fidelity = model_fidelity.check(server.graph_responses)
    if os.environ.get("KEYWARD_SHOW_CONTEXTS"):
        print(f"\nmodel fidelity: {fidelity.checked} objects; contexts: {sorted(fidelity.contexts)}")
    if fidelity.problems:
        shown = "\n".join(sorted(set(fidelity.problems))[:60])
        pytest.fail(f"responses that msgraph-sdk's models do not fully read ({len(fidelity.problems)}):\n{shown}")
    if crashed_code is not None:
        fail_with_logs(server, f"keyward serve died during the tests with exit code {crashed_code}")
    if code is None:
        fail_with_logs(
            server,
            f"keyward serve did not exit within {SHUTDOWN_TIMEOUT_S:.0f}s of SIGTERM "
            "(graceful shutdown is required); it was killed",
        )
    if code != 0:
        fail_with_logs(
            server, f"keyward serve exited with code {code} after SIGTERM; expected 0"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Attach the server's log tail to the report of any failing test."""
    report = yield
    if report.failed and call.when == "call":
        server = getattr(item, "funcargs", {}).get("keyward")
        if isinstance(server, KeywardServer):
            report.sections.append(("keyward server logs", server.logs(limit=3000)))
    return report
