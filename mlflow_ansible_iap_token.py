"""Google IAP for MLflow clients: an ID token for the IAP audience, refreshed before it expires.

The request-header provider (entry point ``mlflow.request_header_provider``)
is active when ``MLFLOW_ANSIBLE_IAP_AUDIENCE`` is set (the IAP OAuth client ID).
It fetches an ID token with google-auth (a service-account key, the metadata
server, or any credentials google-auth can turn into ID tokens), caches it and
fetches a new one shortly before it expires: unlike a static
``MLFLOW_TRACKING_TOKEN`` it never goes stale. When basic auth already uses
``Authorization`` (``MLFLOW_TRACKING_USERNAME`` set) the token goes in
``Proxy-Authorization``, which IAP also accepts.

``python -m mlflow_ansible token --audience ID`` prints a token.

This module stands alone (the standard library and google-auth; mlflow only for the base class): it is
the whole of the small distribution ``mlflow-ansible-iap-token`` (packaging/iap-token/), for MLflow
clients that have no use for the wrapper's Ansible, ansible-runner and rich. The ``mlflow-ansible``
distribution ships it too (its ``token`` subcommand, ``mlflow_ansible.iap_token``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

AUDIENCE_ENV = "MLFLOW_ANSIBLE_IAP_AUDIENCE"
REFRESH_MARGIN = 300  # seconds before expiry a new token is fetched


class TokenError(RuntimeError):
    """No ID token could be obtained for the IAP audience."""


def _fetch_with_google_auth(audience: str) -> str:
    import google.auth.exceptions
    import google.auth.transport.requests
    import google.oauth2.id_token

    try:
        return google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    except google.auth.exceptions.GoogleAuthError as exc:
        raise TokenError(f"cannot get an ID token for audience {audience}: {exc}") from exc


def _expiry(token: str) -> float:
    from google.auth import jwt

    claims = jwt.decode(token, verify=False)
    return float(claims.get("exp", 0))


class IapTokenSource:
    """Caches one ID token per audience and refreshes it REFRESH_MARGIN seconds before expiry."""

    def __init__(
        self,
        audience: str,
        fetch: Callable[[str], str] = _fetch_with_google_auth,
        clock: Callable[[], float] = time.time,
    ):
        if not audience:
            raise TokenError(f"no IAP audience: set {AUDIENCE_ENV} or pass --audience")
        self.audience, self._fetch, self._clock = audience, fetch, clock
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires - REFRESH_MARGIN:
                self._token = self._fetch(self.audience)
                self._expires = _expiry(self._token)
            return self._token


_SOURCES: dict[str, IapTokenSource] = {}


def _source(audience: str) -> IapTokenSource:
    if audience not in _SOURCES:
        _SOURCES[audience] = IapTokenSource(audience)
    return _SOURCES[audience]


try:  # the plugin base class comes with mlflow; the rest of the module does not need mlflow
    from mlflow.tracking.request_header.abstract_request_header_provider import RequestHeaderProvider
except ImportError:  # pragma: no cover - mlflow not installed
    RequestHeaderProvider = object  # type: ignore[assignment,misc]


class IapRequestHeaderProvider(RequestHeaderProvider):  # type: ignore[misc,valid-type]
    """MLflow request-header provider adding a fresh IAP ID token to every request."""

    def in_context(self) -> bool:
        return bool(os.environ.get(AUDIENCE_ENV))

    def request_headers(self) -> dict[str, str]:
        token = _source(os.environ[AUDIENCE_ENV]).token()
        header = "Proxy-Authorization" if os.environ.get("MLFLOW_TRACKING_USERNAME") else "Authorization"
        return {header: f"Bearer {token}"}
