"""Check variables against the roles' argument specs before anything runs: one clear line per problem.

Every value given with ``-e`` or ``MLFLOW_ANSIBLE_VAR_<name>`` must name a variable of the specs (or an
``ansible_*`` connection variable) and have the declared type and one of the declared choices; values
are converted as Ansible converts them (``-e tracking_server_port=5001`` becomes the int 5001, so the
play gets the right type). For a static inventory the hosts' variables are checked as well, and a
required variable must be set for every host the play targets.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlflow_ansible.env_vars import env_name
from mlflow_ansible.errors import ValidationError
from mlflow_ansible.extra_vars import ExtraVars
from mlflow_ansible.inventory import InventoryVars
from mlflow_ansible.specs import Schema, VariableSpec

ALLOWED_PREFIXES = ("ansible_",)
_SCALAR_NAMES = {
    "str": "a string",
    "path": "a path (string)",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
}
_MAX_HOSTS_SHOWN = 5


class _TypeProblem(Exception):
    """A value that does not have (and cannot be converted to) the declared type."""


@dataclass
class Validated:
    """The checked and converted variables, split by the way they reach ansible-playbook."""

    extra_vars: dict[str, Any] = field(default_factory=dict)  # ansible-runner extravars (env/extravars)
    secret_vars: dict[str, Any] = field(default_factory=dict)  # the environment only
    passthrough_files: list[Path] = field(default_factory=list)  # vault-encrypted -e @files
    inventory: InventoryVars | None = None


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def suggestion(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def _describe(value: Any, secret: bool) -> str:
    if secret:
        return f"a {type(value).__name__} (value hidden)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_structured(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            raise _TypeProblem from None


def _convert(kind: str, value: Any) -> Any:
    """``value`` as the type ``kind`` of an argument spec, converted as Ansible converts strings."""
    from ansible.module_utils.common.validation import (
        check_type_bool,
        check_type_dict,
        check_type_float,
        check_type_int,
        check_type_list,
    )

    try:
        if kind in ("str", "path"):
            if isinstance(value, str):
                return value
            if isinstance(value, int | float) and not isinstance(value, bool):
                return str(value)
            raise _TypeProblem
        if kind == "int":
            if isinstance(value, bool):
                raise _TypeProblem
            if isinstance(value, float) and value.is_integer():
                return int(value)
            return check_type_int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise _TypeProblem
            return check_type_float(value)
        if kind == "bool":
            if isinstance(value, float):
                raise _TypeProblem
            return check_type_bool(value)
        if kind == "list":
            if isinstance(value, str) and value.lstrip().startswith("["):
                value = _parse_structured(value)
            if isinstance(value, Mapping | bool) or value is None:
                raise _TypeProblem
            return check_type_list(value)
        if kind == "dict":
            if isinstance(value, str) and value.lstrip().startswith("{"):
                value = _parse_structured(value)
            if not isinstance(value, Mapping | str):
                raise _TypeProblem
            return dict(check_type_dict(value))
    except (TypeError, ValueError):
        raise _TypeProblem from None
    return value  # raw, json, jsonarg, bytes, bits: anything goes


def _type_name(spec: VariableSpec) -> str:
    if spec.type == "list":
        return f"a list of {spec.elements}" if spec.elements else "a list"
    if spec.type == "dict":
        return "a mapping"
    return _SCALAR_NAMES.get(spec.type, f"of type {spec.type}")


def check_value(spec: VariableSpec, value: Any, origin: str) -> tuple[Any, list[str]]:
    """The converted value and the problems (none when it is fine); templates are left for Ansible."""
    if is_template(value):
        return value, []
    where = f" ({origin})" if origin else ""
    try:
        converted = _convert(spec.type, value)
    except _TypeProblem:
        return value, [f"{spec.name} must be {_type_name(spec)}, not {_describe(value, spec.no_log)}{where}"]
    problems: list[str] = []
    if spec.type == "list" and spec.elements:
        items = []
        for index, item in enumerate(converted):
            if is_template(item):
                items.append(item)
                continue
            try:
                items.append(_convert(spec.elements, item))
            except _TypeProblem:
                item_spec = VariableSpec(f"{spec.name}[{index}]", spec.role, type=spec.elements, no_log=spec.no_log)
                problems.append(
                    f"{item_spec.name} must be {_type_name(item_spec)}, not {_describe(item, spec.no_log)}{where}"
                )
        converted = items
    if spec.choices and not problems:
        chosen = converted if spec.type == "list" else [converted]
        wrong = [item for item in chosen if item not in spec.choices and not is_template(item)]
        if wrong:
            allowed = ", ".join(str(choice) for choice in spec.choices)
            problems.append(f"{spec.name} must be one of {allowed}, not {_describe(wrong[0], spec.no_log)}{where}")
    return converted, problems


def _unknown(name: str, origin: str, schema: Schema) -> str:
    near = suggestion(name, schema.names)
    hint = f"; did you mean '{near}'?" if near else "; see the variables in README.md"
    return f"unknown variable '{name}' ({origin}){hint}"


class Validator:
    """Checks one command's variables against ``schema``."""

    def __init__(self, schema: Schema, reserved: Mapping[str, str] | None = None) -> None:
        self.schema = schema
        self.reserved = dict(reserved or {})  # name -> why the user may not set it
        self.role_prefixes = tuple(sorted({f"{spec.role}_" for spec in schema.variables.values()}))

    def _given(self, name: str, value: Any, origin: str, problems: list[str]) -> Any:
        if name in self.reserved:
            problems.append(f"{name} cannot be given ({origin}): {self.reserved[name]}")
            return value
        spec = self.schema.get(name)
        if spec is None:
            if not name.startswith(ALLOWED_PREFIXES):
                problems.append(_unknown(name, origin, self.schema))
            return value
        converted, found = check_value(spec, value, origin)
        problems.extend(found)
        return converted

    def _inventory_problems(self, inventory: InventoryVars) -> list[str]:
        by_message: dict[str, list[str]] = {}
        for host, variables in inventory.hosts.items():
            for name, value in variables.items():
                spec = self.schema.get(name)
                if spec is not None:
                    if type(value).__name__ in {"EncryptedString", "AnsibleVaultEncryptedUnicode"}:
                        continue
                    _, found = check_value(spec, value, "")
                    messages = found
                elif name.startswith(self.role_prefixes) and not name.startswith("_"):
                    # Only a near miss of a known name is a typo; other names may be the user's own.
                    near = suggestion(name, self.schema.names, cutoff=0.85)
                    messages = [f"unknown variable '{name}'; did you mean '{near}'?"] if near else []
                else:
                    messages = []
                for message in messages:
                    by_message.setdefault(message, []).append(host)
        return [f"{message} (inventory, {_hosts(hosts)})" for message, hosts in by_message.items()]

    def _missing(self, given: Mapping[str, Any], inventory: InventoryVars | None) -> list[str]:
        problems = []
        for spec in sorted(self.schema.required, key=lambda spec: spec.name):
            if given.get(spec.name) is not None:
                continue
            how = f"-e {spec.name}=... or {env_name(spec.name)}"
            if spec.no_log:
                how = f"{env_name(spec.name)} (a secret: or a vaulted inventory variable)"
            if inventory is None:
                problems.append(f"{spec.name} is required and not set: give it with {how}")
            elif inventory.static:
                hosts = [host for host, variables in inventory.hosts.items() if variables.get(spec.name) is None]
                if hosts:
                    problems.append(
                        f"{spec.name} is required and not set for {_hosts(hosts)}: "
                        f"set it in the inventory or with {how}"
                    )
        return problems

    def validate(
        self,
        extra: ExtraVars,
        env_values: Mapping[str, Any],
        env_origins: Mapping[str, str],
        inventory: InventoryVars | None = None,
        require: bool = True,
    ) -> Validated:
        """Check everything, raise ValidationError with every problem found, else return the converted values."""
        problems: list[str] = []
        extra_vars = {
            name: self._given(name, value, extra.origin(name), problems) for name, value in extra.values.items()
        }
        for name, value in extra.passthrough_values.items():
            self._given(str(name), value, extra.origin(str(name)), problems)
        secret_vars = {
            name: self._given(name, value, env_origins.get(name, env_name(name)), problems)
            for name, value in env_values.items()
        }
        for name in sorted(set(secret_vars) & (set(extra_vars) | set(extra.passthrough_values))):
            problems.append(f"{name} is given twice, with {extra.origin(name)} and {env_origins.get(name)}: keep one")
        if inventory is not None and inventory.static:
            problems.extend(self._inventory_problems(inventory))
        if require:
            given = {**extra.passthrough_values, **extra_vars, **secret_vars}
            problems.extend(self._missing(given, inventory))
        if problems:
            raise ValidationError(list(dict.fromkeys(problems)))
        # A no_log variable given with -e travels like MLFLOW_ANSIBLE_VAR_*, never on disk; a template
        # ("{{ vault_password }}") is a reference, not the secret, and stays an extra var to be rendered.
        for name in [name for name in extra_vars if self.schema.is_secret(name) and not is_template(extra_vars[name])]:
            secret_vars[name] = extra_vars.pop(name)
        return Validated(
            extra_vars=extra_vars,
            secret_vars=secret_vars,
            passthrough_files=list(extra.passthrough_files),
            inventory=inventory,
        )


def _hosts(hosts: list[str]) -> str:
    shown = ", ".join(hosts[:_MAX_HOSTS_SHOWN])
    more = f" and {len(hosts) - _MAX_HOSTS_SHOWN} more" if len(hosts) > _MAX_HOSTS_SHOWN else ""
    return f"host{'s' if len(hosts) > 1 else ''} {shown}{more}"
