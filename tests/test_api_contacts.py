"""Contacts endpoints of the real API process: CRUD, validation, list, lookup."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Org, new_contact

RICH = {
    "preferred_name": "Dr. Ada King",
    "name_prefix": "Dr.",
    "given_name": "Ada",
    "middle_name": "Augusta",
    "family_name": "King",
    "name_suffix": "PhD",
    "company_name": "Analytical Engines",
    "job_title": "Programmer",
    "birthday": "1815-12-10",
    "notes": "Line one\nLine two; with, punctuation",
    "emails": [
        {"label": "work", "value": "ada@example.com", "is_primary": True},
        {"label": None, "value": "ada.king@example.org", "is_primary": False},
    ],
    "phones": [{"label": "mobile", "value_e164": "+15551234567", "is_primary": True}],
    "websites": [{"label": "home", "url": "https://ada.example.com"}],
    "dates": [{"label": "anniversary", "date": "1835-07-08"}],
    "addresses": [
        {
            "label": "home",
            "street": "12 St James's Square",
            "city": "London",
            "region": None,
            "postal": "SW1Y 4JH",
            "country": "UK",
        }
    ],
    "custom_fields": [{"label": "Favourite engine", "value": "Difference"}],
}


def _fields(contact: dict[str, Any]) -> dict[str, Any]:
    return {name: contact[name] for name in RICH}


def test_create_contact_returns_every_field_with_wildcard_access(org: Org) -> None:
    response = org.admin.post("/api/v1/contacts", json=RICH)

    assert response.status_code == 201
    contact = response.json()
    assert _fields(contact) == RICH
    assert contact["organization_id"] == org.id
    assert contact["status"] == "active"
    assert [row["identity_id"] for row in contact["access"]] == [None]
    assert contact["created_at"] == contact["updated_at"]


def test_get_contact_returns_what_was_created(org: Org) -> None:
    created = new_contact(org.admin, **RICH)

    response = org.admin.get(f"/api/v1/contacts/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


def test_create_without_preferred_name_synthesizes_it(org: Org) -> None:
    contact = new_contact(
        org.admin, name_prefix="Ms", given_name="Grace", family_name="Hopper"
    )

    assert contact["preferred_name"] == "Ms Grace Hopper"


def test_create_with_only_company_uses_it_as_preferred_name(org: Org) -> None:
    response = org.admin.post("/api/v1/contacts", json={"company_name": "Acme"})

    assert response.status_code == 201
    assert response.json()["preferred_name"] == "Acme"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"notes": "no name at all"},
        {"given_name": "", "family_name": "  ", "job_title": "Boss"},
    ],
)
def test_create_without_any_name_is_400(org: Org, body: dict[str, Any]) -> None:
    response = org.admin.post("/api/v1/contacts", json=body)

    assert response.status_code == 400
    assert "given_name" in response.json()["detail"]


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"emails": [{"value": "not-an-email"}]}, "not-an-email"),
        ({"phones": [{"value_e164": "555-1234"}]}, "E.164"),
        ({"phones": [{"value_e164": "+1"}]}, "E.164"),
        (
            {"emails": [{"value": "a@example.com"}, {"value": "A@example.com"}]},
            "more than once",
        ),
        (
            {
                "phones": [
                    {"value_e164": "+15551234567"},
                    {"value_e164": "+15551234567"},
                ]
            },
            "more than once",
        ),
        (
            {
                "emails": [
                    {"value": "a@example.com", "is_primary": True},
                    {"value": "b@example.com", "is_primary": True},
                ]
            },
            "primary",
        ),
        ({"given_name": "x" * 129}, "given_name"),
        ({"name_prefix": "x" * 33}, "name_prefix"),
        ({"birthday": "1990-02-30"}, "birthday"),
        ({"birthday": "19900101"}, "birthday"),
        ({"emails": [{"value": f"u{i}@example.com"} for i in range(51)]}, "emails"),
        ({"websites": [{"url": f"https://e{i}.example"} for i in range(26)]}, "web"),
        ({"addresses": [{"city": "x"}] * 11}, "addresses"),
        ({"custom_fields": [{"label": "", "value": "v"}]}, "custom_fields"),
        ({"colour": "blue"}, "unknown field"),
        ({"given_name": 42}, "given_name"),
    ],
)
def test_create_with_invalid_field_is_422_and_names_it(
    org: Org, patch: dict[str, Any], needle: str
) -> None:
    response = org.admin.post("/api/v1/contacts", json={"given_name": "V", **patch})

    assert response.status_code == 422
    assert needle in response.json()["detail"]
    assert org.admin.get("/api/v1/contacts").json()["items"] == []


def test_create_with_non_object_body_is_422(org: Org) -> None:
    response = org.admin.post("/api/v1/contacts", json=["given_name"])

    assert response.status_code == 422


def test_patch_changes_only_members_present(org: Org) -> None:
    created = new_contact(org.admin, **RICH)

    response = org.admin.patch(
        f"/api/v1/contacts/{created['id']}", json={"job_title": "Analyst"}
    )

    assert response.status_code == 200
    updated = response.json()
    assert updated["job_title"] == "Analyst"
    assert {**_fields(updated), "job_title": RICH["job_title"]} == RICH
    assert updated["updated_at"] > created["updated_at"]
    assert updated["created_at"] == created["created_at"]


def test_patch_null_clears_scalar_and_list_replaces_whole_list(org: Org) -> None:
    created = new_contact(org.admin, **RICH)

    response = org.admin.patch(
        f"/api/v1/contacts/{created['id']}",
        json={
            "notes": None,
            "websites": None,
            "emails": [{"label": "home", "value": "new@example.com"}],
        },
    )

    assert response.status_code == 200
    updated = response.json()
    assert updated["notes"] is None
    assert updated["websites"] == []
    assert updated["emails"] == [
        {"label": "home", "value": "new@example.com", "is_primary": False}
    ]


def test_patch_ignores_read_only_members(org: Org) -> None:
    created = new_contact(org.admin, given_name="Same")

    response = org.admin.patch(
        f"/api/v1/contacts/{created['id']}",
        json={"id": "other", "created_at": "2000-01-01", "given_name": "Changed"},
    )

    assert response.status_code == 200
    assert response.json()["id"] == created["id"]
    assert response.json()["created_at"] == created["created_at"]


def test_patch_that_breaks_fn_rule_is_400_and_changes_nothing(org: Org) -> None:
    created = new_contact(org.admin, given_name="Only")
    path = f"/api/v1/contacts/{created['id']}"

    response = org.admin.patch(path, json={"given_name": None, "preferred_name": None})

    assert response.status_code == 400
    assert org.admin.get(path).json() == created


def test_patch_with_invalid_phone_is_422_and_changes_nothing(org: Org) -> None:
    created = new_contact(org.admin, **RICH)
    path = f"/api/v1/contacts/{created['id']}"

    response = org.admin.patch(path, json={"phones": [{"value_e164": "12"}]})

    assert response.status_code == 422
    assert org.admin.get(path).json() == created


def test_delete_removes_contact_and_second_delete_is_404(org: Org) -> None:
    created = new_contact(org.admin)
    path = f"/api/v1/contacts/{created['id']}"

    first = org.admin.delete(path)
    second = org.admin.delete(path)

    assert first.status_code == 204
    assert second.status_code == 404
    assert org.admin.get(path).status_code == 404


@pytest.mark.parametrize(
    "contact_id", ["00000000-0000-4000-8000-000000000000", "not-a-uuid"]
)
def test_unknown_contact_is_404_on_every_method(org: Org, contact_id: str) -> None:
    path = f"/api/v1/contacts/{contact_id}"

    statuses = [
        org.admin.get(path).status_code,
        org.admin.patch(path, json={"notes": "x"}).status_code,
        org.admin.delete(path).status_code,
        org.admin.get(f"{path}.vcf").status_code,
        org.admin.get(f"{path}/access").status_code,
    ]

    assert statuses == [404] * 5
    assert "detail" in org.admin.get(path).json()


def test_list_orders_by_name_and_pages_with_limit_and_offset(org: Org) -> None:
    for name in ("delta", "Alpha", "charlie", "Bravo", "echo"):
        new_contact(org.admin, preferred_name=name)

    first = org.admin.get("/api/v1/contacts", params={"limit": 2, "order": "name"})
    rest = org.admin.get("/api/v1/contacts", params={"limit": 10, "offset": 2})

    names = [c["preferred_name"] for c in first.json()["items"] + rest.json()["items"]]
    assert names == ["Alpha", "Bravo", "charlie", "delta", "echo"]


def test_list_recent_puts_last_updated_first(org: Org) -> None:
    first = new_contact(org.admin, preferred_name="First")
    new_contact(org.admin, preferred_name="Second")
    org.admin.patch(f"/api/v1/contacts/{first['id']}", json={"notes": "touched"})

    response = org.admin.get("/api/v1/contacts", params={"order": "recent"})

    names = [c["preferred_name"] for c in response.json()["items"]]
    assert names == ["First", "Second"]


def test_list_q_matches_substring_of_searched_fields_case_insensitively(
    org: Org,
) -> None:
    new_contact(org.admin, given_name="Zoë", family_name="Müller")
    new_contact(org.admin, given_name="Bob", job_title="Head of MÜLLERS")
    new_contact(org.admin, given_name="Carl", notes="met at 100% conference")
    new_contact(org.admin, given_name="Dan", emails=[{"value": "muller@example.com"}])

    by_name = org.admin.get("/api/v1/contacts", params={"q": "müller"})
    by_percent = org.admin.get("/api/v1/contacts", params={"q": "100%"})
    by_underscore = org.admin.get("/api/v1/contacts", params={"q": "_"})

    assert sorted(c["given_name"] for c in by_name.json()["items"]) == ["Bob", "Zoë"]
    assert [c["given_name"] for c in by_percent.json()["items"]] == ["Carl"]
    assert by_underscore.json()["items"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"q": "x" * 101},
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
        {"offset": 10_001},
        {"order": "random"},
    ],
)
def test_list_with_out_of_range_parameter_is_422(
    org: Org, params: dict[str, Any]
) -> None:
    response = org.admin.get("/api/v1/contacts", params=params)

    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


def test_list_accepts_offset_at_the_limit(org: Org) -> None:
    response = org.admin.get("/api/v1/contacts", params={"offset": 10_000})

    assert response.status_code == 200
    assert response.json() == {"items": []}


@pytest.fixture
def lookup_org(org: Org) -> Org:
    new_contact(
        org.admin,
        given_name="Ann",
        emails=[{"value": "Ann@Example.com"}, {"value": "ann@other.org"}],
        phones=[{"value_e164": "+15551230001"}],
    )
    new_contact(
        org.admin,
        given_name="Ben",
        emails=[{"value": "ben@example.com"}],
        phones=[{"value_e164": "+442071230002"}],
    )
    new_contact(org.admin, given_name="Cid", emails=[{"value": "cid@elsewhere.net"}])
    return org


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"email": "ann@example.COM"}, ["Ann"]),
        ({"email": "nobody@example.com"}, []),
        ({"email_contains": "EXAMPLE"}, ["Ann", "Ben"]),
        ({"email_domain": "example.com"}, ["Ann", "Ben"]),
        ({"email_domain": "@other.org"}, ["Ann"]),
        ({"phone": "+15551230001"}, ["Ann"]),
        ({"phone": "+1555123000"}, []),
        ({"phone_contains": "123000"}, ["Ann", "Ben"]),
        ({"phone_contains": "2071"}, ["Ben"]),
    ],
)
def test_lookup_by_one_filter_finds_matching_contacts_once(
    lookup_org: Org, params: dict[str, str], expected: list[str]
) -> None:
    response = lookup_org.admin.get("/api/v1/contacts/lookup", params=params)

    assert response.status_code == 200
    assert [c["given_name"] for c in response.json()["items"]] == expected


@pytest.mark.parametrize(
    "params", [{}, {"email": "a@example.com", "phone": "+15551230001"}]
)
def test_lookup_with_zero_or_two_filters_is_422(
    org: Org, params: dict[str, str]
) -> None:
    response = org.admin.get("/api/v1/contacts/lookup", params=params)

    assert response.status_code == 422


def test_lookup_follows_changed_and_deleted_emails(org: Org) -> None:
    contact = new_contact(org.admin, emails=[{"value": "old@example.com"}])
    path = f"/api/v1/contacts/{contact['id']}"
    lookup = "/api/v1/contacts/lookup"

    org.admin.patch(path, json={"emails": [{"value": "new@example.com"}]})
    after_patch = org.admin.get(lookup, params={"email": "old@example.com"})
    found_new = org.admin.get(lookup, params={"email": "new@example.com"})
    org.admin.delete(path)
    after_delete = org.admin.get(lookup, params={"email": "new@example.com"})

    assert after_patch.json()["items"] == []
    assert [c["id"] for c in found_new.json()["items"]] == [contact["id"]]
    assert after_delete.json()["items"] == []


def test_openapi_document_lists_the_contract_paths(org: Org) -> None:
    response = org.anonymous.get("/openapi.json")

    assert response.status_code == 200
    paths = set(response.json()["paths"])
    assert {
        "/api/whoami",
        "/api/v1/contacts",
        "/api/v1/contacts/lookup",
        "/api/v1/contacts/import",
        "/api/v1/contacts/{contact_id}",
        "/api/v1/contacts/{contact_id}.vcf",
        "/api/v1/contacts/{contact_id}/access",
        "/api/v1/contacts/{contact_id}/access/{identity_id}",
        "/api/v1/identities",
        "/api/v1/identities/{agent_handle}",
    } <= paths


def test_list_revision_header_counts_every_change_and_no_read(org: Org) -> None:
    """X-Directory-Revision (an extension) moves on writes and access changes."""

    def revision() -> int:
        return int(org.alice.get("/api/v1/contacts").headers["X-Directory-Revision"])

    seen = [revision()]
    contact = new_contact(org.admin)
    seen.append(revision())
    path = f"/api/v1/contacts/{contact['id']}"
    org.admin.get(path)
    org.admin.get("/api/v1/contacts/lookup", params={"email": "x@example.com"})
    seen.append(revision())
    org.admin.patch(path, json={"notes": "changed"})
    seen.append(revision())
    org.admin.delete(f"{path}/access/{org.identities['bob']}")
    seen.append(revision())
    org.admin.post(f"{path}/access", json={"identity_id": None})
    seen.append(revision())
    org.admin.delete(path)
    seen.append(revision())

    assert seen == [0, 1, 1, 2, 3, 4, 5]


def test_lookup_of_a_domain_with_thousands_of_members_pages_in_name_order(
    org: Org,
) -> None:
    """Past 2000 index matches the lookup walks the name order instead."""
    for start in (0, 1000, 2000):
        cards = "".join(
            "BEGIN:VCARD\r\nVERSION:3.0\r\n"
            f"FN:Member {i:05}\r\nEMAIL:m{i}@big.example\r\nEND:VCARD\r\n"
            for i in range(start, min(start + 1000, 2005))
        )
        response = org.admin.post(
            "/api/v1/contacts/import",
            content=cards.encode(),
            headers={"Content-Type": "text/vcard"},
        )
        assert response.status_code == 200

    domain = org.admin.get(
        "/api/v1/contacts/lookup", params={"email_domain": "big.example", "limit": 3}
    )
    exact = org.admin.get(
        "/api/v1/contacts/lookup", params={"email": "m2004@big.example"}
    )

    names = [c["preferred_name"] for c in domain.json()["items"]]
    assert names == ["Member 00000", "Member 00001", "Member 00002"]
    assert [c["preferred_name"] for c in exact.json()["items"]] == ["Member 02004"]


def test_contact_writes_name_the_revision_they_produced(org: Org) -> None:
    """Each write's X-Directory-Revision is the one the next list reports."""
    created = org.admin.post("/api/v1/contacts", json={"given_name": "Rev"})
    path = f"/api/v1/contacts/{created.json()['id']}"
    after_create = org.admin.get("/api/v1/contacts").headers["X-Directory-Revision"]
    patched = org.admin.patch(path, json={"notes": "x"})
    deleted = org.admin.delete(path)
    after_delete = org.admin.get("/api/v1/contacts").headers["X-Directory-Revision"]

    assert created.headers["X-Directory-Revision"] == after_create
    assert int(patched.headers["X-Directory-Revision"]) == int(after_create) + 1
    assert deleted.headers["X-Directory-Revision"] == after_delete
    assert int(after_delete) == int(after_create) + 2
