"""REST error shapes for bad input: the same HTTP status, error_code and message on every target.

The expected values are plain MLflow 3.17.2's; a target that answers otherwise (a proxy's HTML error page, a
different code) fails here unless the difference is listed in refusals.py."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import pytest

MISSING_RUN = "0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class BadRequest:
    key: str
    method: str
    endpoint: str
    status: int
    error_code: str
    message: str  # a regular expression the message must match
    params: dict = field(default_factory=dict)
    body: dict | None = None


CASES = [
    BadRequest(
        "missing-run", "GET", "runs/get", 404, "RESOURCE_DOES_NOT_EXIST", f"Run with id={MISSING_RUN} not found",
        params={"run_id": MISSING_RUN},
    ),
    BadRequest(
        "missing-experiment", "GET", "experiments/get", 404, "RESOURCE_DOES_NOT_EXIST",
        "No Experiment with id=987654321 exists", params={"experiment_id": "987654321"},
    ),
    BadRequest(
        "missing-registered-model", "GET", "registered-models/get", 404, "RESOURCE_DOES_NOT_EXIST",
        "Registered Model with name=conf-no-such-model not found", params={"name": "conf-no-such-model"},
    ),
    BadRequest(
        "metric-not-a-number", "POST", "runs/log-metric", 400, "INVALID_PARAMETER_VALUE",
        "Invalid value \"abc\" for parameter 'value'",
        body={"run_id": MISSING_RUN, "key": "m", "value": "abc", "timestamp": 1},
    ),
    BadRequest(
        "experiment-without-name", "POST", "experiments/create", 400, "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'name'", body={"name": ""},
    ),
    BadRequest(
        "bad-filter", "POST", "runs/search", 400, "INVALID_PARAMETER_VALUE", "Invalid comparator '>>>'",
        body={"experiment_ids": ["0"], "filter": "metrics.x >>> 1"},
    ),
    BadRequest(
        "bad-max-results", "GET", "experiments/search", 400, "INVALID_PARAMETER_VALUE", "max_results",
        params={"max_results": "1000000"},
    ),
    BadRequest(
        "artifacts-of-missing-run", "GET", "artifacts/list", 404, "RESOURCE_DOES_NOT_EXIST",
        f"Run with id={MISSING_RUN} not found", params={"run_id": MISSING_RUN},
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.key)
def test_error_shape(target, case: BadRequest):
    response = target.api(case.method, case.endpoint, params=case.params, json=case.body)
    assert response.status_code == case.status, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["error_code"] == case.error_code, body
    assert re.search(case.message, body["message"]), body["message"]


def test_duplicate_experiment(target, uid):
    assert target.api("POST", "experiments/create", json={"name": uid}).ok
    response = target.api("POST", "experiments/create", json={"name": uid})
    assert response.status_code == 400
    assert response.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
    assert f"Experiment(name={uid}) already exists" in response.json()["message"]
    experiment = target.api("GET", "experiments/get-by-name", params={"experiment_name": uid}).json()
    target.api("POST", "experiments/delete", json={"experiment_id": experiment["experiment"]["experiment_id"]})


def test_client_raises_the_same_codes(target, client):
    """The client turns the same answers into MlflowException with the server's error code."""
    from mlflow.exceptions import MlflowException, RestException

    with pytest.raises(RestException) as missing:
        client.get_run(MISSING_RUN)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as invalid:
        client.search_runs(["0"], filter_string="metrics.x >>> 1")
    assert invalid.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(RestException) as model:
        client.get_registered_model("conf-no-such-" + uuid.uuid4().hex)
    assert model.value.error_code == "RESOURCE_DOES_NOT_EXIST"
