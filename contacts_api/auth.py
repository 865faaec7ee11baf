"""Who is calling: API keys (stored hashed) and signed tokens for humans.

Keys are 256-bit random strings, so a single SHA-256 is enough to store them
(no password stretching is needed for secrets that cannot be guessed), and
the lookup by hash is followed by a constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from contacts_api.db import APIKey, Identity, Organization
from contacts_api.errors import APIError

KEY_PREFIX = "ik_"

CallerKind = Literal["admin", "human", "agent", "unclaimed"]


@dataclass(frozen=True)
class JWTSettings:
    """How tokens of human users are verified: an HS256 secret or RS256 key."""

    secret: str | None = None
    public_key: str | None = None
    audience: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.secret or self.public_key)


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of one request."""

    kind: CallerKind
    organization_id: str
    identity_id: str | None = None
    key_id: str | None = None
    label: str | None = None
    subject: str | None = None

    @property
    def sees_everything(self) -> bool:
        return self.kind in ("admin", "human")


def generate_key() -> str:
    """Return a new API key text."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _from_api_key(session: Session, key: str) -> Caller:
    digest = hash_key(key)
    row = session.scalar(select(APIKey).where(APIKey.key_hash == digest))
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise APIError(401, "Invalid API key.")
    if row.kind == "admin":
        return Caller("admin", row.organization_id, key_id=row.id, label=row.label)
    identity = session.get(Identity, row.identity_id) if row.identity_id else None
    if not row.claimed or identity is None:
        return Caller("unclaimed", row.organization_id, key_id=row.id, label=row.label)
    if identity.status != "active":
        raise APIError(401, "The identity of this API key is not active.")
    return Caller(
        "agent",
        row.organization_id,
        identity_id=identity.id,
        key_id=row.id,
        label=row.label,
    )


def _from_token(session: Session, token: str, settings: JWTSettings) -> Caller:
    if not settings.enabled:
        raise APIError(401, "Bearer tokens are not accepted by this server.")
    if settings.public_key:
        key, algorithms = settings.public_key, ["RS256"]
    else:
        key, algorithms = settings.secret or "", ["HS256"]
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=settings.audience,
            options={"require": ["sub", "organization_id"]},
        )
    except jwt.PyJWTError as exc:
        raise APIError(401, f"Invalid bearer token: {exc}.") from exc
    organization_id = str(claims["organization_id"])
    if session.get(Organization, organization_id) is None:
        raise APIError(401, "The organization of this token does not exist.")
    return Caller("human", organization_id, subject=str(claims["sub"]))


def authenticate(
    session: Session,
    api_key: str | None,
    authorization: str | None,
    settings: JWTSettings,
) -> Caller:
    """Return the caller of a request from its credential headers."""
    if api_key:
        return _from_api_key(session, api_key)
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return _from_token(session, token.strip(), settings)
    raise APIError(
        401,
        "Missing credentials: send an X-API-Key header or a bearer token.",
        headers={"WWW-Authenticate": "Bearer"},
    )
