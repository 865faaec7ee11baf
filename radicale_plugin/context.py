"""What one request carries between our WSGI wrapper and the plugins.

Radicale handles each request in one thread, from authentication through
storage to the response, so a context variable set by the wrapper at the
start of a request is seen by the auth and storage plugins of the same
request and by no other.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

from gateway.identity import Principal


@dataclass
class Outcome:
    """A response the gateway decided on, replacing Radicale's generic one."""

    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RequestState:
    """State of one request."""

    method: str
    path: str
    raw_body: bytes | None = None
    principal: Principal | None = None
    outcome: Outcome | None = None
    # Set when the stored card differs from the client's text, so the PUT
    # response must not carry an ETag the client would take for its own.
    transformed: bool = False
    # The vCard version the client asked for (Accept, or address-data in a
    # REPORT); None serves the configured default.
    version: Literal["3.0", "4.0"] | None = None
    view_cache: dict[str, object] = field(default_factory=dict)


current: ContextVar[RequestState | None] = ContextVar("inkbox_request", default=None)


def state() -> RequestState | None:
    return current.get()
