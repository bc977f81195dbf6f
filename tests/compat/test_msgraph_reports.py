"""The registration report driven by the Microsoft Graph Python SDK (msgraph-sdk):
`userRegistrationDetails` (list with `$filter` and `$orderby`, paging, get) and the
`usersRegisteredByMethod` / `usersRegisteredByFeature` functions, parsed into the SDK's models;
a user without a reporting role gets the SDK's `ODataError`.
"""

from __future__ import annotations

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.sign_in_user_type import SignInUserType
from msgraph.generated.reports.authentication_methods.user_registration_details.user_registration_details_request_builder import (
    UserRegistrationDetailsRequestBuilder,
)

from keyward_harness import KeywardServer, graph_client, run

PASSWORD = "Tq7-harbour-Lantern-92!"
REPORTS_READER = "4a5d8f65-41da-4de4-8968-e035b65339cf"

Query = UserRegistrationDetailsRequestBuilder.UserRegistrationDetailsRequestBuilderGetQueryParameters


def test_registration_report_through_the_sdk(keyward: KeywardServer) -> None:
    phone_user = keyward.create_user("rptphone", "Report Phone", PASSWORD)
    plain_user = keyward.create_user("rptplain", "Report Plain", PASSWORD)
    reader_id = keyward.create_user("rptreader", "Report Reader", PASSWORD)
    with keyward.raw_http() as http:
        added = http.post(
            f"{keyward.base_url}/users/{phone_user}/authentication/phoneMethods",
            json={"phoneNumber": "+1 2065550100", "phoneType": "mobile"},
        )
        assert added.status_code == 201, added.text
        assigned = http.post(
            f"{keyward.base_url}/roleManagement/directory/roleAssignments",
            json={"principalId": reader_id, "roleDefinitionId": REPORTS_READER, "directoryScopeId": "/"},
        )
        assert assigned.status_code == 201, assigned.text
    reader = keyward.token_for("rptreader")
    nobody = keyward.token_for("rptplain")

    async def as_reader():
        async with graph_client(keyward, reader) as graph:
            report = graph.reports.authentication_methods
            with_phone = await report.user_registration_details.get(
                RequestConfiguration(query_parameters=Query(filter="methodsRegistered/any(m:m eq 'mobilePhone')"))
            )
            one = await report.user_registration_details.by_user_registration_details_id(plain_user).get()
            # Every row, two per page, following @odata.nextLink.
            rows = []
            page = await report.user_registration_details.get(
                RequestConfiguration(query_parameters=Query(orderby=["userDisplayName"], top=2))
            )
            while True:
                rows.extend(page.value)
                if not page.odata_next_link:
                    break
                page = await report.user_registration_details.with_url(page.odata_next_link).get()
            by_method = await report.users_registered_by_method_with_included_user_types_with_included_user_roles(
                included_user_roles="all", included_user_types="all"
            ).get()
            by_feature = await report.users_registered_by_feature.get()
            return with_phone.value, one, rows, by_method, by_feature

    with_phone, one, rows, by_method, by_feature = run(as_reader())

    assert [it.id for it in with_phone] == [phone_user]
    phone_row = with_phone[0]
    assert phone_row.user_principal_name.startswith("rptphone@")
    assert phone_row.methods_registered == ["mobilePhone"]
    assert phone_row.is_mfa_registered is True
    assert phone_row.is_mfa_capable is False
    assert phone_row.user_type == SignInUserType.Member
    assert phone_row.last_updated_date_time is not None

    assert one.id == plain_user and one.methods_registered == [] and one.is_admin is False

    names = [it.user_display_name.lower() for it in rows]
    assert names == sorted(names), names
    assert len(set(it.id for it in rows)) == len(rows)
    assert {phone_user, plain_user, reader_id} <= {it.id for it in rows}
    assert next(it for it in rows if it.id == reader_id).is_admin is True

    counts = {it.authentication_method: it.user_count for it in by_method.user_registration_method_counts}
    assert counts["mobilePhone"] == sum(1 for it in rows if "mobilePhone" in (it.methods_registered or []))
    assert by_method.user_roles == "all" or str(by_method.user_roles).lower().endswith("all")
    assert by_feature.total_user_count == len(rows)
    features = {str(it.feature).split(".")[-1].lower(): it.user_count for it in by_feature.user_registration_feature_counts}
    assert features["mfacapable"] == sum(1 for it in rows if it.is_mfa_capable)

    async def as_nobody() -> None:
        async with graph_client(keyward, nobody) as graph:
            await graph.reports.authentication_methods.user_registration_details.get()

    with pytest.raises(ODataError) as refused:
        run(as_nobody())
    assert refused.value.response_status_code == 403
    assert refused.value.error.code == "Authorization_RequestDenied"
