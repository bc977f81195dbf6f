"""Just-in-time roles (PIM) driven by the Microsoft Graph Python SDK (msgraph-sdk), as Entra's
PIM scripts drive them: an administrator makes a user eligible for Privileged Authentication
Administrator; the user signs in with MFA (MSAL's device flow, pyotp) and activates the role
with a justification; the role counts at once and stops counting on deactivation; the role's
settings are read and changed through the policy assignment's expanded rules.
"""

from __future__ import annotations

import datetime
import threading

import httpx
import msal
import pyotp
import pytest
import requests
from msgraph.generated.models.expiration_pattern import ExpirationPattern
from msgraph.generated.models.expiration_pattern_type import ExpirationPatternType
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.request_schedule import RequestSchedule
from msgraph.generated.models.unified_role_assignment_schedule_request import UnifiedRoleAssignmentScheduleRequest
from msgraph.generated.models.unified_role_eligibility_schedule_request import UnifiedRoleEligibilityScheduleRequest
from msgraph.generated.models.unified_role_management_policy_expiration_rule import (
    UnifiedRoleManagementPolicyExpirationRule,
)
from msgraph.generated.models.unified_role_schedule_request_actions import UnifiedRoleScheduleRequestActions
from msgraph.generated.policies.role_management_policy_assignments.role_management_policy_assignments_request_builder import (
    RoleManagementPolicyAssignmentsRequestBuilder,
)

from keyward_harness import DOMAIN, KeywardServer, graph_client, run
from signin_pages import parse, submit

PASSWORD = "Tq7-harbour-Lantern-92!"
PRIVILEGED_AUTHENTICATION_ADMINISTRATOR = "7be44c8a-adaf-4e2a-84d6-ab2649e08a13"


def sign_in_with_mfa(server: KeywardServer, upn: str) -> str:
    """MSAL's device flow, completed on the sign-in pages with a password and a new authenticator
    app set up with pyotp: an access token with `mfa` in `amr` and Graph's permissions."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(server.cert_path)
    app = msal.PublicClientApplication(
        "keyward-cli", authority=f"{server.public_url}/{DOMAIN}", instance_discovery=False, http_client=session
    )
    flow = app.initiate_device_flow(scopes=["https://graph.microsoft.com/.default"])
    assert "user_code" in flow, flow
    result: dict = {}
    poller = threading.Thread(target=lambda: result.update(app.acquire_token_by_device_flow(flow)), daemon=True)
    poller.start()
    with httpx.Client(
        base_url=server.public_url, verify=server.ssl_context(), follow_redirects=True, trust_env=False
    ) as client:
        page = parse(client.get(flow["verification_uri"]))
        page = submit(client, page, "username", {"username": upn})
        page = submit(client, page, "password", {"current-password": PASSWORD})
        # Eligible for a privileged role: MFA is asked for at sign-in, so the user can activate.
        assert page.title == "More information required", page.html
        page = submit(client, page, "more_info", {})
        totp = pyotp.parse_uri(page.ids["otpauth"].strip())
        page = submit(client, page, "register_totp", {"one-time-code": totp.now()})
        assert page.title == "Enter code", page.html
        page = submit(client, page, "device_code", {}, {"user_code": flow["user_code"]})
        page = submit(client, page, "device_confirm", {})
        assert page.title == "You're signed in", page.html
    poller.join(timeout=120)
    assert "access_token" in result, result
    assert "mfa" in result["id_token_claims"]["amr"], result["id_token_claims"]
    return result["access_token"]


def test_eligibility_activation_and_settings_through_the_sdk(keyward: KeywardServer) -> None:
    desk_id = keyward.create_user("pimdesk", "PIM Desk", PASSWORD)
    caller_id = keyward.create_user("pimcaller", "PIM Caller", PASSWORD)
    role = PRIVILEGED_AUTHENTICATION_ADMINISTRATOR

    async def as_admin() -> tuple[str, str]:
        async with graph_client(keyward) as graph:
            made = await graph.role_management.directory.role_eligibility_schedule_requests.post(
                UnifiedRoleEligibilityScheduleRequest(
                    action=UnifiedRoleScheduleRequestActions.AdminAssign,
                    principal_id=desk_id,
                    role_definition_id=role,
                    directory_scope_id="/",
                    justification="service-desk rota",
                    schedule_info=RequestSchedule(
                        start_date_time=datetime.datetime.now(datetime.timezone.utc),
                        expiration=ExpirationPattern(type=ExpirationPatternType.NoExpiration),
                    ),
                )
            )
            # The role's settings, found as Entra's scripts find them.
            config = RoleManagementPolicyAssignmentsRequestBuilder.RoleManagementPolicyAssignmentsRequestBuilderGetRequestConfiguration(
                query_parameters=RoleManagementPolicyAssignmentsRequestBuilder.RoleManagementPolicyAssignmentsRequestBuilderGetQueryParameters(
                    filter=f"scopeId eq '/' and scopeType eq 'DirectoryRole' and roleDefinitionId eq '{role}'",
                    expand=["policy($expand=rules)"],
                )
            )
            found = await graph.policies.role_management_policy_assignments.get(request_configuration=config)
            assert len(found.value) == 1
            policy = found.value[0].policy
            expiration = next(it for it in policy.rules if it.id == "Expiration_EndUser_Assignment")
            assert expiration.maximum_duration == datetime.timedelta(hours=8), expiration
            # Activations of at most two hours from now on.
            changed = await graph.policies.role_management_policies.by_unified_role_management_policy_id(
                policy.id
            ).rules.by_unified_role_management_policy_rule_id("Expiration_EndUser_Assignment").patch(
                UnifiedRoleManagementPolicyExpirationRule(
                    odata_type="#microsoft.graph.unifiedRoleManagementPolicyExpirationRule",
                    id="Expiration_EndUser_Assignment",
                    is_expiration_required=True,
                    maximum_duration=datetime.timedelta(hours=2),
                )
            )
            assert changed.maximum_duration == datetime.timedelta(hours=2), changed
            return made.status, made.target_schedule_id

    status, schedule_id = run(as_admin())
    assert status == "Provisioned"
    assert schedule_id

    token = sign_in_with_mfa(keyward, f"pimdesk@{DOMAIN}")
    reregister = f"{keyward.base_url}/users/{caller_id}/authentication/requireMfaReregistration"

    def request(action: UnifiedRoleScheduleRequestActions, duration: str) -> UnifiedRoleAssignmentScheduleRequest:
        return UnifiedRoleAssignmentScheduleRequest(
            action=action,
            principal_id=desk_id,
            role_definition_id=role,
            directory_scope_id="/",
            justification="INC-1234: the caller lost their phone",
            schedule_info=RequestSchedule(
                start_date_time=datetime.datetime.now(datetime.timezone.utc),
                # The Python SDK writes a timedelta as 3:00:00; Keyward takes that and ISO 8601.
                expiration=ExpirationPattern(type=ExpirationPatternType.AfterDuration, duration=duration),
            ),
        )

    async def as_desk() -> tuple[int, str, str | None]:
        async with graph_client(keyward, token) as graph:
            directory = graph.role_management.directory
            mine = await directory.role_eligibility_schedules.filter_by_current_user_with_on("principal").get()
            assert [it.role_definition_id for it in mine.value] == [role], mine
            # Longer than the settings now allow: Entra's policy error, through the SDK.
            with pytest.raises(ODataError) as refused:
                await directory.role_assignment_schedule_requests.post(
                    request(UnifiedRoleScheduleRequestActions.SelfActivate, datetime.timedelta(hours=3))
                )
            assert refused.value.error.code == "RoleAssignmentRequestPolicyValidationFailed"
            assert "ExpirationRule" in refused.value.error.message
            activated = await directory.role_assignment_schedule_requests.post(
                request(UnifiedRoleScheduleRequestActions.SelfActivate, "PT1H")
            )
            with httpx.Client(verify=keyward.ssl_context(), trust_env=False, headers={"Authorization": f"Bearer {token}"}) as http:
                allowed = http.post(reregister).status_code
            instances = await directory.role_assignment_schedule_instances.filter_by_current_user_with_on("principal").get()
            assert [it.assignment_type for it in instances.value] == ["Activated"], instances
            span = instances.value[0].end_date_time - instances.value[0].start_date_time
            assert span == datetime.timedelta(hours=1), span
            deactivated = await directory.role_assignment_schedule_requests.post(
                request(UnifiedRoleScheduleRequestActions.SelfDeactivate, "PT1H")
            )
            return allowed, activated.status, deactivated.status

    allowed, activated, deactivated = run(as_desk())
    assert allowed == 204
    assert (activated, deactivated) == ("Provisioned", "Revoked")
    with httpx.Client(verify=keyward.ssl_context(), trust_env=False, headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.post(reregister).status_code == 403, "deactivated: the role counts no more"
    with keyward.raw_http() as http:
        audit = http.get(
            f"{keyward.base_url}/auditLogs/directoryAudits",
            params={"$filter": "loggedByService eq 'PIM'", "$top": "50"},
        ).json()["value"]
    names = {it["activityDisplayName"] for it in audit}
    for expected in (
        "Add eligible member to role in PIM completed (permanent)",
        "Add member to role completed (PIM activation)",
        "Remove member from role completed (PIM deactivate)",
        "Update role setting in PIM",
    ):
        assert expected in names, names
