"""Keyward's OpenID Connect provider against third-party clients over HTTPS.

- MSAL Python `PublicClientApplication` (Entra-style `authority=` with instance discovery off,
  and `oidc_authority=`): the device-code flow, completed by a form-filling user agent through
  the sign-in pages with a password and a TOTP code (pyotp); refresh; then revokeSignInSessions
  makes the refresh fail.
- MSAL Python `ConfidentialClientApplication` client credentials for an application whose
  service principal holds a directory role; the Microsoft Graph Python SDK lists users with it.
- azure-identity `ClientSecretCredential` with `authority=` and `disable_instance_discovery=True`.
- Authlib: authorization code with PKCE; the id token's signature and claims are validated
  against the provider's JWKS.
- openid-client (Node, strict validation): discovery and authorization code with PKCE, driven in
  Chromium (tests/browser/oidc_client.mjs).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlparse

import httpx
import msal
import pyotp
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken
from azure.identity import ClientSecretCredential

from keyward_harness import DOMAIN, REPO_ROOT, KeywardServer, graph_client, run
from signin_pages import Page, parse, submit

PASSWORD = "Tq7-harbour-Lantern-92!"
USER_ADMINISTRATOR = "fe930be7-5e62-47db-91af-98c3a49a38b1"


def admin(server: KeywardServer) -> httpx.Client:
    return server.raw_http()


def tenant_id(server: KeywardServer) -> str:
    with admin(server) as http:
        return http.get(f"{server.base_url}/organization").json()["value"][0]["id"]


def create_user(server: KeywardServer, alias: str) -> str:
    with admin(server) as http:
        reply = http.post(
            f"{server.base_url}/users",
            json={
                "accountEnabled": True,
                "displayName": f"{alias} OIDC",
                "mailNickname": alias,
                "userPrincipalName": f"{alias}@{DOMAIN}",
                "passwordProfile": {"password": PASSWORD, "forceChangePasswordNextSignIn": False},
            },
        )
        assert reply.status_code == 201, reply.text
        return reply.json()["id"]


def http_client(server: KeywardServer) -> requests.Session:
    """A requests session for MSAL trusting only the test certificate (the environment's
    REQUESTS_CA_BUNDLE would otherwise override a session's `verify`)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(server.cert_path)
    return session


def browser(server: KeywardServer) -> httpx.Client:
    return httpx.Client(base_url=server.public_url, verify=server.ssl_context(), follow_redirects=True, trust_env=False)


SignIn = Callable[[httpx.Client, Page], Page]


def sign_in_with_totp_registration(client: httpx.Client, page: Page, upn: str) -> tuple[Page, pyotp.TOTP]:
    """From the sign-in page: password, the registration interrupt, TOTP set up with pyotp."""
    assert page.title == "Sign in", page.html
    page = submit(client, page, "username", {"username": upn})
    page = submit(client, page, "password", {"current-password": PASSWORD})
    assert page.title == "More information required", page.html
    page = submit(client, page, "more_info", {})
    totp = pyotp.parse_uri(page.ids["otpauth"].strip())
    page = submit(client, page, "register_totp", {"one-time-code": totp.now()})
    return page, totp


def complete_device_code(client: httpx.Client, flow: dict, sign_in: SignIn | None) -> None:
    """Enters the flow's code on the pages, after `sign_in` (none: the browser's session holds)."""
    page = parse(client.get(flow["verification_uri"]))
    if sign_in is not None:
        page = sign_in(client, page)
    assert page.title == "Enter code", page.html
    page = submit(client, page, "device_code", {}, {"user_code": flow["user_code"]})
    assert page.title == "Are you trying to sign in?", page.html
    page = submit(client, page, "device_confirm", {})
    assert page.title == "You're signed in", page.html


def run_device_flow(
    app: msal.PublicClientApplication,
    server: KeywardServer,
    client: httpx.Client,
    upn: str | None,
    sign_in: SignIn | None = None,
    claims_challenge: str | None = None,
) -> dict:
    """MSAL's device flow, completed on the pages: signed in by `sign_in`, or with a password and a
    new authenticator app as `upn`, or by the browser's session when both are `None`."""
    flow = app.initiate_device_flow(scopes=["User.Read"], claims_challenge=claims_challenge)
    assert "user_code" in flow, flow
    assert flow["verification_uri"].startswith(server.public_url), flow
    result: dict = {}
    poller = threading.Thread(
        target=lambda: result.update(app.acquire_token_by_device_flow(flow, claims_challenge=claims_challenge)),
        daemon=True,
    )
    poller.start()
    if sign_in is None and upn is not None:
        sign_in = lambda client, page: sign_in_with_totp_registration(client, page, upn)[0]  # noqa: E731
    complete_device_code(client, flow, sign_in)
    poller.join(timeout=120)
    assert not poller.is_alive(), "MSAL kept polling after the user approved"
    return result


def require_mfa_for_everyone(server: KeywardServer, is_required: bool) -> None:
    with admin(server) as http:
        reply = http.patch(
            f"{server.base_url}/policies/identitySecurityDefaultsEnforcementPolicy", json={"isEnabled": is_required}
        )
        assert reply.status_code == 204, reply.text


def test_msal_device_code_refresh_and_revocation(keyward: KeywardServer) -> None:
    require_mfa_for_everyone(keyward, True)
    user_id = create_user(keyward, "msal")
    upn = f"msal@{DOMAIN}"
    tid = tenant_id(keyward)
    with browser(keyward) as client:
        entra_style = msal.PublicClientApplication(
            "keyward-cli", authority=f"{keyward.public_url}/{DOMAIN}", instance_discovery=False, http_client=http_client(keyward)
        )
        result = run_device_flow(entra_style, keyward, client, upn)
        assert "access_token" in result, result
        assert result["id_token_claims"]["oid"] == user_id
        assert result["id_token_claims"]["tid"] == tid
        assert "mfa" in result["id_token_claims"]["amr"], result["id_token_claims"]
        account = entra_style.get_accounts()[0]
        assert account["home_account_id"] == f"{user_id}.{tid}", account
        # MSAL finds the token in its cache by the scopes it asked for: the response named them so.
        cached = entra_style.acquire_token_silent_with_error(["User.Read"], account=account)
        assert cached and cached.get("token_source") == "cache", cached
        assert cached["access_token"] == result["access_token"]
        refreshed = entra_style.acquire_token_silent_with_error(["User.Read"], account=account, force_refresh=True)
        assert refreshed and "access_token" in refreshed, refreshed
        assert refreshed["access_token"] != result["access_token"]

        # The same flow with oidc_authority= (the browser session is reused: no second sign-in).
        generic = msal.PublicClientApplication(
            "keyward-cli", oidc_authority=f"{keyward.public_url}/{tid}/v2.0", http_client=http_client(keyward)
        )
        second = run_device_flow(generic, keyward, client, None)
        assert "access_token" in second, second

    with admin(keyward) as http:
        reply = http.post(f"{keyward.base_url}/users/{user_id}/revokeSignInSessions")
        assert reply.status_code == 200 and reply.json()["value"] is True, reply.text
    time.sleep(0.01)
    refused = entra_style.acquire_token_silent_with_error(["User.Read"], account=account, force_refresh=True)
    assert refused and refused.get("error") == "invalid_grant", refused
    assert 50173 in refused.get("error_codes", []), refused


def test_msal_answers_a_claims_challenge(keyward: KeywardServer) -> None:
    """MSAL with client_capabilities=["cp1"]: after revokeSignInSessions, Graph answers a claims
    challenge; MSAL's silent attempt with it fails (the refresh token is revoked too), and a new
    sign-in with the challenge brings a token Graph accepts."""
    require_mfa_for_everyone(keyward, True)
    user_id = create_user(keyward, "cae")
    upn = f"cae@{DOMAIN}"
    app = msal.PublicClientApplication(
        "keyward-cli",
        authority=f"{keyward.public_url}/{DOMAIN}",
        instance_discovery=False,
        http_client=http_client(keyward),
        client_capabilities=["cp1"],
    )
    graph = requests.Session()
    graph.trust_env = False
    graph.verify = str(keyward.cert_path)
    with browser(keyward) as client:
        registered: dict = {}

        def register(client: httpx.Client, page: Page) -> Page:
            page, registered["totp"] = sign_in_with_totp_registration(client, page, upn)
            return page

        result = run_device_flow(app, keyward, client, None, sign_in=register)
        assert "access_token" in result, result
        token = result["access_token"]
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["xms_cc"] == ["cp1"], claims
        me = graph.get(f"{keyward.base_url}/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text

        with admin(keyward) as http:
            reply = http.post(f"{keyward.base_url}/users/{user_id}/revokeSignInSessions")
            assert reply.status_code == 200, reply.text
        time.sleep(1.1)
        challenged = graph.get(f"{keyward.base_url}/me", headers={"Authorization": f"Bearer {token}"})
        assert challenged.status_code == 401, challenged.text
        header = challenged.headers["WWW-Authenticate"]
        assert 'error="insufficient_claims"' in header, header
        encoded = header.split('claims="')[1].split('"')[0]
        claims_challenge = base64.b64decode(encoded).decode()
        assert json.loads(claims_challenge)["access_token"]["nbf"]["essential"] is True, claims_challenge

        account = app.get_accounts()[0]
        silent = app.acquire_token_silent_with_error(["User.Read"], account=account, claims_challenge=claims_challenge)
        assert silent and silent.get("error") == "invalid_grant", silent

        # A new sign-in, with the challenge (and cp1 merged in by MSAL).
        def password_and_code(client: httpx.Client, page: Page) -> Page:
            assert page.title == "Sign in", page.html
            page = submit(client, page, "username", {"username": upn})
            page = submit(client, page, "password", {"current-password": PASSWORD})
            assert page.title == "Enter code", page.html
            return submit(client, page, "mfa", {"one-time-code": registered["totp"].at(time.time() + 30)})

        result = run_device_flow(app, keyward, client, None, sign_in=password_and_code, claims_challenge=claims_challenge)
        assert "access_token" in result, result
        fresh = graph.get(f"{keyward.base_url}/me", headers={"Authorization": f"Bearer {result['access_token']}"})
        assert fresh.status_code == 200 and fresh.json()["id"] == user_id, fresh.text


def register_app(server: KeywardServer, name: str, role: str | None, **extra) -> tuple[str, str, str]:
    """Registers an application with a secret; returns (object id, appId, secret)."""
    with admin(server) as http:
        reply = http.post(f"{server.base_url}/applications", json={"displayName": name, **extra})
        assert reply.status_code == 201, reply.text
        object_id, app_id = reply.json()["id"], reply.json()["appId"]
        secret = http.post(f"{server.base_url}/applications/{object_id}/addPassword", json={"passwordCredential": {"displayName": "compat"}})
        assert secret.status_code == 200, secret.text
        if role is not None:
            principals = http.get(f"{server.base_url}/servicePrincipals", params={"$top": "999"}).json()["value"]
            principal = next(it for it in principals if it["appId"] == app_id)
            assigned = http.post(
                f"{server.base_url}/roleManagement/directory/roleAssignments",
                json={"principalId": principal["id"], "roleDefinitionId": role, "directoryScopeId": "/"},
            )
            assert assigned.status_code == 201, assigned.text
        return object_id, app_id, secret.json()["secretText"]


def test_msal_client_credentials_then_graph_sdk(keyward: KeywardServer) -> None:
    _, app_id, secret = register_app(keyward, "Compat daemon", USER_ADMINISTRATOR)
    tid = tenant_id(keyward)
    app = msal.ConfidentialClientApplication(
        app_id, client_credential=secret, oidc_authority=f"{keyward.public_url}/{tid}/v2.0", http_client=http_client(keyward)
    )
    result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert "access_token" in result, result

    async def scenario() -> list[str]:
        async with graph_client(keyward, result["access_token"]) as graph:
            users = await graph.users.get()
            return [it.user_principal_name for it in users.value]

    names = run(scenario())
    assert any(name.startswith("admin@") for name in names), names

    wrong = msal.ConfidentialClientApplication(
        app_id, client_credential="not-the-secret", authority=f"{keyward.public_url}/{DOMAIN}", instance_discovery=False, http_client=http_client(keyward)
    )
    refused = wrong.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert refused.get("error") == "invalid_client" and 7000215 in refused.get("error_codes", []), refused


def test_azure_identity_client_secret_credential(keyward: KeywardServer) -> None:
    _, app_id, secret = register_app(keyward, "Compat azure-identity", USER_ADMINISTRATOR)
    credential = ClientSecretCredential(
        tenant_id(keyward),
        app_id,
        secret,
        authority=keyward.public_url,
        disable_instance_discovery=True,
        connection_verify=str(keyward.cert_path),
    )
    token = credential.get_token("https://graph.microsoft.com/.default")
    assert token.token.count(".") == 2 and token.expires_on > time.time()
    with httpx.Client(verify=keyward.ssl_context(), trust_env=False) as http:
        reply = http.get(f"{keyward.base_url}/users", headers={"Authorization": f"Bearer {token.token}"})
        assert reply.status_code == 200, reply.text


def follow_to_redirect_uri(client: httpx.Client, url: str, redirect_uri: str, upn: str) -> str:
    """Walks the authorization request through the sign-in pages until the redirect to the app."""

    def follow(response: httpx.Response) -> tuple[httpx.Response, str | None]:
        """Follows redirects within Keyward; the app's redirect location once one points there."""
        while response.is_redirect:
            location = response.headers["location"]
            if location.startswith(redirect_uri):
                return response, location
            response = client.get(location if location.startswith("http") else f"{client.base_url}{location}", follow_redirects=False)
        return response, None

    response, location = follow(client.get(url, follow_redirects=False))
    if location:
        return location
    page = parse(response)
    assert page.title == "Sign in", page.html
    page = submit(client, page, "username", {"username": upn})
    form = page.form("password")
    response = client.post(form.action, data={**{i["name"]: i.get("value", "") for i in form.inputs if i.get("name")}, "password": PASSWORD}, follow_redirects=False)
    for _ in range(2):
        response, location = follow(response)
        if location:
            return location
        # A new application asks the user for consent first (the first form is Accept).
        page = parse(response)
        if page.title != "Permissions requested":
            break
        consent = page.form("consent")
        response = client.post(consent.action, data={i["name"]: i.get("value", "") for i in consent.inputs if i.get("name") and i.get("type") != "checkbox"}, follow_redirects=False)
    raise AssertionError(f"no redirect to the application: {response.status_code} {response.text[:500]}")


def test_authlib_code_flow_with_pkce_and_id_token_validation(keyward: KeywardServer) -> None:
    require_mfa_for_everyone(keyward, False)
    create_user(keyward, "authlib-user")
    upn = f"authlib-user@{DOMAIN}"
    tid = tenant_id(keyward)
    with httpx.Client(verify=keyward.ssl_context(), trust_env=False) as http:
        metadata = http.get(f"{keyward.public_url}/{tid}/v2.0/.well-known/openid-configuration").json()
        jwks = http.get(metadata["jwks_uri"]).json()
    issuer = f"{keyward.public_url}/{tid}/v2.0"
    assert metadata["issuer"] == issuer
    redirect_uri = "http://localhost:51234/callback"
    _, app_id, secret = register_app(keyward, "Compat web app", None, web={"redirectUris": [redirect_uri]})
    session = OAuth2Session(app_id, secret, scope="openid profile email", redirect_uri=redirect_uri, code_challenge_method="S256")
    session.verify = str(keyward.cert_path)
    session.trust_env = False
    verifier = "authlib-verifier-" + "x" * 40
    nonce = "authlib-nonce-1"
    url, state = session.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    with httpx.Client(base_url=keyward.public_url, verify=keyward.ssl_context(), trust_env=False) as client:
        response_url = follow_to_redirect_uri(client, url, redirect_uri, upn)
    assert parse_qs(urlparse(response_url).query)["iss"] == [issuer]
    token = session.fetch_token(metadata["token_endpoint"], authorization_response=response_url, code_verifier=verifier)
    claims = jwt.decode(
        token["id_token"],
        JsonWebKey.import_key_set(jwks),
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": issuer}},
        claims_params={"nonce": nonce, "client_id": app_id},
    )
    claims.validate()
    assert claims["preferred_username"] == upn
    # A tampered token fails the signature check.
    head, body, signature = token["id_token"].split(".")
    with pytest.raises(Exception):
        jwt.decode(f"{head}.{body}.{signature[:-4]}AAAA", JsonWebKey.import_key_set(jwks))


def test_openid_client_strict_code_flow_in_chromium(keyward: KeywardServer) -> None:
    node = shutil.which("node")
    chromium = os.environ.get("KEYWARD_CHROMIUM") or shutil.which("chromium")
    assert node and chromium, "Node.js and Chromium are required (scripts/test checks both)"
    browser_dir = REPO_ROOT / "tests" / "browser"
    assert (browser_dir / "node_modules" / "openid-client").is_dir(), "run `npm ci` in tests/browser"
    require_mfa_for_everyone(keyward, False)
    create_user(keyward, "openid-client")
    result = subprocess.run(
        [node, str(browser_dir / "oidc_client.mjs")],
        env={
            **os.environ,
            "NODE_EXTRA_CA_CERTS": str(keyward.cert_path),
            "KEYWARD_ISSUER": f"{keyward.public_url}/{tenant_id(keyward)}/v2.0",
            "KEYWARD_UPN": f"openid-client@{DOMAIN}",
            "KEYWARD_PASSWORD": PASSWORD,
            "KEYWARD_CHROMIUM": chromium,
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["preferred_username"] == f"openid-client@{DOMAIN}", report
    assert report["userinfo_sub"] == report["sub"], report


def self_signed_rsa() -> tuple[bytes, bytes, str]:
    """An RSA key and a self-signed certificate: (key PEM, certificate DER, SHA-1 thumbprint hex)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyward compat client")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    der = cert.public_bytes(serialization.Encoding.DER)
    return pem, der, cert.fingerprint(hashes.SHA1()).hex()


def test_msal_certificate_credential_private_key_jwt(keyward: KeywardServer) -> None:
    import base64

    object_id, app_id, _ = register_app(keyward, "Compat certificate daemon", USER_ADMINISTRATOR)
    pem, der, thumbprint = self_signed_rsa()
    with admin(keyward) as http:
        reply = http.patch(
            f"{keyward.base_url}/applications/{object_id}",
            json={"keyCredentials": [{"type": "AsymmetricX509Cert", "usage": "Verify", "key": base64.b64encode(der).decode(), "displayName": "compat"}]},
        )
        assert reply.status_code == 204, reply.text
        listed = http.get(f"{keyward.base_url}/applications/{object_id}").json()
        assert listed["keyCredentials"][0]["customKeyIdentifier"] == thumbprint.upper(), listed
    app = msal.ConfidentialClientApplication(
        app_id,
        client_credential={"private_key": pem.decode(), "thumbprint": thumbprint},
        authority=f"{keyward.public_url}/{DOMAIN}",
        instance_discovery=False,
        http_client=http_client(keyward),
    )
    result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert "access_token" in result, result
    # An assertion is single-use: replaying one (same jti, still unexpired) is refused.
    token_endpoint = f"{keyward.public_url}/{DOMAIN}/oauth2/v2.0/token"
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "x5t": base64.urlsafe_b64encode(bytes.fromhex(thumbprint)).decode().rstrip("=")}
    claims = {"iss": app_id, "sub": app_id, "aud": token_endpoint, "jti": f"compat-{now}", "nbf": now, "exp": now + 300}
    assertion = jwt.encode(header, claims, pem).decode()
    form = {
        "grant_type": "client_credentials",
        "client_id": app_id,
        "scope": "https://graph.microsoft.com/.default",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    with httpx.Client(verify=keyward.ssl_context(), trust_env=False) as http:
        first = http.post(token_endpoint, data=form)
        assert first.status_code == 200, first.text
        replay = http.post(token_endpoint, data=form)
        assert replay.status_code == 401 and 700027 in replay.json()["error_codes"], replay.text
    # A key whose certificate is not registered is refused.
    other_pem, _, other_thumbprint = self_signed_rsa()
    stranger = msal.ConfidentialClientApplication(
        app_id,
        client_credential={"private_key": other_pem.decode(), "thumbprint": other_thumbprint},
        authority=f"{keyward.public_url}/{DOMAIN}",
        instance_discovery=False,
        http_client=http_client(keyward),
    )
    refused = stranger.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert refused.get("error") == "invalid_client" and 700027 in refused.get("error_codes", []), refused
