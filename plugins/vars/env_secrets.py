"""Variables from MLFLOW_ANSIBLE_VAR_<name> environment variables (secrets off disk)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: env_secrets
short_description: Variables for every host from MLFLOW_ANSIBLE_VAR_<name> environment variables
version_added: "0.1.0"
description:
  - Every environment variable C(MLFLOW_ANSIBLE_VAR_<name>) of the ansible-playbook process becomes the variable
    C(<name>) of every host, with the value as a literal string (never templated).
  - C(MLFLOW_ANSIBLE_JSON_VAR_<name>) does the same with a JSON value (a number, a boolean, a list or a mapping).
  - The mlflow_ansible Python wrapper validates the names against the roles' argument specs and passes secrets this
    way, so they reach Ansible without touching the disk or any command line.
  - Enable it with C(ANSIBLE_VARS_ENABLED=host_group_vars,mlflow_ansible.tracking.env_secrets).
  - The variables rank as host variables from the inventory; play and role variables and C(-e) still override them.
extends_documentation_fragment:
  - vars_plugin_staging
"""

import json
import os

from ansible.errors import AnsibleError
from ansible.plugins.vars import BaseVarsPlugin
from ansible.utils.unsafe_proxy import wrap_var

try:  # ansible-core 2.19 and later: host objects carry base_type
    from ansible.inventory.group import InventoryObjectType
except ImportError:  # pragma: no cover - older ansible-core
    InventoryObjectType = None

PREFIX = "MLFLOW_ANSIBLE_VAR_"
JSON_PREFIX = "MLFLOW_ANSIBLE_JSON_VAR_"


def env_variables(environ: dict[str, str] | None = None) -> dict[str, object]:
    """The variables named by the environment: literal strings, then JSON values."""
    environ = os.environ if environ is None else environ
    found: dict[str, object] = {}
    for key, value in environ.items():
        if key.startswith(PREFIX) and len(key) > len(PREFIX):
            found[key[len(PREFIX) :]] = value
    for key, value in environ.items():
        if key.startswith(JSON_PREFIX) and len(key) > len(JSON_PREFIX):
            name = key[len(JSON_PREFIX) :]
            try:
                found[name] = json.loads(value)
            except ValueError as exc:
                raise AnsibleError(f"{key} does not hold valid JSON ({exc.msg})") from None
    return found


def _is_host(entity: object) -> bool:
    if InventoryObjectType is not None and hasattr(entity, "base_type"):
        return entity.base_type is InventoryObjectType.HOST
    return type(entity).__name__ == "Host"


class VarsModule(BaseVarsPlugin):
    is_stateless = True

    def get_vars(self, loader, path, entities, cache=True):
        super().get_vars(loader, path, entities)
        if not isinstance(entities, list):
            entities = [entities]
        if not any(_is_host(entity) for entity in entities):
            return {}
        # wrap_var: literal values, never templated (ansible-core < 2.19 would otherwise render "{{").
        return wrap_var(env_variables())
