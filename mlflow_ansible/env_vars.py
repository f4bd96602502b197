"""Variables passed through the environment (MLFLOW_ANSIBLE_VAR_<name>), the way secrets reach Ansible.

The user sets ``MLFLOW_ANSIBLE_VAR_cloudsql_client_password=...``; the wrapper validates the name and
the value against the argument specs and hands the variable to ansible-playbook in its environment only,
where the collection's vars plugin ``mlflow_ansible.tracking.env_secrets`` (plugins/vars/env_secrets.py)
turns it into a variable of every host. Strings travel as ``MLFLOW_ANSIBLE_VAR_<name>``, other values
(numbers, booleans, lists, mappings) as JSON in ``MLFLOW_ANSIBLE_JSON_VAR_<name>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlflow_ansible.errors import ValidationError

# The same prefixes as plugins/vars/env_secrets.py (a test keeps them in step).
PREFIX = "MLFLOW_ANSIBLE_VAR_"
JSON_PREFIX = "MLFLOW_ANSIBLE_JSON_VAR_"
VARS_PLUGIN = "mlflow_ansible.tracking.env_secrets"


def env_name(name: str) -> str:
    return f"{PREFIX}{name}"


def read_env_vars(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The variables set in ``environ``: (values, origin of each: the environment variable's name)."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key, raw in environ.items():
        if key.startswith(PREFIX):
            name, value = key[len(PREFIX) :], raw
        elif key.startswith(JSON_PREFIX):
            name = key[len(JSON_PREFIX) :]
            try:
                value = json.loads(raw)
            except ValueError as exc:
                raise ValidationError(f"{key} does not hold valid JSON ({exc})") from None
        else:
            continue
        if not name:
            raise ValidationError(
                f"{key} names no variable: use {PREFIX}<variable>, e.g. {PREFIX}cloudsql_client_password"
            )
        values[name] = value
        origins[name] = key
    return values, origins


def child_env(values: Mapping[str, Any]) -> dict[str, str]:
    """The environment entries that carry ``values`` to the vars plugin."""
    env: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, str):
            env[f"{PREFIX}{name}"] = value
        else:
            env[f"{JSON_PREFIX}{name}"] = json.dumps(value)
    return env
