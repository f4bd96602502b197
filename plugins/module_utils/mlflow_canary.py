# Copyright: mlflow-ansible developers
# Apache License 2.0 (see LICENSE)
"""The canary of an MLflow tracking server, through its real REST API (standard library only).

Shared by the mlflow_canary module. Checks /health and /version, creates (or reuses) an experiment,
creates a run, logs a metric and reads it back, uploads a small artifact through the artifact proxy
(this server's, or the artifacts-only server the run's artifact URI names) and downloads it byte for
byte, then closes the run. For an artifacts-only server: upload, download, delete. ``probe`` does the
read-only part alone (/health and /version), what check mode runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
import urllib.parse

from ansible.module_utils.urls import ConnectionError as UrlConnectionError
from ansible.module_utils.urls import open_url


class CanaryError(Exception):
    pass


class Client:
    def __init__(self, base_url, timeout, headers):
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = headers

    def request(self, method, path, body=None, content_type=None):
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        try:
            resp = open_url(self.base + path, data=body, method=method, headers=headers, timeout=self.timeout)
            with resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except UrlConnectionError as exc:  # TLS and proxy failures open_url reports itself
            raise CanaryError(f"{method} {path} failed: {exc}") from exc

    def api(self, method, endpoint, payload=None, query=None):
        path = "/api/2.0/mlflow/" + endpoint
        if query:
            path += "?" + urllib.parse.urlencode(query)
        body = json.dumps(payload).encode() if payload is not None else None
        status, data = self.request(method, path, body, "application/json" if body else None)
        try:
            parsed = json.loads(data or b"{}")
        except ValueError:
            parsed = {"raw": data[:200].decode(errors="replace")}
        if status != 200:
            parsed["_status"] = status
        return parsed


def basic_auth_headers(username, password):
    if not username:
        return {}
    token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
    return {"Authorization": "Basic " + token}


def step(name, ok, detail=""):
    if not ok:
        raise CanaryError(f"{name} failed{': ' + detail if detail else ''}")


def artifact_round_trip(client, path, tag):
    """PUT a small file at ``path`` (relative to the client's base), GET it back byte for byte."""
    payload = f"mlflow-ansible canary {tag}\n".encode() * 64
    status, body = client.request("PUT", path, payload, "application/octet-stream")
    step("artifact upload", status == 200, f"HTTP {status} {body[:200]!r}")
    status, body = client.request("GET", path)
    step(
        "artifact download",
        status == 200 and body == payload,
        f"HTTP {status}, {len(body)} bytes, expected {len(payload)}",
    )
    return hashlib.sha256(payload).hexdigest()


def probe(client, report):
    """/health and /version: what check mode runs (reads only)."""
    status, body = client.request("GET", "/health")
    step("GET /health", status == 200, f"HTTP {status} {body[:100]!r}")
    status, body = client.request("GET", "/version")
    step("GET /version", status == 200, f"HTTP {status}")
    report["version"] = body.decode().strip()
    return report


def run_artifacts_only(client, experiment, run_name, report):
    path = f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_name}.txt"
    report["artifact_sha256"] = artifact_round_trip(client, path, f"{run_name} {time.time()}")
    status, body = client.request("DELETE", path)
    step("artifact delete", status == 200, f"HTTP {status} {body[:200]!r}")
    return report


def _experiment_id(client, experiment):
    found = client.api("GET", "experiments/get-by-name", query={"experiment_name": experiment})
    if "experiment" in found:
        return found["experiment"]["experiment_id"]
    step("experiments/get-by-name", found.get("error_code") == "RESOURCE_DOES_NOT_EXIST", json.dumps(found))
    created = client.api("POST", "experiments/create", {"name": experiment})
    if created.get("error_code") == "RESOURCE_ALREADY_EXISTS":  # another host's canary won the race
        created = client.api("GET", "experiments/get-by-name", query={"experiment_name": experiment})
        created = created.get("experiment", created)
    step("experiments/create", "experiment_id" in created, json.dumps(created))
    return created["experiment_id"]


def run_canary(client, experiment, run_name, artifacts_only, report):
    """The whole canary: writes one run (or one artifact, deleted again, on an artifacts-only server)."""
    probe(client, report)
    if artifacts_only:
        return run_artifacts_only(client, experiment, run_name, report)

    experiment_id = _experiment_id(client, experiment)
    report["experiment_id"] = experiment_id

    now = int(time.time() * 1000)
    created = client.api(
        "POST", "runs/create", {"experiment_id": experiment_id, "run_name": run_name, "start_time": now}
    )
    step("runs/create", "run" in created, json.dumps(created))
    info = created["run"]["info"]
    run_id = info["run_id"]
    report["run_id"] = run_id

    logged = client.api(
        "POST", "runs/log-metric", {"run_id": run_id, "key": "canary", "value": 1.0, "timestamp": now, "step": 0}
    )
    step("runs/log-metric", "_status" not in logged, json.dumps(logged))
    fetched = client.api("GET", "runs/get", query={"run_id": run_id})
    metrics = {m["key"]: m["value"] for m in fetched.get("run", {}).get("data", {}).get("metrics", [])}
    step("runs/get", metrics.get("canary") == 1.0, json.dumps(fetched)[:300])

    artifact_uri = info.get("artifact_uri", "")
    if artifact_uri.startswith("mlflow-artifacts:"):
        relative = urllib.parse.urlsplit(artifact_uri).path.lstrip("/")
        path = f"/api/2.0/mlflow-artifacts/artifacts/{relative}/canary.txt"
        report["artifact_sha256"] = artifact_round_trip(client, path, f"{run_id} {now}")
    elif artifact_uri.startswith(("http://", "https://")):  # an artifacts-only server, same credentials
        remote = Client(artifact_uri, client.timeout, client.headers)
        report["artifact_sha256"] = artifact_round_trip(remote, "/canary.txt", f"{run_id} {now}")
        report["artifact_server"] = urllib.parse.urlsplit(artifact_uri).netloc
    else:
        report["artifact"] = f"skipped: clients reach the store directly ({artifact_uri.split('://')[0]}://)"

    ended = client.api(
        "POST", "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)}
    )
    step("runs/update", "_status" not in ended, json.dumps(ended))
    return report
