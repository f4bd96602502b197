"""Filters that check user input on the controller and return readable problems.

Each filter returns a list of problem strings (empty when the value is fine), so a
role's preflight can assert on the list and print it, and the Python wrapper can
call the same functions before it launches anything.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote, urlsplit

DOCUMENTATION = ""

_SA_REQUIRED = ("type", "client_email", "private_key")
_PG_SCHEMES = ("postgresql", "postgresql+psycopg2", "postgresql+psycopg", "postgres")


def service_account_key_problems(path: str) -> list[str]:
    """Problems with the service-account key file at ``path`` on the controller."""
    if not path:
        return ["no key file given"]
    if not os.path.isfile(path):
        return [f"{path} does not exist or is not a file"]
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        return [f"{path} cannot be read ({exc.strerror})"]
    except ValueError as exc:
        return [f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})"]
    if not isinstance(data, dict):
        return [f"{path} holds JSON but not an object"]
    problems = [f"{path} lacks the field '{key}'" for key in _SA_REQUIRED if not data.get(key)]
    if data.get("type") and data["type"] != "service_account":
        problems.append(f"{path} has type '{data['type']}', expected 'service_account'")
    key = data.get("private_key") or ""
    if key and "PRIVATE KEY-----" not in key:
        problems.append(f"{path} has a private_key that is not a PEM key")
    return problems


def backend_uri_problems(uri: str) -> list[str]:
    """Problems with a PostgreSQL backend store URI (the password is never echoed)."""
    if not uri:
        return ["the URI is empty"]
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        return [f"the URI does not parse ({exc})"]
    problems = []
    if parts.scheme not in _PG_SCHEMES:
        problems.append(f"the scheme is '{parts.scheme}', expected one of {', '.join(_PG_SCHEMES)}")
    if not parts.hostname:
        problems.append("the URI names no host")
    if not parts.username:
        problems.append("the URI names no user")
    if not parts.password:
        problems.append("the URI carries no password")
    if not parts.path.strip("/"):
        problems.append("the URI names no database")
    if port is not None and not 1 <= port <= 65535:
        problems.append(f"the port {port} is out of range")
    return problems


def psycopg2_uri(uri: str) -> str:
    """Name the psycopg2 driver explicitly: SQLAlchemy 2.1 maps postgresql:// to psycopg 3."""
    scheme, sep, rest = uri.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg2://{rest}"
    return uri


def uri_quote(value) -> str:
    """Percent-encode a URI component completely (``/``, ``@`` and ``:`` included)."""
    return quote(str(value), safe="")


class FilterModule:
    """mlflow_ansible.tracking validation filters."""

    def filters(self):
        return {
            "service_account_key_problems": service_account_key_problems,
            "backend_uri_problems": backend_uri_problems,
            "psycopg2_uri": psycopg2_uri,
            "uri_quote": uri_quote,
        }
