"""`python -m mlflow_ansible deploy --json` against a VM of our own testbed, then verify and status."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def _inventory(path: Path, bed) -> Path:
    group_vars = {
        "cloudsql_client_host": "postgres",
        "tracking_server_artifacts_destination": f"gs://mlflow-artifacts/{bed.name}",
        "tracking_server_extra_env": {"STORAGE_EMULATOR_HOST": "http://gcs:9023"},
    }
    if bed.ca_bundle:
        group_vars["mlflow_ca_bundle"] = "/usr/local/share/testbed-ca.crt"
    host = {"ansible_host": bed.vm, "ansible_connection": "docker"}
    path.write_text(json.dumps({"all": {"children": {"mlflow_servers": {"hosts": {"vm": host}, "vars": group_vars}}}}))
    return path


def _cli(*args: str, environ: dict[str, str], timeout: int = 900) -> tuple[int, dict, str]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow_ansible", *args, "--json"],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    print(f"{' '.join(args[:1])}: exit {proc.returncode} in {time.monotonic() - started:.0f} s")
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"no JSON on stdout (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.returncode, result, proc.stdout + proc.stderr


def test_deploy_verify_status_through_the_cli(testbed, tmp_path, environ_for):
    inventory = _inventory(tmp_path / "hosts.yml", testbed)
    # The password travels through the environment mechanism only.
    environ = environ_for(cloudsql_client_password=testbed.db_password)

    code, first, output = _cli("deploy", "-i", str(inventory), environ=environ)
    assert code == 0, (first["failures"], first["error"])
    assert first["ok"] and first["exit_code"] == 0 and first["action"] == "deploy"
    assert first["hosts"]["vm"]["changed"] > 0 and first["changed"] > 0
    assert first["failed"] == 0 and first["unreachable"] == 0 and first["failures"] == []
    assert first["tracking_urls"] == {"vm": f"https://{testbed.vm}"} == {"vm": first["tracking_url"]}
    assert first["canary"]["vm"]["ok"] is True and first["canary"]["vm"]["version"] == "3.17.2"
    assert first["elapsed"] > 0 and first["rc"] == 0
    assert first["command"][0].endswith("ansible-playbook") and first["command"][-1].endswith("playbooks/site.yml")
    assert testbed.db_password not in output and testbed.db_password not in " ".join(first["command"])
    assert first["accelerator"].startswith("mitogen "), first["accelerator"]  # the short `docker` connection
    assert not any("strategy plugins" in warning for warning in first["warnings"])

    code, second, _ = _cli("deploy", "-i", str(inventory), environ=environ)
    assert code == 0, (second["failures"], second["error"])
    assert second["changed"] == 0 and second["failed"] == 0  # idempotent
    assert second["canary"]["vm"]["ok"] is True

    # The same canary with ansible-core's plain strategy.
    code, verified, _ = _cli("verify", "-i", str(inventory), "--no-accelerate", environ=environ_for())
    assert code == 0, (verified["failures"], verified["error"])
    assert verified["canary"]["vm"]["ok"] is True and verified["changed"] == 0
    assert verified["accelerator"] == "off (--no-accelerate)" and verified["accelerator_notes"] == []

    code, status, _ = _cli("status", "-i", str(inventory), environ=environ_for())
    assert code == 0, (status["failures"], status["error"])
    assert status["status"]["vm"] == {
        "service": "active",
        "healthy": True,
        "version": "3.17.2",
        "url": f"https://{testbed.vm}",
    }
