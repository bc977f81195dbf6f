"""The admin portal in Debian's Chromium (playwright-core, JavaScript off): the seed's story.

A Global Administrator makes an agent Privileged Authentication Administrator on the role's
page (search as you type and pick, JavaScript on); the agent signs in with MFA, finds the user
from `/`, opens their page, presses
Require re-register MFA and confirms (tests/browser/portal.mjs); axe-core finds no serious or
critical problem on the portal's pages. Graph then shows the user's phone gone and the audit
log's `Update user` initiated by the agent, and the user's next sign-in asks them to register.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import httpx

from keyward_harness import DOMAIN, REPO_ROOT, KeywardServer
from signin_pages import parse, submit

PASSWORD = "Tq7-harbour-Lantern-92!"
PRIVILEGED_AUTHENTICATION_ADMINISTRATOR = "7be44c8a-adaf-4e2a-84d6-ab2649e08a13"
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"



def test_the_service_desk_requires_re_registration_in_the_portal(keyward: KeywardServer) -> None:
    node = shutil.which("node")
    chromium = os.environ.get("KEYWARD_CHROMIUM") or shutil.which("chromium")
    assert node, "Node.js is required for the Chromium test (Debian: apt-get install nodejs)"
    assert chromium, "Chromium is required (Debian: apt-get install chromium), or set KEYWARD_CHROMIUM"
    browser_dir = REPO_ROOT / "tests" / "browser"
    assert (browser_dir / "node_modules" / "playwright-core").is_dir(), (
        "playwright-core is missing: run `npm ci` in tests/browser (scripts/test does)"
    )
    with keyward.raw_http() as http:
        chief = keyward.create_user("portalchief", "portalchief Portal", PASSWORD)
        agent = keyward.create_user("portalagent", "portalagent Portal", PASSWORD)
        assert not http.get(
            f"{keyward.base_url}/roleManagement/directory/roleAssignments",
            params={"$filter": f"principalId eq '{agent}'"},
        ).json()["value"], "the agent gets the role in the portal"
        target = keyward.create_user("portaluser", "portaluser Portal", PASSWORD)
        assigned = http.post(
            f"{keyward.base_url}/roleManagement/directory/roleAssignments",
            json={"principalId": chief, "roleDefinitionId": GLOBAL_ADMINISTRATOR, "directoryScopeId": "/"},
        )
        assert assigned.status_code == 201, assigned.text
        phone = http.post(
            f"{keyward.base_url}/users/{target}/authentication/phoneMethods",
            json={"phoneNumber": "+1 2065555555", "phoneType": "mobile"},
        )
        assert phone.status_code == 201, phone.text
        # The user must use MFA (per-user MFA enforced), so after re-registration is required
        # their next sign-in asks them to register again.
        enforced = http.patch(
            f"{keyward.public_url}/beta/users/{target}/authentication/requirements",
            json={"perUserMfaState": "enforced"},
        )
        assert enforced.status_code == 204, enforced.text

    screenshot = keyward.data_dir.parent / "portal-user.png"
    result = subprocess.run(
        [node, str(browser_dir / "portal.mjs")],
        env={
            **os.environ,
            "KEYWARD_URL": keyward.public_url,
            "KEYWARD_TENANT": DOMAIN,
            "KEYWARD_ADMIN_UPN": f"portalchief@{DOMAIN}",
            "KEYWARD_UPN": f"portalagent@{DOMAIN}",
            "KEYWARD_PASSWORD": PASSWORD,
            "KEYWARD_TARGET": f"portaluser@{DOMAIN}",
            "KEYWARD_CHROMIUM": chromium,
            "KEYWARD_SCREENSHOT": str(screenshot),
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["chiefTitles"] == ["More information required", "My account"], report
    assert report["assigned"] == "1 assigned, 0 refused.", report
    assert report["titles"] == [
        "More information required",
        "My account",
        "Users",
        "portaluser Portal",
        "Require re-register MFA",
        "portaluser Portal",
        "Authentication methods activity",
    ], report
    assert "Privileged Authentication Administrator" in report["header"], report
    assert report["liveUrl"].endswith("/admin/users?search=portaluser"), "search as you type keeps the address: " + report["liveUrl"]
    assert "Phone (mobile)" in report["before"] and "Phone" not in report["after"], report
    assert "register again" in report["what"] and report["notice"].startswith("Done"), report
    assert screenshot.read_bytes().startswith(b"\x89PNG"), "Chromium rendered the user's page"
    assert screenshot.with_name("portal-user-reports.png").read_bytes().startswith(b"\x89PNG"), "and the report"
    if os.environ.get("KEYWARD_UPDATE_SCREENSHOTS"):
        # `KEYWARD_UPDATE_SCREENSHOTS=1` refreshes the README's pictures of the portal.
        shots = REPO_ROOT / "docs" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, shots / "portal-user.png")
        shutil.copyfile(screenshot.with_name("portal-user-users.png"), shots / "portal-users.png")
        shutil.copyfile(screenshot.with_name("portal-user-reports.png"), shots / "portal-reports.png")
        shutil.copyfile(screenshot.with_name("portal-user-role.png"), shots / "portal-role.png")
    assert report["violations"] == [], f"axe-core found serious or critical problems: {report['violations']}"

    with keyward.raw_http() as http:
        phones = http.get(f"{keyward.base_url}/users/{target}/authentication/phoneMethods")
        assert phones.status_code == 200 and phones.json()["value"] == [], phones.text
        audits = http.get(
            f"{keyward.base_url}/auditLogs/directoryAudits",
            params={"$filter": f"targetResources/any(t: t/id eq '{target}')"},
        )
        assert audits.status_code == 200, audits.text
        newest = audits.json()["value"][0]
        assert newest["activityDisplayName"] == "Update user", newest
        assert newest["initiatedBy"]["user"]["userPrincipalName"] == f"portalagent@{DOMAIN}", newest
        promoted = http.get(
            f"{keyward.base_url}/auditLogs/directoryAudits",
            params={"$filter": f"targetResources/any(t: t/id eq '{agent}') and activityDisplayName eq 'Add member to role'"},
        )
        assert promoted.status_code == 200, promoted.text
        record = promoted.json()["value"][0]
        assert record["initiatedBy"]["user"]["userPrincipalName"] == f"portalchief@{DOMAIN}", record

    # The user's next sign-in: "More information required".
    with httpx.Client(
        base_url=keyward.public_url, verify=keyward.ssl_context(), follow_redirects=True, trust_env=False
    ) as client:
        page = parse(client.get(f"/{DOMAIN}/login"))
        page = submit(client, page, "username", {"username": f"portaluser@{DOMAIN}"})
        page = submit(client, page, "password", {"current-password": PASSWORD})
        assert page.title == "More information required", page.html
