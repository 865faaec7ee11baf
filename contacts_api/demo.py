"""A demo organization for ``make serve``: two agents and a few contacts.

The keys are created anew on every start (the old demo keys are deleted),
because the server keeps only their hashes and cannot show them again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from contacts_api import admin, service
from contacts_api.auth import Caller
from contacts_api.db import Contact, Database, Organization

ORGANIZATION = "demo"
AGENTS = ("alice", "bob")
CONTACTS: list[dict[str, Any]] = [
    {
        "given_name": "Ada",
        "family_name": "Lovelace",
        "company_name": "Analytical Engines Ltd",
        "job_title": "Programmer",
        "emails": [{"label": "work", "value": "ada@example.com", "is_primary": True}],
        "phones": [{"label": "mobile", "value_e164": "+442071234567"}],
        "birthday": "1815-12-10",
    },
    {
        "given_name": "Grace",
        "family_name": "Hopper",
        "company_name": "Navy",
        "emails": [{"label": "work", "value": "grace@example.org"}],
        "addresses": [
            {
                "label": "work",
                "street": "1 Compiler Way",
                "city": "Arlington",
                "region": "VA",
                "postal": "22202",
                "country": "USA",
            }
        ],
    },
    {
        "company_name": "Example Support",
        "emails": [{"label": "work", "value": "support@example.net"}],
        "websites": [{"label": "work", "url": "https://example.net/support"}],
    },
]


def prepare_demo(db: Database) -> dict[str, Any]:
    """Ensure the demo organization exists and return fresh keys for it."""
    with db.read() as session:
        org = session.scalar(
            select(Organization).where(Organization.name == ORGANIZATION)
        )
        org_id = org.id if org is not None else None
    if org_id is None:
        org_id = admin.create_organization(db, ORGANIZATION)["id"]
        for handle in AGENTS:
            admin.create_identity(db, org_id, handle, display_name=handle.title())
        with db.write() as session:
            owner = Caller("admin", org_id)
            for contact in CONTACTS:
                service.create_contact(session, owner, contact)

    admin.delete_keys_with_label(db, org_id, "demo-admin")
    admin.delete_keys_with_label(db, org_id, "demo-agent")
    admin_key = admin.create_key(db, org_id, admin=True, label="demo-admin")
    agent_key = admin.create_key(db, org_id, identity=AGENTS[0], label="demo-agent")
    with db.read() as session:
        count = len(
            session.scalars(
                select(Contact.id).where(Contact.organization_id == org_id)
            ).all()
        )
    return {
        "organization": {"id": org_id, "name": ORGANIZATION},
        "admin_key": admin_key["key"],
        "agent_key": agent_key["key"],
        "agent_handle": AGENTS[0],
        "contacts": count,
    }
