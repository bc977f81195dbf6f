"""Drive Keyward with the official Microsoft Graph Python SDK (msgraph-sdk).

Each test runs an async scenario with `asyncio.run` and builds its own
GraphServiceClient (an httpx.AsyncClient cannot be shared across event loops).
The server fixture (`keyward`, conftest.py) is started once for the module.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_http.middleware.options import BodyInspectionHandlerOption
from msgraph import GraphServiceClient
from msgraph.generated.audit_logs.directory_audits.directory_audits_request_builder import (
    DirectoryAuditsRequestBuilder,
)
from msgraph.generated.models.application import Application
from msgraph.generated.models.directory_audit import DirectoryAudit
from msgraph.generated.models.group import Group
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_profile import PasswordProfile
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.generated.models.user import User
from msgraph.generated.models.user_collection_response import UserCollectionResponse
from msgraph.generated.service_principals.service_principals_request_builder import (
    ServicePrincipalsRequestBuilder,
)
from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem
from msgraph_core.tasks.page_iterator import PageIterator

from keyward_harness import ADMIN_UPN, DOMAIN, KeywardServer, graph_client, run

USER_PASSWORD = "Tq7-harbour-Lantern-92!"
PAGER_USER_COUNT = 250
PAGER_BATCH_SIZE = 25
PAGER_TIMEOUT_S = 900.0
DEFAULT_PAGE_SIZE = 100
MISSING_ID = "00000000-0000-0000-0000-000000000000"
ODATA_ERRORS = {"XXX": ODataError}


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def new_user(display_name: str, nickname: str) -> User:
    return User(
        account_enabled=True,
        display_name=display_name,
        mail_nickname=nickname,
        user_principal_name=f"{nickname}@{DOMAIN}",
        password_profile=PasswordProfile(
            force_change_password_next_sign_in=True,
            password=USER_PASSWORD,
        ),
    )


async def create_user(
    client: GraphServiceClient, server: KeywardServer, display_name: str, nickname: str
) -> User:
    created = await client.users.post(new_user(display_name, nickname))
    assert created is not None, f"POST /users for {nickname} returned no body"
    assert created.id, f"POST /users for {nickname} returned a user without an id"
    server.created_user_ids.add(created.id)
    return created


def assert_no_password(user: User, where: str) -> None:
    profile = user.password_profile
    assert profile is None or profile.password is None, (
        f"{where}: the password must never be returned, got passwordProfile={profile!r}"
    )


class CountingPageIterator(PageIterator):
    """The SDK's PageIterator, recording every @odata.nextLink it follows."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.followed_next_links: list[str] = []

    async def fetch_next_page(self):
        self.followed_next_links.append(self.current_page.odata_next_link)
        return await super().fetch_next_page()


async def collect_all(
    client: GraphServiceClient, first_page: UserCollectionResponse
) -> tuple[list[User], CountingPageIterator]:
    items: list[User] = []

    def on_item(user: User) -> bool:
        items.append(user)
        return True

    iterator = CountingPageIterator(
        first_page, client.request_adapter, error_mapping=ODATA_ERRORS
    )
    await iterator.iterate(on_item)
    return items, iterator


def pager_name(n: int) -> str:
    return f"Pager User {n:03d}"


# --------------------------------------------------------------------------
# Shared data
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pager_users(keyward: KeywardServer) -> dict[str, str]:
    """Creates 250 users ("Pager User 001".."Pager User 250"); maps id -> displayName."""

    async def scenario() -> dict[str, str]:
        created: dict[str, str] = {}
        async with graph_client(keyward) as client:
            numbers = list(range(1, PAGER_USER_COUNT + 1))
            for start in range(0, len(numbers), PAGER_BATCH_SIZE):
                batch = numbers[start : start + PAGER_BATCH_SIZE]
                users = await asyncio.gather(
                    *(
                        create_user(client, keyward, pager_name(n), f"pager{n:03d}")
                        for n in batch
                    )
                )
                for n, user in zip(batch, users):
                    assert user.display_name == pager_name(n)
                    created[user.id] = user.display_name
        return created

    # Generous bound: each create hashes a password, which is slow in debug builds.
    created = run(scenario(), timeout=PAGER_TIMEOUT_S)
    assert len(created) == PAGER_USER_COUNT, "user ids returned by POST /users must be unique"
    return created


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_create_user_and_get_it_back(keyward: KeywardServer) -> None:
    display_name = "Adele Vance"
    upn = f"adelev@{DOMAIN}"

    async def scenario() -> tuple[User, User, bytes | None]:
        async with graph_client(keyward) as client:
            inspect = BodyInspectionHandlerOption(inspect_response_body=True)
            created = await client.users.post(
                new_user(display_name, "adelev"),
                request_configuration=RequestConfiguration(options=[inspect]),
            )
            post_body = inspect.response_body
            assert created is not None and created.id, "POST /users must return the user with an id"
            keyward.created_user_ids.add(created.id)
            fetched = await client.users.by_user_id(created.id).get()
            assert fetched is not None, f"GET /users/{created.id} returned no body"
            return created, fetched, post_body

    created, fetched, post_body = run(scenario())

    assert created.user_principal_name == upn
    assert created.display_name == display_name
    assert_no_password(created, "POST /users response")
    assert post_body, "the SDK's BodyInspectionHandler captured no POST /users response body"
    assert USER_PASSWORD.encode() not in post_body, "POST /users response body contains the password"

    assert fetched.id == created.id
    assert fetched.user_principal_name == upn
    assert fetched.display_name == display_name
    assert_no_password(fetched, f"GET /users/{created.id}")

    # Wire-level: the password appears in no representation of the user.
    with keyward.raw_http() as http:
        for url in (f"{keyward.base_url}/users/{created.id}", f"{keyward.base_url}/users"):
            response = http.get(url)
            assert response.status_code == 200, f"GET {url}: {response.status_code} {response.text}"
            assert USER_PASSWORD not in response.text, f"GET {url} leaks the password"


def test_security_group_members(keyward: KeywardServer) -> None:
    async def scenario() -> tuple[Group, list[str], list]:
        async with graph_client(keyward) as client:
            alex, megan = await asyncio.gather(
                create_user(client, keyward, "Alex Wilber", "alexw"),
                create_user(client, keyward, "Megan Bowen", "meganb"),
            )
            group = await client.groups.post(
                Group(
                    display_name="Compat Security Group",
                    mail_enabled=False,
                    mail_nickname="compatsecurity",
                    security_enabled=True,
                )
            )
            assert group is not None and group.id, "POST /groups must return the group with an id"
            members_builder = client.groups.by_group_id(group.id).members
            for user in (alex, megan):
                result = await members_builder.ref.post(
                    ReferenceCreate(odata_id=keyward.directory_object_url(user.id))
                )
                assert result is None  # 204 No Content
            listing = await members_builder.get()
            assert listing is not None, f"GET /groups/{group.id}/members returned no body"
            # $expand=memberOf: the user's groups inline, as the SDK's models read them.
            expand = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(expand=["memberOf"])
            alex_again = await client.users.by_user_id(alex.id).get(
                request_configuration=RequestConfiguration(query_parameters=expand)
            )
            assert alex_again is not None and alex_again.member_of is not None
            assert [it.id for it in alex_again.member_of] == [group.id]
            assert isinstance(alex_again.member_of[0], Group)
            assert alex_again.member_of[0].display_name == "Compat Security Group"
            return group, [alex.id, megan.id], list(listing.value or [])

    group, user_ids, members = run(scenario())

    assert group.display_name == "Compat Security Group"
    assert group.security_enabled is True
    assert group.mail_enabled is False
    assert group.mail_nickname == "compatsecurity"

    member_ids = [m.id for m in members]
    assert sorted(member_ids) == sorted(user_ids), (
        f"group members {member_ids} should be exactly the two added users {user_ids}"
    )
    # Graph tags each directoryObject with its type, so the SDK materialises
    # users as User instances; SDK callers rely on isinstance checks here.
    for member in members:
        assert member.odata_type == "#microsoft.graph.user", (
            f"member {member.id} must carry \"@odata.type\": \"#microsoft.graph.user\", "
            f"got {member.odata_type!r}"
        )
        assert isinstance(member, User)


def test_list_users_is_paged_and_complete(
    keyward: KeywardServer, pager_users: dict[str, str]
) -> None:
    def assert_next_link(link: str) -> None:
        assert link.startswith(f"{keyward.base_url}/users?"), (
            f"@odata.nextLink must be an absolute URL under --public-url, got {link!r}"
        )
        assert "$skiptoken=" in link or "%24skiptoken=" in link, (
            f"@odata.nextLink must page with $skiptoken, got {link!r}"
        )

    async def scenario():
        async with graph_client(keyward) as client:
            first_page = await client.users.get()
            assert first_page is not None, "GET /users returned no body"
            # Checked before iterating: a nextLink on another host would get no
            # bearer token from the SDK and fail with a less helpful 401.
            first_link = first_page.odata_next_link
            assert first_link, "the first page of GET /users must carry @odata.nextLink"
            assert_next_link(first_link)
            first_count = len(first_page.value or [])
            assert first_count == DEFAULT_PAGE_SIZE, (
                f"GET /users without $top must return {DEFAULT_PAGE_SIZE} users per page, "
                f"got {first_count}"
            )
            items, iterator = await collect_all(client, first_page)
            return items, iterator.followed_next_links

    items, followed = run(scenario())

    ids = [u.id for u in items]
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    assert not duplicates, f"users seen more than once while paging: {duplicates}"
    missing = set(pager_users) - set(ids)
    assert not missing, f"{len(missing)} created users never appeared while paging"

    admins = [u for u in items if (u.user_principal_name or "").lower() == ADMIN_UPN]
    assert len(admins) == 1, f"the bootstrap admin {ADMIN_UPN} must be listed exactly once"
    expected = keyward.created_user_ids | {admins[0].id}
    assert set(ids) == expected, (
        f"unexpected users: {sorted(set(ids) - expected)}; "
        f"missing users: {sorted(expected - set(ids))}"
    )

    pages = 1 + len(followed)
    assert pages == math.ceil(len(ids) / DEFAULT_PAGE_SIZE), (
        f"{len(ids)} users came in {pages} pages of at most {DEFAULT_PAGE_SIZE}"
    )
    for link in followed:
        assert_next_link(link)


def test_filter_startswith_display_name(
    keyward: KeywardServer, pager_users: dict[str, str]
) -> None:
    async def scenario() -> list[User]:
        async with graph_client(keyward) as client:
            query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
                filter="startswith(displayName,'Pager User 00')"
            )
            first_page = await client.users.get(
                request_configuration=RequestConfiguration(query_parameters=query)
            )
            assert first_page is not None, "filtered GET /users returned no body"
            items, _ = await collect_all(client, first_page)
            return items

    items = run(scenario())

    names = sorted(u.display_name for u in items)
    assert names == [pager_name(n) for n in range(1, 10)]
    by_name = {name: uid for uid, name in pager_users.items()}
    assert {u.id for u in items} == {by_name[name] for name in names}


def test_get_missing_user_is_odata_404(keyward: KeywardServer) -> None:
    async def scenario() -> ODataError:
        async with graph_client(keyward) as client:
            with pytest.raises(ODataError) as caught:
                await client.users.by_user_id(MISSING_ID).get()
            return caught.value

    error = run(scenario())

    assert error.response_status_code == 404
    assert error.error is not None, "404 body must be an OData error envelope {\"error\": {...}}"
    assert error.error.code == "Request_ResourceNotFound"
    assert error.error.message, "error.message must be a non-empty string"
    assert error.error.inner_error is not None, "error.innerError must be present"

    # Wire-level shape of the envelope.
    with keyward.raw_http() as http:
        response = http.get(f"{keyward.base_url}/users/{MISSING_ID}")
    assert response.status_code == 404
    assert response.headers.get("content-type", "").startswith("application/json")
    body = json.loads(response.text)
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == "Request_ResourceNotFound"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["innerError"], dict)


def test_duplicate_user_principal_name_is_rejected(keyward: KeywardServer) -> None:
    async def scenario() -> tuple[ODataError, list[User]]:
        async with graph_client(keyward) as client:
            await create_user(client, keyward, "Duplicate Upn Original", "dupupn")
            duplicate = new_user("Duplicate Upn Second", "dupupn")
            duplicate.mail_nickname = "dupupn2"  # only the UPN collides
            with pytest.raises(ODataError) as caught:
                created = await client.users.post(duplicate)
                if created is not None and created.id:  # keep the bookkeeping honest
                    keyward.created_user_ids.add(created.id)
            query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
                filter="startswith(displayName,'Duplicate Upn')"
            )
            listing = await client.users.get(
                request_configuration=RequestConfiguration(query_parameters=query)
            )
            assert listing is not None
            return caught.value, list(listing.value or [])

    error, same_prefix = run(scenario())

    assert error.response_status_code == 400
    assert error.error is not None, "400 body must be an OData error envelope"
    assert error.error.code == "Request_BadRequest"
    assert "userPrincipalName" in (error.error.message or ""), (
        "Graph says: 'Another object with the same value for property userPrincipalName "
        f"already exists.'; got {error.error.message!r}"
    )
    assert [u.display_name for u in same_prefix] == ["Duplicate Upn Original"], (
        "the rejected duplicate must not have been stored"
    )


def test_audit_log_records_who_created_whom(keyward: KeywardServer) -> None:
    async def scenario() -> tuple[User, list[DirectoryAudit], DirectoryAudit | None]:
        async with graph_client(keyward) as client:
            user = await create_user(client, keyward, "Audited Person", "auditedperson")
            query = DirectoryAuditsRequestBuilder.DirectoryAuditsRequestBuilderGetQueryParameters(
                filter=(
                    f"targetResources/any(t: t/id eq '{user.id}') "
                    "and activityDisplayName eq 'Add user'"
                ),
            )
            listing = await client.audit_logs.directory_audits.get(
                request_configuration=RequestConfiguration(query_parameters=query)
            )
            assert listing is not None
            records = list(listing.value or [])
            single = None
            if records:
                single = await client.audit_logs.directory_audits.by_directory_audit_id(
                    records[0].id
                ).get()
            return user, records, single

    user, records, single = run(scenario())

    assert len(records) == 1, [r.activity_display_name for r in records]
    record = records[0]
    assert record.category == "UserManagement"
    assert record.result is not None and record.result.value == "success"
    assert record.activity_date_time is not None
    assert record.initiated_by is not None and record.initiated_by.user is not None
    assert record.initiated_by.user.user_principal_name == ADMIN_UPN
    targets = record.target_resources or []
    assert [t.id for t in targets] == [user.id]
    assert targets[0].user_principal_name == user.user_principal_name
    assert single is not None and single.id == record.id


def test_service_principal_by_app_id(keyward: KeywardServer) -> None:
    """How scripts find an application's principal: `servicePrincipals?$filter=appId eq '…'`."""

    async def scenario() -> tuple[str, list[str], list[str]]:
        async with graph_client(keyward) as client:
            created = await client.applications.post(Application(display_name="SDK lookup app"))
            assert created is not None and created.app_id
            query = ServicePrincipalsRequestBuilder.ServicePrincipalsRequestBuilderGetQueryParameters(
                filter=f"appId eq '{created.app_id}'"
            )
            found = await client.service_principals.get(
                request_configuration=RequestConfiguration(query_parameters=query)
            )
            assert found is not None and found.value is not None
            names = [it.display_name for it in found.value]
            spns = [name for it in found.value for name in (it.service_principal_names or [])]
            return created.app_id, names, spns

    app_id, names, spns = run(scenario())
    assert names == ["SDK lookup app"], names
    assert spns == [app_id], spns


def test_json_batching(keyward: KeywardServer) -> None:
    """msgraph-sdk's BatchRequestContent: a dependent pair and a failing request in one `$batch`."""

    async def scenario() -> tuple[dict[str, int], str | None]:
        # The SDK sends `depends_on` (Graph documents `dependsOn`; Keyward takes both). It reads a
        # response's body only as base64, where Graph (and Keyward) send JSON as JSON, so the
        # created user is read back with a plain call.
        async with graph_client(keyward) as client:
            create = BatchRequestItem(
                request_information=client.users.to_post_request_information(
                    new_user("Batch Person", "batchperson")
                )
            )
            create.id = "create"
            read = BatchRequestItem(
                request_information=client.users.by_user_id(
                    f"batchperson@{DOMAIN}"
                ).to_get_request_information(),
                depends_on=["create"],
            )
            read.id = "read"
            missing = BatchRequestItem(
                request_information=client.users.by_user_id(MISSING_ID).to_get_request_information()
            )
            missing.id = "missing"
            content = BatchRequestContent()
            for item in (create, read, missing):
                content.add_request(item.id, item)
            response = await client.batch.post(batch_request_content=content)
            statuses = response.get_response_status_codes()
            created = await client.users.by_user_id(f"batchperson@{DOMAIN}").get()
            return statuses, created.display_name if created else None

    statuses, name = run(scenario())
    assert statuses == {"create": 201, "read": 200, "missing": 404}, statuses
    assert name == "Batch Person", name


def test_delta_round_trip(keyward: KeywardServer) -> None:
    """msgraph-sdk's users.delta: a full round, then create, change and delete, and the delta
    link shows each once (the deleted user as @removed)."""

    async def collect(client: GraphServiceClient, url: str | None) -> tuple[list[User], str]:
        builder = client.users.delta if url is None else client.users.delta.with_url(url)
        query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=["displayName", "jobTitle"])
        page = await builder.get(
            request_configuration=None if url else RequestConfiguration(query_parameters=query)
        )
        users: list[User] = []
        while True:
            assert page is not None
            users.extend(page.value or [])
            if page.odata_next_link:
                page = await client.users.delta.with_url(page.odata_next_link).get()
                continue
            assert page.odata_delta_link, "a round ends with a delta link"
            return users, page.odata_delta_link

    async def scenario() -> tuple[list[User], list[User], dict[str, str]]:
        async with graph_client(keyward) as client:
            first, link = await collect(client, None)
            changed = await create_user(client, keyward, "Delta Changed", "deltachanged")
            gone = await create_user(client, keyward, "Delta Gone", "deltagone")
            _, link = await collect(client, link)
            await client.users.by_user_id(changed.id).patch(User(job_title="Tracker"))
            created = await create_user(client, keyward, "Delta Created", "deltacreated")
            await client.users.by_user_id(gone.id).delete()
            keyward.created_user_ids.discard(gone.id)
            second, _ = await collect(client, link)
            return first, second, {"changed": changed.id, "gone": gone.id, "created": created.id}

    first, second, ids = run(scenario())
    assert first and all(user.id for user in first)
    by_id = {user.id: user for user in second}
    assert sorted(by_id) == sorted(ids.values()), [(u.id, u.display_name) for u in second]
    assert len(second) == 3, "each change once"
    assert by_id[ids["changed"]].job_title == "Tracker"
    assert by_id[ids["created"]].display_name == "Delta Created"
    removed = by_id[ids["gone"]].additional_data.get("@removed")
    # Deleted, but restorable from the deleted items for 30 days: Graph's "changed".
    assert removed == {"reason": "changed"}, by_id[ids["gone"]].additional_data
