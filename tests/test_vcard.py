"""Contact to vCard mapping: round trips, client dialects, stream splitting."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.vcard import (
    MAPPED_FIELDS,
    VCardError,
    contact_to_vcard,
    split_vcards,
    synthesize_preferred_name,
    vcard_to_contact,
)

MAPPED = MAPPED_FIELDS

RICH: dict[str, Any] = {
    "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "organization_id": "org_1",
    "status": "active",
    "access": [{"identity_id": None}],
    "preferred_name": 'Zoë "Zed" Ünal, Jr.; the 2nd',
    "name_prefix": "Dr.",
    "given_name": "Zoë",
    "middle_name": "Anne, Marie",
    "family_name": "Ünal; Smith",
    "name_suffix": "Jr.\\PhD",
    "company_name": "Comma, Semicolon; Backslash\\ Inc",
    "job_title": "Head of Things, Stuff & More",
    "birthday": "1815-12-10",
    "notes": "Line one\nLine two; with, punctuation\\n and a backslash\n"
    + "Ünïcödé 😀 " * 20,
    "emails": [
        {"label": "work", "value": "zoe@example.com", "is_primary": False},
        {"label": None, "value": "zoe.unal@example.org", "is_primary": True},
        {
            "label": "Old school, 1990s",
            "value": "z@oldmail.example",
            "is_primary": False,
        },
        {"label": "other", "value": "z@other.example", "is_primary": False},
    ],
    "phones": [
        {"label": "mobile", "value_e164": "+15551234567", "is_primary": True},
        {"label": "work fax", "value_e164": "+442071234568", "is_primary": False},
        {"label": "Ferienhaus", "value_e164": "+4930123456", "is_primary": False},
        {"label": "voice", "value_e164": "+33123456789", "is_primary": False},
        {"label": None, "value_e164": "+81312345678", "is_primary": False},
    ],
    "websites": [
        {"label": "home", "url": "https://zoe.example.com/a,b;c?d=e"},
        {"label": "homepage", "url": "https://blog.example.com"},
        {"label": "Portfolio", "url": "https://portfolio.example.com"},
    ],
    "dates": [
        {"label": "graduation", "date": "1835-06-30"},
        {"label": "anniversary", "date": "1835-07-08"},
        {"label": "anniversary", "date": "1840-07-08"},
        {"label": None, "date": "0099-01-02"},
        {"label": "other", "date": "1900-02-03"},
    ],
    "addresses": [
        {
            "label": "home",
            "street": "12 St James's Square\nFlat 3; rear, left",
            "city": "London",
            "region": None,
            "postal": "SW1Y 4JH",
            "country": "UK",
        },
        {
            "label": "Summer house",
            "street": None,
            "city": "Åre",
            "region": "Jämtland",
            "postal": None,
            "country": "Sweden",
        },
    ],
    "custom_fields": [
        {"label": "Favourite engine", "value": "Difference, Analytical"},
        {"label": 'Quote "this"; a:b, ^caret^', "value": "x" * 120},
    ],
}


def _mapped(contact: dict[str, Any]) -> dict[str, Any]:
    return {name: contact[name] for name in MAPPED}


def _card(*lines: str, version: str = "3.0") -> str:
    body = ["BEGIN:VCARD", f"VERSION:{version}", *lines, "END:VCARD"]
    return "\r\n".join(body) + "\r\n"


# --- contact_to_vcard ----------------------------------------------------------


def test_contact_to_vcard_writes_expected_document() -> None:
    contact = {
        "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "preferred_name": "Ada King",
        "given_name": "Ada",
        "family_name": "King",
        "company_name": "Engines, Ltd",
        "birthday": "1815-12-10",
        "emails": [{"label": "work", "value": "ada@example.com", "is_primary": True}],
        "phones": [
            {"label": "mobile", "value_e164": "+15551234567", "is_primary": False},
            {"label": "Lab", "value_e164": "+15557654321", "is_primary": True},
        ],
        "dates": [{"label": "anniversary", "date": "1835-07-08"}],
        "custom_fields": [{"label": "Engine", "value": "Difference"}],
    }

    text = contact_to_vcard(contact)

    assert text == (
        "BEGIN:VCARD\r\n"
        "VERSION:4.0\r\n"
        "PRODID:-//inkbox-carddav//EN\r\n"
        "UID:urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e\r\n"
        "FN:Ada King\r\n"
        "N:King;Ada;;;\r\n"
        "ORG:Engines\\, Ltd\r\n"
        "BDAY:18151210\r\n"
        "EMAIL;TYPE=work;PREF=1:ada@example.com\r\n"
        "TEL;TYPE=cell:+15551234567\r\n"
        "item1.TEL;PREF=1:+15557654321\r\n"
        "item1.X-ABLabel:Lab\r\n"
        "ANNIVERSARY:18350708\r\n"
        'X-INKBOX-FIELD;X-LABEL="Engine":Difference\r\n'
        "END:VCARD\r\n"
    )


def test_contact_to_vcard_escapes_specials_per_property_type() -> None:
    contact = {
        "preferred_name": "A, B; C\\D",
        "family_name": "Semi;colon",
        "given_name": "Com,ma",
        "notes": "one\ntwo; three, four",
        "addresses": [
            {"label": None, "street": "1 Main St; Apt 2", "city": "Town, Shire"}
        ],
        "websites": [{"label": None, "url": "https://x.example/a,b;c"}],
        "custom_fields": [{"label": 'a"b^c\nd', "value": "v, w"}],
    }

    lines = contact_to_vcard(contact).split("\r\n")

    assert "FN:A\\, B; C\\\\D" in lines
    assert "N:Semi\\;colon;Com\\,ma;;;" in lines
    assert "NOTE:one\\ntwo; three\\, four" in lines
    assert "ADR:;;1 Main St\\; Apt 2;Town\\, Shire;;;" in lines
    assert "URL:https://x.example/a,b;c" in lines
    assert 'X-INKBOX-FIELD;X-LABEL="a^\'b^^c^nd":v\\, w' in lines


def test_contact_to_vcard_without_preferred_name_synthesizes_fn() -> None:
    person = {"name_prefix": "Ms", "given_name": "Grace", "family_name": "Hopper"}
    company = {"preferred_name": None, "company_name": "Acme Corp"}

    person_lines = contact_to_vcard(person).split("\r\n")
    company_lines = contact_to_vcard(company).split("\r\n")

    assert "FN:Ms Grace Hopper" in person_lines
    assert "FN:Acme Corp" in company_lines
    assert "N:;;;;" in company_lines


def test_contact_to_vcard_same_contact_twice_gives_identical_text() -> None:
    reordered = dict(reversed(list(copy.deepcopy(RICH).items())))

    first = contact_to_vcard(RICH)
    second = contact_to_vcard(RICH)
    third = contact_to_vcard(reordered)

    assert first == second
    assert first == third


def test_contact_to_vcard_folds_long_lines_at_75_octets_keeping_unicode() -> None:
    notes = "ü€😀x" * 100
    contact = {"preferred_name": "Emoji " * 30, "notes": notes}

    text = contact_to_vcard(contact)

    physical = text.split("\r\n")
    assert max(len(line.encode("utf-8")) for line in physical) <= 75
    assert any(line.startswith(" ") for line in physical)
    unfolded = text.replace("\r\n ", "")
    assert f"NOTE:{notes}\r\n" in unfolded
    assert vcard_to_contact(text)["notes"] == notes


def test_contact_to_vcard_bad_birthday_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"'1815-13-10' is not a calendar date"):
        contact_to_vcard({"preferred_name": "X", "birthday": "1815-13-10"})


def test_contact_to_vcard_round_trip_of_rich_contact_gives_equal_fields() -> None:
    text = contact_to_vcard(RICH)

    contact = vcard_to_contact(text)

    assert contact == _mapped(RICH)


# --- vcard_to_contact: client dialects -------------------------------------------


IOS_CARD = (
    "BEGIN:VCARD\r\n"
    "VERSION:3.0\r\n"
    "PRODID:-//Apple Inc.//iPhone OS 17.2//EN\r\n"
    "N:Appleseed;Johnny;Q.;Mr.;\r\n"
    "FN:Johnny Appleseed\r\n"
    "ORG:Apple Inc.;Retail\r\n"
    "TITLE:Genius\r\n"
    "item1.EMAIL;type=INTERNET;type=pref:johnny@example.com\r\n"
    "item1.X-ABLabel:_$!<Other>!$_\r\n"
    "EMAIL;type=INTERNET;type=HOME:  johnny@home.example  \r\n"
    "item2.EMAIL;type=INTERNET:jq@school.example\r\n"
    "item2.X-ABLabel:School\r\n"
    "TEL;type=CELL;type=VOICE;type=pref:(555) 123-4567\r\n"
    "TEL;type=IPHONE;type=CELL;type=VOICE:+1 555 123 4569\r\n"
    "TEL;type=HOME;type=FAX:555.123.4568\r\n"
    "item3.ADR;type=HOME;type=pref:;;1 Infinite Loop;Cupertino;CA;95014;United "
    "States\r\n"
    "item3.X-ABADR:us\r\n"
    "item4.URL;type=pref:http://www.apple.com\r\n"
    "item4.X-ABLabel:_$!<HomePage>!$_\r\n"
    "BDAY;X-APPLE-OMIT-YEAR=1604:1604-04-15\r\n"
    "item5.X-ABDATE;type=pref:2004-06-19\r\n"
    "item5.X-ABLabel:_$!<Anniversary>!$_\r\n"
    "item6.X-ABDATE:2010-01-01\r\n"
    "item6.X-ABLabel:Graduation\r\n"
    "NOTE:Met at WWDC, 2019\\nLikes apples\r\n"
    "END:VCARD\r\n"
)


def test_vcard_to_contact_ios_3_0_card_maps_every_field() -> None:
    contact = vcard_to_contact(IOS_CARD, default_region="US")

    assert contact == {
        "preferred_name": "Johnny Appleseed",
        "name_prefix": "Mr.",
        "given_name": "Johnny",
        "middle_name": "Q.",
        "family_name": "Appleseed",
        "name_suffix": None,
        "company_name": "Apple Inc.",
        "job_title": "Genius",
        "birthday": None,
        "notes": "Met at WWDC, 2019\nLikes apples",
        "emails": [
            {"label": "other", "value": "johnny@example.com", "is_primary": True},
            {"label": "home", "value": "johnny@home.example", "is_primary": False},
            {"label": "School", "value": "jq@school.example", "is_primary": False},
        ],
        "phones": [
            {"label": "mobile", "value_e164": "+15551234567", "is_primary": True},
            {"label": "mobile", "value_e164": "+15551234569", "is_primary": False},
            {"label": "home fax", "value_e164": "+15551234568", "is_primary": False},
        ],
        "websites": [{"label": "homepage", "url": "http://www.apple.com"}],
        "dates": [
            {"label": "anniversary", "date": "2004-06-19"},
            {"label": "Graduation", "date": "2010-01-01"},
        ],
        "addresses": [
            {
                "label": "home",
                "street": "1 Infinite Loop",
                "city": "Cupertino",
                "region": "CA",
                "postal": "95014",
                "country": "United States",
            }
        ],
        "custom_fields": [],
    }


def test_vcard_to_contact_google_and_outlook_type_lists_give_labels() -> None:
    text = _card(
        "FN:Grace Hopper",
        "N:Hopper;Grace;;;",
        "EMAIL;TYPE=INTERNET,WORK:grace@navy.example",
        "EMAIL;TYPE=INTERNET:grace@home.example",
        "TEL;TYPE=WORK,VOICE:+1 202 555 0100",
        'TEL;TYPE="home,voice":+1 202 555 0101',
        "TEL;TYPE=VOICE:+1 202 555 0102",
        "TEL;WORK;FAX:+1 202 555 0103",
        "ADR;TYPE=WORK:;;1 Navy Way;Arlington;VA;22202;USA",
        "URL;TYPE=WORK:https://navy.example",
        "BDAY:1906-12-09",
        "X-ANNIVERSARY:1930-06-15",
    )

    contact = vcard_to_contact(text)

    assert [(e["label"], e["value"]) for e in contact["emails"]] == [
        ("work", "grace@navy.example"),
        (None, "grace@home.example"),
    ]
    assert [(p["label"], p["value_e164"]) for p in contact["phones"]] == [
        ("work", "+12025550100"),
        ("home", "+12025550101"),
        ("voice", "+12025550102"),
        ("work fax", "+12025550103"),
    ]
    assert contact["addresses"][0]["label"] == "work"
    assert contact["websites"] == [{"label": "work", "url": "https://navy.example"}]
    assert contact["birthday"] == "1906-12-09"
    assert contact["dates"] == [{"label": "anniversary", "date": "1930-06-15"}]


def test_vcard_to_contact_thunderbird_4_0_card_maps_types_and_pref() -> None:
    text = _card(
        "FN:Ada Lovelace",
        "N:Lovelace;Ada;;;",
        "EMAIL;PREF=1:ada@example.com",
        "EMAIL;TYPE=work:ada@work.example",
        "TEL;VALUE=TEXT;TYPE=cell:+44 20 7123 4567",
        "TEL;VALUE=uri;TYPE=work;PREF=1:tel:+44-20-7123-4568",
        "BDAY;VALUE=DATE:18151210",
        "ANNIVERSARY:18350708",
        "NOTE:Poet\\, mathematician",
        "UID:urn:uuid:8d1c8e5a-0000-4000-8000-000000000000",
        version="4.0",
    )

    contact = vcard_to_contact(text)

    assert contact["emails"] == [
        {"label": None, "value": "ada@example.com", "is_primary": True},
        {"label": "work", "value": "ada@work.example", "is_primary": False},
    ]
    assert contact["phones"] == [
        {"label": "mobile", "value_e164": "+442071234567", "is_primary": False},
        {"label": "work", "value_e164": "+442071234568", "is_primary": True},
    ]
    assert contact["birthday"] == "1815-12-10"
    assert contact["dates"] == [{"label": "anniversary", "date": "1835-07-08"}]
    assert contact["notes"] == "Poet, mathematician"


def test_vcard_to_contact_android_2_1_quoted_printable_card_is_decoded() -> None:
    text = (
        "BEGIN:VCARD\r\n"
        "VERSION:2.1\r\n"
        "N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:=C3=9Cnal;Zo=C3=AB;;;\r\n"
        "FN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Zo=C3=AB =C3=9Cnal\r\n"
        "NOTE;ENCODING=QUOTED-PRINTABLE;CHARSET=UTF-8:one=0D=0Atwo, =E6=97=A5=\r\n"
        "=E6=9C=AC\r\n"
        "TEL;CELL;PREF:+15551234567\r\n"
        "TEL;HOME;VOICE:+15551234568\r\n"
        "END:VCARD\r\n"
    )

    contact = vcard_to_contact(text)

    assert contact["preferred_name"] == "Zoë Ünal"
    assert (contact["given_name"], contact["family_name"]) == ("Zoë", "Ünal")
    assert contact["notes"] == "one\ntwo, 日本"
    assert contact["phones"] == [
        {"label": "mobile", "value_e164": "+15551234567", "is_primary": True},
        {"label": "home", "value_e164": "+15551234568", "is_primary": False},
    ]
    assert split_vcards(text + text) == [text, text]


def test_vcard_to_contact_several_preferred_keeps_only_the_most_preferred() -> None:
    text = _card(
        "FN:X",
        "EMAIL;PREF=5:a@example.com",
        "EMAIL;PREF=2:b@example.com",
        "EMAIL;TYPE=pref:c@example.com",
        "EMAIL;TYPE=INTERNET,pref:d@example.com",
        "TEL;TYPE=pref:+15550000001",
        "TEL;TYPE=pref:+15550000002",
    )

    contact = vcard_to_contact(text)

    assert [e["is_primary"] for e in contact["emails"]] == [False, False, True, False]
    assert [p["is_primary"] for p in contact["phones"]] == [True, False]


def test_vcard_to_contact_unescaped_commas_in_text_are_kept() -> None:
    """Many 3.0 writers leave commas unescaped; vobject would cut the value."""
    text = _card(
        "FN:Doe, John",
        "N:Doe;John;;;Jr.,M.D.",
        "NOTE:Hello, world, again",
        "ADR:;;1 Main St, Apt 4;Springfield;;;",
    )

    contact = vcard_to_contact(text)

    assert contact["preferred_name"] == "Doe, John"
    assert contact["name_suffix"] == "Jr.,M.D."
    assert contact["notes"] == "Hello, world, again"
    assert contact["addresses"][0]["street"] == "1 Main St, Apt 4"


def test_vcard_to_contact_lower_case_folded_lf_card_is_read() -> None:
    text = (
        "begin:vcard\nversion:3.0\nfn:Long\n  Name\nnote:a\n\tb\n"
        "item1.email:x@example.com\nITEM1.X-ABLABEL:Custom\nend:vcard\n"
    )

    contact = vcard_to_contact(text)

    assert contact["preferred_name"] == "Long Name"
    assert contact["notes"] == "ab"
    assert contact["emails"] == [
        {"label": "Custom", "value": "x@example.com", "is_primary": False}
    ]


def test_vcard_to_contact_address_box_and_extended_join_the_street() -> None:
    text = _card("FN:X", "ADR;TYPE=home:PO Box 7;Suite 5;1 Main St;Town;;;")

    contact = vcard_to_contact(text)

    assert contact["addresses"] == [
        {
            "label": "home",
            "street": "1 Main St\nSuite 5\nPO Box 7",
            "city": "Town",
            "region": None,
            "postal": None,
            "country": None,
        }
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("BDAY:19960415", "1996-04-15"),
        ("BDAY;VALUE=date:1996-04-15", "1996-04-15"),
        ("BDAY:1996-04-15T10:30:00Z", "1996-04-15"),
        ("BDAY:19960415T103000", "1996-04-15"),
        ("BDAY:--0415", None),
        ("BDAY:1996", None),
        ("BDAY;X-APPLE-OMIT-YEAR=1604:1604-04-15", None),
        ("BDAY;VALUE=text:circa 1800", None),
        ("BDAY:19960231", None),
    ],
)
def test_vcard_to_contact_birthday_forms_give_full_date_or_none(
    line: str, expected: str | None
) -> None:
    contact = vcard_to_contact(_card("FN:X", line))

    assert contact["birthday"] == expected


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("+1 (555) 123-4567", None, "+15551234567"),
        ("tel:+1-555-123-4567", None, "+15551234567"),
        ("(555) 123-4567", "US", "+15551234567"),
        ("(555) 123-4567", "us", "+15551234567"),
        ("030 1234567", "DE", "+49301234567"),
        ("(555) 123-4567", None, "(555) 123-4567"),
        ("12", "US", "12"),
        ("call me maybe", "US", "call me maybe"),
        ("+1 555 123 4567 ext. 89", None, "+1 555 123 4567 ext. 89"),
    ],
)
def test_vcard_to_contact_phone_is_e164_when_it_parses_else_raw(
    value: str, region: str | None, expected: str
) -> None:
    contact = vcard_to_contact(_card("FN:X", f"TEL:{value}"), default_region=region)

    assert contact["phones"] == [
        {"label": None, "value_e164": expected, "is_primary": False}
    ]


def test_vcard_to_contact_minimal_card_gives_empty_fields() -> None:
    contact = vcard_to_contact(_card("N:;;;;"))

    assert contact == {
        **dict.fromkeys(MAPPED[:10]),
        **{name: [] for name in MAPPED[10:]},
    }


def test_vcard_to_contact_ignores_text_outside_the_card() -> None:
    text = "garbage before\r\n" + _card("FN:Inside") + "trailing junk"

    contact = vcard_to_contact(text)

    assert contact["preferred_name"] == "Inside"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"no vCard"),
        ("just text\r\n", r"no vCard"),
        ("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No End\r\n", r"END:VCARD line is missing"),
        (_card("FN:A") + _card("FN:B"), r"more than one vCard"),
        ("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", r"VCALENDAR component"),
        (_card("FN:A", "NOTE no colon"), r"Line 4 .*'NOTE no colon'.* not a valid"),
    ],
)
def test_vcard_to_contact_unusable_text_raises_vcard_error(
    text: str, message: str
) -> None:
    with pytest.raises(VCardError, match=message):
        vcard_to_contact(text)


def test_vcard_error_is_a_value_error_with_line_number() -> None:
    with pytest.raises(ValueError) as info:
        vcard_to_contact(_card("FN:A", "broken"))

    assert isinstance(info.value, VCardError)
    assert info.value.line_number == 4


# --- split_vcards ------------------------------------------------------------------


def test_split_vcards_stream_with_broken_card_keeps_neighbours() -> None:
    first = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:First\r\nEND:VCARD\r\n"
    broken = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No End\r\nNOTE:oops\r\n"
    third = "begin:vcard\nversion:4.0\nfn:Third\n  continued\nEnd:VCard\n"
    last = "BEGIN:VCARD\r\nFN:Last, no end"
    stream = "preamble\r\n" + first + "\r\n" + broken + third + "junk\r\n" + last

    cards = split_vcards(stream)

    assert cards == [first, broken, third, last]
    assert vcard_to_contact(cards[0])["preferred_name"] == "First"
    assert vcard_to_contact(cards[2])["preferred_name"] == "Third continued"
    with pytest.raises(VCardError, match="END:VCARD line is missing"):
        vcard_to_contact(cards[1])


def test_split_vcards_folded_begin_and_note_text_do_not_split() -> None:
    card = _card(
        "FN:X",
        "NOTE:this note mentions\\nBEGIN:VCARD and END:VCARD",
        "NOTE:folded value\r\n END:VCARD",
    )
    folded = "BEGIN:VC\r\n ARD\r\nFN:Folded\r\nEND:VCARD\r\n"

    cards = split_vcards(card + folded)

    assert cards == [card, folded]


def test_split_vcards_without_cards_gives_empty_list() -> None:
    assert split_vcards("") == []
    assert split_vcards("no cards here\r\n") == []


def test_split_vcards_exported_stream_round_trips_every_card() -> None:
    contacts = [RICH, {"preferred_name": "Second"}, {"company_name": "Third"}]
    stream = "".join(contact_to_vcard(contact) for contact in contacts)

    cards = split_vcards(stream)

    assert cards == [contact_to_vcard(contact) for contact in contacts]


# --- synthesize_preferred_name -----------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {
                "name_prefix": "Dr.",
                "given_name": "Ada",
                "middle_name": "Augusta",
                "family_name": "King",
                "name_suffix": "PhD",
                "company_name": "Engines",
            },
            "Dr. Ada Augusta King PhD",
        ),
        ({"given_name": " Ada ", "family_name": None, "middle_name": ""}, "Ada"),
        ({"given_name": "Mary  Ann", "family_name": "Smith"}, "Mary Ann Smith"),
        ({"given_name": "  ", "company_name": "Acme"}, "Acme"),
        ({"company_name": "  "}, None),
        ({}, None),
    ],
)
def test_synthesize_preferred_name_joins_parts_else_company(
    fields: dict[str, Any], expected: str | None
) -> None:
    assert synthesize_preferred_name(fields) == expected


# --- Property: any valid contact survives a round trip --------------------------

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
# Printable text, with the characters vCard escapes drawn more often.
_SPECIALS = st.sampled_from(list(',;:\\"^=. '))
_CHARS = st.one_of(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), _SPECIALS, _SPECIALS
)
_TEXT = st.text(_CHARS, max_size=30)
# Notes are the one field where the API keeps line breaks.
_NOTES = st.text(_CHARS | st.just("\n"), min_size=1, max_size=200)
_OPTIONAL_TEXT = st.none() | _TEXT.filter(bool)
_CUSTOM_LABEL = _TEXT.filter(
    lambda s: (
        s
        and s.lower() not in _RESERVED_LABELS
        and not (s.startswith("_$!<") and s.endswith(">!$_"))
    )
)


def _labels(*known: str) -> st.SearchStrategy[str | None]:
    return st.none() | st.sampled_from(known) | _CUSTOM_LABEL


_EMAIL = st.builds(
    dict,
    label=_labels("home", "work", "other"),
    value=st.builds(
        "{}@{}.example".format,
        st.text("abcxyz0189._", min_size=1, max_size=8),
        st.text("abcxyz", min_size=1, max_size=8),
    ),
)
_PHONE = st.builds(
    dict,
    label=_labels("home", "work", "mobile", "fax", "pager", "voice", "work fax"),
    value_e164=st.integers(0, 10**10 - 1).map("+1{:010d}".format),
)
_WEBSITE = st.builds(
    dict,
    label=_labels("home", "work", "homepage", "other"),
    url=st.text("abz09,;=&?_-/", max_size=20).map("https://www.example/{}".format),
)
_DATE = st.builds(
    dict,
    label=_labels("anniversary", "other"),
    date=st.dates().map(lambda d: d.isoformat()),
)
_ADDRESS = st.builds(
    dict,
    label=_labels("home", "work", "other"),
    street=_OPTIONAL_TEXT,
    city=_OPTIONAL_TEXT,
    region=_OPTIONAL_TEXT,
    postal=_OPTIONAL_TEXT,
    country=_OPTIONAL_TEXT,
)
_CUSTOM_FIELD = st.builds(dict, label=_TEXT, value=_TEXT)


@st.composite
def _with_primary(
    draw: st.DrawFn, items: st.SearchStrategy[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Draw a list of items of which at most one is primary."""
    drawn = draw(st.lists(items, max_size=4))
    primary = draw(st.none() | st.integers(0, max(len(drawn) - 1, 0)))
    return [
        {**item, "is_primary": index == primary} for index, item in enumerate(drawn)
    ]


_CONTACT = st.fixed_dictionaries(
    {
        "id": st.uuids().map(str),
        "preferred_name": _TEXT.filter(bool),
        "name_prefix": _OPTIONAL_TEXT,
        "given_name": _OPTIONAL_TEXT,
        "middle_name": _OPTIONAL_TEXT,
        "family_name": _OPTIONAL_TEXT,
        "name_suffix": _OPTIONAL_TEXT,
        "company_name": _OPTIONAL_TEXT,
        "job_title": _OPTIONAL_TEXT,
        "birthday": st.none() | st.dates().map(lambda d: d.isoformat()),
        "notes": st.none() | _NOTES,
        "emails": _with_primary(_EMAIL),
        "phones": _with_primary(_PHONE),
        "websites": st.lists(_WEBSITE, max_size=3),
        "dates": st.lists(_DATE, max_size=3),
        "addresses": st.lists(_ADDRESS, max_size=2),
        "custom_fields": st.lists(_CUSTOM_FIELD, max_size=3),
    }
)


@settings(max_examples=100, deadline=None, database=None)
@given(contact=_CONTACT)
@example(contact=RICH)
def test_contact_to_vcard_any_valid_contact_round_trips_unchanged(
    contact: dict[str, Any],
) -> None:
    text = contact_to_vcard(contact)

    parsed = vcard_to_contact(text)

    assert parsed == _mapped(contact)
    assert max(len(line.encode("utf-8")) for line in text.split("\r\n")) <= 75


@settings(max_examples=100, deadline=None, database=None)
@given(contact=_CONTACT)
@example(contact=RICH)
def test_contact_to_vcard_3_0_round_trips_unchanged(contact: dict[str, Any]) -> None:
    """vCard 3.0, as served to clients, keeps every mapped field too."""
    text = contact_to_vcard(contact, version="3.0")

    parsed = vcard_to_contact(text)

    assert parsed == _mapped(contact)
    assert text.startswith("BEGIN:VCARD\r\nVERSION:3.0\r\n")
    heads = [line.split(":", 1)[0] for line in text.split("\r\n")]
    assert not [h for h in heads if re.match(r"(item\d+\.)?(EMAIL|TEL);.*PREF=", h)]
    assert not [h for h in heads if h.startswith("ANNIVERSARY")]


def test_contact_to_vcard_3_0_merges_pref_into_type_list() -> None:
    contact = {
        "id": "0b7c5b0e-6a7f-4a47-9d55-8d7a7d6c1e01",
        "given_name": "Pat",
        "phones": [
            {"label": "mobile", "value_e164": "+15551234567", "is_primary": True}
        ],
        "emails": [{"label": None, "value": "pat@example.com", "is_primary": True}],
        "dates": [{"label": "anniversary", "date": "2001-02-03"}],
    }

    text = contact_to_vcard(contact, version="3.0")

    assert "TEL;TYPE=cell,pref:+15551234567\r\n" in text
    assert "EMAIL;TYPE=pref:pat@example.com\r\n" in text
    assert (
        "item1.X-ABDATE:2001-02-03\r\nitem1.X-ABLabel:_$!<Anniversary>!$_\r\n" in text
    )


def test_vcard_to_contact_apple_placeholder_year_without_parameter_is_no_birthday() -> (
    None
):
    """Some iOS versions write 1604 for "no year" without X-APPLE-OMIT-YEAR."""
    text = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ann\r\nBDAY:1604-04-15\r\nEND:VCARD\r\n"

    assert vcard_to_contact(text)["birthday"] is None


def test_vcard_to_contact_impossible_plus_number_is_kept_as_written() -> None:
    """'+1234' is not a possible number: the API's rule, shared through validation."""
    text = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ann\r\nTEL:+1234\r\nEND:VCARD\r\n"

    assert vcard_to_contact(text)["phones"] == [
        {"label": None, "value_e164": "+1234", "is_primary": False}
    ]
