"""Notifications through a real SMTP relay (issue 22, item 4), end to end on `keyward serve`.

The server starts with `KEYWARD_SMTP_URL` pointing at a port where no relay listens yet: a change
to a user's security info waits in the outbox with the relay's error, and is delivered once by the
server's own sender when aiosmtpd starts there. The message's "This wasn't me" link opens a page
that changes nothing; its button secures the account once.
"""

from __future__ import annotations

import re
import time
from email import message_from_bytes
from email.message import Message

import httpx
from aiosmtpd.controller import Controller

from keyward_harness import KeywardServer, free_port

SMTP_PORT = free_port()
KEYWARD_ENV = {
    "KEYWARD_SMTP_URL": f"smtp://127.0.0.1:{SMTP_PORT}",
    "KEYWARD_SMTP_FROM": "Keyward <no-reply@keyward.test>",
    "KEYWARD_SMTP_POLL_SECONDS": "1",
}


class Inbox:
    """aiosmtpd's handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def wait_for(what: str, check, timeout: float = 45.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_change_reaches_the_user_once_after_the_relay_comes_back(keyward: KeywardServer) -> None:
    adele = keyward.create_user("adele.notify", "Adele Notify", "Tq7-harbour-Lantern-92!")
    outbox = f"{keyward.public_url}/beta/keyward/notifications"
    with keyward.raw_http() as http:
        assert http.patch(f"{keyward.base_url}/users/{adele}", json={"mail": "adele@mail.test"}).status_code == 204
        assert http.post(f"{keyward.base_url}/users/{adele}/revokeSignInSessions").status_code == 200

        def mine() -> list[dict]:
            reply = http.get(outbox, params={"$top": "999"})
            assert reply.status_code == 200, reply.text
            return [it for it in reply.json()["value"] if it["userId"] == adele]

        # The relay is down: the message waits with the relay's error, and is tried again.
        waiting = wait_for("a failed attempt", lambda: [it for it in mine() if it["attempts"] >= 1])[0]
        assert waiting["state"] == "pending", waiting
        assert waiting["lastError"], waiting
        assert waiting["recipient"] == "adele@mail.test"

        inbox = Inbox()
        relay = Controller(inbox, hostname="127.0.0.1", port=SMTP_PORT)
        relay.start()
        try:
            wait_for("the delivery", lambda: inbox.messages)
            sent = wait_for("the sent state", lambda: [it for it in mine() if it["state"] == "sent"])[0]
            time.sleep(3)  # a few more rounds of the sender: nothing is sent twice
        finally:
            relay.stop()
        assert len(inbox.messages) == 1, [m["Subject"] for m in inbox.messages]
        message = inbox.messages[0]
        assert message["To"] == "adele@mail.test"
        assert message["From"] == "Keyward <no-reply@keyward.test>"
        body = message.get_payload(decode=True).decode()
        assert "You were signed out of every session and app." in body, body
        assert sent["id"] in message["Message-ID"]

        # "This wasn't me": the page changes nothing; its button acts, once.
        link = re.search(r"https://\S+/report-activity\?token=[\w-]+", body)
        assert link, body
        page_url = link.group(0)
        with httpx.Client(verify=keyward.ssl_context(), trust_env=False, timeout=30.0) as browser:
            page = browser.get(page_url)
            assert page.status_code == 200 and "This wasn't me" in page.text, page.text
            assert mine()[0]["reportedDateTime"] is None
            action = re.search(r'action="([^"]+)"', page.text).group(1)
            token = page_url.split("token=", 1)[1]
            done = browser.post(f"{keyward.public_url}{action}", data={"token": token})
            assert done.status_code == 200 and "You are signed out of every session" in done.text, done.text
            # This tenant's administrator has no mail address: the page says so.
            assert "no administrator could be e-mailed" in done.text, done.text
            again = browser.post(f"{keyward.public_url}{action}", data={"token": token})
            assert again.status_code == 400, again.text
        assert mine()[0]["reportedDateTime"] is not None
        audits = http.get(
            f"{keyward.base_url}/auditLogs/directoryAudits",
            params={"$filter": "activityDisplayName eq 'User reported suspicious activity'"},
        )
        assert audits.status_code == 200, audits.text
        assert [it["targetResources"][0]["id"] for it in audits.json()["value"]] == [adele]
