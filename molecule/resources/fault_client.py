#!/usr/bin/env python3
"""Client side of the fault tests (molecule/resources/faults.yml, in the default scenario):
log data, break things, count, check.

    fault_client.py seed NAME URL STATE       a run with params, POINTS metric points (one request each), an artifact
    fault_client.py load NAME URL STATE STOP  log one metric point per request until STOP exists and the server
                                              answered RECOVERY requests in a row after that; every acknowledged
                                              point must be stored
    fault_client.py tmpfull NAME URL STATE BYTES   upload BYTES through the artifact proxy (the server's temporary
                                              directory is too small): it must fail cleanly, the next upload work
    fault_client.py check URL STATE           read back everything the runs above had acknowledged

Runs on the VM with the deployed venv's Python, credentials from MLFLOW_TRACKING_USERNAME/PASSWORD.
Client retries are off (MLFLOW_HTTP_REQUEST_MAX_RETRIES=0): every failed request is counted once.
Prints one "FAULT ..." line of counts; exits 1 when the expectation is not met.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")

import requests  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

POINTS = 50
ARTIFACT_BYTES = 256 * 1024
RECOVERY = 20
# Bounds on the load loop (not assertions on timing: the test fails on missing data or no recovery).
LOAD_LIMIT_S = 600
FAILURE_PAUSE_S = 0.5


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_state(path: str) -> dict:
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    return {}


def save_state(path: str, state: dict) -> None:
    with open(path + ".new", "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    os.replace(path + ".new", path)


def new_run(client: MlflowClient, name: str) -> str:
    experiment = f"faults-{socket.gethostname()}"
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    return client.create_run(experiment_id, run_name=name).info.run_id


def report(name: str, ok: bool, **counts) -> int:
    fields = " ".join(f"{key}={value}" for key, value in counts.items())
    print(f"FAULT {name}: {'ok' if ok else 'FAILED'} {fields}")
    return 0 if ok else 1


def seed(client: MlflowClient, name: str, state_file: str) -> int:
    run_id = new_run(client, name)
    client.log_param(run_id, "fault", name)
    for step in range(POINTS):
        client.log_metric(run_id, "seed", float(step), step=step)
    data = os.urandom(ARTIFACT_BYTES)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "seed.bin")
        with open(path, "wb") as handle:
            handle.write(data)
        client.log_artifact(run_id, path)
    state = load_state(state_file)
    state[name] = {
        "run_id": run_id,
        "metric": "seed",
        "steps": list(range(POINTS)),
        "params": {"fault": name},
        "artifacts": {"seed.bin": sha256_bytes(data)},
    }
    save_state(state_file, state)
    # sent counts the API calls: param, points, artifact (plus experiment and run creation).
    return report(f"seed {name}", True, sent=POINTS + 2, failed=0, points=POINTS, artifacts=1)


def load(client: MlflowClient, name: str, state_file: str, stop_file: str) -> int:
    run_id = new_run(client, name)
    acked: list[int] = []
    failed_steps: list[int] = []
    errors: dict[str, int] = {}
    streak = 0
    seen_stop = False
    step = 0
    started = time.monotonic()
    while time.monotonic() - started < LOAD_LIMIT_S:
        seen_stop = seen_stop or os.path.exists(stop_file)
        if seen_stop and streak >= RECOVERY:
            break
        try:
            client.log_metric(run_id, "load", float(step), step=step)
        except Exception as exc:  # noqa: BLE001 - every kind of failure is counted
            failed_steps.append(step)
            kind = type(exc).__name__
            errors[kind] = errors.get(kind, 0) + 1
            streak = 0
            time.sleep(FAILURE_PAUSE_S)
        else:
            if not acked:  # the playbook starts the fault only once the load is under way
                Path(f"{stop_file}.started").touch()
            acked.append(step)
            streak += 1
            time.sleep(0.02)
        step += 1
    recovered = seen_stop and streak >= RECOVERY
    state = load_state(state_file)
    state[name] = {"run_id": run_id, "metric": "load", "steps": acked, "params": {}, "artifacts": {}}
    save_state(state_file, state)
    stored = {m.step for m in client.get_metric_history(run_id, "load")}
    missing = [s for s in acked if s not in stored]
    failed_but_stored = sum(1 for s in failed_steps if s in stored)
    return report(
        f"load {name}",
        recovered and not missing and bool(failed_steps),
        sent=step,
        acked=len(acked),
        failed=len(failed_steps),
        errors=json.dumps(errors, separators=(",", ":")),
        recovered=recovered,
        verified=len(acked) - len(missing),
        missing=len(missing),
        failed_but_stored=failed_but_stored,
    )


def tmpfull(client: MlflowClient, name: str, url: str, state_file: str, size: int) -> int:
    run_id = new_run(client, name)
    run = client.get_run(run_id)
    # mlflow-artifacts:/<experiment>/<run>/artifacts -> the proxy's PUT endpoint.
    path = run.info.artifact_uri.split(":", 1)[1].lstrip("/")
    auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
    endpoint = f"{url}/api/2.0/mlflow-artifacts/artifacts/{path}"

    def chunks():
        block = os.urandom(1 << 20)
        for _ in range(size // len(block)):
            yield block

    sent, failed = 0, 0
    try:
        sent += 1
        big = requests.put(f"{endpoint}/big.bin", data=chunks(), auth=auth, timeout=120)
        big_status, big_error = big.status_code, big.text.strip().replace("\n", " ")[:160]
    except requests.RequestException as exc:
        big_status, big_error = 0, f"{type(exc).__name__}: {exc}"[:160]
    big_failed = not 200 <= big_status < 300
    failed += big_failed
    # The next request: a small artifact goes up and comes back identical.
    data = os.urandom(ARTIFACT_BYTES)
    sent += 2
    small = requests.put(f"{endpoint}/small.bin", data=data, auth=auth, timeout=60)
    back = requests.get(f"{endpoint}/small.bin", auth=auth, timeout=60)
    small_ok = small.status_code == 200 and back.status_code == 200 and back.content == data
    failed += not small_ok
    listed = [f.path for f in client.list_artifacts(run_id)]
    state = load_state(state_file)
    state[name] = {
        "run_id": run_id,
        "metric": None,
        "steps": [],
        "params": {},
        "artifacts": {"small.bin": sha256_bytes(data)},
    }
    save_state(state_file, state)
    return report(
        f"tmpfull {name}",
        big_failed and small_ok and "big.bin" not in listed,
        sent=sent,
        failed=failed,
        big_bytes=size,
        big_status=big_status,
        big_error=json.dumps(big_error),
        small_status=small.status_code,
        small_verified=small_ok,
        partial_big_listed="big.bin" in listed,
    )


def check(client: MlflowClient, state_file: str) -> int:
    state = load_state(state_file)
    expected = found = artifacts = artifacts_ok = 0
    problems = []
    for name, entry in state.items():
        run = client.get_run(entry["run_id"])
        if entry["params"] and run.data.params != entry["params"]:
            problems.append(f"{name}: params {run.data.params}")
        if entry["metric"]:
            stored = {m.step for m in client.get_metric_history(entry["run_id"], entry["metric"])}
            expected += len(entry["steps"])
            present = sum(1 for s in entry["steps"] if s in stored)
            found += present
            if present != len(entry["steps"]):
                problems.append(f"{name}: {len(entry['steps']) - present} points missing")
        with tempfile.TemporaryDirectory() as tmp:
            for artifact, digest in entry["artifacts"].items():
                artifacts += 1
                local = client.download_artifacts(entry["run_id"], artifact, tmp)
                with open(local, "rb") as handle:
                    if sha256_bytes(handle.read()) == digest:
                        artifacts_ok += 1
                    else:
                        problems.append(f"{name}: {artifact} differs")
    return report(
        "check",
        not problems and bool(state),
        runs=len(state),
        points_expected=expected,
        points_found=found,
        artifacts=f"{artifacts_ok}/{artifacts}",
        problems=json.dumps(problems),
    )


def main() -> int:
    action = sys.argv[1]
    if action == "check":
        url, state_file = sys.argv[2:4]
        return check(MlflowClient(url), state_file)
    name, url, state_file = sys.argv[2:5]
    client = MlflowClient(url)
    if action == "seed":
        return seed(client, name, state_file)
    if action == "load":
        return load(client, name, state_file, sys.argv[5])
    if action == "tmpfull":
        return tmpfull(client, name, url, state_file, int(sys.argv[5]))
    print(f"unknown action {action}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
