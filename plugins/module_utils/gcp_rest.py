# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""A small JSON REST client for Google APIs from a Compute Engine VM, on the standard library.

Access tokens come from the GCE metadata server (the VM's attached service account, keyless).
Every request gives an ``Answer`` instead of raising: its HTTP status (-1 when no answer came),
the parsed JSON body when there is one, and a short message; callers decide what each status
means. Base URLs are parameters, so private endpoints and test stand-ins work.

The google.cloud collection's GcpSession (module_utils/gcp_utils.py) needs ``requests`` and
``google-auth`` on the host and reads the metadata server's address from the environment
(GCE_METADATA_HOST); this client needs neither and takes the URL.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

SERVICE_ACCOUNT_PATH = "/computeMetadata/v1/instance/service-accounts/default"


@dataclass
class Answer:
    status: int  # the HTTP status, -1 when the server could not be reached or did not answer
    json: Any = None  # the parsed body, None when it is not JSON
    text: str = ""  # the body as text
    msg: str = ""  # what went wrong, for messages ("" on a 2xx answer)
    headers: dict = field(default_factory=dict)

    @property
    def error_message(self) -> str:
        """Google's error message of the answer ({"error": {"message": ...}}), else ""."""
        error = self.json.get("error") if isinstance(self.json, dict) else None
        return str(error.get("message", "")) if isinstance(error, dict) else ""

    @property
    def error_text(self) -> str:
        """The whole error object as JSON text (to search for reasons such as SERVICE_DISABLED)."""
        error = self.json.get("error") if isinstance(self.json, dict) else None
        return json.dumps(error) if error is not None else ""


def _answer(status: int, raw: bytes, headers, msg: str = "") -> Answer:
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = None
    return Answer(status=status, json=parsed, text=text, msg=msg, headers=dict(headers or {}))


def request(url: str, method: str = "GET", headers: dict | None = None, body: Any = None, timeout: float = 30,
            use_proxy: bool = True) -> Answer:
    """One HTTP request; a JSON body when ``body`` is not None. Never raises for HTTP or network errors."""
    if not url.startswith(("http://", "https://")):
        return Answer(status=-1, msg=f"Request failed: not an http(s) URL: {url}")
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    handlers = [] if use_proxy else [urllib.request.ProxyHandler({})]
    opener = urllib.request.build_opener(*handlers)
    req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - http(s) only, above
    try:
        with opener.open(req, timeout=timeout) as response:
            return _answer(response.status, response.read(), response.headers)
    except urllib.error.HTTPError as exc:
        try:
            raw = exc.read()
        except OSError:
            raw = b""
        return _answer(exc.code, raw, exc.headers, f"HTTP Error {exc.code}: {exc.reason}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Answer(status=-1, msg=f"Request failed: {reason}")


def metadata_url(base_url: str, path: str = "") -> str:
    """The URL of the attached service account's metadata (``/token``, ``/email``)."""
    return base_url.rstrip("/") + SERVICE_ACCOUNT_PATH + path


def metadata_get(base_url: str, path: str, timeout: float = 10) -> Answer:
    """A metadata server request: the Metadata-Flavor header, never through an HTTP proxy (the server
    is link-local; Google's client libraries do the same)."""
    return request(metadata_url(base_url, path), headers={"Metadata-Flavor": "Google"}, timeout=timeout,
                   use_proxy=False)


def access_token(base_url: str, timeout: float = 10) -> tuple[str | None, int, Answer]:
    """The VM's service account's access token: (token or None, seconds it is valid for, the answer)."""
    answer = metadata_get(base_url, "/token", timeout)
    body = answer.json if isinstance(answer.json, dict) else {}
    token = body.get("access_token") if answer.status == 200 else None
    try:
        expires_in = int(body.get("expires_in", 300))
    except (TypeError, ValueError):
        expires_in = 300
    return (token or None), expires_in, answer
