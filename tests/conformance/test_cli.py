"""The CLI: mlflow experiments search, runs list/describe, artifacts list/download, in a child process with the
target's environment (MLFLOW_TRACKING_URI, credentials, TLS settings) and nothing else of the parent's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .cli_driver import MARKER

DRIVER = Path(__file__).with_name("cli_driver.py")


def _run_cli(target, commands: list[list[str]], cwd: Path) -> dict:
    completed = subprocess.run(
        [sys.executable, str(DRIVER), json.dumps(commands)],
        env=target.subprocess_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(MARKER)]
    assert completed.returncode == 0 and lines, f"driver failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
    return json.loads(lines[-1][len(MARKER) :])


def test_cli_commands(target, client, experiment_id, uid, tmp_path: Path):
    run = client.create_run(experiment_id, run_name="cli-run")
    run_id = run.info.run_id
    client.log_param(run_id, "p", "v")
    client.log_metric(run_id, "m", 2.5)
    client.log_text(run_id, "payload\n", "dir/file.txt")
    client.set_terminated(run_id)
    destination = tmp_path / "download"

    report = _run_cli(
        target,
        [
            ["experiments", "search", "--max-results", "200"],
            ["experiments", "get", "--experiment-id", experiment_id, "--output", "json"],
            ["runs", "list", "--experiment-id", experiment_id],
            ["runs", "describe", "--run-id", run_id],
            ["artifacts", "list", "--run-id", run_id],
            ["artifacts", "list", "--run-id", run_id, "--artifact-path", "dir"],
            ["artifacts", "download", "-r", run_id, "-a", "dir/file.txt", "-d", str(destination)],
        ],
        tmp_path,
    )
    assert report["is_cli"], report["console_script"]
    search, get, runs_list, describe, list_root, list_dir, download = report["results"]
    for result in report["results"]:
        assert result["exit_code"] == 0, f"{result['args']}: {result['error'] or result['stderr']}"

    assert uid in search["stdout"] and experiment_id in search["stdout"]
    assert json.loads(get["stdout"])["name"] == uid
    assert run_id in runs_list["stdout"] and "cli-run" in runs_list["stdout"]
    described = json.loads(describe["stdout"])
    assert described["info"]["run_id"] == run_id and described["info"]["status"] == "FINISHED"
    assert described["data"]["params"] == {"p": "v"} and described["data"]["metrics"] == {"m": 2.5}
    assert json.loads(list_root["stdout"]) == [{"path": "dir", "is_dir": True}]
    assert json.loads(list_dir["stdout"]) == [{"path": "dir/file.txt", "is_dir": False, "file_size": 8}]
    local = Path(download["stdout"].strip().splitlines()[-1])
    assert local.read_text() == "payload\n" and destination in local.parents
