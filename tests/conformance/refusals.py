"""The one list of intended differences between our deployment and a plain ``mlflow server``.

Every other call the suite makes must behave the same on both targets. Each entry of REFUSALS is a
request that ours refuses and plain accepts, with the reason; KEPT_REFUSALS are refusals plain-recipe
MLflow 3.17.2 already makes by default and ours must not lose (so they are not differences, but a
deployment that dropped them would be a regression). test_refusal checks every entry on every target.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests

from .conftest import Target

ACCEPTED = 200


@dataclass(frozen=True)
class Refusal:
    key: str
    what: str
    why: str
    # Expected HTTP status per target name; ACCEPTED means the request succeeds.
    status: dict[str, int]
    probe: Callable[[Target], requests.Response]
    # The MLflow error_code of a refused request whose answer is MLflow's JSON error.
    error_code: str | None = None

    def expected(self, target: Target) -> int:
        return self.status[target.name]


def _uid() -> str:
    return f"conf-refusal-{uuid.uuid4().hex[:12]}"


def _search_experiments(target: Target, **kwargs) -> requests.Response:
    return target.api("GET", "experiments/search", params={"max_results": 1}, **kwargs)


def no_credentials(target: Target) -> requests.Response:
    return _search_experiments(target, credentials=False)


def wrong_password(target: Target) -> requests.Response:
    return _search_experiments(target, auth=(target.username or "conformance", "wrong-" + uuid.uuid4().hex))


def private_address_host(target: Target) -> requests.Response:
    # MLflow's default allowed hosts are localhost and the private ranges (10.*, 192.168.*, ...).
    return _search_experiments(target, headers={"Host": "10.213.7.9:5000"})


def foreign_host(target: Target) -> requests.Response:
    return _search_experiments(target, headers={"Host": "conformance.invalid"})


def foreign_origin_post(target: Target) -> requests.Response:
    response = target.api(
        "POST", "experiments/create", json={"name": _uid()}, headers={"Origin": "https://conformance.invalid"}
    )
    if response.ok:  # a server that let it through: leave nothing behind
        target.api("POST", "experiments/delete", json={"experiment_id": response.json()["experiment_id"]})
    return response


def _model_version_with_source(target: Target, source: str) -> requests.Response:
    name = _uid()
    target.api("POST", "registered-models/create", json={"name": name}).raise_for_status()
    try:
        return target.api("POST", "model-versions/create", json={"name": name, "source": source})
    finally:
        target.api("DELETE", "registered-models/delete", json={"name": name})


def foreign_model_source(target: Target) -> requests.Response:
    return _model_version_with_source(target, "s3://conformance-foreign-bucket/models/m")


def local_model_source(target: Target) -> requests.Response:
    return _model_version_with_source(target, "file:///etc/passwd")


def user_without_permission(target: Target) -> requests.Response:
    """A user the server knows but granted nothing reads an experiment an admin made."""
    name = _uid()
    created = target.api("POST", "experiments/create", json={"name": name})
    created.raise_for_status()
    experiment_id = created.json()["experiment_id"]
    user, password = name, "Pw-" + uuid.uuid4().hex
    try:
        if target.auth:
            made = target.api("POST", "users/create", json={"username": user, "password": password})
            if made.status_code == 403:
                pytest.skip(f"{target.name}: the configured user is no admin and cannot create a user")
            made.raise_for_status()
        try:
            return target.api("GET", "experiments/get", params={"experiment_id": experiment_id}, auth=(user, password))
        finally:
            if target.auth:
                target.api("DELETE", "users/delete", json={"username": user})
    finally:
        target.api("POST", "experiments/delete", json={"experiment_id": experiment_id})


def artifact_path_traversal(target: Target) -> requests.Response:
    return target.request("GET", "/api/2.0/mlflow-artifacts/artifacts/..%2F..%2F..%2Fetc%2Fpasswd")


REFUSALS: list[Refusal] = [
    Refusal(
        key="no-credentials",
        what="any API call without credentials (GET experiments/search)",
        why="basic auth (--app-name basic-auth): every request names a user",
        status={"plain": ACCEPTED, "ours": 401},
        probe=no_credentials,
    ),
    Refusal(
        key="wrong-password",
        what="an API call with a wrong password",
        why="basic auth checks the password (a plain server ignores the Authorization header)",
        status={"plain": ACCEPTED, "ours": 401},
        probe=wrong_password,
    ),
    Refusal(
        key="user-without-permission",
        what="a user granted nothing reads an experiment another user made",
        why="basic auth with default_permission = NO_PERMISSIONS: access is granted, never assumed",
        status={"plain": ACCEPTED, "ours": 403},
        probe=user_without_permission,
    ),
    Refusal(
        key="private-address-host",
        what="a request whose Host header is a private address (10.213.7.9:5000)",
        why="--allowed-hosts lists our own names only; MLflow's default also admits every private address",
        status={"plain": ACCEPTED, "ours": 403},
        probe=private_address_host,
    ),
    Refusal(
        key="foreign-model-source",
        what="a model version whose source is another bucket (s3://conformance-foreign-bucket/models/m)",
        why="MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX admits runs:/, models:/, mlflow-artifacts:/, "
        "our artifact root and the prompt placeholders only",
        status={"plain": ACCEPTED, "ours": 400},
        probe=foreign_model_source,
        error_code="INVALID_PARAMETER_VALUE",
    ),
]

KEPT_REFUSALS: list[Refusal] = [
    Refusal(
        key="foreign-host",
        what="a request whose Host header is a foreign name (conformance.invalid)",
        why="DNS-rebinding protection: MLflow's Host check (ours: --allowed-hosts)",
        status={"plain": 403, "ours": 403},
        probe=foreign_host,
    ),
    Refusal(
        key="foreign-origin-post",
        what="a state-changing POST (experiments/create) with a foreign Origin (https://conformance.invalid)",
        why="cross-site request protection: MLflow blocks cross-origin writes (ours: --cors-allowed-origins)",
        status={"plain": 403, "ours": 403},
        probe=foreign_origin_post,
    ),
    Refusal(
        key="local-model-source",
        what="a model version whose source is a server-local file (file:///etc/passwd)",
        why="plain: MLflow refuses a local source outside a run's artifacts; ours: the source regex, first",
        status={"plain": 400, "ours": 400},
        probe=local_model_source,
        error_code="INVALID_PARAMETER_VALUE",
    ),
    Refusal(
        key="artifact-path-traversal",
        what="an artifact download whose path climbs out of the artifact root (../../../etc/passwd)",
        why="MLflow's artifact proxy validates paths",
        status={"plain": 400, "ours": 400},
        probe=artifact_path_traversal,
        error_code="INVALID_PARAMETER_VALUE",
    ),
]

ALL_REFUSALS = REFUSALS + KEPT_REFUSALS


def refusal(key: str) -> Refusal:
    return next(entry for entry in ALL_REFUSALS if entry.key == key)


def test_the_list_is_well_formed() -> None:
    keys = [entry.key for entry in ALL_REFUSALS]
    assert len(keys) == len(set(keys))
    for entry in REFUSALS:
        assert entry.status["plain"] == ACCEPTED and entry.status["ours"] != ACCEPTED, entry.key
        assert entry.why and entry.what
    for entry in KEPT_REFUSALS:
        assert entry.status["plain"] == entry.status["ours"] != ACCEPTED, entry.key


@pytest.mark.parametrize("entry", ALL_REFUSALS, ids=lambda entry: entry.key)
def test_refusal(target: Target, entry: Refusal) -> None:
    response = entry.probe(target)
    expected = entry.expected(target)
    assert response.status_code == expected, (
        f"{entry.key} on {target.name}: expected {expected}, got {response.status_code}: {response.text[:300]}"
    )
    if expected != ACCEPTED and entry.error_code:
        assert response.json().get("error_code") == entry.error_code, response.text[:300]


def test_client_without_credentials(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real client, not only raw HTTP, meets the no-credentials refusal (and only where it is listed)."""
    from mlflow.exceptions import MlflowException

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    expected = refusal("no-credentials").expected(target)
    client = target.client()
    if expected == ACCEPTED:
        client.search_experiments(max_results=1)
    else:
        with pytest.raises(MlflowException, match=str(expected)):
            client.search_experiments(max_results=1)
