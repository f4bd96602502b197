#!/usr/bin/env python3
"""Canary for an MLflow tracking server, through its real REST API (standard library only).

    mlflow_canary.py http://127.0.0.1:5000 [--experiment NAME] [--run-name NAME] [--credentials-stdin]

Checks /health and /version, creates (or reuses) an experiment, creates a run,
logs a metric and reads it back, uploads a small artifact through the artifact
proxy (this server's, or the artifacts-only server the run's artifact URI names)
and downloads it byte for byte, then closes the run. With --artifacts-only it
checks an artifacts-only server: upload, download, delete. Prints one JSON
object; exits 1 with the failing step when anything is wrong.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


class CanaryError(Exception):
    pass


class Client:
    def __init__(self, base_url: str, timeout: float, headers: dict[str, str]):
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = headers

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=dict(self.headers))
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - URL from the play
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def api(self, method: str, endpoint: str, payload: dict | None = None, query: dict | None = None) -> dict:
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


def step(name: str, ok: bool, detail: str = "") -> None:
    if not ok:
        raise CanaryError(f"{name} failed{': ' + detail if detail else ''}")


def artifact_round_trip(client: Client, path: str, tag: str) -> str:
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


def run_artifacts_only(client: Client, args: argparse.Namespace, report: dict) -> dict:
    path = f"/api/2.0/mlflow-artifacts/artifacts/{args.experiment}/{args.run_name}.txt"
    report["artifact_sha256"] = artifact_round_trip(client, path, f"{args.run_name} {time.time()}")
    status, body = client.request("DELETE", path)
    step("artifact delete", status == 200, f"HTTP {status} {body[:200]!r}")
    return report


def run(args: argparse.Namespace) -> dict:
    headers = {}
    credentials = json.load(sys.stdin) if args.credentials_stdin else {}
    if credentials.get("username"):
        token = f"{credentials['username']}:{credentials.get('password', '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
    client = Client(args.url, args.timeout, headers)
    report: dict = {"url": args.url}

    status, body = client.request("GET", "/health")
    step("GET /health", status == 200, f"HTTP {status} {body[:100]!r}")
    status, body = client.request("GET", "/version")
    step("GET /version", status == 200, f"HTTP {status}")
    report["version"] = body.decode().strip()
    if args.artifacts_only:
        return run_artifacts_only(client, args, report)

    found = client.api("GET", "experiments/get-by-name", query={"experiment_name": args.experiment})
    if "experiment" in found:
        experiment_id = found["experiment"]["experiment_id"]
    else:
        step("experiments/get-by-name", found.get("error_code") == "RESOURCE_DOES_NOT_EXIST", json.dumps(found))
        created = client.api("POST", "experiments/create", {"name": args.experiment})
        if created.get("error_code") == "RESOURCE_ALREADY_EXISTS":  # another host's canary won the race
            created = client.api("GET", "experiments/get-by-name", query={"experiment_name": args.experiment})
            created = created.get("experiment", created)
        step("experiments/create", "experiment_id" in created, json.dumps(created))
        experiment_id = created["experiment_id"]
    report["experiment_id"] = experiment_id

    now = int(time.time() * 1000)
    created = client.api(
        "POST", "runs/create", {"experiment_id": experiment_id, "run_name": args.run_name, "start_time": now}
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
        remote = Client(artifact_uri, args.timeout, client.headers)
        report["artifact_sha256"] = artifact_round_trip(remote, "/canary.txt", f"{run_id} {now}")
        report["artifact_server"] = urllib.parse.urlsplit(artifact_uri).netloc
    else:
        report["artifact"] = f"skipped: clients reach the store directly ({artifact_uri.split('://')[0]}://)"

    ended = client.api(
        "POST", "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)}
    )
    step("runs/update", "_status" not in ended, json.dumps(ended))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--experiment", default="mlflow-ansible-canary")
    parser.add_argument("--run-name", default="canary")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--artifacts-only", action="store_true", help="the server runs with --artifacts-only")
    parser.add_argument(
        "--credentials-stdin",
        action="store_true",
        help='read {"username": ..., "password": ...} for basic auth from standard input',
    )
    args = parser.parse_args(argv)
    try:
        report = run(args)
    except (CanaryError, OSError) as exc:
        print(json.dumps({"ok": False, "url": args.url, "error": str(exc)}))
        return 1
    report["ok"] = True
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
