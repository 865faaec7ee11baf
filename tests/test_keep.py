"""Keeping what the API cannot hold: client cards round-trip, REST changes merge."""

from __future__ import annotations

import base64
import copy
import io
import random
import re
import socket
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from contacts_api.schemas import ContactCreate, normalized_fields
from gateway.keep import Incoming, convert_card, read_card, render_card, shrink_photo
from gateway.vcard import (
    MAPPED_FIELDS,
    VCardError,
    contact_to_vcard,
    synthesize_preferred_name,
    vcard_to_contact,
)

Version = Literal["3.0", "4.0"]

CLIENTS = Path(__file__).parent / "data" / "clients"
CARDS = sorted(path.name for path in CLIENTS.glob("*.vcf"))
# The region each client's user would configure for local phone numbers.
REGIONS = {
    "davx5_contact.vcf": "FR",
    "davx5_contact_v4.vcf": "JP",
    "evolution.vcf": "GB",
    "khard_v4.vcf": "GB",
    "outlook_export.vcf": "GB",
}
CONTACT_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
SERVED_UID = "urn:uuid:" + CONTACT_ID
MAPPED = MAPPED_FIELDS


# --- Helpers --------------------------------------------------------------------------


def _client_card(name: str) -> str:
    with open(CLIENTS / name, encoding="utf-8", newline="") as file:
        return file.read()


def _card(*lines: str, version: str = "3.0") -> str:
    body = ["BEGIN:VCARD", f"VERSION:{version}", *lines, "END:VCARD"]
    return "\r\n".join(body) + "\r\n"


def _as_api_returns(fields: dict[str, Any]) -> dict[str, Any]:
    """Return the contact the Contacts API would store and return for fields.

    Validation is the API's own schema, so this fails for fields it refuses.
    """
    stored = normalized_fields(ContactCreate.model_validate(fields))
    if not stored["preferred_name"]:
        stored["preferred_name"] = synthesize_preferred_name(stored)
    named = ("given_name", "family_name", "company_name", "preferred_name")
    assert any(stored[name] for name in named), "the API's FN rule refuses it"
    return {
        "id": CONTACT_ID,
        "organization_id": "org_1",
        **stored,
        "access": [{"identity_id": None}],
        "status": "active",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
    }


def _mapped(contact: dict[str, Any]) -> dict[str, Any]:
    return {name: contact[name] for name in MAPPED}


def _render(
    incoming: Incoming, contact: dict[str, Any], version: Version | None = None
) -> str:
    return render_card(
        contact,
        uid=incoming.uid or SERVED_UID,
        version=version or incoming.version,
        original=incoming.original,
        original_fields=incoming.fields,
    )


def _logical_lines(text: str) -> list[str]:
    """Unfold a card into its logical lines."""
    lines: list[str] = []
    for physical in re.split(r"\r\n|\r|\n", text):
        if physical[:1] in (" ", "\t") and lines:
            lines[-1] += physical[1:]
        elif physical:
            lines.append(physical)
    return lines


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts = [""]
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("")
        else:
            parts[-1] += char
    return parts


def _meaning(text: str, *, ignore: tuple[str, ...] = ()) -> Counter[Any]:
    """Return the card as a multiset of (group, name, params, value).

    Only what carries no meaning is normalized: letter case of names, the
    order and quoting of parameters, TYPE lists however they are spelled,
    and group names (a group is identified by what it holds). A VALUE
    parameter on a 4.0 data: URI is dropped, since URI is the 4.0 default
    (Thunderbird writes ``PHOTO;VALUE=URL:data:...``).
    """
    records = []
    for line in _logical_lines(text):
        head = _split_outside_quotes(line, ":")[0]
        value = line[len(head) + 1 :]
        parts = _split_outside_quotes(head, ";")
        group, _, name = parts[0].rpartition(".")
        name = name.upper()
        if name in ("BEGIN", "END") or name in ignore:
            continue

        types: set[str] = set()
        params: list[tuple[str, tuple[str, ...]]] = []
        for part in parts[1:]:
            param, equals, raw = part.partition("=")
            if not equals:
                types.add(param.lower())
                continue
            values = [v.strip('"') for v in _split_outside_quotes(raw, ",")]
            if param.upper() == "TYPE":
                types.update(x.lower() for v in values for x in v.split(",") if x)
            elif param.upper() == "ENCODING":
                params.append(("ENCODING", tuple(v.lower() for v in values)))
            else:
                params.append((param.upper(), tuple(values)))
        if types:
            params.append(("TYPE", tuple(sorted(types))))
        if value.lower().startswith("data:"):
            params = [p for p in params if p[0] != "VALUE"]
        records.append((group.lower() or None, name, tuple(sorted(params)), value))

    members: dict[str, list[Any]] = defaultdict(list)
    for owner, *rest in records:
        if owner:
            members[owner].append(tuple(rest))
    canonical = {owner: tuple(sorted(found)) for owner, found in members.items()}
    return Counter(
        (canonical[owner] if owner else None, *rest) for owner, *rest in records
    )


def _assert_well_formed(text: str, version: str) -> None:
    """Assert CRLF, 75-octet folding and what clients of the version expect."""
    assert text.startswith(f"BEGIN:VCARD\r\nVERSION:{version}\r\n")
    assert text.endswith("END:VCARD\r\n")
    physical = text.split("\r\n")
    assert "\n" not in "".join(physical)
    assert max(len(line.encode("utf-8")) for line in physical) <= 75
    unfolded = "\r\n".join(_logical_lines(text))
    forbidden: tuple[str, ...]
    if version == "3.0":
        forbidden = (
            'TYPE="',
            ";PREF=1",
            ":data:",
            "VALUE=uri:tel:",
            ":--",
            "\r\nKIND:group",
        )
    else:
        forbidden = ("ENCODING=b", "X-APPLE-OMIT-YEAR", "X-ADDRESSBOOKSERVER-KIND")
    for needle in forbidden:
        assert needle not in unfolded


def _noise_jpeg(width: int, height: int) -> bytes:
    """Return a JPEG of random pixels: it barely compresses."""
    pixels = random.Random(7).randbytes(width * height * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def _embedded_photo(text: str) -> bytes:
    for line in _logical_lines(text):
        if line.upper().startswith("PHOTO"):
            value = line.split(":", 1)[1]
            return base64.b64decode(value.rpartition(",")[2])
    raise AssertionError("no PHOTO line")


# --- The corpus of client cards -------------------------------------------------------


@pytest.mark.parametrize("name", CARDS)
def test_read_card_client_card_fields_pass_the_api_validation(name: str) -> None:
    incoming = read_card(_client_card(name), default_region=REGIONS.get(name, "US"))

    contact = _as_api_returns(incoming.fields)

    assert _mapped(contact) == incoming.fields


@pytest.mark.parametrize("name", CARDS)
def test_read_card_client_card_original_keeps_every_property(name: str) -> None:
    text = _client_card(name)
    region = REGIONS.get(name, "US")

    incoming = read_card(text, default_region=region)

    mapping = vcard_to_contact(text, default_region=region)
    assert vcard_to_contact(incoming.original, default_region=region) == mapping
    _assert_well_formed(incoming.original, incoming.version)
    if "VERSION:2.1" not in text:
        assert _meaning(incoming.original) == _meaning(text)


@pytest.mark.parametrize("name", CARDS)
def test_render_card_unchanged_contact_serves_the_card_as_sent(name: str) -> None:
    incoming = read_card(_client_card(name), default_region=REGIONS.get(name, "US"))
    contact = _as_api_returns(incoming.fields)

    rendered = _render(incoming, contact)

    if incoming.uid:
        assert rendered == incoming.original
    else:
        assert _meaning(rendered, ignore=("UID",)) == _meaning(incoming.original)
        assert f"\r\nUID:{SERVED_UID}\r\n" in rendered
    assert _render(incoming, copy.deepcopy(contact)) == rendered


@pytest.mark.parametrize("name", CARDS)
def test_render_card_other_version_converts_back_to_the_same_card(name: str) -> None:
    region = REGIONS.get(name, "US")
    incoming = read_card(_client_card(name), default_region=region)
    contact = _as_api_returns(incoming.fields)
    other: Version = "4.0" if incoming.version == "3.0" else "3.0"

    served = _render(incoming, contact, other)
    back = convert_card(served, incoming.version)

    _assert_well_formed(served, other)
    assert _meaning(back) == _meaning(_render(incoming, contact))
    assert read_card(served, default_region=region).fields == incoming.fields


def test_read_card_outlook_2_1_card_is_kept_as_3_0() -> None:
    incoming = read_card(_client_card("outlook_export.vcf"), default_region="GB")

    lines = _logical_lines(incoming.original)

    assert incoming.version == "3.0"
    assert "VERSION:3.0" in lines
    assert "NOTE:Notes on the engine\\nSecond line, with a comma" in lines
    assert "TEL;TYPE=WORK,VOICE:+44 20 7946 0958" in lines
    assert "EMAIL;TYPE=INTERNET:ada(at)home" in lines
    assert "X-MS-SPOUSE:William King" in lines
    assert any(line.startswith("PHOTO;TYPE=JPEG;ENCODING=b:/9j/") for line in lines)
    assert incoming.fields["notes"] == "Notes on the engine\nSecond line, with a comma"


def test_convert_card_2_1_card_gives_the_3_0_card_read_card_keeps() -> None:
    text = _client_card("outlook_export.vcf")

    converted = convert_card(text, "3.0")

    assert converted == read_card(text).original


# --- A change made through the REST API -----------------------------------------------


def test_render_card_rest_email_change_keeps_every_other_line() -> None:
    incoming = read_card(_client_card("ios_contact.vcf"), default_region="US")
    contact = _as_api_returns(incoming.fields)
    contact["emails"][0]["value"] = "johnny@new.example"

    rendered = _render(incoming, contact)

    lines = _logical_lines(rendered)
    old_lines = {
        "item1.EMAIL;type=INTERNET;type=pref:johnny@example.com",
        "item1.X-ABLabel:_$!<Other>!$_",
    }
    kept = [line for line in _logical_lines(incoming.original) if line not in old_lines]
    assert [line for line in kept if line not in lines] == []
    assert not any("johnny@example.com" in line for line in lines)
    new = [line for line in lines if "johnny@new.example" in line]
    assert len(new) == 1
    group = new[0].split(".", 1)[0]
    assert new[0] == f"{group}.EMAIL;TYPE=pref:johnny@new.example"
    assert f"{group}.X-ABLabel:_$!<Other>!$_" in lines
    assert read_card(rendered, default_region="US").fields == _mapped(contact)
    _assert_well_formed(rendered, "3.0")


def test_render_card_rest_changes_to_scalars_replace_only_their_lines() -> None:
    incoming = read_card(_client_card("ios_contact.vcf"), default_region="US")
    contact = _as_api_returns(incoming.fields)
    contact.update(
        given_name="John",
        company_name="Apple; Park",
        job_title=None,
        notes="Moved, again",
    )

    rendered = _render(incoming, contact)

    lines = _logical_lines(rendered)
    assert "N:Appleseed;John;Q.;Mr.;" in lines
    assert "FN:Johnny Appleseed" in lines
    assert "ORG:Apple\\; Park;Retail" in lines
    assert not any(line.startswith("TITLE") for line in lines)
    assert "NOTE:Moved\\, again" in lines
    assert "BDAY;X-APPLE-OMIT-YEAR=1604:1604-04-15" in lines
    assert read_card(rendered, default_region="US").fields == _mapped(contact)


def test_render_card_rest_list_change_renumbers_new_groups() -> None:
    incoming = read_card(_client_card("ios_contact.vcf"), default_region="US")
    contact = _as_api_returns(incoming.fields)
    contact["phones"].append(
        {"label": "Lab", "value_e164": "+442079460958", "is_primary": False}
    )
    contact["dates"][1]["label"] = "Graduated"

    rendered = _render(incoming, contact)

    lines = _logical_lines(rendered)
    assert "TEL;type=CELL;type=VOICE;type=pref:(555) 123-4567" in lines
    groups = Counter(
        line.split(".", 1)[0] for line in lines if "." in line.split(":")[0]
    )
    assert all(count <= 2 for count in groups.values())
    new_phone = next(line for line in lines if line.endswith(".TEL:+442079460958"))
    assert f"{new_phone.split('.')[0]}.X-ABLabel:Lab" in lines
    assert "item6.X-ABDATE:2010-01-01" not in lines
    assert read_card(rendered, default_region="US").fields == _mapped(contact)


def test_render_card_rest_birthday_replaces_a_year_less_one() -> None:
    incoming = read_card(_client_card("ios_contact.vcf"), default_region="US")
    contact = _as_api_returns(incoming.fields)
    contact["birthday"] = "1990-04-15"

    lines = _logical_lines(_render(incoming, contact))
    served_4 = _logical_lines(_render(incoming, contact, "4.0"))

    assert [line for line in lines if line.startswith("BDAY")] == ["BDAY:1990-04-15"]
    assert [line for line in served_4 if line.startswith("BDAY")] == ["BDAY:1990-04-15"]


def test_render_card_4_0_new_anniversary_next_to_a_kept_one_is_an_x_abdate() -> None:
    incoming = read_card(_client_card("khard_v4.vcf"))
    contact = _as_api_returns(incoming.fields)
    contact["dates"].append({"label": "anniversary", "date": "1840-07-08"})

    rendered = _render(incoming, contact)

    lines = _logical_lines(rendered)
    assert [line for line in lines if "ANNIVERSARY" in line] == ["ANNIVERSARY:18350708"]
    new = next(line for line in lines if line.endswith(".X-ABDATE:1840-07-08"))
    assert f"{new.split('.')[0]}.X-ABLabel:_$!<Anniversary>!$_" in lines
    assert read_card(rendered).fields["dates"] == contact["dates"]


def test_render_card_without_original_fields_reads_them_from_the_original() -> None:
    incoming = read_card(_client_card("khard.vcf"))
    contact = _as_api_returns(incoming.fields)

    rendered = render_card(
        contact, uid=incoming.uid or "", version="3.0", original=incoming.original
    )

    assert rendered == incoming.original


def test_render_card_without_original_renders_the_fields() -> None:
    contact = _as_api_returns({"given_name": "Ada", "family_name": "King"})

    text = render_card(contact, uid="ada-1", version="3.0")

    assert text == contact_to_vcard(contact, uid="ada-1", version="3.0")


def test_render_card_replaces_the_uid_line() -> None:
    incoming = read_card(_client_card("khard.vcf"))
    contact = _as_api_returns(incoming.fields)

    lines = _logical_lines(
        render_card(
            contact,
            uid="new-uid",
            version="3.0",
            original=incoming.original,
            original_fields=incoming.fields,
        )
    )

    assert [line for line in lines if line.startswith("UID")] == ["UID:new-uid"]


# --- What the API refuses stays in the card -------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "BDAY;X-APPLE-OMIT-YEAR=1604:1604-04-15",
        "BDAY:1604-04-15",
        "BDAY:--0415",
        "BDAY;VALUE=text:circa 1800",
    ],
)
def test_read_card_year_less_birthday_is_kept_out_of_fields(line: str) -> None:
    incoming = read_card(_card("FN:Ada", line))

    rendered = _render(incoming, _as_api_returns(incoming.fields))

    assert incoming.fields["birthday"] is None
    assert line in _logical_lines(incoming.original)
    assert line in _logical_lines(rendered)


def test_read_card_local_phone_is_normalized_with_a_region_and_kept_as_written() -> (
    None
):
    text = _card("FN:Ada", "TEL;TYPE=CELL:(555) 123-4567")

    with_region = read_card(text, default_region="US")
    without_region = read_card(text)

    assert with_region.fields["phones"] == [
        {"label": "mobile", "value_e164": "+15551234567", "is_primary": False}
    ]
    assert without_region.fields["phones"] == []
    for incoming in (with_region, without_region):
        rendered = _render(incoming, _as_api_returns(incoming.fields))
        assert "TEL;TYPE=CELL:(555) 123-4567" in _logical_lines(rendered)


def test_read_card_refused_values_stay_only_in_the_original() -> None:
    text = _card(
        "FN:Ada",
        "EMAIL:ada(at)home",
        "EMAIL;TYPE=HOME:ada@example.com",
        "EMAIL;TYPE=WORK:ADA@example.com",
        "TEL:+1 555 123 4567",
        "TEL;TYPE=WORK:+15551234567",
        "TEL:+1 555 123 4567 ext. 12",
        "URL:",
        "X-INKBOX-FIELD:no label",
        "X-ABDATE:2001-02-30",
    )

    incoming = read_card(text)

    assert incoming.fields["emails"] == [
        {"label": "home", "value": "ada@example.com", "is_primary": False}
    ]
    assert incoming.fields["phones"] == [
        {"label": None, "value_e164": "+15551234567", "is_primary": False}
    ]
    assert incoming.fields["custom_fields"] == []
    assert incoming.fields["dates"] == []
    assert _meaning(incoming.original) == _meaning(text)


def test_render_card_refused_values_survive_a_rest_change_of_their_list() -> None:
    incoming = read_card(
        _card(
            "FN:Ada",
            "EMAIL:ada(at)home",
            "EMAIL;TYPE=HOME:ada@example.com",
            "EMAIL;TYPE=WORK:ADA@example.com",
            "TEL:+15551234567",
            "TEL;TYPE=WORK:+15551234567",
        )
    )
    contact = _as_api_returns(incoming.fields)
    contact["emails"] = [{"label": None, "value": "b@example.com", "is_primary": True}]
    contact["phones"] = []

    lines = _logical_lines(_render(incoming, contact))

    assert "EMAIL:ada(at)home" in lines
    assert "EMAIL;TYPE=HOME:ada@example.com" not in lines
    assert "EMAIL;TYPE=WORK:ADA@example.com" in lines
    assert "EMAIL;TYPE=pref:b@example.com" in lines
    assert "TEL:+15551234567" not in lines
    assert "TEL;TYPE=WORK:+15551234567" in lines


def test_read_card_lists_over_the_api_limit_are_cut() -> None:
    emails = [f"EMAIL:user{i}@example.com" for i in range(60)]
    long_name = "x" * 129

    incoming = read_card(_card(f"N:{long_name};Ada;;;", *emails))

    assert len(incoming.fields["emails"]) == 50
    assert incoming.fields["family_name"] is None
    assert incoming.fields["preferred_name"] == "Ada"
    assert len(_logical_lines(incoming.original)) == 64
    _as_api_returns(incoming.fields)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (("N:;;;;", "FN:" + "Long " * 60), ("Long " * 51).strip()),
        (("ORG:;Sales;EMEA",), "Sales EMEA"),
        (("N:;;;;", "EMAIL:ada.king@example.com"), "ada.king"),
        (("N:;;;;", "EMAIL:no-at-sign"), "Unnamed"),
        (("NICKNAME:Ada",), "Unnamed"),
    ],
)
def test_read_card_without_an_api_name_falls_back_to_a_display_name(
    lines: tuple[str, ...], expected: str
) -> None:
    incoming = read_card(_card("UID:x", *lines))

    contact = _as_api_returns(incoming.fields)

    assert contact["preferred_name"] == expected
    assert _render(incoming, contact) == incoming.original


def test_read_card_fills_preferred_name_as_the_api_does() -> None:
    incoming = read_card(_card("UID:x", "N:King;Ada;;;"))

    rendered = _render(incoming, _as_api_returns(incoming.fields))

    assert incoming.fields["preferred_name"] == "Ada King"
    assert rendered == incoming.original


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no card here\r\n",
        _card("FN:A") + _card("FN:B"),
        "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No End\r\n",
        _card("FN:A", "NOTE no colon"),
    ],
)
def test_read_card_text_that_is_not_one_card_raises_vcard_error(text: str) -> None:
    with pytest.raises(VCardError):
        read_card(text)


# --- Groups ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ios_group.vcf", "davx5_group_v4.vcf"])
def test_read_card_group_card_is_a_group_in_both_versions(name: str) -> None:
    incoming = read_card(_client_card(name))

    as_3 = convert_card(incoming.original, "3.0")
    as_4 = convert_card(incoming.original, "4.0")

    assert incoming.is_group
    assert read_card(as_3).is_group
    assert read_card(as_4).is_group
    assert "\r\nX-ADDRESSBOOKSERVER-KIND:group\r\n" in as_3
    assert "\r\nKIND:group\r\n" in as_4
    members_3 = [line for line in _logical_lines(as_3) if "MEMBER:" in line]
    members_4 = [line for line in _logical_lines(as_4) if "MEMBER:" in line]
    assert [line.split(":", 1)[1] for line in members_3] == [
        line.split(":", 1)[1] for line in members_4
    ]
    assert all(line.startswith("X-ADDRESSBOOKSERVER-MEMBER:") for line in members_3)
    assert all(line.startswith("MEMBER:urn:uuid:") for line in members_4)


def test_read_card_individual_is_not_a_group() -> None:
    assert not read_card(_client_card("khard_v4.vcf")).is_group
    assert not read_card(_client_card("ios_contact.vcf")).is_group


# --- Version conversion ---------------------------------------------------------------


def test_convert_card_same_version_only_normalizes_line_endings_and_folding() -> None:
    incoming = read_card(_client_card("khard_v4.vcf"))
    text = _client_card("khard_v4.vcf")

    converted = convert_card(text, "4.0")

    assert "\r\n" not in text
    assert converted == incoming.original
    assert converted == convert_card(converted, "4.0")


def test_convert_card_4_0_to_3_0_writes_what_apple_expects() -> None:
    text = _card(
        "UID:x",
        "FN:Ada",
        'TEL;TYPE="cell,voice";PREF=1:+44 7700 900789',
        "TEL;VALUE=uri;TYPE=work:tel:+44-20-7946-0001;ext=7",
        "EMAIL;PREF=2:ada@example.com",
        "BDAY:--1210",
        "ANNIVERSARY:18350708",
        "KIND:group",
        "MEMBER:urn:uuid:1",
        "GEO:geo:51.5074,-0.1278",
        "PHOTO:data:image/png;base64,iVBORw0KGgo=",
        "LOGO;MEDIATYPE=image/jpeg:data:image/jpeg;base64,/9j/",
        "PHOTO:https://photos.example/ada.jpg",
        version="4.0",
    )

    lines = _logical_lines(convert_card(text, "3.0"))

    assert lines == [
        "BEGIN:VCARD",
        "VERSION:3.0",
        "UID:x",
        "FN:Ada",
        "N;X-INKBOX-ADDED=1:;;;;",
        "TEL;TYPE=cell,voice,pref:+44 7700 900789",
        "TEL;TYPE=work:+44-20-7946-0001;ext=7",
        "EMAIL;PREF=2:ada@example.com",
        "BDAY;X-APPLE-OMIT-YEAR=1604:1604-12-10",
        "item1.X-ABDATE:18350708",
        "item1.X-ABLabel:_$!<Anniversary>!$_",
        "X-ADDRESSBOOKSERVER-KIND:group",
        "X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:1",
        "GEO:51.5074;-0.1278",
        "PHOTO;ENCODING=b;TYPE=PNG:iVBORw0KGgo=",
        "LOGO;ENCODING=b;TYPE=image/jpeg:/9j/",
        "PHOTO:https://photos.example/ada.jpg",
        "END:VCARD",
    ]


def test_convert_card_3_0_to_4_0_writes_native_4_0() -> None:
    text = _card(
        "UID:x",
        "FN:Ada",
        "N:;Ada;;;",
        "TEL;type=CELL;type=VOICE;type=pref:(555) 123-4567",
        "BDAY;X-APPLE-OMIT-YEAR=1604:1604-04-15",
        "item1.X-ABDATE;type=pref:2004-06-19",
        "item1.X-ABLabel:_$!<Anniversary>!$_",
        "item2.X-ABDATE:2010-06-19",
        "item2.X-ABLabel:_$!<Anniversary>!$_",
        "X-ADDRESSBOOKSERVER-KIND:group",
        "PHOTO;ENCODING=b;TYPE=JPEG:/9j/",
        "PHOTO;ENCODING=b;TYPE=image/png:iVBORw0KGgo=",
    )

    lines = _logical_lines(convert_card(text, "4.0"))

    assert lines == [
        "BEGIN:VCARD",
        "VERSION:4.0",
        "UID:x",
        "FN:Ada",
        "N:;Ada;;;",
        "TEL;type=CELL;type=VOICE;PREF=1:(555) 123-4567",
        "BDAY:--0415",
        "ANNIVERSARY;PREF=1:2004-06-19",
        "item2.X-ABDATE:2010-06-19",
        "item2.X-ABLabel:_$!<Anniversary>!$_",
        "KIND:group",
        "PHOTO:data:image/jpeg;base64,/9j/",
        "PHOTO;MEDIATYPE=image/png:data:image/png;base64,iVBORw0KGgo=",
        "END:VCARD",
    ]
    assert _meaning(convert_card(convert_card(text, "4.0"), "3.0")) == _meaning(text)


def test_convert_card_anniversary_after_another_converts_back_to_itself() -> None:
    """The ANNIVERSARY goes first in 3.0, so converting back picks it again."""
    text = _card(
        "FN:Ada",
        "item1.X-ABDATE:1840-07-08",
        "item1.X-ABLabel:_$!<Anniversary>!$_",
        "ANNIVERSARY:18350708",
        version="4.0",
    )

    back = convert_card(convert_card(text, "3.0"), "4.0")

    assert _meaning(back) == _meaning(text)


def test_convert_card_tel_uri_becomes_text_tel_in_4_0_again() -> None:
    """4.0 allows text TEL, so 3.0 text stays text: only the value type changes."""
    text = _card("FN:Ada", "TEL;VALUE=uri:tel:+1-555-0100", version="4.0")

    back = convert_card(convert_card(text, "3.0"), "4.0")

    assert "\r\nTEL:+1-555-0100\r\n" in back
    assert vcard_to_contact(back)["phones"] == vcard_to_contact(text)["phones"]


# --- Photos ---------------------------------------------------------------------------


def test_read_card_photo_under_the_cap_is_kept_at_its_size() -> None:
    photo = _noise_jpeg(480, 400)
    encoded = base64.b64encode(photo).decode("ascii")
    text = _card("FN:Ada", "PHOTO;ENCODING=b;TYPE=JPEG:" + encoded)

    incoming = read_card(text, photo_cap=256 * 1024)

    assert 150 * 1024 < len(photo) < 256 * 1024
    assert _embedded_photo(incoming.original) == photo
    assert (
        _logical_lines(incoming.original)[3] == "PHOTO;ENCODING=b;TYPE=JPEG:" + encoded
    )


@pytest.mark.parametrize("version", ["3.0", "4.0"])
def test_read_card_photo_over_the_cap_is_scaled_down(version: str) -> None:
    photo = _noise_jpeg(480, 400)
    encoded = base64.b64encode(photo).decode("ascii")
    line = (
        "PHOTO;ENCODING=b;TYPE=JPEG:" + encoded
        if version == "3.0"
        else "PHOTO:data:image/jpeg;base64," + encoded
    )
    text = _card("FN:Ada", "NOTE:kept", line, version=version)

    incoming = read_card(text, photo_cap=64 * 1024)

    smaller = _embedded_photo(incoming.original)
    assert len(smaller) <= 64 * 1024
    with Image.open(io.BytesIO(smaller)) as image:
        assert image.format == "JPEG"
        width, height = image.size
    assert width < 480
    assert abs(width / height - 480 / 400) < 0.02
    assert incoming.fields == read_card(text).fields


def test_shrink_photo_flattens_transparency_into_a_jpeg() -> None:
    image = Image.new("RGBA", (400, 100), (255, 0, 0, 0))
    out = io.BytesIO()
    image.save(out, "PNG")

    smaller = shrink_photo(out.getvalue(), 2000)

    assert len(smaller) <= 2000
    with Image.open(io.BytesIO(smaller)) as shrunk:
        assert shrunk.format == "JPEG"
        assert shrunk.getpixel((0, 0)) == (255, 255, 255)


def test_shrink_photo_not_an_image_raises_value_error() -> None:
    with pytest.raises(ValueError, match="not an image"):
        shrink_photo(b"not an image at all", 10)


def test_read_card_photo_that_is_not_an_image_is_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    encoded = base64.b64encode(b"x" * 2000).decode("ascii")
    text = _card("FN:Ada", "PHOTO;ENCODING=b;TYPE=JPEG:" + encoded)

    incoming = read_card(text, photo_cap=1000)

    assert _embedded_photo(incoming.original) == b"x" * 2000
    assert "Keeping a 2000-byte PHOTO as sent" in caplog.text


def test_read_card_photo_url_is_kept_and_never_fetched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the gateway tried to open a connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    text = _client_card("google_export.vcf")

    incoming = read_card(text, photo_cap=1)
    served = _render(incoming, _as_api_returns(incoming.fields), "4.0")

    photo = "PHOTO:https://lh3.googleusercontent.com/contacts/AHjkq3xZ0p7Q"
    assert photo in _logical_lines(incoming.original)
    assert photo in _logical_lines(served)


# --- Properties -----------------------------------------------------------------------

_RESERVED_LABELS = {
    "home",
    "work",
    "mobile",
    "cell",
    "fax",
    "pager",
    "voice",
    "text",
    "video",
    "textphone",
    "home fax",
    "work fax",
    "other",
    "homepage",
    "anniversary",
}
_SPECIALS = st.sampled_from(list(',;:\\"^=. '))
_CHARS = st.one_of(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), _SPECIALS
)
_TEXT = st.text(_CHARS, min_size=1, max_size=20).filter(lambda s: bool(s.strip()))
_OPTIONAL = st.none() | _TEXT
_LABEL = st.none() | _TEXT.filter(
    lambda s: s.lower() not in _RESERVED_LABELS and not s.startswith("_$!<")
)
_DATES = st.dates().filter(lambda d: d.year != 1604).map(lambda d: d.isoformat())


def _labelled(
    known: tuple[str, ...], **values: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(dict, label=st.sampled_from(known) | _LABEL, **values)


_EMAIL = _labelled(
    ("home", "work", "other"),
    value=st.from_regex(
        r"[a-z0-9]{1,8}(\.[a-z0-9]{1,4})?@[a-z]{1,6}\.example", fullmatch=True
    ),
)
_PHONE = _labelled(
    ("home", "work", "mobile", "fax", "work fax"),
    value_e164=st.integers(2 * 10**9, 10**10 - 1).map("+1{}".format),
)


@st.composite
def _primary_list(
    draw: st.DrawFn, items: st.SearchStrategy[dict[str, Any]], key: str
) -> list[dict[str, Any]]:
    """Draw entries with unique values of which at most one is primary."""
    drawn = draw(st.lists(items, max_size=4, unique_by=lambda i: str(i[key]).lower()))
    primary = draw(st.none() | st.integers(0, max(len(drawn) - 1, 0)))
    return [{**item, "is_primary": i == primary} for i, item in enumerate(drawn)]


_CONTACT: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "preferred_name": _TEXT,
        "name_prefix": _OPTIONAL,
        "given_name": _OPTIONAL,
        "middle_name": _OPTIONAL,
        "family_name": _OPTIONAL,
        "name_suffix": _OPTIONAL,
        "company_name": _OPTIONAL,
        "job_title": _OPTIONAL,
        "birthday": st.none() | _DATES,
        "notes": st.none()
        | st.text(_CHARS | st.just("\n"), min_size=1).filter(str.strip),
        "emails": _primary_list(_EMAIL, "value"),
        "phones": _primary_list(_PHONE, "value_e164"),
        "websites": st.lists(
            _labelled(
                ("home", "work", "homepage"),
                url=_TEXT.map(lambda s: "https://x.example/" + s.strip()),
            ),
            max_size=3,
        ),
        "dates": st.lists(_labelled(("anniversary", "other"), date=_DATES), max_size=3),
        "addresses": st.lists(
            _labelled(
                ("home", "work"),
                street=_OPTIONAL,
                city=_OPTIONAL,
                region=_OPTIONAL,
                postal=_OPTIONAL,
                country=_OPTIONAL,
            ),
            max_size=2,
        ),
        "custom_fields": st.lists(
            st.builds(dict, label=_TEXT, value=st.text(_CHARS, max_size=20)), max_size=2
        ),
    }
)
_VERSIONS: st.SearchStrategy[Version] = st.sampled_from(["3.0", "4.0"])


@settings(max_examples=60, deadline=None, database=None)
@given(contact=_CONTACT, version=_VERSIONS)
def test_read_card_any_mapped_card_gives_its_fields_and_is_served_as_sent(
    contact: dict[str, Any], version: Version
) -> None:
    text = contact_to_vcard(contact, uid=SERVED_UID, version=version)

    incoming = read_card(text)
    rendered = _render(incoming, _as_api_returns(incoming.fields))

    assert incoming.fields == contact
    assert incoming.original == text
    assert rendered == text


@st.composite
def _changed(draw: st.DrawFn, contact: dict[str, Any]) -> dict[str, Any]:
    """Draw a REST change of a contact: some fields replaced, lists edited."""
    other = draw(_CONTACT)
    changed = copy.deepcopy(contact)
    for name in contact:
        choice = draw(st.integers(0, 2))
        if choice == 1:
            changed[name] = copy.deepcopy(other[name])
        elif choice == 2 and isinstance(contact[name], list):
            keep = draw(st.integers(0, len(contact[name])))
            changed[name] = [*contact[name][:keep], *copy.deepcopy(other[name])]
    for name, key in (("emails", "value"), ("phones", "value_e164")):
        seen: set[str] = set()
        entries = []
        for entry in changed[name]:
            if str(entry[key]).lower() not in seen:
                seen.add(str(entry[key]).lower())
                entries.append(entry)
        first = next((i for i, e in enumerate(entries) if e["is_primary"]), None)
        changed[name] = [{**e, "is_primary": i == first} for i, e in enumerate(entries)]
    return changed


def _sorted_lists(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        name: sorted(value, key=repr) if isinstance(value, list) else value
        for name, value in fields.items()
    }


@settings(max_examples=60, deadline=None, database=None)
@given(data=st.data(), contact=_CONTACT, version=_VERSIONS)
def test_render_card_any_rest_change_shows_up_in_the_card(
    data: st.DataObject, contact: dict[str, Any], version: Version
) -> None:
    incoming = read_card(contact_to_vcard(contact, uid=SERVED_UID, version=version))
    changed = _as_api_returns(data.draw(_changed(contact)))

    rendered = _render(incoming, changed)

    assert _render(incoming, copy.deepcopy(changed)) == rendered
    _assert_well_formed(rendered, version)
    reread = read_card(rendered).fields
    assert _sorted_lists(reread) == _sorted_lists(_mapped(changed))


def test_convert_card_adds_a_marked_n_for_3_0_and_drops_it_in_4_0() -> None:
    """3.0 requires N; a 4.0 group card without one gets an empty, marked N."""
    original = (CLIENTS / "davx5_group_v4.vcf").read_text(encoding="utf-8")
    assert not re.search(r"^N[;:]", original, re.MULTILINE)

    served = convert_card(original, "3.0")
    back = convert_card(served, "4.0")

    assert "\r\nN;X-INKBOX-ADDED=1:;;;;\r\n" in served
    assert not re.search(r"^N[;:]", back, re.MULTILINE)
    assert back == convert_card(original, "4.0")


def test_convert_card_key_data_uri_becomes_inline_base64_in_3_0_and_back() -> None:
    key = "S0VZ" * 5
    original = (
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:k-1\r\nFN:Key Holder\r\nN:Holder;Key;;;\r\n"
        f"KEY:data:application/pgp-keys;base64,{key}\r\nEND:VCARD\r\n"
    )

    served = convert_card(original, "3.0")
    back = convert_card(served, "4.0")

    assert f"KEY;ENCODING=b;TYPE=PGP-KEYS:{key}\r\n" in served
    assert back == original
