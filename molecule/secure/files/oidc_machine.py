#!/usr/bin/env python3
"""Machine access under single sign-on, run on the VM with the server's own venv (the real MLflow client).

Reads {"client_id", "client_secret", "resource", "tokens": {name: jwt}} on standard input. A CI job gets an
access token from the provider (client-credentials grant, at the provider's token endpoint from its discovery
document; the VM trusts its CA) and logs a run with a metric through nginx with MLFLOW_TRACKING_TOKEN; then each
token minted by the test (oidc_material.py tokens) is sent as a bearer. Prints {"results": [...], "failed": N}.
"""

import base64
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

ISSUER = "https://idp.test"
PROXY = "https://127.0.0.1"
CTX = ssl._create_unverified_context()  # noqa: S323 - the server's self-signed test certificate, loopback only
CLIENT = """
import mlflow, sys
mlflow.set_tracking_uri("https://127.0.0.1")
mlflow.set_experiment("ci-runs")
with mlflow.start_run(run_name="ci-job") as run:
    mlflow.log_param("commit", "abc123")
    mlflow.log_metric("accuracy", 0.93)
print(run.info.run_id)
print(mlflow.get_run(run.info.run_id).data.metrics["accuracy"])
"""


def provider_token(client_id: str, secret: str, resource: str) -> str:
    with urllib.request.urlopen(f"{ISSUER}/.well-known/openid-configuration", timeout=30) as resp:  # noqa: S310
        endpoint = json.load(resp)["token_endpoint"]
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "resource": resource, "scope": "api"}).encode()
    req = urllib.request.Request(endpoint, data=body, headers={"Authorization": f"Basic {basic}"})  # noqa: S310
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the provider stand-in
        return json.load(resp)["access_token"]


def status(token: str) -> int:
    req = urllib.request.Request(f"{PROXY}/api/2.0/mlflow/experiments/search?max_results=1",  # noqa: S310
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30, context=CTX) as resp:  # noqa: S310 - loopback
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def main() -> None:
    given = json.load(sys.stdin)
    results = []
    token = provider_token(given["client_id"], given["client_secret"], given["resource"])
    env = {**os.environ, "MLFLOW_TRACKING_TOKEN": token, "MLFLOW_TRACKING_INSECURE_TLS": "true"}
    client = subprocess.run([sys.executable, "-c", CLIENT], env=env, capture_output=True, text=True, timeout=300)
    lines = client.stdout.split()
    results.append({"probe": "the MLflow client logs a run with the provider's client-credentials token",
                    "expected": "0.93", "got": lines[-1] if client.returncode == 0 and lines else client.stderr[-800:],
                    "ok": client.returncode == 0 and lines[-1:] == ["0.93"]})
    results.append({"probe": "no token", "expected": 401, "got": status(""), "ok": status("") == 401})
    for name, minted in given["tokens"].items():
        expected = 200 if name == "valid" else 401
        got = status(minted)
        results.append({"probe": f"bearer token minted {name}", "expected": expected, "got": got,
                        "ok": got == expected})
    print(json.dumps({"results": results, "failed": sum(not r["ok"] for r in results)}))


if __name__ == "__main__":
    main()
