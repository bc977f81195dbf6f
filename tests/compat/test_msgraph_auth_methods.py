"""The authentication-method API driven by the Microsoft Graph Python SDK (msgraph-sdk).

A Privileged Authentication Administrator (token from `keyward token`) lists a Global
Administrator's methods, creates a Temporary Access Pass (shown once), revokes sessions; an
Authentication Administrator's refused call surfaces as the SDK's `ODataError`. Keyward's two
extensions (`requireMfaReregistration`, `revokeMfaSessions`) and per-user MFA (beta, not in the
v1.0 SDK) go over plain HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from urllib.parse import urlparse

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
import pytest
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.temporary_access_pass_authentication_method import (
    TemporaryAccessPassAuthenticationMethod,
)

from msgraph.generated.models.advanced_config_state import AdvancedConfigState
from msgraph.generated.models.authentication_method_target import AuthenticationMethodTarget
from msgraph.generated.models.authentication_method_target_type import AuthenticationMethodTargetType
from msgraph.generated.models.authentication_methods_policy import AuthenticationMethodsPolicy
from msgraph.generated.models.authentication_methods_registration_campaign import (
    AuthenticationMethodsRegistrationCampaign,
)
from msgraph.generated.models.authentication_methods_registration_campaign_include_target import (
    AuthenticationMethodsRegistrationCampaignIncludeTarget,
)
from msgraph.generated.models.identity_security_defaults_enforcement_policy import (
    IdentitySecurityDefaultsEnforcementPolicy,
)
from msgraph.generated.models.registration_enforcement import RegistrationEnforcement
from msgraph.generated.models.temporary_access_pass_authentication_method_configuration import (
    TemporaryAccessPassAuthenticationMethodConfiguration,
)

from keyward_harness import DOMAIN, KeywardServer, graph_client, run

PASSWORD = "Tq7-harbour-Lantern-92!"
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_AUTHENTICATION_ADMINISTRATOR = "7be44c8a-adaf-4e2a-84d6-ab2649e08a13"
AUTHENTICATION_ADMINISTRATOR = "c4e39bd9-1100-46d3-8c65-fb160da0071f"


def make_user(server: KeywardServer, alias: str, role: str | None) -> tuple[str, str]:
    """Creates a user (with a role) and returns (id, a token for it)."""
    with server.raw_http() as http:
        reply = http.post(
            f"{server.base_url}/users",
            json={
                "accountEnabled": True,
                "displayName": f"{alias} Methods",
                "mailNickname": alias,
                "userPrincipalName": f"{alias}@{DOMAIN}",
                "passwordProfile": {"password": PASSWORD, "forceChangePasswordNextSignIn": False},
            },
        )
        assert reply.status_code == 201, reply.text
        user_id = reply.json()["id"]
        if role is not None:
            assigned = http.post(
                f"{server.base_url}/roleManagement/directory/roleAssignments",
                json={"principalId": user_id, "roleDefinitionId": role, "directoryScopeId": "/"},
            )
            assert assigned.status_code == 201, assigned.text
    return user_id, server.token_for(alias)


def test_service_desk_operations_through_the_sdk(keyward: KeywardServer) -> None:
    _, desk = make_user(keyward, "sdkdesk", PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)
    _, helpdesk = make_user(keyward, "sdkhelp", AUTHENTICATION_ADMINISTRATOR)
    grace, _ = make_user(keyward, "sdkgrace", GLOBAL_ADMINISTRATOR)

    async def as_desk() -> tuple[list[str], str, bool]:
        async with graph_client(keyward, desk) as graph:
            target = graph.users.by_user_id(grace)
            created = await target.authentication.temporary_access_pass_methods.post(
                TemporaryAccessPassAuthenticationMethod(lifetime_in_minutes=60, is_usable_once=True)
            )
            methods = await target.authentication.methods.get()
            types = [it.odata_type for it in methods.value]
            listed = await target.authentication.temporary_access_pass_methods.get()
            assert listed.value[0].temporary_access_pass is None, "the pass is shown once"
            revoked = await target.revoke_sign_in_sessions.post()
            return types, created.temporary_access_pass, revoked.value

    types, pass_text, revoked = run(as_desk())
    assert len(pass_text) == 8
    assert types == [
        "#microsoft.graph.passwordAuthenticationMethod",
        "#microsoft.graph.temporaryAccessPassAuthenticationMethod",
    ], types
    assert revoked is True

    async def as_helpdesk() -> None:
        async with graph_client(keyward, helpdesk) as graph:
            await graph.users.by_user_id(grace).authentication.temporary_access_pass_methods.post(
                TemporaryAccessPassAuthenticationMethod(lifetime_in_minutes=60)
            )

    with pytest.raises(ODataError) as refused:
        run(as_helpdesk())
    assert refused.value.response_status_code == 403
    assert refused.value.error.code == "Authorization_RequestDenied"

    # Keyward's extensions and per-user MFA (beta) over plain HTTP with the same token.
    with httpx.Client(verify=keyward.ssl_context(), trust_env=False, headers={"Authorization": f"Bearer {desk}"}) as http:
        for action in ("requireMfaReregistration", "revokeMfaSessions"):
            reply = http.post(f"{keyward.base_url}/users/{grace}/authentication/{action}")
            assert reply.status_code == 204, reply.text
        # The Privileged Authentication Administrator cannot manage per-user MFA (Entra's per-user MFA administration).
        reply = http.patch(f"{keyward.public_url}/beta/users/{grace}/authentication/requirements", json={"perUserMfaState": "enabled"})
        assert reply.status_code == 403, reply.text
    with keyward.raw_http() as http:
        reply = http.patch(f"{keyward.public_url}/beta/users/{grace}/authentication/requirements", json={"perUserMfaState": "enabled"})
        assert reply.status_code == 204, reply.text
        audit = http.get(
            f"{keyward.base_url}/auditLogs/directoryAudits",
            params={"$filter": f"targetResources/any(t:t/id eq '{grace}')", "$top": "50"},
        ).json()["value"]
    activities = {it["activityDisplayName"] for it in audit}
    for expected in (
        "Admin registered security info",
        "Update StsRefreshTokenValidFrom Timestamp",
        "Update user",
        "Enable Strong Authentication",
    ):
        assert expected in activities, (expected, activities)
    assert all(pass_text not in str(it) for it in audit)


def test_methods_policy_round_trip_through_the_sdk(keyward: KeywardServer) -> None:
    """The authentication methods policy, a method configuration's targets and security defaults,
    read and changed through msgraph-sdk's models, and a pass the targets leave out unusable."""
    outsider, _ = make_user(keyward, "sdkoutsider", None)
    with keyward.raw_http() as http:
        group = http.post(
            f"{keyward.base_url}/groups",
            json={"displayName": "Pass pilot", "mailEnabled": False, "mailNickname": "passpilot", "securityEnabled": True},
        )
        assert group.status_code == 201, group.text
        group_id = group.json()["id"]

    async def round_trip() -> tuple[object, object, object, bool, str]:
        async with graph_client(keyward) as graph:
            policies = graph.policies
            before = await policies.authentication_methods_policy.get()
            campaign = AuthenticationMethodsRegistrationCampaign(
                state=AdvancedConfigState.Enabled,
                snooze_duration_in_days=2,
                include_targets=[
                    AuthenticationMethodsRegistrationCampaignIncludeTarget(
                        id="all_users",
                        target_type=AuthenticationMethodTargetType.Group,
                        targeted_authentication_method="microsoftAuthenticator",
                    )
                ],
            )
            after = await policies.authentication_methods_policy.patch(
                AuthenticationMethodsPolicy(
                    registration_enforcement=RegistrationEnforcement(
                        authentication_methods_registration_campaign=campaign
                    )
                )
            )
            configs = policies.authentication_methods_policy.authentication_method_configurations
            await configs.by_authentication_method_configuration_id("TemporaryAccessPass").patch(
                TemporaryAccessPassAuthenticationMethodConfiguration(
                    include_targets=[
                        AuthenticationMethodTarget(
                            id=group_id, target_type=AuthenticationMethodTargetType.Group, is_registration_required=False
                        )
                    ]
                )
            )
            tap = await configs.by_authentication_method_configuration_id("temporaryAccessPass").get()
            defaults = policies.identity_security_defaults_enforcement_policy
            await defaults.patch(IdentitySecurityDefaultsEnforcementPolicy(is_enabled=True))
            enabled = (await defaults.get()).is_enabled
            await defaults.patch(IdentitySecurityDefaultsEnforcementPolicy(is_enabled=False))
            created = await graph.users.by_user_id(outsider).authentication.temporary_access_pass_methods.post(
                TemporaryAccessPassAuthenticationMethod(lifetime_in_minutes=60)
            )
            return before, after, tap, enabled, created.method_usability_reason

    before, after, tap, enabled, reason = run(round_trip())
    assert before.policy_migration_state.value == "migrationComplete"
    assert {it.id for it in before.authentication_method_configurations} >= {
        "TemporaryAccessPass", "SoftwareOath", "Email", "Sms", "Voice", "Fido2",
    }
    campaign = after.registration_enforcement.authentication_methods_registration_campaign
    assert campaign.state == AdvancedConfigState.Enabled and campaign.snooze_duration_in_days == 2
    assert isinstance(tap, TemporaryAccessPassAuthenticationMethodConfiguration)
    assert [it.id for it in tap.include_targets] == [group_id]
    assert enabled is True
    # Created for anyone, as Entra does, but the targets leave this user out.
    assert reason == "DisabledByPolicy"


def _cbor(value: object) -> bytes:
    """CBOR for what an authenticator sends: integers, byte and text strings, maps."""

    def head(major: int, n: int) -> bytes:
        if n < 24:
            return bytes([major << 5 | n])
        for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 1 << (8 * size):
                return bytes([major << 5 | info]) + n.to_bytes(size, "big")
        raise ValueError(n)

    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, bytes):
        return head(2, len(value)) + value
    if isinstance(value, str):
        return head(3, len(value.encode())) + value.encode()
    if isinstance(value, dict):
        return head(5, len(value)) + b"".join(_cbor(k) + _cbor(v) for k, v in value.items())
    raise TypeError(value)


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _make_passkey(rp_id: str, challenge: str, origin: str) -> dict:
    """A passkey made as a security key would (ES256, user present and verified, attestation
    `none`), written here independently of Keyward's verifier; the body of `POST …/fido2Methods`."""
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    cose = _cbor({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})
    credential_id = os.urandom(16)
    auth_data = (
        hashlib.sha256(rp_id.encode()).digest()
        + bytes([0x45])
        + (0).to_bytes(4, "big")
        + bytes(16)
        + len(credential_id).to_bytes(2, "big")
        + credential_id
        + cose
    )
    client_data = json.dumps({"type": "webauthn.create", "challenge": challenge, "origin": origin}).encode()
    attestation = _cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
    return {
        "displayName": "SDK security key",
        "publicKeyCredential": {
            "id": _b64u(credential_id),
            "response": {"clientDataJSON": _b64u(client_data), "attestationObject": _b64u(attestation)},
        },
    }


def test_passkeys_through_the_sdk(keyward: KeywardServer) -> None:
    """creationOptions through msgraph-sdk's models, the POST Graph documents (newer than the
    SDK), then the SDK lists and deletes the passkey."""
    user_id, _ = make_user(keyward, "sdkpasskey", None)
    with keyward.raw_http() as http:
        reply = http.patch(
            f"{keyward.base_url}/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/Fido2",
            json={"state": "enabled"},
        )
        assert reply.status_code == 204, reply.text
    parts = urlparse(keyward.public_url)
    origin = f"{parts.scheme}://{parts.netloc}"

    async def options() -> tuple[str, str]:
        async with graph_client(keyward) as graph:
            made = await graph.users.by_user_id(user_id).authentication.fido2_methods.creation_options.get()
            return made.public_key.rp.id, made.public_key.challenge

    rp_id, challenge = run(options())
    assert rp_id == parts.hostname
    with keyward.raw_http() as http:
        reply = http.post(
            f"{keyward.base_url}/users/{user_id}/authentication/fido2Methods",
            json=_make_passkey(rp_id, challenge, origin),
        )
        assert reply.status_code == 201, reply.text
        keyward.record(reply)
        passkey_id = reply.json()["id"]

    async def list_and_delete() -> tuple[list, list]:
        async with graph_client(keyward) as graph:
            methods = graph.users.by_user_id(user_id).authentication.fido2_methods
            before = (await methods.get()).value
            await methods.by_fido2_authentication_method_id(passkey_id).delete()
            after = (await methods.get()).value
            return before, after

    before, after = run(list_and_delete())
    assert [(it.id, it.display_name, it.passkey_type.value) for it in before] == [
        (passkey_id, "SDK security key", "deviceBound")
    ]
    assert after == []
