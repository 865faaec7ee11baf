"""Client cards through the real gateway: every card comes back as it was sent.

The corpus under ``tests/data/clients`` is PUT as each client writes it and
read back with GET and multiget, in the client's vCard version and in the
other one; the REST side sees only what it can hold. Photos over the cap,
local phone numbers, year-less birthdays, group cards and REST edits of a
card that holds kept properties are checked end to end.
"""

from __future__ import annotations

import base64
import io
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from gateway.keep import convert_card, read_card
from tests.carddav import Gateway, card, multistatus, start_gateway
from tests.conftest import Org, Server, make_org
from tests.test_keep import MAPPED, _assert_well_formed, _logical_lines, _meaning

CLIENTS = Path(__file__).parent / "data" / "clients"


def _client_card(name: str) -> str:
    with open(CLIENTS / name, encoding="utf-8", newline="") as file:
        return file.read()


def _version(text: str) -> str:
    """Return the VERSION a card declares."""
    return next(
        line.split(":", 1)[1].strip()
        for line in _logical_lines(text)
        if line.upper().startswith("VERSION:")
    )


CORPUS = sorted(path.name for path in CLIENTS.glob("*.vcf"))
VERSIONS = {name: _version(_client_card(name)) for name in CORPUS}
CORPUS_3 = [name for name in CORPUS if VERSIONS[name] == "3.0"]
CORPUS_4 = [name for name in CORPUS if VERSIONS[name] == "4.0"]
GROUPS = ["davx5_group_v4.vcf", "ios_group.vcf"]
CONTACTS = [name for name in CORPUS if name not in GROUPS]
# The name the directory shows for each contact card of the corpus.
NAMES = {
    "davx5_contact.vcf": "Émilie Durand",
    "davx5_contact_v4.vcf": "Kenji Watanabe",
    "evolution.vcf": "Alan Turing",
    "google_export.vcf": "Grace Hopper",
    "ios_contact.vcf": "Johnny Appleseed",
    "khard.vcf": "Margaret Hamilton",
    "khard_v4.vcf": "Ada Lovelace",
    "outlook_export.vcf": "Ada Lovelace",
    "thunderbird.vcf": "Hedy Lamarr",
}

BOOK = "/alice/contacts/"
DAV = "{DAV:}"
CR = "{urn:ietf:params:xml:ns:carddav}"
VCARD = {"Content-Type": "text/vcard; charset=utf-8"}
ACCEPT_4 = {"Accept": "text/vcard; version=4.0"}
ADDRESS_DATA = {
    None: "<CR:address-data/>",
    "4.0": '<CR:address-data content-type="text/vcard" version="4.0"/>',
}
MULTIGET = """<?xml version="1.0" encoding="utf-8"?>
<CR:addressbook-multiget xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav">
  <D:prop><D:getetag/>{address_data}</D:prop>
  {hrefs}
</CR:addressbook-multiget>"""
PROPFIND_ETAG = """<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>"""
PHOTO_CAP = 64 * 1024
DEFAULT_PHOTO_CAP = 262144
IOS_UID = "8D4A1B2C-3E4F-4A5B-8C6D-7E8F9A0B1C2D"


# --- Helpers --------------------------------------------------------------------------


def _put(client: httpx.Client, href: str, text: str) -> httpx.Response:
    return client.put(href, content=text.encode("utf-8"), headers=VCARD)


def _multiget(
    client: httpx.Client,
    hrefs: list[str],
    version: str | None = None,
    book: str = BOOK,
) -> dict[str, tuple[str, str]]:
    """Return ``{href: (etag, card text)}`` of an addressbook-multiget."""
    body = MULTIGET.format(
        address_data=ADDRESS_DATA[version],
        hrefs="".join(f"<D:href>{href}</D:href>" for href in hrefs),
    )
    response = client.request(
        "REPORT",
        book,
        content=body,
        headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
    )
    return {
        href: (
            entry["props"][f"{DAV}getetag"].text,
            entry["props"][f"{CR}address-data"].text,
        )
        for href, entry in multistatus(response).items()
    }


def _propfind_etag(client: httpx.Client, href: str) -> str:
    response = client.request(
        "PROPFIND",
        href,
        content=PROPFIND_ETAG,
        headers={"Depth": "0", "Content-Type": "application/xml; charset=utf-8"},
    )
    return str(multistatus(response)[href]["props"][f"{DAV}getetag"].text)


def _hrefs(client: httpx.Client, user: str) -> set[str]:
    """Return the href of every card a Depth 1 PROPFIND lists in a user's book."""
    book = f"/{user}/contacts/"
    response = client.request(
        "PROPFIND",
        book,
        content=PROPFIND_ETAG,
        headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
    )
    return set(multistatus(response)) - {book}


def _directory(org: Org) -> dict[str, dict[str, Any]]:
    """Return every contact of the organization by id, as the admin lists it."""
    response = org.admin.get("/api/v1/contacts", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return {contact["id"]: contact for contact in response.json()["items"]}


def _put_new(
    gateway: Gateway, href: str, text: str
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """PUT a card as alice; return the answer and the contacts it created."""
    before = _directory(gateway.org)

    response = _put(gateway.client("alice"), href, text)

    after = _directory(gateway.org)
    return response, [contact for cid, contact in after.items() if cid not in before]


def _with_a_uid(text: str, uid: str) -> str:
    """Return the card with a UID line after VERSION if it has none.

    RFC 6352 section 5.1 requires a UID on every card stored over CardDAV;
    a client uploading an exported card (Outlook writes none) adds one.
    """
    if any(line.upper().startswith("UID:") for line in _logical_lines(text)):
        return text
    head, version, rest = text.partition("\r\nVERSION:2.1\r\n")
    assert version, "only Outlook's 2.1 export lacks a UID"
    return head + version + f"UID:{uid}\r\n" + rest


def _mapped(contact: dict[str, Any]) -> dict[str, Any]:
    return {name: contact[name] for name in MAPPED}


def _noise_jpeg(width: int, height: int) -> bytes:
    """Return a JPEG of random pixels: it barely compresses."""
    pixels = random.Random(4).randbytes(width * height * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def _photo_card(uid: str, photo: bytes, version: str) -> str:
    encoded = base64.b64encode(photo).decode("ascii")
    line = (
        "PHOTO;ENCODING=b;TYPE=JPEG:" + encoded
        if version == "3.0"
        else "PHOTO:data:image/jpeg;base64," + encoded
    )
    return card(uid, "Photo Person", "NOTE:Smiling", line, version=version)


def _photo_of(text: str) -> bytes:
    """Return the decoded data of a card's one PHOTO (3.0 inline or data: URI)."""
    photos = [line for line in _logical_lines(text) if line.upper().startswith("PHOTO")]
    assert len(photos) == 1, photos
    value = photos[0].split(":", 1)[1]
    return base64.b64decode(value.rpartition(",")[2])


def _bdays(text: str) -> list[str]:
    return [line for line in _logical_lines(text) if line.startswith("BDAY")]


# --- Gateways -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def book(
    sqlite_api: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """One gateway with default settings, shared by the tests of this module.

    Every test PUTs cards of its own (its own hrefs and UIDs) and finds the
    contacts it made by comparing the directory before and after.
    """
    org = make_org(sqlite_api)
    running = start_gateway(sqlite_api, org, tmp_path_factory.mktemp("cards"))
    yield running
    running.close()
    org.close()


@pytest.fixture(scope="module")
def regional(
    sqlite_api: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway with a default phone region (US) and a 64 KiB photo cap."""
    org = make_org(sqlite_api)
    running = start_gateway(
        sqlite_api,
        org,
        tmp_path_factory.mktemp("regional"),
        storage={"default_region": "US", "photo_cap": str(PHOTO_CAP)},
    )
    yield running
    running.close()
    org.close()


@dataclass
class Uploaded:
    """A corpus card PUT to the shared gateway, and what the PUT did."""

    href: str
    sent: str
    response: httpx.Response
    created: list[dict[str, Any]]


@pytest.fixture(scope="module")
def corpus(book: Gateway) -> dict[str, Uploaded]:
    """Every corpus card, PUT once to ``/alice/contacts/<file name>``."""
    uploaded = {}
    for name in CORPUS:
        href = BOOK + name
        sent = _with_a_uid(_client_card(name), f"{name}-uid")
        response, created = _put_new(book, href, sent)
        uploaded[name] = Uploaded(href, sent, response, created)
    return uploaded


# --- The corpus of client cards -------------------------------------------------------


@pytest.mark.parametrize("name", CORPUS)
def test_put_corpus_card_answers_an_etag_only_for_a_card_served_as_sent(
    book: Gateway, corpus: dict[str, Uploaded], name: str
) -> None:
    """RFC 9110 8.8.3: the ETag of a rewritten card is not the client's to keep."""
    uploaded = corpus[name]

    served = book.client("alice").get(uploaded.href)

    as_sent = served.text == uploaded.sent.replace("\r\n", "\n").replace("\n", "\r\n")
    assert uploaded.response.status_code == 201, uploaded.response.text
    assert uploaded.response.headers.get("ETag") == (
        served.headers["ETag"] if as_sent else None
    )


@pytest.mark.parametrize("name", CONTACTS)
def test_put_corpus_contact_card_creates_one_contact_with_its_fields(
    corpus: dict[str, Uploaded], name: str
) -> None:
    uploaded = corpus[name]

    fields = read_card(uploaded.sent).fields

    assert [_mapped(contact) for contact in uploaded.created] == [fields]
    assert uploaded.created[0]["preferred_name"] == NAMES[name]


@pytest.mark.parametrize("name", GROUPS)
def test_put_corpus_group_card_creates_no_contact(
    book: Gateway, corpus: dict[str, Uploaded], name: str
) -> None:
    uploaded = corpus[name]

    served = book.client("alice").get(uploaded.href)

    assert uploaded.response.status_code == 201, uploaded.response.text
    assert uploaded.created == []
    assert served.status_code == 200


@pytest.mark.parametrize("name", CORPUS_3)
def test_get_3_0_corpus_card_means_what_was_sent(
    book: Gateway, corpus: dict[str, Uploaded], name: str
) -> None:
    uploaded = corpus[name]

    served = book.client("alice").get(uploaded.href)

    assert served.status_code == 200
    _assert_well_formed(served.text, "3.0")
    assert _meaning(served.text) == _meaning(uploaded.sent)


@pytest.mark.parametrize("name", CORPUS_4)
def test_get_4_0_corpus_card_as_3_0_converts_back_to_what_was_sent(
    book: Gateway, corpus: dict[str, Uploaded], name: str
) -> None:
    uploaded = corpus[name]

    served = book.client("alice").get(uploaded.href)

    assert served.status_code == 200
    _assert_well_formed(served.text, "3.0")
    assert _meaning(convert_card(served.text, "4.0")) == _meaning(uploaded.sent)


@pytest.mark.parametrize("name", CORPUS_4)
def test_get_4_0_corpus_card_with_accept_4_0_means_what_was_sent(
    book: Gateway, corpus: dict[str, Uploaded], name: str
) -> None:
    client = book.client("alice")
    uploaded = corpus[name]

    served = client.get(uploaded.href, headers=ACCEPT_4)

    assert served.status_code == 200
    _assert_well_formed(served.text, "4.0")
    assert _meaning(served.text) == _meaning(uploaded.sent)
    assert served.headers["ETag"] == client.get(uploaded.href).headers["ETag"]


@pytest.mark.parametrize("name", CORPUS_3)
def test_get_3_0_corpus_card_with_accept_4_0_converts_back_to_what_was_sent(
    book: Gateway, corpus: dict[str, Uploaded], name: str
) -> None:
    client = book.client("alice")
    uploaded = corpus[name]

    served = client.get(uploaded.href, headers=ACCEPT_4)

    assert served.status_code == 200
    _assert_well_formed(served.text, "4.0")
    assert _meaning(convert_card(served.text, "3.0")) == _meaning(uploaded.sent)
    assert served.headers["ETag"] == client.get(uploaded.href).headers["ETag"]


def test_get_outlook_2_1_card_is_served_as_its_3_0_rewrite(
    book: Gateway, corpus: dict[str, Uploaded]
) -> None:
    """The gateway keeps a 2.1 card as 3.0 (no quoted-printable, named TYPEs)."""
    client = book.client("alice")
    uploaded = corpus["outlook_export.vcf"]

    served = client.get(uploaded.href)
    served_4 = client.get(uploaded.href, headers=ACCEPT_4)

    as_3_0 = convert_card(uploaded.sent, "3.0")
    assert served.status_code == 200
    _assert_well_formed(served.text, "3.0")
    assert _meaning(served.text) == _meaning(as_3_0)
    assert "NOTE:Notes on the engine\\nSecond line, with a comma" in (
        _logical_lines(served.text)
    )
    _assert_well_formed(served_4.text, "4.0")
    assert _meaning(convert_card(served_4.text, "3.0")) == _meaning(as_3_0)


@pytest.mark.parametrize("version", [None, "4.0"], ids=["default", "4.0"])
@pytest.mark.parametrize("name", CORPUS)
def test_multiget_corpus_card_answers_what_get_answers(
    book: Gateway, corpus: dict[str, Uploaded], name: str, version: str | None
) -> None:
    client = book.client("alice")
    href = corpus[name].href
    got = client.get(href, headers=ACCEPT_4 if version else {})

    entries = _multiget(client, [href], version)

    assert list(entries) == [href]
    etag, text = entries[href]
    assert etag == got.headers["ETag"]
    assert _version(text) == (version or "3.0")
    assert _meaning(text) == _meaning(got.text)


def test_put_card_without_uid_is_refused_with_a_reason(book: Gateway) -> None:
    """RFC 6352 section 5.1: Outlook's export as it is (no UID) cannot be stored."""
    sent = _client_card("outlook_export.vcf")
    href = BOOK + "no-uid.vcf"

    response, created = _put_new(book, href, sent)

    assert response.status_code == 400
    assert "no UID property" in response.text
    assert created == []
    assert book.client("alice").get(href).status_code == 404


# --- Photos ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A 560x420 JPEG of about 200 KB (random noise barely compresses)."""
    return _noise_jpeg(560, 420)


@pytest.mark.parametrize("version", ["3.0", "4.0"])
def test_put_photo_under_the_default_cap_is_served_at_its_size(
    book: Gateway, photo: bytes, version: str
) -> None:
    uid = str(uuid.uuid4())
    href = f"{BOOK}{uid}.vcf"
    sent = _photo_card(uid, photo, version)

    response = _put(book.client("alice"), href, sent)
    served = book.client("alice").get(href)

    assert 150 * 1024 < len(photo) <= DEFAULT_PHOTO_CAP
    assert response.status_code == 201
    assert _photo_of(served.text) == photo


@pytest.mark.parametrize("version", ["3.0", "4.0"])
def test_put_photo_over_the_cap_is_served_scaled_down_without_an_etag(
    regional: Gateway, photo: bytes, version: str
) -> None:
    """RFC 9110 8.8.3: the stored card is not what was sent, so no ETag."""
    uid = str(uuid.uuid4())
    href = f"{BOOK}{uid}.vcf"
    sent = _photo_card(uid, photo, version)

    response = _put(regional.client("alice"), href, sent)
    served = regional.client("alice").get(href)

    smaller = _photo_of(served.text)
    assert len(photo) > PHOTO_CAP
    assert response.status_code == 201
    assert "ETag" not in response.headers
    assert len(smaller) <= PHOTO_CAP
    with Image.open(io.BytesIO(smaller)) as image:
        assert image.format == "JPEG"
        width, height = image.size
    assert width < 560
    assert abs(width / height - 560 / 420) < 0.02
    rest = _meaning(served.text, ignore=("PHOTO",))
    assert rest == _meaning(convert_card(sent, "3.0"), ignore=("PHOTO",))


# --- Values the API refuses -----------------------------------------------------------


def test_put_local_phone_with_a_default_region_stores_e164_and_serves_it_as_sent(
    regional: Gateway,
) -> None:
    uid = str(uuid.uuid4())
    href = f"{BOOK}{uid}.vcf"
    sent = card(uid, "Jane Local", "TEL;TYPE=CELL:(555) 123-4567")

    response, created = _put_new(regional, href, sent)
    served = regional.client("alice").get(href)

    assert response.status_code == 201
    assert [contact["phones"] for contact in created] == [
        [{"label": "mobile", "value_e164": "+15551234567", "is_primary": False}]
    ]
    assert "TEL;TYPE=CELL:(555) 123-4567" in _logical_lines(served.text)
    assert served.text == sent
    assert response.headers["ETag"] == served.headers["ETag"]


@pytest.mark.parametrize(
    ("line", "version"),
    [("BDAY;X-APPLE-OMIT-YEAR=1604:1604-04-15", "3.0"), ("BDAY:--0415", "4.0")],
)
def test_put_year_less_birthday_stays_out_of_the_api_and_in_the_card(
    book: Gateway, line: str, version: str
) -> None:
    client = book.client("alice")
    uid = str(uuid.uuid4())
    href = f"{BOOK}{uid}.vcf"
    sent = card(uid, "Bea Birthday", line, version=version)

    response, created = _put_new(book, href, sent)
    served_3 = client.get(href)
    served_4 = client.get(href, headers=ACCEPT_4)

    assert response.status_code == 201
    assert [contact["birthday"] for contact in created] == [None]
    assert _bdays(served_3.text) == ["BDAY;X-APPLE-OMIT-YEAR=1604:1604-04-15"]
    assert _bdays(served_4.text) == ["BDAY:--0415"]


# --- Group cards ----------------------------------------------------------------------


@dataclass
class Group:
    """An iOS group card PUT after its two member cards."""

    href: str
    sent: str
    members: list[str]
    member_ids: list[str]
    response: httpx.Response
    created: list[dict[str, Any]]


@pytest.fixture
def group(book: Gateway) -> Group:
    """Alice's iOS group card of two new contacts, PUT after them."""
    members = [str(uuid.uuid4()).upper() for _ in range(2)]
    member_ids = []
    for number, uid in enumerate(members):
        text = card(uid, f"Member{number} Chess", f"EMAIL:m{number}@chess.example")
        response, created = _put_new(book, f"{BOOK}{uid}.vcf", text)
        assert response.status_code == 201, response.text
        member_ids += [contact["id"] for contact in created]
    uid = str(uuid.uuid4()).upper()
    lines = [
        "BEGIN:VCARD",
        "VERSION:3.0",
        "PRODID:-//Apple Inc.//iPhone OS 17.4//EN",
        "N:Chess Club",
        "FN:Chess Club",
        "X-ADDRESSBOOKSERVER-KIND:group",
        *(f"X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:{member}" for member in members),
        "REV:2024-03-14T09:26:53Z",
        f"UID:{uid}",
        "END:VCARD",
    ]
    sent = "\r\n".join(lines) + "\r\n"
    href = f"{BOOK}{uid}.vcf"

    response, created = _put_new(book, href, sent)

    return Group(href, sent, members, member_ids, response, created)


def test_put_group_card_creates_no_contact_and_is_served_as_sent(
    book: Gateway, group: Group
) -> None:
    served = book.client("alice").get(group.href)

    assert group.response.status_code == 201
    assert group.created == []
    assert served.text == group.sent
    assert group.response.headers["ETag"] == served.headers["ETag"]


def test_get_group_card_with_accept_4_0_has_kind_and_members(
    book: Gateway, group: Group
) -> None:
    client = book.client("alice")

    served = client.get(group.href, headers=ACCEPT_4)
    listed = _multiget(client, [group.href], "4.0")

    lines = _logical_lines(served.text)
    assert _version(served.text) == "4.0"
    assert "KIND:group" in lines
    assert [line for line in lines if "MEMBER" in line] == [
        f"MEMBER:urn:uuid:{member}" for member in group.members
    ]
    assert not any(line.startswith("X-ADDRESSBOOKSERVER") for line in lines)
    assert _meaning(convert_card(served.text, "3.0")) == _meaning(group.sent)
    assert listed[group.href][0] == served.headers["ETag"]
    assert _meaning(listed[group.href][1]) == _meaning(served.text)


def test_delete_group_card_removes_it_and_keeps_the_members(
    book: Gateway, group: Group
) -> None:
    client = book.client("alice")
    before = _directory(book.org)

    deleted = client.delete(group.href)
    after = client.get(group.href)

    # RFC 4918 9.6: 200 (Radicale's, with a multistatus body) or 204.
    assert deleted.status_code in (200, 204)
    assert after.status_code == 404
    assert group.href not in _hrefs(client, "alice")
    assert _directory(book.org) == before


def test_group_card_is_not_in_another_users_book(book: Gateway, group: Group) -> None:
    bob = book.client("bob")
    bobs_href = group.href.replace("/alice/", "/bob/")

    listed = _hrefs(bob, "bob")
    fetched = bob.get(bobs_href)

    assert fetched.status_code == 404
    assert bobs_href not in listed
    member_hrefs = {f"/bob/contacts/{cid}.vcf" for cid in group.member_ids}
    assert member_hrefs <= listed
    texts = [
        text
        for _, text in _multiget(bob, sorted(listed), book="/bob/contacts/").values()
    ]
    assert not any("X-ADDRESSBOOKSERVER-KIND" in text for text in texts)


# --- Changes through the REST API -----------------------------------------------------


def test_rest_edit_of_a_card_with_kept_properties_changes_only_those_fields(
    book: Gateway,
) -> None:
    """PHOTO, labels, X-SOCIALPROFILE, IMPP... survive a REST email and title edit."""
    client = book.client("alice")
    uid = str(uuid.uuid4()).upper()
    sent = _client_card("ios_contact.vcf").replace(IOS_UID, uid)
    href = f"{BOOK}{uid}.vcf"
    response, created = _put_new(book, href, sent)
    assert response.status_code == 201, response.text
    contact = created[0]
    before = client.get(href)
    emails = [
        {**email, "value": "johnny@new.example"}
        if email["value"] == "johnny@example.com"
        else email
        for email in contact["emails"]
    ]

    patched = book.org.admin.patch(
        f"/api/v1/contacts/{contact['id']}",
        json={"emails": emails, "job_title": "Senior Genius"},
    )
    after = client.get(href)

    assert patched.status_code == 200, patched.text
    lines = _logical_lines(after.text)
    assert "johnny@example.com" not in after.text
    assert len([line for line in lines if "johnny@new.example" in line]) == 1
    assert [line for line in lines if line.startswith("TITLE")] == [
        "TITLE:Senior Genius"
    ]
    replaced = {
        "item1.EMAIL;type=INTERNET;type=pref:johnny@example.com",
        "item1.X-ABLabel:_$!<Other>!$_",
        "TITLE:Genius",
    }
    kept = [line for line in _logical_lines(sent) if line not in replaced]
    assert [line for line in kept if line not in lines] == []
    assert read_card(after.text).fields == _mapped(patched.json())
    assert after.headers["ETag"] != before.headers["ETag"]


# --- Version negotiation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "tel"),
    [
        ("3.0", "TEL;TYPE=CELL,pref:+15551234567"),
        ("4.0", "TEL;TYPE=cell;PREF=1:+15551234567"),
    ],
)
def test_etag_is_the_same_in_propfind_4_0_multiget_and_3_0_get(
    book: Gateway, version: str, tel: str
) -> None:
    client = book.client("alice")
    uid = str(uuid.uuid4())
    href = f"{BOOK}{uid}.vcf"
    response = _put(client, href, card(uid, "Eve Etag", tel, version=version))
    assert response.status_code == 201, response.text

    listed = _propfind_etag(client, href)
    etag_4, text_4 = _multiget(client, [href], "4.0")[href]
    got = client.get(href)

    assert _version(text_4) == "4.0"
    assert _version(got.text) == "3.0"
    assert listed == etag_4 == got.headers["ETag"]
