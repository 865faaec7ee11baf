"""The ``inkbox-carddav`` command: the API service, administration and import."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_DATABASE = "sqlite:///data/contacts.db"


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        default=os.environ.get("INKBOX_DATABASE", DEFAULT_DATABASE),
        help="database URL: sqlite:///PATH or postgresql+psycopg://... "
        "(default: $INKBOX_DATABASE or %(default)s)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inkbox-carddav",
        description="CardDAV gateway for an organization's Contacts API.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    api = commands.add_parser("api", help="serve the Contacts API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    _database_option(api)
    api.add_argument(
        "--jwt-secret",
        default=os.environ.get("INKBOX_JWT_SECRET"),
        help="HS256 secret for people's bearer tokens (or $INKBOX_JWT_SECRET)",
    )
    api.add_argument(
        "--jwt-public-key",
        default=os.environ.get("INKBOX_JWT_PUBLIC_KEY_FILE"),
        help="PEM file of the RS256 public key for bearer tokens",
    )
    api.add_argument(
        "--demo",
        action="store_true",
        help="create a demo organization and print fresh keys for it",
    )
    api.add_argument("--log-level", default="info")

    admin = commands.add_parser("admin", help="organizations, identities, keys")
    objects = admin.add_subparsers(dest="object", required=True)

    org = objects.add_parser("org").add_subparsers(dest="action", required=True)
    org_create = org.add_parser("create", help="create an organization")
    org_create.add_argument("name")
    _database_option(org_create)
    org_list = org.add_parser("list", help="list organizations")
    _database_option(org_list)

    identity = objects.add_parser("identity").add_subparsers(
        dest="action", required=True
    )
    identity_create = identity.add_parser("create", help="create an agent identity")
    identity_create.add_argument("handle")
    identity_create.add_argument("--org", required=True, help="organization id or name")
    identity_create.add_argument("--display-name")
    identity_create.add_argument("--email")
    _database_option(identity_create)

    key = objects.add_parser("key").add_subparsers(dest="action", required=True)
    key_create = key.add_parser("create", help="create an API key")
    key_create.add_argument("--org", required=True, help="organization id or name")
    kind = key_create.add_mutually_exclusive_group(required=True)
    kind.add_argument("--admin", action="store_true", help="an admin key")
    kind.add_argument("--identity", metavar="HANDLE", help="an agent key")
    key_create.add_argument(
        "--unclaimed", action="store_true", help="an agent key not yet claimed"
    )
    key_create.add_argument("--label")
    _database_option(key_create)

    gateway = commands.add_parser("serve", help="serve the CardDAV gateway")
    gateway.add_argument(
        "--config",
        help="Radicale configuration file (default: config/radicale.conf if present)",
    )
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=5232)
    gateway.add_argument("--api-url", help="Contacts API root (overrides the file)")
    gateway.add_argument(
        "--demo",
        action="store_true",
        help="run the Contacts API in-process with a demo organization and users",
    )
    gateway.add_argument("--api-port", type=int, default=8000, help="with --demo")
    gateway.add_argument("--data", default="data", help="data folder for --demo")

    importer = commands.add_parser("import", help="bulk-import a vCard file")
    importer.add_argument("file")
    importer.add_argument(
        "--url", required=True, help="service root, e.g. http://127.0.0.1:8000"
    )
    importer.add_argument(
        "--api-key", default="", help="API key (default: $INKBOX_API_KEY)"
    )
    return parser


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _run_admin(args: argparse.Namespace) -> int:
    from contacts_api import admin
    from contacts_api.db import Database

    db = Database(args.database)
    db.create_schema()
    try:
        if args.object == "org" and args.action == "create":
            _print_json(admin.create_organization(db, args.name))
        elif args.object == "org":
            _print_json(admin.list_organizations(db))
        elif args.object == "identity":
            _print_json(
                admin.create_identity(
                    db, args.org, args.handle, args.display_name, args.email
                )
            )
        else:
            _print_json(
                admin.create_key(
                    db,
                    args.org,
                    admin=args.admin,
                    identity=args.identity,
                    unclaimed=args.unclaimed,
                    label=args.label,
                )
            )
    except admin.AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    return 0


def _run_api(args: argparse.Namespace) -> int:
    import uvicorn

    from contacts_api.app import create_app
    from contacts_api.auth import JWTSettings

    public_key = None
    if args.jwt_public_key:
        public_key = Path(args.jwt_public_key).read_text(encoding="utf-8")
    app = create_app(
        args.database, JWTSettings(secret=args.jwt_secret, public_key=public_key)
    )
    if args.demo:
        from contacts_api.demo import prepare_demo

        credentials = prepare_demo(app.state.db)
        base = f"http://{args.host}:{args.port}"
        print(
            f"\nContacts API: {base}/api/v1  (OpenAPI: {base}/openapi.json)\n"
            f"  organization: {credentials['organization']['name']}\n"
            f"  admin key:    {credentials['admin_key']}\n"
            f"  agent key:    {credentials['agent_key']}  "
            f"(identity '{credentials['agent_handle']}')\n"
            f"Try: curl -H 'X-API-Key: {credentials['agent_key']}' "
            f"{base}/api/v1/contacts\n",
            flush=True,
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from gateway.importer import run_import_command

    return run_import_command(args.file, args.url, args.api_key)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.command == "admin":
        return _run_admin(args)
    if args.command == "api":
        return _run_api(args)
    if args.command == "serve":
        from radicale_plugin.serve import run

        return run(args)
    return _run_import(args)


if __name__ == "__main__":
    sys.exit(main())
