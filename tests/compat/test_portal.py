"""The admin portal in Debian's Chromium (playwright-core): the seed's story and the service desk's day.

A Global Administrator makes an agent Privileged Authentication Administrator on the role's
page (search as you type and pick, JavaScript on); the agent (JavaScript off) signs in with MFA,
finds the user from `/`, opens their page, presses Require re-register MFA and confirms; the
user's next sign-in asks them to register; the agent creates a Temporary Access Pass, with which
the user signs in, registers an authenticator app and adds another on My Security Info; an
Authentication Administrator finds the action disabled on the Global Administrator's page and
a forged post refused; the Global Administrator enables per-user MFA for 50 users at once
(tests/browser/portal.mjs). axe-core finds no serious or critical problem on the portal's pages.
Graph then shows the user's phone gone, the audit log's `Update user` initiated by the agent,
the refusal recorded, and the 50 users' per-user MFA enabled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess


from keyward_harness import DOMAIN, REPO_ROOT, KeywardServer

PASSWORD = "Tq7-harbour-Lantern-92!"
PRIVILEGED_AUTHENTICATION_ADMINISTRATOR = "7be44c8a-adaf-4e2a-84d6-ab2649e08a13"
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
AUTHENTICATION_ADMINISTRATOR = "c4e39bd9-1100-46d3-8c65-fb160da0071f"
HELPDESK_ADMINISTRATOR = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
BULK_USERS = 50



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
        helper = keyward.create_user("portalhelper", "portalhelper Portal", PASSWORD)
        helped = http.post(
            f"{keyward.base_url}/roleManagement/directory/roleAssignments",
            json={"principalId": helper, "roleDefinitionId": AUTHENTICATION_ADMINISTRATOR, "directoryScopeId": "/"},
        )
        assert helped.status_code == 201, helped.text
        # The agent is also eligible for Helpdesk Administrator, so My roles (checked by axe-core)
        # shows its activation form.
        eligible = http.post(
            f"{keyward.base_url}/roleManagement/directory/roleEligibilityScheduleRequests",
            json={"action": "adminAssign", "principalId": agent, "roleDefinitionId": HELPDESK_ADMINISTRATOR,
                  "directoryScopeId": "/", "justification": "rota", "scheduleInfo": {"expiration": {"type": "noExpiration"}}},
        )
        assert eligible.status_code == 201, eligible.text
        bulk = [keyward.create_user(f"bulk{n:02}", f"bulk{n:02} Portal", PASSWORD) for n in range(BULK_USERS)]
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
            "KEYWARD_HELPER_UPN": f"portalhelper@{DOMAIN}",
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
    assert report["interrupt"] == "More information required", report
    assert report["tapTitles"] == [
        "More information required",
        "Set up your authenticator app",
        "My account",
        "Set up your authenticator app",
        "My account",
    ], report
    assert report["accountMethods"].count("Authenticator app") == 2, report
    assert report["helperTitles"] == ["More information required", "My account"], report
    assert report["isDisabled"] and "admin role" in report["disabledWhy"], report
    assert report["forgedStatus"] == 403, report
    assert report["selected"] == BULK_USERS, report
    assert f"for {BULK_USERS} users" in report["bulkWhat"], report
    assert report["bulkSummary"] == f"{BULK_USERS} changed, 0 refused.", report
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
        by_agent = [
            it
            for it in audits.json()["value"]
            if it["activityDisplayName"] == "Update user"
            and (it["initiatedBy"].get("user") or {}).get("userPrincipalName") == f"portalagent@{DOMAIN}"
        ]
        assert by_agent, audits.text
        promoted = http.get(
            f"{keyward.base_url}/auditLogs/directoryAudits",
            params={"$filter": f"targetResources/any(t: t/id eq '{agent}') and activityDisplayName eq 'Add member to role'"},
        )
        assert promoted.status_code == 200, promoted.text
        record = promoted.json()["value"][0]
        assert record["initiatedBy"]["user"]["userPrincipalName"] == f"portalchief@{DOMAIN}", record

    with keyward.raw_http() as http:
        # The forged post was refused and recorded against the Global Administrator.
        refused = http.get(
            f"{keyward.base_url}/auditLogs/directoryAudits",
            params={"$filter": f"targetResources/any(t: t/id eq '{chief}') and result eq 'failure'"},
        )
        assert refused.status_code == 200, refused.text
        assert any(
            (it["initiatedBy"].get("user") or {}).get("userPrincipalName") == f"portalhelper@{DOMAIN}"
            for it in refused.json()["value"]
        ), refused.text
        # Every one of the 50 users now has per-user MFA enabled.
        for user_id in bulk:
            state = http.get(f"{keyward.public_url}/beta/users/{user_id}/authentication/requirements")
            assert state.status_code == 200 and state.json()["perUserMfaState"] == "enabled", state.text
