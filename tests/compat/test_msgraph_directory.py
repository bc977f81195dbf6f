"""Microsoft's documented directory snippets, run with the official Graph SDK (msgraph-sdk).

Users created and updated with the documented bodies and read with the added properties, a
guest filter, a manager and direct reports, a group created with members@odata.bind, transitive
members, the member-group functions, deleted items and restore, and alternate keys. Every
response is also checked against the SDK's models when the module ends (conftest.py).
"""

from __future__ import annotations

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
from msgraph.generated.models.application import Application
from msgraph.generated.models.group import Group
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_profile import PasswordProfile
from msgraph.generated.models.reference_update import ReferenceUpdate
from msgraph.generated.models.user import User
from msgraph.generated.users.item.check_member_groups.check_member_groups_post_request_body import (
    CheckMemberGroupsPostRequestBody,
)
from msgraph.generated.users.item.get_member_groups.get_member_groups_post_request_body import (
    GetMemberGroupsPostRequestBody,
)
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from keyward_harness import DOMAIN, KeywardServer, graph_client, run

GRAPH = "https://graph.microsoft.com/v1.0"


async def documented_user(client: GraphServiceClient, server: KeywardServer, nickname: str) -> User:
    """Microsoft's "Create user" example body, in this tenant's domain."""
    created = await client.users.post(
        User(
            account_enabled=True,
            display_name="Adele Vance",
            mail_nickname=nickname,
            user_principal_name=f"{nickname}@{DOMAIN}",
            password_profile=PasswordProfile(force_change_password_next_sign_in=True, password="xWwvJ]6NMw+bWH-d"),
        )
    )
    assert created is not None and created.id
    server.created_user_ids.add(created.id)
    return created


def test_documented_user_bodies_and_added_properties(keyward: KeywardServer) -> None:
    async def scenario() -> tuple[str, User, list[str]]:
        async with graph_client(keyward) as client:
            user = await documented_user(client, keyward, "AdeleV")
            # Microsoft's "Update user" example body, then the provisioning properties.
            await client.users.by_user_id(user.id).patch(
                User(business_phones=["+1 425 555 0109"], office_location="18/2111")
            )
            await client.users.by_user_id(user.id).patch(
                User(employee_id="E-1001", company_name="Contoso", city="Oslo", user_type="Guest")
            )
            select = ["employeeId", "companyName", "city", "officeLocation", "businessPhones", "userType", "identities"]
            query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=select)
            read = await client.users.by_user_id(user.id).get(RequestConfiguration(query_parameters=query))
            assert read is not None
            guests = await client.users.get(
                RequestConfiguration(
                    query_parameters=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
                        filter="userType eq 'Guest'", select=["id"]
                    )
                )
            )
            assert guests is not None and guests.value is not None
            return user.id, read, [it.id for it in guests.value]

    user_id, read, guest_ids = run(scenario())
    assert read.employee_id == "E-1001"
    assert read.company_name == "Contoso"
    assert read.city == "Oslo"
    assert read.office_location == "18/2111"
    assert read.business_phones == ["+1 425 555 0109"]
    assert read.user_type == "Guest"
    assert read.identities and (read.identities[0].issuer_assigned_id or "").lower() == f"adelev@{DOMAIN}"
    assert read.id is None, "only what $select names"
    assert guest_ids == [user_id]


def test_too_long_job_title_is_graphs_error(keyward: KeywardServer) -> None:
    async def scenario() -> ODataError:
        async with graph_client(keyward) as client:
            user = await documented_user(client, keyward, "LongTitle")
            with pytest.raises(ODataError) as raised:
                await client.users.by_user_id(user.id).patch(User(job_title="x" * 129))
            return raised.value

    error = run(scenario())
    assert error.response_status_code == 400
    assert error.error is not None and error.error.code == "Request_BadRequest"
    assert "jobTitle" in (error.error.message or "")


def test_manager_and_direct_reports(keyward: KeywardServer) -> None:
    async def scenario() -> tuple[str, str | None, list[str], list[str]]:
        async with graph_client(keyward) as client:
            boss = await documented_user(client, keyward, "Boss")
            report = await documented_user(client, keyward, "Report")
            await client.users.by_user_id(report.id).manager.ref.put(
                ReferenceUpdate(odata_id=f"{GRAPH}/users/{boss.id}")
            )
            manager = await client.users.by_user_id(report.id).manager.get()
            reports = await client.users.by_user_id(boss.id).direct_reports.get()
            expanded = await client.users.by_user_id(report.id).get(
                RequestConfiguration(
                    query_parameters=UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
                        expand=["manager"]
                    )
                )
            )
            await client.users.by_user_id(report.id).manager.ref.delete()
            with pytest.raises(ODataError):
                await client.users.by_user_id(report.id).manager.get()
            assert manager is not None and reports is not None and expanded is not None
            return (
                boss.id,
                manager.id,
                [it.id for it in reports.value or []],
                [expanded.manager.id] if expanded.manager else [],
            )

    boss, manager, reports, expanded = run(scenario())
    assert manager == boss
    assert len(reports) == 1
    assert expanded == [boss]


def test_group_with_members_bind_and_member_functions(keyward: KeywardServer) -> None:
    async def scenario() -> dict[str, object]:
        async with graph_client(keyward) as client:
            member = await documented_user(client, keyward, "Member")
            owner = await documented_user(client, keyward, "Owner")
            # Microsoft's "Create a group with members and owners" example.
            inner = await client.groups.post(
                Group(
                    description="Group with designated owner and members",
                    display_name="Operations group",
                    group_types=[],
                    mail_enabled=False,
                    mail_nickname="operations2019",
                    security_enabled=True,
                    additional_data={
                        "owners@odata.bind": [f"{GRAPH}/users/{owner.id}"],
                        "members@odata.bind": [f"{GRAPH}/users/{member.id}"],
                    },
                )
            )
            assert inner is not None and inner.id
            outer = await client.groups.post(
                Group(
                    display_name="All operations",
                    mail_enabled=False,
                    mail_nickname="alloperations",
                    security_enabled=True,
                    additional_data={"members@odata.bind": [f"{GRAPH}/groups/{inner.id}"]},
                )
            )
            assert outer is not None and outer.id
            members = await client.groups.by_group_id(outer.id).transitive_members.get()
            owners = await client.groups.by_group_id(inner.id).owners.get()
            groups = await client.users.by_user_id(member.id).get_member_groups.post(
                GetMemberGroupsPostRequestBody(security_enabled_only=True)
            )
            checked = await client.users.by_user_id(member.id).check_member_groups.post(
                CheckMemberGroupsPostRequestBody(group_ids=[outer.id, "00000000-0000-0000-0000-000000000000"])
            )
            transitive = await client.users.by_user_id(member.id).transitive_member_of.get()
            # Counting needs ConsistencyLevel: eventual, as in Microsoft's examples.
            eventual: RequestConfiguration[object] = RequestConfiguration()
            eventual.headers.add("ConsistencyLevel", "eventual")
            counted = await client.groups.by_group_id(outer.id).transitive_members.count.get(eventual)
            counted_users = await client.groups.by_group_id(outer.id).transitive_members.graph_user.count.get(eventual)
            return {
                "inner": inner.id,
                "outer": outer.id,
                "member": member.id,
                "owner": owner.id,
                "members": sorted(it.id for it in (members.value if members else []) or []),
                "owners": [it.id for it in (owners.value if owners else []) or []],
                "groups": sorted(groups.value or []) if groups else [],
                "checked": checked.value if checked else None,
                "transitive": sorted(it.id for it in (transitive.value if transitive else []) or []),
                "counted": (counted, counted_users),
            }

    found = run(scenario())
    assert found["members"] == sorted([found["inner"], found["member"]])
    assert found["owners"] == [found["owner"]]
    assert found["groups"] == sorted([found["inner"], found["outer"]])
    assert found["checked"] == [found["outer"]]
    assert found["transitive"] == sorted([found["inner"], found["outer"]])
    assert found["counted"] == (2, 1)


def test_deleted_items_and_restore(keyward: KeywardServer) -> None:
    async def scenario() -> tuple[str, list[str], str | None, list[str]]:
        async with graph_client(keyward) as client:
            leaver = await documented_user(client, keyward, "Leaver")
            await client.users.by_user_id(leaver.id).delete()
            deleted = await client.directory.deleted_items.graph_user.get()
            restored = await client.directory.deleted_items.by_directory_object_id(leaver.id).restore.post()
            back = await client.users.by_user_id(leaver.id).get()
            await client.users.by_user_id(leaver.id).delete()
            await client.directory.deleted_items.by_directory_object_id(leaver.id).delete()
            after = await client.directory.deleted_items.graph_user.get()
            assert deleted is not None and restored is not None and back is not None and after is not None
            return (
                leaver.id,
                [it.id for it in deleted.value or []],
                restored.id,
                [it.id for it in after.value or []],
            )

    leaver, deleted, restored, after = run(scenario())
    assert leaver in deleted
    assert restored == leaver
    assert leaver not in after


def test_deleted_group_is_restored_with_its_members(keyward: KeywardServer) -> None:
    async def scenario() -> dict[str, object]:
        async with graph_client(keyward) as client:
            member = await documented_user(client, keyward, "Crewmate")
            # Microsoft's "Create a Microsoft 365 group" example body, with a member.
            created = await client.groups.post(
                Group(
                    description="Self help community for library",
                    display_name="Library Assist",
                    group_types=["Unified"],
                    mail_enabled=True,
                    mail_nickname="library",
                    security_enabled=False,
                    additional_data={"members@odata.bind": [f"{GRAPH}/users/{member.id}"]},
                )
            )
            assert created is not None and created.id
            await client.groups.by_group_id(created.id).delete()
            deleted = await client.directory.deleted_items.graph_group.get()
            item = await client.directory.deleted_items.by_directory_object_id(created.id).get()
            restored = await client.directory.deleted_items.by_directory_object_id(created.id).restore.post()
            members = await client.groups.by_group_id(created.id).members.get()
            assert deleted is not None and item is not None and restored is not None and members is not None
            return {
                "id": created.id,
                "deleted": [(it.id, it.display_name, it.deleted_date_time is not None) for it in deleted.value or []],
                "item": type(item).__name__,
                "restored": (type(restored).__name__, restored.id),
                "members": [it.id for it in members.value or []],
                "member": member.id,
            }

    found = run(scenario())
    assert (found["id"], "Library Assist", True) in found["deleted"]  # type: ignore[operator]
    assert found["item"] == "Group"
    assert found["restored"] == ("Group", found["id"])
    assert found["members"] == [found["member"]]


def test_alternate_keys_and_app_id_filter(keyward: KeywardServer) -> None:
    async def scenario() -> tuple[Application, str | None, str | None, list[str]]:
        async with graph_client(keyward) as client:
            created = await client.applications.post(Application(display_name="Payroll"))
            assert created is not None and created.app_id
            by_key = await client.applications_with_app_id(created.app_id).get()
            principal = await client.service_principals_with_app_id(created.app_id).get()
            filtered = await client.applications.get(
                RequestConfiguration(
                    query_parameters=ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
                        filter=f"appId eq '{created.app_id}'"
                    )
                )
            )
            assert by_key is not None and principal is not None and filtered is not None
            return created, by_key.id, principal.app_id, [it.id for it in filtered.value or []]

    created, by_key, principal_app_id, filtered = run(scenario())
    assert by_key == created.id
    assert principal_app_id == created.app_id
    assert filtered == [created.id]


def test_application_upsert_by_unique_name(keyward: KeywardServer) -> None:
    async def scenario() -> tuple[Application | None, Application | None, Application | None]:
        async with graph_client(keyward) as client:
            # Microsoft's "Create a new application if it doesn't exist" example.
            create_if_missing: RequestConfiguration[object] = RequestConfiguration()
            create_if_missing.headers.add("Prefer", "create-if-missing")
            builder = client.applications_with_unique_name("app-65278")
            created = await builder.patch(Application(display_name="Display name"), create_if_missing)
            updated = await builder.patch(Application(display_name="Display name 2"), create_if_missing)
            read = await builder.get()
            return created, updated, read

    created, updated, read = run(scenario())
    assert created is not None and created.unique_name == "app-65278" and created.id
    assert updated is None, "an update answers 204 No Content"
    assert read is not None and read.id == created.id and read.display_name == "Display name 2"


def test_an_administrators_member_of_names_the_role(keyward: KeywardServer) -> None:
    async def scenario() -> list[object]:
        async with graph_client(keyward) as client:
            found = await client.me.member_of.get()
            assert found is not None
            return list(found.value or [])

    objects = run(scenario())
    roles = [it for it in objects if type(it).__name__ == "DirectoryRole"]
    assert [getattr(it, "role_template_id", None) for it in roles] == ["62e90394-69f5-4237-9190-012177145e10"]
