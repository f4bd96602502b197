"""MLflow authorization function: the IAP identity from nginx, else basic auth.

Configured in basic_auth.ini as ``authorization_function =
mlflow_ansible_auth:authenticate``. nginx verifies Google IAP's signed header
(through mlflow-iap-verifier) and passes the identity in ``X-Mlflow-Iap-User``
together with a token only nginx and MLflow know (``MLFLOW_ANSIBLE_PROXY_TOKEN``),
so a local process talking to 127.0.0.1 cannot claim an identity. Requests
without that pair fall back to MLflow's basic auth.
"""

from __future__ import annotations

import hmac
import os

from flask import request
from mlflow.server.auth import authenticate_request_basic_auth
from werkzeug.datastructures import Authorization


def authenticate():
    token = os.environ.get("MLFLOW_ANSIBLE_PROXY_TOKEN", "")
    user = request.headers.get("X-Mlflow-Iap-User", "")
    sent = request.headers.get("X-Mlflow-Ansible-Proxy-Token", "")
    if token and user and hmac.compare_digest(sent, token):
        return Authorization("basic", {"username": user})
    return authenticate_request_basic_auth()
