"""`sandbox up`, a run logged from the host through the printed URL, the UI in a browser, the differential
conformance suite against the plain recipe's server, `deploy`, `verify` and `status` through the CLI
against the sandbox's VM, `sandbox status`, `sandbox down`. One testbed for all of it: each more is a
VM and a cold deploy on a 2-core machine."""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from ui_browser import check_ui

from mlflow_ansible.docker_check import containers_with_label
from mlflow_ansible.sandbox import Sandbox

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _sandbox(*args: str, environ: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlflow_ansible", "sandbox", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _log_a_run(url: str, tmp_path: Path, password: str) -> dict:
    """The real mlflow client, from the host: a param, a metric and an artifact, read back."""
    script = """
import json, sys, pathlib, mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("pytest-sandbox")
artifact = pathlib.Path(sys.argv[2]) / "hello.txt"
artifact.write_text("hello from the host\\n")
with mlflow.start_run() as run:
    mlflow.log_param("where", "host")
    mlflow.log_metric("answer", 42.0)
    mlflow.log_artifact(str(artifact))
client = mlflow.MlflowClient()
fetched = client.get_run(run.info.run_id)
downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="hello.txt")
print(json.dumps({"metrics": fetched.data.metrics, "params": fetched.data.params,
                  "status": fetched.info.status, "artifact": pathlib.Path(downloaded).read_text()}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script, url, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_TRACKING_USERNAME": "admin",
             "MLFLOW_TRACKING_PASSWORD": password, "MLFLOW_TRACKING_INSECURE_TLS": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cli(*args: str, environ: dict[str, str], timeout: int = 900) -> tuple[int, dict, str]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow_ansible", *args, "--json"],
        cwd=REPO, env=environ, capture_output=True, text=True, timeout=timeout, check=False,
    )
    print(f"{' '.join(args[:1])}: exit {proc.returncode} in {time.monotonic() - started:.0f} s")
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"no JSON on stdout (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.returncode, result, proc.stdout + proc.stderr


def _deploy_verify_status_through_the_cli(name: str, url: str, environ: dict[str, str], environ_for,
                                          tmp_path: Path, db_password: str) -> None:
    """`python -m mlflow_ansible deploy|verify|status --json` against the sandbox's VM with the inventory it
    was deployed with (Sandbox.inventory): the deploy changes nothing, the canary passes with and without
    the accelerator, the database password travels through the environment only."""
    inventory = tmp_path / "sandbox-hosts.json"
    inventory.write_text(json.dumps(Sandbox(name, environ).inventory()))
    with_password = environ_for(cloudsql_client_password=db_password)

    code, deployed, output = _cli("deploy", "-i", str(inventory), environ=with_password)
    assert code == 0, (deployed["failures"], deployed["error"])
    assert deployed["ok"] and deployed["exit_code"] == 0 and deployed["action"] == "deploy"
    assert deployed["changed"] == 0 and deployed["hosts"]["vm"]["changed"] == 0  # idempotent after `sandbox up`
    assert deployed["failed"] == 0 and deployed["unreachable"] == 0 and deployed["failures"] == []
    assert deployed["tracking_urls"] == {"vm": url} == {"vm": deployed["tracking_url"]}
    assert deployed["canary"]["vm"]["ok"] is True and deployed["canary"]["vm"]["version"] == "3.17.2"
    assert deployed["elapsed"] > 0 and deployed["rc"] == 0
    assert deployed["command"][0].endswith("ansible-playbook")
    assert deployed["command"][-1].endswith("playbooks/site.yml")
    assert db_password not in output and db_password not in " ".join(deployed["command"])
    assert deployed["accelerator"].startswith("mitogen "), deployed["accelerator"]  # the short `docker` connection
    assert not any("strategy plugins" in warning for warning in deployed["warnings"])

    # The same canary with ansible-core's plain strategy.
    code, verified, _ = _cli("verify", "-i", str(inventory), "--no-accelerate", environ=environ_for())
    assert code == 0, (verified["failures"], verified["error"])
    assert verified["canary"]["vm"]["ok"] is True and verified["changed"] == 0
    assert verified["accelerator"] == "off (--no-accelerate)" and verified["accelerator_notes"] == []

    code, status, _ = _cli("status", "-i", str(inventory), environ=environ_for())
    assert code == 0, (status["failures"], status["error"])
    assert status["status"]["vm"] == {"service": "active", "healthy": True, "version": "3.17.2", "url": url}


def test_sandbox_up_log_a_run_status_down(tmp_path, environ_for, ca_path, plain_server):
    name = f"pytest-sandbox-{uuid.uuid4().hex[:6]}"
    environ = environ_for()
    label = f"mlflow-ansible.testbed={name}"
    up_args = ["up", "--name", name] + (["--ca-bundle", ca_path] if ca_path else [])
    try:
        up = _sandbox(*up_args, environ=environ)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-2000:]
        match = re.search(r"MLflow is up at (https://127\.0\.0\.1:(\d+))", up.stdout)
        assert match, up.stdout[-2000:]
        url, port = match.group(1), int(match.group(2))
        password_file = Path(re.search(r"password in (\S+) \(0600\)", up.stdout).group(1))
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        password = password_file.read_text().strip()
        assert len(password) >= 12 and password not in up.stdout + up.stderr

        state_file = tmp_path / "state" / "mlflow-ansible" / "sandbox.json"
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        state = json.loads(state_file.read_text())[name]
        assert state["port"] == port and len(state["db_password"]) >= 24
        assert state["db_password"] not in up.stdout + up.stderr

        insecure = ssl._create_unverified_context()  # noqa: S323 - the sandbox's self-signed certificate
        with pytest.raises(urllib.error.HTTPError) as denied:  # secure by default: the API wants credentials
            urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30,  # noqa: S310
                                   context=insecure)
        assert denied.value.code == 401
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        ui = urllib.request.Request(f"{url}/", headers={"Authorization": f"Basic {token}"})  # noqa: S310 - 127.0.0.1
        with urllib.request.urlopen(ui, timeout=30, context=insecure) as page:  # noqa: S310 - the sandbox
            assert page.status == 200 and b"<html" in page.read(4096).lower()  # the UI answers too

        logged = _log_a_run(url, tmp_path, password)
        assert logged["metrics"] == {"answer": 42.0} and logged["params"] == {"where": "host"}
        assert logged["status"] == "FINISHED" and logged["artifact"] == "hello from the host\n"

        # The UI in a real browser (Debian's chromium through Playwright), logged in with basic auth:
        # experiments, runs, traces, artifacts, the registry, prompts, a prompt made in the UI.
        seen = check_ui(url, "admin", password, tmp_path / "ui")
        assert seen["ui_prompt"] and seen["counts"]["pages"] >= 7, seen

        # The differential conformance suite: the same client calls against the plain recipe's server
        # and this sandbox; every difference must be a refusal listed in tests/conformance/refusals.py.
        plain_url = plain_server.wait_healthy()
        conformance = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/conformance", "-q", "-p", "no:cacheprovider", "-n", "2"],
            cwd=REPO, capture_output=True, text=True, timeout=1200, check=False,
            env={**os.environ, "MLFLOW_CONFORMANCE_PLAIN_URL": plain_url, "MLFLOW_CONFORMANCE_OURS_URL": url,
                 "MLFLOW_CONFORMANCE_OURS_USERNAME": "admin", "MLFLOW_CONFORMANCE_OURS_PASSWORD": password,
                 "MLFLOW_CONFORMANCE_OURS_INSECURE_TLS": "true"},
        )
        assert conformance.returncode == 0, conformance.stdout[-6000:] + conformance.stderr[-2000:]
        assert " passed" in conformance.stdout and " skipped" not in conformance.stdout, conformance.stdout[-2000:]

        _deploy_verify_status_through_the_cli(name, url, environ, environ_for, tmp_path, state["db_password"])

        status = _sandbox("status", "--name", name, environ=environ, timeout=120)
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"{url} healthy (MLflow 3.17.2)" in status.stdout
        for suffix in ("postgres", "gcs", "vm"):
            assert f"{name}-{suffix}" in status.stdout
        status_json = json.loads(_sandbox("status", "--name", name, "--json", environ=environ, timeout=120).stdout)
        assert status_json["up"] and status_json["version"] == "3.17.2" and len(status_json["containers"]) == 3
    finally:
        down = _sandbox("down", "--name", name, environ=environ)
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-2000:]
    assert f"sandbox {name} removed" in down.stdout
    assert containers_with_label(label) == []
    assert name not in json.loads((tmp_path / "state" / "mlflow-ansible" / "sandbox.json").read_text())
    after = _sandbox("status", "--name", name, environ=environ, timeout=120)
    assert after.returncode == 1 and "no containers" in after.stdout
