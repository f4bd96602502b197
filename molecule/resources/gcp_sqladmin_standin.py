#!/usr/bin/env python3
"""TEST STAND-IN for two Google endpoints: the GCE metadata server's access tokens and the
Cloud SQL Admin API's on-demand backups. Not Google's services; nothing is backed up.

Google's endpoints cannot be reached from the test environments, so the tests point
tracking_server_gcp_metadata_url and tracking_server_sqladmin_url at this HTTP server on
loopback. It answers the requests the cloudsql_backup module (tasks/cloudsql_backup.yml) makes,
with the shapes of the real APIs:

- GET /computeMetadata/v1/instance/service-accounts/default/token (needs the header
  ``Metadata-Flavor: Google``, else 403 as the real server): {"access_token", "expires_in",
  "token_type": "Bearer"}; a new random token each time.
- GET /computeMetadata/v1/instance/service-accounts/default/email: the service account.
- POST /v1/projects/{project}/instances/{instance}/backupRuns (``Authorization: Bearer
  TOKEN``, a JSON BackupRun body): an Operation (kind sql#operation, name, status PENDING,
  operationType BACKUP_VOLUME, targetId, targetProject, backupContext.backupId, ...).
- GET /v1/projects/{project}/operations/{operation}: the Operation; RUNNING until it has
  been polled ``polls_until_done`` times, then DONE (with ``error.errors`` when
  ``operation_error`` is set).

Errors use Google's JSON error shape ({"error": {"code", "message", "status", "errors":
[{"reason", ...}]}}): 401 for a missing, unknown or expired token; 404 (instanceDoesNotExist)
for an instance not in ``instances``; 403 as ``deny`` says: "permission" (Cloud SQL's
notAuthorized), "scopes" (ACCESS_TOKEN_SCOPE_INSUFFICIENT) or "disabled" (SERVICE_DISABLED),
for backupRuns.insert, or for operations.get with ``deny_poll``.

Test control (not part of any Google API):
- POST /_standin/reset with a JSON object: replaces the settings below and forgets every
  request, token and operation.
- GET /_standin/requests: every request so far (method, path, the Authorization and
  Metadata-Flavor headers, the JSON body, the status answered, the time).

Settings: instances (["project/instance", ...]), deny (null|"permission"|"scopes"|"disabled"),
deny_poll (bool), polls_until_done (int), operation_error (null or {"code", "message"}),
token_expires_in (the expires_in reported, seconds), token_valid_for (seconds the stand-in
accepts a token; default: token_expires_in), service_account (email).

    python3 gcp_sqladmin_standin.py [--host 127.0.0.1] [--port 0] [--settings JSON]

prints "LISTENING http://HOST:PORT" once it accepts connections. Python 3 standard library only.

google_apis_standin.py (beside this file) serves the same Cloud SQL Admin routes for the Host
sqladmin.googleapis.com with this module's Handler, its tokens shared with its other Google APIs.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULTS = {
    "instances": ["my-project/mlflow-db"],
    "deny": None,
    "deny_poll": False,
    "polls_until_done": 3,
    "operation_error": None,
    "token_expires_in": 3599,
    "token_valid_for": None,
    "service_account": "mlflow-vm@my-project.iam.gserviceaccount.com",
}
SERVICE_ACCOUNT_PATH = "/computeMetadata/v1/instance/service-accounts/default"
INSERT_RE = re.compile(r"^/v1/projects/(?P<project>[^/]+)/instances/(?P<instance>[^/]+)/backupRuns$")
OPERATION_RE = re.compile(r"^/v1/projects/(?P<project>[^/]+)/operations/(?P<operation>[^/]+)$")

DENIALS = {
    "permission": (403, "The client is not authorized to make this request.", "notAuthorized", None),
    "scopes": (
        403,
        "Request had insufficient authentication scopes.",
        "insufficientPermissions",
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    ),
    "disabled": (
        403,
        "Cloud SQL Admin API has not been used in project 123456789 before or it is disabled.",
        "accessNotConfigured",
        "SERVICE_DISABLED",
    ),
}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def google_error(
    code: int,
    message: str,
    reason: str,
    status: str,
    info_reason: str | None = None,
    service: str = "sqladmin.googleapis.com",
) -> dict:
    error = {
        "code": code,
        "message": message,
        "status": status,
        "errors": [{"message": message, "domain": "global", "reason": reason}],
    }
    if info_reason:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": info_reason,
                "domain": "googleapis.com",
                "metadata": {"service": service},
            }
        ]
    return {"error": error}


class State:
    def __init__(self, settings: dict | None = None):
        self.lock = threading.Lock()
        self.reset(settings or {})

    def reset(self, settings: dict) -> None:
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        self.settings = {**DEFAULTS, **settings}
        self.requests: list[dict] = []
        self.tokens: dict[str, float] = {}  # token -> time it stops being accepted
        self.operations: dict[str, dict] = {}


class Handler(BaseHTTPRequestHandler):
    server_version = "gcp-sqladmin-standin/1"
    state: State

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        sys.stderr.write("standin: " + (format % args) + "\n")

    def _send(self, status: int, payload, content_type: str = "application/json") -> None:
        body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self._record is not None:
            self._record["status"] = status

    def _read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return {"_unparsable": raw.decode(errors="replace")}

    def _handle(self, method: str) -> None:
        state = self.state
        body = self._read_json() if method == "POST" else None
        self._record = None
        if self.path.startswith("/_standin/"):
            return self._control(method, body)
        with state.lock:
            self._record = {
                "method": method,
                "path": self.path,
                "time": time.time(),
                "body": body,
                "authorization": self.headers.get("Authorization"),
                "metadata_flavor": self.headers.get("Metadata-Flavor"),
            }
            state.requests.append(self._record)
            if self.path.startswith("/computeMetadata/"):
                return self._metadata(method)
            return self._sqladmin(method, body)

    def _control(self, method: str, body) -> None:
        if method == "POST" and self.path == "/_standin/reset":
            try:
                with self.state.lock:
                    self.state.reset(body or {})
            except ValueError as exc:
                return self._send(400, {"error": str(exc)})
            return self._send(200, {"settings": self.state.settings})
        if method == "GET" and self.path == "/_standin/requests":
            with self.state.lock:
                return self._send(200, self.state.requests)
        return self._send(404, {"error": "no such control endpoint"})

    def _metadata(self, method: str) -> None:
        settings = self.state.settings
        if self.headers.get("Metadata-Flavor") != "Google":
            return self._send(403, "Missing Metadata-Flavor:Google header.\n", "text/plain")
        if method == "GET" and self.path == SERVICE_ACCOUNT_PATH + "/token":
            token = "ya29.standin-" + secrets.token_urlsafe(24)
            valid_for = settings["token_valid_for"] or settings["token_expires_in"]
            self.state.tokens[token] = time.time() + valid_for
            return self._send(
                200, {"access_token": token, "expires_in": settings["token_expires_in"], "token_type": "Bearer"}
            )
        if method == "GET" and self.path == SERVICE_ACCOUNT_PATH + "/email":
            return self._send(200, settings["service_account"], "application/text")
        return self._send(404, "Not Found\n", "text/plain")

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization") or ""
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else None
        if token is None or self.state.tokens.get(token, 0) < time.time():
            self._send(
                401,
                google_error(
                    401,
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                    "or other valid authentication credential.",
                    "authError",
                    "UNAUTHENTICATED",
                ),
            )
            return False
        return True

    def _sqladmin_state(self) -> State:
        """The State the Cloud SQL Admin routes use: google_apis_standin.py's handler keeps one inside its own."""
        return self.state

    def _deny(self) -> None:
        code, message, reason, info = DENIALS[self._sqladmin_state().settings["deny"] or "permission"]
        self._send(code, google_error(code, message, reason, "PERMISSION_DENIED", info))

    def _sqladmin(self, method: str, body) -> None:
        state = self._sqladmin_state()
        settings = state.settings
        if not self._authorized():
            return None
        path = self.path.split("?", 1)[0]  # Google's client libraries add ?alt=json or ?prettyPrint=false
        insert = INSERT_RE.match(path)
        if method == "POST" and insert:
            if settings["deny"]:
                return self._deny()
            project, instance = insert["project"], insert["instance"]
            if f"{project}/{instance}" not in settings["instances"]:
                return self._send(
                    404,
                    google_error(404, "The Cloud SQL instance does not exist.", "instanceDoesNotExist", "NOT_FOUND"),
                )
            name = str(uuid.uuid4())
            operation = {
                "kind": "sql#operation",
                "targetLink": f"https://sqladmin.googleapis.com/v1/projects/{project}/instances/{instance}",
                "status": "PENDING",
                "user": settings["service_account"],
                "insertTime": _now(),
                "operationType": "BACKUP_VOLUME",
                "name": name,
                "targetId": instance,
                "selfLink": f"https://sqladmin.googleapis.com/v1/projects/{project}/operations/{name}",
                "targetProject": project,
                "backupContext": {"kind": "sql#backupContext", "backupId": str(int(time.time() * 1000))},
                "_polls": 0,
                "_description": (body or {}).get("description"),
            }
            state.operations[name] = operation
            return self._send(200, _public(operation))
        poll = OPERATION_RE.match(path)
        if method == "GET" and poll:
            if settings["deny_poll"]:
                return self._deny()
            operation = state.operations.get(poll["operation"])
            if operation is None or operation["targetProject"] != poll["project"]:
                return self._send(
                    404,
                    google_error(404, "The Cloud SQL operation does not exist.", "operationDoesNotExist", "NOT_FOUND"),
                )
            operation["_polls"] += 1
            if operation["status"] != "DONE":
                operation.setdefault("startTime", _now())
                operation["status"] = "RUNNING"
                if operation["_polls"] >= settings["polls_until_done"]:
                    operation["status"] = "DONE"
                    operation["endTime"] = _now()
                    if settings["operation_error"]:
                        operation["error"] = {
                            "kind": "sql#operationErrors",
                            "errors": [{"kind": "sql#operationError", **settings["operation_error"]}],
                        }
            return self._send(200, _public(operation))
        return self._send(404, google_error(404, f"No route for {method} {path}.", "notFound", "NOT_FOUND"))

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self):  # noqa: N802 - http.server's naming
        self._handle("POST")


def _public(operation: dict) -> dict:
    return {k: v for k, v in operation.items() if not k.startswith("_")}


def make_server(host: str = "127.0.0.1", port: int = 0, settings: dict | None = None) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"state": State(settings)})
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--settings", default="{}", help="JSON object of settings (see the module docstring)")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, json.loads(args.settings))
    host, port = server.server_address[:2]
    print(f"LISTENING http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
