"""What each endpoint does, independent of HTTP.

Every function takes the session and the caller and raises ``APIError`` with
the status the contract gives. Visibility is decided in one place,
``_visible``: administrators and humans see their whole organization; an
agent sees a contact whose access rows are the wildcard or name it.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import (
    ColumnElement,
    and_,
    delete,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from contacts_api.auth import Caller
from contacts_api.db import (
    AccessRow,
    Contact,
    ContactEmail,
    ContactPhone,
    Identity,
    Organization,
    later_than,
    new_id,
    utcnow,
)
from contacts_api.errors import APIError, forbidden, not_found
from contacts_api.schemas import (
    READ_ONLY_FIELDS,
    ContactCreate,
    ContactFields,
    describe_validation_error,
    normalized_fields,
)
from gateway.vcard import LIST_FIELDS, SCALAR_FIELDS, synthesize_preferred_name

logger = logging.getLogger(__name__)

MAX_OFFSET = 10_000
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_QUERY = 100
# Below this many index matches a lookup fetches the contacts by id.
FEW_MATCHES = 2000
LOOKUP_FILTERS = ("email", "email_contains", "email_domain", "phone", "phone_contains")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SEARCH_SEPARATOR = "\x1f"
_SEARCHED = (
    "preferred_name",
    "given_name",
    "family_name",
    "company_name",
    "job_title",
    "notes",
)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds") + "Z"


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _bump_revision(session: Session, organization_id: str) -> None:
    """Count one change of the organization's directory."""
    session.execute(
        update(Organization)
        .where(Organization.id == organization_id)
        .values(revision=Organization.revision + 1)
        .execution_options(synchronize_session=False)
    )


def directory_revision(session: Session, caller: Caller) -> int:
    """Return the organization's change counter."""
    revision = session.scalar(
        select(Organization.revision).where(Organization.id == caller.organization_id)
    )
    return int(revision or 0)


def _require_contacts_access(caller: Caller) -> None:
    if caller.kind == "unclaimed":
        raise forbidden(
            "This agent API key is not claimed yet; it cannot use contacts."
        )


def _visible(caller: Caller) -> ColumnElement[bool]:
    """Return the condition on ``Contact`` that the caller may see it."""
    in_org = Contact.organization_id == caller.organization_id
    if caller.sees_everything:
        return in_org
    row_matches = exists().where(
        AccessRow.contact_id == Contact.id,
        or_(
            AccessRow.identity_id.is_(None),
            AccessRow.identity_id == caller.identity_id,
        ),
    )
    return and_(in_org, row_matches)


def _load(session: Session, caller: Caller, contact_id: str) -> Contact:
    """Return a contact the caller can see, or raise 404 as if it did not exist."""
    _require_contacts_access(caller)
    if _UUID.match(contact_id):
        contact = session.scalar(
            select(Contact).where(Contact.id == contact_id, _visible(caller))
        )
        if contact is not None:
            return contact
    raise not_found("Contact", contact_id)


def _access_rows(
    session: Session, contact_ids: Sequence[str]
) -> dict[str, list[AccessRow]]:
    rows: dict[str, list[AccessRow]] = defaultdict(list)
    if not contact_ids:
        return rows
    query = (
        select(AccessRow)
        .where(AccessRow.contact_id.in_(contact_ids))
        .order_by(AccessRow.created_at, AccessRow.id)
    )
    for row in session.scalars(query):
        rows[row.contact_id].append(row)
    return rows


def access_json(row: AccessRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "contact_id": row.contact_id,
        "identity_id": row.identity_id,
        "created_at": iso(row.created_at),
    }


def contact_json(contact: Contact, access: Iterable[AccessRow]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": contact.id,
        "organization_id": contact.organization_id,
    }
    for name in SCALAR_FIELDS:
        data[name] = getattr(contact, name)
    for name in LIST_FIELDS:
        data[name] = list(getattr(contact, name) or [])
    data["access"] = [access_json(row) for row in access]
    data["status"] = contact.status
    data["created_at"] = iso(contact.created_at)
    data["updated_at"] = iso(contact.updated_at)
    return data


def _render(session: Session, contacts: Sequence[Contact]) -> list[dict[str, Any]]:
    rows = _access_rows(session, [contact.id for contact in contacts])
    return [contact_json(contact, rows.get(contact.id, [])) for contact in contacts]


def _validate(model: type[ContactFields], data: Mapping[str, Any]) -> ContactFields:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise APIError(422, describe_validation_error(exc)) from None


def _check_fn_rule(fields: Mapping[str, Any]) -> None:
    named = ("given_name", "family_name", "company_name", "preferred_name")
    if not any(fields.get(name) for name in named):
        raise APIError(
            400,
            "A contact needs at least one of given_name, family_name, "
            "company_name or preferred_name.",
        )


def _derived(fields: Mapping[str, Any]) -> dict[str, str]:
    """Return the ordering and search columns computed from the fields."""
    return {
        "sort_name": (fields["preferred_name"] or "").casefold()[:255],
        "search_text": _SEARCH_SEPARATOR.join(
            (fields[name] or "").casefold() for name in _SEARCHED
        ),
    }


class _Rows:
    """Rows to insert in bulk: contacts and their index and access rows."""

    def __init__(self) -> None:
        self.tables: dict[Any, list[dict[str, Any]]] = {
            Contact: [],
            ContactEmail: [],
            ContactPhone: [],
            AccessRow: [],
        }

    def add_index(self, organization_id: str, contact_id: str, fields: Any) -> None:
        for email in fields["emails"]:
            value = email["value"].lower()
            self.tables[ContactEmail].append(
                {
                    "organization_id": organization_id,
                    "contact_id": contact_id,
                    "value": value,
                    "domain": value.rpartition("@")[2],
                }
            )
        for phone in fields["phones"]:
            self.tables[ContactPhone].append(
                {
                    "organization_id": organization_id,
                    "contact_id": contact_id,
                    "value": phone["value_e164"],
                }
            )

    def add_contact(
        self,
        organization_id: str,
        fields: Mapping[str, Any],
        access_identity_ids: list[str | None],
    ) -> tuple[Contact, list[AccessRow]]:
        """Queue a new contact; return it and its access rows, for rendering."""
        now = utcnow()
        row = {
            "id": new_id(),
            "organization_id": organization_id,
            "status": "active",
            "created_at": now,
            "updated_at": now,
            **{name: fields[name] for name in (*SCALAR_FIELDS, *LIST_FIELDS)},
            **_derived(fields),
        }
        access = [
            {
                "id": new_id(),
                "contact_id": row["id"],
                "identity_id": identity_id,
                "created_at": now,
            }
            for identity_id in access_identity_ids
        ]
        self.tables[Contact].append(row)
        self.tables[AccessRow].extend(access)
        self.add_index(organization_id, row["id"], fields)
        return Contact(**row), [AccessRow(**item) for item in access]

    def insert(self, session: Session) -> None:
        for table, rows in self.tables.items():
            if rows:
                session.execute(insert(table), rows)


def _update_fields(
    session: Session, contact: Contact, fields: Mapping[str, Any]
) -> None:
    """Write new fields to a stored contact, with its derived columns and rows."""
    for name in (*SCALAR_FIELDS, *LIST_FIELDS):
        setattr(contact, name, fields[name])
    for name, value in _derived(fields).items():
        setattr(contact, name, value)
    _delete_where(session, ContactEmail, ContactEmail.contact_id == contact.id)
    _delete_where(session, ContactPhone, ContactPhone.contact_id == contact.id)
    rows = _Rows()
    rows.add_index(contact.organization_id, contact.id, fields)
    rows.insert(session)


def _delete_where(session: Session, table: Any, condition: Any) -> None:
    # The rows are never held in the session, so there is nothing to
    # synchronize; evaluating the condition over the session costs O(n).
    session.execute(
        delete(table).where(condition).execution_options(synchronize_session=False)
    )


def _active_identities(
    session: Session, organization_id: str, identity_ids: Iterable[str]
) -> list[str]:
    """Return the ids, deduplicated in order; 404 for one that is not active."""
    wanted = list(dict.fromkeys(identity_ids))
    valid = [i for i in wanted if isinstance(i, str) and _UUID.match(i)]
    found = set(
        session.scalars(
            select(Identity.id).where(
                Identity.organization_id == organization_id,
                Identity.status == "active",
                Identity.id.in_(valid),
            )
        )
    )
    for identity_id in wanted:
        if identity_id not in found:
            raise not_found("Identity", str(identity_id))
    return wanted


def _prepare_new(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    """Validate a create body; return the fields and the access identity ids."""
    model = _validate(ContactCreate, data)
    assert isinstance(model, ContactCreate)
    fields = normalized_fields(model)
    if not fields["preferred_name"]:
        fields["preferred_name"] = synthesize_preferred_name(fields)
    _check_fn_rule(fields)
    return fields, model.access_identity_ids


def create_contact(
    session: Session, caller: Caller, data: Mapping[str, Any]
) -> dict[str, Any]:
    """Create a contact; ``access_identity_ids`` decides who sees it."""
    _require_contacts_access(caller)
    fields, identity_ids = _prepare_new(data)
    if identity_ids is not None:
        identity_ids = _active_identities(session, caller.organization_id, identity_ids)
        if not caller.sees_everything and identity_ids != [caller.identity_id]:
            raise forbidden(
                "An agent API key may only create contacts visible to everyone "
                "or to its own identity."
            )
    rows = _Rows()
    access: list[str | None] = [None] if identity_ids is None else [*identity_ids]
    contact, access_rows = rows.add_contact(caller.organization_id, fields, access)
    rows.insert(session)
    _bump_revision(session, caller.organization_id)
    logger.info("Created contact %r", contact.id)
    return contact_json(contact, access_rows)


def get_contact(session: Session, caller: Caller, contact_id: str) -> dict[str, Any]:
    return _render(session, [_load(session, caller, contact_id)])[0]


def list_contacts(
    session: Session,
    caller: Caller,
    *,
    q: str | None,
    order: Literal["name", "recent"],
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """Return one page of the contacts the caller can see."""
    _require_contacts_access(caller)
    query = select(Contact).where(_visible(caller))
    if q:
        query = query.where(
            Contact.search_text.like(_like_pattern(q.casefold()), escape="\\")
        )
    if order == "recent":
        query = query.order_by(Contact.updated_at.desc(), Contact.id.desc())
    else:
        query = query.order_by(Contact.sort_name, Contact.id)
    contacts = session.scalars(query.limit(limit).offset(offset)).all()
    return _render(session, contacts)


def lookup_contacts(
    session: Session,
    caller: Caller,
    filters: Mapping[str, str | None],
    *,
    limit: int,
) -> list[dict[str, Any]]:
    """Return the visible contacts matching exactly one reverse-lookup filter."""
    _require_contacts_access(caller)
    given = {name: value for name, value in filters.items() if value is not None}
    if len(given) != 1:
        raise APIError(
            422,
            "Give exactly one of the filters "
            + ", ".join(LOOKUP_FILTERS)
            + f"; got {len(given)}.",
        )
    ((name, value),) = given.items()
    value = value.strip()
    if not value:
        raise APIError(422, f"The filter {name} must not be empty.")

    org = caller.organization_id
    matched: Any
    if name.startswith("email"):
        needle = value.lower()
        if name == "email":
            condition = ContactEmail.value == needle
        elif name == "email_domain":
            condition = ContactEmail.domain == needle.removeprefix("@")
        else:
            condition = ContactEmail.value.like(_like_pattern(needle), escape="\\")
        matched = select(ContactEmail.contact_id).where(
            ContactEmail.organization_id == org, condition
        )
    else:
        if name == "phone":
            condition = ContactPhone.value == value
        else:
            condition = ContactPhone.value.like(_like_pattern(value), escape="\\")
        matched = select(ContactPhone.contact_id).where(
            ContactPhone.organization_id == org, condition
        )

    # Start from the lookup index when the matches are few: left to itself,
    # SQLite walks the name-ordered index over the whole organization and
    # tests each contact against the match list (45 ms at 100,000 contacts
    # for one exact email; see bench/README.md). For a very large match set
    # (a big email domain) that walk is the better plan, since it stops
    # after `limit` visible matches.
    candidates = session.scalars(matched.limit(FEW_MATCHES + 1)).all()
    ids: Any = set(candidates) if len(candidates) <= FEW_MATCHES else matched
    query = (
        select(Contact)
        .where(_visible(caller), Contact.id.in_(ids))
        .order_by(Contact.sort_name, Contact.id)
        .limit(limit)
    )
    return _render(session, session.scalars(query).all())


def update_contact(
    session: Session, caller: Caller, contact_id: str, patch: Mapping[str, Any]
) -> dict[str, Any]:
    """Apply a JSON merge patch (RFC 7396) to a contact."""
    contact = _load(session, caller, contact_id)
    current: dict[str, Any] = {
        name: getattr(contact, name) for name in (*SCALAR_FIELDS, *LIST_FIELDS)
    }
    for name, value in patch.items():
        if name in READ_ONLY_FIELDS:
            continue
        current[name] = value

    fields = normalized_fields(_validate(ContactFields, current))
    _check_fn_rule(fields)
    _update_fields(session, contact, fields)
    contact.updated_at = later_than(contact.updated_at)
    _bump_revision(session, caller.organization_id)
    session.flush()
    logger.info("Updated contact %r", contact.id)
    return _render(session, [contact])[0]


def delete_contact(session: Session, caller: Caller, contact_id: str) -> None:
    contact = _load(session, caller, contact_id)
    for table in (AccessRow, ContactEmail, ContactPhone):
        _delete_where(session, table, table.contact_id == contact.id)
    session.delete(contact)
    _bump_revision(session, caller.organization_id)
    logger.info("Deleted contact %r", contact_id)


def list_access(
    session: Session, caller: Caller, contact_id: str
) -> list[dict[str, Any]]:
    contact = _load(session, caller, contact_id)
    return [access_json(row) for row in _access_rows(session, [contact.id])[contact.id]]


def grant_access(
    session: Session, caller: Caller, contact_id: str, identity_id: str | None
) -> dict[str, Any]:
    """Grant one identity, or reset the contact to the wildcard."""
    contact = _load(session, caller, contact_id)
    if not caller.sees_everything:
        raise forbidden("Only administrators and people may grant access.")
    rows = _access_rows(session, [contact.id])[contact.id]
    wildcard = next((row for row in rows if row.identity_id is None), None)
    now = later_than(contact.updated_at)

    if identity_id is None:
        if wildcard is not None:
            return access_json(wildcard)
        _delete_where(session, AccessRow, AccessRow.contact_id == contact.id)
        row = AccessRow(contact_id=contact.id, identity_id=None, created_at=now)
    else:
        _active_identities(session, caller.organization_id, [identity_id])
        if wildcard is not None:
            raise APIError(
                409,
                {
                    "error": "redundant_grant",
                    "detail": "The contact is visible to every agent already; "
                    "revoke the others first to make it explicit.",
                },
            )
        if any(row.identity_id == identity_id for row in rows):
            raise APIError(
                409, f"Identity '{identity_id}' already has access to the contact."
            )
        row = AccessRow(contact_id=contact.id, identity_id=identity_id, created_at=now)

    session.add(row)
    contact.updated_at = now
    _bump_revision(session, caller.organization_id)
    session.flush()
    logger.info("Granted %r access to contact %r", identity_id or "*", contact.id)
    return access_json(row)


def revoke_access(
    session: Session, caller: Caller, contact_id: str, identity_id: str
) -> None:
    """Revoke one identity; a wildcard first becomes explicit rows for the rest."""
    contact = _load(session, caller, contact_id)
    if not caller.sees_everything and identity_id != caller.identity_id:
        raise forbidden("An agent API key may revoke only its own identity.")
    rows = _access_rows(session, [contact.id])[contact.id]
    now = later_than(contact.updated_at)

    if any(row.identity_id is None for row in rows):
        _active_identities(session, caller.organization_id, [identity_id])
        others = session.scalars(
            select(Identity.id)
            .where(
                Identity.organization_id == caller.organization_id,
                Identity.status == "active",
                Identity.id != identity_id,
            )
            .order_by(Identity.created_at, Identity.id)
        ).all()
        _delete_where(session, AccessRow, AccessRow.contact_id == contact.id)
        for other in others:
            session.add(
                AccessRow(contact_id=contact.id, identity_id=other, created_at=now)
            )
    else:
        row = next((row for row in rows if row.identity_id == identity_id), None)
        if row is None:
            raise not_found("Access row for identity", identity_id)
        session.delete(row)

    contact.updated_at = now
    _bump_revision(session, caller.organization_id)
    session.flush()
    logger.info("Revoked %r from contact %r", identity_id, contact.id)


def import_cards(
    session: Session,
    caller: Caller,
    cards: Sequence[str],
    parse: Any,
) -> dict[str, Any]:
    """Create one wildcard contact per card; a bad card does not stop the rest."""
    _require_contacts_access(caller)
    results: list[dict[str, Any]] = []
    rows = _Rows()
    for index, card in enumerate(cards):
        try:
            fields, _ = _prepare_new(parse(card))
        except (APIError, ValueError) as exc:
            reason = exc.detail if isinstance(exc, APIError) else str(exc)
            results.append({"index": index, "status": "error", "error": str(reason)})
            continue
        contact, access = rows.add_contact(caller.organization_id, fields, [None])
        results.append(
            {
                "index": index,
                "status": "created",
                "contact": contact_json(contact, access),
            }
        )
    rows.insert(session)
    created = len(rows.tables[Contact])
    if created:
        _bump_revision(session, caller.organization_id)
    logger.info(
        "Imported %d of %d cards (%d rejected)",
        created,
        len(cards),
        len(cards) - created,
    )
    return {
        "created_count": created,
        "error_count": len(cards) - created,
        "results": results,
    }
