"""roles/tracking_server/files/mlflow_ansible_auth.py, MLflow's authorization function on the VMs:
which identity each request gets. MLflow's basic auth is replaced by a recording stand-in here
(the real server runs it in molecule secure and cluster); the request is a real Flask request."""

from __future__ import annotations

import base64
import importlib.util
import sys
import types
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.datastructures import Authorization

AUTH_FILE = Path(__file__).resolve().parents[2] / "roles/tracking_server/files/mlflow_ansible_auth.py"
REFUSED = "basic auth refused"
USERS = {"alice": "alice-password-1234"}


@pytest.fixture
def auth(monkeypatch):
    """The module, imported against a stand-in of mlflow.server.auth (its basic auth and its config)."""
    from flask import request

    def basic_auth():
        sent = request.authorization
        if sent is not None and sent.username in USERS and USERS[sent.username] == sent.password:
            return sent
        return REFUSED

    fake = types.ModuleType("mlflow.server.auth")
    fake.authenticate_request_basic_auth = basic_auth
    fake.auth_config = types.SimpleNamespace(admin_username="admin")
    monkeypatch.setitem(sys.modules, "mlflow.server.auth", fake)
    for name in ("MLFLOW_ANSIBLE_PROXY_TOKEN", "_MLFLOW_INTERNAL_GATEWAY_AUTH_TOKEN", "MLFLOW_ANSIBLE_JOBS_USERNAME",
                 "MLFLOW_TRACKING_PASSWORD", "MLFLOW_ANSIBLE_METRICS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    spec = importlib.util.spec_from_file_location("mlflow_ansible_auth_under_test", AUTH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def identity(auth, path: str, headers: dict[str, str]):
    with Flask(__name__).test_request_context(path, headers=headers):
        result = auth.authenticate()
    return result.username if isinstance(result, Authorization) else result


CHAT = "/gateway/mlflow/v1/chat/completions"
API = "/api/2.0/mlflow/experiments/search"


def test_basic_auth_is_the_fallback(auth):
    assert identity(auth, API, {"Authorization": basic("alice", "alice-password-1234")}) == "alice"
    assert identity(auth, API, {"Authorization": basic("alice", "wrong")}) == REFUSED
    assert identity(auth, API, {}) == REFUSED


def test_iap_identity_needs_the_proxy_token(auth, monkeypatch):
    monkeypatch.setenv("MLFLOW_ANSIBLE_PROXY_TOKEN", "proxy-token-0123456789")
    good = {"X-Mlflow-Iap-User": "bob@example.com", "X-Mlflow-Ansible-Proxy-Token": "proxy-token-0123456789"}
    assert identity(auth, API, good) == "bob@example.com"
    assert identity(auth, API, {**good, "X-Mlflow-Ansible-Proxy-Token": "guess"}) == REFUSED
    assert identity(auth, API, {"X-Mlflow-Iap-User": "bob@example.com"}) == REFUSED


def test_no_proxy_token_configured_means_no_iap_identity(auth):
    headers = {"X-Mlflow-Iap-User": "bob@example.com", "X-Mlflow-Ansible-Proxy-Token": ""}
    assert identity(auth, API, headers) == REFUSED


def test_mlflows_job_token_acts_for_the_named_user_on_gateway_routes_only(auth, monkeypatch):
    monkeypatch.setenv("_MLFLOW_INTERNAL_GATEWAY_AUTH_TOKEN", "a1" * 32)
    sent = {"Authorization": basic("alice", "a1" * 32)}
    assert identity(auth, CHAT, sent) == "alice"
    assert identity(auth, "/gateway/my-endpoint/mlflow/invocations", sent) == "alice"
    # MLflow's own rule: the token is no master password elsewhere.
    assert identity(auth, API, sent) == REFUSED
    assert identity(auth, "/ajax-api/3.0/jobs/1", sent) == REFUSED
    assert identity(auth, "/v1/traces", sent) == REFUSED
    assert identity(auth, CHAT, {"Authorization": basic("alice", "b2" * 32)}) == REFUSED


def test_gateway_credentials_may_ride_in_mlflows_own_header(auth, monkeypatch):
    """On /gateway/ routes a coding agent's provider key takes Authorization: MLflow reads
    X-MLflow-Authorization first."""
    monkeypatch.setenv("_MLFLOW_INTERNAL_GATEWAY_AUTH_TOKEN", "a1" * 32)
    headers = {"Authorization": "Bearer sk-provider-key", "X-MLflow-Authorization": basic("alice", "a1" * 32)}
    assert identity(auth, CHAT, headers) == "alice"


def test_a_user_on_gateway_routes_may_send_the_password_in_mlflows_own_header(auth):
    headers = {"Authorization": "Bearer sk-provider-key",
               "X-MLflow-Authorization": basic("alice", "alice-password-1234")}
    assert identity(auth, CHAT, headers) == "alice"
    wrong = {"Authorization": "Bearer sk-provider-key", "X-MLflow-Authorization": basic("alice", "wrong")}
    assert identity(auth, CHAT, wrong) == REFUSED
    # Elsewhere the header means nothing: Authorization is read, as MLflow does.
    assert identity(auth, API, headers) == REFUSED


def test_the_servers_jobs_act_as_the_admin_on_gateway_routes_only(auth, monkeypatch):
    monkeypatch.setenv("MLFLOW_ANSIBLE_JOBS_USERNAME", "mlflow-ansible-jobs")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "jobs-password-" + "x" * 34)
    sent = {"Authorization": basic("mlflow-ansible-jobs", "jobs-password-" + "x" * 34)}
    assert identity(auth, CHAT, sent) == "admin"
    assert identity(auth, API, sent) == REFUSED
    assert identity(auth, "/ajax-api/3.0/mlflow/scorer/invoke", sent) == REFUSED
    # Another name with the jobs' password, or the jobs' name with another password.
    assert identity(auth, CHAT, {"Authorization": basic("alice", "jobs-password-" + "x" * 34)}) == REFUSED
    assert identity(auth, CHAT, {"Authorization": basic("mlflow-ansible-jobs", "guess")}) == REFUSED


def test_no_jobs_identity_without_its_password(auth, monkeypatch):
    monkeypatch.setenv("MLFLOW_ANSIBLE_JOBS_USERNAME", "mlflow-ansible-jobs")
    assert identity(auth, CHAT, {"Authorization": basic("mlflow-ansible-jobs", "")}) == REFUSED


@pytest.mark.parametrize("header", ["Basic !!!not-base64", "Basic " + base64.b64encode(b"no-colon").decode(),
                                    "Bearer abc", "Basic"])
def test_malformed_credentials_fall_back_to_basic_auth(auth, monkeypatch, header):
    monkeypatch.setenv("_MLFLOW_INTERNAL_GATEWAY_AUTH_TOKEN", "a1" * 32)
    assert identity(auth, CHAT, {"Authorization": header}) == REFUSED


def test_nginx_metrics_listener_reads_metrics_only_with_its_token(auth, monkeypatch):
    monkeypatch.setenv("MLFLOW_ANSIBLE_METRICS_TOKEN", "m3" * 32)
    sent = {"X-Mlflow-Ansible-Metrics-Token": "m3" * 32}
    assert identity(auth, "/metrics", sent) == "admin"
    # The token opens nothing but GET /metrics.
    assert identity(auth, API, sent) == REFUSED
    assert identity(auth, "/metrics/x", sent) == REFUSED
    assert identity(auth, CHAT, sent) == REFUSED
    with Flask(__name__).test_request_context("/metrics", method="POST", headers=sent):
        assert auth.authenticate() == REFUSED
    assert identity(auth, "/metrics", {"X-Mlflow-Ansible-Metrics-Token": "guess"}) == REFUSED
    assert identity(auth, "/metrics", {}) == REFUSED


def test_no_metrics_token_configured_means_no_metrics_identity(auth):
    assert identity(auth, "/metrics", {"X-Mlflow-Ansible-Metrics-Token": ""}) == REFUSED
