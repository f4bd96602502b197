"""MLflow authorization function: the IAP identity from nginx, the server's own jobs on the
AI Gateway's routes, else basic auth.

Configured in basic_auth.ini as ``authorization_function = mlflow_ansible_auth:authenticate``
whenever the basic-auth app runs. In order:

1. **IAP.** nginx verifies Google IAP's signed header (through mlflow-iap-verifier) and passes
   the identity in ``X-Mlflow-Iap-User`` together with a token only nginx and MLflow know
   (``MLFLOW_ANSIBLE_PROXY_TOKEN``), so a local process talking to 127.0.0.1 cannot claim an
   identity.
2. **A job acting for the user who started it**, on ``/gateway/`` routes only: MLflow's job
   runner hands each judge job the caller's name and the server's per-start token
   (``_MLFLOW_INTERNAL_GATEWAY_AUTH_TOKEN``). MLflow's own function accepts that pair on
   ``/gateway/`` routes only, and skips the check when a custom function is configured, so
   this one repeats it, with the same limit.
3. **The server's own jobs** (online scoring, started by the scheduler for nobody), on
   ``/gateway/`` routes only: the job runner's environment names ``MLFLOW_ANSIBLE_JOBS_USERNAME``
   (also its ``MLFLOW_TRACKING_USERNAME``) and a secret generated once per database
   (``MLFLOW_TRACKING_PASSWORD``); that pair acts as the configured admin there, as MLflow's
   internal token lets a job act as any user there. Anywhere else it is refused (it is no
   user of the auth database).
4. **nginx's metrics listener**, on ``GET /metrics`` only: with ``tracking_server_metrics`` nginx
   serves MLflow's Prometheus exporter on a listener of its own (its own credentials, its own
   source ranges) and shows a token only nginx and MLflow know (``MLFLOW_ANSIBLE_METRICS_TOKEN``,
   header ``X-Mlflow-Ansible-Metrics-Token``); that request acts as the configured admin there,
   and the token opens nothing else.
5. Otherwise MLflow's basic auth (on ``/gateway/`` routes with the credentials of
   ``X-MLflow-Authorization`` when sent, as MLflow's own function reads them there).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os

from flask import current_app, request
from mlflow.server.auth import authenticate_request_basic_auth
from werkzeug.datastructures import Authorization

GATEWAY_PREFIX = "/gateway/"
METRICS_PATH = "/metrics"
METRICS_TOKEN_HEADER = "X-Mlflow-Ansible-Metrics-Token"  # noqa: S105 (the name of a header, no secret)
# mlflow/server/auth/__init__.py: on /gateway/ routes MLflow credentials may ride in this header,
# because a coding agent's own provider key occupies Authorization there.
GATEWAY_AUTH_HEADER = "X-MLflow-Authorization"
INTERNAL_TOKEN_VARIABLE = "_MLFLOW_INTERNAL_GATEWAY_AUTH_TOKEN"  # noqa: S105 (the name of a variable, no secret)


def _same(sent: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def _basic_pair(header: str) -> tuple[str, str] | None:
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic" or not credentials.strip():
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, separator, password = decoded.partition(":")
    return (username, password) if separator and username else None


def _gateway_identity() -> Authorization | None:
    """The identity of one of the server's jobs calling a /gateway/ route, else None."""
    if not request.path.startswith(GATEWAY_PREFIX):
        return None
    pair = _basic_pair(request.headers.get(GATEWAY_AUTH_HEADER) or request.headers.get("Authorization") or "")
    if pair is None:
        return None
    username, password = pair
    if _same(password, os.environ.get(INTERNAL_TOKEN_VARIABLE, "")):
        return Authorization("basic", {"username": username})
    jobs_user = os.environ.get("MLFLOW_ANSIBLE_JOBS_USERNAME", "")
    if jobs_user and username == jobs_user and _same(password, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")):
        from mlflow.server.auth import auth_config  # the admin named in basic_auth.ini

        return Authorization("basic", {"username": auth_config.admin_username})
    return None


def _metrics_identity() -> Authorization | None:
    """The admin for nginx's metrics listener reading MLflow's Prometheus exporter, else None."""
    if request.method != "GET" or request.path != METRICS_PATH:
        return None
    if not _same(request.headers.get(METRICS_TOKEN_HEADER, ""), os.environ.get("MLFLOW_ANSIBLE_METRICS_TOKEN", "")):
        return None
    from mlflow.server.auth import auth_config  # the admin named in basic_auth.ini

    return Authorization("basic", {"username": auth_config.admin_username})


def _basic_auth():
    """MLflow's basic auth; on /gateway/ routes with the credentials of X-MLflow-Authorization when sent
    (as MLflow's own function reads them there), the Authorization header holding a provider's key."""
    sent = request.headers.get(GATEWAY_AUTH_HEADER)
    if not (sent and request.path.startswith(GATEWAY_PREFIX)):
        return authenticate_request_basic_auth()
    headers = {key: value for key, value in request.headers.items() if key.lower() != "authorization"}
    headers["Authorization"] = sent
    with current_app.test_request_context(request.path, method=request.method, headers=headers):
        return authenticate_request_basic_auth()


def authenticate():
    token = os.environ.get("MLFLOW_ANSIBLE_PROXY_TOKEN", "")
    user = request.headers.get("X-Mlflow-Iap-User", "")
    if token and user and _same(request.headers.get("X-Mlflow-Ansible-Proxy-Token", ""), token):
        return Authorization("basic", {"username": user})
    return _gateway_identity() or _metrics_identity() or _basic_auth()
