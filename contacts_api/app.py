"""The HTTP surface of the Contacts API (FastAPI)."""

import logging
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from contacts_api import service
from contacts_api.admin import add_identity, identity_json
from contacts_api.auth import Caller, JWTSettings, authenticate
from contacts_api.db import Database, Identity
from contacts_api.errors import APIError, forbidden, not_found
from gateway.vcard import contact_to_vcard, split_vcards, vcard_to_contact

logger = logging.getLogger(__name__)

MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_IMPORT_CARDS = 1000
VCARD_TYPES = ("text/vcard", "text/x-vcard")
# Extension of this implementation: the organization's change counter on
# every list response and contact write, so that a cache can check
# freshness cheaply and follow its own writes.
REVISION_HEADER = "X-Directory-Revision"


class GrantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identity_id: str | None


class IdentityBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_handle: str
    display_name: str | None = None
    email_address: str | None = None


def create_app(database_url: str, jwt_settings: JWTSettings | None = None) -> FastAPI:
    """Build the application on a database, creating its schema if needed."""
    db = Database(database_url)
    db.create_schema()
    settings = jwt_settings or JWTSettings()
    app = FastAPI(
        title="Contacts API",
        version="1.0",
        description="This project's implementation of the Contacts API contract.",
    )
    app.state.db = db

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"] if part != "body")
            problems.append(f"{where}: {error['msg']}" if where else error["msg"])
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    def current_caller(
        x_api_key: Annotated[str | None, Header()] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Caller:
        with db.read() as session:
            return authenticate(session, x_api_key, authorization, settings)

    def agent_or_better(caller: Caller = Depends(current_caller)) -> Caller:
        if caller.kind == "unclaimed":
            raise forbidden("This agent API key is not claimed yet.")
        return caller

    AnyCaller = Annotated[Caller, Depends(current_caller)]
    Member = Annotated[Caller, Depends(agent_or_better)]

    @app.get("/api/whoami")
    def whoami(caller: AnyCaller) -> dict[str, Any]:
        if caller.kind == "human":
            return {
                "auth_type": "jwt",
                "auth_subtype": "jwt",
                "organization_id": caller.organization_id,
                "user_id": caller.subject,
            }
        subtype = {
            "admin": "api_key.admin_scoped",
            "agent": "api_key.agent_scoped.claimed",
            "unclaimed": "api_key.agent_scoped.unclaimed",
        }[caller.kind]
        answer: dict[str, Any] = {
            "auth_type": "api_key",
            "auth_subtype": subtype,
            "organization_id": caller.organization_id,
            "key_id": caller.key_id,
            "label": caller.label,
        }
        if caller.kind == "agent":
            with db.read() as session:
                identity = session.get(Identity, caller.identity_id)
                handle = identity.agent_handle if identity else None
            answer["identity_id"] = caller.identity_id
            answer["agent_handle"] = handle
        return answer

    @app.get("/api/v1/identities")
    def list_identities(caller: Member) -> list[dict[str, Any]]:
        with db.read() as session:
            rows = session.scalars(
                select(Identity)
                .where(Identity.organization_id == caller.organization_id)
                .order_by(Identity.agent_handle)
            )
            return [identity_json(row) for row in rows]

    @app.get("/api/v1/identities/{agent_handle}")
    def get_identity(agent_handle: str, caller: Member) -> dict[str, Any]:
        with db.read() as session:
            row = session.scalar(
                select(Identity).where(
                    Identity.organization_id == caller.organization_id,
                    Identity.agent_handle == agent_handle,
                )
            )
            if row is None:
                raise not_found("Identity", agent_handle)
            return identity_json(row)

    @app.post("/api/v1/identities", status_code=201)
    def post_identity(body: IdentityBody, caller: Member) -> dict[str, Any]:
        if not caller.sees_everything:
            raise forbidden("Only administrators and people may create identities.")
        with db.write() as session:
            identity = add_identity(
                session,
                caller.organization_id,
                body.agent_handle,
                body.display_name,
                body.email_address,
            )
            return identity_json(identity)

    @app.post("/api/v1/contacts", status_code=201)
    def post_contact(
        caller: AnyCaller,
        response: Response,
        body: Annotated[dict[str, Any], Body()],
    ) -> dict[str, Any]:
        with db.write() as session:
            contact = service.create_contact(session, caller, body)
            _revision_header(response, session, caller)
        return contact

    @app.get("/api/v1/contacts")
    def get_contacts(
        caller: AnyCaller,
        response: Response,
        q: Annotated[str | None, Query(max_length=service.MAX_QUERY)] = None,
        order: Literal["name", "recent"] = "name",
        limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = (
            service.DEFAULT_LIMIT
        ),
        offset: Annotated[int, Query(ge=0, le=service.MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        with db.read() as session:
            items = service.list_contacts(
                session, caller, q=q, order=order, limit=limit, offset=offset
            )
            revision = service.directory_revision(session, caller)
        response.headers[REVISION_HEADER] = str(revision)
        return {"items": items}

    @app.get("/api/v1/contacts/lookup")
    def lookup(
        caller: AnyCaller,
        email: str | None = None,
        email_contains: str | None = None,
        email_domain: str | None = None,
        phone: str | None = None,
        phone_contains: str | None = None,
        limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = (
            service.DEFAULT_LIMIT
        ),
    ) -> dict[str, Any]:
        filters = {
            "email": email,
            "email_contains": email_contains,
            "email_domain": email_domain,
            "phone": phone,
            "phone_contains": phone_contains,
        }
        with db.read() as session:
            items = service.lookup_contacts(session, caller, filters, limit=limit)
        return {"items": items}

    @app.post("/api/v1/contacts/import")
    async def import_contacts(request: Request, caller: AnyCaller) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "")
        media_type = content_type.split(";")[0].strip().lower()
        if media_type not in VCARD_TYPES:
            raise APIError(
                415,
                f"Unsupported content type '{media_type or '(none)'}': send "
                "text/vcard or text/x-vcard.",
            )
        body = await _read_limited(request, MAX_IMPORT_BYTES)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise APIError(
                422, f"The body is not UTF-8 (byte {exc.start} cannot be decoded)."
            ) from None
        cards = split_vcards(text)
        if not cards:
            raise APIError(422, "The body holds no vCard.")
        if len(cards) > MAX_IMPORT_CARDS:
            raise APIError(
                413,
                f"The body holds {len(cards)} cards; at most {MAX_IMPORT_CARDS} "
                "are accepted per request.",
            )

        def run() -> dict[str, Any]:
            with db.write() as session:
                return service.import_cards(session, caller, cards, vcard_to_contact)

        return await run_in_threadpool(run)

    @app.get("/api/v1/contacts/{contact_id}.vcf")
    def export_contact(contact_id: str, caller: AnyCaller) -> Response:
        with db.read() as session:
            contact = service.get_contact(session, caller, contact_id)
        return Response(
            contact_to_vcard(contact).encode("utf-8"),
            media_type="text/vcard; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{contact_id}.vcf"'},
        )

    @app.get("/api/v1/contacts/{contact_id}")
    def get_contact(contact_id: str, caller: AnyCaller) -> Any:
        with db.read() as session:
            return service.get_contact(session, caller, contact_id)

    @app.patch("/api/v1/contacts/{contact_id}")
    def patch_contact(
        contact_id: str,
        caller: AnyCaller,
        response: Response,
        body: Annotated[dict[str, Any], Body()],
    ) -> Any:
        with db.write() as session:
            contact = service.update_contact(session, caller, contact_id, body)
            _revision_header(response, session, caller)
        return contact

    @app.delete("/api/v1/contacts/{contact_id}", status_code=204)
    def delete_contact(contact_id: str, caller: AnyCaller) -> Response:
        response = Response(status_code=204)
        with db.write() as session:
            service.delete_contact(session, caller, contact_id)
            _revision_header(response, session, caller)
        return response

    @app.post("/api/v1/contacts/{contact_id}/access", status_code=201)
    def post_access(
        contact_id: str, body: GrantBody, caller: AnyCaller
    ) -> dict[str, Any]:
        with db.write() as session:
            return service.grant_access(session, caller, contact_id, body.identity_id)

    @app.get("/api/v1/contacts/{contact_id}/access")
    def get_access(contact_id: str, caller: AnyCaller) -> dict[str, Any]:
        with db.read() as session:
            return {"items": service.list_access(session, caller, contact_id)}

    @app.delete("/api/v1/contacts/{contact_id}/access/{identity_id}", status_code=204)
    def delete_access(contact_id: str, identity_id: str, caller: AnyCaller) -> Response:
        with db.write() as session:
            service.revoke_access(session, caller, contact_id, identity_id)
        return Response(status_code=204)

    return app


def _revision_header(response: Response, session: Any, caller: Caller) -> None:
    """Name the revision a write produced, read inside its own transaction.

    A client that cached a listing at revision N and sees N + 1 here knows
    that its own write was the only change, and can update its copy.
    """
    response.headers[REVISION_HEADER] = str(service.directory_revision(session, caller))


async def _read_limited(request: Request, limit: int) -> bytes:
    """Read the body, refusing with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"The body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"The body is larger than {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)
