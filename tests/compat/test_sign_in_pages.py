"""Keyward's sign-in pages against real clients over HTTPS.

- pyotp (the reference TOTP implementation) agrees with Keyward: it reads the `otpauth://` URI
  the registration page shows, and its codes sign in; a replayed step is refused.
- Debian's Chromium, driven by playwright-core with JavaScript turned off, completes a
  password + TOTP registration through the same plain HTML forms (tests/browser/sign_in.mjs).

The server fixture (`keyward`, conftest.py) runs `keyward serve` over HTTPS with a self-signed
certificate, so the session cookie must be a `__Host-` cookie.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import httpx
import pyotp

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.audit_logs.sign_ins.sign_ins_request_builder import SignInsRequestBuilder
from msgraph.generated.models.sign_in import SignIn
from msgraph.generated.models.user import User
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

from keyward_harness import DOMAIN, REPO_ROOT, KeywardServer, graph_client, run
from signin_pages import parse, submit

PASSWORD = "Tq7-harbour-Lantern-92!"


def create_user(server: KeywardServer, alias: str) -> str:
    return server.create_user(alias, f"{alias} Compat", PASSWORD)


def require_mfa_for_everyone(server: KeywardServer) -> None:
    with server.raw_http() as http:
        reply = http.patch(
            f"{server.base_url}/policies/identitySecurityDefaultsEnforcementPolicy", json={"isEnabled": True}
        )
        assert reply.status_code == 204, reply.text


def sign_in_log_codes(server: KeywardServer, upn: str) -> list[int]:
    with server.raw_http() as http:
        reply = http.get(
            f"{server.base_url}/auditLogs/signIns",
            params={"$filter": f"userPrincipalName eq '{upn}'", "$top": "100"},
        )
        assert reply.status_code == 200, reply.text
        return [entry["status"]["errorCode"] for entry in reversed(reply.json()["value"])]


async def read_sign_ins_with_the_sdk(server: KeywardServer, user_id: str) -> tuple[list[SignIn], User | None]:
    """The user's sign-ins on the account pages and their signInActivity, through msgraph-sdk's v1.0 models."""
    async with graph_client(server) as client:
        query = SignInsRequestBuilder.SignInsRequestBuilderGetQueryParameters(
            filter=f"userId eq '{user_id}' and startswith(appDisplayName,'Keyward My') and conditionalAccessStatus eq 'notApplied'",
            top=1000,
        )
        page = await client.audit_logs.sign_ins.get(request_configuration=RequestConfiguration(query_parameters=query))
        assert page is not None
        select = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=["displayName", "signInActivity"])
        user = await client.users.by_user_id(user_id).get(request_configuration=RequestConfiguration(query_parameters=select))
        return list(page.value or []), user


def test_pyotp_agrees_with_keyward(keyward: KeywardServer) -> None:
    require_mfa_for_everyone(keyward)
    user_id = create_user(keyward, "otp")
    upn = f"otp@{DOMAIN}"
    with httpx.Client(base_url=keyward.public_url, verify=keyward.ssl_context(), follow_redirects=True, trust_env=False) as client:
        first = client.get(f"/{DOMAIN}/login")
        cookie = first.headers.get("set-cookie", "")
        assert cookie.startswith("__Host-keyward-session="), cookie
        for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
            assert attribute in cookie, cookie
        assert "Domain=" not in cookie, cookie
        page = parse(first)
        assert page.title == "Sign in"
        page = submit(client, page, "username", {"username": upn})
        page = submit(client, page, "password", {"current-password": PASSWORD})
        assert page.title == "More information required", page.html
        page = submit(client, page, "more_info", {})
        assert page.title == "Set up your authenticator app", page.html
        uri = page.ids["otpauth"].strip()
        totp = pyotp.parse_uri(uri)
        assert isinstance(totp, pyotp.TOTP)
        assert totp.secret == page.ids["secret"].strip()
        assert (totp.digits, totp.interval, totp.issuer, totp.name) == (6, 30, "Keyward", upn)
        registered_at = time.time()
        page = submit(client, page, "register_totp", {"one-time-code": totp.at(registered_at)})
        assert page.title == "My account", page.html
        page = submit(client, page, "signout", {})
        assert page.title == "Sign in"

        page = submit(client, page, "username", {"username": upn})
        page = submit(client, page, "password", {"current-password": PASSWORD})
        assert page.title == "Enter code", page.html
        replayed = submit(client, page, "mfa", {"one-time-code": totp.at(registered_at)})
        assert replayed.title == "Enter code"
        assert "already used" in replayed.html, replayed.html
        # pyotp's next code is within Keyward's one-step window and newer than the used step.
        page = submit(client, replayed, "mfa", {"one-time-code": totp.at(time.time() + 30)})
        assert page.title == "My account", page.html
    assert sign_in_log_codes(keyward, upn) == [50079, 0, 50076, 500121, 0]

    entries, user = run(read_sign_ins_with_the_sdk(keyward, user_id))
    assert [it.status.error_code for it in reversed(entries)] == [50079, 0, 50076, 500121, 0]
    newest = entries[0]
    assert newest.is_interactive and newest.client_app_used == "Browser"
    assert newest.conditional_access_status is not None and newest.conditional_access_status.value == "notApplied"
    assert newest.risk_state is not None and newest.risk_state.value == "none"
    assert newest.resource_display_name == "Microsoft Graph"
    assert newest.user_agent and newest.user_agent.startswith("python-httpx/"), newest.user_agent
    # Nothing beyond v1.0's signIn: a beta-only property would land in additional_data.
    assert newest.additional_data == {}, newest.additional_data
    assert user is not None and user.sign_in_activity is not None
    assert user.sign_in_activity.last_sign_in_request_id == newest.id
    assert user.sign_in_activity.last_successful_sign_in_request_id == newest.id
    assert user.sign_in_activity.last_sign_in_date_time == newest.created_date_time.replace(microsecond=0)


def run_browser_script(keyward: KeywardServer, script: str, env: dict[str, str]) -> dict:
    """Runs tests/browser/`script` in Debian's Chromium against the server, with `env` (beside
    KEYWARD_URL, KEYWARD_TENANT and KEYWARD_CHROMIUM): the JSON line it prints last."""
    node = shutil.which("node")
    chromium = os.environ.get("KEYWARD_CHROMIUM") or shutil.which("chromium")
    assert node, "Node.js is required for the Chromium test (Debian: apt-get install nodejs)"
    assert chromium, "Chromium is required (Debian: apt-get install chromium), or set KEYWARD_CHROMIUM"
    browser_dir = REPO_ROOT / "tests" / "browser"
    assert (browser_dir / "node_modules" / "playwright-core").is_dir(), (
        "playwright-core is missing: run `npm ci` in tests/browser (scripts/test does)"
    )
    result = subprocess.run(
        [node, str(browser_dir / script)],
        env={
            **os.environ,
            "KEYWARD_URL": keyward.public_url,
            "KEYWARD_TENANT": DOMAIN,
            "KEYWARD_CHROMIUM": chromium,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_chromium_without_javascript_registers_and_signs_in(keyward: KeywardServer) -> None:
    require_mfa_for_everyone(keyward)
    create_user(keyward, "chromium")
    upn = f"chromium@{DOMAIN}"
    screenshot = keyward.data_dir.parent / "chromium-account.png"
    report = run_browser_script(
        keyward,
        "sign_in.mjs",
        {"KEYWARD_UPN": upn, "KEYWARD_PASSWORD": PASSWORD, "KEYWARD_SCREENSHOT": str(screenshot)},
    )
    assert report["titles"] == [
        "Sign in",
        "Enter password",
        "More information required",
        "Set up your authenticator app",
        "My account",
    ], report
    assert report["qrWidth"] >= 100, report
    assert report["cookie"]["name"] == "__Host-keyward-session" and report["cookie"]["secure"], report
    assert sign_in_log_codes(keyward, upn) == [50079, 0]
    assert screenshot.read_bytes().startswith(b"\x89PNG"), "Chromium rendered the account page"


def test_beta_shapes_read_through_the_beta_models(keyward: KeywardServer) -> None:
    """Beta's sign-in log, audit log, users and delta, as the beta SDK's models read them: the
    module's server checks every response recorded here when it stops (model_fidelity.py)."""
    user_id = create_user(keyward, "betashape")
    with keyward.raw_http() as http:
        beta = keyward.base_url.replace("/v1.0", "/beta")
        signins = http.get(f"{beta}/auditLogs/signIns", params={"$top": "5"})
        assert signins.status_code == 200, signins.text
        audits = http.get(f"{beta}/auditLogs/directoryAudits", params={"$top": "5"})
        assert audits.status_code == 200, audits.text
        initiator = audits.json()["value"][0]["initiatedBy"]["user"]
        assert initiator["@odata.type"] == "#microsoft.graph.auditUserIdentity", initiator
        for path, params in [
            (f"users/{user_id}", {"$select": "displayName,signInActivity"}),
            ("users", {"$top": "5"}),
            ("users/delta", {"$select": "displayName"}),
            ("groups/delta", {}),
            ("servicePrincipals", {}),
            ("roleManagement/directory/roleDefinitions", {}),
            (f"users/{user_id}/authentication/signInPreferences", {}),
        ]:
            reply = http.get(f"{beta}/{path}", params=params)
            assert reply.status_code == 200, f"{path}: {reply.text}"
        v1_signins = http.get(f"{keyward.base_url}/auditLogs/signIns", params={"$top": "5", "$select": "id,status"})
        assert v1_signins.status_code == 200, v1_signins.text


def spki_sha256(cert_path) -> str:
    """Base64 SHA-256 of a certificate's public key, as Chromium's --ignore-certificate-errors-spki-list takes it."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


async def passkeys_with_the_sdk(server: KeywardServer, user_id: str) -> tuple[list[str], list[str]]:
    """The user's passkeys through msgraph-sdk: their names, then deleted, what is left."""
    async with graph_client(server) as client:
        methods = client.users.by_user_id(user_id).authentication.fido2_methods
        listed = await methods.get()
        names = [it.display_name for it in listed.value]
        for it in listed.value:
            assert it.passkey_type is not None and it.aa_guid, it
            await methods.by_fido2_authentication_method_id(it.id).delete()
        left = await methods.get()
        return names, [it.display_name for it in left.value]


def test_chromium_passkeys_register_and_sign_in(keyward: KeywardServer) -> None:
    """Chromium with the DevTools virtual authenticator: a pass leads to the interrupt, which
    creates a passkey through Keyward's script; the passkey then signs in alone, and as the
    second factor after a password. msgraph-sdk lists and deletes it."""
    fido2 = f"{keyward.base_url}/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/fido2"
    require_mfa_for_everyone(keyward)
    user_id = create_user(keyward, "passkeys")
    upn = f"passkeys@{DOMAIN}"
    with keyward.raw_http() as http:
        assert http.patch(fido2, json={"state": "enabled"}).status_code == 204
        reply = http.post(f"{keyward.base_url}/users/{user_id}/authentication/temporaryAccessPassMethods", json={})
        assert reply.status_code == 201, reply.text
        temporary_pass = reply.json()["temporaryAccessPass"]
    try:
        report = run_browser_script(
            keyward,
            "passkey.mjs",
            {
                "KEYWARD_UPN": upn,
                "KEYWARD_PASS": temporary_pass,
                "KEYWARD_PASSWORD": PASSWORD,
                "KEYWARD_SPKI": spki_sha256(keyward.cert_path),
            },
        )
        assert report["titles"] == [
            "Sign in",
            "Enter password",
            "More information required",
            "Create a passkey",
            "My account",
            "My account",
            "Sign in",
            "Enter password",
            "My account",
            "Sign in",
            "Enter password",
            "Enter code",
            "My account",
        ], report
        assert report["autocomplete"] == "username webauthn", report
        assert "Virtual authenticator" in report["listed"], report
        assert upn in report["passwordless"], report
        assert report["residentKeys"] == 1, "a discoverable credential was made"
        assert report["signCount"] >= 3, report
        assert report["problems"] == [], report
        # The interrupt's registration, two passwordless sign-ins, the password's MFA step and the passkey.
        assert sign_in_log_codes(keyward, upn) == [50079, 0, 0, 0, 50076, 0]
        with keyward.raw_http() as http:
            newest = http.get(
                f"{keyward.public_url}/beta/auditLogs/signIns",
                params={"$filter": f"userPrincipalName eq '{upn}'", "$top": "1"},
            ).json()["value"][0]
        # Entra's names: the virtual authenticator's passkey is device-bound.
        methods = [it["authenticationMethod"] for it in newest["authenticationDetails"]]
        assert methods == ["Password", "Passkey (device-bound)"], newest

        names, left = run(passkeys_with_the_sdk(keyward, user_id))
        assert names == ["Virtual authenticator"] and left == []
    finally:
        with keyward.raw_http() as http:
            http.delete(fido2)
