"""The Contacts API's validation rules, shared by the gateway and the API.

The gateway filters what it sends with these rules so that a card a client
considers valid never turns into a 422; the API can import the same rules so
that both sides agree on what is valid. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final

import phonenumbers
from email_validator import EmailNotValidError, validate_email

__all__ = [
    "LIST_LIMITS",
    "MAX_ADDRESS_PART",
    "MAX_CUSTOM_LABEL",
    "MAX_CUSTOM_VALUE",
    "MAX_EMAIL",
    "MAX_LABEL",
    "MAX_POSTAL",
    "MAX_URL",
    "TEXT_LIMITS",
    "is_full_date",
    "is_valid_email",
    "to_e164",
]

# Most entries a list field may hold (contacts-api.md, "The contact object").
LIST_LIMITS: Final = {
    "emails": 50,
    "phones": 50,
    "websites": 25,
    "dates": 25,
    "addresses": 10,
    "custom_fields": 50,
}
# Longest value, in characters, of each scalar text field. contacts-api.md
# calls notes "free text"; the API's schema caps them at 65535.
TEXT_LIMITS: Final = {
    "preferred_name": 255,
    "name_prefix": 32,
    "given_name": 128,
    "middle_name": 128,
    "family_name": 128,
    "name_suffix": 32,
    "company_name": 255,
    "job_title": 255,
    "notes": 65535,
}
# Limits inside list entries, as the API's schema sets them.
MAX_LABEL: Final = 255
MAX_EMAIL: Final = 320
MAX_URL: Final = 2048
MAX_ADDRESS_PART: Final = 255
MAX_POSTAL: Final = 32
MAX_CUSTOM_LABEL: Final = 255
MAX_CUSTOM_VALUE: Final = 4096

_E164_RE = re.compile(r"\+[1-9]\d{1,14}", re.ASCII)
_ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def to_e164(value: str, default_region: str | None = None) -> str | None:
    """Return the E.164 form of a phone number, or None if it has none.

    A number already in E.164 form is returned unchanged when the API would
    accept it. Otherwise it is parsed with ``default_region`` (an ISO 3166
    code such as "US") when it has no country code. A number with an
    extension gives None: E.164 cannot hold the extension, and the card keeps
    the number as written.
    """
    value = value.strip()
    if value[:4].lower() == "tel:":
        value = value[4:].strip()
    if not value:
        return None
    if _E164_RE.fullmatch(value):
        return value if _is_possible(value) else None

    international = value.startswith("+")
    if not international and not default_region:
        return None
    region = None if international else (default_region or "").upper()
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if number.extension or not phonenumbers.is_possible_number(number):
        return None

    e164 = str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return e164 if _E164_RE.fullmatch(e164) and _is_possible(e164) else None


def _is_possible(e164: str) -> bool:
    """Tell whether phonenumbers finds an E.164 number possible, as the API does."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_possible_number(number))


def is_valid_email(value: str) -> bool:
    """Tell whether the API accepts an email address (no DNS lookup).

    Surrounding whitespace is ignored, as the API strips it before checking.
    """
    if len(value) > MAX_EMAIL:
        return False
    try:
        validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def is_full_date(value: str) -> bool:
    """Tell whether a value is a real calendar date written ``YYYY-MM-DD``."""
    if not _ISO_DATE_RE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True
