"""The TEST STAND-IN for Google's APIs (molecule/resources/google_apis_standin.py), which stands in for
the GCE metadata server, oauth2.googleapis.com, storage.googleapis.com (in front of a gcp-storage-emulator),
compute.googleapis.com / www.googleapis.com and sqladmin.googleapis.com, driven by Google's own client code
unmodified: google-auth's compute_engine and service_account credentials, google-cloud-storage, and the
google.cloud collection's gcp_compute_firewall module and gcp_compute inventory plugin's filter builder.

Everything runs on loopback: the stand-in and the emulator in subprocesses, a CA and a certificate made
here. The names are resolved to 127.0.0.1 (and the ports to the stand-in's) by a test-only getaddrinfo
patch, in this process and, through a sitecustomize.py on PYTHONPATH, in the module's subprocess; the
end-to-end tests use /etc/hosts instead."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.tls_material import write_ca_and_server_certificate

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "molecule" / "resources" / "google_apis_standin.py"
NAMES = [
    "compute.googleapis.com",
    "www.googleapis.com",
    "storage.googleapis.com",
    "oauth2.googleapis.com",
    "sqladmin.googleapis.com",
    "metadata.google.internal",
]
PROJECT = "my-project"
VM_ACCOUNT = "mlflow-vm@my-project.iam.gserviceaccount.com"
DEPLOYER = "deployer@my-project.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/"
INSTANCES = [
    {"zone": "europe-west1-b", "name": "mlflow-1", "status": "RUNNING", "labels": {"mlflow": "tracking"},
     "networkIP": "10.132.0.2", "natIP": "34.76.1.2", "tags": ["mlflow"]},
    {"zone": "europe-west1-b", "name": "mlflow-2", "status": "TERMINATED", "labels": {"mlflow": "tracking"},
     "networkIP": "10.132.0.3"},
    {"zone": "us-central1-a", "name": "mlflow-3", "status": "RUNNING", "labels": {"mlflow": "tracking"},
     "networkIP": "10.128.0.2"},
    {"zone": "us-central1-a", "name": "web", "status": "RUNNING", "labels": {"role": "web"}, "networkIP": "10.128.0.9"},
    {"project": "other-project", "zone": "us-central1-a", "name": "elsewhere", "labels": {"mlflow": "tracking"}},
]  # fmt: skip

# The getaddrinfo patch: Google's names to the stand-in on loopback (test-only; the end-to-end tests use /etc/hosts).
RESOLVER = """
import os
import socket

_getaddrinfo = socket.getaddrinfo
_NAMES = set(os.environ["STANDIN_NAMES"].split(","))
_TLS_PORT = int(os.environ["STANDIN_TLS_PORT"])
_HTTP_PORT = int(os.environ["STANDIN_HTTP_PORT"])


def getaddrinfo(host, port, *args, **kwargs):
    if host in _NAMES or host == "169.254.169.254":
        port = {443: _TLS_PORT, "443": _TLS_PORT, "https": _TLS_PORT}.get(port, _HTTP_PORT)
        return _getaddrinfo("127.0.0.1", port, *args, **kwargs)
    return _getaddrinfo(host, port, *args, **kwargs)


socket.getaddrinfo = getaddrinfo
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_standin():
    spec = importlib.util.spec_from_file_location("google_apis_standin_under_test", STANDIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _service_account_info(key, email: str, kid: str) -> dict:
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": kid,
        "private_key": pem,
        "client_email": email,
        "client_id": "104000000000000000001",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict[str, Path]:
    """A CA, and a certificate from it for every stand-in name and 127.0.0.1."""
    return write_ca_and_server_certificate(
        tmp_path_factory.mktemp("tls"), NAMES, ("127.0.0.1", "169.254.169.254"), "google-apis-standin test CA"
    )


@pytest.fixture(scope="module")
def emulator():
    """A real gcp-storage-emulator (in memory) on loopback: the Cloud Storage front's upstream."""
    pytest.importorskip("gcp_storage_emulator")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port), "-M", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    pytest.fail("gcp-storage-emulator did not start")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def keys():
    """The deployer's service account key, known to the stand-in, and another key it does not know."""
    good, other = _rsa_key(), _rsa_key()
    numbers = good.public_key().public_numbers()
    return {
        "info": _service_account_info(good, DEPLOYER, "k1"),
        "other": _service_account_info(other, DEPLOYER, "k1"),
        "settings": [{"client_email": DEPLOYER, "private_key_id": "k1", "n": numbers.n, "e": numbers.e}],
    }


class Standin:
    def __init__(self, process, tls_port: int, http_port: int, ca: Path, keys: dict):
        self.process, self.tls_port, self.http_port, self.ca, self.keys = process, tls_port, http_port, ca, keys

    def control(self, path: str, payload=None):
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data)
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return json.load(response)

    def reset(self, **settings) -> None:
        self.control("/_standin/reset", {"service_account_keys": self.keys["settings"], **settings})

    def requests(self) -> list[dict]:
        return self.control("/_standin/requests")

    def env(self) -> dict:
        return {
            "STANDIN_NAMES": ",".join(NAMES),
            "STANDIN_TLS_PORT": str(self.tls_port),
            "STANDIN_HTTP_PORT": str(self.http_port),
        }


@pytest.fixture(scope="module")
def server(tls, emulator, keys):
    process = subprocess.Popen(
        [sys.executable, str(STANDIN), "--host", "127.0.0.1", "--tls-port", "0", "--http-port", "0",
         "--cert", str(tls["cert"]), "--key", str(tls["key"]), "--storage-upstream", emulator,
         "--settings", json.dumps({"service_account_keys": keys["settings"]})],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline().split()
        assert line[0] == "LISTENING", line
        tls_port, http_port = int(line[1].rsplit(":", 1)[1]), int(line[2].rsplit(":", 1)[1])
        yield Standin(process, tls_port, http_port, tls["ca"], keys)
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def standin(server, monkeypatch):
    """The stand-in reset to the test instances; Google's names resolve to it in this process."""
    server.reset(instances=INSTANCES)
    namespace: dict = {}
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    exec(compile(RESOLVER, "resolver", "exec"), namespace)  # noqa: S102 - the test's own resolver text
    monkeypatch.setattr(socket, "getaddrinfo", namespace["getaddrinfo"])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca))
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GCE_METADATA_HOST", "GCE_METADATA_IP"):
        monkeypatch.delenv(name, raising=False)
    return server


def _metadata_token(standin, scopes: str | None = None) -> str:
    url = f"http://127.0.0.1:{standin.http_port}/computeMetadata/v1/instance/service-accounts/default/token"
    query = f"?scopes={scopes}" if scopes else ""
    request = urllib.request.Request(url + query, headers={"Metadata-Flavor": "Google"})  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return json.load(response)["access_token"]


def _service_account_token(info: dict, scopes: list[str]) -> str:
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(info, scopes=scopes)
    credentials.refresh(Request())
    return credentials.token


def _get(url: str, token: str | None, **kwargs):
    import requests

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(url, headers=headers, timeout=30, **kwargs)


# --- the RSA check by hand ---------------------------------------------------------------------------------------


def test_rsa_signature_check_by_hand_agrees_with_cryptography():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    module = _load_standin()
    key = _rsa_key()
    numbers = key.public_key().public_numbers()
    signature = key.sign(b"header.payload", padding.PKCS1v15(), hashes.SHA256())
    assert module.rsa_sha256_verify(numbers.n, numbers.e, b"header.payload", signature)
    assert not module.rsa_sha256_verify(numbers.n, numbers.e, b"header.payloaD", signature)
    assert not module.rsa_sha256_verify(numbers.n, numbers.e, b"header.payload", signature[:-1] + b"\0")
    other = _rsa_key().public_key().public_numbers()
    assert not module.rsa_sha256_verify(other.n, other.e, b"header.payload", signature)


# --- the metadata server -----------------------------------------------------------------------------------------

METADATA_CLIENT = """
import json, sys
import google.auth.transport.requests
from google.auth import compute_engine
from google.auth.compute_engine import _metadata

request = google.auth.transport.requests.Request()
out = {"ping": _metadata.ping(request)}
try:
    credentials = compute_engine.Credentials(scopes=json.loads(sys.argv[1]) or None)
    credentials.refresh(request)
    out.update(token=credentials.token, email=credentials.service_account_email,
               project=_metadata.get_project_id(request),
               zone=_metadata.get(request, "instance/zone"),
               attributes=_metadata.get(request, "instance/attributes/", recursive=True),
               info=_metadata.get_service_account_info(request))
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def _run_metadata_client(standin, scopes=None) -> dict:
    env = {
        **os.environ,
        "GCE_METADATA_HOST": f"127.0.0.1:{standin.http_port}",
        "GCE_METADATA_IP": f"127.0.0.1:{standin.http_port}",
        "GCE_METADATA_TIMEOUT": "5",
    }
    result = subprocess.run(
        [sys.executable, "-c", METADATA_CLIENT, json.dumps(scopes or [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_google_auth_compute_engine_credentials_from_the_metadata_server(standin):
    standin.reset(attributes={"mlflow-role": "tracking"}, instance_zone="europe-west1-b", numeric_project_id="42")
    out = _run_metadata_client(standin)
    assert out["ping"] is True
    assert "error" not in out, out
    assert out["email"] == VM_ACCOUNT
    assert out["project"] == PROJECT
    assert out["zone"] == "projects/42/zones/europe-west1-b"
    assert out["attributes"] == {"mlflow-role": "tracking"}
    assert out["info"] == {"aliases": ["default"], "email": VM_ACCOUNT, "scopes": [SCOPE + "cloud-platform"]}
    # The metadata server's token is good on the other APIs (cloud-platform scope), as the VM's principal.
    response = _get(f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/aggregated/instances", out["token"])
    assert response.status_code == 200, response.text
    assert standin.requests()[-1]["principal"] == VM_ACCOUNT

    # Scopes asked for narrow the token: a storage-only token is refused by Compute.
    narrowed = _run_metadata_client(standin, [SCOPE + "devstorage.read_only"])
    token_requests = [r for r in standin.requests() if r["path"].endswith("/default/token")]
    assert token_requests[-1]["query"] == "scopes=" + urllib.request.quote(SCOPE + "devstorage.read_only", safe="")
    response = _get(
        f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/aggregated/instances", narrowed["token"]
    )
    assert response.status_code == 403
    assert response.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


def test_metadata_server_needs_the_flavor_header_and_always_sends_it(standin):
    base = f"http://127.0.0.1:{standin.http_port}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/computeMetadata/v1/project/project-id", timeout=10)  # noqa: S310
    assert refused.value.code == 403
    assert refused.value.headers["Metadata-Flavor"] == "Google"

    def get(path):
        request = urllib.request.Request(base + path, headers={"Metadata-Flavor": "Google"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.headers["Metadata-Flavor"] == "Google"
            return response.read().decode(), response.headers["Content-Type"]

    assert get("/")[0] == "computeMetadata/\n"
    assert get("/computeMetadata/v1/instance/service-accounts/")[0] == f"default/\n{VM_ACCOUNT}/\n"
    assert get("/computeMetadata/v1/instance/service-accounts/default/scopes")[0] == SCOPE + "cloud-platform\n"
    assert get("/computeMetadata/v1/instance/name")[0] == "mlflow-vm"
    standin.control("/_standin/settings", {"attributes": {"role": "tracking", "startup-script": "#!/bin/sh"}})
    assert get("/computeMetadata/v1/instance/attributes/role") == ("tracking", "application/text")
    assert get("/computeMetadata/v1/instance/attributes/")[0] == "role\nstartup-script\n"
    attributes = get("/computeMetadata/v1/instance/attributes/?recursive=true")
    assert attributes == (json.dumps({"role": "tracking", "startup-script": "#!/bin/sh"}), "application/json")
    with pytest.raises(urllib.error.HTTPError) as missing:
        get("/computeMetadata/v1/instance/attributes/nothing")
    assert missing.value.code == 404 and missing.value.headers["Metadata-Flavor"] == "Google"
    assert get("/computeMetadata/v1/project/numeric-project-id?alt=json") == ("123456789012", "application/json")
    project = json.loads(get("/computeMetadata/v1/project/?recursive=true")[0])
    assert project["projectId"] == PROJECT and project["numericProjectId"] == 123456789012


def test_a_vm_without_a_service_account_has_no_token(standin):
    standin.reset(service_account=None)
    out = _run_metadata_client(standin)
    assert out["ping"] is True
    assert "404" in out["error"] or "Not Found" in out["error"], out
    request = urllib.request.Request(
        f"http://127.0.0.1:{standin.http_port}/computeMetadata/v1/instance/service-accounts/default/token",
        headers={"Metadata-Flavor": "Google"},
    )
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310 - loopback
    assert missing.value.code == 404
    assert not [r for r in standin.requests() if r["status"] == 200 and r["path"].endswith("/token")]


# --- OAuth 2.0 ---------------------------------------------------------------------------------------------------


def test_service_account_key_gets_a_token_and_another_key_does_not(standin):
    from google.auth.exceptions import RefreshError

    token = _service_account_token(standin.keys["info"], [SCOPE + "compute.readonly"])
    assert token.startswith("ya29.")
    grant = standin.requests()[-1]
    assert (grant["host"], grant["method"], grant["path"]) == ("oauth2.googleapis.com", "POST", "/token")
    assert (grant["principal"], grant["status"]) == (DEPLOYER, 200)
    response = _get(f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/us-central1-a/instances", token)
    assert response.status_code == 200
    assert [i["name"] for i in response.json()["items"]] == ["mlflow-3", "web"]
    assert standin.requests()[-1]["principal"] == DEPLOYER
    # compute.readonly: no writes.
    import requests

    refused = requests.post(
        f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/global/firewalls",
        json={"name": "x"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert refused.status_code == 403

    with pytest.raises(RefreshError, match="invalid_grant") as bad:
        _service_account_token(standin.keys["other"], [SCOPE + "compute"])
    assert "Invalid JWT Signature" in str(bad.value)
    assert standin.requests()[-1]["status"] == 400
    unknown_kid = {**standin.keys["info"], "private_key_id": "k2"}
    with pytest.raises(RefreshError, match="invalid_grant"):
        _service_account_token(unknown_kid, [SCOPE + "compute"])
    wrong_email = {**standin.keys["info"], "client_email": "someone@my-project.iam.gserviceaccount.com"}
    with pytest.raises(RefreshError, match="account not found"):
        _service_account_token(wrong_email, [SCOPE + "compute"])


# --- Cloud Storage -----------------------------------------------------------------------------------------------


def test_google_cloud_storage_through_the_front(standin):
    from google.cloud import storage
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(
        standin.keys["info"], scopes=[SCOPE + "devstorage.read_write"]
    )
    client = storage.Client(project=PROJECT, credentials=credentials)
    bucket = client.create_bucket("mlflow-artifacts")
    data = os.urandom(3 * 1024 * 1024 + 12345)
    resumable = bucket.blob("runs/big.bin", chunk_size=1024 * 1024)  # several PUTs to the session URL
    # No size given: a resumable upload (a known size up to 8 MiB would go in one multipart POST).
    resumable.upload_from_file(io.BytesIO(data), content_type="application/octet-stream")
    small = bucket.blob("runs/small.txt")
    small.upload_from_string(b"hello through the front")
    assert bucket.blob("runs/big.bin").download_as_bytes() == data
    assert bucket.blob("runs/small.txt").download_as_bytes() == b"hello through the front"
    assert sorted(b.name for b in client.list_blobs("mlflow-artifacts")) == ["runs/big.bin", "runs/small.txt"]

    log = [r for r in standin.requests() if r["host"] == "storage.googleapis.com"]
    assert log and all(r["principal"] == DEPLOYER for r in log), log
    assert all(r["status"] in (200, 308) for r in log), log
    # The session URL the client followed was the rewritten https://storage.googleapis.com one.
    puts = [r for r in log if r["method"] == "PUT" and r["path"].startswith("/upload/storage/v1/b/mlflow-artifacts/o")]
    assert len(puts) == 4 and all("upload_id=" in r["query"] for r in puts), puts
    assert [r["status"] for r in puts] == [308, 308, 308, 200]
    assert any(r["path"].startswith("/download/storage/v1/") or "alt=media" in r["query"] for r in log)

    # The resumable session's Location and the object's mediaLink point at storage.googleapis.com.
    import requests

    token = credentials.token
    start = requests.post(
        "https://storage.googleapis.com/upload/storage/v1/b/mlflow-artifacts/o?uploadType=resumable",
        json={"name": "direct.bin"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert start.status_code == 200
    assert start.headers["Location"].startswith(
        "https://storage.googleapis.com/upload/storage/v1/b/mlflow-artifacts/o?"
    )
    chunked = requests.put(
        start.headers["Location"],
        data=iter([b"a" * 70000, b"b" * 5]),  # a generator: sent chunked
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert chunked.status_code == 200, chunked.text
    assert chunked.json()["mediaLink"].startswith("https://storage.googleapis.com/download/storage/v1/")
    media = _get(chunked.json()["mediaLink"], token)
    assert media.content == b"a" * 70000 + b"b" * 5


def test_storage_refuses_bad_tokens_and_read_only_writes(standin):
    from google.api_core.exceptions import Forbidden
    from google.cloud import storage
    from google.oauth2 import service_account

    writer = _service_account_token(standin.keys["info"], [SCOPE + "devstorage.full_control"])
    import requests

    created = requests.post(
        f"https://storage.googleapis.com/storage/v1/b?project={PROJECT}",
        json={"name": "read-only-test"},
        headers={"Authorization": f"Bearer {writer}"},
        timeout=30,
    )
    assert created.status_code == 200, created.text

    bad = _get("https://storage.googleapis.com/storage/v1/b/read-only-test/o", "ya29.not-a-token")
    assert bad.status_code == 401
    assert bad.json()["error"]["status"] == "UNAUTHENTICATED"
    assert standin.requests()[-1]["principal"] is None
    assert _get("https://storage.googleapis.com/storage/v1/b/read-only-test/o", None).status_code == 401
    compute_only = _service_account_token(standin.keys["info"], [SCOPE + "compute"])
    assert _get("https://storage.googleapis.com/storage/v1/b/read-only-test/o", compute_only).status_code == 403

    credentials = service_account.Credentials.from_service_account_info(
        standin.keys["info"], scopes=[SCOPE + "devstorage.read_only"]
    )
    client = storage.Client(project=PROJECT, credentials=credentials)
    assert list(client.list_blobs("read-only-test")) == []
    with pytest.raises(Forbidden, match="insufficient authentication scopes"):
        client.bucket("read-only-test").blob("x.txt").upload_from_string(b"no", retry=None)
    refused = standin.requests()[-1]
    assert (refused["method"], refused["status"], refused["principal"]) == ("POST", 403, DEPLOYER)


# --- Compute Engine ----------------------------------------------------------------------------------------------


def _inventory_filter(filters: list[str]) -> str:
    """The filter string the google.cloud.gcp_compute inventory plugin builds from its `filters` option."""
    from ansible_collections.google.cloud.plugins.inventory.gcp_compute import InventoryModule

    return InventoryModule()._get_query_options(filters)


def _aggregated(token: str, **params):
    return _get(
        f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/aggregated/instances", token, params=params
    )


def test_compute_aggregated_instances_with_the_inventory_plugins_filters(standin):
    token = _metadata_token(standin)

    def names(response) -> list[str]:
        assert response.status_code == 200, response.text
        return sorted(i["name"] for scope in response.json()["items"].values() for i in scope.get("instances", []))

    both = _inventory_filter(["labels.mlflow = tracking", "status = RUNNING"])
    assert both == "(labels.mlflow = tracking) (status = RUNNING)"
    answer = _aggregated(token, filter=both)
    assert names(answer) == ["mlflow-1", "mlflow-3"]
    items = answer.json()["items"]
    assert items["zones/europe-west1-c"]["warning"]["code"] == "NO_RESULTS_ON_PAGE"
    assert answer.json()["kind"] == "compute#instanceAggregatedList"
    one = next(i for i in items["zones/europe-west1-b"]["instances"] if i["name"] == "mlflow-1")
    assert one["kind"] == "compute#instance"
    assert one["zone"] == f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/europe-west1-b"
    assert one["networkInterfaces"][0]["networkIP"] == "10.132.0.2"
    assert one["networkInterfaces"][0]["accessConfigs"][0] == {
        "kind": "compute#accessConfig",
        "type": "ONE_TO_ONE_NAT",
        "name": "External NAT",
        "natIP": "34.76.1.2",
        "networkTier": "PREMIUM",
    }
    assert one["tags"]["items"] == ["mlflow"] and one["labels"] == {"mlflow": "tracking"}
    assert one["serviceAccounts"] == [{"email": VM_ACCOUNT, "scopes": [SCOPE + "cloud-platform"]}]
    assert "accessConfigs" not in items["zones/us-central1-a"]["instances"][0]["networkInterfaces"][0]

    assert names(_aggregated(token, filter=_inventory_filter(["labels.mlflow = tracking"]))) == [
        "mlflow-1",
        "mlflow-2",
        "mlflow-3",
    ]
    assert names(_aggregated(token, filter="(status != RUNNING)")) == ["mlflow-2"]
    assert names(_aggregated(token, filter='(zone = "us-central1-a") AND (name = mlflow-*)')) == ["mlflow-3"]
    assert names(_aggregated(token, filter="labels.role = web")) == ["web"]
    assert names(_aggregated(token)) == ["mlflow-1", "mlflow-2", "mlflow-3", "web"]
    for unsupported in ["labels.mlflow = tracking OR status = RUNNING", "(status > RUNNING)", "(nosuchfield = x)"]:
        refused = _aggregated(token, filter=unsupported)
        assert refused.status_code == 400, unsupported
        assert refused.json()["error"]["errors"][0]["reason"] == "invalid"

    # Pages: the plugin's loop over nextPageToken sees every instance once.
    seen, params = [], {"maxResults": 3}
    while True:
        page = _aggregated(token, **params)
        seen += names(page)
        if "nextPageToken" not in page.json():
            break
        params["pageToken"] = page.json()["nextPageToken"]
    assert sorted(seen) == ["mlflow-1", "mlflow-2", "mlflow-3", "web"]

    assert _aggregated("ya29.unknown").status_code == 401


_GOOGLE_CLOUD = importlib.util.find_spec("ansible_collections.google.cloud")


def test_gcp_compute_inventory_plugin_lists_the_filtered_instances(standin, tmp_path):
    """ansible-inventory with the google.cloud.gcp_compute plugin, unmodified, as a deployment's inventory."""
    if not _GOOGLE_CLOUD:
        pytest.skip("the google.cloud collection is not installed")
    (tmp_path / "sitecustomize.py").write_text(RESOLVER)
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(standin.keys["info"]))
    (tmp_path / "mlflow.gcp_compute.yml").write_text(
        textwrap.dedent(f"""\
            plugin: google.cloud.gcp_compute
            projects: [{PROJECT}]
            auth_kind: serviceaccount
            service_account_file: {key_file}
            filters:
              - labels.mlflow = tracking
              - status = RUNNING
            hostnames: [name]
            keyed_groups:
              - key: labels.mlflow
                prefix: mlflow
            compose:
              ansible_host: networkInterfaces[0].networkIP
            """)
    )
    env = {
        **os.environ,
        **standin.env(),
        "PYTHONPATH": str(tmp_path),
        "REQUESTS_CA_BUNDLE": str(standin.ca),
        "ANSIBLE_INVENTORY_ENABLED": "google.cloud.gcp_compute",
    }
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(tmp_path / "mlflow.gcp_compute.yml"),
         "--list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    inventory = json.loads(result.stdout, object_hook=lambda d: d.get("__ansible_unsafe", d))  # unwrap the unsafe
    assert sorted(inventory["mlflow_tracking"]["hosts"]) == ["mlflow-1", "mlflow-3"], inventory
    hostvars = inventory["_meta"]["hostvars"]
    assert hostvars["mlflow-1"]["ansible_host"] == "10.132.0.2"
    assert hostvars["mlflow-1"]["networkInterfaces"][0]["accessConfigs"][0]["natIP"] == "34.76.1.2"
    listed = [r for r in standin.requests() if r["path"].endswith("/aggregated/instances")]
    assert listed and listed[0]["query"] == urllib.parse.urlencode(
        {"filter": "(labels.mlflow = tracking) (status = RUNNING)"}
    )
    assert all((r["principal"], r["status"]) == (DEPLOYER, 200) for r in listed)


FIREWALL_MODULE = (
    Path(next(iter(_GOOGLE_CLOUD.submodule_search_locations))) / "plugins/modules/gcp_compute_firewall.py"
    if _GOOGLE_CLOUD
    else Path("/nonexistent")
)


def _run_firewall_module(standin, tmp_path, **params) -> dict:
    """The google.cloud.gcp_compute_firewall module, unmodified, as Ansible runs it (its arguments as JSON)."""
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(RESOLVER))
    args = {
        "project": PROJECT,
        "auth_kind": "serviceaccount",
        "service_account_contents": json.dumps(standin.keys["info"]),
        "name": "mlflow-tracking",
        "allowed": [{"ip_protocol": "tcp", "ports": ["5000"]}],
        "target_tags": ["mlflow"],
        **params,
    }
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {
        **os.environ,
        **standin.env(),
        "PYTHONPATH": str(tmp_path),
        "REQUESTS_CA_BUNDLE": str(standin.ca),
    }
    result = subprocess.run(
        [sys.executable, str(FIREWALL_MODULE), str(args_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip(), result.stderr
    out = json.loads(result.stdout)
    assert not out.get("failed"), out
    return out


def test_gcp_compute_firewall_module_create_change_noop_delete(standin, tmp_path):
    if not FIREWALL_MODULE.is_file():
        pytest.skip("the google.cloud collection is not installed")
    standin.reset(compute_operation_polls=1)
    created = _run_firewall_module(standin, tmp_path, source_ranges=["10.0.0.0/8"])
    assert created["changed"] is True
    assert created["sourceRanges"] == ["10.0.0.0/8"] and created["priority"] == 1000
    assert created["selfLink"].endswith(f"/projects/{PROJECT}/global/firewalls/mlflow-tracking")
    stored = standin.control("/_standin/firewalls")[PROJECT]["mlflow-tracking"]
    assert stored["logConfig"] == {"enable": False} and stored["disabled"] is False
    assert stored["direction"] == "INGRESS" and stored["targetTags"] == ["mlflow"]

    again = _run_firewall_module(standin, tmp_path, source_ranges=["10.0.0.0/8"])
    assert again["changed"] is False
    assert [r["method"] for r in standin.requests() if "/firewalls" in r["path"]][-1] == "GET"

    changed = _run_firewall_module(standin, tmp_path, source_ranges=["10.0.0.0/8", "35.235.240.0/20"])
    assert changed["changed"] is True
    assert standin.control("/_standin/firewalls")[PROJECT]["mlflow-tracking"]["sourceRanges"] == [
        "10.0.0.0/8",
        "35.235.240.0/20",
    ]
    assert standin.control("/_standin/firewalls")[PROJECT]["mlflow-tracking"]["id"] == stored["id"]
    writes = [(r["method"], r["principal"]) for r in standin.requests() if r["path"].endswith("/global/firewalls")
              or r["path"].endswith("/global/firewalls/mlflow-tracking") and r["method"] != "GET"]  # fmt: skip
    assert writes == [("POST", DEPLOYER), ("PATCH", DEPLOYER)], writes
    polls = [r for r in standin.requests() if "/global/operations/" in r["path"]]
    assert polls and all(r["status"] == 200 for r in polls)

    deleted = _run_firewall_module(standin, tmp_path, state="absent")
    assert deleted["changed"] is True
    assert PROJECT not in standin.control("/_standin/firewalls") or not standin.control("/_standin/firewalls")[PROJECT]
    assert _run_firewall_module(standin, tmp_path, state="absent")["changed"] is False


# --- Cloud SQL Admin, and the control endpoints ------------------------------------------------------------------


def test_sqladmin_routes_share_the_tokens(standin):
    import requests

    standin.reset(sqladmin={"instances": [f"{PROJECT}/mlflow-db"], "polls_until_done": 2})
    token = _metadata_token(standin)
    url = f"https://sqladmin.googleapis.com/v1/projects/{PROJECT}/instances/mlflow-db/backupRuns"
    started = requests.post(url, json={"description": "t"}, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert started.status_code == 200, started.text
    operation = started.json()
    assert operation["kind"] == "sql#operation" and operation["user"] == VM_ACCOUNT
    poll = f"https://sqladmin.googleapis.com/v1/projects/{PROJECT}/operations/{operation['name']}?alt=json"
    assert _get(poll, token).json()["status"] == "RUNNING"
    assert _get(poll, token).json()["status"] == "DONE"
    assert standin.requests()[-1]["principal"] == VM_ACCOUNT
    storage_only = _service_account_token(standin.keys["info"], [SCOPE + "devstorage.read_only"])
    refused = requests.post(url, json={}, headers={"Authorization": f"Bearer {storage_only}"}, timeout=30)
    assert refused.status_code == 403
    assert requests.post(url, json={}, headers={"Authorization": "Bearer nope"}, timeout=30).status_code == 401


def test_control_endpoints(standin):
    with pytest.raises(urllib.error.HTTPError) as bad:
        standin.control("/_standin/reset", {"no_such_setting": 1})
    assert bad.value.code == 400
    token = _metadata_token(standin)
    merged = standin.control("/_standin/settings", {"project_id": "other-project"})["settings"]
    assert merged["project_id"] == "other-project" and merged["instances"] == INSTANCES
    assert _get(f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/aggregated/instances", token).ok
    standin.reset()
    assert standin.requests() == []
    assert (
        _get(f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/aggregated/instances", token).status_code
        == 401
    )
    assert _get("https://storage.googleapis.com/nothing", None).status_code == 401


def test_expired_tokens_are_refused(standin):
    standin.reset(token_expires_in=3599, token_valid_for=1)
    token = _metadata_token(standin)
    url = f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/aggregated/instances"
    assert _get(url, token).status_code == 200
    time.sleep(1.5)
    expired = _get(url, token)
    assert expired.status_code == 401
    assert expired.json()["error"]["errors"][0]["reason"] == "authError"


def test_command_line_settings_from_a_file_and_both_ports(tls, tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"project_id": "from-file", "service_account": None}))
    process = subprocess.Popen(
        [sys.executable, str(STANDIN), "--host", "127.0.0.1", "--tls-port", "0", "--http-port", "0",
         "--cert", str(tls["cert"]), "--key", str(tls["key"]), "--settings", f"@{settings}"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        listening, tls_url, http_url = process.stdout.readline().split()
        assert listening == "LISTENING" and tls_url.startswith("https://127.0.0.1:")
        url = http_url + "/computeMetadata/v1/project/project-id"
        request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})  # noqa: S310 - loopback
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            assert response.read() == b"from-file"
        import ssl

        context = ssl.create_default_context(cafile=str(tls["ca"]))
        request = urllib.request.Request(tls_url + "/_standin/requests")  # noqa: S310 - loopback
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310 - loopback
            assert json.load(response)[0]["path"] == "/computeMetadata/v1/project/project-id"
    finally:
        process.terminate()
        process.wait(10)
