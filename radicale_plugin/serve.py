"""``inkbox-carddav serve``: the gateway, alone or with an embedded directory.

With ``--demo`` the Contacts API runs in the same process on SQLite, a demo
organization is prepared, and users with fresh passwords are written to the
data folder, so one command gives a working CardDAV server.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radicale import config as radicale_config

from gateway.identity import IdentityMapError
from radicale_plugin.runtime import ConfigurationError, gateway_for

DEMO_USERS = {"alice": "alice", "bob": "bob", "admin": "admin"}


@dataclass
class Demo:
    api_url: str
    admin_key: str
    agent_key: str
    passwords: dict[str, str]
    overrides: dict[str, dict[str, str]]


def load_configuration(path: str | None, overrides: dict[str, dict[str, str]]) -> Any:
    """Load a Radicale configuration file and apply command-line overrides."""
    files = [(path, False)] if path else []
    configuration = radicale_config.load(files)
    if overrides:
        configuration.update(overrides, "command line", privileged=True)
    return configuration


def _start_api(database_url: str, host: str, port: int) -> tuple[Any, str]:
    import uvicorn

    from contacts_api.app import create_app

    app = create_app(database_url)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="contacts-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"The embedded Contacts API did not start on {port}.")
        time.sleep(0.05)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return app, f"http://{host}:{bound}"


def _write_private(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o600)


def prepare_demo(data: Path, api_port: int) -> Demo:
    """Start the embedded API with the demo organization and write its users."""
    from passlib.hash import sha512_crypt

    from contacts_api.demo import prepare_demo as prepare_organization

    data.mkdir(parents=True, exist_ok=True)
    app, api_url = _start_api(f"sqlite:///{data / 'demo.db'}", "127.0.0.1", api_port)
    credentials = prepare_organization(app.state.db)

    passwords = {user: secrets.token_urlsafe(9) for user in DEMO_USERS}
    _write_private(
        data / "demo-users",
        "".join(f"{u}:{sha512_crypt.hash(p)}\n" for u, p in passwords.items()),
    )
    _write_private(data / "demo-admin.key", credentials["admin_key"] + "\n")
    (data / "demo-identities").write_text(
        "".join(f"{user} = {handle}\n" for user, handle in DEMO_USERS.items()),
        encoding="utf-8",
    )
    overrides = {
        "auth": {
            "htpasswd_filename": str(data / "demo-users"),
            "htpasswd_encryption": "sha512",
        },
        "storage": {
            "api_url": api_url,
            "api_key_file": str(data / "demo-admin.key"),
            "identity_mode": "directory",
            "identity_map": str(data / "demo-identities"),
            "state_database": f"sqlite:///{data / 'demo-gateway.db'}",
        },
    }
    return Demo(
        api_url,
        credentials["admin_key"],
        credentials["agent_key"],
        passwords,
        overrides,
    )


def banner(host: str, port: int, demo: Demo) -> str:
    base = f"http://{host}:{port}"
    users = "\n".join(
        f"    {user:<6} password {password}   ({DEMO_USERS[user]})"
        for user, password in demo.passwords.items()
    )
    return (
        f"\nCardDAV gateway: {base}/   (address book: {base}/<user>/contacts/)\n"
        f"  users (passwords are new on every start):\n{users}\n"
        f"  Phones and Thunderbird: server {base}/, user alice, the password above.\n"
        f"Contacts API: {demo.api_url}/api/v1\n"
        f"  admin key: {demo.admin_key}\n"
        f"  agent key: {demo.agent_key}  (identity 'alice')\n"
    )


def run(args: Any) -> int:
    """Run ``inkbox-carddav serve``."""
    from radicale_plugin.app import serve

    overrides: dict[str, dict[str, str]] = {
        "server": {"hosts": f"{args.host}:{args.port}"}
    }
    demo = None
    if args.demo:
        demo = prepare_demo(Path(args.data), args.api_port)
        for section, values in demo.overrides.items():
            overrides.setdefault(section, {}).update(values)
    if args.api_url:
        overrides.setdefault("storage", {})["api_url"] = args.api_url
    config_path = args.config
    if config_path is None and Path("config/radicale.conf").exists():
        config_path = "config/radicale.conf"
    configuration = load_configuration(config_path, overrides)
    try:
        # Build the core now, so a configuration mistake is one clear line
        # instead of a traceback from inside Radicale's start-up.
        gateway_for(configuration)
    except (ConfigurationError, IdentityMapError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if demo is not None:
        print(banner(args.host, args.port, demo), flush=True)
    serve(configuration)
    return 0
