"""The Contacts API client, against the real API process and injected faults.

The first part talks to a real ``contacts_api`` process (SQLite and
PostgreSQL). The second part fakes the upstream with ``httpx.MockTransport``
only to inject faults that the real server cannot produce on demand.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway.client import (
    Conflict,
    ContactsAPIError,
    ContactsClient,
    DirectoryTooLarge,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unauthorized,
    UpstreamUnavailable,
)
from tests.conftest import Org

Handler = Callable[[httpx.Request], httpx.Response]
MOCK_URL = "http://contacts.test"
MOCK_KEY = "sk-mock-secret-key-0123456789"


@pytest.fixture
def admin(org: Org) -> Iterator[ContactsClient]:
    """Yield a client with the organization's admin key."""
    client = ContactsClient(org.server.url, org.keys["admin"])
    yield client
    client.close()


def _names(contacts: list[dict[str, Any]]) -> list[str]:
    return [contact["preferred_name"] for contact in contacts]


# Against the real Contacts API process.


def test_contact_round_trip_creates_reads_updates_and_deletes(
    admin: ContactsClient,
) -> None:
    created = admin.create_contact(
        {"given_name": "Ada", "family_name": "King", "job_title": "Programmer"}
    )
    fetched = admin.get_contact(created["id"])
    updated = admin.update_contact(
        created["id"], {"job_title": None, "company_name": "Engines"}
    )
    admin.delete_contact(created["id"])

    assert fetched == created
    assert created["preferred_name"] == "Ada King"
    assert [row["identity_id"] for row in created["access"]] == [None]
    assert (updated["job_title"], updated["company_name"]) == (None, "Engines")
    assert updated["given_name"] == "Ada"
    with pytest.raises(NotFound):
        admin.get_contact(created["id"])


def test_list_all_pages_give_every_contact_once_in_name_order(
    org: Org, caplog: pytest.LogCaptureFixture
) -> None:
    names = ["Eve", "bob", "Dora", "alice", "Carl"]
    with ContactsClient(org.server.url, org.keys["admin"], page_size=2) as client:
        created = [client.create_contact({"given_name": name}) for name in names]
        caplog.set_level(logging.INFO, logger="gateway.client")

        listing = client.list_all()

    assert _names(listing.contacts) == sorted(names, key=str.casefold)
    assert sorted(c["id"] for c in listing.contacts) == sorted(c["id"] for c in created)
    pages = [r for r in caplog.records if "GET /api/v1/contacts?" in r.getMessage()]
    assert len(pages) == 3


def test_list_all_returns_revision_that_changes_on_every_write(
    admin: ContactsClient,
) -> None:
    before = admin.list_all()
    unchanged = admin.revision()
    contact = admin.create_contact({"given_name": "Rev"})
    after_create = admin.list_all()
    admin.update_contact(contact["id"], {"notes": "changed"})
    after_update = admin.revision()

    assert before.revision is not None
    assert unchanged == before.revision
    assert after_create.revision == str(int(before.revision) + 1)
    assert after_update == str(int(before.revision) + 2)


def test_list_all_of_agent_sees_only_its_visible_contacts(
    org: Org, admin: ContactsClient
) -> None:
    everyone = admin.create_contact({"given_name": "Everyone"})
    alices = admin.create_contact(
        {"given_name": "Alices"}, access_identity_ids=[org.identities["alice"]]
    )
    admin.create_contact(
        {"given_name": "Bobs"}, access_identity_ids=[org.identities["bob"]]
    )
    admin.create_contact({"given_name": "Nobodys"}, access_identity_ids=[])
    alice = admin.with_key(org.keys["alice"])

    listing = alice.list_all()

    assert [c["id"] for c in listing.contacts] == [alices["id"], everyone["id"]]
    assert len(admin.list_all().contacts) == 4


def test_list_all_with_full_page_at_max_offset_raises_directory_too_large(
    org: Org,
) -> None:
    """Five contacts, pages of two, offsets up to 2: the page at 2 is full."""
    with ContactsClient(
        org.server.url, org.keys["admin"], page_size=2, max_offset=2
    ) as client:
        for name in ["A", "B", "C", "D", "E"]:
            client.create_contact({"given_name": name})

        with pytest.raises(DirectoryTooLarge) as caught:
            client.list_all()

    assert caught.value.reached == 4
    assert "4 contacts were reached" in str(caught.value)
    assert "larger than listing by offset can reach" in str(caught.value)


def test_list_all_with_short_page_at_max_offset_returns_everything(
    org: Org,
) -> None:
    with ContactsClient(
        org.server.url, org.keys["admin"], page_size=2, max_offset=2
    ) as client:
        for name in ["A", "B", "C"]:
            client.create_contact({"given_name": name})

        listing = client.list_all()

    assert _names(listing.contacts) == ["A", "B", "C"]


def test_get_contact_with_unknown_id_raises_not_found(admin: ContactsClient) -> None:
    unknown = str(uuid.uuid4())

    with pytest.raises(NotFound) as caught:
        admin.get_contact(unknown)

    assert caught.value.status_code == 404
    assert caught.value.reason == f"Contact '{unknown}' not found."


def test_delete_contact_with_unknown_id_raises_not_found(
    admin: ContactsClient,
) -> None:
    with pytest.raises(NotFound):
        admin.delete_contact(str(uuid.uuid4()))


def test_get_contact_with_path_characters_stays_on_the_contact_path(
    admin: ContactsClient,
) -> None:
    """An id is one quoted path segment, so it cannot reach another endpoint."""
    with pytest.raises(NotFound) as caught:
        admin.get_contact("../identities")

    assert caught.value.status_code == 404
    assert "/api/v1/contacts/..%2Fidentities " in str(caught.value)


def test_create_contact_with_invalid_email_raises_invalid_with_upstream_detail(
    org: Org, admin: ContactsClient
) -> None:
    body = {"given_name": "Bad", "emails": [{"value": "not-an-email"}]}
    expected = org.admin.post("/api/v1/contacts", json=body).json()["detail"]

    with pytest.raises(Invalid) as caught:
        admin.create_contact(body)

    assert caught.value.status_code == 422
    assert caught.value.reason == expected
    assert "not-an-email" in caught.value.reason


def test_create_contact_without_a_name_raises_invalid_400(
    admin: ContactsClient,
) -> None:
    with pytest.raises(Invalid) as caught:
        admin.create_contact({"notes": "no name at all"})

    assert caught.value.status_code == 400
    assert caught.value.reason == (
        "A contact needs at least one of given_name, family_name, "
        "company_name or preferred_name."
    )


def test_update_contact_clearing_every_name_raises_invalid(
    admin: ContactsClient,
) -> None:
    contact = admin.create_contact({"given_name": "Only"})

    with pytest.raises(Invalid) as caught:
        admin.update_contact(
            contact["id"], {"given_name": None, "preferred_name": None}
        )

    assert caught.value.status_code == 400


def test_call_with_wrong_key_raises_unauthorized(org: Org) -> None:
    client = ContactsClient(org.server.url, "sk-wrong")

    with client, pytest.raises(Unauthorized) as caught:
        client.list_all()

    assert caught.value.status_code == 401
    assert str(caught.value).endswith("Check the API key.")


def test_list_all_with_unclaimed_key_raises_forbidden(org: Org) -> None:
    client = ContactsClient(org.server.url, org.keys["carol_unclaimed"])

    with client, pytest.raises(Forbidden) as caught:
        client.list_all()

    assert caught.value.status_code == 403


def test_grant_on_wildcard_contact_raises_conflict_with_detail_object(
    org: Org, admin: ContactsClient
) -> None:
    contact = admin.create_contact({"given_name": "Public"})

    with pytest.raises(Conflict) as caught:
        admin.grant(contact["id"], org.identities["alice"])

    assert caught.value.status_code == 409
    assert isinstance(caught.value.detail, dict)
    assert caught.value.detail["error"] == "redundant_grant"
    assert caught.value.reason == caught.value.detail["detail"]


def test_revoke_then_grant_changes_what_the_agent_sees(
    org: Org, admin: ContactsClient
) -> None:
    contact = admin.create_contact({"given_name": "Shared"})
    alice = admin.with_key(org.keys["alice"])

    admin.revoke(contact["id"], org.identities["alice"])
    with pytest.raises(NotFound):
        alice.get_contact(contact["id"])
    row = admin.grant(contact["id"], org.identities["alice"])

    assert row["identity_id"] == org.identities["alice"]
    assert alice.get_contact(contact["id"])["id"] == contact["id"]


def test_whoami_of_agent_key_returns_its_identity(org: Org) -> None:
    with ContactsClient(org.server.url, org.keys["alice"]) as client:
        me = client.whoami()

    assert me["identity_id"] == org.identities["alice"]
    assert me["auth_subtype"] == "api_key.agent_scoped.claimed"


def test_identities_are_listed_and_found_by_handle(
    org: Org, admin: ContactsClient
) -> None:
    identities = admin.list_identities()
    alice = admin.get_identity("alice")

    assert [i["agent_handle"] for i in identities] == ["alice", "bob", "carol"]
    assert alice["id"] == org.identities["alice"]
    with pytest.raises(NotFound):
        admin.get_identity("nobody")


def test_with_key_shares_the_http_client_and_leaves_it_open(
    org: Org, admin: ContactsClient
) -> None:
    alice = admin.with_key(org.keys["alice"])

    alice.close()
    me = alice.whoami()

    assert alice.http is admin.http
    assert me["identity_id"] == org.identities["alice"]
    assert admin.whoami()["auth_subtype"] == "api_key.admin_scoped"


def test_close_leaves_a_given_http_client_open(org: Org) -> None:
    with httpx.Client() as http:
        client = ContactsClient(org.server.url, org.keys["admin"], http=http)

        client.close()

        assert http.is_closed is False
        assert client.whoami()["auth_type"] == "api_key"


@pytest.mark.parametrize("suffix", ["/", "/api/v1", "/api/v1/"])
def test_base_url_with_api_prefix_or_slash_reaches_the_service_root(
    org: Org, suffix: str
) -> None:
    with ContactsClient(org.server.url + suffix, org.keys["admin"]) as client:
        me = client.whoami()

    assert client.base_url == org.server.url
    assert me["auth_subtype"] == "api_key.admin_scoped"


def test_base_url_that_is_not_http_raises_value_error() -> None:
    with pytest.raises(ValueError) as caught:
        ContactsClient("ftp://x", "sk-key")

    assert str(caught.value) == "Invalid api_url 'ftp://x': expected http or https"


def test_base_url_with_credentials_raises_value_error_without_them() -> None:
    with pytest.raises(ValueError) as caught:
        ContactsClient("https://user:s3cret@inkbox.ai", "sk-key")

    assert "s3cret" not in str(caught.value)


def test_api_key_that_cannot_be_a_header_raises_value_error_without_it() -> None:
    with pytest.raises(ValueError) as caught:
        ContactsClient(MOCK_URL, "sk-ünïcode\n")

    assert "ünïcode" not in str(caught.value)


def test_calls_log_one_line_each_and_never_the_key(
    org: Org, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = org.keys["admin"]
    with ContactsClient(org.server.url, key) as client:
        contact = client.create_contact({"given_name": "Logged"})
        client.get_contact(contact["id"])
        with pytest.raises(Unauthorized) as caught:
            client.with_key(key + "-wrong").whoami()

    ours = [r for r in caplog.records if r.name == "gateway.client"]
    assert [r.getMessage().split(" in ")[0] for r in ours] == [
        "Upstream POST /api/v1/contacts: HTTP 201",
        f"Upstream GET /api/v1/contacts/{contact['id']}: HTTP 200",
        "Upstream GET /api/whoami: HTTP 401",
    ]
    assert all(r.levelno == logging.INFO for r in ours)
    assert all(key not in r.getMessage() for r in caplog.records)
    assert key not in str(caught.value)
    assert key not in repr(client)


# Injected faults: httpx.MockTransport stands in for the upstream.


class Recorder:
    """A fake upstream: answers from a handler and records requests and sleeps."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []
        self.http = httpx.Client(transport=httpx.MockTransport(self.answer))

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def client(self, **options: Any) -> ContactsClient:
        return ContactsClient(
            MOCK_URL, MOCK_KEY, http=self.http, sleep=self.sleeps.append, **options
        )


@pytest.fixture
def fake() -> Iterator[Callable[[Handler], Recorder]]:
    """Yield a factory of fake upstreams; their httpx clients close afterwards."""
    made: list[Recorder] = []

    def make(handler: Handler) -> Recorder:
        made.append(Recorder(handler))
        return made[-1]

    yield make
    for recorder in made:
        recorder.http.close()


def _sequence(*responses: httpx.Response | Exception) -> Handler:
    """Return a handler that gives the responses in turn, raising exceptions."""
    pending = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        outcome = pending.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return handler


def test_get_after_503_is_retried_after_backoff(
    fake: Callable[[Handler], Recorder],
) -> None:
    """Fault injected (MockTransport): the real server never answers 503."""
    upstream = fake(
        _sequence(httpx.Response(503), httpx.Response(200, json={"id": "c1"}))
    )

    contact = upstream.client().get_contact("c1")

    assert contact == {"id": "c1"}
    assert len(upstream.requests) == 2
    assert upstream.sleeps == [0.2]


def test_get_failing_every_attempt_raises_upstream_unavailable(
    fake: Callable[[Handler], Recorder],
) -> None:
    """Fault injected (MockTransport): the real server never answers 502."""
    upstream = fake(lambda request: httpx.Response(502, text="Bad gateway"))

    with pytest.raises(UpstreamUnavailable) as caught:
        upstream.client().get_contact("c1")

    assert caught.value.status_code == 502
    assert caught.value.reason == "Bad gateway"
    assert len(upstream.requests) == 3
    assert upstream.sleeps == [0.2, 0.4]


def test_get_after_429_with_short_retry_after_waits_that_long(
    fake: Callable[[Handler], Recorder],
) -> None:
    """Fault injected (MockTransport): the real server never rate-limits."""
    upstream = fake(
        _sequence(
            httpx.Response(429, headers={"Retry-After": "1"}),
            httpx.Response(200, json={"id": "c1"}),
        )
    )

    upstream.client().get_contact("c1")

    assert upstream.sleeps == [1.0]


def test_get_after_429_with_long_retry_after_raises_rate_limited_at_once(
    fake: Callable[[Handler], Recorder],
) -> None:
    """Fault injected (MockTransport): the real server never rate-limits."""
    upstream = fake(
        lambda request: httpx.Response(
            429, headers={"Retry-After": "120"}, json={"detail": "Slow down."}
        )
    )

    with pytest.raises(RateLimited) as caught:
        upstream.client().get_contact("c1")

    assert caught.value.retry_after == 120.0
    assert caught.value.reason == "Slow down."
    assert len(upstream.requests) == 1
    assert upstream.sleeps == []


def test_post_after_503_is_not_retried(
    fake: Callable[[Handler], Recorder],
) -> None:
    """Fault injected (MockTransport): the real server never answers 503."""
    upstream = fake(lambda request: httpx.Response(503, headers={"Retry-After": "30"}))

    with pytest.raises(UpstreamUnavailable) as caught:
        upstream.client().create_contact({"given_name": "Once"})

    assert caught.value.retry_after == 30.0
    assert len(upstream.requests) == 1
    assert upstream.sleeps == []


def test_patch_with_read_timeout_is_not_retried_and_may_have_landed(
    fake: Callable[[Handler], Recorder],
) -> None:
    """Fault injected (MockTransport): a timeout after the request was sent."""
    upstream = fake(_sequence(httpx.ReadTimeout("timed out")))

    with pytest.raises(UpstreamUnavailable) as caught:
        upstream.client().update_contact("c1", {"notes": "x"})

    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert caught.value.status_code is None
    assert str(caught.value).endswith("The change may have been applied upstream.")
    assert len(upstream.requests) == 1


def test_get_with_connection_errors_is_retried_then_raises_upstream_unavailable(
    fake: Callable[[Handler], Recorder],
) -> None:
    """Fault injected (MockTransport): a refused connection on every attempt."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    upstream = fake(refuse)

    with pytest.raises(UpstreamUnavailable) as caught:
        upstream.client().list_all()

    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.reason == "ConnectError: [Errno 111] Connection refused"
    assert len(upstream.requests) == 3
    assert upstream.sleeps == [0.2, 0.4]


def test_delete_answered_404_after_503_counts_as_success(
    fake: Callable[[Handler], Recorder],
) -> None:
    """Fault injected (MockTransport): a 503 whose delete may have landed."""
    upstream = fake(
        _sequence(
            httpx.Response(503),
            httpx.Response(404, json={"detail": "Contact 'c1' not found."}),
        )
    )

    upstream.client().delete_contact("c1")

    assert [r.method for r in upstream.requests] == ["DELETE", "DELETE"]


def test_delete_answered_404_after_429_raises_not_found(
    fake: Callable[[Handler], Recorder],
) -> None:
    """Fault injected (MockTransport): a 429 refuses the request, so 404 is real."""
    upstream = fake(
        _sequence(
            httpx.Response(429),
            httpx.Response(404, json={"detail": "Contact 'c1' not found."}),
        )
    )

    with pytest.raises(NotFound):
        upstream.client().delete_contact("c1")


def test_list_all_keeps_the_first_copy_of_a_contact_that_moved_pages(
    fake: Callable[[Handler], Recorder],
) -> None:
    """Fault injected (MockTransport): a rename between two page requests."""
    pages = {
        "0": [{"id": "1", "v": 1}, {"id": "2", "v": 1}],
        "2": [{"id": "2", "v": 2}, {"id": "3", "v": 1}],
        "4": [{"id": "4", "v": 1}],
    }

    def page(request: httpx.Request) -> httpx.Response:
        offset = request.url.params["offset"]
        headers = {"X-Directory-Revision": "7" if offset == "0" else "8"}
        return httpx.Response(200, json={"items": pages[offset]}, headers=headers)

    upstream = fake(page)

    listing = upstream.client(page_size=2).list_all()

    assert [(c["id"], c["v"]) for c in listing.contacts] == [
        ("1", 1),
        ("2", 1),
        ("3", 1),
        ("4", 1),
    ]
    assert listing.revision == "7"


@pytest.mark.parametrize("contact_id", ["", ".", ".."])
def test_get_contact_with_dot_or_empty_id_raises_not_found_without_a_call(
    fake: Callable[[Handler], Recorder], contact_id: str
) -> None:
    """Fake upstream (MockTransport): it must not be called at all."""
    upstream = fake(lambda request: httpx.Response(200, json={}))

    with pytest.raises(NotFound):
        upstream.client().get_contact(contact_id)

    assert upstream.requests == []


def test_list_identities_accepts_an_items_envelope(
    fake: Callable[[Handler], Recorder],
) -> None:
    """Fake upstream (MockTransport): the envelope our server does not send."""
    upstream = fake(lambda request: httpx.Response(200, json={"items": [{"id": "i"}]}))

    assert upstream.client().list_identities() == [{"id": "i"}]


def test_answer_that_is_not_json_raises_contacts_api_error(
    fake: Callable[[Handler], Recorder],
) -> None:
    """Fault injected (MockTransport): a proxy page instead of JSON."""
    upstream = fake(lambda request: httpx.Response(200, text="<html>"))

    with pytest.raises(ContactsAPIError) as caught:
        upstream.client().whoami()

    assert type(caught.value) is ContactsAPIError


def test_retries_and_failures_never_log_the_key(
    fake: Callable[[Handler], Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injected (MockTransport): 503, a reset and 429 in turn."""
    caplog.set_level(logging.DEBUG)
    upstream = fake(
        _sequence(
            httpx.Response(503),
            httpx.ReadError("connection reset"),
            httpx.Response(429, headers={"Retry-After": "0.5"}),
        )
    )

    with pytest.raises(RateLimited) as caught:
        upstream.client().get_contact("c1")

    assert upstream.requests[0].headers["X-API-Key"] == MOCK_KEY
    assert MOCK_KEY not in str(upstream.requests[0].url)
    assert [r.levelname for r in caplog.records if r.name == "gateway.client"] == [
        "INFO",
        "WARNING",
        "WARNING",
        "WARNING",
        "INFO",
    ]
    assert all(MOCK_KEY not in r.getMessage() for r in caplog.records)
    assert MOCK_KEY not in str(caught.value)
