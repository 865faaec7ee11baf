"""Validation of contact fields, as the contract states it.

Errors of these models become 422 responses whose ``detail`` names the field
and the rule it broke. The FN rule is checked by the service (it is a 400).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from gateway.vcard import LIST_FIELDS, SCALAR_FIELDS

Label = Annotated[str | None, StringConstraints(max_length=255)]
Text255 = Annotated[str | None, StringConstraints(max_length=255)]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _check_date(value: str | None) -> str | None:
    if value is None:
        return None
    if not _DATE.match(value):
        raise ValueError(f"'{value}' is not a date in the form YYYY-MM-DD")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"'{value}' is not a valid calendar date") from None
    return value


def _check_email(value: str) -> str:
    value = value.strip()
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"'{value}' is not a valid email address: {exc}") from None
    return value


def _check_e164(value: str) -> str:
    problem = f"'{value}' is not a phone number in E.164 form such as +15551234567"
    if not re.fullmatch(r"\+[1-9]\d{1,14}", value):
        raise ValueError(problem)
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError(problem) from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError(problem)
    return value


DateText = Annotated[str, AfterValidator(_check_date)]
OptionalDateText = Annotated[str | None, AfterValidator(_check_date)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Email(_Strict):
    label: Label = None
    value: Annotated[
        str, StringConstraints(max_length=320), AfterValidator(_check_email)
    ]
    is_primary: bool = False


class Phone(_Strict):
    label: Label = None
    value_e164: Annotated[str, AfterValidator(_check_e164)]
    is_primary: bool = False


class Website(_Strict):
    label: Label = None
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class DateEntry(_Strict):
    label: Label = None
    date: DateText


class Address(_Strict):
    label: Label = None
    street: Text255 = None
    city: Text255 = None
    region: Text255 = None
    postal: Annotated[str | None, StringConstraints(max_length=32)] = None
    country: Text255 = None


class CustomField(_Strict):
    label: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    value: Annotated[str, StringConstraints(max_length=4096)]


def _check_one_primary(items: list[Email] | list[Phone], name: str) -> None:
    if sum(1 for item in items if item.is_primary) > 1:
        raise ValueError(f"{name}: at most one entry may be primary")


class ContactFields(_Strict):
    """Every writable field of a contact, each optional."""

    preferred_name: Text255 = None
    name_prefix: Annotated[str | None, StringConstraints(max_length=32)] = None
    given_name: Annotated[str | None, StringConstraints(max_length=128)] = None
    middle_name: Annotated[str | None, StringConstraints(max_length=128)] = None
    family_name: Annotated[str | None, StringConstraints(max_length=128)] = None
    name_suffix: Annotated[str | None, StringConstraints(max_length=32)] = None
    company_name: Text255 = None
    job_title: Text255 = None
    birthday: OptionalDateText = None
    notes: Annotated[str | None, StringConstraints(max_length=65535)] = None
    emails: Annotated[list[Email], Field(max_length=50)] | None = None
    phones: Annotated[list[Phone], Field(max_length=50)] | None = None
    websites: Annotated[list[Website], Field(max_length=25)] | None = None
    dates: Annotated[list[DateEntry], Field(max_length=25)] | None = None
    addresses: Annotated[list[Address], Field(max_length=10)] | None = None
    custom_fields: Annotated[list[CustomField], Field(max_length=50)] | None = None

    @model_validator(mode="after")
    def _lists_are_consistent(self) -> ContactFields:
        emails = self.emails or []
        seen = [email.value.lower() for email in emails]
        duplicates = sorted({v for v in seen if seen.count(v) > 1})
        if duplicates:
            raise ValueError(f"emails: '{duplicates[0]}' appears more than once")
        _check_one_primary(emails, "emails")

        phones = self.phones or []
        numbers = [phone.value_e164 for phone in phones]
        duplicates = sorted({v for v in numbers if numbers.count(v) > 1})
        if duplicates:
            raise ValueError(f"phones: '{duplicates[0]}' appears more than once")
        _check_one_primary(phones, "phones")
        return self


class ContactCreate(ContactFields):
    access_identity_ids: list[str] | None = None


READ_ONLY_FIELDS = frozenset(
    {"id", "organization_id", "access", "status", "created_at", "updated_at"}
)


def describe_validation_error(exc: ValidationError) -> str:
    """Return one readable sentence per problem, joined."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def normalized_fields(fields: ContactFields) -> dict[str, Any]:
    """Return the fields as stored: scalars and every list (empty when absent)."""
    data = fields.model_dump(exclude={"access_identity_ids"})
    for name in LIST_FIELDS:
        data[name] = data[name] or []
    for name in SCALAR_FIELDS:
        if isinstance(data[name], str) and data[name].strip() == "":
            data[name] = None
    return data
