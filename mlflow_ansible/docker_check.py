"""Is Docker usable? The sandbox needs the docker CLI (Ansible's docker connection uses it) and a live engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlflow_ansible.errors import DockerUnavailableError

_TIMEOUT = 15
_INSTALL_HINT = "install Docker Engine (https://docs.docker.com/engine/install/, or run scripts/setup)"
_START_HINT = "start it (`sudo systemctl start docker`), or check DOCKER_HOST and your access to the Docker socket"


def docker_command(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    found = shutil.which("docker", path=environ.get("PATH") or os.defpath)
    if not found:
        raise DockerUnavailableError(f"Docker is not installed (no `docker` command on PATH): {_INSTALL_HINT}")
    return found


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no answer"


def check_docker(environ: Mapping[str, str] | None = None) -> str:
    """The Docker engine's version; DockerUnavailableError (one line, with what to do) when it cannot be used."""
    docker = docker_command(environ)
    try:
        proc = subprocess.run(
            [docker, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
            env=dict(os.environ if environ is None else environ),
        )
    except subprocess.TimeoutExpired:
        raise DockerUnavailableError(f"the Docker engine does not answer within {_TIMEOUT} s: {_START_HINT}") from None
    except OSError as exc:
        raise DockerUnavailableError(f"cannot run {docker} ({exc.strerror}): {_INSTALL_HINT}") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        detail = _first_line(proc.stderr or proc.stdout)
        raise DockerUnavailableError(f"Docker is installed but its engine is not running ({detail}): {_START_HINT}")
    return proc.stdout.strip()


@dataclass
class Container:
    name: str
    state: str  # running, exited, ...
    status: str  # "Up 3 minutes"
    image: str
    ports: str


def containers_with_label(label: str, environ: Mapping[str, str] | None = None) -> list[Container]:
    """Every container (running or not) carrying ``label`` (key=value)."""
    docker = docker_command(environ)
    proc = subprocess.run(
        [docker, "ps", "--all", "--no-trunc", "--filter", f"label={label}", "--format", "{{json .}}"],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=False,
        env=dict(os.environ if environ is None else environ),
    )
    if proc.returncode != 0:
        raise DockerUnavailableError(f"cannot list containers: {_first_line(proc.stderr)}: {_START_HINT}")
    found: list[Container] = []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        row: dict[str, Any] = json.loads(line)
        found.append(
            Container(
                name=str(row.get("Names", "")),
                state=str(row.get("State", "")),
                status=str(row.get("Status", "")),
                image=str(row.get("Image", "")),
                ports=str(row.get("Ports", "")),
            )
        )
    return sorted(found, key=lambda container: container.name)
