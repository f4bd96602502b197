"""Run the real site playbook against the controller, for preflight checks only."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A valid set of inputs; each test breaks one of them. The database host is loopback: the preflight
# really connects to it (run_site points cloudsql_client_port at a listener of its own).
GOOD_VARS = {
    "cloudsql_client_host": "127.0.0.1",
    "cloudsql_client_password": "preflight-test-password",
    "tracking_server_artifacts_destination": "gs://mlflow-test-bucket/artifacts",
}


@dataclass
class PlayResult:
    rc: int
    output: str

    @property
    def deploy_started(self) -> bool:
        return "PLAY [Deploy the MLflow tracking server]" in self.output


def _controller_os() -> dict[str, list[str]]:
    release = platform.freedesktop_os_release()
    name = release.get("NAME", "").split()[0]
    return {name: [release.get("VERSION_ID", "").split(".")[0]]}


@pytest.fixture(scope="session")
def loopback_database_port() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that accepts and closes each connection: the stand-in for the database
    server the preflight's connection check (wait_for) reaches, so no test connects past loopback."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:  # the timeout: look at stop again
                continue
            connection.close()

    thread = threading.Thread(target=serve, name="loopback-database", daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@pytest.fixture(scope="session")
def run_site(tmp_path_factory, loopback_database_port):
    """Run site.yml (or another playbook) in check mode against localhost with the given variables."""
    work = tmp_path_factory.mktemp("preflight")
    counter = iter(range(1000))

    def run(overrides: dict | None = None, drop: tuple[str, ...] = (), supported_os: dict | None = None,
            playbook: Path | None = None, hosts: dict[str, dict] | None = None) -> PlayResult:
        """``hosts``: the inventory's hosts and their own variables, every one this controller (checks across hosts)."""
        number = next(counter)
        inventory = work / f"inventory-{number}.yml"
        inventory.write_text(json.dumps({
            "all": {"children": {"mlflow_servers": {"hosts": {
                name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **own}
                for name, own in (hosts or {"controller": {}}).items()
            }}}},
        }))
        variables = {k: v for k, v in GOOD_VARS.items() if k not in drop}
        variables["cloudsql_client_port"] = loopback_database_port
        variables.update(overrides or {})
        variables["_python_supported_distributions"] = supported_os or _controller_os()
        extra = work / f"vars-{number}.json"
        extra.write_text(json.dumps(variables))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "-e", f"@{extra}",
             "--check", "--tags", "preflight", str(playbook or REPO / "site.yml")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
        )
        return PlayResult(proc.returncode, proc.stdout + proc.stderr)

    return run
