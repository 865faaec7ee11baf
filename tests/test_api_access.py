"""Callers and visibility: who sees, grants and revokes which contact.

Visibility is checked from three points of view at once (an admin and two
agents) after creates, grants, revokes and resets, on every read endpoint.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Org, human_token, make_org, new_contact, visible_ids


def _sees(client: httpx.Client, contact_id: str) -> dict[str, int]:
    """Return the status of every read endpoint for one contact."""
    lookup = client.get(
        "/api/v1/contacts/lookup", params={"email": f"{contact_id}@example.com"}
    )
    return {
        "list": 200 if contact_id in visible_ids(client) else 404,
        "lookup": 200 if lookup.json()["items"] else 404,
        "get": client.get(f"/api/v1/contacts/{contact_id}").status_code,
        "vcf": client.get(f"/api/v1/contacts/{contact_id}.vcf").status_code,
        "access": client.get(f"/api/v1/contacts/{contact_id}/access").status_code,
    }


def _contact(org: Org, **fields: object) -> str:
    """Create a contact whose email is derived from its id, and return the id."""
    contact = new_contact(org.admin, **fields)
    email = f"{contact['id']}@example.com"
    response = org.admin.patch(
        f"/api/v1/contacts/{contact['id']}", json={"emails": [{"value": email}]}
    )
    assert response.status_code == 200
    return str(contact["id"])


SEEN = dict.fromkeys(("list", "lookup", "get", "vcf", "access"), 200)
HIDDEN = dict.fromkeys(("list", "lookup", "get", "vcf", "access"), 404)


def _views(org: Org, contact_id: str) -> dict[str, dict[str, int]]:
    return {
        who: _sees(org.clients[who], contact_id) for who in ("admin", "alice", "bob")
    }


def test_wildcard_contact_is_visible_to_every_agent(org: Org) -> None:
    contact_id = _contact(org)

    assert _views(org, contact_id) == {"admin": SEEN, "alice": SEEN, "bob": SEEN}


def test_explicit_contact_is_visible_only_to_named_identities(org: Org) -> None:
    contact_id = _contact(org, access_identity_ids=[org.identities["alice"]])

    assert _views(org, contact_id) == {"admin": SEEN, "alice": SEEN, "bob": HIDDEN}


def test_contact_with_empty_access_list_is_visible_to_admins_only(org: Org) -> None:
    contact_id = _contact(org, access_identity_ids=[])

    assert _views(org, contact_id) == {"admin": SEEN, "alice": HIDDEN, "bob": HIDDEN}
    assert _sees(org.human, contact_id) == SEEN


def test_create_with_unknown_identity_is_404_and_creates_nothing(org: Org) -> None:
    response = org.admin.post(
        "/api/v1/contacts",
        json={
            "given_name": "X",
            "access_identity_ids": ["00000000-0000-4000-8000-000000000000"],
        },
    )

    assert response.status_code == 404
    assert visible_ids(org.admin) == set()


def test_grant_to_identity_makes_contact_visible_to_it(org: Org) -> None:
    contact_id = _contact(org, access_identity_ids=[org.identities["alice"]])

    response = org.admin.post(
        f"/api/v1/contacts/{contact_id}/access",
        json={"identity_id": org.identities["bob"]},
    )

    assert response.status_code == 201
    row = response.json()
    assert (row["contact_id"], row["identity_id"]) == (
        contact_id,
        org.identities["bob"],
    )
    assert _views(org, contact_id) == {"admin": SEEN, "alice": SEEN, "bob": SEEN}


def test_grant_on_wildcard_contact_is_409_redundant_grant(org: Org) -> None:
    contact_id = _contact(org)

    response = org.admin.post(
        f"/api/v1/contacts/{contact_id}/access",
        json={"identity_id": org.identities["alice"]},
    )

    assert response.status_code == 409
    assert response.json()["detail"]["error"] == "redundant_grant"
    assert isinstance(response.json()["detail"]["detail"], str)


def test_grant_twice_to_same_identity_is_409(org: Org) -> None:
    contact_id = _contact(org, access_identity_ids=[org.identities["alice"]])

    response = org.admin.post(
        f"/api/v1/contacts/{contact_id}/access",
        json={"identity_id": org.identities["alice"]},
    )

    assert response.status_code == 409


def test_grant_to_unknown_identity_is_404(org: Org) -> None:
    contact_id = _contact(org, access_identity_ids=[])

    response = org.admin.post(
        f"/api/v1/contacts/{contact_id}/access",
        json={"identity_id": "00000000-0000-4000-8000-000000000000"},
    )

    assert response.status_code == 404


def test_reset_to_wildcard_drops_explicit_rows_and_widens(org: Org) -> None:
    contact_id = _contact(org, access_identity_ids=[org.identities["alice"]])

    response = org.admin.post(
        f"/api/v1/contacts/{contact_id}/access", json={"identity_id": None}
    )

    assert response.status_code == 201
    assert response.json()["identity_id"] is None
    rows = org.admin.get(f"/api/v1/contacts/{contact_id}/access").json()["items"]
    assert [row["identity_id"] for row in rows] == [None]
    assert _views(org, contact_id) == {"admin": SEEN, "alice": SEEN, "bob": SEEN}


def test_revoke_on_wildcard_materializes_rows_for_every_other_identity(
    org: Org,
) -> None:
    contact_id = _contact(org)

    response = org.admin.delete(
        f"/api/v1/contacts/{contact_id}/access/{org.identities['bob']}"
    )

    assert response.status_code == 204
    rows = org.admin.get(f"/api/v1/contacts/{contact_id}/access").json()["items"]
    assert {row["identity_id"] for row in rows} == {
        org.identities["alice"],
        org.identities["carol"],
    }
    assert _views(org, contact_id) == {"admin": SEEN, "alice": SEEN, "bob": HIDDEN}


def test_revoke_of_explicit_row_hides_contact_from_that_identity(org: Org) -> None:
    ids = [org.identities["alice"], org.identities["bob"]]
    contact_id = _contact(org, access_identity_ids=ids)

    response = org.admin.delete(
        f"/api/v1/contacts/{contact_id}/access/{org.identities['alice']}"
    )

    assert response.status_code == 204
    assert _views(org, contact_id) == {"admin": SEEN, "alice": HIDDEN, "bob": SEEN}


def test_revoke_of_identity_without_row_is_404(org: Org) -> None:
    contact_id = _contact(org, access_identity_ids=[org.identities["alice"]])

    response = org.admin.delete(
        f"/api/v1/contacts/{contact_id}/access/{org.identities['bob']}"
    )

    assert response.status_code == 404


def test_grant_revoke_reset_sequence_is_seen_by_three_callers(org: Org) -> None:
    """Visibility follows every step of a contact's access history."""
    contact_id = _contact(org)
    access = f"/api/v1/contacts/{contact_id}/access"
    alice, bob = org.identities["alice"], org.identities["bob"]
    steps = []

    steps.append(_views(org, contact_id))
    org.admin.delete(f"{access}/{alice}")
    steps.append(_views(org, contact_id))
    org.admin.delete(f"{access}/{bob}")
    steps.append(_views(org, contact_id))
    org.admin.post(access, json={"identity_id": alice})
    steps.append(_views(org, contact_id))
    org.admin.post(access, json={"identity_id": None})
    steps.append(_views(org, contact_id))

    assert steps == [
        {"admin": SEEN, "alice": SEEN, "bob": SEEN},
        {"admin": SEEN, "alice": HIDDEN, "bob": SEEN},
        {"admin": SEEN, "alice": HIDDEN, "bob": HIDDEN},
        {"admin": SEEN, "alice": SEEN, "bob": HIDDEN},
        {"admin": SEEN, "alice": SEEN, "bob": SEEN},
    ]


def test_access_changes_move_updated_at(org: Org) -> None:
    contact_id = _contact(org)
    path = f"/api/v1/contacts/{contact_id}"
    before = org.admin.get(path).json()["updated_at"]

    org.admin.delete(f"{path}/access/{org.identities['bob']}")
    after_revoke = org.admin.get(path).json()["updated_at"]
    org.admin.post(f"{path}/access", json={"identity_id": None})
    after_reset = org.admin.get(path).json()["updated_at"]

    assert before < after_revoke < after_reset


def test_agent_cannot_grant_or_reset(org: Org) -> None:
    contact_id = _contact(org, access_identity_ids=[org.identities["alice"]])
    access = f"/api/v1/contacts/{contact_id}/access"

    grant = org.alice.post(access, json={"identity_id": org.identities["bob"]})
    reset = org.alice.post(access, json={"identity_id": None})

    assert (grant.status_code, reset.status_code) == (403, 403)
    assert _sees(org.bob, contact_id) == HIDDEN


def test_agent_may_revoke_only_itself(org: Org) -> None:
    contact_id = _contact(org)
    access = f"/api/v1/contacts/{contact_id}/access"

    other = org.alice.delete(f"{access}/{org.identities['bob']}")
    own = org.alice.delete(f"{access}/{org.identities['alice']}")

    assert (other.status_code, own.status_code) == (403, 204)
    assert _views(org, contact_id) == {"admin": SEEN, "alice": HIDDEN, "bob": SEEN}


def test_agent_writes_to_invisible_contact_are_404_and_change_nothing(
    org: Org,
) -> None:
    contact_id = _contact(org, access_identity_ids=[org.identities["alice"]])
    path = f"/api/v1/contacts/{contact_id}"
    before = org.admin.get(path).json()

    patch = org.bob.patch(path, json={"notes": "bob was here"})
    delete = org.bob.delete(path)
    revoke = org.bob.delete(f"{path}/access/{org.identities['bob']}")

    assert (patch.status_code, delete.status_code, revoke.status_code) == (
        404,
        404,
        404,
    )
    assert org.admin.get(path).json() == before


def test_agent_can_edit_and_delete_visible_contact(org: Org) -> None:
    contact_id = _contact(org, access_identity_ids=[org.identities["alice"]])
    path = f"/api/v1/contacts/{contact_id}"

    patch = org.alice.patch(path, json={"notes": "alice was here"})
    delete = org.alice.delete(path)

    assert patch.status_code == 200
    assert patch.json()["notes"] == "alice was here"
    assert delete.status_code == 204
    assert org.admin.get(path).status_code == 404


def test_agent_creates_wildcard_or_own_only_contacts(org: Org) -> None:
    own = org.alice.post(
        "/api/v1/contacts",
        json={"given_name": "Mine", "access_identity_ids": [org.identities["alice"]]},
    )
    shared = org.alice.post("/api/v1/contacts", json={"given_name": "Ours"})
    for_bob = org.alice.post(
        "/api/v1/contacts",
        json={"given_name": "Bobs", "access_identity_ids": [org.identities["bob"]]},
    )

    assert (own.status_code, shared.status_code, for_bob.status_code) == (
        201,
        201,
        403,
    )
    assert visible_ids(org.bob) == {shared.json()["id"]}
    assert visible_ids(org.alice) == {own.json()["id"], shared.json()["id"]}


def test_unclaimed_key_is_403_on_every_contacts_endpoint(org: Org) -> None:
    contact_id = _contact(org)
    client = org.carol_unclaimed
    path = f"/api/v1/contacts/{contact_id}"

    statuses = [
        client.get("/api/v1/contacts").status_code,
        client.post("/api/v1/contacts", json={"given_name": "X"}).status_code,
        client.get("/api/v1/contacts/lookup", params={"email": "x@y.z"}).status_code,
        client.get(path).status_code,
        client.get(f"{path}.vcf").status_code,
        client.patch(path, json={"notes": "x"}).status_code,
        client.delete(path).status_code,
        client.get(f"{path}/access").status_code,
        client.post(f"{path}/access", json={"identity_id": None}).status_code,
        client.delete(f"{path}/access/{org.identities['carol']}").status_code,
        client.post(
            "/api/v1/contacts/import",
            content=b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:X\r\nEND:VCARD\r\n",
            headers={"Content-Type": "text/vcard"},
        ).status_code,
    ]

    assert statuses == [403] * len(statuses)
    assert _sees(org.admin, contact_id) == SEEN


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "ik_not-a-real-key"},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
def test_missing_or_unknown_credential_is_401(
    org: Org, headers: dict[str, str]
) -> None:
    client = httpx.Client(base_url=org.server.url, headers=headers)

    with client:
        statuses = {
            client.get("/api/v1/contacts").status_code,
            client.get("/api/whoami").status_code,
            client.get("/api/v1/identities").status_code,
        }

    assert statuses == {401}


def test_token_signed_with_another_secret_is_401(org: Org) -> None:
    token = human_token(org.id, secret="some-other-secret-of-32-bytes-or-more")
    client = httpx.Client(
        base_url=org.server.url, headers={"Authorization": f"Bearer {token}"}
    )

    with client:
        response = client.get("/api/v1/contacts")

    assert response.status_code == 401


def test_expired_token_is_401(org: Org) -> None:
    token = human_token(org.id, exp=1_000_000_000)
    client = httpx.Client(
        base_url=org.server.url, headers={"Authorization": f"Bearer {token}"}
    )

    with client:
        response = client.get("/api/v1/contacts")

    assert response.status_code == 401


def test_human_sees_everything_and_may_grant(org: Org) -> None:
    contact_id = _contact(org, access_identity_ids=[])

    grant = org.human.post(
        f"/api/v1/contacts/{contact_id}/access",
        json={"identity_id": org.identities["bob"]},
    )

    assert grant.status_code == 201
    assert _views(org, contact_id) == {"admin": SEEN, "alice": HIDDEN, "bob": SEEN}


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (
            "admin",
            {"auth_type": "api_key", "auth_subtype": "api_key.admin_scoped"},
        ),
        (
            "alice",
            {
                "auth_type": "api_key",
                "auth_subtype": "api_key.agent_scoped.claimed",
                "agent_handle": "alice",
            },
        ),
        (
            "carol_unclaimed",
            {"auth_type": "api_key", "auth_subtype": "api_key.agent_scoped.unclaimed"},
        ),
        ("human", {"auth_type": "jwt", "user_id": "person-1"}),
    ],
)
def test_whoami_describes_each_caller_kind(
    org: Org, role: str, expected: dict[str, str]
) -> None:
    response = org.clients[role].get("/api/whoami")

    assert response.status_code == 200
    answer = response.json()
    assert answer["organization_id"] == org.id
    assert {name: answer[name] for name in expected} == expected
    if role == "alice":
        assert answer["identity_id"] == org.identities["alice"]


def test_identities_are_listed_and_found_by_handle(org: Org) -> None:
    listed = org.alice.get("/api/v1/identities")
    one = org.alice.get("/api/v1/identities/bob")
    missing = org.alice.get("/api/v1/identities/nobody")

    assert [i["agent_handle"] for i in listed.json()] == ["alice", "bob", "carol"]
    assert one.json()["id"] == org.identities["bob"]
    assert set(one.json()) >= {
        "id",
        "organization_id",
        "agent_handle",
        "email_address",
        "created_at",
        "updated_at",
    }
    assert missing.status_code == 404


def test_only_admins_and_people_create_identities(org: Org) -> None:
    by_agent = org.alice.post("/api/v1/identities", json={"agent_handle": "dave"})
    by_admin = org.admin.post("/api/v1/identities", json={"agent_handle": "dave"})
    again = org.human.post("/api/v1/identities", json={"agent_handle": "dave"})
    bad = org.admin.post("/api/v1/identities", json={"agent_handle": "no/slash"})

    assert by_agent.status_code == 403
    assert by_admin.status_code == 201
    assert by_admin.json()["agent_handle"] == "dave"
    assert again.status_code == 409
    assert bad.status_code == 422


def test_new_identity_sees_wildcard_contacts_but_not_explicit_ones(org: Org) -> None:
    wildcard = _contact(org)
    explicit = _contact(org, access_identity_ids=[org.identities["alice"]])

    org.new_identity("dave")
    dave = org.client_for_key(org.new_agent_key("dave"))

    assert visible_ids(dave) == {wildcard}
    assert _sees(dave, explicit) == HIDDEN


def test_organizations_are_isolated(org: Org) -> None:
    other = make_org(org.server)
    theirs = new_contact(other.admin, given_name="Theirs")
    path = f"/api/v1/contacts/{theirs['id']}"

    try:
        statuses = [
            org.admin.get(path).status_code,
            org.admin.patch(path, json={"notes": "x"}).status_code,
            org.admin.delete(path).status_code,
            org.human.get(path).status_code,
            org.alice.get(path).status_code,
            org.admin.post(
                "/api/v1/contacts",
                json={
                    "given_name": "X",
                    "access_identity_ids": [other.identities["bob"]],
                },
            ).status_code,
        ]
        mine = visible_ids(org.admin)
        grant_foreign = org.admin.post(
            f"/api/v1/contacts/{_contact(org, access_identity_ids=[])}/access",
            json={"identity_id": other.identities["alice"]},
        )
    finally:
        other.close()

    assert statuses == [404] * 6
    assert theirs["id"] not in mine
    assert grant_foreign.status_code == 404


def test_server_log_never_contains_keys_or_tokens(org: Org) -> None:
    contact_id = _contact(org)
    org.alice.get(f"/api/v1/contacts/{contact_id}")
    org.human.get("/api/v1/contacts")
    org.client_for_key("ik_wrong").get("/api/v1/contacts?marker=last")

    log = org.server.wait_for_log("marker=last")

    assert "marker=last" in log
    for secret in [*org.keys.values(), human_token(org.id), "ik_wrong"]:
        assert secret not in log
