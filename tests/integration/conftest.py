"""Integration tests: a real Docker testbed (playbooks/testbed.yml through the wrapper's runner)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlflow_ansible.api import run_testbed
from mlflow_ansible.docker_check import check_docker, containers_with_label
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


def localhost_inventory() -> dict:
    return {
        "all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}
    }


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
class Testbed:
    name: str
    db_password: str
    ca_bundle: str

    @property
    def vm(self) -> str:
        return f"{self.name}-vm"


@pytest.fixture(scope="module")
def testbed(tmp_path_factory) -> Iterator[Testbed]:
    """A testbed of our own (unique name), created and removed through the wrapper's runner."""
    bed = Testbed(
        name=f"pytest-cli-{uuid.uuid4().hex[:6]}", db_password=secrets.token_urlsafe(18), ca_bundle=ca_bundle()
    )
    work = tmp_path_factory.mktemp("testbed")
    created = run_testbed(
        localhost_inventory(),
        extra_vars={
            "testbed_state": "present",
            "testbed_name": bed.name,
            "testbed_vms": [{"name": "vm", "image": "mlflow-ansible/debian:12"}],
            "testbed_ca_bundle": bed.ca_bundle,
        },
        environ=child_environ(work, testbed_db_password=bed.db_password),
    )
    try:
        assert created.ok, (created.failures, created.error)
        yield bed
    finally:
        removed = run_testbed(
            localhost_inventory(),
            extra_vars={"testbed_state": "absent", "testbed_name": bed.name},
            environ=child_environ(work),
        )
        assert removed.ok, (removed.failures, removed.error)
        assert containers_with_label(f"mlflow-ansible.testbed={bed.name}") == []


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

