"""Filters that derive the backend database's connection values from the cloudsql_client role's
public settings: one place for what the cloudsql_client and tracking_server roles both need (the
port, the SQLAlchemy URI, the name of the database's secrets directory).

Every filter takes one dictionary, ``settings``, with the keys of the cloudsql_client_* variables
without their prefix (engine, host, port, unix_socket, user, password, database, sslmode) plus
proxy_port (the Cloud SQL Auth Proxy's port when it is enabled, else 0) and instance (its instance
connection name when it is enabled, else empty).
"""

from __future__ import annotations

from posixpath import basename
from urllib.parse import quote, urlsplit

DOCUMENTATION = ""

_DRIVERS = {"postgresql": "postgresql+psycopg2", "mysql": "mysql+pymysql"}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


def _engine(settings: dict) -> str:
    engine = settings.get("engine") or "postgresql"
    if engine not in _DRIVERS:
        raise ValueError(f"engine must be one of {sorted(_DRIVERS)}, not {engine!r}")
    return engine


def database_port(settings: dict) -> int:
    """The TCP port: the one set, else the Auth Proxy's when it is on, else the engine's."""
    port = int(settings.get("port") or 0)
    if port > 0:
        return port
    proxy_port = int(settings.get("proxy_port") or 0)
    return proxy_port if proxy_port > 0 else _DEFAULT_PORTS[_engine(settings)]


def _mysql_tls(sslmode: str) -> str:
    """PyMySQL over TCP: TLS for require and verify-*, the certificate checked for verify-*."""
    if sslmode in ("disable", "allow", "prefer"):
        return ""
    verify = str(sslmode.startswith("verify")).lower()
    hostname = str(sslmode == "verify-full").lower()
    return f"&ssl_verify_cert={verify}&ssl_check_hostname={hostname}"


def database_uri(settings: dict) -> str:
    """The SQLAlchemy URI of the backend store with the driver the venv holds (psycopg2, PyMySQL);
    user, password and database name percent-encoded whatever they hold."""
    engine = _engine(settings)
    socket = settings.get("unix_socket") or ""
    sslmode = settings.get("sslmode") or "prefer"
    user, password = (quote(str(settings.get(key) or ""), safe="") for key in ("user", "password"))
    credentials = f"{user}:{password}"
    where = "" if socket else f"{settings.get('host') or ''}:{database_port(settings)}"
    if socket:
        query = f"host={socket}" if engine == "postgresql" else f"unix_socket={socket}&charset=utf8mb4"
    else:
        query = f"sslmode={sslmode}" if engine == "postgresql" else "charset=utf8mb4" + _mysql_tls(sslmode)
    return f"{_DRIVERS[engine]}://{credentials}@{where}/{quote(str(settings.get('database') or ''), safe='')}?{query}"


def database_id(settings: dict) -> str:
    """A name for the database (its instance, or host or socket, and port, then the database name):
    it names the directory of the secrets generated once per database on the controller."""
    if settings.get("instance"):
        place = str(settings["instance"]).replace(":", "-")
    else:
        socket = settings.get("unix_socket") or ""
        place = f"{basename(socket) if socket else settings.get('host') or ''}-{database_port(settings)}"
    return f"{place}-{settings.get('database') or ''}"


def auth_uri(backend_uri: str, database: str, sqlite_dir: str = "") -> str:
    """The URI of MLflow's basic-auth database beside the backend store: the same server, user and
    options with another database name (``database``), or, for a SQLite backend, another file in
    ``sqlite_dir``."""
    parts = urlsplit(backend_uri)
    if parts.scheme == "sqlite":
        return f"sqlite:///{sqlite_dir.rstrip('/')}/{database}.db"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}/{database}{query}"


class FilterModule:
    """mlflow_ansible.tracking database filters."""

    def filters(self):
        return {"database_port": database_port, "database_uri": database_uri, "database_id": database_id,
                "auth_uri": auth_uri}
