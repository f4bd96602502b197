"""The variables the roles accept, read from their meta/argument_specs.yml (the one schema)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlflow_ansible.errors import MlflowAnsibleError

# libyaml's parser where PyYAML has it: the roles' specs load about ten times faster than in pure Python.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The roles of the sandbox's local testbed; every other role belongs to the deploy.
TESTBED_ROLES = frozenset({"testbed"})
# The role whose spec holds the site playbook's own variables (mlflow_ansible_*, hence its name): it has no
# tasks; the site playbook's first play imports it for the validation ansible-core runs on a role's spec.
SITE_ROLE = "mlflow_ansible"
ENTRY_POINT = "main"


@dataclass(frozen=True)
class VariableSpec:
    """One option of a role's argument spec."""

    name: str
    role: str
    type: str = "str"
    elements: str | None = None
    default: Any = None
    choices: tuple[Any, ...] = ()
    required: bool = False
    no_log: bool = False
    description: str = ""
    # The option as the spec file declares it: what ansible-core's ArgumentSpecValidator checks a value against.
    option: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def argument_spec(self) -> dict[str, Any]:
        """The option for ArgumentSpecValidator: its type, elements, choices, no_log... (not its docs or default)."""
        spec = {key: value for key, value in self.option.items() if key not in ("description", "default", "required")}
        return spec or {"type": self.type}

    @classmethod
    def from_option(cls, name: str, role: str, option: Mapping[str, Any]) -> VariableSpec:
        description = option.get("description", "")
        if isinstance(description, list):
            description = " ".join(str(line) for line in description)
        return cls(
            name=name,
            role=role,
            type=str(option.get("type", "str")),
            elements=option.get("elements"),
            default=option.get("default"),
            choices=tuple(option.get("choices") or ()),
            required=bool(option.get("required", False)),
            no_log=bool(option.get("no_log", False)),
            description=str(description),
            option=dict(option),
        )


@dataclass(frozen=True)
class Schema:
    """The variables one playbook accepts, by name."""

    variables: Mapping[str, VariableSpec] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.variables

    def __getitem__(self, name: str) -> VariableSpec:
        return self.variables[name]

    def get(self, name: str) -> VariableSpec | None:
        return self.variables.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self.variables)

    @property
    def required(self) -> list[VariableSpec]:
        return [spec for spec in self.variables.values() if spec.required]

    def is_secret(self, name: str) -> bool:
        spec = self.variables.get(name)
        return bool(spec and spec.no_log)

    def with_variables(self, extra: Iterable[VariableSpec]) -> Schema:
        return Schema({**self.variables, **{spec.name: spec for spec in extra}})


def load_role_specs(roles_dir: Path) -> dict[str, dict[str, VariableSpec]]:
    """Every role's ``main`` options, by role then variable name."""
    specs: dict[str, dict[str, VariableSpec]] = {}
    for path in sorted(roles_dir.glob("*/meta/argument_specs.yml")):
        role = path.parent.parent.name
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER) or {}  # noqa: S506 (a SafeLoader)
            options = data["argument_specs"][ENTRY_POINT].get("options") or {}
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
            raise MlflowAnsibleError(f"cannot read the argument spec {path}: {exc}") from None
        specs[role] = {name: VariableSpec.from_option(name, role, option or {}) for name, option in options.items()}
    if not specs:
        raise MlflowAnsibleError(f"no role argument specs under {roles_dir}")
    return specs


def _merge(role_specs: Mapping[str, Mapping[str, VariableSpec]], roles: Iterable[str]) -> Schema:
    merged: dict[str, VariableSpec] = {}
    for role in roles:
        merged.update(role_specs[role])
    return Schema(merged)


def deploy_schema(role_specs: Mapping[str, Mapping[str, VariableSpec]]) -> Schema:
    """The variables of the site playbook: every role's but the testbed's, with the site variables of
    roles/mlflow_ansible/meta/argument_specs.yml (mlflow_ansible_action, _hosts, ...), which the site playbook's first
    play checks too."""
    if SITE_ROLE not in role_specs:
        raise MlflowAnsibleError(f"no argument spec of the site variables (roles/{SITE_ROLE}/meta/argument_specs.yml)")
    return _merge(role_specs, (role for role in role_specs if role not in TESTBED_ROLES))


def testbed_schema(role_specs: Mapping[str, Mapping[str, VariableSpec]]) -> Schema:
    """The variables of playbooks/testbed.yml."""
    return _merge(role_specs, (role for role in role_specs if role in TESTBED_ROLES))
