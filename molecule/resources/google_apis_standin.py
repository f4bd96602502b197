#!/usr/bin/env python3
"""TEST STAND-IN for Google's APIs: the GCE metadata server, the OAuth 2.0 token endpoint, a
Cloud Storage front, the Compute Engine API (instances, firewalls) and the Cloud SQL Admin API.
Not Google's services: one process answering, in the shapes of the real APIs, the requests
Google's own client code (google-auth, google-cloud-storage, the google.cloud collection) makes.

Google's APIs cannot be reached from the test environments. The end-to-end tests map
compute.googleapis.com, www.googleapis.com, storage.googleapis.com, oauth2.googleapis.com,
sqladmin.googleapis.com and metadata.google.internal (and the address 169.254.169.254) to the
container running this server, so it routes by the HTTP Host header (its port stripped):

Plain HTTP port (the metadata server; every Host), all needing ``Metadata-Flavor: Google``
(else 403) and all answering with the header ``Metadata-Flavor: Google``:
- GET /  (google-auth's ping) and GET /computeMetadata/v1/ (directory listings end in "/")
- GET /computeMetadata/v1/project/project-id, project/numeric-project-id, project/attributes/
- GET /computeMetadata/v1/instance/id, name, hostname, zone (projects/NUM/zones/ZONE),
  machine-type, tags, instance/attributes/ and instance/attributes/KEY
- GET /computeMetadata/v1/instance/service-accounts/ (listing: default/ and EMAIL/),
  instance/service-accounts/{default|EMAIL}/ (?recursive=true: {aliases, email, scopes}),
  .../email, .../aliases, .../scopes (newline-separated), .../token (?scopes=a,b narrows the
  token's scopes to those; {"access_token", "expires_in", "token_type": "Bearer"}). With the
  setting service_account null every service-accounts/default path is 404 (a VM without one).
- GET /computeMetadata/v1/universe/universe-domain: googleapis.com
  ?recursive=true answers a directory as JSON (camelCase keys, as the real server);
  ?alt=json answers a value as JSON, ?alt=text a directory as "key value" lines.

TLS port, by Host:
- oauth2.googleapis.com (and www.googleapis.com/oauth2/v4/token): POST /token, form-encoded
  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT. The RS256 JWT is checked
  against service_account_keys (kid known, PKCS#1 v1.5 SHA-256 signature, iss = that key's
  client_email, aud = https://oauth2.googleapis.com/token, iat/exp within an hour of now); the
  token carries the JWT's scope claim. Failures: 400 {"error": "invalid_grant",
  "error_description"} (unsupported_grant_type / invalid_request for other forms), as Google.
- storage.googleapis.com (and www.googleapis.com /storage/v1, /upload/storage/v1,
  /download/storage/v1): ``Authorization: Bearer TOKEN`` is checked (unknown or expired: 401;
  no devstorage.read_only|read_write|full_control or cloud-platform scope, or read_only for
  anything but GET/HEAD: 403 insufficientPermissions / ACCESS_TOKEN_SCOPE_INSUFFICIENT), then
  the request is proxied byte for byte (method, path, query, headers but Host and hop-by-hop
  ones, body streamed with Content-Length or chunked; the response's status, headers and body
  streamed back) to --storage-upstream (a gcp-storage-emulator). The upstream's address
  (http://UPSTREAM, sent to it as the Host header) is rewritten to https://storage.googleapis.com
  in the Location header and in JSON bodies (mediaLink, a resumable upload's session URL).
- compute.googleapis.com and www.googleapis.com, /compute/v1/ (compute or cloud-platform scope,
  compute.readonly for GET):
  - GET projects/P/aggregated/instances (filter, maxResults, pageToken): items
    {"zones/Z": {"instances": [...]}} with {"warning": NO_RESULTS_ON_PAGE} for the zones without
    any. filter: `FIELD = VALUE`, `FIELD != VALUE`, or several parenthesised such terms (ANDed,
    optionally joined by AND); FIELD a path such as labels.KEY, status, name, zone, id; VALUE
    plain or "quoted", * a wildcard. Anything else: 400 invalid, as Google.
  - GET projects/P/zones/Z/instances (filter, maxResults, pageToken), projects/P/zones/Z/instances/NAME
  - GET/POST projects/P/global/firewalls, GET/PATCH/PUT/DELETE projects/P/global/firewalls/NAME:
    the writes answer a global compute#operation, RUNNING until polled compute_operation_polls
    times with GET projects/P/global/operations/OP, then DONE; the change is applied when it is
    DONE. A stored firewall is what was sent plus kind, id, creationTimestamp, selfLink and
    Google's defaults (network default, direction INGRESS, priority 1000, disabled false,
    logConfig {enable: false}, sourceRanges 0.0.0.0/0 for an INGRESS rule without sources,
    destinationRanges 0.0.0.0/0 for EGRESS). 404 notFound / 409 alreadyExists as Google.
- sqladmin.googleapis.com: the Cloud SQL Admin routes of gcp_sqladmin_standin.py (beside this
  file; its Handler is this one's base class): POST /v1/projects/P/instances/I/backupRuns,
  GET /v1/projects/P/operations/OP; settings under the key "sqladmin" (that module's settings);
  sqlservice.admin or cloud-platform scope.
- metadata.google.internal / 169.254.169.254: the metadata server, on this port too.

Tokens are shared: one issued by the metadata server or by /token is accepted by every API, for
token_valid_for seconds (default token_expires_in), with its scopes and principal (the service
account's email). Errors use Google's JSON error shape ({"error": {"code", "message", "status",
"errors": [{"message", "domain", "reason"}]}}).

Test control (not part of any Google API), on both ports for every Host:
- POST /_standin/reset with a JSON object: replaces the settings (defaults for the rest) and
  forgets every token, request, operation and firewall.
- POST /_standin/settings with a JSON object: merged into the settings (top-level keys).
- GET /_standin/requests: every request so far: time, host, method, path, query, principal
  (the token's service account, or null), status.
- GET /_standin/firewalls: the stored firewalls by project ({"P": {"NAME": {...}}}).

Settings: project_id, numeric_project_id, project_attributes ({}), instance_name, instance_id,
instance_zone, instance_hostname (default NAME.ZONE.c.PROJECT.internal), machine_type,
instance_tags ([]), attributes (the instance's, {}), service_account (email or null), scopes
(the VM's, list of URLs), token_expires_in, token_valid_for, service_account_keys ([{client_email,
private_key_id, n, e}], n and e integers), instances ([{project, zone, name, status, labels,
networkIP, natIP, network, tags, machine_type, service_account, scopes}]), zones (more zones listed in
aggregated lists), compute_operation_polls, sqladmin ({...}: gcp_sqladmin_standin's settings).

    python3 google_apis_standin.py [--host 0.0.0.0] [--tls-port 443] [--http-port 80] --cert F --key F
        [--storage-upstream http://HOST:PORT] [--settings JSON|@FILE]

prints "LISTENING https://HOST:TLS_PORT http://HOST:HTTP_PORT" once both accept connections
(port 0 picks a free one). Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import http.client
import importlib.util
import json
import re
import secrets
import ssl
import sys
import threading
import time
import uuid
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


def _load_sqladmin():
    """gcp_sqladmin_standin.py beside this file (the tests and the containers run it by its path)."""
    path = Path(__file__).resolve().with_name("gcp_sqladmin_standin.py")
    name = "gcp_sqladmin_standin"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sqladmin = _load_sqladmin()
google_error = sqladmin.google_error

SCOPE = "https://www.googleapis.com/auth/"
CLOUD_PLATFORM = SCOPE + "cloud-platform"
DEFAULTS = {
    "project_id": "my-project",
    "numeric_project_id": "123456789012",
    "project_attributes": {},
    "instance_name": "mlflow-vm",
    "instance_id": "4520031799277581759",
    "instance_zone": "europe-west1-b",
    "instance_hostname": None,
    "machine_type": "e2-standard-2",
    "instance_tags": [],
    "attributes": {},
    "service_account": "mlflow-vm@my-project.iam.gserviceaccount.com",
    "scopes": [CLOUD_PLATFORM],
    "token_expires_in": 3599,
    "token_valid_for": None,
    "service_account_keys": [],
    "instances": [],
    "zones": ["us-central1-a", "us-central1-b", "europe-west1-b", "europe-west1-c"],
    "compute_operation_polls": 2,
    "sqladmin": {},
}
TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a password
STORAGE_BASE = "https://storage.googleapis.com"
COMPUTE_BASE = "https://www.googleapis.com/compute/v1"
METADATA_HOSTS = {"metadata.google.internal", "metadata", "169.254.169.254"}
STORAGE_PREFIXES = ("/storage/v1/", "/upload/storage/v1/", "/download/storage/v1/", "/batch/storage/v1")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
# DER of the DigestInfo prefix for SHA-256 (RFC 8017, section 9.2, note 1).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
SCOPES_STORAGE_READ = {
    SCOPE + "devstorage.read_only",
    SCOPE + "devstorage.read_write",
    SCOPE + "devstorage.full_control",
}
SCOPES_STORAGE_WRITE = {SCOPE + "devstorage.read_write", SCOPE + "devstorage.full_control"}
SCOPES_COMPUTE_READ = {SCOPE + "compute", SCOPE + "compute.readonly"}
SCOPES_COMPUTE_WRITE = {SCOPE + "compute"}
SCOPES_SQLADMIN = {SCOPE + "sqlservice.admin"}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rsa_sha256_verify(n: int, e: int, message: bytes, signature: bytes) -> bool:
    """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017, 8.2.2), by hand."""
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    encoded = pow(s, e, n).to_bytes(k, "big")
    digest_info = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    expected = b"\x00\x01" + b"\xff" * (k - len(digest_info) - 3) + b"\x00" + digest_info
    return k >= len(digest_info) + 11 and secrets.compare_digest(encoded, expected)


def _stable_id(*parts: str) -> str:
    return str(int(hashlib.sha256("/".join(parts).encode()).hexdigest()[:15], 16))


class FilterError(ValueError):
    pass


TERM = re.compile(r'\s*(?P<field>[A-Za-z_][A-Za-z0-9_.\-]*)\s*(?P<op>!=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^\s()"]+)\s*')


def parse_filter(text: str) -> list[tuple[str, str, str]]:
    """The Compute list filter: one term, or parenthesised terms ANDed. Returns (field, op, value)s."""
    text = (text or "").strip()
    if not text:
        return []
    if not text.startswith("("):
        match = TERM.fullmatch(text)
        if not match:
            raise FilterError(text)
        return [_term(match)]
    terms, pos = [], 0
    group = re.compile(r"\s*(?:AND\s+)?\((?P<term>[^()]*)\)\s*")
    while pos < len(text):
        match = group.match(text, pos)
        if not match or (terms == [] and text[pos:].lstrip().startswith("AND")):
            raise FilterError(text)
        term = TERM.fullmatch(match["term"])
        if not term:
            raise FilterError(text)
        terms.append(_term(term))
        pos = match.end()
    return terms


def _term(match: re.Match) -> tuple[str, str, str]:
    value = match["value"]
    if value.startswith('"'):
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return match["field"], match["op"], value


def _field(resource: dict, path: str):
    value = resource
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif path.startswith("labels."):
            return ""
        else:
            raise FilterError(path)
    return value


def matches(resource: dict, terms: list[tuple[str, str, str]]) -> bool:
    for field, op, wanted in terms:
        value = _field(resource, field)
        if isinstance(value, bool):
            value = str(value).lower()
        value = str(value)
        candidates = [value]
        if value.startswith("https://"):
            candidates.append(value.rsplit("/", 1)[-1])  # zone = europe-west1-b matches the zone's URL
        hit = any(fnmatch.fnmatchcase(c, wanted) if "*" in wanted else c == wanted for c in candidates)
        if hit != (op == "="):
            return False
    return True


def instance_resource(instance: dict, settings: dict) -> dict:
    project = instance.get("project", settings["project_id"])
    zone, name = instance["zone"], instance["name"]
    region = zone.rsplit("-", 1)[0]
    base = f"{COMPUTE_BASE}/projects/{project}"
    nic = {
        "kind": "compute#networkInterface",
        "network": f"{base}/global/networks/{instance.get('network', 'default')}",
        "subnetwork": f"{base}/regions/{region}/subnetworks/{instance.get('network', 'default')}",
        "networkIP": instance.get("networkIP", "10.132.0.2"),
        "name": "nic0",
        "fingerprint": "standin=",
        "stackType": "IPV4_ONLY",
    }
    if instance.get("natIP"):
        nic["accessConfigs"] = [
            {
                "kind": "compute#accessConfig",
                "type": "ONE_TO_ONE_NAT",
                "name": "External NAT",
                "natIP": instance["natIP"],
                "networkTier": "PREMIUM",
            }
        ]
    email = instance.get("service_account", settings["service_account"])
    resource = {
        "kind": "compute#instance",
        "id": _stable_id(project, zone, name),
        "creationTimestamp": "2026-01-05T09:00:00.000-08:00",
        "name": name,
        "tags": {"items": list(instance.get("tags", [])), "fingerprint": "standin="},
        "machineType": f"{base}/zones/{zone}/machineTypes/{instance.get('machine_type', 'e2-standard-2')}",
        "status": instance.get("status", "RUNNING"),
        "zone": f"{base}/zones/{zone}",
        "canIpForward": False,
        "networkInterfaces": [nic],
        "disks": [
            {
                "kind": "compute#attachedDisk",
                "type": "PERSISTENT",
                "mode": "READ_WRITE",
                "source": f"{base}/zones/{zone}/disks/{name}",
                "deviceName": "persistent-disk-0",
                "index": 0,
                "boot": True,
                "autoDelete": True,
                "interface": "SCSI",
                "diskSizeGb": "10",
            }
        ],
        "metadata": {"kind": "compute#metadata", "fingerprint": "standin="},
        "selfLink": f"{base}/zones/{zone}/instances/{name}",
        "scheduling": {"onHostMaintenance": "MIGRATE", "automaticRestart": True, "preemptible": False},
        "cpuPlatform": "Intel Broadwell",
        "labelFingerprint": "standin=",
        "startRestricted": False,
        "deletionProtection": False,
        "fingerprint": "standin=",
    }
    if not resource["tags"]["items"]:
        del resource["tags"]["items"]
    if instance.get("labels"):
        resource["labels"] = dict(instance["labels"])
    if email:
        resource["serviceAccounts"] = [{"email": email, "scopes": list(instance.get("scopes", settings["scopes"]))}]
    return resource


class State:
    def __init__(self, settings: dict | None = None, storage_upstream: str | None = None):
        self.lock = threading.Lock()
        self.storage_upstream = storage_upstream
        self.reset(settings or {})

    def reset(self, settings: dict) -> None:
        self._check(settings)
        self.settings = {**DEFAULTS, **settings}
        self.sqladmin = sqladmin.State(self._sqladmin_settings())
        self.requests: list[dict] = []
        self.tokens: dict[str, dict] = {}  # token -> {"principal", "scopes", "until"}
        self.operations: dict[str, dict] = {}  # (compute) operation name -> operation
        self.firewalls: dict[str, dict[str, dict]] = {}  # project -> name -> firewall

    def merge(self, settings: dict) -> None:
        self._check(settings)
        self.settings.update(settings)
        if "sqladmin" in settings or "service_account" in settings:
            self.sqladmin.settings = {**sqladmin.DEFAULTS, **self._sqladmin_settings()}

    def _sqladmin_settings(self) -> dict:
        return {"service_account": self.settings["service_account"] or "", **self.settings["sqladmin"]}

    @staticmethod
    def _check(settings: dict) -> None:
        if not isinstance(settings, dict):
            raise ValueError("settings must be a JSON object")
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        unknown = set(settings.get("sqladmin") or {}) - set(sqladmin.DEFAULTS)
        if unknown:
            raise ValueError(f"unknown sqladmin settings: {sorted(unknown)}")

    def issue_token(self, principal: str, scopes: list[str]) -> str:
        token = "ya29.standin-" + secrets.token_urlsafe(32)
        valid_for = self.settings["token_valid_for"] or self.settings["token_expires_in"]
        self.tokens[token] = {"principal": principal, "scopes": list(scopes), "until": time.time() + valid_for}
        return token


class Handler(sqladmin.Handler):
    """Both ports' requests; the Cloud SQL Admin routes are the base class's (gcp_sqladmin_standin.Handler)."""

    server_version = "google-apis-standin/1"
    protocol_version = "HTTP/1.1"
    state: State  # set on a subclass by make_servers
    plain_http = False

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        sys.stderr.write("google-apis-standin: " + (format % args) + "\n")

    # --- plumbing -------------------------------------------------------------------------------------------

    def _send(self, status: int, payload, content_type: str = "application/json", headers: dict | None = None):
        if isinstance(payload, bytes):
            body = payload
        elif isinstance(payload, str):
            body = payload.encode()
        else:
            body = json.dumps(payload, indent=1).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if self._record is not None:
            self._record["status"] = status

    def _error(self, code: int, message: str, reason: str, status: str, info_reason=None, service=None):
        self._send(code, google_error(code, message, reason, status, info_reason, service or self._service))

    def _read_chunked(self):
        """Yields the chunks of a chunked request body (then reads its trailer)."""
        while True:
            line = self.rfile.readline(65537)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return
            yield self.rfile.read(size)
            self.rfile.readline(65537)

    def _body_chunks(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            yield from self._read_chunked()
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk

    def _read_body(self) -> bytes:
        return b"".join(self._body_chunks())

    def _token(self) -> dict | None:
        header = self.headers.get("Authorization") or ""
        if not header.startswith("Bearer "):
            return None
        grant = self.state.tokens.get(header[len("Bearer ") :].strip())
        if grant is None or grant["until"] < time.time():
            return None
        return grant

    def _check_token(self, scopes: set[str]) -> bool:
        """401 without a valid token, 403 without one of scopes (or cloud-platform); records the principal."""
        grant = self._token()
        if grant is None:
            self._error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                "authError",
                "UNAUTHENTICATED",
            )
            return False
        self._record["principal"] = grant["principal"]
        if not (set(grant["scopes"]) & (scopes | {CLOUD_PLATFORM})):
            self._error(
                403,
                "Request had insufficient authentication scopes.",
                "insufficientPermissions",
                "PERMISSION_DENIED",
                "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            )
            return False
        return True

    # --- dispatch -------------------------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        self._record = None
        self._service = "googleapis.com"
        url = urlsplit(self.path)
        host = (self.headers.get("Host") or "").strip().lower()
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        path = url.path
        if path.startswith("/_standin/"):
            return self._control(method, path, self._read_body())
        record = {
            "time": time.time(),
            "host": host,
            "method": method,
            "path": path,
            "query": url.query,
            "principal": None,
            "status": None,
        }
        with self.state.lock:
            self.state.requests.append(record)
        self._record = record
        if self.plain_http or host in METADATA_HOSTS:
            self._read_body()
            with self.state.lock:
                return self._metadata(method, path, parse_qs(url.query))
        storage = host == "storage.googleapis.com" or (
            host == "www.googleapis.com" and path.startswith(STORAGE_PREFIXES)
        )
        if storage:
            self._service = "storage.googleapis.com"
            return self._storage(method)
        body = self._read_body()
        with self.state.lock:
            if host == "oauth2.googleapis.com" or (host == "www.googleapis.com" and path == "/oauth2/v4/token"):
                return self._oauth2(method, path, body)
            if host in ("compute.googleapis.com", "www.googleapis.com") and path.startswith("/compute/v1/"):
                self._service = "compute.googleapis.com"
                return self._compute(method, path, parse_qs(url.query), body)
            if host == "sqladmin.googleapis.com":
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = {"_unparsable": body.decode(errors="replace")}
                return self._sqladmin(method, parsed)
        return self._error(404, f"No route for {method} {path} on {host or 'no Host'}.", "notFound", "NOT_FOUND")

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_HEAD(self):  # noqa: N802
        self._handle("HEAD")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_PUT(self):  # noqa: N802
        self._handle("PUT")

    def do_PATCH(self):  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self):  # noqa: N802
        self._handle("DELETE")

    def _control(self, method: str, path: str, body: bytes) -> None:
        state = self.state
        if method == "POST" and path in ("/_standin/reset", "/_standin/settings"):
            try:
                settings = json.loads(body) if body.strip() else {}
                with state.lock:
                    state.reset(settings) if path == "/_standin/reset" else state.merge(settings)
            except ValueError as exc:
                return self._send(400, {"error": str(exc)})
            return self._send(200, {"settings": state.settings})
        if method == "GET" and path == "/_standin/requests":
            with state.lock:
                return self._send(200, [dict(r) for r in state.requests])
        if method == "GET" and path == "/_standin/firewalls":
            with state.lock:
                return self._send(
                    200, {p: {n: _public(f) for n, f in fws.items()} for p, fws in state.firewalls.items()}
                )
        return self._send(404, {"error": "no such control endpoint"})

    # --- the metadata server --------------------------------------------------------------------------------

    def _metadata_tree(self) -> dict:
        s = self.state.settings
        zone = f"projects/{s['numeric_project_id']}/zones/{s['instance_zone']}"
        hostname = s["instance_hostname"] or f"{s['instance_name']}.{s['instance_zone']}.c.{s['project_id']}.internal"
        accounts = {}
        if s["service_account"]:
            account = {"aliases": ["default"], "email": s["service_account"], "scopes": list(s["scopes"])}
            accounts = {"default": account, s["service_account"]: account}
        return {
            "instance": {
                "attributes": dict(s["attributes"]),
                "hostname": hostname,
                "id": int(s["instance_id"]),
                "machine-type": f"projects/{s['numeric_project_id']}/machineTypes/{s['machine_type']}",
                "name": s["instance_name"],
                "service-accounts": accounts,
                "tags": list(s["instance_tags"]),
                "zone": zone,
            },
            "project": {
                "attributes": dict(s["project_attributes"]),
                "numeric-project-id": int(s["numeric_project_id"]),
                "project-id": s["project_id"],
            },
            "universe": {"universe-domain": "googleapis.com"},
        }

    def _metadata(self, method: str, path: str, query: dict) -> None:
        flavor = {"Metadata-Flavor": "Google", "Server": "Metadata Server for VM"}
        self._service = "metadata.google.internal"

        def send(status, payload, content_type="application/text"):
            self._send(status, payload, content_type, flavor)

        if self.headers.get("Metadata-Flavor") != "Google" or "X-Forwarded-For" in self.headers:
            return send(403, 'Missing required header "Metadata-Flavor": "Google"\n', "text/plain; charset=utf-8")
        if method not in ("GET", "HEAD"):
            return send(405, "Method not allowed\n", "text/plain; charset=utf-8")
        if path == "/":
            return send(200, "computeMetadata/\n")
        if path == "/computeMetadata/":
            return send(200, "v1/\n")
        if not path.startswith("/computeMetadata/v1/"):
            return send(404, "Not Found\n", "text/html; charset=UTF-8")
        parts = [p for p in path[len("/computeMetadata/v1/") :].split("/") if p]
        recursive = (query.get("recursive") or ["false"])[-1].lower() == "true"
        alt = (query.get("alt") or [None])[-1]
        tree = self._metadata_tree()
        s = self.state.settings
        if len(parts) == 4 and parts[:2] == ["instance", "service-accounts"] and parts[3] in ("token", "identity"):
            if parts[2] not in tree["instance"]["service-accounts"]:
                return send(404, "Not Found\n", "text/html; charset=UTF-8")
            if parts[3] == "identity":
                return send(404, "The stand-in issues no identity tokens.\n", "text/plain; charset=utf-8")
            scopes = s["scopes"]
            if query.get("scopes"):
                scopes = [x for v in query["scopes"] for x in v.split(",") if x]
            token = self.state.issue_token(s["service_account"], scopes)
            self._record["principal"] = s["service_account"]
            body = {"access_token": token, "expires_in": s["token_expires_in"], "token_type": "Bearer"}
            return send(200, body, "application/json")
        node = tree
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return send(404, "Not Found\n", "text/html; charset=UTF-8")
            node = node[part]
        if isinstance(node, dict):
            if recursive:
                if alt == "text":
                    return send(200, "".join(f"{k} {v}\n" for k, v in _flatten(node)))
                return send(200, json.dumps(_camel(node, "attributes" in parts[-1:])), "application/json")
            listing = "".join(f"{k}/\n" if isinstance(v, dict) else f"{k}\n" for k, v in node.items())
            return send(200, listing)
        if alt == "json":
            return send(200, json.dumps(node), "application/json")
        if isinstance(node, list):
            return send(200, "".join(f"{v}\n" for v in node))
        return send(200, str(node))

    # --- OAuth 2.0 ------------------------------------------------------------------------------------------

    def _oauth2(self, method: str, path: str, body: bytes) -> None:
        if method != "POST" or path not in ("/token", "/oauth2/v4/token"):
            return self._send(404, {"error": "not_found", "error_description": f"No route for {method} {path}."})
        form = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace")).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._send(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"Invalid grant_type: {form.get('grant_type')}",
                },
            )
        assertion = form.get("assertion")
        if not assertion:
            return self._send(
                400, {"error": "invalid_request", "error_description": "Missing required parameter: assertion"}
            )
        try:
            claims = self._verify_jwt(assertion)
        except ValueError as exc:
            return self._send(400, {"error": "invalid_grant", "error_description": str(exc)})
        scopes = (claims.get("scope") or "").split()
        if not scopes:
            return self._send(
                400,
                {"error": "invalid_scope", "error_description": "Invalid OAuth scope or ID token audience provided."},
            )
        self._record["principal"] = claims["iss"]
        token = self.state.issue_token(claims["iss"], scopes)
        return self._send(
            200, {"access_token": token, "expires_in": self.state.settings["token_expires_in"], "token_type": "Bearer"}
        )

    def _verify_jwt(self, assertion: str) -> dict:
        try:
            header_b64, payload_b64, signature_b64 = assertion.split(".")
            header = json.loads(b64url_decode(header_b64))
            claims = json.loads(b64url_decode(payload_b64))
            signature = b64url_decode(signature_b64)
        except (ValueError, TypeError) as exc:
            raise ValueError("Invalid JWT: the assertion is not a signed JWT.") from exc
        if header.get("alg") != "RS256":
            raise ValueError("Invalid JWT: the algorithm must be RS256.")
        key = next(
            (k for k in self.state.settings["service_account_keys"] if k["private_key_id"] == header.get("kid")), None
        )
        if key is None or not rsa_sha256_verify(
            int(key["n"]), int(key["e"]), f"{header_b64}.{payload_b64}".encode(), signature
        ):
            raise ValueError("Invalid JWT Signature.")
        if claims.get("iss") != key["client_email"]:
            raise ValueError("Invalid grant: account not found")
        if claims.get("aud") != TOKEN_URI:
            raise ValueError(f"Invalid JWT: Failed audience check. The right audience is {TOKEN_URI}")
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not (
            isinstance(iat, int | float)
            and isinstance(exp, int | float)
            and iat <= now + 300
            and exp > now - 300
            and 0 < exp - iat <= 3600
        ):
            raise ValueError(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                "Check your iat and exp values in the JWT claim."
            )
        return claims

    # --- Cloud SQL Admin (the base class's routes) ----------------------------------------------------------

    def _sqladmin_state(self):
        return self.state.sqladmin

    def _authorized(self) -> bool:
        self._service = "sqladmin.googleapis.com"
        return self._check_token(SCOPES_SQLADMIN)

    # --- Cloud Storage --------------------------------------------------------------------------------------

    def _storage(self, method: str) -> None:
        read_only = method in ("GET", "HEAD")
        with self.state.lock:
            allowed = self._check_token(SCOPES_STORAGE_READ if read_only else SCOPES_STORAGE_WRITE)
        if not allowed:
            for _ in self._body_chunks():  # drain, to keep the connection usable
                pass
            return None
        upstream = self.state.storage_upstream
        if not upstream:
            self._read_body()
            return self._error(503, "The stand-in has no --storage-upstream.", "backendError", "UNAVAILABLE")
        up = urlsplit(upstream)
        up_base = f"http://{up.netloc}".encode()
        connection = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=300)
        try:
            connection.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
            connection.putheader("Host", up.netloc)
            chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "host":
                    connection.putheader(name, value)
            if chunked:
                connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            for chunk in self._body_chunks():
                if chunked:
                    connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                else:
                    connection.send(chunk)
            if chunked:
                connection.send(b"0\r\n\r\n")
            response = connection.getresponse()
        except OSError as exc:
            self.close_connection = True
            return self._error(502, f"The storage upstream {upstream} failed: {exc}", "backendError", "UNAVAILABLE")
        try:
            self._relay(method, response, up_base)
        finally:
            connection.close()

    def _relay(self, method: str, response: http.client.HTTPResponse, up_base: bytes) -> None:
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        headers = [
            (k, v.replace(up_base.decode(), STORAGE_BASE)) if k.lower() == "location" else (k, v) for k, v in headers
        ]
        no_body = method == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        content_type = (response.getheader("Content-Type") or "").lower()
        self.send_response(response.status, response.reason)
        if no_body:
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
        elif content_type.startswith("application/json"):
            body = response.read().replace(up_base, STORAGE_BASE.encode())
            for name, value in headers:
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            length = response.getheader("Content-Length")
            for name, value in headers:
                self.send_header(name, value)
            if length is None:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while chunk := response.read(1 << 16):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if length is None else chunk)
            if length is None:
                self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        with self.state.lock:
            self._record["status"] = response.status

    # --- Compute Engine -------------------------------------------------------------------------------------

    def _compute(self, method: str, path: str, query: dict, body: bytes) -> None:
        if not self._check_token(SCOPES_COMPUTE_READ if method == "GET" else SCOPES_COMPUTE_WRITE):
            return None
        rest = path[len("/compute/v1/") :].rstrip("/")
        parts = rest.split("/")
        if len(parts) < 2 or parts[0] != "projects":
            return self._not_found(rest)
        project, tail = parts[1], parts[2:]
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return self._error(400, "Invalid JSON payload received.", "parseError", "INVALID_ARGUMENT")
        if tail == ["aggregated", "instances"] and method == "GET":
            return self._list_instances(project, None, query)
        if len(tail) == 3 and tail[0] == "zones" and tail[2] == "instances" and method == "GET":
            return self._list_instances(project, tail[1], query)
        if len(tail) == 4 and tail[0] == "zones" and tail[2] == "instances" and method == "GET":
            for instance in self._instances(project, tail[1]):
                if instance["name"] == tail[3]:
                    return self._send(200, instance)
            return self._not_found(rest)
        if tail[:2] == ["global", "firewalls"]:
            return self._firewalls(method, project, tail[2:], payload, rest)
        if len(tail) == 3 and tail[:2] == ["global", "operations"] and method == "GET":
            return self._poll(project, tail[2], rest)
        return self._not_found(rest)

    def _not_found(self, resource: str) -> None:
        self._error(404, f"The resource '{resource}' was not found", "notFound", "NOT_FOUND")

    def _instances(self, project: str, zone: str | None) -> list[dict]:
        settings = self.state.settings
        found = []
        for instance in settings["instances"]:
            if instance.get("project", settings["project_id"]) == project and zone in (None, instance["zone"]):
                found.append(instance_resource(instance, settings))
        return sorted(found, key=lambda r: (r["zone"], r["name"]))

    def _list_instances(self, project: str, zone: str | None, query: dict) -> None:
        text = (query.get("filter") or [""])[-1]
        try:
            terms = parse_filter(text)
            selected = [r for r in self._instances(project, zone) if matches(r, terms)]
        except FilterError:
            return self._error(
                400, f"Invalid value for field 'filter': '{text}'. Invalid list filter expression.", "invalid",
                "INVALID_ARGUMENT",
            )  # fmt: skip
        try:
            max_results = int((query.get("maxResults") or ["500"])[-1])
            start = int(b64url_decode((query.get("pageToken") or [""])[-1]) or b"0")
        except ValueError:
            return self._error(400, "Invalid value for pageToken or maxResults.", "invalid", "INVALID_ARGUMENT")
        max_results = max(1, min(max_results, 500))
        page = selected[start : start + max_results]
        base = f"{COMPUTE_BASE}/projects/{project}"
        if zone is None:
            zones = sorted(
                set(self.state.settings["zones"])
                | {r["zone"].rsplit("/", 1)[-1] for r in self._instances(project, None)}
            )
            items = {}
            for name in zones:
                here = [r for r in page if r["zone"].endswith("/zones/" + name)]
                items[f"zones/{name}"] = (
                    {"instances": here}
                    if here
                    else {
                        "warning": {
                            "code": "NO_RESULTS_ON_PAGE",
                            "message": f"There are no results for scope 'zones/{name}' on this page.",
                            "data": [{"key": "scope", "value": f"zones/{name}"}],
                        }
                    }
                )
            answer = {
                "kind": "compute#instanceAggregatedList",
                "id": f"projects/{project}/aggregated/instances",
                "items": items,
                "selfLink": f"{base}/aggregated/instances",
            }
        else:
            answer = {
                "kind": "compute#instanceList",
                "id": f"projects/{project}/zones/{zone}/instances",
                "selfLink": f"{base}/zones/{zone}/instances",
            }
            if page:
                answer["items"] = page
        if start + max_results < len(selected):
            answer["nextPageToken"] = base64.urlsafe_b64encode(str(start + max_results).encode()).decode().rstrip("=")
        return self._send(200, answer)

    def _firewalls(self, method: str, project: str, name_part: list[str], payload, resource: str) -> None:
        stored = self.state.firewalls.setdefault(project, {})
        base = f"{COMPUTE_BASE}/projects/{project}"
        if not name_part:
            if method == "GET":
                answer = {
                    "kind": "compute#firewallList",
                    "id": f"projects/{project}/global/firewalls",
                    "selfLink": f"{base}/global/firewalls",
                }
                if stored:
                    answer["items"] = [_public(f) for _, f in sorted(stored.items())]
                return self._send(200, answer)
            if method == "POST":
                if not isinstance(payload, dict) or not payload.get("name"):
                    return self._error(
                        400, "Invalid value for field 'resource.name': ''. Must be a match of regex "
                        "'[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?'", "invalid", "INVALID_ARGUMENT",
                    )  # fmt: skip
                name = payload["name"]
                if name in stored or name in self._pending(project, "insert"):
                    return self._error(
                        409,
                        f"The resource 'projects/{project}/global/firewalls/{name}' already exists",
                        "alreadyExists",
                        "ALREADY_EXISTS",
                    )
                firewall = self._firewall(project, name, payload, None)
                return self._operation(project, "insert", firewall, lambda: stored.__setitem__(name, firewall))
            return self._error(405, f"Method {method} is not allowed here.", "badRequest", "INVALID_ARGUMENT")
        name = name_part[0]
        if len(name_part) != 1 or name not in stored:
            return self._not_found(resource)
        current = stored[name]
        if method == "GET":
            return self._send(200, _public(current))
        if method == "DELETE":
            return self._operation(project, "delete", current, lambda: stored.pop(name, None))
        if method in ("PATCH", "PUT"):
            if not isinstance(payload, dict) or payload.get("name", name) != name:
                return self._error(400, "Invalid value for field 'resource.name'.", "invalid", "INVALID_ARGUMENT")
            if method == "PATCH":
                fields = {**{k: v for k, v in current.items() if not k.startswith("_")}, **payload}
                fields = {k: v for k, v in fields.items() if v is not None}
            else:
                fields = payload
            updated = self._firewall(project, name, fields, current)
            kind = "patch" if method == "PATCH" else "update"
            return self._operation(project, kind, current, lambda: stored.__setitem__(name, updated))
        return self._error(405, f"Method {method} is not allowed here.", "badRequest", "INVALID_ARGUMENT")

    def _pending(self, project: str, kind: str) -> set[str]:
        return {
            o["_target_name"]
            for o in self.state.operations.values()
            if o["status"] != "DONE" and o["operationType"] == kind and o["_project"] == project
        }

    def _firewall(self, project: str, name: str, fields: dict, current: dict | None) -> dict:
        base = f"{COMPUTE_BASE}/projects/{project}"
        firewall = {k: v for k, v in fields.items() if k not in ("id", "creationTimestamp", "selfLink", "kind")}
        firewall.setdefault("network", f"{base}/global/networks/default")
        if firewall["network"].startswith(("global/", "projects/")):
            prefix = f"{COMPUTE_BASE}/" if firewall["network"].startswith("projects/") else f"{base}/"
            firewall["network"] = prefix + firewall["network"]
        firewall.setdefault("direction", "INGRESS")
        firewall.setdefault("priority", 1000)
        firewall.setdefault("disabled", False)
        firewall.setdefault("logConfig", {"enable": False})
        if firewall["direction"] == "INGRESS" and not any(
            firewall.get(k) for k in ("sourceRanges", "sourceTags", "sourceServiceAccounts")
        ):
            firewall["sourceRanges"] = ["0.0.0.0/0"]
        if firewall["direction"] == "EGRESS" and not firewall.get("destinationRanges"):
            firewall["destinationRanges"] = ["0.0.0.0/0"]
        return {
            "kind": "compute#firewall",
            "id": current["id"] if current else str(int(time.time() * 1000) * 1000 + secrets.randbelow(1000)),
            "creationTimestamp": current["creationTimestamp"] if current else _now(),
            **firewall,
            "name": name,
            "selfLink": f"{base}/global/firewalls/{name}",
        }

    def _operation(self, project: str, kind: str, target: dict, apply) -> None:
        name = f"operation-{int(time.time() * 1000)}-{uuid.uuid4().hex[:13]}-{uuid.uuid4().hex[:8]}"
        operation = {
            "kind": "compute#operation",
            "id": str(secrets.randbits(62)),
            "name": name,
            "operationType": kind,
            "targetLink": target["selfLink"],
            "targetId": target["id"],
            "status": "RUNNING",
            "user": self._record["principal"],
            "progress": 0,
            "insertTime": _now(),
            "startTime": _now(),
            "selfLink": f"{COMPUTE_BASE}/projects/{project}/global/operations/{name}",
            "_project": project,
            "_target_name": target["name"],
            "_polls": 0,
            "_apply": apply,
        }
        self.state.operations[name] = operation
        if self.state.settings["compute_operation_polls"] <= 0:
            self._finish(operation)
        return self._send(200, _public(operation))

    def _finish(self, operation: dict) -> None:
        operation["_apply"]()
        operation.update(status="DONE", progress=100, endTime=_now())

    def _poll(self, project: str, name: str, resource: str) -> None:
        operation = self.state.operations.get(name)
        if operation is None or operation["_project"] != project:
            return self._not_found(resource)
        if operation["status"] != "DONE":
            operation["_polls"] += 1
            if operation["_polls"] >= self.state.settings["compute_operation_polls"]:
                self._finish(operation)
        return self._send(200, _public(operation))


def _public(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if not k.startswith("_")}


def _camel(node, keep_keys: bool = False):
    """The metadata server's recursive JSON: kebab-case keys become camelCase (but attribute names)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            name = key if keep_keys else re.sub(r"-([a-z])", lambda m: m[1].upper(), key)
            out[name] = _camel(value, keep_keys=key in ("attributes", "service-accounts"))
        return out
    return node


def _flatten(node: dict, prefix: str = ""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", json.dumps(value) if isinstance(value, list) else value


class TLSServer(ThreadingHTTPServer):
    """The TLS handshake runs in the connection's thread, not in the accepting one."""

    daemon_threads = True
    ssl_context: ssl.SSLContext

    def finish_request(self, request, client_address):
        request.settimeout(300)
        try:
            request = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            sys.stderr.write(f"google-apis-standin: TLS handshake with {client_address} failed: {exc}\n")
            return
        try:
            self.RequestHandlerClass(request, client_address, self)
        finally:
            request.close()

    def handle_error(self, request, client_address):
        sys.stderr.write(f"google-apis-standin: connection from {client_address}: {sys.exc_info()[1]!r}\n")


class PlainServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        sys.stderr.write(f"google-apis-standin: connection from {client_address}: {sys.exc_info()[1]!r}\n")


def make_servers(
    host: str = "127.0.0.1",
    tls_port: int = 0,
    http_port: int = 0,
    cert: str | None = None,
    key: str | None = None,
    storage_upstream: str | None = None,
    settings: dict | None = None,
) -> tuple[TLSServer, PlainServer, State]:
    state = State(settings, storage_upstream)
    tls_handler = type("TLSHandler", (Handler,), {"state": state})
    http_handler = type("HTTPHandler", (Handler,), {"state": state, "plain_http": True})
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    tls = TLSServer((host, tls_port), tls_handler)
    tls.ssl_context = context
    plain = PlainServer((host, http_port), http_handler)
    return tls, plain, state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a test container's server
    parser.add_argument("--tls-port", type=int, default=443)
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--cert", required=True, help="PEM certificate (chain) for the TLS port")
    parser.add_argument("--key", required=True, help="PEM private key of --cert")
    parser.add_argument("--storage-upstream", help="http://HOST:PORT of a gcp-storage-emulator")
    parser.add_argument("--settings", default="{}", help="JSON object of settings, or @FILE (see the docstring)")
    args = parser.parse_args(argv)
    text = Path(args.settings[1:]).read_text() if args.settings.startswith("@") else args.settings
    tls, plain, _ = make_servers(
        args.host, args.tls_port, args.http_port, args.cert, args.key, args.storage_upstream, json.loads(text)
    )
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    host = tls.server_address[0]
    print(f"LISTENING https://{host}:{tls.server_address[1]} http://{host}:{plain.server_address[1]}", flush=True)
    try:
        tls.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        tls.server_close()
        plain.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
