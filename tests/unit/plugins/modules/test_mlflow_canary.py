"""The mlflow_canary module against real `mlflow server` processes on loopback.

A basic-auth tracking server that proxies artifacts, and an artifacts-only server: the canary writes a
run with a metric and round-trips an artifact (read back here through MLflow's own client), check mode
reads /health and /version only and writes no run, wrong credentials fail with the failing step.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from module_loader import load_module

canary_module = load_module("mlflow_canary")

ADMIN = ("admin", "canary-admin-Pa55word-42")
MLFLOW = str(Path(sys.executable).parent / "mlflow")


class Failed(Exception):
    def __init__(self, msg, canary):
        super().__init__(msg)
        self.canary = canary


class FakeModule:
    def __init__(self, url, check_mode=False, **params):
        self.check_mode = check_mode
        self.params = {"url": url, "experiment": "mlflow-ansible-canary", "run_name": "canary",
                       "artifacts_only": False, "username": None, "password": None, "timeout": 30.0, **params}

    def fail_json(self, msg, **kwargs):
        raise Failed(msg, kwargs.get("canary"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, log: Path) -> None:
    for _ in range(1200):  # up to 10 minutes on a loaded machine
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not answer: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("canary")
    ini = tmp / "basic_auth.ini"
    ini.write_text(f"[mlflow]\ndefault_permission = NO_PERMISSIONS\ndatabase_uri = sqlite:///{tmp / 'auth.db'}\n"
                   f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\nauthorization_function = "
                   "mlflow.server.auth:authenticate_request_basic_auth\n")
    env = dict(os.environ, MLFLOW_AUTH_CONFIG_PATH=str(ini), MLFLOW_FLASK_SERVER_SECRET_KEY="canary-test-secret",
               MLFLOW_DISABLE_TELEMETRY="true", HOME=str(tmp),
               MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no job consumers: a faster start
    ports = {"tracking": _free_port(), "artifacts": _free_port()}
    commands = {
        "tracking": [MLFLOW, "server", "--host", "127.0.0.1", "--port", str(ports["tracking"]), "--workers", "1",
                     "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--serve-artifacts",
                     "--artifacts-destination", str(tmp / "artifacts"), "--app-name", "basic-auth"],
        "artifacts": [MLFLOW, "server", "--host", "127.0.0.1", "--port", str(ports["artifacts"]), "--workers", "1",
                      "--artifacts-only", "--artifacts-destination", str(tmp / "only")],
    }
    procs, logs = {}, {}
    for name, command in commands.items():
        logs[name] = tmp / f"{name}.log"
        with open(logs[name], "w") as log:
            procs[name] = subprocess.Popen(command, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
    try:
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        for name in commands:
            _wait(urls[name], procs[name], logs[name])
        yield {"urls": urls, "dir": tmp, "env": env}
    finally:
        for proc in procs.values():
            os.killpg(proc.pid, 15)
        for proc in procs.values():
            proc.wait(timeout=60)


def _client(servers):
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN
    return MlflowClient(tracking_uri=servers["urls"]["tracking"])


def test_canary_writes_a_run_with_a_metric_and_an_artifact(servers, tmp_path):
    url = servers["urls"]["tracking"]
    result = canary_module.run(FakeModule(url, run_name="canary-vm", username=ADMIN[0], password=ADMIN[1]))
    report = result["canary"]
    assert result["changed"] is False
    assert report["ok"] is True and report["url"] == url
    import mlflow

    assert report["version"] == mlflow.__version__
    client = _client(servers)
    run = client.get_run(report["run_id"])
    assert run.info.run_name == "canary-vm" and run.info.status == "FINISHED"
    assert run.data.metrics == {"canary": 1.0}
    assert run.info.experiment_id == report["experiment_id"]
    assert client.get_experiment(report["experiment_id"]).name == "mlflow-ansible-canary"
    local = client.download_artifacts(report["run_id"], "canary.txt", str(tmp_path))
    import hashlib

    assert hashlib.sha256(Path(local).read_bytes()).hexdigest() == report["artifact_sha256"]

    # A second canary reuses the experiment and writes a second run.
    second = canary_module.run(FakeModule(url, run_name="canary-vm", username=ADMIN[0], password=ADMIN[1]))["canary"]
    assert second["experiment_id"] == report["experiment_id"] and second["run_id"] != report["run_id"]


def test_check_mode_reads_health_and_version_and_writes_no_run(servers):
    url = servers["urls"]["tracking"]
    client = _client(servers)
    experiment = client.get_experiment_by_name("mlflow-ansible-canary")
    runs_before = len(client.search_runs([experiment.experiment_id])) if experiment else 0
    result = canary_module.run(FakeModule(url, check_mode=True, experiment="mlflow-ansible-canary",
                                          username=ADMIN[0], password=ADMIN[1]))
    assert result["changed"] is False
    assert result["canary"]["ok"] is True and result["canary"]["check_mode"] is True
    assert "run_id" not in result["canary"] and result["canary"]["version"]
    experiment = client.get_experiment_by_name("mlflow-ansible-canary")
    assert (len(client.search_runs([experiment.experiment_id])) if experiment else 0) == runs_before


def test_wrong_credentials_fail_with_the_step(servers):
    url = servers["urls"]["tracking"]
    with pytest.raises(Failed) as failed:
        canary_module.run(FakeModule(url, experiment="canary-denied", username=ADMIN[0], password="not-the-password"))
    assert failed.value.canary["ok"] is False
    assert failed.value.canary["error"] == "GET /version failed: HTTP 401"  # /health is open, /version is not
    assert "not-the-password" not in str(failed.value) + str(failed.value.canary)
    with pytest.raises(Failed, match="failed"):
        canary_module.run(FakeModule(url, experiment="canary-denied"))  # no credentials at all


def test_artifacts_only_server_round_trip_and_delete(servers):
    url = servers["urls"]["artifacts"]
    report = canary_module.run(FakeModule(url, artifacts_only=True, experiment="exp", run_name="canary-a"))["canary"]
    assert report["ok"] is True and len(report["artifact_sha256"]) == 64
    # The artifact was deleted again.
    assert not (servers["dir"] / "only" / "exp" / "canary-a.txt").exists()
    assert (servers["dir"] / "only").exists()  # the upload did land there


def test_unreachable_server_fails():
    with pytest.raises(Failed) as failed:
        canary_module.run(FakeModule(f"http://127.0.0.1:{_free_port()}", timeout=2.0))
    assert failed.value.canary["ok"] is False and "Connection refused" in failed.value.canary["error"]
