"""REPORT sync-collection (RFC 6578) through the real gateway."""

from __future__ import annotations

from xml.etree import ElementTree

import httpx

from tests.carddav import NS, Gateway, multistatus
from tests.conftest import new_contact

SYNC = """<?xml version="1.0" encoding="utf-8"?>
<D:sync-collection xmlns:D="DAV:">
  <D:sync-token>{token}</D:sync-token>
  <D:sync-level>1</D:sync-level>
  <D:prop><D:getetag/></D:prop>
</D:sync-collection>"""


def _sync(client: httpx.Client, book: str, token: str = "") -> tuple[str, dict]:
    response = client.request(
        "REPORT",
        book,
        content=SYNC.format(token=token),
        headers={"Content-Type": "application/xml", "Depth": "1"},
    )
    entries = multistatus(response)
    new_token = ElementTree.fromstring(response.content).findtext(
        "D:sync-token", namespaces=NS
    )
    assert new_token
    statuses = {
        href.rsplit("/", 1)[1]: (
            "404" if entry["status"] and " 404 " in entry["status"] else "200"
        )
        for href, entry in entries.items()
    }
    return new_token, statuses


def test_initial_sync_lists_every_visible_card(gateway: Gateway) -> None:
    org = gateway.org
    shared = new_contact(org.admin, given_name="Shared")
    new_contact(org.admin, given_name="Hidden", access_identity_ids=[])

    _, statuses = _sync(gateway.client("alice"), gateway.book("alice"))

    assert statuses == {f"{shared['id']}.vcf": "200"}


def test_sync_with_token_reports_only_changes_and_deletions(gateway: Gateway) -> None:
    org = gateway.org
    client, book = gateway.client("alice"), gateway.book("alice")
    kept = new_contact(org.admin, given_name="Kept")
    changed = new_contact(org.admin, given_name="Changed")
    deleted = new_contact(org.admin, given_name="Deleted")
    token, _ = _sync(client, book)

    added = new_contact(org.admin, given_name="Added")
    org.admin.patch(f"/api/v1/contacts/{changed['id']}", json={"notes": "new"})
    org.admin.delete(f"/api/v1/contacts/{deleted['id']}")
    next_token, statuses = _sync(client, book, token)

    assert statuses == {
        f"{added['id']}.vcf": "200",
        f"{changed['id']}.vcf": "200",
        f"{deleted['id']}.vcf": "404",
    }
    assert f"{kept['id']}.vcf" not in statuses
    assert next_token != token


def test_sync_without_changes_returns_same_token_and_nothing(gateway: Gateway) -> None:
    new_contact(gateway.org.admin, given_name="Still")
    client, book = gateway.client("alice"), gateway.book("alice")
    token, _ = _sync(client, book)

    again, statuses = _sync(client, book, token)

    assert (again, statuses) == (token, {})


def test_revoked_contact_shows_as_deleted_in_that_users_sync(gateway: Gateway) -> None:
    org = gateway.org
    contact = new_contact(org.admin, given_name="Narrowed")
    bob, alice = gateway.client("bob"), gateway.client("alice")
    bob_token, _ = _sync(bob, gateway.book("bob"))
    alice_token, _ = _sync(alice, gateway.book("alice"))

    org.admin.delete(f"/api/v1/contacts/{contact['id']}/access/{org.identities['bob']}")
    _, bob_changes = _sync(bob, gateway.book("bob"), bob_token)
    _, alice_changes = _sync(alice, gateway.book("alice"), alice_token)

    assert bob_changes == {f"{contact['id']}.vcf": "404"}
    assert alice_changes == {}


def test_sync_with_unknown_token_is_403_valid_sync_token(gateway: Gateway) -> None:
    response = gateway.client("alice").request(
        "REPORT",
        gateway.book("alice"),
        content=SYNC.format(token="http://inkbox-carddav.invalid/ns/sync/nope"),
        headers={"Content-Type": "application/xml", "Depth": "1"},
    )

    assert response.status_code == 403
    assert "valid-sync-token" in response.text


def test_token_of_one_user_is_not_valid_for_another(gateway: Gateway) -> None:
    new_contact(gateway.org.admin, given_name="Both")
    alice_token, _ = _sync(gateway.client("alice"), gateway.book("alice"))

    response = gateway.client("bob").request(
        "REPORT",
        gateway.book("bob"),
        content=SYNC.format(token=alice_token),
        headers={"Content-Type": "application/xml", "Depth": "1"},
    )

    assert response.status_code == 403
