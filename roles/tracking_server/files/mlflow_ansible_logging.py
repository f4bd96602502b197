"""JSON log lines for the MLflow tracking server, one object per line on stdout/stderr (so, under systemd, the
journal), each request's lines carrying the request id nginx sent (X-Request-ID).

The tracking_server role installs this module in the helpers' directory (on the server's PYTHONPATH) when
tracking_server_log_format is json, and points the HTTP servers at it:

- uvicorn: ``--log-config mlflow_ansible_uvicorn_logging.json``. uvicorn's own access line knows neither the
  request's headers, nor its latency, nor its size; so the config's ``request_log`` filter factory
  (``install_uvicorn_request_log``) wraps the ASGI app uvicorn loads in ``RequestLogMiddleware``, which
  logs one line per request when it ends (and keeps the request id in a context variable, which MLflow's
  own log lines during the request pick up: the Flask app runs in a thread that copies the context).
  Should a uvicorn release no longer have ``Config.load``, uvicorn's own access line is kept, in JSON,
  without the request id.
- gunicorn: ``-c python:mlflow_ansible_gunicorn_logging`` (its logging dictionary, and hooks that set the
  request id for the request's thread).

Fields: time (UTC, ISO 8601), level, logger, message, and for a request: request_id, user (the name of an
Authorization: Basic header, never the password), method, path (without the query string), status,
latency_s, bytes (the response body's). Healthy /health checks (status 200) are not logged: a load
balancer asks every few seconds. Nothing else of the request (headers, query, body) is logged.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime

# The request id of the request this thread or task serves (None outside requests).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("mlflow_ansible_request_id", default=None)
# nginx's $request_id is 32 hex digits; a value sent by someone else is kept only if it looks like an id.
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ACCESS_LOGGER = "mlflow_ansible.access"
# The loggers MLflow gives a handler of its own when it is imported (mlflow/utils/logging_utils.py).
MLFLOW_LOGGERS = ("mlflow", "sqlalchemy.engine", "alembic", "huey")
_uvicorn_middleware = False


def request_id_from(value) -> str | None:
    """A request id from a header value, or None when it is missing or does not look like one."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str) and _REQUEST_ID_PATTERN.match(value):
        return value
    return None


def basic_auth_user(value) -> str | None:
    """The user name of an ``Authorization: Basic`` header value; never the password."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, colon, _ = decoded.partition(":")
    return user if colon and user else None


def _is_quiet(http: Mapping) -> bool:
    """A healthy health check: not worth a line."""
    return http.get("path") == "/health" and http.get("status") == 200


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the request id and the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        http = getattr(record, "http", None)
        if isinstance(http, Mapping):
            entry.update(http)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def _request_line(http: Mapping) -> str:
    return f"{http.get('method')} {http.get('path')} {http.get('status')}"


class GunicornAccessFilter(logging.Filter):
    """gunicorn's access record (its args are the request's atoms, headers and environment included) to the
    fields above; the record's message (gunicorn's access_log_format) is never used."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args if isinstance(record.args, Mapping) else {}
        user = atoms.get("u")
        http = {
            "user": user if user and user != "-" else None,
            "method": atoms.get("m"),
            "path": atoms.get("U"),
            "status": _int(atoms.get("s")),
            "latency_s": float(atoms.get("L") or 0),
            "bytes": _int(atoms.get("B")),
        }
        if _is_quiet(http):
            return False
        record.http = http
        record.request_id = request_id_from(atoms.get("{x-request-id}i"))
        # The atoms hold every request header (Authorization too): no handler may format them.
        record.msg, record.args = _request_line(http), ()
        return True


class UvicornAccessFilter(logging.Filter):
    """uvicorn's own access line: dropped when RequestLogMiddleware logs the requests, else its args
    (client, method, path with query, HTTP version, status) to the fields above, without the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _uvicorn_middleware:
            return False
        try:
            _client, method, full_path, _version, status = record.args
        except (TypeError, ValueError):
            return True
        http = {"method": method, "path": str(full_path).split("?", 1)[0], "status": _int(status)}
        if _is_quiet(http):
            return False
        record.http = http
        record.msg, record.args = _request_line(http), ()
        return True


class RequestLogMiddleware:
    """ASGI middleware: one access line per HTTP request when it ends; the request id in REQUEST_ID meanwhile."""

    def __init__(self, app) -> None:
        self.app = app
        self.logger = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        request_id = request_id_from(headers.get(b"x-request-id"))
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        response = {"status": 0, "bytes": 0}

        async def send_logged(message):
            if message.get("type") == "http.response.start":
                response["status"] = message.get("status", 0)
            elif message.get("type") == "http.response.body":
                response["bytes"] += len(message.get("body") or b"")
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            http = {
                "user": basic_auth_user(headers.get(b"authorization")),
                "method": scope.get("method"),
                "path": scope.get("path"),
                # No response started: uvicorn answers 500 itself.
                "status": response["status"] or 500,
                "latency_s": round(time.perf_counter() - started, 6),
                "bytes": response["bytes"],
            }
            if not _is_quiet(http):
                self.logger.info(_request_line(http), extra={"http": http, "request_id": request_id})
            REQUEST_ID.reset(token)


def json_mlflow_loggers() -> None:
    """MLflow's own handlers (set when it is imported, after the logging config) write JSON too."""
    formatter = JsonFormatter()
    for name in MLFLOW_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)


def install_uvicorn_request_log() -> logging.Filter:
    """The uvicorn config's ``request_log`` filter factory: wraps the app uvicorn loads (in every worker)
    in RequestLogMiddleware, then turns MLflow's handlers to JSON; returns the filter of uvicorn's own
    access line."""
    global _uvicorn_middleware
    try:
        from uvicorn.config import Config

        load = Config.load
    except (ImportError, AttributeError):  # pragma: no cover - a uvicorn without Config.load
        return UvicornAccessFilter()
    if not getattr(load, "_mlflow_ansible", False):

        def load_with_request_log(self, *args, **kwargs):
            load(self, *args, **kwargs)
            if not isinstance(self.loaded_app, RequestLogMiddleware):
                self.loaded_app = RequestLogMiddleware(self.loaded_app)
            json_mlflow_loggers()

        load_with_request_log._mlflow_ansible = True
        Config.load = load_with_request_log
    _uvicorn_middleware = True
    return UvicornAccessFilter()


# gunicorn (mlflow_ansible_gunicorn_logging): its logging dictionary and hooks.
GUNICORN_LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "mlflow_ansible_logging.JsonFormatter"}},
    "filters": {"access": {"()": "mlflow_ansible_logging.GunicornAccessFilter"}},
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        "access": {
            "class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout", "filters": ["access"],
        },
    },
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
    "root": {"level": "WARNING", "handlers": ["stdout"]},
}


def gunicorn_pre_request(worker, req) -> None:
    """Before the app: the request id of this request, for the lines MLflow logs while serving it."""
    value = next((v for k, v in getattr(req, "headers", []) if k.upper() == "X-REQUEST-ID"), None)
    REQUEST_ID.set(request_id_from(value))


def gunicorn_post_request(worker, req, environ, resp) -> None:
    REQUEST_ID.set(None)


def gunicorn_post_worker_init(worker) -> None:
    json_mlflow_loggers()
