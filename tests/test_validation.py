"""The API's validation rules as the gateway applies them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contacts_api.schemas import ContactFields, Email, Phone
from gateway.validation import (
    LIST_LIMITS,
    TEXT_LIMITS,
    is_full_date,
    is_valid_email,
    to_e164,
)


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("+15551234567", None, "+15551234567"),
        (" +15551234567 ", None, "+15551234567"),
        ("+1 (555) 123-4567", None, "+15551234567"),
        ("tel:+1-555-123-4567", None, "+15551234567"),
        ("TEL:+44 20 7946 0958", None, "+442079460958"),
        ("(555) 123-4567", "US", "+15551234567"),
        ("(555) 123-4567", "us", "+15551234567"),
        ("030 1234567", "DE", "+49301234567"),
        ("0049 30 1234567", "DE", "+49301234567"),
        ("(555) 123-4567", None, None),
        ("(555) 123-4567", "XX", None),
        ("+1 555 123 4567 x123", None, None),
        ("tel:+1-555-123-4567;ext=123", None, None),
        ("+1234", None, None),
        ("12", "US", None),
        ("call me maybe", "US", None),
        ("", "US", None),
        ("tel:", None, None),
    ],
)
def test_to_e164_normalizes_when_possible_else_gives_none(
    value: str, region: str | None, expected: str | None
) -> None:
    assert to_e164(value, region) == expected


def test_to_e164_keeps_a_possible_e164_number_as_written() -> None:
    """phonenumbers drops leading zeros of a national number; the API does not."""
    assert to_e164("+10000000000") == "+10000000000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ada@example.com", True),
        ("Ada.King+engines@mail.example.org", True),
        ("zoë@exämple.com", True),
        (" ada@example.com ", True),
        ("ada(at)home", False),
        ("ada@", False),
        ("a.@example.com", False),
        ("user@localhost", False),
        ("mailto:ada@example.com", False),
        ("", False),
        ("a" * 321 + "@example.com", False),
    ],
)
def test_is_valid_email_accepts_what_the_api_accepts(
    value: str, expected: bool
) -> None:
    assert is_valid_email(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1815-12-10", True),
        ("2024-02-29", True),
        ("0099-01-02", True),
        ("2023-02-29", False),
        ("1815-13-10", False),
        ("18151210", False),
        ("--1210", False),
        ("1815-12-10T10:00:00", False),
        ("0000-01-01", False),
        ("\u0661\u0668\u0661\u0665-\u0661\u0662-\u0661\u0660", False),
    ],
)
def test_is_full_date_accepts_only_calendar_dates(value: str, expected: bool) -> None:
    assert is_full_date(value) == expected


def test_limits_match_the_contract() -> None:
    assert LIST_LIMITS == {
        "emails": 50,
        "phones": 50,
        "websites": 25,
        "dates": 25,
        "addresses": 10,
        "custom_fields": 50,
    }
    assert TEXT_LIMITS["preferred_name"] == 255
    assert TEXT_LIMITS["given_name"] == 128
    assert TEXT_LIMITS["name_prefix"] == 32


@pytest.mark.parametrize("field", sorted(TEXT_LIMITS))
def test_text_limit_is_the_longest_value_the_api_schema_accepts(field: str) -> None:
    limit = TEXT_LIMITS[field]

    ContactFields.model_validate({field: "x" * limit})
    with pytest.raises(ValidationError):
        ContactFields.model_validate({field: "x" * (limit + 1)})


def _entry(field: str, index: int) -> dict[str, str]:
    """Return a valid entry of a list field, distinct for each index."""
    return {
        "emails": {"value": f"a{index}@example.com"},
        "phones": {"value_e164": f"+1555{index:07d}"},
        "websites": {"url": "https://x.example"},
        "dates": {"date": "2000-01-01"},
        "addresses": {"city": "x"},
        "custom_fields": {"label": "x", "value": "y"},
    }[field]


@pytest.mark.parametrize("field", sorted(LIST_LIMITS))
def test_list_limit_is_the_longest_list_the_api_schema_accepts(field: str) -> None:
    limit = LIST_LIMITS[field]

    ContactFields.model_validate({field: [_entry(field, i) for i in range(limit)]})
    with pytest.raises(ValidationError):
        ContactFields.model_validate(
            {field: [_entry(field, i) for i in range(limit + 1)]}
        )


_PHONE_TEXT = st.text("0123456789 +-()./x", max_size=20) | st.sampled_from(
    ["+1 555 0100", "tel:+44 20 7946 0958", "(555) 123-4567", "+0 123 4567"]
)


@settings(max_examples=200, deadline=None, database=None)
@given(value=_PHONE_TEXT, region=st.sampled_from([None, "US", "GB", "DE", "FR"]))
def test_to_e164_result_is_always_accepted_by_the_api(
    value: str, region: str | None
) -> None:
    number = to_e164(value, region)

    if number is not None:
        Phone.model_validate({"value_e164": number})


@settings(max_examples=200, deadline=None, database=None)
@given(value=st.emails() | st.text("ab.@-_ü ", max_size=12))
def test_is_valid_email_agrees_with_the_api_schema(value: str) -> None:
    try:
        Email.model_validate({"value": value})
    except ValidationError:
        accepted = False
    else:
        accepted = True

    assert is_valid_email(value) == accepted
