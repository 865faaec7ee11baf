"""The CardDAV protocol against a real gateway, as clients speak it.

Discovery as phones do it, caldav's ``DAVClient``, and plain requests
written from RFC 6352 and RFC 4918: every method a client uses on the
address book, what the REST side sees of it and the other way round, the
refusals and bad input a client must be told about, and what a client gets
while the Contacts API is down.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree

import httpx
import pytest
from caldav import DAVClient
from caldav.elements import dav as dav_elements
from radicale.config import DEFAULT_CONFIG_SCHEMA

from tests.carddav import (
    NS,
    PASSWORDS,
    Gateway,
    card,
    free_port,
    multistatus,
    start_gateway,
)
from tests.conftest import Org, Server, make_org, new_contact, start_api, stop

BOOK = "/alice/contacts/"
DAV = "{DAV:}"
CR = "{urn:ietf:params:xml:ns:carddav}"
CS = "{http://calendarserver.org/ns/}"
DEFAULT_MAX_CONTENT_LENGTH = int(
    DEFAULT_CONFIG_SCHEMA["server"]["max_content_length"]["value"]
)
VCARD = {"Content-Type": "text/vcard; charset=utf-8"}

PROPFIND_PRINCIPAL = """<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:current-user-principal/></D:prop></D:propfind>"""
PROPFIND_HOME = """<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav">
  <D:prop><CR:addressbook-home-set/></D:prop>
</D:propfind>"""
# What clients ask of the home to find books. iOS also asks for
# CR:max-resource-size, which Radicale answers 404 for in a second propstat.
PROPFIND_BOOKS = """<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"
    xmlns:CS="http://calendarserver.org/ns/">
  <D:prop>
    <D:resourcetype/><D:displayname/><D:current-user-privilege-set/>
    <CS:getctag/><CR:max-resource-size/>
  </D:prop>
</D:propfind>"""
PROPFIND_ETAGS = """<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:">
  <D:prop><D:resourcetype/><D:getcontenttype/><D:getetag/></D:prop>
</D:propfind>"""
PROPFIND_CTAG = """<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:" xmlns:CS="http://calendarserver.org/ns/">
  <D:prop><CS:getctag/></D:prop>
</D:propfind>"""
MULTIGET = """<?xml version="1.0" encoding="utf-8"?>
<CR:addressbook-multiget xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav">
  <D:prop><D:getetag/><CR:address-data/></D:prop>
  {hrefs}
</CR:addressbook-multiget>"""
QUERY = """<?xml version="1.0" encoding="utf-8"?>
<CR:addressbook-query xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav">
  <D:prop><D:getetag/></D:prop>
  <CR:filter>
    <CR:prop-filter name="{name}">
      <CR:text-match collation="i;unicode-casemap" match-type="contains"
        >{text}</CR:text-match>
    </CR:prop-filter>
  </CR:filter>
</CR:addressbook-query>"""
PROPPATCH = """<?xml version="1.0" encoding="utf-8"?>
<D:propertyupdate xmlns:D="DAV:">
  <D:set><D:prop><D:displayname>Mine</D:displayname></D:prop></D:set>
</D:propertyupdate>"""

# A new contact as DAVx5 uploads it (ez-vcard, vCard 3.0, CRLF).
DAVX5_CARD = (
    "BEGIN:VCARD\r\n"
    "VERSION:3.0\r\n"
    "PRODID:+//IDN bitfire.at//ez-vcard 0.12.1\r\n"
    "UID:5f6a0b4e-3c2d-4b1a-9e8f-7a6b5c4d3e2f\r\n"
    "FN:Maria Rossi\r\n"
    "N:Rossi;Maria;;;\r\n"
    "ORG:Acme Srl\r\n"
    "TITLE:Buyer\r\n"
    "TEL;TYPE=cell:+39 347 123 4567\r\n"
    "EMAIL;TYPE=work:maria.rossi@example.com\r\n"
    "NOTE:Met at the trade fair\r\n"
    "REV:20260301T101500Z\r\n"
    "END:VCARD\r\n"
)


def _propfind(
    client: httpx.Client, path: str, body: str, depth: str = "0"
) -> httpx.Response:
    return client.request(
        "PROPFIND",
        path,
        content=body,
        headers={"Depth": depth, "Content-Type": "application/xml; charset=utf-8"},
    )


def _report(client: httpx.Client, body: str) -> httpx.Response:
    return client.request(
        "REPORT",
        BOOK,
        content=body,
        headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
    )


def _href_of(response: httpx.Response, href: str, prop: str) -> str:
    """Return the href inside a property such as current-user-principal."""
    element = multistatus(response)[href]["props"][prop]
    return element.findtext("D:href", namespaces=NS) or ""


def _etags(client: httpx.Client) -> dict[str, str]:
    """Return ``{href: etag}`` of every card a Depth 1 PROPFIND lists."""
    entries = multistatus(_propfind(client, BOOK, PROPFIND_ETAGS, depth="1"))
    return {
        href: entry["props"][f"{DAV}getetag"].text
        for href, entry in entries.items()
        if href != BOOK
    }


def _ctag(client: httpx.Client) -> str:
    entries = multistatus(_propfind(client, BOOK, PROPFIND_CTAG))
    return str(entries[BOOK]["props"][f"{CS}getctag"].text)


def _directory(org: Org) -> list[dict[str, Any]]:
    """Return every contact of the organization, as the admin lists it."""
    response = org.admin.get("/api/v1/contacts", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return sorted(response.json()["items"], key=lambda contact: contact["id"])


def _contact(org: Org, contact_id: str) -> httpx.Response:
    return org.admin.get(f"/api/v1/contacts/{contact_id}")


def _only_contact(org: Org) -> dict[str, Any]:
    contacts = _directory(org)
    assert len(contacts) == 1, contacts
    return contacts[0]


def _put(client: httpx.Client, path: str, text: str, **headers: str) -> httpx.Response:
    return client.put(path, content=text.encode("utf-8"), headers=VCARD | headers)


def _card_with(uid: str, *lines: str) -> str:
    """Return a vCard 3.0 of exactly these property lines."""
    body = ["BEGIN:VCARD", "VERSION:3.0", f"UID:{uid}", *lines, "END:VCARD"]
    return "\r\n".join(body) + "\r\n"


def _uid_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("UID:"))


# Discovery


def test_discovery_from_well_known_reaches_the_address_book(gateway: Gateway) -> None:
    """Follow RFC 6764 and RFC 6352 section 7 as a phone does, href by href."""
    client = gateway.client("alice")

    redirect = _propfind(client, "/.well-known/carddav", PROPFIND_PRINCIPAL)
    root = redirect.headers["Location"]
    principal = _href_of(
        _propfind(client, root, PROPFIND_PRINCIPAL),
        root,
        f"{DAV}current-user-principal",
    )
    home = _href_of(
        _propfind(client, principal, PROPFIND_HOME),
        principal,
        f"{CR}addressbook-home-set",
    )
    listing = multistatus(_propfind(client, home, PROPFIND_BOOKS, depth="1"))
    books = [
        href
        for href, entry in listing.items()
        if entry["props"][f"{DAV}resourcetype"].find(f"{CR}addressbook") is not None
    ]

    assert redirect.status_code == 301
    assert (root, principal, home) == ("/", "/alice/", "/alice/")
    assert books == [BOOK]


def test_address_book_in_home_listing_is_writable_and_answers_200_first(
    gateway: Gateway,
) -> None:
    """Thunderbird skips a book whose first propstat is not exactly 200 OK."""
    client = gateway.client("alice")

    response = _propfind(client, "/alice/", PROPFIND_BOOKS, depth="1")
    book = next(
        entry
        for entry in ElementTree.fromstring(response.content).findall("D:response", NS)
        if entry.findtext("D:href", namespaces=NS) == BOOK
    )
    first_status = book.findtext("D:propstat/D:status", namespaces=NS)
    props = multistatus(response)[BOOK]["props"]
    resourcetype = {child.tag for child in props[f"{DAV}resourcetype"]}
    privileges = {
        child.tag
        for privilege in props[f"{DAV}current-user-privilege-set"]
        for child in privilege
    }

    assert first_status == "HTTP/1.1 200 OK"
    assert resourcetype == {f"{DAV}collection", f"{CR}addressbook"}
    assert {f"{DAV}read", f"{DAV}write-content"} <= privileges


# caldav's DAVClient


def _caldav_entries(raw: str | bytes) -> dict[str, dict[str, str]]:
    """Return ``{href: {property tag: text}}`` of a multistatus body."""
    root = ElementTree.fromstring(raw.encode() if isinstance(raw, str) else raw)
    entries: dict[str, dict[str, str]] = {}
    for entry in root.findall("D:response", NS):
        href = entry.findtext("D:href", namespaces=NS) or ""
        props = {
            prop.tag: prop.text or ""
            for propstat in entry.findall("D:propstat", NS)
            if " 200 " in (propstat.findtext("D:status", namespaces=NS) or "")
            for prop in propstat.findall("D:prop/*", NS)
        }
        entries[href] = props
    return entries


def test_caldav_client_creates_reads_updates_and_deletes_a_card(
    gateway: Gateway,
) -> None:
    url = gateway.url + BOOK
    href = BOOK + "jane.vcf"
    text = card("jane-1", "Jane Doe", "EMAIL:jane@example.com")

    with DAVClient(url, username="alice", password=PASSWORDS["alice"]) as client:
        created = client.put(url + "jane.vcf", text, VCARD | {"If-None-Match": "*"})
        listed = client.propfind(url, PROPFIND_ETAGS, depth=1).expand_simple_props(
            [dav_elements.GetEtag()]
        )
        fetched = client.request(url + "jane.vcf", "GET")
        etag = fetched.headers["ETag"]
        changed = fetched.raw.replace("jane@example.com", "jane.doe@example.com")
        updated = client.put(url + "jane.vcf", changed, VCARD | {"If-Match": etag})
        multiget = client.report(
            url, MULTIGET.format(hrefs=f"<D:href>{href}</D:href>"), 1
        )
        after_update = _caldav_entries(multiget.raw)[href]
        deleted = client.delete(url + "jane.vcf")
        gone = client.request(url + "jane.vcf", "GET")

    assert created.status == 201
    assert listed[href][f"{DAV}getetag"] == etag
    assert fetched.status == 200
    assert "UID:jane-1" in fetched.raw
    assert updated.status == 204
    assert "EMAIL:jane.doe@example.com" in after_update[f"{CR}address-data"]
    assert after_update[f"{DAV}getetag"] != etag
    assert deleted.status in (200, 204)
    assert gone.status == 404
    assert _directory(gateway.org) == []


# Plain requests from RFC 6352 and RFC 4918


def test_propfind_depth_1_lists_every_card_with_an_etag(gateway: Gateway) -> None:
    org, client = gateway.org, gateway.client("alice")
    first = new_contact(org.admin, given_name="Ann", family_name="Able")
    second = new_contact(org.admin, given_name="Ben", family_name="Baker")
    assert _put(client, BOOK + "carl.vcf", card("carl", "Carl Cole")).status_code == 201

    response = _propfind(client, BOOK, PROPFIND_ETAGS, depth="1")
    entries = multistatus(response)
    cards = {href: entry for href, entry in entries.items() if href != BOOK}

    assert set(cards) == {
        f"{BOOK}{first['id']}.vcf",
        f"{BOOK}{second['id']}.vcf",
        f"{BOOK}carl.vcf",
    }
    assert all(
        (entry["props"][f"{DAV}getetag"].text or "").startswith('"')
        for entry in cards.values()
    )
    assert all(
        "text/vcard" in (entry["props"][f"{DAV}getcontenttype"].text or "")
        for entry in cards.values()
    )


def test_get_answers_the_card_with_the_etag_propfind_listed(gateway: Gateway) -> None:
    org, client = gateway.org, gateway.client("alice")
    contact = new_contact(org.admin, given_name="Ann", family_name="Able")
    href = f"{BOOK}{contact['id']}.vcf"
    listed = _etags(client)[href]

    response = client.get(href)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/vcard")
    assert response.headers["ETag"] == listed
    assert "FN:Ann Able" in response.text


def test_ctag_stays_while_nothing_changes_and_moves_after_a_write(
    gateway: Gateway,
) -> None:
    client = gateway.client("alice")
    before = _ctag(client)
    again = _ctag(client)

    assert _put(client, BOOK + "new.vcf", card("new", "Nina New")).status_code == 201
    after = _ctag(client)

    assert again == before
    assert after != before


def test_put_new_card_with_if_none_match_creates_the_contact(gateway: Gateway) -> None:
    org, client = gateway.org, gateway.client("alice")

    response = _put(
        client,
        BOOK + "jane.vcf",
        card("jane-1", "Jane Doe", "EMAIL:jane@example.com"),
        **{"If-None-Match": "*"},
    )
    listed = _etags(client)
    contacts = _directory(org)

    assert response.status_code == 201
    assert list(listed) == [BOOK + "jane.vcf"]
    assert [(c["given_name"], c["family_name"]) for c in contacts] == [("Jane", "Doe")]


def test_put_response_has_no_etag_when_the_gateway_rewrote_the_card(
    gateway: Gateway,
) -> None:
    """RFC 9110 8.8.3: a client must not take the stored card's ETag for its own."""
    client = gateway.client("alice")
    sent = card(
        "jane-1", "Jane Doe", "TEL;TYPE=cell;PREF=1:+15551234567", version="4.0"
    )

    response = _put(client, BOOK + "jane.vcf", sent)
    served = client.get(BOOK + "jane.vcf")

    assert response.status_code == 201
    assert "ETag" not in response.headers
    assert served.text.startswith("BEGIN:VCARD\r\nVERSION:3.0\r\n")
    assert "TEL;TYPE=cell,pref:+15551234567\r\n" in served.text


def test_put_of_a_card_served_as_sent_returns_its_etag(gateway: Gateway) -> None:
    """A 3.0 card comes back byte for byte, so the PUT answer names its ETag."""
    client = gateway.client("alice")
    sent = card(
        "kept-1",
        "Kept Person",
        "item1.X-SOCIALPROFILE;type=twitter:https://example.com/kept",
        "NICKNAME:Keeps",
        "TEL;type=CELL;type=VOICE:(555) 123-4567",
    )

    response = _put(client, BOOK + "kept.vcf", sent)
    served = client.get(BOOK + "kept.vcf")

    assert response.status_code == 201
    assert served.text == sent
    assert response.headers["ETag"] == served.headers["ETag"]


def test_put_replace_with_matching_if_match_updates_and_returns_the_new_etag(
    gateway: Gateway,
) -> None:
    """Sending back the served text, changed, stores it verbatim: the ETag is given."""
    org, client = gateway.org, gateway.client("alice")
    contact = new_contact(
        org.admin, given_name="Ann", emails=[{"value": "ann@example.com"}]
    )
    href = f"{BOOK}{contact['id']}.vcf"
    served = client.get(href)
    changed = served.text.replace("ann@example.com", "ann@example.org")

    response = _put(client, href, changed, **{"If-Match": served.headers["ETag"]})
    after = client.get(href)

    assert response.status_code == 204
    assert response.headers.get("ETag") == after.headers["ETag"]
    assert after.headers["ETag"] != served.headers["ETag"]
    assert after.text == changed
    emails = [e["value"] for e in _contact(org, contact["id"]).json()["emails"]]
    assert emails == ["ann@example.org"]


def test_put_with_stale_if_match_is_refused_and_changes_nothing(
    gateway: Gateway,
) -> None:
    org, client = gateway.org, gateway.client("alice")
    contact = new_contact(org.admin, given_name="Ann")
    href = f"{BOOK}{contact['id']}.vcf"
    stale = client.get(href)
    org.admin.patch(f"/api/v1/contacts/{contact['id']}", json={"job_title": "CFO"})
    before = _directory(org)

    response = _put(
        client,
        href,
        stale.text.replace("FN:Ann", "FN:Annie"),
        **{"If-Match": stale.headers["ETag"]},
    )

    assert response.status_code == 412
    assert _directory(org) == before


def test_put_with_if_none_match_onto_an_existing_href_is_refused(
    gateway: Gateway,
) -> None:
    org, client = gateway.org, gateway.client("alice")
    assert (
        _put(client, BOOK + "jane.vcf", card("jane-1", "Jane Doe")).status_code == 201
    )
    before = _directory(org)

    response = _put(
        client,
        BOOK + "jane.vcf",
        card("jane-2", "Other Jane"),
        **{"If-None-Match": "*"},
    )

    assert response.status_code == 412
    assert _directory(org) == before


def test_delete_removes_the_contact_upstream(gateway: Gateway) -> None:
    org, client = gateway.org, gateway.client("alice")
    contact = new_contact(org.admin, given_name="Ann")
    href = f"{BOOK}{contact['id']}.vcf"
    etag = client.get(href).headers["ETag"]

    response = client.delete(href, headers={"If-Match": etag})

    # RFC 4918 9.6: 200 (Radicale's, with a multistatus body) or 204.
    assert response.status_code in (200, 204)
    assert client.get(href).status_code == 404
    assert _contact(org, contact["id"]).status_code == 404


def test_delete_with_stale_if_match_is_refused_and_keeps_the_contact(
    gateway: Gateway,
) -> None:
    org, client = gateway.org, gateway.client("alice")
    contact = new_contact(org.admin, given_name="Ann")
    href = f"{BOOK}{contact['id']}.vcf"
    stale = client.get(href).headers["ETag"]
    org.admin.patch(f"/api/v1/contacts/{contact['id']}", json={"job_title": "CFO"})
    before = _directory(org)

    response = client.delete(href, headers={"If-Match": stale})

    assert response.status_code == 412
    assert _directory(org) == before


def test_move_within_the_book_keeps_contact_and_uid(gateway: Gateway) -> None:
    """MOVE renames the card for this user only; the upstream contact is untouched."""
    org, client = gateway.org, gateway.client("alice")
    assert _put(client, BOOK + "old.vcf", card("jane-1", "Jane Doe")).status_code == 201
    before = _directory(org)

    response = client.request(
        "MOVE",
        BOOK + "old.vcf",
        headers={"Destination": gateway.url + BOOK + "new.vcf"},
    )
    moved = client.get(BOOK + "new.vcf")

    assert response.status_code == 201
    assert moved.status_code == 200
    assert _uid_line(moved.text) == "UID:jane-1"
    assert client.get(BOOK + "old.vcf").status_code == 404
    assert list(_etags(client)) == [BOOK + "new.vcf"]
    assert _directory(org) == before


def test_multiget_answers_found_cards_and_404_for_missing_hrefs(
    gateway: Gateway,
) -> None:
    client = gateway.client("alice")
    assert (
        _put(client, BOOK + "jane.vcf", card("jane-1", "Jane Doe")).status_code == 201
    )
    hrefs = f"<D:href>{BOOK}jane.vcf</D:href><D:href>{BOOK}missing.vcf</D:href>"

    entries = multistatus(_report(client, MULTIGET.format(hrefs=hrefs)))

    assert entries[BOOK + "missing.vcf"]["status"] == "HTTP/1.1 404 Not Found"
    found = entries[BOOK + "jane.vcf"]["props"]
    assert "UID:jane-1" in (found[f"{CR}address-data"].text or "")
    assert found[f"{DAV}getetag"].text == client.get(BOOK + "jane.vcf").headers["ETag"]


@pytest.mark.parametrize(
    ("prop", "text", "expected"),
    [("FN", "JANE", "jane.vcf"), ("EMAIL", "example.org", "john.vcf")],
    ids=["fn", "email"],
)
def test_query_text_match_finds_only_matching_cards(
    gateway: Gateway, prop: str, text: str, expected: str
) -> None:
    """RFC 6352 10.5.4: contains, with i;unicode-casemap ignoring case."""
    client = gateway.client("alice")
    jane = card("jane-1", "Jane Doe", "EMAIL:jane@example.com")
    john = card("john-1", "John Smith", "EMAIL:john@example.org")
    assert _put(client, BOOK + "jane.vcf", jane).status_code == 201
    assert _put(client, BOOK + "john.vcf", john).status_code == 201

    response = _report(client, QUERY.format(name=prop, text=text))

    assert set(multistatus(response)) == {BOOK + expected}


# Client hrefs and UIDs


@pytest.mark.parametrize(
    "template", ["Some%20Name.vcf", "{uid}.vcf"], ids=["space", "uid"]
)
def test_client_chosen_href_and_uid_are_kept(gateway: Gateway, template: str) -> None:
    """Thunderbird names a new card <UID>.vcf; the card stays at the client's href."""
    client = gateway.client("alice")
    uid = f"urn:uuid:{uuid.uuid4()}"
    name = template.format(uid=uid)

    created = _put(client, BOOK + name, card(uid, "Jane Doe"))
    listed = list(_etags(client))
    by_listed_href = client.get(listed[0])
    by_put_href = client.get(BOOK + name)

    assert created.status_code == 201
    assert [unquote(href) for href in listed] == [BOOK + unquote(name)]
    assert by_listed_href.status_code == 200
    assert _uid_line(by_listed_href.text) == f"UID:{uid}"
    assert by_put_href.text == by_listed_href.text


# REST and CardDAV, both ways


def test_contact_created_through_rest_is_in_the_next_listing(
    gateway: Gateway,
) -> None:
    org, client = gateway.org, gateway.client("alice")
    assert _etags(client) == {}

    contact = new_contact(org.admin, given_name="Ann", family_name="Able")
    listed = _etags(client)
    response = client.get(f"{BOOK}{contact['id']}.vcf")

    assert list(listed) == [f"{BOOK}{contact['id']}.vcf"]
    assert "FN:Ann Able" in response.text
    assert _uid_line(response.text) == f"UID:urn:uuid:{contact['id']}"


def test_contact_changed_through_rest_has_a_new_etag_on_the_next_read(
    gateway: Gateway,
) -> None:
    org, client = gateway.org, gateway.client("alice")
    contact = new_contact(org.admin, given_name="Ann", family_name="Able")
    href = f"{BOOK}{contact['id']}.vcf"
    before = _etags(client)[href]

    patched = org.admin.patch(
        f"/api/v1/contacts/{contact['id']}", json={"job_title": "Buyer"}
    )
    after = _etags(client)[href]
    response = client.get(href)

    assert patched.status_code == 200
    assert after != before
    assert response.headers["ETag"] == after
    assert "TITLE:Buyer" in response.text


def test_contact_deleted_through_rest_is_gone_on_the_next_read(
    gateway: Gateway,
) -> None:
    org, client = gateway.org, gateway.client("alice")
    contact = new_contact(org.admin, given_name="Ann")
    href = f"{BOOK}{contact['id']}.vcf"
    assert client.get(href).status_code == 200

    deleted = org.admin.delete(f"/api/v1/contacts/{contact['id']}")

    assert deleted.status_code == 204
    assert client.get(href).status_code == 404
    assert _etags(client) == {}


def test_card_put_over_carddav_is_readable_through_rest(gateway: Gateway) -> None:
    org, client = gateway.org, gateway.client("alice")
    href = BOOK + "5f6a0b4e-3c2d-4b1a-9e8f-7a6b5c4d3e2f.vcf"

    response = _put(client, href, DAVX5_CARD, **{"If-None-Match": "*"})
    contact = _only_contact(org)

    assert response.status_code == 201
    fields = {
        key: contact[key]
        for key in ("given_name", "family_name", "company_name", "job_title", "notes")
    }
    assert fields == {
        "given_name": "Maria",
        "family_name": "Rossi",
        "company_name": "Acme Srl",
        "job_title": "Buyer",
        "notes": "Met at the trade fair",
    }
    assert [e["value"] for e in contact["emails"]] == ["maria.rossi@example.com"]
    assert [p["value_e164"] for p in contact["phones"]] == ["+393471234567"]


# Refusals and bad input


@pytest.fixture(scope="module")
def refusing(
    sqlite_api: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """One gateway, holding one contact, for tests whose requests change nothing.

    Each test compares the directory with its own snapshot, so a request
    that wrongly changed it fails that test alone.
    """
    org = make_org(sqlite_api)
    new_contact(org.admin, given_name="Kept", family_name="Contact")
    running = start_gateway(sqlite_api, org, tmp_path_factory.mktemp("refusing"))
    yield running
    running.close()
    org.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "reason"),
    [
        ("MKCOL", "/alice/other/", "", "cannot create collections"),
        ("DELETE", BOOK, "", "cannot be deleted"),
        ("PUT", BOOK, card("all", "All Cards"), "PUT each card to its own href"),
        ("PROPPATCH", BOOK, PROPPATCH, "read-only"),
    ],
    ids=["mkcol", "delete-book", "put-book", "proppatch-book"],
)
def test_collection_changes_are_refused_with_a_reason(
    refusing: Gateway, method: str, path: str, body: str, reason: str
) -> None:
    client = refusing.client("alice")
    before = _directory(refusing.org)

    response = client.request(method, path, content=body.encode("utf-8"))

    assert response.status_code == 403
    assert reason in response.text
    assert _directory(refusing.org) == before


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"This is not a vCard.", "Expected exactly one vCard in the body, found 0"),
        (
            card("a", "Ann Able") + card("b", "Ben Baker"),
            "Expected exactly one vCard in the body, found 2",
        ),
        (
            _card_with("broken", "FN Jane Doe"),
            "is not a valid content line",
        ),
        (
            "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:open\r\nFN:Jane Doe\r\n",
            "END:VCARD line is missing",
        ),
        (
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:latin1\r\nFN:Jos\xe9\r\nEND:VCARD\r\n",
            "not UTF-8",
        ),
        (
            _card_with("nameless", "N:Doe;Jane;;;", "EMAIL:jane@example.com"),
            "no FN property",
        ),
    ],
    ids=[
        "not-a-vcard",
        "two-cards",
        "bad-line",
        "no-end",
        "not-utf8",
        "no-fn",
    ],
)
def test_bad_card_is_refused_with_400_and_a_reason(
    refusing: Gateway, body: str | bytes, reason: str
) -> None:
    client = refusing.client("alice")
    content = body.encode("utf-8") if isinstance(body, str) else body
    before = _directory(refusing.org)

    response = client.put(BOOK + f"{uuid.uuid4()}.vcf", content=content, headers=VCARD)

    assert response.status_code == 400
    assert reason in response.text
    assert _directory(refusing.org) == before


def test_card_with_local_phone_is_accepted_and_the_phone_kept_in_the_card(
    gateway: Gateway,
) -> None:
    """The directory holds only E.164 phones; the card keeps the one it cannot."""
    org, client = gateway.org, gateway.client("alice")
    sent = card("local-1", "Jane Doe", "TEL;TYPE=work:555-1234")

    response = _put(client, BOOK + "jane.vcf", sent)
    served = client.get(BOOK + "jane.vcf")
    stored = [c for c in _directory(org) if c["family_name"] == "Doe"]

    assert response.status_code == 201
    assert served.text == sent
    assert [c["phones"] for c in stored] == [[]]


def test_card_with_empty_name_is_accepted_with_a_fallback_name(
    gateway: Gateway,
) -> None:
    """A card a client considers valid is never refused for the FN rule."""
    org, client = gateway.org, gateway.client("alice")
    sent = _card_with("empty", "FN:", "EMAIL:jane@example.com")

    response = _put(client, BOOK + "empty.vcf", sent)
    served = client.get(BOOK + "empty.vcf")
    names = [c["preferred_name"] for c in _directory(org)]

    assert response.status_code == 201
    assert served.text == sent
    assert "jane" in names


def test_body_over_max_content_length_is_refused_before_it_is_read(
    refusing: Gateway,
) -> None:
    """Only the headers are sent: the 413 comes from Content-Length alone."""
    before = _directory(refusing.org)
    address = urlsplit(refusing.url)
    login = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    connection = http.client.HTTPConnection(
        address.hostname or "", address.port, timeout=30
    )
    try:
        connection.putrequest("PUT", BOOK + "huge.vcf")
        connection.putheader("Authorization", f"Basic {login}")
        connection.putheader("Content-Type", "text/vcard")
        connection.putheader("Content-Length", str(DEFAULT_MAX_CONTENT_LENGTH + 1))
        connection.endheaders()
        response = connection.getresponse()
        status, text = response.status, response.read().decode()
    finally:
        connection.close()

    assert status == 413
    assert f"larger than {DEFAULT_MAX_CONTENT_LENGTH} bytes" in text
    assert _directory(refusing.org) == before


def test_other_user_cannot_read_or_write_alices_book(gateway: Gateway) -> None:
    """Bob is refused on every path of Alice's book, and learns nothing of it."""
    org, alice, bob = gateway.org, gateway.client("alice"), gateway.client("bob")
    assert (
        _put(alice, BOOK + "secret.vcf", card("s-1", "Sid Secret")).status_code == 201
    )
    before = _directory(org)

    answers = {
        "PROPFIND": _propfind(bob, BOOK, PROPFIND_ETAGS, depth="1"),
        "GET": bob.get(BOOK + "secret.vcf"),
        "REPORT": bob.request(
            "REPORT",
            BOOK,
            content=MULTIGET.format(hrefs=f"<D:href>{BOOK}secret.vcf</D:href>"),
            headers={"Depth": "1"},
        ),
        "PUT": _put(bob, BOOK + "secret.vcf", card("s-1", "Bob Was Here")),
        "DELETE": bob.delete(BOOK + "secret.vcf"),
    }

    assert {method: r.status_code for method, r in answers.items()} == dict.fromkeys(
        answers, 403
    )
    assert not any("secret" in r.text.lower() for r in answers.values())
    assert _directory(org) == before


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice", "wrong-password"), ("mallory", "alice-secret")],
    ids=["wrong-password", "unknown-user"],
)
def test_bad_credentials_get_401_with_a_basic_challenge(
    refusing: Gateway, user: str, password: str
) -> None:
    client = refusing.client(user, password)

    response = _propfind(client, BOOK, PROPFIND_ETAGS, depth="1")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


# Upstream failures


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert "unavailable" in response.text


def test_propfind_while_the_upstream_is_unreachable_answers_503(
    sqlite_api: Server, directory_org: Org, tmp_path: Path
) -> None:
    """The first login cannot reach the upstream to learn who the user is.

    The fault is real, a loopback port nobody listens on; nothing is faked.
    """
    down = start_gateway(
        sqlite_api,
        directory_org,
        tmp_path / "down",
        storage={"api_url": f"http://127.0.0.1:{free_port()}"},
    )
    try:
        response = _propfind(down.client("alice"), BOOK, PROPFIND_ETAGS, depth="1")
        log = down.server.wait_for_log("Answered PROPFIND with 503")
    finally:
        down.close()

    _assert_unavailable(response)
    assert "Answered PROPFIND with 503" in log


def test_requests_after_the_upstream_stopped_answer_503(tmp_path: Path) -> None:
    """A logged-in user's reads and writes fail cleanly once the API process ends.

    The gateway's own Contacts API process is stopped for real: no fault is
    injected.
    """
    with contextlib.ExitStack() as cleanup:
        api = start_api(f"sqlite:///{tmp_path / 'contacts.db'}")
        cleanup.callback(stop, api)  # stop() is a no-op on a stopped process
        org = make_org(api)
        cleanup.callback(org.close)
        running = start_gateway(api, org, tmp_path / "gateway")
        cleanup.callback(running.close)
        client = running.client("alice")
        logged_in = _propfind(client, BOOK, PROPFIND_ETAGS, depth="1")

        stop(api)
        listing = _propfind(client, BOOK, PROPFIND_ETAGS, depth="1")
        upload = _put(client, BOOK + "jane.vcf", card("jane-1", "Jane Doe"))

    assert logged_in.status_code == 207
    _assert_unavailable(listing)
    _assert_unavailable(upload)


def test_upstream_that_never_answers_gives_503_after_the_configured_timeout(
    sqlite_api: Server, directory_org: Org, tmp_path: Path
) -> None:
    """An upstream that accepts connections and never answers times out into 503.

    Fault injection: a real server cannot hang on demand, so a loopback
    socket that accepts and stays silent stands in for it.
    """
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    hung = start_gateway(
        sqlite_api,
        directory_org,
        tmp_path / "hung",
        storage={
            "api_url": f"http://127.0.0.1:{port}",
            "timeout": "0.5",
            "retries": "0",
        },
    )
    try:
        response = _propfind(hung.client("alice"), BOOK, PROPFIND_ETAGS, depth="1")
    finally:
        hung.close()
        silent.close()

    _assert_unavailable(response)


def test_sync_burst_costs_one_upstream_listing(
    gateway: Gateway, sqlite_api: Server
) -> None:
    """PROPFIND then multiget of every card: one listing, then a revision check."""
    org = gateway.org
    for index in range(12):
        new_contact(org.admin, given_name=f"Burst {index:02}")
    client = gateway.client("alice")
    marker = uuid.uuid4().hex
    org.admin.get("/api/v1/contacts/lookup", params={"email": f"{marker}@start"})
    sqlite_api.wait_for_log(marker)

    listed = multistatus(_propfind(client, BOOK, PROPFIND_ETAGS, depth="1"))
    hrefs = "".join(f"<D:href>{href}</D:href>" for href in listed if href != BOOK)
    fetched = multistatus(_report(client, MULTIGET.format(hrefs=hrefs)))
    org.admin.get("/api/v1/contacts/lookup", params={"email": f"{marker}@end"})
    log = sqlite_api.wait_for_log(f"{marker}%40end")
    burst = log[log.index(f"{marker}%40start") : log.index(f"{marker}%40end")]

    assert len(fetched) == 12
    assert burst.count("GET /api/v1/contacts?limit=1000&offset=0") == 1
    assert burst.count("GET /api/v1/contacts?limit=1 ") == 1
    assert "GET /api/v1/contacts/" not in burst.replace("/api/v1/contacts/lookup", "")


def test_upload_burst_patches_the_cached_listing_instead_of_relisting(
    gateway: Gateway, sqlite_api: Server
) -> None:
    """Five PUTs after a listing cost no listing: the gateway follows its writes."""
    org = gateway.org
    new_contact(org.admin, given_name="Already")
    client = gateway.client("alice")
    _propfind(client, BOOK, PROPFIND_ETAGS, depth="1")
    marker = uuid.uuid4().hex
    org.admin.get("/api/v1/contacts/lookup", params={"email": f"{marker}@start"})
    sqlite_api.wait_for_log(f"{marker}%40start")

    statuses = [
        _put(client, f"{BOOK}up-{i}.vcf", card(f"up-{i}", f"Upload {i}")).status_code
        for i in range(5)
    ]
    listed = multistatus(_propfind(client, BOOK, PROPFIND_ETAGS, depth="1"))
    org.admin.get("/api/v1/contacts/lookup", params={"email": f"{marker}@end"})
    log = sqlite_api.wait_for_log(f"{marker}%40end")
    burst = log[log.index(f"{marker}%40start") : log.index(f"{marker}%40end")]

    assert statuses == [201] * 5
    assert {f"{BOOK}up-{i}.vcf" for i in range(5)} <= set(listed)
    assert burst.count('"POST /api/v1/contacts HTTP') == 5
    assert "GET /api/v1/contacts?limit=1000" not in burst
