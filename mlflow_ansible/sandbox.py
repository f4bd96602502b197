"""A tracking server on this machine: the Docker testbed plus a real deploy into its VM, one command each way.

``up`` creates the testbed (playbooks/testbed.yml: PostgreSQL, a GCS emulator, one Debian 12 "VM"
publishing a free port of 127.0.0.1 to the VM's 5000) and deploys into the VM with the real roles,
both through the same runner as every other command. The database password is generated at the first
``up``, kept with the port in $XDG_STATE_HOME/mlflow-ansible/sandbox.json (0600), and reaches Ansible
through the environment (MLFLOW_ANSIBLE_VAR_*), never in an inventory or on a command line. ``down``
removes what carries the testbed's label, and nothing else.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow_ansible.api import RunOptions, run_action, run_testbed
from mlflow_ansible.docker_check import Container, check_docker, containers_with_label
from mlflow_ansible.env_vars import JSON_PREFIX, PREFIX, env_name
from mlflow_ansible.errors import SandboxError, ValidationError
from mlflow_ansible.result import RunResult
from mlflow_ansible.runner import EventHandler
from mlflow_ansible.state import read_json, state_dir, write_private_json

SANDBOX_NAME = "mlflow-sandbox"
VM_NAME = "vm"
VM_IMAGE = "mlflow-ansible/debian:12"
VM_PORT = 443  # nginx with TLS in front of MLflow (secure by default, the sandbox too)
ADMIN_USER = "admin"  # tracking_server_admin_username's default
BUCKET = "mlflow-artifacts"  # the testbed role's default bucket
CA_MOUNT = "/usr/local/share/testbed-ca.crt"  # the testbed role's default testbed_ca_bundle_mount
LABEL = "mlflow-ansible.testbed"
_HEALTH_TIMEOUT = 90

EventsFor = Callable[[str], EventHandler | None]  # the phase ("testbed", "deploy") -> progress handler


@dataclass
class SandboxState:
    """What ``up`` chose, kept for later commands (the file is the only place the password is stored)."""

    name: str
    port: int
    db_password: str
    ca_bundle: str = ""
    created: str = ""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@dataclass
class SandboxStatus:
    name: str
    url: str | None
    containers: list[Container] = field(default_factory=list)
    healthy: bool = False
    version: str = ""

    @property
    def up(self) -> bool:
        running = bool(self.containers) and all(container.state == "running" for container in self.containers)
        return running and self.healthy

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "up": self.up}


@dataclass
class SandboxUp:
    state: SandboxState
    testbed: RunResult
    deploy: RunResult | None = None
    healthy: bool = False

    @property
    def ok(self) -> bool:
        return self.testbed.ok and self.deploy is not None and self.deploy.ok and self.healthy

    admin_password_file: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.state.name,
            "url": self.state.url,
            "admin_user": ADMIN_USER,
            "admin_password_file": self.admin_password_file,
            "port": self.state.port,
            "ok": self.ok,
            "healthy": self.healthy,
            "testbed": self.testbed.to_dict(),
            "deploy": self.deploy.to_dict() if self.deploy else None,
        }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_get(url: str, timeout: float = 3.0, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    """Status and body of a GET to the sandbox on 127.0.0.1; (0, reason) when nothing answers.

    The sandbox's certificate is self-signed, generated in the VM: it is not verified, and only
    loopback URLs are accepted.
    """
    if not url.startswith("https://127.0.0.1:"):
        raise ValueError(f"not a sandbox URL: {url}")
    context = ssl._create_unverified_context()  # noqa: S323 - the sandbox's self-signed certificate, loopback only
    request = urllib.request.Request(url)  # noqa: S310 - https://127.0.0.1 only (checked above)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310 - loopback
            return int(response.status), response.read(2000).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc))


class Sandbox:
    """The sandbox named ``name`` (the testbed's container prefix, network and label value)."""

    def __init__(
        self, name: str = SANDBOX_NAME, environ: Mapping[str, str] | None = None, accelerate: bool | None = None
    ) -> None:
        if not name or not all(char.isalnum() or char in "-_" for char in name):
            raise ValidationError(f"sandbox name {name!r} must be letters, digits, '-' and '_' only")
        self.name = name
        self.environ = dict(os.environ if environ is None else environ)
        self.accelerate = accelerate  # False: --no-accelerate (mlflow_ansible.accelerator)
        self.state_file = state_dir(self.environ) / "sandbox.json"
        # The role generates the admin password and Flask secret key here (0700 directory, 0600 files).
        self.secrets_dir = state_dir(self.environ) / "sandbox-secrets" / name

    @property
    def admin_password_file(self) -> Path:
        """Where the tracking_server role keeps the generated admin password (its <host>-<port>-<db> layout)."""
        return self.secrets_dir / "postgres-5432-mlflow" / "admin-password"

    # -- state ------------------------------------------------------------------------------------------

    def load_state(self) -> SandboxState | None:
        entry = read_json(self.state_file).get(self.name)
        if not isinstance(entry, dict):
            return None
        try:
            return SandboxState(**entry)
        except TypeError:
            return None

    def _save_state(self, state: SandboxState) -> None:
        data = read_json(self.state_file)
        data[self.name] = asdict(state)
        write_private_json(self.state_file, data)

    def _forget_state(self) -> None:
        data = read_json(self.state_file)
        if data.pop(self.name, None) is not None:
            write_private_json(self.state_file, data)

    def _admin(self) -> tuple[str, str] | None:
        """The admin's credentials (basic auth protects /version), once the deploy generated them."""
        try:
            return ADMIN_USER, self.admin_password_file.read_text().strip()
        except OSError:
            return None

    def containers(self) -> list[Container]:
        return containers_with_label(f"{LABEL}={self.name}", self.environ)

    # -- what Ansible gets --------------------------------------------------------------------------------

    def _environ(self, secrets_: Mapping[str, str]) -> dict[str, str]:
        """The caller's environment without their MLFLOW_ANSIBLE_VAR_* (production settings), plus ours."""
        clean = {key: value for key, value in self.environ.items() if not key.startswith((PREFIX, JSON_PREFIX))}
        clean.update({env_name(name): value for name, value in secrets_.items()})
        return clean

    @staticmethod
    def _localhost() -> dict[str, Any]:
        # The interpreter running this wrapper has what the community.docker modules need.
        return {
            "all": {
                "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}
            }
        }

    def inventory(self, state: SandboxState | None = None) -> dict[str, Any]:
        """The inventory the sandbox's VM was deployed with (no secret in it: the database password goes
        through MLFLOW_ANSIBLE_VAR_cloudsql_client_password), for actions run against the sandbox."""
        if state is None:
            state = self.load_state()
            if state is None:
                raise SandboxError(f"no sandbox {self.name} is recorded in {self.state_file}: run `sandbox up` first")
        group_vars: dict[str, Any] = {
            "cloudsql_client_host": "postgres",
            "tracking_server_artifacts_destination": f"gs://{BUCKET}/sandbox",
            # Points google-cloud-storage at the GCS stand-in.
            "tracking_server_extra_env": {"STORAGE_EMULATOR_HOST": "http://gcs:9023"},
            "tracking_server_public_url": state.url,
            "tracking_server_controller_secrets_dir": str(self.secrets_dir),
        }
        if state.ca_bundle:
            group_vars["mlflow_ca_bundle"] = CA_MOUNT
        host = {
            "ansible_host": f"{self.name}-{VM_NAME}",
            # The short name: the accelerator (Mitogen) takes over only this spelling of the docker connection.
            "ansible_connection": "docker",
            "ansible_python_interpreter": "/usr/bin/python3",
        }
        return {"all": {"children": {"mlflow_servers": {"hosts": {VM_NAME: host}, "vars": group_vars}}}}

    # -- commands ---------------------------------------------------------------------------------------

    def _state_for_up(self, ca_bundle: str | None, port: int | None) -> SandboxState:
        if ca_bundle is not None:
            path = Path(ca_bundle).expanduser()
            if not path.is_file() or not os.access(path, os.R_OK):
                raise ValidationError(f"--ca-bundle {ca_bundle}: no such readable file")
            ca_bundle = str(path.resolve())
        if port is not None and not 1 <= port <= 65535:
            raise ValidationError(f"--port must be between 1 and 65535, not {port}")
        state = self.load_state()
        running = bool(self.containers())
        if state is None:
            state = SandboxState(
                name=self.name,
                port=port or free_port(),
                db_password=secrets.token_urlsafe(24),
                ca_bundle=ca_bundle or "",
                created=datetime.now(UTC).isoformat(timespec="seconds"),
            )
        elif running and port is not None and port != state.port:
            raise SandboxError(
                f"the sandbox {self.name} is up on port {state.port}: run `sandbox down` first to change the port"
            )
        else:
            if port is not None:
                state.port = port
            if ca_bundle is not None:
                state.ca_bundle = ca_bundle
        if not running and not port_is_free(state.port):
            if port is not None:
                raise ValidationError(f"port {port} of 127.0.0.1 is in use: choose another with --port")
            state.port = free_port()
        return state

    def up(
        self, ca_bundle: str | None = None, port: int | None = None, events_for: EventsFor | None = None
    ) -> SandboxUp:
        """Create (or complete) the testbed, deploy into it, wait until the URL answers."""
        check_docker(self.environ)
        state = self._state_for_up(ca_bundle, port)
        self._save_state(state)
        events_for = events_for or (lambda phase: None)
        testbed_options: RunOptions = {
            "extra_vars": {
                "testbed_state": "present",
                "testbed_name": self.name,
                "testbed_vms": [{"name": VM_NAME, "image": VM_IMAGE}],
                "testbed_published_ports": [f"127.0.0.1:{state.port}:{VM_PORT}"],
                "testbed_ca_bundle": state.ca_bundle,
            },
            "environ": self._environ({"testbed_db_password": state.db_password}),
            "on_event": events_for("testbed"),
            "accelerate": self.accelerate,
        }
        testbed = run_testbed(self._localhost(), **testbed_options)
        result = SandboxUp(state=state, testbed=testbed, admin_password_file=str(self.admin_password_file))
        if not testbed.ok:
            return result
        result.deploy = run_action(
            "deploy",
            self.inventory(state),
            environ=self._environ({"cloudsql_client_password": state.db_password}),
            on_event=events_for("deploy"),
            accelerate=self.accelerate,
        )
        if result.deploy.ok:
            result.healthy = self.wait_healthy(state.url)
        return result

    @staticmethod
    def wait_healthy(url: str, timeout: float = _HEALTH_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            code, _ = http_get(f"{url}/health")
            if code == 200:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(1)

    def status(self) -> SandboxStatus:
        check_docker(self.environ)
        state = self.load_state()
        found = SandboxStatus(name=self.name, url=state.url if state else None, containers=self.containers())
        if state and found.containers:
            code, _ = http_get(f"{state.url}/health")
            found.healthy = code == 200
            code, body = http_get(f"{state.url}/version", auth=self._admin())
            found.version = body.strip() if code == 200 else ""
        return found

    def down(self, events_for: EventsFor | None = None) -> RunResult:
        """Remove every container and the network labelled with this sandbox's name, then forget its state."""
        check_docker(self.environ)
        events_for = events_for or (lambda phase: None)
        result = run_testbed(
            self._localhost(),
            extra_vars={"testbed_state": "absent", "testbed_name": self.name},
            environ=self._environ({}),
            on_event=events_for("testbed"),
            accelerate=self.accelerate,
        )
        if result.ok:
            self._forget_state()
            shutil.rmtree(self.secrets_dir, ignore_errors=True)
        return result
