"""Organizations, identities and API keys: for operators, scripts and tests.

These functions work on the database directly; the command line prints their
results as JSON. A key's text is returned once, when it is created, and only
its hash is stored.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contacts_api.auth import generate_key, hash_key
from contacts_api.db import APIKey, Database, Identity, Organization, utcnow
from contacts_api.errors import APIError

# Handles become CardDAV user names and path segments, so they keep to
# characters that Radicale accepts in both.
HANDLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class AdminError(ValueError):
    """An administrative request cannot be carried out."""


def _iso(moment: Any) -> str:
    return str(moment.isoformat(timespec="microseconds")) + "Z"


def organization_json(org: Organization) -> dict[str, Any]:
    return {"id": org.id, "name": org.name, "created_at": _iso(org.created_at)}


def identity_json(identity: Identity) -> dict[str, Any]:
    return {
        "id": identity.id,
        "organization_id": identity.organization_id,
        "agent_handle": identity.agent_handle,
        "display_name": identity.display_name,
        "email_address": identity.email_address,
        "status": identity.status,
        "created_at": _iso(identity.created_at),
        "updated_at": _iso(identity.updated_at),
    }


def find_organization(session: Session, org: str) -> Organization:
    """Return the organization named by its id or its (unique) name."""
    found = session.get(Organization, org)
    if found is not None:
        return found
    matches = session.scalars(
        select(Organization).where(Organization.name == org)
    ).all()
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AdminError(f"Several organizations are named '{org}'; give its id.")
    raise AdminError(f"Organization '{org}' not found.")


def add_identity(
    session: Session,
    organization_id: str,
    handle: str,
    display_name: str | None = None,
    email_address: str | None = None,
) -> Identity:
    """Create an identity; raise APIError 422/409 for a bad or taken handle."""
    if not HANDLE.match(handle):
        raise APIError(
            422,
            f"Invalid agent_handle '{handle}': use 1 to 64 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit.",
        )
    taken = session.scalar(
        select(Identity.id).where(
            Identity.organization_id == organization_id,
            Identity.agent_handle == handle,
        )
    )
    if taken is not None:
        raise APIError(409, f"An identity with handle '{handle}' already exists.")
    now = utcnow()
    identity = Identity(
        organization_id=organization_id,
        agent_handle=handle,
        display_name=display_name,
        email_address=email_address,
        created_at=now,
        updated_at=now,
    )
    session.add(identity)
    try:
        session.flush()
    except IntegrityError:
        raise APIError(
            409, f"An identity with handle '{handle}' already exists."
        ) from None
    return identity


def create_organization(db: Database, name: str) -> dict[str, Any]:
    with db.write() as session:
        org = Organization(name=name, created_at=utcnow())
        session.add(org)
        session.flush()
        return organization_json(org)


def list_organizations(db: Database) -> list[dict[str, Any]]:
    with db.read() as session:
        orgs = session.scalars(select(Organization).order_by(Organization.created_at))
        return [organization_json(org) for org in orgs]


def create_identity(
    db: Database,
    org: str,
    handle: str,
    display_name: str | None = None,
    email_address: str | None = None,
) -> dict[str, Any]:
    with db.write() as session:
        organization = find_organization(session, org)
        try:
            identity = add_identity(
                session, organization.id, handle, display_name, email_address
            )
        except APIError as exc:
            raise AdminError(str(exc.detail)) from None
        return identity_json(identity)


def create_key(
    db: Database,
    org: str,
    *,
    admin: bool = False,
    identity: str | None = None,
    unclaimed: bool = False,
    label: str | None = None,
) -> dict[str, Any]:
    """Create an admin key, or an agent key bound to the identity with a handle."""
    if admin == (identity is not None):
        raise AdminError("Give either admin or an identity handle for the key.")
    if admin and unclaimed:
        raise AdminError("Only agent keys can be unclaimed.")
    with db.write() as session:
        organization = find_organization(session, org)
        identity_id = None
        if identity is not None:
            identity_id = session.scalar(
                select(Identity.id).where(
                    Identity.organization_id == organization.id,
                    Identity.agent_handle == identity,
                )
            )
            if identity_id is None:
                raise AdminError(
                    f"Identity '{identity}' not found in organization "
                    f"'{organization.name}'."
                )
        text = generate_key()
        key = APIKey(
            organization_id=organization.id,
            kind="admin" if admin else "agent",
            identity_id=identity_id,
            claimed=not unclaimed,
            label=label,
            key_hash=hash_key(text),
            created_at=utcnow(),
        )
        session.add(key)
        session.flush()
        return {
            "id": key.id,
            "key": text,
            "kind": key.kind,
            "organization_id": organization.id,
            "identity_id": identity_id,
            "claimed": key.claimed,
            "label": label,
        }


def delete_keys_with_label(db: Database, organization_id: str, label: str) -> int:
    """Delete the organization's keys that carry a label; return how many."""
    with db.write() as session:
        result = session.execute(
            delete(APIKey).where(
                APIKey.organization_id == organization_id, APIKey.label == label
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)
