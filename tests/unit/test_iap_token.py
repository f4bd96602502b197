"""The IAP ID-token provider, end to end through google-auth against a loopback
stand-in for Google's token endpoint (oauth2.googleapis.com cannot be reached here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import tomllib
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from mlflow_ansible import iap_token
from mlflow_ansible.iap_token import IapRequestHeaderProvider, IapTokenSource, TokenError

AUDIENCE = "123456-iap.apps.googleusercontent.com"
REPO = Path(__file__).resolve().parents[2]
HEAVY = ("ansible", "ansible_runner", "rich", "yaml")  # the wrapper's dependencies, not the provider's


@pytest.fixture(scope="module")
def signer_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture
def token_endpoint(signer_key):
    """Stand-in for https://oauth2.googleapis.com/token: trades a service-account assertion for an ID token."""
    calls = []
    lifetime = {"seconds": 3600}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            assertion = jwt.decode(form["assertion"][0], verify=False)
            calls.append(assertion)
            now = int(time.time())
            signer = crypt.RSASigner.from_string(signer_key, key_id="stand-in")
            id_token = jwt.encode(signer, {"aud": assertion["target_audience"], "iss": "https://accounts.google.com",
                                           "email": assertion["iss"], "iat": now, "exp": now + lifetime["seconds"]})
            body = json.dumps({"id_token": id_token.decode()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/token", calls, lifetime
    server.shutdown()


@pytest.fixture
def sa_key_file(tmp_path, signer_key, token_endpoint, monkeypatch):
    url = token_endpoint[0]
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "test", "private_key_id": "k1", "private_key": signer_key,
        "client_email": "mlflow-client@test.iam.gserviceaccount.com", "client_id": "1", "token_uri": url,
    }))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    iap_token._SOURCES.clear()
    return path


def test_fetches_an_id_token_for_the_audience(sa_key_file, token_endpoint):
    token = IapTokenSource(AUDIENCE).token()
    claims = jwt.decode(token, verify=False)
    assert claims["aud"] == AUDIENCE
    assert claims["email"] == "mlflow-client@test.iam.gserviceaccount.com"
    assert len(token_endpoint[1]) == 1


def test_token_is_cached_then_refreshed_before_expiry(sa_key_file, token_endpoint):
    now = {"t": time.time()}
    source = IapTokenSource(AUDIENCE, clock=lambda: now["t"])
    first = source.token()
    assert source.token() == first and len(token_endpoint[1]) == 1
    now["t"] += 3600 - iap_token.REFRESH_MARGIN + 1  # inside the refresh margin: a new token
    source.token()
    assert len(token_endpoint[1]) == 2


def test_header_provider_uses_proxy_authorization_with_basic_auth(sa_key_file, monkeypatch):
    provider = IapRequestHeaderProvider()
    monkeypatch.delenv(iap_token.AUDIENCE_ENV, raising=False)
    assert not provider.in_context()
    monkeypatch.setenv(iap_token.AUDIENCE_ENV, AUDIENCE)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    assert provider.in_context()
    assert list(provider.request_headers()) == ["Authorization"]
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    headers = provider.request_headers()
    assert list(headers) == ["Proxy-Authorization"] and headers["Proxy-Authorization"].startswith("Bearer ey")


def test_token_command_prints_a_token(sa_key_file):
    proc = subprocess.run([sys.executable, "-m", "mlflow_ansible", "token", "--audience", AUDIENCE],
                          capture_output=True, text=True, env=dict(os.environ), timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert jwt.decode(proc.stdout.strip(), verify=False)["aud"] == AUDIENCE


def test_no_audience_is_a_clear_error():
    with pytest.raises(TokenError, match="MLFLOW_ANSIBLE_IAP_AUDIENCE"):
        IapTokenSource("")


# Run with python -I (no PYTHONPATH, no user site, no current directory), this checkout first on sys.path,
# and a finder that refuses the wrapper's heavy dependencies: the provider must load and give a header.
_LIGHT_IMPORT = """
import json, sys
sys.path[:0] = [{repo!r}]
HEAVY = {heavy!r}

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HEAVY:
            raise ImportError(f"refused in this test: {{name}}")
        return None

sys.meta_path.insert(0, Refuse())
try:
    import ansible  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the finder let ansible in")
from importlib import import_module
provider = getattr(import_module({module!r}), "IapRequestHeaderProvider")()
assert provider.in_context()
headers = provider.request_headers()
loaded = sorted(name for name in sys.modules if name.partition(".")[0] in HEAVY)
print(json.dumps({{"headers": headers, "heavy": loaded}}))
"""


@pytest.mark.parametrize("module", ["mlflow_ansible_iap_token", "mlflow_ansible.iap_token"])
def test_the_provider_needs_no_ansible_runner_or_rich(sa_key_file, monkeypatch, module):
    """The entry point's module (and the package's path to it) imports without the wrapper's dependencies."""
    script = _LIGHT_IMPORT.format(repo=str(REPO), heavy=HEAVY, module=module)
    env = dict(os.environ, MLFLOW_ANSIBLE_IAP_AUDIENCE=AUDIENCE)
    env.pop("MLFLOW_TRACKING_USERNAME", None)
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, env=env,
                          cwd=sa_key_file.parent, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert list(report["headers"]) == ["Authorization"]
    assert jwt.decode(report["headers"]["Authorization"].removeprefix("Bearer "), verify=False)["aud"] == AUDIENCE


def test_the_small_distribution_is_the_same_module_without_the_wrappers_dependencies():
    small = tomllib.loads((REPO / "packaging" / "iap-token" / "pyproject.toml").read_text())
    full = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert (REPO / "packaging" / "iap-token" / "mlflow_ansible_iap_token.py").resolve() == (
        REPO / "mlflow_ansible_iap_token.py"
    )
    assert small["project"]["version"] == full["project"]["version"]
    names = {dependency.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip()
             for dependency in small["project"]["dependencies"]}
    assert names == {"google-auth", "requests"}
    entry = "mlflow.request_header_provider"
    assert small["project"]["entry-points"][entry] == full["project"]["entry-points"][entry] == {
        "mlflow-ansible-iap": "mlflow_ansible_iap_token:IapRequestHeaderProvider"
    }
    assert "mlflow_ansible_iap_token" in full["tool"]["setuptools"]["py-modules"]
