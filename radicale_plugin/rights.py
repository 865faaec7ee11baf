"""Radicale rights plugin: each user reads their principal and writes one book.

Visibility of single contacts is decided in the storage plugin (Radicale's
rights see collections only); here a user gets read access to ``/`` and
``/<user>/`` and read-write access to ``/<user>/contacts/``, nothing else.
"""

from __future__ import annotations

from typing import Any

from radicale import pathutils, rights

BOOK = "contacts"


class Rights(rights.BaseRights):
    def __init__(self, configuration: Any) -> None:
        super().__init__(configuration)

    def authorization(self, user: str, user_groups: Any, path: str) -> str:
        if not user:
            return ""
        parts = pathutils.strip_path(path).split("/") if path.strip("/") else []
        if not parts:
            return "R"
        if parts[0] != user:
            return ""
        if len(parts) == 1:
            return "R"
        if len(parts) == 2 and parts[1] == BOOK:
            return "rw"
        return ""
