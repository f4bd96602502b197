"""The mlflow_s3_bucket module against a real S3 API: moto's server on loopback (as the topologies
testbed's S3 stand-in), reached over HTTP by boto3 as on a VM.

The module runs through AnsibleModule with real module arguments (argument spec, check mode, diff);
what it did is read back from the server with a separate boto3 client.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from ansible.module_utils.testing import patch_module_args
from module_loader import load_module
from moto import server as moto_server

s3_module = load_module("mlflow_s3_bucket")

KEY_ID = "testing-access-key-id"
SECRET = "testing-secret-access-key-0123456789"


@pytest.fixture(scope="module")
def endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(endpoint):
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)
    yield client
    for bucket in client.list_buckets()["Buckets"]:
        client.delete_bucket(Bucket=bucket["Name"])


def run_module(capsys, check_mode=False, diff=False, **args) -> dict:
    """The module's main() with these arguments, as Ansible would run it; its JSON result."""
    args = {"_ansible_check_mode": check_mode, "_ansible_diff": diff, **args}
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        s3_module.main()
    result = json.loads(capsys.readouterr().out)
    assert (exited.value.code != 0) == bool(result.get("failed")), result
    return result


def _args(endpoint: str, location: str, **extra) -> dict:
    return {"location": location, "endpoint_url": endpoint, "region": "us-east-1",
            "access_key_id": KEY_ID, "secret_access_key": SECRET, **extra}


def _buckets(s3) -> list[str]:
    return sorted(bucket["Name"] for bucket in s3.list_buckets()["Buckets"])


def test_check_mode_reports_and_creates_nothing(capsys, endpoint, s3):
    result = run_module(capsys, check_mode=True, diff=True, **_args(endpoint, "s3://mlflow-artifacts/prod"))
    assert result["changed"] is True
    assert result["created"] is False
    assert result["bucket"] == "mlflow-artifacts"
    assert result["msg"] == "would create the S3 bucket mlflow-artifacts"
    assert result["diff"] == {"before": "bucket mlflow-artifacts: absent\n",
                              "after": "bucket mlflow-artifacts: present\n"}
    assert _buckets(s3) == []


def test_creates_once_then_finds_it(capsys, endpoint, s3):
    first = run_module(capsys, **_args(endpoint, "s3://mlflow-artifacts/prod"))
    assert (first["changed"], first["created"], first["bucket"]) == (True, True, "mlflow-artifacts")
    assert _buckets(s3) == ["mlflow-artifacts"]

    again = run_module(capsys, **_args(endpoint, "s3://mlflow-artifacts/other-prefix"))
    assert (again["changed"], again["created"]) == (False, False)
    assert again["msg"] == "the S3 bucket mlflow-artifacts exists"
    checked = run_module(capsys, check_mode=True, diff=True, **_args(endpoint, "s3://mlflow-artifacts"))
    assert (checked["changed"], "diff" in checked) == (False, False)
    assert _buckets(s3) == ["mlflow-artifacts"]


def test_region_is_the_location_constraint(capsys, endpoint, s3):
    result = run_module(capsys, **_args(endpoint, "s3://eu-bucket/mlflow", region="eu-west-1"))
    assert result["created"] is True
    assert s3.get_bucket_location(Bucket="eu-bucket")["LocationConstraint"] == "eu-west-1"
    run_module(capsys, **_args(endpoint, "s3://us-bucket"))
    assert s3.get_bucket_location(Bucket="us-bucket")["LocationConstraint"] in (None, "us-east-1")


def test_refused_head_fails_and_creates_nothing(capsys, endpoint, s3):
    """A 403 is not a missing bucket: the module fails, without the keys in its message."""
    def authenticate(after: bytes) -> None:  # moto checks signatures and IAM after that many requests
        request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=after, method="POST",  # noqa: S310
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request).close()  # noqa: S310 - loopback

    authenticate(b"0")
    try:
        result = run_module(capsys, **_args(endpoint, "s3://refused-bucket"))
    finally:
        authenticate(b"inf")
    assert result["failed"] is True
    assert result["msg"].startswith("S3 bucket of s3://refused-bucket: ClientError: ")
    assert "403" in result["msg"] or "Forbidden" in result["msg"], result["msg"]
    assert KEY_ID not in result["msg"] and SECRET not in json.dumps(result)
    assert _buckets(s3) == []


def test_unreachable_endpoint_fails(capsys):
    result = run_module(capsys, **_args("http://127.0.0.1:9", "s3://any-bucket"))
    assert result["failed"] is True
    assert "EndpointConnectionError" in result["msg"] and "127.0.0.1:9" in result["msg"]
    assert SECRET not in json.dumps(result)


def test_location_must_be_s3(capsys, endpoint):
    result = run_module(capsys, **_args(endpoint, "gs://not-s3/prefix"))
    assert result["failed"] is True
    assert result["msg"] == "location must be s3://BUCKET[/PREFIX], not 'gs://not-s3/prefix'"
