"""The one error type of the API; its handler writes ``{"detail": ...}``."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """A request failed with an HTTP status and a ``detail`` for the caller."""

    def __init__(
        self, status_code: int, detail: Any, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers


def not_found(what: str, value: str) -> APIError:
    return APIError(404, f"{what} '{value}' not found.")


def forbidden(reason: str) -> APIError:
    return APIError(403, reason)
