"""mlflow_ansible: deploy and operate the MLflow tracking server with the mlflow_ansible.tracking collection.

Python API (each returns a :class:`RunResult`; see docs/cli.md for the command line)::

    import mlflow_ansible

    result = mlflow_ansible.deploy("inventory/hosts.yml", extra_vars={"tracking_server_workers": 4})
    result.ok, result.hosts["vm1"].changed, result.tracking_urls, result.failure, result.elapsed
    mlflow_ansible.verify("inventory/hosts.yml").canary     # the canary report of each host
    mlflow_ansible.status("inventory/hosts.yml").status     # service, healthy, version, url per host
    mlflow_ansible.upgrade("inventory/hosts.yml", to="3.17.2")  # backup, migrate once, roll back on failure

Problems found before anything runs raise a subclass of :class:`MlflowAnsibleError` (ValidationError,
InventoryError, DockerUnavailableError, SandboxError, RunnerError), each with ``problems`` (one line
each) and ``exit_code``. Secrets: set ``MLFLOW_ANSIBLE_VAR_<variable>`` in the environment (for example
``MLFLOW_ANSIBLE_VAR_cloudsql_client_password``); they reach ansible-playbook in its environment only.

Exit codes of ``python -m mlflow_ansible`` / ``mlflow-ansible`` (Ansible's, where they overlap):

    0    ok
    1    error: Ansible's generic failure; Docker missing or not running; the sandbox is not up
    2    a task failed on at least one host
    3    at least one host was unreachable (and none failed)
    4    the inventory is missing, unreadable or cannot be parsed; a playbook parse error
    5    bad options or variables (unknown name, wrong type, missing required value, bad -e syntax)
    99   interrupted (Ctrl-C)
    250  unexpected error (a bug; -vvv shows the traceback)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Light on import: ``import mlflow_ansible.iap_token`` (the IAP header provider an MLflow client may load
# in every process) must not pull in Ansible, ansible-runner or rich. The API and its result types are
# imported on first use.
from mlflow_ansible.errors import (
    DockerUnavailableError,
    InventoryError,
    MlflowAnsibleError,
    RunnerError,
    SandboxError,
    ValidationError,
)
from mlflow_ansible.exit_codes import ExitCode

if TYPE_CHECKING:
    from mlflow_ansible.api import (
        ACTIONS,
        Action,
        RunOptions,
        backup,
        deploy,
        restore,
        rotate_kek,
        run_action,
        status,
        upgrade,
        verify,
    )
    from mlflow_ansible.result import HostStats, RunResult, TaskFailure

_LAZY = {
    **dict.fromkeys(
        ("ACTIONS", "Action", "RunOptions", "backup", "deploy", "restore", "rotate_kek", "run_action", "status",
         "upgrade", "verify"),
        "mlflow_ansible.api",
    ),
    **dict.fromkeys(("HostStats", "RunResult", "TaskFailure"), "mlflow_ansible.result"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlflow_ansible' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ACTIONS",
    "Action",
    "DockerUnavailableError",
    "ExitCode",
    "HostStats",
    "InventoryError",
    "MlflowAnsibleError",
    "RunOptions",
    "RunResult",
    "RunnerError",
    "SandboxError",
    "TaskFailure",
    "ValidationError",
    "backup",
    "deploy",
    "rotate_kek",
    "restore",
    "run_action",
    "status",
    "upgrade",
    "verify",
]
