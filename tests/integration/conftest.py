"""Integration tests: a real Docker testbed (playbooks/testbed.yml through the wrapper's runner)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlflow_ansible.docker_check import check_docker
from mlflow_ansible.errors import DockerUnavailableError

REPO = Path(__file__).resolve().parents[2]
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def ca_bundle() -> str:
    """The CA bundle mounted into the VMs: MLFLOW_ANSIBLE_TEST_CA_BUNDLE, else the system's (needed behind a
    TLS-intercepting proxy, harmless elsewhere)."""
    configured = os.environ.get("MLFLOW_ANSIBLE_TEST_CA_BUNDLE")
    if configured is not None:
        return configured
    return str(SYSTEM_CA) if SYSTEM_CA.is_file() else ""


@pytest.fixture(scope="session", autouse=True)
def docker_engine() -> str:
    try:
        return check_docker()
    except DockerUnavailableError as exc:
        pytest.skip(f"integration tests need Docker: {exc}")


def child_environ(tmp_path: Path, **secret_vars: str) -> dict[str, str]:
    """This environment without the developer's own MLFLOW_ANSIBLE_VAR_*, with a private state directory."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_ANSIBLE_")}
    environ["XDG_STATE_HOME"] = str(tmp_path / "state")
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    environ.update({f"MLFLOW_ANSIBLE_VAR_{name}": value for name, value in secret_vars.items()})
    return environ


@pytest.fixture
def ca_path() -> str:
    return ca_bundle()


@pytest.fixture
def environ_for(tmp_path):
    """child_environ bound to this test's temporary directory."""
    return lambda **secret_vars: child_environ(tmp_path, **secret_vars)


@dataclass
class PlainServer:
    url: str

    def wait_healthy(self, timeout: float = 300) -> str:
        """Its URL, once /health answers 200."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as answer:  # noqa: S310 - loopback
                    if answer.status == 200:
                        return self.url
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.url}/health did not answer 200 within {timeout} s")
            time.sleep(1)


@pytest.fixture
def plain_server(tmp_path) -> Iterator[PlainServer]:
    """The blog recipe's server, for the differential conformance suite: `mlflow server` from the same
    MLflow release, no auth, SQLite and a local artifact directory, on loopback. Started in the background
    (it imports while the test deploys its sandbox); the caller waits for /health."""
    work = tmp_path / "plain"
    work.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (work / "server.log").open("wb")
    # One worker and no job runner: the suite needs neither, and both cost this 2-core machine CPU.
    environ = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
         "--serve-artifacts", "--artifacts-destination", str(work / "artifacts")],
        cwd=work, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield PlainServer(f"http://127.0.0.1:{port}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()

