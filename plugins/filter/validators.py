"""Filters that check user input on the controller and return readable problems.

Each filter returns a list of problem strings (empty when the value is fine), so a
role's preflight can assert on the list and print it, and the Python wrapper can
call the same functions before it launches anything.
"""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qsl, quote, urlsplit

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


_MYSQL_SCHEMES = ("mysql", "mysql+pymysql")
_SQLITE_SCHEMES = ("sqlite",)


def backend_uri_problems(uri: str, password_required: bool = True) -> list[str]:
    """Problems with a backend store URI (the password is never echoed).

    PostgreSQL and MySQL URIs need a user, a database, and either a host or a
    unix socket (``?host=/dir`` for PostgreSQL, ``?unix_socket=/path`` for MySQL);
    a password is needed over TCP unless ``password_required`` is false (IAM
    authentication through the Cloud SQL Auth Proxy). SQLite needs an absolute file path.
    """
    if not uri:
        return ["the URI is empty"]
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        return [f"the URI does not parse ({exc})"]
    known = _PG_SCHEMES + _MYSQL_SCHEMES + _SQLITE_SCHEMES
    if parts.scheme not in known:
        return [f"the scheme is '{parts.scheme}', expected one of {', '.join(known)}"]
    if parts.scheme in _SQLITE_SCHEMES:
        path = uri.partition(":///")[2]
        if not path.startswith("/") or path.endswith("/"):
            return ["a SQLite URI must name an absolute file path: sqlite:////var/lib/mlflow/mlflow.db"]
        return []
    query = dict(parse_qsl(parts.query))
    socket = query.get("host", "") if parts.scheme in _PG_SCHEMES else query.get("unix_socket", "")
    problems = []
    if not parts.hostname and not socket.startswith("/"):
        problems.append("the URI names no host and no unix socket")
    if not parts.username:
        problems.append("the URI names no user")
    if not parts.password and not socket and password_required:
        problems.append("the URI carries no password")
    if not parts.path.strip("/"):
        problems.append("the URI names no database")
    if port is not None and not 1 <= port <= 65535:
        problems.append(f"the port {port} is out of range")
    return problems


def driver_uri(uri: str) -> str:
    """Name the driver the venv holds: SQLAlchemy 2.1 maps postgresql:// to psycopg 3
    and mysql:// to mysqlclient (a C build); mlflow-ansible installs psycopg2 and PyMySQL."""
    scheme, sep, rest = uri.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg2://{rest}"
    if sep and scheme == "mysql":
        return f"mysql+pymysql://{rest}"
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
            "driver_uri": driver_uri,
            "uri_quote": uri_quote,
        }
