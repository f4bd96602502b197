"""Check variables against the roles' argument specs before anything runs: one clear line per problem.

Every value given with ``-e`` or ``MLFLOW_ANSIBLE_VAR_<name>`` must name a variable of the specs (or an
``ansible_*`` connection variable); its value is checked and converted by ansible-core's own
``ArgumentSpecValidator`` against the option of the role's meta/argument_specs.yml (entry point ``main``),
the validator the role's ``validate_argument_spec`` task runs at play time: the wrapper's verdict is the
play's (``-e tracking_server_port=5001`` becomes the int 5001, so the play gets the right type; a str
option accepts a number, an int option accepts ``true``, as in the play). The messages are the wrapper's
own: they name the variable, its role and where the value came from, and never show a secret's value.
For a static inventory the hosts' variables are checked as well, and a required variable must be set
for every host the play targets. A value holding a template is left to the play, which renders it first.
"""

from __future__ import annotations

import difflib
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
_TYPE_NAMES = {
    "str": "a string",
    "path": "a path (string)",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "dict": "a mapping",
    "list": "a list",
}
_MAX_HOSTS_SHOWN = 5


@dataclass
class Validated:
    """The checked and converted variables, split by the way they reach ansible-playbook."""

    extra_vars: dict[str, Any] = field(default_factory=dict)  # ansible-runner extravars (env/extravars)
    secret_vars: dict[str, Any] = field(default_factory=dict)  # the environment only
    passthrough_files: list[Path] = field(default_factory=list)  # vault-encrypted -e @files
    inventory: InventoryVars | None = None


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def holds_template(value: Any) -> bool:
    """``value``, or any item or key of it, is a template."""
    if isinstance(value, Mapping):
        return any(holds_template(key) or holds_template(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(holds_template(item) for item in value)
    return is_template(value)


def suggestion(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def _describe(value: Any, secret: bool) -> str:
    if secret:
        return f"a {type(value).__name__} (value hidden)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(kind: str | None, elements: str | None = None) -> str:
    if kind == "list" and elements:
        return f"a list of {_TYPE_NAMES.get(elements, elements).removeprefix('a ').removeprefix('an ')}s"
    return _TYPE_NAMES.get(str(kind), f"of type {kind}")


def _ansible_validate(spec: dict[str, Any], name: str, value: Any) -> tuple[Any, list[Any]]:
    """ansible-core's verdict on one value: (the converted value, the errors)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    result = ArgumentSpecValidator({name: spec}).validate({name: value})
    return result.validated_parameters.get(name, value), list(result.errors)


def _text_form(spec: VariableSpec, value: Any) -> Any:
    """A list option given as text in JSON/YAML flow form (``-e 'x=["a", "b"]'``, ``MLFLOW_ANSIBLE_VAR_x``)
    parsed as such: the text form of a list where a value can only be text. ansible-core would split it at
    its commas (it accepts any string as a list); a string that does not parse is left to it as it is."""
    if spec.type != "list" or not isinstance(value, str) or not value.lstrip().startswith("["):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, list) else value


def _explain(spec: VariableSpec, value: Any, errors: list[Any]) -> str:
    """The wrapper's one line for ansible-core's verdict against ``spec``: which check failed, on what."""
    from ansible.module_utils.errors import ArgumentTypeError, ArgumentValueError, ElementError

    secret = spec.no_log
    first = errors[0]
    if isinstance(first, ElementError) and isinstance(value, list):
        element_spec = {"type": spec.elements or "str"}
        for index, item in enumerate(value):
            if not holds_template(item) and _ansible_validate(element_spec, "item", item)[1]:
                return f"{spec.name}[{index}] must be {_type_name(spec.elements)}, not {_describe(item, secret)}"
    if isinstance(first, ArgumentTypeError | ElementError):
        return f"{spec.name} must be {_type_name(spec.type, spec.elements)}, not {_describe(value, secret)}"
    if isinstance(first, ArgumentValueError) and spec.choices:
        chosen = value if isinstance(value, list) else [value]
        wrong = next((item for item in chosen if item not in spec.choices), value)
        allowed = ", ".join(str(choice) for choice in spec.choices)
        return f"{spec.name} must be one of {allowed}, not {_describe(wrong, secret)}"
    if secret:  # ansible-core's own messages may quote the value
        return f"{spec.name} is not valid for its argument spec (value hidden)"
    return f"{spec.name}: {first}"


def check_value(spec: VariableSpec, value: Any) -> tuple[Any, str | None]:
    """The value as ansible-core converts it, and the problem (None when it is fine); templates are left to
    the play. The problem names the variable; the caller adds where the value came from and the role."""
    if holds_template(value):
        return value, None
    value = _text_form(spec, value)
    converted, errors = _ansible_validate(spec.argument_spec, spec.name, value)
    if errors:
        return value, _explain(spec, value, errors)
    return converted, None


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
        converted, problem = check_value(spec, value)
        if problem:
            problems.append(f"{problem} ({origin}; role {spec.role})")
        return converted

    def _inventory_problems(self, inventory: InventoryVars) -> list[str]:
        by_message: dict[tuple[str, str], list[str]] = {}
        for host, variables in inventory.hosts.items():
            for name, value in variables.items():
                spec = self.schema.get(name)
                if spec is not None:
                    if type(value).__name__ in {"EncryptedString", "AnsibleVaultEncryptedUnicode"}:
                        continue
                    _, problem = check_value(spec, value)
                    messages = [(problem, f"; role {spec.role}")] if problem else []
                elif name.startswith(self.role_prefixes) and not name.startswith("_"):
                    # Only a near miss of a known name is a typo; other names may be the user's own.
                    near = suggestion(name, self.schema.names, cutoff=0.85)
                    messages = [(f"unknown variable '{name}'; did you mean '{near}'?", "")] if near else []
                else:
                    messages = []
                for message in messages:
                    by_message.setdefault(message, []).append(host)
        return [f"{message} (inventory, {_hosts(hosts)}{role})" for (message, role), hosts in by_message.items()]

    def _missing(self, given: Mapping[str, Any], inventory: InventoryVars | None) -> list[str]:
        problems = []
        for spec in sorted(self.schema.required, key=lambda spec: spec.name):
            if not _missing_from(spec, given):
                continue
            how = f"-e {spec.name}=... or {env_name(spec.name)}"
            if spec.no_log:
                how = f"{env_name(spec.name)} (a secret: or a vaulted inventory variable)"
            if inventory is None:
                problems.append(f"{spec.name} is required and not set: give it with {how}")
            elif inventory.static:
                hosts = [host for host, variables in inventory.hosts.items() if _missing_from(spec, variables)]
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


def _missing_from(spec: VariableSpec, values: Mapping[str, Any]) -> bool:
    """ansible-core's check of a required option (check_required_arguments): is it among ``values``?"""
    from ansible.module_utils.common.validation import check_required_arguments

    try:
        check_required_arguments({spec.name: {"required": True}}, values)
    except TypeError:
        return True
    return False


def _hosts(hosts: list[str]) -> str:
    shown = ", ".join(hosts[:_MAX_HOSTS_SHOWN])
    more = f" and {len(hosts) - _MAX_HOSTS_SHOWN} more" if len(hosts) > _MAX_HOSTS_SHOWN else ""
    return f"host{'s' if len(hosts) > 1 else ''} {shown}{more}"
