"""docs/guide/delegated-mfa.md, run exactly as written: every `sh` block in one bash (the one that
starts the server excepted: the test starts it), and every `python` block, against
`keyward serve --demo --dev-tls`. A guide that drifts from the server fails here."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from keyward_harness import REPO_ROOT, free_port, resolve_binary

GUIDE = REPO_ROOT / "docs" / "guide" / "delegated-mfa.md"


def blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"```(sh|python)\n(.*?)```", text, flags=re.DOTALL)


def test_the_delegated_mfa_walkthrough_runs_as_written(tmp_path: Path) -> None:
    binary = resolve_binary()
    port = free_port()
    stdout_path = tmp_path / "stdout.log"
    env = {"PATH": f"{binary.parent}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "HOME": str(tmp_path)}
    with open(stdout_path, "w") as stdout, open(tmp_path / "stderr.log", "w") as stderr:
        process = subprocess.Popen(
            [str(binary), "serve", "--demo", "--dev-tls", "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while "Keyward is listening" not in stdout_path.read_text():
            assert process.poll() is None, (tmp_path / "stderr.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        script = ["set -euo pipefail"]
        for language, code in blocks(GUIDE.read_text()):
            if "-- serve" in code or "keyward serve" in code:
                continue
            if language == "sh":
                script.append(code)
            else:
                script.append(f"python3 - <<'KEYWARD_GUIDE_PYTHON'\n{code}KEYWARD_GUIDE_PYTHON")
        assert len(script) >= 8, "the guide lost its steps"
        result = subprocess.run(
            ["bash", "-c", "\n".join(script)],
            cwd=tmp_path, env={**env, "KW": f"https://localhost:{port}"}, capture_output=True, text=True, timeout=300,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        # What the guide says the reader sees.
        assert "Read this to Megan: " in output and "Read this to Adele: " in output, output
        assert "softwareOathAuthenticationMethod" in output, output
        for activity in ("Update user", "Admin registered security info"):
            assert f" {activity} by sam.servicedesk@keyward.test success" in output, output
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
